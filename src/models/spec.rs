//! [`ModelSpec`]: what to build (a preset and what may override it), and [`build`],
//! which checks the overrides against the preset's architecture and constructs it.
use super::bisenetv2::BiSeNetV2;
use super::hrnet::HrnetSpec;
use super::hrnet_cls::{ClsHeadSpec, HrnetCls};
use super::hrnetv2::HrnetV2;
use super::layers::Scope;
use super::model::{Arch, Model, Network};
use super::numerics::Numerics;
use super::ocr::{OcrNet, OcrSpec};
use super::refinenet::RefineNet;
use super::registry::{find_preset, Preset};
use anyhow::{bail, Context};
use tch::{nn, Device};

/// A preset and its overrides; unset fields take the preset's values. Field names are
/// the `[model]` keys they come from, and errors name them so.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSpec {
    pub preset: String,
    pub num_classes: Option<i64>,
    pub align_corners: Option<bool>,
    pub hrnet: Option<HrnetSpec>,
    pub ocr: Option<OcrSpec>,
    pub cls_head: Option<ClsHeadSpec>,
    /// BatchNorm always in eval mode with γ, β not trained.
    pub freeze_bn: bool,
    /// Build BiSeNetV2's auxiliary heads (training builds).
    pub aux_heads: bool,
    /// Whose operator semantics to follow.
    pub numerics: Numerics,
}

impl ModelSpec {
    /// The preset as published.
    pub fn preset(name: &str) -> Self {
        ModelSpec {
            preset: name.to_string(),
            num_classes: None,
            align_corners: None,
            hrnet: None,
            ocr: None,
            cls_head: None,
            freeze_bn: false,
            aux_heads: true,
            numerics: Numerics::PyTorch,
        }
    }
}

/// Build the model `spec` describes on `device`.
pub fn build(spec: &ModelSpec, device: Device) -> anyhow::Result<Model> {
    let preset = find_preset(&spec.preset).context("model.name")?;
    check_overrides(spec, &preset)?;
    let num_classes = spec.num_classes.unwrap_or(preset.num_classes);
    if num_classes <= 0 {
        bail!("model.num_classes must be positive, got {num_classes}");
    }
    let vs = nn::VarStore::new(device);
    let scope = Scope::root(vs.root(), spec.freeze_bn).with_numerics(spec.numerics);
    let net = construct(&scope, spec, &preset, num_classes)?;
    let (entries, sync, fusion) = (scope.entries(), scope.sync.clone(), scope.fusion.clone());
    drop(scope);
    Ok(Model { entries, vs, net, preset: preset.name.to_string(), num_classes, sync, fusion })
}

/// Overrides the preset's architecture has no use for are errors, not silently ignored.
fn check_overrides(spec: &ModelSpec, preset: &Preset) -> anyhow::Result<()> {
    if spec.hrnet.is_some() && preset.hrnet.is_none() {
        bail!("model.hrnet is set but `{}` is not an HRNet", preset.name);
    }
    if spec.ocr.is_some() && preset.arch != Arch::OcrNet {
        bail!("model.ocr is set but `{}` has no OCR head", preset.name);
    }
    if spec.cls_head.is_some() && preset.arch != Arch::HrnetCls {
        bail!("model.cls_head is set but `{}` is not a classifier", preset.name);
    }
    if spec.numerics == Numerics::MindSpore && preset.arch == Arch::HrnetCls {
        bail!(
            "model.numerics = \"mindspore\": `{}` has no MindSpore ModelZoo version (its seed is a PyTorch port); use \"pytorch\"",
            preset.name
        );
    }
    if spec.align_corners.is_some() && matches!(preset.arch, Arch::BiSeNetV2 | Arch::RefineNet | Arch::HrnetCls) {
        bail!("model.align_corners is fixed by `{}` (its reference implementation); remove it", preset.name);
    }
    Ok(())
}

fn construct(scope: &Scope, spec: &ModelSpec, preset: &Preset, num_classes: i64) -> anyhow::Result<Box<dyn Network>> {
    let align_corners = spec.align_corners.unwrap_or(preset.align_corners);
    let hrnet = || -> anyhow::Result<HrnetSpec> {
        match (&spec.hrnet, preset.hrnet) {
            (Some(given), _) => Ok(given.clone()),
            (None, Some(default)) => Ok(default()),
            (None, None) => bail!("`{}` has no HRNet stages", preset.name),
        }
    };
    Ok(match preset.arch {
        Arch::HrnetV2 => Box::new(HrnetV2::new(scope, &hrnet()?, num_classes, align_corners)?),
        Arch::OcrNet => {
            let ocr = spec.ocr.clone().unwrap_or_default();
            Box::new(OcrNet::new(scope, &hrnet()?, &ocr, num_classes, align_corners)?)
        }
        Arch::HrnetCls => {
            let head = spec.cls_head.clone().unwrap_or_default();
            Box::new(HrnetCls::new(scope, &hrnet()?, &head, num_classes)?)
        }
        Arch::BiSeNetV2 => Box::new(BiSeNetV2::new(scope, num_classes, spec.aux_heads)),
        Arch::RefineNet => Box::new(RefineNet::new(scope, num_classes, [3, 4, 23, 3])),
    })
}
