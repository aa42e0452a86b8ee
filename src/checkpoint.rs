//! Checkpoints: everything needed to continue a training run exactly where it stopped.
//!
//! A checkpoint is a model file (see [`crate::model`]) with more in it: how many epochs are done,
//! how far the current epoch got (its order of examples, the examples used, the running loss and
//! accuracy), the random generator's state, and the optimiser's step count and state (tensors
//! `optimizer.state.P.NAME`, `P` the parameter's position in the network and `NAME` PyTorch's
//! name: `momentum_buffer`, `exp_avg`, `exp_avg_sq`). A learning-rate schedule is a function of
//! the step count, so it needs nothing more. Continuing from a checkpoint gives the same weights,
//! bit for bit, as a run that was never interrupted.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::atomic::write_atomically;
use crate::data::Preprocessing;
use crate::model::{self, Extras, ModelError, SavedModel, Training};
use crate::network::Network;
use crate::optim::Optimizer;
use crate::train::EpochProgress;
use crate::SeededRng;

/// The metadata key holding [`RunState`] as JSON.
const STATE_KEY: &str = "checkpoint";

/// Where a run stood, besides its weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct RunState {
    epochs_done: usize,
    examples_done: usize,
    total_loss: f64,
    correct: usize,
    /// The generator's 32-byte seed, as hex.
    rng_seed: String,
    rng_stream: u64,
    /// The generator's position in its stream (a u128, as a decimal string).
    rng_word_pos: String,
    /// Steps the optimiser has taken.
    #[serde(default)]
    optimizer_steps: u64,
}

/// A checkpoint read back.
pub struct Checkpoint {
    /// The network, preprocessing and training record.
    pub model: SavedModel,
    /// Complete epochs before the interruption.
    pub epochs_done: usize,
    /// How far the next epoch had got.
    pub progress: EpochProgress,
    /// The random generator, in the state it was in.
    pub rng: SeededRng,
    /// Steps the optimiser had taken.
    pub optimizer_steps: u64,
    /// The optimiser's state arrays by tensor name (see [`restore_optimizer`](Checkpoint::restore_optimizer)).
    optimizer_state: std::collections::HashMap<String, Vec<f32>>,
}

/// The name of the tensor holding state `name` of parameter `p`.
fn state_tensor(p: usize, name: &str) -> String {
    format!("{}state.{p}.{name}", model::OPTIMIZER_PREFIX)
}

impl Checkpoint {
    /// Gives `optimizer` (built with the run's settings) the saved step count and state, for
    /// parameters of the given lengths (those of [`Checkpoint::model`]'s network).
    pub fn restore_optimizer(
        &self,
        optimizer: &mut Optimizer,
        lengths: &[usize],
    ) -> Result<(), String> {
        optimizer.restore(self.optimizer_steps, lengths, |p, name, len| {
            let tensor = state_tensor(p, name);
            match self.optimizer_state.get(&tensor) {
                Some(values) if values.len() == len => Ok(values.clone()),
                Some(values) => Err(format!(
                    "optimizer state `{tensor}` has {} values, expected {len}",
                    values.len()
                )),
                None => Err(format!("optimizer state `{tensor}` is missing")),
            }
        })
    }
}

/// Where a run stands: what a checkpoint saves besides the model.
pub struct Position<'a> {
    /// Complete epochs.
    pub epochs_done: usize,
    /// How far the next epoch got.
    pub progress: &'a EpochProgress,
    /// The random generator.
    pub rng: &'a SeededRng,
    /// The optimiser, with its step count and state.
    pub optimizer: &'a Optimizer,
}

/// Writes a checkpoint to `path`, atomically.
pub fn save(
    path: &Path,
    network: &Network,
    preprocessing: &Preprocessing,
    training: &Training,
    position: &Position,
) -> Result<(), ModelError> {
    let Position {
        epochs_done,
        progress,
        rng,
        optimizer,
    } = *position;
    let state = RunState {
        epochs_done,
        examples_done: progress.done,
        total_loss: progress.total_loss,
        correct: progress.correct,
        rng_seed: rng.get_seed().iter().map(|b| format!("{b:02x}")).collect(),
        rng_stream: rng.get_stream(),
        rng_word_pos: rng.get_word_pos().to_string(),
        optimizer_steps: optimizer.steps(),
    };
    let extras = Extras {
        metadata: [(
            STATE_KEY.to_string(),
            serde_json::to_string(&state).expect("plain data"),
        )]
        .into(),
        order: Some(progress.order.clone()),
        optimizer_state: optimizer
            .state()
            .into_iter()
            .map(|(p, name, values)| (state_tensor(p, name), values.to_vec()))
            .collect(),
    };
    let bytes = model::to_bytes_with(network, preprocessing, training, &extras);
    write_atomically(path, &bytes).map_err(|source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads a checkpoint written by [`save`].
pub fn load(path: &Path) -> Result<Checkpoint, ModelError> {
    let invalid = |message: String| ModelError::Invalid {
        path: path.to_path_buf(),
        message,
    };
    let bytes = std::fs::read(path).map_err(|source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let (model, extras) = model::from_bytes_with(&bytes).map_err(invalid)?;
    let state: RunState = extras
        .metadata
        .get(STATE_KEY)
        .ok_or_else(|| invalid("a model, but not a checkpoint (no training state)".into()))
        .and_then(|json| {
            serde_json::from_str(json)
                .map_err(|e| invalid(format!("unreadable training state ({e})")))
        })?;
    let seed =
        parse_seed(&state.rng_seed).ok_or_else(|| invalid("unreadable generator seed".into()))?;
    let word_pos: u128 = state
        .rng_word_pos
        .parse()
        .map_err(|_| invalid("unreadable generator position".into()))?;
    let mut rng = <SeededRng as rand::SeedableRng>::from_seed(seed);
    rng.set_stream(state.rng_stream);
    rng.set_word_pos(word_pos);
    Ok(Checkpoint {
        model,
        epochs_done: state.epochs_done,
        progress: EpochProgress {
            order: extras.order.unwrap_or_default(),
            done: state.examples_done,
            total_loss: state.total_loss,
            correct: state.correct,
        },
        rng,
        optimizer_steps: state.optimizer_steps,
        optimizer_state: extras.optimizer_state,
    })
}

fn parse_seed(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 || !hex.is_ascii() {
        return None;
    }
    let mut seed = [0u8; 32];
    for (i, byte) in seed.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(seed)
}
