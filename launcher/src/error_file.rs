//! The error file a failing worker may leave: `SEGZOO_ERROR_FILE`, i.e.
//! `<log dir>/rank_<k>.error.json`, a JSON object with the error's top line and its causes.
//! The launcher removes a stale one before (re)starting the rank, so a file found after a
//! failure is that failure's; when it explains the failure it replaces the log's last
//! lines in the summary.
use crate::error::Error;
use serde::Deserialize;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Beyond this the file is not what a worker writes for one error.
const MAX_BYTES: u64 = 1 << 20;

pub fn path(log_dir_abs: &Path, rank: usize) -> PathBuf {
    log_dir_abs.join(format!("rank_{rank}.error.json"))
}

/// Delete an error file left by an earlier run or attempt; none there is fine.
pub fn remove_stale(path: &Path) -> Result<(), Error> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(Error::io(format!("cannot remove the stale error file {}", path.display()))(e))
        }
        _ => Ok(()),
    }
}

/// What a worker writes (segzoo's own fields; others are ignored). Only `message` is
/// required: the rest may be missing or null.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct WorkerError {
    pub rank: Option<usize>,
    pub size: Option<usize>,
    pub step: Option<u64>,
    /// e.g. "error", "timeout", "nccl".
    pub kind: Option<String>,
    /// The error's top line.
    pub message: String,
    /// Its causes, outermost first.
    #[serde(default)]
    pub chain: Vec<String>,
    pub exit_code: Option<i32>,
}

/// The outcome of looking for a rank's error file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    Missing,
    Report(WorkerError),
    /// It exists but cannot be read or is not such an object; the text says why.
    Malformed(String),
}

pub fn read(path: &Path) -> Found {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Found::Missing,
        Err(e) => return Found::Malformed(e.to_string()),
    };
    let mut text = String::new();
    if let Err(e) = file.take(MAX_BYTES + 1).read_to_string(&mut text) {
        return Found::Malformed(e.to_string());
    }
    if text.len() as u64 > MAX_BYTES {
        return Found::Malformed(format!("larger than {MAX_BYTES} bytes"));
    }
    serde_json::from_str(&text).map_or_else(|e| Found::Malformed(e.to_string()), Found::Report)
}

impl WorkerError {
    /// The summary's lines for it: the message, then one `caused by` line per cause.
    pub fn render(&self, rank: usize, path: &Path) -> String {
        let mut text =
            format!("segzoo-launch: error reported by rank {rank} ({}): {}\n", path.display(), indent(&self.message));
        for cause in &self.chain {
            text += &format!("    caused by: {}\n", indent(cause));
        }
        let facts: Vec<String> =
            [self.kind.as_ref().map(|k| format!("kind {k}")), self.step.map(|s| format!("step {s}"))]
                .into_iter()
                .flatten()
                .collect();
        if !facts.is_empty() {
            text += &format!("    ({})\n", facts.join(", "));
        }
        text
    }
}

/// Continuation lines of a multi-line message stay inside the summary's indentation.
fn indent(text: &str) -> String {
    text.trim_end().replace('\n', "\n    ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, text: &str) -> PathBuf {
        let p = path(dir, 3);
        std::fs::write(&p, text).expect("write");
        p
    }

    #[test]
    fn a_full_report_renders_its_message_causes_kind_and_step() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = write(
            dir.path(),
            r#"{"rank": 3, "size": 8, "step": 120, "kind": "nccl", "message": "all-reduce failed",
                "chain": ["NCCL error 6: remote process exited", "connection reset"], "exit_code": 1, "extra": 1}"#,
        );
        let Found::Report(e) = read(&p) else { panic!("not read: {:?}", read(&p)) };
        assert_eq!(
            e.render(3, &p),
            format!(
                "segzoo-launch: error reported by rank 3 ({}): all-reduce failed\n    caused by: NCCL error 6: remote process exited\n    caused by: connection reset\n    (kind nccl, step 120)\n",
                p.display()
            )
        );
    }

    #[test]
    fn only_the_message_is_required_and_null_fields_are_missing_ones() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = write(dir.path(), r#"{"message": "out of memory\nwhile loading", "step": null, "chain": []}"#);
        let Found::Report(e) = read(&p) else { panic!("not read") };
        assert_eq!(e.step, None);
        assert_eq!(
            e.render(3, &p),
            format!("segzoo-launch: error reported by rank 3 ({}): out of memory\n    while loading\n", p.display())
        );
    }

    #[test]
    fn a_missing_file_is_missing_and_a_bad_one_is_malformed_never_a_panic() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(read(&path(dir.path(), 3)), Found::Missing);
        for bad in ["{ nope", "[1, 2]", r#"{"chain": []}"#, r#"{"message": 7}"#, ""] {
            assert!(matches!(read(&write(dir.path(), bad)), Found::Malformed(_)), "{bad:?}");
        }
    }

    #[test]
    fn removing_a_stale_file_deletes_it_and_a_missing_one_is_fine() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = write(dir.path(), "{}");
        remove_stale(&p).expect("removed");
        assert!(!p.exists());
        remove_stale(&p).expect("nothing to remove");
    }
}
