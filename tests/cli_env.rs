//! `segzoo env` and `segzoo config show` as a user runs them.
use std::process::Command;

fn segzoo(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_segzoo")).args(args).output().expect("segzoo runs")
}

#[test]
fn env_reports_every_field_without_failing() {
    let out = segzoo(&["env"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    for field in [
        "segzoo version:",
        "libtorch version: 2.11.0",
        "CUDA available:",
        "cuDNN available:",
        "NCCL:",
        "MPI:",
        "torch threads:",
    ] {
        assert!(text.contains(field), "missing {field:?} in:\n{text}");
    }
    assert!(text.contains("Open MPI"), "{text}");
}

#[test]
fn env_json_is_consistent() {
    let out = segzoo(&["env", "--json"]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
    assert_eq!(v["segzoo_version"], env!("CARGO_PKG_VERSION"));
    assert!(v["libtorch_version"].as_str().is_some_and(|s| s.starts_with("2.11.0")), "{v}");
    let available = v["cuda_available"].as_bool().expect("bool");
    let count = v["cuda_device_count"].as_i64().expect("int");
    assert_eq!(available, count > 0, "{v}");
    assert_eq!(v["cuda_devices"].as_array().map(Vec::len), Some(count as usize), "{v}");
    // NCCL: either a version, or a reason why not.
    assert!(v["nccl"]["version"].is_string() || v["nccl"]["detail"].is_string(), "{v}");
    assert_eq!(v["mpi"]["standard"].as_str().map(|s| s.contains('.')), Some(true), "{v}");
    assert!(v["torch_threads"].as_i64().is_some_and(|n| n >= 1), "{v}");
}

#[test]
fn config_show_round_trips_and_errors_exit_nonzero() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("c.toml");
    std::fs::write(&file, "[train]\nlr = 0.5\n").expect("write");
    let out = segzoo(&["config", "show", file.to_str().expect("utf8"), "--set", "train.epochs=7"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let shown = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(shown.contains("lr = 0.5") && shown.contains("epochs = 7"), "{shown}");
    // What `config show` prints is itself a valid config that resolves to the same thing.
    let again = dir.path().join("again.toml");
    std::fs::write(&again, &shown).expect("write");
    let out2 = segzoo(&["config", "show", again.to_str().expect("utf8")]);
    assert_eq!(String::from_utf8_lossy(&out2.stdout), shown);

    let out = segzoo(&["config", "show", file.to_str().expect("utf8"), "--set", "trian.lr=1"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("did you mean `train.lr`?"), "{err}");
}

#[test]
fn json_log_lines_parse_as_json_with_level_target_message_and_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let model = segzoo::models::build(&segzoo::models::ModelSpec::preset("hrnetv2_w18_small_v1"), tch::Device::Cpu)
        .expect("builds");
    segzoo::models::weights::save(&model, &d.join("w.safetensors")).expect("weights");
    let x = tch::Tensor::zeros([1, 3, 32, 32], (tch::Kind::Float, tch::Device::Cpu));
    tch::Tensor::write_safetensors(&[("input", &x)], d.join("x.safetensors")).expect("input");
    let out = Command::new(env!("CARGO_BIN_EXE_segzoo"))
        .args(["--log-format", "json", "forward", "--model", "hrnetv2_w18_small_v1"])
        .args(["--weights", "w.safetensors", "--input", "x.safetensors", "--output", "y.safetensors"])
        .current_dir(d)
        .output()
        .expect("runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {l}")))
        .collect();
    let loaded = lines
        .iter()
        .find(|v| v["message"].as_str().is_some_and(|m| m.starts_with("loaded ") && m.contains("w.safetensors")))
        .unwrap_or_else(|| panic!("no `loaded … tensors` line in {stderr}"));
    assert_eq!(loaded["level"], "INFO");
    assert!(loaded["target"].as_str().is_some_and(|t| t.starts_with("segzoo")), "{loaded}");
    let time = loaded["time"].as_str().expect("time");
    assert!(time.len() == 24 && time.ends_with('Z') && &time[10..11] == "T", "{time}");
    let out = segzoo(&["--log-level", "no=such=filter", "env"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--log-level"));
}

#[test]
fn env_reports_the_world_and_names_bad_variables() {
    let out = segzoo(&["env"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("world:            rank 0/1 local rank 0 device cpu backend single (single process)"),
        "{text}"
    );
    // torchrun's variables: a CPU rank of a job of two takes gloo.
    let out = Command::new(env!("CARGO_BIN_EXE_segzoo"))
        .arg("env")
        .env("RANK", "1")
        .env("WORLD_SIZE", "2")
        .env_remove("RANK_ID")
        .env_remove("RANK_SIZE")
        .output()
        .expect("runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("world:            rank 1/2 local rank 1 device cpu backend gloo (torchrun)"), "{text}");
    let out = Command::new(env!("CARGO_BIN_EXE_segzoo"))
        .args(["env", "--json"])
        .env("RANK_ID", "3")
        .env("RANK_SIZE", "2")
        .output()
        .expect("runs");
    assert!(out.status.success(), "env reports, it does not fail");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["world"]["Err"], "RANK_ID=3 is not below RANK_SIZE=2");
}

#[test]
fn env_under_mpirun_prints_one_line_per_rank() {
    if Command::new("mpirun").arg("--version").output().is_err() {
        panic!("mpirun missing: scripts/setup.sh installs openmpi-bin");
    }
    let out = Command::new("mpirun")
        .args(["--allow-run-as-root", "--oversubscribe", "-n", "2", env!("CARGO_BIN_EXE_segzoo"), "env"])
        .output()
        .expect("mpirun runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines: Vec<&str> = text.lines().filter(|l| l.starts_with("world:")).collect();
    lines.sort();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[0].contains("rank 0/2 local rank 0 device cpu backend mpi (mpirun)"), "{text}");
    assert!(lines[1].contains("rank 1/2 local rank 1 device cpu backend mpi (mpirun)"), "{text}");
}
