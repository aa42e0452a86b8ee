//! Stochastic gradient descent over a data set, one epoch at a time.
//!
//! An epoch visits every training example once. With minibatches the examples are shuffled
//! afresh each epoch and cut into batches of `batch_size`, one update per batch (the last batch
//! may be smaller). With full batch, each epoch is a single update with the gradient averaged over
//! the whole training set — plain gradient descent.

use ndarray::{Array2, ArrayView2};
use rand::seq::SliceRandom;
use rand::Rng;

use crate::data::Dataset;
use crate::layers::ensure_shape;
use crate::network::Network;

/// How examples are grouped into updates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Batching {
    /// One update per epoch, over all training examples.
    Full,
    /// One update per `usize` examples, reshuffled every epoch.
    Mini(usize),
}

/// Vanilla SGD: `θ ← θ - lr · dL/dθ`, with a buffer for gathering shuffled batches.
pub struct Sgd {
    /// The learning rate.
    pub lr: f32,
    /// Full batch or minibatches.
    pub batching: Batching,
    order: Vec<usize>,
    batch_images: Array2<f32>,
    batch_labels: Vec<u8>,
}

/// Training loss and accuracy over one epoch, measured on each batch before its update.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EpochStats {
    /// Mean training loss over the epoch's examples.
    pub loss: f64,
    /// Fraction of the epoch's examples that were classified correctly.
    pub accuracy: f64,
}

impl Sgd {
    /// SGD with learning rate `lr`. `Mini(n)` with `n` at least the training set size is full batch.
    pub fn new(lr: f32, batching: Batching) -> Self {
        assert!(
            lr.is_finite() && lr > 0.0,
            "Sgd: learning rate must be positive and finite, got {lr}"
        );
        assert!(
            batching != Batching::Mini(0),
            "Sgd: batch size must be positive"
        );
        Sgd {
            lr,
            batching,
            order: Vec::new(),
            batch_images: Array2::zeros((0, 0)),
            batch_labels: Vec::new(),
        }
    }

    /// Trains `network` for one epoch on `data`. `on_batch(done, total, loss)` is called after every
    /// update with the number of examples seen so far, for progress display.
    pub fn epoch(
        &mut self,
        network: &mut Network,
        data: &Dataset,
        rng: &mut impl Rng,
        mut on_batch: impl FnMut(usize, usize, f64),
    ) -> EpochStats {
        let n = data.len();
        assert!(n > 0, "Sgd: empty training set");
        let batch_size = match self.batching {
            Batching::Mini(size) if size < n => size,
            _ => {
                // Full batch: the whole set in its stored order (order does not change a sum).
                let stats = network.train_step(data.images.view(), &data.labels, self.lr);
                on_batch(n, n, stats.loss);
                return EpochStats {
                    loss: stats.loss,
                    accuracy: stats.correct as f64 / n as f64,
                };
            }
        };
        self.order.clear();
        self.order.extend(0..n);
        self.order.shuffle(rng);
        let lr = self.lr;
        let (mut total_loss, mut correct) = (0.0, 0);
        for start in (0..n).step_by(batch_size) {
            let end = (start + batch_size).min(n);
            let (images, labels) = self.gather(data, start, end);
            let stats = network.train_step(images, labels, lr);
            total_loss += stats.loss * (end - start) as f64;
            correct += stats.correct;
            on_batch(end, n, stats.loss);
        }
        EpochStats {
            loss: total_loss / n as f64,
            accuracy: correct as f64 / n as f64,
        }
    }

    /// Copies the examples `order[start..end]` into the batch buffers.
    fn gather(&mut self, data: &Dataset, start: usize, end: usize) -> (ArrayView2<'_, f32>, &[u8]) {
        let indices = &self.order[start..end];
        ensure_shape(&mut self.batch_images, indices.len(), data.images.ncols());
        self.batch_labels.clear();
        for (mut row, &i) in self.batch_images.rows_mut().into_iter().zip(indices) {
            row.assign(&data.images.row(i));
            self.batch_labels.push(data.labels[i]);
        }
        (self.batch_images.view(), &self.batch_labels)
    }
}
