//! A process-wide recorder of timed spans for `train.trace_steps`: off (one atomic load
//! per span) except inside the traced window, when every phase of a step (data wait,
//! forward, backward, each gradient bucket's all-reduce, optimiser, evaluation,
//! checkpoint) is kept with its start and duration relative to an origin that all ranks
//! take right after a barrier. `train/trace.rs` gathers the ranks' spans into one
//! Chrome trace. Lives outside `train/` because `dist/` records its buckets here too.
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// The main thread's lane; communication threads use [`COMM_LANE`].
pub const MAIN_LANE: u32 = 0;
/// Gradient buckets' all-reduces (run by a background thread when overlapped).
pub const COMM_LANE: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Span {
    pub name: String,
    /// Microseconds since the origin.
    pub start_us: f64,
    pub dur_us: f64,
    pub lane: u32,
    /// The training step it belongs to.
    pub step: u64,
}

struct Recorder {
    origin: Instant,
    step: u64,
    spans: Vec<Span>,
}

static ACTIVE: AtomicBool = AtomicBool::new(false);
static RECORDER: Mutex<Option<Recorder>> = Mutex::new(None);

fn recorder() -> std::sync::MutexGuard<'static, Option<Recorder>> {
    // A panic while holding the lock loses at most a span; keep recording.
    RECORDER.lock().unwrap_or_else(|e| e.into_inner())
}

/// Start recording, with times relative to `origin`.
pub fn start(origin: Instant) {
    *recorder() = Some(Recorder { origin, step: 0, spans: Vec::new() });
    ACTIVE.store(true, Ordering::Release);
}

/// Stop recording and return what was recorded.
pub fn stop() -> Vec<Span> {
    ACTIVE.store(false, Ordering::Release);
    recorder().take().map(|r| r.spans).unwrap_or_default()
}

pub fn active() -> bool {
    ACTIVE.load(Ordering::Acquire)
}

/// The step the following spans belong to.
pub fn set_step(step: u64) {
    if let Some(r) = recorder().as_mut() {
        r.step = step;
    }
}

/// Record `name` from `start` to now on `lane` (a no-op when not recording).
pub fn record(name: &str, lane: u32, start: Instant) {
    if !active() {
        return;
    }
    let end = Instant::now();
    if let Some(r) = recorder().as_mut() {
        let us = |t: Instant| t.saturating_duration_since(r.origin).as_secs_f64() * 1e6;
        let span =
            Span { name: name.to_string(), start_us: us(start), dur_us: us(end) - us(start), lane, step: r.step };
        r.spans.push(span);
    }
}

/// Records its span when dropped.
pub struct Guard {
    name: &'static str,
    lane: u32,
    start: Instant,
}

impl Drop for Guard {
    fn drop(&mut self) {
        record(self.name, self.lane, self.start);
    }
}

/// A span on the main lane from now until the guard is dropped.
pub fn span(name: &'static str) -> Guard {
    Guard { name, lane: MAIN_LANE, start: Instant::now() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_are_kept_only_while_recording_with_their_step() {
        // The recorder is process-wide: this is its only test in the library.
        drop(span("before"));
        let origin = Instant::now();
        start(origin);
        set_step(3);
        {
            let _g = span("forward");
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        record("bucket 0", COMM_LANE, Instant::now());
        let spans = stop();
        drop(span("after"));
        assert_eq!(spans.len(), 2, "{spans:?}");
        assert_eq!((spans[0].name.as_str(), spans[0].step, spans[0].lane), ("forward", 3, MAIN_LANE));
        assert!(spans[0].dur_us >= 2000.0, "{:?}", spans[0]);
        assert_eq!((spans[1].name.as_str(), spans[1].lane), ("bucket 0", COMM_LANE));
        assert!(spans[1].start_us >= spans[0].start_us + spans[0].dur_us);
        assert!(!active());
    }
}
