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

use super::pool::PoolShape;
use super::{check_features, ensure_shape, relu_in_place, Layer, LayerSpec};

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
        let (k, width) = (self.shape.kernel, self.shape.width);
        for (i, (x, mut y)) in input
            .rows()
            .into_iter()
            .zip(self.output.rows_mut())
            .enumerate()
        {
            let x = x.to_slice().expect("contiguous rows");
            let y = y.as_slice_mut().expect("contiguous rows");
            let argmax = &mut self.argmax[i * out_len..(i + 1) * out_len];
            self.shape.for_each_window(|out, top_left| {
                let (mut best, mut best_value) = (top_left, x[top_left]);
                for ky in 0..k {
                    let row = top_left + ky * width;
                    for (j, &value) in x[row..row + k].iter().enumerate() {
                        // A NaN wins and stays, as in PyTorch.
                        if value > best_value || value.is_nan() {
                            (best, best_value) = (row + j, value);
                        }
                    }
                }
                y[out] = best_value;
                argmax[out] = best as u32;
            });
            if self.fused_relu {
                relu_in_place(y);
            }
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
        for (i, (dy, mut dx)) in grad_output
            .rows()
            .into_iter()
            .zip(self.grad_input.rows_mut())
            .enumerate()
        {
            let argmax = &self.argmax[i * out_len..(i + 1) * out_len];
            let y = self.output.row(i);
            for ((&g, &j), &y) in dy.iter().zip(argmax).zip(y) {
                // With a fused ReLU, only the windows whose maximum was positive pass a gradient.
                if !self.fused_relu || y > 0.0 {
                    dx[j as usize] += g;
                }
            }
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
