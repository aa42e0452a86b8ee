//! Weight initialisation: where gradient descent starts from.
//!
//! A layer with `fan_in` inputs sums `fan_in` products; if each weight has variance `v`, the
//! output's variance is about `fan_in * v` times the input's. He initialisation picks
//! `v = 2 / fan_in` so that, with ReLU zeroing half the units, signals keep their scale through
//! any number of layers.

use std::fmt;
use std::str::FromStr;

use ndarray::{Array1, Array2};
use rand::Rng;
use rand_distr::{Distribution, Normal, Uniform};

/// How a dense layer's weights (and biases) are first drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Init {
    /// Normal with standard deviation `sqrt(2 / fan_in)`, zero bias (He et al. 2015).
    He,
    /// Normal with standard deviation `sqrt(2 / (fan_in + fan_out))`, zero bias (Glorot & Bengio 2010).
    Xavier,
    /// Normal with standard deviation 0.01, zero bias.
    Gaussian,
    /// Uniform in `[-0.5, 0.5)` for weights *and* biases, as in Samson Zhang's tutorial.
    Samson,
    /// PyTorch's default for `nn.Linear` and `nn.Conv2d`: uniform in `±1/sqrt(fan_in)` for weights
    /// *and* biases (`kaiming_uniform_` with `a = sqrt(5)`), what a PyTorch recipe starts from.
    Torch,
    /// Uniform in `±2.4/fan_in` for weights *and* biases, as LeNet-5 was initialised (LeCun et al.
    /// 1998, section II.B and appendix C): small enough that the weighted sums start in the
    /// squashing function's nearly linear range.
    LeCun,
}

impl Init {
    /// All initialisers, in the order the CLI lists them.
    pub const ALL: [Init; 6] = [
        Init::He,
        Init::Xavier,
        Init::Gaussian,
        Init::Samson,
        Init::Torch,
        Init::LeCun,
    ];

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Init::He => "he",
            Init::Xavier => "xavier",
            Init::Gaussian => "gaussian",
            Init::Samson => "samson",
            Init::Torch => "torch",
            Init::LeCun => "lecun",
        }
    }

    /// Draws a `(fan_in, fan_out)` weight matrix, row by row.
    pub fn weights(self, fan_in: usize, fan_out: usize, rng: &mut impl Rng) -> Array2<f32> {
        let values = self.sample(fan_in, fan_out, fan_in * fan_out, rng);
        Array2::from_shape_vec((fan_in, fan_out), values)
            .expect("as many values as the shape holds")
    }

    /// Draws `count` weights of units with `fan_in` inputs in a layer of `fan_out` outputs (for
    /// layers whose weights are not one matrix, such as a subsampling's coefficients).
    pub fn sample(
        self,
        fan_in: usize,
        fan_out: usize,
        count: usize,
        rng: &mut impl Rng,
    ) -> Vec<f32> {
        let normal = |std: f64| Normal::new(0.0, std as f32).expect("a positive finite std");
        match self {
            Init::He => draw(count, normal((2.0 / fan_in as f64).sqrt()), rng),
            Init::Xavier => draw(count, normal((2.0 / (fan_in + fan_out) as f64).sqrt()), rng),
            Init::Gaussian => draw(count, normal(0.01), rng),
            Init::Samson => draw(count, samson_uniform(), rng),
            Init::Torch => draw(count, torch_uniform(fan_in), rng),
            Init::LeCun => draw(count, lecun_uniform(fan_in), rng),
        }
    }

    /// Draws a bias vector of length `fan_out` for a layer of `fan_in` inputs: zeros, except for
    /// `Samson`, `Torch` and `LeCun`.
    pub fn bias(self, fan_in: usize, fan_out: usize, rng: &mut impl Rng) -> Array1<f32> {
        match self {
            // Drawn as the weights are, from the same distribution.
            Init::Samson | Init::Torch | Init::LeCun => {
                Array1::from(self.sample(fan_in, fan_out, fan_out, rng))
            }
            Init::He | Init::Xavier | Init::Gaussian => Array1::zeros(fan_out),
        }
    }
}

/// `np.random.rand(..) - 0.5`: uniform in `[-0.5, 0.5)`.
fn samson_uniform() -> Uniform<f32> {
    Uniform::new(-0.5, 0.5).expect("a non-empty range")
}

/// Uniform in `[-1/sqrt(fan_in), 1/sqrt(fan_in))`.
fn torch_uniform(fan_in: usize) -> Uniform<f32> {
    let bound = (1.0 / fan_in as f64).sqrt() as f32;
    Uniform::new(-bound, bound).expect("a non-empty range")
}

/// Uniform in `[-2.4/fan_in, 2.4/fan_in)`.
fn lecun_uniform(fan_in: usize) -> Uniform<f32> {
    let bound = (2.4 / fan_in as f64) as f32;
    Uniform::new(-bound, bound).expect("a non-empty range")
}

/// `count` independent draws.
fn draw(count: usize, distribution: impl Distribution<f32>, rng: &mut impl Rng) -> Vec<f32> {
    distribution.sample_iter(rng).take(count).collect()
}

impl fmt::Display for Init {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Init {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Init::ALL
            .into_iter()
            .find(|init| init.name() == s)
            .ok_or_else(|| {
                format!(
                    "unknown initialisation '{s}' (expected he, xavier, gaussian, samson, torch or lecun)"
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seeded_rng;

    fn std_of(a: &Array2<f32>) -> f64 {
        let n = a.len() as f64;
        let mean = a.iter().map(|&x| x as f64).sum::<f64>() / n;
        (a.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n).sqrt()
    }

    #[test]
    fn scales_match_their_definitions() {
        let mut rng = seeded_rng(1);
        let he = Init::He.weights(400, 300, &mut rng);
        assert!((std_of(&he) - (2.0f64 / 400.0).sqrt()).abs() < 0.002);
        let xavier = Init::Xavier.weights(400, 300, &mut rng);
        assert!((std_of(&xavier) - (2.0f64 / 700.0).sqrt()).abs() < 0.002);
        let gaussian = Init::Gaussian.weights(400, 300, &mut rng);
        assert!((std_of(&gaussian) - 0.01).abs() < 0.0005);
        let samson = Init::Samson.weights(400, 300, &mut rng);
        assert!(samson.iter().all(|&w| (-0.5..0.5).contains(&w)));
        assert!((std_of(&samson) - (1.0f64 / 12.0).sqrt()).abs() < 0.005);
    }

    #[test]
    fn torch_draws_weights_and_biases_within_one_over_root_fan_in() {
        let mut rng = seeded_rng(3);
        let weights = Init::Torch.weights(400, 300, &mut rng);
        assert!(weights.iter().all(|&w| w.abs() <= 0.05));
        // Uniform in ±b has standard deviation b/sqrt(3).
        assert!((std_of(&weights) - 0.05 / 3f64.sqrt()).abs() < 0.001);
        let bias = Init::Torch.bias(25, 24, &mut rng);
        assert!(bias.iter().all(|&b| b.abs() <= 0.2) && bias.iter().any(|&b| b != 0.0));
    }

    #[test]
    fn lecun_draws_weights_and_biases_within_2_4_over_fan_in() {
        let mut rng = seeded_rng(4);
        let weights = Init::LeCun.weights(150, 400, &mut rng);
        assert!(weights.iter().all(|&w| w.abs() <= 0.016));
        // Uniform in ±b has standard deviation b/sqrt(3).
        assert!((std_of(&weights) - 0.016 / 3f64.sqrt()).abs() < 0.0002);
        let bias = Init::LeCun.bias(4, 6, &mut rng);
        assert!(bias.iter().all(|&b| b.abs() <= 0.6) && bias.iter().any(|&b| b != 0.0));
    }

    #[test]
    fn only_samson_and_torch_have_random_biases() {
        let mut rng = seeded_rng(2);
        assert!(Init::He.bias(5, 10, &mut rng).iter().all(|&b| b == 0.0));
        let samson = Init::Samson.bias(5, 10, &mut rng);
        assert!(samson.iter().any(|&b| b != 0.0));
        assert!(samson.iter().all(|&b| (-0.5..0.5).contains(&b)));
    }

    #[test]
    fn names_round_trip_and_unknown_is_refused() {
        for init in Init::ALL {
            assert_eq!(init.name().parse::<Init>(), Ok(init));
        }
        assert!("uniform".parse::<Init>().unwrap_err().contains("unknown"));
    }
}
