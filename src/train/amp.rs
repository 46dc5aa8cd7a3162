//! Mixed precision: autocast to bf16/fp16 on the model's device (through the shim in
//! csrc/autocast.cpp) and, for fp16, gradient scaling — dynamic (skip the step and
//! halve the scale on inf/NaN gradients, double it after `growth_interval` clean steps)
//! or static (the recipes' fixed `loss_scale`; overflowing steps are still skipped).
use crate::config::Precision;
use std::os::raw::c_int;
use tch::{Device, Tensor};

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

#[derive(Debug, Clone, PartialEq)]
pub struct GradScaler {
    pub scale: f64,
    pub dynamic: bool,
    pub growth_interval: u64,
    /// Clean steps since the last overflow or growth.
    pub good_steps: u64,
    pub skipped: u64,
}

impl GradScaler {
    /// Dynamic scaling from 2^16, as PyTorch's GradScaler.
    pub fn dynamic() -> Self {
        GradScaler { scale: 65536.0, dynamic: true, growth_interval: 2000, good_steps: 0, skipped: 0 }
    }

    pub fn fixed(scale: f64) -> Self {
        GradScaler { scale, dynamic: false, growth_interval: 0, good_steps: 0, skipped: 0 }
    }

    pub fn scale_loss(&self, loss: &Tensor) -> Tensor {
        loss * self.scale
    }

    /// Divide the gradients by the scale; false when any is inf/NaN (then skip the step).
    /// The check stays on the device and reaches the host once per step.
    pub fn unscale(&self, params: &[Tensor]) -> bool {
        let inv = 1.0 / self.scale;
        tch::no_grad(|| {
            let mut bad: Option<Tensor> = None;
            for p in params {
                let mut g = p.grad();
                if !g.defined() {
                    continue;
                }
                let _ = g.g_mul_scalar_(inv);
                let here = g.isfinite().logical_not().any();
                bad = Some(match bad {
                    None => here,
                    Some(b) => b.logical_or(&here),
                });
            }
            bad.is_none_or(|b| !bool::try_from(b).unwrap_or(true))
        })
    }

    /// Record a step's outcome; returns whether the optimiser step should be taken.
    pub fn update(&mut self, finite: bool) -> bool {
        if !finite {
            self.skipped += 1;
            self.good_steps = 0;
            if self.dynamic {
                self.scale *= 0.5;
            }
            return false;
        }
        self.good_steps += 1;
        if self.dynamic && self.good_steps >= self.growth_interval {
            self.scale *= 2.0;
            self.good_steps = 0;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Kind;

    fn param_with_grad(values: &[f32]) -> Tensor {
        let p = Tensor::zeros([values.len() as i64], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        (&p * Tensor::from_slice(values)).sum(Kind::Float).backward();
        p
    }

    #[test]
    fn skips_and_backs_off_on_an_injected_inf() {
        let mut s = GradScaler::dynamic();
        s.growth_interval = 3;
        let ok = param_with_grad(&[65536.0, -131072.0]);
        assert!(s.unscale(std::slice::from_ref(&ok)));
        assert_eq!(Vec::<f32>::try_from(ok.grad()).expect("grad"), vec![1.0, -2.0]);
        assert!(s.update(true));
        let bad = param_with_grad(&[1.0, f32::INFINITY]);
        assert!(!s.unscale(&[bad]));
        assert!(!s.update(false), "the step is skipped");
        assert_eq!((s.scale, s.skipped, s.good_steps), (32768.0, 1, 0));
        // Three clean steps double it again.
        for _ in 0..3 {
            assert!(s.update(true));
        }
        assert_eq!(s.scale, 65536.0);
        // A static scale never changes, but overflowing steps are still skipped.
        let mut f = GradScaler::fixed(1024.0);
        assert!(!f.update(false));
        assert_eq!(f.scale, 1024.0);
    }

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
