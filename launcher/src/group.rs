//! The state machine of one generation of this server's workers, as torchrun's and the
//! DeepSpeed launcher's: events in (a worker exited, a signal, the grace period over, a
//! stop from the hub), signals to send out (fail-fast SIGTERM, then SIGKILL), and the
//! generation's report once every worker has exited. `supervise.rs` drives it with real
//! processes; here it is tested without any.
use crate::error::Error;
use crate::plan::Worker;
use crate::report::{Cause, RankEnd, RunReport};
use crate::worker::{self, End, Tail, WorkerState};
use nix::sys::signal::Signal;
use std::time::Duration;
use tokio::time::Instant;

/// What can happen to a generation's workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// The worker at this index of the group ended.
    Exited { index: usize, end: End },
    /// The launcher received SIGINT or SIGTERM.
    Signal(Signal),
    /// The grace period after the first SIGTERM/SIGINT ran out.
    GraceOver,
    /// Stop every worker: the hub said so (something failed elsewhere), or it was lost.
    Stop,
}

/// One generation's workers and what has happened to them.
pub struct Group {
    slots: Vec<Slot>,
    /// The first worker to fail on its own, and how.
    failed: Option<(usize, End)>,
    /// The first signal the launcher received.
    signalled: Option<Signal>,
    /// Stopped from outside: its workers' ends are consequences, not failures.
    halted: bool,
    /// When workers still running get SIGKILL.
    deadline: Option<Instant>,
    grace: Duration,
}

struct Slot {
    worker: Worker,
    state: WorkerState,
    tail: Tail,
}

impl Group {
    pub fn new(grace: Duration) -> Group {
        Group { slots: Vec::new(), failed: None, signalled: None, halted: false, deadline: None, grace }
    }

    pub fn push(&mut self, worker: Worker, pgid: worker::Pgid, tail: Tail) {
        self.slots.push(Slot { worker, state: WorkerState::Running { pgid }, tail });
    }

    #[cfg(test)]
    pub fn state(&self, index: usize) -> WorkerState {
        self.slots[index].state
    }

    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    pub fn worker(&self, index: usize) -> &Worker {
        &self.slots[index].worker
    }

    /// How many workers the generation has.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The first worker to fail on its own, and how.
    pub fn failed(&self) -> Option<(usize, End)> {
        self.failed
    }

    /// The first signal the launcher received.
    pub fn signalled(&self) -> Option<Signal> {
        self.signalled
    }

    /// Apply one event; returns the signal every worker not yet exited must now get (the
    /// caller sends it with [`Group::signal_live`]).
    pub fn apply(&mut self, event: Event, now: Instant) -> Option<Signal> {
        match event {
            Event::Exited { index, end } => self.on_exit(index, end, now),
            Event::Signal(sig) => Some(self.on_signal(sig, now)),
            Event::GraceOver => {
                eprintln!("segzoo-launch: grace period over; killing the workers still running");
                self.deadline = None;
                Some(self.stopping(Signal::SIGKILL))
            }
            Event::Stop => self.on_stop(now),
        }
    }

    fn on_exit(&mut self, index: usize, end: End, now: Instant) -> Option<Signal> {
        let slot = &mut self.slots[index];
        let stopped = matches!(slot.state, WorkerState::Stopping { .. });
        slot.state = WorkerState::Exited { end, stopped };
        // Only a failure of its own, before any stop, is the root cause.
        if end.ok() || stopped || self.failed.is_some() || self.signalled.is_some() || self.halted {
            return None;
        }
        self.failed = Some((index, end));
        let others = if self.live().next().is_some() { "; stopping the other workers" } else { "" };
        eprintln!("segzoo-launch: rank {} failed ({end}){others}", self.slots[index].worker.rank);
        self.deadline = Some(now + self.grace);
        Some(self.stopping(Signal::SIGTERM))
    }

    fn on_signal(&mut self, sig: Signal, now: Instant) -> Signal {
        // A second Ctrl-C does not wait for the grace period.
        let send = if sig == Signal::SIGINT && self.signalled == Some(Signal::SIGINT) { Signal::SIGKILL } else { sig };
        self.signalled.get_or_insert(sig);
        self.deadline.get_or_insert(now + self.grace);
        self.stopping(send)
    }

    /// A stop from outside, as fail-fast does it; nothing new when the workers are being
    /// stopped already or have all exited.
    fn on_stop(&mut self, now: Instant) -> Option<Signal> {
        let already = self.failed.is_some() || self.signalled.is_some() || self.halted;
        self.halted = true;
        if already || self.live().next().is_none() {
            return None;
        }
        self.deadline = Some(now + self.grace);
        Some(self.stopping(Signal::SIGTERM))
    }

    /// Mark every live worker as being stopped with `sig`, and return `sig`.
    fn stopping(&mut self, sig: Signal) -> Signal {
        for slot in &mut self.slots {
            if let Some(pgid) = slot.state.live_pgid() {
                slot.state = WorkerState::Stopping { pgid };
            }
        }
        sig
    }

    fn live(&self) -> impl Iterator<Item = worker::Pgid> + '_ {
        self.slots.iter().filter_map(|s| s.state.live_pgid())
    }

    /// Send `sig` to the process group of every worker that has not exited.
    pub fn signal_live(&self, sig: Signal) {
        self.live().for_each(|pgid| pgid.signal(sig));
    }

    /// Pass `sig` on to every worker that has not exited (the process, not its group).
    pub fn forward(&self, sig: Signal) {
        self.live().for_each(|pgid| pgid.signal_worker(sig));
    }

    /// The generation's result, once every worker has exited.
    pub fn into_report(self, restarts: u32) -> Result<RunReport, Error> {
        let cause = match (self.signalled, self.failed) {
            (Some(sig), _) => Cause::Signalled(sig),
            (None, Some((index, end))) => Cause::RankFailed { rank: self.slots[index].worker.rank, end },
            (None, None) if self.halted => Cause::Stopped,
            (None, None) => Cause::AllSucceeded,
        };
        let ranks = self.slots.into_iter().map(Slot::into_rank_end).collect::<Result<_, _>>()?;
        Ok(RunReport { restarts, ranks, cause })
    }
}

impl Slot {
    fn into_rank_end(self) -> Result<RankEnd, Error> {
        let WorkerState::Exited { end, stopped } = self.state else {
            return Err(Error::Internal(format!("rank {} was still running when supervision ended", self.worker.rank)));
        };
        let tail = worker::tail_lines(&self.tail);
        Ok(RankEnd { rank: self.worker.rank, device_id: self.worker.device_id, end, stopped, tail })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::worker::Pgid;

    const GRACE: Duration = Duration::from_secs(10);

    /// A group of `n` running workers. The pgids are never signalled: `apply` only decides.
    fn group(n: usize) -> Group {
        let mut g = Group::new(GRACE);
        for rank in 0..n {
            let worker = Worker { rank, local_rank: rank, device_id: rank as u32, env: vec![] };
            let pgid = Pgid::from_child_id(Some(100_000 + rank as u32)).expect("valid");
            g.push(worker, pgid, Tail::default());
        }
        g
    }

    fn exited(index: usize, end: End) -> Event {
        Event::Exited { index, end }
    }

    #[test]
    fn all_workers_exiting_0_is_success_and_signals_no_one() {
        let mut g = group(2);
        let now = Instant::now();
        assert_eq!(g.apply(exited(1, End::Code(0)), now), None);
        assert_eq!(g.apply(exited(0, End::Code(0)), now), None);
        let report = g.into_report(0).expect("all exited");
        assert_eq!(report.cause, Cause::AllSucceeded);
        assert_eq!(report.ranks.iter().map(|r| r.rank).collect::<Vec<_>>(), vec![0, 1]);
    }

    #[test]
    fn the_first_failure_is_the_root_cause_and_stops_the_others_with_sigterm() {
        let mut g = group(3);
        let now = Instant::now();
        assert_eq!(g.apply(exited(1, End::Code(7)), now), Some(Signal::SIGTERM));
        assert_eq!(g.deadline(), Some(now + GRACE));
        assert!(matches!(g.state(0), WorkerState::Stopping { .. }));
        assert!(matches!(g.state(2), WorkerState::Stopping { .. }));
        // The others' ends are consequences, not new causes.
        assert_eq!(g.apply(exited(0, End::Code(143)), now), None);
        assert_eq!(g.apply(exited(2, End::Signal(15)), now), None);
        let report = g.into_report(0).expect("all exited");
        assert_eq!(report.cause, Cause::RankFailed { rank: 1, end: End::Code(7) });
        let stopped: Vec<bool> = report.ranks.iter().map(|r| r.stopped).collect();
        assert_eq!(stopped, vec![true, false, true]);
    }

    #[test]
    fn a_killed_worker_is_the_cause_with_its_signal() {
        let mut g = group(1);
        assert_eq!(g.apply(exited(0, End::Signal(9)), Instant::now()), Some(Signal::SIGTERM));
        assert_eq!(g.into_report(0).expect("exited").cause, Cause::RankFailed { rank: 0, end: End::Signal(9) });
    }

    #[test]
    fn the_grace_period_ends_with_sigkill_for_those_still_running() {
        let mut g = group(2);
        let now = Instant::now();
        g.apply(exited(0, End::Code(2)), now);
        assert_eq!(g.apply(Event::GraceOver, now + GRACE), Some(Signal::SIGKILL));
        assert_eq!(g.deadline(), None);
        g.apply(exited(1, End::Signal(9)), now + GRACE);
        let report = g.into_report(0).expect("exited");
        assert_eq!(report.cause, Cause::RankFailed { rank: 0, end: End::Code(2) });
        assert_eq!(report.rank(1).map(|r| (r.end, r.stopped)), Some((End::Signal(9), true)));
    }

    #[test]
    fn a_signal_to_the_launcher_is_forwarded_and_is_the_cause() {
        let mut g = group(2);
        let now = Instant::now();
        assert_eq!(g.apply(Event::Signal(Signal::SIGTERM), now), Some(Signal::SIGTERM));
        // Workers ending cleanly on the forwarded signal still make the launcher exit 143.
        assert_eq!(g.apply(exited(0, End::Code(0)), now), None);
        assert_eq!(g.apply(exited(1, End::Code(1)), now), None);
        let report = g.into_report(0).expect("exited");
        assert_eq!(report.cause, Cause::Signalled(Signal::SIGTERM));
    }

    #[test]
    fn a_second_sigint_kills_at_once() {
        let mut g = group(1);
        let now = Instant::now();
        assert_eq!(g.apply(Event::Signal(Signal::SIGINT), now), Some(Signal::SIGINT));
        assert_eq!(g.apply(Event::Signal(Signal::SIGINT), now), Some(Signal::SIGKILL));
        g.apply(exited(0, End::Signal(9)), now);
        assert_eq!(g.into_report(0).expect("exited").cause, Cause::Signalled(Signal::SIGINT));
    }

    #[test]
    fn a_signal_after_a_failure_is_the_cause() {
        let mut g = group(2);
        let now = Instant::now();
        g.apply(exited(0, End::Code(7)), now);
        assert_eq!(g.apply(Event::Signal(Signal::SIGINT), now), Some(Signal::SIGINT));
        g.apply(exited(1, End::Code(130)), now);
        assert_eq!(g.into_report(0).expect("exited").cause, Cause::Signalled(Signal::SIGINT));
    }

    #[test]
    fn a_stop_from_outside_terms_the_workers_who_then_count_as_stopped_not_failed() {
        let mut g = group(2);
        let now = Instant::now();
        assert_eq!(g.apply(Event::Stop, now), Some(Signal::SIGTERM));
        assert_eq!(g.deadline(), Some(now + GRACE));
        assert!(matches!(g.state(0), WorkerState::Stopping { .. }));
        // Exiting non-zero on the SIGTERM is no failure of their own.
        assert_eq!(g.apply(exited(0, End::Code(143)), now), None);
        assert_eq!(g.apply(exited(1, End::Signal(15)), now), None);
        let report = g.into_report(0).expect("exited");
        assert_eq!(report.cause, Cause::Stopped);
        assert!(report.ranks.iter().all(|r| r.stopped));
    }

    #[test]
    fn a_stop_after_a_local_failure_or_signal_sends_nothing_new() {
        let now = Instant::now();
        let mut g = group(2);
        g.apply(exited(0, End::Code(7)), now);
        assert_eq!(g.apply(Event::Stop, now), None);
        g.apply(exited(1, End::Code(143)), now);
        assert_eq!(g.into_report(0).expect("exited").cause, Cause::RankFailed { rank: 0, end: End::Code(7) });

        let mut g = group(1);
        g.apply(Event::Signal(Signal::SIGINT), now);
        assert_eq!(g.apply(Event::Stop, now), None, "no SIGTERM on top of the forwarded SIGINT");

        let mut g = group(1);
        g.apply(exited(0, End::Code(0)), now);
        assert_eq!(g.apply(Event::Stop, now), None, "no worker left to stop");
        assert_eq!(g.into_report(0).expect("exited").cause, Cause::Stopped);
    }

    #[test]
    fn a_report_while_a_worker_runs_is_an_internal_error() {
        let g = group(1);
        assert!(matches!(g.into_report(0), Err(Error::Internal(_))));
    }
}
