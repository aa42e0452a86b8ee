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
//! `X̂` is not kept: the backward pass gets `X` back and recomputes it from `μ` and `s` (the same
//! operations, so the same values), which costs less than writing and reading it again.
//!
//! A ReLU right after the layer is fused into it ([`Layer::fuse_relu`]): `Y = max(0, γ·X̂ + β)`,
//! and the backward pass starts from `dY ⊙ [Y > 0]`.
//!
//! The work is shared between the cores by rows: each sum over a channel is first taken over
//! each row's plane (in f32, eight running sums at a time), and the planes' sums are added in f64
//! in the order of the rows, so the result does not depend on how many cores there are.
//!
//! In the data-parallel step a network with batch normalisation does not split its batch: the
//! statistics are the whole batch's, as on one device in PyTorch. Per-shard statistics (what
//! unsynchronised DistributedDataParallel computes) would make the result depend on the split and
//! change the maths of the layer; the price is that such a network trains on one copy, each of
//! its layers sharing its own work between the cores (this one by rows, as above).

use ndarray::{Array1, Array2, ArrayView2};
use rayon::prelude::*;

use super::batchnorm::{export_normalisation, import_normalisation, EPSILON, MOMENTUM};
use super::{
    check_features, ensure_shape, two_params, Layer, LayerSpec, Param, Tensor, TensorSource,
};

/// Rows per piece of work shared between the cores (16 rows of 24 maps of 12x12, as `experiment
/// accurate` normalises after its first layer, are 221 KB).
const ROWS_PER_TASK: usize = 16;

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
    /// Whether the layer applies the ReLU that follows it.
    relu: bool,
    /// `μ` of the last forward pass, `(channels)`: the batch's while training, the running
    /// estimate in inference (backward follows a training pass, so it finds the batch's)
    mean: Vec<f32>,
    /// `s = 1 / sqrt(σ² + ε)` of the last forward pass, `(channels)`, the same way
    inv_std: Vec<f32>,
    /// Each row's sums over each channel's plane, `(n, channels)` (two per plane backward).
    plane_sums: Vec<f32>,
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
            relu: false,
            mean: vec![0.0; channels],
            inv_std: vec![0.0; channels],
            plane_sums: Vec::new(),
            output: Array2::zeros((0, 0)),
            grad_input: Array2::zeros((0, 0)),
        }
    }

    fn features(&self) -> usize {
        self.channels * self.pixels
    }
}

/// `Σ_{i,p} X[i,c,p]` for every channel `c` of `rows` `(n, channels·pixels)`, or
/// `Σ_{i,p} (X[i,c,p] - μ_c)²` given the means: each row's plane summed by [`plane_sum`] into
/// `plane_sums` `(n, channels)`, the rows shared between the cores, then the rows' sums added in
/// order.
fn channel_sums(
    plane_sums: &mut Vec<f32>,
    rows: &[f32],
    (channels, pixels): (usize, usize),
    means: Option<&[f32]>,
) -> Vec<f64> {
    let n = rows.len() / (channels * pixels);
    plane_sums.resize(n * channels, 0.0);
    plane_sums
        .par_chunks_mut(channels)
        .zip(rows.par_chunks(channels * pixels))
        .with_min_len(ROWS_PER_TASK)
        .for_each(|(sums, row)| {
            for (c, (sum, plane)) in sums.iter_mut().zip(row.chunks(pixels)).enumerate() {
                *sum = match means {
                    None => plane_sum([plane], |[x]| x),
                    Some(means) => {
                        let mu = means[c];
                        plane_sum([plane], |[x]| (x - mu) * (x - mu))
                    }
                };
            }
        });
    let mut totals = vec![0.0f64; channels];
    for row_sums in plane_sums.chunks(channels) {
        for (total, &sum) in totals.iter_mut().zip(row_sums) {
            *total += sum as f64;
        }
    }
    totals
}

/// `Σ_p term(a[p], b[p], ...)` over planes of the same length, in f32 by eight running sums (a
/// vector register's worth, which the compiler keeps in registers), then those eight in order.
#[inline(always)]
fn plane_sum<const N: usize>(planes: [&[f32]; N], term: impl Fn([f32; N]) -> f32) -> f32 {
    let len = planes[0].len();
    let whole = len - len % 8;
    let mut lanes = [0.0f32; 8];
    for start in (0..whole).step_by(8) {
        let block = planes.map(|plane| &plane[start..start + 8]);
        for (k, lane) in lanes.iter_mut().enumerate() {
            *lane += term(block.map(|values| values[k]));
        }
    }
    for (lane, p) in lanes.iter_mut().zip(whole..len) {
        *lane += term(planes.map(|plane| plane[p]));
    }
    lanes.iter().sum()
}

impl Layer for BatchNorm2d {
    fn forward(&mut self, input: ArrayView2<f32>, train: bool) -> ArrayView2<'_, f32> {
        check_features("BatchNorm2d", self.features(), input);
        let (n, features) = (input.nrows(), self.features());
        let x = input.to_slice().expect("contiguous rows");
        if train {
            let m = (n * self.pixels) as f64;
            assert!(
                m > 1.0,
                "BatchNorm2d: a training batch needs 2 values per channel"
            );
            let shape = (self.channels, self.pixels);
            let sums = channel_sums(&mut self.plane_sums, x, shape, None);
            for (mu, sum) in self.mean.iter_mut().zip(&sums) {
                *mu = (sum / m) as f32;
            }
            let squares = channel_sums(&mut self.plane_sums, x, shape, Some(&self.mean));
            for c in 0..self.channels {
                let (mean, var) = (sums[c] / m, squares[c] / m);
                let keep = MOMENTUM as f64;
                let (rm, rv) = (&mut self.running_mean[c], &mut self.running_var[c]);
                *rm = (keep * *rm as f64 + (1.0 - keep) * mean) as f32;
                *rv = (keep * *rv as f64 + (1.0 - keep) * var * m / (m - 1.0)) as f32;
                self.inv_std[c] = 1.0 / (var as f32 + EPSILON).sqrt();
            }
        } else {
            for c in 0..self.channels {
                self.mean[c] = self.running_mean[c];
                self.inv_std[c] = 1.0 / (self.running_var[c] + EPSILON).sqrt();
            }
        }
        ensure_shape(&mut self.output, n, features);
        let (pixels, relu) = (self.pixels, self.relu);
        let (mean, inv_std) = (&self.mean, &self.inv_std);
        let (gamma, beta) = (&self.gamma, &self.beta);
        let y = self.output.as_slice_mut().expect("standard layout");
        y.par_chunks_mut(features)
            .zip(x.par_chunks(features))
            .with_min_len(ROWS_PER_TASK)
            .for_each(|(y_row, x_row)| {
                for (c, (y, x)) in y_row
                    .chunks_mut(pixels)
                    .zip(x_row.chunks(pixels))
                    .enumerate()
                {
                    let (mu, s, g, b) = (mean[c], inv_std[c], gamma[c], beta[c]);
                    for (y, &x) in y.iter_mut().zip(x) {
                        let z = g * ((x - mu) * s) + b;
                        *y = if relu { z.max(0.0) } else { z };
                    }
                }
            });
        self.output.view()
    }

    fn backward(
        &mut self,
        input: ArrayView2<f32>,
        grad_output: ArrayView2<f32>,
    ) -> ArrayView2<'_, f32> {
        assert_eq!(
            grad_output.dim(),
            self.output.dim(),
            "BatchNorm2d: gradient shape does not match the last training forward pass"
        );
        let (n, features, pixels) = (grad_output.nrows(), self.features(), self.pixels);
        let m = (n * pixels) as f32;
        let x = input.to_slice().expect("contiguous rows");
        let dy = grad_output.to_slice().expect("contiguous rows");
        let y = self.output.as_slice().expect("standard layout");
        let relu = self.relu;
        // The gradient reaching Y's pre-activation: dY, or dY ⊙ [Y > 0] with a fused ReLU.
        let dz = move |dy: f32, y: f32| if !relu || y > 0.0 { dy } else { 0.0 };
        let (mean, inv_std) = (&self.mean, &self.inv_std);
        // dβ = Σ dZ, dγ = Σ dZ ⊙ X̂ over the batch and the channel's pixels: two sums per plane.
        let channels = self.channels;
        self.plane_sums.resize(2 * n * channels, 0.0);
        self.plane_sums
            .par_chunks_mut(2 * channels)
            .zip(x.par_chunks(features))
            .zip(dy.par_chunks(features).zip(y.par_chunks(features)))
            .with_min_len(ROWS_PER_TASK)
            .for_each(|((sums, x_row), (dy_row, y_row))| {
                let planes = x_row
                    .chunks(pixels)
                    .zip(dy_row.chunks(pixels).zip(y_row.chunks(pixels)));
                for (c, (x, (dy, y))) in planes.enumerate() {
                    let (mu, s) = (mean[c], inv_std[c]);
                    sums[2 * c] = plane_sum([dy, y], |[dy, y]| dz(dy, y));
                    sums[2 * c + 1] =
                        plane_sum([dy, y, x], |[dy, y, x]| dz(dy, y) * ((x - mu) * s));
                }
            });
        let (mut db, mut dg) = (vec![0.0f64; channels], vec![0.0f64; channels]);
        for row_sums in self.plane_sums.chunks(2 * channels) {
            for c in 0..channels {
                db[c] += row_sums[2 * c] as f64;
                dg[c] += row_sums[2 * c + 1] as f64;
            }
        }
        for c in 0..channels {
            self.grad_beta[c] = db[c] as f32;
            self.grad_gamma[c] = dg[c] as f32;
        }
        // dX = γ s (dZ - dβ/m - X̂ dγ/m)
        let (gamma, grad_beta, grad_gamma) = (&self.gamma, &self.grad_beta, &self.grad_gamma);
        ensure_shape(&mut self.grad_input, n, features);
        let dx = self.grad_input.as_slice_mut().expect("standard layout");
        dx.par_chunks_mut(features)
            .zip(x.par_chunks(features))
            .zip(dy.par_chunks(features).zip(y.par_chunks(features)))
            .with_min_len(ROWS_PER_TASK)
            .for_each(|((dx_row, x_row), (dy_row, y_row))| {
                let planes = dx_row
                    .chunks_mut(pixels)
                    .zip(x_row.chunks(pixels))
                    .zip(dy_row.chunks(pixels).zip(y_row.chunks(pixels)));
                for (c, ((dx, x), (dy, y))) in planes.enumerate() {
                    // The channel's numbers in locals, so that the loop keeps them in registers.
                    let (mu, s) = (mean[c], inv_std[c]);
                    let scale = gamma[c] * s;
                    let (shift, tilt) = (grad_beta[c] / m, grad_gamma[c] / m);
                    for ((dx, &x), (&dy, &y)) in dx.iter_mut().zip(x).zip(dy.iter().zip(y)) {
                        *dx = scale * (dz(dy, y) - shift - ((x - mu) * s) * tilt);
                    }
                }
            });
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

    fn fuse_relu(&mut self) -> bool {
        self.relu = true;
        true
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
