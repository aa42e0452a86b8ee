//! What a layer is, without its numbers: enough to rebuild it from a saved model.

use serde::{Deserialize, Serialize};

use super::{
    check_table, subsample, AvgPool2d, BatchNorm1d, BatchNorm2d, ConnectionTable, Conv2d,
    ConvShape, Crop2d, CropShape, Dropout, Flatten, Layer, Linear, MaxPool2d, Pad2d, PadShape,
    PartialConv2d, PoolShape, ReLU, Subsample2d, Tanh,
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
    /// [`Conv2d`] of the given shape computed by Winograd's F(2x2, 3x3)
    /// ([`Conv2d::with_winograd`]): the same parameters, equal results up to rounding.
    WinogradConv2d(ConvShape),
    /// [`Conv2d`] of the given shape computed by direct sums, eight images at a time
    /// ([`Conv2d::with_direct`]): the same parameters, equal results up to rounding.
    DirectConv2d(ConvShape),
    /// [`Flatten`] of `features` features.
    Flatten {
        /// Features per row.
        features: usize,
    },
    /// [`Tanh`]: `amplitude · tanh(slope · x)` (1 and 1 for the plain tanh).
    Tanh {
        /// Outputs lie in `(-amplitude, amplitude)`.
        #[serde(default = "one")]
        amplitude: f32,
        /// The input's scale.
        #[serde(default = "one")]
        slope: f32,
    },
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
    /// [`Pad2d`] of the given shape.
    Pad2d(PadShape),
    /// [`Crop2d`] of the given shape.
    Crop2d(CropShape),
    /// [`Subsample2d`] of the given shape.
    Subsample2d(PoolShape),
    /// [`PartialConv2d`]: the dense convolution's shape and which input maps each output map sees.
    PartialConv2d {
        /// The geometry, as if every map were connected.
        shape: ConvShape,
        /// `table[o]`: the input maps of output map `o`.
        table: ConnectionTable,
    },
}

/// The plain tanh's amplitude and slope.
fn one() -> f32 {
    1.0
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
            LayerSpec::ReLU => Ok(inputs),
            LayerSpec::Tanh { amplitude, slope } => {
                if amplitude.is_finite() && amplitude > 0.0 && slope.is_finite() {
                    Ok(inputs)
                } else {
                    Err(format!(
                        "{self:?}: the amplitude must be positive and both finite"
                    ))
                }
            }
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
            LayerSpec::Conv2d(shape)
            | LayerSpec::WinogradConv2d(shape)
            | LayerSpec::DirectConv2d(shape) => {
                shape.check().map_err(|e| format!("{self:?}: {e}"))?;
                let algorithm = match self {
                    LayerSpec::WinogradConv2d(_) => super::check_winograd(&shape),
                    LayerSpec::DirectConv2d(_) => super::check_direct(&shape),
                    _ => Ok(()),
                };
                algorithm.map_err(|e| format!("{self:?}: {e}"))?;
                expect(shape.input_len())?;
                Ok(shape.output_len())
            }
            LayerSpec::Pad2d(shape) => {
                shape.check().map_err(|e| format!("{self:?}: {e}"))?;
                expect(shape.input_len())?;
                Ok(shape.output_len())
            }
            LayerSpec::Crop2d(shape) => {
                shape.check().map_err(|e| format!("{self:?}: {e}"))?;
                expect(shape.input_len())?;
                Ok(shape.output_len())
            }
            LayerSpec::Subsample2d(shape) => {
                subsample::check(&shape).map_err(|e| format!("{self:?}: {e}"))?;
                expect(shape.input_len())?;
                Ok(shape.output_len())
            }
            LayerSpec::PartialConv2d { shape, ref table } => {
                shape.check().map_err(|e| format!("{self:?}: {e}"))?;
                check_table(table, shape.in_channels, shape.out_channels)
                    .map_err(|e| format!("{self:?}: {e}"))?;
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
            | LayerSpec::Tanh { .. }
            | LayerSpec::Dropout { .. }
            | LayerSpec::MaxPool2d(_)
            | LayerSpec::AvgPool2d(_)
            | LayerSpec::Pad2d(_)
            | LayerSpec::Crop2d(_) => Some(0),
            LayerSpec::Subsample2d(shape) => shape.channels.checked_mul(2),
            LayerSpec::PartialConv2d { shape, ref table } => table
                .iter()
                .map(Vec::len)
                .sum::<usize>()
                .checked_mul(shape.kernel.checked_mul(shape.kernel)?)?
                .checked_add(shape.out_channels),
            LayerSpec::BatchNorm1d { features } => features.checked_mul(4),
            LayerSpec::BatchNorm2d { channels, .. } => channels.checked_mul(4),
            LayerSpec::Conv2d(shape)
            | LayerSpec::WinogradConv2d(shape)
            | LayerSpec::DirectConv2d(shape) => shape
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
            LayerSpec::Conv2d(shape)
            | LayerSpec::WinogradConv2d(shape)
            | LayerSpec::DirectConv2d(shape) => {
                let conv = Conv2d::from_params(
                    shape,
                    ndarray::Array2::zeros((shape.out_channels, shape.taps())),
                    ndarray::Array1::zeros(shape.out_channels),
                );
                match self {
                    LayerSpec::WinogradConv2d(_) => {
                        Box::new(conv.with_winograd().expect("a checked spec"))
                    }
                    LayerSpec::DirectConv2d(_) => {
                        Box::new(conv.with_direct().expect("a checked spec"))
                    }
                    _ => Box::new(conv),
                }
            }
            LayerSpec::Flatten { features } => Box::new(Flatten::new(features)),
            LayerSpec::Tanh { amplitude, slope } => Box::new(Tanh::scaled(amplitude, slope)),
            LayerSpec::Dropout { p } => Box::new(Dropout::new(p)),
            LayerSpec::MaxPool2d(shape) => Box::new(MaxPool2d::new(shape)),
            LayerSpec::AvgPool2d(shape) => Box::new(AvgPool2d::new(shape)),
            LayerSpec::BatchNorm2d { channels, pixels } => {
                Box::new(BatchNorm2d::new(channels, pixels))
            }
            LayerSpec::Pad2d(shape) => Box::new(Pad2d::new(shape)),
            LayerSpec::Crop2d(shape) => Box::new(Crop2d::new(shape)),
            LayerSpec::Subsample2d(shape) => Box::new(Subsample2d::from_params(
                shape,
                ndarray::Array1::zeros(shape.channels),
                ndarray::Array1::zeros(shape.channels),
            )),
            LayerSpec::PartialConv2d { shape, ref table } => {
                let connections = table.iter().map(Vec::len).sum();
                Box::new(PartialConv2d::from_params(
                    shape,
                    table.clone(),
                    ndarray::Array2::zeros((connections, shape.kernel * shape.kernel)),
                    ndarray::Array1::zeros(shape.out_channels),
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tanh_saved_before_the_scaled_one_reads_as_the_plain_tanh() {
        let old: LayerSpec = serde_json::from_str(r#"{"type": "Tanh"}"#).unwrap();
        let plain = LayerSpec::Tanh {
            amplitude: 1.0,
            slope: 1.0,
        };
        assert_eq!(old, plain);
        let text = serde_json::to_string(&plain).unwrap();
        assert_eq!(serde_json::from_str::<LayerSpec>(&text).unwrap(), plain);
    }

    #[test]
    fn impossible_tables_and_shapes_in_a_file_are_refused() {
        let conv = ConvShape {
            in_channels: 2,
            out_channels: 2,
            height: 5,
            width: 5,
            kernel: 3,
            stride: 1,
            padding: 0,
            dilation: 1,
        };
        for (table, problem) in [
            (vec![vec![0]], "lists 1 output maps"),
            (vec![vec![0], vec![]], "connected to no input map"),
            (vec![vec![1, 0], vec![0]], "increasing order"),
            (vec![vec![0], vec![2]], "connected to input map 2"),
        ] {
            let spec = LayerSpec::PartialConv2d { shape: conv, table };
            let error = spec.output_features(50).unwrap_err();
            assert!(error.contains(problem), "{error}");
        }
        let overlapping = LayerSpec::Subsample2d(PoolShape {
            channels: 1,
            height: 4,
            width: 4,
            kernel: 2,
            stride: 1,
        });
        assert!(overlapping
            .output_features(16)
            .unwrap_err()
            .contains("do not overlap"));
        let pad = |value: f32| {
            LayerSpec::Pad2d(PadShape {
                channels: 1,
                height: 2,
                width: 2,
                padding: usize::MAX / 2,
                value,
            })
        };
        assert!(pad(0.0)
            .output_features(4)
            .unwrap_err()
            .contains("too large"));
        let tanh = LayerSpec::Tanh {
            amplitude: 0.0,
            slope: 1.0,
        };
        assert!(tanh.output_features(3).is_err());
    }
}
