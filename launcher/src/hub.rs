//! The job's one decision maker: [`Hub`], a state machine with no sockets and no clock. It
//! hears every server's [`Report`]s (the leader's own server through in-process channels,
//! the others over TCP; a one-server job has only the first) and the loss of a server, and
//! answers with the [`Command`]s each server must follow. Every server starts, stops and
//! restarts together, and every launcher ends with the same code and summary.
//!
//! Rules: the first cause of a generation is the root cause and stops every server; once
//! every server has ended the generation, it finishes with success (no cause), restarts
//! every server (a worker's failure with restarts left and no server lost), or finishes
//! with the root cause's code and summary. A signal to any launcher wins over a failure:
//! no restart, 128 + signal everywhere.
use crate::cause::JobCause;
use serde::{Deserialize, Serialize};

/// From a server's launcher to the hub.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Report {
    /// This server's first cause of the generation: sent at once, before its workers have
    /// all stopped, so that the others stop early too.
    Failed { generation: u32, cause: JobCause },
    /// Every local worker of the generation has exited. `ok`: all exited 0 on their own.
    /// `detail`: the summary lines of this server's own failed rank (its error file or
    /// last log lines), which only that server can read.
    Ended { generation: u32, ok: bool, detail: Option<String> },
}

/// From the hub to a server's launcher.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Start every local worker with `SEGZOO_LAUNCH_RESTART=<generation>`.
    Start { generation: u32 },
    /// Stop the local workers: the job is ending or restarting because of `cause`.
    Stop { generation: u32, cause: JobCause },
    /// The job is over: print `summary` and exit with `code`.
    Finish { code: u8, summary: String },
}

/// Where the job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for every server to join; nothing has started.
    Joining,
    Running,
    Finished,
}

/// What the hub knows of one server in the current generation.
#[derive(Debug, Clone, Default)]
struct ServerState {
    ended: bool,
    ok: bool,
    detail: Option<String>,
    /// Why it was lost; a lost server gets no more commands and never comes back.
    lost: Option<String>,
}

pub struct Hub {
    /// Every server's id, in table order: the index is the server's number everywhere.
    ids: Vec<String>,
    max_restarts: u32,
    phase: Phase,
    generation: u32,
    servers: Vec<ServerState>,
    /// The generation's first cause and the server it came from.
    root: Option<(usize, JobCause)>,
    /// The first signal a launcher received, which decides the end whatever came first.
    signal: Option<JobCause>,
}

/// Commands to send: (server index, command).
pub type Out = Vec<(usize, Command)>;

impl Hub {
    pub fn new(ids: Vec<String>, max_restarts: u32) -> Hub {
        let servers = vec![ServerState::default(); ids.len()];
        Hub { ids, max_restarts, phase: Phase::Joining, generation: 0, servers, root: None, signal: None }
    }

    pub fn finished(&self) -> bool {
        self.phase == Phase::Finished
    }

    fn multi(&self) -> bool {
        self.ids.len() > 1
    }

    /// Every server has joined: start generation 0 everywhere.
    pub fn start(&mut self) -> Out {
        if self.phase != Phase::Joining {
            return Vec::new();
        }
        self.phase = Phase::Running;
        self.to_all(Command::Start { generation: 0 })
    }

    /// End the job before it started (the join timeout ran out).
    pub fn abandon(&mut self, cause: JobCause) -> Out {
        if self.phase != Phase::Joining {
            return Vec::new();
        }
        self.finish(cause.exit_code(), cause.headline(self.multi()))
    }

    pub fn report(&mut self, server: usize, report: Report) -> Out {
        match report {
            Report::Failed { generation, cause } => self.failed(server, generation, cause),
            Report::Ended { generation, ok, detail } => self.ended(server, generation, ok, detail),
        }
    }

    /// The server's connection closed or went silent (or the leader's own side stopped).
    pub fn lost(&mut self, server: usize, reason: String) -> Out {
        if self.phase == Phase::Finished || self.servers[server].lost.is_some() {
            return Vec::new();
        }
        self.servers[server].lost = Some(reason.clone());
        let cause = JobCause::Lost { server: self.ids[server].clone(), reason };
        if self.phase == Phase::Joining {
            return self.finish(cause.exit_code(), cause.headline(self.multi()));
        }
        let s = &mut self.servers[server];
        s.ended = true;
        s.ok = false;
        let mut out = self.set_root(server, cause);
        out.extend(self.decide());
        out
    }

    fn failed(&mut self, server: usize, generation: u32, cause: JobCause) -> Out {
        match self.phase {
            Phase::Finished => Vec::new(),
            // Before the start nothing runs that could be stopped: end at once.
            Phase::Joining => self.finish(cause.exit_code(), cause.headline(self.multi())),
            Phase::Running if generation != self.generation => Vec::new(),
            Phase::Running => {
                if matches!(cause, JobCause::Signal { .. }) && self.signal.is_none() {
                    self.signal = Some(cause.clone());
                }
                self.set_root(server, cause)
            }
        }
    }

    /// The first cause of the generation stops every server; later ones change nothing.
    fn set_root(&mut self, server: usize, cause: JobCause) -> Out {
        if self.root.is_some() {
            return Vec::new();
        }
        self.root = Some((server, cause.clone()));
        self.to_all(Command::Stop { generation: self.generation, cause })
    }

    fn ended(&mut self, server: usize, generation: u32, ok: bool, detail: Option<String>) -> Out {
        let s = &mut self.servers[server];
        if self.phase != Phase::Running || generation != self.generation || s.ended {
            return Vec::new();
        }
        s.ended = true;
        s.ok = ok;
        s.detail = detail;
        self.decide()
    }

    /// Once every server has ended the generation: finish or restart.
    fn decide(&mut self) -> Out {
        if !self.servers.iter().all(|s| s.ended) {
            return Vec::new();
        }
        let lost_any = self.servers.iter().any(|s| s.lost.is_some());
        let Some((root_server, root)) = self.root.clone() else {
            if let Some(i) = self.servers.iter().position(|s| !s.ok) {
                // Cannot happen with this launcher: a server that did not succeed reports why.
                let summary = format!("segzoo-launch: job failed: server {} failed without a cause\n", self.ids[i]);
                return self.finish(1, summary);
            }
            return self.finish(0, String::new());
        };
        let cause = self.signal.clone().unwrap_or(root);
        if cause.restartable() && !lost_any && self.generation < self.max_restarts {
            return self.restart();
        }
        let mut summary = cause.headline(self.multi());
        if matches!(cause, JobCause::Rank { .. }) {
            summary += self.servers[root_server].detail.as_deref().unwrap_or_default();
        }
        for (i, s) in self.servers.iter().enumerate() {
            // The root cause already names a server lost because of it.
            let named = i == root_server && matches!(cause, JobCause::Lost { .. } | JobCause::Launcher { .. });
            if let (Some(reason), false) = (&s.lost, named) {
                summary += &format!("segzoo-launch: also lost server {} ({reason})\n", self.ids[i]);
            }
        }
        self.finish(cause.exit_code(), summary)
    }

    fn restart(&mut self) -> Out {
        self.generation += 1;
        self.root = None;
        self.servers.iter_mut().for_each(|s| *s = ServerState::default());
        self.to_all(Command::Start { generation: self.generation })
    }

    fn finish(&mut self, code: u8, summary: String) -> Out {
        self.phase = Phase::Finished;
        self.to_all(Command::Finish { code, summary })
    }

    /// `command` for every server not lost.
    fn to_all(&self, command: Command) -> Out {
        (0..self.ids.len()).filter(|&i| self.servers[i].lost.is_none()).map(|i| (i, command.clone())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::worker::End;

    fn hub(servers: usize, max_restarts: u32) -> Hub {
        let mut h = Hub::new((1..=servers).map(|i| format!("10.0.0.{i}")).collect(), max_restarts);
        assert_eq!(h.start(), (0..servers).map(|i| (i, Command::Start { generation: 0 })).collect::<Vec<_>>());
        h
    }

    fn rank_failed(server: usize, rank: usize, code: i32) -> JobCause {
        JobCause::Rank { server: format!("10.0.0.{}", server + 1), rank, device: 0, end: End::Code(code) }
    }

    fn failed(generation: u32, cause: JobCause) -> Report {
        Report::Failed { generation, cause }
    }

    fn ended(generation: u32, ok: bool, detail: Option<&str>) -> Report {
        Report::Ended { generation, ok, detail: detail.map(str::to_string) }
    }

    fn stop_all(servers: &[usize], generation: u32, cause: &JobCause) -> Out {
        servers.iter().map(|&i| (i, Command::Stop { generation, cause: cause.clone() })).collect()
    }

    fn finish_all(servers: &[usize], code: u8, summary: &str) -> Out {
        servers.iter().map(|&i| (i, Command::Finish { code, summary: summary.to_string() })).collect()
    }

    #[test]
    fn success_only_when_every_server_ended_ok() {
        let mut h = hub(3, 0);
        assert_eq!(h.report(0, ended(0, true, None)), vec![]);
        assert_eq!(h.report(2, ended(0, true, None)), vec![]);
        // A repeated report counts once.
        assert_eq!(h.report(2, ended(0, true, None)), vec![]);
        assert!(!h.finished());
        assert_eq!(h.report(1, ended(0, true, None)), finish_all(&[0, 1, 2], 0, ""));
        assert!(h.finished());
    }

    #[test]
    fn the_first_failure_wins_and_stops_every_server() {
        let mut h = hub(2, 0);
        let first = rank_failed(1, 3, 7);
        assert_eq!(h.report(1, failed(0, first.clone())), stop_all(&[0, 1], 0, &first));
        // A later failure elsewhere is a consequence: no second stop, not the cause.
        assert_eq!(h.report(0, failed(0, rank_failed(0, 0, 1))), vec![]);
        assert_eq!(h.report(0, ended(0, false, Some("not the root\n"))), vec![]);
        let summary = "segzoo-launch: job failed: server 10.0.0.2, rank 3 (device 0) exit code 7\nlast lines\n";
        assert_eq!(h.report(1, ended(0, false, Some("last lines\n"))), finish_all(&[0, 1], 7, summary));
    }

    #[test]
    fn a_restart_needs_every_server_ended_and_restarts_left() {
        let mut h = hub(2, 1);
        let cause = rank_failed(1, 2, 3);
        h.report(1, failed(0, cause.clone()));
        assert_eq!(h.report(1, ended(0, false, None)), vec![], "server 0 has not ended");
        assert_eq!(
            h.report(0, ended(0, false, None)),
            vec![(0, Command::Start { generation: 1 }), (1, Command::Start { generation: 1 })]
        );
        // Reports of the old generation are stale.
        assert_eq!(h.report(0, failed(0, rank_failed(0, 0, 1))), vec![]);
        assert_eq!(h.report(0, ended(0, false, None)), vec![]);
        // The same failure again: no restarts left.
        assert_eq!(h.report(1, failed(1, cause.clone())), stop_all(&[0, 1], 1, &cause));
        h.report(0, ended(1, false, None));
        let out = h.report(1, ended(1, false, Some("why\n")));
        assert_eq!(out.len(), 2);
        assert!(matches!(&out[0].1, Command::Finish { code: 3, .. }), "{out:?}");
    }

    #[test]
    fn a_generation_that_succeeds_after_a_restart_finishes_0() {
        let mut h = hub(2, 3);
        h.report(0, failed(0, rank_failed(0, 1, 1)));
        h.report(0, ended(0, false, None));
        h.report(1, ended(0, false, None));
        h.report(0, ended(1, true, None));
        assert_eq!(h.report(1, ended(1, true, None)), finish_all(&[0, 1], 0, ""));
    }

    #[test]
    fn a_lost_server_stops_the_others_and_finishes_non_zero_without_restart() {
        let mut h = hub(3, 5);
        let lost = JobCause::Lost { server: "10.0.0.3".into(), reason: "connection closed".into() };
        assert_eq!(h.lost(2, "connection closed".into()), stop_all(&[0, 1], 0, &lost));
        // Lost once is lost: nothing more for it, even if it is reported again.
        assert_eq!(h.lost(2, "again".into()), vec![]);
        h.report(0, ended(0, false, None));
        let summary = "segzoo-launch: job failed: lost server 10.0.0.3 (connection closed)\n";
        assert_eq!(h.report(1, ended(0, false, None)), finish_all(&[0, 1], 1, summary));
    }

    #[test]
    fn a_server_lost_after_a_failure_prevents_the_restart_and_is_named() {
        let mut h = hub(2, 5);
        h.report(0, failed(0, rank_failed(0, 1, 4)));
        h.report(0, ended(0, false, Some("detail\n")));
        let out = h.lost(1, "no heartbeat for 3 s".into());
        let summary = "segzoo-launch: job failed: server 10.0.0.1, rank 1 (device 0) exit code 4\ndetail\n\
                       segzoo-launch: also lost server 10.0.0.2 (no heartbeat for 3 s)\n";
        assert_eq!(out, finish_all(&[0], 4, summary));
    }

    #[test]
    fn a_signal_anywhere_wins_over_a_failure_and_is_never_restarted() {
        let mut h = hub(2, 5);
        let failure = rank_failed(0, 0, 7);
        assert_eq!(h.report(0, failed(0, failure.clone())), stop_all(&[0, 1], 0, &failure));
        let sig = JobCause::Signal { server: "10.0.0.2".into(), signal: 2 };
        assert_eq!(h.report(1, failed(0, sig.clone())), vec![], "every server is stopping already");
        h.report(0, ended(0, false, None));
        assert_eq!(h.report(1, ended(0, false, None)), finish_all(&[0, 1], 130, &sig.headline(true)));
    }

    #[test]
    fn before_the_start_a_signal_or_a_loss_finishes_at_once_and_the_join_timeout_too() {
        let mut h = Hub::new(vec!["a".into(), "b".into()], 0);
        let sig = JobCause::Signal { server: "a".into(), signal: 15 };
        assert_eq!(h.report(0, failed(0, sig.clone())), finish_all(&[0, 1], 143, &sig.headline(true)));
        assert_eq!(h.start(), vec![], "finished jobs do not start");

        let mut h = Hub::new(vec!["a".into(), "b".into()], 0);
        let out = h.lost(1, "connection closed".into());
        assert_eq!(out, finish_all(&[0], 1, "segzoo-launch: job failed: lost server b (connection closed)\n"));

        let mut h = Hub::new(vec!["a".into(), "b".into()], 0);
        let late = JobCause::NotJoined { missing: vec!["b".into()], waited_ms: 300_000 };
        assert_eq!(h.abandon(late.clone()), finish_all(&[0, 1], 1, &late.headline(true)));
    }

    #[test]
    fn one_server_keeps_the_launchers_historical_summary() {
        let mut h = hub(1, 0);
        let cause = JobCause::Rank { server: "127.0.0.1".into(), rank: 3, device: 3, end: End::Code(7) };
        h.report(0, failed(0, cause));
        let out = h.report(0, ended(0, false, Some("segzoo-launch: last lines of lg/rank_3.log:\n    boom\n")));
        let summary = "segzoo-launch: job failed: rank 3 (device 3) exit code 7\nsegzoo-launch: last lines of lg/rank_3.log:\n    boom\n";
        assert_eq!(out, finish_all(&[0], 7, summary));
    }
}
