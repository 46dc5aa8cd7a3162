//! Learning-rate schedules evaluated per iteration: poly, cosine, multi-step, each
//! with an optional linear or exponential warm-up.
use crate::config::{Schedule, Warmup};

#[derive(Debug, Clone)]
pub struct LrSchedule {
    pub base_lr: f64,
    pub min_lr: f64,
    pub kind: Schedule,
    pub total_iters: u64,
    pub power: f64,
    /// Multi-step: iterations at which the rate is multiplied by `gamma`.
    pub milestones: Vec<u64>,
    pub gamma: f64,
    pub warmup_iters: u64,
    pub warmup: Warmup,
    /// Warm-up starts at `base_lr × warmup_ratio`.
    pub warmup_ratio: f64,
}

impl LrSchedule {
    pub fn lr(&self, step: u64) -> f64 {
        if step < self.warmup_iters {
            let t = step as f64 / self.warmup_iters as f64;
            return match self.warmup {
                Warmup::Linear => self.base_lr * (self.warmup_ratio + (1.0 - self.warmup_ratio) * t),
                Warmup::Exponential => self.base_lr * self.warmup_ratio.powf(1.0 - t),
            };
        }
        let t = (step as f64 / self.total_iters.max(1) as f64).min(1.0);
        match self.kind {
            Schedule::Poly => (self.base_lr - self.min_lr) * (1.0 - t).powf(self.power) + self.min_lr,
            Schedule::Cosine => {
                self.min_lr + (self.base_lr - self.min_lr) * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
            }
            Schedule::MultiStep => {
                let passed = self.milestones.iter().filter(|&&m| step >= m).count() as i32;
                self.base_lr * self.gamma.powi(passed)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sched(kind: Schedule) -> LrSchedule {
        LrSchedule {
            base_lr: 0.01,
            min_lr: 0.0,
            kind,
            total_iters: 100,
            power: 0.9,
            milestones: vec![30, 60],
            gamma: 0.1,
            warmup_iters: 0,
            warmup: Warmup::Linear,
            warmup_ratio: 0.1,
        }
    }

    #[test]
    fn values_at_chosen_steps() {
        let p = sched(Schedule::Poly);
        assert_eq!(p.lr(0), 0.01);
        assert!((p.lr(50) - 0.01 * 0.5f64.powf(0.9)).abs() < 1e-15);
        assert_eq!(p.lr(100), 0.0);
        let c = sched(Schedule::Cosine);
        assert!((c.lr(50) - 0.005).abs() < 1e-15);
        let m = sched(Schedule::MultiStep);
        assert_eq!((m.lr(29), m.lr(30)), (0.01, 0.001));
        assert!((m.lr(60) - 1e-4).abs() < 1e-15);
        let mut w = sched(Schedule::Poly);
        w.warmup_iters = 10;
        assert!((w.lr(0) - 0.001).abs() < 1e-15 && (w.lr(5) - 0.0055).abs() < 1e-15);
        w.warmup = Warmup::Exponential;
        assert!((w.lr(5) - 0.01 * 0.1f64.powf(0.5)).abs() < 1e-15);
        assert!((w.lr(10) - 0.01 * 0.9f64.powf(0.9)).abs() < 1e-15, "poly after warm-up");
    }
}
