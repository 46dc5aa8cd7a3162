//! One worker process: how it is started ([`spawn_worker`]: its own process group, killed
//! with its launcher, its environment, output pumped line by line to
//! `<log-dir>/rank_<k>.log`, a tail kept for the failure summary, and the console), the
//! group id it is signalled by ([`Pgid`]), its states ([`WorkerState`]) and how it ended
//! ([`End`]).
use crate::error::Error;
use crate::plan::Worker;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use std::collections::VecDeque;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::task::JoinSet;

/// Which workers' lines reach the launcher's console (all go to their log files).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Console {
    All,
    /// The lowest rank on this server (global rank 0 on the first server).
    Rank0,
    None,
}

/// Lines kept per rank for the failure summary.
const TAIL: usize = 20;

/// The last [`TAIL`] lines a worker wrote (stdout and stderr interleaved).
pub type Tail = Arc<Mutex<VecDeque<String>>>;

pub fn tail_lines(tail: &Tail) -> Vec<String> {
    tail.lock().map(|t| t.iter().cloned().collect()).unwrap_or_default()
}

pub fn log_path(dir: &Path, rank: usize) -> PathBuf {
    dir.join(format!("rank_{rank}.log"))
}

/// A worker's process group, which it leads (it was spawned with `process_group(0)`).
/// Never 0 or negative: `killpg(0)` would signal the launcher's own group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pgid(Pid);

impl Pgid {
    /// From a child's pid; `None` when it is missing (the child was already reaped) or not
    /// a positive pid.
    pub fn from_child_id(id: Option<u32>) -> Option<Pgid> {
        let raw = i32::try_from(id?).ok().filter(|&p| p > 0)?;
        Some(Pgid(Pid::from_raw(raw)))
    }

    /// Signal the whole group, so the worker's own children get it too.
    pub fn signal(self, sig: Signal) {
        // The group may be gone already (ESRCH): nothing to signal then.
        let _ = killpg(self.0, sig);
    }

    /// Signal only the worker itself, the group's leader: for signals it acts on (a
    /// checkpoint request), which its helper processes may not handle and would die of.
    pub fn signal_worker(self, sig: Signal) {
        let _ = nix::sys::signal::kill(self.0, sig);
    }
}

/// How a worker ended. It crosses the network in a failure's cause.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum End {
    Code(i32),
    Signal(i32),
}

impl End {
    pub fn from_status(s: ExitStatus) -> End {
        use std::os::unix::process::ExitStatusExt;
        match (s.code(), s.signal()) {
            (Some(c), _) => End::Code(c),
            (None, Some(sig)) => End::Signal(sig),
            (None, None) => End::Code(1),
        }
    }

    pub fn ok(self) -> bool {
        self == End::Code(0)
    }

    /// The launcher's exit code for it: the code, or 128 + signal as a shell reports it.
    pub fn exit_code(self) -> i32 {
        match self {
            End::Code(c) => c,
            End::Signal(s) => 128 + s,
        }
    }
}

impl std::fmt::Display for End {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            End::Code(c) => write!(f, "exit code {c}"),
            End::Signal(s) => match Signal::try_from(*s) {
                Ok(sig) => write!(f, "killed by {} ({s})", sig.as_str()),
                Err(_) => write!(f, "killed by signal {s}"),
            },
        }
    }
}

/// Where a started worker is in its life. A worker is only ever created running: one that
/// cannot be spawned is an [`Error`], not a state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerState {
    Running {
        pgid: Pgid,
    },
    /// The launcher has signalled it (fail-fast, a forwarded signal, the grace period): how
    /// it ends is then the launcher's doing, not a failure of its own.
    Stopping {
        pgid: Pgid,
    },
    /// `stopped`: it was in `Stopping` when it ended.
    Exited {
        end: End,
        stopped: bool,
    },
}

impl WorkerState {
    /// The group to signal while the worker has not exited.
    pub fn live_pgid(self) -> Option<Pgid> {
        match self {
            WorkerState::Running { pgid } | WorkerState::Stopping { pgid } => Some(pgid),
            WorkerState::Exited { .. } => None,
        }
    }
}

/// What [`spawn_worker`] needs to start one worker.
pub struct Launch<'a> {
    /// The worker command and its arguments (not empty).
    pub command: &'a [String],
    pub worker: &'a Worker,
    /// As given on the command line: the log file is opened there.
    pub log_dir: &'a Path,
    /// The same, absolute: what the worker is told (it may change directory).
    pub log_dir_abs: &'a Path,
    /// 0 for the first start, k for the k-th generation.
    pub attempt: u32,
    /// What the log says at a later generation's start ("restart 1 of 2", "generation 2: …").
    pub marker: &'a str,
    /// Whether its lines also reach the console, prefixed `[rank k]`.
    pub echo: bool,
}

/// A started worker; its output is being pumped by tasks in the caller's `JoinSet`.
pub struct Spawned {
    pub child: Child,
    pub pgid: Pgid,
    pub tail: Tail,
}

/// Start one worker in its own process group with its rank's environment, its stdout and
/// stderr pumped into `pumps`. Its log is truncated on the first attempt and appended to
/// (after a restart marker) on later ones.
pub fn spawn_worker(launch: &Launch, pumps: &mut JoinSet<()>) -> Result<Spawned, Error> {
    let rank = launch.worker.rank;
    let file = open_log(launch)?;
    let mut child =
        command(launch).spawn().map_err(|source| Error::Spawn { program: launch.command[0].clone(), rank, source })?;
    // Dropping `child` here kills it (`kill_on_drop`), so none is left unsupervised.
    let pgid = Pgid::from_child_id(child.id()).ok_or(Error::NoPid { rank })?;
    let tail = Tail::default();
    let file = Arc::new(Mutex::new(file));
    let prefix = format!("[rank {rank}] ");
    if let Some(out) = child.stdout.take() {
        let echo = launch.echo.then(|| Echo { prefix: prefix.clone(), to_stderr: false });
        pumps.spawn(pump(out, file.clone(), tail.clone(), echo));
    }
    if let Some(err) = child.stderr.take() {
        let echo = launch.echo.then_some(Echo { prefix, to_stderr: true });
        pumps.spawn(pump(err, file, tail.clone(), echo));
    }
    Ok(Spawned { child, pgid, tail })
}

fn open_log(launch: &Launch) -> Result<std::fs::File, Error> {
    let path = log_path(launch.log_dir, launch.worker.rank);
    let restart = launch.attempt > 0;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(restart)
        .truncate(!restart)
        .open(&path)
        .map_err(|source| Error::LogFile { path, source })?;
    if restart {
        let _ = writeln!(file, "---- segzoo-launch: {} ----", launch.marker);
    }
    Ok(file)
}

fn command(launch: &Launch) -> Command {
    let mut cmd = Command::new(&launch.command[0]);
    let error_file = crate::error_file::path(launch.log_dir_abs, launch.worker.rank);
    for var in crate::plan::NOT_PASSED_ON {
        cmd.env_remove(var);
    }
    cmd.args(&launch.command[1..])
        .envs(launch.worker.env.iter().map(|(k, v)| (k, v)))
        .env("SEGZOO_LAUNCH_RESTART", launch.attempt.to_string())
        .env("SEGZOO_LOG_DIR", launch.log_dir_abs)
        .env("SEGZOO_ERROR_FILE", error_file)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own group, so signals reach the worker's children too.
        .process_group(0)
        .kill_on_drop(true);
    let launcher = nix::unistd::getpid();
    // SAFETY: the closure runs in the forked child before exec and makes only two system
    // calls (prctl, getppid), both async-signal-safe; it allocates nothing.
    unsafe {
        cmd.pre_exec(move || die_with(launcher));
    }
    cmd
}

/// In the child before exec: be killed when the launcher dies, even by SIGKILL, so that no
/// worker runs on unsupervised. The parent-death signal follows the thread that forked,
/// which is the launcher's main thread (its runtime has one thread). A launcher that died
/// before the call is caught by the parent check: the child was re-parented already.
fn die_with(launcher: Pid) -> std::io::Result<()> {
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)?;
    if nix::unistd::getppid() != launcher {
        // An OS error needs no allocation (the forked child may not allocate).
        return Err(std::io::Error::from(nix::errno::Errno::ESRCH));
    }
    Ok(())
}

/// Where a pumped stream's lines are echoed on the console.
struct Echo {
    prefix: String,
    to_stderr: bool,
}

/// Copy one output stream of a worker, line by line, to its log file, its tail and
/// (when `echo` is set) the console with the rank prefix.
async fn pump(stream: impl AsyncRead + Unpin, file: Arc<Mutex<std::fs::File>>, tail: Tail, echo: Option<Echo>) {
    let mut reader = BufReader::new(stream);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let line = String::from_utf8_lossy(&buf);
        let line = line.trim_end_matches(['\n', '\r']);
        if let Ok(mut f) = file.lock() {
            let _ = writeln!(f, "{line}");
        }
        if let Ok(mut t) = tail.lock() {
            if t.len() == TAIL {
                t.pop_front();
            }
            t.push_back(line.to_string());
        }
        if let Some(echo) = &echo {
            echo.line(line);
        }
    }
}

impl Echo {
    fn line(&self, line: &str) {
        // A closed console (`| head`) must not stop the logging.
        let _ = if self.to_stderr {
            writeln!(std::io::stderr().lock(), "{}{line}", self.prefix)
        } else {
            writeln!(std::io::stdout().lock(), "{}{line}", self.prefix)
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ends_read_as_a_shell_reports_them() {
        assert_eq!(End::Code(7).to_string(), "exit code 7");
        assert_eq!(End::Signal(9).to_string(), "killed by SIGKILL (9)");
        assert_eq!(End::Signal(15).exit_code(), 143);
        assert_eq!(End::Code(3).exit_code(), 3);
        assert!(End::Code(0).ok() && !End::Signal(15).ok());
    }

    #[test]
    fn a_pgid_is_never_built_from_a_missing_zero_or_negative_pid() {
        assert_eq!(Pgid::from_child_id(None), None);
        assert_eq!(Pgid::from_child_id(Some(0)), None);
        // Beyond i32::MAX it would wrap to a negative pid: killpg(-n) is not a group.
        assert_eq!(Pgid::from_child_id(Some(u32::MAX)), None);
        assert_eq!(Pgid::from_child_id(Some(1234)), Some(Pgid(Pid::from_raw(1234))));
    }

    #[test]
    fn only_workers_that_have_not_exited_are_signalled() {
        let pgid = Pgid::from_child_id(Some(1234)).expect("valid");
        assert_eq!(WorkerState::Running { pgid }.live_pgid(), Some(pgid));
        assert_eq!(WorkerState::Stopping { pgid }.live_pgid(), Some(pgid));
        assert_eq!(WorkerState::Exited { end: End::Code(0), stopped: false }.live_pgid(), None);
    }
}
