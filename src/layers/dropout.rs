//! Dropout (Srivastava et al. 2014): while training, zero each value with probability `p`.
//!
//! Inverted dropout, as PyTorch's `nn.Dropout`: the values kept are scaled by `1/(1 - p)` so that
//! each value's expectation is unchanged, and inference is the identity (nothing to rescale).
//! With `M` a mask of independent draws, `M = 1/(1 - p)` with probability `1 - p`, else 0:
//!
//! ```text
//! forward (training):   Y = X ⊙ M          X, Y, M: (n, features)
//! forward (inference):  Y = X
//! backward:             dX = dY ⊙ M        Y is linear in X, with slope M
//! ```
//!
//! The mask comes from the run's seeded generator, so runs are reproducible and resumable: before
//! every training step the trainer draws one seed for the step, the network derives this layer's
//! seed from it, and row `r` of the batch draws its mask from the ChaCha8 stream number `r` of
//! that seed. An example's mask therefore does not depend on how the batch is split between
//! cores, and a forward pass repeated with the same seed (as a gradient check does) draws the same
//! mask.

use ndarray::{Array2, ArrayView2, Zip};
use rand::{Rng, SeedableRng};

use super::{ensure_shape, Layer, LayerSpec};
use crate::SeededRng;

/// Zeroes each value with probability `p` while training, scaling the rest by `1/(1 - p)`.
pub struct Dropout {
    p: f32,
    /// This step's seed and the batch position of the first row, from [`Layer::seed`].
    seed: u64,
    first_row: usize,
    /// `M`, `(n, features)`
    mask: Array2<f32>,
    /// `Y`, `(n, features)`
    output: Array2<f32>,
    /// `dX`, `(n, features)`
    grad_input: Array2<f32>,
}

impl Dropout {
    /// Dropout with probability `p`, in `[0, 1)`.
    pub fn new(p: f32) -> Self {
        assert!(
            (0.0..1.0).contains(&p),
            "Dropout: p must be in [0, 1), got {p}"
        );
        Dropout {
            p,
            seed: 0,
            first_row: 0,
            mask: Array2::zeros((0, 0)),
            output: Array2::zeros((0, 0)),
            grad_input: Array2::zeros((0, 0)),
        }
    }

    /// The probability of zeroing a value.
    pub fn p(&self) -> f32 {
        self.p
    }
}

impl Layer for Dropout {
    fn forward(&mut self, input: ArrayView2<f32>, train: bool) -> ArrayView2<'_, f32> {
        let (n, features) = input.dim();
        ensure_shape(&mut self.output, n, features);
        if !train {
            self.output.assign(&input);
            return self.output.view();
        }
        ensure_shape(&mut self.mask, n, features);
        let keep = 1.0 / (1.0 - self.p);
        for (r, mut row) in self.mask.rows_mut().into_iter().enumerate() {
            let mut rng = SeededRng::seed_from_u64(self.seed);
            rng.set_stream((self.first_row + r) as u64);
            row.iter_mut().for_each(|m| {
                *m = if rng.random::<f32>() < self.p {
                    0.0
                } else {
                    keep
                }
            });
        }
        Zip::from(&mut self.output)
            .and(&input)
            .and(&self.mask)
            .for_each(|y, &x, &m| *y = x * m);
        self.output.view()
    }

    fn backward(
        &mut self,
        _input: ArrayView2<f32>,
        grad_output: ArrayView2<f32>,
    ) -> ArrayView2<'_, f32> {
        assert_eq!(
            grad_output.dim(),
            self.mask.dim(),
            "Dropout: gradient shape does not match the last training forward pass"
        );
        ensure_shape(
            &mut self.grad_input,
            grad_output.nrows(),
            grad_output.ncols(),
        );
        Zip::from(&mut self.grad_input)
            .and(grad_output)
            .and(&self.mask)
            .for_each(|dx, &dy, &m| *dx = dy * m);
        self.grad_input.view()
    }

    fn output(&self) -> ArrayView2<'_, f32> {
        self.output.view()
    }

    fn grad_input(&self) -> ArrayView2<'_, f32> {
        self.grad_input.view()
    }

    fn is_random(&self) -> bool {
        self.p > 0.0
    }

    fn seed(&mut self, seed: u64, first_row: usize) {
        (self.seed, self.first_row) = (seed, first_row);
    }

    fn describe(&self) -> String {
        format!("Dropout(p={})", self.p)
    }

    fn spec(&self) -> LayerSpec {
        LayerSpec::Dropout { p: self.p }
    }
}
