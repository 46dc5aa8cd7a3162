//! The HRNet backbone shared by HRNetV2, OCRNet and HRNet-C, fully described by
//! [`HrnetSpec`] as the official configs do (`STAGE1..4`), with the parameter names of
//! HRNet-Semantic-Segmentation and HRNet-Image-Classification; also the pieces the
//! segmentation heads share (branch concatenation, `last_layer`/`aux_head`).
//!
//! Paper: "Deep High-Resolution Representation Learning for Visual Recognition",
//! Wang, Sun et al., TPAMI 2020 — <https://arxiv.org/abs/1908.07919>.
//! Official code: <https://github.com/HRNet/HRNet-Semantic-Segmentation> (`lib/models/seg_hrnet.py`)
//! and <https://github.com/HRNet/HRNet-Image-Classification> (`lib/models/cls_hrnet.py`).
pub use super::blocks::BlockKind;
use super::blocks::{make_layer, run_layer, Block};
use super::layers::{conv1x1, conv3x3, BatchNorm2d, Conv2d, ConvBn, Scope};
use super::numerics::Bilinear;
use tch::Tensor;
use BlockKind::{Basic, Bottleneck};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FuseMethod {
    #[default]
    Sum,
}

/// One stage, as `STAGEk` in the official YAML configs.
#[derive(Debug, Clone, PartialEq)]
pub struct StageSpec {
    pub num_modules: usize,
    pub num_branches: usize,
    pub block: BlockKind,
    pub num_blocks: Vec<usize>,
    pub num_channels: Vec<i64>,
    pub fuse_method: FuseMethod,
}

/// The backbone: a 64-channel stem then four stages.
#[derive(Debug, Clone, PartialEq)]
pub struct HrnetSpec {
    pub stage1: StageSpec,
    pub stage2: StageSpec,
    pub stage3: StageSpec,
    pub stage4: StageSpec,
}

impl StageSpec {
    /// A stage of `blocks.len()` branches, summed in the fuse layers.
    pub fn new(modules: usize, block: BlockKind, blocks: &[usize], channels: &[i64]) -> Self {
        StageSpec {
            num_modules: modules,
            num_branches: blocks.len(),
            block,
            num_blocks: blocks.to_vec(),
            num_channels: channels.to_vec(),
            fuse_method: FuseMethod::Sum,
        }
    }
}

impl HrnetSpec {
    fn stage(modules: usize, block: BlockKind, blocks: &[usize], channels: &[i64]) -> StageSpec {
        StageSpec::new(modules, block, blocks, channels)
    }

    /// The standard HRNet-W`width` (W18, W30, W32, W40, W44, W48, W64).
    pub fn width(w: i64) -> Self {
        HrnetSpec {
            stage1: Self::stage(1, Bottleneck, &[4], &[64]),
            stage2: Self::stage(1, Basic, &[4, 4], &[w, 2 * w]),
            stage3: Self::stage(4, Basic, &[4, 4, 4], &[w, 2 * w, 4 * w]),
            stage4: Self::stage(3, Basic, &[4, 4, 4, 4], &[w, 2 * w, 4 * w, 8 * w]),
        }
    }

    pub fn w18_small_v1() -> Self {
        HrnetSpec {
            stage1: Self::stage(1, Bottleneck, &[1], &[32]),
            stage2: Self::stage(1, Basic, &[2, 2], &[16, 32]),
            stage3: Self::stage(1, Basic, &[2, 2, 2], &[16, 32, 64]),
            stage4: Self::stage(1, Basic, &[2, 2, 2, 2], &[16, 32, 64, 128]),
        }
    }

    pub fn w18_small_v2() -> Self {
        HrnetSpec {
            stage1: Self::stage(1, Bottleneck, &[2], &[64]),
            stage2: Self::stage(1, Basic, &[2, 2], &[18, 36]),
            stage3: Self::stage(3, Basic, &[2, 2, 2], &[18, 36, 72]),
            stage4: Self::stage(2, Basic, &[2, 2, 2, 2], &[18, 36, 72, 144]),
        }
    }

    /// Problems with the spec, each naming the field (`stage2.num_blocks`, …).
    pub fn check(&self) -> Result<(), String> {
        for (k, s) in [&self.stage1, &self.stage2, &self.stage3, &self.stage4].into_iter().enumerate() {
            let name = format!("stage{}", k + 1);
            let want = if k == 0 { 1 } else { k + 1 };
            if s.num_branches != want {
                return Err(format!("{name}.num_branches must be {want}, got {}", s.num_branches));
            }
            if s.num_blocks.len() != s.num_branches || s.num_channels.len() != s.num_branches {
                return Err(format!(
                    "{name}: num_blocks ({}) and num_channels ({}) must each have num_branches = {} entries",
                    s.num_blocks.len(),
                    s.num_channels.len(),
                    s.num_branches
                ));
            }
            if s.num_modules == 0 || s.num_blocks.contains(&0) || s.num_channels.iter().any(|&c| c <= 0) {
                return Err(format!("{name}: modules, blocks and channels must be positive"));
            }
        }
        Ok(())
    }

    /// Output channels of each branch after stage 4.
    pub fn out_channels(&self) -> Vec<i64> {
        let s = &self.stage4;
        s.num_channels.iter().map(|c| c * s.block.expansion()).collect()
    }
}

/// How fuse layers bring a lower-resolution branch up.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Upsample {
    /// Segmentation: bilinear to the exact size of the target branch.
    Bilinear(Bilinear),
    /// Classification: nearest by a power-of-two scale factor.
    Nearest,
}

#[derive(Debug)]
enum Fuse {
    Identity,
    /// j > i: 1×1 conv + BN, then upsample to branch i.
    Up(ConvBn, i64),
    /// j < i: a chain of stride-2 3×3 conv + BN (+ ReLU but the last).
    Down(Vec<ConvBn>),
}

#[derive(Debug)]
struct HrModule {
    branches: Vec<Vec<Block>>,
    fuse: Vec<Vec<Fuse>>,
    upsample: Upsample,
}

impl HrModule {
    /// A module of `spec`'s stage. `in_channels` holds each branch's input width and is
    /// updated to its output width (the next module's input).
    fn new(scope: &Scope, spec: &StageSpec, in_channels: &mut [i64], upsample: Upsample) -> Self {
        let branches = make_branches(&scope.sub("branches"), spec, in_channels);
        let fuse =
            if spec.num_branches > 1 { make_fuse_layers(&scope.sub("fuse_layers"), in_channels) } else { Vec::new() };
        HrModule { branches, fuse, upsample }
    }

    fn forward(&self, xs: &[Tensor], train: bool) -> Vec<Tensor> {
        let xs: Vec<Tensor> = self.branches.iter().zip(xs).map(|(b, x)| run_layer(b, x, train)).collect();
        if self.fuse.is_empty() {
            return xs;
        }
        // Output branch i: the sum over every input branch j brought to i's resolution
        // and width, then ReLU.
        self.fuse.iter().enumerate().map(|(i, row)| self.fuse_row(i, row, &xs, train)).collect()
    }

    fn fuse_row(&self, i: usize, row: &[Fuse], xs: &[Tensor], train: bool) -> Tensor {
        let (h, w) = (xs[i].size()[2], xs[i].size()[3]);
        let mut sum: Option<Tensor> = None;
        for (j, cell) in row.iter().enumerate() {
            let t = match cell {
                Fuse::Identity => xs[j].shallow_clone(),
                Fuse::Up(conv_bn, scale) => self.upsample_to(&conv_bn.forward(&xs[j], train), h, w, *scale),
                Fuse::Down(chain) => chain.iter().fold(xs[j].shallow_clone(), |t, step| step.forward(&t, train)),
            };
            sum = Some(match sum {
                None => t,
                Some(acc) => acc + t,
            });
        }
        sum.expect("fuse rows are non-empty").relu()
    }

    /// A lower-resolution branch up to `h`×`w` (segmentation) or by `scale` (classification).
    fn upsample_to(&self, t: &Tensor, h: i64, w: i64, scale: i64) -> Tensor {
        match self.upsample {
            Upsample::Bilinear(bilinear) => bilinear.resize(t, h, w),
            Upsample::Nearest => {
                let factor = scale as f64;
                let (th, tw) = (t.size()[2] * scale, t.size()[3] * scale);
                t.upsample_nearest2d([th, tw], Some(factor), Some(factor))
            }
        }
    }
}

/// `branches.{i}`: `num_blocks[i]` residual blocks per branch.
fn make_branches(scope: &Scope, spec: &StageSpec, in_channels: &mut [i64]) -> Vec<Vec<Block>> {
    let expansion = spec.block.expansion();
    (0..spec.num_branches)
        .map(|i| {
            let (width, blocks) = (spec.num_channels[i], spec.num_blocks[i]);
            let layer = make_layer(&scope.sub(i), spec.block, in_channels[i], width, blocks, 1);
            in_channels[i] = width * expansion;
            layer
        })
        .collect()
}

/// `fuse_layers.{i}.{j}`: how input branch j reaches output branch i.
fn make_fuse_layers(scope: &Scope, channels: &[i64]) -> Vec<Vec<Fuse>> {
    let n = channels.len();
    (0..n)
        .map(|i| {
            let row = scope.sub(i);
            (0..n).map(|j| fuse_cell(&row.sub(j), channels, i, j)).collect()
        })
        .collect()
}

fn fuse_cell(cell: &Scope, channels: &[i64], i: usize, j: usize) -> Fuse {
    use std::cmp::Ordering::*;
    match j.cmp(&i) {
        Equal => Fuse::Identity,
        // Lower resolution: 1×1 conv + BN to branch i's width; upsampled in forward.
        Greater => {
            let conv = conv1x1(&cell.sub(0), channels[j], channels[i], false);
            let bn = BatchNorm2d::new(&cell.sub(1), channels[i]);
            Fuse::Up(ConvBn { conv, bn, relu: false }, 1 << (j - i))
        }
        // Higher resolution: i - j stride-2 3×3 convs, widening only at the last.
        Less => Fuse::Down(
            (0..i - j)
                .map(|k| {
                    let last = k == i - j - 1;
                    let out = if last { channels[i] } else { channels[j] };
                    let step = cell.sub(k);
                    let conv = conv3x3(&step.sub(0), channels[j], out, 2, false);
                    ConvBn { conv, bn: BatchNorm2d::new(&step.sub(1), out), relu: !last }
                })
                .collect(),
        ),
    }
}

#[derive(Debug)]
enum Transition {
    Keep,
    /// An existing branch whose width changes: keys `i.0`, `i.1`.
    Adapt(ConvBn),
    /// A new branch from the lowest resolution: keys `i.k.0`, `i.k.1`.
    New(Vec<ConvBn>),
}

fn make_transition(s: &Scope, pre: &[i64], cur: &[i64]) -> Vec<Transition> {
    (0..cur.len())
        .map(|i| {
            let t = s.sub(i);
            if i < pre.len() {
                if cur[i] == pre[i] {
                    Transition::Keep
                } else {
                    let conv = conv3x3(&t.sub(0), pre[i], cur[i], 1, false);
                    Transition::Adapt(ConvBn { conv, bn: BatchNorm2d::new(&t.sub(1), cur[i]), relu: true })
                }
            } else {
                let steps = i + 1 - pre.len();
                let cin = *pre.last().expect("at least one branch");
                Transition::New(
                    (0..steps)
                        .map(|k| {
                            let cout = if k == steps - 1 { cur[i] } else { cin };
                            let step = t.sub(k);
                            let conv = conv3x3(&step.sub(0), cin, cout, 2, false);
                            ConvBn { conv, bn: BatchNorm2d::new(&step.sub(1), cout), relu: true }
                        })
                        .collect(),
                )
            }
        })
        .collect()
}

fn apply_transition(ts: &[Transition], ys: &[Tensor], train: bool) -> Vec<Tensor> {
    ts.iter()
        .enumerate()
        .map(|(i, t)| match t {
            Transition::Keep => ys[i].shallow_clone(),
            Transition::Adapt(conv_bn) => conv_bn.forward(&ys[i], train),
            // New branches grow from the lowest-resolution output.
            Transition::New(chain) => {
                let src = ys.last().expect("non-empty");
                chain.iter().fold(src.shallow_clone(), |x, step| step.forward(&x, train))
            }
        })
        .collect()
}

/// The HRNet backbone: returns the four branch outputs, highest resolution first.
#[derive(Debug)]
pub struct Backbone {
    conv1: Conv2d,
    bn1: BatchNorm2d,
    conv2: Conv2d,
    bn2: BatchNorm2d,
    layer1: Vec<Block>,
    transitions: [Vec<Transition>; 3],
    stages: [Vec<HrModule>; 3],
    pub out_channels: Vec<i64>,
}

impl Backbone {
    pub fn new(s: &Scope, spec: &HrnetSpec, upsample: Upsample) -> anyhow::Result<Self> {
        spec.check().map_err(|e| anyhow::anyhow!("model.hrnet.{e}"))?;
        let conv1 = conv3x3(&s.sub("conv1"), 3, 64, 2, false);
        let bn1 = BatchNorm2d::new(&s.sub("bn1"), 64);
        let conv2 = conv3x3(&s.sub("conv2"), 64, 64, 2, false);
        let bn2 = BatchNorm2d::new(&s.sub("bn2"), 64);
        let st1 = &spec.stage1;
        let layer1 = make_layer(&s.sub("layer1"), st1.block, 64, st1.num_channels[0], st1.num_blocks[0], 1);
        let mut pre = vec![st1.num_channels[0] * st1.block.expansion()];
        let mut transitions = Vec::new();
        let mut stages = Vec::new();
        for (k, st) in [&spec.stage2, &spec.stage3, &spec.stage4].into_iter().enumerate() {
            let cur: Vec<i64> = st.num_channels.iter().map(|c| c * st.block.expansion()).collect();
            transitions.push(make_transition(&s.sub(format!("transition{}", k + 1)), &pre, &cur));
            let stage_scope = s.sub(format!("stage{}", k + 2));
            let mut in_channels = cur.clone();
            let modules = (0..st.num_modules)
                .map(|m| HrModule::new(&stage_scope.sub(m), st, &mut in_channels, upsample))
                .collect();
            stages.push(modules);
            pre = in_channels;
        }
        let [t1, t2, t3]: [Vec<Transition>; 3] = transitions.try_into().expect("three transitions");
        let [s2, s3, s4]: [Vec<HrModule>; 3] = stages.try_into().expect("three stages");
        Ok(Backbone {
            conv1,
            bn1,
            conv2,
            bn2,
            layer1,
            transitions: [t1, t2, t3],
            stages: [s2, s3, s4],
            out_channels: pre,
        })
    }

    pub fn forward(&self, x: &Tensor, train: bool) -> Vec<Tensor> {
        let x = self.bn1.forward(&self.conv1.forward(x), train).relu();
        let x = self.bn2.forward(&self.conv2.forward(&x), train).relu();
        let mut ys = vec![run_layer(&self.layer1, &x, train)];
        for (t, stage) in self.transitions.iter().zip(&self.stages) {
            let xs = apply_transition(t, &ys, train);
            ys = stage.iter().fold(xs, |xs, m| m.forward(&xs, train));
        }
        ys
    }
}

/// All branches resized to branch 0 and concatenated (HRNetV2 representation).
pub fn concat_branches(ys: &[Tensor], bilinear: Bilinear) -> Tensor {
    let (h, w) = (ys[0].size()[2], ys[0].size()[3]);
    let parts: Vec<Tensor> = ys.iter().map(|y| bilinear.resize(y, h, w)).collect();
    Tensor::cat(&parts, 1)
}

/// `last_layer` / `aux_head`: 1×1 conv (bias) → BN → ReLU → 1×1 conv to classes (keys .0 .1 .3).
#[derive(Debug)]
pub struct SegHead {
    conv: Conv2d,
    bn: BatchNorm2d,
    cls: Conv2d,
}

impl SegHead {
    pub fn new(s: &Scope, cin: i64, num_classes: i64) -> Self {
        SegHead {
            conv: conv1x1(&s.sub(0), cin, cin, true),
            bn: BatchNorm2d::new(&s.sub(1), cin),
            cls: conv1x1(&s.sub(3), cin, num_classes, true),
        }
    }

    pub fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        self.cls.forward(&self.bn.forward(&self.conv.forward(x), train).relu())
    }
}
