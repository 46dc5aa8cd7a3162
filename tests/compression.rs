//! Gradient compression (`dist.compression`) in real two-rank jobs under segzoo-launch over
//! gloo: every mode trains, and a resume on the same world size takes exactly the steps of
//! an uninterrupted run (PowerSGD's per-rank state included); PowerSGD restarts its state on
//! another world size and survives fp16 overflows. The codecs' arithmetic is unit-tested
//! in src/distributed/{compression,powersgd}.rs.
#[path = "common/jobs.rs"]
mod jobs;

use jobs::{free_port, launcher, losses, setup, step_weights, text, BIN};
use std::path::Path;
use std::process::Command;

fn repo(p: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

/// `segzoo train` of c.toml under segzoo-launch with `table`; the job's output and rank 0's log.
fn job(d: &Path, table: &str, log: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(launcher())
        .arg("--rank-table")
        .arg(repo(table))
        .args(["--server-id", "127.0.0.1", "--log-dir", log, "--master-port", &free_port().to_string(), "--"])
        .args([BIN, "train", "--config", "c.toml", "--set", "train.epochs=10", "--resume", "auto"])
        .args(args)
        .current_dir(d)
        .output()
        .expect("segzoo-launch runs");
    let rank0 = std::fs::read_to_string(d.join(log).join("rank_0.log")).unwrap_or_default();
    (out.status.success(), text(&out) + &rank0)
}

#[test]
fn each_compression_trains_over_two_ranks_and_resumes_on_the_same_world_exactly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    setup(d);
    for mode in ["fp16", "bf16", "powersgd"] {
        let set = |out: &str| {
            vec![
                "--set".to_string(),
                format!("dist.compression={mode}"),
                "--set".into(),
                "dist.powersgd_start_step=2".into(),
                "--set".into(),
                format!("train.output_dir={out}"),
            ]
        };
        let straight: Vec<String> = [&["--max-steps".to_string(), "6".into()][..], &set(&format!("{mode}_a"))].concat();
        let args: Vec<&str> = straight.iter().map(String::as_str).collect();
        let (ok, log) = job(d, "rank_tables/hccl_2p.json", &format!("l_{mode}_a"), &args);
        assert!(ok, "{log}");
        assert!(log.contains(&format!("gradient compression: {mode}")), "{log}");
        let l = losses(&d.join(format!("{mode}_a")));
        assert!(l.len() == 6 && l[5] < l[0] / 2.0, "{mode}: the loss falls: {l:?}");
        // Stopped after 3 steps, then resumed to 6.
        for steps in ["3", "6"] {
            let broken: Vec<String> =
                [&["--max-steps".to_string(), steps.into()][..], &set(&format!("{mode}_b"))].concat();
            let args: Vec<&str> = broken.iter().map(String::as_str).collect();
            let (ok, log) = job(d, "rank_tables/hccl_2p.json", &format!("l_{mode}_b{steps}"), &args);
            assert!(ok, "{log}");
            if mode == "powersgd" && steps == "6" {
                assert!(log.contains("powersgd state restored on every rank"), "{log}");
            }
        }
        let (a, b) = (step_weights(&d.join(format!("{mode}_a")), 6), step_weights(&d.join(format!("{mode}_b")), 6));
        for (name, t) in &a {
            assert!(t.equal(&b[name]), "{mode}: {name} differs between the resumed and the uninterrupted run");
        }
        assert!(d.join(format!("{mode}_b/checkpoints/ckpt_step_00000006.rank1-of2.safetensors")).is_file());
    }
}

#[test]
fn powersgd_starts_afresh_on_another_world_size_and_survives_fp16_overflows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    setup(d);
    let common = ["--set", "dist.compression=powersgd", "--set", "dist.powersgd_start_step=0"];
    let two = [&common[..], &["--max-steps", "3", "--set", "train.output_dir=w"]].concat();
    let (ok, log) = job(d, "rank_tables/hccl_2p.json", "l2", &two);
    assert!(ok, "{log}");
    // One rank (a group of one: an explicit backend) resumes the two ranks' checkpoint.
    let one =
        [&common[..], &["--max-steps", "4", "--set", "train.output_dir=w", "--set", "dist.backend=gloo"]].concat();
    let (ok, log) = job(d, "rank_tables/hccl_1p.json", "l1", &one);
    assert!(ok, "{log}");
    assert!(
        log.contains("PowerSGD state starts afresh: the checkpoint was written by 2 rank(s), this run has 1"),
        "{log}"
    );
    // fp16's first steps overflow at the initial loss scale: skipped on both ranks, the
    // compression state starts over, and training goes on with finite losses.
    let fp16 =
        [&common[..], &["--max-steps", "9", "--set", "train.precision=fp16", "--set", "train.output_dir=h"]].concat();
    let (ok, log) = job(d, "rank_tables/hccl_2p.json", "l3", &fp16);
    assert!(ok, "{log}");
    assert!(log.contains("fp16 overflow at step 1: step skipped"), "{log}");
    let l = losses(&d.join("h"));
    assert!(l.len() == 9 && l.iter().all(|v| v.is_finite()), "{l:?}");
    let w = step_weights(&d.join("h"), 9);
    assert!(w.values().all(|t| t.isfinite().all().int64_value(&[]) == 1), "finite weights");
    let records = std::fs::read_to_string(d.join("h/metrics.jsonl")).expect("metrics");
    let last: serde_json::Value =
        serde_json::from_str(records.lines().rfind(|l| l.contains("\"train\"")).expect("a train record"))
            .expect("json");
    assert!(last["skipped_steps"].as_u64().is_some_and(|n| (1..9).contains(&n)), "some steps skipped, not all: {last}");
}
