//! Watching training: TensorBoard event files (read back by segzoo's reader and by
//! TensorBoard's own), the step line's time breakdown and ETA, the merged multi-rank
//! trace of `train.trace_steps`, and `segzoo runs summary`.
use segzoo::tensorboard::writer::{points, PointValue};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_segzoo");

fn segzoo(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN).args(args).current_dir(dir).output().expect("segzoo runs")
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

fn ok(out: Output) -> String {
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    t
}

/// Two train images, two val images, 2 steps per epoch.
const CONFIG: &str = r#"
[model]
name = "hrnetv2_w18_small_v1"

[data]
dataset = "cityscapes"
root = "data"
crop_size = [32, 64]
base_size = 96
num_workers = 1

[train]
epochs = 3
batch_size = 2
output_dir = "run"

[eval]
start = 1
interval = 1
batch_size = 2

[log]
interval = 1
tensorboard_images = 1
"#;

fn setup(d: &Path, train: &str, size: &str) {
    ok(segzoo(d, &["synth", "cityscapes", "--out", "data", "--train", train, "--val", "2", "--size", size]));
    std::fs::write(d.join("c.toml"), CONFIG).expect("config");
}

/// (tag → steps) of the event files in `tb`.
fn tags(tb: &Path) -> BTreeMap<String, Vec<i64>> {
    let mut out: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for p in points(&segzoo::tensorboard::read_dir(tb).expect("event files read")) {
        out.entry(p.tag).or_default().push(p.step);
    }
    out
}

fn python() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python")
}

/// TensorBoard's own loader on `tb`: {tag: [steps]} for scalars and images.
fn tensorboard_reads(tb: &Path) -> BTreeMap<String, Vec<i64>> {
    let script = r#"
import json, sys
from tensorboard.backend.event_processing import event_accumulator as ea
acc = ea.EventAccumulator(sys.argv[1], size_guidance={ea.SCALARS: 0, ea.IMAGES: 0})
acc.Reload()
tags = acc.Tags()
out = {t: [e.step for e in acc.Scalars(t)] for t in tags["scalars"]}
out.update({t: [e.step for e in acc.Images(t)] for t in tags["images"]})
print(json.dumps(out))
"#;
    let out = Command::new(python())
        .args(["-c", script])
        .arg(tb)
        .output()
        .expect("the project's .venv python runs (scripts/setup.sh makes it)");
    assert!(out.status.success(), "TensorBoard's reader (scripts/setup.sh installs it): {}", text(&out));
    serde_json::from_slice(&out.stdout).expect("JSON from the reader")
}

#[test]
fn tensorboard_holds_train_and_val_scalars_and_images_and_a_resume_does_not_repeat_steps() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    setup(d, "4", "96x48");
    // 3 epochs × 2 steps; stop at step 3 (checkpoints at 2 and 3), then lose step 3's
    // checkpoint so that the resume redoes step 3, which is already in the events.
    ok(segzoo(d, &["train", "--config", "c.toml", "--max-steps", "3"]));
    std::fs::remove_file(d.join("run/checkpoints/ckpt_step_00000003.safetensors")).expect("checkpoint 3");
    assert_eq!(tags(&d.join("run/tb"))["train/loss"], vec![1, 2, 3]);
    let resumed = ok(segzoo(d, &["train", "--config", "c.toml", "--resume", "auto"]));
    assert!(resumed.contains("at step 2"), "{resumed}");
    let got = tags(&d.join("run/tb"));
    assert_eq!(got["train/loss"], vec![1, 2, 3, 4, 5, 6], "one curve, no step twice");
    assert_eq!(got["train/lr"], vec![1, 2, 3, 4, 5, 6]);
    assert_eq!(got["val/miou"], vec![2, 4, 6]);
    assert_eq!(got["val/image_0"], vec![2, 4, 6]);
    for tag in
        ["train/img_per_s", "train/data_wait_ms", "train/compute_ms", "val/pixel_acc", "sys/rss_mb", "val/iou/road"]
    {
        assert!(got.contains_key(tag), "{tag} missing: {:?}", got.keys());
    }
    // The image: image | ground truth | prediction over a legend.
    let events = segzoo::tensorboard::read_dir(&d.join("run/tb")).expect("events");
    let image = points(&events).into_iter().find(|p| p.tag == "val/image_0").expect("an image");
    let PointValue::Image(w, h, png) = image.value else { panic!("not an image: {image:?}") };
    let decoded = image::load_from_memory(&png).expect("PNG").to_rgb8();
    assert_eq!((decoded.width() as i32, decoded.height() as i32), (w, h));
    assert_eq!(w, 3 * 96 + 2 * 4);
    assert!(h > 48 + 20, "{h}");
    // TensorBoard itself reads the same tags and steps.
    let tb = tensorboard_reads(&d.join("run/tb"));
    for tag in ["train/loss", "val/miou", "val/image_0", "train/data_wait_ms"] {
        assert_eq!(tb.get(tag), got.get(tag), "{tag} as TensorBoard reads it");
    }

    // Off: no tb/ at all.
    ok(segzoo(
        d,
        &[
            "train",
            "--config",
            "c.toml",
            "--max-steps",
            "1",
            "--set",
            "log.tensorboard=false",
            "--set",
            "train.output_dir=off",
        ],
    ));
    assert!(d.join("off/metrics.jsonl").is_file());
    assert!(!d.join("off/tb").exists());
}

/// (ms/step, data, compute, comm, optim) of every step line.
fn step_lines(log: &str) -> Vec<[f64; 5]> {
    let num = |s: &str| s.trim().parse::<f64>().unwrap_or_else(|_| panic!("{s:?} in {log}"));
    log.lines()
        .filter(|l| l.contains(" ms/step ("))
        .map(|l| {
            let (head, rest) = l.split_once(" ms/step (data ").expect("breakdown");
            let step = num(head.rsplit("  ").next().expect("ms/step"));
            let (parts, tail) = rest.split_once(')').expect("closing parenthesis");
            let parts: Vec<f64> = parts
                .split(" + ")
                .map(|p| num(p.trim_start_matches(char::is_alphabetic).trim_start_matches(char::is_alphabetic)))
                .collect();
            let eta = tail.split("eta ").nth(1).expect("eta").split_whitespace().next().expect("eta value");
            let hms: Vec<&str> = eta.split(':').collect();
            assert!(hms.len() == 3 && hms[1].len() == 2 && hms[2].len() == 2, "eta {eta}");
            assert!(tail.trim_end().ends_with(" MB") && tail.contains("  mem "), "{l}");
            [step, parts[0], parts[1], parts[2], parts[3]]
        })
        .collect()
}

#[test]
fn step_line_parts_add_up_to_the_step_time_and_a_slow_loader_shows_as_data_wait() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    setup(d, "6", "96x48");
    // Storage that takes 700 ms a sample (the loader's test hook: a sleep, so contention
    // can only lengthen it).
    let delay_ms: u64 = 700;
    let out = Command::new(BIN)
        .args(["train", "--config", "c.toml", "--max-steps", "3", "--set", "eval.start=9"])
        .env("SEGZOO_LOADER_DELAY_MS", delay_ms.to_string())
        .current_dir(d)
        .output()
        .expect("segzoo runs");
    let log = ok(out);
    let lines = step_lines(&log);
    assert_eq!(lines.len(), 3, "{log}");
    for [step, data, compute, comm, optim] in &lines {
        let sum = data + compute + comm + optim;
        assert!((sum - step).abs() <= 0.1 * step, "parts {sum} vs step {step}: {log}");
    }
    // One worker loads a batch of two in at least 1400 ms, and the first step's clock
    // starts with the loader, so its data wait is at least that on any machine (less 5 %
    // for the timers). Later steps may hide the loading behind compute, the more so on a
    // busy machine, so their shares prove nothing.
    let least_wait = 0.95 * 2.0 * delay_ms as f64;
    assert!(lines[0][1] >= least_wait, "first step's data wait {} ms: {log}", lines[0][1]);
    // The same fields in metrics.jsonl.
    let records = std::fs::read_to_string(d.join("run/metrics.jsonl")).expect("metrics");
    let first: serde_json::Value = records
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("JSON"))
        .find(|v| v["kind"] == "train")
        .expect("a train record");
    for key in ["data_wait_ms", "compute_ms", "comm_ms", "optimizer_ms", "eta_s", "peak_mem_mb", "rss_mb"] {
        assert!(first[key].as_f64().is_some(), "{key} missing: {first}");
    }
    assert!(first["data_wait_ms"].as_f64().unwrap() >= least_wait, "{first}");
}

#[test]
fn mpirun_trace_steps_write_one_chrome_trace_with_a_lane_per_rank() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    setup(d, "8", "96x48");
    let out = Command::new("mpirun")
        .args(["--allow-run-as-root", "--oversubscribe", "-n", "2", BIN])
        .args(["train", "--config", "c.toml", "--set", "train.trace_steps=[2, 4]", "--set", "eval.start=9"])
        .current_dir(d)
        .output()
        .expect("mpirun runs (scripts/setup.sh installs openmpi-bin)");
    let log = ok(out);
    assert!(log.contains("trace of steps 2..=4 from 2 rank(s)"), "{log}");
    let trace: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("run/trace.json")).expect("trace.json")).expect("JSON");
    let events = trace["traceEvents"].as_array().expect("traceEvents");
    let complete: Vec<&serde_json::Value> = events.iter().filter(|e| e["ph"] == "X").collect();
    for rank in 0..2u64 {
        let mine: Vec<&&serde_json::Value> = complete.iter().filter(|e| e["pid"] == rank).collect();
        let steps: std::collections::BTreeSet<u64> = mine.iter().filter_map(|e| e["args"]["step"].as_u64()).collect();
        assert_eq!(steps.into_iter().collect::<Vec<_>>(), vec![2, 3, 4], "rank {rank}");
        for name in ["data wait", "forward", "backward", "optimizer"] {
            let n = mine.iter().filter(|e| e["name"] == name).count();
            assert_eq!(n, 3, "rank {rank}: {n} {name} spans");
        }
        assert!(
            mine.iter()
                .any(|e| e["tid"] == 1 && e["name"].as_str().is_some_and(|s| s.starts_with("all-reduce bucket"))),
            "rank {rank} has no bucket all-reduce"
        );
        assert!(mine.iter().all(|e| e["ts"].as_f64().is_some_and(|t| t >= 0.0) && e["dur"].as_f64().is_some()));
    }
    let lanes: Vec<&str> =
        events.iter().filter(|e| e["name"] == "process_name").filter_map(|e| e["args"]["name"].as_str()).collect();
    assert_eq!(lanes, ["rank 0", "rank 1"]);
}

#[test]
fn runs_summary_tells_finished_failed_and_killed_runs_apart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    setup(d, "4", "96x48");
    ok(segzoo(d, &["train", "--config", "c.toml", "--set", "train.output_dir=done", "--set", "train.epochs=1"]));
    // A train list naming an image that is not there fails in the loader.
    std::fs::write(d.join("data/bad.lst"), "leftImg8bit/missing.png gtFine/missing.png\n").expect("list");
    let failed = segzoo(
        d,
        &[
            "train",
            "--config",
            "c.toml",
            "--set",
            "train.output_dir=bad",
            "--set",
            "data.train_list=bad.lst",
            "--set",
            "train.batch_size=1",
        ],
    );
    assert!(!failed.status.success());
    // A long run, killed while it trains.
    let mut child = Command::new(BIN)
        .args(["train", "--config", "c.toml", "--set", "train.output_dir=long", "--set", "train.epochs=500"])
        .current_dir(d)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("segzoo starts");
    let started = std::time::Instant::now();
    while !std::fs::read_to_string(d.join("long/metrics.jsonl")).is_ok_and(|m| m.lines().count() >= 2) {
        assert!(started.elapsed().as_secs() < 120, "the long run logged nothing in 2 minutes");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let running = ok(segzoo(d, &["runs", "summary", "long"]));
    assert!(running.lines().nth(1).is_some_and(|l| l.trim_end().ends_with("running")), "{running}");
    child.kill().expect("kill");
    child.wait().expect("reaped");

    let table = ok(segzoo(d, &["runs", "summary", "done", "bad", "long"]));
    let status_of = |run: &str| {
        let line = table.lines().find(|l| l.starts_with(&format!("{run} "))).unwrap_or_else(|| panic!("{table}"));
        line.split_whitespace().last().expect("status").to_string()
    };
    assert_eq!(status_of("done"), "finished", "{table}");
    assert_eq!(status_of("bad"), "failed", "{table}");
    assert_eq!(status_of("long"), "killed", "{table}");
    assert!(table.contains("bad: failed — ") && table.contains("missing.png"), "the error is named: {table}");
    let done = table.lines().find(|l| l.starts_with("done ")).expect("done row");
    assert!(done.contains("hrnetv2_w18_small_v1") && done.contains("miou 0."), "{done}");
    let rows: serde_json::Value =
        serde_json::from_str(&ok(segzoo(d, &["runs", "summary", "done", "--json"]))).expect("JSON rows");
    assert_eq!(rows[0]["steps"], 2);
    assert_eq!(rows[0]["status"], "finished");
    // Not a run folder: named.
    let none = segzoo(d, &["runs", "summary", "data"]);
    assert!(!none.status.success() && text(&none).contains("not a run folder"), "{}", text(&none));
}
