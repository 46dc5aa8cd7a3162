//! Mixed-precision training's part beyond autocast (`crate::precision`): for fp16, gradient
//! scaling — dynamic (skip the step and halve the scale on inf/NaN gradients, double it
//! after `growth_interval` clean steps) or static (the recipes' fixed `loss_scale`;
//! overflowing steps are still skipped).
use tch::Tensor;

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
    use tch::{Device, Kind};

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
}
