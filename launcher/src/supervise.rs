//! Running this server's workers and watching them, as torchrun and the DeepSpeed launcher
//! do: fail-fast (SIGTERM the others, SIGKILL after a grace period), signals to the
//! launcher forwarded to every worker, and generations started and stopped by the job's
//! hub. [`Group`] (`group.rs`) is the state machine of one generation;
//! [`run`] drives it with real processes: it reports the local root cause to the hub at
//! once, its end when every worker has exited, and follows the hub's start, stop and
//! finish, so that every server restarts together and ends with the same summary. Each
//! generation's workers are planned from its members (`plan.rs`: with fewer servers than
//! the table, the ranks are renumbered and the workers get that generation's table), and
//! the steps their heartbeats show go to the hub for the summary.
use crate::cause::JobCause;
use crate::error::Error;
use crate::error_file;
use crate::group::{Event, Group};
use crate::hub::{Command, Report};
use crate::link::{Down, Link};
use crate::plan::{self, Worker};
use crate::rank_table::RankTable;
use crate::report::{Cause, RunReport};
use crate::worker::{self, spawn_worker, Console, End};
use nix::sys::signal::Signal;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};
use tokio::task::JoinSet;
use tokio::time::Instant;

#[derive(Debug, Clone)]
pub struct Options {
    /// The rank table, this server's index in it, its file (absolute) and the rendezvous
    /// port: each generation's workers are planned from them.
    pub table: RankTable,
    pub index: usize,
    pub table_file: PathBuf,
    pub master_port: u16,
    /// The worker command and its arguments (not empty).
    pub command: Vec<String>,
    /// As given: log files are opened there and named so in messages.
    pub log_dir: PathBuf,
    /// The same, absolute (it exists): the workers' `SEGZOO_LOG_DIR` and error files.
    pub log_dir_abs: PathBuf,
    pub console: Console,
    pub max_restarts: u32,
    /// Between SIGTERM and SIGKILL.
    pub grace: Duration,
    /// This server's id in the table, named in the causes it reports.
    pub server_id: String,
    /// The table has more than one server: messages name servers and speak of every
    /// server's group.
    pub multi: bool,
}

/// How the job ended for this launcher: its exit code and what it prints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    pub code: u8,
    /// The job's summary (the same on every server) and a line about the local ranks.
    pub text: String,
}

/// The launcher's signals, caught for the whole run: SIGINT and SIGTERM stop the job,
/// SIGUSR1 and SIGUSR2 are only passed on (segzoo checkpoints on them).
struct Signals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    usr1: tokio::signal::unix::Signal,
    usr2: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> Result<Signals, Error> {
        let catch = |kind| signal(kind).map_err(Error::io("cannot catch SIGINT/SIGTERM/SIGUSR1/SIGUSR2"));
        Ok(Signals {
            int: catch(SignalKind::interrupt())?,
            term: catch(SignalKind::terminate())?,
            usr1: catch(SignalKind::user_defined1())?,
            usr2: catch(SignalKind::user_defined2())?,
        })
    }

    async fn recv(&mut self) -> Signal {
        tokio::select! {
            _ = self.int.recv() => Signal::SIGINT,
            _ = self.term.recv() => Signal::SIGTERM,
            _ = self.usr1.recv() => Signal::SIGUSR1,
            _ = self.usr2.recv() => Signal::SIGUSR2,
        }
    }
}

/// Whether the launcher ends the job on this signal, or only passes it on.
fn stops_the_job(sig: Signal) -> bool {
    matches!(sig, Signal::SIGINT | Signal::SIGTERM)
}

type Waits = JoinSet<(usize, std::io::Result<ExitStatus>)>;

/// Follow the hub until it finishes the job: run each generation it starts, report the
/// local root cause at once and the end when every local worker has exited. Errors are
/// the launcher's own (it tells the hub first) or a lost hub.
pub async fn run(opts: &Options, link: &mut Link) -> Result<Finished, Error> {
    let mut local = Local { opts, link, generation: 0, last_cause: None, pending_signal: None, report: None };
    let result = match Signals::install() {
        Ok(mut signals) => local.serve(&mut signals).await,
        Err(e) => Err(e),
    };
    if let Err(e) = &result {
        if !matches!(e, Error::LostGroup(_)) {
            let cause = JobCause::Launcher { server: opts.server_id.clone(), message: e.to_string() };
            local.link.send(Report::Failed { generation: local.generation, cause });
        }
    }
    result
}

/// This launcher's side of the job.
struct Local<'a> {
    opts: &'a Options,
    link: &'a mut Link,
    generation: u32,
    /// The cause of the generation's stop, as the hub told it: the restart message and the
    /// line about the local ranks use it.
    last_cause: Option<JobCause>,
    /// SIGINT/SIGTERM received: a generation started later is reported stopped at once.
    pending_signal: Option<Signal>,
    /// The last generation's result.
    report: Option<RunReport>,
}

impl Local<'_> {
    async fn serve(&mut self, signals: &mut Signals) -> Result<Finished, Error> {
        // What ended a generation early, handled once its workers are gone.
        let mut held: Option<Down> = None;
        loop {
            let down = match held.take() {
                Some(down) => down,
                None => tokio::select! {
                    down = self.link.recv() => down,
                    sig = signals.recv() => {
                        self.idle_signal(sig);
                        continue;
                    }
                },
            };
            match down {
                Down::Lost(reason) => return Err(Error::LostGroup(reason)),
                Down::Command(Command::Finish { code, summary }) => return Ok(self.finished(code, summary)),
                Down::Command(Command::Stop { cause, .. }) => self.last_cause = Some(cause),
                Down::Command(Command::Start { generation, members }) => {
                    held = self.run_generation(generation, &members, signals).await?
                }
            }
        }
    }

    fn signal_cause(&self, sig: Signal) -> JobCause {
        JobCause::Signal { server: self.opts.server_id.clone(), signal: sig as i32 }
    }

    /// A signal while no worker runs (before the start, between generations).
    fn idle_signal(&mut self, sig: Signal) {
        if !stops_the_job(sig) {
            return eprintln!("segzoo-launch: {} received; no worker is running to pass it on to", sig.as_str());
        }
        if self.pending_signal.is_none() {
            eprintln!("segzoo-launch: {} received; ending the job", sig.as_str());
            self.link.send(Report::Failed { generation: self.generation, cause: self.signal_cause(sig) });
        }
        self.pending_signal.get_or_insert(sig);
    }

    /// This server's workers in a generation of `members`: the table's own with every
    /// server, else those of the generation's table, written to the log directory.
    fn workers_for(&self, generation: u32, members: &[usize]) -> Result<Vec<Worker>, Error> {
        let o = self.opts;
        if members.len() == o.table.servers.len() {
            return plan::workers(&o.table, o.index, &o.table_file, o.master_port);
        }
        let local = members.iter().position(|&m| m == o.index).ok_or_else(|| {
            Error::Internal(format!("generation {generation} was started here without this server as a member"))
        })?;
        let table = plan::generation_table(&o.table, members);
        let path = o.log_dir_abs.join(format!("rank_table.gen{generation}.json"));
        let text = serde_json::to_string_pretty(&table.to_json()).map_err(|e| Error::Internal(e.to_string()))? + "\n";
        std::fs::write(&path, text).map_err(Error::io(path.display().to_string()))?;
        plan::workers(&table, local, &path, o.master_port)
    }

    /// Run one generation until every local worker has exited; returns what ended it early
    /// (a lost hub, an unexpected finish) for the caller to handle.
    async fn run_generation(
        &mut self,
        generation: u32,
        members: &[usize],
        signals: &mut Signals,
    ) -> Result<Option<Down>, Error> {
        let o = self.opts;
        let workers = self.workers_for(generation, members)?;
        let world = workers.first().and_then(|w| w.env.iter().find(|(k, _)| k == "RANK_SIZE")).map(|(_, v)| v.clone());
        let marker = match o.multi {
            false => format!("restart {generation} of {}", o.max_restarts),
            true => {
                let ids: Vec<&str> = members.iter().map(|&m| o.table.servers[m].server_id.as_str()).collect();
                format!("generation {generation}: servers {}, world size {}", ids.join(", "), world.unwrap_or_default())
            }
        };
        if generation > 0 {
            let why = self.last_cause.as_ref().map(|c| format!("{}; ", c.describe(o.multi))).unwrap_or_default();
            match o.multi {
                true => eprintln!("segzoo-launch: {why}starting {marker}"),
                false => eprintln!("segzoo-launch: {why}restarting the local group ({marker})"),
            }
        }
        self.generation = generation;
        self.last_cause = None;
        if let Some(sig) = self.pending_signal {
            self.link.send(Report::Failed { generation, cause: self.signal_cause(sig) });
            self.link.send(Report::Ended { generation, ok: false, detail: None, steps: None });
            return Ok(None);
        }
        let mut pumps = JoinSet::new();
        let (mut group, mut waits) = start_group(o, &workers, generation, &marker, &mut pumps)?;
        let mut held = None;
        let mut steps = Steps::default();
        // Last generation's heartbeats say nothing of this one.
        let ranks: Vec<usize> = workers.iter().map(|w| w.rank).collect();
        for r in &ranks {
            let _ = std::fs::remove_file(o.log_dir_abs.join(format!("rank_{r}.heartbeat.json")));
        }
        if let Err(e) = self.watch(&mut group, &mut waits, signals, &mut held, &mut steps).await {
            // Leave nothing behind: the workers' children included.
            group.signal_live(Signal::SIGKILL);
            return Err(e);
        }
        // The pipes close when the workers (and their children) are gone; do not wait
        // forever on a straggler that inherited one.
        let _ =
            tokio::time::timeout(Duration::from_secs(5), async { while pumps.join_next().await.is_some() {} }).await;
        // A clean end leaves the last step in the heartbeat.
        steps.read(&o.log_dir_abs, &ranks);
        let report = group.into_report(generation)?;
        if !matches!(held, Some(Down::Lost(_))) {
            let detail = match report.cause {
                Cause::RankFailed { rank, .. } => Some(report.detail(rank, &o.log_dir, &o.log_dir_abs)),
                _ => None,
            };
            let ok = report.cause == Cause::AllSucceeded;
            self.link.send(Report::Ended { generation, ok, detail, steps: steps.seen });
        }
        self.report = Some(report);
        Ok(held)
    }

    /// Feed events to the group, send the signals it asks for and report its root cause,
    /// until every worker exited.
    async fn watch(
        &mut self,
        group: &mut Group,
        waits: &mut Waits,
        signals: &mut Signals,
        held: &mut Option<Down>,
        steps: &mut Steps,
    ) -> Result<(), Error> {
        let ranks: Vec<usize> = (0..group.len()).map(|i| group.worker(i).rank).collect();
        let mut beats = tokio::time::interval(Duration::from_secs(1));
        loop {
            // Without a deadline the timer branch is disabled; the instant is then never awaited.
            let kill_at = group.deadline().unwrap_or_else(Instant::now);
            let event = tokio::select! {
                joined = waits.join_next() => {
                    let Some(joined) = joined else { return Ok(()) };
                    let (index, status) = joined.map_err(|e| Error::Internal(format!("waiting for a worker: {e}")))?;
                    let rank = group.worker(index).rank;
                    let status = status.map_err(Error::io(format!("waiting for rank {rank}")))?;
                    Event::Exited { index, end: End::from_status(status) }
                }
                sig = signals.recv() => {
                    if !stops_the_job(sig) {
                        eprintln!("segzoo-launch: {} received; passed on to every worker", sig.as_str());
                        group.forward(sig);
                        continue;
                    }
                    Event::Signal(sig)
                }
                _ = tokio::time::sleep_until(kill_at), if group.deadline().is_some() => Event::GraceOver,
                _ = beats.tick() => {
                    steps.read(&self.opts.log_dir_abs, &ranks);
                    continue;
                }
                down = self.link.recv(), if held.is_none() => match self.on_hub(down, held) {
                    Some(event) => event,
                    None => continue,
                },
            };
            self.apply(group, event);
        }
    }

    /// What a command of the hub means while workers run.
    fn on_hub(&mut self, down: Down, held: &mut Option<Down>) -> Option<Event> {
        match down {
            Down::Command(Command::Stop { generation, cause }) if generation == self.generation => {
                self.last_cause = Some(cause);
                Some(Event::Stop)
            }
            Down::Command(Command::Stop { .. } | Command::Start { .. }) => None,
            Down::Lost(ref reason) => {
                eprintln!("segzoo-launch: lost the group ({reason}); stopping the local workers");
                *held = Some(down);
                Some(Event::Stop)
            }
            Down::Command(Command::Finish { .. }) => {
                *held = Some(down);
                Some(Event::Stop)
            }
        }
    }

    /// Apply `event`, send what it asks for, and tell the hub a new local root cause.
    fn apply(&mut self, group: &mut Group, event: Event) {
        let (failed, signalled) = (group.failed().is_some(), group.signalled().is_some());
        let send = group.apply(event, Instant::now());
        if let (Event::Stop, Some(_), Some(cause)) = (event, send, &self.last_cause) {
            eprintln!("segzoo-launch: {}; stopping the local workers", cause.describe(self.opts.multi));
        }
        if let Some(sig) = send {
            group.signal_live(sig);
        }
        if let (false, Some((index, end))) = (failed, group.failed()) {
            let w = group.worker(index);
            let cause = JobCause::Rank { server: self.opts.server_id.clone(), rank: w.rank, device: w.device_id, end };
            self.link.send(Report::Failed { generation: self.generation, cause });
        }
        if let (false, Some(sig)) = (signalled, group.signalled()) {
            self.pending_signal.get_or_insert(sig);
            self.link.send(Report::Failed { generation: self.generation, cause: self.signal_cause(sig) });
        }
    }

    /// The job's summary, then (after a failure) how this server's ranks ended, and what a
    /// local worker left for it (segzoo's rank 0: the slowest rank most often).
    fn finished(&self, code: u8, summary: String) -> Finished {
        let mut text = summary;
        if let Some(note) = rank0_note(&self.opts.log_dir_abs) {
            text += &format!("segzoo-launch: {note}\n");
        }
        if let (Some(report), true) = (&self.report, code != 0) {
            let server = self.opts.multi.then_some(self.opts.server_id.as_str());
            let root = match &self.last_cause {
                Some(JobCause::Rank { server, rank, .. }) if *server == self.opts.server_id => Some(*rank),
                _ => None,
            };
            text += &report.local_line(server, root).unwrap_or_default();
        }
        Finished { code, text }
    }
}

/// The note in rank 0's last heartbeat, when rank 0 ran on this server.
fn rank0_note(dir: &std::path::Path) -> Option<String> {
    let bytes = std::fs::read(dir.join("rank_0.heartbeat.json")).ok()?;
    let beat: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    beat["note"].as_str().map(str::to_string)
}

/// The training steps the local workers' heartbeats (segzoo's `rank_<k>.heartbeat.json` in
/// the log directory: the step in progress and the first one trained; a clean end leaves
/// the last) showed during a generation: the first and the last.
#[derive(Default)]
struct Steps {
    seen: Option<(u64, u64)>,
}

impl Steps {
    fn read(&mut self, dir: &std::path::Path, ranks: &[usize]) {
        for r in ranks {
            let Ok(bytes) = std::fs::read(dir.join(format!("rank_{r}.heartbeat.json"))) else { continue };
            let Ok(beat) = serde_json::from_slice::<serde_json::Value>(&bytes) else { continue };
            // 0: not training yet.
            let (Some(step), first) = (beat["step"].as_u64().filter(|&s| s > 0), beat["first_step"].as_u64()) else {
                continue;
            };
            let first = first.filter(|&f| f > 0).unwrap_or(step);
            self.seen = Some(self.seen.map_or((first, step), |(a, b)| (a.min(first), b.max(step))));
        }
    }
}

/// Spawn every worker, each after removing its stale error file; if one cannot be
/// started, kill those that were.
fn start_group(
    opts: &Options,
    workers: &[Worker],
    attempt: u32,
    marker: &str,
    pumps: &mut JoinSet<()>,
) -> Result<(Group, Waits), Error> {
    let console_rank = workers.iter().map(|w| w.rank).min();
    let mut group = Group::new(opts.grace);
    let mut waits = JoinSet::new();
    for (index, w) in workers.iter().enumerate() {
        let echo = match opts.console {
            Console::All => true,
            Console::Rank0 => Some(w.rank) == console_rank,
            Console::None => false,
        };
        let launch = worker::Launch {
            command: &opts.command,
            worker: w,
            log_dir: &opts.log_dir,
            log_dir_abs: &opts.log_dir_abs,
            attempt,
            marker,
            echo,
        };
        let spawned = error_file::remove_stale(&error_file::path(&opts.log_dir_abs, w.rank))
            .and_then(|()| spawn_worker(&launch, pumps));
        let mut spawned = match spawned {
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
