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
    let x = tch::Tensor::randn([1, 3, 48, 96], (tch::Kind::Float, tch::Device::Cpu));
    tch::Tensor::write_safetensors(&[("input", &x)], d.join("x.safetensors")).expect("input");
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
    // Predictions: one PNG per input, the input's size, palette colours or label ids.
    let ckpt = "run/checkpoints/best.safetensors";
    let text = ok(segzoo(
        d,
        &["infer", "--config", "c.toml", "--checkpoint", ckpt, "--input", "data/val.lst", "--output", "pred"],
    ));
    assert!(text.contains("wrote 2 predictions"), "{text}");
    let palette = segzoo::data::classes::ClassSet::builtin(segzoo::data::kind::DatasetKind::Cityscapes)
        .expect("Cityscapes")
        .palette;
    // A list's image paths are mirrored under --output.
    let val = d.join("pred/leftImg8bit/val");
    let mut pngs: Vec<_> = ["frankfurt", "lindau"]
        .iter()
        .flat_map(|city| std::fs::read_dir(val.join(city)).expect("dir").map(|e| e.expect("entry").path()))
        .collect();
    pngs.sort();
    assert_eq!(pngs.len(), 2, "{pngs:?}");
    assert!(pngs[0].to_string_lossy().ends_with("_leftImg8bit_infer.png"), "{pngs:?}");
    let img = image::open(&pngs[0]).expect("png").to_rgb8();
    assert_eq!((img.width(), img.height()), (96, 48));
    assert!(img.pixels().all(|p| palette.contains(&p.0)), "only palette colours");
    ok(segzoo(
        d,
        &[
            "infer",
            "--config",
            "c.toml",
            "--checkpoint",
            ckpt,
            "--input",
            "data/leftImg8bit/val",
            "--output",
            "ids",
            "--format",
            "labelid",
        ],
    ));
    let ids = image::open(d.join("ids/frankfurt/frankfurt_000004_000019_leftImg8bit.png")).expect("png").to_luma8();
    let valid = [7u8, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33];
    assert!(ids.pixels().all(|p| valid.contains(&p.0[0])), "Cityscapes label ids only");
    let one = "data/leftImg8bit/val/lindau/lindau_000005_000019_leftImg8bit.png";
    ok(segzoo(
        d,
        &["infer", "--config", "c.toml", "--checkpoint", ckpt, "--input", one, "--output", "ov", "--overlay"],
    ));
    assert!(d.join("ov/lindau_000005_000019_leftImg8bit_infer.png").is_file());
    // Multi-scale + flip + sliding window evaluation reports throughput.
    let text = ok(segzoo(
        d,
        &["eval", "--config", "c.toml", "--checkpoint", ckpt, "--scales", "0.5,1.0,1.5", "--flip", "--sliding"],
    ));
    assert!(text.contains("miou:") && text.contains("img/s"), "{text}");
    // Export: weights only, official names, loadable strictly.
    ok(segzoo(d, &["export", "--checkpoint", ckpt, "--out", "w.safetensors"]));
    let names: Vec<String> =
        tch::Tensor::read_safetensors(d.join("w.safetensors")).expect("read").into_iter().map(|(n, _)| n).collect();
    assert!(
        names.contains(&"last_layer.3.weight".to_string())
            && !names.iter().any(|n| n.starts_with("optim.") || n == "meta.json")
    );
    let text = ok(segzoo(
        d,
        &[
            "forward",
            "--model",
            "c.toml",
            "--weights",
            "w.safetensors",
            "--input",
            "x.safetensors",
            "--output",
            "y.safetensors",
        ],
    ));
    assert!(text.contains("output_logits"), "{text}");
    let text = ok(segzoo(d, &["bench", "train", "--config", "c.toml", "--steps", "2"]));
    assert!(text.contains("ms/step") && text.contains("batch 2 of 32×64"), "{text}");
    // Bad input: a missing checkpoint, a wrong --resume path.
    let out = segzoo(d, &["train", "--config", "c.toml", "--resume", "nope.safetensors"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope.safetensors"));
}

#[test]
fn classification_trains_and_reports_top1_top5() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    ok(segzoo(d, &["synth", "imagenet", "--out", "inet", "--classes", "6", "--per-class", "2", "--size", "40"]));
    let cfg = r#"
[model]
name = "hrnet_w18_small_v1_c"
num_classes = 6
cls_head = { incre_channels = [4, 8, 16, 32], final_channels = 32 }

[data]
dataset = "imagenet"
root = "inet"
crop_size = [32, 32]
base_size = 36
num_workers = 2

[train]
epochs = 1
batch_size = 4
output_dir = "cls_run"

[eval]
batch_size = 4
"#;
    std::fs::write(d.join("cls.toml"), cfg).expect("config");
    let text = ok(segzoo(d, &["train", "--config", "cls.toml"]));
    assert!(text.contains("top-1") && text.contains("top-5"), "{text}");
    let text = ok(segzoo(d, &["eval", "--config", "cls.toml", "--checkpoint", "cls_run/checkpoints/best.safetensors"]));
    assert!(text.contains("top-1") && text.contains("(12 images)"), "{text}");
}
