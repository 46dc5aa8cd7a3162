//! `[data]`: the dataset, its lists and the training augmentation.
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// `data.dataset` (and the CLI's `--dataset`); the layouts themselves, with their class
/// counts, are `crate::data::kind::DatasetKind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum DatasetKind {
    Cityscapes,
    Lip,
    Voc,
    Imagenet,
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
    pub color_jitter: Option<ColorJitter>,
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

/// Multiplicative colour jitter ranges, e.g. `contrast = [0.4, 1.6]` (BiSeNetV2 recipe).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColorJitter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub brightness: Option<[f32; 2]>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contrast: Option<[f32; 2]>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub saturation: Option<[f32; 2]>,
}
