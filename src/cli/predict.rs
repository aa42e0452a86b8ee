//! `predict`: what a saved model sees in your own pictures.
//!
//! A picture is prepared as the model's data set was made: for MNIST, the ink's bounding box
//! scaled to 20x20 and centred by its centre of mass in 28x28; for the other sets, the whole
//! picture scaled to 28 pixels on its longer side and centred ([`prepare`]). Both take either
//! polarity and remove the background's own level.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use ndarray::Array2;
use serde::Serialize;

use mnist_nn::data::handwriting::prepare;
use mnist_nn::data::{DataSet, IMAGE_PIXELS};
use mnist_nn::loss::{argmax, softmax_rows};
use mnist_nn::model;

#[derive(Args)]
pub struct PredictArgs {
    /// The saved model (.safetensors).
    #[arg(long)]
    model: PathBuf,
    /// Pictures of one digit (or garment, or character) each: PNG or JPEG, any size, either polarity.
    #[arg(required = true, num_args = 1..)]
    images: Vec<PathBuf>,
    /// The data set [default: the one the model was trained on; another is refused].
    #[arg(long, value_parser = str::parse::<DataSet>)]
    dataset: Option<DataSet>,
    /// Print one JSON array of {file, prediction, probabilities} instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct Prediction {
    file: String,
    prediction: usize,
    /// The predicted class's name.
    class: &'static str,
    probabilities: Vec<f32>,
}

pub fn predict(args: PredictArgs) -> Result<()> {
    let saved = model::load(&args.model)?;
    let set = super::inspect::model_dataset(&args.model, saved.training.dataset, args.dataset)?;
    let mut network = saved.network;
    let mut inputs = Array2::<f32>::zeros((args.images.len(), IMAGE_PIXELS));
    for (path, mut row) in args.images.iter().zip(inputs.rows_mut()) {
        let picture = image::open(path)
            .with_context(|| format!("{}: cannot read it as an image", path.display()))?;
        let pixels =
            prepare(set, &picture).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        for (input, &pixel) in row.iter_mut().zip(&pixels) {
            *input = saved.preprocessing.apply(pixel);
        }
    }
    let probabilities = softmax_rows(network.forward(inputs.view(), false));
    let predictions: Vec<Prediction> = args
        .images
        .iter()
        .zip(probabilities.rows())
        .map(|(path, p)| {
            let prediction = argmax(p.iter().copied());
            Prediction {
                file: path.display().to_string(),
                prediction,
                class: set.class_name(prediction as u8),
                probabilities: p.to_vec(),
            }
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
            let answer = if set == DataSet::Mnist {
                p.prediction.to_string()
            } else {
                format!("{} ({})", p.prediction, p.class)
            };
            println!("{}: {answer}   ({})", p.file, listing.join("  "));
        }
    }
    Ok(())
}
