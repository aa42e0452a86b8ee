//! A whole training run: epochs of a [`Trainer`] over MNIST with the bookkeeping around them —
//! validation and test evaluations, periodic checkpoints, stopping on request (Ctrl-C) with a
//! checkpoint to resume from, and stopping at once when the loss blows up.
//!
//! The command line drives this type and shows what it reports through an [`Observer`]; a program
//! of its own can do the same:
//!
//! ```text
//! let fit = Fit { data: &mnist, epochs: 10, evaluate_every: 1, test_every: None, checkpoint: None, augment: None,
//!                 training: &record, keep_last_finite: false };
//! let (outcome, records) = fit.run(&mut network, &mut trainer, &mut rng, None, || false, &mut ())?;
//! ```

use std::cell::Cell;
use std::path::Path;
use std::time::Instant;

use ndarray::Array2;
use serde::Serialize;

use crate::augment::Augmentation;
use crate::checkpoint::{self, Position};
use crate::data::{Dataset, Mnist};
use crate::model::{self, ModelError, Training};
use crate::network::{Evaluation, Network};
use crate::train::{EpochProgress, StepReport, Trainer};
use crate::SeededRng;

/// Mean cross-entropy starts near ln 10 ≈ 2.3. Beyond this, the network gives the right digits a
/// probability below e^-1000: the run has blown up, even if the numbers are still finite.
pub const DIVERGED_LOSS: f64 = 1000.0;

/// Whether a loss means the run has blown up: not finite, or above [`DIVERGED_LOSS`].
pub fn diverged(loss: f64) -> bool {
    !loss.is_finite() || loss > DIVERGED_LOSS
}

/// One epoch's figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EpochRecord {
    /// The epoch's number, from 1.
    pub epoch: usize,
    /// Mean training loss, each batch measured before its update.
    pub train_loss: f64,
    /// Training accuracy, likewise.
    pub train_accuracy: f64,
    /// Validation loss after the epoch, on the epochs that evaluate it.
    pub val_loss: Option<f64>,
    /// Validation accuracy, likewise.
    pub val_accuracy: Option<f64>,
    /// The learning rate of the epoch's last step.
    pub lr: f64,
    /// Seconds of training (the evaluation excluded).
    pub seconds: f64,
}

/// What a run shows as it goes. Every method does nothing unless implemented.
pub trait Observer {
    /// After every step of epoch `epoch`.
    fn step(&mut self, _epoch: usize, _step: &StepReport) {}
    /// After every epoch, with `evaluated` true on the epochs that evaluated the validation set
    /// (every `evaluate_every` epochs and the last), and the seconds since the run started.
    fn epoch(&mut self, _record: &EpochRecord, _evaluated: bool, _elapsed: f64) {}
    /// After the test set's evaluation every `test_every` epochs.
    fn test(&mut self, _epoch: usize, _test: &Evaluation) {}
}

/// An observer that shows nothing.
impl Observer for () {}

/// Where and how often a run writes its checkpoint.
pub struct CheckpointTarget<'a> {
    /// The file.
    pub path: &'a Path,
    /// Also write it every this many epochs (not after the last).
    pub every: Option<usize>,
}

/// A training run's settings.
pub struct Fit<'a> {
    /// The data: training set, optional validation set, test set, preprocessing.
    pub data: &'a Mnist,
    /// The run's last epoch.
    pub epochs: usize,
    /// Evaluate the validation set (when there is one) every this many epochs, and after the last.
    pub evaluate_every: usize,
    /// Evaluate the test set every this many epochs.
    pub test_every: Option<usize>,
    /// Where stopping on request and periodic checkpoints write.
    pub checkpoint: Option<CheckpointTarget<'a>>,
    /// How the model is trained, recorded in checkpoints and in the last finite state.
    pub training: &'a Training,
    /// Keep the model file of the state before each epoch, to return it if the epoch diverges.
    pub keep_last_finite: bool,
    /// Train each epoch on newly distorted copies of the training images.
    pub augment: Option<Augmented<'a>>,
}

/// Distorted training images, drawn anew every epoch.
pub struct Augmented<'a> {
    /// The distortions.
    pub augmentation: &'a Augmentation,
    /// The training images as stored (784 bytes each), in the order of the training set.
    pub pixels: &'a [u8],
    /// The run's seed (epoch `e`'s images come from it and `e`, see [`Augmentation::epoch_inputs`]).
    pub seed: u64,
    /// The run's last this many epochs train on the images as stored: the network ends on the
    /// distribution it will be tested on, after the distortions have taught it invariances.
    pub clean_epochs: usize,
}

/// Where a resumed run starts.
pub struct Start {
    /// Complete epochs.
    pub epochs_done: usize,
    /// How far the next epoch got.
    pub progress: EpochProgress,
}

/// How a run ended.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    /// Every epoch ran.
    Finished,
    /// Stopped on request after `epochs_done` epochs and `examples_done` examples of the next; the
    /// checkpoint (if a target was given) holds everything needed to continue exactly.
    Interrupted {
        /// Complete epochs.
        epochs_done: usize,
        /// Examples of the next epoch already used.
        examples_done: usize,
    },
    /// The loss blew up in epoch `epoch` (see [`diverged`]).
    Diverged {
        /// The epoch.
        epoch: usize,
        /// The loss that blew up.
        loss: f64,
        /// The model file of the state before that epoch, if [`Fit::keep_last_finite`].
        last_finite: Option<Vec<u8>>,
    },
}

impl Fit<'_> {
    /// Trains `network` with `trainer` from `start` (the first epoch if `None`) to the last epoch,
    /// checking `stop()` after every step. Returns how the run ended and the records of the
    /// epochs it completed; fails only if a checkpoint cannot be written.
    pub fn run(
        &self,
        network: &mut Network,
        trainer: &mut Trainer,
        rng: &mut SeededRng,
        start: Option<Start>,
        stop: impl Fn() -> bool,
        observer: &mut impl Observer,
    ) -> Result<(Outcome, Vec<EpochRecord>), ModelError> {
        let n_train = self.data.train.len();
        let (first_epoch, mut resumed) = match start {
            Some(start) => (
                start.epochs_done + 1,
                (start.progress.done > 0).then_some(start.progress),
            ),
            None => (1, None),
        };
        let mut records = Vec::new();
        let started = Instant::now();
        // The distorted training set, rewritten every epoch (its labels do not change).
        let mut augmented = self.augment.as_ref().map(|_| {
            let train = &self.data.train;
            Dataset::new(Array2::zeros(train.images.dim()), train.labels.clone())
        });
        for epoch in first_epoch..=self.epochs {
            let epoch_start = Instant::now();
            let before = self
                .keep_last_finite
                .then(|| model::to_bytes(network, &self.data.preprocessing, self.training));
            // A resumed epoch is drawn again from the same seed: the same images.
            let distorted = match (&self.augment, &mut augmented) {
                (Some(a), Some(data)) if epoch + a.clean_epochs <= self.epochs => {
                    let (pixels, preprocessing) = (a.pixels, &self.data.preprocessing);
                    a.augmentation.epoch_inputs(
                        pixels,
                        a.seed,
                        epoch as u64,
                        preprocessing,
                        &mut data.images,
                    );
                    Some(&*data)
                }
                _ => None,
            };
            let train = distorted.unwrap_or(&self.data.train);
            match resumed.take() {
                Some(progress) => trainer.restore(progress),
                None => trainer.start_epoch(n_train, rng),
            }
            // Stop after the current step on request, or as soon as a batch's loss blows up.
            let blown_up = Cell::new(None);
            let mut lr = trainer.optimizer.lr;
            let stats = trainer.run_epoch(
                network,
                train,
                rng,
                || stop() || blown_up.get().is_some(),
                |step| {
                    if diverged(step.loss) {
                        blown_up.set(Some(step.loss));
                    }
                    lr = step.lr;
                    observer.step(epoch, &step);
                },
            );
            let blown_up = match (&stats, blown_up.get()) {
                (_, Some(loss)) => Some(loss),
                (Some(stats), None) if diverged(stats.loss) => Some(stats.loss),
                _ => None,
            };
            if let Some(loss) = blown_up {
                let outcome = Outcome::Diverged {
                    epoch,
                    loss,
                    last_finite: before,
                };
                return Ok((outcome, records));
            }
            let Some(stats) = stats else {
                let position = Position {
                    epochs_done: epoch - 1,
                    progress: trainer.progress(),
                    rng,
                    optimizer: &trainer.optimizer,
                };
                return self.interrupt(network, &position, records);
            };
            let mut record = EpochRecord {
                epoch,
                train_loss: stats.loss,
                train_accuracy: stats.accuracy,
                val_loss: None,
                val_accuracy: None,
                lr,
                seconds: epoch_start.elapsed().as_secs_f64(),
            };
            let evaluated = epoch % self.evaluate_every == 0 || epoch == self.epochs;
            if let (true, Some(validation)) = (evaluated, &self.data.validation) {
                let result = network.evaluate(validation.images.view(), &validation.labels);
                record.val_loss = Some(result.loss);
                record.val_accuracy = Some(result.accuracy);
            }
            observer.epoch(&record, evaluated, started.elapsed().as_secs_f64());
            records.push(record);
            if self.test_every.is_some_and(|every| epoch % every == 0) {
                let test = &self.data.test;
                observer.test(epoch, &network.evaluate(test.images.view(), &test.labels));
            }
            let position = Position {
                epochs_done: epoch,
                progress: &EpochProgress::default(),
                rng,
                optimizer: &trainer.optimizer,
            };
            if let Some(target) = &self.checkpoint {
                if target.every.is_some_and(|every| epoch % every == 0) && epoch < self.epochs {
                    self.write_checkpoint(target.path, network, &position)?;
                }
            }
            if stop() && epoch < self.epochs {
                return self.interrupt(network, &position, records);
            }
        }
        Ok((Outcome::Finished, records))
    }

    /// Writes the checkpoint (if there is a target) and reports the interruption.
    fn interrupt(
        &self,
        network: &Network,
        position: &Position,
        records: Vec<EpochRecord>,
    ) -> Result<(Outcome, Vec<EpochRecord>), ModelError> {
        if let Some(target) = &self.checkpoint {
            self.write_checkpoint(target.path, network, position)?;
        }
        let outcome = Outcome::Interrupted {
            epochs_done: position.epochs_done,
            examples_done: position.progress.done,
        };
        Ok((outcome, records))
    }

    fn write_checkpoint(
        &self,
        path: &Path,
        network: &Network,
        position: &Position,
    ) -> Result<(), ModelError> {
        let preprocessing = &self.data.preprocessing;
        checkpoint::save(path, network, preprocessing, self.training, position)
    }
}
