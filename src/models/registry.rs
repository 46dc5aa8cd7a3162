//! The table of named presets: each is an architecture with its published defaults.
use super::hrnet::HrnetSpec;
use super::model::Arch;
use anyhow::bail;

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
            HrnetV2,
            w(HrnetSpec::w18_small_v1),
            19,
            true,
            "HRNetV2-W18-Small-v1 segmentation",
        ),
        preset(
            "hrnetv2_w18_small_v2",
            HrnetV2,
            w(HrnetSpec::w18_small_v2),
            19,
            true,
            "HRNetV2-W18-Small-v2 segmentation",
        ),
        preset("hrnetv2_w18", HrnetV2, w(|| HrnetSpec::width(18)), 19, false, "HRNetV2-W18 segmentation"),
        preset("hrnetv2_w32", HrnetV2, w(|| HrnetSpec::width(32)), 19, false, "HRNetV2-W32 segmentation"),
        preset("hrnetv2_w40", HrnetV2, w(|| HrnetSpec::width(40)), 19, false, "HRNetV2-W40 segmentation"),
        preset("hrnetv2_w48", HrnetV2, w(|| HrnetSpec::width(48)), 19, false, "HRNetV2-W48 segmentation"),
        preset("ocrnet_hrnetv2_w18", OcrNet, w(|| HrnetSpec::width(18)), 19, true, "OCRNet on HRNetV2-W18"),
        preset("ocrnet_hrnetv2_w32", OcrNet, w(|| HrnetSpec::width(32)), 19, true, "OCRNet on HRNetV2-W32"),
        preset("ocrnet_hrnetv2_w48", OcrNet, w(|| HrnetSpec::width(48)), 19, true, "OCRNet on HRNetV2-W48"),
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
    let hint = crate::suggest::closest(name, names.iter().copied())
        .map(|c| format!("; did you mean `{c}`?"))
        .unwrap_or_default();
    bail!("unknown model `{name}`{hint} (available: {})", names.join(", "))
}
