//! The configuration schema. Every section rejects unknown keys so that a typo
//! is an error, never a silently ignored setting.
pub use super::data::*;
pub use super::model::*;
pub use super::train::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub model: ModelConfig,
    #[serde(default)]
    pub data: DataConfig,
    #[serde(default)]
    pub train: TrainConfig,
    #[serde(default)]
    pub eval: EvalConfig,
    #[serde(default)]
    pub dist: DistConfig,
    #[serde(default)]
    pub log: LogConfig,
}

/// How scores from several scales/flips are combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Averaging {
    /// Sum of softmax probabilities (BiSeNetV2, RefineNet, mmsegmentation).
    Probs,
    /// Sum of exp(logits) (the official HRNet/OCR inference).
    ExpLogits,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EvalConfig {
    /// First epoch (1-based) after which to evaluate.
    pub start: usize,
    /// Evaluate every this many epochs.
    pub interval: usize,
    pub batch_size: usize,
    /// Image scales for `segzoo eval` (e.g. [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]).
    pub scales: Vec<f64>,
    /// Also predict the mirrored image.
    pub flip: bool,
    /// The one image scale of the evaluations while training (whole image, no flip).
    pub train_scale: f64,
    /// Sliding-window inference with `crop_size` tiles every `stride`.
    pub sliding: bool,
    /// Tile size (default: data.crop_size).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crop_size: Option<[usize; 2]>,
    /// Tile step (default: 2/3 of the tile).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stride: Option<[usize; 2]>,
    /// Default: exp_logits for HRNet/OCRNet, probs otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub averaging: Option<Averaging>,
    /// Forward precision of the deploy form in `segzoo eval`/`infer`: fp32, or autocast to
    /// bf16/fp16 (meant for CUDA).
    pub precision: Precision,
    /// cuDNN autotuning in `segzoo eval`/`infer` on CUDA (each image size is tuned once;
    /// training's evaluations follow `train.cudnn_benchmark`).
    pub cudnn_benchmark: bool,
}

impl Default for EvalConfig {
    fn default() -> Self {
        EvalConfig {
            start: 1,
            interval: 1,
            batch_size: 1,
            scales: vec![1.0],
            flip: false,
            train_scale: 1.0,
            sliding: false,
            crop_size: None,
            stride: None,
            averaging: None,
            precision: Precision::Fp32,
            cudnn_benchmark: true,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// NCCL on GPUs, gloo on CPU (under mpirun: MPI, measured faster), nothing when alone.
    #[default]
    Auto,
    /// c10d's ProcessGroupNCCL (GPU ranks; the CUDA build).
    Nccl,
    /// c10d's ProcessGroupGloo (CPU ranks, any launcher).
    Gloo,
    /// MPI (under mpirun only).
    Mpi,
    Single,
}

/// `dist.compression`: how gradient buckets cross the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    #[default]
    None,
    /// Cast to fp16, divided by the world size, summed, cast back (PyTorch's fp16_compress_hook).
    Fp16,
    /// The same in bf16 (bf16_compress_hook).
    Bf16,
    /// Rank-r factors with error feedback (PyTorch's PowerSGD hook).
    Powersgd,
}

impl Compression {
    /// The name as `dist.compression` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Fp16 => "fp16",
            Compression::Bf16 => "bf16",
            Compression::Powersgd => "powersgd",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DistConfig {
    pub backend: Backend,
    /// Gradients are all-reduced in flat buckets of about this many MiB.
    pub bucket_mb: f64,
    /// All-reduce each bucket as soon as backward has produced its gradients (gloo, NCCL, MPI);
    /// false: all of them after backward.
    pub overlap: bool,
    /// A collective that has not completed in this many seconds ends the job (exit 124),
    /// naming itself, the step and the ranks that went silent.
    pub timeout_s: f64,
    /// The same for the job's start: every rank meeting at the rendezvous (a rank that does
    /// not come is named) and connecting its group.
    pub init_timeout_s: f64,
    /// `none`, `fp16`, `bf16` or `powersgd`: gradients only, per bucket.
    pub compression: Compression,
    /// PowerSGD's approximation rank.
    pub powersgd_rank: usize,
    /// Optimiser steps of plain all-reduce before PowerSGD starts (unset: 10 % of the run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub powersgd_start_step: Option<u64>,
    /// A rank more than this many times slower than the median is named at the log line.
    pub straggler_ratio: f64,
}

impl Default for DistConfig {
    fn default() -> Self {
        Self {
            backend: Backend::Auto,
            bucket_mb: 25.0,
            overlap: true,
            timeout_s: 600.0,
            init_timeout_s: 300.0,
            compression: Compression::None,
            powersgd_rank: 2,
            powersgd_start_step: None,
            straggler_ratio: 1.3,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// Log a line every this many steps.
    pub interval: usize,
    /// Write TensorBoard event files to `<output_dir>/tb/` (rank 0).
    pub tensorboard: bool,
    /// Val images shown (prediction and label overlays) in TensorBoard at each evaluation.
    pub tensorboard_images: usize,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self { interval: 10, tensorboard: true, tensorboard_images: 3 }
    }
}

impl Config {
    /// Cross-field checks serde cannot express: (key path, problem).
    pub fn check(&self) -> Vec<(String, String)> {
        let mut bad = Vec::new();
        let mut need = |ok: bool, key: &str, msg: &str| {
            if !ok {
                bad.push((key.to_string(), msg.to_string()));
            }
        };
        need(!self.model.name.trim().is_empty(), "model.name", "must name a model preset");
        need(self.model.num_classes.is_none_or(|n| n > 0), "model.num_classes", "must be positive");
        let d = &self.data;
        need(d.crop_size.iter().all(|&s| s > 0), "data.crop_size", "both sides must be positive");
        need(
            d.scale_range[0] > 0.0 && d.scale_range[0] <= d.scale_range[1],
            "data.scale_range",
            "must be [min, max] with 0 < min <= max",
        );
        need(d.std.iter().all(|&s| s > 0.0), "data.std", "every channel must be positive");
        need((0..=255).contains(&d.ignore_label), "data.ignore_label", "must be in 0..=255");
        if let (Some(classes), Some(n)) = (&d.classes, self.model.num_classes) {
            need(
                n == classes.len() as i64,
                "model.num_classes",
                "must equal the number of data.classes (or be left unset)",
            );
        }
        let t = &self.train;
        need(t.epochs > 0, "train.epochs", "must be positive");
        need(t.batch_size > 0, "train.batch_size", "must be positive");
        need(t.accumulate_steps > 0, "train.accumulate_steps", "must be at least 1");
        need(t.global_batch != Some(0), "train.global_batch", "must be at least 1");
        need(t.lr > 0.0 && t.lr.is_finite(), "train.lr", "must be a positive number");
        need(t.head_lr_mult > 0.0 && t.head_lr_mult.is_finite(), "train.head_lr_mult", "must be a positive number");
        need(
            t.head_keywords.iter().all(|k| !k.is_empty()),
            "train.head_keywords",
            "an empty keyword names every parameter",
        );
        need((0.0..1.0).contains(&t.momentum), "train.momentum", "must be in [0, 1)");
        need(t.weight_decay >= 0.0, "train.weight_decay", "must not be negative");
        need(t.power > 0.0, "train.power", "must be positive");
        need(t.checkpoint_interval > 0, "train.checkpoint_interval", "must be positive");
        need(t.keep_checkpoints > 0, "train.keep_checkpoints", "must be at least 1");
        need(t.min_lr >= 0.0 && t.min_lr <= t.lr, "train.min_lr", "must be in [0, train.lr]");
        need(t.warmup_ratio > 0.0 && t.warmup_ratio <= 1.0, "train.warmup_ratio", "must be in (0, 1]");
        need(t.eps > 0.0, "train.eps", "must be positive");
        need(t.betas.iter().all(|b| (0.0..1.0).contains(b)), "train.betas", "both must be in [0, 1)");
        need(t.loss.ohem_thresh > 0.0 && t.loss.ohem_thresh <= 1.0, "train.loss.ohem_thresh", "must be in (0, 1]");
        need(t.loss.ohem_min_kept >= 0, "train.loss.ohem_min_kept", "must not be negative");
        need(t.loss_scale.is_none_or(|v| v > 0.0), "train.loss_scale", "must be positive");
        need(
            t.loss_scale.is_none() || t.precision == Precision::Fp16,
            "train.loss_scale",
            "applies to precision = \"fp16\" only",
        );
        need(self.eval.interval > 0, "eval.interval", "must be positive");
        need(self.eval.batch_size > 0, "eval.batch_size", "must be positive");
        need(
            !self.eval.scales.is_empty() && self.eval.scales.iter().all(|&s| s > 0.0),
            "eval.scales",
            "must list positive scales",
        );
        need(self.eval.train_scale > 0.0, "eval.train_scale", "must be positive");
        need(self.eval.stride.is_none_or(|s| s.iter().all(|&v| v > 0)), "eval.stride", "must be positive");
        need(self.log.interval > 0, "log.interval", "must be positive");
        need(
            t.trace_steps.is_none_or(|[from, to]| from >= 1 && from <= to),
            "train.trace_steps",
            "must be [from, to] with 1 <= from <= to (steps are 1-based)",
        );
        need(self.dist.bucket_mb > 0.0, "dist.bucket_mb", "must be positive");
        need(self.dist.powersgd_rank > 0, "dist.powersgd_rank", "must be at least 1");
        need(
            self.dist.straggler_ratio > 1.0 && self.dist.straggler_ratio.is_finite(),
            "dist.straggler_ratio",
            "must be a number above 1",
        );
        need(
            self.dist.timeout_s > 0.0 && self.dist.timeout_s.is_finite(),
            "dist.timeout_s",
            "must be a positive number of seconds",
        );
        need(
            self.dist.init_timeout_s > 0.0 && self.dist.init_timeout_s.is_finite(),
            "dist.init_timeout_s",
            "must be a positive number of seconds",
        );
        bad.extend(d.check_classes());
        bad
    }
}
