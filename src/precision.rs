//! Autocast to bf16/fp16 on a device (through the shim in csrc/autocast.cpp; tch exposes
//! only CUDA/fp16): the precision training's forward and evaluation's run in.
use crate::config::Precision;
use std::os::raw::c_int;
use tch::Device;

extern "C" {
    fn segzoo_autocast_set(device: c_int, enabled: bool, dtype: c_int) -> bool;
}

fn device_code(d: Device) -> c_int {
    match d {
        Device::Cuda(_) => 1,
        _ => 0,
    }
}

/// Turns autocast off again when dropped (also on unwinding).
struct Guard {
    device: c_int,
    dtype: c_int,
}

impl Drop for Guard {
    fn drop(&mut self) {
        // SAFETY: plain FFI call into libtorch's autocast state.
        unsafe { segzoo_autocast_set(self.device, false, self.dtype) };
    }
}

/// Run `f` with autocast to `precision` on `device` (fp32: as is).
pub fn autocast<T>(device: Device, precision: Precision, f: impl FnOnce() -> T) -> anyhow::Result<T> {
    let dtype = match precision {
        Precision::Fp32 => return Ok(f()),
        Precision::Fp16 => 0,
        Precision::Bf16 => 1,
    };
    let dev = device_code(device);
    // SAFETY: plain FFI call into libtorch's autocast state.
    if !unsafe { segzoo_autocast_set(dev, true, dtype) } {
        anyhow::bail!("libtorch refused autocast to {precision:?} on {device:?}");
    }
    let _guard = Guard { device: dev, dtype };
    Ok(f())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Kind, Tensor};

    #[test]
    fn autocast_lowers_matmul_precision_on_cpu() {
        let a = Tensor::randn([4, 4], (Kind::Float, Device::Cpu));
        let y = autocast(Device::Cpu, Precision::Bf16, || a.matmul(&a)).expect("autocast");
        assert_eq!(y.kind(), Kind::BFloat16);
        // And it is off again afterwards.
        assert_eq!(a.matmul(&a).kind(), Kind::Float);
        let y = autocast(Device::Cpu, Precision::Fp32, || a.matmul(&a)).expect("fp32");
        assert_eq!(y.kind(), Kind::Float);
    }
}
