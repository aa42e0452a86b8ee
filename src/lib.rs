//! # mnist-nn
//!
//! Neural networks written from scratch, trained and tested on MNIST. Every layer states its
//! forward maths and the derivation of its backward pass next to the code, with the shape of every
//! array; the matrix products go through a fast SGEMM, and a training step splits its batch
//! between the cores.
//!
//! The pieces:
//! - [`layers`]: the [`Layer`](layers::Layer) trait and the layers ([`Linear`](layers::Linear),
//!   [`ReLU`](layers::ReLU), [`BatchNorm1d`](layers::BatchNorm1d), [`Conv2d`](layers::Conv2d),
//!   [`Flatten`](layers::Flatten));
//! - [`loss`]: numerically stable softmax cross-entropy;
//! - [`network`]: a sequential [`Network`](network::Network) with training steps and evaluation;
//! - [`optim`]: the optimisers (SGD with momentum and weight decay, Adam, AdamW) and their state;
//! - [`schedule`]: learning-rate schedules (step, cosine, one-cycle, warm-up);
//! - [`train`]: epochs of minibatches or full batches, each step an optimiser's;
//! - [`fit`]: a whole training run with evaluations, checkpoints, interruption and divergence;
//! - [`architecture`]: architectures written as text, with inferred shapes and a summary table;
//! - [`gemm`]: the matrix product every layer's work goes through;
//! - [`init`]: the weight initialisations (`he`, `xavier`, `gaussian`, `samson`);
//! - [`augment`]: random translations, affine and elastic distortions of training images;
//! - [`data`]: reading, finding, downloading and preparing MNIST, Fashion-MNIST and Kuzushiji-MNIST;
//! - [`gradcheck`]: finite-difference checks of backward passes;
//! - [`experiments`]: the seeds' experiments with their exact settings;
//! - [`bench`](mod@bench): the workloads `mnist-nn bench` times, and this machine's GEMM peak;
//! - [`model`]: saving and loading trained networks (`.safetensors`, PyTorch-compatible names);
//! - [`draw`]: digits in the terminal and as PNG;
//! - [`serve`]: a saved model behind a web page to draw digits on, and a JSON API.
//!
//! # Example
//!
//! Train a small network to tell two made-up classes apart (with MNIST, the data would come from
//! [`data::load_raw`] and [`data::Mnist::prepare`]):
//!
//! ```
//! use mnist_nn::data::Dataset;
//! use mnist_nn::init::Init;
//! use mnist_nn::network::Network;
//! use mnist_nn::train::{Batching, Trainer};
//! use ndarray::Array2;
//!
//! // 200 points in 2-D: class 1 when x + y > 0.
//! let mut rng = mnist_nn::seeded_rng(7);
//! let images = Array2::from_shape_fn((200, 2), |(i, j)| ((i * 37 + j * 91) % 200) as f32 / 100.0 - 1.0);
//! let labels = images.rows().into_iter().map(|r| u8::from(r[0] + r[1] > 0.0)).collect();
//! let data = Dataset::new(images, labels);
//!
//! let mut network = Network::mlp(&[2, 16, 2], Init::He, &mut rng);
//! let mut trainer = Trainer::sgd(0.1, Batching::Mini(20));
//! for _ in 0..50 {
//!     trainer.epoch(&mut network, &data, &mut rng, |_| {});
//! }
//! let result = network.evaluate(data.images.view(), &data.labels);
//! assert!(result.accuracy > 0.9, "accuracy {}", result.accuracy);
//! ```

pub mod architecture;
pub mod atomic;
pub mod augment;
pub mod bench;
pub mod checkpoint;
pub mod data;
pub mod draw;
pub mod experiments;
pub mod fit;
pub mod gemm;
pub mod gradcheck;
pub mod init;
pub mod layers;
pub mod loss;
pub mod model;
pub mod network;
pub mod optim;
pub mod schedule;
pub mod serve;
pub mod train;

/// The one random generator behind everything random (initialisation, shuffling): ChaCha8,
/// whose stream for a given seed is the same on every platform and version.
pub type SeededRng = rand_chacha::ChaCha8Rng;

/// The generator for `seed`: the same seed gives the same run.
pub fn seeded_rng(seed: u64) -> SeededRng {
    <SeededRng as rand::SeedableRng>::seed_from_u64(seed)
}
