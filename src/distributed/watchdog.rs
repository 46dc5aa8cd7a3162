//! The collective watchdog: no rank of a job waits forever. Every collective a rank runs
//! is registered here while it is in flight — for MPI and gloo the blocking wait itself;
//! for NCCL and overlapped buckets the issued c10d work until it completes — and a thread
//! of its own checks them. One that has not completed within `dist.timeout_s` (the job's
//! start: `dist.init_timeout_s`) ends the rank: it logs `error: rank k/N: <collective> at
//! step S did not complete in T s`, what the other ranks' heartbeats say (which ones went
//! silent, and where each was), writes its error file, aborts the communicator (MPI_Abort
//! stops the whole mpirun job; c10d's abort frees this rank's NCCL kernels) and exits with
//! [`EXIT_TIMEOUT`]. A NCCL work that fails asynchronously ends the rank the same way
//! ([`EXIT_NCCL`]). The same thread writes this rank's heartbeat every second.
//!
//! Issued work is polled on a second thread: a poll is a CUDA call (an event query on the
//! work's device), which can stall behind a blocking copy. The thread that checks the
//! deadlines makes no CUDA call and takes no lock a poll holds, so a stalled poll cannot
//! keep a timeout from firing.
//!
//! Process-wide, like the communicator it watches: collectives run on the main thread, the
//! MPI gradient thread and autograd's threads, and all of them report here.
use super::op_label::label;
pub use super::op_label::within;
use super::rank_files::{now_ms, peers_report, write_json, ErrorReport, Heartbeat, RankFiles, EXIT_NCCL, EXIT_TIMEOUT};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct Options {
    pub rank: usize,
    pub size: usize,
    /// Limit of one collective.
    pub timeout: Duration,
    pub files: Option<RankFiles>,
}

type AbortFn = Box<dyn Fn(i32) + Send + Sync>;

/// Where an issued operation is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Poll {
    Running,
    Done,
    /// It failed where no caller will see it (an asynchronous NCCL error): ends the rank.
    Failed(String),
}

/// Polls an issued operation.
type PollFn = Box<dyn FnMut() -> Poll + Send>;
type SharedPoll = Arc<Mutex<PollFn>>;

struct Work {
    id: u64,
    label: String,
    step: Option<u64>,
    started: Instant,
    limit: Duration,
    /// `None`: in flight until its guard drops (a blocking call).
    poll: Option<SharedPoll>,
}

struct Dog {
    opts: Options,
    /// The step in progress (1-based); 0 before training.
    step: AtomicU64,
    /// The first step this process trained (0 before it trains).
    first_step: AtomicU64,
    phase: Mutex<&'static str>,
    /// A line for the launcher's summary (rank 0: the slowest rank most often).
    note: Mutex<Option<String>>,
    works: Mutex<Vec<Work>>,
    /// The first issued work that failed, as the poller found it.
    failed: Mutex<Option<String>>,
    /// Held by the poller through a round of polls, and by [`clear_backend`]: no work is
    /// polled while its backend is being destroyed.
    polling: Mutex<()>,
    next_id: AtomicU64,
    abort: Mutex<Option<Arc<AbortFn>>>,
    stopped: AtomicBool,
}

static DOG: OnceLock<Arc<Dog>> = OnceLock::new();

/// How often in-flight work is checked, and how often the heartbeat is written.
const POLL: Duration = Duration::from_millis(100);
const BEAT: Duration = Duration::from_secs(1);
/// A peer whose heartbeat is older than this has gone silent.
const QUIET: Duration = Duration::from_secs(3);
/// After aborting the communicator, how long to wait for it to end the process.
const ABORT_GRACE: Duration = Duration::from_secs(5);

/// Start watching (once per process; later calls are ignored) and write the first
/// heartbeat at once, so that peers waiting at the start can tell this rank has started.
pub fn start(opts: Options) {
    let dog = Arc::new(Dog::new(opts));
    if DOG.set(dog.clone()).is_err() {
        return;
    }
    dog.beat();
    let poller = dog.clone();
    let started = std::thread::Builder::new()
        .name("segzoo-watchdog".into())
        .spawn(move || dog.watch())
        .and_then(|_| std::thread::Builder::new().name("segzoo-work-poller".into()).spawn(move || poller.poll_loop()));
    if let Err(e) = started {
        eprintln!("warning: the collective watchdog could not start: {e}");
    }
}

fn dog() -> Option<&'static Arc<Dog>> {
    DOG.get()
}

/// Stop heartbeats and remove this rank's heartbeat file (a clean end).
pub fn finish() {
    if let Some(d) = dog() {
        d.stopped.store(true, Ordering::SeqCst);
        // The last word: "ended" at the last step (its launcher reads the steps from it).
        *lock(&d.phase) = "ended";
        d.beat();
    }
}

/// How the backend ends the job when a collective times out (MPI_Abort, c10d's abort).
pub fn set_abort(f: impl Fn(i32) + Send + Sync + 'static) {
    if let Some(d) = dog() {
        *lock(&d.abort) = Some(Arc::new(Box::new(f)));
    }
}

/// Forget the backend's abort (its communicator is being destroyed), and the work issued on
/// it that is still tracked.
pub fn clear_backend() {
    if let Some(d) = dog() {
        *lock(&d.abort) = None;
        let _no_poll = lock(&d.polling);
        lock(&d.works).retain(|w| w.poll.is_none());
    }
}

pub fn set_step(step: u64) {
    if let Some(d) = dog() {
        d.step.store(step, Ordering::Relaxed);
        let _ = d.first_step.compare_exchange(0, step, Ordering::Relaxed, Ordering::Relaxed);
    }
}

/// A line this rank's heartbeat carries for its launcher's summary.
pub fn set_note(note: Option<String>) {
    if let Some(d) = dog() {
        *lock(&d.note) = note;
    }
}

pub fn set_phase(phase: &'static str) {
    if let Some(d) = dog() {
        *lock(&d.phase) = phase;
    }
}

/// The step in progress, when training.
pub fn step() -> Option<u64> {
    dog().and_then(|d| d.current_step())
}

/// A blocking collective in flight until dropped.
#[must_use = "the collective counts as in flight until the guard drops"]
pub struct Guard(Option<u64>);

impl Drop for Guard {
    fn drop(&mut self) {
        if let (Some(id), Some(d)) = (self.0, dog()) {
            lock(&d.works).retain(|w| w.id != id);
        }
    }
}

/// Register a blocking collective `op` (labelled with the caller's context) under the
/// collective timeout.
pub fn guard(op: &str) -> Guard {
    let Some(d) = dog() else { return Guard(None) };
    Guard(Some(d.add(label(op), d.current_step(), d.opts.timeout, None)))
}

/// Register the job's start (`label`), which has its own limit.
pub fn guard_start(label: &str, limit: Duration) -> Guard {
    let Some(d) = dog() else { return Guard(None) };
    Guard(Some(d.add(label.to_string(), None, limit, None)))
}

/// Register an issued collective `op`, in flight until `poll` says it is not running.
/// `poll` runs on the poller thread (a NCCL work's poll guards its own device).
pub fn track(op: &str, poll: impl FnMut() -> Poll + Send + 'static) {
    if let Some(d) = dog() {
        d.add(label(op), d.current_step(), d.opts.timeout, Some(Arc::new(Mutex::new(Box::new(poll)))));
    }
}

/// Write this rank's error file for a failure that ends it (no-op without a place for it),
/// and torchrun's when it asked for one.
pub fn record_failure(kind: &str, error: &anyhow::Error, exit_code: i32) {
    let (rank, size, step, files) = match dog() {
        Some(d) => {
            // Its last heartbeat: where it failed (its launcher reads the steps from it).
            *lock(&d.phase) = "failed";
            d.beat();
            (d.opts.rank, d.opts.size, step(), d.opts.files.clone())
        }
        None => {
            let w = super::world::from_process_env().unwrap_or_else(|_| super::world::World::single(None));
            (w.rank, w.size, None, RankFiles::locate(&|k| std::env::var(k).ok(), None, w.rank))
        }
    };
    ErrorReport::new(rank, size, step, kind, error, exit_code).write(files.as_ref());
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic elsewhere must not silence the watchdog.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Dog {
    fn new(opts: Options) -> Dog {
        Dog {
            opts,
            step: AtomicU64::new(0),
            first_step: AtomicU64::new(0),
            phase: Mutex::new("starting"),
            note: Mutex::new(None),
            works: Mutex::new(Vec::new()),
            failed: Mutex::new(None),
            polling: Mutex::new(()),
            next_id: AtomicU64::new(0),
            abort: Mutex::new(None),
            stopped: AtomicBool::new(false),
        }
    }

    /// The step in progress, when training.
    fn current_step(&self) -> Option<u64> {
        Some(self.step.load(Ordering::Relaxed)).filter(|&s| s > 0)
    }

    fn add(&self, label: String, step: Option<u64>, limit: Duration, poll: Option<SharedPoll>) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        lock(&self.works).push(Work { id, label, step, started: Instant::now(), limit, poll });
        id
    }

    /// The deadline thread: no CUDA call here, and no lock a poll holds.
    fn watch(&self) {
        let mut last_beat = Instant::now();
        while !self.stopped.load(Ordering::SeqCst) {
            std::thread::sleep(POLL);
            if let Some((message, code, kind)) = self.overdue() {
                self.fire(&message, code, kind);
            }
            if last_beat.elapsed() >= BEAT {
                self.beat();
                last_beat = Instant::now();
            }
        }
    }

    /// The poller thread.
    fn poll_loop(&self) {
        while !self.stopped.load(Ordering::SeqCst) {
            std::thread::sleep(POLL);
            self.poll_issued();
        }
    }

    /// Poll every issued work once, without holding the list while a poll runs: completed
    /// ones leave it, the first failure is kept for the deadline thread.
    fn poll_issued(&self) {
        let _round = lock(&self.polling);
        let issued: Vec<(u64, SharedPoll)> =
            lock(&self.works).iter().filter_map(|w| Some((w.id, w.poll.clone()?))).collect();
        for (id, poll) in issued {
            let outcome = (lock(&poll))();
            if outcome == Poll::Running {
                continue;
            }
            let mut works = lock(&self.works);
            if let (Poll::Failed(error), Some(w)) = (outcome, works.iter().find(|w| w.id == id)) {
                let at = w.step.map_or(String::new(), |s| format!(" at step {s}"));
                lock(&self.failed).get_or_insert(format!("the communicator failed{at}: {}: {error}", w.label));
            }
            works.retain(|w| w.id != id);
        }
    }

    /// The first issued work that failed, or the first collective past its limit.
    fn overdue(&self) -> Option<(String, i32, &'static str)> {
        if let Some(message) = lock(&self.failed).take() {
            return Some((message, EXIT_NCCL, "nccl"));
        }
        let works = lock(&self.works);
        let w = works.iter().find(|w| w.started.elapsed() > w.limit)?;
        let at = w.step.map_or(String::new(), |s| format!(" at step {s}"));
        let message = format!("{}{at} did not complete in {} s", w.label, w.limit.as_secs_f64());
        Some((message, EXIT_TIMEOUT, "timeout"))
    }

    /// End this rank: report, abort the communicator, exit.
    fn fire(&self, message: &str, code: i32, kind: &str) -> ! {
        let (rank, size) = (self.opts.rank, self.opts.size);
        let mut text = format!("rank {rank}/{size}: {message}");
        let peers = match &self.opts.files {
            Some(f) => {
                let (alive, mut lines) = peers_report(f, rank, size, now_ms(), QUIET);
                lines.insert(
                    0,
                    format!("{} of {size} ranks are running (heartbeats in {})", alive + 1, f.dir.display()),
                );
                lines
            }
            None => Vec::new(),
        };
        for p in &peers {
            text += &format!("\n  {p}");
        }
        eprintln!("error: {text}");
        let mut report =
            ErrorReport::new(rank, size, step(), kind, &anyhow::anyhow!("rank {rank}/{size}: {message}"), code);
        report.chain = peers;
        report.write(self.opts.files.as_ref());
        let abort = lock(&self.abort).clone();
        if let Some(abort) = abort {
            abort(code);
        }
        std::thread::sleep(ABORT_GRACE);
        // SAFETY: ends the process without exit handlers, which could block on the very
        // communicator that is stuck.
        unsafe { libc::_exit(code) }
    }

    fn beat(&self) {
        let Some(files) = &self.opts.files else { return };
        let beat = Heartbeat {
            rank: self.opts.rank,
            size: self.opts.size,
            pid: std::process::id(),
            step: self.step.load(Ordering::Relaxed),
            first_step: self.first_step.load(Ordering::Relaxed),
            phase: lock(&self.phase).to_string(),
            time_unix_ms: now_ms(),
            note: lock(&self.note).clone(),
        };
        // The directory may not exist yet (the run creates it): then there is nothing to say.
        let _ = std::fs::create_dir_all(&files.dir);
        let _ = write_json(&files.heartbeat(self.opts.rank), &beat);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dog(timeout_ms: u64) -> Dog {
        Dog::new(Options { rank: 1, size: 4, timeout: Duration::from_millis(timeout_ms), files: None })
    }

    #[test]
    fn a_collective_past_its_limit_is_named_with_its_step_and_the_limit() {
        let d = dog(30);
        d.step.store(12, Ordering::Relaxed);
        d.add("gradient all-reduce (MPI all-reduce of 10 values)".into(), Some(12), d.opts.timeout, None);
        assert_eq!(d.overdue(), None, "not yet");
        std::thread::sleep(Duration::from_millis(60));
        let (message, code, kind) = d.overdue().expect("overdue");
        assert_eq!(message, "gradient all-reduce (MPI all-reduce of 10 values) at step 12 did not complete in 0.03 s");
        assert_eq!((code, kind), (EXIT_TIMEOUT, "timeout"));
    }

    fn issued(poll: impl FnMut() -> Poll + Send + 'static) -> Option<SharedPoll> {
        Some(Arc::new(Mutex::new(Box::new(poll))))
    }

    #[test]
    fn completed_work_is_dropped_and_the_start_has_its_own_limit() {
        let d = dog(10);
        let mut polls = 0;
        let poll = issued(move || {
            polls += 1;
            if polls > 1 {
                Poll::Done
            } else {
                Poll::Running
            }
        });
        d.add("NCCL all-reduce".into(), Some(3), d.opts.timeout, poll);
        d.add("the job's start".into(), None, Duration::from_secs(60), None);
        std::thread::sleep(Duration::from_millis(30));
        // First poll: the NCCL work has not completed and is overdue.
        d.poll_issued();
        assert!(d.overdue().is_some_and(|(m, _, _)| m.starts_with("NCCL all-reduce at step 3")));
        // Second: it completed; the start is still within its minute.
        d.poll_issued();
        assert_eq!(d.overdue(), None);
        assert_eq!(lock(&d.works).len(), 1);
    }

    #[test]
    fn an_asynchronous_backend_error_ends_the_rank_with_its_own_code() {
        let d = dog(1000);
        let failed = || Poll::Failed("NCCL error: remote process exited or there was a network error".into());
        d.add("NCCL all-reduce of 8 values".into(), Some(4), d.opts.timeout, issued(failed));
        assert_eq!(d.overdue(), None, "not polled yet");
        d.poll_issued();
        let (message, code, kind) = d.overdue().expect("error");
        assert_eq!(
            message,
            "the communicator failed at step 4: NCCL all-reduce of 8 values: NCCL error: remote process exited or there \
             was a network error"
        );
        assert_eq!((code, kind), (EXIT_NCCL, "nccl"));
        assert!(lock(&d.works).is_empty(), "reported once");
        assert_eq!(d.overdue(), None, "reported once");
    }

    /// A poll stuck in the driver (behind a blocking copy) holds the poller, not the
    /// deadline check: the overdue work is still named.
    #[test]
    fn a_poll_that_never_returns_does_not_keep_the_timeout_from_firing() {
        let d = Arc::new(dog(20));
        let (release, held) = std::sync::mpsc::channel::<()>();
        let (entered, in_poll) = std::sync::mpsc::channel::<()>();
        let held = Mutex::new(held);
        let stuck = issued(move || {
            let _ = entered.send(());
            let _ = lock(&held).recv();
            Poll::Running
        });
        d.add("NCCL all-reduce of 4 values".into(), Some(7), d.opts.timeout, stuck);
        let poller = d.clone();
        let polling = std::thread::spawn(move || poller.poll_issued());
        in_poll.recv_timeout(Duration::from_secs(60)).expect("the poller is inside the poll");
        std::thread::sleep(Duration::from_millis(40));
        let checker = d.clone();
        let (done, verdict) = std::sync::mpsc::channel();
        std::thread::spawn(move || done.send(checker.overdue()));
        let verdict =
            verdict.recv_timeout(Duration::from_secs(60)).expect("the deadline check did not wait for the poll");
        let _ = release.send(());
        polling.join().expect("poller");
        let (message, code, _) = verdict.expect("overdue");
        assert!(message.starts_with("NCCL all-reduce of 4 values at step 7 did not complete"), "{message}");
        assert_eq!(code, EXIT_TIMEOUT);
    }
}
