//! Runs mnist-nn's optimisers and schedules on numbers given as JSON, for
//! `scripts/optimizer_check.py` to compare with `torch.optim` step by step.
//!
//! Reads from standard input
//! `{"optimizer": {...}, "schedule": {...}, "lr": η, "steps_per_epoch": E, "theta": [..], "grads": [[..], ..]}`
//! (`optimizer` and `schedule` as mnist-nn records them in a model's `training` metadata, e.g.
//! `{"name": "adam", "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0}` and
//! `{"name": "onecycle", "pct_start": 0.3, "div_factor": 25, "final_div_factor": 10000}`) and
//! prints `{"lrs": [..], "thetas": [[..], ..]}`: the learning rate of every step and θ after it.
//! One step per gradient; the schedule spans them all.

use std::io::Read;

use mnist_nn::optim::{Optimizer, OptimizerSettings, StepContext};
use mnist_nn::schedule::{LrSchedule, Schedule};
use serde::Deserialize;

#[derive(Deserialize)]
struct Request {
    optimizer: OptimizerSettings,
    schedule: Schedule,
    lr: f64,
    steps_per_epoch: u64,
    #[serde(default)]
    warmup_steps: u64,
    theta: Vec<f32>,
    grads: Vec<Vec<f32>>,
}

fn main() {
    let mut input = String::new();
    std::io::stdin()
        .read_to_string(&mut input)
        .expect("a request on standard input");
    let request: Request = serde_json::from_str(&input).expect("a request as documented");
    let schedule = LrSchedule {
        base_lr: request.lr,
        schedule: request.schedule,
        warmup_steps: request.warmup_steps,
        steps_per_epoch: request.steps_per_epoch,
        total_steps: request.grads.len() as u64,
    };
    let mut optimizer = Optimizer::new(request.optimizer, request.lr);
    let mut theta = request.theta;
    let (mut lrs, mut thetas) = (Vec::new(), Vec::new());
    for grad in &request.grads {
        optimizer.lr = schedule.lr(optimizer.steps());
        lrs.push(optimizer.lr);
        let StepContext { rule, t, lr, state } = optimizer.begin_step(&[theta.len()]);
        let mut slices: Vec<&mut [f32]> = state[0].iter_mut().map(|s| s.as_mut_slice()).collect();
        rule.update(&mut theta, grad, &mut slices, t, lr);
        thetas.push(theta.clone());
    }
    println!("{}", serde_json::json!({ "lrs": lrs, "thetas": thetas }));
}
