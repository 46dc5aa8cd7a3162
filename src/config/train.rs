//! `[train]`: epochs, batch, optimiser, schedule, precision, checkpoints and the loss.
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Optimizer {
    Sgd,
    Adam,
    Adamw,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    Fp32,
    Bf16,
    Fp16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Schedule {
    Poly,
    Cosine,
    MultiStep,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Warmup {
    #[default]
    Linear,
    Exponential,
}

/// The layout of the model's 4-D tensors and of the input batches while training.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemoryFormatChoice {
    /// Whichever is faster on the training device (measured on CPU; channels-last on CUDA).
    #[default]
    Auto,
    ChannelsLast,
    Contiguous,
}

/// Loss settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LossConfig {
    /// Per-class weights of the cross-entropy (e.g. the BiSeNetV2 Cityscapes weights).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub class_weights: Option<Vec<f32>>,
    /// Online hard example mining.
    pub ohem: bool,
    /// OHEM keeps pixels whose true-class probability is below this…
    pub ohem_thresh: f64,
    /// …but at least this many.
    pub ohem_min_kept: i64,
    /// One weight per model output in output order (OCRNet [aux, out]: [0.4, 1.0]);
    /// unset: 0.4 for OCRNet's aux head, 1 for every other head.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub head_weights: Option<Vec<f64>>,
}

impl Default for LossConfig {
    fn default() -> Self {
        LossConfig { class_weights: None, ohem: false, ohem_thresh: 0.9, ohem_min_kept: 131_072, head_weights: None }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    pub epochs: usize,
    /// Images per device per micro-batch (per step without accumulation).
    pub batch_size: usize,
    /// Micro-batches of `batch_size` per optimiser step: gradients are accumulated over
    /// them and all-reduced once, so k × batch b trains like batch k·b.
    pub accumulate_steps: usize,
    /// Images per optimiser step over the whole job. When set, `accumulate_steps` is
    /// derived as global_batch / (batch_size × ranks) at every start, so the optimiser
    /// takes the same steps whatever the world size (an elastic job that lost a server).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub global_batch: Option<usize>,
    pub optimizer: Optimizer,
    pub lr: f64,
    /// Parameters whose names contain one of these (e.g. `["last_layer"]`, or OCRNet's
    /// `["cls", "aux", "ocr"]`) train at `lr × head_lr_mult`, as the official HRNet-OCR
    /// trainer's NONBACKBONE_KEYWORDS and NONBACKBONE_MULT.
    pub head_keywords: Vec<String>,
    pub head_lr_mult: f64,
    pub momentum: f64,
    pub nesterov: bool,
    pub weight_decay: f64,
    /// Exempt biases and normalisation parameters (1-D tensors) from weight decay.
    pub no_decay_bias_norm: bool,
    /// Adam/AdamW moment decay rates.
    pub betas: [f64; 2],
    pub eps: f64,
    pub schedule: Schedule,
    /// Exponent of the poly schedule.
    pub power: f64,
    /// Floor of the poly and cosine schedules.
    pub min_lr: f64,
    /// Multi-step: epochs after which the rate is multiplied by `gamma`.
    pub milestones: Vec<usize>,
    pub gamma: f64,
    pub warmup_iters: usize,
    pub warmup: Warmup,
    /// Warm-up starts at lr × warmup_ratio.
    pub warmup_ratio: f64,
    /// `fp32`, or autocast to `bf16` / `fp16` (fp16 with gradient scaling).
    pub precision: Precision,
    /// `auto`, `channels_last` or `contiguous` (checkpoints are NCHW either way).
    pub memory_format: MemoryFormatChoice,
    /// cuDNN autotuning on CUDA (torch.backends.cudnn.benchmark): each input shape is timed
    /// once against every convolution algorithm and the fastest runs from then on; fixed
    /// crops are its textbook case. No effect on the CPU.
    pub cudnn_benchmark: bool,
    /// A static fp16 loss scale (the recipes' `loss_scale`); unset: dynamic scaling.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loss_scale: Option<f64>,
    pub seed: u64,
    pub output_dir: PathBuf,
    /// Save a checkpoint every this many epochs…
    pub checkpoint_interval: usize,
    /// …and/or every this many steps (0: off).
    pub checkpoint_steps: u64,
    /// Keep this many recent checkpoints (plus `best`).
    pub keep_checkpoints: usize,
    /// `[from, to]`: record every rank's phases for steps from..=to (1-based) into
    /// `<output_dir>/trace.json`, a Chrome trace (Perfetto, chrome://tracing).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_steps: Option<[u64; 2]>,
    pub loss: LossConfig,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            epochs: 484,
            batch_size: 3,
            accumulate_steps: 1,
            global_batch: None,
            optimizer: Optimizer::Sgd,
            lr: 0.01,
            head_keywords: Vec::new(),
            head_lr_mult: 1.0,
            momentum: 0.9,
            nesterov: false,
            weight_decay: 5e-4,
            no_decay_bias_norm: false,
            betas: [0.9, 0.999],
            eps: 1e-8,
            schedule: Schedule::Poly,
            power: 0.9,
            min_lr: 0.0,
            milestones: Vec::new(),
            gamma: 0.1,
            warmup_iters: 0,
            warmup: Warmup::Linear,
            warmup_ratio: 0.1,
            precision: Precision::Fp32,
            memory_format: MemoryFormatChoice::Auto,
            cudnn_benchmark: true,
            loss_scale: None,
            seed: 304,
            output_dir: PathBuf::from("runs/default"),
            checkpoint_interval: 1,
            checkpoint_steps: 0,
            trace_steps: None,
            keep_checkpoints: 3,
            loss: LossConfig::default(),
        }
    }
}
