//! Multi-path RefineNet on ResNet-101, with the MatConvNet-derived names of the PyTorch
//! port that carries the official VOC weights (`p_ims1d2_outl*_dimred`,
//! `adapt_stage*_b`, `mflow_conv_g*_{pool,b}`, …). Output logits at 1/4 of the input
//! resolution (at the input's under MindSpore numerics, as the ModelZoo's network returns).
//!
//! Paper: "RefineNet: Multi-Path Refinement Networks for High-Resolution Semantic
//! Segmentation", Lin, Milan, Shen, Reid, CVPR 2017 — <https://arxiv.org/abs/1611.06612>.
//! Code followed: <https://github.com/DrSleep/refinenet-pytorch> (`models/resnet.py`, `rf101`),
//! the port of the official MatConvNet release <https://github.com/guosheng/refinenet>.
use super::blocks::BlockKind;
use super::layers::{conv3x3, resize_bilinear, Conv2d, Scope};
use super::model::{Arch, Network};
use super::numerics::{resize_bilinear_legacy, Numerics};
use super::resnet::ResNet;
use tch::Tensor;

/// Residual conv unit: `blocks` × (ReLU → 3×3 conv with bias → ReLU → 3×3 conv) + identity.
/// Wrapped in a Sequential upstream, hence the `.0.` in its keys.
struct Rcu {
    convs: Vec<(Conv2d, Conv2d)>,
}

impl Rcu {
    fn new(s: &Scope, c: i64, blocks: usize) -> Self {
        let s = s.sub(0);
        let convs = (1..=blocks)
            .map(|i| {
                let a = conv3x3(&s.sub(format!("{i}_conv")), c, c, 1, true);
                let b = conv3x3(&s.sub(format!("{i}_conv_relu_varout_dimred")), c, c, 1, false);
                (a, b)
            })
            .collect();
        Rcu { convs }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        self.convs.iter().fold(x.shallow_clone(), |x, (a, b)| b.forward(&a.forward(&x.relu()).relu()) + x)
    }
}

/// Chained residual pooling: 4 × (5×5 max-pool stride 1 → 3×3 conv), each summed in.
struct Crp {
    convs: Vec<Conv2d>,
}

impl Crp {
    fn new(s: &Scope, c: i64, stages: usize) -> Self {
        let s = s.sub(0);
        Crp { convs: (1..=stages).map(|i| conv3x3(&s.sub(format!("{i}_outvar_dimred")), c, c, 1, false)).collect() }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let mut top = x.shallow_clone();
        let mut out = x.shallow_clone();
        for conv in &self.convs {
            top = conv.forward(&top.max_pool2d([5, 5], [1, 1], [2, 2], [1, 1], false));
            out = out.g_add(&top);
        }
        out
    }
}

/// One refinement path: adapt the backbone feature, fuse the coarser path, pool, refine.
struct Path {
    dimred: Conv2d,
    adapt: Rcu,
    /// `adapt_stage{k}_b2_joint_varout_dimred`; absent on the coarsest path.
    joint: Option<Conv2d>,
    pool: Crp,
    refine: Rcu,
    /// `mflow_conv_g{k}_b3_joint_varout_dimred`; absent on the finest path.
    out: Option<Conv2d>,
}

pub struct RefineNet {
    backbone: ResNet,
    paths: Vec<Path>,
    clf_conv: Conv2d,
    numerics: Numerics,
}

impl RefineNet {
    pub fn new(s: &Scope, classes: i64, depths: [usize; 4]) -> Self {
        let backbone = ResNet::new(s, BlockKind::Bottleneck, depths);
        let [c1, c2, c3, c4] = backbone.channels;
        // Path k (1-based) reads layer 5-k; the coarsest path is 512 wide, the rest 256.
        let specs = [(c4, 512), (c3, 256), (c2, 256), (c1, 256)];
        let paths = specs
            .iter()
            .enumerate()
            .map(|(i, &(cin, width))| {
                let k = i + 1;
                let dimred = conv3x3(&s.sub(format!("p_ims1d2_outl{k}_dimred")), cin, width, 1, false);
                let adapt = Rcu::new(&s.sub(format!("adapt_stage{k}_b")), width, 2);
                let joint = (k > 1)
                    .then(|| conv3x3(&s.sub(format!("adapt_stage{k}_b2_joint_varout_dimred")), width, width, 1, false));
                let pool = Crp::new(&s.sub(format!("mflow_conv_g{k}_pool")), width, 4);
                let refine = Rcu::new(&s.sub(format!("mflow_conv_g{k}_b")), width, 3);
                let out = (k < 4)
                    .then(|| conv3x3(&s.sub(format!("mflow_conv_g{k}_b3_joint_varout_dimred")), width, 256, 1, false));
                Path { dimred, adapt, joint, pool, refine, out }
            })
            .collect();
        let clf_conv = Conv2d::new(&s.sub("clf_conv"), 256, classes, 3, 1, 1, true);
        RefineNet { backbone, paths, clf_conv, numerics: s.numerics }
    }
}

impl Network for RefineNet {
    fn arch(&self) -> Arch {
        Arch::RefineNet
    }

    fn output_names(&self) -> Vec<&'static str> {
        vec!["logits"]
    }

    fn align_corners(&self) -> bool {
        true
    }

    fn forward(&self, x: &Tensor, train: bool) -> Vec<Tensor> {
        // ResNet stages at 1/4, 1/8, 1/16, 1/32 (256, 512, 1024, 2048 channels).
        let [l1, l2, l3, l4] = self.backbone.forward(x, train);
        let feats = [l4.dropout(0.5, train), l3.dropout(0.5, train), l2, l1];
        let mut carried: Option<Tensor> = None;
        for (i, (path, feat)) in self.paths.iter().zip(&feats).enumerate() {
            let mut y = path.adapt.forward(&path.dimred.forward(feat));
            if let Some(joint) = &path.joint {
                y = joint.forward(&y);
            }
            if let Some(coarser) = carried.take() {
                y = y.g_add(&coarser);
            }
            y = path.refine.forward(&path.pool.forward(&y.relu()));
            if let Some(out) = &path.out {
                y = out.forward(&y);
            }
            // Upsample to the next, finer feature's size before it is fused there.
            if let Some(next) = feats.get(i + 1) {
                let (h, w) = (next.size()[2], next.size()[3]);
                // Aligned corners in both the official and the ModelZoo code.
                y = resize_bilinear(&y, h, w, true);
            }
            carried = Some(y);
        }
        // N×256×H/4×W/4 after the finest path → N×classes×H/4×W/4.
        let y = carried.expect("four paths").dropout(0.5, train);
        let logits = self.clf_conv.forward(&y);
        match self.numerics {
            Numerics::PyTorch => vec![logits],
            // The ModelZoo's network ends by resizing its logits to the input size (legacy
            // `ResizeBilinear`), so its outputs are N×classes×H×W.
            Numerics::MindSpore => vec![resize_bilinear_legacy(&logits, x.size()[2], x.size()[3])],
        }
    }
}
