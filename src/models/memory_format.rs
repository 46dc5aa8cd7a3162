//! Memory formats of 4-D tensors (csrc/memory_format.cpp; tch has no memory-format API):
//! NCHW-contiguous, or channels-last (NHWC strides, same shape), which convolutions run
//! faster on in some places (cuDNN under AMP, some CPU kernels). A model in channels-last
//! keeps its official shapes and names; only the strides differ, and what is written to
//! disk is made NCHW-contiguous by the writers (`weights::write_safetensors_atomic`).
use super::Model;
use std::ffi::c_void;
use tch::Tensor;

extern "C" {
    fn segzoo_contiguous(t: *mut c_void, fmt: i32) -> *mut c_void;
    fn segzoo_is_channels_last(t: *mut c_void) -> bool;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MemoryFormat {
    /// NCHW-contiguous, libtorch's default.
    Contiguous,
    /// NHWC strides (`torch.channels_last`).
    ChannelsLast,
}

/// `t` laid out in `f` (a copy only where its layout differs); tensors that are not 4-D
/// have no channels-last form and come back as shallow clones.
///
/// Panics if libtorch fails, which only a programming error can cause (the reason is on stderr).
pub fn to_format(t: &Tensor, f: MemoryFormat) -> Tensor {
    if t.dim() != 4 {
        return t.shallow_clone();
    }
    let code = match f {
        MemoryFormat::Contiguous => 0,
        MemoryFormat::ChannelsLast => 1,
    };
    // SAFETY: `t` is a live tensor; the shim returns a new tensor the caller owns, or null.
    let out = unsafe { segzoo_contiguous(t.as_ptr() as *mut c_void, code) };
    assert!(!out.is_null(), "segzoo_contiguous failed (see stderr)");
    unsafe { Tensor::from_ptr(out as *mut _) }
}

/// Whether `t`'s strides are channels-last. Tensors where the two layouts coincide
/// (1×1 kernels, one channel) count as both.
pub fn is_channels_last(t: &Tensor) -> bool {
    // SAFETY: `t` is a live tensor; the call only reads its sizes and strides.
    t.dim() == 4 && unsafe { segzoo_is_channels_last(t.as_ptr() as *mut c_void) }
}

/// Every 4-D parameter and buffer of `model` laid out in `f`, in place: the variables keep
/// their identity (layers, optimiser and gradient hooks hold the same tensors), so call
/// it before the optimiser is built for its state to follow (`zeros_like` keeps the layout).
pub fn set_model_format(model: &Model, f: MemoryFormat) {
    tch::no_grad(|| {
        for (_, mut t) in model.state_dict() {
            if t.dim() == 4 {
                let data = to_format(&t.detach(), f);
                t.set_data(&data);
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn channels_last_changes_strides_not_values() {
        let x = Tensor::arange(2 * 3 * 4 * 5, (Kind::Float, Device::Cpu)).view([2, 3, 4, 5]);
        assert!(!is_channels_last(&x));
        let y = to_format(&x, MemoryFormat::ChannelsLast);
        assert!(is_channels_last(&y) && !y.is_contiguous());
        assert_eq!(y.stride(), [60, 1, 15, 3]);
        assert!(y.equal(&x));
        let back = to_format(&y, MemoryFormat::Contiguous);
        assert!(back.is_contiguous() && back.equal(&x));
        // Not 4-D: unchanged.
        let v = Tensor::arange(6, (Kind::Float, Device::Cpu));
        assert_eq!(to_format(&v, MemoryFormat::ChannelsLast).stride(), [1]);
        assert!(!is_channels_last(&v));
    }

    #[test]
    fn set_model_format_keeps_parameters_trainable_and_equal() {
        let model = crate::models::build(&crate::models::ModelSpec::preset("hrnetv2_w18_small_v1"), Device::Cpu)
            .expect("model");
        let before: Vec<Tensor> = model.state_dict().into_iter().map(|(_, t)| t.copy()).collect();
        set_model_format(&model, MemoryFormat::ChannelsLast);
        for ((name, t), b) in model.state_dict().iter().zip(&before) {
            assert!(t.equal(b), "{name} changed value");
            if t.dim() == 4 {
                assert!(is_channels_last(t), "{name} is not channels-last");
                assert!(t.requires_grad(), "{name} lost requires_grad");
            }
        }
        // The layers see the converted variables too: the model state dict is theirs.
        let conv = model.state_dict().into_iter().find(|(n, _)| n == "conv1.weight").expect("conv1").1;
        assert!(!conv.is_contiguous(), "a 3×3 kernel in channels-last is not NCHW-contiguous");
        set_model_format(&model, MemoryFormat::Contiguous);
        assert!(model.state_dict().iter().all(|(_, t)| t.is_contiguous()));
    }
}
