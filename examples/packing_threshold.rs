//! How the `gemm` crate's packing threshold was chosen (`src/gemm.rs`): training steps of a
//! `mnist-nn bench` workload under several settings, alternated within one process (20 steps of
//! each, 40 rounds) so that the machine's slow and fast spells hit them all alike.
//!
//! `cargo run --release --example packing_threshold -- cnn 8,128 16,128 32,128`
//!
//! Each setting is `LHS,RHS`: the crate packs the left operand of a single-threaded product wider
//! than `LHS` micro-tiles, and the right one beyond `RHS` (its defaults are `8,128`; mnist-nn sets
//! `16,128`). Prints the median milliseconds per step and the median ratio to the first setting
//! in the same round. The images are random (four-fifths background, like MNIST): only their
//! shape matters to the speed. `BATCH=10000` changes the batch (the default is the workloads' 128).

use mnist_nn::bench::{median, Workload};
use mnist_nn::data::Dataset;
use mnist_nn::optim::Optimizer;
use mnist_nn::seeded_rng;
use ndarray::Array2;
use rand::Rng;
use std::time::Instant;

fn main() {
    const USAGE: &str = "usage: packing_threshold fullbatch|minibatch|cnn LHS,RHS [LHS,RHS]...";
    let args: Vec<String> = std::env::args().skip(1).collect();
    let workload = args
        .first()
        .and_then(|name| Workload::find(name))
        .expect(USAGE);
    let settings: Vec<(usize, usize)> = args[1..]
        .iter()
        .map(|s| {
            let (lhs, rhs) = s.split_once(',').expect(USAGE);
            (lhs.parse().expect(USAGE), rhs.parse().expect(USAGE))
        })
        .collect();
    let mut rng = seeded_rng(0);
    let n = 10_000;
    let images = Array2::from_shape_fn((n, 784), |_| {
        if rng.random::<f32>() < 0.8 {
            -0.42
        } else {
            rng.random::<f32>() * 2.8
        }
    });
    let labels: Vec<u8> = (0..n).map(|_| rng.random_range(0..10)).collect();
    let data = Dataset::new(images, labels);
    let mut network = workload.experiment().build(&mut rng);
    let mut optimizer = Optimizer::sgd(1e-3);
    let batch: usize = std::env::var("BATCH")
        .map(|b| b.parse().expect("BATCH is a number"))
        .unwrap_or(128);
    let indices: Vec<u32> = (0..n as u32).collect();
    let steps = 20;
    let mut times = vec![vec![]; settings.len()];
    let mut pos = 0;
    // Round 0 warms up (and lets mnist-nn set its own threshold, once, before ours take over).
    for round in 0..41 {
        for (c, &(lhs, rhs)) in settings.iter().enumerate() {
            gemm::set_lhs_packing_threshold_single_thread(lhs);
            gemm::set_rhs_packing_threshold(rhs);
            let start = Instant::now();
            for _ in 0..steps {
                if pos + batch > n {
                    pos = 0;
                }
                network.train_step_on(&data, &indices[pos..pos + batch], &mut optimizer);
                pos += batch;
            }
            if round > 0 {
                times[c].push(start.elapsed().as_secs_f64() / steps as f64 * 1e3);
            }
        }
    }
    for (c, (lhs, rhs)) in settings.iter().enumerate() {
        let ratios: Vec<f64> = times[c].iter().zip(&times[0]).map(|(a, b)| a / b).collect();
        println!(
            "{lhs},{rhs}: median {:.3} ms per step, ratio to the first setting {:.3}",
            median(&times[c]),
            median(&ratios)
        );
    }
}
