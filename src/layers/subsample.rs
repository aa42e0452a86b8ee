//! LeNet-5's subsampling layers (S2 and S4): each map's `k x k` windows summed, scaled by a
//! trainable coefficient and offset by a trainable bias, one pair per map.
//!
//! LeCun et al. (1998) halve the resolution between convolutions, which makes the output less
//! sensitive to small shifts and distortions of the input. Unlike average pooling the layer learns
//! how much of its input to pass on: with a small coefficient the squashing function after it
//! stays nearly linear and the layer merely blurs; with a large one a unit acts as a noisy OR or a
//! noisy AND of its window, depending on the bias (section II.A). Windows do not overlap (stride =
//! `k`), as in the paper.
//!
//! ```text
//! forward:   S[c, y, x] = Σ_{ky, kx < k} X[c, y·k + ky, x·k + kx]          (the window's sum)
//!            Y[c, y, x] = w[c] · S[c, y, x] + b[c]
//!            X: (n, c·h·w)    S, Y: (n, c·out_h·out_w)    w, b: (c)
//! backward:  dw[c] = Σ_{n, y, x} dY[c, y, x] · S[c, y, x]      db[c] = Σ_{n, y, x} dY[c, y, x]
//!            dX[c, y·k + ky, x·k + kx] = w[c] · dY[c, y, x]
//! ```
//!
//! Each input pixel lies in one window and enters its sum with factor 1, so it receives the
//! window's gradient times the map's coefficient. `S` is kept from the forward pass for `dw`.

use ndarray::{Array1, Array2, ArrayView2};
use rand::Rng;

use super::pool::PoolShape;
use super::{
    check_features, ensure_shape, two_params, Layer, LayerSpec, Param, Tensor, TensorSource,
};
use crate::init::Init;

/// `w[c] · (sum of a k x k window of map c) + b[c]`, windows `k` apart.
pub struct Subsample2d {
    /// The geometry (`stride == kernel`).
    pub shape: PoolShape,
    /// `w`, `(channels)`: one coefficient per map.
    pub weight: Array1<f32>,
    /// `b`, `(channels)`
    pub bias: Array1<f32>,
    /// `dL/dw`, `(channels)`
    pub grad_weight: Array1<f32>,
    /// `dL/db`, `(channels)`
    pub grad_bias: Array1<f32>,
    /// `S`, `(n, c·out_h·out_w)`: the window sums of the last forward pass
    sums: Array2<f32>,
    /// `Y`, `(n, c·out_h·out_w)`
    output: Array2<f32>,
    /// `dX`, `(n, c·h·w)`
    grad_input: Array2<f32>,
}

impl Subsample2d {
    /// A subsampling of the given shape, its coefficients and biases drawn by `init` as for units
    /// of `k·k` inputs. Panics if the shape is impossible or its stride is not its window.
    pub fn new(shape: PoolShape, init: Init, rng: &mut impl Rng) -> Self {
        let fan_in = shape.kernel * shape.kernel;
        let weight = Array1::from(init.sample(fan_in, 1, shape.channels, rng));
        let bias = init.bias(fan_in, shape.channels, rng);
        Self::from_params(shape, weight, bias)
    }

    /// A subsampling with the given coefficients and biases, `(channels)` each.
    pub fn from_params(shape: PoolShape, weight: Array1<f32>, bias: Array1<f32>) -> Self {
        if let Err(message) = check(&shape) {
            panic!("Subsample2d: {message}");
        }
        assert!(
            weight.len() == shape.channels && bias.len() == shape.channels,
            "Subsample2d: one coefficient and one bias per map"
        );
        Subsample2d {
            grad_weight: Array1::zeros(shape.channels),
            grad_bias: Array1::zeros(shape.channels),
            shape,
            weight,
            bias,
            sums: Array2::zeros((0, shape.output_len())),
            output: Array2::zeros((0, shape.output_len())),
            grad_input: Array2::zeros((0, shape.input_len())),
        }
    }
}

/// Whether `shape` is a possible subsampling: a possible pooling with windows side by side.
pub fn check(shape: &PoolShape) -> Result<(), String> {
    shape.check()?;
    if shape.stride != shape.kernel {
        return Err(format!(
            "subsampling windows do not overlap: stride {} must equal the window {}",
            shape.stride, shape.kernel
        ));
    }
    Ok(())
}

impl Layer for Subsample2d {
    fn forward(&mut self, input: ArrayView2<f32>, _train: bool) -> ArrayView2<'_, f32> {
        check_features("Subsample2d", self.shape.input_len(), input);
        let n = input.nrows();
        ensure_shape(&mut self.sums, n, self.shape.output_len());
        ensure_shape(&mut self.output, n, self.shape.output_len());
        let (shape, weight, bias) = (self.shape, &self.weight, &self.bias);
        let (k, width) = (shape.kernel, shape.width);
        let rows = input.rows().into_iter().zip(self.sums.rows_mut());
        for ((x, mut s), mut y) in rows.zip(self.output.rows_mut()) {
            let x = x.to_slice().expect("contiguous rows");
            let s = s.as_slice_mut().expect("contiguous rows");
            let y = y.as_slice_mut().expect("contiguous rows");
            shape.for_each_window(|c, window, top_left| {
                let rows = (0..k).map(|ky| top_left + ky * width);
                let sum = rows.map(|r| x[r..r + k].iter().sum::<f32>()).sum::<f32>();
                s[window] = sum;
                y[window] = weight[c] * sum + bias[c];
            });
        }
        self.output.view()
    }

    fn backward(
        &mut self,
        input: ArrayView2<f32>,
        grad_output: ArrayView2<f32>,
    ) -> ArrayView2<'_, f32> {
        let n = input.nrows();
        assert_eq!(
            grad_output.dim(),
            (n, self.shape.output_len()),
            "Subsample2d: the gradient's shape does not match the last forward pass"
        );
        let per_map = self.shape.out_height() * self.shape.out_width();
        // dw[c] = Σ dY·S and db[c] = Σ dY over the batch and the map's pixels.
        self.grad_weight.fill(0.0);
        self.grad_bias.fill(0.0);
        for (dy, s) in grad_output.rows().into_iter().zip(self.sums.rows()) {
            let maps = dy
                .exact_chunks(per_map)
                .into_iter()
                .zip(s.exact_chunks(per_map));
            for (c, (dy, s)) in maps.enumerate() {
                self.grad_weight[c] += dy.dot(&s);
                self.grad_bias[c] += dy.sum();
            }
        }
        // dX: every pixel of a window gets w[c]·dY of its window.
        ensure_shape(&mut self.grad_input, n, self.shape.input_len());
        let (shape, weight) = (self.shape, &self.weight);
        let (k, width) = (shape.kernel, shape.width);
        for (dy, mut dx) in grad_output
            .rows()
            .into_iter()
            .zip(self.grad_input.rows_mut())
        {
            let dx = dx.as_slice_mut().expect("contiguous rows");
            shape.for_each_window(|c, window, top_left| {
                let share = weight[c] * dy[window];
                for ky in 0..k {
                    let row = top_left + ky * width;
                    dx[row..row + k].fill(share);
                }
            });
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

    fn describe(&self) -> String {
        let s = self.shape;
        format!(
            "Subsample2d({} maps, {k}x{k} sums x coefficient + bias; {}x{} -> {}x{})",
            s.channels,
            s.height,
            s.width,
            s.out_height(),
            s.out_width(),
            k = s.kernel
        )
    }

    fn spec(&self) -> LayerSpec {
        LayerSpec::Subsample2d(self.shape)
    }

    fn export(&self) -> Vec<Tensor> {
        let channels = self.shape.channels;
        vec![
            Tensor {
                name: "weight",
                shape: vec![channels],
                values: self.weight.to_vec(),
            },
            Tensor {
                name: "bias",
                shape: vec![channels],
                values: self.bias.to_vec(),
            },
        ]
    }

    fn import(&mut self, tensor: &mut TensorSource<'_>) -> Result<(), String> {
        let channels = self.shape.channels;
        self.weight = Array1::from_vec(tensor("weight", &[channels])?);
        self.bias = Array1::from_vec(tensor("bias", &[channels])?);
        Ok(())
    }
}
