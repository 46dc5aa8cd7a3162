//! Running the local workers and watching them, as torchrun and the DeepSpeed launcher
//! do: fail-fast (SIGTERM the others, SIGKILL after a grace period), signals to the
//! launcher forwarded to every worker, and whole-group restarts. [`Group`] is the state
//! machine (events in, signals to send out); [`run`] drives it with real processes and
//! returns a [`RunReport`].
use crate::error::Error;
use crate::plan::Worker;
use crate::report::{Cause, RankEnd, RunReport};
use crate::worker::{self, spawn_worker, Console, End, Tail, WorkerState};
use nix::sys::signal::Signal;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};
use tokio::task::JoinSet;
use tokio::time::Instant;

#[derive(Debug, Clone)]
pub struct Options {
    pub workers: Vec<Worker>,
    /// The worker command and its arguments (not empty).
    pub command: Vec<String>,
    pub log_dir: PathBuf,
    pub console: Console,
    pub max_restarts: u32,
    /// Between SIGTERM and SIGKILL.
    pub grace: Duration,
}

/// What can happen while a group runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Event {
    /// The worker at this index of the group ended.
    Exited { index: usize, end: End },
    /// The launcher received SIGINT or SIGTERM.
    Signal(Signal),
    /// The grace period after the first SIGTERM/SIGINT ran out.
    GraceOver,
}

/// One attempt's workers and what has happened to them.
struct Group {
    slots: Vec<Slot>,
    /// The first worker to fail on its own, and how.
    failed: Option<(usize, End)>,
    /// The first signal the launcher received.
    signalled: Option<Signal>,
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
        Group { slots: Vec::new(), failed: None, signalled: None, deadline: None, grace }
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
        }
    }

    fn on_exit(&mut self, index: usize, end: End, now: Instant) -> Option<Signal> {
        let slot = &mut self.slots[index];
        let stopped = matches!(slot.state, WorkerState::Stopping { .. });
        slot.state = WorkerState::Exited { end, stopped };
        // Only a failure of its own, before any stop, is the root cause.
        if end.ok() || stopped || self.failed.is_some() || self.signalled.is_some() {
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

    /// The attempt's result, once every worker has exited.
    pub fn into_report(self, restarts: u32) -> Result<RunReport, Error> {
        let cause = match (self.signalled, self.failed) {
            (Some(sig), _) => Cause::Signalled(sig),
            (None, Some((index, end))) => Cause::RankFailed { rank: self.slots[index].worker.rank, end },
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

/// The launcher's SIGINT and SIGTERM, caught for the whole run.
struct Signals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> Result<Signals, Error> {
        let catch = |kind| signal(kind).map_err(Error::io("cannot catch SIGINT/SIGTERM"));
        Ok(Signals { int: catch(SignalKind::interrupt())?, term: catch(SignalKind::terminate())? })
    }
}

type Waits = JoinSet<(usize, std::io::Result<ExitStatus>)>;

/// Run the workers until they all succeed, one fails with no restarts left, or the
/// launcher is signalled; the report says which.
pub async fn run(opts: &Options) -> Result<RunReport, Error> {
    std::fs::create_dir_all(&opts.log_dir).map_err(|source| Error::LogDir { path: opts.log_dir.clone(), source })?;
    let mut signals = Signals::install()?;
    let mut attempt = 0;
    loop {
        let report = run_attempt(opts, attempt, &mut signals).await?;
        let Cause::RankFailed { rank, end } = report.cause else { return Ok(report) };
        if attempt == opts.max_restarts {
            return Ok(report);
        }
        attempt += 1;
        eprintln!(
            "segzoo-launch: rank {rank} failed ({end}); restarting the local group (restart {attempt} of {})",
            opts.max_restarts
        );
    }
}

async fn run_attempt(opts: &Options, attempt: u32, signals: &mut Signals) -> Result<RunReport, Error> {
    let mut pumps = JoinSet::new();
    let (mut group, mut waits) = start_group(opts, attempt, &mut pumps)?;
    if let Err(e) = watch(&mut group, &mut waits, signals).await {
        // Leave nothing behind: the workers' children included.
        group.signal_live(Signal::SIGKILL);
        return Err(e);
    }
    // The pipes close when the workers (and their children) are gone; do not wait
    // forever on a straggler that inherited one.
    let _ = tokio::time::timeout(Duration::from_secs(5), async { while pumps.join_next().await.is_some() {} }).await;
    group.into_report(attempt)
}

/// Spawn every worker; if one cannot be started, kill those that were.
fn start_group(opts: &Options, attempt: u32, pumps: &mut JoinSet<()>) -> Result<(Group, Waits), Error> {
    let console_rank = opts.workers.iter().map(|w| w.rank).min();
    let mut group = Group::new(opts.grace);
    let mut waits = JoinSet::new();
    for (index, w) in opts.workers.iter().enumerate() {
        let echo = match opts.console {
            Console::All => true,
            Console::Rank0 => Some(w.rank) == console_rank,
            Console::None => false,
        };
        let launch = worker::Launch {
            command: &opts.command,
            worker: w,
            log_dir: &opts.log_dir,
            attempt,
            max_restarts: opts.max_restarts,
            echo,
        };
        let mut spawned = match spawn_worker(&launch, pumps) {
            Ok(s) => s,
            Err(e) => {
                group.signal_live(Signal::SIGKILL);
                return Err(e);
            }
        };
        waits.spawn(async move { (index, spawned.child.wait().await) });
        group.push(w.clone(), spawned.pgid, spawned.tail);
    }
    Ok((group, waits))
}

/// Feed events to the group, and send the signals it asks for, until every worker exited.
async fn watch(group: &mut Group, waits: &mut Waits, signals: &mut Signals) -> Result<(), Error> {
    while let Some(event) = next_event(group, waits, signals).await? {
        if let Some(sig) = group.apply(event, Instant::now()) {
            group.signal_live(sig);
        }
    }
    Ok(())
}

/// The next thing to happen; `None` once every worker has been waited for.
async fn next_event(group: &Group, waits: &mut Waits, signals: &mut Signals) -> Result<Option<Event>, Error> {
    // Without a deadline the timer branch is disabled; the instant is then never awaited.
    let kill_at = group.deadline().unwrap_or_else(Instant::now);
    tokio::select! {
        joined = waits.join_next() => {
            let Some(joined) = joined else { return Ok(None) };
            let (index, status) = joined.map_err(|e| Error::Internal(format!("waiting for a worker: {e}")))?;
            let rank = group.slots[index].worker.rank;
            let status = status.map_err(Error::io(format!("waiting for rank {rank}")))?;
            Ok(Some(Event::Exited { index, end: End::from_status(status) }))
        }
        _ = signals.int.recv() => Ok(Some(Event::Signal(Signal::SIGINT))),
        _ = signals.term.recv() => Ok(Some(Event::Signal(Signal::SIGTERM))),
        _ = tokio::time::sleep_until(kill_at), if group.deadline().is_some() => Ok(Some(Event::GraceOver)),
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
        assert_eq!(report.exit_code(), 0);
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
        assert_eq!(report.exit_code(), 7);
        let stopped: Vec<bool> = report.ranks.iter().map(|r| r.stopped).collect();
        assert_eq!(stopped, vec![true, false, true]);
    }

    #[test]
    fn a_killed_worker_is_the_cause_with_128_plus_its_signal() {
        let mut g = group(1);
        assert_eq!(g.apply(exited(0, End::Signal(9)), Instant::now()), Some(Signal::SIGTERM));
        assert_eq!(g.into_report(0).expect("exited").exit_code(), 137);
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
    fn a_signal_to_the_launcher_is_forwarded_and_decides_the_exit_code() {
        let mut g = group(2);
        let now = Instant::now();
        assert_eq!(g.apply(Event::Signal(Signal::SIGTERM), now), Some(Signal::SIGTERM));
        // Workers ending cleanly on the forwarded signal still make the launcher exit 143.
        assert_eq!(g.apply(exited(0, End::Code(0)), now), None);
        assert_eq!(g.apply(exited(1, End::Code(1)), now), None);
        let report = g.into_report(0).expect("exited");
        assert_eq!(report.cause, Cause::Signalled(Signal::SIGTERM));
        assert_eq!(report.exit_code(), 143);
    }

    #[test]
    fn a_second_sigint_kills_at_once() {
        let mut g = group(1);
        let now = Instant::now();
        assert_eq!(g.apply(Event::Signal(Signal::SIGINT), now), Some(Signal::SIGINT));
        assert_eq!(g.apply(Event::Signal(Signal::SIGINT), now), Some(Signal::SIGKILL));
        g.apply(exited(0, End::Signal(9)), now);
        assert_eq!(g.into_report(0).expect("exited").exit_code(), 130);
    }

    #[test]
    fn a_signal_after_a_failure_decides_the_exit_code() {
        let mut g = group(2);
        let now = Instant::now();
        g.apply(exited(0, End::Code(7)), now);
        assert_eq!(g.apply(Event::Signal(Signal::SIGINT), now), Some(Signal::SIGINT));
        g.apply(exited(1, End::Code(130)), now);
        assert_eq!(g.into_report(0).expect("exited").cause, Cause::Signalled(Signal::SIGINT));
    }

    #[test]
    fn a_report_while_a_worker_runs_is_an_internal_error() {
        let g = group(1);
        assert!(matches!(g.into_report(0), Err(Error::Internal(_))));
    }
}
