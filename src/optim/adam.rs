//! Adam (Kingma & Ba 2015) and AdamW (Loshchilov & Hutter 2019), as `torch.optim.Adam` and
//! `torch.optim.AdamW` define them.
//!
//! Adam keeps two running averages per value, `m` of the gradient and `v` of its square, both
//! starting at zero. At step `t`, with `λ` the weight decay:
//!
//! ```text
//! g ← g + λ·θ                       Adam: L2 weight decay, added to the gradient
//! θ ← θ·(1 - lr·λ)                  AdamW instead: decay the weights directly ("decoupled")
//! m ← β₁·m + (1 - β₁)·g             first moment, computed as m + (1 - β₁)·(g - m)
//! v ← β₂·v + (1 - β₂)·g²            second moment
//! m̂ = m / (1 - β₁ᵗ)                 both averages started at 0: divide out that bias
//! v̂ = v / (1 - β₂ᵗ)
//! θ ← θ - lr · m̂ / (sqrt(v̂) + ε)
//! ```
//!
//! Each value gets its own step size: `m̂ / sqrt(v̂)` is about ±1 where the gradient keeps its sign
//! and small where it flips, so the first step moves every value by about `lr`. The bias
//! corrections are computed in double precision and `θ ← θ - (lr / (1 - β₁ᵗ)) · m / (sqrt(v) /
//! sqrt(1 - β₂ᵗ) + ε)` is evaluated in that order, as PyTorch does.

use super::UpdateRule;

/// Adam, or AdamW when `decoupled`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Adam {
    /// `(β₁, β₂)`: how slowly the two averages forget.
    pub betas: (f64, f64),
    /// `ε`, keeps the step finite where `v̂` is zero.
    pub eps: f64,
    /// `λ`
    pub weight_decay: f64,
    /// AdamW's decay of the weights themselves rather than an L2 term in the gradient.
    pub decoupled: bool,
}

impl UpdateRule for Adam {
    fn state_names(&self) -> &'static [&'static str] {
        &["exp_avg", "exp_avg_sq"]
    }

    fn update(&self, values: &mut [f32], grads: &[f32], state: &mut [&mut [f32]], t: u64, lr: f64) {
        let [m, v] = state else {
            unreachable!("Adam keeps two state arrays")
        };
        let (beta1, beta2) = self.betas;
        let bias_correction1 = 1.0 - beta1.powf(t as f64);
        let bias_correction2 = 1.0 - beta2.powf(t as f64);
        // PyTorch's scalars are doubles, rounded to f32 where they meet f32 tensors.
        let step_size = (lr / bias_correction1) as f32;
        let bias_correction2_sqrt = bias_correction2.sqrt() as f32;
        let (w1, beta2_f32, w2) = ((1.0 - beta1) as f32, beta2 as f32, (1.0 - beta2) as f32);
        let eps = self.eps as f32;
        let l2 = if self.decoupled {
            0.0
        } else {
            self.weight_decay as f32
        };
        let shrink = if self.decoupled {
            (1.0 - lr * self.weight_decay) as f32
        } else {
            1.0
        };
        for (((theta, &g), m), v) in values
            .iter_mut()
            .zip(grads)
            .zip(m.iter_mut())
            .zip(v.iter_mut())
        {
            let g = if l2 != 0.0 { g + l2 * *theta } else { g };
            if shrink != 1.0 {
                *theta *= shrink;
            }
            // m.lerp(g, 1 - β₁), in the form PyTorch picks for the weight.
            *m = if w1 < 0.5 {
                *m + w1 * (g - *m)
            } else {
                g - (g - *m) * (1.0 - w1)
            };
            *v = *v * beta2_f32 + w2 * g * g;
            let denom = v.sqrt() / bias_correction2_sqrt + eps;
            *theta += -step_size * (*m / denom);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// θ after each of the gradients 0.5, -1, 0.25, starting at θ = 1 with lr 0.1.
    fn trace(weight_decay: f64, decoupled: bool) -> Vec<f32> {
        let rule = Adam {
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay,
            decoupled,
        };
        let (mut theta, mut m, mut v) = ([1.0f32], [0.0f32], [0.0f32]);
        let mut out = Vec::new();
        for (t, g) in [0.5f32, -1.0, 0.25].into_iter().enumerate() {
            rule.update(&mut theta, &[g], &mut [&mut m, &mut v], t as u64 + 1, 0.1);
            out.push(theta[0]);
        }
        out
    }

    fn close(got: &[f32], expected: &[f64]) {
        for (g, e) in got.iter().zip(expected) {
            assert!((*g as f64 - e).abs() < 1e-6, "{got:?} vs {expected:?}");
        }
    }

    #[test]
    fn adam_follows_its_definition() {
        // t = 1: m = 0.05, v = 0.00025, m̂ = 0.5, v̂ = 0.25: θ = 1 - 0.1·0.5/0.5 = 0.9.
        // t = 2: m = 0.05 + 0.1·(-1 - 0.05) = -0.055, v = 0.00024975 + 0.001 = 0.00124975,
        //        θ = 0.9 - (0.1/0.19)·(-0.055)/(sqrt(0.00124975)/sqrt(0.001999)) = 0.93661035.
        // t = 3 likewise (computed in f64).
        close(&trace(0.0, false), &[0.9, 0.936_610_354, 0.950_279_420]);
    }

    #[test]
    fn adam_weight_decay_is_an_l2_term_in_the_gradient() {
        // t = 1: g = 0.5 + 0.1·1 = 0.6, and a first step is ±lr: θ = 0.9.
        close(&trace(0.1, false), &[0.9, 0.925_263_519, 0.924_730_574]);
    }

    #[test]
    fn adamw_decays_the_weights_directly() {
        // t = 1: θ = 1·(1 - 0.1·0.1) = 0.99, then the Adam step of g = 0.5: θ = 0.89.
        close(&trace(0.1, true), &[0.89, 0.917_710_354, 0.922_202_317]);
    }
}
