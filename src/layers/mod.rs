//! Layers: each one a forward pass and the backward pass that undoes it.
//!
//! Every layer works on a batch: its input is a matrix of shape `(batch, in_features)` with one
//! example per row, its output `(batch, out_features)`. The backward pass receives `dL/d output`
//! (same shape as the output) together with the input of the forward pass, and returns
//! `dL/d input` (same shape as the input); on the way it stores the gradients of the layer's own
//! parameters. Layers keep, between the two passes, whatever else the backward pass needs (the
//! output for [`ReLU`], the patches for [`Conv2d`]).
//!
//! Layers own their output and gradient buffers and hand out views of them, so a training loop
//! reuses them from batch to batch (only small per-feature vectors, such as batch
//! normalisation's statistics, are made afresh).

mod avg_pool;
mod batchnorm;
mod batchnorm2d;
mod conv2d;
mod crop;
mod direct;
mod dropout;
mod flatten;
mod lanes;
mod linear;
mod max_pool;
mod pad;
mod partial_conv;
mod pool;
mod relu;
mod spec;
pub(crate) mod subsample;
mod tanh;
mod winograd;

pub use avg_pool::AvgPool2d;
pub use batchnorm::BatchNorm1d;
pub use batchnorm2d::BatchNorm2d;
pub use conv2d::{Conv2d, ConvShape};
pub use crop::{Crop2d, CropShape};
pub use direct::check as check_direct;
pub use dropout::Dropout;
pub use flatten::Flatten;
pub use linear::Linear;
pub use max_pool::MaxPool2d;
pub use pad::{Pad2d, PadShape};
pub use partial_conv::{check_table, lenet5_table, ConnectionTable, PartialConv2d};
pub use pool::PoolShape;
pub use relu::ReLU;
pub(crate) use relu::{relu_backward, relu_in_place};
pub use spec::{LayerSpec, Tensor};
pub use subsample::Subsample2d;
pub use tanh::{Tanh, LECUN_TANH};
pub use winograd::{check as check_winograd, product_flops as winograd_product_flops};

use ndarray::{Array2, ArrayView2};

/// A learnable parameter of a layer: its values and the gradient of the loss with respect to
/// them, as computed by the last [`Layer::backward`]. Both slices have the same length.
pub struct Param<'a> {
    /// What the parameter is called inside its layer (`"weight"`, `"bias"`, ...).
    pub name: &'static str,
    /// The values, in row-major order, for the optimiser (and gradient checks) to change.
    pub value: &'a mut [f32],
    /// `dL/d value`, in the same order.
    pub grad: &'a [f32],
}

/// One differentiable step of a network.
pub trait Layer: Send {
    /// Computes the output for a batch `input` of shape `(batch, in_features)`.
    ///
    /// `train` is true while training (a layer may then keep what its backward pass needs, or
    /// behave differently, as batch normalisation does) and false for inference.
    fn forward(&mut self, input: ArrayView2<f32>, train: bool) -> ArrayView2<'_, f32>;

    /// Given the `input` of the last `forward(.., true)` and `dL/d output` for it, stores the
    /// gradients of this layer's parameters and returns `dL/d input`. (The network hands the input
    /// back rather than the layer copying it: it is the output the layer below still holds.)
    fn backward(
        &mut self,
        input: ArrayView2<f32>,
        grad_output: ArrayView2<f32>,
    ) -> ArrayView2<'_, f32>;

    /// The output of the last forward pass (what `forward` returned).
    fn output(&self) -> ArrayView2<'_, f32>;

    /// `dL/d input` of the last backward pass (what `backward` returned).
    fn grad_input(&self) -> ArrayView2<'_, f32>;

    /// The learnable parameters with their gradients (none by default).
    fn params(&mut self) -> Vec<Param<'_>> {
        Vec::new()
    }

    /// Tells the layer whether `backward` must compute `dL/d input`. The first layer of a network
    /// has no use for it (nothing learns below the data), which saves a third of its work.
    fn set_input_grad_needed(&mut self, _needed: bool) {}

    /// Asks the layer to apply the ReLU that follows it in a network itself: to output
    /// `max(0, Z)` instead of `Z` (clamped in place right after its product) and to start its
    /// backward pass with `dZ = dY ⊙ [Y > 0]`. Returns whether it does so from now on; the
    /// network then skips the ReLU layer. Layers that cannot return false (the default).
    fn fuse_relu(&mut self) -> bool {
        false
    }

    /// Asks the layer to apply the max pooling of shape `pool` that follows it in a network itself:
    /// to output the pooled values, keeping its unpooled output only while it computes them, and
    /// to start its backward pass by sending each window's gradient to the value that won it.
    /// Returns whether it does so from now on; the network then skips the pooling layer. Layers
    /// that cannot return false (the default).
    fn fuse_max_pool(&mut self, _pool: PoolShape) -> bool {
        false
    }

    /// Whether the training forward pass of a row depends on the other rows of its batch (batch
    /// normalisation's statistics do). Such a network cannot split a batch between cores.
    fn needs_whole_batch(&self) -> bool {
        false
    }

    /// Whether the layer draws random numbers while training (dropout does).
    fn is_random(&self) -> bool {
        false
    }

    /// Gives a random layer the seed of this training step (its own: the network mixes in the
    /// layer's position) and the position in the batch of its first input row (a shard's first
    /// row), so that each example of a step gets the same random numbers however the batch is
    /// split between cores.
    fn seed(&mut self, _seed: u64, _first_row: usize) {}

    /// Floating-point operations of one training step (forward and backward) on `batch` rows,
    /// counting the matrix products, `2·m·k·n` each, which do almost all the work.
    fn training_flops(&self, _batch: usize) -> u64 {
        0
    }

    /// A one-line description, such as `Linear(784 -> 32)`.
    fn describe(&self) -> String;

    /// What kind of layer this is and its sizes, to rebuild it from a saved model.
    fn spec(&self) -> LayerSpec;

    /// Every tensor to save (parameters and running statistics), in PyTorch's layout.
    fn export(&self) -> Vec<Tensor> {
        Vec::new()
    }

    /// Loads every tensor `export` saves: `tensor(name, shape)` returns the values of the tensor
    /// called `name`, or an error if it is missing or has another shape.
    fn import(&mut self, _tensor: &mut TensorSource<'_>) -> Result<(), String> {
        Ok(())
    }
}

/// Where [`Layer::import`] gets a tensor by name and expected shape.
pub type TensorSource<'a> = dyn FnMut(&str, &[usize]) -> Result<Vec<f32>, String> + 'a;

/// A layer's two parameters called `names` (`weight` and `bias`, or batch normalisation's `gamma`
/// and `beta`), each given as its values and its gradient, arrays in standard layout.
pub(crate) fn two_params<'a, D: ndarray::Dimension>(
    names: [&'static str; 2],
    (first, grad_first): (&'a mut ndarray::Array<f32, D>, &'a ndarray::Array<f32, D>),
    (second, grad_second): (&'a mut ndarray::Array1<f32>, &'a ndarray::Array1<f32>),
) -> Vec<Param<'a>> {
    vec![
        Param {
            name: names[0],
            value: first.as_slice_mut().expect("standard layout"),
            grad: grad_first.as_slice().expect("standard layout"),
        },
        Param {
            name: names[1],
            value: second.as_slice_mut().expect("standard layout"),
            grad: grad_second.as_slice().expect("standard layout"),
        },
    ]
}

/// Makes `buffer` a `(rows, cols)` matrix, reallocating only when the shape changes: buffers then
/// live across batches, and a training loop allocates only when the batch size changes.
pub(crate) fn ensure_shape(buffer: &mut Array2<f32>, rows: usize, cols: usize) {
    if buffer.dim() != (rows, cols) {
        *buffer = Array2::zeros((rows, cols));
    }
}

/// Checks that a batch has the number of features a layer expects, with a message naming it.
pub(crate) fn check_features(layer: &str, expected: usize, got: ArrayView2<f32>) {
    assert_eq!(
        got.ncols(),
        expected,
        "{layer}: expected input of shape (batch, {expected}), got {:?}",
        got.dim()
    );
}
