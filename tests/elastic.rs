//! Training across a change of world size: with `train.global_batch` the accumulation is
//! derived from the ranks present, a checkpoint records how far into its epoch the run
//! was, and a resume on another world size re-shards the rest of that epoch, so the job
//! takes the same optimiser steps and sees every sample once.
#[path = "common/jobs.rs"]
mod jobs;

use jobs::{losses, max_rel_diff, ok, segzoo, step_weights, steps_done, BIN, CONFIG};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// 16 images of 32×32: 4 steps of a global batch of 4 per epoch.
fn setup16(d: &Path) {
    ok(segzoo(d, &["synth", "lip", "--out", "data", "--n", "16", "--size", "32x32"]));
    std::fs::write(d.join("c.toml"), CONFIG).expect("config");
}

const COMMON: [&str; 12] = [
    "train",
    "--config",
    "c.toml",
    "--set",
    "train.global_batch=4",
    "--set",
    "train.batch_size=2",
    "--set",
    "eval.start=99",
    "--set",
    "train.epochs=3",
    "--resume",
];

fn args(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn mpirun2(d: &Path, args: &[&str], sample_log: &str) -> String {
    let out = Command::new("mpirun")
        .args(["--allow-run-as-root", "--oversubscribe", "-n", "2", "-x", "SEGZOO_SAMPLE_LOG", BIN])
        .args(args)
        .env("SEGZOO_SAMPLE_LOG", d.join(sample_log))
        .current_dir(d)
        .output()
        .expect("mpirun runs");
    ok(out)
}

/// (epoch, step) → (rank → samples), from the sample log.
fn samples(path: &Path) -> BTreeMap<(usize, u64), BTreeMap<usize, Vec<usize>>> {
    let mut out: BTreeMap<(usize, u64), BTreeMap<usize, Vec<usize>>> = BTreeMap::new();
    for line in std::fs::read_to_string(path).expect("sample log").lines() {
        let f: Vec<&str> = line.split(' ').collect();
        let parse = |s: &str| s.parse::<usize>().expect("number");
        let list = f[3].split(',').map(parse).collect();
        out.entry((parse(f[0]), parse(f[1]) as u64)).or_default().insert(parse(f[2]), list);
    }
    out
}

#[test]
fn a_two_rank_run_resumed_mid_epoch_on_one_rank_sees_every_sample_once_and_takes_the_same_steps() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    setup16(d);
    let run = |out: &str, steps: &str| {
        let set = format!("train.output_dir={out}");
        [&COMMON[..], &["auto", "--set", &set, "--max-steps", steps]]
            .concat()
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
    };
    let straight = run("straight", "4");
    let text = mpirun2(d, &args(&straight), "straight.log");
    assert!(text.contains("global batch 4 (accumulation 1), 4 steps per epoch"), "{text}");
    // Two steps on 2 ranks, then the epoch's other two on 1 rank with accumulation 2.
    mpirun2(d, &args(&run("elastic", "2")), "elastic.log");
    let one = Command::new(BIN)
        .args(args(&run("elastic", "4")))
        .env("SEGZOO_SAMPLE_LOG", d.join("elastic.log"))
        .current_dir(d)
        .output()
        .expect("segzoo runs");
    let text = ok(one);
    assert!(text.contains("world size 2 → 1: global batch 4 kept (train.global_batch)"), "{text}");
    assert!(text.contains("at step 2 (epoch 1, 8 of its samples done)"), "{text}");

    let seen = samples(&d.join("elastic.log"));
    assert_eq!(seen.keys().copied().collect::<Vec<_>>(), [(0, 1), (0, 2), (0, 3), (0, 4)]);
    assert_eq!(seen[&(0, 2)].len(), 2, "steps 1-2 on two ranks");
    assert_eq!(seen[&(0, 3)].len(), 1, "steps 3-4 on one");
    let mut all: Vec<usize> = seen.values().flat_map(|ranks| ranks.values().flatten().copied()).collect();
    all.sort_unstable();
    assert_eq!(all, (0..16).collect::<Vec<_>>(), "every sample of the epoch exactly once");
    // Each step took the same samples as the uninterrupted two-rank run's.
    let reference = samples(&d.join("straight.log"));
    for (key, ranks) in &seen {
        let mut a: Vec<usize> = ranks.values().flatten().copied().collect();
        let mut b: Vec<usize> = reference[key].values().flatten().copied().collect();
        a.sort_unstable();
        b.sort_unstable();
        assert_eq!(a, b, "step {key:?}");
    }
    let (s, e) = (step_weights(&d.join("straight"), 4), step_weights(&d.join("elastic"), 4));
    let diff = max_rel_diff(&s, &e, |_| true);
    assert!(diff <= 1e-5, "weights after 4 steps differ by {diff} (relative)");
    assert!(max_rel_diff(&s, &step_weights(&d.join("straight"), 1), |_| true) > 1e3 * diff.max(1e-9));
    assert_eq!(losses(&d.join("elastic")).len(), 4, "every step logged once");
    // Two starts: runs summary counts them as generations.
    let summary = ok(segzoo(d, &["runs", "summary", "elastic", "--json"]));
    let rows: serde_json::Value = serde_json::from_str(&summary).expect("json");
    assert_eq!(rows[0]["generations"], 2, "{summary}");
}

#[test]
fn a_global_batch_the_world_cannot_divide_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    setup16(d);
    let out = Command::new("mpirun")
        .args(["--allow-run-as-root", "--oversubscribe", "-n", "3", BIN])
        .args(&COMMON[..COMMON.len() - 1])
        .current_dir(d)
        .output()
        .expect("mpirun runs");
    let text = jobs::text(&out);
    assert!(!out.status.success());
    assert!(
        text.contains("train.global_batch = 4 is not a multiple of train.batch_size (2) × ranks (3) = 6"),
        "{text}"
    );
}

/// The launcher of `server` (127.0.0.1 or 127.0.0.2) for `table` in `dir`, logs in
/// `log_dir`, its output in `<log_dir>.out`, with `opts` before the segzoo `worker` command.
fn launch(
    dir: &Path,
    server: &str,
    log_dir: &str,
    ports: (u16, u16),
    opts: &[&str],
    worker: &[&str],
) -> std::process::Child {
    let out = std::fs::File::create(dir.join(format!("{log_dir}.out"))).expect("output file");
    Command::new(jobs::launcher())
        .args(["--rank-table", "t.json", "--server-id", server, "--log-dir", log_dir, "--join-timeout", "60"])
        .args(["--master-port", &ports.0.to_string(), "--group-port", &ports.1.to_string()])
        .args(["--grace-period", "20", "--heartbeat-timeout", "3", "--console", "none"])
        .args(opts)
        .arg("--")
        .arg(BIN)
        .args(worker)
        .current_dir(dir)
        .stdin(std::process::Stdio::null())
        .stdout(out.try_clone().expect("dup"))
        .stderr(out)
        .spawn()
        .expect("segzoo-launch starts")
}

fn read(path: impl AsRef<Path>) -> String {
    std::fs::read_to_string(path.as_ref()).unwrap_or_else(|e| panic!("{}: {e}", path.as_ref().display()))
}

/// The worker command of the elastic runs: 16 steps of a global batch of 4, a checkpoint
/// every step, resuming from the newest one.
fn elastic_worker(out: &str) -> Vec<String> {
    let args =
        [&COMMON[..COMMON.len() - 1], &["--set", "train.epochs=4", "--set", "train.checkpoint_steps=1"]].concat();
    let mut v: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    v.extend(["--resume", "auto", "--set", &format!("train.output_dir={out}")].map(String::from));
    v
}

/// Two servers of one device each. Server 2's launcher is SIGKILLed a few steps in: server
/// 1 waits out the rejoin timeout and goes on alone with accumulation 2; then server 2's
/// launcher is started again and the job goes back to two ranks. The job ends where an
/// uninterrupted two-rank run ends, with every optimiser step logged once and three
/// generations in the summary.
#[test]
fn a_job_that_loses_a_server_keeps_its_trajectory_and_takes_the_server_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    setup16(d);
    std::fs::write(d.join("t.json"), jobs::rank_table(&["127.0.0.1", "127.0.0.2"], 1)).expect("table");
    std::fs::write(d.join("one.json"), jobs::rank_table(&["127.0.0.1"], 2)).expect("table");
    // The uninterrupted run: the same two ranks on one server.
    let straight = elastic_worker("straight");
    let out = Command::new(jobs::launcher())
        .args(["--rank-table", "one.json", "--log-dir", "lg", "--master-port", &jobs::free_port().to_string(), "--"])
        .arg(BIN)
        .args(&straight)
        .current_dir(d)
        .output()
        .expect("segzoo-launch");
    assert!(out.status.success(), "{}", jobs::text(&out));

    let worker = elastic_worker("elastic");
    let worker: Vec<&str> = args(&worker);
    let ports = (jobs::free_port(), jobs::free_port());
    let opts = ["--min-servers", "1", "--rejoin-timeout", "2"];
    let mut first = launch(d, "127.0.0.1", "s1", ports, &opts, &worker);
    let mut second = launch(d, "127.0.0.2", "s2", ports, &opts, &worker);
    // A step between 2 and 4, from the test's pid.
    let kill_after = 2 + u64::from(std::process::id() % 3);
    jobs::wait_for(std::time::Duration::from_secs(300), "the first steps", || {
        steps_done(&d.join("elastic")) >= kill_after
    });
    second.kill().expect("SIGKILL server 2's launcher");
    let _ = second.wait();
    // Server 1 goes on alone, then takes server 2 back.
    jobs::wait_for(std::time::Duration::from_secs(300), "a step alone", || {
        read(d.join("s1.out")).contains("starting generation 1: servers 127.0.0.1, world size 1")
            && steps_done(&d.join("elastic")) >= kill_after + 3
    });
    let mut second = launch(d, "127.0.0.2", "s2", ports, &opts, &worker);
    for (job, log) in [(&mut first, "s1"), (&mut second, "s2")] {
        let status = jobs::wait_with_deadline(job, std::time::Duration::from_secs(600));
        assert!(status.success(), "{log}: {}", read(d.join(format!("{log}.out"))));
    }
    let summary = read(d.join("s1.out"));
    assert!(summary.contains("segzoo-launch: 3 generations:"), "{summary}");
    assert!(summary.contains("generation 0: servers 127.0.0.1, 127.0.0.2 (world size 2)"), "{summary}");
    assert!(summary.contains("lost server 127.0.0.2"), "{summary}");
    assert!(summary.contains("generation 1: server 127.0.0.1 (world size 1)"), "{summary}");
    assert!(summary.contains("server 127.0.0.2 joined; re-forming the job with it"), "{summary}");
    assert!(summary.contains("generation 2: servers 127.0.0.1, 127.0.0.2 (world size 2)"), "{summary}");
    assert!(read(d.join("s2.out")).contains("segzoo-launch: 3 generations:"), "the same summary on server 2");
    let log = read(d.join("s1/rank_0.log"));
    assert!(log.contains("world size 2 → 1: global batch 4 kept (train.global_batch)"), "{log}");
    assert!(log.contains("global batch 4 (accumulation 2)"), "{log}");
    assert!(log.contains("world size 1 → 2: global batch 4 kept"), "{log}");

    // Every optimiser step exactly once, and the world size of each.
    let records: Vec<serde_json::Value> = read(d.join("elastic/metrics.jsonl"))
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .filter(|v: &serde_json::Value| v["kind"] == "train")
        .collect();
    let steps: Vec<u64> = records.iter().map(|r| r["step"].as_u64().expect("step")).collect();
    assert_eq!(steps, (1..=16).collect::<Vec<_>>());
    let worlds: Vec<u64> = records.iter().map(|r| r["world_size"].as_u64().expect("world")).collect();
    assert!(worlds.contains(&1) && worlds[0] == 2 && worlds[15] == 2, "{worlds:?}");
    let (s, e) = (step_weights(&d.join("straight"), 16), step_weights(&d.join("elastic"), 16));
    let diff = max_rel_diff(&s, &e, |_| true);
    assert!(diff <= 1e-5, "the elastic run ends {diff} (relative) from the uninterrupted one");
    let rows: serde_json::Value =
        serde_json::from_str(&ok(segzoo(d, &["runs", "summary", "elastic", "--json"]))).expect("json");
    assert_eq!(rows[0]["generations"], 3);
}

/// With `--min-servers 2`, losing one of two servers ends the job: a non-zero exit, the
/// summary names the lost server, and the last checkpoint is intact.
#[test]
fn below_the_minimum_the_job_stops_naming_the_lost_server_and_keeps_its_checkpoint() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    setup16(d);
    std::fs::write(d.join("t.json"), jobs::rank_table(&["127.0.0.1", "127.0.0.2"], 1)).expect("table");
    let worker = elastic_worker("run");
    let worker: Vec<&str> = args(&worker);
    let ports = (jobs::free_port(), jobs::free_port());
    let opts = ["--min-servers", "2"];
    let mut first = launch(d, "127.0.0.1", "s1", ports, &opts, &worker);
    let mut second = launch(d, "127.0.0.2", "s2", ports, &opts, &worker);
    jobs::wait_for(std::time::Duration::from_secs(300), "two steps", || steps_done(&d.join("run")) >= 2);
    second.kill().expect("SIGKILL server 2's launcher");
    let _ = second.wait();
    let status = jobs::wait_with_deadline(&mut first, std::time::Duration::from_secs(120));
    let out = read(d.join("s1.out"));
    assert_eq!(status.code(), Some(1), "{out}");
    assert!(out.contains("segzoo-launch: job failed: lost server 127.0.0.2"), "{out}");
    let last = std::fs::read_dir(d.join("run/checkpoints"))
        .expect("checkpoints")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("ckpt_step_")))
        .max()
        .expect("a checkpoint");
    let tensors = tch::Tensor::read_safetensors(&last).unwrap_or_else(|e| panic!("{}: {e}", last.display()));
    assert!(tensors.iter().any(|(n, _)| n.starts_with("model.")), "{}", last.display());
}
