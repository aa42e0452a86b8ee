//! `predict`: the digit in your own pictures, by a saved model.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use ndarray::Array2;
use serde::Serialize;

use mnist_nn::data::handwriting::mnist_like;
use mnist_nn::data::IMAGE_PIXELS;
use mnist_nn::loss::{argmax, softmax_rows};
use mnist_nn::model;

#[derive(Args)]
pub struct PredictArgs {
    /// The saved model (.safetensors).
    #[arg(long)]
    model: PathBuf,
    /// Pictures of one digit each (PNG or JPEG, any size, either polarity).
    #[arg(required = true, num_args = 1..)]
    images: Vec<PathBuf>,
    /// Print one JSON array of {file, prediction, probabilities} instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct Prediction {
    file: String,
    prediction: usize,
    probabilities: Vec<f32>,
}

pub fn predict(args: PredictArgs) -> Result<()> {
    let saved = model::load(&args.model)?;
    let mut network = saved.network;
    let mut inputs = Array2::<f32>::zeros((args.images.len(), IMAGE_PIXELS));
    for (path, mut row) in args.images.iter().zip(inputs.rows_mut()) {
        let picture = image::open(path)
            .with_context(|| format!("{}: cannot read it as an image", path.display()))?;
        let pixels =
            mnist_like(&picture).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        for (input, &pixel) in row.iter_mut().zip(&pixels) {
            *input = saved.preprocessing.apply(pixel);
        }
    }
    let probabilities = softmax_rows(network.forward(inputs.view(), false));
    let predictions: Vec<Prediction> = args
        .images
        .iter()
        .zip(probabilities.rows())
        .map(|(path, p)| Prediction {
            file: path.display().to_string(),
            prediction: argmax(p.iter().copied()),
            probabilities: p.to_vec(),
        })
        .collect();
    if args.json {
        println!("{}", serde_json::to_string(&predictions)?);
    } else {
        for p in &predictions {
            let listing: Vec<String> = p
                .probabilities
                .iter()
                .enumerate()
                .map(|(d, q)| format!("{d}: {q:.3}"))
                .collect();
            println!("{}: {}   ({})", p.file, p.prediction, listing.join("  "));
        }
    }
    Ok(())
}
