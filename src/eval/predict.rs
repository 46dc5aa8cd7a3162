//! Whole-image prediction for `segzoo infer`.
use super::inference::{scores, InferenceOptions};
use crate::data::transforms::normalize;
use crate::models::Model;
use image::RgbImage;
use tch::{Kind, Tensor};

/// Train ids (row-major, H×W) for one image at full resolution, with `opts`' scales, flip
/// and sliding window (as `segzoo eval`). Models that need sides that are multiples of N
/// see the image padded bottom/right; the padding is cut off.
pub fn predict(
    model: &Model,
    img: &RgbImage,
    mean: [f32; 3],
    std: [f32; 3],
    opts: &InferenceOptions,
) -> anyhow::Result<Vec<u8>> {
    let (w, h) = (img.width() as i64, img.height() as i64);
    let x = Tensor::from_slice(&normalize(img.as_raw(), w as usize, h as usize, mean, std)).view([1, 3, h, w]);
    let x = x.to_device(model.device());
    super::inference::check_precision(model.device(), opts.precision)?;
    let net = |t: &Tensor| opts.forward(model, t);
    let ids = tch::no_grad(|| scores(&net, &x, opts).argmax(1, false).to_kind(Kind::Uint8).flatten(0, -1));
    Ok(Vec::<u8>::try_from(ids.to_device(tch::Device::Cpu))?)
}
