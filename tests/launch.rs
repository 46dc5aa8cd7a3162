//! `segzoo-launch` running real segzoo workers on the CPU.
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const SEGZOO: &str = env!("CARGO_BIN_EXE_segzoo");

fn repo(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

/// The launcher binary, built next to segzoo by `cargo test --workspace`.
fn launcher() -> PathBuf {
    let p = Path::new(SEGZOO).with_file_name("segzoo-launch");
    assert!(p.exists(), "{} missing: run the workspace's tests (cargo test --workspace)", p.display());
    p
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

#[test]
fn the_quickstart_trains_and_checkpoints_under_the_launcher() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let synth = Command::new(SEGZOO)
        .args(["synth", "cityscapes", "--out", "data/synth_cityscapes", "--train", "4", "--val", "2"])
        .args(["--size", "256x128"])
        .current_dir(d)
        .output()
        .expect("synth");
    assert!(synth.status.success(), "{}", text(&synth));
    let out = Command::new(launcher())
        .arg("--rank-table")
        .arg(repo("rank_tables/hccl_1p.json"))
        .args(["--server-id", "127.0.0.1", "--log-dir", "lg", "--", SEGZOO, "train", "--config"])
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

#[test]
fn cpu_workers_of_the_launcher_are_told_to_use_mpirun() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let gen = Command::new(launcher())
        .args(["gen-table", "--server-id", "127.0.0.1", "--devices", "0-1", "-o", "t.json"])
        .current_dir(d)
        .status()
        .expect("gen-table");
    assert!(gen.success());
    let out = Command::new(launcher())
        .args(["--rank-table", "t.json", "--server-id", "127.0.0.1", "--grace-period", "2", "--", SEGZOO])
        .args(["dist-check", "--device", "cpu"])
        .current_dir(d)
        .output()
        .expect("segzoo-launch runs");
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(all.contains("job failed: rank "), "{all}");
    assert!(all.contains("mpirun -n 2 segzoo train"), "{all}");
    // The failed rank's error file (SEGZOO_ERROR_FILE, in the log dir) is what the summary says.
    let rank: usize = all
        .split("job failed: rank ")
        .nth(1)
        .and_then(|t| t.split(' ').next())
        .and_then(|r| r.parse().ok())
        .expect("rank");
    let file = d.join(format!("logs/rank_{rank}.error.json"));
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&file).expect("the failed rank's error file")).expect("json");
    assert_eq!((report["rank"].as_u64(), report["kind"].as_str()), (Some(rank as u64), Some("error")));
    let message = report["message"].as_str().expect("message");
    assert!(message.contains("has no MPI world to join"), "{message}");
    assert!(all.contains(&format!("error reported by rank {rank} (")) && all.contains(message), "{all}");
}
