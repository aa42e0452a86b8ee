//! Looking at data and models: `show` draws images with their classes, `eval` takes a saved model
//! apart.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;

use mnist_nn::atomic::write_atomically;
use mnist_nn::augment::Augmentation;
use mnist_nn::data::{DataSet, CLASSES};
use mnist_nn::loss::{argmax, loss_and_correct};
use mnist_nn::{draw, model};

use super::fetch::load_raw_set;
use super::train::progress_bar;

#[derive(Args)]
pub struct ShowArgs {
    /// Which images (0-based positions in the split).
    #[arg(required = true, num_args = 1..)]
    indices: Vec<usize>,
    /// The training (60,000) or test (10,000) images.
    #[arg(long, value_parser = ["train", "test"], default_value = "train")]
    split: String,
    /// Also write the images, enlarged and captioned with their classes, to this PNG file.
    #[arg(long)]
    png: Option<PathBuf>,
    /// The data set: mnist, fashion-mnist or kmnist.
    #[arg(long, default_value = "mnist", value_parser = str::parse::<DataSet>)]
    dataset: DataSet,
    /// Folder holding the data set [default: its variable, ./data/NAME, ../shared/data/NAME, the
    /// system package, the cache].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Also draw each training image as epochs 1, 2, ... of `train --augment SPEC --seed S` see it.
    #[arg(long, value_parser = str::parse::<Augmentation>)]
    augment: Option<Augmentation>,
    /// How many epochs' versions --augment draws.
    #[arg(long, default_value_t = 3, value_parser = crate::positive, requires = "augment")]
    copies: usize,
    /// The seed of the run whose augmented images --augment draws.
    #[arg(long, default_value_t = 0, requires = "augment")]
    seed: u64,
}

/// A label as the terminal shows it: `4` for MNIST, `4 (Coat)` for the others.
fn label_text(set: DataSet, label: u8) -> String {
    if set == DataSet::Mnist {
        label.to_string()
    } else {
        format!("{label} ({})", set.class_name(label))
    }
}

pub fn show(args: ShowArgs) -> Result<()> {
    let set = args.dataset;
    let (raw, _) = load_raw_set(set, args.data_dir.as_deref())?;
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
    if args.augment.is_some() && args.split == "test" {
        bail!("--augment distorts training images: it goes with --split train");
    }
    // Each image, then its augmented versions (epochs 1..=copies) with their captions.
    let versions = |index: usize| -> Vec<(Vec<u8>, String)> {
        let original = split.image(index);
        let caption = set.caption_names()[split.labels[index] as usize].to_string();
        let mut all = vec![(original.to_vec(), caption)];
        if let Some(augmentation) = &args.augment {
            all.extend((1..=args.copies as u64).map(|epoch| {
                let pixels = augmentation.image(original, args.seed, epoch, index);
                (pixels.to_vec(), format!("E{epoch}"))
            }));
        }
        all
    };
    for &index in &args.indices {
        println!(
            "{} {} image {index}: label {}",
            set.title(),
            args.split,
            label_text(set, split.labels[index])
        );
        if let Some(augmentation) = &args.augment {
            println!(
                "  as stored, then augmented with {augmentation}\n  as epochs 1-{} of a run with --seed {} see it:",
                args.copies, args.seed
            );
        }
        // Two pictures side by side at most: 60 columns.
        let pictures: Vec<Vec<String>> = versions(index)
            .iter()
            .map(|(pixels, _)| draw::terminal(pixels))
            .collect();
        for pair in pictures.chunks(2) {
            for row in 0..pair[0].len() {
                let line: Vec<&str> = pair.iter().map(|p| p[row].as_str()).collect();
                println!("  {}", line.join("  "));
            }
        }
    }
    if let Some(path) = &args.png {
        let drawn: Vec<Vec<(Vec<u8>, String)>> =
            args.indices.iter().map(|&i| versions(i)).collect();
        let digits: Vec<(&[u8], String)> = drawn
            .iter()
            .flatten()
            .map(|(pixels, caption)| (pixels.as_slice(), caption.clone()))
            .collect();
        // One row of images; with --augment, a row per image and its versions.
        let columns = if args.augment.is_some() {
            drawn[0].len()
        } else {
            digits.len()
        };
        let bytes = draw::png_grid(&digits, columns, 4).context("encoding the PNG")?;
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
    /// Also write `confusion.png` (a heat map) and `mistakes.png` (misclassified images, captioned
    /// true/predicted) into this folder.
    #[arg(long)]
    png: Option<PathBuf>,
    /// The data set [default: the one the model was trained on; another is refused].
    #[arg(long, value_parser = str::parse::<DataSet>)]
    dataset: Option<DataSet>,
    /// Folder holding the data set [default: its variable, ./data/NAME, ../shared/data/NAME, the
    /// system package, the cache].
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

/// The data set a saved model was trained on, refusing another one named with `--dataset`.
pub fn model_dataset(
    model: &std::path::Path,
    trained_on: DataSet,
    asked: Option<DataSet>,
) -> Result<DataSet> {
    match asked {
        Some(asked) if asked != trained_on => bail!(
            "{}: the model was trained on {}, not {}",
            model.display(),
            trained_on.title(),
            asked.title()
        ),
        _ => Ok(trained_on),
    }
}

/// Most misclassified digits drawn in `mistakes.png`.
const GALLERY: usize = 100;

pub fn eval(args: EvalArgs) -> Result<()> {
    let saved = model::load(&args.model)?;
    let set = model_dataset(&args.model, saved.training.dataset, args.dataset)?;
    let (raw, dir) = load_raw_set(set, args.data_dir.as_deref())?;
    let test = saved.preprocessing.dataset(&raw.test, 0..raw.test.len());
    let mut network = saved.network;
    println!("mnist-nn eval {}", args.model.display());
    println!("  layers:         {}", network.describe());
    println!("  trained by:     {}", saved.training.summary());
    println!(
        "  data:           {} in {} ({} test images)",
        set.title(),
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

    let names = set.class_names();
    let name_width = names
        .iter()
        .map(|n| n.chars().count())
        .max()
        .unwrap_or(1)
        .max(5);
    let pad = |name: &str| format!("{name}{}", " ".repeat(name_width - name.chars().count()));
    println!(
        "\nper class:\n  {}  images  correct  accuracy",
        pad("class")
    );
    for (class, row) in confusion.iter().enumerate() {
        let total: usize = row.iter().sum();
        println!(
            "  {}  {total:>6}  {:>7}  {:>8.4}",
            pad(names[class]),
            row[class],
            row[class] as f64 / total.max(1) as f64
        );
    }
    let captions = set.caption_names();
    let column = captions.iter().map(|c| c.len()).max().unwrap_or(1).max(4) + 1;
    println!("\nconfusion matrix (rows: true class, columns: predicted):");
    println!(
        "  {}{}",
        " ".repeat(name_width),
        captions
            .iter()
            .map(|c| format!("{c:>column$}"))
            .collect::<String>()
    );
    for (class, row) in confusion.iter().enumerate() {
        println!(
            "  {}{}",
            pad(names[class]),
            row.iter()
                .map(|c| format!("{c:>column$}"))
                .collect::<String>()
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
                let (truth, guess) = (test.labels[i] as usize, predictions[i] as usize);
                let caption = if set == DataSet::Mnist {
                    format!("{truth}/{guess}")
                } else {
                    format!("{}\n{}", captions[truth], captions[guess])
                };
                (raw.test.image(i), caption)
            })
            .collect();
        let gallery = draw::png_grid(&mistakes, 10, 3).context("drawing the mistakes")?;
        let path = folder.join("mistakes.png");
        write_atomically(&path, &gallery).with_context(|| format!("writing {}", path.display()))?;
        println!(
            "wrote {} (the first {} of {} mistakes, captioned true/predicted, or true over predicted)",
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
