//! The typed result of one generation on this server: which ranks ran, how each ended,
//! and the local cause of the end. From it come what this server tells the hub (did it
//! succeed; the detail of its own failed rank: error file or last log lines) and the line
//! about its own ranks printed after the job's summary.
use crate::error_file::{self, Found};
use crate::worker::{log_path, End};
use nix::sys::signal::Signal;
use std::path::Path;

/// How one rank of the generation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RankEnd {
    pub rank: usize,
    pub device_id: u32,
    pub end: End,
    /// The launcher had signalled it (fail-fast, a forwarded signal, a stop) before it ended.
    pub stopped: bool,
    /// Its last lines of output.
    pub tail: Vec<String>,
}

/// Why the local workers ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    AllSucceeded,
    /// The first worker to fail on its own (not stopped by the launcher): the local root
    /// cause; the others were stopped because of it.
    RankFailed {
        rank: usize,
        end: End,
    },
    /// The launcher received this signal and forwarded it to every worker.
    Signalled(Signal),
    /// The hub stopped them: something failed elsewhere.
    Stopped,
}

/// The outcome of one generation of the local workers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunReport {
    /// The generation: restarts before it.
    pub restarts: u32,
    /// Every local rank, in rank order.
    pub ranks: Vec<RankEnd>,
    pub cause: Cause,
}

impl RunReport {
    pub fn rank(&self, rank: usize) -> Option<&RankEnd> {
        self.ranks.iter().find(|r| r.rank == rank)
    }

    /// The summary lines that explain the local failed rank: what it wrote to its error
    /// file (`error_dir`: the absolute log dir), else its last lines (`log_dir` as given).
    pub fn detail(&self, rank: usize, log_dir: &Path, error_dir: &Path) -> String {
        let path = error_file::path(error_dir, rank);
        match error_file::read(&path) {
            Found::Report(e) => e.render(rank, &path),
            Found::Missing => self.tail(rank, log_dir),
            Found::Malformed(why) => {
                format!("segzoo-launch: rank {rank}'s error file {} is malformed ({why})\n", path.display())
                    + &self.tail(rank, log_dir)
            }
        }
    }

    fn tail(&self, rank: usize, log_dir: &Path) -> String {
        let mut text = format!("segzoo-launch: last lines of {}:\n", log_path(log_dir, rank).display());
        let tail = self.rank(rank).map(|r| r.tail.as_slice()).unwrap_or_default();
        if tail.is_empty() {
            text += "    (no output)\n";
        }
        for line in tail {
            text += &format!("    {line}\n");
        }
        text
    }

    /// How this server's ranks ended, printed after a failed job's summary. With one server
    /// (`server` is `None`) it is the launcher's historical "the others" line, after a
    /// failed rank only; with several, every local rank except the root cause's.
    pub fn local_line(&self, server: Option<&str>, root_rank: Option<usize>) -> Option<String> {
        let skip = match (server, self.cause) {
            (None, Cause::RankFailed { rank, .. }) => Some(rank),
            (None, _) => return None,
            (Some(_), _) => root_rank,
        };
        let others: Vec<String> =
            self.ranks.iter().filter(|r| Some(r.rank) != skip).map(|r| format!("rank {}: {}", r.rank, r.end)).collect();
        if others.is_empty() {
            return None;
        }
        Some(match server {
            None => format!("segzoo-launch: the others: {}\n", others.join(", ")),
            Some(id) => format!("segzoo-launch: on this server ({id}): {}\n", others.join(", ")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cause::JobCause;

    fn rank(rank: usize, end: End, stopped: bool, tail: &[&str]) -> RankEnd {
        RankEnd { rank, device_id: rank as u32, end, stopped, tail: tail.iter().map(|l| l.to_string()).collect() }
    }

    fn report(cause: Cause, ranks: Vec<RankEnd>) -> RunReport {
        RunReport { restarts: 0, ranks, cause }
    }

    fn three_ranks() -> RunReport {
        report(
            Cause::RankFailed { rank: 3, end: End::Code(7) },
            vec![
                rank(2, End::Signal(9), true, &[]),
                rank(3, End::Code(7), false, &["loading shard", "boom"]),
                rank(4, End::Code(143), true, &[]),
            ],
        )
    }

    #[test]
    fn one_servers_summary_names_the_failed_rank_its_last_lines_and_the_others() {
        let dir = tempfile::tempdir().expect("tempdir");
        let r = three_ranks();
        let cause = JobCause::Rank { server: "127.0.0.1".into(), rank: 3, device: 3, end: End::Code(7) };
        let text = cause.headline(false)
            + &r.detail(3, Path::new("lg"), dir.path())
            + &r.local_line(None, Some(3)).expect("others");
        assert_eq!(
            text,
            "segzoo-launch: job failed: rank 3 (device 3) exit code 7\n\
             segzoo-launch: last lines of lg/rank_3.log:\n    loading shard\n    boom\n\
             segzoo-launch: the others: rank 2: killed by SIGKILL (9), rank 4: exit code 143\n"
        );
        let alone = report(Cause::RankFailed { rank: 0, end: End::Code(1) }, vec![rank(0, End::Code(1), false, &[])]);
        assert_eq!(
            alone.detail(0, Path::new("lg"), dir.path()),
            "segzoo-launch: last lines of lg/rank_0.log:\n    (no output)\n"
        );
        assert_eq!(alone.local_line(None, Some(0)), None);
    }

    #[test]
    fn an_error_file_replaces_the_last_lines_and_a_malformed_one_falls_back_to_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let r = three_ranks();
        let path = error_file::path(dir.path(), 3);
        std::fs::write(&path, r#"{"message": "bad shard", "chain": ["checksum mismatch"]}"#).expect("write");
        assert_eq!(
            r.detail(3, Path::new("lg"), dir.path()),
            format!(
                "segzoo-launch: error reported by rank 3 ({}): bad shard\n    caused by: checksum mismatch\n",
                path.display()
            )
        );
        std::fs::write(&path, "{ half").expect("write");
        let text = r.detail(3, Path::new("lg"), dir.path());
        assert!(
            text.starts_with(&format!("segzoo-launch: rank 3's error file {} is malformed (", path.display())),
            "{text}"
        );
        assert!(text.ends_with("segzoo-launch: last lines of lg/rank_3.log:\n    loading shard\n    boom\n"), "{text}");
    }

    #[test]
    fn with_several_servers_the_local_line_names_the_server_and_skips_only_the_root_rank() {
        let r = three_ranks();
        assert_eq!(
            r.local_line(Some("127.0.0.2"), Some(3)).as_deref(),
            Some("segzoo-launch: on this server (127.0.0.2): rank 2: killed by SIGKILL (9), rank 4: exit code 143\n")
        );
        let stopped = report(Cause::Stopped, vec![rank(0, End::Code(143), true, &[])]);
        assert_eq!(
            stopped.local_line(Some("127.0.0.1"), None).as_deref(),
            Some("segzoo-launch: on this server (127.0.0.1): rank 0: exit code 143\n")
        );
        // One server: only after a rank's failure, as before.
        assert_eq!(report(Cause::Signalled(Signal::SIGTERM), r.ranks.clone()).local_line(None, None), None);
    }
}
