//! The deploy form that `segzoo eval`, `infer` and `bench infer` run: BatchNorm folded into
//! the convolutions (`fold.rs`) and, where it is faster, the weights laid out channels-last
//! so that every convolution runs NHWC. Measured with `segzoo bench infer` on HRNetV2-W18-
//! small-v2, 1×3×512×1024, 2 CPU threads: folded NCHW 851 ms, folded channels-last 467 ms
//! (docs/deployment.md); on CUDA channels-last is what cuDNN prefers for convolutions
//! under bf16/fp16 (not measured here: no GPU was lent).
use super::fold::{fold_batch_norm, gcd};
use crate::models::memory_format::{set_model_format, to_format, MemoryFormat};
use crate::models::Model;
use tch::{Device, Kind, Tensor};

/// The layout the deploy form uses on `device`.
pub fn memory_format(device: Device) -> MemoryFormat {
    match device {
        Device::Cpu | Device::Cuda(_) => MemoryFormat::ChannelsLast,
        _ => MemoryFormat::Contiguous,
    }
}

/// Makes `model` its deploy form (eval only), tracing it on a small input of a size it
/// accepts. Returns the number of BatchNorms folded.
pub fn into_deploy_form(model: &Model) -> anyhow::Result<usize> {
    let m = model.input_multiple().max(1);
    let side = 2 * m * 32 / gcd(m, 32);
    let folded = fold_batch_norm(model, &Tensor::zeros([1, 3, side, side], (Kind::Float, model.device())))?;
    let format = memory_format(model.device());
    // Only weights: a convolution with a channels-last weight writes channels-last, and the
    // layout then flows through the network.
    set_model_format(model, format);
    model.fusion().map_folded(|t| to_format(t, format));
    Ok(folded)
}
