//! HRNetV2 for semantic segmentation: the HRNet backbone's four branches upsampled to
//! the highest resolution and concatenated, then `last_layer` to class logits at 1/4 of
//! the input resolution.
//!
//! Paper: "Deep High-Resolution Representation Learning for Visual Recognition",
//! Wang, Sun et al., TPAMI 2020 — <https://arxiv.org/abs/1908.07919>.
//! Official code: <https://github.com/HRNet/HRNet-Semantic-Segmentation>, `lib/models/seg_hrnet.py`.
use super::hrnet::{concat_branches, Backbone, HrnetSpec, SegHead, Upsample};
use super::layers::Scope;
use super::model::{Arch, Averaging, Network};
use super::numerics::{Bilinear, Numerics};
use tch::{Kind, Tensor};

/// HRNetV2 for segmentation: logits at 1/4 of the input resolution.
#[derive(Debug)]
pub struct HrnetV2 {
    backbone: Backbone,
    last_layer: SegHead,
    align_corners: bool,
    bilinear: Bilinear,
}

impl HrnetV2 {
    pub fn new(s: &Scope, spec: &HrnetSpec, num_classes: i64, align_corners: bool) -> anyhow::Result<Self> {
        let bilinear = Bilinear::for_model(align_corners, s.numerics);
        let backbone = Backbone::new(s, spec, Upsample::Bilinear(bilinear))?;
        let c: i64 = backbone.out_channels.iter().sum();
        let last_layer = SegHead::new(&s.sub("last_layer"), c, num_classes);
        Ok(HrnetV2 { backbone, last_layer, align_corners, bilinear })
    }
}

impl Network for HrnetV2 {
    fn arch(&self) -> Arch {
        Arch::HrnetV2
    }

    fn output_names(&self) -> Vec<&'static str> {
        vec!["logits"]
    }

    fn averaging(&self) -> Averaging {
        Averaging::ExpLogits
    }

    fn align_corners(&self) -> bool {
        self.align_corners
    }

    fn forward(&self, x: &Tensor, train: bool) -> Vec<Tensor> {
        // N×3×H×W → four branches at 1/4, 1/8, 1/16 and 1/32 of the input.
        let branches = self.backbone.forward(x, train);
        // N×ΣC×H/4×W/4: every branch upsampled to the first and concatenated.
        let mut feats = concat_branches(&branches, self.bilinear);
        if self.bilinear.numerics == Numerics::MindSpore {
            // The ModelZoo casts the 1/4 branch to float16 before the concat, and MindSpore's
            // graph-mode Concat then rounds every input to float16 (its output is float32).
            feats = feats.to_kind(Kind::Half).to_kind(feats.kind());
        }
        // N×classes×H/4×W/4.
        vec![self.last_layer.forward(&feats, train)]
    }
}
