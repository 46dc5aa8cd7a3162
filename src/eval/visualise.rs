//! Prediction images: dataset palettes, Cityscapes label ids, overlays.
use crate::data::kind::DatasetKind;
use crate::data::labels::{cityscapes_train_to_label_id, palette};
use image::RgbImage;

/// Train ids → the dataset's colours.
pub fn colorize(kind: DatasetKind, ids: &[u8], w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| image::Rgb(palette(kind, ids[(y * w + x) as usize])))
}

/// Train ids → Cityscapes label ids, as the benchmark server takes them.
pub fn to_label_ids(ids: &[u8]) -> Vec<u8> {
    ids.iter().map(|&t| cityscapes_train_to_label_id(t)).collect()
}

/// The colourised prediction blended over the image (`alpha` of the colours).
pub fn overlay(img: &RgbImage, color: &RgbImage, alpha: f32) -> RgbImage {
    RgbImage::from_fn(img.width(), img.height(), |x, y| {
        let (a, b) = (img.get_pixel(x, y).0, color.get_pixel(x, y).0);
        image::Rgb(std::array::from_fn(|c| (a[c] as f32 * (1.0 - alpha) + b[c] as f32 * alpha).round() as u8))
    })
}
