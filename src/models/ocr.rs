//! OCRNet: HRNetV2 + object-contextual representations. An auxiliary head predicts
//! soft object regions; pixel features are gathered per region, attended to, and
//! concatenated with the pixel features before the classifier. Parameter names of the
//! HRNet-OCR branch of HRNet-Semantic-Segmentation.
//!
//! Paper: "Object-Contextual Representations for Semantic Segmentation", Yuan, Chen,
//! Wang, ECCV 2020 — <https://arxiv.org/abs/1909.11065>.
//! Official code: <https://github.com/HRNet/HRNet-Semantic-Segmentation> (branch
//! HRNet-OCR), `lib/models/seg_hrnet_ocr.py`.
use super::hrnet::{concat_branches, Backbone, HrnetSpec, SegHead, Upsample};
use super::layers::{conv1x1, conv3x3, BatchNorm2d, Conv2d, ConvBn, Scope};
use super::model::{Arch, Averaging, Network};
use super::numerics::Bilinear;
use tch::{Kind, Tensor};

/// Widths of the OCR head (`MODEL.OCR` in the official configs).
#[derive(Debug, Clone, PartialEq)]
pub struct OcrSpec {
    pub mid_channels: i64,
    pub key_channels: i64,
    pub dropout: f64,
}

impl Default for OcrSpec {
    fn default() -> Self {
        OcrSpec { mid_channels: 512, key_channels: 256, dropout: 0.05 }
    }
}

/// 1×1 conv (no bias) + `BNReLU` (a Sequential of BN and ReLU, hence the `.1.0` keys).
fn conv_bnrelu(s: &Scope, cin: i64, cout: i64) -> ConvBn {
    ConvBn { conv: conv1x1(&s.sub(0), cin, cout, false), bn: BatchNorm2d::new(&s.sub(1).sub(0), cout), relu: true }
}

/// Two conv+BNReLU pairs: `f_pixel`, `f_object` (keys .0, .1.0, .2, .3.0).
struct Proj2 {
    a: ConvBn,
    b: ConvBn,
}

impl Proj2 {
    fn new(s: &Scope, cin: i64, key: i64) -> Self {
        let a = conv_bnrelu(s, cin, key);
        let b = ConvBn {
            conv: conv1x1(&s.sub(2), key, key, false),
            bn: BatchNorm2d::new(&s.sub(3).sub(0), key),
            relu: true,
        };
        Proj2 { a, b }
    }

    fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        self.b.forward(&self.a.forward(x, train), train)
    }
}

/// Pixel-to-object attention (`ObjectAttentionBlock2D`, scale 1).
struct ObjectAttention {
    f_pixel: Proj2,
    f_object: Proj2,
    f_down: ConvBn,
    f_up: ConvBn,
    key_channels: i64,
}

impl ObjectAttention {
    fn new(s: &Scope, cin: i64, key: i64) -> Self {
        ObjectAttention {
            f_pixel: Proj2::new(&s.sub("f_pixel"), cin, key),
            f_object: Proj2::new(&s.sub("f_object"), cin, key),
            f_down: conv_bnrelu(&s.sub("f_down"), cin, key),
            f_up: conv_bnrelu(&s.sub("f_up"), key, cin),
            key_channels: key,
        }
    }

    /// `x`: B×C×H×W pixels; `proxy`: B×C×K×1 object regions.
    fn forward(&self, x: &Tensor, proxy: &Tensor, train: bool) -> Tensor {
        let (b, h, w) = (x.size()[0], x.size()[2], x.size()[3]);
        let k = self.key_channels;
        let query = self.f_pixel.forward(x, train).view([b, k, -1]).permute([0, 2, 1]);
        let key = self.f_object.forward(proxy, train).view([b, k, -1]);
        let value = self.f_down.forward(proxy, train).view([b, k, -1]).permute([0, 2, 1]);
        let sim = (query.matmul(&key) * (k as f64).powf(-0.5)).softmax(-1, Kind::Float).to_kind(x.kind());
        let context = sim.matmul(&value).permute([0, 2, 1]).contiguous().view([b, k, h, w]);
        self.f_up.forward(&context, train)
    }
}

/// HRNetV2 + OCR head; forward returns `[aux, out]`, both at 1/4 resolution.
pub struct OcrNet {
    backbone: Backbone,
    conv3x3_ocr: ConvBn,
    aux_head: SegHead,
    attention: ObjectAttention,
    conv_bn_dropout: ConvBn,
    dropout: f64,
    cls_head: Conv2d,
    align_corners: bool,
    bilinear: Bilinear,
}

impl OcrNet {
    pub fn new(
        s: &Scope,
        spec: &HrnetSpec,
        ocr: &OcrSpec,
        num_classes: i64,
        align_corners: bool,
    ) -> anyhow::Result<Self> {
        if ocr.mid_channels <= 0 || ocr.key_channels <= 0 || !(0.0..1.0).contains(&ocr.dropout) {
            anyhow::bail!("model.ocr: mid_channels and key_channels must be positive and dropout in [0, 1)");
        }
        let bilinear = Bilinear::for_model(align_corners, s.numerics);
        let backbone = Backbone::new(s, spec, Upsample::Bilinear(bilinear))?;
        let c: i64 = backbone.out_channels.iter().sum();
        let mid = ocr.mid_channels;
        let conv_scope = s.sub("conv3x3_ocr");
        let conv3x3_ocr = ConvBn {
            conv: conv3x3(&conv_scope.sub(0), c, mid, 1, true),
            bn: BatchNorm2d::new(&conv_scope.sub(1), mid),
            relu: true,
        };
        let head_scope = s.sub("ocr_distri_head");
        let attention = ObjectAttention::new(&head_scope.sub("object_context_block"), mid, ocr.key_channels);
        let conv_bn_dropout = conv_bnrelu(&head_scope.sub("conv_bn_dropout"), 2 * mid, mid);
        let cls_head = conv1x1(&s.sub("cls_head"), mid, num_classes, true);
        let aux_head = SegHead::new(&s.sub("aux_head"), c, num_classes);
        Ok(OcrNet {
            backbone,
            conv3x3_ocr,
            aux_head,
            attention,
            conv_bn_dropout,
            dropout: ocr.dropout,
            cls_head,
            align_corners,
            bilinear,
        })
    }
}

impl Network for OcrNet {
    fn arch(&self) -> Arch {
        Arch::OcrNet
    }

    fn output_names(&self) -> Vec<&'static str> {
        vec!["aux", "logits"]
    }

    fn averaging(&self) -> Averaging {
        Averaging::ExpLogits
    }

    fn align_corners(&self) -> bool {
        self.align_corners
    }

    fn forward(&self, x: &Tensor, train: bool) -> Vec<Tensor> {
        // N×ΣC×H/4×W/4: the HRNetV2 representation.
        let feats = concat_branches(&self.backbone.forward(x, train), self.bilinear);
        // N×K×H/4×W/4 soft object regions (K classes).
        let aux = self.aux_head.forward(&feats, train);
        // N×mid×H/4×W/4.
        let feats = self.conv3x3_ocr.forward(&feats, train);
        // Soft object regions: softmax over pixels of the aux logits, then gather features.
        let (b, k) = (aux.size()[0], aux.size()[1]);
        let probs = aux.view([b, k, -1]).softmax(2, Kind::Float).to_kind(feats.kind());
        let pixels = feats.view([b, feats.size()[1], -1]).permute([0, 2, 1]);
        // N×mid×K×1: one feature vector per object region.
        let proxy = probs.matmul(&pixels).permute([0, 2, 1]).unsqueeze(3);
        let context = self.attention.forward(&feats, &proxy, train);
        // N×2·mid×H/4×W/4 → N×mid×H/4×W/4.
        let fused = self.conv_bn_dropout.forward(&Tensor::cat(&[context, feats], 1), train);
        let fused = fused.feature_dropout(self.dropout, train);
        vec![aux, self.cls_head.forward(&fused)]
    }
}
