//! The rectified linear unit: pass positive values, zero the rest.
//!
//! ```text
//! forward:   Y = max(0, X)                    X, Y: (n, features)
//! backward:  dX = dY ⊙ [Y > 0]                the slope is 1 where the unit was on, 0 where off
//! ```
//!
//! `[Y > 0]` equals `[X > 0]`, so the layer only keeps its output.
//!
//! In a network, a ReLU straight after a [`Linear`](super::Linear), [`Conv2d`](super::Conv2d),
//! [`MaxPool2d`](super::MaxPool2d) or [`BatchNorm2d`](super::BatchNorm2d) layer is fused into it
//! ([`Layer::fuse_relu`]): that layer clamps its own output right after computing it, while the
//! values are still in cache, and masks the incoming gradient in its backward pass (the first two
//! with the two functions below; max pooling as it routes each window's gradient to its winner;
//! batch normalisation as it reads the gradient). The ReLU layer stays in the network
//! (it names the architecture) but is skipped: it keeps no copy of the activations.

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
        relu_backward(self.output.view(), grad_output, &mut self.grad_input);
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

/// `Y = max(0, Y)` in place: a ReLU applied by the layer that computed `Y`.
pub(crate) fn relu_in_place(values: &mut [f32]) {
    values.iter_mut().for_each(|y| *y = y.max(0.0));
}

/// `dX = dY ⊙ [Y > 0]`, given the ReLU's output `Y`, all three `(n, features)`: written into
/// `grad_input`, reshaped if need be.
pub(crate) fn relu_backward(
    output: ArrayView2<f32>,
    grad_output: ArrayView2<f32>,
    grad_input: &mut Array2<f32>,
) {
    ensure_shape(grad_input, grad_output.nrows(), grad_output.ncols());
    Zip::from(&mut *grad_input)
        .and(grad_output)
        .and(output)
        .for_each(|dx, &dy, &y| *dx = if y > 0.0 { dy } else { 0.0 });
}
