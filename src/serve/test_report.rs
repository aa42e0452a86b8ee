//! What the mistakes page shows: the model's answer for every test image, and the confusion
//! matrix they make.

use serde::Serialize;

use crate::data::{RawSplit, CLASSES};
use crate::loss::argmax;

use super::predictor::Predictor;

/// Test images per forward pass while the report is made.
const CHUNK: usize = 500;

/// The model's answers on the test set.
pub struct TestReport {
    /// The test images as stored (784 pixels each) and their labels.
    test: RawSplit,
    /// The class probabilities of every test image, `CLASSES` per image.
    probabilities: Vec<f32>,
    /// The predicted class of every test image.
    predictions: Vec<u8>,
    /// `confusion[truth][predicted]`: how many test images of class `truth` were predicted as
    /// `predicted`.
    confusion: [[usize; CLASSES]; CLASSES],
}

/// One test image of a cell of the confusion matrix.
#[derive(Debug, Clone, Serialize)]
pub struct TestImage {
    /// Its position in the test set (0-based).
    pub index: usize,
    /// Its 784 pixels, row by row (0 = background, 255 = ink).
    pub pixels: Vec<u8>,
    /// The model's probability for each class.
    pub probabilities: Vec<f32>,
}

impl TestReport {
    /// Runs `predictor` on every image of `test`.
    pub fn new(predictor: &Predictor, test: RawSplit) -> TestReport {
        let mut probabilities = Vec::with_capacity(test.len() * CLASSES);
        for start in (0..test.len()).step_by(CHUNK) {
            let images: Vec<&[u8]> = (start..(start + CHUNK).min(test.len()))
                .map(|i| test.image(i))
                .collect();
            probabilities.extend(predictor.probabilities(&images));
        }
        let predictions: Vec<u8> = probabilities
            .chunks(CLASSES)
            .map(|p| argmax(p.iter().copied()) as u8)
            .collect();
        let mut confusion = [[0; CLASSES]; CLASSES];
        for (&truth, &predicted) in test.labels.iter().zip(&predictions) {
            confusion[truth as usize][predicted as usize] += 1;
        }
        TestReport {
            test,
            probabilities,
            predictions,
            confusion,
        }
    }

    /// How many test images there are.
    pub fn len(&self) -> usize {
        self.test.len()
    }

    /// Whether the test set is empty.
    pub fn is_empty(&self) -> bool {
        self.test.is_empty()
    }

    /// `[truth][predicted]` counts.
    pub fn confusion(&self) -> &[[usize; CLASSES]; CLASSES] {
        &self.confusion
    }

    /// The fraction of test images predicted correctly.
    pub fn accuracy(&self) -> f64 {
        let correct: usize = (0..CLASSES).map(|c| self.confusion[c][c]).sum();
        correct as f64 / self.len().max(1) as f64
    }

    /// The first `limit` test images of class `truth` predicted as `predicted`, in test-set order.
    pub fn cell(&self, truth: u8, predicted: u8, limit: usize) -> Vec<TestImage> {
        (0..self.len())
            .filter(|&i| self.test.labels[i] == truth && self.predictions[i] == predicted)
            .take(limit)
            .map(|index| TestImage {
                index,
                pixels: self.test.image(index).to_vec(),
                probabilities: self.probabilities[index * CLASSES..(index + 1) * CLASSES].to_vec(),
            })
            .collect()
    }
}
