//! Optimisers: how a parameter moves, given its gradient and what the optimiser remembers.
//!
//! Every rule here follows `torch.optim`'s definition of the same name, operation for operation,
//! so that a published PyTorch recipe transfers with the same numbers (`scripts/optimizer_check.py`
//! compares steps with PyTorch's; the README gives the measured difference). With `g` the gradient
//! of the batch loss, `θ` a parameter and `t` the number of the step (1, 2, ...):
//!
//! - [`Sgd`]: `θ ← θ - lr·g`, with optional weight decay, momentum and Nesterov momentum;
//! - [`Adam`]: running averages of `g` and `g²`, corrected for their start at zero;
//!   with `decoupled` weight decay it is AdamW.
//!
//! An update rule only says how one value moves ([`UpdateRule::update`], on a slice of values at a
//! time); the [`Optimizer`] holds the rule, the learning rate, the step count and the state arrays
//! (momentum buffers, moments), one per parameter and per kind of state, each as long as the
//! parameter. The network cuts parameters, gradients and state into the same pieces and hands each
//! piece to one core ([`crate::network`]), so the update is shared between the cores and no value
//! is updated twice.

mod adam;
mod sgd;

pub use adam::Adam;
pub use sgd::Sgd;

use serde::{Deserialize, Serialize};

/// How values move given their gradients: one of `torch.optim`'s rules.
pub trait UpdateRule: Send + Sync {
    /// The names of the state this rule keeps per value, in PyTorch's words (`momentum_buffer`,
    /// `exp_avg`, `exp_avg_sq`); empty for plain SGD.
    fn state_names(&self) -> &'static [&'static str];

    /// Moves `values` given their `grads` at step `t` (1 for the first step) with learning rate
    /// `lr`. `state[k]` holds the state called `state_names()[k]` for these values, zero before
    /// the first step.
    fn update(&self, values: &mut [f32], grads: &[f32], state: &mut [&mut [f32]], t: u64, lr: f64);
}

/// An optimiser's rule and settings, as recorded in a saved model and parsed from the command line.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "lowercase")]
pub enum OptimizerSettings {
    /// [`Sgd`].
    Sgd {
        /// Momentum `μ` (0: none).
        momentum: f64,
        /// Nesterov momentum (needs `μ > 0`).
        nesterov: bool,
        /// L2 weight decay `λ`, added to the gradient.
        weight_decay: f64,
    },
    /// [`Adam`] with L2 weight decay added to the gradient.
    Adam {
        /// `β₁`, `β₂`.
        betas: (f64, f64),
        /// `ε`.
        eps: f64,
        /// `λ`.
        weight_decay: f64,
    },
    /// [`Adam`] with decoupled weight decay (AdamW).
    AdamW {
        /// `β₁`, `β₂`.
        betas: (f64, f64),
        /// `ε`.
        eps: f64,
        /// `λ`.
        weight_decay: f64,
    },
}

impl OptimizerSettings {
    /// Plain SGD: no momentum, no weight decay.
    pub const PLAIN_SGD: OptimizerSettings = OptimizerSettings::Sgd {
        momentum: 0.0,
        nesterov: false,
        weight_decay: 0.0,
    };

    /// Adam with `torch.optim.Adam`'s defaults: betas 0.9 and 0.999, eps 1e-8, no weight decay.
    pub const ADAM: OptimizerSettings = OptimizerSettings::Adam {
        betas: (0.9, 0.999),
        eps: 1e-8,
        weight_decay: 0.0,
    };

    /// Whether the settings make sense, and if not why.
    pub fn check(&self) -> Result<(), String> {
        let unit = |name: &str, x: f64| {
            if (0.0..1.0).contains(&x) {
                Ok(())
            } else {
                Err(format!("{name} must be in [0, 1), got {x}"))
            }
        };
        let non_negative = |name: &str, x: f64| {
            if x.is_finite() && x >= 0.0 {
                Ok(())
            } else {
                Err(format!("{name} must be a finite number ≥ 0, got {x}"))
            }
        };
        match *self {
            OptimizerSettings::Sgd {
                momentum,
                nesterov,
                weight_decay,
            } => {
                unit("momentum", momentum)?;
                non_negative("weight decay", weight_decay)?;
                if nesterov && momentum == 0.0 {
                    return Err("Nesterov momentum needs a momentum above 0".into());
                }
                Ok(())
            }
            OptimizerSettings::Adam {
                betas,
                eps,
                weight_decay,
            }
            | OptimizerSettings::AdamW {
                betas,
                eps,
                weight_decay,
            } => {
                unit("beta1", betas.0)?;
                unit("beta2", betas.1)?;
                non_negative("weight decay", weight_decay)?;
                if !(eps.is_finite() && eps > 0.0) {
                    return Err(format!("eps must be a positive finite number, got {eps}"));
                }
                Ok(())
            }
        }
    }

    /// The rule these settings describe. Call [`check`](Self::check) first.
    pub fn rule(&self) -> Box<dyn UpdateRule> {
        match *self {
            OptimizerSettings::Sgd {
                momentum,
                nesterov,
                weight_decay,
            } => Box::new(Sgd {
                momentum,
                nesterov,
                weight_decay,
            }),
            OptimizerSettings::Adam {
                betas,
                eps,
                weight_decay,
            } => Box::new(Adam {
                betas,
                eps,
                weight_decay,
                decoupled: false,
            }),
            OptimizerSettings::AdamW {
                betas,
                eps,
                weight_decay,
            } => Box::new(Adam {
                betas,
                eps,
                weight_decay,
                decoupled: true,
            }),
        }
    }
}

impl std::fmt::Display for OptimizerSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            OptimizerSettings::Sgd {
                momentum,
                nesterov,
                weight_decay,
            } => {
                f.write_str("SGD")?;
                if momentum > 0.0 {
                    let kind = if nesterov {
                        "Nesterov momentum"
                    } else {
                        "momentum"
                    };
                    write!(f, ", {kind} {momentum}")?;
                }
                if weight_decay > 0.0 {
                    write!(f, ", weight decay {weight_decay}")?;
                }
                Ok(())
            }
            OptimizerSettings::Adam {
                betas,
                eps,
                weight_decay,
            }
            | OptimizerSettings::AdamW {
                betas,
                eps,
                weight_decay,
            } => {
                let name = if matches!(self, OptimizerSettings::Adam { .. }) {
                    "Adam"
                } else {
                    "AdamW"
                };
                write!(f, "{name}, betas ({}, {}), eps {eps:e}", betas.0, betas.1)?;
                if weight_decay > 0.0 {
                    write!(f, ", weight decay {weight_decay}")?;
                }
                Ok(())
            }
        }
    }
}

/// An update rule with its learning rate, step count and per-parameter state.
pub struct Optimizer {
    rule: Box<dyn UpdateRule>,
    /// The learning rate of the next step (a schedule sets it before every step). Kept in f64,
    /// as PyTorch keeps it, and rounded to f32 where it multiplies f32 values.
    pub lr: f64,
    /// Steps taken so far.
    steps: u64,
    /// `state[p][k]`: the state called `state_names()[k]` of parameter `p`, as long as the parameter.
    state: Vec<Vec<Vec<f32>>>,
}

impl Optimizer {
    /// An optimiser with these settings and learning rate. Panics on impossible settings (the
    /// command line checks them with [`OptimizerSettings::check`] first).
    pub fn new(settings: OptimizerSettings, lr: f64) -> Self {
        if let Err(message) = settings.check() {
            panic!("Optimizer: {message}");
        }
        Optimizer {
            rule: settings.rule(),
            lr,
            steps: 0,
            state: Vec::new(),
        }
    }

    /// Plain SGD, `θ ← θ - lr·g`.
    pub fn sgd(lr: f64) -> Self {
        Optimizer::new(OptimizerSettings::PLAIN_SGD, lr)
    }

    /// Steps taken so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Begins a step on parameters of the given lengths: makes the state (zeros) on the first
    /// step, counts the step, and returns the rule, the step number `t`, the learning rate and the
    /// state of every parameter, for the network to cut into pieces.
    pub fn begin_step(&mut self, lengths: &[usize]) -> StepContext<'_> {
        let kinds = self.rule.state_names().len();
        let fits = self.state.len() == lengths.len()
            && self
                .state
                .iter()
                .zip(lengths)
                .all(|(s, &len)| s.len() == kinds && s.iter().all(|a| a.len() == len));
        if !fits {
            assert!(
                self.steps == 0 || kinds == 0,
                "Optimizer: the parameters changed shape after {} steps",
                self.steps
            );
            self.state = lengths
                .iter()
                .map(|&len| vec![vec![0.0; len]; kinds])
                .collect();
        }
        self.steps += 1;
        StepContext {
            rule: self.rule.as_ref(),
            t: self.steps,
            lr: self.lr,
            state: &mut self.state,
        }
    }

    /// The state as named arrays: `(parameter index, state name, values)`, for checkpoints.
    pub fn state(&self) -> Vec<(usize, &'static str, &[f32])> {
        let names = self.rule.state_names();
        let mut out = Vec::new();
        for (p, arrays) in self.state.iter().enumerate() {
            for (name, values) in names.iter().zip(arrays) {
                out.push((p, *name, values.as_slice()));
            }
        }
        out
    }

    /// Restores the step count and the state saved by [`state`](Self::state), whose arrays must
    /// come for every parameter of the given lengths, in order.
    pub fn restore(
        &mut self,
        steps: u64,
        lengths: &[usize],
        mut array: impl FnMut(usize, &str, usize) -> Result<Vec<f32>, String>,
    ) -> Result<(), String> {
        let names = self.rule.state_names();
        let mut state = Vec::with_capacity(lengths.len());
        if steps > 0 {
            for (p, &len) in lengths.iter().enumerate() {
                let arrays = names
                    .iter()
                    .map(|name| array(p, name, len))
                    .collect::<Result<Vec<_>, _>>()?;
                state.push(arrays);
            }
        }
        self.state = state;
        self.steps = steps;
        Ok(())
    }
}

/// What one step needs: the rule, the step number, the learning rate and every parameter's state.
pub struct StepContext<'a> {
    /// The update rule.
    pub rule: &'a dyn UpdateRule,
    /// The number of this step, from 1.
    pub t: u64,
    /// The learning rate of this step.
    pub lr: f64,
    /// `state[p][k]`, as in [`Optimizer`].
    pub state: &'a mut [Vec<Vec<f32>>],
}
