//! The experiments of the two seed projects, each with its exact network, data and schedule.

use crate::data::{Regime, IMAGE_PIXELS, IMAGE_SIDE};
use crate::init::Init;
use crate::layers::{BatchNorm1d, Conv2d, ConvShape, Flatten, Layer, Linear, ReLU};
use crate::network::Network;
use crate::train::Batching;
use crate::SeededRng;

/// One named experiment.
pub struct Experiment {
    /// The name on the command line (`mnist-nn experiment NAME`).
    pub name: &'static str,
    /// The network in one line.
    pub network: &'static str,
    /// How the data is split and scaled.
    pub regime: Regime,
    /// Full batch or minibatches.
    pub batching: Batching,
    /// Learning rate of SGD.
    pub lr: f32,
    /// How the weights are first drawn.
    pub init: Init,
    /// Epochs of the full run.
    pub epochs: usize,
    /// What the seed project reports for the full run.
    pub seed_figure: &'static str,
    /// Also report the test accuracy every this many epochs (for figures at several lengths).
    pub test_every: Option<usize>,
    build: fn(&mut SeededRng) -> Network,
}

impl Experiment {
    /// A freshly initialised network for this experiment.
    pub fn build(&self, rng: &mut SeededRng) -> Network {
        (self.build)(rng)
    }
}

/// Every experiment, in the order of SPEC.md's table.
pub const EXPERIMENTS: [Experiment; 6] = [
    Experiment {
        name: "mlp",
        network: "784-256-ReLU-128-ReLU-10, he init",
        regime: Regime::Seed000,
        batching: Batching::Mini(128),
        lr: 1e-3,
        init: Init::He,
        epochs: 250,
        seed_figure: "test accuracy ~0.97",
        test_every: None,
        build: mlp,
    },
    Experiment {
        name: "bn-mlp",
        network: "784-256-ReLU-BN-128-ReLU-BN-10, he init",
        regime: Regime::Seed000,
        batching: Batching::Mini(128),
        lr: 1e-3,
        init: Init::He,
        epochs: 250,
        seed_figure: "test accuracy ~0.971",
        test_every: None,
        build: bn_mlp,
    },
    Experiment {
        name: "cnn",
        network: "Conv2d(1->8, 3x3, dilation 2, padding 2)-ReLU-Flatten-6272-128-ReLU-10, he init",
        regime: Regime::Seed000,
        batching: Batching::Mini(128),
        lr: 1e-3,
        init: Init::He,
        epochs: 250,
        seed_figure: "test accuracy ~0.97",
        test_every: None,
        build: cnn,
    },
    Experiment {
        name: "samson",
        network: "784-10-ReLU-10, samson init, one shared bias gradient per layer (Samson Zhang's tutorial)",
        regime: Regime::Seed003,
        batching: Batching::Full,
        lr: 0.1,
        init: Init::Samson,
        epochs: 500,
        seed_figure: "test accuracy ~0.85",
        test_every: None,
        build: samson,
    },
    Experiment {
        name: "lecun-300",
        network: "784-300-ReLU-10, he init",
        regime: Regime::Seed003,
        batching: Batching::Full,
        lr: 0.2,
        init: Init::He,
        epochs: 1000,
        seed_figure: "test error ~4.5% (LeCun et al. 1998: 4.7%)",
        test_every: None,
        build: lecun_300,
    },
    Experiment {
        name: "lecun-300-100",
        network: "784-300-ReLU-100-ReLU-10, he init",
        regime: Regime::Seed003,
        batching: Batching::Full,
        lr: 0.2,
        init: Init::He,
        epochs: 1000,
        seed_figure: "test error ~2.9% after 1000 epochs, 2.3% after 2000, 1.8% after 5000 (LeCun et al. 1998: 3.05%)",
        test_every: Some(1000),
        build: lecun_300_100,
    },
];

/// The experiment called `name`.
pub fn find(name: &str) -> Option<&'static Experiment> {
    EXPERIMENTS.iter().find(|e| e.name == name)
}

/// The experiments' names, for messages.
pub fn names() -> Vec<&'static str> {
    EXPERIMENTS.iter().map(|e| e.name).collect()
}

/// Seed 000's vanilla MLP: 784-256-ReLU-128-ReLU-10.
fn mlp(rng: &mut SeededRng) -> Network {
    Network::mlp(&[IMAGE_PIXELS, 256, 128, 10], Init::He, rng)
}

/// Seed 000's MLP with batch normalisation on the data entering and leaving the 128-unit layer.
fn bn_mlp(rng: &mut SeededRng) -> Network {
    let layers: Vec<Box<dyn Layer>> = vec![
        Box::new(Linear::new(IMAGE_PIXELS, 256, Init::He, rng)),
        Box::new(ReLU::new()),
        Box::new(BatchNorm1d::new(256)),
        Box::new(Linear::new(256, 128, Init::He, rng)),
        Box::new(ReLU::new()),
        Box::new(BatchNorm1d::new(128)),
        Box::new(Linear::new(128, 10, Init::He, rng)),
    ];
    Network::new(layers)
}

/// Samson Zhang's tutorial network: 784-10-ReLU-10, uniform [-0.5, 0.5) weights and biases, each
/// layer's biases moved by one shared scalar gradient.
fn samson(rng: &mut SeededRng) -> Network {
    let layers: Vec<Box<dyn Layer>> = vec![
        Box::new(Linear::new(IMAGE_PIXELS, 10, Init::Samson, rng).with_shared_bias_gradient()),
        Box::new(ReLU::new()),
        Box::new(Linear::new(10, 10, Init::Samson, rng).with_shared_bias_gradient()),
    ];
    Network::new(layers)
}

/// LeCun et al. 1998, section 3.C.5: one hidden layer of 300 units.
fn lecun_300(rng: &mut SeededRng) -> Network {
    Network::mlp(&[IMAGE_PIXELS, 300, 10], Init::He, rng)
}

/// LeCun et al. 1998, section 3.C.6: hidden layers of 300 and 100 units.
fn lecun_300_100(rng: &mut SeededRng) -> Network {
    Network::mlp(&[IMAGE_PIXELS, 300, 100, 10], Init::He, rng)
}

/// The convolution of seed 000's CNN: 1 -> 8 channels, 3x3 taps 2 pixels apart, padding 2, so a
/// 28x28 image gives 8 maps of 28x28.
pub const CNN_CONV: ConvShape = ConvShape {
    in_channels: 1,
    out_channels: 8,
    height: IMAGE_SIDE,
    width: IMAGE_SIDE,
    kernel: 3,
    stride: 1,
    padding: 2,
    dilation: 2,
};

/// Seed 000's CNN: a dilated 3x3 convolution to 8 channels, then a 128-unit hidden layer.
fn cnn(rng: &mut SeededRng) -> Network {
    let shape = CNN_CONV;
    let features = shape.output_len();
    let layers: Vec<Box<dyn Layer>> = vec![
        Box::new(Conv2d::new(shape, Init::He, rng)),
        Box::new(ReLU::new()),
        Box::new(Flatten::new(features)),
        Box::new(Linear::new(features, 128, Init::He, rng)),
        Box::new(ReLU::new()),
        Box::new(Linear::new(128, 10, Init::He, rng)),
    ];
    Network::new(layers)
}
