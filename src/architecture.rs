//! Architectures written as text, so that any network can be trained without writing code:
//!
//! ```text
//! conv 24 5, maxpool 2, relu, conv 32 3, maxpool 2, relu, flatten, linear 256, relu, linear 10
//! ```
//!
//! Layers are separated by commas or new lines (in a file, `#` starts a comment). Each is a name
//! and its sizes; the shapes in between are inferred from the input, a 1x28x28 image:
//!
//! | layer | meaning | PyTorch |
//! | --- | --- | --- |
//! | `linear N [shared-bias]` | `N` outputs from a flat input (`shared-bias`: Samson Zhang's one bias gradient per layer) | `nn.Linear` |
//! | `conv C K [stride S] [padding P] [dilation D]` | `C` maps of `KxK` taps (stride 1, padding 0, dilation 1 unless given) | `nn.Conv2d` |
//! | `conv C 3 algorithm winograd` | the same 3x3 convolution (stride 1) computed by Winograd's F(2x2, 3x3): 2.25x fewer multiplications, equal up to rounding | cuDNN's Winograd algorithm |
//! | `conv C K algorithm direct` | the same convolution (stride 1, kernel up to 7) computed by direct sums, eight images at a time, without patches or matrix products (for few input channels, as on the image itself), equal up to rounding | — |
//! | `conv C K table lenet5` | output maps see only the input maps LeNet-5's Table I lists (C3) | — |
//! | `maxpool K [stride S]`, `avgpool K [stride S]` | `KxK` windows, `S` apart (`K` unless given) | `nn.MaxPool2d`, `nn.AvgPool2d` |
//! | `subsample K` | LeNet-5's S layers: each `KxK` window's sum times a trainable coefficient plus a bias, per map | — |
//! | `pad P [value V]` | a border of `P` pixels of value `V` (0 unless given) | `nn.ConstantPad2d` |
//! | `crop P` | the middle of each map, without `P` pixels on every side | `nn.ZeroPad2d(-P)` |
//! | `relu`, `tanh`, `lecun-tanh` | activations (`lecun-tanh` is LeNet-5's `1.7159·tanh(2x/3)`) | `nn.ReLU`, `nn.Tanh` |
//! | `dropout P` | zero each value with probability `P` while training | `nn.Dropout` |
//! | `batchnorm` | per feature after `linear`, per channel after `conv` | `nn.BatchNorm1d`, `nn.BatchNorm2d` |
//! | `flatten` | an image's maps become one row of features | `nn.Flatten` |
//!
//! Until a layer has worked on the image, its pixels are also a row of 784 features, so an MLP
//! starts with `linear` directly (`linear 32, relu, linear 10`); after `conv` or a pooling layer,
//! `flatten` turns the maps into a row.
//!
//! An impossible architecture is refused with a message that names the layer and the shapes: a
//! window or kernel larger than its input, `linear` on an image without `flatten`, a last layer
//! without 10 outputs, a word that is not a layer.

use rand::Rng;

use crate::init::Init;
use crate::layers::{
    lenet5_table, subsample, Conv2d, ConvShape, CropShape, Layer, LayerSpec, Linear, PadShape,
    PartialConv2d, PoolShape, Subsample2d, LECUN_TANH,
};
use crate::network::Network;

/// The shape of the values between two layers, for one example.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// `channels` maps of `height x width` pixels.
    Image {
        /// Maps.
        channels: usize,
        /// Rows of pixels.
        height: usize,
        /// Columns of pixels.
        width: usize,
    },
    /// A row of features.
    Flat(usize),
}

impl Shape {
    /// An MNIST image: one 28x28 map.
    pub const MNIST: Shape = Shape::Image {
        channels: 1,
        height: 28,
        width: 28,
    };

    /// Values per example.
    pub fn len(&self) -> usize {
        match *self {
            Shape::Image {
                channels,
                height,
                width,
            } => channels * height * width,
            Shape::Flat(n) => n,
        }
    }

    /// Whether there are no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Shape::Image {
                channels,
                height,
                width,
            } => write!(f, "{channels}x{height}x{width}"),
            Shape::Flat(n) => write!(f, "{n}"),
        }
    }
}

/// One layer of an architecture with the shapes around it.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedLayer {
    /// The layer.
    pub spec: LayerSpec,
    /// The shape it receives.
    pub input: Shape,
    /// The shape it gives.
    pub output: Shape,
}

/// Parses an architecture for inputs of shape `input` ending in `classes` outputs.
pub fn parse(text: &str, input: Shape, classes: usize) -> Result<Vec<PlannedLayer>, String> {
    let items: Vec<&str> = text
        .lines()
        .map(|line| line.split('#').next().unwrap_or_default())
        .flat_map(|line| line.split(','))
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .collect();
    if items.is_empty() {
        return Err("the architecture has no layers".into());
    }
    let mut shape = input;
    let mut planned = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        // Until a layer has worked on the image, its pixels are also a row of features: an MLP
        // needs no `flatten`.
        let as_row = planned
            .iter()
            .all(|p: &PlannedLayer| matches!(p.output, Shape::Flat(_)));
        let spec = layer(item, shape, as_row)
            .map_err(|e| format!("layer {} (`{item}`) on input {shape}: {e}", i + 1))?;
        let output = output_shape(&spec, shape);
        planned.push(PlannedLayer {
            spec,
            input: shape,
            output,
        });
        shape = output;
    }
    match shape {
        Shape::Flat(n) if n == classes => Ok(planned),
        _ => Err(format!(
            "the last layer (`{}`) gives {shape} values per example; the network must end in {classes} class scores (end with `linear {classes}`)",
            items.last().expect("not empty")
        )),
    }
}

/// The layers of `planned`, initialised by `init` in order (so the draws follow the layers).
pub fn build(planned: &[PlannedLayer], init: Init, rng: &mut impl Rng) -> Network {
    let layers = planned
        .iter()
        .map(|p| -> Box<dyn Layer> {
            match p.spec {
                LayerSpec::Subsample2d(shape) => Box::new(Subsample2d::new(shape, init, rng)),
                LayerSpec::PartialConv2d { shape, ref table } => {
                    Box::new(PartialConv2d::new(shape, table.clone(), init, rng))
                }
                LayerSpec::Linear {
                    inputs,
                    outputs,
                    shared_bias_gradient,
                } => {
                    let linear = Linear::new(inputs, outputs, init, rng);
                    if shared_bias_gradient {
                        Box::new(linear.with_shared_bias_gradient())
                    } else {
                        Box::new(linear)
                    }
                }
                LayerSpec::Conv2d(shape) => Box::new(Conv2d::new(shape, init, rng)),
                LayerSpec::WinogradConv2d(shape) => Box::new(
                    Conv2d::new(shape, init, rng)
                        .with_winograd()
                        .expect("a checked spec"),
                ),
                LayerSpec::DirectConv2d(shape) => Box::new(
                    Conv2d::new(shape, init, rng)
                        .with_direct()
                        .expect("a checked spec"),
                ),
                ref other => other.build(),
            }
        })
        .collect();
    Network::new(layers)
}

/// The shapes around every layer of a network's architecture, from its input `input`.
pub fn plan(specs: &[LayerSpec], input: Shape) -> Vec<PlannedLayer> {
    let mut shape = input;
    specs
        .iter()
        .map(|spec| {
            let output = output_shape(spec, shape);
            let planned = PlannedLayer {
                spec: spec.clone(),
                input: shape,
                output,
            };
            shape = output;
            planned
        })
        .collect()
}

/// What `spec` gives for `input`.
fn output_shape(spec: &LayerSpec, input: Shape) -> Shape {
    match *spec {
        LayerSpec::Linear { outputs, .. } => Shape::Flat(outputs),
        LayerSpec::Conv2d(s)
        | LayerSpec::WinogradConv2d(s)
        | LayerSpec::DirectConv2d(s)
        | LayerSpec::PartialConv2d { shape: s, .. } => Shape::Image {
            channels: s.out_channels,
            height: s.out_height(),
            width: s.out_width(),
        },
        LayerSpec::Pad2d(s) => Shape::Image {
            channels: s.channels,
            height: s.out_height(),
            width: s.out_width(),
        },
        LayerSpec::Crop2d(s) => Shape::Image {
            channels: s.channels,
            height: s.out_height(),
            width: s.out_width(),
        },
        LayerSpec::MaxPool2d(s) | LayerSpec::AvgPool2d(s) | LayerSpec::Subsample2d(s) => {
            Shape::Image {
                channels: s.channels,
                height: s.out_height(),
                width: s.out_width(),
            }
        }
        LayerSpec::Flatten { features } => Shape::Flat(features),
        LayerSpec::ReLU
        | LayerSpec::Tanh { .. }
        | LayerSpec::Dropout { .. }
        | LayerSpec::BatchNorm1d { .. }
        | LayerSpec::BatchNorm2d { .. } => input,
    }
}

/// A layer's positional sizes and its `key value` options.
type SizesAndOptions<'a> = (Vec<&'a str>, Vec<(String, String)>);

/// One layer from its text, for an input of shape `input` (which `linear` may read as a row of
/// features when `image_as_row`).
fn layer(item: &str, input: Shape, image_as_row: bool) -> Result<LayerSpec, String> {
    let words: Vec<&str> = item.split_whitespace().collect();
    let name = words[0].to_ascii_lowercase();
    let args = &words[1..];
    let number = |word: &str, what: &str| -> Result<usize, String> {
        match word.parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!("{what} must be a whole number ≥ 1, got '{word}'")),
        }
    };
    // Positional sizes, then `key value` options.
    let split = |positional: usize, keys: &[&str]| -> Result<SizesAndOptions, String> {
        if args.len() < positional {
            return Err(format!(
                "`{name}` needs {positional} number(s): {}",
                usage(&name)
            ));
        }
        let (sizes, rest) = args.split_at(positional);
        if rest.len() % 2 != 0 {
            return Err(format!(
                "options come as `key value` pairs: {}",
                usage(&name)
            ));
        }
        let mut options = Vec::new();
        for pair in rest.chunks(2) {
            let key = pair[0].to_ascii_lowercase();
            if !keys.contains(&key.as_str()) {
                return Err(format!("`{name}` has no option `{key}`: {}", usage(&name)));
            }
            options.push((key, pair[1].to_string()));
        }
        Ok((sizes.to_vec(), options))
    };
    let image = |what: &str| match input {
        Shape::Image {
            channels,
            height,
            width,
        } => Ok((channels, height, width)),
        Shape::Flat(n) => Err(format!(
            "`{what}` works on images, but receives a flat row of {n} features"
        )),
    };
    let no_args = |spec: LayerSpec| {
        if args.is_empty() {
            Ok(spec)
        } else {
            Err(format!("`{name}` takes no sizes"))
        }
    };
    match name.as_str() {
        "linear" => {
            let shared = args.len() == 2 && args[1].eq_ignore_ascii_case("shared-bias");
            if args.is_empty() || args.len() > 2 || (args.len() == 2 && !shared) {
                return Err(format!("expected {}", usage("linear")));
            }
            let inputs = match input {
                Shape::Flat(n) => n,
                _ if image_as_row => input.len(),
                _ => {
                    return Err(format!(
                        "`linear` needs a flat row of features, but receives an image {input}: add `flatten` before it"
                    ))
                }
            };
            Ok(LayerSpec::Linear {
                inputs,
                outputs: number(args[0], "the number of outputs")?,
                shared_bias_gradient: shared,
            })
        }
        "conv" => {
            let (sizes, options) =
                split(2, &["stride", "padding", "dilation", "table", "algorithm"])?;
            let (in_channels, height, width) = image("conv")?;
            let mut shape = ConvShape {
                in_channels,
                out_channels: number(sizes[0], "the number of maps")?,
                height,
                width,
                kernel: number(sizes[1], "the kernel size")?,
                stride: 1,
                padding: 0,
                dilation: 1,
            };
            let (mut table, mut algorithm) = (None, "im2col");
            for (key, value) in options {
                match key.as_str() {
                    "stride" => shape.stride = number(&value, "stride")?,
                    "algorithm" => {
                        algorithm = ["im2col", "winograd", "direct"]
                            .into_iter()
                            .find(|known| value.eq_ignore_ascii_case(known))
                            .ok_or_else(|| {
                                format!(
                                    "unknown convolution algorithm '{value}': use im2col, \
                                     winograd or direct"
                                )
                            })?
                    }
                    "dilation" => shape.dilation = number(&value, "dilation")?,
                    "table" if value.eq_ignore_ascii_case("lenet5") => table = Some(lenet5_table()),
                    "table" => {
                        return Err(format!(
                            "unknown connection table '{value}': the one known is lenet5"
                        ))
                    }
                    _ => {
                        shape.padding = value
                            .parse()
                            .map_err(|_| format!("padding must be a whole number, got '{value}'"))?
                    }
                }
            }
            shape.check()?;
            match (table, algorithm) {
                (Some(table), "im2col") => {
                    crate::layers::check_table(&table, shape.in_channels, shape.out_channels)
                        .map_err(|e| format!("table lenet5 connects 6 maps to 16: {e}"))?;
                    Ok(LayerSpec::PartialConv2d { shape, table })
                }
                (Some(_), algorithm) => Err(format!(
                    "a convolution with a connection table has no {algorithm} algorithm"
                )),
                (None, "winograd") => {
                    crate::layers::check_winograd(&shape)?;
                    Ok(LayerSpec::WinogradConv2d(shape))
                }
                (None, "direct") => {
                    crate::layers::check_direct(&shape)?;
                    Ok(LayerSpec::DirectConv2d(shape))
                }
                (None, _) => Ok(LayerSpec::Conv2d(shape)),
            }
        }
        "subsample" => {
            let (sizes, _) = split(1, &[])?;
            let (channels, height, width) = image("subsample")?;
            let kernel = number(sizes[0], "the window size")?;
            let shape = PoolShape {
                channels,
                height,
                width,
                kernel,
                stride: kernel,
            };
            subsample::check(&shape)?;
            Ok(LayerSpec::Subsample2d(shape))
        }
        "pad" => {
            let (sizes, options) = split(1, &["value"])?;
            let (channels, height, width) = image("pad")?;
            let padding = sizes[0]
                .parse()
                .map_err(|_| format!("padding must be a whole number, got '{}'", sizes[0]))?;
            let value = match options.first() {
                Some((_, value)) => value
                    .parse::<f32>()
                    .ok()
                    .filter(|v| v.is_finite())
                    .ok_or_else(|| format!("the value must be a finite number, got '{value}'"))?,
                None => 0.0,
            };
            let shape = PadShape {
                channels,
                height,
                width,
                padding,
                value,
            };
            shape.check()?;
            Ok(LayerSpec::Pad2d(shape))
        }
        "crop" => {
            let (sizes, _) = split(1, &[])?;
            let (channels, height, width) = image("crop")?;
            let crop = sizes[0]
                .parse()
                .map_err(|_| format!("the crop must be a whole number, got '{}'", sizes[0]))?;
            let shape = CropShape {
                channels,
                height,
                width,
                crop,
            };
            shape.check()?;
            Ok(LayerSpec::Crop2d(shape))
        }
        "maxpool" | "avgpool" => {
            let (sizes, options) = split(1, &["stride"])?;
            let (channels, height, width) = image(&name)?;
            let kernel = number(sizes[0], "the window size")?;
            let stride = match options.first() {
                Some((_, value)) => number(value, "stride")?,
                None => kernel,
            };
            let shape = PoolShape {
                channels,
                height,
                width,
                kernel,
                stride,
            };
            shape.check()?;
            Ok(if name == "maxpool" {
                LayerSpec::MaxPool2d(shape)
            } else {
                LayerSpec::AvgPool2d(shape)
            })
        }
        "relu" => no_args(LayerSpec::ReLU),
        "tanh" => no_args(LayerSpec::Tanh {
            amplitude: 1.0,
            slope: 1.0,
        }),
        "lecun-tanh" => no_args(LayerSpec::Tanh {
            amplitude: LECUN_TANH.0,
            slope: LECUN_TANH.1,
        }),
        "flatten" => no_args(LayerSpec::Flatten {
            features: input.len(),
        }),
        "batchnorm" | "bn" => no_args(match input {
            Shape::Flat(features) => LayerSpec::BatchNorm1d { features },
            Shape::Image {
                channels,
                height,
                width,
            } => LayerSpec::BatchNorm2d {
                channels,
                pixels: height * width,
            },
        }),
        "dropout" => {
            let [p] = args else {
                return Err(format!("expected {}", usage("dropout")));
            };
            match p.parse::<f32>() {
                Ok(p) if (0.0..1.0).contains(&p) => Ok(LayerSpec::Dropout { p }),
                _ => Err(format!("the probability must be in [0, 1), got '{p}'")),
            }
        }
        _ => Err(format!(
            "unknown layer `{name}`: use linear, conv, maxpool, avgpool, subsample, pad, crop, relu, tanh, lecun-tanh, dropout, batchnorm or flatten"
        )),
    }
}

/// How a layer is written.
fn usage(name: &str) -> &'static str {
    match name {
        "linear" => "`linear N` or `linear N shared-bias`",
        "conv" => "`conv MAPS KERNEL [stride S] [padding P] [dilation D] [table lenet5] [algorithm winograd|direct]`",
        "subsample" => "`subsample K`",
        "pad" => "`pad P [value V]`",
        "crop" => "`crop P`",
        "maxpool" => "`maxpool K [stride S]`",
        "avgpool" => "`avgpool K [stride S]`",
        "dropout" => "`dropout P`",
        _ => "see `mnist-nn train --help`",
    }
}

/// Learnable values of a layer.
pub fn parameters(spec: &LayerSpec) -> usize {
    match *spec {
        LayerSpec::Linear {
            inputs, outputs, ..
        } => inputs * outputs + outputs,
        LayerSpec::Conv2d(s) | LayerSpec::WinogradConv2d(s) | LayerSpec::DirectConv2d(s) => {
            s.taps() * s.out_channels + s.out_channels
        }
        LayerSpec::BatchNorm1d { features } => 2 * features,
        LayerSpec::BatchNorm2d { channels, .. } => 2 * channels,
        LayerSpec::Subsample2d(s) => 2 * s.channels,
        LayerSpec::PartialConv2d { shape, ref table } => {
            connections(table) * shape.kernel * shape.kernel + shape.out_channels
        }
        _ => 0,
    }
}

/// The connections of a table: one kernel each.
fn connections(table: &[Vec<usize>]) -> usize {
    table.iter().map(Vec::len).sum()
}

/// Floating-point operations of the layer's forward pass on one example, counting its matrix
/// products (2 per multiply-add), which do almost all the work; 0 for the other layers.
pub fn forward_flops(spec: &LayerSpec) -> u64 {
    match *spec {
        LayerSpec::Linear {
            inputs, outputs, ..
        } => 2 * (inputs * outputs) as u64,
        LayerSpec::Conv2d(s) | LayerSpec::DirectConv2d(s) => {
            2 * (s.taps() * s.out_channels * s.out_pixels()) as u64
        }
        // 16 products per 2x2 block of outputs instead of 36 (see the Winograd module).
        LayerSpec::WinogradConv2d(s) => crate::layers::winograd_product_flops(&s),
        // The products of the connected kernels only (the layer computes them in a dense
        // product with zero kernels, 2.5 times as many for LeNet-5's C3).
        LayerSpec::PartialConv2d { shape, ref table } => {
            2 * (connections(table) * shape.kernel * shape.kernel * shape.out_pixels()) as u64
        }
        _ => 0,
    }
}

/// A table of the layers with their output shapes, parameters and FLOPs per example, and the
/// totals, as torchinfo's `summary` or Keras's `model.summary()` print it.
pub fn summary(planned: &[PlannedLayer], describe: impl Fn(usize) -> String) -> String {
    let rows: Vec<[String; 5]> = planned
        .iter()
        .enumerate()
        .map(|(i, p)| {
            [
                i.to_string(),
                describe(i),
                p.output.to_string(),
                thousands(parameters(&p.spec) as u64),
                thousands(forward_flops(&p.spec)),
            ]
        })
        .collect();
    let header = ["#", "layer", "output", "parameters", "FLOPs/example"];
    let widths: Vec<usize> = (0..5)
        .map(|c| {
            rows.iter()
                .map(|r| r[c].chars().count())
                .chain([header[c].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: [&str; 5]| {
        format!(
            "{:>w0$}  {:<w1$}  {:<w2$}  {:>w3$}  {:>w4$}\n",
            cells[0],
            cells[1],
            cells[2],
            cells[3],
            cells[4],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
            w3 = widths[3],
            w4 = widths[4]
        )
    };
    let mut table = line(header);
    for r in &rows {
        table += &line([&r[0], &r[1], &r[2], &r[3], &r[4]]);
    }
    let total_parameters: usize = planned.iter().map(|p| parameters(&p.spec)).sum();
    let total_flops: u64 = planned.iter().map(|p| forward_flops(&p.spec)).sum();
    table += &format!(
        "total: {} parameters, {} FLOPs per example forward (about 3x that to train)\n",
        thousands(total_parameters as u64),
        thousands(total_flops)
    );
    table
}

/// `1234567` as `1,234,567`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shapes(text: &str) -> Vec<String> {
        parse(text, Shape::MNIST, 10)
            .unwrap()
            .iter()
            .map(|p| p.output.to_string())
            .collect()
    }

    #[test]
    fn shapes_are_inferred_from_the_input() {
        assert_eq!(
            shapes("conv 24 5, maxpool 2, relu, conv 32 3, maxpool 2, relu, flatten, linear 256, relu, linear 10"),
            [
                "24x24x24", "24x12x12", "24x12x12", "32x10x10", "32x5x5", "32x5x5", "800", "256",
                "256", "10"
            ]
        );
        assert_eq!(
            shapes("conv 8 3 padding 2 dilation 2, bn, relu, avgpool 2 stride 1, flatten, dropout 0.5, linear 10"),
            ["8x28x28", "8x28x28", "8x28x28", "8x27x27", "5832", "5832", "10"]
        );
        assert_eq!(
            shapes("flatten\nlinear 32 # hidden\nrelu\n\nlinear 10"),
            ["784", "32", "32", "10"]
        );
        assert_eq!(shapes("linear 32, relu, linear 10"), ["32", "32", "10"]);
        let winograd = parse(
            "conv 4 3 padding 1 algorithm winograd, flatten, linear 10",
            Shape::MNIST,
            10,
        )
        .unwrap();
        assert!(matches!(winograd[0].spec, LayerSpec::WinogradConv2d(s) if s.padding == 1));
        assert_eq!(winograd[0].output.to_string(), "4x28x28");
        let direct = parse(
            "conv 24 5 algorithm direct, flatten, linear 10",
            Shape::MNIST,
            10,
        )
        .unwrap();
        assert!(matches!(direct[0].spec, LayerSpec::DirectConv2d(s) if s.kernel == 5));
        assert_eq!(direct[0].output.to_string(), "24x24x24");
        assert_eq!(
            shapes("crop 2, conv 24 5, maxpool 2, flatten, linear 10"),
            ["1x24x24", "24x20x20", "24x10x10", "2400", "10"]
        );
        assert_eq!(
            shapes(crate::experiments::LENET5),
            [
                "1x32x32", "6x28x28", "6x28x28", "6x14x14", "6x14x14", "16x10x10", "16x10x10",
                "16x5x5", "16x5x5", "120x1x1", "120x1x1", "120", "84", "84", "10"
            ]
        );
    }

    #[test]
    fn impossible_architectures_name_the_layer_and_the_shapes() {
        for (text, expected) in [
            (
                "conv 8 29, flatten, linear 10",
                "layer 1 (`conv 8 29`) on input 1x28x28: the dilated kernel is larger",
            ),
            (
                "flatten, linear 32",
                "gives 32 values per example; the network must end in 10",
            ),
            ("conv 8 3", "gives 8x26x26 values per example"),
            (
                "conv 8 5, linear 10",
                "layer 2 (`linear 10`) on input 8x24x24: `linear` needs a flat row",
            ),
            ("flatten, lineer 10", "unknown layer `lineer`"),
            (
                "conv 8 3, maxpool 30, flatten, linear 10",
                "a 30x30 window does not fit in a 26x26 image",
            ),
            (
                "flatten, maxpool 2, linear 10",
                "`maxpool` works on images, but receives a flat row of 784",
            ),
            (
                "flatten, dropout 1.5, linear 10",
                "the probability must be in [0, 1)",
            ),
            ("conv 8 3 stride, flatten, linear 10", "`key value` pairs"),
            (
                "conv 8 3 strides 2, flatten, linear 10",
                "`conv` has no option `strides`",
            ),
            (
                "flatten, linear 0",
                "the number of outputs must be a whole number ≥ 1",
            ),
            ("relu 3, flatten, linear 10", "`relu` takes no sizes"),
            (
                "conv 8 5 table lenet5, flatten, linear 10",
                "lists 16 output maps, the layer has 8",
            ),
            (
                "conv 8 5 algorithm winograd, flatten, linear 10",
                "needs a 3x3 kernel with stride 1 and dilation 1",
            ),
            (
                "conv 8 3 stride 2 algorithm winograd, flatten, linear 10",
                "needs a 3x3 kernel with stride 1 and dilation 1",
            ),
            (
                "conv 8 3 stride 2 algorithm direct, flatten, linear 10",
                "the direct algorithm needs stride 1 and dilation 1",
            ),
            (
                "conv 6 5 table lenet5 algorithm direct, flatten, linear 10",
                "a convolution with a connection table has no direct algorithm",
            ),
            (
                "conv 8 3 algorithm fft, flatten, linear 10",
                "unknown convolution algorithm 'fft': use im2col, winograd or direct",
            ),
            (
                "conv 16 5 table lenet5, flatten, linear 10",
                "connected to input map 1, but there are 1",
            ),
            (
                "conv 16 5 table lenet4, flatten, linear 10",
                "unknown connection table 'lenet4'",
            ),
            (
                "subsample 2 stride 1, flatten, linear 10",
                "`subsample` has no option `stride`",
            ),
            (
                "subsample 29, flatten, linear 10",
                "does not fit in a 28x28",
            ),
            (
                "pad -1, flatten, linear 10",
                "padding must be a whole number",
            ),
            (
                "pad 2 value inf, flatten, linear 10",
                "must be a finite number",
            ),
            ("flatten, pad 2, linear 10", "`pad` works on images"),
            (
                "crop 14, flatten, linear 10",
                "leaves nothing of a 28x28 image",
            ),
            (
                "crop -2, flatten, linear 10",
                "the crop must be a whole number",
            ),
            (" , ", "no layers"),
        ] {
            let error = parse(text, Shape::MNIST, 10).unwrap_err();
            assert!(error.contains(expected), "{text}: {error}");
        }
    }

    #[test]
    fn the_summary_counts_parameters_and_flops() {
        let planned = parse(
            "conv 24 5, maxpool 2, relu, flatten, linear 10",
            Shape::MNIST,
            10,
        )
        .unwrap();
        let table = summary(&planned, |i| {
            format!("{:?}", planned[i].spec).chars().take(6).collect()
        });
        // conv: 25·24 + 24 = 624 parameters, 2·25·24·576 = 691,200 FLOPs; linear: 3456·10 + 10.
        assert!(table.contains("624"), "{table}");
        assert!(table.contains("691,200"), "{table}");
        assert!(table.contains("34,570"), "{table}");
        assert!(
            table.contains("total: 35,194 parameters, 760,320 FLOPs"),
            "{table}"
        );
    }
}
