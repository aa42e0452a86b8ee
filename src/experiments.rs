//! The experiments of the two seed projects, each with its exact network, data and schedule; the
//! time-to-accuracy race: the published one-epoch recipe it starts from (`fast`), a cheaper
//! recipe chosen to reach its accuracy sooner (`fastest`) and a minute's training to 99.5%
//! (`accurate`); and the convolutional networks of MNIST's history: LeNet-5
//! (LeCun et al. 1998) and Simard et al.'s (2003).

use crate::architecture::{self, Shape};
use crate::augment::Augmentation;
use crate::data::{Regime, CLASSES, IMAGE_SIDE};
use crate::init::Init;
use crate::layers::ConvShape;
use crate::network::Network;
use crate::optim::OptimizerSettings;
use crate::schedule::Schedule;
use crate::train::Batching;
use crate::SeededRng;

/// One named experiment.
pub struct Experiment {
    /// The name on the command line (`mnist-nn experiment NAME`).
    pub name: &'static str,
    /// The network in one line.
    pub network: &'static str,
    /// The network in the architecture grammar ([`crate::architecture`]), as `--layers` takes it.
    pub layers: &'static str,
    /// How the data is split and scaled.
    pub regime: Regime,
    /// Full batch or minibatches.
    pub batching: Batching,
    /// Learning rate (the peak of a one-cycle schedule).
    pub lr: f32,
    /// The optimiser.
    pub optimizer: OptimizerSettings,
    /// The learning-rate schedule over the run.
    pub schedule: Schedule,
    /// How the weights are first drawn.
    pub init: Init,
    /// Epochs of the full run.
    pub epochs: usize,
    /// What the seed project reports for the full run.
    pub seed_figure: &'static str,
    /// Also report the test accuracy every this many epochs (for figures at several lengths).
    pub test_every: Option<usize>,
    /// How the training images are distorted every epoch (the `--augment` syntax), if they are.
    pub augment: Option<&'static str>,
    /// The last this many epochs train on undistorted images (`--clean-epochs`).
    pub clean_epochs: usize,
    /// The share ε of the target spread over all classes (`--label-smoothing`; 0: one-hot).
    pub label_smoothing: f32,
    /// A race against the clock (`fast`, `fastest`, `accurate`): the run ends with the test set
    /// only, skipping the pass over the whole training set that would cost a third of a training
    /// epoch again (the epoch's line has the training loss and accuracy as it went).
    pub timed: bool,
}

impl Experiment {
    /// A freshly initialised network for this experiment.
    pub fn build(&self, rng: &mut SeededRng) -> Network {
        let planned = architecture::parse(self.layers, Shape::MNIST, CLASSES)
            .expect("the experiments' architectures are valid");
        architecture::build(&planned, self.init, rng)
    }

    /// The experiment's distortions of the training images, if it has any.
    pub fn augmentation(&self) -> Option<Augmentation> {
        self.augment.map(|text| {
            text.parse()
                .expect("the experiments' augmentations are valid")
        })
    }
}

/// train_mnist_fast's Adam (betas 0.7 and 0.9 instead of PyTorch's defaults 0.9 and 0.999), which
/// `fast` and `fastest` share (`accurate`'s five epochs use PyTorch's defaults).
const RACE_ADAM: OptimizerSettings = OptimizerSettings::Adam {
    betas: (0.7, 0.9),
    eps: 1e-8,
    weight_decay: 0.0,
};

/// train_mnist_fast's recipe, as published (`fastest` changes its network, batch size, learning
/// rate and loss).
const FAST: Experiment = Experiment {
    name: "fast",
    layers: "conv 24 5 algorithm direct, maxpool 2, relu, conv 32 3 algorithm winograd, maxpool 2, relu, flatten, linear 256, relu, linear 10",
    network: "Conv2d(1->24, 5x5)-MaxPool2-ReLU-Conv2d(24->32, 3x3)-MaxPool2-ReLU-800-256-ReLU-10, PyTorch's default init; the 5x5 layer computed by direct sums eight images at a time, the 3x3 layer by Winograd's F(2x2, 3x3)",
    regime: Regime::TorchVision,
    batching: Batching::Mini(256),
    lr: 1e-2,
    optimizer: RACE_ADAM,
    schedule: Schedule::ONE_CYCLE,
    init: Init::Torch,
    epochs: 1,
    seed_figure: "mean test accuracy 0.9904 (train_mnist_fast, 0.76 s on a laptop GPU)",
    test_every: None,
    augment: None,
    clean_epochs: 0,
    label_smoothing: 0.0,
    timed: true,
};

/// Every experiment: the seeds' in the order of SPEC.md's table, then the race's recipes
/// (`fast`, `fastest`, `accurate`) and the published networks (LeNet-5, Simard et al.'s).
pub const EXPERIMENTS: [Experiment; 11] = [
    Experiment {
        name: "mlp",
        layers: "linear 256, relu, linear 128, relu, linear 10",
        network: "784-256-ReLU-128-ReLU-10, he init",
        regime: Regime::Seed000,
        batching: Batching::Mini(128),
        lr: 1e-3,
        optimizer: OptimizerSettings::PLAIN_SGD,
        schedule: Schedule::Constant,
        init: Init::He,
        epochs: 250,
        seed_figure: "test accuracy ~0.97",
        test_every: None,
        augment: None,
        clean_epochs: 0,
        label_smoothing: 0.0,
        timed: false,
    },
    Experiment {
        name: "bn-mlp",
        layers: "linear 256, relu, batchnorm, linear 128, relu, batchnorm, linear 10",
        network: "784-256-ReLU-BN-128-ReLU-BN-10, he init",
        regime: Regime::Seed000,
        batching: Batching::Mini(128),
        lr: 1e-3,
        optimizer: OptimizerSettings::PLAIN_SGD,
        schedule: Schedule::Constant,
        init: Init::He,
        epochs: 250,
        seed_figure: "test accuracy ~0.971",
        test_every: None,
        augment: None,
        clean_epochs: 0,
        label_smoothing: 0.0,
        timed: false,
    },
    Experiment {
        name: "cnn",
        layers: "conv 8 3 padding 2 dilation 2, relu, flatten, linear 128, relu, linear 10",
        network: "Conv2d(1->8, 3x3, dilation 2, padding 2)-ReLU-Flatten-6272-128-ReLU-10, he init",
        regime: Regime::Seed000,
        batching: Batching::Mini(128),
        lr: 1e-3,
        optimizer: OptimizerSettings::PLAIN_SGD,
        schedule: Schedule::Constant,
        init: Init::He,
        epochs: 250,
        seed_figure: "test accuracy ~0.97",
        test_every: None,
        augment: None,
        clean_epochs: 0,
        label_smoothing: 0.0,
        timed: false,
    },
    Experiment {
        name: "samson",
        layers: "linear 10 shared-bias, relu, linear 10 shared-bias",
        network: "784-10-ReLU-10, samson init, one shared bias gradient per layer (Samson Zhang's tutorial)",
        regime: Regime::Seed003,
        batching: Batching::Full,
        lr: 0.1,
        optimizer: OptimizerSettings::PLAIN_SGD,
        schedule: Schedule::Constant,
        init: Init::Samson,
        epochs: 500,
        seed_figure: "test accuracy ~0.85",
        test_every: None,
        augment: None,
        clean_epochs: 0,
        label_smoothing: 0.0,
        timed: false,
    },
    Experiment {
        name: "lecun-300",
        layers: "linear 300, relu, linear 10",
        network: "784-300-ReLU-10, he init",
        regime: Regime::Seed003,
        batching: Batching::Full,
        lr: 0.2,
        optimizer: OptimizerSettings::PLAIN_SGD,
        schedule: Schedule::Constant,
        init: Init::He,
        epochs: 1000,
        seed_figure: "test error ~4.5% (LeCun et al. 1998: 4.7%)",
        test_every: None,
        augment: None,
        clean_epochs: 0,
        label_smoothing: 0.0,
        timed: false,
    },
    Experiment {
        name: "lecun-300-100",
        layers: "linear 300, relu, linear 100, relu, linear 10",
        network: "784-300-ReLU-100-ReLU-10, he init",
        regime: Regime::Seed003,
        batching: Batching::Full,
        lr: 0.2,
        optimizer: OptimizerSettings::PLAIN_SGD,
        schedule: Schedule::Constant,
        init: Init::He,
        epochs: 1000,
        seed_figure: "test error ~2.9% after 1000 epochs, 2.3% after 2000, 1.8% after 5000 (LeCun et al. 1998: 3.05%)",
        test_every: Some(1000),
        augment: None,
        clean_epochs: 0,
        label_smoothing: 0.0,
        timed: false,
    },
    FAST,
    Experiment {
        name: "fastest",
        layers: "conv 8 5 algorithm direct, maxpool 2, relu, conv 16 3 algorithm winograd, maxpool 2, relu, flatten, linear 128, relu, linear 10",
        network: "the fast recipe's network with 8 first maps instead of 24, 16 second maps instead of 32 and 128 hidden units instead of 256",
        seed_figure: "our own recipe, chosen on the validation split: fast's accuracy in less time (the cheapest network and settings whose validation accuracy reached 0.9895 on two sets of five seeds, see docs/RESULTS.md)",
        batching: Batching::Mini(128),
        lr: 0.015,
        label_smoothing: 0.2,
        ..FAST
    },
    Experiment {
        name: "accurate",
        layers: "conv 24 5 algorithm direct, maxpool 2, batchnorm, relu, conv 24 3 padding 1 algorithm winograd, batchnorm, relu, conv 32 3 algorithm winograd, maxpool 2, batchnorm, relu, flatten, linear 256, relu, linear 10",
        network: "the fast recipe's network (and its algorithms) with batch normalisation after each pooling and a third convolution (24 maps, 3x3, padding 1) between the two, he init",
        regime: Regime::TorchVision,
        batching: Batching::Mini(256),
        lr: 1e-2,
        optimizer: OptimizerSettings::ADAM,
        schedule: Schedule::ONE_CYCLE,
        init: Init::He,
        epochs: 5,
        seed_figure: "our own recipe, chosen on the validation split: 99.5% in about a minute",
        test_every: None,
        augment: Some("affine"),
        clean_epochs: 1,
        label_smoothing: 0.1,
        timed: true,
    },
    Experiment {
        name: "lenet5",
        layers: LENET5,
        network: "LeNet-5: 32x32 input, C1 6@28x28, S2 6@14x14, C3 16@10x10 (Table I), S4 16@5x5, C5 120, F6 84, 1.7159·tanh(2a/3), then 10 linear outputs with softmax; ±2.4/fan-in init",
        regime: Regime::LeCun,
        batching: Batching::Mini(32),
        lr: 0.02,
        optimizer: OptimizerSettings::Sgd {
            momentum: 0.9,
            nesterov: false,
            weight_decay: 5e-4,
        },
        schedule: Schedule::Cosine { min_lr: 0.0 },
        init: Init::LeCun,
        epochs: 20,
        seed_figure: "test error 0.95%, 0.8% with distortions (LeCun et al. 1998)",
        test_every: None,
        augment: None,
        clean_epochs: 0,
        label_smoothing: 0.0,
        timed: false,
    },
    Experiment {
        name: "simard",
        layers: "conv 5 5 stride 2 padding 1, relu, conv 50 5 stride 2, relu, flatten, linear 100, relu, linear 10",
        network: "Simard et al. 2003: Conv2d(1->5, 5x5, stride 2)-ReLU-Conv2d(5->50, 5x5, stride 2)-ReLU-1250-100-ReLU-10, he init",
        regime: Regime::Seed003,
        batching: Batching::Mini(32),
        lr: 0.02,
        optimizer: OptimizerSettings::Sgd {
            momentum: 0.9,
            nesterov: false,
            weight_decay: 1e-4,
        },
        schedule: Schedule::Cosine { min_lr: 0.0 },
        init: Init::He,
        epochs: 60,
        seed_figure: "test error 0.4% with elastic distortions (Simard, Steinkraus and Platt 2003)",
        test_every: None,
        augment: Some("elastic:4:25"),
        clean_epochs: 0,
        label_smoothing: 0.0,
        timed: false,
    },
];

/// LeNet-5 as section II.B of LeCun et al. (1998) builds it, in the architecture grammar, one
/// commented layer per line (`architectures/lenet5.txt`). The paper's output layer of Euclidean
/// RBF units is replaced by 10 linear units with softmax cross-entropy.
pub const LENET5: &str = include_str!("../architectures/lenet5.txt");

/// The experiment called `name`.
pub fn find(name: &str) -> Option<&'static Experiment> {
    EXPERIMENTS.iter().find(|e| e.name == name)
}

/// The experiments' names, for messages.
pub fn names() -> Vec<&'static str> {
    EXPERIMENTS.iter().map(|e| e.name).collect()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::LayerSpec;

    /// The benches and tests that time or check "the cnn's convolution" use [`CNN_CONV`]; it must
    /// be the layer the experiment's text builds.
    #[test]
    fn the_cnn_experiment_starts_with_cnn_conv() {
        let network = find("cnn").unwrap().build(&mut crate::seeded_rng(0));
        assert_eq!(network.specs()[0], LayerSpec::Conv2d(CNN_CONV));
    }
}
