//! `segzoo model-info`, `forward` and `convert` as a user runs them.
mod common;

use std::path::Path;
use std::process::{Command, Output};

fn segzoo(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_segzoo")).args(args).output().expect("segzoo runs")
}

fn ok(out: &Output) -> String {
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The tiny OCRNet (19 classes) as a config file.
fn tiny_ocr() -> String {
    common::tiny_toml("ocrnet_hrnetv2_w48", 19)
}

#[test]
fn model_info_json_matches_the_reference_manifest() {
    let v: serde_json::Value =
        serde_json::from_str(&ok(&segzoo(&["model-info", "hrnetv2_w18_small_v2", "--json"]))).expect("JSON");
    let reference: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/reference/hrnetv2_w18_small_v2_cityscapes.json"),
        )
        .expect("manifest"),
    )
    .expect("JSON");
    assert_eq!(v["num_params"], reference["num_params"]);
    let names = |x: &serde_json::Value| -> Vec<(String, serde_json::Value)> {
        x["tensors"]
            .as_array()
            .expect("tensors")
            .iter()
            .map(|t| (t["name"].as_str().expect("name").to_string(), t["shape"].clone()))
            .collect()
    };
    assert_eq!(names(&v), names(&reference));
    let text = ok(&segzoo(&["model-info", "hrnet_w18_c", "--tensors"]));
    assert!(text.contains("parameters: 21299004"), "{text}");
    assert!(text.contains("classifier.weight") && text.contains("[1000, 2048]"), "{text}");
    let out = segzoo(&["model-info", "hrnetv2_w84"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("did you mean `hrnetv2_w48`?"));
}

#[test]
fn forward_writes_every_head_from_a_config_described_model() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("tiny_ocr.toml");
    std::fs::write(&cfg, tiny_ocr()).expect("write");
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let weights = dir.path().join("w.safetensors");
    let text = ok(&segzoo(&[
        "convert",
        fixtures.join("parity_ocrnet.pth").to_str().expect("utf8"),
        weights.to_str().expect("utf8"),
        "--model",
        cfg.to_str().expect("utf8"),
    ]));
    assert!(text.contains("wrote"), "{text}");
    let info = ok(&segzoo(&["model-info", cfg.to_str().expect("utf8")]));
    assert!(info.contains("outputs:    aux, logits"), "{info}");

    let output = dir.path().join("y.safetensors");
    let text = ok(&segzoo(&[
        "forward",
        "--model",
        cfg.to_str().expect("utf8"),
        "--weights",
        weights.to_str().expect("utf8"),
        "--input",
        fixtures.join("parity_ocrnet.safetensors").to_str().expect("utf8"),
        "--output",
        output.to_str().expect("utf8"),
    ]));
    assert!(text.contains("output_aux: [1, 19, 13, 18]") && text.contains("output_logits: [1, 19, 13, 18]"), "{text}");
    let got: std::collections::HashMap<String, tch::Tensor> =
        tch::Tensor::read_safetensors(&output).expect("output").into_iter().collect();
    let want: std::collections::HashMap<String, tch::Tensor> =
        tch::Tensor::read_safetensors(fixtures.join("parity_ocrnet.safetensors"))
            .expect("fixture")
            .into_iter()
            .collect();
    for k in ["output_aux", "output_logits"] {
        let d = (&got[k] - &want[k]).abs().max().double_value(&[]);
        assert!(d < 1e-3, "{k}: {d}");
    }
}

#[test]
fn forward_reports_bad_inputs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("tiny_ocr.toml");
    std::fs::write(&cfg, common::tiny_toml("ocrnet_hrnetv2_w48", 20)).expect("write");
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let out = segzoo(&[
        "forward",
        "--model",
        cfg.to_str().expect("utf8"),
        "--weights",
        fixtures.join("parity_ocrnet.pth").to_str().expect("utf8"),
        "--input",
        fixtures.join("parity_ocrnet.safetensors").to_str().expect("utf8"),
        "--output",
        dir.path().join("y.safetensors").to_str().expect("utf8"),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cls_head.weight: file [19, 16, 1, 1], model [20, 16, 1, 1]"), "{err}");
    // An input file without a tensor named `input`.
    let out = segzoo(&[
        "forward",
        "--model",
        "hrnetv2_w18_small_v1",
        "--input",
        dir.path().join("missing.safetensors").to_str().expect("utf8"),
        "--output",
        dir.path().join("y.safetensors").to_str().expect("utf8"),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.safetensors"));
}

#[test]
fn forward_on_bisenetv2_writes_all_five_heads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("x.safetensors");
    let x = tch::Tensor::randn([1, 3, 64, 64], (tch::Kind::Float, tch::Device::Cpu));
    tch::Tensor::write_safetensors(&[("input", &x)], &input).expect("write input");
    let output = dir.path().join("y.safetensors");
    let text = ok(&segzoo(&[
        "forward",
        "--model",
        "bisenetv2",
        "--input",
        input.to_str().expect("utf8"),
        "--output",
        output.to_str().expect("utf8"),
    ]));
    let mut names: Vec<String> = tch::Tensor::read_safetensors(&output)
        .expect("output")
        .into_iter()
        .map(|(n, t)| {
            assert_eq!(t.size(), vec![1, 19, 64, 64], "{n}");
            n
        })
        .collect();
    names.sort();
    assert_eq!(names, ["output_aux2", "output_aux3", "output_aux4", "output_aux5_4", "output_logits"], "{text}");
    // Sides must be multiples of 32.
    let x = tch::Tensor::randn([1, 3, 64, 80], (tch::Kind::Float, tch::Device::Cpu));
    tch::Tensor::write_safetensors(&[("input", &x)], &input).expect("write input");
    let out = segzoo(&[
        "forward",
        "--model",
        "bisenetv2",
        "--input",
        input.to_str().expect("utf8"),
        "--output",
        output.to_str().expect("utf8"),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("multiples of 32"));
    let listing = ok(&segzoo(&["models"]));
    assert!(
        listing.contains("bisenetv2") && listing.contains("refinenet_r101") && listing.contains("ocrnet_hrnetv2_w48")
    );
}
