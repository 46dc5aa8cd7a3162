//! Why a job (every server's workers) stops, as the hub decides it once for all servers:
//! [`JobCause`] crosses the network, and gives the job's exit code, the one-line
//! description used in progress messages and the first line of the summary that every
//! launcher prints alike.
use crate::worker::End;
use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobCause {
    /// A worker failed on its own (it was not being stopped by a launcher).
    Rank { server: String, rank: usize, device: u32, end: End },
    /// A launcher received SIGINT or SIGTERM (this number) and forwarded it to its workers.
    Signal { server: String, signal: i32 },
    /// The leader lost a follower: its connection closed or it was silent too long.
    Lost { server: String, reason: String },
    /// A launcher itself failed (it could not start a worker, …): the message says how.
    Launcher { server: String, message: String },
    /// Not every server joined within the join timeout.
    NotJoined { missing: Vec<String>, waited_ms: u64 },
    /// A server of the table joined a running job: the generation checkpoints and stops,
    /// and the next one has the larger world.
    Joined { server: String },
}

impl JobCause {
    /// Only a worker's failure is worth a restart: a signal is someone's decision, a lost
    /// server or a failed launcher would fail again.
    pub fn restartable(&self) -> bool {
        matches!(self, JobCause::Rank { .. })
    }

    /// The exit code of every launcher: the worker's code (128 + signal when it was
    /// killed), 128 + the signal a launcher received, or 1 for the group's own failures.
    pub fn exit_code(&self) -> u8 {
        let code = match self {
            JobCause::Rank { end, .. } => end.exit_code(),
            JobCause::Signal { signal, .. } => 128 + signal,
            JobCause::Lost { .. }
            | JobCause::Launcher { .. }
            | JobCause::NotJoined { .. }
            | JobCause::Joined { .. } => 1,
        };
        // A failure must never read as success; exit statuses are 8 bits.
        u8::try_from(code).ok().filter(|&c| c != 0).unwrap_or(1)
    }

    /// One line for progress messages ("…; restarting …"). `multi`: the table has more
    /// than one server, so servers are named.
    pub fn describe(&self, multi: bool) -> String {
        match self {
            JobCause::Rank { server, rank, end, .. } if multi => {
                format!("rank {rank} on server {server} failed ({end})")
            }
            JobCause::Rank { rank, end, .. } => format!("rank {rank} failed ({end})"),
            JobCause::Signal { server, signal } if multi => {
                format!("{} received on server {server}", signal_name(*signal))
            }
            JobCause::Signal { signal, .. } => format!("{} received", signal_name(*signal)),
            JobCause::Lost { server, reason } => format!("lost server {server} ({reason})"),
            JobCause::Launcher { server, message } => format!("the launcher on server {server} failed: {message}"),
            JobCause::Joined { server } => format!("server {server} joined; re-forming the job with it"),
            JobCause::NotJoined { missing, waited_ms } => {
                format!(
                    "not every server joined within {} s: missing {}",
                    *waited_ms as f64 / 1000.0,
                    missing.join(", ")
                )
            }
        }
    }

    /// The summary's first line. With one server it is the launcher's historical wording.
    pub fn headline(&self, multi: bool) -> String {
        match self {
            JobCause::Rank { server, rank, device, end } => {
                let at = if multi { format!("server {server}, ") } else { String::new() };
                format!("segzoo-launch: job failed: {at}rank {rank} (device {device}) {end}\n")
            }
            JobCause::Signal { signal, .. } if !multi => {
                format!("segzoo-launch: {} received; every worker was sent it and has ended\n", signal_name(*signal))
            }
            JobCause::Signal { .. } => format!(
                "segzoo-launch: job stopped: {}; every server's workers were stopped and have ended\n",
                self.describe(multi)
            ),
            _ => format!("segzoo-launch: job failed: {}\n", self.describe(multi)),
        }
    }
}

/// `SIGTERM`, or `signal 40` for a number without a name.
fn signal_name(signal: i32) -> String {
    Signal::try_from(signal).map_or_else(|_| format!("signal {signal}"), |s| s.as_str().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rank(end: End) -> JobCause {
        JobCause::Rank { server: "127.0.0.2".into(), rank: 3, device: 1, end }
    }

    #[test]
    fn exit_codes_follow_the_cause_and_a_failure_never_exits_0() {
        assert_eq!(rank(End::Code(7)).exit_code(), 7);
        assert_eq!(rank(End::Signal(9)).exit_code(), 137);
        for code in [0, 256, -1] {
            assert_eq!(rank(End::Code(code)).exit_code(), 1, "{code}");
        }
        assert_eq!(JobCause::Signal { server: "a".into(), signal: 2 }.exit_code(), 130);
        assert_eq!(JobCause::Signal { server: "a".into(), signal: 15 }.exit_code(), 143);
        assert_eq!(JobCause::Lost { server: "a".into(), reason: "connection closed".into() }.exit_code(), 1);
        assert_eq!(JobCause::NotJoined { missing: vec!["b".into()], waited_ms: 1000 }.exit_code(), 1);
    }

    #[test]
    fn the_headline_names_the_server_only_when_there_are_several() {
        assert_eq!(rank(End::Code(7)).headline(false), "segzoo-launch: job failed: rank 3 (device 1) exit code 7\n");
        assert_eq!(
            rank(End::Code(7)).headline(true),
            "segzoo-launch: job failed: server 127.0.0.2, rank 3 (device 1) exit code 7\n"
        );
        let sig = JobCause::Signal { server: "127.0.0.2".into(), signal: 15 };
        assert_eq!(sig.headline(false), "segzoo-launch: SIGTERM received; every worker was sent it and has ended\n");
        assert_eq!(
            sig.headline(true),
            "segzoo-launch: job stopped: SIGTERM received on server 127.0.0.2; every server's workers were stopped and have ended\n"
        );
        let lost = JobCause::Lost { server: "127.0.0.2".into(), reason: "no heartbeat for 3 s".into() };
        assert_eq!(lost.headline(true), "segzoo-launch: job failed: lost server 127.0.0.2 (no heartbeat for 3 s)\n");
        let late = JobCause::NotJoined { missing: vec!["b".into(), "c".into()], waited_ms: 1500 };
        assert_eq!(
            late.headline(true),
            "segzoo-launch: job failed: not every server joined within 1.5 s: missing b, c\n"
        );
    }

    #[test]
    fn only_a_workers_failure_is_restartable() {
        assert!(rank(End::Code(1)).restartable());
        assert!(!JobCause::Signal { server: "a".into(), signal: 2 }.restartable());
        assert!(!JobCause::Lost { server: "a".into(), reason: "x".into() }.restartable());
        assert!(!JobCause::Launcher { server: "a".into(), message: "x".into() }.restartable());
    }
}
