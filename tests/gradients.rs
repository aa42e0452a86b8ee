//! Every backward pass against finite differences.

mod common;

use common::{conv_shape, random_matrix};
use mnist_nn::gradcheck::{check_layer, check_network, compare, Tolerance};
use mnist_nn::init::Init;
use mnist_nn::layers::{Layer, Linear, ReLU};
use mnist_nn::loss::SoftmaxCrossEntropy;
use mnist_nn::network::Network;
use mnist_nn::seeded_rng;
use mnist_nn::SeededRng;
use ndarray::Array2;

/// Checks `layer`'s backward pass on `input` against finite differences at the default tolerance,
/// naming `what` was checked if any gradient differs.
fn assert_matches_finite_differences(
    layer: &mut dyn Layer,
    input: &Array2<f32>,
    rng: &mut SeededRng,
    what: impl AsRef<str>,
) {
    let mismatches = check_layer(layer, input.view(), Tolerance::default(), rng);
    assert!(mismatches.is_empty(), "{}: {mismatches:?}", what.as_ref());
}

#[test]
fn linear_backward_matches_finite_differences() {
    let mut rng = seeded_rng(10);
    for init in [Init::He, Init::Samson] {
        let mut layer = Linear::new(7, 5, init, &mut rng);
        let input = random_matrix(4, 7, &mut rng);
        assert_matches_finite_differences(&mut layer, &input, &mut rng, format!("{init}"));
    }
}

#[test]
fn relu_backward_matches_finite_differences() {
    let mut rng = seeded_rng(11);
    // Keep inputs away from the kink at 0, where the derivative does not exist.
    let input = random_matrix(5, 6, &mut rng).mapv(|x| if x.abs() < 0.1 { x + 0.3 } else { x });
    let mut relu = ReLU::new();
    assert_matches_finite_differences(&mut relu, &input, &mut rng, "relu");
    assert!(
        input.iter().any(|&x| x < 0.0),
        "the check must cover units that are off"
    );
}

#[test]
fn loss_gradient_matches_finite_differences() {
    check_loss_gradient(SoftmaxCrossEntropy::new());
}

#[test]
fn smoothed_loss_gradient_matches_finite_differences() {
    check_loss_gradient(SoftmaxCrossEntropy::with_label_smoothing(0.2));
}

fn check_loss_gradient(mut loss: SoftmaxCrossEntropy) {
    let mut rng = seeded_rng(12);
    let logits = random_matrix(6, 10, &mut rng) * 3.0;
    let labels = [0u8, 3, 9, 3, 5, 7];
    let analytic: Vec<f64> = loss
        .loss_and_grad(logits.view(), &labels)
        .1
        .iter()
        .map(|&g| g as f64)
        .collect();
    let step = 1e-2f32;
    let mut numeric = Vec::new();
    for i in 0..logits.len() {
        let mut at = |delta: f32| {
            let mut z = logits.clone();
            z.as_slice_mut().unwrap()[i] += delta;
            loss.loss_and_grad(z.view(), &labels).0.loss
        };
        numeric.push((at(step) - at(-step)) / (2.0 * step as f64));
    }
    let mismatches = compare("logits", &analytic, &numeric, Tolerance::default());
    assert!(mismatches.is_empty(), "{mismatches:?}");
}

#[test]
fn two_hidden_layer_network_matches_finite_differences() {
    let mut rng = seeded_rng(13);
    let mut network = Network::mlp(&[8, 6, 5, 4], Init::He, &mut rng);
    let input = random_matrix(7, 8, &mut rng);
    let labels = [0u8, 1, 2, 3, 1, 2, 0];
    let tolerance = Tolerance {
        relative: 2e-2,
        ..Tolerance::default()
    };
    let mismatches = check_network(&mut network, input.view(), &labels, tolerance);
    assert!(mismatches.is_empty(), "{mismatches:?}");
}

/// The checker itself must be able to fail: a layer whose backward pass is wrong by a factor is caught.
#[test]
fn a_wrong_backward_pass_is_caught() {
    struct WrongLinear(Linear, Array2<f32>);
    impl Layer for WrongLinear {
        fn forward(
            &mut self,
            input: ndarray::ArrayView2<f32>,
            train: bool,
        ) -> ndarray::ArrayView2<'_, f32> {
            self.0.forward(input, train)
        }
        fn backward(
            &mut self,
            input: ndarray::ArrayView2<f32>,
            grad_output: ndarray::ArrayView2<f32>,
        ) -> ndarray::ArrayView2<'_, f32> {
            // Forgets nothing but scales dX by 1.1: a 10% error.
            self.1 = self.0.backward(input, grad_output).mapv(|g| g * 1.1);
            self.1.view()
        }
        fn output(&self) -> ndarray::ArrayView2<'_, f32> {
            self.0.output()
        }
        fn grad_input(&self) -> ndarray::ArrayView2<'_, f32> {
            self.1.view()
        }
        fn describe(&self) -> String {
            "WrongLinear".into()
        }
        fn spec(&self) -> mnist_nn::layers::LayerSpec {
            self.0.spec()
        }
    }
    let mut rng = seeded_rng(14);
    let mut layer = WrongLinear(Linear::new(4, 3, Init::He, &mut rng), Array2::zeros((0, 0)));
    let input = random_matrix(3, 4, &mut rng);
    let mismatches = check_layer(&mut layer, input.view(), Tolerance::default(), &mut rng);
    assert!(
        mismatches.iter().any(|m| m.tensor == "input"),
        "a 10% error went unnoticed"
    );
}

#[test]
fn batchnorm_backward_matches_finite_differences_in_training_mode() {
    use mnist_nn::layers::BatchNorm1d;
    let mut rng = seeded_rng(20);
    let mut bn = BatchNorm1d::new(5);
    // Non-trivial scale and shift, so dγ and dβ are not checked at their starting values only.
    bn.gamma = ndarray::Array1::from_vec(vec![0.5, 1.5, -1.0, 2.0, 1.0]);
    bn.beta = ndarray::Array1::from_vec(vec![0.1, -0.2, 0.3, 0.0, 1.0]);
    let input = random_matrix(6, 5, &mut rng) * 2.0 + 1.0;
    let tolerance = Tolerance {
        relative: 2e-2,
        ..Tolerance::default()
    };
    let mismatches = check_layer(&mut bn, input.view(), tolerance, &mut rng);
    assert!(mismatches.is_empty(), "{mismatches:?}");
}

#[test]
fn conv2d_backward_matches_finite_differences() {
    use mnist_nn::layers::Conv2d;
    let mut rng = seeded_rng(21);
    // (in, out, height, width, kernel, stride, padding, dilation)
    let cases = [
        (1, 2, 5, 5, 3, 1, 0, 1),
        (2, 3, 6, 5, 3, 1, 1, 1),
        (1, 2, 7, 7, 3, 2, 1, 1),
        (2, 2, 7, 6, 3, 1, 2, 2),
        (3, 1, 6, 6, 2, 2, 0, 1),
        (1, 3, 8, 8, 3, 2, 3, 3),
        (3, 4, 3, 3, 3, 1, 0, 1), // the kernel covers the image: computed as a linear layer
    ];
    for sizes in cases {
        let shape = conv_shape(sizes);
        let mut conv = Conv2d::new(shape, Init::Samson, &mut rng);
        let input = random_matrix(2, shape.input_len(), &mut rng);
        assert_matches_finite_differences(&mut conv, &input, &mut rng, format!("{shape:?}"));
    }
}

#[test]
fn direct_convolution_backward_matches_finite_differences() {
    use mnist_nn::layers::Conv2d;
    let mut rng = seeded_rng(26);
    // (in, out, height, width, kernel, stride, padding, dilation): one and several input channels,
    // an odd number of filters, padding, a width that is not a whole number of blocks
    for sizes in [
        (1, 3, 6, 6, 5, 1, 0, 1),
        (2, 3, 5, 7, 3, 1, 1, 1),
        (2, 2, 4, 5, 2, 1, 1, 1),
    ] {
        let shape = conv_shape(sizes);
        let mut conv = Conv2d::new(shape, Init::Samson, &mut rng)
            .with_direct()
            .unwrap();
        let input = random_matrix(2, shape.input_len(), &mut rng);
        assert_matches_finite_differences(&mut conv, &input, &mut rng, format!("{shape:?}"));
    }
    // Only stride 1, dilation 1, kernels up to 7 and a padding smaller than the kernel.
    for (sizes, why) in [
        ((1, 2, 6, 6, 3, 2, 0, 1), "stride 1 and dilation 1"),
        ((1, 2, 9, 9, 3, 1, 0, 2), "stride 1 and dilation 1"),
        ((1, 2, 9, 9, 8, 1, 0, 1), "kernels up to 7x7"),
        ((1, 2, 6, 6, 3, 1, 3, 1), "padding smaller than the kernel"),
    ] {
        let conv = Conv2d::new(conv_shape(sizes), Init::He, &mut rng);
        let error = conv.with_direct().err().expect("refused");
        assert!(error.contains(why), "{error}");
    }
}

#[test]
fn winograd_convolution_backward_matches_finite_differences() {
    use mnist_nn::layers::Conv2d;
    let mut rng = seeded_rng(25);
    // (in, out, height, width, kernel, stride, padding, dilation): even and odd outputs, padding
    for sizes in [
        (2, 3, 6, 6, 3, 1, 0, 1),
        (1, 2, 5, 4, 3, 1, 1, 1),
        (2, 2, 4, 5, 3, 1, 2, 1),
    ] {
        let shape = conv_shape(sizes);
        let mut conv = Conv2d::new(shape, Init::Samson, &mut rng)
            .with_winograd()
            .unwrap();
        let input = random_matrix(2, shape.input_len(), &mut rng);
        assert_matches_finite_differences(&mut conv, &input, &mut rng, format!("{shape:?}"));
    }
    // Only 3x3 kernels with stride 1 and dilation 1 have this algorithm.
    for sizes in [
        (1, 2, 6, 6, 5, 1, 0, 1),
        (1, 2, 6, 6, 3, 2, 0, 1),
        (1, 2, 6, 6, 3, 1, 2, 2),
    ] {
        let conv = Conv2d::new(conv_shape(sizes), Init::He, &mut rng);
        let error = conv.with_winograd().err().expect("refused");
        assert!(
            error.contains("3x3 kernel with stride 1 and dilation 1"),
            "{error}"
        );
    }
}

#[test]
fn flatten_passes_values_and_gradients_through() {
    use mnist_nn::layers::Flatten;
    let mut rng = seeded_rng(22);
    let input = random_matrix(3, 8, &mut rng);
    let mut flatten = Flatten::new(8);
    assert_eq!(flatten.forward(input.view(), true), input.view());
    assert_matches_finite_differences(&mut flatten, &input, &mut rng, "flatten");
}

#[test]
fn network_with_convolution_and_batchnorm_matches_finite_differences() {
    use mnist_nn::layers::{BatchNorm1d, Conv2d, ConvShape, Flatten};
    let mut rng = seeded_rng(23);
    let shape = ConvShape {
        in_channels: 1,
        out_channels: 2,
        height: 5,
        width: 5,
        kernel: 3,
        stride: 1,
        padding: 2,
        dilation: 2,
    };
    let layers: Vec<Box<dyn Layer>> = vec![
        // No ReLU here: with 6 examples, perturbing a weight flips units across its kink, and batch
        // normalisation of the mostly-zero columns amplifies the flip. ReLU is checked on its own.
        Box::new(Conv2d::new(shape, Init::He, &mut rng)),
        Box::new(Flatten::new(shape.output_len())),
        Box::new(BatchNorm1d::new(shape.output_len())),
        Box::new(Linear::new(shape.output_len(), 3, Init::He, &mut rng)),
    ];
    let mut network = Network::new(layers);
    let input = random_matrix(6, 25, &mut rng);
    let labels = [0u8, 1, 2, 1, 0, 2];
    let tolerance = Tolerance {
        relative: 3e-2,
        ..Tolerance::default()
    };
    let mismatches = check_network(&mut network, input.view(), &labels, tolerance);
    assert!(mismatches.is_empty(), "{mismatches:?}");
}

/// A layer with a ReLU fused into it, checked as one function `max(0, layer(x))`. Layer and
/// input are drawn again until no unit sits within 0.05 of the kink (where a finite difference
/// would straddle it) and some units are off.
fn check_fused(draw: impl Fn(&mut SeededRng) -> (Box<dyn Layer>, Array2<f32>)) {
    let mut rng = seeded_rng(24);
    for _ in 0..100 {
        let (mut layer, input) = draw(&mut rng);
        let pre_activation = layer.forward(input.view(), true);
        if pre_activation.iter().any(|z| z.abs() < 0.05) || pre_activation.iter().all(|&z| z > 0.0)
        {
            continue;
        }
        assert!(layer.fuse_relu(), "{} must accept a ReLU", layer.describe());
        let mismatches = check_layer(layer.as_mut(), input.view(), Tolerance::default(), &mut rng);
        assert!(
            mismatches.is_empty(),
            "{}: {mismatches:?}",
            layer.describe()
        );
        return;
    }
    panic!("no draw kept every unit away from the kink");
}

#[test]
fn fused_relu_backward_matches_finite_differences() {
    use mnist_nn::layers::Conv2d;
    check_fused(|rng| {
        let linear = Linear::new(6, 4, Init::He, rng);
        (Box::new(linear), random_matrix(3, 6, rng))
    });
    let shape = conv_shape((1, 2, 4, 4, 3, 1, 1, 1));
    check_fused(|rng| {
        let conv = Conv2d::new(shape, Init::He, rng);
        (Box::new(conv), random_matrix(2, 16, rng))
    });
    // Max pooling, on a ladder 0.2 apart around 0: no maximum changes hands within a step.
    use mnist_nn::layers::{MaxPool2d, PoolShape};
    let pool = PoolShape {
        channels: 2,
        height: 4,
        width: 4,
        kernel: 2,
        stride: 2,
    };
    check_fused(|rng| {
        let ladder = distinct_values(3, 32, rng).mapv(|v| 2.0 * v - 5.5);
        (Box::new(MaxPool2d::new(pool)), ladder)
    });
    use mnist_nn::layers::BatchNorm2d;
    check_fused(|rng| {
        let mut bn = BatchNorm2d::new(2, 5);
        bn.gamma = ndarray::Array1::from_vec(vec![0.7, -1.3]);
        bn.beta = ndarray::Array1::from_vec(vec![0.2, -0.1]);
        (Box::new(bn), random_matrix(4, 10, rng) * 2.0 + 1.0)
    });
}

#[test]
fn tanh_backward_matches_finite_differences() {
    use mnist_nn::layers::Tanh;
    let mut rng = seeded_rng(30);
    let input = random_matrix(4, 6, &mut rng) * 1.5;
    assert_matches_finite_differences(&mut Tanh::new(), &input, &mut rng, "tanh");
}

#[test]
fn dropout_backward_matches_finite_differences_for_a_fixed_mask() {
    use mnist_nn::layers::Dropout;
    let mut rng = seeded_rng(31);
    let input = random_matrix(5, 8, &mut rng);
    let mut dropout = Dropout::new(0.4);
    // The seed fixes the mask, so every forward pass of the check draws the same one.
    dropout.seed(1234, 0);
    let output = dropout.forward(input.view(), true).to_owned();
    assert!(output.iter().any(|&y| y == 0.0) && output.iter().any(|&y| y != 0.0));
    assert_matches_finite_differences(&mut dropout, &input, &mut rng, "dropout");
}

/// A `(rows, cols)` matrix whose values are a shuffled ladder 0.1 apart: no two values of a pooling
/// window come within a finite-difference step of each other, so no maximum changes hands.
fn distinct_values(rows: usize, cols: usize, rng: &mut SeededRng) -> Array2<f32> {
    use rand::seq::SliceRandom;
    let mut values: Vec<f32> = (0..rows * cols).map(|i| i as f32 * 0.1 - 2.0).collect();
    values.shuffle(rng);
    Array2::from_shape_vec((rows, cols), values).unwrap()
}

#[test]
fn pooling_backward_matches_finite_differences() {
    use mnist_nn::layers::{AvgPool2d, MaxPool2d, PoolShape};
    let mut rng = seeded_rng(32);
    // (channels, height, width, kernel, stride): square and overlapping windows, dropped edges.
    for (channels, height, width, kernel, stride) in [
        (1, 4, 4, 2, 2),
        (2, 5, 6, 2, 2),
        (2, 5, 5, 3, 1),
        (3, 7, 6, 3, 2),
    ] {
        let shape = PoolShape {
            channels,
            height,
            width,
            kernel,
            stride,
        };
        let input = distinct_values(3, shape.input_len(), &mut rng);
        assert_matches_finite_differences(
            &mut MaxPool2d::new(shape),
            &input,
            &mut rng,
            format!("max {shape:?}"),
        );
        assert_matches_finite_differences(
            &mut AvgPool2d::new(shape),
            &input,
            &mut rng,
            format!("avg {shape:?}"),
        );
    }
}

#[test]
fn batchnorm2d_backward_matches_finite_differences_in_training_mode() {
    use mnist_nn::layers::BatchNorm2d;
    let mut rng = seeded_rng(33);
    let mut bn = BatchNorm2d::new(3, 4);
    bn.gamma = ndarray::Array1::from_vec(vec![0.5, 1.5, -1.0]);
    bn.beta = ndarray::Array1::from_vec(vec![0.1, -0.2, 0.3]);
    let input = random_matrix(3, 12, &mut rng) * 2.0 + 1.0;
    let tolerance = Tolerance {
        relative: 2e-2,
        ..Tolerance::default()
    };
    let mismatches = check_layer(&mut bn, input.view(), tolerance, &mut rng);
    assert!(mismatches.is_empty(), "{mismatches:?}");
}

#[test]
fn a_network_of_every_new_layer_matches_finite_differences() {
    use mnist_nn::architecture::{self, Shape};
    let mut rng = seeded_rng(34);
    // On 1x6x6 images; no ReLU or max-pooling (a perturbation of the first weights could move a
    // unit across ReLU's kink or change a window's maximum: both are checked on their own, on
    // inputs kept away from such switches), dropout with a fixed seed.
    let planned = architecture::parse(
        "conv 2 3 padding 1, batchnorm, tanh, avgpool 2, conv 3 2, avgpool 2 stride 1, flatten, dropout 0.3, linear 4",
        Shape::Image {
            channels: 1,
            height: 6,
            width: 6,
        },
        4,
    )
    .unwrap();
    let mut network = architecture::build(&planned, Init::He, &mut rng);
    network.seed_step(99);
    let input = distinct_values(5, 36, &mut rng);
    let labels = [0u8, 1, 2, 3, 1];
    let tolerance = Tolerance {
        relative: 3e-2,
        ..Tolerance::default()
    };
    let mismatches = check_network(&mut network, input.view(), &labels, tolerance);
    assert!(mismatches.is_empty(), "{mismatches:?}");
}

#[test]
fn scaled_tanh_backward_matches_finite_differences() {
    use mnist_nn::layers::{Tanh, LECUN_TANH};
    let mut rng = seeded_rng(35);
    let input = random_matrix(4, 6, &mut rng) * 1.5;
    let (amplitude, slope) = LECUN_TANH;
    let mut tanh = Tanh::scaled(amplitude, slope);
    assert_matches_finite_differences(&mut tanh, &input, &mut rng, "lecun-tanh");
}

#[test]
fn padding_backward_matches_finite_differences() {
    use mnist_nn::layers::{Pad2d, PadShape};
    let mut rng = seeded_rng(36);
    for (channels, height, width, padding) in [(1, 4, 4, 2), (2, 3, 5, 1), (2, 3, 3, 0)] {
        let shape = PadShape {
            channels,
            height,
            width,
            padding,
            value: -0.1,
        };
        let input = random_matrix(3, shape.input_len(), &mut rng);
        assert_matches_finite_differences(
            &mut Pad2d::new(shape),
            &input,
            &mut rng,
            format!("{shape:?}"),
        );
    }
}

#[test]
fn cropping_backward_matches_finite_differences() {
    use mnist_nn::layers::{Crop2d, CropShape};
    let mut rng = seeded_rng(38);
    for (channels, height, width, crop) in [(1, 6, 6, 2), (2, 5, 7, 1), (2, 3, 3, 0)] {
        let shape = CropShape {
            channels,
            height,
            width,
            crop,
        };
        let input = random_matrix(3, shape.input_len(), &mut rng);
        assert_matches_finite_differences(
            &mut Crop2d::new(shape),
            &input,
            &mut rng,
            format!("{shape:?}"),
        );
    }
}

#[test]
fn subsampling_backward_matches_finite_differences() {
    use mnist_nn::layers::{PoolShape, Subsample2d};
    let mut rng = seeded_rng(37);
    // (channels, height, width, kernel): LeNet's 2x2, and windows that leave an edge unused.
    for (channels, height, width, kernel) in [(2, 4, 4, 2), (3, 5, 6, 2), (1, 7, 7, 3)] {
        let shape = PoolShape {
            channels,
            height,
            width,
            kernel,
            stride: kernel,
        };
        let mut layer = Subsample2d::new(shape, Init::Samson, &mut rng);
        let input = random_matrix(3, shape.input_len(), &mut rng);
        assert_matches_finite_differences(&mut layer, &input, &mut rng, format!("{shape:?}"));
    }
}

#[test]
fn partial_convolution_backward_matches_finite_differences() {
    use mnist_nn::layers::{lenet5_table, PartialConv2d};
    let mut rng = seeded_rng(38);
    // LeNet-5's table on small images, and an uneven table with stride and padding.
    let cases = [
        (conv_shape((6, 16, 6, 6, 3, 1, 0, 1)), lenet5_table()),
        (
            conv_shape((3, 2, 7, 6, 3, 2, 1, 1)),
            vec![vec![0, 2], vec![1]],
        ),
    ];
    for (shape, table) in cases {
        let mut layer = PartialConv2d::new(shape, table, Init::Samson, &mut rng);
        let input = random_matrix(3, shape.input_len(), &mut rng);
        assert_matches_finite_differences(&mut layer, &input, &mut rng, format!("{shape:?}"));
    }
}

#[test]
fn a_small_lenet5_matches_finite_differences() {
    use mnist_nn::architecture::{self, Shape};
    let mut rng = seeded_rng(39);
    // LeNet-5's layer kinds in order, on 1x8x8 images: padding, C1, S2, C3 with Table I, S4, a
    // full convolution, F6 and the output, squashed between them.
    let planned = architecture::parse(
        "pad 2 value -0.1, conv 6 3, lecun-tanh, subsample 2, lecun-tanh, conv 16 2 table lenet5, lecun-tanh, subsample 2, lecun-tanh, conv 12 2, lecun-tanh, flatten, linear 8, lecun-tanh, linear 4",
        Shape::Image {
            channels: 1,
            height: 8,
            width: 8,
        },
        4,
    )
    .unwrap();
    let mut network = architecture::build(&planned, Init::Samson, &mut rng);
    let input = random_matrix(5, 64, &mut rng);
    let labels = [0u8, 1, 2, 3, 1];
    let tolerance = Tolerance {
        relative: 3e-2,
        ..Tolerance::default()
    };
    let mismatches = check_network(&mut network, input.view(), &labels, tolerance);
    assert!(mismatches.is_empty(), "{mismatches:?}");
}
