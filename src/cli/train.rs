//! `train` and `experiment`: from the choices of either command to a finished run. Builds or
//! loads the network, reads the data, resumes from a checkpoint, prints the configuration and the
//! progress, and saves what the run produced. The training itself is the library's
//! [`Fit`](mnist_nn::fit::Fit).

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};

use mnist_nn::architecture::{self, PlannedLayer, Shape};
use mnist_nn::atomic::write_atomically;
use mnist_nn::augment::Augmentation;
use mnist_nn::checkpoint;
use mnist_nn::data::{Mnist, Preprocessing, Scaling, IMAGE_PIXELS};
use mnist_nn::fit::{Augmented, CheckpointTarget, EpochRecord, Fit, Observer, Outcome, Start};
use mnist_nn::init::Init;
use mnist_nn::layers::LayerSpec;
use mnist_nn::model::{self, Training};
use mnist_nn::network::{Evaluation, Network};
use mnist_nn::optim::{Optimizer, OptimizerSettings};
use mnist_nn::schedule::{LrSchedule, Schedule};
use mnist_nn::seeded_rng;
use mnist_nn::train::{Batching, EpochProgress, StepReport, Trainer};

use super::fetch::load_raw_set;
use super::plot::plot_curves;
use crate::RunArgs;

/// What `train` or `experiment` chose; [`launch`] does the rest the same way for both.
pub struct Plan {
    /// `train`, or `experiment NAME`.
    pub command: String,
    /// Lines of configuration printed under the title.
    pub settings: Vec<(&'static str, String)>,
    /// The architecture, checked, with its shapes.
    pub layers: Vec<PlannedLayer>,
    pub init: Init,
    pub lr: f32,
    pub batching: Batching,
    pub epochs: usize,
    pub optimizer: OptimizerSettings,
    pub schedule: Schedule,
    pub warmup_steps: u64,
    /// Training images held out for validation.
    pub validation: usize,
    pub scaling: Scaling,
    /// Evaluate on the test set every this many epochs unless `--test-every` says otherwise.
    pub test_every: Option<usize>,
    /// Whether a model continued with `--from` must have `layers` (experiments) or brings its own.
    pub from_must_match: bool,
    /// How the training images are distorted every epoch, if they are.
    pub augment: Option<Augmentation>,
    /// The last this many epochs train on undistorted images.
    pub clean_epochs: usize,
    /// The training loss's label smoothing ε.
    pub label_smoothing: f32,
    /// Whether the run ends with a pass over the whole training set (its loss and accuracy)
    /// before the test set's.
    pub evaluate_training_set: bool,
}

/// Builds (or loads) the network, reads the data, and trains as `plan` and the flags say,
/// printing as it goes; ends with the test accuracy line.
pub fn launch(plan: Plan, args: &RunArgs) -> Result<()> {
    let started = std::time::Instant::now();
    let mut rng = seeded_rng(args.seed);
    let fresh = architecture::build(&plan.layers, plan.init, &mut rng);
    let from = continued_model(args, plan.scaling)?;
    if let Some(saved) = &from {
        if plan.from_must_match && saved.network.specs() != fresh.specs() {
            bail!(
                "{}: the model's architecture is not this experiment's",
                args.from.as_deref().unwrap_or(Path::new("")).display()
            );
        }
    }
    if args.clean_epochs.is_some_and(|n| n >= plan.epochs) {
        bail!(
            "--clean-epochs {}: leaves none of the {} epochs distorted",
            plan.clean_epochs,
            plan.epochs
        );
    }
    if plan.clean_epochs > 0 && plan.augment.is_none() {
        bail!(
            "--clean-epochs {}: there is no --augment to leave out",
            plan.clean_epochs
        );
    }
    let (mut raw, dir) = load_raw_set(args.dataset, args.data_dir.as_deref())?;
    if plan.validation >= raw.train.len() {
        bail!(
            "holding out {} images for validation leaves none of the {} in {} to train on",
            plan.validation,
            raw.train.len(),
            dir.display()
        );
    }
    let mnist = Mnist::prepare_split(&raw, plan.validation, plan.scaling);
    // Augmentation distorts the stored pixels of the training images (kept, not copied), then
    // scales them; the rest of the raw data is dropped.
    let train_pixels = plan.augment.as_ref().map(|_| {
        let mut pixels = std::mem::take(&mut raw.train.pixels);
        pixels.truncate(mnist.train.len() * IMAGE_PIXELS);
        pixels
    });
    drop(raw);
    let (mut network, epochs_before, init) = match from {
        Some(saved) => (saved.network, saved.training.epochs, saved.training.init),
        None => (fresh, 0, Some(plan.init.to_string())),
    };
    let record = Training {
        command: plan.command.clone(),
        epochs: epochs_before + plan.epochs,
        lr: plan.lr,
        batch_size: match plan.batching {
            Batching::Mini(size) => Some(size),
            Batching::Full => None,
        },
        seed: args.seed,
        init: init.clone(),
        optimizer: plan.optimizer,
        schedule: plan.schedule,
        warmup_steps: plan.warmup_steps,
        dataset: args.dataset,
        augment: plan.augment.as_ref().map(|a| a.to_string()),
        clean_epochs: plan.clean_epochs,
        label_smoothing: plan.label_smoothing,
    };
    network.set_label_smoothing(plan.label_smoothing);
    let resume = resume_point(args, &record, &mut network, &mut rng)?;
    let (start, optimizer) = match resume {
        Some((start, optimizer)) => {
            check_progress(&start.progress, mnist.train.len())?;
            (Some(start), optimizer)
        }
        None => (None, Optimizer::new(plan.optimizer, plan.lr as f64)),
    };

    let mut settings = vec![("network", network_summary(&network))];
    settings.extend(plan.settings.iter().cloned());
    settings.push(("initialisation", init.unwrap_or_else(|| "unknown".into())));
    settings.push(("seed", args.seed.to_string()));
    if let Some(augmentation) = &plan.augment {
        let clean = match plan.clean_epochs {
            0 => String::new(),
            n if n >= plan.epochs => format!(
                " but the last {n} (undistorted): none of this run's {}",
                plan.epochs
            ),
            n => format!(" but the last {n} (undistorted)"),
        };
        settings.push((
            "augmentation",
            format!("{augmentation}, new every epoch{clean}"),
        ));
    }
    if plan.label_smoothing > 0.0 {
        settings.push((
            "loss",
            format!("cross-entropy, label smoothing {}", plan.label_smoothing),
        ));
    }
    print_configuration(&mut network, &plan, args, &record, &mnist, &dir, settings);
    if args.summary {
        let planned = architecture::plan(&network.specs(), Shape::MNIST);
        print!(
            "{}",
            architecture::summary(&planned, |i| network.layers()[i].describe())
        );
    }

    let mut trainer = Trainer::new(optimizer, plan.batching);
    let steps_per_epoch = plan.batching.steps_per_epoch(mnist.train.len()) as u64;
    trainer.schedule = Some(LrSchedule {
        base_lr: plan.lr as f64,
        schedule: plan.schedule,
        warmup_steps: plan.warmup_steps,
        steps_per_epoch,
        total_steps: steps_per_epoch * plan.epochs as u64,
    });
    let evaluate_every = args.log_every.unwrap_or(if mnist.validation.is_some() {
        1
    } else {
        (plan.epochs / 10).max(1)
    });
    let fit = Fit {
        data: &mnist,
        epochs: plan.epochs,
        evaluate_every,
        test_every: args.test_every.or(plan.test_every),
        checkpoint: Some(CheckpointTarget {
            path: &args.checkpoint,
            every: args.checkpoint_every,
        }),
        training: &record,
        keep_last_finite: args.save.is_some(),
        augment: plan.augment.as_ref().zip(train_pixels.as_deref()).map(
            |(augmentation, pixels)| Augmented {
                augmentation,
                pixels,
                seed: args.seed,
                clean_epochs: plan.clean_epochs,
            },
        ),
    };
    catch_ctrl_c();
    let mut progress = Progress::new(plan.epochs, mnist.train.len());
    let (outcome, records) = fit.run(
        &mut network,
        &mut trainer,
        &mut rng,
        start,
        || STOP.load(Ordering::SeqCst),
        &mut progress,
    )?;
    progress.bar.finish_and_clear();
    write_metrics(args.metrics.as_deref(), &records)?;
    match outcome {
        Outcome::Finished => {}
        Outcome::Interrupted {
            epochs_done,
            examples_done,
        } => {
            eprintln!(
                "interrupted after {epochs_done} epochs and {examples_done} examples of the next: \
                 checkpoint written to {}\ncontinue with the same command and --resume {}",
                args.checkpoint.display(),
                args.checkpoint.display()
            );
            return Err(Interrupted.into());
        }
        Outcome::Diverged {
            epoch,
            loss,
            last_finite,
        } => {
            if let (Some(path), Some(bytes)) = (&args.save, last_finite) {
                write_atomically(path, &bytes)
                    .with_context(|| format!("writing {}", path.display()))?;
                eprintln!(
                    "saved the last finite state (before epoch {epoch}) to {}",
                    path.display()
                );
            }
            bail!(
                "training diverged at epoch {epoch}: the loss is {loss:.4e}. Try a smaller learning rate than {}.",
                plan.lr
            );
        }
    }
    if let Some(path) = &args.plot {
        plot_curves(path, &records)?;
        println!("drew the training curves in {}", path.display());
    }
    let training: f64 = records.iter().map(|r| r.seconds).sum();
    println!(
        "training time: {training:.1} s ({:.3} s per epoch; {:.1} s with the evaluations)",
        training / records.len().max(1) as f64,
        progress.elapsed
    );
    if plan.evaluate_training_set {
        let train = network.evaluate(mnist.train.images.view(), &mnist.train.labels);
        println!("train loss: {:.4}", train.loss);
        println!("train accuracy: {:.4}", train.accuracy);
    }
    let test = network.evaluate(mnist.test.images.view(), &mnist.test.labels);
    println!("test loss: {:.4}", test.loss);
    if let Some(path) = &args.save {
        model::save(path, &network, &mnist.preprocessing, &record)?;
        println!("saved the model to {}", path.display());
    }
    println!(
        "command time: {:.1} s (reading the data and evaluating included)",
        started.elapsed().as_secs_f64()
    );
    println!("test accuracy: {:.4}", test.accuracy);
    Ok(())
}

/// Set by Ctrl-C; the run checks it after every step.
static STOP: AtomicBool = AtomicBool::new(false);

/// On the first Ctrl-C, ask the run to stop after its current step; on a second, quit.
fn catch_ctrl_c() {
    let _ = ctrlc::set_handler(|| {
        if STOP.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
    });
}

/// What the terminal shows of a run: a progress bar with the loss and learning rate, a line per
/// reported epoch, the test accuracy when asked.
struct Progress {
    bar: ProgressBar,
    epochs: usize,
    examples: usize,
    /// Seconds since the run started, as of the last epoch.
    elapsed: f64,
}

impl Progress {
    fn new(epochs: usize, examples: usize) -> Self {
        let bar = progress_bar(
            (epochs * examples) as u64,
            "{elapsed_precise} [{bar:30}] {percent:>3}% eta {eta} {msg}",
        );
        Progress {
            bar,
            epochs,
            examples,
            elapsed: 0.0,
        }
    }
}

impl Observer for Progress {
    fn step(&mut self, epoch: usize, step: &StepReport) {
        self.bar
            .set_position(((epoch - 1) * self.examples + step.done) as u64);
        self.bar.set_message(format!(
            "epoch {epoch}/{} loss {:.4} lr {:.3e}",
            self.epochs, step.loss, step.lr
        ));
    }

    fn epoch(&mut self, record: &EpochRecord, evaluated: bool, elapsed: f64) {
        let epoch_seconds = elapsed - self.elapsed;
        self.elapsed = elapsed;
        if !evaluated {
            return;
        }
        let width = self.epochs.to_string().len();
        let mut line = format!(
            "epoch {:>width$}/{}  train loss {:.4}  train accuracy {:.4}",
            record.epoch, self.epochs, record.train_loss, record.train_accuracy
        );
        if let (Some(loss), Some(accuracy)) = (record.val_loss, record.val_accuracy) {
            line += &format!("  val loss {loss:.4}  val accuracy {accuracy:.4}");
        }
        line += &format!("  ({epoch_seconds:.2} s, {elapsed:.1} s in all)");
        self.bar.suspend(|| println!("{line}"));
    }

    fn test(&mut self, epoch: usize, test: &Evaluation) {
        self.bar.suspend(|| {
            println!(
                "test accuracy after {epoch} epochs: {:.4} (error {:.2}%)",
                test.accuracy,
                100.0 * (1.0 - test.accuracy)
            )
        });
    }
}

/// The model to continue from, if `--from` was given, checked against the run's scaling of the
/// pixels.
fn continued_model(run: &RunArgs, scaling: Scaling) -> Result<Option<model::SavedModel>> {
    let standardise = scaling != Scaling::Divide255;
    let Some(path) = &run.from else {
        return Ok(None);
    };
    let saved = model::load(path)?;
    if saved.training.dataset != run.dataset {
        bail!(
            "{}: the model was trained on {}; continue it with --dataset {}",
            path.display(),
            saved.training.dataset.title(),
            saved.training.dataset
        );
    }
    let standardised = matches!(saved.preprocessing, Preprocessing::Standardise { .. });
    if standardised != standardise {
        let expected = if standardise {
            "standardised pixels"
        } else {
            "pixels / 255"
        };
        bail!(
            "{}: the model was trained on differently scaled pixels; this run needs {expected}",
            path.display()
        );
    }
    Ok(Some(saved))
}

/// With `--resume`, replaces `network` and `rng` by the checkpoint's and returns where the run
/// stood and the optimiser with its state; the checkpoint must come from the same command with the
/// same settings.
fn resume_point(
    run: &RunArgs,
    record: &Training,
    network: &mut Network,
    rng: &mut mnist_nn::SeededRng,
) -> Result<Option<(Start, Optimizer)>> {
    let Some(path) = &run.resume else {
        return Ok(None);
    };
    let mut saved = checkpoint::load(path)?;
    let theirs = &saved.model.training;
    let same = record.command == theirs.command
        && record.epochs == theirs.epochs
        && record.lr == theirs.lr
        && record.batch_size == theirs.batch_size
        && record.seed == theirs.seed
        && record.optimizer == theirs.optimizer
        && record.schedule == theirs.schedule
        && record.warmup_steps == theirs.warmup_steps
        && record.dataset == theirs.dataset
        && record.augment == theirs.augment
        && record.clean_epochs == theirs.clean_epochs
        && record.label_smoothing == theirs.label_smoothing;
    if !same {
        bail!(
            "{}: the checkpoint comes from `{}` on {} with {} epochs, learning rate {}, batch size {:?}, \
             seed {}, {}, schedule {}, warm-up {}, augmentation {} (the last {} epochs undistorted), \
             label smoothing {}; resume with the same settings",
            path.display(),
            theirs.command,
            theirs.dataset,
            theirs.epochs,
            theirs.lr,
            theirs.batch_size,
            theirs.seed,
            theirs.optimizer,
            theirs.schedule,
            theirs.warmup_steps,
            theirs.augment.as_deref().unwrap_or("none"),
            theirs.clean_epochs,
            theirs.label_smoothing
        );
    }
    if network.specs() != saved.model.network.specs() {
        bail!(
            "{}: the checkpoint's network is not this run's",
            path.display()
        );
    }
    let lengths: Vec<usize> = saved
        .model
        .network
        .params()
        .iter()
        .map(|p| p.value.len())
        .collect();
    let mut optimizer = Optimizer::new(record.optimizer, record.lr as f64);
    saved
        .restore_optimizer(&mut optimizer, &lengths)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    *network = saved.model.network;
    *rng = saved.rng;
    println!(
        "resuming from {} after {} epochs",
        path.display(),
        saved.epochs_done
    );
    Ok(Some((
        Start {
            epochs_done: saved.epochs_done,
            progress: saved.progress,
        },
        optimizer,
    )))
}

/// `784-32-16-10` for a multilayer perceptron, else the layers in one line.
fn network_summary(network: &Network) -> String {
    let mut sizes = vec![IMAGE_PIXELS.to_string()];
    for spec in &network.specs() {
        match spec {
            LayerSpec::Linear { outputs, .. } => sizes.push(outputs.to_string()),
            LayerSpec::ReLU => {}
            _ => return network.describe(),
        }
    }
    sizes.join("-")
}

fn print_configuration(
    network: &mut Network,
    plan: &Plan,
    args: &RunArgs,
    record: &Training,
    mnist: &Mnist,
    data_dir: &Path,
    mut lines: Vec<(&'static str, String)>,
) {
    let n_train = mnist.train.len();
    println!("mnist-nn {}", plan.command);
    if let Some(path) = &args.from {
        lines.push((
            "continuing",
            format!(
                "{} ({} epochs so far; the optimiser starts afresh)",
                path.display(),
                record.epochs - plan.epochs
            ),
        ));
    }
    lines.push(("layers", network.describe()));
    lines.push(("parameters", network.parameter_count().to_string()));
    let batches = match plan.batching {
        Batching::Mini(size) if size < n_train => {
            format!("minibatches of {size}, reshuffled every epoch")
        }
        _ => format!("full batch ({n_train} examples per update)"),
    };
    let mut schedule = match plan.schedule {
        Schedule::Constant => String::new(),
        other => format!(", schedule {other}"),
    };
    if plan.warmup_steps > 0 {
        schedule += &format!(", {} warm-up steps", plan.warmup_steps);
    }
    lines.push((
        "training",
        format!(
            "{}, {batches}, learning rate {}{schedule}, {} epochs",
            plan.optimizer, plan.lr, plan.epochs
        ),
    ));
    let scaling = match (plan.scaling, mnist.preprocessing) {
        (Scaling::Fixed { mean, std }, _) => {
            format!("pixels / 255 standardised with the fixed mean {mean} and std {std}")
        }
        (Scaling::LeCun, _) => "(pixel - 20) / 200: background -0.1, ink 1.175".to_string(),
        (_, Preprocessing::Scale255) => "pixels / 255".to_string(),
        (_, Preprocessing::Standardise { mean, std }) => {
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
        format!(
            "{} in {} ({split}, {scaling})",
            args.dataset.title(),
            data_dir.display()
        ),
    ));
    for (label, value) in lines {
        println!("  {:<15} {value}", format!("{label}:"));
    }
}

/// Writes the per-epoch records as CSV or JSON (by the file's extension), atomically.
fn write_metrics(path: Option<&Path>, records: &[EpochRecord]) -> Result<()> {
    let Some(path) = path else {
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

/// The error of a run stopped by Ctrl-C after writing its checkpoint (exit status 130).
#[derive(Debug)]
pub struct Interrupted;

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("interrupted")
    }
}

impl std::error::Error for Interrupted {}

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
