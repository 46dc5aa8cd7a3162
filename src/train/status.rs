//! `<output_dir>/status.json`: what a run folder's training is doing — running (with the
//! process that runs it), finished, interrupted or failed (with the error) — and how long
//! it has trained over all its sessions. Written atomically by rank 0 at the start and
//! the end of `segzoo train`; `segzoo runs summary` reads it (a "running" status whose
//! process is gone was killed).
use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Running,
    Finished,
    /// Stopped by a signal after a checkpoint (resumable).
    Interrupted,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunStatus {
    pub state: State,
    /// Rank 0's process and host.
    pub pid: u32,
    pub host: String,
    /// Unix seconds when this session started, and when it ended.
    pub started_at: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<f64>,
    /// Training seconds of the earlier sessions of this run (resumes).
    #[serde(default)]
    pub earlier_s: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

pub fn path(output_dir: &Path) -> PathBuf {
    output_dir.join("status.json")
}

pub fn read(output_dir: &Path) -> anyhow::Result<RunStatus> {
    let p = path(output_dir);
    let text = std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{}: not a run status", p.display()))
}

pub fn unix_now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|s| s.trim().to_string()).unwrap_or_default()
}

impl RunStatus {
    /// Seconds trained over every session (up to now for a running one).
    pub fn wall_s(&self) -> f64 {
        self.earlier_s + (self.ended_at.unwrap_or_else(unix_now) - self.started_at).max(0.0)
    }
}

/// Rank 0's status file for one `segzoo train` session (a no-op on other ranks).
pub struct StatusFile {
    dir: Option<PathBuf>,
    status: Option<RunStatus>,
    clock: Instant,
}

impl StatusFile {
    pub fn begin(output_dir: &Path, writer: bool) -> Self {
        if !writer {
            return StatusFile { dir: None, status: None, clock: Instant::now() };
        }
        // A resumed run adds to the time its earlier sessions trained.
        let earlier_s = read(output_dir).map(|s| s.wall_s()).unwrap_or(0.0);
        let status = RunStatus {
            state: State::Running,
            pid: std::process::id(),
            host: hostname(),
            started_at: unix_now(),
            ended_at: None,
            earlier_s,
            error: None,
        };
        let file = StatusFile { dir: Some(output_dir.to_path_buf()), status: Some(status), clock: Instant::now() };
        file.write();
        file
    }

    fn write(&self) {
        if let (Some(dir), Some(s)) = (&self.dir, &self.status) {
            let bytes = serde_json::to_vec_pretty(s).unwrap_or_default();
            if let Err(e) = std::fs::create_dir_all(dir)
                .map_err(anyhow::Error::from)
                .and_then(|_| crate::atomic::write_bytes(&path(dir), &bytes))
            {
                tracing::warn!("cannot write the run status: {e:#}");
            }
        }
    }

    /// The session's outcome.
    pub fn end<T>(mut self, result: &anyhow::Result<T>) {
        let elapsed = self.clock.elapsed().as_secs_f64();
        if let Some(s) = &mut self.status {
            s.ended_at = Some(s.started_at + elapsed);
            (s.state, s.error) = match result {
                Ok(_) => (State::Finished, None),
                Err(e) if e.downcast_ref::<super::preempt::Interrupted>().is_some() => {
                    (State::Interrupted, Some(format!("{e:#}")))
                }
                Err(e) => (State::Failed, Some(format!("{e:#}"))),
            };
        }
        self.write();
    }
}
