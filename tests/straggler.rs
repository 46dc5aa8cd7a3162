//! The straggler report: two ranks under segzoo-launch, each pinned to a core of its own
//! (taskset); rank 1's core also runs busy processes, and rank 0 names rank 1, with its
//! server, device and a ratio above 1.5, within three log intervals; the launcher's summary
//! says so too. Without the busy processes and with a generous threshold nothing is named.
#[path = "common/jobs.rs"]
mod jobs;

use jobs::{free_port, launcher, ok, segzoo, text, BIN};
use std::path::Path;
use std::process::{Child, Command, Stdio};

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The job: 128×128 crops (a step long enough to see), a log line every 2 steps.
fn job(d: &Path, out: &str, ratio: &str) -> std::process::Output {
    let pin = d.join("pin.sh");
    std::fs::write(&pin, "#!/bin/sh\n# Each worker on the core of its rank.\nexec taskset -c \"$RANK_ID\" \"$@\"\n")
        .expect("pin.sh");
    std::fs::set_permissions(&pin, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    Command::new(launcher())
        .arg("--rank-table")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("rank_tables/hccl_2p.json"))
        .args(["--server-id", "127.0.0.1", "--log-dir", &format!("{out}_logs")])
        .args(["--master-port", &free_port().to_string(), "--"])
        .arg(&pin)
        .args([BIN, "train", "--config", "c.toml", "--max-steps", "8", "--set", "train.epochs=20"])
        .args(["--set", "train.batch_size=2", "--set", "log.interval=2", "--set", "data.crop_size=[128,128]"])
        .args(["--set", &format!("dist.straggler_ratio={ratio}"), "--set", &format!("train.output_dir={out}")])
        .current_dir(d)
        .output()
        .expect("segzoo-launch runs")
}

fn records(run: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .expect("metrics.jsonl")
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json"))
        .filter(|r| r["kind"] == "train")
        .collect()
}

struct Busy(Vec<Child>);

impl Drop for Busy {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[test]
fn a_rank_sharing_its_core_with_busy_processes_is_named_the_straggler() {
    if cores() < 2 || Command::new("taskset").arg("-V").output().is_err() {
        eprintln!("skipped: needs 2 cores and taskset (found {} cores)", cores());
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    jobs::setup(d);
    ok(segzoo(d, &["synth", "lip", "--out", "data", "--n", "16", "--size", "128x128"]));
    // Three busy loops on core 1: rank 1 gets a quarter of it, whatever else the machine runs.
    let busy = Busy(
        (0..3)
            .map(|_| {
                Command::new("taskset")
                    .args(["-c", "1", "sh", "-c", "while :; do :; done"])
                    .stdout(Stdio::null())
                    .spawn()
                    .expect("a busy loop")
            })
            .collect(),
    );
    let out = job(d, "slow", "1.3");
    drop(busy);
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    let rs = records(&d.join("slow"));
    assert_eq!(rs.len(), 4, "a record every 2 of 8 steps");
    let named: Vec<&serde_json::Value> = rs[..3].iter().filter_map(|r| r.get("straggler")).collect();
    assert!(
        named.iter().any(|s| s["rank"] == 1 && s["ratio"].as_f64().is_some_and(|v| v > 1.5)),
        "rank 1 named above 1.5 in the first three intervals: {rs:?}"
    );
    assert!(named.iter().all(|s| s["rank"] == 1 && s["place"] == "127.0.0.1 cpu"), "{rs:?}");
    assert!(rs.iter().all(|r| r["ranks"].as_array().is_some_and(|a| a.len() == 2)), "every rank's times: {rs:?}");
    assert!(all.contains("straggler: rank 1 (127.0.0.1 cpu) took ") && all.contains("compute-bound"), "{all}");
    assert!(all.contains("segzoo-launch: slowest rank most often: rank 1 ("), "the launcher's summary: {all}");
    let summary = ok(segzoo(d, &["runs", "summary", "slow"]));
    assert!(summary.contains("slowest rank") && summary.contains("1 ("), "{summary}");

    // Nothing slowed, a generous threshold: nobody is named.
    let out = job(d, "even", "3.0");
    assert!(out.status.success(), "{}", text(&out));
    let rs = records(&d.join("even"));
    assert!(rs.iter().all(|r| r.get("straggler").is_none() && r["straggler_ratio"].is_f64()), "{rs:?}");
}
