//! Training epochs: the examples grouped into batches, one optimiser step per batch.
//!
//! An epoch visits every training example once. With minibatches the examples are shuffled
//! afresh each epoch and cut into batches of `batch_size`, one update per batch (the last batch
//! may be smaller). With full batch, each epoch is a single update with the gradient averaged over
//! the whole training set — plain gradient descent. Before every step the schedule, if any, sets
//! the optimiser's learning rate from the number of steps taken.

use rand::seq::SliceRandom;
use rand::Rng;

use crate::data::Dataset;
use crate::network::Network;
use crate::optim::Optimizer;
use crate::schedule::LrSchedule;

/// How examples are grouped into updates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Batching {
    /// One update per epoch, over all training examples.
    Full,
    /// One update per `usize` examples, reshuffled every epoch.
    Mini(usize),
}

impl Batching {
    /// Examples per update on a training set of `n`.
    pub fn batch_size(self, n: usize) -> usize {
        match self {
            Batching::Mini(size) => size.min(n),
            Batching::Full => n,
        }
    }

    /// Updates per epoch on a training set of `n`.
    pub fn steps_per_epoch(self, n: usize) -> usize {
        n.div_ceil(self.batch_size(n).max(1))
    }
}

/// Runs epochs of an optimiser over a data set.
///
/// An epoch can be run in one call ([`Trainer::epoch`]), or started ([`Trainer::start_epoch`]) and
/// run until done or asked to stop ([`Trainer::run_epoch`]); [`Trainer::progress`] and
/// [`Trainer::restore`] save and restore where an epoch stands, so that an interrupted run can
/// continue exactly (with the optimiser's state, which [`crate::checkpoint`] saves too).
pub struct Trainer {
    /// The update rule, its learning rate and state.
    pub optimizer: Optimizer,
    /// Full batch or minibatches.
    pub batching: Batching,
    /// Sets the learning rate before every step (none: the optimiser's rate throughout).
    pub schedule: Option<LrSchedule>,
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

/// What a step reports, for progress display.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepReport {
    /// Examples of the epoch used so far.
    pub done: usize,
    /// Examples in the epoch.
    pub total: usize,
    /// The batch's loss, before the update.
    pub loss: f64,
    /// The learning rate of the step.
    pub lr: f64,
}

impl Trainer {
    /// Epochs of `optimizer` with the given batching. `Mini(n)` with `n` at least the training set
    /// size is full batch.
    pub fn new(optimizer: Optimizer, batching: Batching) -> Self {
        assert!(
            optimizer.lr.is_finite() && optimizer.lr > 0.0,
            "Trainer: learning rate must be positive and finite, got {}",
            optimizer.lr
        );
        assert!(
            batching != Batching::Mini(0),
            "Trainer: batch size must be positive"
        );
        Trainer {
            optimizer,
            batching,
            schedule: None,
            progress: EpochProgress::default(),
        }
    }

    /// Plain SGD with learning rate `lr`: `θ ← θ - lr · dL/dθ`.
    pub fn sgd(lr: f32, batching: Batching) -> Self {
        Trainer::new(Optimizer::sgd(lr as f64), batching)
    }

    /// Trains `network` for one epoch on `data`. `on_step` is called after every update, for
    /// progress display.
    pub fn epoch(
        &mut self,
        network: &mut Network,
        data: &Dataset,
        rng: &mut impl Rng,
        on_step: impl FnMut(StepReport),
    ) -> EpochStats {
        self.start_epoch(data.len(), rng);
        self.run_epoch(network, data, rng, || false, on_step)
            .expect("never asked to stop")
    }

    /// Begins an epoch over `n` examples: with minibatches, draws their order from `rng`.
    pub fn start_epoch(&mut self, n: usize, rng: &mut impl Rng) {
        assert!(n > 0, "Trainer: empty training set");
        self.progress = EpochProgress::default();
        if self.batching.batch_size(n) < n {
            self.progress.order.extend(0..n as u32);
            self.progress.order.shuffle(rng);
        }
    }

    /// Runs the rest of the current epoch, checking `stop()` after every update. Returns the
    /// epoch's statistics, or `None` if stopped before its end (then [`Trainer::progress`] says
    /// where). `rng` draws the randomness of layers such as dropout, one number per step (none
    /// for a network without such layers).
    pub fn run_epoch(
        &mut self,
        network: &mut Network,
        data: &Dataset,
        rng: &mut impl Rng,
        stop: impl Fn() -> bool,
        mut on_step: impl FnMut(StepReport),
    ) -> Option<EpochStats> {
        let n = data.len();
        let batch_size = self.batching.batch_size(n);
        while self.progress.done < n {
            let (start, end) = (self.progress.done, (self.progress.done + batch_size).min(n));
            if let Some(schedule) = &self.schedule {
                self.optimizer.lr = schedule.lr(self.optimizer.steps());
            }
            if network.is_random() {
                network.seed_step(rng.random());
            }
            let lr = self.optimizer.lr;
            let stats = if batch_size < n {
                network.train_step_on(data, &self.progress.order[start..end], &mut self.optimizer)
            } else {
                // Full batch: the whole set in its stored order (order does not change a sum).
                network.train_step(data.images.view(), &data.labels, &mut self.optimizer)
            };
            self.progress.done = end;
            self.progress.total_loss += stats.loss * (end - start) as f64;
            self.progress.correct += stats.correct;
            on_step(StepReport {
                done: end,
                total: n,
                loss: stats.loss,
                lr,
            });
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
}
