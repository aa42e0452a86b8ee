//! `mnist-nn serve`: every route and every error of the API, on the real server started by the
//! binary on an ephemeral loopback port, with a model trained on the real MNIST.

mod common;

use std::path::Path;

use common::server::{png_of, request, trained_mlp, Server};
use mnist_nn::data::{load_raw, RawSplit, CLASSES};
use mnist_nn::model;
use mnist_nn::serve::predictor::Predictor;
use serde_json::Value;

fn test_set() -> RawSplit {
    load_raw(&common::mnist_dir()).expect("MNIST").test
}

fn predictor(model: &Path) -> Predictor {
    Predictor::new(std::fs::read(model).unwrap()).unwrap()
}

fn as_f32s(value: &Value) -> Vec<f32> {
    value
        .as_array()
        .expect("an array")
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect()
}

fn as_u8s(value: &Value) -> Vec<u8> {
    value
        .as_array()
        .expect("an array")
        .iter()
        .map(|v| v.as_u64().unwrap() as u8)
        .collect()
}

/// Checks an error answer: its status, a JSON body `{"error": "..."}` whose text contains
/// `words`.
fn assert_error(response: &common::server::Response, status: u16, words: &str) {
    assert_eq!(
        response.status,
        status,
        "{}",
        String::from_utf8_lossy(&response.body)
    );
    assert_eq!(response.header("content-type"), Some("application/json"));
    let error = response.json()["error"]
        .as_str()
        .expect("an error message")
        .to_string();
    assert!(error.contains(words), "{error:?} should mention {words:?}");
}

#[test]
fn pages_and_model_description() {
    let model_path = trained_mlp();
    let server = Server::start(model_path, &[]);
    assert!(
        server.banner.iter().any(|l| l.contains("test accuracy")),
        "{:?}",
        server.banner
    );
    for (path, content_type, needle) in [
        ("/", "text/html; charset=utf-8", "<canvas id=\"pad\""),
        ("/mistakes", "text/html; charset=utf-8", "id=\"matrix\""),
        ("/draw.js", "text/javascript; charset=utf-8", "/api/predict"),
        (
            "/mistakes.js",
            "text/javascript; charset=utf-8",
            "/api/mistakes",
        ),
        (
            "/shared.js",
            "text/javascript; charset=utf-8",
            "function drawDigit",
        ),
        ("/style.css", "text/css; charset=utf-8", "#pad"),
    ] {
        let response = request(server.addr, "GET", path, None);
        assert_eq!(response.status, 200, "{path}");
        assert_eq!(
            response.header("content-type"),
            Some(content_type),
            "{path}"
        );
        assert!(
            String::from_utf8_lossy(&response.body).contains(needle),
            "{path} should contain {needle}"
        );
    }

    // The description, with the test accuracy the library measures.
    let info = request(server.addr, "GET", "/api/model", None).json();
    let saved = model::load(model_path).unwrap();
    let test = test_set();
    let mut network = saved.network;
    let data = saved.preprocessing.dataset(&test, 0..test.len());
    let accuracy = network.evaluate(data.images.view(), &data.labels).accuracy;
    assert_eq!(info["test_accuracy"].as_f64().unwrap(), accuracy);
    assert!(
        accuracy > 0.95,
        "the test model should be trained: {accuracy}"
    );
    assert_eq!(info["test_images"], 10_000);
    assert_eq!(info["dataset"], "mnist");
    assert_eq!(info["parameters"], 784 * 128 + 128 + 128 * 10 + 10);
    assert_eq!(
        info["layers"],
        serde_json::json!(["Linear(784 -> 128)", "ReLU", "Linear(128 -> 10)"])
    );
    assert_eq!(info["training"]["epochs"], 3);
    assert!(
        info["trained"].as_str().unwrap().contains("Adam"),
        "{}",
        info["trained"]
    );
}

#[test]
fn predictions_match_the_library() {
    let model_path = trained_mlp();
    let server = Server::start(model_path, &[]);
    let predictor = predictor(model_path);
    let test = test_set();
    let mut correct = 0;
    for index in 0..50 {
        // A PNG of the test image: prepared like any picture (bounding box, 20x20, centre).
        let png = png_of(test.image(index));
        let answer = request(
            server.addr,
            "POST",
            "/api/predict",
            Some(("image/png", &png)),
        )
        .json();
        let picture = image::load_from_memory(&png).unwrap();
        let expected = predictor.predict_picture(&picture).unwrap();
        assert_eq!(answer["prediction"], expected.prediction, "image {index}");
        assert_eq!(as_f32s(&answer["probabilities"]), expected.probabilities);
        assert_eq!(as_u8s(&answer["input"]), expected.input);
        let sum: f32 = expected.probabilities.iter().sum();
        assert!((sum - 1.0).abs() < 1e-5, "{sum}");
        correct += usize::from(expected.prediction == test.labels[index] as usize);

        // The same image as JSON pixels: used as it is, like the test set itself.
        let body = serde_json::json!({ "pixels": test.image(index) }).to_string();
        let answer = request(
            server.addr,
            "POST",
            "/api/predict",
            Some(("application/json; charset=utf-8", body.as_bytes())),
        )
        .json();
        let expected = predictor.predict_pixels(test.image(index).to_vec());
        assert_eq!(answer["prediction"], expected.prediction);
        assert_eq!(as_f32s(&answer["probabilities"]), expected.probabilities);
        assert_eq!(as_u8s(&answer["input"]), test.image(index));
        assert_eq!(answer["class"], expected.prediction.to_string());
    }
    assert!(
        correct >= 45,
        "{correct} of 50 test pictures read correctly"
    );

    // A JPEG of a large dark-on-light drawing: a thick vertical bar, read as a 1.
    let mut drawing = image::GrayImage::from_pixel(300, 300, image::Luma([255]));
    for y in 40..260 {
        for x in 140..165 {
            drawing.put_pixel(x, y, image::Luma([0]));
        }
    }
    let mut jpeg = Vec::new();
    drawing
        .write_to(
            &mut std::io::Cursor::new(&mut jpeg),
            image::ImageFormat::Jpeg,
        )
        .unwrap();
    let answer = request(
        server.addr,
        "POST",
        "/api/predict",
        Some(("image/jpeg", &jpeg)),
    )
    .json();
    assert_eq!(answer["prediction"], 1, "{answer}");
}

#[test]
fn every_error_gets_its_status_and_a_json_explanation() {
    let server = Server::start(trained_mlp(), &[]);
    let addr = server.addr;
    let predict = |content_type: &str, body: &[u8]| {
        request(addr, "POST", "/api/predict", Some((content_type, body)))
    };
    assert_error(&predict("image/png", b""), 400, "empty");
    assert_error(
        &predict("image/png", b"not a png at all"),
        400,
        "cannot decode",
    );
    assert_error(
        &predict("image/jpeg", &png_of(&[0; 784])),
        400,
        "cannot decode",
    );
    let blank = png_of(&[0; 784]);
    assert_error(&predict("image/png", &blank), 400, "no ink");
    assert_error(
        &predict("application/json", b"{\"pixels\": [1, 2"),
        400,
        "pixels",
    );
    assert_error(
        &predict("application/json", b"{\"pixels\": [1, 2]}"),
        400,
        "784",
    );
    let too_bright = serde_json::json!({ "pixels": vec![256; 784] }).to_string();
    assert_error(
        &predict("application/json", too_bright.as_bytes()),
        400,
        "pixels",
    );
    assert_error(&predict("text/plain", b"7"), 415, "image/png");
    assert_error(&predict("", b"7"), 415, "content type");
    let huge = vec![0u8; (1 << 20) + 1];
    assert_error(&predict("image/png", &huge), 413, "larger");
    // Just under the limit: read, then refused for what it is.
    assert_error(&predict("image/png", &huge[1..]), 400, "cannot decode");

    assert_error(&request(addr, "GET", "/nowhere", None), 404, "no such");
    assert_error(&request(addr, "GET", "/api/predict", None), 405, "method");
    assert_error(
        &request(addr, "POST", "/api/model", Some(("", b""))),
        405,
        "method",
    );
    for query in [
        "truth=3&predicted=10",
        "truth=3",
        "truth=three&predicted=5",
        "truth=3&predicted=5&limit=-1",
    ] {
        let response = request(addr, "GET", &format!("/api/mistakes?{query}"), None);
        assert_error(&response, 400, "");
    }
    // Still answering.
    assert_eq!(request(addr, "GET", "/api/model", None).status, 200);
}

#[test]
fn the_body_limit_is_configurable() {
    let server = Server::start(trained_mlp(), &["--body-limit", "1500"]);
    let test = test_set();
    let png = png_of(test.image(0));
    assert!(png.len() < 1500, "{}", png.len());
    let ok = request(
        server.addr,
        "POST",
        "/api/predict",
        Some(("image/png", &png)),
    );
    assert_eq!(ok.status, 200);
    let json = serde_json::json!({ "pixels": test.image(0) }).to_string();
    assert!(json.len() > 1500, "{}", json.len());
    let refused = request(
        server.addr,
        "POST",
        "/api/predict",
        Some(("application/json", json.as_bytes())),
    );
    assert_error(&refused, 413, "larger");

    let zero = common::run(
        &["serve", "--model", "m.safetensors", "--body-limit", "0"],
        &[],
        None,
    );
    assert!(!zero.status.success());
    assert!(common::stderr(&zero).contains("at least 1"));
}

#[test]
fn the_confusion_matrix_and_its_cells_match_the_library() {
    let model_path = trained_mlp();
    let server = Server::start(model_path, &[]);
    let confusion = request(server.addr, "GET", "/api/confusion", None).json();

    let saved = model::load(model_path).unwrap();
    let test = test_set();
    let mut network = saved.network;
    let data = saved.preprocessing.dataset(&test, 0..test.len());
    let predictions = network.predict(data.images.view());
    let mut expected = [[0u64; CLASSES]; CLASSES];
    for (&truth, &predicted) in test.labels.iter().zip(&predictions) {
        expected[truth as usize][predicted as usize] += 1;
    }
    assert_eq!(confusion["matrix"], serde_json::json!(expected));
    let correct: u64 = (0..CLASSES).map(|c| expected[c][c]).sum();
    assert_eq!(
        confusion["accuracy"].as_f64().unwrap(),
        correct as f64 / 10_000.0
    );

    // The worst off-diagonal cell, and a diagonal one cut by `limit`.
    let (truth, predicted) = (0..CLASSES)
        .flat_map(|t| (0..CLASSES).map(move |p| (t, p)))
        .filter(|(t, p)| t != p)
        .max_by_key(|&(t, p)| expected[t][p])
        .unwrap();
    assert!(expected[truth][predicted] > 0);
    for (truth, predicted, limit) in [(truth, predicted, 100), (4, 4, 7)] {
        let cell = request(
            server.addr,
            "GET",
            &format!("/api/mistakes?truth={truth}&predicted={predicted}&limit={limit}"),
            None,
        )
        .json();
        assert_eq!(cell["count"], expected[truth][predicted]);
        let images = cell["images"].as_array().unwrap();
        assert_eq!(
            images.len() as u64,
            expected[truth][predicted].min(limit as u64)
        );
        let mut previous = None;
        for image in images {
            let index = image["index"].as_u64().unwrap() as usize;
            assert!(previous < Some(index), "in test-set order");
            previous = Some(index);
            assert_eq!(test.labels[index] as usize, truth);
            assert_eq!(predictions[index] as usize, predicted);
            assert_eq!(as_u8s(&image["pixels"]), test.image(index));
            let p = as_f32s(&image["probabilities"]);
            let best = (0..CLASSES).max_by(|&a, &b| p[a].total_cmp(&p[b])).unwrap();
            assert_eq!(best, predicted);
        }
    }
}

#[test]
fn ctrl_c_stops_the_server_cleanly() {
    let server = Server::start(trained_mlp(), &[]);
    let addr = server.addr;
    assert_eq!(request(addr, "GET", "/api/model", None).status, 200);
    let (status, printed) = server.interrupt();
    assert!(status.success(), "{status:?}");
    assert_eq!(printed, ["stopped"]);
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "nothing listens any more"
    );
}

#[test]
fn bad_command_lines_are_clear_errors() {
    let mnist = common::mnist_dir();
    let env = [("MNIST_DIR", mnist.to_str().unwrap())];
    let missing = common::run(
        &["serve", "--model", "/nonexistent.safetensors"],
        &env,
        None,
    );
    assert!(!missing.status.success());
    assert!(
        common::stderr(&missing).contains("/nonexistent.safetensors"),
        "{}",
        common::stderr(&missing)
    );

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let model = trained_mlp().to_str().unwrap();
    let busy = common::run(&["serve", "--model", model, "--addr", &addr], &env, None);
    assert!(!busy.status.success());
    let err = common::stderr(&busy);
    assert!(err.contains(&format!("listening on {addr}")), "{err}");

    let bad_addr = common::run(
        &["serve", "--model", model, "--addr", "localhost"],
        &env,
        None,
    );
    assert!(!bad_addr.status.success());
    assert!(common::stderr(&bad_addr).contains("--addr"));
}
