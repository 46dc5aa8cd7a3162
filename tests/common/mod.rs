//! Helpers shared by the model tests.
#![allow(dead_code)]
use segzoo::models::hrnet::{BlockKind, HrnetSpec, StageSpec};
use segzoo::models::hrnet_cls::ClsHeadSpec;
use segzoo::models::ocr::OcrSpec;
use segzoo::models::{Model, ModelSpec};
use std::path::Path;

/// A four-stage HRNet small enough for 2-core tests.
pub fn tiny_spec() -> HrnetSpec {
    use BlockKind::*;
    HrnetSpec {
        stage1: StageSpec::new(1, Bottleneck, &[1], &[8]),
        stage2: StageSpec::new(1, Basic, &[1, 1], &[4, 8]),
        stage3: StageSpec::new(1, Basic, &[1, 1, 1], &[4, 8, 16]),
        stage4: StageSpec::new(2, Basic, &[1, 1, 1, 1], &[4, 8, 16, 32]),
    }
}

pub fn tiny_config(preset: &str, classes: i64) -> ModelSpec {
    let mut cfg = ModelSpec::preset(preset);
    cfg.hrnet = Some(tiny_spec());
    cfg.num_classes = Some(classes);
    if preset.starts_with("ocrnet") {
        cfg.ocr = Some(OcrSpec { mid_channels: 16, key_channels: 8, dropout: 0.05 });
    }
    if preset.ends_with("_c") {
        cfg.cls_head = Some(ClsHeadSpec { incre_channels: vec![4, 8, 16, 32], final_channels: 64 });
    }
    cfg
}

pub fn tiny(preset: &str, classes: i64, seed: i64) -> Model {
    tch::manual_seed(seed);
    segzoo::models::build(&tiny_config(preset, classes), tch::Device::Cpu).expect("tiny model builds")
}

pub fn max_abs_diff(a: &tch::Tensor, b: &tch::Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

/// A reference manifest from tests/reference (copied from ../shared/reference).
pub fn reference(name: &str) -> serde_json::Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/reference").join(format!("{name}.json"));
    serde_json::from_str(&std::fs::read_to_string(&path).expect("reference manifest")).expect("valid JSON")
}

/// The `tensors` of a reference manifest or of `segzoo model-info --json`: (name, shape).
pub fn tensor_list(manifest: &serde_json::Value) -> Vec<(String, Vec<i64>)> {
    manifest["tensors"]
        .as_array()
        .expect("tensors")
        .iter()
        .map(|t| {
            let shape = t["shape"].as_array().expect("shape").iter().map(|d| d.as_i64().expect("int")).collect();
            (t["name"].as_str().expect("name").to_string(), shape)
        })
        .collect()
}

/// The tiny HRNet of `tiny_spec` as a config file's `[model]` (OCR mid 16 / key 8 for
/// OCRNet presets).
pub fn tiny_toml(preset: &str, classes: i64) -> String {
    let ocr = if preset.starts_with("ocrnet") { "ocr = { mid_channels = 16, key_channels = 8 }\n" } else { "" };
    let stage = |n: usize, modules: usize, block: &str, channels: &[i64]| {
        format!(
            "[model.hrnet.stage{n}]\nnum_modules = {modules}\nnum_branches = {}\nblock = \"{block}\"\nnum_blocks = {:?}\nnum_channels = {channels:?}\nfuse_method = \"SUM\"\n",
            channels.len(),
            vec![1; channels.len()],
        )
    };
    format!(
        "[model]\nname = \"{preset}\"\nnum_classes = {classes}\n{ocr}\n{}\n{}\n{}\n{}",
        stage(1, 1, "BOTTLENECK", &[8]),
        stage(2, 1, "BASIC", &[4, 8]),
        stage(3, 1, "BASIC", &[4, 8, 16]),
        stage(4, 2, "BASIC", &[4, 8, 16, 32]),
    )
}

/// Names, shapes and order identical to the manifest's state dict; same parameter and buffer counts.
pub fn assert_same_tensors(m: &Model, manifest: &serde_json::Value, what: &str) {
    let ours: Vec<(String, Vec<i64>)> = m.tensor_infos().into_iter().map(|t| (t.name, t.shape)).collect();
    let theirs = tensor_list(manifest);
    assert_eq!(ours.len(), theirs.len(), "{what}: entry count");
    for (i, (a, b)) in ours.iter().zip(&theirs).enumerate() {
        assert_eq!(a, b, "{what}: state-dict entry {i} differs");
    }
    assert_eq!(m.num_params(), manifest["num_params"].as_i64().expect("num_params"), "{what}: parameter count");
    assert_eq!(m.num_buffers() as i64, manifest["num_buffers"].as_i64().expect("num_buffers"), "{what}: buffers");
}

/// The `[model]` section of a training config for the tiny HRNet of [`tiny_spec`].
pub fn tiny_model_config(preset: &str) -> segzoo::config::ModelConfig {
    use segzoo::config::{BlockKind::*, FuseMethod, HrnetConfig, ModelConfig, StageConfig};
    let stage = |num_modules: usize, block, blocks: &[usize], channels: &[i64]| StageConfig {
        num_modules,
        num_branches: blocks.len(),
        block,
        num_blocks: blocks.to_vec(),
        num_channels: channels.to_vec(),
        fuse_method: FuseMethod::Sum,
    };
    ModelConfig {
        name: preset.to_string(),
        hrnet: Some(HrnetConfig {
            stage1: stage(1, Bottleneck, &[1], &[8]),
            stage2: stage(1, Basic, &[1, 1], &[4, 8]),
            stage3: stage(1, Basic, &[1, 1, 1], &[4, 8, 16]),
            stage4: stage(2, Basic, &[1, 1, 1, 1], &[4, 8, 16, 32]),
        }),
        ..Default::default()
    }
}
