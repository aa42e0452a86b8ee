//! Batch normalisation over the features of a dense layer (Ioffe & Szegedy 2015).
//!
//! Forward while training, per feature `j`, over the `n` rows of the batch:
//!
//! ```text
//! μ_j  = (1/n) Σ_i X[i,j]                         mean                       (features)
//! σ²_j = (1/n) Σ_i (X[i,j] - μ_j)²                variance (biased)          (features)
//! X̂    = (X - μ) / sqrt(σ² + ε)                   standardised input         (n, features)
//! Y    = γ ⊙ X̂ + β                                learnable scale and shift  (n, features)
//! ```
//!
//! and the running estimates move towards the batch's: `running = 0.9 · running + 0.1 · batch`.
//! At inference `μ` and `σ²` are the running estimates, so a prediction does not depend on the
//! other examples of its batch.
//!
//! Backward, with `s = 1 / sqrt(σ² + ε)` and `dX̂ = dY ⊙ γ`:
//!
//! ```text
//! dβ = Σ_i dY                 dγ = Σ_i dY ⊙ X̂
//! dX = (s / n) · (n·dX̂ - Σ_i dX̂ - X̂ ⊙ Σ_i (dX̂ ⊙ X̂))
//! ```
//!
//! The last line is the chain rule through `X̂` *and* through `μ` and `σ²`, which depend on every
//! row: the two sums remove the parts of `dX̂` that shifting or scaling the whole batch would undo.

use ndarray::{Array1, Array2, ArrayView2, Axis, Zip};

use super::{
    check_features, ensure_shape, two_params, Layer, LayerSpec, Param, Tensor, TensorSource,
};

/// Momentum of the running estimates: `running = MOMENTUM · running + (1 - MOMENTUM) · batch`.
pub const MOMENTUM: f32 = 0.9;
/// Added to the variance before the square root, so a constant feature does not divide by zero.
pub const EPSILON: f32 = 1e-5;

/// Normalises each feature over the batch, then scales by `gamma` and shifts by `beta`.
pub struct BatchNorm1d {
    /// `γ`, `(features)`, starts at 1.
    pub gamma: Array1<f32>,
    /// `β`, `(features)`, starts at 0.
    pub beta: Array1<f32>,
    /// Running mean for inference, `(features)`, starts at 0.
    pub running_mean: Array1<f32>,
    /// Running variance for inference, `(features)`, starts at 1.
    pub running_var: Array1<f32>,
    /// `dL/dγ`, `(features)`
    pub grad_gamma: Array1<f32>,
    /// `dL/dβ`, `(features)`
    pub grad_beta: Array1<f32>,
    /// `X̂` of the last training batch, `(n, features)`
    normalised: Array2<f32>,
    /// `s = 1 / sqrt(σ² + ε)` of the last training batch, `(features)`
    inv_std: Array1<f32>,
    /// `Y`, `(n, features)`
    output: Array2<f32>,
    /// `dX`, `(n, features)`
    grad_input: Array2<f32>,
}

impl BatchNorm1d {
    /// Batch normalisation of `features` features.
    pub fn new(features: usize) -> Self {
        BatchNorm1d {
            gamma: Array1::ones(features),
            beta: Array1::zeros(features),
            running_mean: Array1::zeros(features),
            running_var: Array1::ones(features),
            grad_gamma: Array1::zeros(features),
            grad_beta: Array1::zeros(features),
            normalised: Array2::zeros((0, features)),
            inv_std: Array1::zeros(features),
            output: Array2::zeros((0, features)),
            grad_input: Array2::zeros((0, features)),
        }
    }

    /// Number of features.
    pub fn features(&self) -> usize {
        self.gamma.len()
    }
}

impl Layer for BatchNorm1d {
    fn forward(&mut self, input: ArrayView2<f32>, train: bool) -> ArrayView2<'_, f32> {
        check_features("BatchNorm1d", self.features(), input);
        let (n, features) = input.dim();
        ensure_shape(&mut self.output, n, features);
        ensure_shape(&mut self.normalised, n, features);
        let (mean, var) = if train {
            assert!(
                n > 1,
                "BatchNorm1d: a training batch needs at least 2 rows, got {n}"
            );
            let mean = input.mean_axis(Axis(0)).expect("non-empty batch");
            let var = input.var_axis(Axis(0), 0.0);
            Zip::from(&mut self.running_mean)
                .and(&mean)
                .for_each(|r, &m| *r = MOMENTUM * *r + (1.0 - MOMENTUM) * m);
            Zip::from(&mut self.running_var)
                .and(&var)
                .for_each(|r, &v| *r = MOMENTUM * *r + (1.0 - MOMENTUM) * v);
            (mean, var)
        } else {
            (self.running_mean.clone(), self.running_var.clone())
        };
        self.inv_std = var.mapv(|v| 1.0 / (v + EPSILON).sqrt());
        // X̂ = (X - μ) · s, then Y = γ ⊙ X̂ + β, row by row.
        Zip::from(self.normalised.rows_mut())
            .and(input.rows())
            .for_each(|mut x_hat, x| {
                Zip::from(&mut x_hat)
                    .and(&x)
                    .and(&mean)
                    .and(&self.inv_std)
                    .for_each(|xh, &x, &m, &s| *xh = (x - m) * s);
            });
        Zip::from(self.output.rows_mut())
            .and(self.normalised.rows())
            .for_each(|mut y, x_hat| {
                Zip::from(&mut y)
                    .and(&x_hat)
                    .and(&self.gamma)
                    .and(&self.beta)
                    .for_each(|y, &xh, &g, &b| *y = g * xh + b);
            });
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
            "BatchNorm1d: gradient shape does not match the last training forward pass"
        );
        let n = grad_output.nrows() as f32;
        // dβ = Σ dY, dγ = Σ dY ⊙ X̂
        self.grad_beta.fill(0.0);
        self.grad_gamma.fill(0.0);
        Zip::from(grad_output.rows())
            .and(self.normalised.rows())
            .for_each(|dy, x_hat| {
                Zip::from(&mut self.grad_beta)
                    .and(&mut self.grad_gamma)
                    .and(&dy)
                    .and(&x_hat)
                    .for_each(|db, dg, &dy, &xh| {
                        *db += dy;
                        *dg += dy * xh;
                    });
            });
        // With dX̂ = dY ⊙ γ: Σ dX̂ = γ ⊙ dβ and Σ dX̂ ⊙ X̂ = γ ⊙ dγ, so
        // dX = (γ s) ⊙ dY - (s/n) γ ⊙ dβ - X̂ ⊙ (s/n) γ ⊙ dγ.
        let scale = &self.gamma * &self.inv_std;
        let shift = &scale * &self.grad_beta / n;
        let tilt = &scale * &self.grad_gamma / n;
        ensure_shape(
            &mut self.grad_input,
            grad_output.nrows(),
            grad_output.ncols(),
        );
        Zip::from(self.grad_input.rows_mut())
            .and(grad_output.rows())
            .and(self.normalised.rows())
            .for_each(|mut dx, dy, x_hat| {
                Zip::from(&mut dx)
                    .and(&dy)
                    .and(&x_hat)
                    .and(&scale)
                    .and(&shift)
                    .and(&tilt)
                    .for_each(|dx, &dy, &xh, &a, &c, &t| *dx = a * dy - c - xh * t);
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

    /// The batch's mean and variance tie every row's output to the rest of the batch.
    fn needs_whole_batch(&self) -> bool {
        true
    }

    fn describe(&self) -> String {
        format!("BatchNorm1d({})", self.features())
    }

    fn spec(&self) -> LayerSpec {
        LayerSpec::BatchNorm1d {
            features: self.features(),
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
            import_normalisation(tensor, self.features())?;
        Ok(())
    }
}

/// The names PyTorch saves a batch normalisation's γ, β and running estimates under.
const NORMALISATION_TENSORS: [&str; 4] = ["weight", "bias", "running_mean", "running_var"];

/// γ, β, running mean and running variance as PyTorch names them (`weight` is γ, `bias` is β).
pub(super) fn export_normalisation(values: [&Array1<f32>; 4]) -> Vec<Tensor> {
    NORMALISATION_TENSORS
        .iter()
        .zip(values)
        .map(|(&name, values)| Tensor {
            name,
            shape: vec![values.len()],
            values: values.to_vec(),
        })
        .collect()
}

/// Reads what [`export_normalisation`] saves, each of length `len`.
pub(super) fn import_normalisation(
    tensor: &mut TensorSource<'_>,
    len: usize,
) -> Result<[Array1<f32>; 4], String> {
    let mut read = |name| tensor(name, &[len]).map(Array1::from_vec);
    Ok([
        read(NORMALISATION_TENSORS[0])?,
        read(NORMALISATION_TENSORS[1])?,
        read(NORMALISATION_TENSORS[2])?,
        read(NORMALISATION_TENSORS[3])?,
    ])
}
