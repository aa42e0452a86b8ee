//! How the matrix-product crate and the use of the two cores were chosen: GFLOP/s of the
//! products of the `mnist-nn bench` workloads, for
//!
//! - `matrixmultiply` with its own threads (what `ndarray`'s `dot` uses with its threading feature),
//! - the `gemm` crate splitting each product between the cores (rayon),
//! - the `gemm` crate on one core, and two such products at once on half the rows each (what the
//!   data-parallel training step does: each core multiplies its own shard).
//!
//! `cargo run --release --example gemm_choice` (median of 5 timings of each).

use std::time::Instant;

use mnist_nn::bench::median;
use mnist_nn::gemm::{cores, matmul, single_threaded};
use ndarray::{Array2, ArrayView2, ArrayViewMut2, Axis};

/// `(what, m, k, n)`: `C (m x n) = A (m x k) · B (k x n)`, rows `m` split between the shards.
const SHAPES: [(&str, usize, usize, usize); 9] = [
    ("square", 2048, 2048, 2048),
    ("fullbatch 784-300 forward", 60_000, 784, 300),
    ("fullbatch 300-100 forward", 60_000, 300, 100),
    ("minibatch 784-256 forward", 128, 784, 256),
    ("minibatch 256-128 forward", 128, 256, 128),
    ("minibatch 784-256 dX", 128, 256, 784),
    ("cnn 6272-128 forward", 128, 6272, 128),
    ("cnn 6272-128 dX", 128, 128, 6272),
    ("cnn conv 1->8, the batch as one product", 8, 9, 100_352),
];

fn filled(rows: usize, cols: usize) -> Array2<f32> {
    Array2::from_shape_fn((rows, cols), |(i, j)| ((i * 7 + j * 3) % 19) as f32 / 19.0)
}

fn gflops(flops: f64, mut run: impl FnMut()) -> f64 {
    run();
    let repeats = ((2e10 / flops) as usize).clamp(2, 1000);
    let seconds: Vec<f64> = (0..5)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..repeats {
                run();
            }
            start.elapsed().as_secs_f64() / repeats as f64
        })
        .collect();
    flops / median(&seconds) / 1e9
}

fn matrixmultiply(a: ArrayView2<f32>, b: ArrayView2<f32>, mut c: ArrayViewMut2<f32>) {
    let ((m, k), n) = (a.dim(), b.ncols());
    // SAFETY: shapes (m, k), (k, n), (m, n) with the views' own strides; c is exclusive.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.as_ptr(),
            a.strides()[0],
            a.strides()[1],
            b.as_ptr(),
            b.strides()[0],
            b.strides()[1],
            0.0,
            c.as_mut_ptr(),
            c.strides()[0],
            c.strides()[1],
        )
    }
}

fn main() {
    println!("GFLOP/s, median of 5; {} cores\n", cores());
    println!("| product m x k x n | matrixmultiply, threaded | gemm, threaded | gemm, one core | gemm, one shard per core |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    for (what, m, k, n) in SHAPES {
        let (a, b) = (filled(m, k), filled(k, n));
        let mut c = Array2::zeros((m, n));
        let flops = 2.0 * (m * k * n) as f64;
        let mm = gflops(flops, || matrixmultiply(a.view(), b.view(), c.view_mut()));
        let threaded = gflops(flops, || matmul(a.view(), b.view(), false, c.view_mut()));
        let one = gflops(flops, || {
            single_threaded(|| matmul(a.view(), b.view(), false, c.view_mut()))
        });
        let shard_rows = m.div_ceil(cores());
        let sharded = gflops(flops, || {
            let a_shards = a.axis_chunks_iter(Axis(0), shard_rows);
            let c_shards = c.axis_chunks_iter_mut(Axis(0), shard_rows);
            rayon::scope(|scope| {
                for (a, mut c) in a_shards.zip(c_shards) {
                    let b = b.view();
                    scope.spawn(move |_| single_threaded(|| matmul(a, b, false, c.view_mut())));
                }
            });
        });
        println!(
            "| {m} x {k} x {n} ({what}) | {mm:.0} | {threaded:.0} | {one:.0} | {sharded:.0} |"
        );
    }
}
