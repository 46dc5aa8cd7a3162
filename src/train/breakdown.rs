//! Where a step's time goes: waiting for data, forward+backward (compute), gradient
//! communication backward did not hide (exposed), and the optimiser; averaged over a log
//! interval. And the ETA: remaining steps × the smoothed step time, plus the evaluations
//! still to come at their measured (or, before the first, estimated) duration.
use std::time::Duration;

/// One step's wall time and its parts.
#[derive(Debug, Default, Clone, Copy)]
pub struct StepTimes {
    pub data: Duration,
    pub compute: Duration,
    pub comm: Duration,
    pub optimizer: Duration,
    /// From the end of the previous step's bookkeeping to this step's end.
    pub total: Duration,
}

/// Means over a log interval, in milliseconds.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Means {
    pub step_ms: f64,
    pub data_ms: f64,
    pub compute_ms: f64,
    pub comm_ms: f64,
    pub optimizer_ms: f64,
}

#[derive(Debug, Default)]
pub struct Interval {
    sum: StepTimes,
    steps: u32,
}

impl Interval {
    pub fn push(&mut self, t: StepTimes) {
        let s = &mut self.sum;
        (s.data, s.compute, s.comm) = (s.data + t.data, s.compute + t.compute, s.comm + t.comm);
        (s.optimizer, s.total) = (s.optimizer + t.optimizer, s.total + t.total);
        self.steps += 1;
    }

    /// The interval's means; starts the next interval.
    pub fn take(&mut self) -> Means {
        let n = self.steps.max(1) as f64;
        let ms = |d: Duration| d.as_secs_f64() * 1000.0 / n;
        let s = std::mem::take(&mut self.sum);
        self.steps = 0;
        Means {
            step_ms: ms(s.total),
            data_ms: ms(s.data),
            compute_ms: ms(s.compute),
            comm_ms: ms(s.comm),
            optimizer_ms: ms(s.optimizer),
        }
    }
}

/// Exponentially smoothed step time (the first interval, warm-up included, is soon
/// outweighed).
#[derive(Debug, Default)]
pub struct Eta {
    step_ms: Option<f64>,
}

impl Eta {
    const WEIGHT: f64 = 0.3;

    pub fn update(&mut self, interval_step_ms: f64) {
        self.step_ms = Some(match self.step_ms {
            None => interval_step_ms,
            Some(s) => s + Self::WEIGHT * (interval_step_ms - s),
        });
    }

    /// Seconds left: `steps_left` steps and `evals_left` evaluations of `eval_secs` each.
    pub fn seconds(&self, steps_left: u64, evals_left: usize, eval_secs: f64) -> f64 {
        self.step_ms.unwrap_or(0.0) * steps_left as f64 / 1000.0 + evals_left as f64 * eval_secs
    }
}

/// `H:MM:SS` (hours unbounded).
pub fn hms(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interval_means_are_per_step_in_ms_and_reset() {
        let mut i = Interval::default();
        let ms = Duration::from_millis;
        i.push(StepTimes { data: ms(10), compute: ms(80), comm: ms(4), optimizer: ms(6), total: ms(100) });
        i.push(StepTimes { data: ms(30), compute: ms(60), comm: ms(0), optimizer: ms(10), total: ms(102) });
        let m = i.take();
        assert_eq!((m.data_ms, m.compute_ms, m.comm_ms, m.optimizer_ms, m.step_ms), (20.0, 70.0, 2.0, 8.0, 101.0));
        assert_eq!(i.take(), Means::default());
    }

    #[test]
    fn eta_smooths_step_time_and_adds_evaluations() {
        let mut e = Eta::default();
        e.update(100.0);
        assert_eq!(e.seconds(50, 0, 0.0), 5.0);
        e.update(200.0);
        // 100 + 0.3 × 100 = 130 ms.
        assert!((e.seconds(100, 2, 1.5) - (13.0 + 3.0)).abs() < 1e-9);
        assert_eq!(hms(3723.4), "1:02:03");
        assert_eq!(hms(59.6), "0:01:00");
        assert_eq!(hms(-1.0), "0:00:00");
    }
}
