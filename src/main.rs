//! `mnist-nn`: the command line, a thin shell over the `mnist_nn` library.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use mnist_nn::data::download::{download_mnist, DownloadEvent, MIRRORS};
use mnist_nn::data::{load_raw, locate, Mnist, Regime, CLASSES, IMAGE_PIXELS};
use mnist_nn::init::Init;
use mnist_nn::network::Network;
use mnist_nn::seeded_rng;
use mnist_nn::train::{Batching, Sgd};

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
    /// Download the four MNIST files, verified against their published SHA-256.
    Download(DownloadArgs),
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
    let batching = args.batch_size.map_or(Batching::Full, Batching::Mini);

    let (mnist, dir) = load_mnist(args.data_dir.as_deref(), Regime::Seed003)?;
    let mut rng = seeded_rng(args.seed);
    let mut network = Network::mlp(&sizes, args.init, &mut rng);
    let mut sgd = Sgd::new(args.lr, batching);
    let n_train = mnist.train.len();

    let architecture: Vec<String> = sizes.iter().map(|s| s.to_string()).collect();
    println!("mnist-nn train");
    println!(
        "  network:        {} ({} parameters)",
        architecture.join("-"),
        network.parameter_count()
    );
    println!("  layers:         {}", network.describe());
    println!("  initialisation: {}", args.init);
    let batches = match batching {
        Batching::Mini(size) if size < n_train => {
            format!("minibatches of {size}, reshuffled every epoch")
        }
        _ => format!("full batch ({n_train} examples per update)"),
    };
    println!(
        "  training:       {batches}, learning rate {}, {} epochs, seed {}",
        args.lr, args.epochs, args.seed
    );
    println!(
        "  data:           {} ({} train, {} test, pixels / 255)",
        dir.display(),
        n_train,
        mnist.test.len()
    );

    let log_every = args.log_every.unwrap_or((args.epochs / 10).max(1));
    let bar = progress_bar(
        (args.epochs * n_train) as u64,
        "{elapsed_precise} [{bar:30}] {percent:>3}% eta {eta} {msg}",
    );
    let start = Instant::now();
    for epoch in 1..=args.epochs {
        let stats = sgd.epoch(&mut network, &mnist.train, &mut rng, |done, _, loss| {
            bar.set_position(((epoch - 1) * n_train + done) as u64);
            bar.set_message(format!("epoch {epoch}/{} loss {loss:.4}", args.epochs));
        });
        if !stats.loss.is_finite() {
            bar.abandon();
            bail!(
                "training diverged at epoch {epoch}: the loss is {}. Try a smaller learning rate than {}.",
                stats.loss,
                args.lr
            );
        }
        if epoch % log_every == 0 || epoch == args.epochs {
            bar.suspend(|| {
                println!(
                    "epoch {epoch:>width$}/{}  loss {:.4}  train accuracy {:.4}  ({:.1} s)",
                    args.epochs,
                    stats.loss,
                    stats.accuracy,
                    start.elapsed().as_secs_f64(),
                    width = args.epochs.to_string().len()
                )
            });
        }
    }
    bar.finish_and_clear();
    let seconds = start.elapsed().as_secs_f64();
    println!(
        "training time: {seconds:.1} s ({:.3} s per epoch)",
        seconds / args.epochs as f64
    );
    let train_result = network.evaluate(mnist.train.images.view(), &mnist.train.labels);
    let test_result = network.evaluate(mnist.test.images.view(), &mnist.test.labels);
    println!("train loss: {:.4}", train_result.loss);
    println!("train accuracy: {:.4}", train_result.accuracy);
    println!("test loss: {:.4}", test_result.loss);
    println!("test accuracy: {:.4}", test_result.accuracy);
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

/// Finds MNIST (downloading it into the cache when it is nowhere and no folder was named), reads
/// it and prepares it under `regime`. Returns the data and the folder it came from.
fn load_mnist(data_dir: Option<&Path>, regime: Regime) -> Result<(Mnist, PathBuf)> {
    let env_dir = std::env::var_os("MNIST_DIR").map(PathBuf::from);
    let candidates = locate::candidates(data_dir, env_dir.as_deref());
    let dir = match locate::find(&candidates) {
        Some(found) => found.dir.clone(),
        None if data_dir.is_some() => bail!(locate::not_found_message(&candidates, None)),
        None => {
            let cache = locate::cache_dir()
                .with_context(|| locate::not_found_message(&candidates, Some("no cache folder")))?;
            eprintln!(
                "MNIST not found locally: downloading it into {}",
                cache.display()
            );
            if let Err(error) = fetch_with_progress(&cache, &mirrors(Vec::new())) {
                bail!(locate::not_found_message(
                    &candidates,
                    Some(&format!("{error:#}"))
                ));
            }
            cache
        }
    };
    let raw = load_raw(&dir).with_context(|| format!("reading MNIST from {}", dir.display()))?;
    Ok((Mnist::prepare(&raw, regime), dir))
}

/// The base URLs to download from: those given with `--mirror`, else `$MNIST_NN_MIRROR`, else the
/// built-in mirrors.
fn mirrors(given: Vec<String>) -> Vec<String> {
    if !given.is_empty() {
        return given;
    }
    match std::env::var("MNIST_NN_MIRROR") {
        Ok(mirror) if !mirror.is_empty() => vec![mirror],
        _ => MIRRORS.iter().map(|m| m.to_string()).collect(),
    }
}

/// Downloads MNIST into `dir`, with a progress bar per file.
fn fetch_with_progress(dir: &Path, mirrors: &[String]) -> Result<()> {
    let mut bar: Option<ProgressBar> = None;
    download_mnist(dir, mirrors, &mut |event| match event {
        DownloadEvent::AlreadyPresent(file) => println!("{file}: already present and verified"),
        DownloadEvent::Started { file, url, total } => {
            let new_bar = progress_bar(
                total.unwrap_or(0),
                "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
            );
            new_bar.set_message(file);
            new_bar.suspend(|| println!("fetching {url}"));
            bar = Some(new_bar);
        }
        DownloadEvent::Received(bytes) => {
            if let Some(bar) = &bar {
                bar.inc(bytes);
            }
        }
        DownloadEvent::Saved(file) => {
            if let Some(bar) = bar.take() {
                bar.finish_and_clear();
            }
            println!("{file}: verified and saved");
        }
    })
    .with_context(|| format!("downloading MNIST into {}", dir.display()))
}

/// A progress bar on standard error (drawn only when that is a terminal).
fn progress_bar(len: u64, template: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(template)
            .expect("a valid progress template")
            .progress_chars("=> "),
    );
    bar
}
