//! Learning-rate schedules: the learning rate of every step, as a pure function of the step.
//!
//! A schedule is applied at every step (not once an epoch). With `η` the base learning rate
//! (`--lr`), `s` the step (0 for the first), `S` the run's number of steps and `E` the steps per
//! epoch, following `torch.optim.lr_scheduler`'s closed forms:
//!
//! ```text
//! constant             η
//! step every N, γ      η · γ^⌊s / (N·E)⌋                                StepLR, per epoch
//! cosine               η_min + (η - η_min) · (1 + cos(π·s/S)) / 2        CosineAnnealingLR, T_max = S
//! one-cycle            η/div → η over the first pct·S steps, then η → η/(div·final_div),
//!                      each half a cosine                                OneCycleLR (no momentum cycling)
//! ```
//!
//! A linear warm-up of `W` steps multiplies any of them by `(s + 1) / W` while `s < W`: the first
//! step uses `η/W`, step `W - 1` the full rate. Because the rate depends only on the step, a
//! checkpoint needs nothing but the step count to resume a schedule.

use std::f64::consts::PI;

use serde::{Deserialize, Serialize};

/// The shape of a schedule.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "lowercase")]
pub enum Schedule {
    /// The base rate throughout.
    Constant,
    /// Multiplied by `gamma` every `every_epochs` epochs.
    Step {
        /// Epochs between decays.
        every_epochs: usize,
        /// The factor of each decay.
        gamma: f64,
    },
    /// Half a cosine from the base rate down to `min_lr` over the run.
    Cosine {
        /// The rate at the end (`eta_min`).
        min_lr: f64,
    },
    /// PyTorch's `OneCycleLR` with `anneal_strategy="cos"`, `three_phase=False` and no momentum
    /// cycling; the base rate is its `max_lr`.
    OneCycle {
        /// The share of the steps spent rising (`pct_start`).
        pct_start: f64,
        /// The starting rate is `max_lr / div_factor`.
        div_factor: f64,
        /// The final rate is the starting rate `/ final_div_factor`.
        final_div_factor: f64,
    },
}

impl Schedule {
    /// One-cycle with PyTorch's defaults: `pct_start` 0.3, `div_factor` 25, `final_div_factor` 1e4.
    pub const ONE_CYCLE: Schedule = Schedule::OneCycle {
        pct_start: 0.3,
        div_factor: 25.0,
        final_div_factor: 1e4,
    };

    /// Whether the settings make sense, and if not why.
    pub fn check(&self) -> Result<(), String> {
        let positive = |name: &str, x: f64| {
            if x.is_finite() && x > 0.0 {
                Ok(())
            } else {
                Err(format!("{name} must be a positive finite number, got {x}"))
            }
        };
        match *self {
            Schedule::Constant => Ok(()),
            Schedule::Step {
                every_epochs,
                gamma,
            } => {
                if every_epochs == 0 {
                    return Err("a step schedule decays every 1 epoch or more".into());
                }
                positive("gamma", gamma)
            }
            Schedule::Cosine { min_lr } => {
                if min_lr.is_finite() && min_lr >= 0.0 {
                    Ok(())
                } else {
                    Err(format!(
                        "the cosine schedule's minimum must be ≥ 0, got {min_lr}"
                    ))
                }
            }
            Schedule::OneCycle {
                pct_start,
                div_factor,
                final_div_factor,
            } => {
                if !(pct_start > 0.0 && pct_start < 1.0) {
                    return Err(format!("pct_start must be in (0, 1), got {pct_start}"));
                }
                positive("div_factor", div_factor)?;
                positive("final_div_factor", final_div_factor)
            }
        }
    }
}

impl std::str::FromStr for Schedule {
    type Err = String;

    /// `constant`, `step:EVERY_EPOCHS:GAMMA`, `cosine[:MIN_LR]`,
    /// `onecycle[:PCT_START[:DIV_FACTOR[:FINAL_DIV_FACTOR]]]`.
    fn from_str(text: &str) -> Result<Self, String> {
        let mut parts = text.split(':');
        let name = parts.next().unwrap_or_default();
        let numbers: Vec<&str> = parts.collect();
        let number = |i: usize, default: Option<f64>| -> Result<f64, String> {
            match numbers.get(i) {
                Some(s) => s
                    .parse::<f64>()
                    .map_err(|_| format!("'{s}' in schedule '{text}' is not a number")),
                None => default.ok_or_else(|| format!("schedule '{text}' misses a value")),
            }
        };
        let most = |n: usize| {
            if numbers.len() > n {
                Err(format!("schedule '{text}' has too many values"))
            } else {
                Ok(())
            }
        };
        let schedule = match name {
            "constant" => {
                most(0)?;
                Schedule::Constant
            }
            "step" => {
                most(2)?;
                let every = number(0, None)?;
                if every.fract() != 0.0 || every < 1.0 {
                    return Err(format!(
                        "step:{every}: the epochs between decays must be a whole number ≥ 1"
                    ));
                }
                Schedule::Step {
                    every_epochs: every as usize,
                    gamma: number(1, None)?,
                }
            }
            "cosine" => {
                most(1)?;
                Schedule::Cosine {
                    min_lr: number(0, Some(0.0))?,
                }
            }
            "onecycle" => {
                most(3)?;
                Schedule::OneCycle {
                    pct_start: number(0, Some(0.3))?,
                    div_factor: number(1, Some(25.0))?,
                    final_div_factor: number(2, Some(1e4))?,
                }
            }
            _ => {
                return Err(format!(
                "unknown schedule '{text}': use constant, step:EPOCHS:GAMMA, cosine[:MIN_LR] or \
                     onecycle[:PCT_START[:DIV_FACTOR[:FINAL_DIV_FACTOR]]]"
            ))
            }
        };
        schedule.check()?;
        Ok(schedule)
    }
}

impl std::fmt::Display for Schedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Schedule::Constant => f.write_str("constant"),
            Schedule::Step {
                every_epochs,
                gamma,
            } => write!(f, "step:{every_epochs}:{gamma}"),
            Schedule::Cosine { min_lr } => write!(f, "cosine:{min_lr}"),
            Schedule::OneCycle {
                pct_start,
                div_factor,
                final_div_factor,
            } => write!(f, "onecycle:{pct_start}:{div_factor}:{final_div_factor}"),
        }
    }
}

/// A schedule laid over a run: the learning rate of each of its steps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LrSchedule {
    /// The base rate `η` (`max_lr` for one-cycle).
    pub base_lr: f64,
    /// The shape.
    pub schedule: Schedule,
    /// Steps of linear warm-up (0: none).
    pub warmup_steps: u64,
    /// Steps in one epoch.
    pub steps_per_epoch: u64,
    /// Steps in the whole run.
    pub total_steps: u64,
}

impl LrSchedule {
    /// The learning rate of step `step` (0 for the first step of the run).
    pub fn lr(&self, step: u64) -> f64 {
        let (s, total) = (step as f64, self.total_steps.max(1) as f64);
        let eta = self.base_lr;
        let rate = match self.schedule {
            Schedule::Constant => eta,
            Schedule::Step {
                every_epochs,
                gamma,
            } => {
                let decays = step / (every_epochs as u64 * self.steps_per_epoch.max(1));
                eta * gamma.powi(decays as i32)
            }
            Schedule::Cosine { min_lr } => {
                min_lr + (eta - min_lr) * (1.0 + (PI * s / total).cos()) / 2.0
            }
            Schedule::OneCycle {
                pct_start,
                div_factor,
                final_div_factor,
            } => {
                let initial = eta / div_factor;
                let last = initial / final_div_factor;
                // PyTorch's phases end at steps pct·S - 1 and S - 1.
                let rise_end = pct_start * total - 1.0;
                let fall_end = total - 1.0;
                let cosine = |from: f64, to: f64, pct: f64| {
                    to + (from - to) / 2.0 * ((PI * pct).cos() + 1.0)
                };
                if s <= rise_end {
                    cosine(initial, eta, s / rise_end)
                } else {
                    cosine(eta, last, (s - rise_end) / (fall_end - rise_end))
                }
            }
        };
        if step < self.warmup_steps {
            rate * (step + 1) as f64 / self.warmup_steps as f64
        } else {
            rate
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn over(schedule: Schedule, total_steps: u64) -> LrSchedule {
        LrSchedule {
            base_lr: 0.1,
            schedule,
            warmup_steps: 0,
            steps_per_epoch: 10,
            total_steps,
        }
    }

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-12, "{a} vs {b}");
    }

    #[test]
    fn step_decay_multiplies_by_gamma_every_n_epochs() {
        // 10 steps an epoch, γ = 0.5 every 2 epochs: steps 0-19 at 0.1, 20-39 at 0.05, 40- at 0.025.
        let lr = over("step:2:0.5".parse().unwrap(), 100);
        for (step, expected) in [(0, 0.1), (19, 0.1), (20, 0.05), (39, 0.05), (40, 0.025)] {
            close(lr.lr(step), expected);
        }
    }

    #[test]
    fn cosine_falls_from_the_base_rate_to_the_minimum() {
        // S = 100: step 0 at 0.1, step 50 half way (0.055 with η_min 0.01), step 100 at η_min.
        let lr = over("cosine:0.01".parse().unwrap(), 100);
        close(lr.lr(0), 0.1);
        close(lr.lr(50), 0.055);
        close(lr.lr(25), 0.01 + 0.09 * (1.0 + 0.5f64.sqrt()) / 2.0);
        close(lr.lr(100), 0.01);
    }

    #[test]
    fn one_cycle_rises_then_falls_as_pytorch_defines_it() {
        // S = 100, pct_start 0.3: the rise ends at step 29, the fall at step 99.
        // Step 0: 0.1/25 = 0.004; step 29: 0.1; step 99: 0.004/1e4 = 4e-7.
        let lr = over(Schedule::ONE_CYCLE, 100);
        close(lr.lr(0), 0.004);
        close(lr.lr(29), 0.1);
        close(lr.lr(99), 4e-7);
        // Half-way up (pct 0.5 at step 14.5) is not a step; step 10: pct = 10/29.
        let pct = 10.0 / 29.0;
        close(
            lr.lr(10),
            0.1 + (0.004 - 0.1) / 2.0 * ((PI * pct).cos() + 1.0),
        );
        // Half-way down: step 64, pct = (64 - 29)/70 = 0.5, the mean of 0.1 and 4e-7.
        close(lr.lr(64), (0.1 + 4e-7) / 2.0);
    }

    #[test]
    fn warmup_ramps_any_schedule_linearly() {
        let lr = LrSchedule {
            warmup_steps: 4,
            ..over(Schedule::Constant, 100)
        };
        for (step, expected) in [(0, 0.025), (1, 0.05), (2, 0.075), (3, 0.1), (4, 0.1)] {
            close(lr.lr(step), expected);
        }
    }

    #[test]
    fn bad_schedules_are_refused_with_a_reason() {
        for (text, expected) in [
            ("linear", "unknown schedule"),
            ("step:2", "misses a value"),
            ("step:0.5:0.1", "whole number"),
            ("step:2:x", "not a number"),
            ("onecycle:1.5", "pct_start"),
            ("cosine:1:2", "too many"),
            ("step:2:-1", "gamma"),
        ] {
            let error = text.parse::<Schedule>().unwrap_err();
            assert!(error.contains(expected), "{text}: {error}");
        }
        assert_eq!("onecycle".parse::<Schedule>(), Ok(Schedule::ONE_CYCLE));
    }
}
