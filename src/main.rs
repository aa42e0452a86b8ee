//! `mnist-nn`: the command line, a thin shell over the `mnist_nn` library.

mod cli;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::builder::PossibleValuesParser;
use clap::{Args, Parser, Subcommand};

use cli::fetch::{fetch_with_progress, load_mnist, mirrors};
use cli::fit::{fit, Run};
use mnist_nn::data::{locate, Preprocessing, Regime, CLASSES, IMAGE_PIXELS};
use mnist_nn::init::Init;
use mnist_nn::layers::LayerSpec;
use mnist_nn::model::{self, Training};
use mnist_nn::network::Network;
use mnist_nn::seeded_rng;
use mnist_nn::train::Batching;
use mnist_nn::{checkpoint, experiments};

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
    /// Train a multilayer perceptron (ReLU hidden layers, softmax output) and report test accuracy.
    Train(TrainArgs),
    /// Run one of the seeds' experiments with its exact settings.
    Experiment(ExperimentArgs),
    /// Evaluate a saved model on the test set: accuracy per class, confusion matrix, mistakes.
    Eval(cli::inspect::EvalArgs),
    /// Predict the digit in your own images (PNG or JPEG) with a saved model.
    Predict(cli::predict::PredictArgs),
    /// Show MNIST digits and their labels in the terminal, and optionally as a PNG.
    Show(cli::inspect::ShowArgs),
    /// Download the four MNIST files, verified against their published SHA-256.
    Download(DownloadArgs),
    /// Time training epochs of three workloads against this machine's matrix-product peak.
    Bench(cli::bench::BenchArgs),
}

#[derive(Args)]
struct TrainArgs {
    /// Sizes of the hidden layers, e.g. `--hidden 300 100` [default: 32 16].
    #[arg(long, alias = "n-hidden", num_args = 1.., value_parser = positive, allow_negative_numbers = true, conflicts_with = "from")]
    hidden: Option<Vec<usize>>,
    /// Passes over the training set.
    #[arg(long, default_value_t = 500, value_parser = positive, allow_negative_numbers = true)]
    epochs: usize,
    /// Learning rate of gradient descent.
    #[arg(long, alias = "learning-rate", default_value_t = 0.2, value_parser = positive_finite, allow_negative_numbers = true)]
    lr: f32,
    /// Weight initialisation: he, xavier, gaussian or samson [default: he].
    #[arg(long, alias = "initial-params", value_parser = str::parse::<Init>, conflicts_with = "from")]
    init: Option<Init>,
    /// Examples per update, reshuffled every epoch [default: full batch, one update per epoch].
    #[arg(long, value_parser = positive, allow_negative_numbers = true)]
    batch_size: Option<usize>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Args)]
struct ExperimentArgs {
    /// Which experiment.
    #[arg(value_parser = PossibleValuesParser::new(experiments::names()))]
    name: String,
    /// Run this many epochs instead of the experiment's own number.
    #[arg(long, value_parser = positive, allow_negative_numbers = true)]
    epochs: Option<usize>,
    #[command(flatten)]
    run: RunArgs,
}

/// Flags shared by `train` and `experiment`.
#[derive(Args)]
struct RunArgs {
    /// Seed of the random generator (initialisation and shuffling).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Folder holding MNIST [default: $MNIST_DIR, ./data/mnist, ../shared/data/mnist, the cache].
    #[arg(long)]
    data_dir: Option<PathBuf>,
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
    /// Continue training the model saved in this file (its architecture replaces --hidden/--init).
    #[arg(long)]
    from: Option<PathBuf>,
    /// Write one row per epoch (losses, accuracies, seconds) to this .csv or .json file.
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
    /// Where to put the files [default: the user's cache folder].
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Base URL to fetch from instead of $MNIST_NN_MIRROR or the built-in mirrors (repeatable).
    #[arg(long)]
    mirror: Vec<String>,
}

fn positive(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".to_string()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("'{s}' is not a positive whole number")),
    }
}

fn positive_finite(s: &str) -> Result<f32, String> {
    match s.parse::<f32>() {
        Ok(x) if x.is_finite() && x > 0.0 => Ok(x),
        Ok(_) => Err(format!("{s} is not a positive finite number")),
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
        Command::Train(args) => train(args),
        Command::Experiment(args) => experiment(args),
        Command::Eval(args) => cli::inspect::eval(args),
        Command::Predict(args) => cli::predict::predict(args),
        Command::Show(args) => cli::inspect::show(args),
        Command::Download(args) => download(args),
        Command::Bench(args) => cli::bench::bench(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) if error.is::<cli::fit::Interrupted>() => ExitCode::from(130),
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// The model to continue from, if `--from` was given, checked against the data regime (and the
/// architecture, if one is required).
fn continued_model(
    run: &RunArgs,
    regime: Regime,
    architecture: Option<&[LayerSpec]>,
) -> Result<Option<model::SavedModel>> {
    let Some(path) = &run.from else {
        return Ok(None);
    };
    let saved = model::load(path)?;
    let expected = match regime {
        Regime::Seed003 => "pixels / 255 (seed 003)",
        Regime::Seed000 => "standardised (seed 000)",
    };
    let matches = matches!(
        (regime, saved.preprocessing),
        (Regime::Seed003, Preprocessing::Scale255)
            | (Regime::Seed000, Preprocessing::Standardise { .. })
    );
    if !matches {
        bail!(
            "{}: the model was trained on differently scaled pixels; this run needs {expected}",
            path.display()
        );
    }
    if let Some(architecture) = architecture {
        let specs: Vec<LayerSpec> = saved.network.layers().iter().map(|l| l.spec()).collect();
        if specs != architecture {
            bail!(
                "{}: the model's architecture is not this experiment's",
                path.display()
            );
        }
    }
    Ok(Some(saved))
}

fn train(args: TrainArgs) -> Result<()> {
    let hidden = args.hidden.unwrap_or_else(|| vec![32, 16]);
    let init = args.init.unwrap_or(Init::He);
    let batching = args.batch_size.map_or(Batching::Full, Batching::Mini);
    let from = continued_model(&args.run, Regime::Seed003, None)?;
    let (mnist, dir) = load_mnist(args.run.data_dir.as_deref(), Regime::Seed003)?;
    let mut rng = seeded_rng(args.run.seed);
    let (mut network, epochs_before, init_name) = match from {
        Some(saved) => (saved.network, saved.training.epochs, saved.training.init),
        None => {
            let mut sizes = vec![IMAGE_PIXELS];
            sizes.extend(&hidden);
            sizes.push(CLASSES);
            (
                Network::mlp(&sizes, init, &mut rng),
                0,
                Some(init.to_string()),
            )
        }
    };
    let record = Training {
        command: "train".into(),
        epochs: epochs_before + args.epochs,
        lr: args.lr,
        batch_size: args.batch_size,
        seed: args.run.seed,
        init: init_name.clone(),
    };
    let resume = resume_point(&args.run, &record, &mut network, &mut rng)?;
    let settings = vec![
        ("network", network_summary(&network)),
        (
            "initialisation",
            init_name.unwrap_or_else(|| "unknown".into()),
        ),
        ("seed", args.run.seed.to_string()),
    ];
    let run = Run {
        title: "mnist-nn train".to_string(),
        settings,
        mnist: &mnist,
        data_dir: &dir,
        regime: Regime::Seed003,
        lr: args.lr,
        batching,
        epochs: args.epochs,
        log_every: args.run.log_every.unwrap_or((args.epochs / 10).max(1)),
        test_every: args.run.test_every,
        from: args.run.from.as_deref(),
        save: args.run.save.as_deref(),
        metrics: args.run.metrics.as_deref(),
        plot: args.run.plot.as_deref(),
        record,
        checkpoint: &args.run.checkpoint,
        checkpoint_every: args.run.checkpoint_every,
        resume,
    };
    fit(&mut network, &run, &mut rng)
}

fn experiment(args: ExperimentArgs) -> Result<()> {
    let experiment = experiments::find(&args.name).expect("clap checked the name");
    let mut rng = seeded_rng(args.run.seed);
    let fresh = experiment.build(&mut rng);
    let architecture: Vec<LayerSpec> = fresh.layers().iter().map(|l| l.spec()).collect();
    let from = continued_model(&args.run, experiment.regime, Some(&architecture))?;
    let (mnist, dir) = load_mnist(args.run.data_dir.as_deref(), experiment.regime)?;
    let epochs_before = from.as_ref().map_or(0, |saved| saved.training.epochs);
    let mut network = from.map_or(fresh, |saved| saved.network);
    let epochs = args.epochs.unwrap_or(experiment.epochs);
    let record = Training {
        command: format!("experiment {}", experiment.name),
        epochs: epochs_before + epochs,
        lr: experiment.lr,
        batch_size: match experiment.batching {
            Batching::Mini(size) => Some(size),
            Batching::Full => None,
        },
        seed: args.run.seed,
        init: Some(experiment.init.to_string()),
    };
    let resume = resume_point(&args.run, &record, &mut network, &mut rng)?;
    let default_log_every = if mnist.validation.is_some() {
        1
    } else {
        (epochs / 10).max(1)
    };
    let run = Run {
        title: format!("mnist-nn experiment {}", experiment.name),
        settings: vec![
            ("network", experiment.network.to_string()),
            (
                "seed's figure",
                format!(
                    "{} after {} epochs",
                    experiment.seed_figure, experiment.epochs
                ),
            ),
            ("seed", args.run.seed.to_string()),
        ],
        mnist: &mnist,
        data_dir: &dir,
        regime: experiment.regime,
        lr: experiment.lr,
        batching: experiment.batching,
        epochs,
        log_every: args.run.log_every.unwrap_or(default_log_every),
        test_every: args.run.test_every.or(experiment.test_every),
        from: args.run.from.as_deref(),
        save: args.run.save.as_deref(),
        metrics: args.run.metrics.as_deref(),
        plot: args.run.plot.as_deref(),
        record,
        checkpoint: &args.run.checkpoint,
        checkpoint_every: args.run.checkpoint_every,
        resume,
    };
    fit(&mut network, &run, &mut rng)
}

/// With `--resume`, replaces `network` and `rng` by the checkpoint's and returns where the run
/// stood; the checkpoint must come from the same command with the same settings.
fn resume_point(
    run: &RunArgs,
    record: &Training,
    network: &mut Network,
    rng: &mut mnist_nn::SeededRng,
) -> Result<Option<(usize, mnist_nn::train::EpochProgress)>> {
    let Some(path) = &run.resume else {
        return Ok(None);
    };
    let saved = checkpoint::load(path)?;
    let (mine, theirs) = (record, &saved.model.training);
    let same = mine.command == theirs.command
        && mine.epochs == theirs.epochs
        && mine.lr == theirs.lr
        && mine.batch_size == theirs.batch_size
        && mine.seed == theirs.seed;
    if !same {
        bail!(
            "{}: the checkpoint comes from `{}` with {} epochs, learning rate {}, batch size {:?}, seed {}; \
             resume with the same settings",
            path.display(),
            theirs.command,
            theirs.epochs,
            theirs.lr,
            theirs.batch_size,
            theirs.seed
        );
    }
    let specs = |n: &Network| -> Vec<LayerSpec> { n.layers().iter().map(|l| l.spec()).collect() };
    if specs(network) != specs(&saved.model.network) {
        bail!(
            "{}: the checkpoint's network is not this run's",
            path.display()
        );
    }
    *network = saved.model.network;
    *rng = saved.rng;
    println!(
        "resuming from {} after {} epochs",
        path.display(),
        saved.epochs_done
    );
    Ok(Some((saved.epochs_done, saved.progress)))
}

/// `784-32-16-10` for a multilayer perceptron, else the layers in one line.
fn network_summary(network: &Network) -> String {
    let specs: Vec<LayerSpec> = network.layers().iter().map(|l| l.spec()).collect();
    let mut sizes = vec![IMAGE_PIXELS.to_string()];
    for spec in &specs {
        match spec {
            LayerSpec::Linear { outputs, .. } => sizes.push(outputs.to_string()),
            LayerSpec::ReLU => {}
            _ => return network.describe(),
        }
    }
    sizes.join("-")
}

fn download(args: DownloadArgs) -> Result<()> {
    let dir = match args.dir {
        Some(dir) => dir,
        None => locate::cache_dir().context("this system has no cache folder: pass --dir DIR")?,
    };
    fetch_with_progress(&dir, &mirrors(args.mirror))?;
    println!("MNIST is in {}", dir.display());
    Ok(())
}
