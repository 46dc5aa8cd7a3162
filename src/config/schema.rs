//! The configuration schema. Every section rejects unknown keys so that a typo
//! is an error, never a silently ignored setting.
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelConfig {
    /// A preset name from the model registry, e.g. `hrnetv2_w48`.
    pub name: String,
    /// Overrides the dataset's class count when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_classes: Option<i64>,
    /// Bilinear resize convention; the preset's when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub align_corners: Option<bool>,
    /// Pretrained backbone weights (safetensors or .pth), loaded backbone-only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pretrained: Option<PathBuf>,
    /// HRNet stages, replacing the preset's (as `STAGE1..4` in the official YAMLs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hrnet: Option<crate::models::hrnet::HrnetSpec>,
    /// OCR head widths (OCRNet presets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ocr: Option<crate::models::ocr::OcrSpec>,
    /// Classification head widths (HRNet-C presets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cls_head: Option<crate::models::hrnet::ClsHeadSpec>,
    /// BatchNorm always in eval mode with γ, β not trained (the RefineNet recipe).
    pub freeze_bn: bool,
    /// Build BiSeNetV2's four auxiliary heads (training); inference builds may omit them.
    pub aux_heads: bool,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            name: "hrnetv2_w18_small_v2".into(),
            num_classes: None,
            align_corners: None,
            pretrained: None,
            hrnet: None,
            ocr: None,
            cls_head: None,
            freeze_bn: false,
            aux_heads: true,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum DatasetKind {
    Cityscapes,
    Lip,
    Voc,
    Imagenet,
}

impl DatasetKind {
    pub fn num_classes(self) -> i64 {
        match self {
            DatasetKind::Cityscapes => 19,
            DatasetKind::Lip => 20,
            DatasetKind::Voc => 21,
            DatasetKind::Imagenet => 1000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DataConfig {
    pub dataset: DatasetKind,
    pub root: PathBuf,
    pub train_list: PathBuf,
    pub val_list: PathBuf,
    pub ignore_label: i64,
    /// Training crop as [height, width].
    pub crop_size: [usize; 2],
    /// Long side the random rescale is relative to (0: the image's own size).
    pub base_size: usize,
    /// Random rescale range [min, max].
    pub scale_range: [f64; 2],
    pub flip: bool,
    /// Colour jitter ranges (training only), e.g. `{ contrast = [0.4, 1.6] }`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub color_jitter: Option<crate::data::transforms::ColorJitter>,
    pub mean: [f32; 3],
    pub std: [f32; 3],
    /// Decoding/augmenting threads.
    pub num_workers: usize,
    /// Batches prepared ahead of training.
    pub prefetch: usize,
}

impl Default for DataConfig {
    fn default() -> Self {
        Self {
            dataset: DatasetKind::Cityscapes,
            root: PathBuf::from("data/cityscapes"),
            train_list: PathBuf::from("train.lst"),
            val_list: PathBuf::from("val.lst"),
            ignore_label: 255,
            crop_size: [512, 1024],
            base_size: 2048,
            scale_range: [0.5, 2.0],
            flip: true,
            mean: [0.485, 0.456, 0.406],
            std: [0.229, 0.224, 0.225],
            color_jitter: None,
            num_workers: 4,
            prefetch: 4,
        }
    }
}

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
    /// Images per device per step.
    pub batch_size: usize,
    pub optimizer: Optimizer,
    pub lr: f64,
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
    pub loss: LossConfig,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            epochs: 484,
            batch_size: 3,
            optimizer: Optimizer::Sgd,
            lr: 0.01,
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
            loss_scale: None,
            seed: 304,
            output_dir: PathBuf::from("runs/default"),
            checkpoint_interval: 1,
            checkpoint_steps: 0,
            keep_checkpoints: 3,
            loss: LossConfig::default(),
        }
    }
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
}

impl Default for EvalConfig {
    fn default() -> Self {
        EvalConfig {
            start: 1,
            interval: 1,
            batch_size: 1,
            scales: vec![1.0],
            flip: false,
            sliding: false,
            crop_size: None,
            stride: None,
            averaging: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// NCCL on GPUs, MPI on CPU, nothing when alone.
    #[default]
    Auto,
    Nccl,
    Mpi,
    Single,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DistConfig {
    pub backend: Backend,
    /// Gradients are all-reduced in flat buckets of about this many MiB.
    pub bucket_mb: f64,
}

impl Default for DistConfig {
    fn default() -> Self {
        Self { backend: Backend::Auto, bucket_mb: 25.0 }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// Log a line every this many steps.
    pub interval: usize,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self { interval: 10 }
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
        let t = &self.train;
        need(t.epochs > 0, "train.epochs", "must be positive");
        need(t.batch_size > 0, "train.batch_size", "must be positive");
        need(t.lr > 0.0 && t.lr.is_finite(), "train.lr", "must be a positive number");
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
        need(self.eval.stride.is_none_or(|s| s.iter().all(|&v| v > 0)), "eval.stride", "must be positive");
        need(self.log.interval > 0, "log.interval", "must be positive");
        need(self.dist.bucket_mb > 0.0, "dist.bucket_mb", "must be positive");
        bad
    }
}
