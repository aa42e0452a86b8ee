//! The hyperbolic tangent: a smooth squashing of every value into (-A, A).
//!
//! ```text
//! forward:   Y = A·tanh(S·X)                  X, Y: (n, features)
//! backward:  dX = dY ⊙ S·(A - Y²/A)           since d tanh(x)/dx = 1 - tanh²(x) = 1 - (Y/A)²
//! ```
//!
//! `tanh` itself is a rational function fitted to it (Eigen's `generic_fast_tanh_float`): an odd
//! polynomial of degree 13 over an even one of degree 6, within 5e-7 (relative) of the true value
//! everywhere, and branch-free, so the compiler computes four values at once (SSE, which every
//! x86-64 has). The C library's `tanhf`, one value at a time, took 55% of LeNet-5's training time.
//!
//! The derivative needs only the output, so the layer keeps `Y` and not `X`. The plain `tanh` has
//! amplitude `A = 1` and slope `S = 1`. LeNet-5 squashes with `A = 1.7159`, `S = 2/3` (LeCun et al.
//! 1998, appendix A): then `f(±1) = ±1`, the second derivative is largest at ±1, and the gain near
//! 0 is about 1, so targets of ±1 sit in the steepest useful range instead of at the asymptotes.

use ndarray::{Array2, ArrayView2, Zip};

use super::{ensure_shape, Layer, LayerSpec};

/// `Y = A·tanh(S·X)`, element by element.
pub struct Tanh {
    /// `A`: outputs lie in `(-A, A)`.
    amplitude: f32,
    /// `S`: the input's scale.
    slope: f32,
    /// `Y`, `(n, features)`
    output: Array2<f32>,
    /// `dX`, `(n, features)`
    grad_input: Array2<f32>,
}

/// `tanh(x)` within 5e-7 (relative), from a rational approximation on `[-7.9, 7.9]` (beyond
/// which tanh is 1 to f32's precision): `x·P(x²) / Q(x²)` with the coefficients of Eigen's
/// `generic_fast_tanh_float`, evaluated by Horner's rule.
pub fn tanh(x: f32) -> f32 {
    const CLAMP: f32 = 7.905_311;
    const P: [f32; 7] = [
        4.893_524_6e-3,
        6.372_619_3e-4,
        1.485_722_4e-5,
        5.122_297e-8,
        -8.604_672e-11,
        2.000_188e-13,
        -2.760_768_5e-16,
    ];
    const Q: [f32; 4] = [4.893_525e-3, 2.268_434_6e-3, 1.185_347_1e-4, 1.198_258_4e-6];
    let x = x.clamp(-CLAMP, CLAMP);
    let x2 = x * x;
    let p = P.iter().rev().fold(0.0, |p, &c| p * x2 + c) * x;
    let q = Q.iter().rev().fold(0.0, |q, &c| q * x2 + c);
    p / q
}

/// LeNet-5's squashing function: `1.7159·tanh(2x/3)`.
pub const LECUN_TANH: (f32, f32) = (1.7159, 2.0 / 3.0);

impl Tanh {
    /// A tanh layer (it has no parameters).
    pub fn new() -> Self {
        Self::scaled(1.0, 1.0)
    }

    /// `amplitude · tanh(slope · x)`.
    pub fn scaled(amplitude: f32, slope: f32) -> Self {
        Tanh {
            amplitude,
            slope,
            output: Array2::zeros((0, 0)),
            grad_input: Array2::zeros((0, 0)),
        }
    }
}

impl Default for Tanh {
    fn default() -> Self {
        Self::new()
    }
}

impl Layer for Tanh {
    fn forward(&mut self, input: ArrayView2<f32>, _train: bool) -> ArrayView2<'_, f32> {
        ensure_shape(&mut self.output, input.nrows(), input.ncols());
        let (amplitude, slope) = (self.amplitude, self.slope);
        for (mut y, x) in self.output.rows_mut().into_iter().zip(input.rows()) {
            let y = y.as_slice_mut().expect("contiguous rows");
            let x = x.to_slice().expect("contiguous rows");
            for (y, &x) in y.iter_mut().zip(x) {
                *y = amplitude * tanh(slope * x);
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
            self.output.dim(),
            "Tanh: gradient shape does not match the last forward pass"
        );
        ensure_shape(
            &mut self.grad_input,
            grad_output.nrows(),
            grad_output.ncols(),
        );
        Zip::from(&mut self.grad_input)
            .and(grad_output)
            .and(&self.output)
            .for_each(|dx, &dy, &y| {
                *dx = dy * (self.slope * (self.amplitude - y * y / self.amplitude))
            });
        self.grad_input.view()
    }

    fn output(&self) -> ArrayView2<'_, f32> {
        self.output.view()
    }

    fn grad_input(&self) -> ArrayView2<'_, f32> {
        self.grad_input.view()
    }

    fn describe(&self) -> String {
        if (self.amplitude, self.slope) == (1.0, 1.0) {
            "Tanh".to_string()
        } else if (self.amplitude, self.slope) == LECUN_TANH {
            "LeCunTanh(1.7159·tanh(2x/3))".to_string()
        } else {
            format!("{}·tanh({}·x)", self.amplitude, self.slope)
        }
    }

    fn spec(&self) -> LayerSpec {
        LayerSpec::Tanh {
            amplitude: self.amplitude,
            slope: self.slope,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rational_tanh_is_within_5e_7_of_the_true_one() {
        let mut worst = 0f64;
        // Every 1/4096 from -12 to 12, and the smallest values, where tanh(x) ≈ x.
        let grid = (-49152..=49152).map(|i| i as f32 / 4096.0);
        let tiny = [1e-30f32, -1e-20, 1e-8, 3e-5];
        for x in grid.chain(tiny) {
            let exact = (x as f64).tanh();
            let error = (tanh(x) as f64 - exact).abs();
            assert!(
                error <= 5e-7 * exact.abs().max(1e-30) + 1e-37,
                "tanh({x}): {error}"
            );
            worst = worst.max(error);
        }
        assert!(worst > 0.0);
        assert_eq!(tanh(0.0), 0.0);
        assert_eq!(
            (tanh(100.0), tanh(-100.0)),
            (tanh(7.905_311), -tanh(7.905_311))
        );
        assert!((tanh(100.0) - 1.0).abs() < 1e-6);
    }
}
