//! Timing training: the workloads of `mnist-nn bench` and this machine's matrix-product peak.
//!
//! An epoch of these dense networks is almost all matrix products, so its floating-point
//! operations ([`Network::training_flops`]) divided by the fastest rate the machine multiplies
//! matrices at ([`gemm_peak`]) is a lower bound on its time. How close an epoch gets to that
//! bound says how much time goes elsewhere (copies, activations, the loss, synchronisation).

use std::time::Instant;

use ndarray::Array2;

use crate::data::Dataset;
use crate::experiments::{self, Experiment};
use crate::gemm::matmul;
use crate::network::Network;
use crate::optim::Optimizer;
use crate::schedule::LrSchedule;
use crate::seeded_rng;
use crate::train::Trainer;

/// A training workload: one of the experiments, timed epoch by epoch.
pub struct Workload {
    /// The name on the command line (`mnist-nn bench --workload NAME`) and in the JSON.
    pub name: &'static str,
    /// The experiment it trains (network, data regime, batching, learning rate).
    pub experiment: &'static str,
    /// What it is, in a few words.
    pub description: &'static str,
}

/// The workloads: the three of `../shared/bench/mnist_ref.py`, and the one-epoch recipe of
/// `../shared/bench/fast_ref.py`.
pub const WORKLOADS: [Workload; 4] = [
    Workload {
        name: "fullbatch",
        experiment: "lecun-300-100",
        description: "784-300-100-10, full batch of 60,000, lr 0.2 (seed 003)",
    },
    Workload {
        name: "minibatch",
        experiment: "mlp",
        description: "784-256-128-10, batch 128, lr 1e-3, 50,000 images (seed 000)",
    },
    Workload {
        name: "cnn",
        experiment: "cnn",
        description: "dilated conv 1->8, 6272-128-10, batch 128 (seed 000)",
    },
    Workload {
        name: "fast",
        experiment: "fast",
        description:
            "conv 1->24 5x5 (direct), pool, conv 24->32 3x3 (Winograd), pool, 800-256-10, Adam, \
             batch 256",
    },
];

impl Workload {
    /// The workload called `name`.
    pub fn find(name: &str) -> Option<&'static Workload> {
        WORKLOADS.iter().find(|w| w.name == name)
    }

    /// Its experiment.
    pub fn experiment(&self) -> &'static Experiment {
        experiments::find(self.experiment).expect("every workload names an experiment")
    }
}

/// What timing a workload measured.
#[derive(Debug, Clone)]
pub struct EpochTimes {
    /// Seconds of each timed epoch (after the warm-up).
    pub seconds: Vec<f64>,
    /// Floating-point operations of one epoch's matrix products.
    pub flops: u64,
}

impl EpochTimes {
    /// The median of the epoch times.
    pub fn median(&self) -> f64 {
        median(&self.seconds)
    }

    /// Achieved GFLOP/s at the median epoch time.
    pub fn gflops(&self) -> f64 {
        self.flops as f64 / self.median() / 1e9
    }
}

/// Trains `workload`'s freshly initialised network (seed 0) on `train` for one untimed warm-up
/// epoch, then `epochs` timed ones. `on_epoch(done)` is called after each timed epoch.
pub fn time_epochs(
    workload: &Workload,
    train: &Dataset,
    epochs: usize,
    mut on_epoch: impl FnMut(usize),
) -> EpochTimes {
    let experiment = workload.experiment();
    let mut rng = seeded_rng(0);
    let mut network: Network = experiment.build(&mut rng);
    let optimizer = Optimizer::new(experiment.optimizer, experiment.lr as f64);
    let mut trainer = Trainer::new(optimizer, experiment.batching);
    // The experiment's schedule, spread over the warm-up and the timed epochs.
    let steps_per_epoch = experiment.batching.steps_per_epoch(train.len()) as u64;
    trainer.schedule = Some(LrSchedule {
        base_lr: experiment.lr as f64,
        schedule: experiment.schedule,
        warmup_steps: 0,
        steps_per_epoch,
        total_steps: steps_per_epoch * (epochs as u64 + 1),
    });
    trainer.epoch(&mut network, train, &mut rng, |_| {});
    let mut seconds = Vec::with_capacity(epochs);
    for done in 1..=epochs {
        let start = Instant::now();
        trainer.epoch(&mut network, train, &mut rng, |_| {});
        seconds.push(start.elapsed().as_secs_f64());
        on_epoch(done);
    }
    EpochTimes {
        seconds,
        flops: network.training_flops(train.len()),
    }
}

/// GFLOP/s of a `size x size x size` single-precision product on every core: the median of
/// `repeats` after one warm-up, measured like the epochs (a median, under the same conditions).
pub fn gemm_peak(size: usize, repeats: usize) -> f64 {
    let a = Array2::from_shape_fn((size, size), |(i, j)| ((i * 7 + j * 3) % 19) as f32 / 19.0);
    let b = Array2::from_shape_fn((size, size), |(i, j)| ((i * 5 + j * 11) % 17) as f32 / 17.0);
    let mut c = Array2::zeros((size, size));
    matmul(a.view(), b.view(), false, c.view_mut());
    let seconds: Vec<f64> = (0..repeats.max(1))
        .map(|_| {
            let start = Instant::now();
            matmul(a.view(), b.view(), false, c.view_mut());
            start.elapsed().as_secs_f64()
        })
        .collect();
    2.0 * (size as f64).powi(3) / median(&seconds) / 1e9
}

/// The median of `values` (the mean of the middle two for an even count).
pub fn median(values: &[f64]) -> f64 {
    assert!(!values.is_empty(), "median of nothing");
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
    }

    #[test]
    fn every_workload_names_an_experiment() {
        for workload in &WORKLOADS {
            assert_eq!(workload.experiment().name, workload.experiment);
        }
    }

    #[test]
    fn flops_of_the_fullbatch_network() {
        // 784-300-100-10: forward and weight gradients 2·n·params each, input gradients of the
        // upper two layers 2·n·(300·100 + 100·10).
        let network = Workload::find("fullbatch")
            .unwrap()
            .experiment()
            .build(&mut seeded_rng(0));
        let weights: u64 = 784 * 300 + 300 * 100 + 100 * 10;
        let expected = 2 * 60_000 * (2 * weights + 300 * 100 + 100 * 10);
        assert_eq!(network.training_flops(60_000), expected);
    }
}
