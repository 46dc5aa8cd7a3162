//! The small files a rank of a job leaves for the others and for its launcher: a heartbeat
//! (`rank_<k>.heartbeat.json`, rewritten every second while the rank runs: its step and
//! the first it trained, what it is doing, its pid; at a clean end, phase "ended") and, when it fails, an error file (`rank_<k>.error.json`: the
//! error chain, the step, the exit code), which segzoo-launch reads for its summary so
//! that the first failure is reported rather than the aborts it caused elsewhere.
//!
//! They live in segzoo-launch's log directory (`SEGZOO_LOG_DIR`, `SEGZOO_ERROR_FILE`)
//! or, without the launcher (mpirun), in the command's output directory.
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Exit code of a rank whose collective (or the job's start) timed out.
pub const EXIT_TIMEOUT: i32 = 124;
/// Exit code of a rank whose NCCL communicator reported an asynchronous error.
pub const EXIT_NCCL: i32 = 125;

/// Where this rank's files go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RankFiles {
    pub dir: PathBuf,
    pub error_file: PathBuf,
}

impl RankFiles {
    /// The launcher's choice when it made one, else `<default_dir>/rank_<k>.*`; `None`
    /// when there is neither.
    pub fn locate(env: &dyn Fn(&str) -> Option<String>, default_dir: Option<&Path>, rank: usize) -> Option<Self> {
        let dir = env("SEGZOO_LOG_DIR").map(PathBuf::from).or_else(|| default_dir.map(Path::to_path_buf))?;
        let error_file =
            env("SEGZOO_ERROR_FILE").map_or_else(|| dir.join(format!("rank_{rank}.error.json")), PathBuf::from);
        Some(RankFiles { dir, error_file })
    }

    pub fn heartbeat(&self, rank: usize) -> PathBuf {
        self.dir.join(format!("rank_{rank}.heartbeat.json"))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub rank: usize,
    pub size: usize,
    pub pid: u32,
    pub step: u64,
    /// The first step this process trained (0: none yet).
    #[serde(default)]
    pub first_step: u64,
    /// What the rank's main thread is doing ("data", "step", "evaluation", …; "ended").
    pub phase: String,
    pub time_unix_ms: u64,
    /// A line for the launcher's summary (rank 0: the slowest rank most often).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorReport {
    pub rank: usize,
    pub size: usize,
    pub step: Option<u64>,
    /// "error", "timeout" or "nccl".
    pub kind: String,
    /// The error's first line.
    pub message: String,
    /// Its causes, outermost first.
    pub chain: Vec<String>,
    pub exit_code: i32,
    pub time_unix_ms: u64,
}

pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Write `value` as JSON to `path` atomically (a reader never sees half a file).
pub fn write_json(path: &Path, value: &impl Serialize) -> std::io::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec(value)?)?;
    std::fs::rename(&tmp, path)
}

impl ErrorReport {
    /// The same in torchelastic's error-file form (`TORCHELASTIC_ERROR_FILE`), which
    /// torchrun reads into its failure summary: the message with its causes, and the time.
    pub fn torchelastic(&self) -> serde_json::Value {
        let mut text = self.message.clone();
        for cause in &self.chain {
            text += &format!("\n  {cause}");
        }
        let at = self.step.map_or(String::new(), |s| format!(", step {s}"));
        serde_json::json!({
            "message": {
                "message": format!("segzoo ({}{at}, exit code {}): {text}", self.kind, self.exit_code),
                "extraInfo": {"py_callstack": "", "timestamp": (self.time_unix_ms / 1000).to_string()},
            }
        })
    }

    /// Write it as this rank's error file (no-op without a place for it), and as torchrun's
    /// when it asked for one (`TORCHELASTIC_ERROR_FILE`: its summary prints the root cause).
    pub fn write(&self, files: Option<&RankFiles>) {
        if let Some(files) = files {
            if let Err(e) = write_json(&files.error_file, self) {
                eprintln!("warning: cannot write {}: {e}", files.error_file.display());
            }
        }
        if let Some(path) = std::env::var_os("TORCHELASTIC_ERROR_FILE") {
            let path = std::path::PathBuf::from(path);
            if let Err(e) = write_json(&path, &self.torchelastic()) {
                eprintln!("warning: cannot write {}: {e}", path.display());
            }
        }
    }

    pub fn new(rank: usize, size: usize, step: Option<u64>, kind: &str, error: &anyhow::Error, exit_code: i32) -> Self {
        let mut chain = error.chain().map(|e| e.to_string());
        let message = chain.next().unwrap_or_default();
        ErrorReport {
            rank,
            size,
            step,
            kind: kind.into(),
            message,
            chain: chain.collect(),
            exit_code,
            time_unix_ms: now_ms(),
        }
    }
}

/// What this rank can say about the others from their heartbeats: how many are alive, and
/// one line per other rank, naming those that have gone quiet (stopped, stuck or dead) and
/// where each was.
pub fn peers_report(files: &RankFiles, rank: usize, size: usize, now_ms: u64, quiet: Duration) -> (usize, Vec<String>) {
    let (mut alive, mut lines) = (0, Vec::new());
    for r in (0..size).filter(|&r| r != rank) {
        let path = files.heartbeat(r);
        let beat = std::fs::read(&path).ok().and_then(|b| serde_json::from_slice::<Heartbeat>(&b).ok());
        lines.push(match beat {
            None => format!("rank {r}: no heartbeat in {} (never started, or another directory)", files.dir.display()),
            Some(b) if b.phase == "ended" => format!("rank {r}: ended at step {}, pid {}", b.step, b.pid),
            Some(b) => {
                let age = now_ms.saturating_sub(b.time_unix_ms) as f64 / 1000.0;
                let silent = age * 1000.0 > quiet.as_millis() as f64;
                alive += usize::from(!silent);
                let state = if silent { "silent: stopped, stuck or dead" } else { "alive" };
                format!(
                    "rank {r}: {state}; last heartbeat {age:.1} s ago at step {} ({}), pid {}",
                    b.step, b.phase, b.pid
                )
            }
        });
    }
    (alive, lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_launchers_directories_win_over_the_output_directory() {
        let env = |k: &str| match k {
            "SEGZOO_LOG_DIR" => Some("/logs".to_string()),
            "SEGZOO_ERROR_FILE" => Some("/logs/rank_3.error.json".to_string()),
            _ => None,
        };
        let f = RankFiles::locate(&env, Some(Path::new("runs/x")), 3).expect("located");
        assert_eq!(
            (f.dir.as_path(), f.error_file.as_path()),
            (Path::new("/logs"), Path::new("/logs/rank_3.error.json"))
        );
        let f = RankFiles::locate(&|_| None, Some(Path::new("runs/x")), 2).expect("located");
        assert_eq!(f.error_file, Path::new("runs/x/rank_2.error.json"));
        assert_eq!(f.heartbeat(2), Path::new("runs/x/rank_2.heartbeat.json"));
        assert_eq!(RankFiles::locate(&|_| None, None, 0), None);
    }

    #[test]
    fn peers_are_reported_alive_silent_or_missing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = RankFiles { dir: dir.path().into(), error_file: dir.path().join("e.json") };
        let beat = |rank, ms| Heartbeat {
            rank,
            size: 4,
            pid: 10 + rank as u32,
            step: 7,
            first_step: 1,
            phase: "step".into(),
            time_unix_ms: ms,
            note: None,
        };
        write_json(&files.heartbeat(1), &beat(1, 100_000)).expect("write");
        write_json(&files.heartbeat(2), &beat(2, 109_500)).expect("write");
        write_json(&files.heartbeat(4), &Heartbeat { phase: "ended".into(), ..beat(4, 100_000) }).expect("write");
        let (alive, lines) = peers_report(&files, 0, 5, 110_000, Duration::from_secs(3));
        assert_eq!((alive, lines.len()), (1, 4));
        assert_eq!(lines[3], "rank 4: ended at step 7, pid 14", "ended, not silent");
        assert!(
            lines[0].starts_with("rank 1: silent") && lines[0].contains("10.0 s ago at step 7 (step), pid 11"),
            "{lines:?}"
        );
        assert!(lines[1].starts_with("rank 2: alive; last heartbeat 0.5 s ago"), "{lines:?}");
        assert!(lines[2].starts_with("rank 3: no heartbeat"), "{lines:?}");
    }

    #[test]
    fn an_error_report_keeps_the_message_and_its_causes() {
        let e = anyhow::anyhow!("disk full").context("saving checkpoint").context("step 12");
        let r = ErrorReport::new(1, 2, Some(12), "error", &e, 1);
        assert_eq!(r.message, "step 12");
        assert_eq!(r.chain, vec!["saving checkpoint", "disk full"]);
        let t = r.torchelastic();
        assert_eq!(
            t["message"]["message"],
            "segzoo (error, step 12, exit code 1): step 12\n  saving checkpoint\n  disk full"
        );
        assert_eq!(t["message"]["extraInfo"]["timestamp"], (r.time_unix_ms / 1000).to_string());
    }
}
