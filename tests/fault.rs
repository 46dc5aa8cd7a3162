//! Jobs that fail instead of hanging, and that lose no work when stopped: a stalled rank
//! (under mpirun over MPI; under segzoo-launch over gloo) ends the job at the collective
//! timeout with the collective, the step and the silent rank named; SIGTERM through
//! segzoo-launch checkpoints the current step, and a resume from it ends with the weights of
//! an uninterrupted run; a failing worker's error file is what the launcher reports.
#[path = "common/jobs.rs"]
mod jobs;

use jobs::{alive, free_port, json, launcher, rank_table, signal, text, wait_for, wait_with_deadline, BIN};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tch::Tensor;

/// A small HRNet on 32×32 LIP-layout images, fast enough for dozens of steps: the recipe of
/// `jobs::CONFIG` with 40 epochs and no step checkpoints, so a run lasts long enough to be
/// stopped and leaves only the checkpoints a stop writes.
const CONFIG: &str = r#"
[model]
name = "hrnetv2_w18_small_v1"
freeze_bn = true

[data]
dataset = "lip"
root = "data"
crop_size = [32, 32]
scale_range = [1.0, 1.0]
num_workers = 1

[train]
epochs = 40
batch_size = 2
optimizer = "sgd"
lr = 1e-4
checkpoint_steps = 0
checkpoint_interval = 1000
keep_checkpoints = 10

[eval]
start = 1000

[log]
interval = 1
"#;

fn setup(d: &Path) {
    let out = Command::new(BIN)
        .args(["synth", "lip", "--out", "data", "--n", "8", "--size", "32x32"])
        .current_dir(d)
        .output();
    let out = out.expect("synth runs");
    assert!(out.status.success(), "{}", text(&out));
    std::fs::write(d.join("c.toml"), CONFIG).expect("config");
}

/// What became of a job whose rank 1 was stopped (SIGSTOP) after its first step: the job's
/// exit status, how long after the stop it ended, its output, and the ranks left behind
/// (continued and killed here, so nothing outlives the test). Heartbeats are read in `beats`.
struct Stalled {
    status: std::process::ExitStatus,
    took: Duration,
    output: String,
    left: Vec<i32>,
}

fn stall_rank_1(mut job: std::process::Child, beats: &Path, limit: Duration) -> Stalled {
    let beat = |r: usize| json(&beats.join(format!("rank_{r}.heartbeat.json")));
    wait_for(Duration::from_secs(120), "rank 1's first step", || {
        beat(1).is_some_and(|b| b["step"].as_u64() >= Some(1))
    });
    let pid = |r: usize| beat(r).and_then(|b| b["pid"].as_i64()).expect("pid") as i32;
    let (pid0, pid1) = (pid(0), pid(1));
    signal(pid1, libc::SIGSTOP);
    let stopped = Instant::now();
    let status = wait_with_deadline(&mut job, limit);
    let took = stopped.elapsed();
    let output = text(&job.wait_with_output().expect("output"));
    // mpirun's daemon may still be reaping its ranks for a moment after mpirun returns.
    let gone = Instant::now() + Duration::from_secs(3);
    while [pid0, pid1].iter().any(|&p| alive(p)) && Instant::now() < gone {
        std::thread::sleep(Duration::from_millis(50));
    }
    let left: Vec<i32> = [pid0, pid1].into_iter().filter(|&p| alive(p)).collect();
    for &p in &left {
        signal(p, libc::SIGCONT);
        signal(p, libc::SIGKILL);
    }
    Stalled { status, took, output, left }
}

#[test]
fn a_stalled_rank_ends_the_mpirun_job_at_the_timeout_naming_the_collective_and_the_step() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    setup(d);
    let job = Command::new("mpirun")
        .args(["--allow-run-as-root", "--oversubscribe", "-n", "2", BIN, "train", "--config", "c.toml"])
        .args(["--set", "dist.timeout_s=5", "--set", "train.output_dir=run"])
        .current_dir(d)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mpirun runs (scripts/setup.sh installs openmpi-bin)");
    // Each rank's heartbeat (in the run's directory under mpirun) says its step and pid.
    let Stalled { status, took, output: all, left } = stall_rank_1(job, &d.join("run"), Duration::from_secs(5 + 15));
    assert_eq!(status.code(), Some(124), "the timeout's exit code: {all}");
    assert!(took >= Duration::from_secs(4), "ended after {took:?}, before the timeout: {all}");
    assert!(left.is_empty(), "ranks {left:?} were left behind: {all}");
    let line =
        all.lines().find(|l| l.starts_with("error: rank 0/2: ")).unwrap_or_else(|| panic!("no error line: {all}"));
    // Where rank 0 waits depends on where rank 1 stopped: a gradient bucket, the loss mean…
    assert!(
        line.contains("(MPI ") && line.contains(" at step ") && line.ends_with("did not complete in 5 s"),
        "{line}"
    );
    assert!(all.contains("rank 1: silent: stopped, stuck or dead"), "the silent rank is named: {all}");
    let report = json(&d.join("run/rank_0.error.json")).expect("rank 0's error file");
    assert_eq!((report["kind"].as_str(), report["exit_code"].as_i64()), (Some("timeout"), Some(124)));
    assert_eq!(report["message"].as_str(), line.strip_prefix("error: "), "{report}");
}

/// The same under segzoo-launch over gloo: rank 0 waits in a gloo collective for the
/// stopped rank 1, its watchdog ends it at `dist.timeout_s` naming the collective, the step
/// and the silent rank, and the launcher stops the rest (SIGKILL after the grace period
/// reaches a stopped process) and exits with the timeout's code.
#[test]
fn a_stalled_rank_under_gloo_ends_the_launchers_job_at_the_timeout_naming_the_collective() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    setup(d);
    std::fs::write(d.join("t.json"), rank_table(&["127.0.0.1"], 2)).expect("table");
    let job = Command::new(launcher())
        .args(["--rank-table", "t.json", "--server-id", "127.0.0.1", "--log-dir", "lg", "--grace-period", "2"])
        .args(["--master-port", &free_port().to_string(), "--console", "none", "--", BIN, "train"])
        .args(["--config", "c.toml", "--set", "dist.timeout_s=5", "--set", "train.output_dir=run"])
        .current_dir(d)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("segzoo-launch runs");
    // Heartbeats are in the launcher's log directory.
    let Stalled { status, took, output: all, left } = stall_rank_1(job, &d.join("lg"), Duration::from_secs(5 + 25));
    let log = std::fs::read_to_string(d.join("lg/rank_0.log")).expect("rank 0's log");
    assert_eq!(status.code(), Some(124), "the timeout's exit code: {all}\n{log}");
    assert!(took >= Duration::from_secs(4), "ended after {took:?}, before the timeout: {log}");
    assert!(left.is_empty(), "ranks {left:?} were left behind: {all}");
    let line =
        log.lines().find(|l| l.starts_with("error: rank 0/2: ")).unwrap_or_else(|| panic!("no error line: {log}"));
    assert!(
        line.contains("(gloo ") && line.contains(" at step ") && line.ends_with("did not complete in 5 s"),
        "{line}"
    );
    assert!(log.contains("rank 1: silent: stopped, stuck or dead"), "the silent rank is named: {log}");
    let report = json(&d.join("lg/rank_0.error.json")).expect("rank 0's error file");
    assert_eq!((report["kind"].as_str(), report["exit_code"].as_i64()), (Some("timeout"), Some(124)));
    // The launcher's summary is rank 0's report.
    assert!(all.contains("error reported by rank 0") && all.contains(line.trim_start_matches("error: ")), "{all}");
}

/// The model's and the optimiser's tensors of a checkpoint, by name.
fn weights(path: &Path) -> Vec<(String, Tensor)> {
    let mut w = Tensor::read_safetensors(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    w.retain(|(n, _)| n.starts_with("model.") || n.starts_with("optim."));
    w.sort_by(|a, b| a.0.cmp(&b.0));
    w
}

fn checkpoints(run: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(run.join("checkpoints"))
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    names.retain(|n| n.starts_with("ckpt_step_"));
    names.sort();
    names
}

#[test]
fn sigterm_through_the_launcher_checkpoints_the_current_step_and_the_resume_ends_like_an_unbroken_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    setup(d);
    let table = Path::new(env!("CARGO_MANIFEST_DIR")).join("rank_tables/hccl_1p.json");
    let launch = |out_dir: &str, extra: &[&str]| {
        let mut cmd = Command::new(launcher());
        cmd.arg("--rank-table").arg(&table);
        cmd.args(["--server-id", "127.0.0.1", "--max-restarts", "1", "--console", "none", "--log-dir", "lg"]);
        cmd.args(["--", BIN, "train", "--config", "c.toml", "--set", &format!("train.output_dir={out_dir}")]);
        cmd.args(extra).current_dir(d).stdout(Stdio::null()).stderr(Stdio::piped());
        cmd
    };
    let mut job = launch("run", &[]).spawn().expect("segzoo-launch runs");
    // A few steps in (one metrics line per step), between checkpoints.
    let steps =
        || std::fs::read_to_string(d.join("run/metrics.jsonl")).map_or(0, |m| m.matches(r#""kind":"train""#).count());
    wait_for(Duration::from_secs(120), "3 training steps", || steps() >= 3);
    signal(job.id() as i32, libc::SIGTERM);
    let status = wait_with_deadline(&mut job, Duration::from_secs(30));
    let log = std::fs::read_to_string(d.join("lg/rank_0.log")).expect("rank log");
    assert_eq!(status.code(), Some(143), "the launcher exits 128 + SIGTERM: {log}");
    let saved = checkpoints(&d.join("run"));
    assert_eq!(saved.len(), 1, "one checkpoint, at the step SIGTERM came: {saved:?}\n{log}");
    let step: u64 = saved[0].trim_start_matches("ckpt_step_").trim_end_matches(".safetensors").parse().expect("step");
    assert!((3..160).contains(&step), "{saved:?}");
    assert!(log.contains(&format!("stopped by SIGTERM at step {step}; checkpoint")), "{log}");
    // No restart after a stop the launcher was asked for.
    assert!(!log.contains("restart 1 of 1"), "{log}");

    let resumed = launch("run", &["--resume", "auto"]).output().expect("resume");
    let all = text(&resumed);
    assert!(resumed.status.success(), "{all}");
    let log = std::fs::read_to_string(d.join("lg/rank_0.log")).expect("rank log");
    assert!(log.contains(&format!("at step {step}")), "resumed from the SIGTERM checkpoint: {log}");
    let straight = launch("straight", &[]).output().expect("uninterrupted run");
    assert!(straight.status.success(), "{}", text(&straight));
    let last = "checkpoints/ckpt_step_00000160.safetensors";
    let (a, b) = (weights(&d.join("run").join(last)), weights(&d.join("straight").join(last)));
    assert_eq!(a.len(), b.len());
    for ((name, x), (_, y)) in a.iter().zip(&b) {
        assert!(x.equal(y), "{name} differs from the uninterrupted run's");
    }
}
