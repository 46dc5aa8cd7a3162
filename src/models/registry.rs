//! Named presets and building a [`Model`] from the `[model]` config section.
use super::bisenetv2::{BiSeNetV2, AUX_HEADS};
use super::hrnet::{HrnetCls, HrnetSeg, HrnetSpec};
use super::layers::Scope;
use super::ocr::OcrNet;
use super::refinenet::RefineNet;
use super::{Model, Net, Task};
use crate::config::ModelConfig;
use anyhow::{bail, Context};
use tch::{nn, Device};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    HrnetSeg,
    Ocr,
    HrnetCls,
    BiSeNetV2,
    RefineNet,
}

/// A preset: the architecture and its defaults.
#[derive(Debug, Clone)]
pub struct Preset {
    pub name: &'static str,
    pub arch: Arch,
    /// The HRNet stages, for HRNet-based architectures.
    pub hrnet: Option<fn() -> HrnetSpec>,
    pub num_classes: i64,
    pub align_corners: bool,
    pub about: &'static str,
}

const fn preset(
    name: &'static str,
    arch: Arch,
    hrnet: Option<fn() -> HrnetSpec>,
    num_classes: i64,
    align_corners: bool,
    about: &'static str,
) -> Preset {
    Preset { name, arch, hrnet, num_classes, align_corners, about }
}

/// Every preset `segzoo model-info` and configs can name.
pub fn presets() -> Vec<Preset> {
    use Arch::*;
    let w = |f: fn() -> HrnetSpec| Some(f);
    vec![
        preset(
            "hrnetv2_w18_small_v1",
            HrnetSeg,
            w(HrnetSpec::w18_small_v1),
            19,
            true,
            "HRNetV2-W18-Small-v1 segmentation",
        ),
        preset(
            "hrnetv2_w18_small_v2",
            HrnetSeg,
            w(HrnetSpec::w18_small_v2),
            19,
            true,
            "HRNetV2-W18-Small-v2 segmentation",
        ),
        preset("hrnetv2_w18", HrnetSeg, w(|| HrnetSpec::width(18)), 19, false, "HRNetV2-W18 segmentation"),
        preset("hrnetv2_w32", HrnetSeg, w(|| HrnetSpec::width(32)), 19, false, "HRNetV2-W32 segmentation"),
        preset("hrnetv2_w40", HrnetSeg, w(|| HrnetSpec::width(40)), 19, false, "HRNetV2-W40 segmentation"),
        preset("hrnetv2_w48", HrnetSeg, w(|| HrnetSpec::width(48)), 19, false, "HRNetV2-W48 segmentation"),
        preset("ocrnet_hrnetv2_w18", Ocr, w(|| HrnetSpec::width(18)), 19, true, "OCRNet on HRNetV2-W18"),
        preset("ocrnet_hrnetv2_w32", Ocr, w(|| HrnetSpec::width(32)), 19, true, "OCRNet on HRNetV2-W32"),
        preset("ocrnet_hrnetv2_w48", Ocr, w(|| HrnetSpec::width(48)), 19, true, "OCRNet on HRNetV2-W48"),
        preset(
            "hrnet_w18_small_v1_c",
            HrnetCls,
            w(HrnetSpec::w18_small_v1),
            1000,
            false,
            "HRNet-W18-C-Small-v1 classification",
        ),
        preset(
            "hrnet_w18_small_v2_c",
            HrnetCls,
            w(HrnetSpec::w18_small_v2),
            1000,
            false,
            "HRNet-W18-C-Small-v2 classification",
        ),
        preset("hrnet_w18_c", HrnetCls, w(|| HrnetSpec::width(18)), 1000, false, "HRNet-W18-C classification"),
        preset("hrnet_w30_c", HrnetCls, w(|| HrnetSpec::width(30)), 1000, false, "HRNet-W30-C classification"),
        preset("hrnet_w32_c", HrnetCls, w(|| HrnetSpec::width(32)), 1000, false, "HRNet-W32-C classification"),
        preset("hrnet_w40_c", HrnetCls, w(|| HrnetSpec::width(40)), 1000, false, "HRNet-W40-C classification"),
        preset("hrnet_w44_c", HrnetCls, w(|| HrnetSpec::width(44)), 1000, false, "HRNet-W44-C classification"),
        preset("hrnet_w48_c", HrnetCls, w(|| HrnetSpec::width(48)), 1000, false, "HRNet-W48-C classification"),
        preset("hrnet_w64_c", HrnetCls, w(|| HrnetSpec::width(64)), 1000, false, "HRNet-W64-C classification"),
        preset("bisenetv2", BiSeNetV2, None, 19, false, "BiSeNetV2 (+4 aux heads unless model.aux_heads = false)"),
        preset("refinenet_r101", RefineNet, None, 21, true, "RefineNet on ResNet-101 (multi-path, 4 cascades)"),
    ]
}

pub fn find_preset(name: &str) -> anyhow::Result<Preset> {
    let all = presets();
    if let Some(p) = all.iter().find(|p| p.name == name) {
        return Ok(p.clone());
    }
    let names: Vec<&str> = all.iter().map(|p| p.name).collect();
    let hint = crate::config::closest(name, names.iter().copied())
        .map(|c| format!("; did you mean `{c}`?"))
        .unwrap_or_default();
    bail!("unknown model `{name}`{hint} (available: {})", names.join(", "))
}

/// The `[model]` section for a bare preset name.
pub fn preset_config(name: &str) -> ModelConfig {
    ModelConfig { name: name.to_string(), ..ModelConfig::default() }
}

/// Build the model `cfg` describes on `device`. `default_classes` (from the
/// dataset) applies when `cfg.num_classes` is unset.
pub fn build(cfg: &ModelConfig, default_classes: Option<i64>, device: Device) -> anyhow::Result<Model> {
    let preset = find_preset(&cfg.name).context("model.name")?;
    let spec = match (preset.hrnet, &cfg.hrnet) {
        (None, Some(_)) => bail!("model.hrnet is set but `{}` is not an HRNet", preset.name),
        (None, None) => None,
        (Some(default), given) => {
            let spec = given.clone().unwrap_or_else(default);
            spec.check().map_err(|e| anyhow::anyhow!("model.hrnet.{e}"))?;
            Some(spec)
        }
    };
    let num_classes = cfg.num_classes.or(default_classes).unwrap_or(preset.num_classes);
    if num_classes <= 0 {
        bail!("model.num_classes must be positive, got {num_classes}");
    }
    let align_corners = cfg.align_corners.unwrap_or(preset.align_corners);
    if cfg.ocr.is_some() && preset.arch != Arch::Ocr {
        bail!("model.ocr is set but `{}` has no OCR head", preset.name);
    }
    if cfg.cls_head.is_some() && preset.arch != Arch::HrnetCls {
        bail!("model.cls_head is set but `{}` is not a classifier", preset.name);
    }
    if cfg.align_corners.is_some() && matches!(preset.arch, Arch::BiSeNetV2 | Arch::RefineNet | Arch::HrnetCls) {
        bail!("model.align_corners is fixed by `{}` (its reference implementation); remove it", preset.name);
    }
    let vs = nn::VarStore::new(device);
    let scope = Scope::root(vs.root(), cfg.freeze_bn);
    let mut ignored_on_load = Vec::new();
    let mut input_multiple = 1;
    let spec = || spec.clone().expect("HRNet presets carry a spec");
    let (net, task, outputs) = match preset.arch {
        Arch::HrnetSeg => {
            (Net::Hrnet(HrnetSeg::new(&scope, &spec(), num_classes, align_corners)), Task::Segmentation, vec!["logits"])
        }
        Arch::Ocr => {
            let ocr = cfg.ocr.clone().unwrap_or_default();
            if ocr.mid_channels <= 0 || ocr.key_channels <= 0 || !(0.0..1.0).contains(&ocr.dropout) {
                bail!("model.ocr: mid_channels and key_channels must be positive and dropout in [0, 1)");
            }
            let net = OcrNet::new(&scope, &spec(), &ocr, num_classes, align_corners);
            (Net::Ocr(Box::new(net)), Task::Segmentation, vec!["aux", "logits"])
        }
        Arch::HrnetCls => {
            let spec = spec();
            let head = cfg.cls_head.clone().unwrap_or_default();
            if head.incre_channels.len() != spec.stage4.num_branches || head.final_channels <= 0 {
                bail!(
                    "model.cls_head.incre_channels needs {} entries (one per branch), got {}",
                    spec.stage4.num_branches,
                    head.incre_channels.len()
                );
            }
            input_multiple = 32;
            (Net::HrnetCls(HrnetCls::new(&scope, &spec, &head, num_classes)), Task::Classification, vec!["logits"])
        }
        Arch::BiSeNetV2 => {
            input_multiple = 32;
            let net = BiSeNetV2::new(&scope, num_classes, cfg.aux_heads);
            let mut outputs = vec!["logits"];
            if cfg.aux_heads {
                outputs.extend(AUX_HEADS);
            } else {
                // Released checkpoints come from training builds: skip exactly their aux keys.
                ignored_on_load = AUX_HEADS.iter().map(|h| format!("{h}.")).collect();
            }
            (Net::Bisenet(Box::new(net)), Task::Segmentation, outputs)
        }
        Arch::RefineNet => {
            let net = RefineNet::new(&scope, num_classes, [3, 4, 23, 3]);
            (Net::Refine(Box::new(net)), Task::Segmentation, vec!["logits"])
        }
    };
    Ok(Model {
        entries: scope.entries(),
        ignored_on_load,
        vs,
        net,
        preset: preset.name.to_string(),
        task,
        num_classes,
        align_corners,
        output_names: outputs,
        input_multiple,
    })
}

/// Load `model.pretrained`, if set, with the backbone-only rules: tensors that
/// match by name and shape are loaded, the rest keep their initial values.
pub fn load_pretrained(model: &Model, cfg: &ModelConfig) -> anyhow::Result<Option<super::weights::LoadReport>> {
    let Some(path) = &cfg.pretrained else {
        return Ok(None);
    };
    let report = super::weights::load_file(model, path, super::weights::LoadMode::Partial)
        .with_context(|| format!("model.pretrained = {}", path.display()))?;
    tracing::info!(
        loaded = report.loaded,
        new = report.missing.len(),
        ignored = report.unexpected.len(),
        "pretrained weights from {}",
        path.display()
    );
    Ok(Some(report))
}
