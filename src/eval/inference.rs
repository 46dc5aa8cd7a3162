//! Inference modes over any network `net: N×3×h×w → N×C×h'×w'` (logits at any
//! resolution): whole image, sliding window (overlapping tiles averaged), and
//! multi-scale with optional horizontal flip. Scores from each scale and flip are
//! resized to the input size and summed, either as softmax probabilities
//! (BiSeNetV2/CoinCheung, RefineNet, mmsegmentation) or as exp(logits) (the official
//! HRNet/OCR `inference`, which sums `pred.exp()`).
use crate::models::layers::resize_bilinear;
use tch::{Kind, Tensor};

pub use crate::models::Averaging;

#[derive(Debug, Clone)]
pub struct Sliding {
    /// Tile (height, width).
    pub crop: [i64; 2],
    /// Step between tiles (height, width).
    pub stride: [i64; 2],
}

#[derive(Debug, Clone)]
pub struct InferenceOptions {
    pub scales: Vec<f64>,
    pub flip: bool,
    pub sliding: Option<Sliding>,
    pub averaging: Averaging,
    /// Output channels a horizontal flip exchanges (LIP's left/right parts).
    pub flip_pairs: Vec<(i64, i64)>,
    pub align_corners: bool,
    /// Inputs are padded bottom/right to a multiple of this (BiSeNetV2, HRNet-C: 32).
    pub input_multiple: i64,
    /// fp32, or the forward under autocast to bf16/fp16 (scores are fp32 either way).
    pub precision: crate::config::Precision,
}

impl InferenceOptions {
    /// `model`'s main output under `self.precision`, as fp32.
    ///
    /// Panics when libtorch refuses the precision, which [`check_precision`] rules out first.
    pub fn forward(&self, model: &crate::models::Model, x: &tch::Tensor) -> tch::Tensor {
        crate::precision::autocast(model.device(), self.precision, || model.forward_main(x, false))
            .expect("precision checked by check_precision")
            .to_kind(tch::Kind::Float)
    }

    pub fn whole(align_corners: bool, input_multiple: i64) -> Self {
        InferenceOptions {
            scales: vec![1.0],
            flip: false,
            sliding: None,
            averaging: Averaging::Probs,
            flip_pairs: Vec::new(),
            align_corners,
            input_multiple,
            precision: crate::config::Precision::Fp32,
        }
    }
}

/// Logits of `x` (N×3×H×W) at H×W: padded to the model's multiple, cropped back.
/// With `flip`, the mirrored batch runs in the same forward pass and is returned second.
fn forward_full(
    net: &dyn Fn(&Tensor) -> Tensor,
    x: &Tensor,
    o: &InferenceOptions,
    flip: bool,
) -> (Tensor, Option<Tensor>) {
    let (n, h, w) = (x.size()[0], x.size()[2], x.size()[3]);
    let m = o.input_multiple.max(1);
    let (ph, pw) = ((h + m - 1) / m * m, (w + m - 1) / m * m);
    let batch = if flip { Tensor::cat(&[x.shallow_clone(), x.flip([3])], 0) } else { x.shallow_clone() };
    let batch = if (ph, pw) != (h, w) { batch.constant_pad_nd([0, pw - w, 0, ph - h]) } else { batch };
    let logits = resize_bilinear(&net(&batch), ph, pw, o.align_corners).narrow(2, 0, h).narrow(3, 0, w);
    if flip {
        let straight = logits.narrow(0, 0, n);
        let mut mirrored = logits.narrow(0, n, n).flip([3]);
        if !o.flip_pairs.is_empty() {
            mirrored = swap_channels(&mirrored, &o.flip_pairs);
        }
        (straight, Some(mirrored))
    } else {
        (logits, None)
    }
}

fn swap_channels(t: &Tensor, pairs: &[(i64, i64)]) -> Tensor {
    let c = t.size()[1];
    let mut order: Vec<i64> = (0..c).collect();
    for &(a, b) in pairs {
        if a < c && b < c {
            order.swap(a as usize, b as usize);
        }
    }
    t.index_select(1, &Tensor::from_slice(&order).to_device(t.device()))
}

/// Sliding-window logits of `x` at its own size: tiles of `crop` every `stride`, the last
/// row/column aligned to the border, overlaps averaged; small inputs are padded.
fn forward_sliding(
    net: &dyn Fn(&Tensor) -> Tensor,
    x: &Tensor,
    o: &InferenceOptions,
    s: &Sliding,
    flip: bool,
) -> (Tensor, Option<Tensor>) {
    let (h, w) = (x.size()[2], x.size()[3]);
    let [ch, cw] = s.crop;
    let (ph, pw) = (h.max(ch), w.max(cw));
    let xp = if (ph, pw) != (h, w) { x.constant_pad_nd([0, pw - w, 0, ph - h]) } else { x.shallow_clone() };
    let starts = |len: i64, crop: i64, stride: i64| -> Vec<i64> {
        let n = if len <= crop { 1 } else { (len - crop + stride - 1) / stride + 1 };
        (0..n).map(|i| (i * stride).min(len - crop)).collect()
    };
    let (mut sum, mut sum_flip, mut count): (Option<Tensor>, Option<Tensor>, Option<Tensor>) = (None, None, None);
    for y0 in starts(ph, ch, s.stride[0]) {
        for x0 in starts(pw, cw, s.stride[1]) {
            let tile = xp.narrow(2, y0, ch).narrow(3, x0, cw);
            let (a, b) = forward_full(net, &tile, o, flip);
            let place = |acc: &mut Option<Tensor>, t: &Tensor| {
                let acc = acc
                    .get_or_insert_with(|| Tensor::zeros([t.size()[0], t.size()[1], ph, pw], (t.kind(), t.device())));
                let mut view = acc.narrow(2, y0, ch).narrow(3, x0, cw);
                view += t;
            };
            place(&mut sum, &a);
            if let Some(b) = &b {
                place(&mut sum_flip, b);
            }
            let ones = Tensor::ones([1, 1, ch, cw], (Kind::Float, x.device()));
            place(&mut count, &ones);
        }
    }
    let count = count.expect("at least one tile");
    let crop = |t: Tensor| (t / &count).narrow(2, 0, h).narrow(3, 0, w);
    (crop(sum.expect("at least one tile")), sum_flip.map(crop))
}

/// Class scores of `x` (N×3×H×W) at H×W, combined over scales and flips.
pub fn scores(net: &dyn Fn(&Tensor) -> Tensor, x: &Tensor, o: &InferenceOptions) -> Tensor {
    let (h, w) = (x.size()[2], x.size()[3]);
    let mut total: Option<Tensor> = None;
    for &s in &o.scales {
        let xs = if (s - 1.0).abs() < 1e-9 {
            x.shallow_clone()
        } else {
            let (sh, sw) = (((h as f64) * s).round().max(1.0) as i64, ((w as f64) * s).round().max(1.0) as i64);
            resize_bilinear(x, sh, sw, o.align_corners)
        };
        let (a, b) = match &o.sliding {
            Some(sl) => forward_sliding(net, &xs, o, sl, o.flip),
            None => forward_full(net, &xs, o, o.flip),
        };
        for logits in std::iter::once(a).chain(b) {
            let logits = resize_bilinear(&logits.to_kind(Kind::Float), h, w, o.align_corners);
            let score = match o.averaging {
                Averaging::Probs => logits.softmax(1, Kind::Float),
                Averaging::ExpLogits => logits.exp(),
            };
            total = Some(match total {
                None => score,
                Some(t) => t + score,
            });
        }
    }
    total.expect("at least one scale")
}

/// An error when libtorch refuses autocast to `p` on `device`.
pub fn check_precision(device: tch::Device, p: crate::config::Precision) -> anyhow::Result<()> {
    crate::precision::autocast(device, p, || ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    /// A label map encoded as a 3-channel one-hot "image": an identity-like model
    /// returns its input as logits, so the prediction must be the map itself.
    fn one_hot_image(h: i64, w: i64) -> (Tensor, Tensor) {
        let labels = Tensor::from_slice(&(0..h * w).map(|i| (i / w) * 3 / h).collect::<Vec<_>>()).view([1, h, w]);
        let x = labels.one_hot(3).permute([0, 3, 1, 2]).to_kind(Kind::Float) * 10.0;
        (x, labels)
    }

    #[test]
    fn multi_scale_and_flip_of_an_identity_model_return_the_input_map() {
        let (x, labels) = one_hot_image(48, 64);
        let identity = |t: &Tensor| t.shallow_clone();
        for averaging in [Averaging::Probs, Averaging::ExpLogits] {
            let o = InferenceOptions {
                scales: vec![0.5, 0.75, 1.0, 1.25, 1.5, 1.75],
                flip: true,
                averaging,
                ..InferenceOptions::whole(false, 1)
            };
            let pred = scores(&identity, &x, &o).argmax(1, false);
            assert_eq!(pred.size(), vec![1, 48, 64]);
            assert!(pred.equal(&labels), "{averaging:?}");
        }
    }

    #[test]
    fn flip_swaps_paired_channels() {
        // A "model" that predicts channel 1 on the left half and 2 on the right half.
        let net = |t: &Tensor| {
            let w = t.size()[3];
            let left = Tensor::arange(w, (Kind::Float, Device::Cpu)).lt((w / 2) as f64).to_kind(Kind::Float);
            let l = left.view([1, 1, 1, w]).expand([t.size()[0], 1, t.size()[2], w], false);
            Tensor::cat(&[l.zeros_like(), &l * 5.0, (1.0 - &l) * 5.0], 1)
        };
        let x = Tensor::zeros([1, 3, 4, 8], (Kind::Float, Device::Cpu));
        // Summed probabilities: ≈2 where the straight and mirrored passes agree, ≈1 where not.
        let agreement = |pairs: Vec<(i64, i64)>| {
            let o = InferenceOptions { flip: true, flip_pairs: pairs, ..InferenceOptions::whole(false, 1) };
            scores(&net, &x, &o).max_dim(1, false).0.min().double_value(&[])
        };
        assert!(agreement(vec![]) < 1.1, "a mirrored left/right model disagrees without the swap");
        assert!(agreement(vec![(1, 2)]) > 1.9, "and agrees with channels 1 and 2 swapped");
    }

    #[test]
    fn sliding_window_equals_whole_image_for_a_pointwise_model() {
        tch::manual_seed(0);
        let weight = Tensor::randn([5, 3, 1, 1], (Kind::Float, Device::Cpu));
        let net = |t: &Tensor| t.conv2d::<Tensor>(&weight, None, [1], [0], [1], 1);
        let x = Tensor::randn([1, 3, 37, 53], (Kind::Float, Device::Cpu));
        let whole = scores(&net, &x, &InferenceOptions::whole(false, 1));
        let o = InferenceOptions {
            sliding: Some(Sliding { crop: [16, 24], stride: [10, 16] }),
            ..InferenceOptions::whole(false, 1)
        };
        let slid = scores(&net, &x, &o);
        assert!((whole - slid).abs().max().double_value(&[]) < 1e-5);
        // Tiles larger than the image: padded, then cropped back.
        let o = InferenceOptions {
            sliding: Some(Sliding { crop: [64, 64], stride: [32, 32] }),
            ..InferenceOptions::whole(false, 1)
        };
        assert_eq!(scores(&net, &x, &o).size(), vec![1, 5, 37, 53]);
    }
}
