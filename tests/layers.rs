//! Layers' forward passes against direct definitions.

mod common;

use common::{conv_shape, random_matrix};
use mnist_nn::init::Init;
use mnist_nn::layers::{BatchNorm1d, Conv2d, ConvShape, Layer};
use mnist_nn::seeded_rng;
use ndarray::{Array1, Array2};

/// The convolution of the definition, with nested loops over every output value and tap.
fn direct_convolution(
    s: &ConvShape,
    weight: &Array2<f32>,
    bias: &Array1<f32>,
    x: &Array2<f32>,
) -> Array2<f32> {
    let (out_h, out_w) = (s.out_height(), s.out_width());
    let mut y = Array2::zeros((x.nrows(), s.output_len()));
    for i in 0..x.nrows() {
        for o in 0..s.out_channels {
            for oy in 0..out_h {
                for ox in 0..out_w {
                    let mut sum = bias[o] as f64;
                    for c in 0..s.in_channels {
                        for ky in 0..s.kernel {
                            for kx in 0..s.kernel {
                                let iy =
                                    (oy * s.stride + ky * s.dilation) as isize - s.padding as isize;
                                let ix =
                                    (ox * s.stride + kx * s.dilation) as isize - s.padding as isize;
                                if iy < 0
                                    || ix < 0
                                    || iy >= s.height as isize
                                    || ix >= s.width as isize
                                {
                                    continue;
                                }
                                let w = weight[[o, (c * s.kernel + ky) * s.kernel + kx]];
                                let v =
                                    x[[i, (c * s.height + iy as usize) * s.width + ix as usize]];
                                sum += w as f64 * v as f64;
                            }
                        }
                    }
                    y[[i, (o * out_h + oy) * out_w + ox]] = sum as f32;
                }
            }
        }
    }
    y
}

#[test]
fn conv2d_forward_matches_the_direct_definition() {
    let mut rng = seeded_rng(30);
    // (in, out, height, width, kernel, stride, padding, dilation)
    let cases = [
        (1, 8, 28, 28, 3, 1, 2, 2), // the cnn experiment's layer
        (3, 4, 9, 7, 3, 1, 1, 1),
        (2, 3, 10, 10, 3, 2, 0, 1),
        (1, 2, 11, 9, 5, 3, 4, 2),
        (2, 2, 6, 6, 1, 1, 0, 1),
        (16, 12, 5, 5, 5, 1, 0, 1), // LeNet-5's C5: the kernel covers the image
    ];
    for sizes in cases {
        let shape = conv_shape(sizes);
        let mut conv = Conv2d::new(shape, Init::Samson, &mut rng);
        // Batches of changing size through one layer: its buffers must not carry anything over
        // (the patch matrix keeps its zero padding from when it was made).
        for rows in [3, 5, 3, 3] {
            let x = random_matrix(rows, shape.input_len(), &mut rng);
            let expected = direct_convolution(&shape, &conv.weight, &conv.bias, &x);
            let got = conv.forward(x.view(), true).to_owned();
            assert_eq!(got.dim(), expected.dim());
            let worst = (&got - &expected).iter().fold(0f32, |m, d| m.max(d.abs()));
            assert!(worst < 1e-4, "{shape:?}, {rows} rows: differs by {worst}");
        }
    }
}

#[test]
fn conv2d_output_size_follows_the_formula() {
    let shape = mnist_nn::experiments::CNN_CONV;
    assert_eq!((shape.out_height(), shape.out_width()), (28, 28));
    assert_eq!(shape.output_len(), 6272);
    let strided = ConvShape {
        stride: 2,
        padding: 0,
        dilation: 1,
        ..shape
    };
    assert_eq!(strided.out_height(), 13);
}

#[test]
fn batchnorm_normalises_while_training_and_uses_running_estimates_for_inference() {
    let mut rng = seeded_rng(31);
    let mut bn = BatchNorm1d::new(4);
    // Features with means 3 and standard deviations 2.
    let batches: Vec<Array2<f32>> = (0..50)
        .map(|_| random_matrix(64, 4, &mut rng) * 2.0 + 3.0)
        .collect();
    let y = bn.forward(batches[0].view(), true).to_owned();
    for column in y.columns() {
        assert!(
            column.mean().unwrap().abs() < 1e-5,
            "training output not centred"
        );
        assert!(
            (column.var(0.0) - 1.0).abs() < 1e-3,
            "training output not unit variance"
        );
    }
    for batch in &batches[1..] {
        bn.forward(batch.view(), true);
    }
    // running = 0.9 running + 0.1 batch: after 50 batches the estimates are near 3 and 4.
    for (&m, &v) in bn.running_mean.iter().zip(&bn.running_var) {
        assert!(
            (m - 3.0).abs() < 0.3 && (v - 4.0).abs() < 0.8,
            "running mean {m}, var {v}"
        );
    }
    // Inference uses the running estimates: one row alone gives the same output as within a batch.
    let x = random_matrix(5, 4, &mut rng);
    let all = bn.forward(x.view(), false).to_owned();
    let one = bn.forward(x.slice(ndarray::s![2..3, ..]), false).to_owned();
    assert_eq!(all.row(2), one.row(0));
    let expected = (x[[2, 1]] - bn.running_mean[1]) / (bn.running_var[1] + 1e-5).sqrt()
        * bn.gamma[1]
        + bn.beta[1];
    assert!((all[[2, 1]] - expected).abs() < 1e-5);
}

#[test]
fn batchnorm_running_estimates_follow_momentum_0_9() {
    let mut bn = BatchNorm1d::new(1);
    let batch = Array2::from_shape_vec((2, 1), vec![1.0f32, 3.0]).unwrap(); // mean 2, variance 1
    bn.forward(batch.view(), true);
    assert!((bn.running_mean[0] - 0.2).abs() < 1e-6);
    assert!((bn.running_var[0] - 1.0).abs() < 1e-6); // 0.9 · 1 + 0.1 · 1
    assert!((bn.gamma[0], bn.beta[0]) == (1.0, 0.0));
}

/// A layer with a fused ReLU against the layer followed by a separate `ReLU`: the same output
/// and, for a gradient from above, the same parameter and input gradients, to the last bit.
fn check_fused_relu(mut fused: Box<dyn Layer>, mut plain: Box<dyn Layer>, x: &Array2<f32>) {
    use mnist_nn::layers::ReLU;
    let mut rng = seeded_rng(33);
    assert!(fused.fuse_relu(), "{} must accept a ReLU", fused.describe());
    let mut relu = ReLU::new();
    let expected = relu.forward(plain.forward(x.view(), true), true).to_owned();
    assert_eq!(fused.forward(x.view(), true), expected.view());
    assert!(
        expected.iter().any(|&y| y == 0.0) && expected.iter().any(|&y| y > 0.0),
        "the check must cover units that are on and off"
    );
    let dy = common::random_matrix(expected.nrows(), expected.ncols(), &mut rng);
    let dz = relu.backward(plain.output(), dy.view()).to_owned();
    let plain_dx = plain.backward(x.view(), dz.view()).to_owned();
    assert_eq!(fused.backward(x.view(), dy.view()), plain_dx.view());
    for (f, p) in fused.params().into_iter().zip(plain.params()) {
        assert_eq!(f.grad, p.grad, "{}", f.name);
    }
}

/// A convolution with a max pooling (and maybe a ReLU after it) fused into it, against the
/// convolution followed by a `MaxPool2d` layer: the same pooled values and, for a gradient from
/// above, the same parameter and input gradients, to the last bit.
#[test]
fn a_fused_max_pooling_gives_the_same_values_and_gradients_as_the_pooling_layer() {
    use mnist_nn::layers::{MaxPool2d, PoolShape};
    let mut rng = seeded_rng(34);
    // (in channels, out channels, height, width, kernel, stride, padding, dilation)
    let shape = conv_shape((2, 3, 7, 6, 3, 1, 1, 1));
    // 2x2 windows 2 apart, and overlapping 3x3 windows 2 apart (an input can win two windows).
    for (kernel, stride) in [(2, 2), (3, 2)] {
        let pool = PoolShape {
            channels: 3,
            height: shape.out_height(),
            width: shape.out_width(),
            kernel,
            stride,
        };
        for relu in [false, true] {
            let mut fused = Conv2d::new(shape, Init::He, &mut rng);
            let mut plain = Conv2d::from_params(shape, fused.weight.clone(), fused.bias.clone());
            assert!(fused.fuse_max_pool(pool), "Conv2d must accept a pooling");
            let mut pooling = MaxPool2d::new(pool);
            if relu {
                assert!(fused.fuse_relu() && pooling.fuse_relu());
            }
            let x = random_matrix(4, shape.input_len(), &mut rng);
            let expected = pooling
                .forward(plain.forward(x.view(), true), true)
                .to_owned();
            assert_eq!(fused.forward(x.view(), true), expected.view());
            let dy = random_matrix(expected.nrows(), expected.ncols(), &mut rng);
            let dz = pooling.backward(plain.output(), dy.view()).to_owned();
            let plain_dx = plain.backward(x.view(), dz.view()).to_owned();
            assert_eq!(fused.backward(x.view(), dy.view()), plain_dx.view());
            for (f, p) in fused.params().into_iter().zip(plain.params()) {
                assert_eq!(f.grad, p.grad, "{}", f.name);
            }
        }
    }
    // A ReLU fused first would come before the pooling: the convolution refuses the pooling then.
    let mut conv = Conv2d::new(shape, Init::He, &mut rng);
    assert!(conv.fuse_relu());
    let pool = PoolShape {
        channels: 3,
        height: 7,
        width: 6,
        kernel: 2,
        stride: 2,
    };
    assert!(!conv.fuse_max_pool(pool));
}

#[test]
fn a_fused_relu_gives_the_same_values_and_gradients_as_a_relu_layer() {
    use mnist_nn::layers::Linear;
    let mut rng = seeded_rng(32);
    let linear = Linear::new(12, 9, Init::He, &mut rng);
    let (w, b) = (linear.weight.clone(), linear.bias.clone());
    check_fused_relu(
        Box::new(linear),
        Box::new(Linear::from_params(w, b)),
        &random_matrix(5, 12, &mut rng),
    );
    let shape = conv_shape((2, 3, 6, 5, 3, 1, 2, 2));
    let conv = Conv2d::new(shape, Init::He, &mut rng);
    let (w, b) = (conv.weight.clone(), conv.bias.clone());
    check_fused_relu(
        Box::new(conv),
        Box::new(Conv2d::from_params(shape, w, b)),
        &random_matrix(3, shape.input_len(), &mut rng),
    );
    use mnist_nn::layers::{MaxPool2d, PoolShape};
    let pool = PoolShape {
        channels: 3,
        height: 6,
        width: 5,
        kernel: 2,
        stride: 2,
    };
    check_fused_relu(
        Box::new(MaxPool2d::new(pool)),
        Box::new(MaxPool2d::new(pool)),
        &random_matrix(4, pool.input_len(), &mut rng),
    );
    // 40 rows (several pieces of work for the cores), 3 channels of 13 pixels (not a multiple of
    // the 8 running sums), γ and β away from 1 and 0 so that about half the units are off.
    use mnist_nn::layers::BatchNorm2d;
    let batchnorm = || {
        let mut bn = BatchNorm2d::new(3, 13);
        bn.gamma = ndarray::Array1::from_vec(vec![0.5, 1.5, -1.0]);
        bn.beta = ndarray::Array1::from_vec(vec![0.1, -0.2, 0.3]);
        Box::new(bn)
    };
    check_fused_relu(
        batchnorm(),
        batchnorm(),
        &(random_matrix(40, 39, &mut rng) * 2.0 + 1.0),
    );
}

/// Batch normalisation shares its rows between the cores, and sums each channel's planes in the
/// order of the rows: the same bits on one core as on two.
#[test]
fn batchnorm2d_gives_the_same_bits_on_one_core_and_on_two() {
    use mnist_nn::layers::BatchNorm2d;
    let mut rng = seeded_rng(35);
    let x = random_matrix(100, 4 * 25, &mut rng) * 3.0 - 1.0;
    let dy = random_matrix(100, 4 * 25, &mut rng);
    let run = |cores: usize| {
        common::on_cores(cores, || {
            let mut bn = BatchNorm2d::new(4, 25);
            assert!(bn.fuse_relu());
            let y = bn.forward(x.view(), true).to_owned();
            let dx = bn.backward(x.view(), dy.view()).to_owned();
            (
                y,
                dx,
                bn.grad_gamma.clone(),
                bn.grad_beta.clone(),
                bn.running_var.clone(),
            )
        })
    };
    assert_eq!(run(1), run(2));
}

#[test]
fn max_and_average_pooling_follow_their_definitions() {
    use mnist_nn::layers::{AvgPool2d, MaxPool2d, PoolShape};
    // One 2-channel 4x5 image; windows of 2 with stride 2 drop the last column.
    let shape = PoolShape {
        channels: 2,
        height: 4,
        width: 5,
        kernel: 2,
        stride: 2,
    };
    let x = Array2::from_shape_fn((1, 40), |(_, i)| ((i * 7) % 11) as f32);
    let pixel = |c: usize, y: usize, x_: usize| x[[0, c * 20 + y * 5 + x_]];
    let max = MaxPool2d::new(shape).forward(x.view(), false).to_owned();
    let avg = AvgPool2d::new(shape).forward(x.view(), false).to_owned();
    assert_eq!(max.dim(), (1, 2 * 2 * 2));
    for c in 0..2 {
        for oy in 0..2 {
            for ox in 0..2 {
                let window = [(0, 0), (0, 1), (1, 0), (1, 1)]
                    .map(|(dy, dx)| pixel(c, 2 * oy + dy, 2 * ox + dx));
                let out = c * 4 + oy * 2 + ox;
                assert_eq!(
                    max[[0, out]],
                    window.iter().copied().fold(f32::MIN, f32::max)
                );
                assert_eq!(avg[[0, out]], window.iter().sum::<f32>() / 4.0);
            }
        }
    }
}

#[test]
fn max_pooling_sends_the_gradient_to_the_first_of_tied_maxima() {
    use mnist_nn::layers::{MaxPool2d, PoolShape};
    let shape = PoolShape {
        channels: 1,
        height: 2,
        width: 2,
        kernel: 2,
        stride: 2,
    };
    let mut pool = MaxPool2d::new(shape);
    let x = Array2::from_shape_vec((1, 4), vec![1.0f32, 5.0, 5.0, 2.0]).unwrap();
    pool.forward(x.view(), true);
    let dy = Array2::from_elem((1, 1), 3.0f32);
    let dx = pool.backward(x.view(), dy.view()).to_owned();
    assert_eq!(dx.as_slice().unwrap(), &[0.0, 3.0, 0.0, 0.0]);
}

#[test]
fn a_nan_in_a_window_wins_as_in_pytorch() {
    use mnist_nn::layers::{MaxPool2d, PoolShape};
    // 2x2 windows 2 apart (the fast path) and 3x3 windows 1 apart (the general one): the last NaN
    // of a window is its maximum and receives its gradient.
    for (kernel, stride) in [(2, 2), (3, 1)] {
        let shape = PoolShape {
            channels: 1,
            height: 3,
            width: 3,
            kernel,
            stride,
        };
        let mut x = Array2::from_shape_vec((1, 9), (0..9).map(|v| v as f32).collect()).unwrap();
        x[[0, 1]] = f32::NAN;
        x[[0, 3]] = f32::NAN;
        let mut pool = MaxPool2d::new(shape);
        let y = pool.forward(x.view(), true).to_owned();
        assert!(y[[0, 0]].is_nan(), "{kernel}x{kernel}: {y:?}");
        let dy = Array2::ones(y.dim());
        let dx = pool.backward(x.view(), dy.view()).to_owned();
        assert_eq!(
            (dx[[0, 1]], dx[[0, 3]]),
            (0.0, 1.0),
            "{kernel}x{kernel}: {dx:?}"
        );
    }
}

#[test]
fn dropout_zeroes_a_share_p_scales_the_rest_and_is_the_identity_at_inference() {
    use mnist_nn::layers::Dropout;
    let x = Array2::from_elem((200, 100), 2.0f32);
    let mut dropout = Dropout::new(0.25);
    dropout.seed(7, 0);
    let y = dropout.forward(x.view(), true).to_owned();
    let zeroed = y.iter().filter(|&&v| v == 0.0).count() as f64 / y.len() as f64;
    assert!((zeroed - 0.25).abs() < 0.01, "zeroed {zeroed}");
    assert!(y.iter().all(|&v| v == 0.0 || (v - 2.0 / 0.75).abs() < 1e-6));
    assert_eq!(dropout.forward(x.view(), false), x.view());
    // Another seed, another mask; the same seed, the same mask.
    dropout.seed(8, 0);
    assert_ne!(dropout.forward(x.view(), true), y.view());
    dropout.seed(7, 0);
    assert_eq!(dropout.forward(x.view(), true), y.view());
}

#[test]
fn an_example_gets_the_same_dropout_mask_however_the_batch_is_split() {
    use mnist_nn::layers::Dropout;
    let mut rng = seeded_rng(35);
    let x = random_matrix(10, 30, &mut rng);
    let mut whole = Dropout::new(0.5);
    whole.seed(11, 0);
    let all = whole.forward(x.view(), true).to_owned();
    // The second shard of a split batch: rows 6..10, which start at row 6.
    let mut shard = Dropout::new(0.5);
    shard.seed(11, 6);
    let part = shard
        .forward(x.slice(ndarray::s![6..10, ..]), true)
        .to_owned();
    assert_eq!(all.slice(ndarray::s![6..10, ..]), part.view());
}

#[test]
fn batchnorm2d_normalises_each_channel_over_the_batch_and_its_pixels() {
    use mnist_nn::layers::BatchNorm2d;
    let mut rng = seeded_rng(36);
    // 2 channels of 9 pixels: channel 0 around 3 (std 2), channel 1 around -1 (std 0.5).
    let x = Array2::from_shape_fn((16, 18), |(_, i)| if i < 9 { 3.0 } else { -1.0 })
        + random_matrix(16, 18, &mut rng)
            * Array2::from_shape_fn((16, 18), |(_, i)| if i < 9 { 2.0 } else { 0.5 });
    let mut bn = BatchNorm2d::new(2, 9);
    let y = bn.forward(x.view(), true).to_owned();
    for c in 0..2 {
        let values: Vec<f64> = y
            .rows()
            .into_iter()
            .flat_map(|row| row.to_vec()[c * 9..(c + 1) * 9].to_vec())
            .map(|v| v as f64)
            .collect();
        let mean = values.iter().sum::<f64>() / values.len() as f64;
        let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / values.len() as f64;
        assert!(
            mean.abs() < 1e-5 && (var - 1.0).abs() < 1e-3,
            "channel {c}: {mean} {var}"
        );
        // PyTorch's running estimates: 0.1 of the batch's mean and of its unbiased variance.
        let raw: Vec<f64> = x
            .rows()
            .into_iter()
            .flat_map(|row| row.to_vec()[c * 9..(c + 1) * 9].to_vec())
            .map(|v| v as f64)
            .collect();
        let m = raw.len() as f64;
        let raw_mean = raw.iter().sum::<f64>() / m;
        let unbiased = raw.iter().map(|v| (v - raw_mean).powi(2)).sum::<f64>() / (m - 1.0);
        assert!((bn.running_mean[c] as f64 - 0.1 * raw_mean).abs() < 1e-5);
        assert!((bn.running_var[c] as f64 - (0.9 + 0.1 * unbiased)).abs() < 1e-4);
    }
    // Inference: (x - running mean) / sqrt(running var + ε) per channel.
    let inference = bn.forward(x.view(), false).to_owned();
    let expected = (x[[3, 12]] - bn.running_mean[1]) / (bn.running_var[1] + 1e-5).sqrt();
    assert!((inference[[3, 12]] - expected).abs() < 1e-5);
}

#[test]
fn tanh_is_tanh_and_lecuns_maps_plus_and_minus_one_to_themselves() {
    use mnist_nn::layers::{Tanh, LECUN_TANH};
    let x = Array2::from_shape_vec((1, 4), vec![-2.0f32, 0.0, 0.5, 1.0]).unwrap();
    let y = Tanh::new().forward(x.view(), false).to_owned();
    for (&y, &x) in y.iter().zip(&x) {
        let exact = (x as f64).tanh();
        assert!(
            (y as f64 - exact).abs() <= 5e-7 * exact.abs(),
            "tanh({x}) = {y}"
        );
    }
    // 1.7159·tanh(2/3) = 1.0000 (LeCun et al. 1998, appendix A).
    let (amplitude, slope) = LECUN_TANH;
    let y = Tanh::scaled(amplitude, slope)
        .forward(x.view(), false)
        .to_owned();
    assert!((y[[0, 3]] - 1.0).abs() < 1e-4 && y[[0, 1]] == 0.0, "{y}");
    assert!((y[[0, 0]] - 1.7159 * (-4.0f32 / 3.0).tanh()).abs() < 1e-6);
}

#[test]
fn partial_convolution_is_a_convolution_with_the_unconnected_kernels_zero() {
    use mnist_nn::layers::{lenet5_table, PartialConv2d};
    let mut rng = seeded_rng(40);
    let shape = conv_shape((6, 16, 14, 14, 5, 1, 0, 1)); // LeNet-5's C3
    let table = lenet5_table();
    // Table I of the paper, row by row: which C3 maps each S2 map feeds.
    let rows = [
        "X...XXX..XXXX.XX",
        "XX...XXX..XXXX.X",
        "XXX...XXX..X.XXX",
        ".XXX..XXXX..X.XX",
        "..XXX..XXXX.XX.X",
        "...XXX..XXXX.XXX",
    ];
    for (c, row) in rows.iter().enumerate() {
        for (o, mark) in row.chars().enumerate() {
            assert_eq!(table[o].contains(&c), mark == 'X', "S2 map {c}, C3 map {o}");
        }
    }
    let mut layer = PartialConv2d::new(shape, table.clone(), Init::LeCun, &mut rng);
    assert_eq!(layer.weight.dim(), (60, 25));
    let mut dense = Array2::zeros((16, shape.taps()));
    let mut connection = 0;
    for (o, inputs) in table.iter().enumerate() {
        for &c in inputs {
            dense
                .slice_mut(ndarray::s![o, c * 25..(c + 1) * 25])
                .assign(&layer.weight.row(connection));
            connection += 1;
        }
    }
    let x = random_matrix(3, shape.input_len(), &mut rng);
    let expected = direct_convolution(&shape, &dense, layer.bias(), &x);
    let got = layer.forward(x.view(), false).to_owned();
    let worst = (&got - &expected).iter().fold(0f32, |m, d| m.max(d.abs()));
    assert!(worst < 1e-4, "differs by {worst}");
}

#[test]
fn subsampling_scales_each_window_sum_and_padding_surrounds_the_image() {
    use mnist_nn::layers::{Pad2d, PadShape, PoolShape, Subsample2d};
    let shape = PoolShape {
        channels: 2,
        height: 4,
        width: 4,
        kernel: 2,
        stride: 2,
    };
    let mut subsample = Subsample2d::from_params(
        shape,
        Array1::from_vec(vec![0.5, -2.0]),
        Array1::from_vec(vec![1.0, 0.25]),
    );
    let x = Array2::from_shape_fn((1, 32), |(_, i)| i as f32);
    let y = subsample.forward(x.view(), false).to_owned();
    // Map 0's top-left window holds 0, 1, 4, 5; map 1's bottom-right 26, 27, 30, 31.
    assert_eq!(y.dim(), (1, 8));
    assert_eq!(y[[0, 0]], 0.5 * 10.0 + 1.0);
    assert_eq!(y[[0, 7]], -2.0 * 114.0 + 0.25);

    let mut pad = Pad2d::new(PadShape {
        channels: 2,
        height: 2,
        width: 3,
        padding: 1,
        value: -0.1,
    });
    let x = Array2::from_shape_fn((2, 12), |(n, i)| (10 * n + i) as f32);
    let y = pad.forward(x.view(), false).to_owned();
    assert_eq!(y.dim(), (2, 2 * 4 * 5));
    #[rustfmt::skip]
    let second_map_of_second_image = [
        -0.1, -0.1, -0.1, -0.1, -0.1,
        -0.1, 16.0, 17.0, 18.0, -0.1,
        -0.1, 19.0, 20.0, 21.0, -0.1,
        -0.1, -0.1, -0.1, -0.1, -0.1,
    ];
    assert_eq!(
        y.slice(ndarray::s![1, 20..]).to_vec(),
        second_map_of_second_image
    );
}

#[test]
fn cropping_keeps_the_middle_of_every_map_and_sends_no_gradient_to_the_border() {
    use mnist_nn::layers::{Crop2d, CropShape};
    let mut crop = Crop2d::new(CropShape {
        channels: 2,
        height: 4,
        width: 5,
        crop: 1,
    });
    let x = Array2::from_shape_fn((2, 40), |(n, i)| (100 * n + i) as f32);
    let y = crop.forward(x.view(), false).to_owned();
    assert_eq!(y.dim(), (2, 2 * 2 * 3));
    // The second map of the second image holds 120..140 in 4 rows of 5; its middle two rows
    // without their first and last pixels: 126, 127, 128 and 131, 132, 133.
    assert_eq!(
        y.slice(ndarray::s![1, 6..]).to_vec(),
        [126.0, 127.0, 128.0, 131.0, 132.0, 133.0]
    );
    let dy = Array2::from_elem((2, 12), 1.0);
    let dx = crop.backward(x.view(), dy.view()).to_owned();
    #[rustfmt::skip]
    let first_map = [
        0.0, 0.0, 0.0, 0.0, 0.0,
        0.0, 1.0, 1.0, 1.0, 0.0,
        0.0, 1.0, 1.0, 1.0, 0.0,
        0.0, 0.0, 0.0, 0.0, 0.0,
    ];
    assert_eq!(dx.slice(ndarray::s![0, ..20]).to_vec(), first_map);
}

/// A batch larger than a group of images (128) sums its gradient group by group, the groups on
/// several cores when there are: the same bits on one core as on two, and the sum of the images'
/// own gradients.
#[test]
fn a_convolutions_gradient_over_groups_of_images_is_the_same_on_any_number_of_cores() {
    use mnist_nn::gemm::with_threads;
    use mnist_nn::layers::PoolShape;
    let mut rng = seeded_rng(35);
    let shape = conv_shape((2, 3, 6, 6, 3, 1, 0, 1));
    let pool = PoolShape {
        channels: 3,
        height: 4,
        width: 4,
        kernel: 2,
        stride: 2,
    };
    let conv = Conv2d::new(shape, Init::He, &mut rng);
    let (weight, bias) = (conv.weight.clone(), conv.bias.clone());
    let x = random_matrix(300, shape.input_len(), &mut rng);
    let dy = random_matrix(300, pool.output_len(), &mut rng);
    let gradients = |threads: usize, rows: std::ops::Range<usize>| {
        with_threads(threads, || {
            let mut conv = Conv2d::from_params(shape, weight.clone(), bias.clone());
            assert!(conv.fuse_max_pool(pool) && conv.fuse_relu());
            let (x, dy) = (
                x.slice(ndarray::s![rows.clone(), ..]),
                dy.slice(ndarray::s![rows, ..]),
            );
            conv.forward(x, true);
            let dx = conv.backward(x, dy).to_owned();
            (conv.grad_weight.clone(), conv.grad_bias.clone(), dx)
        })
    };
    let (one_core, two_cores) = (gradients(1, 0..300), gradients(2, 0..300));
    assert_eq!(one_core, two_cores);
    let mut summed = gradients(1, 0..1);
    for i in 1..300 {
        let (w, b, _) = gradients(1, i..i + 1);
        summed.0 += &w;
        summed.1 += &b;
    }
    let worst = (&one_core.0 - &summed.0)
        .iter()
        .chain((&one_core.1 - &summed.1).iter())
        .fold(0f32, |m, d| m.max(d.abs()));
    assert!(worst < 1e-3, "differs from the per-image sum by {worst}");
    assert_eq!(one_core.2.row(299), gradients(1, 299..300).2.row(0));
}

/// The largest difference between two arrays, relative to the largest value of `expected`.
fn relative_difference(got: ndarray::ArrayView2<f32>, expected: ndarray::ArrayView2<f32>) -> f32 {
    assert_eq!(got.dim(), expected.dim());
    let scale = expected.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
    let worst = (&got - &expected).iter().fold(0f32, |m, d| m.max(d.abs()));
    worst / scale
}

/// Winograd's F(2x2, 3x3) against the im2col convolution of the same weights (see
/// [`assert_matches_im2col`]), with padding 0-2, odd and even outputs (a block overhanging the
/// edge) and images of more tiles than one group of products takes.
#[test]
fn winograd_convolution_equals_the_im2col_convolution_up_to_rounding() {
    let mut rng = seeded_rng(36);
    // (in, out, height, width, kernel, stride, padding, dilation)
    let cases = [
        (24, 32, 12, 12, 3, 1, 0, 1), // the fast recipe's second layer
        (3, 5, 7, 6, 3, 1, 1, 1),
        (2, 3, 9, 8, 3, 1, 0, 1),
        (1, 4, 5, 5, 3, 1, 2, 1),
        (2, 3, 14, 14, 3, 1, 0, 1), // 36 tiles an image: two groups of products
        (2, 3, 13, 12, 3, 1, 1, 1), // 42
    ];
    for sizes in cases {
        assert_matches_im2col(conv_shape(sizes), |c| c.with_winograd().unwrap(), &mut rng);
    }
}

/// The direct algorithm against the im2col convolution of the same weights (see
/// [`assert_matches_im2col`]), with kernels of 1 to 7 taps, padding up to one less than the
/// kernel, an odd number of output channels, outputs whose width is and is not a whole number of
/// blocks (6 columns) and whose height is odd, and even outputs, pooled inside the blocks (one
/// and several input channels, with and without padding, kernels of 1, 3, 4, 5 and 7 taps).
#[test]
fn direct_convolution_equals_the_im2col_convolution_up_to_rounding() {
    let mut rng = seeded_rng(37);
    // (in, out, height, width, kernel, stride, padding, dilation)
    let cases = [
        (1, 24, 28, 28, 5, 1, 0, 1), // the fast recipe's first layer
        (3, 5, 7, 6, 3, 1, 1, 1),
        (2, 3, 9, 9, 3, 1, 0, 1),
        (1, 4, 5, 5, 3, 1, 2, 1),
        (2, 2, 10, 11, 7, 1, 3, 1),
        (1, 3, 6, 6, 1, 1, 0, 1),
        (2, 3, 8, 10, 4, 1, 1, 1),
        (2, 3, 8, 10, 3, 1, 1, 1), // pooled in blocks: several channels, padding
        (3, 4, 9, 9, 4, 1, 2, 1),  // the same, an even kernel
        (1, 5, 12, 10, 7, 1, 3, 1), // the same, the widest kernel
    ];
    for sizes in cases {
        assert_matches_im2col(conv_shape(sizes), |c| c.with_direct().unwrap(), &mut rng);
    }
}

/// A convolution computed by another algorithm (`with_algorithm`) against the im2col convolution
/// of the same weights: the same outputs, weight, bias and input gradients up to rounding, with
/// batches of several chunks of images, a fused 2x2 pooling with and without a ReLU (pooled
/// inside the algorithm when the output's height and width are even, by the general path
/// otherwise), and the work on one core or shared between two.
fn assert_matches_im2col(
    shape: ConvShape,
    with_algorithm: impl Fn(Conv2d) -> Conv2d,
    rng: &mut (impl rand::Rng + Send),
) {
    use mnist_nn::layers::PoolShape;
    // What is fused: nothing, a 2x2 pooling, or the pooling and a ReLU after it.
    for (fused, rows, cores) in [
        ("nothing", 3, 1),
        ("pooling", 20, 1),
        ("pooling and relu", 37, 1),
        ("pooling and relu", 37, 2),
        ("nothing", 20, 2),
    ] {
        let mut plain = Conv2d::new(shape, Init::He, rng);
        let mut other = with_algorithm(Conv2d::from_params(
            shape,
            plain.weight.clone(),
            plain.bias.clone(),
        ));
        let pool = PoolShape {
            channels: shape.out_channels,
            height: shape.out_height(),
            width: shape.out_width(),
            kernel: 2,
            stride: 2,
        };
        if fused != "nothing" {
            assert!(plain.fuse_max_pool(pool) && other.fuse_max_pool(pool));
        }
        if fused == "pooling and relu" {
            assert!(plain.fuse_relu() && other.fuse_relu());
        }
        let x = random_matrix(rows, shape.input_len(), rng);
        common::on_cores(cores, || {
            let expected = plain.forward(x.view(), true).to_owned();
            let got = other.forward(x.view(), true).to_owned();
            let case = format!("{shape:?}, {rows} images, fused {fused}, {cores} cores");
            assert!(
                relative_difference(got.view(), expected.view()) < 1e-5,
                "{case}"
            );
            let dy = random_matrix(rows, expected.ncols(), rng);
            let expected_dx = plain.backward(x.view(), dy.view()).to_owned();
            let dx = other.backward(x.view(), dy.view()).to_owned();
            assert!(
                relative_difference(dx.view(), expected_dx.view()) < 1e-5,
                "{case}"
            );
            for (w, p) in other.params().into_iter().zip(plain.params()) {
                let (w, p) = (ndarray::aview1(w.grad), ndarray::aview1(p.grad));
                let shape = (1, p.len());
                let (w, p) = (
                    w.into_shape_with_order(shape),
                    p.into_shape_with_order(shape),
                );
                assert!(relative_difference(w.unwrap(), p.unwrap()) < 1e-5, "{case}");
            }
        });
    }
}
