//! `mnist-nn`: the command line, a thin shell over the `mnist_nn` library.

mod cli;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::builder::PossibleValuesParser;
use clap::{Args, Parser, Subcommand};

use cli::fetch::{fetch_with_progress, mirrors};
use cli::train::{launch, Plan};
use mnist_nn::architecture::{self, Shape};
use mnist_nn::augment::Augmentation;
use mnist_nn::data::{locate, DataSet, Scaling, CLASSES};
use mnist_nn::experiments;
use mnist_nn::init::Init;
use mnist_nn::optim::OptimizerSettings;
use mnist_nn::schedule::Schedule;
use mnist_nn::train::Batching;

/// Images in MNIST's training set.
const TRAIN_IMAGES: usize = 60_000;

#[derive(Parser)]
#[command(
    name = "mnist-nn",
    version,
    about = "Neural networks from scratch, trained and tested on MNIST"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train a network (an MLP, or any architecture with --layers) and report test accuracy.
    Train(Box<TrainArgs>),
    /// Run one of the seeds' experiments (or a published recipe) with its exact settings.
    Experiment(ExperimentArgs),
    /// Evaluate a saved model on the test set: accuracy per class, confusion matrix, mistakes.
    Eval(cli::inspect::EvalArgs),
    /// Predict the digit in your own images (PNG or JPEG) with a saved model.
    Predict(cli::predict::PredictArgs),
    /// Show MNIST digits and their labels in the terminal, and optionally as a PNG.
    Show(cli::inspect::ShowArgs),
    /// Download the four files of MNIST (or --dataset fashion-mnist, kmnist), verified against
    /// their published checksums.
    Download(DownloadArgs),
    /// Serve a saved model: a web page to draw digits on, its mistakes on the test set, a JSON API.
    Serve(cli::serve::ServeArgs),
    /// Time training epochs of the workloads against this machine's matrix-product peak.
    Bench(cli::bench::BenchArgs),
}

#[derive(Args)]
struct TrainArgs {
    /// Sizes of the hidden layers of an MLP, e.g. `--hidden 300 100` [default: 32 16].
    #[arg(long, alias = "n-hidden", num_args = 1.., value_parser = positive, allow_negative_numbers = true, conflicts_with_all = ["from", "layers", "layers_file"])]
    hidden: Option<Vec<usize>>,
    /// Any architecture, as comma-separated layers from the 1x28x28 input to 10 outputs:
    /// `linear N [shared-bias]`, `conv MAPS K [stride S] [padding P] [dilation D]`,
    /// `conv MAPS K table lenet5`, `maxpool K [stride S]`, `avgpool K [stride S]`, `subsample K`,
    /// `pad P [value V]`, `relu`, `tanh`, `lecun-tanh`, `dropout P`, `batchnorm`, `flatten`. An
    /// MLP starts with `linear` directly; after conv or pooling, `flatten` comes before `linear`.
    /// Example: "conv 24 5, maxpool 2, relu, conv 32 3, maxpool 2, relu,
    /// flatten, linear 256, relu, linear 10".
    #[arg(long, conflicts_with_all = ["from", "layers_file"])]
    layers: Option<String>,
    /// Read --layers from this file (layers separated by commas or lines, `#` starts a comment).
    #[arg(long, conflicts_with = "from")]
    layers_file: Option<PathBuf>,
    /// Passes over the training set.
    #[arg(long, default_value_t = 500, value_parser = positive, allow_negative_numbers = true)]
    epochs: usize,
    /// Learning rate (the peak rate of a one-cycle schedule).
    #[arg(long, alias = "learning-rate", default_value_t = 0.2, value_parser = positive_finite, allow_negative_numbers = true)]
    lr: f32,
    /// Weight initialisation: he, xavier, gaussian, samson, torch (PyTorch's default) or lecun
    /// (LeNet-5's) [default: he].
    #[arg(long, alias = "initial-params", value_parser = str::parse::<Init>, conflicts_with = "from")]
    init: Option<Init>,
    /// Examples per update, reshuffled every epoch [default: full batch, one update per epoch].
    #[arg(long, value_parser = positive, allow_negative_numbers = true)]
    batch_size: Option<usize>,
    #[command(flatten)]
    optimizer: OptimizerArgs,
    /// Standardise the pixels with the training images' mean and standard deviation instead of
    /// dividing them by 255.
    #[arg(long)]
    standardise: bool,
    /// Scale the pixels as LeNet-5 did, to -0.1 for the background and 1.175 for the ink.
    #[arg(long, conflicts_with = "standardise")]
    lecun_scaling: bool,
    /// Hold out the last N training images and report validation loss and accuracy every epoch
    /// (choose settings on these, never on the test set).
    #[arg(long, value_parser = held_out)]
    validation: Option<usize>,
    #[command(flatten)]
    run: RunArgs,
}

/// The optimiser and its schedule (`train`). With --from, the optimiser starts afresh (no
/// momentum or moments are kept in a model) and the schedule spans the new run's epochs.
#[derive(Args)]
struct OptimizerArgs {
    /// The update rule, as torch.optim defines it: sgd, adam or adamw.
    #[arg(long, default_value = "sgd", value_parser = ["sgd", "adam", "adamw"])]
    optimizer: String,
    /// SGD's momentum [default: 0, none].
    #[arg(long, allow_negative_numbers = true)]
    momentum: Option<f64>,
    /// SGD's Nesterov momentum (with --momentum above 0).
    #[arg(long)]
    nesterov: bool,
    /// Weight decay: an L2 term in the gradient (sgd, adam), or decoupled (adamw) [default: 0,
    /// AdamW's 0.01].
    #[arg(long, allow_negative_numbers = true)]
    weight_decay: Option<f64>,
    /// Adam's and AdamW's betas [default: 0.9 0.999].
    #[arg(
        long,
        num_args = 2,
        value_names = ["BETA1", "BETA2"],
        allow_negative_numbers = true,
        action = clap::ArgAction::Set
    )]
    betas: Option<Vec<f64>>,
    /// Adam's and AdamW's epsilon [default: 1e-8].
    #[arg(long, allow_negative_numbers = true)]
    eps: Option<f64>,
    /// Learning-rate schedule, applied every step: constant, step:EPOCHS:GAMMA (times GAMMA every
    /// EPOCHS epochs), cosine[:MIN_LR] (down to MIN_LR over the run), or
    /// onecycle[:PCT_START[:DIV_FACTOR[:FINAL_DIV_FACTOR]]] (PyTorch's OneCycleLR peaking at --lr,
    /// defaults 0.3, 25, 1e4, no momentum cycling).
    #[arg(long, default_value = "constant", value_parser = str::parse::<Schedule>)]
    schedule: Schedule,
    /// Steps of linear warm-up before the schedule: step s uses (s+1)/N of its rate.
    #[arg(long, default_value_t = 0)]
    warmup: u64,
}

impl OptimizerArgs {
    /// The optimiser's settings, refusing options that belong to another optimiser.
    fn settings(&self) -> Result<OptimizerSettings> {
        let sgd = self.optimizer == "sgd";
        if sgd && (self.betas.is_some() || self.eps.is_some()) {
            bail!("--betas and --eps are Adam's and AdamW's: add --optimizer adam or adamw");
        }
        if !sgd && (self.momentum.is_some() || self.nesterov) {
            bail!("--momentum and --nesterov are SGD's: Adam keeps its own averages (--betas)");
        }
        // clap takes `--betas` once, with exactly two numbers.
        let betas = self.betas.as_deref().map_or((0.9, 0.999), |b| (b[0], b[1]));
        let eps = self.eps.unwrap_or(1e-8);
        let settings = match self.optimizer.as_str() {
            "sgd" => OptimizerSettings::Sgd {
                momentum: self.momentum.unwrap_or(0.0),
                nesterov: self.nesterov,
                weight_decay: self.weight_decay.unwrap_or(0.0),
            },
            "adam" => OptimizerSettings::Adam {
                betas,
                eps,
                weight_decay: self.weight_decay.unwrap_or(0.0),
            },
            _ => OptimizerSettings::AdamW {
                betas,
                eps,
                weight_decay: self.weight_decay.unwrap_or(0.01),
            },
        };
        settings.check().map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(settings)
    }
}

#[derive(Args)]
struct ExperimentArgs {
    /// Which experiment.
    #[arg(value_parser = PossibleValuesParser::new(experiments::names()))]
    name: String,
    /// Run this many epochs instead of the experiment's own number.
    #[arg(long, value_parser = positive, allow_negative_numbers = true)]
    epochs: Option<usize>,
    /// Hold out the last N training images and report validation loss and accuracy every epoch
    /// (to check a recipe on data it never saw, without looking at the test set).
    #[arg(long, value_parser = held_out)]
    validation: Option<usize>,
    #[command(flatten)]
    run: RunArgs,
}

/// Flags shared by `train` and `experiment`.
#[derive(Args)]
pub struct RunArgs {
    /// Seed of the random generator (initialisation, shuffling, dropout).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// The data set: mnist, fashion-mnist or kmnist.
    #[arg(long, default_value = "mnist", value_parser = str::parse::<DataSet>)]
    dataset: DataSet,
    /// Folder holding the data set [default: its variable ($MNIST_DIR, $FASHION_MNIST_DIR,
    /// $KMNIST_DIR), ./data/NAME, ../shared/data/NAME, the system package, the cache].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Print the architecture as a table (output shapes, parameters, FLOPs) before training.
    #[arg(long)]
    summary: bool,
    /// Distort the training images anew every epoch: `translate[:T]`,
    /// `affine[:ROTATION[:SCALE[:SQUEEZE[:SHEAR[:SHIFT]]]]]`, `elastic[:SIGMA[:ALPHA]]`, or several
    /// joined by `+` (`mnist-nn show --augment SPEC` draws examples).
    #[arg(long, value_parser = str::parse::<Augmentation>)]
    augment: Option<Augmentation>,
    /// Train the last N epochs on the undistorted images (with --augment): the network ends on
    /// the images it will be tested on [default: 0, or the experiment's].
    #[arg(long)]
    clean_epochs: Option<usize>,
    /// Train against targets with this share spread evenly over the classes, as PyTorch's
    /// `CrossEntropyLoss(label_smoothing=ε)` [default: 0, or the experiment's].
    #[arg(long, value_parser = unit_interval)]
    label_smoothing: Option<f32>,
    /// Print a line every this many epochs [default: every epoch with a validation set, else
    /// about ten lines in all].
    #[arg(long, value_parser = positive)]
    log_every: Option<usize>,
    /// Also print the test accuracy every this many epochs.
    #[arg(long, value_parser = positive)]
    test_every: Option<usize>,
    /// Save the trained model to this .safetensors file.
    #[arg(long)]
    save: Option<PathBuf>,
    /// Continue training the model saved in this file (its architecture replaces --hidden,
    /// --layers and --init; the optimiser's state starts afresh).
    #[arg(long)]
    from: Option<PathBuf>,
    /// Write one row per epoch (losses, accuracies, learning rate, seconds) to this .csv or .json file.
    #[arg(long, value_parser = metrics_path)]
    metrics: Option<PathBuf>,
    /// Draw the loss and accuracy curves into this PNG file.
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Where Ctrl-C (and --checkpoint-every) write a checkpoint to resume from.
    #[arg(long, default_value = "mnist-nn-checkpoint.safetensors")]
    checkpoint: PathBuf,
    /// Also write the checkpoint every this many epochs.
    #[arg(long, value_parser = positive)]
    checkpoint_every: Option<usize>,
    /// Continue an interrupted run from its checkpoint (give the same flags as the first time).
    #[arg(long, conflicts_with = "from")]
    resume: Option<PathBuf>,
}

#[derive(Args)]
struct DownloadArgs {
    /// The data set: mnist, fashion-mnist or kmnist.
    #[arg(long, default_value = "mnist", value_parser = str::parse::<DataSet>)]
    dataset: DataSet,
    /// Where to put the files [default: the user's cache folder for the set].
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Base URL to fetch from instead of $MNIST_NN_MIRROR or the built-in mirrors (repeatable).
    #[arg(long)]
    mirror: Vec<String>,
}

pub(crate) fn positive(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".to_string()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("'{s}' is not a positive whole number")),
    }
}

/// A number of training images to hold out: at least one, and fewer than MNIST's 60,000.
fn held_out(s: &str) -> Result<usize, String> {
    match positive(s)? {
        n if n >= TRAIN_IMAGES => Err(format!(
            "{n} leaves nothing to train on: MNIST has {TRAIN_IMAGES} training images"
        )),
        n => Ok(n),
    }
}

fn positive_finite(s: &str) -> Result<f32, String> {
    match s.parse::<f32>() {
        Ok(x) if x.is_finite() && x > 0.0 => Ok(x),
        Ok(_) => Err(format!("{s} is not a positive finite number")),
        Err(_) => Err(format!("'{s}' is not a number")),
    }
}

/// A number from 0 to 1.
fn unit_interval(s: &str) -> Result<f32, String> {
    match s.parse::<f32>() {
        Ok(x) if (0.0..=1.0).contains(&x) => Ok(x),
        Ok(_) => Err(format!("{s} is not between 0 and 1")),
        Err(_) => Err(format!("'{s}' is not a number")),
    }
}

fn metrics_path(s: &str) -> Result<PathBuf, String> {
    match s.rsplit_once('.').map(|(_, ext)| ext.to_ascii_lowercase()) {
        Some(ext) if ext == "csv" || ext == "json" => Ok(PathBuf::from(s)),
        _ => Err(format!("'{s}' must end in .csv or .json")),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The main thread is one of rayon's workers: a training step then runs its first shard
    // itself and hands the others to the pool, instead of waking the pool and waiting for it.
    // (It can only fail if a pool already exists; the default pool then does the same work.)
    let _ = rayon::ThreadPoolBuilder::new()
        .use_current_thread()
        .build_global();
    let result = match cli.command {
        Command::Train(args) => train(*args),
        Command::Experiment(args) => experiment(args),
        Command::Eval(args) => cli::inspect::eval(args),
        Command::Predict(args) => cli::predict::predict(args),
        Command::Show(args) => cli::inspect::show(args),
        Command::Download(args) => download(args),
        Command::Bench(args) => cli::bench::bench(args),
        Command::Serve(args) => cli::serve::serve(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) if error.is::<cli::train::Interrupted>() => ExitCode::from(130),
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn train(args: TrainArgs) -> Result<()> {
    let text = match (&args.layers, &args.layers_file) {
        (Some(text), _) => text.clone(),
        (None, Some(path)) => std::fs::read_to_string(path)
            .with_context(|| format!("reading the architecture from {}", path.display()))?,
        (None, None) => {
            let hidden = args.hidden.clone().unwrap_or_else(|| vec![32, 16]);
            let mut layers: Vec<String> =
                hidden.iter().map(|h| format!("linear {h}, relu")).collect();
            layers.push(format!("linear {CLASSES}"));
            layers.join(", ")
        }
    };
    let layers = architecture::parse(&text, Shape::MNIST, CLASSES)
        .map_err(|e| anyhow::anyhow!("--layers: {e}"))?;
    let plan = Plan {
        command: "train".into(),
        settings: Vec::new(),
        layers,
        init: args.init.unwrap_or(Init::He),
        lr: args.lr,
        batching: args.batch_size.map_or(Batching::Full, Batching::Mini),
        epochs: args.epochs,
        optimizer: args.optimizer.settings()?,
        schedule: args.optimizer.schedule,
        warmup_steps: args.optimizer.warmup,
        validation: args.validation.unwrap_or(0),
        scaling: if args.standardise {
            Scaling::TrainingStatistics
        } else if args.lecun_scaling {
            Scaling::LeCun
        } else {
            Scaling::Divide255
        },
        test_every: None,
        from_must_match: false,
        augment: args.run.augment.clone(),
        clean_epochs: args.run.clean_epochs.unwrap_or(0),
        label_smoothing: args.run.label_smoothing.unwrap_or(0.0),
        evaluate_training_set: true,
    };
    launch(plan, &args.run)
}

fn experiment(args: ExperimentArgs) -> Result<()> {
    let experiment = experiments::find(&args.name).expect("clap checked the name");
    let (validation, scaling) = experiment.regime.split(TRAIN_IMAGES);
    let validation = args.validation.unwrap_or(validation);
    let plan = Plan {
        command: format!("experiment {}", experiment.name),
        settings: vec![
            ("network", experiment.network.to_string()),
            (
                "seed's figure",
                format!(
                    "{} after {} epochs",
                    experiment.seed_figure, experiment.epochs
                ),
            ),
        ],
        layers: architecture::parse(experiment.layers, Shape::MNIST, CLASSES)
            .expect("the experiments' architectures are valid"),
        init: experiment.init,
        lr: experiment.lr,
        batching: experiment.batching,
        epochs: args.epochs.unwrap_or(experiment.epochs),
        optimizer: experiment.optimizer,
        schedule: experiment.schedule,
        warmup_steps: 0,
        validation,
        scaling,
        test_every: experiment.test_every,
        from_must_match: true,
        augment: args
            .run
            .augment
            .clone()
            .or_else(|| experiment.augmentation()),
        clean_epochs: args.run.clean_epochs.unwrap_or(experiment.clean_epochs),
        label_smoothing: args
            .run
            .label_smoothing
            .unwrap_or(experiment.label_smoothing),
        evaluate_training_set: !experiment.timed,
    };
    launch(plan, &args.run)
}

fn download(args: DownloadArgs) -> Result<()> {
    let set = args.dataset;
    let dir = match args.dir {
        Some(dir) => dir,
        None => {
            locate::cache_dir(set).context("this system has no cache folder: pass --dir DIR")?
        }
    };
    fetch_with_progress(set, &dir, &mirrors(set, args.mirror))?;
    println!("{} is in {}", set.title(), dir.display());
    Ok(())
}
