//! Stochastic gradient descent, with optional weight decay, momentum and Nesterov momentum, as
//! `torch.optim.SGD` defines them (dampening 0).
//!
//! With `g` the gradient, `λ` the weight decay, `μ` the momentum and `b` its buffer (the running
//! direction), at step `t`:
//!
//! ```text
//! g ← g + λ·θ                          L2 weight decay: the gradient of (λ/2)·|θ|²
//! b ← g             at t = 1           the buffer starts at the first gradient (not at zero)
//! b ← μ·b + g       after              a running sum of past gradients, each worth μ less per step
//! g ← g + μ·b       with Nesterov      look one step ahead along the buffer
//! g ← b             without
//! θ ← θ - lr·g
//! ```
//!
//! With `μ = 0` and `λ = 0` this is vanilla SGD, `θ ← θ - lr·g`, to the bit.

use super::UpdateRule;

/// SGD with momentum `μ` (0 for none), Nesterov or not, and L2 weight decay `λ`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sgd {
    /// `μ`
    pub momentum: f64,
    /// Whether the momentum is Nesterov's.
    pub nesterov: bool,
    /// `λ`
    pub weight_decay: f64,
}

impl UpdateRule for Sgd {
    fn state_names(&self) -> &'static [&'static str] {
        if self.momentum != 0.0 {
            &["momentum_buffer"]
        } else {
            &[]
        }
    }

    fn update(&self, values: &mut [f32], grads: &[f32], state: &mut [&mut [f32]], t: u64, lr: f64) {
        // PyTorch's scalars are doubles, rounded to f32 where they multiply f32 tensors.
        let (lr, decay, mu) = (lr as f32, self.weight_decay as f32, self.momentum as f32);
        match state {
            // Vanilla SGD gets a loop of its own, with nothing in it to stop it vectorising.
            [] if decay == 0.0 => {
                for (v, &g) in values.iter_mut().zip(grads) {
                    *v -= lr * g;
                }
            }
            [] => {
                for (v, &g) in values.iter_mut().zip(grads) {
                    *v -= lr * (g + decay * *v);
                }
            }
            [buffer] => {
                for ((v, &g), b) in values.iter_mut().zip(grads).zip(buffer.iter_mut()) {
                    let g = if decay != 0.0 { g + decay * *v } else { g };
                    *b = if t == 1 { g } else { *b * mu + g };
                    let direction = if self.nesterov { g + mu * *b } else { *b };
                    *v -= lr * direction;
                }
            }
            _ => unreachable!("SGD keeps at most one state array"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(rule: Sgd, grads: &[[f32; 2]]) -> Vec<[f32; 2]> {
        let mut values = [1.0f32, -2.0];
        let mut buffer = [0.0f32; 2];
        let mut trace = Vec::new();
        for (t, g) in grads.iter().enumerate() {
            let mut state: Vec<&mut [f32]> = if rule.momentum != 0.0 {
                vec![&mut buffer]
            } else {
                vec![]
            };
            rule.update(&mut values, g, &mut state, t as u64 + 1, 0.1);
            trace.push(values);
        }
        trace
    }

    fn close(a: &[[f32; 2]], b: &[[f32; 2]]) {
        for (x, y) in a.iter().flatten().zip(b.iter().flatten()) {
            assert!((x - y).abs() < 1e-6, "{a:?} vs {b:?}");
        }
    }

    const GRADS: [[f32; 2]; 3] = [[0.5, -1.0], [0.25, 2.0], [-1.0, 0.0]];

    #[test]
    fn plain_sgd_subtracts_lr_times_the_gradient() {
        let rule = Sgd {
            momentum: 0.0,
            nesterov: false,
            weight_decay: 0.0,
        };
        // θ = (1, -2) - 0.1·(0.5, -1) = (0.95, -1.9), then - 0.1·(0.25, 2), then - 0.1·(-1, 0).
        close(
            &run(rule, &GRADS),
            &[[0.95, -1.9], [0.925, -2.1], [1.025, -2.1]],
        );
    }

    #[test]
    fn momentum_starts_its_buffer_at_the_first_gradient() {
        let rule = Sgd {
            momentum: 0.9,
            nesterov: false,
            weight_decay: 0.0,
        };
        // b1 = (0.5, -1)                          θ1 = (0.95, -1.9)
        // b2 = 0.9·b1 + (0.25, 2) = (0.7, 1.1)     θ2 = (0.88, -2.01)
        // b3 = 0.9·b2 + (-1, 0) = (-0.37, 0.99)    θ3 = (0.917, -2.109)
        close(
            &run(rule, &GRADS),
            &[[0.95, -1.9], [0.88, -2.01], [0.917, -2.109]],
        );
    }

    #[test]
    fn nesterov_looks_one_step_ahead() {
        let rule = Sgd {
            momentum: 0.9,
            nesterov: true,
            weight_decay: 0.0,
        };
        // step 1: b = (0.5, -1), g + 0.9·b = (0.95, -1.9)         θ = (0.905, -1.81)
        // step 2: b = (0.7, 1.1), g + 0.9·b = (0.88, 2.99)        θ = (0.817, -2.109)
        // step 3: b = (-0.37, 0.99), g + 0.9·b = (-1.333, 0.891)  θ = (0.9503, -2.1981)
        close(
            &run(rule, &GRADS),
            &[[0.905, -1.81], [0.817, -2.109], [0.9503, -2.1981]],
        );
    }

    #[test]
    fn weight_decay_adds_lambda_theta_to_the_gradient() {
        let rule = Sgd {
            momentum: 0.0,
            nesterov: false,
            weight_decay: 0.5,
        };
        // g = (0.5, -1) + 0.5·(1, -2) = (1, -2)      θ = (0.9, -1.8)
        // g = (0.25, 2) + 0.5·(0.9, -1.8) = (0.7, 1.1)  θ = (0.83, -1.91)
        // g = (-1, 0) + 0.5·(0.83, -1.91) = (-0.585, -0.955)  θ = (0.8885, -1.8145)
        close(
            &run(rule, &GRADS),
            &[[0.9, -1.8], [0.83, -1.91], [0.8885, -1.8145]],
        );
    }
}
