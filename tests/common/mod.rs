//! Helpers shared by the model tests.
#![allow(dead_code)]
use segzoo::config::ModelConfig;
use segzoo::models::hrnet::{BlockKind, FuseMethod, HrnetSpec, StageSpec};
use segzoo::models::registry;
use segzoo::models::Model;

fn stage(modules: usize, block: BlockKind, blocks: &[usize], channels: &[i64]) -> StageSpec {
    StageSpec {
        num_modules: modules,
        num_branches: blocks.len(),
        block,
        num_blocks: blocks.to_vec(),
        num_channels: channels.to_vec(),
        fuse_method: FuseMethod::Sum,
    }
}

/// A four-stage HRNet small enough for 2-core tests.
pub fn tiny_spec() -> HrnetSpec {
    use BlockKind::*;
    HrnetSpec {
        stage1: stage(1, Bottleneck, &[1], &[8]),
        stage2: stage(1, Basic, &[1, 1], &[4, 8]),
        stage3: stage(1, Basic, &[1, 1, 1], &[4, 8, 16]),
        stage4: stage(2, Basic, &[1, 1, 1, 1], &[4, 8, 16, 32]),
    }
}

pub fn tiny_config(preset: &str, classes: i64) -> ModelConfig {
    let mut cfg = registry::preset_config(preset);
    cfg.hrnet = Some(tiny_spec());
    cfg.num_classes = Some(classes);
    if preset.starts_with("ocrnet") {
        cfg.ocr = Some(segzoo::models::ocr::OcrSpec { mid_channels: 16, key_channels: 8, dropout: 0.05 });
    }
    if preset.ends_with("_c") {
        cfg.cls_head =
            Some(segzoo::models::hrnet::ClsHeadSpec { incre_channels: vec![4, 8, 16, 32], final_channels: 64 });
    }
    cfg
}

pub fn tiny(preset: &str, classes: i64, seed: i64) -> Model {
    tch::manual_seed(seed);
    registry::build(&tiny_config(preset, classes), None, tch::Device::Cpu).expect("tiny model builds")
}

pub fn max_abs_diff(a: &tch::Tensor, b: &tch::Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}
