//! Saved models: round trips, continuing, evaluation, prediction on pictures, bad files.

mod common;

use std::collections::HashMap;
use std::path::Path;

use common::{mnist_dir, run, stderr, stdout};
use image::{GrayImage, Luma};
use mnist_nn::data::{load_raw, Preprocessing};
use mnist_nn::experiments;
use mnist_nn::model::{self, Training};
use mnist_nn::optim::Optimizer;
use mnist_nn::seeded_rng;
use ndarray::Array2;
use rand::Rng;

fn training() -> Training {
    Training {
        init: Some("he".into()),
        ..common::sgd_record(1)
    }
}

#[test]
fn every_experiment_network_survives_a_round_trip_bit_for_bit() {
    let mut rng = seeded_rng(40);
    let x = Array2::from_shape_simple_fn((16, 784), || rng.random::<f32>());
    let labels: Vec<u8> = (0..16).map(|i| (i % 10) as u8).collect();
    for experiment in &experiments::EXPERIMENTS {
        let mut network = experiment.build(&mut seeded_rng(41));
        // A few steps so that every parameter and running statistic moves from its start.
        for _ in 0..3 {
            network.train_step(x.view(), &labels, &mut Optimizer::sgd(0.01));
        }
        let preprocessing = Preprocessing::Standardise {
            mean: 33.3,
            std: 78.5,
        };
        let bytes = model::to_bytes(&network, &preprocessing, &training());
        let mut loaded =
            model::from_bytes(&bytes).unwrap_or_else(|e| panic!("{}: {e}", experiment.name));
        assert_eq!(loaded.preprocessing, preprocessing);
        assert_eq!(loaded.training, training());
        let before = network.forward(x.view(), false).to_owned();
        let after = loaded.network.forward(x.view(), false).to_owned();
        assert_eq!(before, after, "{}: logits changed", experiment.name);
        // What training depends on survives too (such as Samson's shared bias gradient): the
        // same step on both gives the same parameters.
        assert_eq!(
            network.specs(),
            loaded.network.specs(),
            "{}",
            experiment.name
        );
        network.train_step(x.view(), &labels, &mut Optimizer::sgd(0.01));
        loaded
            .network
            .train_step(x.view(), &labels, &mut Optimizer::sgd(0.01));
        let values = |n: &mut mnist_nn::network::Network| -> Vec<Vec<f32>> {
            n.params().into_iter().map(|p| p.value.to_vec()).collect()
        };
        assert_eq!(
            values(&mut network),
            values(&mut loaded.network),
            "{}: a training step differs after loading",
            experiment.name
        );
    }
}

#[test]
fn damaged_and_foreign_model_files_are_refused_without_panicking() {
    let network = experiments::find("mlp").unwrap().build(&mut seeded_rng(42));
    let good = model::to_bytes(&network, &Preprocessing::Scale255, &training());
    let error = |bytes: &[u8]| match model::from_bytes(bytes) {
        Ok(_) => panic!("accepted"),
        Err(message) => message,
    };
    assert!(error(&good[..good.len() / 2]).contains("not a safetensors file"));
    assert!(error(b"hello, I am not a model").contains("not a safetensors file"));
    assert!(error(&[]).contains("not a safetensors file"));
    // A valid safetensors file of someone else's.
    let data = vec![0u8; 16];
    let view =
        safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![4], &data).unwrap();
    let foreign = safetensors::serialize([("w", view)], None).unwrap();
    assert!(error(&foreign).contains("not an mnist-nn model"));
    // Our metadata, but an architecture that does not fit its tensors (784-256 becomes 784-255).
    let header_len = u64::from_le_bytes(good[..8].try_into().unwrap()) as usize;
    let header = std::str::from_utf8(&good[8..8 + header_len]).unwrap();
    let tampered_header = header.replace(r#"\"outputs\":256"#, r#"\"outputs\":255"#);
    assert_ne!(header, tampered_header);
    let tampered_header = tampered_header.replace(r#"\"inputs\":256"#, r#"\"inputs\":255"#);
    let mut tampered = (tampered_header.len() as u64).to_le_bytes().to_vec();
    tampered.extend_from_slice(tampered_header.as_bytes());
    tampered.extend_from_slice(&good[8 + header_len..]);
    let message = error(&tampered);
    assert!(message.contains("shape"), "{message}");
}

fn write_model(dir: &Path) -> std::path::PathBuf {
    let data = mnist_dir();
    let path = dir.join("mlp.safetensors");
    let output = run(
        &[
            "train",
            "--hidden",
            "128",
            "--epochs",
            "3",
            "--batch-size",
            "32",
            "--lr",
            "0.1",
            "--save",
            path.to_str().unwrap(),
            "--metrics",
            dir.join("m.json").to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
        ],
        &[],
        None,
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let out = stdout(&output);
    assert!(
        out.lines().last().unwrap().starts_with("test accuracy: "),
        "{out}"
    );
    path
}

#[test]
fn train_save_eval_continue_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let data = mnist_dir();
    let data = data.to_str().unwrap();
    let path = write_model(dir.path());

    // The metrics file: one row per epoch.
    let metrics: Vec<HashMap<String, serde_json::Value>> =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("m.json")).unwrap()).unwrap();
    assert_eq!(metrics.len(), 3);
    assert!(
        metrics[2]["train_loss"].as_f64().unwrap() < metrics[0]["train_loss"].as_f64().unwrap()
    );

    // eval reports what training reported.
    let trained = run(
        &[
            "eval",
            "--model",
            path.to_str().unwrap(),
            "--data-dir",
            data,
        ],
        &[],
        None,
    );
    assert!(trained.status.success(), "{}", stderr(&trained));
    let eval_out = stdout(&trained);
    assert!(eval_out.contains("confusion matrix"), "{eval_out}");
    let accuracy_line = eval_out.lines().last().unwrap().to_string();
    assert!(
        accuracy_line.starts_with("test accuracy: 0.9"),
        "{accuracy_line}"
    );

    // Continue for one more epoch: the record counts four.
    let next = dir.path().join("next.safetensors");
    let output = run(
        &[
            "train",
            "--from",
            path.to_str().unwrap(),
            "--epochs",
            "1",
            "--batch-size",
            "32",
            "--lr",
            "0.05",
            "--save",
            next.to_str().unwrap(),
            "--data-dir",
            data,
        ],
        &[],
        None,
    );
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stdout(&output).contains("(3 epochs so far; the optimiser starts afresh)"),
        "{}",
        stdout(&output)
    );
    let continued = model::load(&next).unwrap();
    assert_eq!(continued.training.epochs, 4);
    assert_eq!(
        continued.training.lr, 0.05,
        "the continued run's learning rate"
    );
    let tensors = |saved: model::SavedModel| -> Vec<Vec<f32>> {
        saved
            .network
            .layers()
            .iter()
            .flat_map(|l| l.export())
            .map(|t| t.values)
            .collect()
    };
    let (before, after) = (tensors(model::load(&path).unwrap()), tensors(continued));
    assert_eq!(before.len(), after.len());
    assert!(
        before.iter().zip(&after).all(|(b, a)| b != a),
        "every tensor moves in an epoch of training"
    );

    // --from and --hidden do not go together; a seed-003 model cannot continue a seed-000 experiment.
    let output = run(
        &["train", "--from", path.to_str().unwrap(), "--hidden", "5"],
        &[],
        None,
    );
    assert!(!output.status.success() && stderr(&output).contains("cannot be used with"));
    let output = run(
        &[
            "experiment",
            "mlp",
            "--from",
            path.to_str().unwrap(),
            "--data-dir",
            data,
        ],
        &[],
        None,
    );
    assert!(
        !output.status.success() && stderr(&output).contains("differently scaled"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn experiment_save_then_eval_reports_the_same_test_accuracy() {
    let dir = tempfile::tempdir().unwrap();
    let data = mnist_dir();
    let data = data.to_str().unwrap();
    let path = dir.path().join("bn.safetensors");
    let png = dir.path().join("png");
    let curves = dir.path().join("curves.png");
    let trained = run(
        &[
            "experiment",
            "bn-mlp",
            "--epochs",
            "2",
            "--save",
            path.to_str().unwrap(),
            "--plot",
            curves.to_str().unwrap(),
            "--data-dir",
            data,
        ],
        &[],
        None,
    );
    assert!(trained.status.success(), "{}", stderr(&trained));
    let evaluated = run(
        &[
            "eval",
            "--model",
            path.to_str().unwrap(),
            "--png",
            png.to_str().unwrap(),
            "--data-dir",
            data,
        ],
        &[],
        None,
    );
    assert!(evaluated.status.success(), "{}", stderr(&evaluated));
    let last = |s: String| s.lines().last().unwrap().to_string();
    assert_eq!(last(stdout(&trained)), last(stdout(&evaluated)));
    assert!(image::open(&curves).unwrap().width() >= 800, "curves");
    for picture in ["confusion.png", "mistakes.png"] {
        let decoded = image::open(png.join(picture)).unwrap();
        assert!(decoded.width() > 200, "{picture}");
    }
}

#[test]
fn predicts_test_digits_drawn_large_off_centre_dark_on_light() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_model(dir.path());
    let raw = load_raw(&mnist_dir()).unwrap();
    let mut files = Vec::new();
    let mut rng = seeded_rng(43);
    for i in 0..60 {
        // A 280x280 sheet of paper, the digit enlarged 6 times (168x168) somewhere off centre.
        let mut sheet = GrayImage::from_pixel(280, 280, Luma([245]));
        let (left, top) = (rng.random_range(0..112u32), rng.random_range(0..112u32));
        let digit = raw.test.image(i);
        for y in 0..168u32 {
            for x in 0..168u32 {
                let ink = digit[(y / 6) as usize * 28 + (x / 6) as usize];
                sheet.put_pixel(
                    left + x,
                    top + y,
                    Luma([245 - (ink as u32 * 230 / 255) as u8]),
                );
            }
        }
        let file = dir.path().join(format!("digit{i}.png"));
        sheet.save(&file).unwrap();
        files.push(file);
    }
    let mut args = vec!["predict", "--json", "--model", path.to_str().unwrap()];
    args.extend(files.iter().map(|f| f.to_str().unwrap()));
    let output = run(&args, &[], None);
    assert!(output.status.success(), "{}", stderr(&output));
    let predictions: Vec<serde_json::Value> = serde_json::from_str(&stdout(&output)).unwrap();
    let hits = predictions
        .iter()
        .enumerate()
        .filter(|(i, p)| p["prediction"].as_u64() == Some(raw.test.labels[*i] as u64))
        .count();
    assert!(hits >= 54, "only {hits} of 60 predicted right");
    let probabilities: f64 = predictions[0]["probabilities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_f64().unwrap())
        .sum();
    assert!((probabilities - 1.0).abs() < 1e-4);

    // Pictures that cannot be used.
    let text = dir.path().join("notes.png");
    std::fs::write(&text, "not a picture").unwrap();
    let output = run(
        &[
            "predict",
            "--model",
            path.to_str().unwrap(),
            text.to_str().unwrap(),
        ],
        &[],
        None,
    );
    assert!(!output.status.success() && stderr(&output).contains("cannot read it as an image"));
    let blank = dir.path().join("blank.png");
    GrayImage::from_pixel(100, 100, Luma([255]))
        .save(&blank)
        .unwrap();
    let output = run(
        &[
            "predict",
            "--model",
            path.to_str().unwrap(),
            blank.to_str().unwrap(),
        ],
        &[],
        None,
    );
    assert!(
        !output.status.success() && stderr(&output).contains("no ink"),
        "{}",
        stderr(&output)
    );
    let output = run(
        &[
            "predict",
            "--model",
            text.to_str().unwrap(),
            blank.to_str().unwrap(),
        ],
        &[],
        None,
    );
    assert!(
        !output.status.success() && stderr(&output).contains("not a safetensors file"),
        "{}",
        stderr(&output)
    );
    assert!(!stderr(&output).contains("panicked"));
}
