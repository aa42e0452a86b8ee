//! Finite-difference gradient checks: the test every backward pass must pass.
//!
//! For a scalar function `L(θ)`, the central difference
//!
//! ```text
//! (L(θ + ε) - L(θ - ε)) / 2ε  =  dL/dθ + O(ε²)
//! ```
//!
//! needs only forward passes, so comparing it with what `backward` computed checks the derivation.
//! To check a layer on its own we give it the scalar objective `L = Σ R ⊙ Y` for a fixed random
//! matrix `R`, whose gradient with respect to the output is simply `dL/dY = R`.
//!
//! Everything runs in f32, so the comparison allows rounding noise: an entry passes when
//! `|analytic - numeric| <= relative · (|analytic| + |numeric| + scale) + absolute`, where `scale`
//! is the largest analytic gradient of the tensor and `absolute` (1e-4) is the noise floor of an
//! f32 finite difference. A wrong derivation (a missing factor, a transpose, a sign) is off by
//! about `scale` and fails.

use ndarray::{Array2, ArrayView2, Zip};
use rand::Rng;
use rand_distr::StandardNormal;

use crate::layers::{Layer, Param};
use crate::loss::loss_and_correct;
use crate::network::Network;

/// Where the worst disagreement between analytic and numeric gradients was.
#[derive(Debug, Clone, PartialEq)]
pub struct Mismatch {
    /// `"input"` or the parameter's name.
    pub tensor: String,
    /// Index of the entry, in row-major order.
    pub index: usize,
    /// What the backward pass computed.
    pub analytic: f64,
    /// What finite differences measured.
    pub numeric: f64,
}

/// Step and tolerance of a check.
#[derive(Debug, Clone, Copy)]
pub struct Tolerance {
    /// The finite-difference step `ε`.
    pub step: f32,
    /// The allowed relative error.
    pub relative: f64,
    /// The allowed absolute error: below it, differences are f32 rounding noise.
    pub absolute: f64,
}

impl Default for Tolerance {
    fn default() -> Self {
        Tolerance {
            step: 1e-2,
            relative: 1e-2,
            absolute: 1e-4,
        }
    }
}

/// Checks `layer.backward` against finite differences, for the input and every parameter, with
/// the layer in training mode. Returns every entry that disagrees.
pub fn check_layer(
    layer: &mut dyn Layer,
    input: ArrayView2<f32>,
    tolerance: Tolerance,
    rng: &mut impl Rng,
) -> Vec<Mismatch> {
    layer.set_input_grad_needed(true);
    let out_shape = layer.forward(input, true).dim();
    let weights = Array2::from_shape_simple_fn(out_shape, || rng.sample::<f32, _>(StandardNormal));
    let objective = |layer: &mut dyn Layer, x: ArrayView2<f32>| -> f64 {
        let y = layer.forward(x, true);
        let mut total = 0.0f64;
        Zip::from(&y)
            .and(&weights)
            .for_each(|&y, &r| total += y as f64 * r as f64);
        total
    };

    // Analytic gradients: one forward, one backward with dL/dY = R.
    layer.forward(input, true);
    let grad_input: Vec<f64> = layer
        .backward(input, weights.view())
        .iter()
        .map(|&g| g as f64)
        .collect();
    let grad_params: Vec<(String, Vec<f64>)> = layer
        .params()
        .into_iter()
        .map(|p| {
            (
                p.name.to_string(),
                p.grad.iter().map(|&g| g as f64).collect(),
            )
        })
        .collect();

    // Numeric gradient of the input.
    let mut x = input.to_owned();
    let mut numeric_input = Vec::with_capacity(x.len());
    for i in 0..x.len() {
        let original = x.as_slice().expect("standard layout")[i];
        let mut at = |value: f32| {
            x.as_slice_mut().expect("standard layout")[i] = value;
            objective(layer, x.view())
        };
        let numeric = central_difference(tolerance.step, |delta| at(original + delta));
        x.as_slice_mut().expect("standard layout")[i] = original;
        numeric_input.push(numeric);
    }
    let mut mismatches = compare("input", &grad_input, &numeric_input, tolerance);

    // Numeric gradient of each parameter.
    for (p, (name, analytic)) in grad_params.iter().enumerate() {
        let mut numeric = Vec::with_capacity(analytic.len());
        for i in 0..analytic.len() {
            let at = |delta: f32| {
                nudge(layer.params(), p, i, delta);
                let value = objective(layer, input);
                nudge(layer.params(), p, i, -delta);
                value
            };
            numeric.push(central_difference(tolerance.step, at));
        }
        mismatches.extend(compare(name, analytic, &numeric, tolerance));
    }
    mismatches
}

/// Checks the parameter gradients of a whole network, under its softmax cross-entropy loss on
/// `input` `(n, features)` with `labels` `(n)`. Returns every entry that disagrees.
pub fn check_network(
    network: &mut Network,
    input: ArrayView2<f32>,
    labels: &[u8],
    tolerance: Tolerance,
) -> Vec<Mismatch> {
    network.compute_gradients(input, labels);
    let analytic: Vec<(String, Vec<f64>)> = network
        .params()
        .into_iter()
        .enumerate()
        .map(|(i, p)| {
            (
                format!("{} {i}", p.name),
                p.grad.iter().map(|&g| g as f64).collect(),
            )
        })
        .collect();
    let mut mismatches = Vec::new();
    for (p, (name, analytic)) in analytic.iter().enumerate() {
        let mut numeric = Vec::with_capacity(analytic.len());
        for i in 0..analytic.len() {
            let at = |delta: f32| {
                nudge(network.params(), p, i, delta);
                let loss = loss_and_correct(network.forward(input, true), labels).loss;
                nudge(network.params(), p, i, -delta);
                loss
            };
            numeric.push(central_difference(tolerance.step, at));
        }
        mismatches.extend(compare(name, analytic, &numeric, tolerance));
    }
    mismatches
}

/// `(L(+step) - L(-step)) / 2·step`, where `objective(delta)` evaluates `L` with the entry moved by `delta`.
fn central_difference(step: f32, mut objective: impl FnMut(f32) -> f64) -> f64 {
    (objective(step) - objective(-step)) / (2.0 * step as f64)
}

/// Adds `delta` to entry `index` of parameter number `param`.
fn nudge(params: Vec<Param<'_>>, param: usize, index: usize, delta: f32) {
    params
        .into_iter()
        .nth(param)
        .expect("parameter exists")
        .value[index] += delta;
}

/// The entries of `analytic` and `numeric` that disagree beyond `tolerance` (see the module docs).
pub fn compare(
    tensor: &str,
    analytic: &[f64],
    numeric: &[f64],
    tolerance: Tolerance,
) -> Vec<Mismatch> {
    assert_eq!(analytic.len(), numeric.len(), "compare: lengths differ");
    let scale = analytic.iter().fold(0.0f64, |m, a| m.max(a.abs()));
    analytic
        .iter()
        .zip(numeric)
        .enumerate()
        .filter(|(_, (a, n))| {
            (*a - *n).abs() > tolerance.relative * (a.abs() + n.abs() + scale) + tolerance.absolute
        })
        .map(|(index, (&analytic, &numeric))| Mismatch {
            tensor: tensor.to_string(),
            index,
            analytic,
            numeric,
        })
        .collect()
}
