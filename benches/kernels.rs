//! The hot kernels of the three `mnist-nn bench` workloads, one shard's worth each (a batch of 128
//! split between two cores is 64 rows per core; a full batch of 60,000 is 30,000), run on one
//! core as the data-parallel training step runs them: `cargo bench`. The `layers` group times the
//! training toolkit's layers at the shapes `scripts/layer_bench_torch.py` times PyTorch's (a batch
//! of 256 images of 24 maps of 24x24, the first layer of the fast MNIST recipe), on one core.

use criterion::measurement::WallTime;
use criterion::{
    criterion_group, criterion_main, BenchmarkGroup, BenchmarkId, Criterion, Throughput,
};
use mnist_nn::experiments::CNN_CONV;
use mnist_nn::gemm::single_threaded;
use mnist_nn::init::Init;
use mnist_nn::layers::{
    AvgPool2d, BatchNorm2d, Conv2d, ConvShape, Dropout, Layer, Linear, MaxPool2d, PoolShape, Tanh,
};
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
        bench_passes(&mut group, name, &mut conv, &x, &dy);
    }
    // The fast recipe's second layer (24 -> 32 maps, 3x3, 12x12, its pooling and ReLU fused), on
    // one core's shard of 128 images, by im2col and by Winograd's F(2x2, 3x3).
    let shape = fast_second_layer();
    let pool = pool_2x2(&shape);
    let rows = 128;
    let x = random(rows, shape.input_len(), &mut rng);
    let dy = random(rows, pool.output_len(), &mut rng);
    for winograd in [false, true] {
        let mut conv = Conv2d::new(shape, Init::He, &mut rng);
        if winograd {
            conv = conv.with_winograd().expect("a 3x3 kernel");
        }
        assert!(conv.fuse_max_pool(pool) && conv.fuse_relu());
        let name = if winograd {
            "fast 24->32 winograd"
        } else {
            "fast 24->32 im2col"
        };
        bench_passes(&mut group, name, &mut conv, &x, &dy);
    }
    // The fastest recipe's second layer (8 -> 16 maps) by Winograd's, on one core's shard of its
    // batches of 128: products of depth 8 and 16.
    let shape = ConvShape {
        in_channels: 8,
        out_channels: 16,
        ..fast_second_layer()
    };
    let pool = pool_2x2(&shape);
    let x = random(64, shape.input_len(), &mut rng);
    let dy = random(64, pool.output_len(), &mut rng);
    let mut conv = Conv2d::new(shape, Init::He, &mut rng)
        .with_winograd()
        .expect("a 3x3 kernel");
    assert!(conv.fuse_max_pool(pool) && conv.fuse_relu());
    bench_passes(&mut group, "fastest 8->16 winograd", &mut conv, &x, &dy);
    // The fast recipe's first layer (1 -> 24 maps, 5x5, 28x28, its pooling and ReLU fused, no
    // input gradient) on one core's shard.
    let shape = fast_first_layer();
    let pool = pool_2x2(&shape);
    let x = random(rows, shape.input_len(), &mut rng);
    let dy = random(rows, pool.output_len(), &mut rng);
    for direct in [false, true] {
        let mut conv = Conv2d::new(shape, Init::He, &mut rng);
        if direct {
            conv = conv.with_direct().expect("stride 1");
        }
        conv.set_input_grad_needed(false);
        assert!(conv.fuse_max_pool(pool) && conv.fuse_relu());
        let name = if direct {
            "fast 1->24 first direct"
        } else {
            "fast 1->24 first im2col"
        };
        bench_passes(&mut group, name, &mut conv, &x, &dy);
    }
    group.finish();
}

/// Times a convolution's forward and backward passes on one core, `x` in and `dy` from above.
/// The backward pass reads what a forward pass left (the pooling's winners), so one runs first
/// (the backward pass can then be timed alone).
fn bench_passes(
    group: &mut BenchmarkGroup<WallTime>,
    name: &str,
    conv: &mut Conv2d,
    x: &Array2<f32>,
    dy: &Array2<f32>,
) {
    group.throughput(Throughput::Elements(x.nrows() as u64));
    group.bench_function(BenchmarkId::new("forward", name), |b| {
        b.iter(|| single_threaded(|| conv.forward(x.view(), true).sum()))
    });
    conv.forward(x.view(), true);
    group.bench_function(BenchmarkId::new("backward", name), |b| {
        b.iter(|| single_threaded(|| conv.backward(x.view(), dy.view()).len()))
    });
}

/// The 2x2 max pooling, 2 apart, after a convolution of this shape.
fn pool_2x2(shape: &ConvShape) -> PoolShape {
    PoolShape {
        channels: shape.out_channels,
        height: shape.out_height(),
        width: shape.out_width(),
        kernel: 2,
        stride: 2,
    }
}

/// The fast recipe's `conv 24 5` on the 28x28 digits.
fn fast_first_layer() -> ConvShape {
    ConvShape {
        in_channels: 1,
        out_channels: 24,
        height: 28,
        width: 28,
        kernel: 5,
        stride: 1,
        padding: 0,
        dilation: 1,
    }
}

/// The fast recipe's `conv 32 3` on the 24 pooled 12x12 maps of its first layer.
fn fast_second_layer() -> ConvShape {
    ConvShape {
        in_channels: 24,
        out_channels: 32,
        height: 12,
        width: 12,
        kernel: 3,
        stride: 1,
        padding: 0,
        dilation: 1,
    }
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

/// Batch, maps and side of the images the `layers` group works on.
const IMAGES: (usize, usize, usize) = (256, 24, 24);

fn layers(c: &mut Criterion) {
    let mut rng = seeded_rng(4);
    let (n, channels, side) = IMAGES;
    let pool = PoolShape {
        channels,
        height: side,
        width: side,
        kernel: 2,
        stride: 2,
    };
    let x = random(n, pool.input_len(), &mut rng);
    let pooled_dy = random(n, pool.output_len(), &mut rng);
    let dy = random(n, pool.input_len(), &mut rng);
    let mut group = c.benchmark_group("layers 256x24x24x24");
    group.sample_size(20);
    let mut dropout = Dropout::new(0.5);
    dropout.seed(1, 0);
    let cases: Vec<(&str, Box<dyn Layer>, &Array2<f32>)> = vec![
        ("maxpool 2", Box::new(MaxPool2d::new(pool)), &pooled_dy),
        ("avgpool 2", Box::new(AvgPool2d::new(pool)), &pooled_dy),
        (
            "batchnorm2d",
            Box::new(BatchNorm2d::new(channels, side * side)),
            &dy,
        ),
        ("dropout 0.5", Box::new(dropout), &dy),
        ("tanh", Box::new(Tanh::new()), &dy),
    ];
    for (name, mut layer, dy) in cases {
        group.bench_function(BenchmarkId::new("forward", name), |b| {
            b.iter(|| single_threaded(|| layer.forward(x.view(), true).len()))
        });
        group.bench_function(BenchmarkId::new("backward", name), |b| {
            b.iter(|| single_threaded(|| layer.backward(x.view(), dy.view()).len()))
        });
    }
    group.finish();
}

criterion_group!(kernels, linear, conv2d, loss, layers);
criterion_main!(kernels);
