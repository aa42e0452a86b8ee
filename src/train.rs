//! Stochastic gradient descent over a data set, one epoch at a time.
//!
//! An epoch visits every training example once. With minibatches the examples are shuffled
//! afresh each epoch and cut into batches of `batch_size`, one update per batch (the last batch
//! may be smaller). With full batch, each epoch is a single update with the gradient averaged over
//! the whole training set — plain gradient descent.

use rand::seq::SliceRandom;
use rand::Rng;

use crate::data::Dataset;
use crate::network::Network;

/// How examples are grouped into updates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Batching {
    /// One update per epoch, over all training examples.
    Full,
    /// One update per `usize` examples, reshuffled every epoch.
    Mini(usize),
}

/// Vanilla SGD: `θ ← θ - lr · dL/dθ`.
///
/// An epoch can be run in one call ([`Sgd::epoch`]), or started ([`Sgd::start_epoch`]) and run
/// until done or asked to stop ([`Sgd::run_epoch`]); [`Sgd::progress`] and [`Sgd::restore`] save
/// and restore where an epoch stands, so that an interrupted run can continue exactly.
pub struct Sgd {
    /// The learning rate.
    pub lr: f32,
    /// Full batch or minibatches.
    pub batching: Batching,
    progress: EpochProgress,
}

/// Where an epoch stands.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EpochProgress {
    /// The epoch's order of the training examples (empty for full batch).
    pub order: Vec<u32>,
    /// Examples already used this epoch.
    pub done: usize,
    /// Sum over those examples of their loss.
    pub total_loss: f64,
    /// How many of them were classified correctly.
    pub correct: usize,
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
            progress: EpochProgress::default(),
        }
    }

    /// Trains `network` for one epoch on `data`. `on_batch(done, total, loss)` is called after every
    /// update with the number of examples seen so far, for progress display.
    pub fn epoch(
        &mut self,
        network: &mut Network,
        data: &Dataset,
        rng: &mut impl Rng,
        on_batch: impl FnMut(usize, usize, f64),
    ) -> EpochStats {
        self.start_epoch(data.len(), rng);
        self.run_epoch(network, data, || false, on_batch)
            .expect("never asked to stop")
    }

    /// Begins an epoch over `n` examples: with minibatches, draws their order from `rng`.
    pub fn start_epoch(&mut self, n: usize, rng: &mut impl Rng) {
        assert!(n > 0, "Sgd: empty training set");
        self.progress = EpochProgress::default();
        if self.batch_size(n) < n {
            self.progress.order.extend(0..n as u32);
            self.progress.order.shuffle(rng);
        }
    }

    /// Runs the rest of the current epoch, checking `stop()` after every update. Returns the
    /// epoch's statistics, or `None` if stopped before its end (then [`Sgd::progress`] says where).
    pub fn run_epoch(
        &mut self,
        network: &mut Network,
        data: &Dataset,
        stop: impl Fn() -> bool,
        mut on_batch: impl FnMut(usize, usize, f64),
    ) -> Option<EpochStats> {
        let n = data.len();
        let batch_size = self.batch_size(n);
        let lr = self.lr;
        while self.progress.done < n {
            let (start, end) = (self.progress.done, (self.progress.done + batch_size).min(n));
            let stats = if batch_size < n {
                network.train_step_on(data, &self.progress.order[start..end], lr)
            } else {
                // Full batch: the whole set in its stored order (order does not change a sum).
                network.train_step(data.images.view(), &data.labels, lr)
            };
            self.progress.done = end;
            self.progress.total_loss += stats.loss * (end - start) as f64;
            self.progress.correct += stats.correct;
            on_batch(end, n, stats.loss);
            if end < n && stop() {
                return None;
            }
        }
        Some(EpochStats {
            loss: self.progress.total_loss / n as f64,
            accuracy: self.progress.correct as f64 / n as f64,
        })
    }

    /// Where the current epoch stands.
    pub fn progress(&self) -> &EpochProgress {
        &self.progress
    }

    /// Continues an epoch from where `progress` says it stood.
    pub fn restore(&mut self, progress: EpochProgress) {
        self.progress = progress;
    }

    fn batch_size(&self, n: usize) -> usize {
        match self.batching {
            Batching::Mini(size) => size.min(n),
            Batching::Full => n,
        }
    }
}
