//! What an exported model carries about itself (`metadata_props` of the ONNX file), from
//! the config it was trained with: enough for a consumer to preprocess, read and colour
//! the output without segzoo.
use crate::config::{Config, DatasetKind as ConfigDataset};
use crate::data::kind::DatasetKind;
use crate::models::{Averaging, Model, Task};

/// The dataset a preset's class count names (19 Cityscapes, 20 LIP, 21 VOC, 1000 ImageNet,
/// 150 ADE20K, 59 PASCAL-Context, 171 COCO-Stuff).
pub fn dataset_for_classes(n: i64) -> Option<ConfigDataset> {
    [
        ConfigDataset::Cityscapes,
        ConfigDataset::Lip,
        ConfigDataset::Voc,
        ConfigDataset::Imagenet,
        ConfigDataset::Ade20k,
        ConfigDataset::PascalContext,
        ConfigDataset::Cocostuff,
    ]
    .into_iter()
    .find(|&d| DatasetKind::from(d).num_classes() == Some(n))
}

/// `metadata_props` for `model` trained with `cfg`.
pub fn onnx_metadata(cfg: &Config, model: &Model, aux: bool, input_size: Option<(i64, i64)>) -> Vec<(String, String)> {
    let classes = super::classes(&cfg.data);
    let n = model.num_classes;
    let names = classes.names_for(n as usize);
    let colours: Vec<[u8; 3]> = (0..n).map(|i| classes.color(i.min(254) as u8)).collect();
    let task = match model.task() {
        Task::Segmentation => "segmentation",
        Task::Classification => "classification",
    };
    let averaging = match model.averaging() {
        Averaging::Probs => "probs",
        Averaging::ExpLogits => "exp_logits",
    };
    let mut outputs: Vec<&str> = vec!["logits"];
    if aux {
        outputs = model.output_names();
    }
    let mut meta = vec![
        ("preset", model.preset.clone()),
        ("task", task.to_string()),
        (
            "dataset",
            serde_json::to_value(cfg.data.dataset)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
        ),
        ("num_classes", n.to_string()),
        ("class_names", json(&names)),
        ("palette", json(&colours)),
        ("ignore_label", cfg.data.ignore_label.to_string()),
        ("mean", json(&cfg.data.mean.to_vec())),
        ("std", json(&cfg.data.std.to_vec())),
        // image = (pixel / 255 − mean) / std, RGB, N×3×H×W float32.
        ("pixel_scale", "1".to_string()),
        ("input_layout", "NCHW RGB float32".to_string()),
        ("input_multiple", model.input_multiple().to_string()),
        ("align_corners", model.align_corners().to_string()),
        ("averaging", averaging.to_string()),
        ("outputs", outputs.join(",")),
        ("dynamic", input_size.is_none().to_string()),
        ("batchnorm_folded", "true".to_string()),
        ("segzoo_version", env!("CARGO_PKG_VERSION").to_string()),
    ];
    if let Some((h, w)) = input_size {
        meta.push(("input_size", format!("{h}x{w}")));
    }
    meta.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}
