//! Softmax cross-entropy: the loss of a classifier that outputs one score (logit) per class.
//!
//! For one example with logits `z` (10 values) and true class `y`:
//!
//! ```text
//! p_j  = exp(z_j) / Σ_k exp(z_k)                        softmax: probabilities
//! loss = -log p_y = log Σ_k exp(z_k) - z_y              cross-entropy with the one-hot target
//! ```
//!
//! Stability: `exp` overflows for logits above ~88 in f32, so we subtract `m = max_k z_k` first;
//! `log Σ exp(z_k) = m + log Σ exp(z_k - m)` is exact and every exponent is <= 0.
//!
//! Gradient: `d loss / d z_j = p_j - [j = y]` (the softmax Jacobian and the log cancel to this).
//! Averaged over a batch of `n` examples, both loss and gradient carry a factor `1/n`.
//!
//! Label smoothing (Szegedy et al., 2016; PyTorch's `CrossEntropyLoss(label_smoothing=ε)`) trains
//! against a softened target instead of the one-hot one, so the network is not pushed to make its
//! logits ever larger for examples it already classifies right. With `K` classes:
//!
//! ```text
//! q_j  = (1 - ε)·[j = y] + ε/K                          the target: ε of its mass spread evenly
//! loss = -Σ_j q_j log p_j = (1 - ε)·(-log p_y) + ε · (1/K) Σ_j (-log p_j)
//! d loss / d z_j = p_j - q_j                            (Σ_j q_j = 1, so the same cancellation)
//! ```

use ndarray::{Array2, ArrayView2, Axis, Zip};

use crate::layers::ensure_shape;

/// Computes the batch-averaged softmax cross-entropy and keeps its gradient buffer between calls.
#[derive(Default)]
pub struct SoftmaxCrossEntropy {
    /// `dL/dZ`, `(n, classes)`
    grad: Array2<f32>,
    /// ε, the share of the target spread evenly over the classes (0: the one-hot target).
    label_smoothing: f32,
}

/// What one evaluation of the loss found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LossStats {
    /// Mean cross-entropy over the batch.
    pub loss: f64,
    /// How many rows had their largest logit at the true class.
    pub correct: usize,
}

impl SoftmaxCrossEntropy {
    /// A loss with empty buffers.
    pub fn new() -> Self {
        Self::default()
    }

    /// The loss against targets smoothed by `epsilon` (see the module documentation).
    ///
    /// Panics unless `0 <= epsilon <= 1`.
    pub fn with_label_smoothing(epsilon: f32) -> Self {
        assert!(
            (0.0..=1.0).contains(&epsilon),
            "softmax cross-entropy: label smoothing must be between 0 and 1, got {epsilon}"
        );
        SoftmaxCrossEntropy {
            label_smoothing: epsilon,
            ..Self::default()
        }
    }

    /// ε, the label smoothing this loss trains with.
    pub fn label_smoothing(&self) -> f32 {
        self.label_smoothing
    }

    /// Mean loss of `logits` `(n, classes)` against `labels` `(n)` (smoothed, if this loss
    /// smooths them), and `dL/d logits` `(n, classes)`.
    ///
    /// Panics if the shapes disagree or a label is not a valid class.
    pub fn loss_and_grad(
        &mut self,
        logits: ArrayView2<f32>,
        labels: &[u8],
    ) -> (LossStats, ArrayView2<'_, f32>) {
        let (n, classes) = logits.dim();
        check_labels(n, classes, labels);
        ensure_shape(&mut self.grad, n, classes);
        let mut total = 0.0f64;
        let mut correct = 0;
        let scale = 1.0 / n as f32;
        let epsilon = self.label_smoothing;
        // Every class's share of the target's spread mass, and the true class's own share, per row.
        let spread = epsilon / classes as f32 * scale;
        let own = (1.0 - epsilon) * scale;
        Zip::from(self.grad.axis_iter_mut(Axis(0)))
            .and(logits.axis_iter(Axis(0)))
            .and(labels)
            .for_each(|mut grad, z, &label| {
                let y = label as usize;
                let max = z.fold(f32::NEG_INFINITY, |m, &v| m.max(v));
                // grad <- exp(z - max), then normalise into probabilities.
                Zip::from(&mut grad)
                    .and(&z)
                    .for_each(|g, &v| *g = (v - max).exp());
                let sum: f32 = grad.sum();
                // -log p_j = log Σ exp(z_k) - z_j
                let log_sum_exp = max + sum.ln();
                let true_class = (log_sum_exp - z[y]) as f64;
                // The one-hot loss needs the true class's term alone.
                total += if epsilon == 0.0 {
                    true_class
                } else {
                    let mean_all: f64 =
                        z.iter().map(|&v| (log_sum_exp - v) as f64).sum::<f64>() / classes as f64;
                    (1.0 - epsilon as f64) * true_class + epsilon as f64 * mean_all
                };
                correct += usize::from(argmax(z.iter().copied()) == y);
                // p_j - q_j, over n
                grad.mapv_inplace(|e| e / sum * scale - spread);
                grad[y] -= own;
            });
        let stats = LossStats {
            loss: total / n as f64,
            correct,
        };
        (stats, self.grad.view())
    }
}

impl SoftmaxCrossEntropy {
    /// `dL/d logits` of the last [`loss_and_grad`](Self::loss_and_grad).
    pub fn grad(&self) -> ArrayView2<'_, f32> {
        self.grad.view()
    }
}

/// Mean loss and number correct, without a gradient (for evaluation).
pub fn loss_and_correct(logits: ArrayView2<f32>, labels: &[u8]) -> LossStats {
    let (n, classes) = logits.dim();
    check_labels(n, classes, labels);
    let mut total = 0.0f64;
    let mut correct = 0;
    for (z, &label) in logits.axis_iter(Axis(0)).zip(labels) {
        let y = label as usize;
        let max = z.fold(f32::NEG_INFINITY, |m, &v| m.max(v));
        let sum: f32 = z.iter().map(|&v| (v - max).exp()).sum();
        total += (max + sum.ln() - z[y]) as f64;
        correct += usize::from(argmax(z.iter().copied()) == y);
    }
    LossStats {
        loss: total / n as f64,
        correct,
    }
}

/// The softmax of every row of `logits` `(n, classes)`: each row becomes probabilities.
pub fn softmax_rows(logits: ArrayView2<f32>) -> Array2<f32> {
    let mut p = logits.to_owned();
    for mut row in p.rows_mut() {
        let max = row.fold(f32::NEG_INFINITY, |m, &v| m.max(v));
        row.mapv_inplace(|v| (v - max).exp());
        let sum = row.sum();
        row /= sum;
    }
    p
}

/// Index of the largest value (the first one on ties); the predicted class of a row of logits.
pub fn argmax(values: impl IntoIterator<Item = f32>) -> usize {
    let mut best = (0, f32::NEG_INFINITY);
    for (i, v) in values.into_iter().enumerate() {
        if v > best.1 {
            best = (i, v);
        }
    }
    best.0
}

fn check_labels(n: usize, classes: usize, labels: &[u8]) {
    assert_eq!(
        labels.len(),
        n,
        "softmax cross-entropy: {n} rows of logits but {} labels",
        labels.len()
    );
    if let Some(&bad) = labels.iter().find(|&&l| l as usize >= classes) {
        panic!("softmax cross-entropy: label {bad} is not one of the {classes} classes");
    }
}
