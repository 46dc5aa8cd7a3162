//! Running the local workers and watching them, as torchrun and the DeepSpeed launcher
//! do: one process group per worker, logs to a file per rank and (prefixed) to the
//! console, fail-fast (SIGTERM the others, SIGKILL after a grace period), signals to the
//! launcher forwarded to every worker, and whole-group restarts.
use crate::plan::Worker;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use std::collections::VecDeque;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;
use tokio::signal::unix::{signal, SignalKind};
use tokio::task::JoinSet;
use tokio::time::Instant;

/// Which workers' lines reach the launcher's console (all go to their log files).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Console {
    All,
    /// The lowest rank on this server (global rank 0 on the first server).
    Rank0,
    None,
}

#[derive(Debug, Clone)]
pub struct Options {
    pub workers: Vec<Worker>,
    pub command: Vec<String>,
    pub log_dir: PathBuf,
    pub console: Console,
    pub max_restarts: u32,
    /// Between SIGTERM and SIGKILL.
    pub grace: Duration,
}

/// Lines kept per rank for the failure summary.
const TAIL: usize = 20;

/// How a worker ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    Code(i32),
    Signal(i32),
}

impl End {
    fn from_status(s: ExitStatus) -> End {
        use std::os::unix::process::ExitStatusExt;
        match (s.code(), s.signal()) {
            (Some(c), _) => End::Code(c),
            (None, Some(sig)) => End::Signal(sig),
            (None, None) => End::Code(1),
        }
    }

    fn ok(self) -> bool {
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

struct Running {
    worker: Worker,
    pgid: Pid,
    end: Option<End>,
    tail: Arc<Mutex<VecDeque<String>>>,
}

/// How one attempt of the local group ended.
enum GroupEnd {
    AllOk,
    /// The first worker to fail on its own (not stopped by us), and how.
    Failed {
        index: usize,
        end: End,
    },
    /// The launcher was told to stop.
    Stopped(Signal),
}

pub fn log_path(dir: &Path, rank: usize) -> PathBuf {
    dir.join(format!("rank_{rank}.log"))
}

/// Run the workers until they all succeed (0), one fails with no restarts left (its exit
/// code), or the launcher is signalled (128 + signal).
pub async fn run(opts: &Options) -> anyhow::Result<i32> {
    anyhow::ensure!(!opts.command.is_empty(), "no worker command: put it after `--`");
    std::fs::create_dir_all(&opts.log_dir)
        .map_err(|e| anyhow::anyhow!("cannot create log dir {}: {e}", opts.log_dir.display()))?;
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let console_rank = opts.workers.iter().map(|w| w.rank).min();
    for attempt in 0..=opts.max_restarts {
        let mut group = Vec::new();
        let mut waits = JoinSet::new();
        let mut readers = JoinSet::new();
        for (i, w) in opts.workers.iter().enumerate() {
            let path = log_path(&opts.log_dir, w.rank);
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .write(true)
                .append(attempt > 0)
                .truncate(attempt == 0)
                .open(&path)
                .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", path.display()))?;
            if attempt > 0 {
                let _ = writeln!(file, "---- segzoo-launch: restart {attempt} of {} ----", opts.max_restarts);
            }
            let mut cmd = Command::new(&opts.command[0]);
            cmd.args(&opts.command[1..])
                .envs(w.env.iter().map(|(k, v)| (k, v)))
                .env("SEGZOO_LAUNCH_RESTART", attempt.to_string())
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                // Its own group, so signals reach the worker's children too.
                .process_group(0)
                .kill_on_drop(true);
            let mut child = match cmd.spawn() {
                Ok(c) => c,
                Err(e) => {
                    stop(&group, Signal::SIGKILL);
                    anyhow::bail!("cannot start `{}` for rank {}: {e}", opts.command[0], w.rank);
                }
            };
            let pgid = Pid::from_raw(child.id().map_or(0, |p| p as i32));
            let tail = Arc::new(Mutex::new(VecDeque::new()));
            let file = Arc::new(Mutex::new(file));
            let echo = match opts.console {
                Console::All => true,
                Console::Rank0 => Some(w.rank) == console_rank,
                Console::None => false,
            };
            let prefix = format!("[rank {}] ", w.rank);
            if let Some(out) = child.stdout.take() {
                readers.spawn(pump(out, file.clone(), tail.clone(), echo.then(|| (prefix.clone(), false))));
            }
            if let Some(err) = child.stderr.take() {
                readers.spawn(pump(err, file, tail.clone(), echo.then_some((prefix, true))));
            }
            waits.spawn(async move { (i, child.wait().await) });
            group.push(Running { worker: w.clone(), pgid, end: None, tail });
        }
        let end = watch(&mut group, &mut waits, &mut sigint, &mut sigterm, opts.grace).await?;
        // The pipes close when the workers (and their children) are gone; do not wait
        // forever on a straggler that inherited one.
        let _ =
            tokio::time::timeout(Duration::from_secs(5), async { while readers.join_next().await.is_some() {} }).await;
        match end {
            GroupEnd::AllOk => return Ok(0),
            GroupEnd::Stopped(sig) => {
                eprintln!("segzoo-launch: {} received; every worker was sent it and has ended", sig.as_str());
                return Ok(128 + sig as i32);
            }
            GroupEnd::Failed { index, end } => {
                let r = &group[index];
                if attempt < opts.max_restarts {
                    eprintln!(
                        "segzoo-launch: rank {} failed ({end}); restarting the local group (restart {} of {})",
                        r.worker.rank,
                        attempt + 1,
                        opts.max_restarts
                    );
                    continue;
                }
                eprint!("{}", summary(&group, index, end, &opts.log_dir));
                // Never 0: a failure is a non-zero code or a signal.
                return Ok(end.exit_code());
            }
        }
    }
    unreachable!("the last attempt returns")
}

/// Signal every worker still running (its whole process group).
fn stop(group: &[Running], sig: Signal) {
    for r in group.iter().filter(|r| r.end.is_none()) {
        // The group may be gone already (ESRCH): nothing to stop then.
        let _ = killpg(r.pgid, sig);
    }
}

async fn watch(
    group: &mut [Running],
    waits: &mut JoinSet<(usize, std::io::Result<ExitStatus>)>,
    sigint: &mut tokio::signal::unix::Signal,
    sigterm: &mut tokio::signal::unix::Signal,
    grace: Duration,
) -> anyhow::Result<GroupEnd> {
    let mut failed: Option<(usize, End)> = None;
    let mut stopped: Option<Signal> = None;
    let mut deadline: Option<Instant> = None;
    while !waits.is_empty() {
        let kill_at = deadline.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            joined = waits.join_next() => {
                let Some(joined) = joined else { break };
                let (i, status) = joined?;
                let end = End::from_status(status?);
                group[i].end = Some(end);
                if !end.ok() && failed.is_none() && stopped.is_none() {
                    failed = Some((i, end));
                    let others = if group.iter().any(|r| r.end.is_none()) { "; stopping the other workers" } else { "" };
                    eprintln!("segzoo-launch: rank {} failed ({end}){others}", group[i].worker.rank);
                    stop(group, Signal::SIGTERM);
                    deadline = Some(Instant::now() + grace);
                }
            }
            _ = sigint.recv() => {
                // A second Ctrl-C does not wait for the grace period.
                let sig = if stopped == Some(Signal::SIGINT) { Signal::SIGKILL } else { Signal::SIGINT };
                stopped.get_or_insert(Signal::SIGINT);
                stop(group, sig);
                deadline.get_or_insert(Instant::now() + grace);
            }
            _ = sigterm.recv() => {
                stopped.get_or_insert(Signal::SIGTERM);
                stop(group, Signal::SIGTERM);
                deadline.get_or_insert(Instant::now() + grace);
            }
            _ = tokio::time::sleep_until(kill_at), if deadline.is_some() => {
                eprintln!("segzoo-launch: grace period over; killing the workers still running");
                stop(group, Signal::SIGKILL);
                deadline = None;
            }
        }
    }
    Ok(match (stopped, failed) {
        (Some(sig), _) => GroupEnd::Stopped(sig),
        (None, Some((index, end))) => GroupEnd::Failed { index, end },
        (None, None) => GroupEnd::AllOk,
    })
}

/// Copy one output stream of a worker, line by line, to its log file, its tail and
/// (when `echo` is set) the console with the rank prefix.
async fn pump(
    stream: impl AsyncRead + Unpin,
    file: Arc<Mutex<std::fs::File>>,
    tail: Arc<Mutex<VecDeque<String>>>,
    echo: Option<(String, bool)>,
) {
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
        if let Some((prefix, to_stderr)) = &echo {
            // A closed console (`| head`) must not stop the logging.
            let _ = if *to_stderr {
                writeln!(std::io::stderr().lock(), "{prefix}{line}")
            } else {
                writeln!(std::io::stdout().lock(), "{prefix}{line}")
            };
        }
    }
}

fn summary(group: &[Running], index: usize, end: End, log_dir: &Path) -> String {
    let r = &group[index];
    let mut text = format!(
        "segzoo-launch: job failed: rank {} (device {}) {end}\nsegzoo-launch: last lines of {}:\n",
        r.worker.rank,
        r.worker.device_id,
        log_path(log_dir, r.worker.rank).display()
    );
    if let Ok(t) = r.tail.lock() {
        if t.is_empty() {
            text += "    (no output)\n";
        }
        for l in t.iter() {
            text += &format!("    {l}\n");
        }
    }
    let others: Vec<String> = group
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != index)
        .map(|(_, o)| format!("rank {}: {}", o.worker.rank, o.end.map_or("still running".into(), |e| e.to_string())))
        .collect();
    if !others.is_empty() {
        text += &format!("segzoo-launch: the others: {}\n", others.join(", "));
    }
    text
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
}
