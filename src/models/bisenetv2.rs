//! BiSeNetV2 with the parameter names of CoinCheung/BiSeNet: a detail branch, a
//! semantic branch of gather-and-expansion layers with a context-embedding block,
//! bilateral guided aggregation, an 8× segment head and four auxiliary heads for
//! training. Input sides must be multiples of 32.
//!
//! Paper: "BiSeNet V2: Bilateral Network with Guided Aggregation for Real-time Semantic
//! Segmentation", Yu, Gao, Wang, Yu, Shen, Sang, IJCV 2021 — <https://arxiv.org/abs/2004.02147>.
//! Code followed: <https://github.com/CoinCheung/BiSeNet>, `lib/models/bisenetv2.py`.
use super::layers::{BatchNorm2d, Conv2d, Scope};
use super::model::{Arch, Network};
use super::numerics::{avg_pool_same_exclusive, Numerics};
use tch::Tensor;

/// A BatchNorm whose MindSpore version has eps 1e-3 (`nn.BatchNorm2d(eps=1e-3)` in
/// ConvBNReLU and the context block); PyTorch's default 1e-5 otherwise.
fn modelzoo_eps_bn(s: &Scope, c: i64) -> BatchNorm2d {
    let mut bn = BatchNorm2d::new(s, c);
    if s.numerics == Numerics::MindSpore {
        bn.eps = 1e-3;
    }
    bn
}

/// `ConvBNReLU`: keys `conv`, `bn`.
struct Cbr {
    conv: Conv2d,
    bn: BatchNorm2d,
}

impl Cbr {
    fn new(s: &Scope, cin: i64, cout: i64, k: i64, stride: i64) -> Self {
        // Created in this order: the state dict lists the conv first.
        let conv = Conv2d::new(&s.sub("conv"), cin, cout, k, stride, k / 2, false);
        Cbr { conv, bn: modelzoo_eps_bn(&s.sub("bn"), cout) }
    }

    fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        self.bn.forward(&self.conv.forward(x), train).relu()
    }
}

/// A conv + BN pair inside a Sequential: keys `<i>` and `<i+1>`.
struct ConvBnAt {
    conv: Conv2d,
    bn: BatchNorm2d,
}

impl ConvBnAt {
    fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        self.bn.forward(&self.conv.forward(x), train)
    }
}

#[allow(clippy::too_many_arguments)]
fn conv_bn_at(s: &Scope, i: usize, cin: i64, cout: i64, k: i64, stride: i64, groups: i64, gamma: f64) -> ConvBnAt {
    ConvBnAt {
        conv: Conv2d::grouped(&s.sub(i), cin, cout, k, stride, k / 2, groups, false),
        bn: BatchNorm2d::with_gamma(&s.sub(i + 1), cout, gamma),
    }
}

fn run(layers: &[Cbr], x: &Tensor, train: bool) -> Tensor {
    layers.iter().fold(x.shallow_clone(), |y, l| l.forward(&y, train))
}

fn seq(s: &Scope, spec: &[(i64, i64, i64)]) -> Vec<Cbr> {
    spec.iter().enumerate().map(|(i, &(cin, cout, stride))| Cbr::new(&s.sub(i), cin, cout, 3, stride)).collect()
}

/// Wide, shallow, 1/8 resolution.
struct Detail {
    s1: Vec<Cbr>,
    s2: Vec<Cbr>,
    s3: Vec<Cbr>,
}

impl Detail {
    fn new(s: &Scope) -> Self {
        Detail {
            s1: seq(&s.sub("S1"), &[(3, 64, 2), (64, 64, 1)]),
            s2: seq(&s.sub("S2"), &[(64, 64, 2), (64, 64, 1), (64, 64, 1)]),
            s3: seq(&s.sub("S3"), &[(64, 128, 2), (128, 128, 1), (128, 128, 1)]),
        }
    }

    fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        run(&self.s3, &run(&self.s2, &run(&self.s1, x, train), train), train)
    }
}

/// Stem: conv, then a strided conv path and a max-pool path, concatenated and fused.
struct Stem {
    conv: Cbr,
    left: [Cbr; 2],
    fuse: Cbr,
}

impl Stem {
    fn new(s: &Scope) -> Self {
        let l = s.sub("left");
        Stem {
            conv: Cbr::new(&s.sub("conv"), 3, 16, 3, 2),
            left: [Cbr::new(&l.sub(0), 16, 8, 1, 1), Cbr::new(&l.sub(1), 8, 16, 3, 2)],
            fuse: Cbr::new(&s.sub("fuse"), 32, 16, 3, 1),
        }
    }

    fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        let feat = self.conv.forward(x, train);
        let left = self.left[1].forward(&self.left[0].forward(&feat, train), train);
        let right = feat.max_pool2d([3, 3], [2, 2], [1, 1], [1, 1], false);
        self.fuse.forward(&Tensor::cat(&[left, right], 1), train)
    }
}

/// Gather-and-expansion layer; stride 2 adds a second depthwise conv and a shortcut.
struct GeLayer {
    conv1: Cbr,
    dw1: ConvBnAt,
    dw2: Option<ConvBnAt>,
    conv2: ConvBnAt,
    shortcut: Option<(ConvBnAt, ConvBnAt)>,
}

impl GeLayer {
    fn new(s: &Scope, cin: i64, cout: i64, stride: i64) -> Self {
        let mid = cin * 6;
        let conv1 = Cbr::new(&s.sub("conv1"), cin, cin, 3, 1);
        // The last BN of the residual branch starts at γ = 0, as the reference does.
        let conv2 = |s: &Scope| conv_bn_at(&s.sub("conv2"), 0, mid, cout, 1, 1, 1, 0.0);
        if stride == 1 {
            let dw1 = conv_bn_at(&s.sub("dwconv"), 0, cin, mid, 3, 1, cin, 1.0);
            GeLayer { conv1, dw1, dw2: None, conv2: conv2(s), shortcut: None }
        } else {
            let dw1 = conv_bn_at(&s.sub("dwconv1"), 0, cin, mid, 3, 2, cin, 1.0);
            let dw2 = conv_bn_at(&s.sub("dwconv2"), 0, mid, mid, 3, 1, mid, 1.0);
            let conv2 = conv2(s);
            let sc = s.sub("shortcut");
            let shortcut = (conv_bn_at(&sc, 0, cin, cin, 3, 2, cin, 1.0), conv_bn_at(&sc, 2, cin, cout, 1, 1, 1, 1.0));
            GeLayer { conv1, dw1, dw2: Some(dw2), conv2, shortcut: Some(shortcut) }
        }
    }

    fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        let mut feat = self.dw1.forward(&self.conv1.forward(x, train), train);
        feat = match &self.dw2 {
            // Stride 2: no ReLU between the two depthwise convs, one after the second.
            Some(dw2) => dw2.forward(&feat, train).relu(),
            None => feat.relu(),
        };
        feat = self.conv2.forward(&feat, train);
        let residual = match &self.shortcut {
            Some((a, b)) => b.forward(&a.forward(x, train), train),
            None => x.shallow_clone(),
        };
        (feat + residual).relu()
    }
}

fn ge_stage(s: &Scope, cin: i64, cout: i64, repeats: usize) -> Vec<GeLayer> {
    let mut layers = vec![GeLayer::new(&s.sub(0), cin, cout, 2)];
    layers.extend((1..=repeats).map(|i| GeLayer::new(&s.sub(i), cout, cout, 1)));
    layers
}

fn run_ge(layers: &[GeLayer], x: &Tensor, train: bool) -> Tensor {
    layers.iter().fold(x.shallow_clone(), |y, l| l.forward(&y, train))
}

/// Context embedding: global average → BN → 1×1 conv, added back, then a 3×3 conv.
struct ContextEmbedding {
    bn: BatchNorm2d,
    conv_gap: Cbr,
    conv_last: Cbr,
}

impl ContextEmbedding {
    fn new(s: &Scope) -> Self {
        ContextEmbedding {
            bn: modelzoo_eps_bn(&s.sub("bn"), 128),
            conv_gap: Cbr::new(&s.sub("conv_gap"), 128, 128, 1, 1),
            conv_last: Cbr::new(&s.sub("conv_last"), 128, 128, 3, 1),
        }
    }

    fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        let gap = x.mean_dim([2i64, 3].as_slice(), true, None);
        let feat = self.conv_gap.forward(&self.bn.forward(&gap, train), train) + x;
        self.conv_last.forward(&feat, train)
    }
}

/// Narrow, deep semantic branch: features at 1/4, 1/8, 1/16, 1/32 and the embedded 1/32.
struct Segment {
    stem: Stem,
    s3: Vec<GeLayer>,
    s4: Vec<GeLayer>,
    s5_4: Vec<GeLayer>,
    s5_5: ContextEmbedding,
}

impl Segment {
    fn new(s: &Scope) -> Self {
        Segment {
            stem: Stem::new(&s.sub("S1S2")),
            s3: ge_stage(&s.sub("S3"), 16, 32, 1),
            s4: ge_stage(&s.sub("S4"), 32, 64, 1),
            s5_4: ge_stage(&s.sub("S5_4"), 64, 128, 3),
            s5_5: ContextEmbedding::new(&s.sub("S5_5")),
        }
    }

    fn forward(&self, x: &Tensor, train: bool) -> [Tensor; 5] {
        let f2 = self.stem.forward(x, train);
        let f3 = run_ge(&self.s3, &f2, train);
        let f4 = run_ge(&self.s4, &f3, train);
        let f5_4 = run_ge(&self.s5_4, &f4, train);
        let f5_5 = self.s5_5.forward(&f5_4, train);
        [f2, f3, f4, f5_4, f5_5]
    }
}

/// Depthwise 3×3 + BN + pointwise 1×1 (keys .0, .1, .2).
struct DwPw {
    dw: Conv2d,
    bn: BatchNorm2d,
    pw: Conv2d,
}

impl DwPw {
    fn new(s: &Scope) -> Self {
        DwPw {
            dw: Conv2d::grouped(&s.sub(0), 128, 128, 3, 1, 1, 128, false),
            bn: BatchNorm2d::new(&s.sub(1), 128),
            pw: Conv2d::new(&s.sub(2), 128, 128, 1, 1, 0, false),
        }
    }

    fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        self.pw.forward(&self.bn.forward(&self.dw.forward(x), train))
    }
}

/// Upsampling by `f` where the official code uses nearest; the ModelZoo's code resizes
/// bilinearly with aligned corners there.
fn upsample_by(x: &Tensor, f: i64, numerics: Numerics) -> Tensor {
    let (h, w) = (x.size()[2], x.size()[3]);
    match numerics {
        Numerics::PyTorch => x.upsample_nearest2d([h * f, w * f], Some(f as f64), Some(f as f64)),
        Numerics::MindSpore => x.upsample_bilinear2d([h * f, w * f], true, None, None),
    }
}

fn bilinear(x: &Tensor, f: i64) -> Tensor {
    if f == 1 {
        return x.shallow_clone();
    }
    let (h, w) = (x.size()[2], x.size()[3]);
    x.upsample_bilinear2d([h * f, w * f], false, Some(f as f64), Some(f as f64))
}

/// Bilateral guided aggregation of detail (1/8) and semantic (1/32) features.
struct Bga {
    left1: DwPw,
    left2: ConvBnAt,
    right1: ConvBnAt,
    right2: DwPw,
    conv: ConvBnAt,
    numerics: Numerics,
}

impl Bga {
    fn new(s: &Scope) -> Self {
        Bga {
            left1: DwPw::new(&s.sub("left1")),
            left2: conv_bn_at(&s.sub("left2"), 0, 128, 128, 3, 2, 1, 1.0),
            right1: conv_bn_at(&s.sub("right1"), 0, 128, 128, 3, 1, 1, 1.0),
            right2: DwPw::new(&s.sub("right2")),
            conv: conv_bn_at(&s.sub("conv"), 0, 128, 128, 3, 1, 1, 1.0),
            numerics: s.numerics,
        }
    }

    fn forward(&self, detail: &Tensor, semantic: &Tensor, train: bool) -> Tensor {
        let left1 = self.left1.forward(detail, train);
        let left2 = self.left2.forward(detail, train);
        let left2 = match self.numerics {
            Numerics::PyTorch => left2.avg_pool2d([3, 3], [2, 2], [1, 1], false, true, None),
            Numerics::MindSpore => avg_pool_same_exclusive(&left2, 3, 2),
        };
        let right1 = upsample_by(&self.right1.forward(semantic, train), 4, self.numerics);
        let right2 = self.right2.forward(semantic, train);
        let left = left1 * right1.sigmoid();
        let right = upsample_by(&(left2 * right2.sigmoid()), 4, self.numerics);
        self.conv.forward(&(left + right), train).relu()
    }
}

/// `SegmentHead`: 3×3 conv, dropout 0.1, (aux: nearest ×2 + 3×3 conv), 1×1 classifier,
/// bilinear upsampling back to the input size.
struct Head {
    conv: Cbr,
    up_conv: Option<Cbr>,
    cls: Conv2d,
    up_factor: i64,
    numerics: Numerics,
}

impl Head {
    fn new(s: &Scope, cin: i64, mid: i64, classes: i64, up_factor: i64, aux: bool) -> Self {
        let conv = Cbr::new(&s.sub("conv"), cin, mid, 3, 1);
        let out = s.sub("conv_out");
        let mid2 = if aux { up_factor * up_factor } else { mid };
        let up_conv = aux.then(|| Cbr::new(&out.sub(0).sub(1), mid, mid2, 3, 1));
        let cls = Conv2d::new(&out.sub(1), mid2, classes, 1, 1, 0, true);
        let up_factor = if aux { up_factor / 2 } else { up_factor };
        Head { conv, up_conv, cls, up_factor, numerics: s.numerics }
    }

    fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        let mut feat = self.conv.forward(x, train).dropout(0.1, train);
        if let Some(c) = &self.up_conv {
            feat = c.forward(&upsample_by(&feat, 2, self.numerics), train);
        }
        bilinear(&self.cls.forward(&feat), self.up_factor)
    }
}

/// The aux heads' names, in forward order.
pub const AUX_HEADS: [&str; 4] = ["aux2", "aux3", "aux4", "aux5_4"];

pub struct BiSeNetV2 {
    detail: Detail,
    segment: Segment,
    bga: Bga,
    head: Head,
    aux: Option<[Head; 4]>,
}

impl BiSeNetV2 {
    pub fn new(s: &Scope, classes: i64, aux_heads: bool) -> Self {
        let detail = Detail::new(&s.sub("detail"));
        let segment = Segment::new(&s.sub("segment"));
        let bga = Bga::new(&s.sub("bga"));
        let head = Head::new(&s.sub("head"), 128, 1024, classes, 8, false);
        let aux = aux_heads.then(|| {
            [(16, 4), (32, 8), (64, 16), (128, 32)]
                .iter()
                .zip(AUX_HEADS)
                .map(|(&(cin, up), name)| Head::new(&s.sub(name), cin, 128, classes, up, true))
                .collect::<Vec<_>>()
                .try_into()
                .unwrap_or_else(|_| unreachable!("four aux heads"))
        });
        BiSeNetV2 { detail, segment, bga, head, aux }
    }
}

impl Network for BiSeNetV2 {
    fn arch(&self) -> Arch {
        Arch::BiSeNetV2
    }

    fn output_names(&self) -> Vec<&'static str> {
        let mut names = vec!["logits"];
        if self.aux.is_some() {
            names.extend(AUX_HEADS);
        }
        names
    }

    /// The semantic branch downsamples five times.
    fn input_multiple(&self) -> i64 {
        32
    }

    /// Released checkpoints come from training builds: an inference build skips
    /// exactly their aux heads' keys.
    fn skipped_on_load(&self) -> Vec<String> {
        match self.aux {
            Some(_) => Vec::new(),
            None => AUX_HEADS.iter().map(|h| format!("{h}.")).collect(),
        }
    }

    fn align_corners(&self) -> bool {
        false
    }

    /// `[logits, aux2, aux3, aux4, aux5_4]` with aux heads, else `[logits]`; all at input size.
    fn forward(&self, x: &Tensor, train: bool) -> Vec<Tensor> {
        // N×128×H/8×W/8: the detail branch.
        let detail = self.detail.forward(x, train);
        // Semantic features at 1/4, 1/8, 1/16, 1/32 (16, 32, 64, 128 channels) and the
        // context-embedded 1/32 map (128 channels).
        let [f2, f3, f4, f5_4, f5_5] = self.segment.forward(x, train);
        // Aggregated at 1/8, then the head upsamples 8× to N×classes×H×W.
        let mut outs = vec![self.head.forward(&self.bga.forward(&detail, &f5_5, train), train)];
        if let Some(aux) = &self.aux {
            for (head, f) in aux.iter().zip([&f2, &f3, &f4, &f5_4]) {
                outs.push(head.forward(f, train));
            }
        }
        outs
    }
}
