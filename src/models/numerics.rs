//! Operator semantics: PyTorch's (the official code, the default) or the MindSpore
//! ModelZoo's, so that a ModelZoo checkpoint gives the ModelZoo's outputs. The MindSpore
//! operators are built from libtorch ops here, so both modes train and export alike.
use tch::Tensor;

/// Whose operator semantics a model follows (`model.numerics`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Numerics {
    /// The official PyTorch code's.
    #[default]
    PyTorch,
    /// The MindSpore ModelZoo's: legacy `ResizeBilinear`, `'same'` pooling that pads at
    /// the end, BiSeNetV2's BatchNorm eps and bilinear upsamplings.
    MindSpore,
}

/// A bilinear resize as a model's code calls it: corner alignment, and whose semantics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bilinear {
    pub align_corners: bool,
    pub numerics: Numerics,
}

impl Bilinear {
    pub fn pytorch(align_corners: bool) -> Self {
        Bilinear { align_corners, numerics: Numerics::PyTorch }
    }

    /// What an HRNet-based model whose official code resizes with `align_corners` uses
    /// under `numerics`: the ModelZoo's HRNetV2 and OCRNet resize with the legacy
    /// `ResizeBilinear` without corner alignment (OCRNet too, where the official code aligns).
    pub fn for_model(align_corners: bool, numerics: Numerics) -> Self {
        match numerics {
            Numerics::PyTorch => Bilinear::pytorch(align_corners),
            Numerics::MindSpore => Bilinear { align_corners: false, numerics },
        }
    }

    /// `x` resized to exactly `h`×`w`.
    pub fn resize(&self, x: &Tensor, h: i64, w: i64) -> Tensor {
        match (self.numerics, self.align_corners) {
            // With aligned corners both frameworks compute the same thing.
            (Numerics::MindSpore, false) => resize_bilinear_legacy(x, h, w),
            _ => super::layers::resize_bilinear(x, h, w, self.align_corners),
        }
    }
}

/// MindSpore's legacy `ResizeBilinear(align_corners=False)`: source = destination · in/out,
/// with neither PyTorch's half-pixel offset nor its corner alignment; the last row and
/// column repeat past the edge. Built as: replicate one row and column at the end, resize
/// with corners aligned to (out+1)×(out+1) — whose source step is exactly in/out — and drop
/// the extra row and column.
pub fn resize_bilinear_legacy(x: &Tensor, h: i64, w: i64) -> Tensor {
    let size = x.size();
    if size[2] == h && size[3] == w {
        return x.shallow_clone();
    }
    let padded = x.replication_pad2d([0, 1, 0, 1]);
    padded.upsample_bilinear2d([h + 1, w + 1], true, None, None).narrow(2, 0, h).narrow(3, 0, w)
}

/// `pad_mode='same'` of a `k`-wide window at stride `s` over `n` pixels: the output is
/// ⌈n/s⌉ and the padding (before, after) puts the odd pixel at the end.
pub fn same_padding(n: i64, k: i64, s: i64) -> (i64, i64) {
    let out = (n + s - 1) / s;
    let total = ((out - 1) * s + k - n).max(0);
    (total / 2, total - total / 2)
}

/// [`same_padding`] of an N×C×H×W tensor's last two axes, in `pad`'s order
/// `[left, right, top, bottom]`.
fn same_pads(x: &Tensor, k: i64, s: i64) -> [i64; 4] {
    let size = x.size();
    let (top, bottom) = same_padding(size[2], k, s);
    let (left, right) = same_padding(size[3], k, s);
    [left, right, top, bottom]
}

/// `MaxPool2d(k, s, pad_mode='same')`: padding never wins the max.
pub fn max_pool_same(x: &Tensor, k: i64, s: i64) -> Tensor {
    let padded = x.pad(same_pads(x, k, s), "constant", f64::NEG_INFINITY);
    padded.max_pool2d([k, k], [s, s], [0, 0], [1, 1], false)
}

/// `AvgPool2d(k, s, pad_mode='same')`: padded at the end, padding not counted in the mean.
pub fn avg_pool_same_exclusive(x: &Tensor, k: i64, s: i64) -> Tensor {
    let pads = same_pads(x, k, s);
    let mean = |t: &Tensor| t.constant_pad_nd(pads).avg_pool2d([k, k], [s, s], [0, 0], false, true, None);
    // Each window's mean of ones over the input and zeros over the padding: the share of
    // the window the input covers, which turns the padded mean into the input's.
    let size = x.size();
    let covered = mean(&Tensor::ones([1, 1, size[2], size[3]], (x.kind(), x.device())));
    mean(x) / covered
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    fn grid(h: i64, w: i64) -> Tensor {
        Tensor::arange(h * w, (Kind::Float, Device::Cpu)).reshape([1, 1, h, w])
    }

    #[test]
    fn legacy_resize_samples_at_destination_times_in_over_out() {
        // 1×3 → 1×4 on a row 0,1,2: source x = 0, 0.75, 1.5, 2.25 → clamped to 2.
        let x = grid(1, 3);
        let y = resize_bilinear_legacy(&x, 1, 4);
        let want = Tensor::from_slice(&[0.0f32, 0.75, 1.5, 2.0]).reshape([1, 1, 1, 4]);
        assert!(y.allclose(&want, 1e-6, 1e-6, false), "{y}");
        // 2 → 4 rows: 0, 0.5, 1, 1 (PyTorch's half-pixel rule would give 0, 0.25, 0.75, 1).
        let y = resize_bilinear_legacy(&grid(2, 1), 4, 1);
        let want = Tensor::from_slice(&[0.0f32, 0.5, 1.0, 1.0]).reshape([1, 1, 4, 1]);
        assert!(y.allclose(&want, 1e-6, 1e-6, false), "{y}");
    }

    #[test]
    fn same_padding_puts_the_odd_pixel_at_the_end() {
        assert_eq!(same_padding(8, 3, 2), (0, 1));
        assert_eq!(same_padding(7, 3, 2), (1, 1));
        assert_eq!(same_padding(8, 5, 1), (2, 2));
        assert_eq!(same_padding(4, 1, 1), (0, 0));
    }

    #[test]
    fn same_pools_pad_at_the_end_and_ignore_the_padding() {
        // 4×4 ramp: windows start at 0 and 2 and the last one hangs one pixel over.
        let x = grid(4, 4) - 100.0;
        let m = max_pool_same(&x, 3, 2);
        let want = Tensor::from_slice(&[10.0f32, 11.0, 14.0, 15.0]).reshape([1, 1, 2, 2]) - 100.0;
        assert!(m.equal(&want), "{m}");
        let a = avg_pool_same_exclusive(&grid(4, 4), 3, 2);
        // Top-left window rows 0-2 × cols 0-2: mean 5; bottom-right rows 2-3 × cols 2-3: 12.5.
        let want = Tensor::from_slice(&[5.0f32, 6.5, 11.0, 12.5]).reshape([1, 1, 2, 2]);
        assert!(a.allclose(&want, 1e-6, 1e-6, false), "{a}");
    }
}
