//! `segzoo-launch` running real segzoo workers on the CPU: one worker alone, two workers
//! training data-parallel over gloo with SyncBN and the overlapped all-reduce, two launchers
//! as two servers on loopback (127.0.0.1 and 127.0.0.2) including a worker killed mid-run,
//! and a worker's error file as the launcher's summary.
#[path = "common/jobs.rs"]
mod jobs;

use jobs::{
    alive, assert_trains_alike, free_port, json, launcher, max_diff, max_rel_diff, ok, rank_table, segzoo, setup,
    signal, step_weights, text, wait_for, wait_with_deadline, BIN,
};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

fn repo(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

#[test]
fn the_quickstart_trains_and_checkpoints_under_the_launcher() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    ok(segzoo(
        d,
        &["synth", "cityscapes", "--out", "data/synth_cityscapes", "--train", "4", "--val", "2", "--size", "256x128"],
    ));
    let out = Command::new(launcher())
        .arg("--rank-table")
        .arg(repo("rank_tables/hccl_1p.json"))
        .args(["--server-id", "127.0.0.1", "--log-dir", "lg", "--", BIN, "train", "--config"])
        .arg(repo("configs/quickstart.toml"))
        .args(["--set", "data.crop_size=[64,128]", "--set", "data.base_size=256", "--set", "train.batch_size=2"])
        .args(["--max-steps", "2"])
        .current_dir(d)
        .output()
        .expect("segzoo-launch runs");
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    assert!(d.join("runs/quickstart/checkpoints/ckpt_step_00000002.safetensors").exists(), "{all}");
    assert!(all.contains("[rank 0] trained 2 steps"), "{all}");
    let log = std::fs::read_to_string(d.join("lg/rank_0.log")).expect("rank log");
    assert!(log.contains("saved runs/quickstart/checkpoints/ckpt_step_00000002.safetensors"), "{log}");
}

/// 128×128 images keep HRNet's coarsest branch at 4×4; BN in training mode, synchronized;
/// a small learning rate keeps three steps from amplifying rounding (see tests/dist.rs).
const SYNC: [&str; 10] = [
    "--set",
    "data.root=data128",
    "--set",
    "data.crop_size=[128,128]",
    "--set",
    "train.lr=1e-6",
    "--set",
    "model.freeze_bn=false",
    "--set",
    "eval.start=99",
];

fn synth128(d: &Path, n: usize) {
    ok(segzoo(d, &["synth", "lip", "--out", "data128", "--n", &n.to_string(), "--size", "128x128"]));
}

fn read(path: impl AsRef<Path>) -> String {
    std::fs::read_to_string(path.as_ref()).unwrap_or_else(|e| panic!("{}: {e}", path.as_ref().display()))
}

/// A 2-device table of CPU workers trains like one process holding the summed batch, with
/// SyncBatchNorm and the overlapped all-reduce, over gloo.
#[test]
fn two_cpu_workers_train_over_gloo_with_sync_bn_like_one_process_with_the_whole_batch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    setup(d);
    synth128(d, 8);
    // The shipped 2-device table of the README's launch table.
    std::fs::copy(repo("rank_tables/hccl_2p.json"), d.join("t.json")).expect("table");
    let common = [&["train", "--config", "c.toml", "--max-steps", "3", "--set", "train.epochs=5"][..], &SYNC].concat();
    ok(segzoo(d, &[&common[..], &["--set", "train.batch_size=4", "--set", "train.output_dir=plain"]].concat()));
    let worker = [&common[..], &["--set", "train.batch_size=2", "--set", "model.sync_bn=true"]].concat();
    let worker = [&worker[..], &["--set", "dist.overlap=true", "--set", "train.output_dir=sync"]].concat();
    let mut job = launch(d, "127.0.0.1", "lg", (free_port(), free_port()), &[], &worker).spawn().expect("launcher");
    let status = wait_with_deadline(&mut job, Duration::from_secs(300));
    let log = read(d.join("lg/rank_0.log"));
    assert!(status.success(), "{}\n{log}", read(d.join("lg.out")));
    assert!(log.contains("data parallel over 2 ranks (gloo backend): global batch 4"), "{log}");
    assert!(log.contains("SyncBatchNorm: batch statistics over 2 ranks"), "{log}");
    assert!(log.contains("gradient all-reduce overlapped with backward"), "{log}");
    let (p, params, _) = assert_trains_alike(&d.join("plain"), &d.join("sync"), 3);
    let moved = max_rel_diff(&p, &step_weights(&d.join("plain"), 1), |n| !n.contains(".running_"));
    assert!(moved > 10.0 * params, "weights moved {moved}, not clearly more than the difference {params}");
}

/// Two launchers share one table of 2 servers × 2 devices on loopback: the 4 ranks train
/// like one process with the whole batch (to 1e-5 over 3 steps); then a worker of the second server is killed
/// mid-run, both launchers restart the generation, it resumes from the last checkpoint, and
/// ends with the weights of the uninterrupted run.
#[test]
fn two_servers_train_together_and_survive_a_killed_worker_with_the_uninterrupted_weights() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    setup(d);
    synth128(d, 8);
    std::fs::write(d.join("t.json"), rank_table(&["127.0.0.1", "127.0.0.2"], 2)).expect("table");
    const STEPS: u32 = 6;
    let steps = STEPS.to_string();
    let common =
        [&["train", "--config", "c.toml", "--max-steps", &steps, "--set", "train.epochs=10"][..], &SYNC].concat();
    ok(segzoo(d, &[&common[..], &["--set", "train.batch_size=4", "--set", "train.output_dir=plain"]].concat()));
    let worker: Vec<String> = [&common[..], &["--set", "train.batch_size=1", "--set", "model.sync_bn=true"]]
        .concat()
        .into_iter()
        .map(String::from)
        .collect();
    let both = |out: &str, restarts: &str| {
        let ports = (free_port(), free_port());
        let output = format!("train.output_dir={out}");
        let mut w: Vec<&str> = worker.iter().map(String::as_str).collect();
        w.extend(["--resume", "auto", "--set", &output]);
        let opts = ["--max-restarts", restarts];
        let start = |server: &str, log: &str| launch(d, server, log, ports, &opts, &w).spawn().expect("launcher");
        (start("127.0.0.1", "s1"), start("127.0.0.2", "s2"))
    };

    let (mut a, mut b) = both("straight", "0");
    for (job, log) in [(&mut a, "s1"), (&mut b, "s2")] {
        let status = wait_with_deadline(job, Duration::from_secs(600));
        assert!(status.success(), "{log}: {}", read(d.join(format!("{log}.out"))));
    }
    let log = read(d.join("s1/rank_0.log"));
    assert!(log.contains("data parallel over 4 ranks (gloo backend): global batch 4"), "{log}");
    // Three steps: rounding differences grow with every step of BN in training mode.
    assert_trains_alike(&d.join("plain"), &d.join("straight"), 3);

    // The straight run's ranks left their last heartbeats ("ended"): not this run's.
    std::fs::remove_file(d.join("s2/rank_3.heartbeat.json")).expect("the straight run's heartbeat");
    let (mut a, mut b) = both("broken", "1");
    let done = |k: u64| json(&d.join("s2/rank_3.heartbeat.json")).is_some_and(|h| h["step"].as_u64() > Some(k));
    wait_for(Duration::from_secs(300), "step 3 on rank 3", || done(2));
    let pid = json(&d.join("s2/rank_3.heartbeat.json")).and_then(|h| h["pid"].as_i64()).expect("pid") as i32;
    signal(pid, libc::SIGKILL);
    for (job, log) in [(&mut a, "s1"), (&mut b, "s2")] {
        let status = wait_with_deadline(job, Duration::from_secs(600));
        assert!(status.success(), "{log}: {}", read(d.join(format!("{log}.out"))));
    }
    assert!(!alive(pid));
    let rank0 = read(d.join("s1/rank_0.log"));
    let marker = "---- segzoo-launch: generation 1: servers 127.0.0.1, 127.0.0.2, world size 4 ----";
    assert!(rank0.contains(marker), "{rank0}");
    let resumed = rank0.split(marker).nth(1).unwrap_or("");
    assert!(resumed.contains("resumed from"), "the new generation resumed: {rank0}");
    let rank3 = read(d.join("s2/rank_3.log"));
    assert!(rank3.contains(marker), "server 2 restarted too: {rank3}");
    let (straight, broken) = (step_weights(&d.join("straight"), STEPS), step_weights(&d.join("broken"), STEPS));
    let diff = max_diff(&straight, &broken);
    assert!(diff == 0.0, "the resumed run ends {diff} away from the uninterrupted one");
}

/// The launcher of `server` of `t.json` in `dir` with launcher options `opts` and the segzoo
/// `worker` command; logs in `log_dir`, its output in `<log_dir>.out` (a file: nothing can
/// block on a pipe). `ports`: the rendezvous's and the group's.
fn launch(dir: &Path, server: &str, log_dir: &str, ports: (u16, u16), opts: &[&str], worker: &[&str]) -> Command {
    let out = std::fs::File::create(dir.join(format!("{log_dir}.out"))).expect("output file");
    let mut cmd = Command::new(launcher());
    cmd.args(["--rank-table", "t.json", "--server-id", server, "--log-dir", log_dir, "--join-timeout", "60"])
        .args(["--master-port", &ports.0.to_string(), "--group-port", &ports.1.to_string()])
        .args(["--grace-period", "3", "--console", "none"])
        .args(opts)
        .arg("--")
        .arg(BIN)
        .args(worker)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("dup"))
        .stderr(out);
    cmd
}

/// A worker that fails (here: asking for MPI under the launcher) leaves an error file in
/// the launcher's log directory, and the launcher's summary is what it says.
#[test]
fn a_failed_workers_error_file_is_the_launchers_summary() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    std::fs::write(d.join("t.json"), rank_table(&["127.0.0.1"], 2)).expect("table");
    let out = Command::new(launcher())
        .args(["--rank-table", "t.json", "--server-id", "127.0.0.1", "--grace-period", "2"])
        .args(["--master-port", &free_port().to_string(), "--", BIN])
        .args(["dist-check", "--device", "cpu", "--backend", "mpi"])
        .current_dir(d)
        .output()
        .expect("segzoo-launch runs");
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(all.contains("job failed: rank "), "{all}");
    let rank: usize = all
        .split("job failed: rank ")
        .nth(1)
        .and_then(|t| t.split(' ').next())
        .and_then(|r| r.parse().ok())
        .expect("rank");
    let file = d.join(format!("logs/rank_{rank}.error.json"));
    let report = json(&file).expect("the failed rank's error file");
    assert_eq!((report["rank"].as_u64(), report["kind"].as_str()), (Some(rank as u64), Some("error")));
    let message = report["message"].as_str().expect("message");
    assert!(message.contains("started by segzoo-launch, not mpirun"), "{message}");
    assert!(all.contains(&format!("error reported by rank {rank} (")) && all.contains(message), "{all}");
}
