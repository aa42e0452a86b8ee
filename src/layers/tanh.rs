//! The hyperbolic tangent: a smooth squashing of every value into (-1, 1).
//!
//! ```text
//! forward:   Y = tanh(X)                      X, Y: (n, features)
//! backward:  dX = dY ⊙ (1 - Y²)               since d tanh(x)/dx = 1 - tanh²(x)
//! ```
//!
//! The derivative needs only the output, so the layer keeps `Y` and not `X`.

use ndarray::{Array2, ArrayView2, Zip};

use super::{ensure_shape, Layer, LayerSpec};

/// `Y = tanh(X)`, element by element.
#[derive(Default)]
pub struct Tanh {
    /// `Y`, `(n, features)`
    output: Array2<f32>,
    /// `dX`, `(n, features)`
    grad_input: Array2<f32>,
}

impl Tanh {
    /// A tanh layer (it has no parameters).
    pub fn new() -> Self {
        Self::default()
    }
}

impl Layer for Tanh {
    fn forward(&mut self, input: ArrayView2<f32>, _train: bool) -> ArrayView2<'_, f32> {
        ensure_shape(&mut self.output, input.nrows(), input.ncols());
        Zip::from(&mut self.output)
            .and(&input)
            .for_each(|y, &x| *y = x.tanh());
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
            "Tanh: gradient shape does not match the last forward pass"
        );
        ensure_shape(
            &mut self.grad_input,
            grad_output.nrows(),
            grad_output.ncols(),
        );
        Zip::from(&mut self.grad_input)
            .and(grad_output)
            .and(&self.output)
            .for_each(|dx, &dy, &y| *dx = dy * (1.0 - y * y));
        self.grad_input.view()
    }

    fn output(&self) -> ArrayView2<'_, f32> {
        self.output.view()
    }

    fn grad_input(&self) -> ArrayView2<'_, f32> {
        self.grad_input.view()
    }

    fn describe(&self) -> String {
        "Tanh".to_string()
    }

    fn spec(&self) -> LayerSpec {
        LayerSpec::Tanh
    }
}
