//! Flatten: the seam between convolutional and dense layers.
//!
//! In libraries that store images as `(n, channels, height, width)` tensors, Flatten reshapes
//! them into `(n, channels·height·width)` rows for a dense layer. Here every activation is already
//! a `(n, features)` matrix whose rows hold the channels one after the other, so the reshape is
//! the identity on the data:
//!
//! ```text
//! forward:   Y = X          (n, features)
//! backward:  dX = dY
//! ```
//!
//! It stays in the network as the marker of where images stop and feature vectors begin (and as
//! a layer of a saved model's architecture), but a [`Network`](crate::network::Network) skips it:
//! the next layer reads the rows the layer below left, and checks their width itself.

use ndarray::{Array2, ArrayView2};

use super::{check_features, ensure_shape, Layer, LayerSpec};

/// Passes `(n, features)` rows through unchanged.
pub struct Flatten {
    features: usize,
    output: Array2<f32>,
    grad_input: Array2<f32>,
}

impl Flatten {
    /// A flatten of rows of `features` values (`channels·height·width`).
    pub fn new(features: usize) -> Self {
        Flatten {
            features,
            output: Array2::zeros((0, features)),
            grad_input: Array2::zeros((0, features)),
        }
    }
}

impl Layer for Flatten {
    fn forward(&mut self, input: ArrayView2<f32>, _train: bool) -> ArrayView2<'_, f32> {
        check_features("Flatten", self.features, input);
        ensure_shape(&mut self.output, input.nrows(), self.features);
        self.output.assign(&input);
        self.output.view()
    }

    fn backward(
        &mut self,
        _input: ArrayView2<f32>,
        grad_output: ArrayView2<f32>,
    ) -> ArrayView2<'_, f32> {
        ensure_shape(&mut self.grad_input, grad_output.nrows(), self.features);
        self.grad_input.assign(&grad_output);
        self.grad_input.view()
    }

    fn output(&self) -> ArrayView2<'_, f32> {
        self.output.view()
    }

    fn grad_input(&self) -> ArrayView2<'_, f32> {
        self.grad_input.view()
    }
    fn describe(&self) -> String {
        format!("Flatten({})", self.features)
    }

    fn spec(&self) -> LayerSpec {
        LayerSpec::Flatten {
            features: self.features,
        }
    }
}
