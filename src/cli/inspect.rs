//! Looking at data and models: `show` draws MNIST digits, `eval` takes a saved model apart.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;

use mnist_nn::atomic::write_atomically;
use mnist_nn::data::CLASSES;
use mnist_nn::loss::{argmax, loss_and_correct};
use mnist_nn::{draw, model};

use super::fetch::load_raw_mnist;
use super::train::progress_bar;

#[derive(Args)]
pub struct ShowArgs {
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

pub fn show(args: ShowArgs) -> Result<()> {
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

#[derive(Args)]
pub struct EvalArgs {
    /// The saved model (.safetensors).
    #[arg(long)]
    model: PathBuf,
    /// Also write `confusion.png` (a heat map) and `mistakes.png` (misclassified digits, captioned
    /// true/predicted) into this folder.
    #[arg(long)]
    png: Option<PathBuf>,
    /// Folder holding MNIST [default: $MNIST_DIR, ./data/mnist, ../shared/data/mnist, the cache].
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

/// Most misclassified digits drawn in `mistakes.png`.
const GALLERY: usize = 100;

pub fn eval(args: EvalArgs) -> Result<()> {
    let saved = model::load(&args.model)?;
    let (raw, dir) = load_raw_mnist(args.data_dir.as_deref())?;
    let test = saved.preprocessing.dataset(&raw.test, 0..raw.test.len());
    let mut network = saved.network;
    let t = &saved.training;
    println!("mnist-nn eval {}", args.model.display());
    println!("  layers:         {}", network.describe());
    println!(
        "  trained by:     {}, {} epochs, learning rate {}, {}, seed {}",
        t.command,
        t.epochs,
        t.lr,
        t.batch_size
            .map_or("full batch".to_string(), |b| format!("batches of {b}")),
        t.seed
    );
    println!(
        "  data:           {} ({} test images)",
        dir.display(),
        test.len()
    );

    // Evaluate in chunks, under a progress bar.
    const CHUNK: usize = 500;
    let bar = progress_bar(
        test.len() as u64,
        "evaluating [{bar:30}] {pos}/{len} images",
    );
    let (mut total_loss, mut predictions) = (0.0, Vec::with_capacity(test.len()));
    for start in (0..test.len()).step_by(CHUNK) {
        let end = (start + CHUNK).min(test.len());
        let images = test.images.slice(ndarray::s![start..end, ..]);
        let logits = network.forward(images, false);
        total_loss +=
            loss_and_correct(logits, &test.labels[start..end]).loss * (end - start) as f64;
        predictions.extend(
            logits
                .rows()
                .into_iter()
                .map(|row| argmax(row.iter().copied()) as u8),
        );
        bar.set_position(end as u64);
    }
    bar.finish_and_clear();
    let correct = predictions
        .iter()
        .zip(&test.labels)
        .filter(|(p, l)| p == l)
        .count();
    let (loss, accuracy) = (
        total_loss / test.len() as f64,
        correct as f64 / test.len() as f64,
    );
    let mut confusion = [[0usize; CLASSES]; CLASSES];
    for (&truth, &predicted) in test.labels.iter().zip(&predictions) {
        confusion[truth as usize][predicted as usize] += 1;
    }

    println!("\nper class:\n  digit  images  correct  accuracy");
    for (digit, row) in confusion.iter().enumerate() {
        let total: usize = row.iter().sum();
        println!(
            "  {digit:>5}  {total:>6}  {:>7}  {:>8.4}",
            row[digit],
            row[digit] as f64 / total.max(1) as f64
        );
    }
    println!("\nconfusion matrix (rows: true digit, columns: predicted):");
    println!(
        "       {}",
        (0..CLASSES).map(|d| format!("{d:>5}")).collect::<String>()
    );
    for (digit, row) in confusion.iter().enumerate() {
        println!(
            "  {digit:>3}  {}",
            row.iter().map(|c| format!("{c:>5}")).collect::<String>()
        );
    }

    if let Some(folder) = &args.png {
        std::fs::create_dir_all(folder)
            .with_context(|| format!("creating {}", folder.display()))?;
        let heat_map = draw::confusion_png(&confusion).context("drawing the confusion matrix")?;
        let path = folder.join("confusion.png");
        write_atomically(&path, &heat_map)
            .with_context(|| format!("writing {}", path.display()))?;
        println!("\nwrote {}", path.display());
        let mistakes: Vec<(&[u8], String)> = (0..test.len())
            .filter(|&i| predictions[i] != test.labels[i])
            .take(GALLERY)
            .map(|i| {
                (
                    raw.test.image(i),
                    format!("{}/{}", test.labels[i], predictions[i]),
                )
            })
            .collect();
        let gallery = draw::png_grid(&mistakes, 10, 3).context("drawing the mistakes")?;
        let path = folder.join("mistakes.png");
        write_atomically(&path, &gallery).with_context(|| format!("writing {}", path.display()))?;
        println!(
            "wrote {} (the first {} of {} mistakes, captioned true/predicted)",
            path.display(),
            mistakes.len(),
            predictions
                .iter()
                .zip(&test.labels)
                .filter(|(p, l)| p != l)
                .count()
        );
    }
    println!("test loss: {loss:.4}");
    println!("test accuracy: {accuracy:.4}");
    Ok(())
}
