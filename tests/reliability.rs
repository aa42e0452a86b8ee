//! Interruption, resumption and divergence: nothing a user saved is lost or half-written.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use common::{mnist_dir, run, stderr, stdout};
use mnist_nn::init::Init;
use mnist_nn::model;
use mnist_nn::network::Network;
use mnist_nn::seeded_rng;

/// A short run with minibatches of `batch`. Of 60,000 examples, batches of 64 leave a last batch
/// of 32 rows, trained on one shard; 128 leaves 96, split in two like the others.
fn run_args(batch: &'static str) -> Vec<&'static str> {
    vec![
        "train",
        "--hidden",
        "64",
        "--epochs",
        "3",
        "--batch-size",
        batch,
        "--lr",
        "0.05",
        "--seed",
        "4",
        "--log-every=1",
    ]
}

/// The batch sizes every resumption test runs with.
const BATCHES: [&str; 3] = ["16", "64", "128"];

/// Every tensor of a saved model, in layer order.
fn weights(path: &Path) -> Vec<Vec<f32>> {
    let saved = model::load(path).unwrap();
    saved
        .network
        .layers()
        .iter()
        .flat_map(|l| l.export())
        .map(|t| t.values)
        .collect()
}

/// An Adam run with a one-cycle schedule, warm-up, dropout and augmented images, in batches of 64.
fn adam_args() -> Vec<&'static str> {
    vec![
        "train",
        "--augment",
        "affine+elastic",
        "--layers",
        "linear 64, relu, dropout 0.2, linear 10",
        "--epochs",
        "3",
        "--batch-size",
        "64",
        "--optimizer",
        "adam",
        "--lr",
        "0.002",
        "--schedule",
        "onecycle",
        "--warmup",
        "30",
        "--seed",
        "5",
        "--log-every=1",
    ]
}

/// Every run the resumption tests interrupt and resume.
fn runs() -> Vec<Vec<&'static str>> {
    let mut runs: Vec<_> = BATCHES.into_iter().map(run_args).collect();
    runs.push(adam_args());
    runs
}

fn args_with<'a>(base: &[&'static str], extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = base.to_vec();
    args.extend_from_slice(extra);
    args
}

#[test]
fn ctrl_c_writes_a_checkpoint_and_resuming_gives_the_same_weights_bit_for_bit() {
    for base in runs() {
        interrupt_and_resume(&base);
    }
}

fn interrupt_and_resume(base: &[&'static str]) {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let data = mnist_dir();
    let data = data.to_str().unwrap();
    let (full, resumed, checkpoint) = (
        path("full.safetensors"),
        path("resumed.safetensors"),
        path("ck.safetensors"),
    );

    let uninterrupted = run(
        &args_with(base, &["--save", &full, "--data-dir", data]),
        &[],
        None,
    );
    assert!(uninterrupted.status.success(), "{}", stderr(&uninterrupted));

    // The same run, interrupted by SIGINT once its first epoch is reported.
    let mut child = Command::new(env!("CARGO_BIN_EXE_mnist-nn"))
        .args(args_with(
            base,
            &[
                "--save",
                &resumed,
                "--checkpoint",
                &checkpoint,
                "--data-dir",
                data,
            ],
        ))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    loop {
        let line = lines
            .next()
            .expect("the run ended before its first epoch")
            .unwrap();
        if line.starts_with("epoch 1/3") {
            break;
        }
    }
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let output = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "{err}");
    assert!(
        err.contains("checkpoint written to") && err.contains("--resume"),
        "{err}"
    );
    assert!(
        !Path::new(&resumed).exists(),
        "the final model must not exist yet"
    );

    let continued = run(
        &args_with(
            base,
            &[
                "--save",
                &resumed,
                "--resume",
                &checkpoint,
                "--data-dir",
                data,
            ],
        ),
        &[],
        None,
    );
    assert!(continued.status.success(), "{}", stderr(&continued));
    assert!(
        stdout(&continued).contains("resuming from"),
        "{}",
        stdout(&continued)
    );
    assert_eq!(
        weights(Path::new(&full)),
        weights(Path::new(&resumed)),
        "{base:?}: resumed weights differ"
    );
    assert_eq!(
        stdout(&uninterrupted).lines().last(),
        stdout(&continued).lines().last(),
        "different test accuracy"
    );
}

#[test]
fn periodic_checkpoints_resume_exactly_and_other_settings_are_refused() {
    for base in runs() {
        resume_from_periodic_checkpoint(&base);
    }
}

fn resume_from_periodic_checkpoint(base: &[&'static str]) {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let data = mnist_dir();
    let data = data.to_str().unwrap();
    let (full, resumed, checkpoint) = (
        path("full.safetensors"),
        path("resumed.safetensors"),
        path("ck.safetensors"),
    );
    let output = run(
        &args_with(
            base,
            &[
                "--save",
                &full,
                "--checkpoint",
                &checkpoint,
                "--checkpoint-every",
                "1",
                "--data-dir",
                data,
            ],
        ),
        &[],
        None,
    );
    assert!(output.status.success(), "{}", stderr(&output));
    // The last checkpoint was written after epoch 2 of 3.
    let continued = run(
        &args_with(
            base,
            &[
                "--save",
                &resumed,
                "--resume",
                &checkpoint,
                "--data-dir",
                data,
            ],
        ),
        &[],
        None,
    );
    assert!(
        stdout(&continued).contains("after 2 epochs"),
        "{}",
        stdout(&continued)
    );
    assert_eq!(
        weights(Path::new(&full)),
        weights(Path::new(&resumed)),
        "{base:?}: resumed weights differ"
    );

    let mut other = args_with(base, &["--resume", &checkpoint, "--data-dir", data]);
    let lr = other.iter().position(|&a| a == "--lr").unwrap() + 1;
    other[lr] = "0.1";
    let refused = run(&other, &[], None);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("resume with the same settings"),
        "{}",
        stderr(&refused)
    );
    let not_a_checkpoint = run(
        &args_with(base, &["--resume", &full, "--data-dir", data]),
        &[],
        None,
    );
    assert!(
        stderr(&not_a_checkpoint).contains("not a checkpoint"),
        "{}",
        stderr(&not_a_checkpoint)
    );
}

#[test]
fn divergence_stops_at_once_and_keeps_the_last_finite_model() {
    let dir = tempfile::tempdir().unwrap();
    let saved = dir.path().join("model.safetensors");
    let data = mnist_dir();
    let output = run(
        &[
            "train",
            "--hidden",
            "64",
            "--epochs",
            "50",
            "--batch-size",
            "32",
            "--lr",
            "50",
            "--save",
            saved.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
        ],
        &[],
        None,
    );
    let err = stderr(&output);
    assert!(!output.status.success());
    assert!(
        err.contains("training diverged at epoch 1") && err.contains("smaller learning rate"),
        "{err}"
    );
    assert!(!err.contains("panicked"));
    // It diverged in its first epoch, so its last finite state is the initial network of seed 0.
    let initial = Network::mlp(&[784, 64, 10], Init::He, &mut seeded_rng(0));
    let initial: Vec<Vec<f32>> = initial
        .layers()
        .iter()
        .flat_map(|l| l.export())
        .map(|t| t.values)
        .collect();
    assert_eq!(
        weights(&saved),
        initial,
        "the kept model is not the last finite state"
    );
}
