//! Config → spec: the `[model]` section onto [`ModelSpec`], the `[data]` section onto
//! datasets with their recipe's transforms, the `[eval]` section onto inference options.
use crate::config::{self, Config, DataConfig, ModelConfig, NumericsChoice};
use crate::data::dataset::{ClsDataset, Dataset, SegDataset, Split};
use crate::data::kind::DatasetKind;
use crate::data::labels::LIP_FLIP_PAIRS;
use crate::data::transforms::{ClsTransform, ColorJitter, SegTransform};
use crate::eval::inference::{InferenceOptions, Sliding};
use crate::models::blocks::BlockKind;
use crate::models::hrnet::{FuseMethod, HrnetSpec, StageSpec};
use crate::models::hrnet_cls::ClsHeadSpec;
use crate::models::ocr::OcrSpec;
use crate::models::weights::{self, LoadMode, LoadReport};
use crate::models::{self, Averaging, Model, ModelSpec, Numerics};
use anyhow::Context;

impl From<config::DatasetKind> for DatasetKind {
    fn from(k: config::DatasetKind) -> Self {
        match k {
            config::DatasetKind::Cityscapes => DatasetKind::Cityscapes,
            config::DatasetKind::Lip => DatasetKind::Lip,
            config::DatasetKind::Voc => DatasetKind::Voc,
            config::DatasetKind::Imagenet => DatasetKind::Imagenet,
            config::DatasetKind::Ade20k => DatasetKind::Ade20k,
            config::DatasetKind::PascalContext => DatasetKind::PascalContext,
            config::DatasetKind::Cocostuff => DatasetKind::CocoStuff,
            config::DatasetKind::Custom => DatasetKind::Custom,
        }
    }
}

fn stage(s: &config::StageConfig) -> StageSpec {
    StageSpec {
        num_modules: s.num_modules,
        num_branches: s.num_branches,
        block: match s.block {
            config::BlockKind::Basic => BlockKind::Basic,
            config::BlockKind::Bottleneck => BlockKind::Bottleneck,
        },
        num_blocks: s.num_blocks.clone(),
        num_channels: s.num_channels.clone(),
        fuse_method: match s.fuse_method {
            config::FuseMethod::Sum => FuseMethod::Sum,
        },
    }
}

/// The `[model]` section as a spec; `default_classes` (the dataset's) applies when
/// `model.num_classes` is unset.
pub fn model_spec(cfg: &ModelConfig, default_classes: Option<i64>) -> ModelSpec {
    ModelSpec {
        preset: cfg.name.clone(),
        num_classes: cfg.num_classes.or(default_classes),
        align_corners: cfg.align_corners,
        hrnet: cfg.hrnet.as_ref().map(|h| HrnetSpec {
            stage1: stage(&h.stage1),
            stage2: stage(&h.stage2),
            stage3: stage(&h.stage3),
            stage4: stage(&h.stage4),
        }),
        ocr: cfg.ocr.as_ref().map(|o| OcrSpec {
            mid_channels: o.mid_channels,
            key_channels: o.key_channels,
            dropout: o.dropout,
        }),
        cls_head: cfg
            .cls_head
            .as_ref()
            .map(|c| ClsHeadSpec { incre_channels: c.incre_channels.clone(), final_channels: c.final_channels }),
        freeze_bn: cfg.freeze_bn,
        aux_heads: cfg.aux_heads,
        numerics: match cfg.numerics {
            NumericsChoice::Pytorch => Numerics::PyTorch,
            NumericsChoice::Mindspore => Numerics::MindSpore,
        },
    }
}

/// The class count of the config's dataset.
pub fn dataset_classes(cfg: &Config) -> i64 {
    super::classes(&cfg.data).len() as i64
}

/// The model a config trains and evaluates: `[model]` with the dataset's class count.
pub fn build_model(cfg: &Config, device: tch::Device) -> anyhow::Result<Model> {
    models::build(&model_spec(&cfg.model, Some(dataset_classes(cfg))), device)
}

/// Load `model.pretrained`, if set, with the backbone-only rules: tensors that match
/// by name and shape are loaded, the rest keep their initial values.
/// An empty path (`--set model.pretrained=""`) trains from scratch.
pub fn load_pretrained(model: &Model, cfg: &ModelConfig) -> anyhow::Result<Option<LoadReport>> {
    let Some(path) = cfg.pretrained.as_ref().filter(|p| !p.as_os_str().is_empty()) else {
        return Ok(None);
    };
    let report = weights::load_file(model, path, LoadMode::Partial).with_context(|| {
        format!("model.pretrained = {} (--set model.pretrained='\"\"' trains from scratch)", path.display())
    })?;
    tracing::info!(
        loaded = report.loaded,
        new = report.missing.len(),
        ignored = report.unexpected.len(),
        "pretrained weights from {}",
        path.display()
    );
    Ok(Some(report))
}

fn jitter(j: &config::ColorJitter) -> ColorJitter {
    ColorJitter { brightness: j.brightness, contrast: j.contrast, saturation: j.saturation }
}

/// The dataset `[data]` describes for `split`, with its recipe's transforms.
pub fn dataset(cfg: &DataConfig, split: Split) -> anyhow::Result<Box<dyn Dataset>> {
    let list = match split {
        Split::Train => &cfg.train_list,
        Split::Val => &cfg.val_list,
    };
    let train = split == Split::Train;
    let kind = DatasetKind::from(cfg.dataset);
    if kind == DatasetKind::Imagenet {
        let t = ClsTransform { size: cfg.crop_size[0], resize: cfg.base_size, train, mean: cfg.mean, std: cfg.std };
        return Ok(Box::new(ClsDataset::open(&cfg.root, list, t)?));
    }
    Ok(Box::new(seg_dataset(cfg, list, train)?))
}

/// The val split of a segmentation dataset as the concrete type (raw images and labels
/// for previews).
pub fn seg_val_dataset(cfg: &DataConfig) -> anyhow::Result<SegDataset> {
    seg_dataset(cfg, &cfg.val_list, false)
}

fn seg_dataset(cfg: &DataConfig, list: &std::path::Path, train: bool) -> anyhow::Result<SegDataset> {
    let kind = DatasetKind::from(cfg.dataset);
    let transform = SegTransform {
        crop: train.then_some(cfg.crop_size),
        base_size: if train { cfg.base_size } else { 0 },
        scale_range: if train { cfg.scale_range } else { [1.0, 1.0] },
        flip: train && cfg.flip,
        flip_pairs: if kind == DatasetKind::Lip { LIP_FLIP_PAIRS.to_vec() } else { Vec::new() },
        jitter: if train { cfg.color_jitter.as_ref().map(jitter) } else { None },
        mean: cfg.mean,
        std: cfg.std,
        pad_value: 0,
    };
    SegDataset::with_rule(super::mask_rule(cfg)?, &cfg.root, list, transform)
}

/// Inference settings of the `[eval]` section for `model`: the architecture's own
/// score averaging unless `eval.averaging` overrides it.
pub fn inference_options(cfg: &Config, model: &Model) -> InferenceOptions {
    let e = &cfg.eval;
    let crop = e.crop_size.unwrap_or(cfg.data.crop_size);
    let stride = e.stride.unwrap_or([(crop[0] * 2 / 3).max(1), (crop[1] * 2 / 3).max(1)]);
    let averaging = match e.averaging {
        Some(config::Averaging::Probs) => Averaging::Probs,
        Some(config::Averaging::ExpLogits) => Averaging::ExpLogits,
        None => model.averaging(),
    };
    InferenceOptions {
        scales: e.scales.clone(),
        flip: e.flip,
        sliding: e.sliding.then_some(Sliding {
            crop: [crop[0] as i64, crop[1] as i64],
            stride: [stride[0] as i64, stride[1] as i64],
        }),
        averaging,
        flip_pairs: if cfg.data.dataset == config::DatasetKind::Lip {
            LIP_FLIP_PAIRS.iter().map(|&(a, b)| (a as i64, b as i64)).collect()
        } else {
            Vec::new()
        },
        align_corners: model.align_corners(),
        input_multiple: model.input_multiple(),
        precision: e.precision,
    }
}
