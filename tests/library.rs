//! The library's behaviour: the loss, layers' bookkeeping, training, reproducibility.

mod common;

use mnist_nn::data::Dataset;
use mnist_nn::init::Init;
use mnist_nn::layers::{Layer, Linear};
use mnist_nn::loss::{loss_and_correct, SoftmaxCrossEntropy};
use mnist_nn::network::Network;
use mnist_nn::optim::{Optimizer, OptimizerSettings};
use mnist_nn::seeded_rng;
use mnist_nn::train::{Batching, Trainer};
use ndarray::{array, Array2};

#[test]
fn loss_of_uniform_logits_is_log_of_class_count() {
    let logits = Array2::<f32>::zeros((3, 10));
    let stats = loss_and_correct(logits.view(), &[1, 2, 3]);
    assert!((stats.loss - 10f64.ln()).abs() < 1e-6);
}

#[test]
fn loss_is_stable_for_huge_logits() {
    let logits = array![[1.0e4f32, -1.0e4, 0.0], [-3.0e4, 3.0e4, 1.0e4]];
    let mut loss = SoftmaxCrossEntropy::new();
    let (stats, grad) = loss.loss_and_grad(logits.view(), &[0, 0]);
    // Row 1 is certain and right (loss 0); row 2 is wrong by 6e4.
    assert!((stats.loss - 3.0e4).abs() < 1.0, "loss {}", stats.loss);
    assert!(grad.iter().all(|g| g.is_finite()));
    assert_eq!(stats.correct, 1);
}

#[test]
fn loss_gradient_rows_sum_to_zero_and_average_over_the_batch() {
    let logits = array![[1.0f32, 2.0, 3.0], [0.5, 0.5, -1.0]];
    let mut loss = SoftmaxCrossEntropy::new();
    let (_, grad) = loss.loss_and_grad(logits.view(), &[2, 0]);
    for row in grad.rows() {
        assert!(row.sum().abs() < 1e-6);
    }
    // p - onehot, divided by the batch size 2: the true class's entry is (p_y - 1) / 2.
    let p2 = 3f32.exp() / (1f32.exp() + 2f32.exp() + 3f32.exp());
    assert!((grad[[0, 2]] - (p2 - 1.0) / 2.0).abs() < 1e-6);
}

#[test]
fn smoothed_loss_matches_hand_computed_values_and_pytorch() {
    // Probabilities 1/6, 2/6, 3/6; true class 2; ε = 0.3 over 3 classes: the target is
    // q = (0.1, 0.1, 0.8), as PyTorch's CrossEntropyLoss(label_smoothing=0.3) defines it.
    let logits = array![[0.0f32, 2f32.ln(), 3f32.ln()]];
    let mut loss = SoftmaxCrossEntropy::with_label_smoothing(0.3);
    let (stats, grad) = loss.loss_and_grad(logits.view(), &[2]);
    // 0.7·(-ln 1/2) + 0.3·(ln 6 + ln 3 + ln 2)/3 = 0.7 ln 2 + 0.2 ln 6
    let expected = 0.7 * 2f64.ln() + 0.2 * 6f64.ln();
    assert!((stats.loss - expected).abs() < 1e-6, "loss {}", stats.loss);
    let expected_grad = [1.0 / 6.0 - 0.1, 2.0 / 6.0 - 0.1, 0.5 - 0.8];
    for (g, e) in grad.iter().zip(expected_grad) {
        assert!((g - e).abs() < 1e-6, "gradient {grad:?}");
    }
    // PyTorch 2 on two rows of four classes, ε = 0.2: `z = torch.tensor([[1., -2., .5, 3.],
    // [.3, .2, .1, -1.]], requires_grad=True); l = F.cross_entropy(z, torch.tensor([0, 3]),
    // label_smoothing=0.2); l.backward()` gives l and z.grad:
    let logits = array![[1.0f32, -2.0, 0.5, 3.0], [0.3, 0.2, 0.1, -1.0]];
    let mut loss = SoftmaxCrossEntropy::with_label_smoothing(0.2);
    let (stats, grad) = loss.loss_and_grad(logits.view(), &[0, 3]);
    assert!(
        (stats.loss - 2.2472822666168213).abs() < 1e-6,
        "loss {}",
        stats.loss
    );
    let torch_grad: [f64; 8] = [
        -0.3697231411933899,
        -0.022247927263379097,
        0.008527113124728203,
        0.3834439218044281,
        0.14188361167907715,
        0.12600253522396088,
        0.11163275688886642,
        -0.37951892614364624,
    ];
    for (&g, t) in grad.iter().zip(torch_grad) {
        assert!((g as f64 - t).abs() < 1e-6, "gradient {grad:?}");
    }
    // ε = 0 is the plain loss, to the bit.
    let logits = array![[1.0f32, -2.0, 0.5], [0.3, 0.2, 0.1]];
    let mut plain = SoftmaxCrossEntropy::new();
    let mut unsmoothed = SoftmaxCrossEntropy::with_label_smoothing(0.0);
    let (a, ga) = plain.loss_and_grad(logits.view(), &[0, 2]);
    let (b, gb) = unsmoothed.loss_and_grad(logits.view(), &[0, 2]);
    assert_eq!((a, ga.to_owned()), (b, gb.to_owned()));
}

#[test]
#[should_panic(expected = "label smoothing must be between 0 and 1")]
fn loss_refuses_smoothing_outside_zero_to_one() {
    SoftmaxCrossEntropy::with_label_smoothing(1.5);
}

#[test]
#[should_panic(expected = "label 12 is not one of the 10 classes")]
fn loss_refuses_labels_outside_the_classes() {
    let logits = Array2::<f32>::zeros((1, 10));
    loss_and_correct(logits.view(), &[12]);
}

#[test]
#[should_panic(expected = "Linear: expected input of shape (batch, 4), got (2, 3)")]
fn linear_refuses_wrong_input_width() {
    let mut layer = Linear::new(4, 2, Init::He, &mut seeded_rng(0));
    layer.forward(Array2::zeros((2, 3)).view(), false);
}

#[test]
fn linear_forward_is_x_times_w_plus_b() {
    let mut layer = Linear::from_params(
        array![[1.0f32, 2.0], [3.0, 4.0], [5.0, 6.0]],
        array![0.5, -0.5],
    );
    let y = layer
        .forward(array![[1.0f32, 0.0, 2.0]].view(), false)
        .to_owned();
    assert_eq!(y, array![[11.5f32, 13.5]]);
}

#[test]
fn a_first_layer_computes_no_input_gradient() {
    let mut layer = Linear::new(5, 4, Init::He, &mut seeded_rng(3));
    let x = Array2::from_shape_fn((2, 5), |(i, j)| (i + j) as f32);
    layer.forward(x.view(), true);
    let ones = Array2::ones((2, 4));
    assert_eq!(layer.backward(x.view(), ones.view()).dim(), (2, 5));
    layer.set_input_grad_needed(false);
    layer.forward(x.view(), true);
    assert_eq!(layer.backward(x.view(), ones.view()).dim(), (0, 5));
    // The parameter gradients are still there: dW = Xᵀ·1, so row i of dW is the sum of column i of X.
    assert_eq!(layer.grad_weight[[4, 0]], 4.0 + 5.0);
}

/// 300 points of two interleaved half-moons, not linearly separable.
fn two_moons(n: usize) -> Dataset {
    let images = Array2::from_shape_fn((n, 2), |(i, j)| {
        let t = std::f32::consts::PI * (i / 2) as f32 / (n / 2) as f32;
        let (x, y) = if i % 2 == 0 {
            (t.cos(), t.sin())
        } else {
            (1.0 - t.cos(), 0.5 - t.sin())
        };
        if j == 0 {
            x
        } else {
            y
        }
    });
    Dataset::new(images, (0..n).map(|i| (i % 2) as u8).collect())
}

fn train(seed: u64, batching: Batching, epochs: usize) -> (Network, f64) {
    let data = two_moons(300);
    let mut rng = seeded_rng(seed);
    let mut network = Network::mlp(&[2, 32, 16, 2], Init::He, &mut rng);
    let mut sgd = Trainer::sgd(0.1, batching);
    for _ in 0..epochs {
        sgd.epoch(&mut network, &data, &mut rng, |_| {});
    }
    let accuracy = network.evaluate(data.images.view(), &data.labels).accuracy;
    (network, accuracy)
}

fn weights(network: &mut Network) -> Vec<f32> {
    network
        .params()
        .iter()
        .flat_map(|p| p.value.to_vec())
        .collect()
}

/// A data set for a `Fit` made of `data` alone: trained on whole, its first 32 rows the test set,
/// pixels / 255.
fn trained_and_tested_on(data: Dataset) -> mnist_nn::data::Mnist {
    mnist_nn::data::Mnist {
        test: data.head(32),
        train: data,
        validation: None,
        preprocessing: mnist_nn::data::Preprocessing::Scale255,
    }
}

/// Runs `fit` from its first epoch to its last, never asked to stop, showing nothing.
fn fit_to_the_end(
    fit: &mnist_nn::fit::Fit,
    network: &mut Network,
    trainer: &mut Trainer,
    rng: &mut mnist_nn::SeededRng,
) -> mnist_nn::fit::Outcome {
    let (outcome, _records) = fit
        .run(network, trainer, rng, None, || false, &mut ())
        .unwrap();
    outcome
}

#[test]
fn minibatch_sgd_learns_a_nonlinear_boundary() {
    let (_, accuracy) = train(1, Batching::Mini(16), 200);
    assert!(accuracy > 0.97, "accuracy {accuracy}");
}

#[test]
fn full_batch_gradient_descent_lowers_the_loss() {
    let data = two_moons(300);
    let mut rng = seeded_rng(2);
    let mut network = Network::mlp(&[2, 16, 2], Init::He, &mut rng);
    let mut sgd = Trainer::sgd(0.5, Batching::Full);
    let first = sgd.epoch(&mut network, &data, &mut rng, |_| {}).loss;
    let mut last = first;
    for _ in 0..100 {
        last = sgd.epoch(&mut network, &data, &mut rng, |_| {}).loss;
    }
    assert!(last < 0.5 * first, "loss went from {first} to {last}");
}

#[test]
fn the_same_seed_gives_the_same_weights() {
    let (mut a, _) = train(5, Batching::Mini(32), 5);
    let (mut b, _) = train(5, Batching::Mini(32), 5);
    let (mut c, _) = train(6, Batching::Mini(32), 5);
    assert_eq!(weights(&mut a), weights(&mut b));
    assert_ne!(weights(&mut a), weights(&mut c));
}

#[test]
fn predictions_agree_with_evaluation() {
    let (mut network, accuracy) = train(7, Batching::Mini(16), 20);
    let data = two_moons(300);
    let predictions = network.predict(data.images.view());
    let hits = predictions
        .iter()
        .zip(&data.labels)
        .filter(|(p, l)| p == l)
        .count();
    assert_eq!(hits as f64 / 300.0, accuracy);
}

#[test]
fn a_shared_bias_gradient_moves_every_bias_by_the_sum_of_the_delta() {
    let mut layer = Linear::new(3, 4, Init::Samson, &mut seeded_rng(9)).with_shared_bias_gradient();
    let x = Array2::ones((2, 3));
    layer.forward(x.view(), true);
    let delta = array![[0.1f32, -0.2, 0.3, 0.4], [0.5, 0.0, -0.1, 0.2]];
    layer.backward(x.view(), delta.view());
    let total = delta.sum();
    assert!(
        layer.grad_bias.iter().all(|&g| (g - total).abs() < 1e-6),
        "{:?}",
        layer.grad_bias
    );
}

/// Plain gradient descent on one copy: the definition the data-parallel step must agree with.
fn serial_step(network: &mut Network, x: &Array2<f32>, labels: &[u8], lr: f32) -> f64 {
    let stats = network.compute_gradients(x.view(), labels);
    for param in network.params() {
        for (value, grad) in param.value.iter_mut().zip(param.grad) {
            *value -= lr * grad;
        }
    }
    stats.loss
}

#[test]
fn the_data_parallel_step_equals_plain_gradient_descent() {
    // 301 rows: two shards of unequal size.
    let mut rng = seeded_rng(40);
    let (x, labels) = made_up_rows(301);
    let mut parallel = Network::mlp(&[12, 20, 9, 3], Init::He, &mut rng);
    let mut serial = Network::mlp(&[12, 20, 9, 3], Init::He, &mut seeded_rng(40));
    assert_eq!(weights(&mut parallel), weights(&mut serial));
    for step in 0..5 {
        let loss = parallel
            .train_step(x.view(), &labels, &mut Optimizer::sgd(0.1))
            .loss;
        let expected = serial_step(&mut serial, &x, &labels, 0.1);
        assert!(
            (loss - expected).abs() < 1e-5,
            "step {step}: loss {loss} vs {expected}"
        );
        if step == 2 {
            // Changing the weights from outside reaches every copy before the next step.
            for network in [&mut parallel, &mut serial] {
                network.params()[0].value[0] += 0.5;
            }
        }
    }
    for (p, s) in weights(&mut parallel).iter().zip(weights(&mut serial)) {
        assert!((p - s).abs() < 1e-5, "weights differ: {p} vs {s}");
    }
}

#[test]
fn a_step_on_picked_examples_equals_a_step_on_the_same_rows() {
    let data = two_moons(300);
    let indices: Vec<u32> = (0..300).rev().step_by(3).collect();
    let rows = Array2::from_shape_fn((indices.len(), 2), |(r, c)| {
        data.images[[indices[r] as usize, c]]
    });
    let labels: Vec<u8> = indices.iter().map(|&i| data.labels[i as usize]).collect();
    let mut picked = Network::mlp(&[2, 16, 2], Init::He, &mut seeded_rng(5));
    let mut copied = Network::mlp(&[2, 16, 2], Init::He, &mut seeded_rng(5));
    for _ in 0..3 {
        let a = picked.train_step_on(&data, &indices, &mut Optimizer::sgd(0.1));
        let b = copied.train_step(rows.view(), &labels, &mut Optimizer::sgd(0.1));
        assert_eq!(a, b);
    }
    assert_eq!(weights(&mut picked), weights(&mut copied));
}

/// Rows `0..n` of a made-up 12-feature problem with 3 classes.
fn made_up_rows(n: usize) -> (Array2<f32>, Vec<u8>) {
    let x = Array2::from_shape_fn((n, 12), |(i, j)| ((i * 7 + j * 13) % 17) as f32 / 8.0 - 1.0);
    (x, (0..n).map(|i| (i % 3) as u8).collect())
}

#[test]
fn steps_of_changing_sizes_split_into_shards_equal_plain_gradient_descent() {
    // 40 and 31 rows are too few to split, 128 and 96 are split in two: after a step on one copy
    // the next split step must start from the updated weights in every copy.
    let mut split = Network::mlp(&[12, 20, 9, 3], Init::He, &mut seeded_rng(41));
    let mut whole = Network::mlp(&[12, 20, 9, 3], Init::He, &mut seeded_rng(41));
    whole.set_max_shards(1);
    for (step, rows) in [128, 40, 128, 31, 96, 128].into_iter().enumerate() {
        let (x, labels) = made_up_rows(rows);
        let a = split.train_step(x.view(), &labels, &mut Optimizer::sgd(0.2));
        let b = whole.train_step(x.view(), &labels, &mut Optimizer::sgd(0.2));
        assert!(
            (a.loss - b.loss).abs() < 1e-5 && a.correct == b.correct,
            "step {step} ({rows} rows): {a:?} vs {b:?}"
        );
    }
    for (s, w) in weights(&mut split).iter().zip(weights(&mut whole)) {
        assert!((s - w).abs() < 1e-5, "weights differ: {s} vs {w}");
    }
}

#[test]
fn label_smoothing_reaches_every_shard() {
    // Split and whole steps agree only if the helper copy smooths its shard's targets too.
    let trained = |shards, epsilon| {
        let mut network = Network::mlp(&[12, 20, 9, 3], Init::He, &mut seeded_rng(42));
        network.set_max_shards(shards);
        network.set_label_smoothing(epsilon);
        for rows in [128, 96] {
            let (x, labels) = made_up_rows(rows);
            network.train_step(x.view(), &labels, &mut Optimizer::sgd(0.2));
        }
        weights(&mut network)
    };
    let (split, whole) = (trained(2, 0.5), trained(1, 0.5));
    for (s, w) in split.iter().zip(&whole) {
        assert!((s - w).abs() < 1e-5, "weights differ: {s} vs {w}");
    }
    let largest_change = trained(1, 0.0)
        .iter()
        .zip(&whole)
        .map(|(p, w)| (p - w).abs())
        .fold(0.0, f32::max);
    assert!(largest_change > 1e-3, "smoothing changed nothing");
}

/// Makes a network from the run's generator.
type BuildNetwork = fn(&mut mnist_nn::SeededRng) -> Network;

/// A small convolutional network on 1x8x8 "images".
fn small_cnn(rng: &mut mnist_nn::SeededRng) -> Network {
    use mnist_nn::layers::{Conv2d, ConvShape, Flatten, ReLU};
    let shape = ConvShape {
        in_channels: 1,
        out_channels: 4,
        height: 8,
        width: 8,
        kernel: 3,
        stride: 1,
        padding: 1,
        dilation: 1,
    };
    let layers: Vec<Box<dyn Layer>> = vec![
        Box::new(Conv2d::new(shape, Init::He, rng)),
        Box::new(ReLU::new()),
        Box::new(Flatten::new(shape.output_len())),
        Box::new(Linear::new(shape.output_len(), 3, Init::He, rng)),
    ];
    Network::new(layers)
}

#[test]
fn a_run_gives_the_same_weights_on_one_two_or_three_cores() {
    // 370 examples in minibatches of 64: five split steps, then one of 50 rows (one shard).
    let images = Array2::from_shape_fn((370, 64), |(i, j)| ((i * 5 + j * 3) % 11) as f32 / 5.0);
    let labels = (0..370).map(|i| (i % 3) as u8).collect();
    let data = Dataset::new(images, labels);
    let adam = OptimizerSettings::Adam {
        betas: (0.9, 0.999),
        eps: 1e-8,
        weight_decay: 1e-4,
    };
    let runs: [(BuildNetwork, OptimizerSettings); 3] = [
        (
            |rng| Network::mlp(&[64, 32, 16, 3], Init::He, rng),
            OptimizerSettings::PLAIN_SGD,
        ),
        (small_cnn, OptimizerSettings::PLAIN_SGD),
        (mlp_with_dropout, adam),
    ];
    for (build, settings) in runs {
        let run_on = |cores: usize| {
            common::on_cores(cores, || {
                let mut rng = seeded_rng(3);
                let mut network = build(&mut rng);
                let mut trainer = Trainer::new(Optimizer::new(settings, 0.01), Batching::Mini(64));
                for _ in 0..3 {
                    trainer.epoch(&mut network, &data, &mut rng, |_| {});
                }
                weights(&mut network)
            })
        };
        let one = run_on(1);
        assert_eq!(one, run_on(2), "one core and two");
        assert_eq!(one, run_on(3), "one core and three");
    }
}

/// 64-32-3 with dropout between the layers.
fn mlp_with_dropout(rng: &mut mnist_nn::SeededRng) -> Network {
    use mnist_nn::layers::{Dropout, ReLU};
    let layers: Vec<Box<dyn Layer>> = vec![
        Box::new(Linear::new(64, 32, Init::He, rng)),
        Box::new(ReLU::new()),
        Box::new(Dropout::new(0.3)),
        Box::new(Linear::new(32, 3, Init::He, rng)),
    ];
    Network::new(layers)
}

#[test]
fn adam_steps_split_into_shards_equal_steps_on_the_whole_batch() {
    let settings = OptimizerSettings::AdamW {
        betas: (0.9, 0.99),
        eps: 1e-8,
        weight_decay: 0.01,
    };
    let mut split = Network::mlp(&[12, 20, 3], Init::He, &mut seeded_rng(42));
    let mut whole = Network::mlp(&[12, 20, 3], Init::He, &mut seeded_rng(42));
    whole.set_max_shards(1);
    let (mut a, mut b) = (
        Optimizer::new(settings, 0.01),
        Optimizer::new(settings, 0.01),
    );
    for rows in [128, 40, 96] {
        let (x, labels) = made_up_rows(rows);
        split.train_step(x.view(), &labels, &mut a);
        whole.train_step(x.view(), &labels, &mut b);
    }
    assert_eq!(a.steps(), 3);
    for (s, w) in weights(&mut split).iter().zip(weights(&mut whole)) {
        assert!((s - w).abs() < 1e-5, "weights differ: {s} vs {w}");
    }
    // The state is per value: Adam's two moments, as long as each parameter.
    let state = a.state();
    assert_eq!(state.len(), 2 * 4);
    assert_eq!((state[0].1, state[0].2.len()), ("exp_avg", 12 * 20));
}

#[test]
fn a_checkpoint_restores_the_optimizer_state_exactly() {
    use mnist_nn::checkpoint::{self, Position};
    use mnist_nn::data::Preprocessing;
    use mnist_nn::model::Training;
    let settings = OptimizerSettings::Sgd {
        momentum: 0.9,
        nesterov: true,
        weight_decay: 1e-3,
    };
    // A model file holds an MNIST network: 784 inputs, 10 classes.
    let images = Array2::from_shape_fn((300, 784), |(i, j)| ((i * 13 + j * 7) % 29) as f32 / 29.0);
    let data = Dataset::new(images, (0..300).map(|i| (i % 10) as u8).collect());
    let mut rng = seeded_rng(43);
    let mut network = Network::mlp(&[784, 16, 10], Init::He, &mut rng);
    let mut trainer = Trainer::new(Optimizer::new(settings, 0.05), Batching::Mini(32));
    trainer.epoch(&mut network, &data, &mut rng, |_| {});
    let training = Training {
        lr: 0.05,
        seed: 43,
        optimizer: settings,
        ..common::sgd_record(2)
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ck.safetensors");
    let position = Position {
        epochs_done: 1,
        progress: trainer.progress(),
        rng: &rng,
        optimizer: &trainer.optimizer,
    };
    checkpoint::save(
        &path,
        &network,
        &Preprocessing::Scale255,
        &training,
        &position,
    )
    .unwrap();
    let mut saved = checkpoint::load(&path).unwrap();
    let lengths: Vec<usize> = saved
        .model
        .network
        .params()
        .iter()
        .map(|p| p.value.len())
        .collect();
    let mut optimizer = Optimizer::new(settings, 0.05);
    saved.restore_optimizer(&mut optimizer, &lengths).unwrap();
    assert_eq!(optimizer.steps(), trainer.optimizer.steps());
    assert_eq!(optimizer.state(), trainer.optimizer.state());
    let (mut resumed, mut resumed_rng) = (saved.model.network, saved.rng);
    let mut resumed_trainer = Trainer::new(optimizer, Batching::Mini(32));
    trainer.epoch(&mut network, &data, &mut rng, |_| {});
    resumed_trainer.epoch(&mut resumed, &data, &mut resumed_rng, |_| {});
    assert_eq!(weights(&mut network), weights(&mut resumed));
    // A state of the wrong size is refused, not used.
    let mut other = Optimizer::new(settings, 0.05);
    let error = checkpoint::load(&path)
        .unwrap()
        .restore_optimizer(&mut other, &[3, 3, 3, 3])
        .unwrap_err();
    assert!(error.contains("expected 3"), "{error}");
}

#[test]
fn a_fits_clean_epochs_train_on_the_stored_images() {
    use mnist_nn::augment::Augmentation;
    use mnist_nn::data::{Preprocessing, RawSplit};
    use mnist_nn::fit::{Augmented, Fit};
    let raw = RawSplit {
        pixels: (0..160 * 784).map(|i| ((i * 37) % 251) as u8).collect(),
        labels: (0..160).map(|i| (i % 10) as u8).collect(),
    };
    let data = Preprocessing::Scale255.dataset(&raw, 0..160);
    let mnist = trained_and_tested_on(data);
    let training = common::sgd_record(2);
    let augmentation: Augmentation = "translate:2".parse().unwrap();
    // Two epochs, the last `clean` of them undistorted (None: no augmentation at all).
    let trained = |clean: Option<usize>| {
        let fit = Fit {
            data: &mnist,
            epochs: 2,
            evaluate_every: 1,
            test_every: None,
            checkpoint: None,
            training: &training,
            keep_last_finite: false,
            augment: clean.map(|clean_epochs| Augmented {
                augmentation: &augmentation,
                pixels: &raw.pixels,
                seed: 7,
                clean_epochs,
            }),
        };
        let mut rng = seeded_rng(46);
        let mut network = Network::mlp(&[784, 16, 10], Init::He, &mut rng);
        let mut trainer = Trainer::sgd(0.1, Batching::Mini(32));
        fit_to_the_end(&fit, &mut network, &mut trainer, &mut rng);
        weights(&mut network)
    };
    let plain = trained(None);
    assert_eq!(trained(Some(2)), plain, "every epoch clean: no distortion");
    let (distorted, last_clean) = (trained(Some(0)), trained(Some(1)));
    assert_ne!(last_clean, plain, "the first epoch is still distorted");
    assert_ne!(last_clean, distorted, "the second epoch is not");
}

#[test]
fn a_fit_stops_on_request_and_at_divergence() {
    use mnist_nn::fit::{CheckpointTarget, Fit, Outcome};
    use mnist_nn::model;
    let images = Array2::from_shape_fn((320, 784), |(i, j)| ((i * 13 + j * 7) % 29) as f32 / 29.0);
    let data = Dataset::new(images, (0..320).map(|i| (i % 10) as u8).collect());
    let mnist = trained_and_tested_on(data);
    let training = common::sgd_record(3);
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = dir.path().join("ck.safetensors");
    let fit = Fit {
        data: &mnist,
        epochs: 3,
        evaluate_every: 1,
        test_every: None,
        checkpoint: Some(CheckpointTarget {
            path: &checkpoint,
            every: None,
        }),
        training: &training,
        keep_last_finite: true,
        augment: None,
    };
    // Asked to stop after the third step: the checkpoint holds the position.
    let mut rng = seeded_rng(44);
    let mut network = Network::mlp(&[784, 16, 10], Init::He, &mut rng);
    let mut trainer = Trainer::sgd(0.1, Batching::Mini(32));
    let steps = std::cell::Cell::new(0);
    let stop = || {
        steps.set(steps.get() + 1);
        steps.get() >= 3
    };
    let (outcome, records) = fit
        .run(&mut network, &mut trainer, &mut rng, None, stop, &mut ())
        .unwrap();
    assert_eq!(
        outcome,
        Outcome::Interrupted {
            epochs_done: 0,
            examples_done: 96
        }
    );
    assert!(records.is_empty());
    assert_eq!(
        mnist_nn::checkpoint::load(&checkpoint)
            .unwrap()
            .progress
            .done,
        96
    );
    // A learning rate that blows up: the first epoch diverges, and the last finite state is the start.
    let mut rng = seeded_rng(45);
    let mut network = Network::mlp(&[784, 16, 10], Init::He, &mut rng);
    let start = weights(&mut network);
    let mut trainer = Trainer::sgd(1e4, Batching::Mini(32));
    match fit_to_the_end(&fit, &mut network, &mut trainer, &mut rng) {
        Outcome::Diverged {
            epoch, last_finite, ..
        } => {
            assert_eq!(epoch, 1);
            let mut kept = model::from_bytes(&last_finite.expect("kept"))
                .unwrap()
                .network;
            assert!(
                weights(&mut kept) == start,
                "the kept model is not the start"
            );
        }
        other => panic!("expected divergence, got {other:?}"),
    }
}
