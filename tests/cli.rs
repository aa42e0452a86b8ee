//! The `mnist-nn` binary, run as a user would: flags, data discovery, download, training.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::Path;

use common::{mnist_dir, run, serve, stderr, stdout};
use flate2::{read::GzDecoder, write::GzEncoder, Compression};

const IDX_FILES: [&str; 4] = [
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
];

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    GzDecoder::new(bytes).read_to_end(&mut out).unwrap();
    out
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

fn real_files() -> HashMap<String, Vec<u8>> {
    let dir = mnist_dir();
    IDX_FILES
        .iter()
        .map(|f| (f.to_string(), std::fs::read(dir.join(f)).unwrap()))
        .collect()
}

fn file_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Puts the real MNIST files in a folder, replaces `name` by `bytes`, and checks that reading the
/// folder fails with a message naming the file and containing `expected`.
fn assert_refused(real: &HashMap<String, Vec<u8>>, name: &str, bytes: Vec<u8>, expected: &str) {
    let dir = tempfile::tempdir().unwrap();
    for (file, content) in real {
        std::fs::write(dir.path().join(file), content).unwrap();
    }
    std::fs::write(dir.path().join(name), bytes).unwrap();
    let output = run(
        &["show", "0", "--data-dir", dir.path().to_str().unwrap()],
        &[],
        None,
    );
    let err = stderr(&output);
    assert!(!output.status.success(), "{name}: broken file accepted");
    assert!(
        err.contains(expected) && err.contains(name),
        "{name}: expected {expected:?} in {err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

/// The value on the line `test accuracy: X`, which must be the last line printed.
fn final_test_accuracy(out: &str) -> f64 {
    let last = out.lines().last().unwrap_or_default();
    last.strip_prefix("test accuracy: ")
        .unwrap_or_else(|| panic!("last line is not the test accuracy: {last:?}\n{out}"))
        .parse()
        .unwrap()
}

#[test]
fn impossible_flags_are_refused_before_any_data_is_loaded() {
    let cases: &[(&[&str], &str)] = &[
        (&["--hidden", "32", "0"], "at least 1"),
        (&["--hidden", "-3"], "'-3' is not a positive whole number"),
        (&["--lr", "0"], "not a positive finite number"),
        (&["--lr", "-0.1"], "-0.1 is not a positive finite number"),
        (
            &["--batch-size", "-5"],
            "'-5' is not a positive whole number",
        ),
        (&["--lr", "nan"], "not a positive finite number"),
        (&["--lr", "inf"], "not a positive finite number"),
        (&["--lr", "fast"], "not a number"),
        (&["--epochs", "0"], "at least 1"),
        (&["--epochs", "1.5"], "not a positive whole number"),
        (&["--batch-size", "0"], "at least 1"),
        (&["--init", "uniform"], "unknown initialisation 'uniform'"),
        (&["--hidden"], "--hidden"),
        // Architectures: the layer and the shapes are named.
        (
            &["--layers", "conv 8 29, flatten, linear 10"],
            "layer 1 (`conv 8 29`) on input 1x28x28: the dilated kernel is larger than the padded image",
        ),
        (
            &["--layers", "conv 8 5, relu, linear 10"],
            "layer 3 (`linear 10`) on input 8x24x24: `linear` needs a flat row of features",
        ),
        (
            &["--layers", "linear 64, relu, linear 9"],
            "gives 9 values per example; the network must end in 10 class scores",
        ),
        (&["--layers", "linear 64, relu, lnear 10"], "unknown layer `lnear`"),
        (&["--layers", "linear 10", "--hidden", "5"], "cannot be used with"),
        (&["--layers-file", "/nonexistent/arch.txt"], "reading the architecture from"),
        // Optimisers and schedules.
        (&["--optimizer", "rmsprop"], "invalid value 'rmsprop'"),
        (&["--betas", "0.9", "0.99"], "--betas and --eps are Adam's and AdamW's"),
        (&["--optimizer", "adam", "--momentum", "0.9"], "--momentum and --nesterov are SGD's"),
        (&["--nesterov"], "Nesterov momentum needs a momentum above 0"),
        (&["--momentum", "1.5"], "momentum must be in [0, 1)"),
        (&["--optimizer", "adam", "--betas", "0.9", "1"], "beta2 must be in [0, 1)"),
        (
            &["--optimizer", "adam", "--betas", "0.7", "0.9", "--betas", "0.8", "0.95"],
            "cannot be used multiple times",
        ),
        (&["--optimizer", "adamw", "--eps", "0"], "eps must be a positive finite number"),
        (&["--weight-decay", "-1"], "weight decay must be a finite number ≥ 0"),
        (&["--schedule", "linear"], "unknown schedule 'linear'"),
        (&["--schedule", "onecycle:2"], "pct_start must be in (0, 1)"),
        (&["--validation", "60000"], "leaves nothing to train on"),
        // The loss and the distortions.
        (&["--label-smoothing", "1.5"], "1.5 is not between 0 and 1"),
        (&["--clean-epochs", "1", "--epochs", "3"], "there is no --augment to leave out"),
        (
            &["--augment", "affine", "--clean-epochs", "3", "--epochs", "3"],
            "leaves none of the 3 epochs distorted",
        ),
    ];
    for (flags, expected) in cases {
        let mut args = vec!["train", "--data-dir", "/nonexistent/mnist"];
        args.extend_from_slice(flags);
        let output = run(&args, &[], None);
        let err = stderr(&output);
        assert!(!output.status.success(), "{flags:?} was accepted");
        assert!(
            err.contains(expected),
            "{flags:?}: expected {expected:?} in {err}"
        );
        assert!(!err.contains("panicked"), "{flags:?} panicked: {err}");
        assert!(
            !err.contains("MNIST not found"),
            "{flags:?} looked for data first: {err}"
        );
    }
}

#[test]
fn trains_on_real_mnist_and_the_same_seed_repeats_the_run() {
    let dir = mnist_dir();
    let args = [
        "train",
        "--hidden",
        "64",
        "--epochs",
        "2",
        "--batch-size",
        "32",
        "--lr",
        "0.1",
        "--seed",
        "3",
        "--data-dir",
        dir.to_str().unwrap(),
    ];
    let first = run(&args, &[], None);
    assert!(first.status.success(), "{}", stderr(&first));
    let out = stdout(&first);
    assert!(
        out.contains("784-64-10"),
        "configuration not printed: {out}"
    );
    let accuracy = final_test_accuracy(&out);
    assert!(accuracy >= 0.90, "test accuracy {accuracy}");

    // Everything but the timings is identical in a second run with the same seed.
    let second = run(&args, &[], None);
    let without_times = |s: &str| -> Vec<String> {
        s.lines()
            .filter(|l| !l.starts_with("training time") && !l.starts_with("command time"))
            .map(|l| l.split("  (").next().unwrap().to_string())
            .collect()
    };
    assert_eq!(without_times(&out), without_times(&stdout(&second)));
}

#[test]
fn full_batch_default_schedule_learns() {
    // The default regime (full batch, lr 0.2) for a few epochs: the loss must fall.
    let dir = mnist_dir();
    let output = run(
        &[
            "train",
            "--epochs",
            "20",
            "--log-every",
            "10",
            "--data-dir",
            dir.to_str().unwrap(),
        ],
        &[],
        None,
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let out = stdout(&output);
    let losses: Vec<f64> = out
        .lines()
        .filter(|l| l.starts_with("epoch"))
        .map(|l| {
            l.split("loss ")
                .nth(1)
                .unwrap()
                .split_whitespace()
                .next()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    assert_eq!(losses.len(), 2, "{out}");
    assert!(losses[1] < losses[0], "loss did not fall: {losses:?}");
    assert!(final_test_accuracy(&out) > 0.5);
}

#[test]
fn reads_seed_000_csv_files() {
    let raw = mnist_nn::data::load_raw(&mnist_dir()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, split: &mnist_nn::data::RawSplit, count: usize| {
        let mut text = String::new();
        for i in 0..count {
            text += &split.labels[i].to_string();
            for p in split.image(i) {
                text += &format!(",{p}");
            }
            text += "\n";
        }
        std::fs::write(dir.path().join(name), text).unwrap();
    };
    write("mnist_train.csv", &raw.train, 3000);
    write("mnist_test.csv", &raw.test, 1000);
    let output = run(
        &[
            "train",
            "--hidden",
            "32",
            "--epochs",
            "5",
            "--batch-size",
            "32",
            "--lr",
            "0.1",
            "--data-dir",
            dir.path().to_str().unwrap(),
        ],
        &[],
        None,
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let out = stdout(&output);
    assert!(out.contains("3000 train, 1000 test"), "{out}");
    assert!(final_test_accuracy(&out) > 0.8, "{out}");
}

#[test]
fn broken_data_files_are_named_in_the_error() {
    let real = real_files();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "train-labels-idx1-ubyte.gz",
            real["train-labels-idx1-ubyte.gz"][..5000].to_vec(),
            "corrupt or truncated gzip",
        ),
        (
            "train-labels-idx1-ubyte.gz",
            gzip(&gunzip(&real["train-labels-idx1-ubyte.gz"])[..50_000]),
            "header says [60000]",
        ),
        (
            "t10k-labels-idx1-ubyte.gz",
            gzip(&gunzip(&real["train-labels-idx1-ubyte.gz"])),
            "10000 images but 60000 labels",
        ),
        (
            "t10k-images-idx3-ubyte.gz",
            b"<html>not found</html>".to_vec(),
            "not an IDX file",
        ),
    ];
    for (name, bytes, expected) in cases {
        assert_refused(&real, name, bytes, expected);
    }
}

#[test]
fn missing_data_says_where_it_looked_and_what_to_do() {
    let empty = tempfile::tempdir().unwrap();
    let output = run(
        &["train", "--data-dir", empty.path().to_str().unwrap()],
        &[],
        None,
    );
    let err = stderr(&output);
    assert!(!output.status.success());
    assert!(
        err.contains("MNIST not found") && err.contains(empty.path().to_str().unwrap()),
        "{err}"
    );
    assert!(
        err.contains("--data-dir") && err.contains("mnist-nn download"),
        "{err}"
    );

    // No folder named, nothing anywhere, and the download cannot connect.
    let home = tempfile::tempdir().unwrap();
    let cache = home.path().join("cache");
    let output = run(
        &["train", "--epochs", "1"],
        &[
            ("XDG_CACHE_HOME", cache.to_str().unwrap()),
            ("MNIST_NN_MIRROR", "http://127.0.0.1:9/"),
        ],
        Some(home.path()),
    );
    let err = stderr(&output);
    assert!(!output.status.success());
    assert!(
        err.contains("MNIST not found") && err.contains("the download failed"),
        "{err}"
    );
    assert!(
        err.contains("mnist-nn/mnist"),
        "the cache folder is not listed: {err}"
    );
}

#[test]
fn downloads_verifies_and_is_not_fooled_by_a_corrupt_file() {
    let real = real_files();
    let good = serve(real.clone());
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("mnist");
    let output = run(
        &[
            "download",
            "--dir",
            target.to_str().unwrap(),
            "--mirror",
            &good,
        ],
        &[],
        None,
    );
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(file_names(&target), {
        let mut names: Vec<String> = IDX_FILES.iter().map(|s| s.to_string()).collect();
        names.sort();
        names
    });
    for file in IDX_FILES {
        assert_eq!(
            std::fs::read(target.join(file)).unwrap(),
            real[file],
            "{file}"
        );
    }
    let again = run(
        &[
            "download",
            "--dir",
            target.to_str().unwrap(),
            "--mirror",
            &good,
        ],
        &[],
        None,
    );
    assert!(
        stdout(&again)
            .matches("already present and verified")
            .count()
            == 4,
        "{}",
        stdout(&again)
    );

    // One label flipped, recompressed: valid gzip, wrong content.
    let mut corrupt = real.clone();
    let mut labels = gunzip(&real["train-labels-idx1-ubyte.gz"]);
    labels[100] = (labels[100] + 1) % 10;
    corrupt.insert("train-labels-idx1-ubyte.gz".into(), gzip(&labels));
    let bad = serve(corrupt);
    let fresh = dir.path().join("fresh");
    let output = run(
        &[
            "download",
            "--dir",
            fresh.to_str().unwrap(),
            "--mirror",
            &bad,
        ],
        &[],
        None,
    );
    let err = stderr(&output);
    assert!(!output.status.success());
    assert!(
        err.contains("train-labels-idx1-ubyte.gz") && err.contains("SHA-256"),
        "{err}"
    );
    // The good file before it was saved; the corrupt one and no partial file were not.
    assert_eq!(
        file_names(&fresh),
        vec!["train-images-idx3-ubyte.gz".to_string()]
    );

    // A mirror without the files: a clear download error.
    let empty = serve(HashMap::new());
    let output = run(
        &[
            "download",
            "--dir",
            fresh.to_str().unwrap(),
            "--mirror",
            &empty,
        ],
        &[],
        None,
    );
    assert!(stderr(&output).contains("404"), "{}", stderr(&output));
}

#[test]
fn train_downloads_into_the_cache_when_data_is_nowhere() {
    let server = serve(real_files());
    let home = tempfile::tempdir().unwrap();
    let cache = home.path().join("cache");
    let output = run(
        &[
            "train",
            "--hidden",
            "16",
            "--epochs",
            "1",
            "--batch-size",
            "100",
            "--lr",
            "0.1",
        ],
        &[
            ("XDG_CACHE_HOME", cache.to_str().unwrap()),
            ("MNIST_NN_MIRROR", &server),
        ],
        Some(home.path()),
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let out = stdout(&output);
    assert!(
        out.contains(cache.join("mnist-nn/mnist").to_str().unwrap()),
        "{out}"
    );
    assert!(final_test_accuracy(&out) > 0.85, "{out}");
    assert_eq!(file_names(&cache.join("mnist-nn/mnist")).len(), 4);
}

#[test]
fn each_seed_000_experiment_learns_in_one_epoch() {
    let dir = mnist_dir();
    for name in ["mlp", "bn-mlp", "cnn"] {
        let output = run(
            &[
                "experiment",
                name,
                "--epochs",
                "1",
                "--data-dir",
                dir.to_str().unwrap(),
            ],
            &[],
            None,
        );
        assert!(output.status.success(), "{name}: {}", stderr(&output));
        let out = stdout(&output);
        assert!(
            out.contains("50000 train, 10000 validation, 10000 test"),
            "{out}"
        );
        let line = out
            .lines()
            .find(|l| l.starts_with("epoch 1/1"))
            .expect("a line for the epoch");
        let validation: f64 = line
            .split("val accuracy ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no validation accuracy in {line:?}"));
        // Chance is 0.1; after one epoch of SGD at lr 1e-3 these reach 0.75-0.9.
        assert!(validation > 0.6, "{name}: validation accuracy {validation}");
        assert!(final_test_accuracy(&out) > 0.6, "{name}: {out}");
    }
}

#[test]
fn the_race_recipes_pass_98_percent_in_one_epoch() {
    let dir = mnist_dir();
    let fast = [
        "Adam, betas (0.7, 0.9), eps 1e-8, minibatches of 256",
        "learning rate 0.01, schedule onecycle:0.3:25:10000, 1 epochs",
        "initialisation: torch",
        "pixels / 255 standardised with the fixed mean 0.1307 and std 0.3081",
        "total: 215,194 parameters",
    ];
    // accurate, one epoch of its five: batch normalisation, so whole batches on both cores; its
    // last epoch is undistorted, so this one is.
    let accurate = [
        "BatchNorm2d(24)",
        "Adam, betas (0.9, 0.999)",
        "augmentation:   affine",
        "but the last 1 (undistorted): none of this run's 1",
        "cross-entropy, label smoothing 0.1",
        "1 epochs",
    ];
    let fastest = [
        "Conv2d(8 -> 16, 3x3",
        "minibatches of 128, reshuffled every epoch, learning rate 0.015",
        "cross-entropy, label smoothing 0.2",
        "total: 53,994 parameters",
    ];
    for (name, expected) in [
        ("fast", &fast[..]),
        ("fastest", &fastest[..]),
        ("accurate", &accurate[..]),
    ] {
        let output = run(
            &[
                "experiment",
                name,
                "--summary",
                "--epochs",
                "1",
                "--data-dir",
                dir.to_str().unwrap(),
            ],
            &[],
            None,
        );
        assert!(output.status.success(), "{}", stderr(&output));
        let out = stdout(&output);
        for expected in expected.iter().chain(&["training time:", "command time:"]) {
            assert!(
                out.contains(expected),
                "{name}: {expected:?} missing from\n{out}"
            );
        }
        // A race ends with the test set: no pass over the 60,000 training images after it.
        assert!(!out.contains("train accuracy:"), "{name}: {out}");
        // The published recipe's mean is 0.9904; one epoch of any of them passes 0.98.
        assert!(final_test_accuracy(&out) > 0.98, "{name}: {out}");
    }
}

#[test]
fn lenet5_has_the_papers_parameters_and_learns_in_one_pass() {
    let dir = mnist_dir();
    let scratch = tempfile::tempdir().unwrap();
    let model = scratch.path().join("lenet5.safetensors");
    let output = run(
        &[
            "experiment",
            "lenet5",
            "--epochs",
            "1",
            "--summary",
            "--save",
            model.to_str().unwrap(),
            "--data-dir",
            dir.to_str().unwrap(),
        ],
        &[],
        None,
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let out = stdout(&output);
    // One summary row per layer: its output shape and parameters (the paper's counts, section
    // II.B: C1 156, S2 12, C3 1,516, S4 32, C5 48,120, F6 10,164).
    let row = |layer: &str| -> Vec<String> {
        // A row of the table starts with the layer's number (the configuration above it names
        // the layers too).
        let is_row = |l: &&str| {
            let first = l.split_whitespace().next().unwrap_or("");
            first.parse::<usize>().is_ok() && l.contains(layer)
        };
        let line = out
            .lines()
            .find(is_row)
            .unwrap_or_else(|| panic!("no {layer:?} row in\n{out}"));
        let cells: Vec<&str> = line.split_whitespace().collect();
        cells[cells.len() - 3..cells.len() - 1]
            .iter()
            .map(|c| c.to_string())
            .collect()
    };
    assert_eq!(
        row("Pad2d(2 pixels of -0.1; 28x28 -> 32x32)"),
        ["1x32x32", "0"]
    );
    assert_eq!(row("Conv2d(1 -> 6, 5x5"), ["6x28x28", "156"]);
    assert_eq!(row("Subsample2d(6 maps"), ["6x14x14", "12"]);
    assert_eq!(
        row("PartialConv2d(6 -> 16 through 60 connections"),
        ["16x10x10", "1,516"]
    );
    assert_eq!(row("Subsample2d(16 maps"), ["16x5x5", "32"]);
    assert_eq!(row("Conv2d(16 -> 120, 5x5"), ["120x1x1", "48,120"]);
    assert_eq!(row("Linear(120 -> 84)"), ["84", "10,164"]);
    for expected in [
        "initialisation: lecun",
        "(pixel - 20) / 200: background -0.1, ink 1.175",
        "LeCunTanh(1.7159·tanh(2x/3))",
        "total: 60,850 parameters",
    ] {
        assert!(out.contains(expected), "{expected:?} missing from\n{out}");
    }
    // One pass reaches about 0.97 (the paper's curve: 0.95-0.97 after the first pass).
    let accuracy = final_test_accuracy(&out);
    assert!(accuracy > 0.95, "{out}");
    // The saved model rebuilds every layer, the table and the scaling: eval agrees exactly.
    let eval = run(
        &[
            "eval",
            "--model",
            model.to_str().unwrap(),
            "--data-dir",
            dir.to_str().unwrap(),
        ],
        &[],
        None,
    );
    assert!(eval.status.success(), "{}", stderr(&eval));
    let eval_out = stdout(&eval);
    assert!(
        eval_out.contains(&format!("{accuracy:.4}")),
        "{accuracy} vs\n{eval_out}"
    );
}

#[test]
fn simard_trains_on_elastic_distortions() {
    let dir = mnist_dir();
    let output = run(
        &[
            "experiment",
            "simard",
            "--epochs",
            "1",
            "--validation",
            "10000",
            "--summary",
            "--data-dir",
            dir.to_str().unwrap(),
        ],
        &[],
        None,
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let out = stdout(&output);
    for expected in [
        "augmentation:   elastic:4:25, new every epoch",
        // 5 maps of 13x13, then 50 of 5x5, as in Simard et al.'s Figure 2.
        "5x13x13",
        "50x5x5",
        "total: 132,540 parameters",
        "50000 train, 10000 validation, 10000 test, pixels / 255",
        "val accuracy",
    ] {
        assert!(out.contains(expected), "{expected:?} missing from\n{out}");
    }
    assert!(final_test_accuracy(&out) > 0.9, "{out}");
    let everything = run(
        &["experiment", "simard", "--validation", "60000"],
        &[],
        None,
    );
    assert!(!everything.status.success());
    assert!(
        stderr(&everything).contains("leaves nothing to train on"),
        "{}",
        stderr(&everything)
    );
}

#[test]
fn unknown_experiments_are_refused_with_the_list() {
    let output = run(&["experiment", "resnet"], &[], None);
    assert!(!output.status.success());
    let err = stderr(&output);
    assert!(
        err.contains("mlp") && err.contains("bn-mlp") && err.contains("cnn"),
        "{err}"
    );
}

#[test]
fn show_draws_digits_and_writes_a_png() {
    let dir = mnist_dir();
    let out_dir = tempfile::tempdir().unwrap();
    let png = out_dir.path().join("digits.png");
    let output = run(
        &[
            "show",
            "0",
            "1",
            "2",
            "--split",
            "test",
            "--png",
            png.to_str().unwrap(),
            "--data-dir",
            dir.to_str().unwrap(),
        ],
        &[],
        None,
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let out = stdout(&output);
    for (index, label) in [(0, 7), (1, 2), (2, 1)] {
        assert!(
            out.contains(&format!("test image {index}: label {label}")),
            "{out}"
        );
    }
    assert!(
        out.lines().all(|l| l.chars().count() <= 80),
        "wider than 80 columns"
    );
    assert!(out.contains('█'), "no ink drawn");
    let picture = image::open(&png).unwrap().to_luma8();
    assert!(
        picture.width() > 3 * 28 * 4 && picture.height() > 28 * 4,
        "{:?}",
        picture.dimensions()
    );
    assert_eq!(
        file_names(out_dir.path()),
        vec!["digits.png".to_string()],
        "a temporary file was left"
    );

    let output = run(
        &[
            "show",
            "10000",
            "--split",
            "test",
            "--data-dir",
            dir.to_str().unwrap(),
        ],
        &[],
        None,
    );
    assert!(!output.status.success());
    assert!(stderr(&output)
        .contains("index 10000 is out of range: the test split has images 0 to 9999"));
}

#[test]
fn lecun_experiment_reports_test_accuracy_along_the_way() {
    let dir = mnist_dir();
    let output = run(
        &[
            "experiment",
            "lecun-300-100",
            "--epochs",
            "4",
            "--test-every",
            "2",
            "--data-dir",
            dir.to_str().unwrap(),
        ],
        &[],
        None,
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let out = stdout(&output);
    assert!(
        out.contains("test accuracy after 2 epochs: ")
            && out.contains("test accuracy after 4 epochs: "),
        "{out}"
    );
    assert!(
        out.contains("60000 train, 10000 test, pixels / 255"),
        "{out}"
    );
}

#[test]
fn the_one_hidden_layer_example_learns() {
    // `cargo test` builds the examples next to the test binaries' folder.
    let example = std::env::current_exe()
        .unwrap()
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .join("examples/one_hidden_layer");
    assert!(
        example.is_file(),
        "the example was not built at {}",
        example.display()
    );
    let output = std::process::Command::new(example)
        .args([
            "--hidden", "32", "--epochs", "20", "--lr", "0.5", "--init", "he",
        ])
        .env("MNIST_DIR", mnist_dir())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        final_test_accuracy(&stdout(&output)) > 0.6,
        "{}",
        stdout(&output)
    );
}

#[test]
fn every_kind_of_bad_data_file_is_refused_with_its_name_and_problem() {
    let real = real_files();
    let idx = |dims: &[u32], data: &[u8]| {
        let mut bytes = vec![0, 0, 8, dims.len() as u8];
        for d in dims {
            bytes.extend_from_slice(&d.to_be_bytes());
        }
        bytes.extend_from_slice(data);
        gzip(&bytes)
    };
    let mut labels = gunzip(&real["t10k-labels-idx1-ubyte.gz"]);
    labels[8 + 17] = 11;
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "t10k-labels-idx1-ubyte.gz",
            gzip(&labels),
            "label 11 at position 17 is not a digit 0-9",
        ),
        (
            "t10k-images-idx3-ubyte.gz",
            idx(&[10000, 28, 27], &vec![0; 10000 * 28 * 27]),
            "expected images of shape (count, 28, 28)",
        ),
        (
            "t10k-labels-idx1-ubyte.gz",
            idx(&[10000, 1], &[0; 10000]),
            "expected a 1-dimensional label file",
        ),
    ];
    for (name, bytes, expected) in cases {
        assert_refused(&real, name, bytes, expected);
    }

    let line = |label: &str, pixel: &str| {
        let mut fields = vec![label.to_string()];
        fields.extend(std::iter::repeat_n(pixel.to_string(), 784));
        fields.join(",") + "\n"
    };
    let good = line("3", "0");
    let csv_cases: Vec<(String, &str)> = vec![
        (
            format!("{good}{}", "1,2,3\n"),
            "line 2: expected 785 comma-separated values",
        ),
        (
            format!("{good}{}", line("4", "x")),
            "line 2: 'x' in column 2 is not a whole number",
        ),
        (
            format!("{good}{}", line("4", "300")),
            "line 2: value 300 in column 2 is above 255",
        ),
        (
            format!("{good}{}", line("10", "0")),
            "line 2: value 10 in column 1 is above 9",
        ),
    ];
    for (text, expected) in csv_cases {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("mnist_train.csv"), &text).unwrap();
        std::fs::write(dir.path().join("mnist_test.csv"), &good).unwrap();
        let output = run(
            &["show", "0", "--data-dir", dir.path().to_str().unwrap()],
            &[],
            None,
        );
        let err = stderr(&output);
        assert!(!output.status.success(), "{expected}: accepted");
        assert!(
            err.contains("mnist_train.csv") && err.contains(expected),
            "expected {expected:?} in {err}"
        );
    }
}

#[test]
fn broken_model_files_are_refused_by_every_command_that_reads_them() {
    let dir = tempfile::tempdir().unwrap();
    let data = mnist_dir();
    let data = data.to_str().unwrap();
    let truncated = dir.path().join("truncated.safetensors");
    let network = mnist_nn::experiments::find("mlp")
        .unwrap()
        .build(&mut mnist_nn::seeded_rng(1));
    let training = mnist_nn::model::Training {
        batch_size: None,
        ..common::sgd_record(1)
    };
    let bytes = mnist_nn::model::to_bytes(
        &network,
        &mnist_nn::data::Preprocessing::Scale255,
        &training,
    );
    std::fs::write(&truncated, &bytes[..bytes.len() - 100]).unwrap();
    let foreign = dir.path().join("foreign.safetensors");
    std::fs::write(
        &foreign,
        b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":1}        ",
    )
    .unwrap();
    let missing = dir.path().join("missing.safetensors");
    for (file, expected) in [
        (&truncated, "not a safetensors file"),
        (&foreign, "not a safetensors file"),
        (&missing, "No such file"),
    ] {
        let file = file.to_str().unwrap();
        for args in [
            vec!["eval", "--model", file, "--data-dir", data],
            vec!["train", "--from", file, "--data-dir", data],
            vec!["experiment", "mlp", "--resume", file, "--data-dir", data],
        ] {
            let output = run(&args, &[], None);
            let err = stderr(&output);
            assert!(!output.status.success(), "{args:?} accepted");
            assert!(
                err.contains(expected) && err.contains(file),
                "{args:?}: expected {expected:?} in {err}"
            );
            assert!(!err.contains("panicked"), "{err}");
        }
    }
}

#[test]
fn bench_times_epochs_and_reports_them_as_json() {
    let dir = mnist_dir();
    let output = run(
        &[
            "bench",
            "--workload",
            "minibatch",
            "--epochs",
            "1",
            "--json",
            "--data-dir",
            dir.to_str().unwrap(),
        ],
        &[],
        None,
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let json: serde_json::Value = serde_json::from_str(stdout(&output).trim()).unwrap();
    let results = json.as_object().unwrap();
    assert_eq!(results.keys().collect::<Vec<_>>(), ["minibatch"]);
    let minibatch = &results["minibatch"];
    for field in ["s_per_epoch", "gflops", "peak_gflops", "bound_s"] {
        let value = minibatch[field].as_f64().unwrap();
        assert!(value.is_finite() && value > 0.0, "{field} = {value}");
    }
    // 784-256-128-10 on 50,000 images: 2·n·(2·weights + the upper layers' input gradients).
    let weights = 784 * 256 + 256 * 128 + 128 * 10;
    let flops = 2 * 50_000u64 * (2 * weights + 256 * 128 + 128 * 10);
    assert_eq!(minibatch["flops_per_epoch"].as_u64(), Some(flops));
    let (s, gflops) = (
        minibatch["s_per_epoch"].as_f64().unwrap(),
        minibatch["gflops"].as_f64().unwrap(),
    );
    assert!((gflops * s * 1e9 / flops as f64 - 1.0).abs() < 1e-9);

    for (flags, expected) in [
        (&["--workload", "huge"][..], "invalid value 'huge'"),
        (&["--epochs", "0"][..], "at least 1"),
    ] {
        let mut args = vec!["bench", "--data-dir", "/nonexistent/mnist"];
        args.extend_from_slice(flags);
        let output = run(&args, &[], None);
        assert_eq!(output.status.code(), Some(2), "{flags:?} was accepted");
        assert!(stderr(&output).contains(expected), "{}", stderr(&output));
    }
}

#[test]
fn any_architecture_trains_with_adam_and_a_schedule_and_reports_validation() {
    let dir = tempfile::tempdir().unwrap();
    let data = mnist_dir();
    let arch = dir.path().join("arch.txt");
    std::fs::write(
        &arch,
        "# a small CNN\nconv 4 5, maxpool 2, relu\nflatten, dropout 0.1\nlinear 10\n",
    )
    .unwrap();
    let model = dir.path().join("cnn.safetensors");
    let metrics = dir.path().join("m.csv");
    let output = run(
        &[
            "train",
            "--layers-file",
            arch.to_str().unwrap(),
            "--optimizer",
            "adamw",
            "--lr",
            "0.003",
            "--schedule",
            "cosine",
            "--warmup",
            "20",
            "--batch-size",
            "128",
            "--epochs",
            "2",
            "--standardise",
            "--validation",
            "10000",
            "--summary",
            "--save",
            model.to_str().unwrap(),
            "--metrics",
            metrics.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
        ],
        &[],
        None,
    );
    let out = stdout(&output);
    assert!(output.status.success(), "{}", stderr(&output));
    for expected in [
        "AdamW, betas (0.9, 0.999), eps 1e-8, weight decay 0.01",
        "schedule cosine:0",
        "20 warm-up steps",
        "50000 train, 10000 validation, 10000 test, standardised",
        // The summary: the convolution's output shape and parameters, and the totals.
        "4x24x24",
        "104",
        "total: 5,874 parameters",
        "val accuracy",
    ] {
        assert!(out.contains(expected), "{expected:?} missing from\n{out}");
    }
    assert!(final_test_accuracy(&out) > 0.9, "{out}");
    // The learning rate of each epoch's last step: the cosine ends near zero.
    let csv = std::fs::read_to_string(&metrics).unwrap();
    let lrs: Vec<f64> = csv
        .lines()
        .skip(1)
        .map(|line| line.split(',').nth(5).unwrap().parse().unwrap())
        .collect();
    assert!(lrs[0] > 1e-3 && lrs[0] < 0.003 && lrs[1] < 1e-5, "{csv}");
    // The saved model carries its architecture: eval needs nothing else.
    let eval = run(
        &[
            "eval",
            "--model",
            model.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
        ],
        &[],
        None,
    );
    assert!(eval.status.success(), "{}", stderr(&eval));
    assert_eq!(
        stdout(&eval).lines().last(),
        out.lines().last(),
        "eval and train disagree"
    );
}

#[test]
fn show_augment_draws_what_the_epochs_of_a_run_train_on() {
    let dir = mnist_dir();
    let data = dir.to_str().unwrap();
    let out_dir = tempfile::tempdir().unwrap();
    let png = out_dir.path().join("augmented.png");
    let png_arg = png.to_str().unwrap();
    let args = [
        "show",
        "0",
        "7",
        "--augment",
        "affine+elastic",
        "--copies",
        "3",
        "--seed",
        "4",
        "--data-dir",
        data,
        "--png",
        png_arg,
    ];
    let output = run(&args, &[], None);
    assert!(output.status.success(), "{}", stderr(&output));
    let out = stdout(&output);
    assert!(
        out.contains(
            "augmented with affine:10:0.1:0.1:0.2:2+elastic:4:34\n  as epochs 1-3 of a run with --seed 4"
        ),
        "{out}"
    );
    assert!(out.lines().all(|l| l.chars().count() <= 80), "{out}");
    // Two images, each as stored and as three epochs see it: a grid of 4 columns and 2 rows.
    let picture = image::open(&png).unwrap().to_luma8();
    assert!(
        picture.width() >= 4 * 28 * 4 && picture.width() < 5 * 28 * 4,
        "{:?}",
        picture.dimensions()
    );
    // The same seed draws the same pictures; another seed, others.
    let again = run(&args, &[], None);
    assert_eq!(stdout(&again), out);
    let mut other = args.to_vec();
    other[8] = "5";
    assert_ne!(
        stdout(&run(&other, &[], None)).replace("seed 5", "seed 4"),
        out
    );

    for (bad, message) in [
        (
            vec!["show", "0", "--augment", "rotate"],
            "unknown distortion 'rotate'",
        ),
        (
            vec!["show", "0", "--augment", "translate:1.5"],
            "whole pixels",
        ),
        (
            vec!["show", "0", "--augment", "translate", "--split", "test"],
            "--split train",
        ),
        (vec!["show", "0", "--copies", "2"], "--augment"),
    ] {
        let mut bad = bad.clone();
        bad.extend(["--data-dir", data]);
        let output = run(&bad, &[], None);
        assert!(!output.status.success(), "{bad:?}");
        assert!(
            stderr(&output).contains(message),
            "{bad:?}: {}",
            stderr(&output)
        );
    }
}

#[test]
fn augmentation_clean_epochs_and_smoothing_are_recorded_reproducible_and_change_training() {
    let dir = mnist_dir();
    let out_dir = tempfile::tempdir().unwrap();
    let train = |name: &str, flags: &[&str]| {
        let path = out_dir.path().join(name);
        let mut args = vec![
            "train",
            "--hidden",
            "32",
            "--epochs",
            "2",
            "--batch-size",
            "256",
            "--lr",
            "0.1",
            "--data-dir",
            dir.to_str().unwrap(),
            "--save",
            path.to_str().unwrap(),
        ];
        args.extend(flags);
        let output = run(&args, &[], None);
        assert!(output.status.success(), "{}", stderr(&output));
        (std::fs::read(&path).unwrap(), stdout(&output))
    };
    let augment = ["--augment", "translate:2+elastic"];
    let (first, out) = train("a.safetensors", &augment);
    assert!(
        out.contains("augmentation") && out.contains("translate:2+elastic:4:34, new every epoch"),
        "{out}"
    );
    let (second, _) = train("b.safetensors", &augment);
    let (plain, _) = train("c.safetensors", &[]);
    let (a, b, c) = (
        mnist_nn::model::from_bytes(&first).unwrap(),
        mnist_nn::model::from_bytes(&second).unwrap(),
        mnist_nn::model::from_bytes(&plain).unwrap(),
    );
    assert_eq!(
        a.training.augment.as_deref(),
        Some("translate:2+elastic:4:34")
    );
    assert_eq!(c.training.augment, None);
    let weights = |m: &mnist_nn::model::SavedModel| -> Vec<f32> {
        m.network
            .layers()
            .iter()
            .flat_map(|l| l.export())
            .flat_map(|t| t.values)
            .collect()
    };
    assert_eq!(weights(&a), weights(&b), "the same seed, the same weights");
    assert_ne!(
        weights(&a),
        weights(&c),
        "augmentation changes what is learnt"
    );
    assert!(a
        .training
        .summary()
        .contains("augmented (translate:2+elastic:4:34)"));
    // The last epoch undistorted, and smoothed targets: shown, recorded, and what is learnt.
    let flags = ["--clean-epochs", "1", "--label-smoothing", "0.1"];
    let (smoothed, out) = train("d.safetensors", &[&augment[..], &flags].concat());
    assert!(
        out.contains("new every epoch but the last 1 (undistorted)")
            && out.contains("cross-entropy, label smoothing 0.1"),
        "{out}"
    );
    assert!(final_test_accuracy(&out) > 0.9, "{out}");
    let d = mnist_nn::model::from_bytes(&smoothed).unwrap();
    assert_eq!(
        (d.training.clean_epochs, d.training.label_smoothing),
        (1, 0.1)
    );
    assert!(
        d.training
            .summary()
            .contains("but the last 1 epochs, label smoothing 0.1"),
        "{}",
        d.training.summary()
    );
    assert_ne!(weights(&d), weights(&a));
}
