//! A neural network with one hidden layer, trained on MNIST by gradient descent, with nothing
//! hidden: every parameter, every matrix product and every derivative is written out below.
//! Start here to learn backpropagation (seed 003's `one-hidden-layer.py`).
//!
//! ```text
//! cargo run --release --example one_hidden_layer -- --hidden 10 --lr 0.1 --epochs 500 --init samson
//! ```
//!
//! Notation: `m` examples, one per row; 784 pixels; `h` hidden units; 10 classes.
//!
//! ```text
//! X  (m, 784)  pixels / 255            Y  (m, 10)  one-hot labels
//! Z1 = X·W1 + b1      (m, h)           W1 (784, h)   b1 (h)
//! A1 = max(0, Z1)     (m, h)           the hidden layer: ReLU
//! Z2 = A1·W2 + b2     (m, 10)          W2 (h, 10)    b2 (10)
//! P  = softmax(Z2)    (m, 10)          each row: probabilities of the 10 digits
//! L  = -(1/m) Σ_i log P[i, y_i]        cross-entropy, averaged over the examples
//! ```
//!
//! The library (`mnist_nn`) is used only to find and read the data.

use std::path::PathBuf;

use clap::Parser;
use ndarray::{Array1, Array2, Axis};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal, Uniform};

use mnist_nn::data::{load_raw, locate, DataSet, Mnist, Regime};

#[derive(Parser)]
#[command(
    about = "One hidden layer, trained by full-batch gradient descent, everything written out"
)]
struct Args {
    /// Units in the hidden layer.
    #[arg(long, alias = "n-hidden", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    hidden: u32,
    /// Passes over the training set (one gradient step each).
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..))]
    epochs: u32,
    /// Learning rate.
    #[arg(long, alias = "learning-rate", default_value_t = 0.1)]
    lr: f32,
    /// Initialisation: he, xavier, gaussian or samson.
    #[arg(long, alias = "initial-params", default_value = "samson", value_parser = ["he", "xavier", "gaussian", "samson"])]
    init: String,
    /// Seed of the random initialisation.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Folder holding MNIST [default: $MNIST_DIR, ./data/mnist, ../shared/data/mnist, the cache].
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    if !(args.lr.is_finite() && args.lr > 0.0) {
        return Err(format!("--lr must be a positive finite number, got {}", args.lr).into());
    }
    let h = args.hidden as usize;

    // ---- Data: 60,000 training and 10,000 test images, pixels scaled to [0, 1]. ----
    let env_dir = std::env::var_os("MNIST_DIR").map(PathBuf::from);
    let candidates =
        locate::candidates(DataSet::Mnist, args.data_dir.as_deref(), env_dir.as_deref());
    let dir = locate::find(&candidates)
        .ok_or_else(|| locate::not_found_message(DataSet::Mnist, &candidates, None))?
        .dir
        .clone();
    let mnist = Mnist::prepare(&load_raw(&dir)?, Regime::Seed003);
    let (x, labels) = (&mnist.train.images, &mnist.train.labels); // X: (m, 784)
    let m = x.nrows();
    // Y: (m, 10), Y[i, j] = 1 if example i shows digit j.
    let mut y = Array2::<f32>::zeros((m, 10));
    for (i, &label) in labels.iter().enumerate() {
        y[[i, label as usize]] = 1.0;
    }

    // ---- Parameters. ----
    // A weight matrix of shape (fan_in, fan_out), drawn as --init says. Biases start at zero,
    // except with samson, where they are drawn like the weights.
    let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
    let draw = |rows: usize, cols: usize, rng: &mut ChaCha8Rng| -> Array2<f32> {
        let std = match args.init.as_str() {
            "he" => (2.0 / rows as f32).sqrt(), // keeps the signal's scale through ReLU
            "xavier" => (2.0 / (rows + cols) as f32).sqrt(), // averages fan-in and fan-out
            "gaussian" => 0.01,
            _ => return Array2::from_shape_simple_fn((rows, cols), || rng.random::<f32>() - 0.5),
        };
        let normal = Normal::new(0.0, std).expect("positive std");
        Array2::from_shape_simple_fn((rows, cols), || normal.sample(rng))
    };
    let mut w1 = draw(784, h, &mut rng); // (784, h)
    let mut w2 = draw(h, 10, &mut rng); // (h, 10)
    let (mut b1, mut b2) = if args.init == "samson" {
        let uniform = Uniform::new(-0.5f32, 0.5).expect("non-empty range");
        (
            Array1::from_shape_simple_fn(h, || uniform.sample(&mut rng)),
            Array1::from_shape_simple_fn(10, || uniform.sample(&mut rng)),
        )
    } else {
        (Array1::zeros(h), Array1::zeros(10))
    };

    println!(
        "784-{h}-10, init {}, learning rate {}, {} epochs of full-batch gradient descent on {m} images",
        args.init, args.lr, args.epochs
    );
    for epoch in 1..=args.epochs {
        // ---- Forward pass. ----
        let z1 = x.dot(&w1) + &b1; // (m, h): every hidden unit's weighted input
        let a1 = z1.mapv(|v| v.max(0.0)); // (m, h): ReLU
        let z2 = a1.dot(&w2) + &b2; // (m, 10): the scores (logits)
        let p = softmax_rows(&z2); // (m, 10): probabilities

        // ---- Loss: mean of -log(probability of the true digit). ----
        let loss = -labels
            .iter()
            .enumerate()
            .map(|(i, &label)| (p[[i, label as usize]] as f64).max(1e-30).ln())
            .sum::<f64>()
            / m as f64;

        // ---- Backward pass: the chain rule, from the loss back to every parameter. ----
        // dL/dZ2 = (P - Y) / m: softmax and cross-entropy together have this simple derivative.
        let dz2 = (&p - &y) / m as f32; // (m, 10)
                                        // Z2 = A1·W2 + b2, so dL/dW2 = A1ᵀ·dZ2 and dL/db2 = the column sums of dZ2.
        let dw2 = a1.t().dot(&dz2); // (h, 10)
        let db2 = dz2.sum_axis(Axis(0)); // (10)
                                         // ... and dL/dA1 = dZ2·W2ᵀ: each hidden unit collects the error of every output it feeds.
        let da1 = dz2.dot(&w2.t()); // (m, h)
                                    // A1 = max(0, Z1): the gradient passes where the unit was on, and stops where it was off.
        let dz1 = da1 * z1.mapv(|v| if v > 0.0 { 1.0 } else { 0.0 }); // (m, h)
                                                                      // Z1 = X·W1 + b1, so dL/dW1 = Xᵀ·dZ1 and dL/db1 = the column sums of dZ1.
        let dw1 = x.t().dot(&dz1); // (784, h)
        let db1 = dz1.sum_axis(Axis(0)); // (h)

        // ---- Gradient descent: a small step against each gradient. ----
        w1.scaled_add(-args.lr, &dw1);
        b1.scaled_add(-args.lr, &db1);
        w2.scaled_add(-args.lr, &dw2);
        b2.scaled_add(-args.lr, &db2);

        if epoch % (args.epochs / 10).max(1) == 0 || epoch == args.epochs {
            println!(
                "epoch {epoch:>4}  loss {loss:.4}  train accuracy {:.4}",
                accuracy(&z2, labels)
            );
        }
    }

    // ---- Test: predict the digit with the largest score. ----
    let test_scores = (mnist.test.images.dot(&w1) + &b1)
        .mapv(|v| v.max(0.0))
        .dot(&w2)
        + &b2;
    println!(
        "test accuracy: {:.4}",
        accuracy(&test_scores, &mnist.test.labels)
    );
    Ok(())
}

/// Softmax of every row: `P[i, j] = exp(Z[i, j] - max_j Z[i, j]) / Σ_k exp(Z[i, k] - max_j Z[i, j])`.
/// Subtracting the row's maximum changes nothing mathematically but keeps `exp` from overflowing.
fn softmax_rows(z: &Array2<f32>) -> Array2<f32> {
    let mut p = z.clone();
    for mut row in p.rows_mut() {
        let max = row.fold(f32::NEG_INFINITY, |a, &b| a.max(b));
        row.mapv_inplace(|v| (v - max).exp());
        let sum = row.sum();
        row /= sum;
    }
    p
}

/// Fraction of rows whose largest score is at the true label.
fn accuracy(scores: &Array2<f32>, labels: &[u8]) -> f64 {
    let correct = scores
        .rows()
        .into_iter()
        .zip(labels)
        .filter(|(row, &label)| {
            let best = row
                .iter()
                .enumerate()
                .fold((0, f32::NEG_INFINITY), |best, (j, &v)| {
                    if v > best.1 {
                        (j, v)
                    } else {
                        best
                    }
                });
            best.0 == label as usize
        })
        .count();
    correct as f64 / labels.len() as f64
}
