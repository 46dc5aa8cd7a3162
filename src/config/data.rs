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
    /// ADE20K (SceneParsing, 150 classes).
    Ade20k,
    /// PASCAL-Context, 59 classes.
    #[serde(rename = "pascal_context")]
    #[value(name = "pascal_context")]
    PascalContext,
    /// COCO-Stuff-164k, 171 classes.
    Cocostuff,
    /// A user's own images and masks (`data.classes`, `data.mask_format`, …).
    Custom,
}

/// How a custom dataset's masks store classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MaskFormat {
    /// A pixel is the class index (8-bit grey or palette PNG).
    #[default]
    Index,
    /// A pixel is its class's colour in `data.palette` (RGB PNG).
    Rgb,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DataConfig {
    pub dataset: DatasetKind,
    pub root: PathBuf,
    /// Custom datasets: the class names, in index order (their count is the model's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classes: Option<Vec<String>>,
    /// Custom datasets: one [r, g, b] per class (masks in `rgb`, prediction images).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub palette: Option<Vec<[u8; 3]>>,
    /// Custom datasets: `index` or `rgb` masks.
    pub mask_format: MaskFormat,
    /// Custom datasets: the mask value of pixels to ignore (index masks).
    pub ignore_index: u8,
    /// Custom datasets: mask value 0 is ignored and k becomes class k−1 (ADE20K-style masks).
    pub reduce_zero_label: bool,
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
            classes: None,
            palette: None,
            mask_format: MaskFormat::Index,
            ignore_index: 255,
            reduce_zero_label: false,
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

impl DataConfig {
    /// Problems of the custom-dataset keys: (key, message).
    pub fn check_classes(&self) -> Vec<(String, String)> {
        let mut bad = Vec::new();
        let mut need = |ok: bool, key: &str, msg: String| {
            if !ok {
                bad.push((format!("data.{key}"), msg));
            }
        };
        if self.dataset != DatasetKind::Custom {
            need(self.classes.is_none(), "classes", "applies to data.dataset = \"custom\" only".into());
            need(self.palette.is_none(), "palette", "applies to data.dataset = \"custom\" only".into());
            need(
                self.mask_format == MaskFormat::Index,
                "mask_format",
                "applies to data.dataset = \"custom\" only".into(),
            );
            return bad;
        }
        let Some(classes) = &self.classes else {
            need(
                false,
                "classes",
                "a custom dataset names its classes, e.g. [\"background\", \"road\", \"car\"]".into(),
            );
            return bad;
        };
        need(!classes.is_empty(), "classes", "is empty".into());
        need(classes.len() <= 255, "classes", format!("has {} classes; at most 255 fit in 8-bit masks", classes.len()));
        if let Some(i) = classes.iter().position(|c| c.trim().is_empty()) {
            need(false, "classes", format!("class {i} has an empty name"));
        }
        if let Some((i, j)) = first_repeat(classes) {
            need(false, "classes", format!("{:?} is listed twice (classes {i} and {j})", classes[i]));
        }
        match &self.palette {
            Some(p) => {
                need(
                    p.len() == classes.len(),
                    "palette",
                    format!("has {} colours for {} classes (one per class, in the same order)", p.len(), classes.len()),
                );
                if let Some((i, j)) = first_repeat(p) {
                    need(false, "palette", format!("colour {:?} is used twice (classes {i} and {j})", p[i]));
                }
            }
            None => need(
                self.mask_format == MaskFormat::Index,
                "palette",
                "is needed with mask_format = \"rgb\": the masks' colour of each class".into(),
            ),
        }
        let n = classes.len();
        need(
            !(self.reduce_zero_label && self.mask_format == MaskFormat::Rgb),
            "reduce_zero_label",
            "applies to index masks (an RGB mask's colours name their classes)".into(),
        );
        if self.mask_format == MaskFormat::Index {
            // The ignore value must not also be a class value.
            let class_values = if self.reduce_zero_label { 1..=n } else { 0..=n.saturating_sub(1) };
            need(
                !class_values.contains(&(self.ignore_index as usize)),
                "ignore_index",
                format!(
                    "{} is also the mask value of a class (values {class_values:?} are classes)",
                    self.ignore_index
                ),
            );
        }
        bad
    }
}

/// The indices of the first value listed twice.
fn first_repeat<T: PartialEq>(items: &[T]) -> Option<(usize, usize)> {
    (0..items.len()).find_map(|j| (0..j).find(|&i| items[i] == items[j]).map(|i| (i, j)))
}
