//! HRNet-C for image classification: the HRNet backbone, `incre_modules` (a bottleneck
//! per branch), strided `downsamp_modules` merging the branches from high to low
//! resolution, `final_layer` and a linear classifier on the global average pool.
//!
//! Paper: "Deep High-Resolution Representation Learning for Visual Recognition",
//! Wang, Sun et al., TPAMI 2020 — <https://arxiv.org/abs/1908.07919>.
//! Official code: <https://github.com/HRNet/HRNet-Image-Classification>, `lib/models/cls_hrnet.py`.
use super::blocks::{make_layer, run_layer, Block, BlockKind};
use super::hrnet::{Backbone, HrnetSpec, Upsample};
use super::layers::{conv1x1, conv3x3, BatchNorm2d, ConvBn, Linear, Scope};
use super::model::{Arch, Network, Task};
use tch::Tensor;

/// Widths of the HRNet-C classification head.
#[derive(Debug, Clone, PartialEq)]
pub struct ClsHeadSpec {
    /// Bottleneck widths of `incre_modules` (outputs are 4× these).
    pub incre_channels: Vec<i64>,
    /// Channels of `final_layer`.
    pub final_channels: i64,
}

impl Default for ClsHeadSpec {
    fn default() -> Self {
        ClsHeadSpec { incre_channels: vec![32, 64, 128, 256], final_channels: 2048 }
    }
}

/// HRNet-C for image classification.
#[derive(Debug)]
pub struct HrnetCls {
    backbone: Backbone,
    incre: Vec<Vec<Block>>,
    downsamp: Vec<ConvBn>,
    final_layer: ConvBn,
    classifier: Linear,
}

impl HrnetCls {
    pub fn new(s: &Scope, spec: &HrnetSpec, head: &ClsHeadSpec, num_classes: i64) -> anyhow::Result<Self> {
        if head.incre_channels.len() != spec.stage4.num_branches || head.final_channels <= 0 {
            anyhow::bail!(
                "model.cls_head.incre_channels needs {} entries (one per branch), got {}",
                spec.stage4.num_branches,
                head.incre_channels.len()
            );
        }
        let backbone = Backbone::new(s, spec, Upsample::Nearest)?;
        let exp = BlockKind::Bottleneck.expansion();
        let incre_scope = s.sub("incre_modules");
        let incre: Vec<Vec<Block>> = backbone
            .out_channels
            .iter()
            .zip(&head.incre_channels)
            .enumerate()
            .map(|(i, (&cin, &c))| make_layer(&incre_scope.sub(i), BlockKind::Bottleneck, cin, c, 1, 1))
            .collect();
        let downsamp_scope = s.sub("downsamp_modules");
        let downsamp = head
            .incre_channels
            .windows(2)
            .enumerate()
            .map(|(i, w)| {
                let m = downsamp_scope.sub(i);
                let conv = conv3x3(&m.sub(0), w[0] * exp, w[1] * exp, 2, true);
                ConvBn { conv, bn: BatchNorm2d::new(&m.sub(1), w[1] * exp), relu: true }
            })
            .collect();
        let final_scope = s.sub("final_layer");
        // Checked above: one width per branch, so there is a last one.
        let last = head.incre_channels[head.incre_channels.len() - 1] * exp;
        let final_layer = ConvBn {
            conv: conv1x1(&final_scope.sub(0), last, head.final_channels, true),
            bn: BatchNorm2d::new(&final_scope.sub(1), head.final_channels),
            relu: true,
        };
        let classifier = Linear::new(&s.sub("classifier"), head.final_channels, num_classes);
        Ok(HrnetCls { backbone, incre, downsamp, final_layer, classifier })
    }
}

impl Network for HrnetCls {
    fn arch(&self) -> Arch {
        Arch::HrnetCls
    }

    fn task(&self) -> Task {
        Task::Classification
    }

    fn output_names(&self) -> Vec<&'static str> {
        vec!["logits"]
    }

    /// Five stride-2 steps from the stem to the last downsampling module.
    fn input_multiple(&self) -> i64 {
        32
    }

    fn align_corners(&self) -> bool {
        false
    }

    fn forward(&self, x: &Tensor, train: bool) -> Vec<Tensor> {
        // N×3×H×W → four branches at 1/4 … 1/32.
        let ys = self.backbone.forward(x, train);
        // Each branch widened by its bottleneck; merged from 1/4 down to 1/32 by strided convs.
        let mut y = run_layer(&self.incre[0], &ys[0], train);
        for (i, d) in self.downsamp.iter().enumerate() {
            y = run_layer(&self.incre[i + 1], &ys[i + 1], train) + d.forward(&y, train);
        }
        // N×final_channels×H/32×W/32.
        let y = self.final_layer.forward(&y, train);
        // Global average pool as the official classifier does it (avg_pool2d over the whole map).
        let (h, w) = (y.size()[2], y.size()[3]);
        let pooled = y.avg_pool2d([h, w], [h, w], [0, 0], false, true, None).flatten(1, -1);
        // N×final_channels → N×classes.
        vec![self.classifier.forward(&pooled)]
    }
}
