//! Saving and loading trained networks as `.safetensors` files.
//!
//! The file holds every layer's tensors under PyTorch's names, so that
//! `safetensors.torch.load_file` reads them and an `nn.Sequential` with the same layers in the same
//! order accepts them with `load_state_dict`:
//!
//! | layer `i` | tensors |
//! | --- | --- |
//! | `Linear` | `i.weight` `(out, in)`, `i.bias` `(out)` |
//! | `Conv2d` | `i.weight` `(out, in, k, k)`, `i.bias` `(out)` |
//! | `BatchNorm1d` | `i.weight` (γ), `i.bias` (β), `i.running_mean`, `i.running_var`, all `(features)` |
//! | `ReLU`, `Flatten` | none |
//!
//! All tensors are little-endian float32. `i` counts every layer, parameterless ones included, as
//! `nn.Sequential` does. (A PyTorch model of the `cnn` experiment reshapes its input to
//! `(n, 1, 28, 28)` before the sequence.) The metadata holds everything else needed to use the
//! model without flags, as JSON strings:
//!
//! - `format`: `mnist-nn`, `version`: `1`;
//! - `layers`: the architecture, a list of [`LayerSpec`];
//! - `preprocessing`: how pixels become inputs ([`Preprocessing`]);
//! - `training`: how the model was trained ([`Training`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use safetensors::{tensor::TensorView, Dtype, SafeTensors};
use serde::{Deserialize, Serialize};

use crate::atomic::write_atomically;
use crate::data::{DataSet, Preprocessing, CLASSES, IMAGE_PIXELS};
use crate::layers::{Layer, LayerSpec};
use crate::network::Network;
use crate::optim::OptimizerSettings;
use crate::schedule::Schedule;

/// The value of the `format` metadata entry.
pub const FORMAT: &str = "mnist-nn";
/// The value of the `version` metadata entry.
pub const VERSION: &str = "1";

/// How a saved model was trained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Training {
    /// What produced it: `train`, or `experiment NAME`.
    pub command: String,
    /// Epochs trained in all (including those of the model it continued from).
    pub epochs: usize,
    /// Learning rate.
    pub lr: f32,
    /// Examples per update; `None` for full batch.
    pub batch_size: Option<usize>,
    /// Seed of the random generator.
    pub seed: u64,
    /// Initialisation of the first run, if known.
    pub init: Option<String>,
    /// The optimiser (plain SGD for models saved before there was a choice).
    #[serde(default = "plain_sgd")]
    pub optimizer: OptimizerSettings,
    /// The learning-rate schedule.
    #[serde(default = "constant")]
    pub schedule: Schedule,
    /// Steps of linear warm-up.
    #[serde(default)]
    pub warmup_steps: u64,
    /// The data set it was trained on (MNIST for models saved before there was a choice).
    #[serde(default)]
    pub dataset: DataSet,
    /// The distortions of the training images, as `--augment` spells them (none if absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub augment: Option<String>,
    /// How many of the last epochs trained on undistorted images (0 if absent).
    #[serde(default, skip_serializing_if = "is_default")]
    pub clean_epochs: usize,
    /// The label smoothing ε of the training loss (0, one-hot targets, if absent).
    #[serde(default, skip_serializing_if = "is_default")]
    pub label_smoothing: f32,
}

impl Training {
    /// One line: `experiment mlp: 10 epochs, Adam(...), learning rate 0.001 (cosine:0), batches
    /// of 128, seed 0`.
    pub fn summary(&self) -> String {
        let schedule = match self.schedule {
            Schedule::Constant => String::new(),
            schedule => format!(" ({schedule})"),
        };
        let batches = self
            .batch_size
            .map_or("full batch".to_string(), |b| format!("batches of {b}"));
        let mut augment = self
            .augment
            .as_ref()
            .map_or(String::new(), |a| format!(", augmented ({a})"));
        if self.clean_epochs > 0 {
            augment += &format!(" but the last {} epochs", self.clean_epochs);
        }
        let smoothing = match self.label_smoothing {
            0.0 => String::new(),
            epsilon => format!(", label smoothing {epsilon}"),
        };
        format!(
            "{}: {} epochs, {}, learning rate {}{schedule}, {batches}{augment}{smoothing}, seed {}",
            self.command, self.epochs, self.optimizer, self.lr, self.seed
        )
    }
}

/// Whether a field holds its type's default (0), which is left out of the record.
fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

fn plain_sgd() -> OptimizerSettings {
    OptimizerSettings::PLAIN_SGD
}

fn constant() -> Schedule {
    Schedule::Constant
}

/// A network with what is needed to use it.
pub struct SavedModel {
    /// The trained network.
    pub network: Network,
    /// How to turn pixels into its inputs.
    pub preprocessing: Preprocessing,
    /// How it was trained.
    pub training: Training,
}

/// Why a model could not be saved or loaded.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// Reading or writing failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The file is not a model this program can use.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// What a checkpoint adds to a model file: more metadata, the epoch's order of examples and the
/// optimiser's state.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Extras {
    /// Extra metadata entries.
    pub metadata: HashMap<String, String>,
    /// Saved as the `U32` tensor `checkpoint.order`.
    pub order: Option<Vec<u32>>,
    /// F32 vectors whose names start with [`OPTIMIZER_PREFIX`] (the optimiser's state).
    pub optimizer_state: HashMap<String, Vec<f32>>,
}

/// The name of the tensor holding [`Extras::order`].
const ORDER_TENSOR: &str = "checkpoint.order";

/// The start of the names of the optimiser state's tensors, `optimizer.state.P.NAME`.
pub const OPTIMIZER_PREFIX: &str = "optimizer.";

/// The bytes of a `.safetensors` file holding `network` and its metadata.
pub fn to_bytes(network: &Network, preprocessing: &Preprocessing, training: &Training) -> Vec<u8> {
    to_bytes_with(network, preprocessing, training, &Extras::default())
}

/// [`to_bytes`], with a checkpoint's extras.
pub fn to_bytes_with(
    network: &Network,
    preprocessing: &Preprocessing,
    training: &Training,
    extras: &Extras,
) -> Vec<u8> {
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for (i, layer) in network.layers().iter().enumerate() {
        for tensor in layer.export() {
            let bytes = tensor.values.iter().flat_map(|v| v.to_le_bytes()).collect();
            tensors.push((format!("{i}.{}", tensor.name), tensor.shape, bytes));
        }
    }
    let order = extras.order.as_ref().map(|order| {
        let bytes: Vec<u8> = order.iter().flat_map(|i| i.to_le_bytes()).collect();
        (order.len(), bytes)
    });
    let mut views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .map(|(name, shape, bytes)| {
            let view = TensorView::new(Dtype::F32, shape.clone(), bytes)
                .expect("shape matches the values");
            (name.clone(), view)
        })
        .collect();
    if let Some((len, bytes)) = &order {
        let view =
            TensorView::new(Dtype::U32, vec![*len], bytes).expect("shape matches the values");
        views.push((ORDER_TENSOR.to_string(), view));
    }
    let state: Vec<(&String, Vec<u8>, usize)> = extras
        .optimizer_state
        .iter()
        .map(|(name, values)| {
            let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            (name, bytes, values.len())
        })
        .collect();
    for (name, bytes, len) in &state {
        let view =
            TensorView::new(Dtype::F32, vec![*len], bytes).expect("shape matches the values");
        views.push(((*name).clone(), view));
    }
    let specs = network.specs();
    let json = |value: serde_json::Result<String>| value.expect("plain data serialises");
    let mut metadata = HashMap::from([
        ("format".to_string(), FORMAT.to_string()),
        ("version".to_string(), VERSION.to_string()),
        ("layers".to_string(), json(serde_json::to_string(&specs))),
        (
            "preprocessing".to_string(),
            json(serde_json::to_string(preprocessing)),
        ),
        (
            "training".to_string(),
            json(serde_json::to_string(training)),
        ),
    ]);
    metadata.extend(extras.metadata.clone());
    safetensors::serialize(views, Some(metadata)).expect("tensors of valid shapes serialise")
}

/// Writes the model to `path` atomically: a crash leaves the old file or the new one, never half.
pub fn save(
    path: &Path,
    network: &Network,
    preprocessing: &Preprocessing,
    training: &Training,
) -> Result<(), ModelError> {
    write_atomically(path, &to_bytes(network, preprocessing, training)).map_err(|source| {
        ModelError::Io {
            path: path.to_path_buf(),
            source,
        }
    })
}

/// Reads a model saved by [`save`].
pub fn load(path: &Path) -> Result<SavedModel, ModelError> {
    let bytes = std::fs::read(path).map_err(|source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    from_bytes(&bytes).map_err(|message| ModelError::Invalid {
        path: path.to_path_buf(),
        message,
    })
}

/// Parses the bytes of a model file, checking everything: format, architecture, every tensor's
/// name, type and shape. Never panics, whatever the bytes.
pub fn from_bytes(bytes: &[u8]) -> Result<SavedModel, String> {
    from_bytes_with(bytes).map(|(model, _)| model)
}

/// [`from_bytes`], also returning a checkpoint's extras (all metadata, and the order if saved).
pub fn from_bytes_with(bytes: &[u8]) -> Result<(SavedModel, Extras), String> {
    let (_, header) =
        SafeTensors::read_metadata(bytes).map_err(|e| format!("not a safetensors file ({e})"))?;
    let metadata = header.metadata().clone().unwrap_or_default();
    if metadata.get("format").map(String::as_str) != Some(FORMAT) {
        return Err(
            "a safetensors file, but not an mnist-nn model (no `format: mnist-nn` metadata)".into(),
        );
    }
    if metadata.get("version").map(String::as_str) != Some(VERSION) {
        return Err(format!(
            "mnist-nn model version {:?}, but this program reads version {VERSION}",
            metadata.get("version")
        ));
    }
    let field = |key: &str| {
        metadata
            .get(key)
            .ok_or_else(|| format!("the metadata has no `{key}` entry"))
    };
    let specs: Vec<LayerSpec> = serde_json::from_str(field("layers")?)
        .map_err(|e| format!("unreadable architecture ({e})"))?;
    let preprocessing: Preprocessing = serde_json::from_str(field("preprocessing")?)
        .map_err(|e| format!("unreadable preprocessing ({e})"))?;
    let training: Training = serde_json::from_str(field("training")?)
        .map_err(|e| format!("unreadable training record ({e})"))?;
    if let Preprocessing::Standardise { std, mean } = preprocessing {
        if !(std.is_finite() && std > 0.0 && mean.is_finite()) {
            return Err(format!("impossible preprocessing: mean {mean}, std {std}"));
        }
    }

    // The architecture must take 784 pixels to 10 classes, every layer fitting the next.
    if specs.is_empty() {
        return Err("the architecture has no layers".into());
    }
    let mut features = IMAGE_PIXELS;
    for (i, spec) in specs.iter().enumerate() {
        features = spec
            .output_features(features)
            .map_err(|e| format!("layer {i}: {e}"))?;
    }
    if features != CLASSES {
        return Err(format!(
            "the network outputs {features} values, not {CLASSES} class scores"
        ));
    }

    // A file must hold every value its architecture needs: this bounds what loading allocates.
    let needed = specs.iter().try_fold(0usize, |total, spec| {
        total.checked_add(spec.saved_values()?)
    });
    if needed.is_none_or(|values| values.saturating_mul(4) > bytes.len()) {
        return Err(format!(
            "the architecture needs more values than the file's {} bytes can hold",
            bytes.len()
        ));
    }

    let tensors =
        SafeTensors::deserialize(bytes).map_err(|e| format!("not a safetensors file ({e})"))?;
    let mut expected_names = Vec::new();
    let mut layers: Vec<Box<dyn Layer>> = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        let mut layer = spec.build();
        layer.import(&mut |name: &str, shape: &[usize]| {
            let full = format!("{i}.{name}");
            let view = tensors
                .tensor(&full)
                .map_err(|_| format!("tensor `{full}` is missing"))?;
            if view.dtype() != Dtype::F32 {
                return Err(format!(
                    "tensor `{full}` is {:?}, expected F32",
                    view.dtype()
                ));
            }
            if view.shape() != shape {
                return Err(format!(
                    "tensor `{full}` has shape {:?}, expected {shape:?}",
                    view.shape()
                ));
            }
            expected_names.push(full);
            Ok(view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect())
        })?;
        layers.push(layer);
    }
    let order = match tensors.tensor(ORDER_TENSOR) {
        Ok(view) if view.dtype() == Dtype::U32 && view.shape().len() == 1 => Some(
            view.data()
                .chunks_exact(4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
        ),
        Ok(_) => return Err(format!("tensor `{ORDER_TENSOR}` is not a list of U32")),
        Err(_) => None,
    };
    let mut optimizer_state = HashMap::new();
    for name in tensors.names() {
        if !name.starts_with(OPTIMIZER_PREFIX) {
            continue;
        }
        let view = tensors.tensor(name).map_err(|e| e.to_string())?;
        if view.dtype() != Dtype::F32 || view.shape().len() != 1 {
            return Err(format!("tensor `{name}` is not a list of F32"));
        }
        let values = view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        optimizer_state.insert(name.to_string(), values);
    }
    let known = |n: &str| {
        n == ORDER_TENSOR
            || n.starts_with(OPTIMIZER_PREFIX)
            || expected_names.iter().any(|e| e == n)
    };
    if let Some(extra) = tensors.names().into_iter().find(|n| !known(n)) {
        return Err(format!(
            "tensor `{extra}` belongs to no layer of the architecture"
        ));
    }
    let model = SavedModel {
        network: Network::new(layers),
        preprocessing,
        training,
    };
    let extras = Extras {
        metadata,
        order,
        optimizer_state,
    };
    Ok((model, extras))
}
