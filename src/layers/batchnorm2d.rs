//! Batch normalisation of images: one mean and variance per channel, over the batch and every
//! pixel of that channel (Ioffe & Szegedy 2015, section 3.2; PyTorch's `nn.BatchNorm2d`).
//!
//! Rows hold `channels` planes of `P = height·width` pixels, as for [`Conv2d`](super::Conv2d).
//! While training, with `m = n·P` values per channel `c`:
//!
//! ```text
//! μ_c  = (1/m) Σ_{i,p} X[i,c,p]                     mean                     (channels)
//! σ²_c = (1/m) Σ_{i,p} (X[i,c,p] - μ_c)²            variance (biased)        (channels)
//! X̂    = (X - μ_c) / sqrt(σ²_c + ε)                 standardised input       (n, c·P)
//! Y    = γ_c · X̂ + β_c                              scale and shift          (n, c·P)
//! ```
//!
//! and the running estimates move towards the batch's, as PyTorch's do (momentum 0.1, the
//! running variance from the unbiased `m/(m-1)·σ²`); inference uses them instead.
//!
//! Backward is [`BatchNorm1d`](super::BatchNorm1d)'s with each channel's `m` values in place of
//! a feature's `n`: with `s = 1/sqrt(σ² + ε)`,
//!
//! ```text
//! dβ_c = Σ_{i,p} dY          dγ_c = Σ_{i,p} dY ⊙ X̂
//! dX   = γ_c·s_c · (dY - dβ_c/m - X̂ · dγ_c/m)
//! ```
//!
//! In the data-parallel step a network with batch normalisation does not split its batch: the
//! statistics are the whole batch's, as on one device in PyTorch. Per-shard statistics (what
//! unsynchronised DistributedDataParallel computes) would make the result depend on the split and
//! change the maths of the layer; the price is that such a network trains on one copy, its
//! products multithreaded.

use ndarray::{Array1, Array2, ArrayView2};

use super::batchnorm::{export_normalisation, import_normalisation, EPSILON, MOMENTUM};
use super::{
    check_features, ensure_shape, two_params, Layer, LayerSpec, Param, Tensor, TensorSource,
};

/// Normalises each channel over the batch and its pixels, then scales by `gamma` and shifts by `beta`.
pub struct BatchNorm2d {
    channels: usize,
    /// Pixels per channel, `height·width`.
    pixels: usize,
    /// `γ`, `(channels)`, starts at 1.
    pub gamma: Array1<f32>,
    /// `β`, `(channels)`, starts at 0.
    pub beta: Array1<f32>,
    /// Running mean for inference, `(channels)`, starts at 0.
    pub running_mean: Array1<f32>,
    /// Running variance for inference, `(channels)`, starts at 1.
    pub running_var: Array1<f32>,
    /// `dL/dγ`, `(channels)`
    pub grad_gamma: Array1<f32>,
    /// `dL/dβ`, `(channels)`
    pub grad_beta: Array1<f32>,
    /// `X̂` of the last training batch, `(n, channels·pixels)`
    normalised: Array2<f32>,
    /// `s = 1 / sqrt(σ² + ε)` of the last training batch, `(channels)`
    inv_std: Vec<f32>,
    /// `Y`, `(n, channels·pixels)`
    output: Array2<f32>,
    /// `dX`, `(n, channels·pixels)`
    grad_input: Array2<f32>,
}

impl BatchNorm2d {
    /// Batch normalisation of `channels` channels of `pixels` pixels each.
    pub fn new(channels: usize, pixels: usize) -> Self {
        assert!(
            channels > 0 && pixels > 0,
            "BatchNorm2d: needs channels and pixels"
        );
        BatchNorm2d {
            channels,
            pixels,
            gamma: Array1::ones(channels),
            beta: Array1::zeros(channels),
            running_mean: Array1::zeros(channels),
            running_var: Array1::ones(channels),
            grad_gamma: Array1::zeros(channels),
            grad_beta: Array1::zeros(channels),
            normalised: Array2::zeros((0, 0)),
            inv_std: vec![0.0; channels],
            output: Array2::zeros((0, 0)),
            grad_input: Array2::zeros((0, 0)),
        }
    }

    fn features(&self) -> usize {
        self.channels * self.pixels
    }

    /// The values of channel `c` in every row, plane by plane.
    fn planes<'a>(&self, rows: ArrayView2<'a, f32>, c: usize) -> impl Iterator<Item = &'a [f32]> {
        let (start, end) = (c * self.pixels, (c + 1) * self.pixels);
        let data = rows.to_slice().expect("contiguous rows");
        data.chunks(self.features())
            .map(move |row| &row[start..end])
    }
}

impl Layer for BatchNorm2d {
    fn forward(&mut self, input: ArrayView2<f32>, train: bool) -> ArrayView2<'_, f32> {
        check_features("BatchNorm2d", self.features(), input);
        let (n, features) = (input.nrows(), self.features());
        ensure_shape(&mut self.output, n, features);
        ensure_shape(&mut self.normalised, n, features);
        let m = (n * self.pixels) as f64;
        for c in 0..self.channels {
            let (mean, var) = if train {
                assert!(
                    m > 1.0,
                    "BatchNorm2d: a training batch needs 2 values per channel"
                );
                let mean = self
                    .planes(input, c)
                    .flatten()
                    .map(|&x| x as f64)
                    .sum::<f64>()
                    / m;
                let var = self
                    .planes(input, c)
                    .flatten()
                    .map(|&x| (x as f64 - mean).powi(2))
                    .sum::<f64>()
                    / m;
                let keep = MOMENTUM as f64;
                let (rm, rv) = (&mut self.running_mean[c], &mut self.running_var[c]);
                *rm = (keep * *rm as f64 + (1.0 - keep) * mean) as f32;
                *rv = (keep * *rv as f64 + (1.0 - keep) * var * m / (m - 1.0)) as f32;
                (mean as f32, var as f32)
            } else {
                (self.running_mean[c], self.running_var[c])
            };
            let s = 1.0 / (var + EPSILON).sqrt();
            self.inv_std[c] = s;
            let (g, b) = (self.gamma[c], self.beta[c]);
            let range = c * self.pixels..(c + 1) * self.pixels;
            for ((x, mut x_hat), mut y) in input
                .rows()
                .into_iter()
                .zip(self.normalised.rows_mut())
                .zip(self.output.rows_mut())
            {
                let x = &x.to_slice().expect("contiguous rows")[range.clone()];
                let x_hat = &mut x_hat.as_slice_mut().expect("contiguous rows")[range.clone()];
                let y = &mut y.as_slice_mut().expect("contiguous rows")[range.clone()];
                for ((&x, xh), y) in x.iter().zip(x_hat.iter_mut()).zip(y.iter_mut()) {
                    *xh = (x - mean) * s;
                    *y = g * *xh + b;
                }
            }
        }
        self.output.view()
    }

    fn backward(
        &mut self,
        _input: ArrayView2<f32>,
        grad_output: ArrayView2<f32>,
    ) -> ArrayView2<'_, f32> {
        assert_eq!(
            grad_output.dim(),
            self.normalised.dim(),
            "BatchNorm2d: gradient shape does not match the last training forward pass"
        );
        let n = grad_output.nrows();
        let m = (n * self.pixels) as f32;
        let features = self.features();
        ensure_shape(&mut self.grad_input, n, features);
        for c in 0..self.channels {
            // dβ = Σ dY, dγ = Σ dY ⊙ X̂ over the batch and the channel's pixels
            let (mut db, mut dg) = (0.0f64, 0.0f64);
            for (dy, x_hat) in self
                .planes(grad_output, c)
                .zip(self.planes(self.normalised.view(), c))
            {
                for (&dy, &xh) in dy.iter().zip(x_hat) {
                    db += dy as f64;
                    dg += (dy * xh) as f64;
                }
            }
            let (db, dg) = (db as f32, dg as f32);
            self.grad_beta[c] = db;
            self.grad_gamma[c] = dg;
            // dX = γ s (dY - dβ/m - X̂ dγ/m)
            let scale = self.gamma[c] * self.inv_std[c];
            let (shift, tilt) = (db / m, dg / m);
            let range = c * self.pixels..(c + 1) * self.pixels;
            for ((dy, x_hat), mut dx) in grad_output
                .rows()
                .into_iter()
                .zip(self.normalised.rows())
                .zip(self.grad_input.rows_mut())
            {
                let dy = &dy.to_slice().expect("contiguous rows")[range.clone()];
                let x_hat = &x_hat.to_slice().expect("contiguous rows")[range.clone()];
                let dx = &mut dx.as_slice_mut().expect("contiguous rows")[range.clone()];
                for ((dx, &dy), &xh) in dx.iter_mut().zip(dy).zip(x_hat) {
                    *dx = scale * (dy - shift - xh * tilt);
                }
            }
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
            ["gamma", "beta"],
            (&mut self.gamma, &self.grad_gamma),
            (&mut self.beta, &self.grad_beta),
        )
    }

    /// The batch's statistics tie every row's output to the rest of the batch.
    fn needs_whole_batch(&self) -> bool {
        true
    }

    fn describe(&self) -> String {
        format!("BatchNorm2d({})", self.channels)
    }

    fn spec(&self) -> LayerSpec {
        LayerSpec::BatchNorm2d {
            channels: self.channels,
            pixels: self.pixels,
        }
    }

    fn export(&self) -> Vec<Tensor> {
        export_normalisation([
            &self.gamma,
            &self.beta,
            &self.running_mean,
            &self.running_var,
        ])
    }

    fn import(&mut self, tensor: &mut TensorSource<'_>) -> Result<(), String> {
        [self.gamma, self.beta, self.running_mean, self.running_var] =
            import_normalisation(tensor, self.channels)?;
        Ok(())
    }
}
