//! `train.trace_steps = [from, to]`: every rank records its phases for those steps
//! (`crate::timeline`), from a common origin taken right after a barrier; at the end of
//! the window rank 0 gathers the spans over the job's collective and writes one
//! `trace.json` in the Chrome trace-event format: one process track per rank, with a
//! main lane (data wait, forward, backward, exposed all-reduce, optimiser, evaluation,
//! checkpoint) and a lane for the gradient buckets' all-reduces.
use super::data_parallel::DataParallel;
use crate::timeline::{self, Span, COMM_LANE};
use anyhow::Context;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

pub struct TraceWindow {
    from: u64,
    to: u64,
    state: State,
    path: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    Waiting,
    Recording,
    Done,
}

impl TraceWindow {
    pub fn new([from, to]: [u64; 2], output_dir: &Path) -> Self {
        TraceWindow { from, to, state: State::Waiting, path: output_dir.join("trace.json") }
    }

    /// Before the data wait of step `next` (1-based): start recording when it is the
    /// window's first (or a later one, on a run resumed inside the window).
    pub fn before_step(&mut self, next: u64, dp: &DataParallel) -> anyhow::Result<()> {
        if self.state != State::Waiting || next < self.from || next > self.to {
            return Ok(());
        }
        // Every rank leaves the barrier within its latency of the others: a common origin.
        dp.barrier()?;
        timeline::start(std::time::Instant::now());
        timeline::set_step(next);
        self.state = State::Recording;
        Ok(())
    }

    /// After step `done` and its bookkeeping: at the window's end (or with `last`, at the
    /// run's), gather every rank's spans and write the trace on rank 0.
    pub fn after_step(&mut self, done: u64, last: bool, dp: &DataParallel) -> anyhow::Result<()> {
        if self.state != State::Recording {
            return Ok(());
        }
        if done < self.to && !last {
            timeline::set_step(done + 1);
            return Ok(());
        }
        self.state = State::Done;
        let spans = timeline::stop();
        let bytes = serde_json::to_vec(&spans)?;
        let Some(all) = crate::distributed::gather::gather_bytes(dp.comm.as_ref(), &bytes, dp.device)? else {
            return Ok(());
        };
        let mut per_rank = Vec::with_capacity(all.len());
        for (rank, b) in all.iter().enumerate() {
            per_rank.push(serde_json::from_slice::<Vec<Span>>(b).with_context(|| format!("rank {rank}'s trace"))?);
        }
        let trace = chrome_trace(&per_rank, self.from, done.min(self.to));
        crate::atomic::write_bytes(&self.path, &serde_json::to_vec(&trace)?)?;
        tracing::info!(
            "trace of steps {}..={} from {} rank(s): {} (open in https://ui.perfetto.dev)",
            self.from,
            done.min(self.to),
            per_rank.len(),
            self.path.display()
        );
        Ok(())
    }
}

/// The Chrome trace-event JSON of every rank's spans (`pid` = rank).
pub fn chrome_trace(per_rank: &[Vec<Span>], from: u64, to: u64) -> Value {
    let mut events = Vec::new();
    for (rank, spans) in per_rank.iter().enumerate() {
        events.push(json!({"name": "process_name", "ph": "M", "pid": rank, "args": {"name": format!("rank {rank}")}}));
        events.push(json!({"name": "process_sort_index", "ph": "M", "pid": rank, "args": {"sort_index": rank}}));
        for (lane, name) in [(timeline::MAIN_LANE, "step phases"), (COMM_LANE, "gradient buckets")] {
            events.push(json!({"name": "thread_name", "ph": "M", "pid": rank, "tid": lane, "args": {"name": name}}));
        }
        for s in spans {
            events.push(json!({
                "name": s.name,
                "cat": if s.lane == COMM_LANE { "communication" } else { "step" },
                "ph": "X",
                "ts": s.start_us,
                "dur": s.dur_us,
                "pid": rank,
                "tid": s.lane,
                "args": {"step": s.step},
            }));
        }
    }
    json!({
        "traceEvents": events,
        "displayTimeUnit": "ms",
        "otherData": {"producer": "segzoo", "steps": [from, to], "ranks": per_rank.len()},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chrome_trace_has_a_track_per_rank_and_complete_events() {
        let span = |name: &str, lane, start| Span { name: name.into(), start_us: start, dur_us: 5.0, lane, step: 2 };
        let per_rank = vec![vec![span("forward", 0, 1.0)], vec![span("all-reduce bucket 0", COMM_LANE, 3.0)]];
        let t = chrome_trace(&per_rank, 2, 4);
        let events = t["traceEvents"].as_array().unwrap();
        let complete: Vec<&Value> = events.iter().filter(|e| e["ph"] == "X").collect();
        assert_eq!(complete.len(), 2);
        assert_eq!((complete[0]["pid"].as_u64(), complete[0]["tid"].as_u64()), (Some(0), Some(0)));
        assert_eq!((complete[1]["pid"].as_u64(), complete[1]["tid"].as_u64()), (Some(1), Some(1)));
        assert_eq!(complete[1]["cat"], "communication");
        let names: Vec<&str> =
            events.iter().filter(|e| e["name"] == "process_name").filter_map(|e| e["args"]["name"].as_str()).collect();
        assert_eq!(names, ["rank 0", "rank 1"]);
        assert_eq!(t["otherData"]["steps"], json!([2, 4]));
    }
}
