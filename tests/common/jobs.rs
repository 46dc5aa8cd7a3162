//! Helpers shared by the tests that run real multi-rank jobs (mpirun, segzoo-launch,
//! torchrun- and Slurm-style environments): the small LIP recipe, running and waiting for
//! processes, and comparing runs by their checkpoints and metrics.
#![allow(dead_code)]
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};
use tch::Tensor;

pub const BIN: &str = env!("CARGO_BIN_EXE_segzoo");

/// A small HRNet on 32×32 LIP-layout images: no scaling and crops inside the image, so no
/// pixel is ignored and each image weighs the same in the loss; BN frozen, so a sample's
/// output does not depend on its batch (frozen at its initial statistics, the net is
/// unnormalised: hence the small learning rate). With these, 2 ranks × batch 2 take exactly
/// the steps of 1 process × batch 4, up to summation order (measured: 6e-8 after 3 steps).
pub const CONFIG: &str = r#"
[model]
name = "hrnetv2_w18_small_v1"
freeze_bn = true

[data]
dataset = "lip"
root = "data"
crop_size = [32, 32]
scale_range = [1.0, 1.0]
flip = true
num_workers = 1

[train]
epochs = 2
optimizer = "sgd"
lr = 1e-4
momentum = 0.9
weight_decay = 1e-4
checkpoint_steps = 1
keep_checkpoints = 10

[eval]
start = 1
interval = 1
batch_size = 3

[log]
interval = 1
"#;

pub fn segzoo(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN).args(args).current_dir(dir).output().expect("segzoo runs")
}

pub fn mpirun(dir: &Path, n: usize, args: &[&str]) -> Output {
    Command::new("mpirun")
        .args(["--allow-run-as-root", "--oversubscribe", "-n", &n.to_string(), BIN])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("mpirun runs (scripts/setup.sh installs openmpi-bin)")
}

pub fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

pub fn ok(out: Output) -> String {
    let text = text(&out);
    assert!(out.status.success(), "{text}");
    text
}

/// Synthetic LIP data (8 images of 32×32) and the recipe as `c.toml`.
pub fn setup(d: &Path) {
    ok(segzoo(d, &["synth", "lip", "--out", "data", "--n", "8", "--size", "32x32"]));
    std::fs::write(d.join("c.toml"), CONFIG).expect("config");
}

/// The launcher binary, built next to segzoo by `cargo test --workspace`.
pub fn launcher() -> PathBuf {
    let p = Path::new(BIN).with_file_name("segzoo-launch");
    assert!(p.exists(), "{} missing: run the workspace's tests (cargo test --workspace)", p.display());
    p
}

/// A TCP port free on loopback a moment ago.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

pub fn model_tensors(path: &Path) -> HashMap<String, Tensor> {
    Tensor::read_safetensors(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .into_iter()
        .filter(|(n, _)| n.starts_with("model."))
        .collect()
}

pub fn max_diff(a: &HashMap<String, Tensor>, b: &HashMap<String, Tensor>) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter().map(|(n, t)| (t - &b[n]).abs().max().double_value(&[])).fold(0.0, f64::max)
}

fn metrics(run: &Path, kind: &str, field: &str) -> Vec<f64> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap_or_else(|e| panic!("{}/metrics.jsonl: {e}", run.display()))
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json line"))
        .filter(|v| v["kind"] == kind)
        .map(|v| v[field].as_f64().expect("number"))
        .collect()
}

/// The per-step training losses of a run, from metrics.jsonl.
pub fn losses(run: &Path) -> Vec<f64> {
    metrics(run, "train", "loss")
}

/// Training steps done so far, from rank 0's metrics.jsonl (0 before the first log line).
pub fn steps_done(run: &Path) -> u64 {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["kind"] == "train")
        .filter_map(|v| v["step"].as_u64())
        .max()
        .unwrap_or(0)
}

/// The mIoU of every evaluation while training, from metrics.jsonl.
pub fn evals(run: &Path) -> Vec<f64> {
    metrics(run, "eval", "miou")
}

/// Model tensors of a run's step checkpoint.
pub fn step_weights(run: &Path, step: u32) -> HashMap<String, Tensor> {
    model_tensors(&run.join(format!("checkpoints/ckpt_step_{step:08}.safetensors")))
}

/// The largest difference of two runs' model tensors, relative to each tensor's scale (≥ 1),
/// over the tensors `which` selects.
pub fn max_rel_diff(a: &HashMap<String, Tensor>, b: &HashMap<String, Tensor>, which: impl Fn(&str) -> bool) -> f64 {
    a.iter()
        .filter(|(n, t)| which(n) && t.kind() == tch::Kind::Float)
        .map(|(n, t)| (t - &b[n]).abs().max().double_value(&[]) / t.abs().max().double_value(&[]).max(1.0))
        .fold(0.0, f64::max)
}

/// Two runs took the same first `steps` steps: per-step losses and parameters equal to 1e-5
/// and BN running statistics to 1e-4 (relative: two BN kernels round one ill-conditioned
/// variance differently, see tests/dist.rs). Returns the first run's weights after them and
/// the parameter and statistics differences.
pub fn assert_trains_alike(plain: &Path, other: &Path, steps: u32) -> (HashMap<String, Tensor>, f64, f64) {
    let (mut lp, mut lo) = (losses(plain), losses(other));
    assert!(lp.len() >= steps as usize && lo.len() >= steps as usize, "{lp:?} vs {lo:?}: fewer than {steps} steps");
    lp.truncate(steps as usize);
    lo.truncate(steps as usize);
    for (a, b) in lp.iter().zip(&lo) {
        assert!((a - b).abs() <= 1e-5 * a.abs().max(1.0), "losses {lp:?} vs {lo:?}");
    }
    let (p, o) = (step_weights(plain, steps), step_weights(other, steps));
    let params = max_rel_diff(&p, &o, |n| !n.contains(".running_"));
    assert!(params <= 1e-5, "parameters differ by {params} (relative)");
    let stats = max_rel_diff(&p, &o, |n| n.contains(".running_"));
    assert!(stats <= 1e-4, "BN running statistics differ by {stats} (relative)");
    (p, params, stats)
}

/// Running or stopped; a zombie (exited, not yet reaped by whoever inherited it) is not.
pub fn alive(pid: i32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The state follows the parenthesised command name.
    stat.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z') && !rest.starts_with('X'))
}

pub fn signal(pid: i32, sig: i32) {
    // SAFETY: a plain kill(2).
    assert_eq!(unsafe { libc::kill(pid, sig) }, 0, "kill({pid}, {sig})");
}

/// Poll `ready` every 50 ms for up to `limit`.
pub fn wait_for(limit: Duration, what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn json(path: &Path) -> Option<serde_json::Value> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// Wait for a child with a deadline; kill it (and fail) past the deadline.
pub fn wait_with_deadline(child: &mut std::process::Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the job did not end within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A rank table of `servers` (ids) × `devices` devices each, ranks in table order.
pub fn rank_table(servers: &[&str], devices: usize) -> String {
    let list: Vec<String> = servers
        .iter()
        .enumerate()
        .map(|(s, id)| {
            let devs: Vec<String> =
                (0..devices).map(|d| format!(r#"{{"device_id": "{d}", "rank_id": "{}"}}"#, s * devices + d)).collect();
            format!(r#"{{"server_id": "{id}", "device": [{}]}}"#, devs.join(", "))
        })
        .collect();
    format!(
        r#"{{"version": "1.0", "server_count": "{}", "status": "completed", "server_list": [{}]}}"#,
        servers.len(),
        list.join(", ")
    )
}
