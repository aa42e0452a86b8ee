//! Max pooling: each output is the largest value of its window (see [`PoolShape`]).
//!
//! ```text
//! forward:   Y[c, y, x] = max_{ky, kx} X[c, y·stride + ky, x·stride + kx]
//!            X: (n, c·h·w)    Y: (n, c·out_h·out_w)
//! backward:  dX[c, i, j] = Σ over the windows whose maximum is X[c, i, j] of dY
//! ```
//!
//! A maximum passes its input through with slope 1 and ignores the others, so the gradient goes
//! to the one input that won each window, which the forward pass remembers (`argmax`). Ties go to
//! the first value in row-major order within the window, as in PyTorch.
//!
//! A ReLU right after max pooling (`maxpool 2, relu`, as in the fast MNIST recipe) is fused into
//! it ([`Layer::fuse_relu`]): `Y = max(0, max(window))`, and a window passes its gradient only
//! where `Y > 0`.

use ndarray::{Array2, ArrayView2};
use rayon::prelude::*;

use super::pool::PoolShape;
use super::{check_features, ensure_shape, relu_in_place, Layer, LayerSpec};
use crate::gemm::threads;

/// The maximum of every `kernel x kernel` window, `stride` apart, of every channel.
pub struct MaxPool2d {
    shape: PoolShape,
    /// Whether the layer applies the ReLU that follows it.
    fused_relu: bool,
    /// For every output value, the index within its image's row of the input that won.
    argmax: Vec<u32>,
    /// `Y`, `(n, c·out_h·out_w)`
    output: Array2<f32>,
    /// `dX`, `(n, c·h·w)`
    grad_input: Array2<f32>,
}

impl MaxPool2d {
    /// Max pooling of the given shape. Panics if it is impossible (see [`PoolShape::check`]).
    pub fn new(shape: PoolShape) -> Self {
        if let Err(message) = shape.check() {
            panic!("MaxPool2d: {message}");
        }
        MaxPool2d {
            shape,
            fused_relu: false,
            argmax: Vec::new(),
            output: Array2::zeros((0, shape.output_len())),
            grad_input: Array2::zeros((0, shape.input_len())),
        }
    }
}

impl Layer for MaxPool2d {
    fn forward(&mut self, input: ArrayView2<f32>, _train: bool) -> ArrayView2<'_, f32> {
        check_features("MaxPool2d", self.shape.input_len(), input);
        let (n, out_len) = (input.nrows(), self.shape.output_len());
        ensure_shape(&mut self.output, n, out_len);
        self.argmax.resize(n * out_len, 0);
        let (shape, fused_relu) = (self.shape, self.fused_relu);
        let one_image = |((x, y), argmax): ((&[f32], &mut [f32]), &mut [u32])| {
            max_of_windows(&shape, x, y, argmax);
            if fused_relu {
                relu_in_place(y);
            }
        };
        let images = input.to_slice().expect("contiguous rows");
        let outputs = self.output.as_slice_mut().expect("standard layout");
        // Inside a training shard this thread has one core; evaluating, share the images.
        if threads() > 1 {
            images
                .par_chunks(shape.input_len())
                .zip(outputs.par_chunks_mut(out_len))
                .zip(self.argmax.par_chunks_mut(out_len))
                .for_each(one_image);
        } else {
            images
                .chunks(shape.input_len())
                .zip(outputs.chunks_mut(out_len))
                .zip(self.argmax.chunks_mut(out_len))
                .for_each(one_image);
        }
        self.output.view()
    }

    fn backward(
        &mut self,
        input: ArrayView2<f32>,
        grad_output: ArrayView2<f32>,
    ) -> ArrayView2<'_, f32> {
        let (n, out_len) = (input.nrows(), self.shape.output_len());
        assert_eq!(
            grad_output.dim(),
            (n, out_len),
            "MaxPool2d: the gradient's shape does not match the last forward pass"
        );
        ensure_shape(&mut self.grad_input, n, self.shape.input_len());
        self.grad_input.fill(0.0);
        let fused_relu = self.fused_relu;
        for (i, (dy, mut dx)) in grad_output
            .rows()
            .into_iter()
            .zip(self.grad_input.rows_mut())
            .enumerate()
        {
            let windows = i * out_len..(i + 1) * out_len;
            let y = self.output.row(i);
            send_to_winners(
                dy.as_slice().expect("contiguous rows"),
                &self.argmax[windows],
                y.as_slice().filter(|_| fused_relu),
                dx.as_slice_mut().expect("contiguous rows"),
            );
        }
        self.grad_input.view()
    }

    fn output(&self) -> ArrayView2<'_, f32> {
        self.output.view()
    }

    fn grad_input(&self) -> ArrayView2<'_, f32> {
        self.grad_input.view()
    }

    /// `max(0, max(window))`: the ReLU that follows is applied to the pooled values, a quarter as
    /// many as its input for 2x2 windows, and its mask to the gradient of each window's winner.
    fn fuse_relu(&mut self) -> bool {
        self.fused_relu = true;
        true
    }

    fn describe(&self) -> String {
        format!(
            "MaxPool2d({k}x{k}, stride {s})",
            k = self.shape.kernel,
            s = self.shape.stride
        )
    }

    fn spec(&self) -> LayerSpec {
        LayerSpec::MaxPool2d(self.shape)
    }
}

/// The maximum of every window of one image `x` `(c·h·w)` into `y` `(c·out_h·out_w)`, with the
/// index in `x` of its winner (the first in row-major order; a NaN wins and stays, as in PyTorch)
/// into `argmax`. [`Conv2d`](super::Conv2d) calls it too, on each image's output, when the
/// pooling is fused into the convolution.
pub(crate) fn max_of_windows(shape: &PoolShape, x: &[f32], y: &mut [f32], argmax: &mut [u32]) {
    if (shape.kernel, shape.stride) == (2, 2) {
        max_2x2(shape, x, y, argmax);
    } else {
        max_any(shape, x, y, argmax);
    }
}

/// The backward pass of one image: adds each window's gradient `dy[j]` onto the input that won
/// it, `dx[argmax[j]]` (`dx` must start at zero). Given the pooled values `relu_output` of a
/// fused ReLU, a window passes its gradient only where that value is positive.
pub(crate) fn send_to_winners(
    dy: &[f32],
    argmax: &[u32],
    relu_output: Option<&[f32]>,
    dx: &mut [f32],
) {
    match relu_output {
        None => {
            for (&g, &j) in dy.iter().zip(argmax) {
                dx[j as usize] += g;
            }
        }
        Some(y) => {
            // A select, not a branch: whether a window's value is positive is a coin toss the
            // processor would mispredict half the time. (`dx` starts at +0, and +0 + +0 = +0, so
            // adding the zeros changes no bits.)
            for ((&g, &j), &y) in dy.iter().zip(argmax).zip(y) {
                dx[j as usize] += if y > 0.0 { g } else { 0.0 };
            }
        }
    }
}

/// [`max_of_windows`] for any window: each window scanned in row-major order.
fn max_any(shape: &PoolShape, x: &[f32], y: &mut [f32], argmax: &mut [u32]) {
    let (k, width) = (shape.kernel, shape.width);
    shape.for_each_window(|_, out, top_left| {
        let (mut best, mut best_value) = (top_left, x[top_left]);
        for ky in 0..k {
            let row = top_left + ky * width;
            for (j, &value) in x[row..row + k].iter().enumerate() {
                if value > best_value || value.is_nan() {
                    (best, best_value) = (row + j, value);
                }
            }
        }
        y[out] = best_value;
        argmax[out] = best as u32;
    });
}

/// [`max_any`] for 2x2 windows 2 apart, the common case: each output row reads two input rows
/// straight through, and a window's maximum and winner are found without a branch on the values
/// (on random maps the branches of [`max_any`] are mispredicted half the time), as a tournament:
/// the better of each row's pair, then the better of the two rows, each match won by the later
/// value only if it is larger or NaN. That is PyTorch's scan (`val > max || isnan(val)` in
/// row-major order), played in another order with the same winner: the first of the largest
/// values, or the last NaN. Each match is a compare and two selects: 2.4x faster than finding
/// the maximum first and then its position (`cargo bench --bench kernels -- forward/maxpool`,
/// 256 images of 24x24x24, both versions alternately: 4.5-5.4 ms, then 1.9-2.1 ms).
fn max_2x2(shape: &PoolShape, x: &[f32], y: &mut [f32], argmax: &mut [u32]) {
    let (height, width) = (shape.height, shape.width);
    let (out_h, out_w) = (shape.out_height(), shape.out_width());
    let mut out = 0;
    for c in 0..shape.channels {
        let plane = c * height * width;
        for oy in 0..out_h {
            let top = plane + 2 * oy * width;
            let bottom = top + width;
            let ys = &mut y[out..out + out_w];
            let winners = &mut argmax[out..out + out_w];
            let pairs = x[top..top + 2 * out_w]
                .chunks_exact(2)
                .zip(x[bottom..bottom + 2 * out_w].chunks_exact(2));
            for (ox, ((y, winner), (upper, lower))) in
                ys.iter_mut().zip(winners.iter_mut()).zip(pairs).enumerate()
            {
                let (a, b) = ((top + 2 * ox) as u32, (bottom + 2 * ox) as u32);
                let upper = later_wins((upper[0], a), (upper[1], a + 1));
                let lower = later_wins((lower[0], b), (lower[1], b + 1));
                (*y, *winner) = later_wins(upper, lower);
            }
            out += out_w;
        }
    }
}

/// The winner of two values with their indices, `first` before `second` in the scan: `second`
/// only if it is larger or NaN. Written as selects, not branches.
#[inline]
fn later_wins(first: (f32, u32), second: (f32, u32)) -> (f32, u32) {
    // `|`, not `||`: both tests are cheap, and without the short circuit the choice is a select.
    if (second.0 > first.0) | second.0.is_nan() {
        second
    } else {
        first
    }
}
