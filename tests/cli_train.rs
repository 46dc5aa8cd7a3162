//! `segzoo train`, `eval` and `bench train` as a user runs them.
use std::process::{Command, Output};

fn segzoo(dir: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_segzoo")).args(args).current_dir(dir).output().expect("segzoo runs")
}

fn ok(out: Output) -> String {
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

const CONFIG: &str = r#"
[model]
name = "hrnetv2_w18_small_v1"

[data]
dataset = "cityscapes"
root = "data"
crop_size = [32, 64]
base_size = 96
num_workers = 2

[train]
epochs = 2
batch_size = 2
output_dir = "run"

[eval]
start = 1
interval = 1

[log]
interval = 1
"#;

#[test]
fn train_eval_and_bench_from_the_command_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    ok(segzoo(d, &["synth", "cityscapes", "--out", "data", "--train", "4", "--val", "2", "--size", "96x48"]));
    std::fs::write(d.join("c.toml"), CONFIG).expect("config");
    let text = ok(segzoo(d, &["train", "--config", "c.toml", "--device", "cpu"]));
    assert!(text.contains("epoch [  1/2] step 1/2  loss"), "{text}");
    assert!(text.contains("miou:") && text.contains("iou array: ["), "{text}");
    assert!(text.contains("trained 4 steps"), "{text}");
    for f in ["run/config.toml", "run/metrics.jsonl", "run/curves.png", "run/checkpoints/best.safetensors"] {
        assert!(d.join(f).is_file(), "{f} missing");
    }
    let png = image::open(d.join("run/curves.png")).expect("a PNG");
    assert_eq!((png.width(), png.height()), (1500, 420));
    // A finished run resumed with `auto` has nothing left to do.
    let text = ok(segzoo(d, &["train", "--config", "c.toml", "--resume", "auto"]));
    assert!(text.contains("resumed from") && text.contains("trained 4 steps"), "{text}");
    let text = ok(segzoo(
        d,
        &["eval", "--config", "c.toml", "--checkpoint", "run/checkpoints/best.safetensors", "--json", "m.json"],
    ));
    assert!(text.contains("miou:") && text.contains("mIoU"), "{text}");
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(d.join("m.json")).expect("json")).expect("valid");
    assert_eq!(m["iou"].as_array().map(Vec::len), Some(19));
    let text = ok(segzoo(d, &["bench", "train", "--config", "c.toml", "--steps", "2"]));
    assert!(text.contains("ms/step") && text.contains("batch 2 of 32×64"), "{text}");
    // Bad input: a missing checkpoint, a wrong --resume path.
    let out = segzoo(d, &["train", "--config", "c.toml", "--resume", "nope.safetensors"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope.safetensors"));
}
