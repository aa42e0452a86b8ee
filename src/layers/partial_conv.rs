//! A convolution whose output maps each see only some of the input maps, as a connection table
//! says: LeNet-5's layer C3.
//!
//! LeCun et al. (1998, Table I) connect each of C3's 16 maps to 3, 4 or all 6 of S2's maps, "to
//! break the symmetry in the network": maps that see different inputs are forced to learn
//! different, complementary features (and the layer needs 1,516 parameters instead of 2,416).
//!
//! Forward. With `T[o]` the input maps of output map `o` and `K[o, c]` the `k x k` kernel of each
//! connection `(o, c)`:
//!
//! ```text
//! Y[o, y, x] = b[o] + Σ_{c ∈ T[o]} Σ_{ky, kx} K[o, c][ky, kx] · X[c, y·stride + ky, x·stride + kx]
//! ```
//!
//! which is an ordinary [`Conv2d`] whose kernels between unconnected maps are zero. The layer is
//! computed that way: its kernels, `(connections, k·k)`, are copied into the dense weight
//! `W: (out_channels, in_channels·k·k)` before each forward pass (the other entries stay zero),
//! and the dense convolution does the rest. For C3 that is 2.5 times the necessary work (480,000
//! FLOPs per image forward instead of 300,000), spent in one product per image instead of 60
//! small ones.
//!
//! Backward. The dense layer gives `dW` for every entry of `W`; a kernel's gradient is its own
//! block of `dW` (the zero blocks' gradients are dropped: those weights do not exist). The bias
//! and the input gradient are the dense layer's: the zero kernels add nothing to `dX`.

use ndarray::{Array1, Array2, ArrayView2};
use rand::Rng;

use super::{two_params, Conv2d, ConvShape, Layer, LayerSpec, Param, Tensor, TensorSource};
use crate::init::Init;

/// `table[o]`: the input maps that output map `o` sees, in increasing order.
pub type ConnectionTable = Vec<Vec<usize>>;

/// LeNet-5's Table I: which of S2's 6 maps each of C3's 16 maps sees. The first six see three
/// neighbouring maps, the next six four neighbouring maps, three more four maps in two pairs,
/// and the last all six.
pub fn lenet5_table() -> ConnectionTable {
    let neighbours = |first: usize, count: usize| -> Vec<usize> {
        let mut maps: Vec<usize> = (first..first + count).map(|c| c % 6).collect();
        maps.sort_unstable();
        maps
    };
    let mut table: ConnectionTable = (0..6).map(|o| neighbours(o, 3)).collect();
    table.extend((0..6).map(|o| neighbours(o, 4)));
    table.extend([vec![0, 1, 3, 4], vec![1, 2, 4, 5], vec![0, 2, 3, 5]]);
    table.push((0..6).collect());
    table
}

/// Whether `table` connects `out_channels` maps to some of `in_channels` maps, and if not why.
pub fn check_table(
    table: &[Vec<usize>],
    in_channels: usize,
    out_channels: usize,
) -> Result<(), String> {
    if table.len() != out_channels {
        return Err(format!(
            "the connection table lists {} output maps, the layer has {out_channels}",
            table.len()
        ));
    }
    for (o, inputs) in table.iter().enumerate() {
        if inputs.is_empty() {
            return Err(format!("output map {o} is connected to no input map"));
        }
        if inputs.windows(2).any(|w| w[0] >= w[1]) {
            return Err(format!(
                "output map {o}'s input maps must be listed once each, in increasing order"
            ));
        }
        if let Some(&c) = inputs.iter().find(|&&c| c >= in_channels) {
            return Err(format!(
                "output map {o} is connected to input map {c}, but there are {in_channels}"
            ));
        }
    }
    Ok(())
}

/// A convolution with a connection table; see the module documentation for the maths.
pub struct PartialConv2d {
    /// Which input maps each output map sees.
    pub table: ConnectionTable,
    /// The kernels, `(connections, k·k)`: output map 0's connections in the table's order, then
    /// output map 1's, and so on.
    pub weight: Array2<f32>,
    /// `dL/d weight`, same shape.
    pub grad_weight: Array2<f32>,
    /// The dense convolution that computes the layer: its weight holds the kernels and zeros,
    /// its bias is the layer's bias `(out_channels)`.
    dense: Conv2d,
}

impl PartialConv2d {
    /// A convolution of the given shape and table, each output map's kernels and bias drawn by
    /// `init` with `fan_in = |table[o]|·k·k` (the inputs a unit of that map really has).
    pub fn new(shape: ConvShape, table: ConnectionTable, init: Init, rng: &mut impl Rng) -> Self {
        let taps = shape.kernel * shape.kernel;
        let fan_in = |inputs: &Vec<usize>| inputs.len() * taps;
        let weight: Vec<f32> = table
            .iter()
            .flat_map(|inputs| init.sample(fan_in(inputs), shape.out_channels, fan_in(inputs), rng))
            .collect();
        let bias: Vec<f32> = table
            .iter()
            .flat_map(|inputs| init.bias(fan_in(inputs), 1, rng))
            .collect();
        let connections = weight.len() / taps;
        let weight =
            Array2::from_shape_vec((connections, taps), weight).expect("k·k per connection");
        Self::from_params(shape, table, weight, Array1::from(bias))
    }

    /// A convolution with the given kernels `(connections, k·k)` and bias `(out_channels)`.
    pub fn from_params(
        shape: ConvShape,
        table: ConnectionTable,
        weight: Array2<f32>,
        bias: Array1<f32>,
    ) -> Self {
        if let Err(problem) = check_table(&table, shape.in_channels, shape.out_channels) {
            panic!("PartialConv2d: {problem}");
        }
        let connections: usize = table.iter().map(Vec::len).sum();
        assert_eq!(
            weight.dim(),
            (connections, shape.kernel * shape.kernel),
            "PartialConv2d: weight must be (connections, k·k)"
        );
        let dense = Conv2d::from_params(
            shape,
            Array2::zeros((shape.out_channels, shape.taps())),
            bias,
        );
        PartialConv2d {
            grad_weight: Array2::zeros(weight.dim()),
            table,
            weight,
            dense,
        }
    }

    /// The geometry of the dense convolution.
    pub fn shape(&self) -> ConvShape {
        self.dense.shape
    }

    /// The bias, `(out_channels)`.
    pub fn bias(&self) -> &Array1<f32> {
        &self.dense.bias
    }
}

/// Every connection `(o, c)` of `table` with its position: output map by output map, each map's
/// inputs in the table's order, which is the order of the rows of [`PartialConv2d::weight`].
fn connections(table: &[Vec<usize>]) -> impl Iterator<Item = (usize, (usize, usize))> + '_ {
    table
        .iter()
        .enumerate()
        .flat_map(|(o, inputs)| inputs.iter().map(move |&c| (o, c)))
        .enumerate()
}

impl Layer for PartialConv2d {
    fn forward(&mut self, input: ArrayView2<f32>, train: bool) -> ArrayView2<'_, f32> {
        // Kernel k of connection (o, c) goes to W[o, c·k·k .. (c + 1)·k·k].
        let taps = self.weight.ncols();
        for (k, (o, c)) in connections(&self.table) {
            let block = ndarray::s![o, c * taps..(c + 1) * taps];
            self.dense
                .weight
                .slice_mut(block)
                .assign(&self.weight.row(k));
        }
        self.dense.forward(input, train)
    }

    fn backward(
        &mut self,
        input: ArrayView2<f32>,
        grad_output: ArrayView2<f32>,
    ) -> ArrayView2<'_, f32> {
        self.dense.backward(input, grad_output);
        // Kernel k's gradient is its block of dW; the zero blocks' gradients are dropped.
        let taps = self.weight.ncols();
        for (k, (o, c)) in connections(&self.table) {
            let block = ndarray::s![o, c * taps..(c + 1) * taps];
            self.grad_weight
                .row_mut(k)
                .assign(&self.dense.grad_weight.slice(block));
        }
        self.dense.grad_input()
    }

    fn output(&self) -> ArrayView2<'_, f32> {
        self.dense.output()
    }

    fn grad_input(&self) -> ArrayView2<'_, f32> {
        self.dense.grad_input()
    }

    fn params(&mut self) -> Vec<Param<'_>> {
        two_params(
            ["weight", "bias"],
            (&mut self.weight, &self.grad_weight),
            (&mut self.dense.bias, &self.dense.grad_bias),
        )
    }

    fn set_input_grad_needed(&mut self, needed: bool) {
        self.dense.set_input_grad_needed(needed);
    }

    fn fuse_relu(&mut self) -> bool {
        self.dense.fuse_relu()
    }

    /// The dense products the layer computes, zero kernels included.
    fn training_flops(&self, batch: usize) -> u64 {
        self.dense.training_flops(batch)
    }

    fn describe(&self) -> String {
        let s = self.shape();
        format!(
            "PartialConv2d({} -> {} through {} connections, {k}x{k}, stride {}; {}x{} -> {}x{})",
            s.in_channels,
            s.out_channels,
            self.weight.nrows(),
            s.stride,
            s.height,
            s.width,
            s.out_height(),
            s.out_width(),
            k = s.kernel
        )
    }

    fn spec(&self) -> LayerSpec {
        LayerSpec::PartialConv2d {
            shape: self.shape(),
            table: self.table.clone(),
        }
    }

    /// `weight` `(connections, k, k)`, one kernel per connection in the table's order (which is
    /// in the model's metadata), and `bias` `(out_channels)`.
    fn export(&self) -> Vec<Tensor> {
        let k = self.shape().kernel;
        vec![
            Tensor {
                name: "weight",
                shape: vec![self.weight.nrows(), k, k],
                values: self.weight.iter().copied().collect(),
            },
            Tensor {
                name: "bias",
                shape: vec![self.bias().len()],
                values: self.bias().to_vec(),
            },
        ]
    }

    fn import(&mut self, tensor: &mut TensorSource<'_>) -> Result<(), String> {
        let (connections, k) = (self.weight.nrows(), self.shape().kernel);
        let weight = tensor("weight", &[connections, k, k])?;
        self.weight =
            Array2::from_shape_vec((connections, k * k), weight).map_err(|e| e.to_string())?;
        let out = self.shape().out_channels;
        self.dense.bias = Array1::from_vec(tensor("bias", &[out])?);
        Ok(())
    }
}
