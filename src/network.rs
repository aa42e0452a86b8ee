//! A sequential network: layers applied one after the other, trained through the loss.
//!
//! ```text
//! forward:   X → layer 1 → layer 2 → ... → logits → softmax cross-entropy → loss
//! backward:  dL/dlogits → ... → layer 2 → layer 1   (the chain rule, one layer at a time)
//! ```
//!
//! A training step uses every core by data parallelism: the batch is cut into one shard per core,
//! each shard goes forward and backward through its own copy of the network, and the gradients
//! are combined. The batch loss is the mean over all `n` rows, so with shard `s` holding `n_s` rows
//! and giving the gradient `g_s` of its own mean,
//!
//! ```text
//! dL/dθ = Σ_s (n_s / n) · g_s
//! ```
//!
//! and every copy takes the same step with it, so the copies stay identical: the cores share the
//! parameters between them, and each hands its share (with the optimiser's state for it) to the
//! optimiser's rule and writes the new values into every copy. Each
//! core also copies its own share of a shuffled batch out of the data set, and runs its products
//! alone: fewer synchronisations than splitting every product between cores.
//! Networks with batch normalisation, whose rows depend on the whole batch, run one copy instead,
//! each layer sharing its own work between the cores (products, groups of images, rows).
//!
//! How a batch is cut does not depend on the machine: into [`DEFAULT_SHARDS`] shards (fewer when
//! the batch is too small to give each [`MIN_SHARD_ROWS`] rows), however many cores there are. A
//! machine with fewer cores than shards runs them one after the other, one with more gives each
//! shard's products several cores, and since neither changes a single sum (see [`crate::gemm`]),
//! a seed gives the same weights, bit for bit, on any number of cores.
//!
//! Not every layer runs: a ReLU right after a layer that can apply it itself ([`Layer::fuse_relu`]:
//! `Linear`, `Conv2d`, `MaxPool2d`, `BatchNorm2d`) is fused into that layer, so is a max pooling
//! right after a convolution ([`Layer::fuse_max_pool`]: `conv, maxpool, relu` runs as one layer),
//! and a `Flatten` is the identity on our `(n, features)` rows. The skipped layers stay in the
//! list of layers, which is the architecture (and the names of a saved model's tensors), but the
//! passes go from one running layer to the next.

use ndarray::{s, Array2, ArrayView2};
use rand::Rng;
use rayon::prelude::*;

use crate::data::Dataset;
use crate::gemm;
use crate::init::Init;
use crate::layers::{ensure_shape, Layer, LayerSpec, Linear, Param, ReLU};
use crate::loss::{argmax, loss_and_correct, LossStats, SoftmaxCrossEntropy};
use crate::optim::{Optimizer, StepContext, UpdateRule};

/// Rows per forward pass when evaluating or predicting: bounds memory on large sets (a
/// convolution's patch matrix for 1,000 MNIST images is already 28 MB).
const EVAL_CHUNK: usize = 1_000;

/// Fewest rows worth a shard of their own in a training step.
pub const MIN_SHARD_ROWS: usize = 32;

/// Shards a training step cuts its batch into, at most: the cores of this project's machines.
pub const DEFAULT_SHARDS: usize = 2;

/// A stack of layers ending in logits, with a softmax cross-entropy loss.
pub struct Network {
    main: Replica,
    /// Copies of `main` for the other shards, made by the first data-parallel step.
    ///
    /// Every helper holds `main`'s parameters, always: a helper starts as a copy of `main`, the
    /// only update ([`update_every_replica`]) writes the same new values into every copy, whether
    /// its shard ran or not, and [`Network::params`], which lets a caller change `main`'s values,
    /// drops the helpers (the next step copies `main` afresh).
    helpers: Vec<Replica>,
    /// Most shards a training step cuts its batch into.
    max_shards: usize,
    /// The random seed of the next training step, for layers such as dropout.
    step_seed: u64,
}

/// One copy of the layers with its own buffers and loss.
struct Replica {
    layers: Vec<Box<dyn Layer>>,
    /// The indices of the layers that run, in order (see the module documentation).
    running: Vec<usize>,
    loss: SoftmaxCrossEntropy,
    /// This copy's share of a batch picked from a data set, `(rows, features)`, and its labels.
    picked_images: Array2<f32>,
    picked_labels: Vec<u8>,
}

/// The examples of one training step.
#[derive(Clone, Copy)]
enum Batch<'a> {
    /// These rows with these labels.
    Rows(ArrayView2<'a, f32>, &'a [u8]),
    /// The examples at `indices` in a data set.
    Picked(&'a Dataset, &'a [u32]),
}

impl Batch<'_> {
    fn len(&self) -> usize {
        match self {
            Batch::Rows(_, labels) => labels.len(),
            Batch::Picked(_, indices) => indices.len(),
        }
    }
}

impl Replica {
    /// A copy over `layers`, with ReLUs fused into the layers below them. The first layer's
    /// input gradient is never needed (nothing learns below the data), so it is not computed.
    fn new(mut layers: Vec<Box<dyn Layer>>) -> Self {
        assert!(!layers.is_empty(), "Network: needs at least one layer");
        layers[0].set_input_grad_needed(false);
        let mut running = vec![0];
        for i in 1..layers.len() {
            let below = *running.last().expect("layer 0 runs");
            let skipped = match layers[i].spec() {
                LayerSpec::ReLU => layers[below].fuse_relu(),
                LayerSpec::MaxPool2d(pool) => layers[below].fuse_max_pool(pool),
                LayerSpec::Flatten { .. } => true,
                _ => false,
            };
            if !skipped {
                running.push(i);
            }
        }
        Replica {
            layers,
            running,
            loss: SoftmaxCrossEntropy::new(),
            picked_images: Array2::zeros((0, 0)),
            picked_labels: Vec::new(),
        }
    }

    /// [`compute_gradients`](Self::compute_gradients) on rows `start..end` of `batch`; picked
    /// examples are first copied into this copy's own buffer (so each core copies its own share).
    fn compute_shard_gradients(&mut self, batch: Batch, start: usize, end: usize) -> LossStats {
        match batch {
            Batch::Rows(images, labels) => {
                self.compute_gradients(images.slice(s![start..end, ..]), &labels[start..end])
            }
            Batch::Picked(data, indices) => {
                let indices = &indices[start..end];
                let mut images = std::mem::take(&mut self.picked_images);
                let mut labels = std::mem::take(&mut self.picked_labels);
                ensure_shape(&mut images, indices.len(), data.images.ncols());
                labels.clear();
                for (mut row, &i) in images.rows_mut().into_iter().zip(indices) {
                    row.assign(&data.images.row(i as usize));
                    labels.push(data.labels[i as usize]);
                }
                let stats = self.compute_gradients(images.view(), &labels);
                (self.picked_images, self.picked_labels) = (images, labels);
                stats
            }
        }
    }

    /// Forward and backward on one batch, leaving `dL/dθ` in every parameter's gradient.
    fn compute_gradients(&mut self, x: ArrayView2<f32>, labels: &[u8]) -> LossStats {
        self.forward(x, true);
        let (running, top) = (&self.running, *self.running.last().expect("layer 0 runs"));
        let (stats, _) = self.loss.loss_and_grad(self.layers[top].output(), labels);
        // Backward: each layer gets its forward input again and the gradient the layer above left.
        for (step, &i) in running.iter().enumerate().rev() {
            let (below, rest) = self.layers.split_at_mut(i);
            let (layer, above) = rest.split_first_mut().expect("i < len");
            let input = step
                .checked_sub(1)
                .map_or(x, |s| below[running[s]].output());
            let grad_output = running
                .get(step + 1)
                .map_or(self.loss.grad(), |&j| above[j - i - 1].grad_input());
            layer.backward(input, grad_output);
        }
        stats
    }

    /// The logits `(n, classes)` for a batch `x` `(n, features)`: each running layer reads the
    /// output the running layer below it keeps.
    fn forward(&mut self, x: ArrayView2<f32>, train: bool) -> ArrayView2<'_, f32> {
        let running = &self.running;
        for (step, &i) in running.iter().enumerate() {
            let (below, rest) = self.layers.split_at_mut(i);
            let input = step
                .checked_sub(1)
                .map_or(x, |s| below[running[s]].output());
            rest[0].forward(input, train);
        }
        self.layers[*running.last().expect("layer 0 runs")].output()
    }

    fn params(&mut self) -> Vec<Param<'_>> {
        self.layers.iter_mut().flat_map(|l| l.params()).collect()
    }

    /// Seeds the random layers for a step whose shard starts at row `first_row` of the batch:
    /// each layer gets its own seed, mixed from the step's and its position.
    fn seed(&mut self, step_seed: u64, first_row: usize) {
        for (i, layer) in self.layers.iter_mut().enumerate() {
            if layer.is_random() {
                // Adding multiples of 2⁶⁴/φ spreads the layers' seeds apart.
                let seed =
                    step_seed.wrapping_add((i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
                layer.seed(seed, first_row);
            }
        }
    }

    /// A copy with the same architecture, parameters and loss.
    fn duplicate(&mut self) -> Replica {
        let mut copy = Replica::new(self.layers.iter().map(|l| l.spec().build()).collect());
        copy.copy_params_from(self);
        copy.loss = SoftmaxCrossEntropy::with_label_smoothing(self.loss.label_smoothing());
        copy
    }

    fn copy_params_from(&mut self, source: &mut Replica) {
        for (to, from) in self.params().into_iter().zip(source.params()) {
            to.value.copy_from_slice(from.value);
        }
    }
}

/// Loss and accuracy over a set of examples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Evaluation {
    /// Mean cross-entropy.
    pub loss: f64,
    /// Fraction of examples classified correctly.
    pub accuracy: f64,
}

impl Network {
    /// A network of the given layers, applied in order. The first layer's input gradient is
    /// never needed, so it is not computed.
    pub fn new(layers: Vec<Box<dyn Layer>>) -> Self {
        Network {
            main: Replica::new(layers),
            helpers: Vec::new(),
            max_shards: DEFAULT_SHARDS,
            step_seed: 0,
        }
    }

    /// Whether a layer draws random numbers while training (dropout does): then every training
    /// step needs a seed of its own, [`seed_step`](Self::seed_step).
    pub fn is_random(&self) -> bool {
        self.main.layers.iter().any(|l| l.is_random())
    }

    /// Sets the random seed of the next training step (and the steps after it, until set again):
    /// [`crate::train::Trainer`] draws one from the run's generator before every step.
    pub fn seed_step(&mut self, seed: u64) {
        self.step_seed = seed;
    }

    /// Sets the most shards a training step cuts its batch into ([`DEFAULT_SHARDS`] unless set;
    /// 1 trains on the whole batch at once). The shards' gradients are summed in another order,
    /// so a different number gives slightly different weights.
    pub fn set_max_shards(&mut self, shards: usize) {
        assert!(shards > 0, "Network: needs at least one shard");
        self.max_shards = shards;
    }

    /// Trains against targets smoothed by `epsilon` from now on (0, the default: the one-hot
    /// labels); see [`crate::loss`]. Evaluation always measures the plain cross-entropy.
    pub fn set_label_smoothing(&mut self, epsilon: f32) {
        self.main.loss = SoftmaxCrossEntropy::with_label_smoothing(epsilon);
        // The next data-parallel step copies `main` afresh, loss included.
        self.helpers.clear();
    }

    /// A multilayer perceptron: `Linear` layers between the given `sizes` (inputs, hidden..., classes)
    /// with a `ReLU` after every one but the last. `mlp(&[784, 32, 16, 10], ..)` is 784-32-16-10.
    pub fn mlp(sizes: &[usize], init: Init, rng: &mut impl Rng) -> Self {
        assert!(
            sizes.len() >= 2,
            "Network::mlp: needs input and output sizes"
        );
        assert!(
            sizes.iter().all(|&s| s > 0),
            "Network::mlp: sizes must be positive, got {sizes:?}"
        );
        let mut layers: Vec<Box<dyn Layer>> = Vec::new();
        for (i, pair) in sizes.windows(2).enumerate() {
            layers.push(Box::new(Linear::new(pair[0], pair[1], init, rng)));
            if i + 2 < sizes.len() {
                layers.push(Box::new(ReLU::new()));
            }
        }
        Network::new(layers)
    }

    /// The layers, in order: the architecture. (A fused ReLU or a Flatten does not run, so its
    /// [`Layer::output`] stays empty; [`Network::forward`] gives the logits.)
    pub fn layers(&self) -> &[Box<dyn Layer>] {
        &self.main.layers
    }

    /// What each layer is, without its numbers: the architecture as data (what a saved model
    /// records, and what `--from` and `--resume` compare).
    pub fn specs(&self) -> Vec<LayerSpec> {
        self.main.layers.iter().map(|l| l.spec()).collect()
    }

    /// One line per layer, such as `Linear(784 -> 32) → ReLU → Linear(32 -> 10)`.
    pub fn describe(&self) -> String {
        let names: Vec<String> = self.main.layers.iter().map(|l| l.describe()).collect();
        names.join(" → ")
    }

    /// Total number of learnable values.
    pub fn parameter_count(&mut self) -> usize {
        self.params().iter().map(|p| p.value.len()).sum()
    }

    /// Every layer's parameters with their gradients, first layer first.
    pub fn params(&mut self) -> Vec<Param<'_>> {
        // The caller may change them: the helpers would no longer be copies.
        self.helpers.clear();
        self.main.params()
    }

    /// Floating-point operations of one training step on `batch` rows (the matrix products).
    pub fn training_flops(&self, batch: usize) -> u64 {
        self.main
            .layers
            .iter()
            .map(|l| l.training_flops(batch))
            .sum()
    }

    /// The logits `(n, classes)` for a batch `x` `(n, features)`.
    pub fn forward(&mut self, x: ArrayView2<f32>, train: bool) -> ArrayView2<'_, f32> {
        self.main.forward(x, train)
    }

    /// Forward and backward on one batch: afterwards every [`Param::grad`] holds `dL/dθ` for the
    /// batch-averaged loss. Returns the loss and the number of correct predictions (before any update).
    pub fn compute_gradients(&mut self, x: ArrayView2<f32>, labels: &[u8]) -> LossStats {
        self.main.seed(self.step_seed, 0);
        self.main.compute_gradients(x, labels)
    }

    /// One step of `optimizer` on a batch (for plain SGD, `θ ← θ - lr · dL/dθ` for every
    /// parameter), with the batch shared between the cores (see the module documentation).
    /// Returns the loss and the number of correct predictions, before the update.
    pub fn train_step(
        &mut self,
        x: ArrayView2<f32>,
        labels: &[u8],
        optimizer: &mut Optimizer,
    ) -> LossStats {
        assert_eq!(
            x.nrows(),
            labels.len(),
            "train_step: {} rows but {} labels",
            x.nrows(),
            labels.len()
        );
        self.step(Batch::Rows(x, labels), optimizer)
    }

    /// [`train_step`](Self::train_step) on the examples of `data` at `indices` (a shuffled
    /// minibatch): each core copies its own share of them, as part of its work.
    pub fn train_step_on(
        &mut self,
        data: &Dataset,
        indices: &[u32],
        optimizer: &mut Optimizer,
    ) -> LossStats {
        self.step(Batch::Picked(data, indices), optimizer)
    }

    fn step(&mut self, batch: Batch, optimizer: &mut Optimizer) -> LossStats {
        let n = batch.len();
        let shards = self.shard_count(n);
        while self.helpers.len() < shards - 1 {
            let copy = self.main.duplicate();
            self.helpers.push(copy);
        }
        let bounds: Vec<(usize, usize)> = (0..shards)
            .map(|s| (s * n / shards, (s + 1) * n / shards))
            .collect();
        let mut replicas: Vec<&mut Replica> = std::iter::once(&mut self.main)
            .chain(self.helpers.iter_mut())
            .collect();
        // Every shard's gradients, the shards sharing the cores.
        let threads_per_shard = (gemm::cores() / shards).max(1);
        let step_seed = self.step_seed;
        let stats: Vec<LossStats> = replicas[..shards]
            .par_iter_mut()
            .zip(&bounds)
            .map(|(replica, &(start, end))| {
                replica.seed(step_seed, start);
                gemm::with_threads(threads_per_shard, || {
                    replica.compute_shard_gradients(batch, start, end)
                })
            })
            .collect();
        // The optimiser's step with g = Σ_s (n_s / n) · g_s, in every copy.
        let weights: Vec<f32> = bounds
            .iter()
            .map(|&(start, end)| (end - start) as f32 / n as f32)
            .collect();
        update_every_replica(&mut replicas, &weights, optimizer);
        let mut total = LossStats {
            loss: 0.0,
            correct: 0,
        };
        for (shard, &(start, end)) in stats.iter().zip(&bounds) {
            total.loss += shard.loss * (end - start) as f64 / n as f64;
            total.correct += shard.correct;
        }
        total
    }

    /// How many shards a training step on `rows` rows uses.
    fn shard_count(&self, rows: usize) -> usize {
        if self.main.layers.iter().any(|l| l.needs_whole_batch()) {
            return 1;
        }
        self.max_shards.min(rows / MIN_SHARD_ROWS).max(1)
    }

    /// The predicted class of every row of `x`.
    pub fn predict(&mut self, x: ArrayView2<f32>) -> Vec<u8> {
        let mut predictions = Vec::with_capacity(x.nrows());
        for start in (0..x.nrows()).step_by(EVAL_CHUNK) {
            let end = (start + EVAL_CHUNK).min(x.nrows());
            let logits = self.forward(x.slice(s![start..end, ..]), false);
            predictions.extend(
                logits
                    .rows()
                    .into_iter()
                    .map(|row| argmax(row.iter().copied()) as u8),
            );
        }
        predictions
    }

    /// Mean loss and accuracy on `x` `(n, features)` with `labels` `(n)`, in inference mode.
    pub fn evaluate(&mut self, x: ArrayView2<f32>, labels: &[u8]) -> Evaluation {
        assert_eq!(
            x.nrows(),
            labels.len(),
            "evaluate: {} rows but {} labels",
            x.nrows(),
            labels.len()
        );
        let (mut total_loss, mut correct) = (0.0, 0);
        for start in (0..x.nrows()).step_by(EVAL_CHUNK) {
            let end = (start + EVAL_CHUNK).min(x.nrows());
            let logits = self.forward(x.slice(s![start..end, ..]), false);
            let stats = loss_and_correct(logits, &labels[start..end]);
            total_loss += stats.loss * (end - start) as f64;
            correct += stats.correct;
        }
        let n = x.nrows().max(1) as f64;
        Evaluation {
            loss: total_loss / n,
            accuracy: correct as f64 / n,
        }
    }
}

/// One piece of a parameter: its values in every replica (to update), its gradient in every
/// shard that ran, and the optimiser's state for it.
type UpdatePiece<'a> = (Vec<&'a mut [f32]>, Vec<&'a [f32]>, Vec<&'a mut [f32]>);

/// Values per piece of work when the cores share a parameter update (128 KiB of each array: 2%
/// faster cnn and minibatch steps than 32 KiB, and than 256 KiB, measured alternately in one process).
const UPDATE_PIECE: usize = 1 << 15;

/// One step of `optimizer` for every parameter `θ` (the same in all the replicas), with the
/// gradient `g = Σ_s weight_s · g_s` combined from the first `weights.len()` replicas (the shards
/// that ran). The parameters are cut into pieces, with their state, that the cores share; each
/// piece's new values are computed once and copied into every replica, so all of them keep
/// holding the same values.
fn update_every_replica(replicas: &mut [&mut Replica], weights: &[f32], optimizer: &mut Optimizer) {
    let shards = weights.len();
    let params: Vec<Vec<Param>> = replicas.iter_mut().map(|r| r.params()).collect();
    let lengths: Vec<usize> = params[0].iter().map(|p| p.value.len()).collect();
    let StepContext { rule, t, lr, state } = optimizer.begin_step(&lengths);
    let mut params: Vec<_> = params.into_iter().map(Vec::into_iter).collect();
    let mut pieces: Vec<UpdatePiece> = Vec::new();
    for param_state in state.iter_mut() {
        let first = params[0].next().expect("as many parameters as lengths");
        let mut group = vec![first];
        group.extend(
            params[1..]
                .iter_mut()
                .map(|p| p.next().expect("same layers")),
        );
        let (mut values, mut grads): (Vec<_>, Vec<_>) = group
            .into_iter()
            .map(|p| {
                (
                    p.value.chunks_mut(UPDATE_PIECE),
                    p.grad.chunks(UPDATE_PIECE),
                )
            })
            .unzip();
        grads.truncate(shards);
        let mut states: Vec<_> = param_state
            .iter_mut()
            .map(|s| s.chunks_mut(UPDATE_PIECE))
            .collect();
        while let Some(value) = values[0].next() {
            let mut piece = vec![value];
            piece.extend(values[1..].iter_mut().map(|v| v.next().expect("same size")));
            let piece_grads = grads.iter_mut().map(|g| g.next().expect("same size"));
            let piece_state = states.iter_mut().map(|s| s.next().expect("same size"));
            pieces.push((piece, piece_grads.collect(), piece_state.collect()));
        }
    }
    pieces
        .into_par_iter()
        .for_each(|(mut values, grads, mut state)| {
            let (first, others) = values.split_first_mut().expect("at least one replica");
            update_piece(first, &grads, weights, &mut state, rule, t, lr);
            for other in others {
                other.copy_from_slice(first);
            }
        });
}

/// `g = Σ_s weight_s · grad_s`, then the rule's update of `value` and its `state` with it, a block
/// at a time so that the loops vectorise and `g` stays in the first-level cache.
fn update_piece(
    value: &mut [f32],
    grads: &[&[f32]],
    weights: &[f32],
    state: &mut [&mut [f32]],
    rule: &dyn UpdateRule,
    t: u64,
    lr: f64,
) {
    const BLOCK: usize = 256;
    let mut sum = [0.0f32; BLOCK];
    for (start, block) in (0..value.len()).step_by(BLOCK).zip(value.chunks_mut(BLOCK)) {
        let range = start..start + block.len();
        let sum = &mut sum[..block.len()];
        sum.fill(0.0);
        for (grad, &weight) in grads.iter().zip(weights) {
            for (total, &g) in sum.iter_mut().zip(&grad[range.clone()]) {
                *total += weight * g;
            }
        }
        // The rules keep at most two arrays (Adam's moments): slice them without allocating.
        match state {
            [] => rule.update(block, sum, &mut [], t, lr),
            [a] => rule.update(block, sum, &mut [&mut a[range]], t, lr),
            [a, b] => {
                let (a, b) = (&mut a[range.clone()], &mut b[range]);
                rule.update(block, sum, &mut [a, b], t, lr)
            }
            _ => unreachable!("no rule keeps more than two state arrays"),
        }
    }
}
