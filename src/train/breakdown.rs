//! Where a step's time goes: waiting for data, forward+backward (compute), gradient
//! communication backward did not hide (exposed), and the optimiser (the last three on the
//! device's timeline, read when the interval ends); averaged over a log interval. And the ETA: remaining steps × the smoothed step time, plus the evaluations
//! still to come at their measured (or, before the first, estimated) duration.
use super::clock::StepMarks;
use std::time::Duration;

/// One step's wall time, its wait for data, and the marks of its parts.
pub struct StepTimes {
    pub data: Duration,
    /// From the end of the previous step's bookkeeping to this step's end.
    pub total: Duration,
    pub marks: StepMarks,
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

#[derive(Default)]
pub struct Interval {
    steps: Vec<StepTimes>,
}

impl Interval {
    pub fn push(&mut self, t: StepTimes) {
        self.steps.push(t);
    }

    /// The interval's means (on a GPU, waits for its last step to pass); starts the next
    /// interval.
    pub fn take(&mut self) -> Means {
        let steps = std::mem::take(&mut self.steps);
        let n = steps.len().max(1) as f64;
        let ms = |d: Duration| d.as_secs_f64() * 1000.0 / n;
        let (mut total, mut data, mut compute, mut comm, mut optimizer) = Default::default();
        for t in &steps {
            let parts = t.marks.parts();
            (total, data) = (total + t.total, data + t.data);
            (compute, comm, optimizer) =
                (compute + parts.compute, comm + parts.exposed_comm, optimizer + parts.optimizer);
        }
        Means {
            step_ms: ms(total),
            data_ms: ms(data),
            compute_ms: ms(compute),
            comm_ms: ms(comm),
            optimizer_ms: ms(optimizer),
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
        let t0 = std::time::Instant::now();
        let marks = |c: u64, x: u64, o: u64| StepMarks::at(t0, t0 + ms(c), t0 + ms(c + x), t0 + ms(c + x + o));
        i.push(StepTimes { data: ms(10), total: ms(100), marks: marks(80, 4, 6) });
        i.push(StepTimes { data: ms(30), total: ms(102), marks: marks(60, 0, 10) });
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
