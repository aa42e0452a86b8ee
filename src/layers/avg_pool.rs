//! Average pooling: each output is the mean of its window (see [`PoolShape`]).
//!
//! ```text
//! forward:   Y[c, y, x] = (1/k²) Σ_{ky, kx} X[c, y·stride + ky, x·stride + kx]
//!            X: (n, c·h·w)    Y: (n, c·out_h·out_w)
//! backward:  dX[c, i, j] = Σ over the windows that hold X[c, i, j] of dY / k²
//! ```
//!
//! Every input of a window contributes `1/k²` of its output, so each receives `1/k²` of the
//! window's gradient.

use ndarray::{Array2, ArrayView2};

use super::pool::PoolShape;
use super::{check_features, ensure_shape, Layer, LayerSpec};

/// The mean of every `kernel x kernel` window, `stride` apart, of every channel.
pub struct AvgPool2d {
    shape: PoolShape,
    /// `Y`, `(n, c·out_h·out_w)`
    output: Array2<f32>,
    /// `dX`, `(n, c·h·w)`
    grad_input: Array2<f32>,
}

impl AvgPool2d {
    /// Average pooling of the given shape. Panics if it is impossible (see [`PoolShape::check`]).
    pub fn new(shape: PoolShape) -> Self {
        if let Err(message) = shape.check() {
            panic!("AvgPool2d: {message}");
        }
        AvgPool2d {
            shape,
            output: Array2::zeros((0, shape.output_len())),
            grad_input: Array2::zeros((0, shape.input_len())),
        }
    }
}

impl Layer for AvgPool2d {
    fn forward(&mut self, input: ArrayView2<f32>, _train: bool) -> ArrayView2<'_, f32> {
        check_features("AvgPool2d", self.shape.input_len(), input);
        ensure_shape(&mut self.output, input.nrows(), self.shape.output_len());
        let (k, width) = (self.shape.kernel, self.shape.width);
        let scale = 1.0 / (k * k) as f32;
        for (x, mut y) in input.rows().into_iter().zip(self.output.rows_mut()) {
            let x = x.to_slice().expect("contiguous rows");
            let y = y.as_slice_mut().expect("contiguous rows");
            self.shape.for_each_window(|_, out, top_left| {
                let rows = (0..k).map(|ky| top_left + ky * width);
                y[out] = rows.map(|r| x[r..r + k].iter().sum::<f32>()).sum::<f32>() * scale;
            });
        }
        self.output.view()
    }

    fn backward(
        &mut self,
        input: ArrayView2<f32>,
        grad_output: ArrayView2<f32>,
    ) -> ArrayView2<'_, f32> {
        let n = input.nrows();
        assert_eq!(
            grad_output.dim(),
            (n, self.shape.output_len()),
            "AvgPool2d: the gradient's shape does not match the last forward pass"
        );
        ensure_shape(&mut self.grad_input, n, self.shape.input_len());
        self.grad_input.fill(0.0);
        let (k, width) = (self.shape.kernel, self.shape.width);
        let scale = 1.0 / (k * k) as f32;
        for (dy, mut dx) in grad_output
            .rows()
            .into_iter()
            .zip(self.grad_input.rows_mut())
        {
            let dx = dx.as_slice_mut().expect("contiguous rows");
            self.shape.for_each_window(|_, out, top_left| {
                let share = dy[out] * scale;
                for ky in 0..k {
                    let row = top_left + ky * width;
                    dx[row..row + k].iter_mut().for_each(|d| *d += share);
                }
            });
        }
        self.grad_input.view()
    }

    fn output(&self) -> ArrayView2<'_, f32> {
        self.output.view()
    }

    fn grad_input(&self) -> ArrayView2<'_, f32> {
        self.grad_input.view()
    }

    fn describe(&self) -> String {
        format!(
            "AvgPool2d({k}x{k}, stride {s})",
            k = self.shape.kernel,
            s = self.shape.stride
        )
    }

    fn spec(&self) -> LayerSpec {
        LayerSpec::AvgPool2d(self.shape)
    }
}
