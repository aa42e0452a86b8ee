//! The training loop as the command line shows it: configuration, progress bar, a line per
//! report, and the final evaluation.

use std::cell::Cell;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use mnist_nn::atomic::write_atomically;
use mnist_nn::checkpoint::{self, Position};
use mnist_nn::data::{Mnist, Preprocessing};
use mnist_nn::model::{self, Training};
use mnist_nn::network::Network;
use mnist_nn::optim::{Optimizer, OptimizerSettings};
use mnist_nn::schedule::{LrSchedule, Schedule};
use mnist_nn::train::{Batching, EpochProgress, Trainer};
use mnist_nn::SeededRng;

use super::plot::plot_curves;

/// Everything a training run needs besides the network.
pub struct Run<'a> {
    /// Printed first: `mnist-nn train`, `mnist-nn experiment mlp`, ...
    pub title: String,
    /// Lines of configuration (label, value) printed under the title.
    pub settings: Vec<(&'static str, String)>,
    /// The architecture table, printed after the configuration (`--summary`).
    pub summary: Option<String>,
    pub mnist: &'a Mnist,
    pub data_dir: &'a Path,
    /// The base learning rate.
    pub lr: f32,
    pub batching: Batching,
    pub optimizer: OptimizerSettings,
    pub schedule: Schedule,
    pub warmup_steps: u64,
    pub epochs: usize,
    /// A report line every this many epochs.
    pub log_every: usize,
    /// Also evaluate on the test set every this many epochs.
    pub test_every: Option<usize>,
    /// The model this run continues, if any.
    pub from: Option<&'a Path>,
    /// Where to save the trained model.
    pub save: Option<&'a Path>,
    /// Where to write the per-epoch records (`.csv` or `.json`).
    pub metrics: Option<&'a Path>,
    /// Where to draw the training curves (PNG).
    pub plot: Option<&'a Path>,
    /// How the model was trained, for the saved file.
    pub record: Training,
    /// Where Ctrl-C and `--checkpoint-every` write the checkpoint.
    pub checkpoint: &'a Path,
    /// Write a checkpoint every this many epochs.
    pub checkpoint_every: Option<usize>,
    /// Where a resumed run starts.
    pub resume: Option<Resume>,
}

/// Where a resumed run starts: epochs done, the progress of the next one, and the optimiser with
/// its state.
pub struct Resume {
    pub epochs_done: usize,
    pub progress: EpochProgress,
    pub optimizer: Optimizer,
}

/// The error of a run stopped by Ctrl-C after writing its checkpoint (exit status 130).
#[derive(Debug)]
pub struct Interrupted;

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("interrupted")
    }
}

impl std::error::Error for Interrupted {}

/// Set by Ctrl-C; the training loop checks it after every update.
static STOP: AtomicBool = AtomicBool::new(false);

/// On the first Ctrl-C, ask the training loop to stop after its current step; on a second, quit.
fn catch_ctrl_c() {
    let _ = ctrlc::set_handler(|| {
        if STOP.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
    });
}

/// One epoch's figures, as written by `--metrics`.
#[derive(Debug, Clone, Serialize)]
pub struct EpochRecord {
    pub epoch: usize,
    pub train_loss: f64,
    pub train_accuracy: f64,
    pub val_loss: Option<f64>,
    pub val_accuracy: Option<f64>,
    /// The learning rate of the epoch's last step.
    pub lr: f64,
    pub seconds: f64,
}

/// Trains `network` as `run` says, printing as it goes; ends with the test accuracy line.
pub fn fit(network: &mut Network, mut run: Run, rng: &mut SeededRng) -> Result<()> {
    let run = &mut run;
    let mnist = run.mnist;
    let n_train = mnist.train.len();
    print_configuration(network, run);

    let (optimizer, first_epoch, mut resume_progress) = match run.resume.take() {
        Some(Resume {
            epochs_done,
            progress,
            optimizer,
        }) => {
            check_progress(&progress, n_train)?;
            (
                optimizer,
                epochs_done + 1,
                (progress.done > 0).then_some(progress),
            )
        }
        None => (Optimizer::new(run.optimizer, run.lr as f64), 1, None),
    };
    let mut trainer = Trainer::new(optimizer, run.batching);
    let steps_per_epoch = run.batching.steps_per_epoch(n_train) as u64;
    trainer.schedule = Some(LrSchedule {
        base_lr: run.lr as f64,
        schedule: run.schedule,
        warmup_steps: run.warmup_steps,
        steps_per_epoch,
        total_steps: steps_per_epoch * run.epochs as u64,
    });
    catch_ctrl_c();
    let bar = progress_bar(
        (run.epochs * n_train) as u64,
        "{elapsed_precise} [{bar:30}] {percent:>3}% eta {eta} {msg}",
    );
    let width = run.epochs.to_string().len();
    let mut records = Vec::with_capacity(run.epochs);
    let start = Instant::now();
    for epoch in first_epoch..=run.epochs {
        let epoch_start = Instant::now();
        // The last finite state, to save if this epoch diverges.
        let before = run
            .save
            .map(|_| model::to_bytes(network, &mnist.preprocessing, &run.record));
        match resume_progress.take() {
            Some(progress) => trainer.restore(progress),
            None => trainer.start_epoch(n_train, rng),
        }
        // Stop after the current step on Ctrl-C, or as soon as a batch's loss blows up.
        let blown_up = Cell::new(None);
        let last_lr = Cell::new(trainer.optimizer.lr);
        let outcome = trainer.run_epoch(
            network,
            &mnist.train,
            rng,
            || STOP.load(Ordering::SeqCst) || blown_up.get().is_some(),
            |step| {
                if diverged(step.loss) {
                    blown_up.set(Some(step.loss));
                }
                last_lr.set(step.lr);
                bar.set_position(((epoch - 1) * n_train + step.done) as u64);
                bar.set_message(format!(
                    "epoch {epoch}/{} loss {:.4} lr {:.3e}",
                    run.epochs, step.loss, step.lr
                ));
            },
        );
        let loss = match (outcome, blown_up.get()) {
            (Some(stats), _) if diverged(stats.loss) => Some(stats.loss),
            (_, Some(loss)) => Some(loss),
            _ => None,
        };
        if let Some(loss) = loss {
            bar.abandon();
            write_metrics(run, &records)?;
            if let (Some(path), Some(bytes)) = (run.save, before) {
                write_atomically(path, &bytes)
                    .with_context(|| format!("writing {}", path.display()))?;
                eprintln!(
                    "saved the last finite state (before epoch {epoch}) to {}",
                    path.display()
                );
            }
            bail!(
                "training diverged at epoch {epoch}: the loss is {loss:.4e}. Try a smaller learning rate than {}.",
                run.lr
            );
        }
        let Some(stats) = outcome else {
            bar.abandon();
            let position = Position {
                epochs_done: epoch - 1,
                progress: trainer.progress(),
                rng,
                optimizer: &trainer.optimizer,
            };
            return interrupt(network, run, &position, &records);
        };
        let mut record = EpochRecord {
            epoch,
            train_loss: stats.loss,
            train_accuracy: stats.accuracy,
            val_loss: None,
            val_accuracy: None,
            lr: last_lr.get(),
            seconds: epoch_start.elapsed().as_secs_f64(),
        };
        if epoch % run.log_every == 0 || epoch == run.epochs {
            let mut line = format!(
                "epoch {epoch:>width$}/{}  train loss {:.4}  train accuracy {:.4}",
                run.epochs, stats.loss, stats.accuracy
            );
            if let Some(validation) = &mnist.validation {
                let result = network.evaluate(validation.images.view(), &validation.labels);
                line += &format!(
                    "  val loss {:.4}  val accuracy {:.4}",
                    result.loss, result.accuracy
                );
                record.val_loss = Some(result.loss);
                record.val_accuracy = Some(result.accuracy);
            }
            line += &format!(
                "  ({:.2} s, {:.1} s in all)",
                epoch_start.elapsed().as_secs_f64(),
                start.elapsed().as_secs_f64()
            );
            bar.suspend(|| println!("{line}"));
        }
        records.push(record);
        if run.test_every.is_some_and(|every| epoch % every == 0) {
            let test = network.evaluate(mnist.test.images.view(), &mnist.test.labels);
            bar.suspend(|| {
                println!(
                    "test accuracy after {epoch} epochs: {:.4} (error {:.2}%)",
                    test.accuracy,
                    100.0 * (1.0 - test.accuracy)
                )
            });
        }
        let position = Position {
            epochs_done: epoch,
            progress: &EpochProgress::default(),
            rng,
            optimizer: &trainer.optimizer,
        };
        if run.checkpoint_every.is_some_and(|every| epoch % every == 0) && epoch < run.epochs {
            write_checkpoint(network, run, &position)?;
        }
        if STOP.load(Ordering::SeqCst) && epoch < run.epochs {
            bar.abandon();
            return interrupt(network, run, &position, &records);
        }
    }
    bar.finish_and_clear();
    write_metrics(run, &records)?;
    if let Some(path) = run.plot {
        plot_curves(path, &records)?;
        println!("drew the training curves in {}", path.display());
    }
    let seconds = start.elapsed().as_secs_f64();
    println!(
        "training time: {seconds:.1} s ({:.3} s per epoch)",
        seconds / run.epochs as f64
    );
    let train = network.evaluate(mnist.train.images.view(), &mnist.train.labels);
    println!("train loss: {:.4}", train.loss);
    println!("train accuracy: {:.4}", train.accuracy);
    let test = network.evaluate(mnist.test.images.view(), &mnist.test.labels);
    println!("test loss: {:.4}", test.loss);
    if let Some(path) = run.save {
        model::save(path, network, &mnist.preprocessing, &run.record)?;
        println!("saved the model to {}", path.display());
    }
    println!("test accuracy: {:.4}", test.accuracy);
    Ok(())
}

/// Mean cross-entropy starts near ln 10 ≈ 2.3. Beyond this, the network gives the right digits a
/// probability below e^-1000: the run has blown up, even if the numbers are still finite.
const DIVERGED_LOSS: f64 = 1000.0;

fn diverged(loss: f64) -> bool {
    !loss.is_finite() || loss > DIVERGED_LOSS
}

/// Writes the checkpoint and the metrics so far, says how to continue, and stops the run.
fn interrupt(
    network: &Network,
    run: &Run,
    position: &Position,
    records: &[EpochRecord],
) -> Result<()> {
    write_checkpoint(network, run, position)?;
    write_metrics(run, records)?;
    eprintln!(
        "interrupted after {} epochs and {} examples of the next: checkpoint written to {}\n\
         continue with the same command and --resume {}",
        position.epochs_done,
        position.progress.done,
        run.checkpoint.display(),
        run.checkpoint.display()
    );
    Err(Interrupted.into())
}

fn write_checkpoint(network: &Network, run: &Run, position: &Position) -> Result<()> {
    let preprocessing = &run.mnist.preprocessing;
    checkpoint::save(
        run.checkpoint,
        network,
        preprocessing,
        &run.record,
        position,
    )?;
    Ok(())
}

/// A checkpoint's progress must fit this training set.
fn check_progress(progress: &EpochProgress, n: usize) -> Result<()> {
    let order_fits = progress.order.is_empty()
        || (progress.order.len() == n && progress.order.iter().all(|&i| (i as usize) < n));
    let mid_epoch = progress.done > 0 && progress.done < n;
    if progress.done > n || !order_fits || (mid_epoch && progress.order.len() != n) {
        bail!("the checkpoint's position does not fit a training set of {n} examples");
    }
    Ok(())
}

/// Writes the per-epoch records as CSV or JSON (by the file's extension), atomically.
fn write_metrics(run: &Run, records: &[EpochRecord]) -> Result<()> {
    let Some(path) = run.metrics else {
        return Ok(());
    };
    let text = if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"))
    {
        serde_json::to_string_pretty(records)?
    } else {
        let optional = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:.6}"));
        let mut csv =
            String::from("epoch,train_loss,train_accuracy,val_loss,val_accuracy,lr,seconds\n");
        for r in records {
            csv += &format!(
                "{},{:.6},{:.6},{},{},{:e},{:.4}\n",
                r.epoch,
                r.train_loss,
                r.train_accuracy,
                optional(r.val_loss),
                optional(r.val_accuracy),
                r.lr,
                r.seconds
            );
        }
        csv
    };
    write_atomically(path, text.as_bytes()).with_context(|| format!("writing {}", path.display()))
}

fn print_configuration(network: &mut Network, run: &Run) {
    let mnist = run.mnist;
    let n_train = mnist.train.len();
    println!("{}", run.title);
    let mut lines = run.settings.clone();
    if let Some(path) = run.from {
        lines.push((
            "continuing",
            format!(
                "{} ({} epochs so far; the optimiser starts afresh)",
                path.display(),
                run.record.epochs - run.epochs
            ),
        ));
    }
    lines.push(("layers", network.describe()));
    lines.push(("parameters", network.parameter_count().to_string()));
    let batches = match run.batching {
        Batching::Mini(size) if size < n_train => {
            format!("minibatches of {size}, reshuffled every epoch")
        }
        _ => format!("full batch ({n_train} examples per update)"),
    };
    let mut schedule = match run.schedule {
        Schedule::Constant => String::new(),
        other => format!(", schedule {other}"),
    };
    if run.warmup_steps > 0 {
        schedule += &format!(", {} warm-up steps", run.warmup_steps);
    }
    lines.push((
        "training",
        format!(
            "{}, {batches}, learning rate {}{schedule}, {} epochs",
            run.optimizer, run.lr, run.epochs
        ),
    ));
    let scaling = match mnist.preprocessing {
        Preprocessing::Scale255 => "pixels / 255".to_string(),
        Preprocessing::Standardise { mean, std } => {
            format!("standardised with the training images' mean {mean:.2} and std {std:.2}")
        }
    };
    let split = match &mnist.validation {
        Some(validation) => format!(
            "{n_train} train, {} validation, {} test",
            validation.len(),
            mnist.test.len()
        ),
        None => format!("{n_train} train, {} test", mnist.test.len()),
    };
    lines.push((
        "data",
        format!("{} ({split}, {scaling})", run.data_dir.display()),
    ));
    for (label, value) in lines {
        println!("  {:<15} {value}", format!("{label}:"));
    }
    if let Some(table) = &run.summary {
        print!("{table}");
    }
}

/// A progress bar on standard error (drawn only when that is a terminal).
pub fn progress_bar(len: u64, template: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(template)
            .expect("a valid progress template")
            .progress_chars("=> "),
    );
    bar
}
