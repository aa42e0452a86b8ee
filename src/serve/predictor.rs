//! A saved model answering many requests at once.
//!
//! A [`Network`] keeps its activations in buffers it owns, so a forward pass needs `&mut` access:
//! one network cannot serve two requests at the same time. The predictor keeps a pool of
//! identical networks, all read from the same model file's bytes. A request takes one out (or
//! builds a new one when all are busy), runs its forward pass, and puts it back, so the pool grows
//! to the number of requests that were ever in flight together and no request waits for another.

use std::sync::Mutex;

use image::DynamicImage;
use ndarray::Array2;
use serde::Serialize;

use crate::data::handwriting::prepare;
use crate::data::{DataSet, Preprocessing, IMAGE_PIXELS};
use crate::loss::{argmax, softmax_rows};
use crate::model::{self, SavedModel, Training};
use crate::network::Network;

/// What a model makes of one picture.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Prediction {
    /// The most probable class.
    pub prediction: usize,
    /// Its name ("7", "Sneaker", ...).
    pub class: &'static str,
    /// The probability of each class (softmax of the logits), summing to 1.
    pub probabilities: Vec<f32>,
    /// The 28x28 pixels the network received (0 = background, 255 = ink), row by row.
    pub input: Vec<u8>,
}

/// A saved model with a pool of networks to run it.
pub struct Predictor {
    /// The model file, to build more networks from.
    model_bytes: Vec<u8>,
    /// Networks not in use right now.
    idle: Mutex<Vec<Network>>,
    /// How pixels become inputs.
    preprocessing: Preprocessing,
    /// How the model was trained (its data set among it).
    training: Training,
}

impl Predictor {
    /// A predictor for the model file `model_bytes` (the contents of a `.safetensors` file).
    pub fn new(model_bytes: Vec<u8>) -> Result<Predictor, String> {
        let SavedModel {
            network,
            preprocessing,
            training,
        } = model::from_bytes(&model_bytes)?;
        Ok(Predictor {
            model_bytes,
            idle: Mutex::new(vec![network]),
            preprocessing,
            training,
        })
    }

    /// How the model was trained.
    pub fn training(&self) -> &Training {
        &self.training
    }

    /// The data set the model was trained on, whose classes it predicts.
    pub fn dataset(&self) -> DataSet {
        self.training.dataset
    }

    /// Runs `f` with a network of the pool to itself.
    pub fn with_network<T>(&self, f: impl FnOnce(&mut Network) -> T) -> T {
        let taken = self.idle.lock().expect("the pool's lock").pop();
        let mut network = taken.unwrap_or_else(|| {
            model::from_bytes(&self.model_bytes)
                .expect("the model was read once already")
                .network
        });
        let result = f(&mut network);
        self.idle.lock().expect("the pool's lock").push(network);
        result
    }

    /// The class probabilities `(n, classes)` of `images`, each 784 pixels (0 = background,
    /// 255 = ink) prepared as the data set's images were.
    pub fn probabilities(&self, images: &[&[u8]]) -> Array2<f32> {
        let mut inputs = Array2::<f32>::zeros((images.len(), IMAGE_PIXELS));
        for (mut row, pixels) in inputs.rows_mut().into_iter().zip(images) {
            assert_eq!(
                pixels.len(),
                IMAGE_PIXELS,
                "probabilities: 784 pixels per image"
            );
            for (input, &pixel) in row.iter_mut().zip(pixels.iter()) {
                *input = self.preprocessing.apply(pixel);
            }
        }
        self.with_network(|network| softmax_rows(network.forward(inputs.view(), false)))
    }

    /// The prediction for 784 pixels already prepared as the data set's images were.
    pub fn predict_pixels(&self, pixels: Vec<u8>) -> Prediction {
        let probabilities = self.probabilities(&[&pixels]).row(0).to_vec();
        let prediction = argmax(probabilities.iter().copied());
        Prediction {
            prediction,
            class: self.dataset().class_name(prediction as u8),
            probabilities,
            input: pixels,
        }
    }

    /// The prediction for a picture of any size, prepared first as `mnist-nn predict` does: the
    /// ink's bounding box scaled to 20x20 and centred by its centre of mass for digits, the whole
    /// picture scaled to 28 pixels for the other data sets. Fails on a blank picture.
    pub fn predict_picture(&self, picture: &DynamicImage) -> Result<Prediction, String> {
        Ok(self.predict_pixels(prepare(self.dataset(), picture)?))
    }
}
