//! `[model]`: the preset and what may override it (classes, HRNet stages, OCR and
//! classification heads, BN freezing, BiSeNetV2 aux heads).
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

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
    pub hrnet: Option<HrnetConfig>,
    /// OCR head widths (OCRNet presets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ocr: Option<OcrConfig>,
    /// Classification head widths (HRNet-C presets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cls_head: Option<ClsHeadConfig>,
    /// BatchNorm always in eval mode with γ, β not trained (the RefineNet recipe); wins
    /// over `sync_bn`.
    pub freeze_bn: bool,
    /// Training-mode BatchNorm statistics over every rank's samples (SyncBatchNorm, as the
    /// PyTorch trainers of these models use); in a world of one, plain BatchNorm.
    pub sync_bn: bool,
    /// Build BiSeNetV2's four auxiliary heads (training); inference builds may omit them.
    pub aux_heads: bool,
    /// `pytorch` (the official code's operators) or `mindspore` (the ModelZoo's, so that a
    /// ModelZoo `.ckpt` gives the ModelZoo's outputs).
    pub numerics: NumericsChoice,
}

/// `model.numerics`: whose operator semantics the model follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NumericsChoice {
    #[default]
    Pytorch,
    Mindspore,
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
            sync_bn: false,
            aux_heads: true,
            numerics: NumericsChoice::Pytorch,
        }
    }
}

/// `[model.hrnet]`: the HRNet stages, as `STAGE1..4` in the official YAML configs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HrnetConfig {
    pub stage1: StageConfig,
    pub stage2: StageConfig,
    pub stage3: StageConfig,
    pub stage4: StageConfig,
}

/// One HRNet stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageConfig {
    pub num_modules: usize,
    pub num_branches: usize,
    pub block: BlockKind,
    pub num_blocks: Vec<usize>,
    pub num_channels: Vec<i64>,
    #[serde(default)]
    pub fuse_method: FuseMethod,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum BlockKind {
    Basic,
    Bottleneck,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum FuseMethod {
    #[default]
    Sum,
}

/// `[model.ocr]`: OCR head widths.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OcrConfig {
    pub mid_channels: i64,
    pub key_channels: i64,
    pub dropout: f64,
}

impl Default for OcrConfig {
    fn default() -> Self {
        OcrConfig { mid_channels: 512, key_channels: 256, dropout: 0.05 }
    }
}

/// `[model.cls_head]`: widths of the HRNet-C classification head.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClsHeadConfig {
    /// Bottleneck widths of `incre_modules` (outputs are 4× these).
    pub incre_channels: Vec<i64>,
    /// Channels of `final_layer`.
    pub final_channels: i64,
}

impl Default for ClsHeadConfig {
    fn default() -> Self {
        ClsHeadConfig { incre_channels: vec![32, 64, 128, 256], final_channels: 2048 }
    }
}
