//! The typed result of a run: which ranks ran, how each ended, and the cause of the run's
//! end. The failure summary and the launcher's exit code are both computed from it.
use crate::worker::{log_path, End};
use nix::sys::signal::Signal;
use std::path::Path;

/// How one rank of the last attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RankEnd {
    pub rank: usize,
    pub device_id: u32,
    pub end: End,
    /// The launcher had signalled it (fail-fast, a forwarded signal) before it ended.
    pub stopped: bool,
    /// Its last lines of output.
    pub tail: Vec<String>,
}

/// Why the run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    AllSucceeded,
    /// The first worker to fail on its own (not stopped by the launcher), with no restarts
    /// left: the root cause; the others were stopped because of it.
    RankFailed {
        rank: usize,
        end: End,
    },
    /// The launcher received this signal and forwarded it to every worker.
    Signalled(Signal),
}

/// The outcome of [`crate::supervise::run`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunReport {
    /// Restarts of the local group before the last attempt.
    pub restarts: u32,
    /// Every local rank of the last attempt, in rank order.
    pub ranks: Vec<RankEnd>,
    pub cause: Cause,
}

impl RunReport {
    /// The launcher's exit code: 0, the failed worker's code (128 + signal when it was
    /// killed), or 128 + the signal the launcher received.
    pub fn exit_code(&self) -> u8 {
        let code = match self.cause {
            Cause::AllSucceeded => 0,
            Cause::RankFailed { end, .. } => end.exit_code(),
            Cause::Signalled(sig) => 128 + sig as i32,
        };
        // A failure must never read as success; exit statuses are 8 bits.
        match (self.cause, u8::try_from(code)) {
            (Cause::AllSucceeded, _) => 0,
            (_, Ok(c)) if c != 0 => c,
            _ => 1,
        }
    }

    pub fn rank(&self, rank: usize) -> Option<&RankEnd> {
        self.ranks.iter().find(|r| r.rank == rank)
    }

    /// What the launcher prints at the end: nothing after success; the failed rank, its last
    /// lines and how the others ended; or the signal that stopped the run.
    pub fn summary(&self, log_dir: &Path) -> Option<String> {
        match self.cause {
            Cause::AllSucceeded => None,
            Cause::Signalled(sig) => {
                Some(format!("segzoo-launch: {} received; every worker was sent it and has ended\n", sig.as_str()))
            }
            Cause::RankFailed { rank, end } => Some(self.failure(rank, end, log_dir)),
        }
    }

    fn failure(&self, rank: usize, end: End, log_dir: &Path) -> String {
        let failed = self.rank(rank);
        let device = failed.map_or_else(|| "?".into(), |r| r.device_id.to_string());
        let mut text = format!(
            "segzoo-launch: job failed: rank {rank} (device {device}) {end}\nsegzoo-launch: last lines of {}:\n",
            log_path(log_dir, rank).display()
        );
        let tail = failed.map(|r| r.tail.as_slice()).unwrap_or_default();
        if tail.is_empty() {
            text += "    (no output)\n";
        }
        for line in tail {
            text += &format!("    {line}\n");
        }
        let others: Vec<String> =
            self.ranks.iter().filter(|r| r.rank != rank).map(|r| format!("rank {}: {}", r.rank, r.end)).collect();
        if !others.is_empty() {
            text += &format!("segzoo-launch: the others: {}\n", others.join(", "));
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rank(rank: usize, end: End, stopped: bool, tail: &[&str]) -> RankEnd {
        RankEnd { rank, device_id: rank as u32, end, stopped, tail: tail.iter().map(|l| l.to_string()).collect() }
    }

    fn report(cause: Cause, ranks: Vec<RankEnd>) -> RunReport {
        RunReport { restarts: 0, ranks, cause }
    }

    #[test]
    fn exit_codes_follow_the_cause() {
        assert_eq!(report(Cause::AllSucceeded, vec![]).exit_code(), 0);
        assert_eq!(report(Cause::RankFailed { rank: 0, end: End::Code(7) }, vec![]).exit_code(), 7);
        assert_eq!(report(Cause::RankFailed { rank: 0, end: End::Signal(9) }, vec![]).exit_code(), 137);
        assert_eq!(report(Cause::Signalled(Signal::SIGINT), vec![]).exit_code(), 130);
        assert_eq!(report(Cause::Signalled(Signal::SIGTERM), vec![]).exit_code(), 143);
    }

    #[test]
    fn a_failure_never_exits_0_even_with_an_out_of_range_code() {
        for code in [0, 256, -1] {
            assert_eq!(report(Cause::RankFailed { rank: 0, end: End::Code(code) }, vec![]).exit_code(), 1, "{code}");
        }
    }

    #[test]
    fn the_summary_names_the_failed_rank_its_last_lines_and_the_others() {
        let r = report(
            Cause::RankFailed { rank: 3, end: End::Code(7) },
            vec![
                rank(2, End::Signal(9), true, &[]),
                rank(3, End::Code(7), false, &["loading shard", "boom"]),
                rank(4, End::Code(143), true, &[]),
            ],
        );
        assert_eq!(
            r.summary(Path::new("lg")).expect("a failure has a summary"),
            "segzoo-launch: job failed: rank 3 (device 3) exit code 7\n\
             segzoo-launch: last lines of lg/rank_3.log:\n    loading shard\n    boom\n\
             segzoo-launch: the others: rank 2: killed by SIGKILL (9), rank 4: exit code 143\n"
        );
        let alone = report(Cause::RankFailed { rank: 0, end: End::Code(1) }, vec![rank(0, End::Code(1), false, &[])]);
        let text = alone.summary(Path::new("lg")).expect("summary");
        assert!(text.contains("    (no output)\n") && !text.contains("the others"), "{text}");
    }

    #[test]
    fn success_has_no_summary_and_a_signal_says_which() {
        assert_eq!(report(Cause::AllSucceeded, vec![]).summary(Path::new("lg")), None);
        let text = report(Cause::Signalled(Signal::SIGTERM), vec![]).summary(Path::new("lg")).expect("summary");
        assert_eq!(text, "segzoo-launch: SIGTERM received; every worker was sent it and has ended\n");
    }
}
