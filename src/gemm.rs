//! Matrix products, where almost all of a network's time goes.
//!
//! Every layer's heavy lifting is one call of [`matmul`]: `C = A·B`, or `C += A·B`, for `A: (m, k)`,
//! `B: (k, n)` and `C: (m, n)`, each of them any ndarray view (a transposed view costs nothing:
//! only its strides differ). It costs `2·m·k·n` floating-point operations.
//!
//! The products run on the pure-Rust `gemm` crate, chosen by measurement over `matrixmultiply`
//! (see the README's speed section). It picks its kernels when the program starts: AVX-512 ones
//! on CPUs that have AVX-512 (its `x86-v4` feature, which this project turns on), AVX2/FMA ones
//! on other x86-64 CPUs.
//!
//! How many threads one product may use is a per-thread setting: all cores by default, fewer inside
//! [`with_threads`], which the data-parallel training step uses to give each shard of the batch its
//! share of the cores. The number of threads never changes a product's value: the crate splits
//! the output between threads, not the sums (a test checks this bit for bit), so a training run
//! gives the same weights on any number of cores.

use std::cell::Cell;
use std::sync::Once;

use ndarray::{ArrayView2, ArrayViewMut2};

thread_local! {
    /// Threads one product may use on this thread (0: all the machine's cores).
    static THREADS: Cell<usize> = const { Cell::new(0) };
}

/// The number of cores the products and the data-parallel training step use: the threads of the
/// rayon pool the caller runs in (the global pool has one per core).
pub fn cores() -> usize {
    rayon::current_num_threads()
}

/// How many cores a product started on this thread may use.
pub fn threads() -> usize {
    match THREADS.with(Cell::get) {
        0 => cores(),
        t => t,
    }
}

/// Runs `work` with every product on this thread using one core.
pub fn single_threaded<T>(work: impl FnOnce() -> T) -> T {
    with_threads(1, work)
}

/// Runs `work` with every product on this thread using at most `threads` cores (at least one).
pub fn with_threads<T>(threads: usize, work: impl FnOnce() -> T) -> T {
    let before = THREADS.with(|t| t.replace(threads.max(1)));
    let result = work();
    THREADS.with(|t| t.set(before));
    result
}

/// `C = A·B` (or `C += A·B` when `accumulate`), with `A: (m, k)`, `B: (k, n)`, `C: (m, n)`.
///
/// Panics with the three shapes if they do not fit together.
pub fn matmul(a: ArrayView2<f32>, b: ArrayView2<f32>, accumulate: bool, mut c: ArrayViewMut2<f32>) {
    let ((m, k), (k2, n)) = (a.dim(), b.dim());
    assert!(
        k == k2 && c.dim() == (m, n),
        "matmul: cannot multiply {:?} by {:?} into {:?}",
        a.dim(),
        b.dim(),
        c.dim()
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            c.fill(0.0);
        }
        return;
    }
    static TUNED: Once = Once::new();
    TUNED.call_once(|| {
        // The crate copies ("packs") the left operand of its column-major view for every
        // single-threaded product wider than 8 micro-tiles; for our 64-row shards reading it in
        // place is faster: 3% off a cnn or minibatch training step (measured, README).
        gemm::set_lhs_packing_threshold_single_thread(16);
    });
    let parallelism = if threads() > 1 {
        gemm::Parallelism::Rayon(threads())
    } else {
        gemm::Parallelism::None
    };
    let (a_rs, a_cs) = (a.strides()[0], a.strides()[1]);
    let (b_rs, b_cs) = (b.strides()[0], b.strides()[1]);
    let (c_rs, c_cs) = (c.strides()[0], c.strides()[1]);
    // SAFETY: the pointers and strides come from live ndarray views whose shapes were checked
    // above to be (m, k), (k, n) and (m, n); `c` is borrowed mutably, so it overlaps neither input.
    // The crate computes dst = alpha·dst + beta·lhs·rhs, reading dst only when `accumulate`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            c_cs,
            c_rs,
            accumulate,
            a.as_ptr(),
            a_cs,
            a_rs,
            b.as_ptr(),
            b_cs,
            b_rs,
            1.0f32,
            1.0f32,
            false,
            false,
            false,
            parallelism,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array2, ShapeBuilder};

    fn naive(a: ArrayView2<f32>, b: ArrayView2<f32>) -> Array2<f32> {
        Array2::from_shape_fn((a.nrows(), b.ncols()), |(i, j)| {
            (0..a.ncols()).map(|p| a[(i, p)] * b[(p, j)]).sum()
        })
    }

    fn filled(rows: usize, cols: usize, seed: usize) -> Array2<f32> {
        Array2::from_shape_fn((rows, cols), |(i, j)| {
            ((i * 31 + j * 17 + seed * 7) % 23) as f32 / 11.0 - 1.0
        })
    }

    #[test]
    fn agrees_with_the_definition_for_every_layout() {
        for &(m, k, n) in &[(1, 1, 1), (3, 5, 2), (64, 33, 17), (130, 70, 9)] {
            let a = filled(m, k, 1);
            let b = filled(k, n, 2);
            let expected = naive(a.view(), b.view());
            // Row-major and column-major (a transposed view's layout) left operands.
            let mut a_column_major = Array2::zeros((m, k).f());
            a_column_major.assign(&a);
            for lhs in [a.view(), a_column_major.view()] {
                let mut c = Array2::zeros((m, n));
                matmul(lhs, b.view(), false, c.view_mut());
                let error = (&c - &expected)
                    .mapv(f32::abs)
                    .fold(0.0f32, |x, &y| x.max(y));
                assert!(error < 1e-4, "{m}x{k}x{n}: error {error}");
                matmul(lhs, b.view(), true, c.view_mut());
                let error = (&c - &(2.0 * &expected))
                    .mapv(f32::abs)
                    .fold(0.0f32, |x, &y| x.max(y));
                assert!(error < 1e-4, "{m}x{k}x{n} accumulating: error {error}");
            }
            let mut c_t = Array2::zeros((n, m));
            matmul(b.t(), a.t(), false, c_t.view_mut());
            let error = (&c_t.t() - &expected)
                .mapv(f32::abs)
                .fold(0.0f32, |x, &y| x.max(y));
            assert!(error < 1e-4, "{m}x{k}x{n} transposed: error {error}");
        }
    }

    /// Training runs give the same weights on any number of cores only if this holds.
    #[test]
    fn the_number_of_threads_does_not_change_a_product_by_one_bit() {
        // The shapes of the workloads' products, and awkward ones.
        let shapes = [
            (64, 784, 256),
            (784, 64, 256),
            (64, 256, 784),
            (3000, 784, 300),
            (300, 3000, 100),
            (8, 9, 784),
            (130, 70, 9),
        ];
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        for &(m, k, n) in &shapes {
            let (a, b) = (filled(m, k, 3), filled(k, n, 4));
            let a_t = a.t().as_standard_layout().into_owned();
            let product = |threads: usize, a: ArrayView2<f32>| {
                let mut c = Array2::zeros((m, n));
                pool.install(|| with_threads(threads, || matmul(a, b.view(), false, c.view_mut())));
                c
            };
            for lhs in [a.view(), a_t.t()] {
                let one = product(1, lhs);
                assert_eq!(one, product(2, lhs), "{m}x{k}x{n}, 2 threads");
                assert_eq!(one, product(3, lhs), "{m}x{k}x{n}, 3 threads");
            }
        }
    }

    #[test]
    #[should_panic(expected = "cannot multiply (3, 4) by (5, 2) into (3, 2)")]
    fn mismatched_shapes_are_named() {
        let mut c = Array2::zeros((3, 2));
        matmul(
            filled(3, 4, 0).view(),
            filled(5, 2, 0).view(),
            false,
            c.view_mut(),
        );
    }
}
