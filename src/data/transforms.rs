//! Augmentation and normalisation. Random rescale and random crop are fused: only
//! the source region that ends up in the crop is resized (SIMD, fast_image_resize),
//! which is what keeps a 2048×1024 Cityscapes sample cheap.
use super::labels::IGNORE;
use anyhow::Context;
use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::RgbImage;
use rand::rngs::StdRng;
use rand::Rng;
use std::cell::RefCell;

/// Multiplicative colour jitter ranges, e.g. `contrast = [0.4, 1.6]` (BiSeNetV2 recipe).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ColorJitter {
    pub brightness: Option<[f32; 2]>,
    pub contrast: Option<[f32; 2]>,
    pub saturation: Option<[f32; 2]>,
}

/// A normalised CHW image and, for segmentation, its label map.
pub struct Prepared {
    pub height: usize,
    pub width: usize,
    pub image: Vec<f32>,
    pub label: Vec<u8>,
}

thread_local! {
    static RESIZER: RefCell<Resizer> = RefCell::new(Resizer::new());
}

/// Resize the `crop` region (left, top, width, height in source pixels) of a
/// `w`×`h` buffer with `channels` u8 channels to `out_w`×`out_h`.
#[allow(clippy::too_many_arguments)]
fn resize_region(
    src: &[u8],
    w: u32,
    h: u32,
    channels: usize,
    crop: (f64, f64, f64, f64),
    out_w: u32,
    out_h: u32,
    nearest: bool,
) -> anyhow::Result<Vec<u8>> {
    let pt = if channels == 3 { PixelType::U8x3 } else { PixelType::U8 };
    let full = crop == (0.0, 0.0, w as f64, h as f64);
    if full && out_w == w && out_h == h {
        return Ok(src.to_vec());
    }
    let src = ImageRef::new(w, h, src, pt).context("source image view")?;
    let mut dst = Image::new(out_w, out_h, pt);
    // Bilinear without antialiasing, like OpenCV's INTER_LINEAR the reference code uses.
    let alg = if nearest { ResizeAlg::Nearest } else { ResizeAlg::Interpolation(FilterType::Bilinear) };
    let mut opts = ResizeOptions::new().resize_alg(alg);
    if !full {
        opts = opts.crop(crop.0, crop.1, crop.2, crop.3);
    }
    RESIZER.with(|r| r.borrow_mut().resize(&src, &mut dst, &opts)).context("resizing")?;
    Ok(dst.into_vec())
}

/// Segmentation augmentation of one recipe.
#[derive(Debug, Clone)]
pub struct SegTransform {
    /// Training crop (height, width); `None` keeps the whole (rescaled) image.
    pub crop: Option<[usize; 2]>,
    /// Long side the random scale is relative to; 0 uses the image's own size.
    pub base_size: usize,
    pub scale_range: [f64; 2],
    pub flip: bool,
    /// Label pairs a horizontal flip swaps (LIP's left/right parts).
    pub flip_pairs: Vec<(u8, u8)>,
    pub jitter: Option<ColorJitter>,
    pub mean: [f32; 3],
    pub std: [f32; 3],
    /// Raw value that pads images (labels pad with ignore).
    pub pad_value: u8,
}

impl SegTransform {
    /// Random scale → crop (padding where the image is smaller) → flip → jitter → normalise.
    pub fn apply(&self, img: &RgbImage, label: &[u8], rng: &mut StdRng) -> anyhow::Result<Prepared> {
        let (w, h) = (img.width() as usize, img.height() as usize);
        let s = if self.scale_range[0] < self.scale_range[1] {
            rng.gen_range(self.scale_range[0]..=self.scale_range[1])
        } else {
            self.scale_range[0]
        };
        let (sh, sw) = if self.base_size > 0 {
            let long = (self.base_size as f64 * s + 0.5).floor().max(1.0);
            if h > w {
                (long as usize, ((w as f64 * long / h as f64) + 0.5).floor().max(1.0) as usize)
            } else {
                (((h as f64 * long / w as f64) + 0.5).floor().max(1.0) as usize, long as usize)
            }
        } else {
            (((h as f64 * s) + 0.5).floor().max(1.0) as usize, ((w as f64 * s) + 0.5).floor().max(1.0) as usize)
        };
        let (ch, cw) = self.crop.map_or((sh, sw), |[ch, cw]| (ch, cw));
        // The crop window in the rescaled image; a smaller image is padded bottom/right.
        let (oh, ow) = (sh.min(ch), sw.min(cw));
        let y0 = if sh > ch { rng.gen_range(0..=sh - ch) } else { 0 };
        let x0 = if sw > cw { rng.gen_range(0..=sw - cw) } else { 0 };
        let (fy, fx) = (h as f64 / sh as f64, w as f64 / sw as f64);
        let region = (x0 as f64 * fx, y0 as f64 * fy, ow as f64 * fx, oh as f64 * fy);
        let rgb = resize_region(img.as_raw(), w as u32, h as u32, 3, region, ow as u32, oh as u32, false)?;
        let lab = resize_region(label, w as u32, h as u32, 1, region, ow as u32, oh as u32, true)?;
        let mut out_rgb = vec![self.pad_value; ch * cw * 3];
        let mut out_lab = vec![IGNORE; ch * cw];
        for y in 0..oh {
            out_rgb[y * cw * 3..(y * cw + ow) * 3].copy_from_slice(&rgb[y * ow * 3..(y + 1) * ow * 3]);
            out_lab[y * cw..y * cw + ow].copy_from_slice(&lab[y * ow..(y + 1) * ow]);
        }
        if self.flip && rng.gen_bool(0.5) {
            flip_horizontal(&mut out_rgb, &mut out_lab, cw, ch, &self.flip_pairs);
        }
        if let Some(j) = &self.jitter {
            jitter(&mut out_rgb, j, rng);
        }
        Ok(Prepared { height: ch, width: cw, image: normalize(&out_rgb, cw, ch, self.mean, self.std), label: out_lab })
    }
}

/// Mirror an RGB buffer and its label map left-right; swap paired labels.
pub fn flip_horizontal(rgb: &mut [u8], label: &mut [u8], w: usize, h: usize, pairs: &[(u8, u8)]) {
    for y in 0..h {
        let row = &mut rgb[y * w * 3..(y + 1) * w * 3];
        for x in 0..w / 2 {
            for c in 0..3 {
                row.swap(x * 3 + c, (w - 1 - x) * 3 + c);
            }
        }
        label[y * w..(y + 1) * w].reverse();
    }
    if !pairs.is_empty() {
        let mut lut: [u8; 256] = std::array::from_fn(|i| i as u8);
        for &(a, b) in pairs {
            lut[a as usize] = b;
            lut[b as usize] = a;
        }
        label.iter_mut().for_each(|v| *v = lut[*v as usize]);
    }
}

fn jitter(rgb: &mut [u8], j: &ColorJitter, rng: &mut StdRng) {
    let draw =
        |r: &Option<[f32; 2]>, rng: &mut StdRng| r.map(|[lo, hi]| if lo < hi { rng.gen_range(lo..=hi) } else { lo });
    let (b, c, s) = (draw(&j.brightness, rng), draw(&j.contrast, rng), draw(&j.saturation, rng));
    let gray = |p: &[u8]| 0.299 * p[0] as f32 + 0.587 * p[1] as f32 + 0.114 * p[2] as f32;
    if let Some(b) = b {
        rgb.iter_mut().for_each(|v| *v = (*v as f32 * b).round().clamp(0.0, 255.0) as u8);
    }
    if let Some(c) = c {
        let mean = rgb.chunks_exact(3).map(gray).sum::<f32>() / (rgb.len() / 3).max(1) as f32;
        rgb.iter_mut().for_each(|v| *v = ((*v as f32 - mean) * c + mean).round().clamp(0.0, 255.0) as u8);
    }
    if let Some(s) = s {
        for p in rgb.chunks_exact_mut(3) {
            let g = gray(p);
            for v in p.iter_mut() {
                *v = ((*v as f32 - g) * s + g).round().clamp(0.0, 255.0) as u8;
            }
        }
    }
}

/// `(x / 255 - mean) / std`, HWC u8 → CHW f32.
pub fn normalize(rgb: &[u8], w: usize, h: usize, mean: [f32; 3], std: [f32; 3]) -> Vec<f32> {
    let n = w * h;
    let mut out = vec![0f32; 3 * n];
    let scale: [f32; 3] = std::array::from_fn(|c| 1.0 / (255.0 * std[c]));
    let shift: [f32; 3] = std::array::from_fn(|c| mean[c] / std[c]);
    for (i, p) in rgb.chunks_exact(3).enumerate() {
        for c in 0..3 {
            out[c * n + i] = p[c] as f32 * scale[c] - shift[c];
        }
    }
    out
}

/// Classification: random-resized crop + flip for training; resize + centre crop for evaluation.
#[derive(Debug, Clone)]
pub struct ClsTransform {
    pub size: usize,
    /// Short side before the centre crop at evaluation (256 for 224 crops).
    pub resize: usize,
    pub train: bool,
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

impl ClsTransform {
    pub fn apply(&self, img: &RgbImage, rng: &mut StdRng) -> anyhow::Result<Prepared> {
        let (w, h) = (img.width() as f64, img.height() as f64);
        let region = if self.train {
            let area = w * h;
            let mut chosen = None;
            for _ in 0..10 {
                let target = area * rng.gen_range(0.08..=1.0);
                let ratio = rng.gen_range((3f64 / 4.0).ln()..=(4f64 / 3.0).ln()).exp();
                let (cw, ch) = ((target * ratio).sqrt(), (target / ratio).sqrt());
                if cw <= w && ch <= h {
                    chosen = Some((rng.gen_range(0.0..=w - cw), rng.gen_range(0.0..=h - ch), cw, ch));
                    break;
                }
            }
            chosen.unwrap_or_else(|| {
                let side = w.min(h);
                ((w - side) / 2.0, (h - side) / 2.0, side, side)
            })
        } else {
            // Resize the short side to `resize`, then take the centre `size` square.
            let side = w.min(h) * self.size as f64 / self.resize as f64;
            ((w - side) / 2.0, (h - side) / 2.0, side, side)
        };
        let s = self.size as u32;
        let mut rgb = resize_region(img.as_raw(), img.width(), img.height(), 3, region, s, s, false)?;
        if self.train && rng.gen_bool(0.5) {
            let mut none = vec![0u8; self.size * self.size];
            flip_horizontal(&mut rgb, &mut none, self.size, self.size, &[]);
        }
        Ok(Prepared {
            height: self.size,
            width: self.size,
            image: normalize(&rgb, self.size, self.size, self.mean, self.std),
            label: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn ramp(w: u32, h: u32) -> (RgbImage, Vec<u8>) {
        let img = RgbImage::from_fn(w, h, |x, y| image::Rgb([x as u8, y as u8, 7]));
        let label = (0..w * h).map(|i| ((i % w) / 4) as u8).collect();
        (img, label)
    }

    fn plain(crop: Option<[usize; 2]>, scale: [f64; 2]) -> SegTransform {
        SegTransform {
            crop,
            base_size: 0,
            scale_range: scale,
            flip: false,
            flip_pairs: vec![],
            jitter: None,
            mean: [0.0; 3],
            std: [1.0; 3],
            pad_value: 0,
        }
    }

    #[test]
    fn identity_when_nothing_random() {
        let (img, label) = ramp(40, 30);
        let p = plain(None, [1.0, 1.0]).apply(&img, &label, &mut StdRng::seed_from_u64(0)).expect("ok");
        assert_eq!((p.height, p.width), (30, 40));
        assert_eq!(p.label, label);
        assert!((p.image[5] - 5.0 / 255.0).abs() < 1e-6, "R channel of pixel (5, 0)");
    }

    #[test]
    fn crop_of_identity_scale_is_a_window_and_pads_with_ignore() {
        let (img, label) = ramp(40, 30);
        let p = plain(Some([20, 16]), [1.0, 1.0]).apply(&img, &label, &mut StdRng::seed_from_u64(3)).expect("ok");
        assert_eq!(p.label.len(), 20 * 16);
        // The window's origin is readable from the ramp: R = x, G = y.
        let n = 20 * 16;
        let (x0, y0) = ((p.image[0] * 255.0).round() as usize, (p.image[n] * 255.0).round() as usize);
        assert!(x0 <= 24 && y0 <= 10);
        for r in 0..20 {
            for c in 0..16 {
                assert_eq!(p.label[r * 16 + c], label[(y0 + r) * 40 + x0 + c]);
            }
        }
        // A crop larger than the image pads bottom/right with ignore.
        let p = plain(Some([50, 60]), [1.0, 1.0]).apply(&img, &label, &mut StdRng::seed_from_u64(3)).expect("ok");
        assert_eq!(p.label[49 * 60 + 59], IGNORE);
        assert_eq!(p.label[29 * 60 + 39], label[29 * 40 + 39]);
        assert_eq!(p.label[29 * 60 + 40], IGNORE);
    }

    #[test]
    fn rescale_uses_nearest_for_labels() {
        let (img, label) = ramp(40, 30);
        let p = plain(None, [2.0, 2.0]).apply(&img, &label, &mut StdRng::seed_from_u64(0)).expect("ok");
        assert_eq!((p.height, p.width), (60, 80));
        let mut values: Vec<u8> = p.label.clone();
        values.sort_unstable();
        values.dedup();
        assert_eq!(values, (0..10).collect::<Vec<u8>>(), "no interpolated label values");
    }

    #[test]
    fn flip_swaps_paired_labels() {
        let mut rgb = vec![1, 1, 1, 2, 2, 2, 3, 3, 3];
        let mut label = vec![14, 0, 19];
        flip_horizontal(&mut rgb, &mut label, 3, 1, &[(14, 15), (18, 19)]);
        assert_eq!(rgb, vec![3, 3, 3, 2, 2, 2, 1, 1, 1]);
        assert_eq!(label, vec![18, 0, 15]);
    }

    #[test]
    fn normalize_is_chw() {
        let out = normalize(&[255, 0, 51, 0, 255, 51], 2, 1, [0.5, 0.5, 0.0], [0.5, 0.5, 1.0]);
        let want = [1.0, -1.0, -1.0, 1.0, 0.2, 0.2];
        assert!(out.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-6), "{out:?}");
    }
}
