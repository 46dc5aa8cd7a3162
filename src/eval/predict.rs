//! Whole-image prediction for `segzoo infer`.
use crate::data::transforms::normalize;
use crate::models::layers::resize_bilinear;
use crate::models::Model;
use image::RgbImage;
use tch::{Kind, Tensor};

/// Train ids (row-major, H×W) for one image at full resolution. Models that need sides
/// that are multiples of N see the image padded bottom/right; the padding is cut off.
pub fn predict(model: &Model, img: &RgbImage, mean: [f32; 3], std: [f32; 3]) -> anyhow::Result<Vec<u8>> {
    let (w, h) = (img.width() as i64, img.height() as i64);
    let m = model.input_multiple;
    let (ph, pw) = ((h + m - 1) / m * m, (w + m - 1) / m * m);
    let x = Tensor::from_slice(&normalize(img.as_raw(), w as usize, h as usize, mean, std)).view([1, 3, h, w]);
    let x = if (ph, pw) != (h, w) { x.constant_pad_nd([0, pw - w, 0, ph - h]) } else { x };
    let x = x.to_device(model.device());
    let ids = tch::no_grad(|| {
        let outs = model.forward_t(&x, false);
        let logits = resize_bilinear(&outs[model.main_output_index()], ph, pw, model.align_corners);
        logits.narrow(2, 0, h).narrow(3, 0, w).argmax(1, false).to_kind(Kind::Uint8).flatten(0, -1)
    });
    Ok(Vec::<u8>::try_from(ids.to_device(tch::Device::Cpu))?)
}
