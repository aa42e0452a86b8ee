//! The rectified linear unit: pass positive values, zero the rest.
//!
//! ```text
//! forward:   Y = max(0, X)                    X, Y: (n, features)
//! backward:  dX = dY ⊙ [Y > 0]                the slope is 1 where the unit was on, 0 where off
//! ```
//!
//! `[Y > 0]` equals `[X > 0]`, so the layer only keeps its output.

use ndarray::{Array2, ArrayView2, Zip};

use super::{ensure_shape, Layer, LayerSpec};

/// `Y = max(0, X)`, element by element.
#[derive(Default)]
pub struct ReLU {
    /// `Y`, `(n, features)`; also the mask the backward pass needs.
    output: Array2<f32>,
    /// `dX`, `(n, features)`
    grad_input: Array2<f32>,
}

impl ReLU {
    /// A ReLU layer (it has no parameters).
    pub fn new() -> Self {
        Self::default()
    }
}

impl Layer for ReLU {
    fn forward(&mut self, input: ArrayView2<f32>, _train: bool) -> ArrayView2<'_, f32> {
        ensure_shape(&mut self.output, input.nrows(), input.ncols());
        Zip::from(&mut self.output)
            .and(&input)
            .for_each(|y, &x| *y = x.max(0.0));
        self.output.view()
    }

    fn backward(
        &mut self,
        _input: ArrayView2<f32>,
        grad_output: ArrayView2<f32>,
    ) -> ArrayView2<'_, f32> {
        assert_eq!(
            grad_output.dim(),
            self.output.dim(),
            "ReLU: gradient shape does not match the last forward pass"
        );
        ensure_shape(
            &mut self.grad_input,
            grad_output.nrows(),
            grad_output.ncols(),
        );
        Zip::from(&mut self.grad_input)
            .and(&grad_output)
            .and(&self.output)
            .for_each(|dx, &dy, &y| *dx = if y > 0.0 { dy } else { 0.0 });
        self.grad_input.view()
    }

    fn output(&self) -> ArrayView2<'_, f32> {
        self.output.view()
    }

    fn grad_input(&self) -> ArrayView2<'_, f32> {
        self.grad_input.view()
    }
    fn describe(&self) -> String {
        "ReLU".to_string()
    }

    fn spec(&self) -> LayerSpec {
        LayerSpec::ReLU
    }
}
