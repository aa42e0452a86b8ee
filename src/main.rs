//! `mnist-nn`: the command line, a thin shell over the `mnist_nn` library.

mod cli;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::builder::PossibleValuesParser;
use clap::{Args, Parser, Subcommand};

use cli::fetch::{fetch_with_progress, load_mnist, load_raw_mnist, mirrors};
use cli::fit::{fit, Run};
use mnist_nn::atomic::write_atomically;
use mnist_nn::data::{locate, Regime, CLASSES, IMAGE_PIXELS};
use mnist_nn::init::Init;
use mnist_nn::network::Network;
use mnist_nn::seeded_rng;
use mnist_nn::train::Batching;
use mnist_nn::{draw, experiments};

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
    /// Show MNIST digits and their labels in the terminal, and optionally as a PNG.
    Show(ShowArgs),
    /// Download the four MNIST files, verified against their published SHA-256.
    Download(DownloadArgs),
}

#[derive(Args)]
struct ShowArgs {
    /// Which images (0-based positions in the split).
    #[arg(required = true, num_args = 1..)]
    indices: Vec<usize>,
    /// The training (60,000) or test (10,000) images.
    #[arg(long, value_parser = ["train", "test"], default_value = "train")]
    split: String,
    /// Also write the digits, enlarged and captioned with their labels, to this PNG file.
    #[arg(long)]
    png: Option<PathBuf>,
    /// Folder holding MNIST [default: $MNIST_DIR, ./data/mnist, ../shared/data/mnist, the cache].
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

#[derive(Args)]
struct ExperimentArgs {
    /// Which experiment.
    #[arg(value_parser = PossibleValuesParser::new(experiments::names()))]
    name: String,
    /// Run this many epochs instead of the experiment's own number.
    #[arg(long, value_parser = positive, allow_negative_numbers = true)]
    epochs: Option<usize>,
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
    /// Also print the test accuracy every this many epochs [default: the experiment's own, if any].
    #[arg(long, value_parser = positive)]
    test_every: Option<usize>,
}

#[derive(Args)]
struct TrainArgs {
    /// Sizes of the hidden layers, e.g. `--hidden 300 100`.
    #[arg(long, alias = "n-hidden", num_args = 1.., default_values_t = [32, 16], value_parser = positive, allow_negative_numbers = true)]
    hidden: Vec<usize>,
    /// Passes over the training set.
    #[arg(long, default_value_t = 500, value_parser = positive, allow_negative_numbers = true)]
    epochs: usize,
    /// Learning rate of gradient descent.
    #[arg(long, alias = "learning-rate", default_value_t = 0.2, value_parser = positive_finite, allow_negative_numbers = true)]
    lr: f32,
    /// Weight initialisation: he, xavier, gaussian or samson.
    #[arg(long, alias = "initial-params", default_value = "he", value_parser = str::parse::<Init>)]
    init: Init,
    /// Examples per update, reshuffled every epoch [default: full batch, one update per epoch].
    #[arg(long, value_parser = positive, allow_negative_numbers = true)]
    batch_size: Option<usize>,
    /// Seed of the random generator (initialisation and shuffling).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Folder holding MNIST [default: $MNIST_DIR, ./data/mnist, ../shared/data/mnist, the cache].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Print a line every this many epochs [default: about ten lines in all].
    #[arg(long, value_parser = positive)]
    log_every: Option<usize>,
    /// Also print the test accuracy every this many epochs.
    #[arg(long, value_parser = positive)]
    test_every: Option<usize>,
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Train(args) => train(args),
        Command::Experiment(args) => experiment(args),
        Command::Show(args) => show(args),
        Command::Download(args) => download(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn train(args: TrainArgs) -> Result<()> {
    let mut sizes = vec![IMAGE_PIXELS];
    sizes.extend(&args.hidden);
    sizes.push(CLASSES);
    let (mnist, dir) = load_mnist(args.data_dir.as_deref(), Regime::Seed003)?;
    let mut rng = seeded_rng(args.seed);
    let mut network = Network::mlp(&sizes, args.init, &mut rng);
    let architecture: Vec<String> = sizes.iter().map(|s| s.to_string()).collect();
    let run = Run {
        title: "mnist-nn train".to_string(),
        settings: vec![
            ("network", architecture.join("-")),
            ("initialisation", args.init.to_string()),
            ("seed", args.seed.to_string()),
        ],
        mnist: &mnist,
        data_dir: &dir,
        regime: Regime::Seed003,
        lr: args.lr,
        batching: args.batch_size.map_or(Batching::Full, Batching::Mini),
        epochs: args.epochs,
        log_every: args.log_every.unwrap_or((args.epochs / 10).max(1)),
        test_every: args.test_every,
    };
    fit(&mut network, &run, &mut rng)
}

fn experiment(args: ExperimentArgs) -> Result<()> {
    let experiment = experiments::find(&args.name).expect("clap checked the name");
    let (mnist, dir) = load_mnist(args.data_dir.as_deref(), experiment.regime)?;
    let mut rng = seeded_rng(args.seed);
    let mut network = experiment.build(&mut rng);
    let epochs = args.epochs.unwrap_or(experiment.epochs);
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
            ("seed", args.seed.to_string()),
        ],
        mnist: &mnist,
        data_dir: &dir,
        regime: experiment.regime,
        lr: experiment.lr,
        batching: experiment.batching,
        epochs,
        log_every: args.log_every.unwrap_or(default_log_every),
        test_every: args.test_every.or(experiment.test_every),
    };
    fit(&mut network, &run, &mut rng)
}

fn show(args: ShowArgs) -> Result<()> {
    let (raw, _) = load_raw_mnist(args.data_dir.as_deref())?;
    let split = if args.split == "test" {
        &raw.test
    } else {
        &raw.train
    };
    if let Some(&bad) = args.indices.iter().find(|&&i| i >= split.len()) {
        bail!(
            "index {bad} is out of range: the {} split has images 0 to {}",
            args.split,
            split.len() - 1
        );
    }
    for &index in &args.indices {
        println!(
            "{} image {index}: label {}",
            args.split, split.labels[index]
        );
        for line in draw::terminal(split.image(index)) {
            println!("  {line}");
        }
    }
    if let Some(path) = &args.png {
        let digits: Vec<(&[u8], String)> = args
            .indices
            .iter()
            .map(|&i| (split.image(i), split.labels[i].to_string()))
            .collect();
        let bytes = draw::png_strip(&digits, 4).context("encoding the PNG")?;
        write_atomically(path, &bytes).with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(())
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
