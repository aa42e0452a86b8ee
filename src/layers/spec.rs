//! What a layer is, without its numbers: enough to rebuild it from a saved model.

use serde::{Deserialize, Serialize};

use super::{
    AvgPool2d, BatchNorm1d, BatchNorm2d, Conv2d, ConvShape, Dropout, Flatten, Layer, Linear,
    MaxPool2d, PoolShape, ReLU, Tanh,
};

/// The kind and size of a layer, as recorded in a saved model's metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum LayerSpec {
    /// [`Linear`] from `inputs` to `outputs` features.
    Linear {
        /// Input features.
        inputs: usize,
        /// Output features.
        outputs: usize,
        /// Whether the biases share one scalar gradient (Samson Zhang's network).
        #[serde(default)]
        shared_bias_gradient: bool,
    },
    /// [`ReLU`].
    ReLU,
    /// [`BatchNorm1d`] over `features` features.
    BatchNorm1d {
        /// Features normalised.
        features: usize,
    },
    /// [`Conv2d`] of the given shape.
    Conv2d(ConvShape),
    /// [`Flatten`] of `features` features.
    Flatten {
        /// Features per row.
        features: usize,
    },
    /// [`Tanh`].
    Tanh,
    /// [`Dropout`] with probability `p`.
    Dropout {
        /// The probability of zeroing a value while training.
        p: f32,
    },
    /// [`MaxPool2d`] of the given shape.
    MaxPool2d(PoolShape),
    /// [`AvgPool2d`] of the given shape.
    AvgPool2d(PoolShape),
    /// [`BatchNorm2d`] over `channels` channels of `pixels` pixels.
    BatchNorm2d {
        /// Channels normalised.
        channels: usize,
        /// Pixels per channel.
        pixels: usize,
    },
}

/// A tensor as saved: its name within the layer, its shape in PyTorch's layout, and its values in
/// that layout's row-major order.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    /// `weight`, `bias`, `running_mean`, `running_var`.
    pub name: &'static str,
    /// PyTorch's shape: `(out, in)` for a linear weight, `(out, in, k, k)` for a convolution's.
    pub shape: Vec<usize>,
    /// The values.
    pub values: Vec<f32>,
}

impl LayerSpec {
    /// The number of features this layer outputs for `inputs` input features, or why it cannot
    /// take them (a file may describe anything, so nothing here may panic).
    pub fn output_features(&self, inputs: usize) -> Result<usize, String> {
        let expect = |expected: usize| {
            if inputs == expected {
                Ok(())
            } else {
                Err(format!(
                    "{self:?} expects {expected} input features but receives {inputs}"
                ))
            }
        };
        match *self {
            LayerSpec::Linear {
                inputs: i, outputs, ..
            } => {
                expect(i)?;
                if i == 0 || outputs == 0 {
                    return Err(format!("{self:?} has an empty side"));
                }
                Ok(outputs)
            }
            LayerSpec::ReLU | LayerSpec::Tanh => Ok(inputs),
            LayerSpec::Dropout { p } => {
                if (0.0..1.0).contains(&p) {
                    Ok(inputs)
                } else {
                    Err(format!("{self:?}: p must be in [0, 1)"))
                }
            }
            LayerSpec::MaxPool2d(shape) | LayerSpec::AvgPool2d(shape) => {
                shape.check().map_err(|e| format!("{self:?}: {e}"))?;
                expect(shape.input_len())?;
                Ok(shape.output_len())
            }
            LayerSpec::BatchNorm2d { channels, pixels } => {
                let features = channels
                    .checked_mul(pixels)
                    .filter(|&f| f > 0)
                    .ok_or_else(|| format!("{self:?}: impossible size"))?;
                expect(features)?;
                Ok(features)
            }
            LayerSpec::BatchNorm1d { features } | LayerSpec::Flatten { features } => {
                expect(features)?;
                Ok(features)
            }
            LayerSpec::Conv2d(shape) => {
                shape.check().map_err(|e| format!("{self:?}: {e}"))?;
                expect(shape.input_len())?;
                Ok(shape.output_len())
            }
        }
    }

    /// How many numbers the layer saves (parameters and running statistics), if countable.
    /// Call [`output_features`](Self::output_features) first.
    pub fn saved_values(&self) -> Option<usize> {
        match *self {
            LayerSpec::Linear {
                inputs, outputs, ..
            } => inputs.checked_mul(outputs)?.checked_add(outputs),
            LayerSpec::ReLU
            | LayerSpec::Flatten { .. }
            | LayerSpec::Tanh
            | LayerSpec::Dropout { .. }
            | LayerSpec::MaxPool2d(_)
            | LayerSpec::AvgPool2d(_) => Some(0),
            LayerSpec::BatchNorm1d { features } => features.checked_mul(4),
            LayerSpec::BatchNorm2d { channels, .. } => channels.checked_mul(4),
            LayerSpec::Conv2d(shape) => shape
                .taps()
                .checked_mul(shape.out_channels)?
                .checked_add(shape.out_channels),
        }
    }

    /// A layer of this kind and size with zero parameters (to be filled by [`Layer::import`]).
    /// Call [`output_features`](Self::output_features) first: an invalid spec panics here.
    pub fn build(&self) -> Box<dyn Layer> {
        match *self {
            LayerSpec::Linear {
                inputs,
                outputs,
                shared_bias_gradient,
            } => {
                let layer = Linear::from_params(
                    ndarray::Array2::zeros((inputs, outputs)),
                    ndarray::Array1::zeros(outputs),
                );
                if shared_bias_gradient {
                    Box::new(layer.with_shared_bias_gradient())
                } else {
                    Box::new(layer)
                }
            }
            LayerSpec::ReLU => Box::new(ReLU::new()),
            LayerSpec::BatchNorm1d { features } => Box::new(BatchNorm1d::new(features)),
            LayerSpec::Conv2d(shape) => Box::new(Conv2d::from_params(
                shape,
                ndarray::Array2::zeros((shape.out_channels, shape.taps())),
                ndarray::Array1::zeros(shape.out_channels),
            )),
            LayerSpec::Flatten { features } => Box::new(Flatten::new(features)),
            LayerSpec::Tanh => Box::new(Tanh::new()),
            LayerSpec::Dropout { p } => Box::new(Dropout::new(p)),
            LayerSpec::MaxPool2d(shape) => Box::new(MaxPool2d::new(shape)),
            LayerSpec::AvgPool2d(shape) => Box::new(AvgPool2d::new(shape)),
            LayerSpec::BatchNorm2d { channels, pixels } => {
                Box::new(BatchNorm2d::new(channels, pixels))
            }
        }
    }
}
