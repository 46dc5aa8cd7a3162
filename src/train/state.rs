//! The training state a checkpoint carries besides tensors: the position (step, epoch,
//! samples of the epoch consumed), the world it was written on, the best evaluation so far
//! with its metric's name, and the fp16 loss scaler.
use serde::{Deserialize, Serialize};

/// The best evaluation score so far.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Best {
    /// `miou` (segmentation) or `top1` (classification).
    pub metric: String,
    pub value: f64,
    /// The step it was reached at (unknown for checkpoints from before segzoo recorded it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<u64>,
}

/// The fp16 loss scaler's mutable state.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ScalerState {
    pub scale: f64,
    pub good_steps: u64,
    pub skipped: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Completed optimisation steps.
    pub step: u64,
    /// The epoch in progress (0-based) when saved at `step`.
    pub epoch: usize,
    /// Samples of that epoch's permutation the steps so far consumed (a multiple of the
    /// global batch unless the global batch changed mid-epoch). Checkpoints from before
    /// segzoo recorded it are placed by their step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch_samples: Option<u64>,
    /// The ranks and global batch of the run that wrote it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub world_size: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub global_batch: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best: Option<Best>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amp: Option<ScalerState>,
}
