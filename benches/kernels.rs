//! The hot kernels of the three `mnist-nn bench` workloads, one shard's worth each (a batch of 128
//! split between two cores is 64 rows per core; a full batch of 60,000 is 30,000), run on one
//! core as the data-parallel training step runs them: `cargo bench`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use mnist_nn::experiments::CNN_CONV;
use mnist_nn::gemm::single_threaded;
use mnist_nn::init::Init;
use mnist_nn::layers::{Conv2d, Layer, Linear};
use mnist_nn::loss::SoftmaxCrossEntropy;
use mnist_nn::seeded_rng;
use ndarray::Array2;
use rand::Rng;

fn random(rows: usize, cols: usize, rng: &mut impl Rng) -> Array2<f32> {
    Array2::from_shape_simple_fn((rows, cols), || rng.random_range(-1.0..1.0))
}

/// `(name, rows, inputs, outputs, first layer)`: the Linear layers of the workloads.
const LINEAR: [(&str, usize, usize, usize, bool); 5] = [
    ("minibatch 784-256", 64, 784, 256, true),
    ("minibatch 256-128", 64, 256, 128, false),
    ("cnn 6272-128", 64, 6272, 128, false),
    ("fullbatch 784-300", 30_000, 784, 300, true),
    ("fullbatch 300-100", 30_000, 300, 100, false),
];

fn linear(c: &mut Criterion) {
    let mut rng = seeded_rng(1);
    let mut group = c.benchmark_group("linear");
    group.sample_size(10);
    for (name, rows, inputs, outputs, first) in LINEAR {
        let mut layer = Linear::new(inputs, outputs, Init::He, &mut rng);
        layer.set_input_grad_needed(!first);
        let x = random(rows, inputs, &mut rng);
        let dy = random(rows, outputs, &mut rng);
        let flops = 2 * (rows * inputs * outputs) as u64;
        group.throughput(Throughput::Elements(flops));
        group.bench_function(BenchmarkId::new("forward", name), |b| {
            b.iter(|| single_threaded(|| layer.forward(x.view(), true).sum()))
        });
        group.throughput(Throughput::Elements(if first { flops } else { 2 * flops }));
        group.bench_function(BenchmarkId::new("backward", name), |b| {
            b.iter(|| single_threaded(|| layer.backward(x.view(), dy.view()).len()))
        });
    }
    group.finish();
}

fn conv2d(c: &mut Criterion) {
    let mut rng = seeded_rng(2);
    let shape = CNN_CONV;
    let mut group = c.benchmark_group("conv2d");
    group.sample_size(20);
    let rows = 64;
    let x = random(rows, shape.input_len(), &mut rng);
    let dy = random(rows, shape.output_len(), &mut rng);
    // The cnn's first layer (no input gradient) and the same layer inside a network (with it).
    for (name, first) in [("cnn 1->8 first", true), ("cnn 1->8 inner", false)] {
        let mut conv = Conv2d::new(shape, Init::He, &mut rng);
        conv.set_input_grad_needed(!first);
        group.throughput(Throughput::Elements(rows as u64));
        group.bench_function(BenchmarkId::new("forward", name), |b| {
            b.iter(|| single_threaded(|| conv.forward(x.view(), true).sum()))
        });
        group.bench_function(BenchmarkId::new("backward", name), |b| {
            b.iter(|| single_threaded(|| conv.backward(x.view(), dy.view()).len()))
        });
    }
    group.finish();
}

fn loss(c: &mut Criterion) {
    let mut rng = seeded_rng(3);
    let mut group = c.benchmark_group("softmax cross-entropy");
    for rows in [64, 30_000] {
        let logits = random(rows, 10, &mut rng) * 5.0;
        let labels: Vec<u8> = (0..rows).map(|_| rng.random_range(0..10)).collect();
        let mut loss = SoftmaxCrossEntropy::new();
        group.throughput(Throughput::Elements(rows as u64));
        group.bench_function(BenchmarkId::new("loss and gradient", rows), |b| {
            b.iter(|| loss.loss_and_grad(logits.view(), &labels).0.loss)
        });
    }
    group.finish();
}

criterion_group!(kernels, linear, conv2d, loss);
criterion_main!(kernels);
