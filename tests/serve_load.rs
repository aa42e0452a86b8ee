//! A bounded load test of `mnist-nn serve` on loopback: 20,000 predictions, 64 at a time, for an
//! MLP and for a CNN, each answer checked against the library's; then the same with 1,000
//! malformed requests mixed in, each of which must get its error while the good ones are still
//! answered correctly and the server stays up.
//!
//! It prints throughput and latency percentiles (the figures on the results page come from
//! `cargo test --release --test serve_load -- --nocapture --test-threads 1`); it asserts
//! correctness, not speed.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::server::{png_of, request, trained_cnn, trained_mlp, Connection, Response, Server};
use mnist_nn::data::load_raw;
use mnist_nn::serve::predictor::{Prediction, Predictor};

const REQUESTS: usize = 20_000;
const CONCURRENCY: usize = 64;
/// Distinct test images the good requests cycle through.
const DISTINCT: usize = 500;

/// One request of the load and what must come back.
struct Job {
    content_type: &'static str,
    path: &'static str,
    body: Vec<u8>,
    expected: Expected,
}

enum Expected {
    /// 200 with exactly this prediction.
    Answer(Prediction),
    /// An error with this status.
    Error(u16),
}

/// PNGs of the first [`DISTINCT`] test images with the library's predictions for them.
fn good_jobs(model: &std::path::Path) -> Vec<Job> {
    let test = load_raw(&common::mnist_dir()).unwrap().test;
    let predictor = Predictor::new(std::fs::read(model).unwrap()).unwrap();
    (0..DISTINCT)
        .map(|i| {
            let body = png_of(test.image(i));
            let picture = image::load_from_memory(&body).unwrap();
            Job {
                content_type: "image/png",
                path: "/api/predict",
                expected: Expected::Answer(predictor.predict_picture(&picture).unwrap()),
                body,
            }
        })
        .collect()
}

/// The malformed requests, one of each kind, cycled.
fn bad_jobs() -> Vec<Job> {
    let job = |content_type, path, body: &[u8], status| Job {
        content_type,
        path,
        body: body.to_vec(),
        expected: Expected::Error(status),
    };
    vec![
        job("image/png", "/api/predict", b"", 400),
        job("image/png", "/api/predict", b"\x89PNG but not really", 400),
        job("image/jpeg", "/api/predict", b"JFIF?", 400),
        job(
            "application/json",
            "/api/predict",
            b"{\"pixels\": [1, 2, 3]}",
            400,
        ),
        job("application/json", "/api/predict", b"not json", 400),
        job("text/plain", "/api/predict", b"seven", 415),
        job("image/png", "/api/predict", &vec![7u8; (1 << 20) + 1], 413),
        job("image/png", "/api/nowhere", b"x", 404),
    ]
}

/// What a run measured.
struct Report {
    seconds: f64,
    latencies: Vec<Duration>,
    failures: Vec<String>,
}

impl Report {
    fn percentile(&self, p: f64) -> Duration {
        let mut sorted = self.latencies.clone();
        sorted.sort();
        sorted[((sorted.len() - 1) as f64 * p).round() as usize]
    }

    fn print(&self, what: &str) {
        println!(
            "{what}: {} requests in {:.2} s: {:.0} per second, latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            self.latencies.len(),
            self.seconds,
            self.latencies.len() as f64 / self.seconds,
            self.percentile(0.5).as_secs_f64() * 1e3,
            self.percentile(0.99).as_secs_f64() * 1e3,
            self.percentile(1.0).as_secs_f64() * 1e3,
        );
    }
}

/// Whether `response` is what `job` expects; a description of the difference if not.
fn check(job: &Job, response: &Response) -> Result<(), String> {
    match &job.expected {
        Expected::Answer(expected) => {
            if response.status != 200 {
                return Err(format!("status {}", response.status));
            }
            let answer = response.json();
            let probabilities: Vec<f32> = answer["probabilities"]
                .as_array()
                .ok_or("no probabilities")?
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
                .collect();
            if answer["prediction"] != expected.prediction
                || probabilities != expected.probabilities
            {
                return Err(format!("answered {answer} instead of {expected:?}"));
            }
        }
        Expected::Error(status) => {
            if response.status != *status || response.json()["error"].as_str().is_none() {
                return Err(format!(
                    "expected a JSON error with status {status}, got {}",
                    response.status
                ));
            }
        }
    }
    Ok(())
}

/// Sends `count` requests, `jobs[i % jobs.len()]` for the `i`-th, from [`CONCURRENCY`] kept-alive
/// connections (a connection the server closes is opened again).
fn run_load(addr: SocketAddr, jobs: &[&Job], count: usize) -> Report {
    let next = AtomicUsize::new(0);
    let latencies = Mutex::new(Vec::with_capacity(count));
    let failures = Mutex::new(Vec::new());
    let start = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..CONCURRENCY {
            scope.spawn(|| {
                let mut connection = Connection::open(addr);
                let mut mine = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= count {
                        break;
                    }
                    let job = jobs[i % jobs.len()];
                    let sent = Instant::now();
                    let result =
                        connection.request("POST", job.path, Some((job.content_type, &job.body)));
                    mine.push(sent.elapsed());
                    match result {
                        Ok(response) => {
                            if let Err(e) = check(job, &response) {
                                failures.lock().unwrap().push(format!("request {i}: {e}"));
                            }
                            if response.header("connection") == Some("close") {
                                connection = Connection::open(addr);
                            }
                        }
                        Err(e) => {
                            failures.lock().unwrap().push(format!("request {i}: {e}"));
                            connection = Connection::open(addr);
                        }
                    }
                }
                latencies.lock().unwrap().extend(mine);
            });
        }
    });
    Report {
        seconds: start.elapsed().as_secs_f64(),
        latencies: latencies.into_inner().unwrap(),
        failures: failures.into_inner().unwrap(),
    }
}

fn assert_no_failures(report: &Report) {
    assert!(
        report.failures.is_empty(),
        "{} failures, the first: {:?}",
        report.failures.len(),
        &report.failures[..report.failures.len().min(5)]
    );
}

#[test]
fn twenty_thousand_predictions_64_at_a_time_are_all_answered_correctly() {
    for (name, model) in [
        ("MLP 784-128-10", trained_mlp()),
        ("CNN of experiment fast", trained_cnn()),
    ] {
        let server = Server::start(model, &[]);
        let jobs = good_jobs(model);
        let report = run_load(server.addr, &jobs.iter().collect::<Vec<_>>(), REQUESTS);
        report.print(name);
        assert_no_failures(&report);
        assert_eq!(report.latencies.len(), REQUESTS);
    }
}

#[test]
fn malformed_requests_among_good_ones_get_their_errors_and_the_server_stays_up() {
    let model = trained_mlp();
    let mut server = Server::start(model, &[]);
    // Every 21st request is malformed: 1,000 among 21,000.
    let good = good_jobs(model);
    let bad = bad_jobs();
    let mut mixed = Vec::new();
    let (mut g, mut b) = (0, 0);
    for i in 0..(REQUESTS + REQUESTS / 20) {
        if i % 21 == 20 {
            mixed.push(&bad[b % bad.len()]);
            b += 1;
        } else {
            mixed.push(&good[g % good.len()]);
            g += 1;
        }
    }
    assert_eq!(b, 1_000);
    let report = run_load(server.addr, &mixed, mixed.len());
    report.print("MLP with 1 malformed request in 21");
    assert_no_failures(&report);
    assert_eq!(report.latencies.len(), mixed.len());
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "the server is still running"
    );
    assert_eq!(request(server.addr, "GET", "/api/model", None).status, 200);
}
