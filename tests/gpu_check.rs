//! scripts/gpu_check.sh, the check meant for a GPU machine, run with --cpu: every one of its
//! steps on the CPU (gloo for NCCL, small models), so that the script cannot rot between
//! the rare runs on a GPU.
use std::path::Path;
use std::process::Command;

#[test]
fn the_gpu_check_passes_every_step_on_the_cpu_and_writes_its_table_as_json() {
    let out = tempfile::tempdir().expect("tempdir");
    let bin = Path::new(env!("CARGO_BIN_EXE_segzoo")).parent().expect("binary folder");
    assert!(bin.join("segzoo-launch").exists(), "segzoo-launch missing: run the workspace's tests");
    let run = Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/gpu_check.sh"))
        .args(["--cpu", "--bin"])
        .arg(bin)
        .arg("--out")
        .arg(out.path())
        .output()
        .expect("scripts/gpu_check.sh runs");
    let text = String::from_utf8_lossy(&run.stdout).into_owned() + &String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{text}");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join("gpu_check.json")).expect("gpu_check.json"))
            .expect("JSON");
    assert_eq!(report["passed"], true, "{report}");
    let rows = report["rows"].as_array().expect("rows");
    let checks: Vec<&str> = rows.iter().map(|r| r["check"].as_str().expect("check")).collect();
    for want in [
        "collectives, gloo, 2 ranks on cpu",
        "2 ranks (gloo, cpu, overlap) = 1 process, BN frozen, 3 steps",
        "2 ranks (gloo, cpu, overlap) = 1 process, SyncBatchNorm, 1 step",
        "1 gloo rank, overlap + SyncBN + fp16 scaler",
        "eval deploy form, bf16 vs fp32",
    ] {
        assert!(checks.contains(&want), "no row {want:?} in {checks:?}");
    }
    assert!(rows.iter().all(|r| r["ok"] == true), "{report}");
    // The two-ranks rows carry their differences, within the check's limit.
    let frozen = rows.iter().find(|r| r["check"].as_str().is_some_and(|c| c.contains("BN frozen"))).expect("row");
    assert!(frozen["figures"]["params"].as_f64().expect("params") <= 1e-4, "{frozen}");
    let table = std::fs::read_to_string(out.path().join("gpu_check.md")).expect("gpu_check.md");
    assert!(table.starts_with("| check | result |"), "{table}");
}
