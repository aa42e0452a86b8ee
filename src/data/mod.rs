//! MNIST and its look-alikes ([`DataSet`]): reading the files, finding them, downloading them, and
//! preparing them for training.
//!
//! The raw data is 28x28 grey images, one byte per pixel (0 = background, 255 = ink), with a
//! label 0-9 each. [`load_raw`] reads them from a folder holding either the four IDX files or
//! seed 000's two CSV files; [`Mnist::prepare`] turns them into float matrices under one of the
//! two preprocessing [`Regime`]s.

pub mod csv;
pub mod download;
pub mod handwriting;
pub mod idx;
pub mod locate;
pub mod sets;

pub use sets::DataSet;

use std::path::{Path, PathBuf};

use ndarray::{s, Array2};

/// Width and height of an MNIST image.
pub const IMAGE_SIDE: usize = 28;
/// Pixels per image: the network's input size.
pub const IMAGE_PIXELS: usize = IMAGE_SIDE * IMAGE_SIDE;
/// Number of classes (digits).
pub const CLASSES: usize = 10;

/// What can go wrong while finding, reading or downloading data.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The file was read but its contents are not what they should be.
    #[error("{file}: {message}")]
    Format {
        /// The file (and line, for CSV).
        file: String,
        /// What is wrong.
        message: String,
    },
    /// A download did not complete.
    #[error("download of {url} failed: {message}")]
    Download {
        /// What was asked for.
        url: String,
        /// Why it failed.
        message: String,
    },
    /// A file does not have the published SHA-256.
    #[error("{file}: SHA-256 of {what} is {actual}, expected {expected}; the file was not saved")]
    Checksum {
        /// The file.
        file: String,
        /// What was hashed: the decompressed content or the compressed file.
        what: &'static str,
        /// The published checksum.
        expected: String,
        /// What the content hashes to.
        actual: String,
    },
    /// No folder holds MNIST and it could not be downloaded.
    #[error("{0}")]
    NotFound(String),
}

impl DataError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        DataError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Images and labels straight from the files: one byte per pixel.
#[derive(Debug, Clone)]
pub struct RawSplit {
    /// `count * 784` pixels, image after image, row by row.
    pub pixels: Vec<u8>,
    /// One label 0-9 per image.
    pub labels: Vec<u8>,
}

impl RawSplit {
    /// Pairs images with labels, refusing counts that disagree.
    pub fn new(pixels: Vec<u8>, labels: Vec<u8>, what: &str) -> Result<Self, DataError> {
        if pixels.len() != labels.len() * IMAGE_PIXELS {
            return Err(DataError::Format {
                file: what.to_string(),
                message: format!(
                    "{} images but {} labels",
                    pixels.len() / IMAGE_PIXELS,
                    labels.len()
                ),
            });
        }
        Ok(RawSplit { pixels, labels })
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when there are no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The pixels of image `index`, 784 bytes.
    pub fn image(&self, index: usize) -> &[u8] {
        &self.pixels[index * IMAGE_PIXELS..(index + 1) * IMAGE_PIXELS]
    }
}

/// The MNIST training and test sets as stored.
#[derive(Debug, Clone)]
pub struct RawMnist {
    /// The 60,000 training images.
    pub train: RawSplit,
    /// The 10,000 test images.
    pub test: RawSplit,
}

/// A set of examples ready for a network: float pixels and their labels.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// `(n, 784)`: one image per row.
    pub images: Array2<f32>,
    /// `(n)`: the digit each image shows.
    pub labels: Vec<u8>,
}

impl Dataset {
    /// Pairs a matrix of images `(n, features)` with `n` labels.
    pub fn new(images: Array2<f32>, labels: Vec<u8>) -> Self {
        assert_eq!(
            images.nrows(),
            labels.len(),
            "Dataset: {} images but {} labels",
            images.nrows(),
            labels.len()
        );
        Dataset { images, labels }
    }

    /// Number of examples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when there are no examples.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The first `n` examples (all of them if there are fewer).
    pub fn head(&self, n: usize) -> Dataset {
        let n = n.min(self.len());
        Dataset::new(
            self.images.slice(s![..n, ..]).to_owned(),
            self.labels[..n].to_vec(),
        )
    }
}

/// The two ways the seeds prepare MNIST for training.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Regime {
    /// Seed 000 (mnist-numpy): the first 50,000 training images train, the last 10,000 validate;
    /// every split is standardised `(x - mean) / std` with the one mean and standard deviation of
    /// all pixels of the 50,000 training images.
    Seed000,
    /// Seed 003: all 60,000 training images train; pixels are divided by 255 into [0, 1].
    Seed003,
    /// PyTorch's MNIST examples: all 60,000 training images train; `pixel / 255` is standardised
    /// with the fixed mean 0.1307 and standard deviation 0.3081 (MNIST's, rounded).
    TorchVision,
    /// LeCun et al. 1998: all 60,000 training images train; pixels are scaled so that the white
    /// background is -0.1 and black ink 1.175 ([`Scaling::LeCun`]).
    LeCun,
}

/// How pixels become inputs, chosen before the data is read.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scaling {
    /// `pixel / 255`.
    Divide255,
    /// `(pixel - mean) / std` with the one mean and standard deviation of the pixels trained on.
    TrainingStatistics,
    /// `(pixel / 255 - mean) / std` with these numbers.
    Fixed {
        /// Mean of `pixel / 255`.
        mean: f64,
        /// Standard deviation of `pixel / 255`.
        std: f64,
    },
    /// LeNet-5's scaling, `(pixel - 20) / 200`: background -0.1 and ink 1.175, "which makes the
    /// mean input roughly 0, and the variance roughly 1, which accelerates learning" (LeCun et
    /// al. 1998, section II.B).
    LeCun,
}

impl Regime {
    /// The training images the regime holds out for validation, of `n`, and how it scales pixels.
    pub fn split(self, n: usize) -> (usize, Scaling) {
        match self {
            Regime::Seed000 => (n - SEED000_TRAIN.min(n), Scaling::TrainingStatistics),
            Regime::Seed003 => (0, Scaling::Divide255),
            Regime::TorchVision => (
                0,
                Scaling::Fixed {
                    mean: 0.1307,
                    std: 0.3081,
                },
            ),
            Regime::LeCun => (0, Scaling::LeCun),
        }
    }
}

/// How raw pixels (0-255) become a network's inputs.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind")]
pub enum Preprocessing {
    /// `pixel / 255`, into [0, 1] (seed 003).
    Scale255,
    /// `(pixel - mean) / std` with the training set's statistics (seed 000).
    Standardise {
        /// Mean of the training pixels.
        mean: f64,
        /// Standard deviation of the training pixels.
        std: f64,
    },
}

impl Preprocessing {
    /// The network input for one raw pixel.
    pub fn apply(&self, pixel: u8) -> f32 {
        match *self {
            Preprocessing::Scale255 => pixel as f32 / 255.0,
            Preprocessing::Standardise { mean, std } => ((pixel as f64 - mean) / std) as f32,
        }
    }

    /// The images `range` of `raw` as network inputs, with their labels.
    pub fn dataset(&self, raw: &RawSplit, range: std::ops::Range<usize>) -> Dataset {
        let pixels = &raw.pixels[range.start * IMAGE_PIXELS..range.end * IMAGE_PIXELS];
        let images = Array2::from_shape_vec(
            (range.len(), IMAGE_PIXELS),
            pixels.iter().map(|&p| self.apply(p)).collect(),
        )
        .expect("784 pixels per image");
        Dataset::new(images, raw.labels[range].to_vec())
    }
}

/// MNIST prepared for training under a [`Regime`].
#[derive(Debug, Clone)]
pub struct Mnist {
    /// The examples to train on.
    pub train: Dataset,
    /// Held-out examples to watch during training (seed 000's, or `--validation N`).
    pub validation: Option<Dataset>,
    /// The 10,000 test examples.
    pub test: Dataset,
    /// How the pixels were scaled: what a saved model must apply to new images.
    pub preprocessing: Preprocessing,
}

/// Training images that seed 000 keeps for training; the rest validate.
pub const SEED000_TRAIN: usize = 50_000;

impl Mnist {
    /// Splits and scales raw MNIST as `regime` prescribes.
    pub fn prepare(raw: &RawMnist, regime: Regime) -> Mnist {
        let (validation, scaling) = regime.split(raw.train.len());
        Mnist::prepare_split(raw, validation, scaling)
    }

    /// Holds out the last `validation` training images (none for 0), and scales every split as
    /// `scaling` says (training statistics are those of the images left to train on).
    /// `validation` must leave a training image.
    pub fn prepare_split(raw: &RawMnist, validation: usize, scaling: Scaling) -> Mnist {
        assert!(
            validation < raw.train.len(),
            "Mnist: holding out {validation} of {} training images leaves none to train on",
            raw.train.len()
        );
        let n_train = raw.train.len() - validation;
        let preprocessing = match scaling {
            Scaling::Divide255 => Preprocessing::Scale255,
            Scaling::TrainingStatistics => {
                let (mean, std) = mean_and_std(&raw.train.pixels[..n_train * IMAGE_PIXELS]);
                Preprocessing::Standardise { mean, std }
            }
            // (p/255 - m)/s = (p - 255m)/(255s)
            Scaling::Fixed { mean, std } => Preprocessing::Standardise {
                mean: 255.0 * mean,
                std: 255.0 * std,
            },
            Scaling::LeCun => Preprocessing::Standardise {
                mean: 20.0,
                std: 200.0,
            },
        };
        let validation =
            (validation > 0).then(|| preprocessing.dataset(&raw.train, n_train..raw.train.len()));
        Mnist {
            train: preprocessing.dataset(&raw.train, 0..n_train),
            validation,
            test: preprocessing.dataset(&raw.test, 0..raw.test.len()),
            preprocessing,
        }
    }
}

/// Mean and (population) standard deviation of all the pixels, in f64.
pub fn mean_and_std(pixels: &[u8]) -> (f64, f64) {
    let n = pixels.len() as f64;
    let mean = pixels.iter().map(|&p| p as f64).sum::<f64>() / n;
    let variance = pixels
        .iter()
        .map(|&p| (p as f64 - mean).powi(2))
        .sum::<f64>()
        / n;
    (mean, variance.sqrt().max(f64::MIN_POSITIVE))
}

/// Reads MNIST from a folder holding the four IDX files (plain or `.gz`) or `mnist_train.csv` and
/// `mnist_test.csv`.
pub fn load_raw(dir: &Path) -> Result<RawMnist, DataError> {
    match locate::layout_of(dir) {
        Some(locate::Layout::Idx(files)) => {
            let split = |images: &Path, labels: &Path| -> Result<RawSplit, DataError> {
                let (_, pixels) = idx::read_images(images)?;
                let labels_read = idx::read_labels(labels)?;
                let what = format!("{} and {}", images.display(), labels.display());
                RawSplit::new(pixels, labels_read, &what)
            };
            Ok(RawMnist {
                train: split(&files[0], &files[1])?,
                test: split(&files[2], &files[3])?,
            })
        }
        Some(locate::Layout::Csv { train, test }) => {
            let split = |path: &Path| -> Result<RawSplit, DataError> {
                let (_, pixels, labels) = csv::read_csv(path)?;
                RawSplit::new(pixels, labels, &path.display().to_string())
            };
            Ok(RawMnist {
                train: split(&train)?,
                test: split(&test)?,
            })
        }
        None => Err(DataError::NotFound(format!(
            "{} holds neither the four MNIST IDX files nor mnist_train.csv and mnist_test.csv",
            dir.display()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(train: &[u8], test: &[u8]) -> RawMnist {
        let split = |values: &[u8]| RawSplit {
            pixels: values.iter().flat_map(|&v| [v; IMAGE_PIXELS]).collect(),
            labels: values.iter().map(|&v| v % 10).collect(),
        };
        RawMnist {
            train: split(train),
            test: split(test),
        }
    }

    #[test]
    fn seed003_divides_by_255_and_keeps_every_training_image() {
        let mnist = Mnist::prepare(&raw(&[0, 255, 51], &[102]), Regime::Seed003);
        assert_eq!(mnist.train.len(), 3);
        assert!(mnist.validation.is_none());
        assert_eq!(mnist.train.images[[1, 5]], 1.0);
        assert!((mnist.test.images[[0, 0]] - 0.4).abs() < 1e-6);
    }

    #[test]
    fn seed000_standardises_with_the_training_images_only() {
        let mut train: Vec<u8> = (0..SEED000_TRAIN)
            .map(|i| if i % 2 == 0 { 0 } else { 100 })
            .collect();
        train.extend([200u8; 3]); // validation images: must not move the mean
        let mnist = Mnist::prepare(&raw(&train, &[50]), Regime::Seed000);
        assert_eq!(mnist.train.len(), SEED000_TRAIN);
        assert_eq!(mnist.validation.as_ref().unwrap().len(), 3);
        // mean 50, std 50
        assert!((mnist.train.images[[0, 0]] + 1.0).abs() < 1e-6);
        assert!((mnist.validation.unwrap().images[[0, 0]] - 3.0).abs() < 1e-6);
        assert!(mnist.test.images[[0, 0]].abs() < 1e-6);
    }

    #[test]
    fn mismatched_counts_are_refused() {
        let err = RawSplit::new(vec![0; 2 * IMAGE_PIXELS], vec![1], "x").unwrap_err();
        assert!(err.to_string().contains("2 images but 1 labels"));
    }
}
