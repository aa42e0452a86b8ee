//! Fashion-MNIST and Kuzushiji-MNIST by name: finding, downloading and checking them, and class
//! names everywhere a label is shown. Reads the real Fashion-MNIST (Debian's
//! `dataset-fashion-mnist`, which `.ci/run` installs).

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use common::{fashion_dir, mnist_dir, run, serve, stderr, stdout};
use flate2::{write::GzEncoder, Compression};

const IDX_FILES: [&str; 4] = [
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
];

fn files_of(dir: &Path) -> HashMap<String, Vec<u8>> {
    IDX_FILES
        .iter()
        .map(|f| (f.to_string(), std::fs::read(dir.join(f)).unwrap()))
        .collect()
}

fn download(set: &str, dir: &Path, mirror: &str) -> std::process::Output {
    run(
        &[
            "download",
            "--dataset",
            set,
            "--dir",
            dir.to_str().unwrap(),
            "--mirror",
            mirror,
        ],
        &[],
        None,
    )
}

#[test]
fn fashion_mnist_downloads_verified_and_kmnist_refuses_files_that_are_not_its_own() {
    let real = files_of(&fashion_dir());
    let dir = tempfile::tempdir().unwrap();

    // The real files, recompressed by a mirror: the content's checksum still holds.
    let recompressed: HashMap<String, Vec<u8>> = real
        .iter()
        .map(|(name, bytes)| {
            let mut content = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&bytes[..]), &mut content)
                .unwrap();
            let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
            encoder.write_all(&content).unwrap();
            (name.clone(), encoder.finish().unwrap())
        })
        .collect();
    let target = dir.path().join("fashion");
    let output = download("fashion-mnist", &target, &serve(recompressed));
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stdout(&output).contains("Fashion-MNIST is in"),
        "{}",
        stdout(&output)
    );
    let again = download("fashion-mnist", &target, &serve(HashMap::new()));
    assert_eq!(
        stdout(&again)
            .matches("already present and verified")
            .count(),
        4,
        "{}",
        stdout(&again)
    );

    // MNIST's files are not Fashion-MNIST's.
    let wrong = dir.path().join("wrong");
    let output = download("fashion-mnist", &wrong, &serve(files_of(&mnist_dir())));
    let err = stderr(&output);
    assert!(!output.status.success());
    assert!(
        err.contains("train-images-idx3-ubyte.gz")
            && err.contains("SHA-256 of the decompressed content")
            && err.contains("the file was not saved"),
        "{err}"
    );
    assert!(!wrong.join("train-images-idx3-ubyte.gz").exists());

    // Kuzushiji-MNIST is checked by the SHA-256 of its compressed files as served.
    let output = download("kmnist", &dir.path().join("kmnist"), &serve(real));
    let err = stderr(&output);
    assert!(!output.status.success());
    assert!(
        err.contains("Kuzushiji-MNIST") && err.contains("SHA-256 of the compressed file"),
        "{err}"
    );
}

#[test]
fn each_set_is_looked_for_in_its_own_places() {
    let home = tempfile::tempdir().unwrap();
    let cache = home.path().join("cache");
    let output = run(
        &["show", "0", "--dataset", "kmnist"],
        &[
            ("XDG_CACHE_HOME", cache.to_str().unwrap()),
            ("MNIST_NN_MIRROR", "http://127.0.0.1:9/"),
        ],
        Some(home.path()),
    );
    let err = stderr(&output);
    assert!(!output.status.success());
    for expected in [
        "Kuzushiji-MNIST not found",
        "data/kmnist",
        "mnist-nn/kmnist",
        "the download failed",
        "KMNIST_DIR=DIR",
    ] {
        assert!(err.contains(expected), "{expected:?} missing from {err}");
    }
    // $FASHION_MNIST_DIR names the folder.
    let output = run(
        &["show", "1", "--dataset", "fashion-mnist"],
        &[("FASHION_MNIST_DIR", fashion_dir().to_str().unwrap())],
        Some(home.path()),
    );
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stdout(&output).contains("Fashion-MNIST train image 1: label 0 (T-shirt/top)"),
        "{}",
        stdout(&output)
    );
}

#[test]
fn a_fashion_model_names_its_classes_and_refuses_other_data_sets() {
    let dir = tempfile::tempdir().unwrap();
    let data = fashion_dir();
    let data = data.to_str().unwrap();
    let model = dir.path().join("fashion.safetensors");
    let output = run(
        &[
            "train",
            "--dataset",
            "fashion-mnist",
            "--layers",
            "linear 64, relu, linear 10",
            "--optimizer",
            "adam",
            "--lr",
            "0.002",
            "--batch-size",
            "128",
            "--epochs",
            "2",
            "--save",
            model.to_str().unwrap(),
            "--data-dir",
            data,
        ],
        &[],
        None,
    );
    let out = stdout(&output);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(out.contains("Fashion-MNIST in"), "{out}");
    let accuracy: f64 = out.lines().last().unwrap()["test accuracy: ".len()..]
        .parse()
        .unwrap();
    assert!(accuracy > 0.8, "{out}");

    // eval: the per-class table and the confusion matrix by name; the mistakes gallery.
    let pictures = dir.path().join("png");
    let eval = run(
        &[
            "eval",
            "--model",
            model.to_str().unwrap(),
            "--png",
            pictures.to_str().unwrap(),
            "--data-dir",
            data,
        ],
        &[],
        None,
    );
    let text = stdout(&eval);
    assert!(eval.status.success(), "{}", stderr(&eval));
    for expected in [
        "T-shirt/top    1000",
        "Ankle boot     1000",
        "SNEAKER",
        "PULLOVR",
    ] {
        assert!(text.contains(expected), "{expected:?} missing from {text}");
    }
    assert_eq!(text.lines().last(), out.lines().last());
    assert!(pictures.join("mistakes.png").is_file());

    // Another data set is refused, by eval, predict and --from alike.
    for args in [
        vec![
            "eval",
            "--model",
            model.to_str().unwrap(),
            "--dataset",
            "mnist",
        ],
        vec![
            "predict",
            "--model",
            model.to_str().unwrap(),
            "--dataset",
            "kmnist",
            "x.png",
        ],
        vec!["train", "--from", model.to_str().unwrap(), "--epochs", "1"],
    ] {
        let output = run(&args, &[], None);
        assert!(!output.status.success());
        assert!(
            stderr(&output).contains("the model was trained on Fashion-MNIST"),
            "{args:?}: {}",
            stderr(&output)
        );
    }

    // predict: a test picture of an ankle boot, saved as a PNG four times larger, comes back as one.
    let raw = mnist_nn::data::load_raw(Path::new(data)).unwrap();
    let index = (0..raw.test.len())
        .find(|&i| raw.test.labels[i] == 9)
        .unwrap();
    let boot = image::GrayImage::from_fn(112, 112, |x, y| {
        image::Luma([raw.test.image(index)[(y / 4 * 28 + x / 4) as usize]])
    });
    let picture = dir.path().join("boot.png");
    boot.save(&picture).unwrap();
    let predict = run(
        &[
            "predict",
            "--model",
            model.to_str().unwrap(),
            picture.to_str().unwrap(),
            "--json",
        ],
        &[],
        None,
    );
    assert!(predict.status.success(), "{}", stderr(&predict));
    let answers: Vec<serde_json::Value> = serde_json::from_str(&stdout(&predict)).unwrap();
    assert_eq!(answers[0]["class"], "Ankle boot", "{}", stdout(&predict));
}
