//! Helpers shared by the integration tests: where MNIST is, running the binary, a local HTTP
//! server, work on a given number of cores.

#![allow(dead_code)] // each test file uses its own subset

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Output};

/// The real MNIST: `$MNIST_DIR`, else `../shared/data/mnist` beside the repository, else the
/// download cache. Tests that need it fail (they do not skip) when it is nowhere.
pub fn mnist_dir() -> PathBuf {
    let candidates = std::env::var_os("MNIST_DIR")
        .map(PathBuf::from)
        .into_iter()
        .chain([PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data/mnist")])
        .chain(mnist_nn::data::locate::cache_dir(
            mnist_nn::data::DataSet::Mnist,
        ));
    let searched: Vec<PathBuf> = candidates.collect();
    searched
        .iter()
        .find(|dir| dir.join("train-images-idx3-ubyte.gz").is_file())
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "the tests need the real MNIST; looked in {searched:?}. Set MNIST_DIR or run \
                 `cargo run --release -- download`"
            )
        })
}

/// Runs `work` in a pool of `cores` threads: what it shares between the cores, it shares
/// between these.
pub fn on_cores<T: Send>(cores: usize, work: impl FnOnce() -> T + Send) -> T {
    rayon::ThreadPoolBuilder::new()
        .num_threads(cores)
        .build()
        .expect("a thread pool")
        .install(work)
}

/// The record of a test's training run: plain SGD, learning rate 0.1, batches of 32, seed 0, no
/// augmentation (a test changes what it needs with `Training { .., ..sgd_record(epochs) }`).
pub fn sgd_record(epochs: usize) -> mnist_nn::model::Training {
    mnist_nn::model::Training {
        command: "test".into(),
        epochs,
        lr: 0.1,
        batch_size: Some(32),
        seed: 0,
        init: None,
        optimizer: mnist_nn::optim::OptimizerSettings::PLAIN_SGD,
        schedule: mnist_nn::schedule::Schedule::Constant,
        warmup_steps: 0,
        dataset: mnist_nn::data::DataSet::Mnist,
        augment: None,
        clean_epochs: 0,
        label_smoothing: 0.0,
    }
}

/// A `(rows, cols)` matrix of standard normal draws.
pub fn random_matrix(rows: usize, cols: usize, rng: &mut impl rand::Rng) -> ndarray::Array2<f32> {
    ndarray::Array2::from_shape_simple_fn((rows, cols), || rng.sample(rand_distr::StandardNormal))
}

/// A convolution shape from `(in, out, height, width, kernel, stride, padding, dilation)`.
pub fn conv_shape(
    sizes: (usize, usize, usize, usize, usize, usize, usize, usize),
) -> mnist_nn::layers::ConvShape {
    let (in_channels, out_channels, height, width, kernel, stride, padding, dilation) = sizes;
    mnist_nn::layers::ConvShape {
        in_channels,
        out_channels,
        height,
        width,
        kernel,
        stride,
        padding,
        dilation,
    }
}

/// Runs `mnist-nn` with `args` and the given extra environment, in `cwd`.
pub fn run(args: &[&str], env: &[(&str, &str)], cwd: Option<&std::path::Path>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mnist-nn"));
    command.args(args).env_remove("MNIST_DIR");
    for (key, value) in env {
        command.env(key, value);
    }
    if let Some(dir) = cwd {
        command.current_dir(dir);
    }
    command.output().expect("the binary runs")
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Serves `files` (path without the leading slash -> body) over HTTP on 127.0.0.1, one request per
/// connection, 404 for anything else. Returns the base URL. The server thread lives as long as
/// the test process.
pub fn serve(files: HashMap<String, Vec<u8>>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free loopback port");
    let base = format!("http://{}/", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            // Skip the headers.
            let mut line = String::new();
            while reader.read_line(&mut line).map(|n| n > 2).unwrap_or(false) {
                line.clear();
            }
            let path = request_line
                .split_whitespace()
                .nth(1)
                .unwrap_or("/")
                .trim_start_matches('/');
            let (status, body) = match files.get(path) {
                Some(body) => ("200 OK", body.as_slice()),
                None => ("404 Not Found", &b"not found"[..]),
            };
            let header = format!(
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream
                .write_all(header.as_bytes())
                .and_then(|_| stream.write_all(body));
        }
    });
    base
}

/// The real Fashion-MNIST: `$FASHION_MNIST_DIR`, else where Debian's `dataset-fashion-mnist`
/// package installs it. Tests that need it fail (they do not skip) when it is nowhere.
pub fn fashion_dir() -> PathBuf {
    let dir = std::env::var_os("FASHION_MNIST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/share/datasets/fashion-mnist"));
    assert!(
        dir.join("train-images-idx3-ubyte.gz").is_file(),
        "the tests need the real Fashion-MNIST in {}: `apt-get install dataset-fashion-mnist` \
         (what .ci/run does) or set FASHION_MNIST_DIR",
        dir.display()
    );
    dir
}
pub mod server;
