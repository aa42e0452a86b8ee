//! The fully connected layer: every output is a weighted sum of every input, plus a bias.
//!
//! Forward, for a batch `X` of shape `(n, in)`:
//!
//! ```text
//! Y = X·W + b            W: (in, out), b: (out), Y: (n, out); b is added to every row
//! ```
//!
//! Backward, given `dY = dL/dY` of shape `(n, out)`. Since `Y[i,j] = Σ_k X[i,k]·W[k,j] + b[j]`:
//!
//! ```text
//! dW = Xᵀ·dY             (in, out)   each weight collects input × output-gradient over the batch
//! db = Σ_rows dY         (out)       the bias touches every row with weight 1
//! dX = dY·Wᵀ             (n, in)     each input fed every output through its weight
//! ```
//!
//! With a ReLU fused into the layer ([`Layer::fuse_relu`]) the output is `Y = max(0, X·W + b)`,
//! clamped block by block while it is still in cache, and backward first masks the gradient,
//! `dZ = dY ⊙ [Y > 0]` `(n, out)`, then uses `dZ` in place of `dY` above.
//!
//! Samson Zhang's tutorial network instead moves all of a layer's biases by one scalar,
//! `Σ_rows Σ_cols dY` (the sum of every entry of the delta); [`Linear::with_shared_bias_gradient`]
//! reproduces that.

use ndarray::{Array1, Array2, ArrayView2, Axis, Zip};
use rand::Rng;

use super::{
    check_features, ensure_shape, relu_backward, relu_in_place, two_params, Layer, LayerSpec,
    Param, Tensor, TensorSource,
};
use crate::gemm::matmul;
use crate::init::Init;

/// Rows per product in the forward pass: a block of `Y` this size is still in cache between being
/// set to the bias and receiving `X·W` (6% off a full-batch epoch of 784-300-100-10).
const FORWARD_BLOCK_ROWS: usize = 2048;

/// `Y = X·W + b` with a weight matrix `W: (in, out)` and a vector bias `b: (out)`.
pub struct Linear {
    /// `(in, out)`
    pub weight: Array2<f32>,
    /// `(out)`
    pub bias: Array1<f32>,
    /// `dL/dW`, `(in, out)`
    pub grad_weight: Array2<f32>,
    /// `dL/db`, `(out)`
    pub grad_bias: Array1<f32>,
    input_grad_needed: bool,
    shared_bias_gradient: bool,
    /// Whether the layer applies the ReLU that follows it.
    fused_relu: bool,
    /// `Y`, `(n, out)`
    output: Array2<f32>,
    /// `dZ = dY ⊙ [Y > 0]` when a ReLU is fused, `(n, out)`
    grad_pre_activation: Array2<f32>,
    /// `dX`, `(n, in)`
    grad_input: Array2<f32>,
}

impl Linear {
    /// A layer from `inputs` to `outputs` features, initialised by `init`.
    pub fn new(inputs: usize, outputs: usize, init: Init, rng: &mut impl Rng) -> Self {
        Self::from_params(
            init.weights(inputs, outputs, rng),
            init.bias(inputs, outputs, rng),
        )
    }

    /// A layer with the given weight `(in, out)` and bias `(out)`.
    pub fn from_params(weight: Array2<f32>, bias: Array1<f32>) -> Self {
        assert_eq!(
            weight.ncols(),
            bias.len(),
            "Linear: weight {:?} and bias ({}) disagree on the number of outputs",
            weight.dim(),
            bias.len()
        );
        Linear {
            grad_weight: Array2::zeros(weight.dim()),
            grad_bias: Array1::zeros(bias.len()),
            weight,
            bias,
            input_grad_needed: true,
            shared_bias_gradient: false,
            fused_relu: false,
            output: Array2::zeros((0, 0)),
            grad_pre_activation: Array2::zeros((0, 0)),
            grad_input: Array2::zeros((0, 0)),
        }
    }

    /// The same layer, but every bias entry receives the one scalar gradient `Σ_rows Σ_cols dY`,
    /// as in Samson Zhang's tutorial (`db = 1/m · np.sum(dZ)`; our `dY` already carries the `1/m`).
    pub fn with_shared_bias_gradient(mut self) -> Self {
        self.shared_bias_gradient = true;
        self
    }

    /// Number of input features.
    pub fn inputs(&self) -> usize {
        self.weight.nrows()
    }

    /// Number of output features.
    pub fn outputs(&self) -> usize {
        self.weight.ncols()
    }
}

impl Layer for Linear {
    fn forward(&mut self, input: ArrayView2<f32>, _train: bool) -> ArrayView2<'_, f32> {
        check_features("Linear", self.inputs(), input);
        let (n, outputs) = (input.nrows(), self.outputs());
        ensure_shape(&mut self.output, n, outputs);
        // Y = b (broadcast over rows), then Y += X·W (then Y = max(0, Y) if fused), a block of
        // rows at a time: each block of Y is still in cache when the product adds to it.
        let blocks = input.axis_chunks_iter(Axis(0), FORWARD_BLOCK_ROWS);
        for (x, mut y) in blocks.zip(
            self.output
                .axis_chunks_iter_mut(Axis(0), FORWARD_BLOCK_ROWS),
        ) {
            y.assign(&self.bias);
            matmul(x, self.weight.view(), true, y.view_mut());
            if self.fused_relu {
                relu_in_place(y.as_slice_mut().expect("contiguous rows"));
            }
        }
        self.output.view()
    }

    fn backward(
        &mut self,
        input: ArrayView2<f32>,
        grad_output: ArrayView2<f32>,
    ) -> ArrayView2<'_, f32> {
        check_features("Linear", self.inputs(), input);
        assert_eq!(
            grad_output.dim(),
            (input.nrows(), self.outputs()),
            "Linear: the gradient's shape does not match the input's and the layer's"
        );
        // With a fused ReLU, everything below uses dZ = dY ⊙ [Y > 0] in place of dY.
        let grad_output = if self.fused_relu {
            relu_backward(
                self.output.view(),
                grad_output,
                &mut self.grad_pre_activation,
            );
            self.grad_pre_activation.view()
        } else {
            grad_output
        };
        // dW = Xᵀ·dY
        matmul(input.t(), grad_output, false, self.grad_weight.view_mut());
        // db = Σ_rows dY (or, shared, its sum over the units too)
        self.grad_bias.fill(0.0);
        for row in grad_output.axis_iter(Axis(0)) {
            Zip::from(&mut self.grad_bias)
                .and(&row)
                .for_each(|g, &d| *g += d);
        }
        if self.shared_bias_gradient {
            let total = self.grad_bias.sum();
            self.grad_bias.fill(total);
        }
        // dX = dY·Wᵀ (skipped when nothing below needs it)
        let inputs = self.inputs();
        if self.input_grad_needed {
            ensure_shape(&mut self.grad_input, grad_output.nrows(), inputs);
            matmul(
                grad_output,
                self.weight.t(),
                false,
                self.grad_input.view_mut(),
            );
        } else {
            ensure_shape(&mut self.grad_input, 0, inputs);
        }
        self.grad_input.view()
    }

    fn output(&self) -> ArrayView2<'_, f32> {
        self.output.view()
    }

    fn grad_input(&self) -> ArrayView2<'_, f32> {
        self.grad_input.view()
    }
    fn params(&mut self) -> Vec<Param<'_>> {
        two_params(
            ["weight", "bias"],
            (&mut self.weight, &self.grad_weight),
            (&mut self.bias, &self.grad_bias),
        )
    }

    fn set_input_grad_needed(&mut self, needed: bool) {
        self.input_grad_needed = needed;
    }

    fn fuse_relu(&mut self) -> bool {
        self.fused_relu = true;
        true
    }

    /// Forward `Y = X·W` and `dW = Xᵀ·dY` cost `2·n·in·out` each, `dX = dY·Wᵀ` as much again.
    fn training_flops(&self, batch: usize) -> u64 {
        let products = if self.input_grad_needed { 3 } else { 2 };
        products * 2 * (batch * self.inputs() * self.outputs()) as u64
    }

    fn describe(&self) -> String {
        format!("Linear({} -> {})", self.inputs(), self.outputs())
    }

    fn spec(&self) -> LayerSpec {
        LayerSpec::Linear {
            inputs: self.inputs(),
            outputs: self.outputs(),
            shared_bias_gradient: self.shared_bias_gradient,
        }
    }

    /// PyTorch stores `W` transposed, `(out, in)`, as `nn.Linear` computes `X·Wᵀ + b`.
    fn export(&self) -> Vec<Tensor> {
        vec![
            Tensor {
                name: "weight",
                shape: vec![self.outputs(), self.inputs()],
                values: self.weight.t().iter().copied().collect(),
            },
            Tensor {
                name: "bias",
                shape: vec![self.outputs()],
                values: self.bias.to_vec(),
            },
        ]
    }

    fn import(&mut self, tensor: &mut TensorSource<'_>) -> Result<(), String> {
        let (inputs, outputs) = self.weight.dim();
        let weight_t = tensor("weight", &[outputs, inputs])?;
        let weight_t =
            Array2::from_shape_vec((outputs, inputs), weight_t).map_err(|e| e.to_string())?;
        self.weight = weight_t.t().as_standard_layout().into_owned();
        self.bias = Array1::from_vec(tensor("bias", &[outputs])?);
        Ok(())
    }
}
