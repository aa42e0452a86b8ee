//! A sequential network: layers applied one after the other, trained through the loss.
//!
//! ```text
//! forward:   X → layer 1 → layer 2 → ... → logits → softmax cross-entropy → loss
//! backward:  dL/dlogits → ... → layer 2 → layer 1   (the chain rule, one layer at a time)
//! ```

use ndarray::{s, ArrayView2};
use rand::Rng;

use crate::init::Init;
use crate::layers::{Layer, Linear, Param, ReLU};
use crate::loss::{argmax, loss_and_correct, LossStats, SoftmaxCrossEntropy};

/// Rows per forward pass when evaluating or predicting: bounds memory on large sets (a
/// convolution's patch matrix for 1,000 MNIST images is already 28 MB).
const EVAL_CHUNK: usize = 1_000;

/// A stack of layers ending in logits, with a softmax cross-entropy loss.
pub struct Network {
    layers: Vec<Box<dyn Layer>>,
    loss: SoftmaxCrossEntropy,
}

/// Loss and accuracy over a set of examples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Evaluation {
    /// Mean cross-entropy.
    pub loss: f64,
    /// Fraction of examples classified correctly.
    pub accuracy: f64,
}

impl Network {
    /// A network of the given layers, applied in order. The first layer's input gradient is
    /// never needed, so it is not computed.
    pub fn new(mut layers: Vec<Box<dyn Layer>>) -> Self {
        assert!(!layers.is_empty(), "Network: needs at least one layer");
        layers[0].set_input_grad_needed(false);
        Network {
            layers,
            loss: SoftmaxCrossEntropy::new(),
        }
    }

    /// A multilayer perceptron: `Linear` layers between the given `sizes` (inputs, hidden..., classes)
    /// with a `ReLU` after every one but the last. `mlp(&[784, 32, 16, 10], ..)` is 784-32-16-10.
    pub fn mlp(sizes: &[usize], init: Init, rng: &mut impl Rng) -> Self {
        assert!(
            sizes.len() >= 2,
            "Network::mlp: needs input and output sizes"
        );
        assert!(
            sizes.iter().all(|&s| s > 0),
            "Network::mlp: sizes must be positive, got {sizes:?}"
        );
        let mut layers: Vec<Box<dyn Layer>> = Vec::new();
        for (i, pair) in sizes.windows(2).enumerate() {
            layers.push(Box::new(Linear::new(pair[0], pair[1], init, rng)));
            if i + 2 < sizes.len() {
                layers.push(Box::new(ReLU::new()));
            }
        }
        Network::new(layers)
    }

    /// The layers, in order.
    pub fn layers(&self) -> &[Box<dyn Layer>] {
        &self.layers
    }

    /// One line per layer, such as `Linear(784 -> 32) → ReLU → Linear(32 -> 10)`.
    pub fn describe(&self) -> String {
        let names: Vec<String> = self.layers.iter().map(|l| l.describe()).collect();
        names.join(" → ")
    }

    /// Total number of learnable values.
    pub fn parameter_count(&mut self) -> usize {
        self.params().iter().map(|p| p.value.len()).sum()
    }

    /// Every layer's parameters with their gradients, first layer first.
    pub fn params(&mut self) -> Vec<Param<'_>> {
        self.layers.iter_mut().flat_map(|l| l.params()).collect()
    }

    /// The logits `(n, classes)` for a batch `x` `(n, features)`.
    pub fn forward(&mut self, x: ArrayView2<f32>, train: bool) -> ArrayView2<'_, f32> {
        let (first, rest) = self.layers.split_first_mut().expect("at least one layer");
        let mut activation = first.forward(x, train);
        for layer in rest {
            activation = layer.forward(activation, train);
        }
        activation
    }

    /// Forward and backward on one batch: afterwards every [`Param::grad`] holds `dL/dθ` for the
    /// batch-averaged loss. Returns the loss and the number of correct predictions (before any update).
    pub fn compute_gradients(&mut self, x: ArrayView2<f32>, labels: &[u8]) -> LossStats {
        let (first, rest) = self.layers.split_first_mut().expect("at least one layer");
        let mut activation = first.forward(x, true);
        for layer in rest {
            activation = layer.forward(activation, true);
        }
        let (stats, mut grad) = self.loss.loss_and_grad(activation, labels);
        for layer in self.layers.iter_mut().rev() {
            grad = layer.backward(grad);
        }
        stats
    }

    /// One step of gradient descent on a batch: `θ ← θ - lr · dL/dθ` for every parameter.
    pub fn train_step(&mut self, x: ArrayView2<f32>, labels: &[u8], lr: f32) -> LossStats {
        let stats = self.compute_gradients(x, labels);
        for param in self.params() {
            for (value, grad) in param.value.iter_mut().zip(param.grad) {
                *value -= lr * grad;
            }
        }
        stats
    }

    /// The predicted class of every row of `x`.
    pub fn predict(&mut self, x: ArrayView2<f32>) -> Vec<u8> {
        let mut predictions = Vec::with_capacity(x.nrows());
        for start in (0..x.nrows()).step_by(EVAL_CHUNK) {
            let end = (start + EVAL_CHUNK).min(x.nrows());
            let logits = self.forward(x.slice(s![start..end, ..]), false);
            predictions.extend(
                logits
                    .rows()
                    .into_iter()
                    .map(|row| argmax(row.iter().copied()) as u8),
            );
        }
        predictions
    }

    /// Mean loss and accuracy on `x` `(n, features)` with `labels` `(n)`, in inference mode.
    pub fn evaluate(&mut self, x: ArrayView2<f32>, labels: &[u8]) -> Evaluation {
        assert_eq!(
            x.nrows(),
            labels.len(),
            "evaluate: {} rows but {} labels",
            x.nrows(),
            labels.len()
        );
        let (mut total_loss, mut correct) = (0.0, 0);
        for start in (0..x.nrows()).step_by(EVAL_CHUNK) {
            let end = (start + EVAL_CHUNK).min(x.nrows());
            let logits = self.forward(x.slice(s![start..end, ..]), false);
            let stats = loss_and_correct(logits, &labels[start..end]);
            total_loss += stats.loss * (end - start) as f64;
            correct += stats.correct;
        }
        let n = x.nrows().max(1) as f64;
        Evaluation {
            loss: total_loss / n,
            accuracy: correct as f64 / n,
        }
    }
}
