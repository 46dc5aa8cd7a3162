//! The deploy form (BatchNorm folded) and ONNX export: ONNX Runtime (the project's .venv,
//! `scripts/onnx_run.py`) must give `segzoo forward`'s outputs to 1e-4 for every
//! architecture, at two input sizes; metadata round-trips; bad input is refused cleanly.
mod common;

use common::{max_abs_diff, tiny};
use segzoo::deploy::export::{onnx_from, onnx_model, write_proto, ExportOptions, Exportable};
use segzoo::models::layers::Scope;
use segzoo::models::{Model, Network};
use std::path::{Path, PathBuf};
use std::process::Command;
use tch::{Device, Kind, Tensor};

const TOL: f64 = 1e-4;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn python() -> PathBuf {
    let p = root().join(".venv/bin/python");
    assert!(p.exists(), "{} is missing: run scripts/setup.sh (it installs onnxruntime)", p.display());
    p
}

fn segzoo(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_segzoo")).args(args).output().expect("segzoo runs")
}

fn ok(out: &std::process::Output) -> String {
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Running BatchNorm statistics of a trained net (random ones blow activations up to
/// 1e4 and more): eval outputs of sane size, so 1e-4 is a meaningful tolerance.
fn calibrate(forward: &dyn Fn(&Tensor, bool) -> Vec<Tensor>, side: i64) {
    let x = Tensor::randn([2, 3, side, side], (Kind::Float, Device::Cpu));
    tch::no_grad(|| {
        for _ in 0..30 {
            forward(&x, true);
        }
    });
}

/// Scales the classifier layers (every tensor with `classes` rows) so that the logits are
/// at most 3 in size, as a trained model's are: random heads give logits in the hundreds,
/// where fp32 rounding alone exceeds 1e-4.
fn tame(params: &[(String, Tensor)], classes: i64, forward: &dyn Fn(&Tensor) -> Tensor) {
    let x = Tensor::randn([1, 3, 64, 64], (Kind::Float, Device::Cpu));
    let f = 3.0 / tch::no_grad(|| forward(&x)).abs().max().double_value(&[]);
    tch::no_grad(|| {
        for (_, t) in params.iter().filter(|(_, t)| t.dim() >= 1 && t.size()[0] == classes && t.is_floating_point()) {
            let _ = t.shallow_clone().g_mul_scalar_(f);
        }
    });
}

/// ONNX Runtime's outputs on `x`, by output name.
fn run_onnx(model: &Path, x: &Tensor, dir: &Path) -> Vec<(String, Tensor)> {
    let (input, output) = (dir.join("ort_in.safetensors"), dir.join("ort_out.safetensors"));
    Tensor::write_safetensors(&[("input", x)], &input).expect("write input");
    let out = Command::new(python())
        .arg(root().join("scripts/onnx_run.py"))
        .args([model, &input, &output])
        .output()
        .expect("python runs");
    assert!(out.status.success(), "onnx_run.py: {}", String::from_utf8_lossy(&out.stderr));
    Tensor::read_safetensors(&output).expect("read ORT outputs")
}

fn randn(n: i64, h: i64, w: i64) -> Tensor {
    Tensor::randn([n, 3, h, w], (Kind::Float, Device::Cpu))
}

/// Exports `model`'s deploy form and checks it against the training form on `sizes`:
/// the deploy form in segzoo, and the ONNX file in ONNX Runtime, each to 1e-4.
fn check_model(model: &Model, sizes: &[(i64, i64, i64)], dir: &Path) {
    let inputs: Vec<Tensor> = sizes.iter().map(|&(n, h, w)| randn(n, h, w)).collect();
    let expected: Vec<Tensor> = inputs.iter().map(|x| tch::no_grad(|| model.forward_main(x, false))).collect();
    let proto = onnx_model(model, &ExportOptions::default()).expect("exports");
    assert!(model.is_folded(), "{}: export folds BatchNorm", model.preset);
    let path = dir.join(format!("{}.onnx", model.preset));
    write_proto(&proto, &path).expect("writes");
    for ((x, want), size) in inputs.iter().zip(&expected).zip(sizes) {
        let deploy = tch::no_grad(|| model.forward_main(x, false));
        let d = max_abs_diff(&deploy, want);
        assert!(d < TOL, "{} {size:?}: deploy form differs from the training form by {d}", model.preset);
        let got = run_onnx(&path, x, dir);
        assert_eq!(got.len(), 1, "one output, logits");
        assert_eq!(got[0].0, "output_logits");
        assert_eq!(got[0].1.size(), want.size(), "{} {size:?}: shape", model.preset);
        let d = max_abs_diff(&got[0].1, want);
        assert!(d < TOL, "{} {size:?}: ONNX Runtime differs from segzoo by {d}", model.preset);
    }
}

fn calibrated_tiny(preset: &str, classes: i64) -> Model {
    let m = tiny(preset, classes, 7);
    calibrate(&|x, t| m.forward_t(x, t), 64);
    tame(&m.state_dict(), classes, &|x| m.forward_main(x, false));
    m
}

#[test]
fn onnx_of_tiny_hrnetv2_ocrnet_and_hrnet_c_matches_segzoo_at_several_sizes() {
    let dir = tempfile::tempdir().expect("tempdir");
    // HRNetV2 takes any size: odd sides exercise sizes read off tensors, not computed.
    check_model(&calibrated_tiny("hrnetv2_w18_small_v2", 5), &[(1, 64, 96), (2, 50, 70)], dir.path());
    // Class counts unlike any tiny layer's width (4, 8, 16, 32), so `tame` finds the heads.
    check_model(&calibrated_tiny("ocrnet_hrnetv2_w48", 6), &[(1, 64, 64), (2, 96, 64)], dir.path());
    check_model(&calibrated_tiny("hrnet_w18_c", 10), &[(1, 64, 64), (2, 96, 128)], dir.path());
}

#[test]
fn onnx_of_refinenet_blocks_with_batchnorm_unfolded_matches_segzoo() {
    let dir = tempfile::tempdir().expect("tempdir");
    tch::manual_seed(3);
    let vs = tch::nn::VarStore::new(Device::Cpu);
    let scope = Scope::root(vs.root(), false);
    // RefineNet's blocks (CRP, adapt, fuse, refine) on a one-block-per-stage ResNet.
    let net = segzoo::models::refinenet::RefineNet::new(&scope, 3, [1, 1, 1, 1]);
    calibrate(&|x, t| net.forward(x, t), 64);
    let vars = vs.variables();
    let params: Vec<(String, Tensor)> =
        scope.entries().into_iter().map(|e| (e.name.clone(), vars[&e.name].shallow_clone())).collect();
    let forward = |x: &Tensor| vec![net.forward(x, false).swap_remove(0)];
    tame(&params, 3, &|x| forward(x).swap_remove(0));
    let e = Exportable {
        name: "refinenet blocks".into(),
        params,
        forward: &forward,
        output_names: vec!["logits".into()],
        input_multiple: net.input_multiple(),
    };
    let proto = onnx_from(&e, &ExportOptions::default(), Device::Cpu).expect("exports");
    let graph = proto.graph.as_ref().expect("graph");
    assert!(graph.node.iter().any(|n| n.op_type == "BatchNormalization"), "unfolded BN exports as BatchNormalization");
    let path = dir.path().join("refinenet.onnx");
    write_proto(&proto, &path).expect("writes");
    for x in [randn(1, 64, 64), randn(2, 50, 82)] {
        let want = tch::no_grad(|| forward(&x)).swap_remove(0);
        let got = run_onnx(&path, &x, dir.path());
        assert_eq!(got[0].1.size(), want.size());
        let d = max_abs_diff(&got[0].1, &want);
        assert!(d < TOL, "RefineNet blocks {:?}: ONNX Runtime differs by {d}", x.size());
    }
}

#[test]
fn an_unsupported_op_fails_the_export_naming_it() {
    let w = Tensor::ones([1], (Kind::Float, Device::Cpu));
    let forward = |x: &Tensor| vec![x.cumsum(3, Kind::Float) * &w];
    let e = Exportable {
        name: "test net".into(),
        params: vec![("w".into(), w.shallow_clone())],
        forward: &forward,
        output_names: vec!["logits".into()],
        input_multiple: 1,
    };
    let err = onnx_from(&e, &ExportOptions::default(), Device::Cpu).expect_err("cumsum has no mapping");
    let msg = format!("{err:#}");
    assert!(msg.contains("aten::cumsum") && msg.contains("supported:"), "{msg}");
}

/// A full-size preset with calibrated statistics, saved as a weights file.
fn calibrated_preset(preset: &str, dir: &Path) -> PathBuf {
    tch::manual_seed(11);
    let m = segzoo::models::build(&segzoo::models::ModelSpec::preset(preset), Device::Cpu).expect("builds");
    calibrate(&|x, t| m.forward_t(x, t), 64);
    tame(&m.state_dict(), m.num_classes, &|x| m.forward_main(x, false));
    let path = dir.join(format!("{preset}.safetensors"));
    segzoo::models::weights::save(&m, &path).expect("saves");
    path
}

#[test]
fn full_size_presets_export_through_the_cli_and_onnxruntime_agrees_with_forward() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    for (preset, classes, sizes) in
        [("hrnetv2_w18_small_v2", 19, [(1, 64, 128), (2, 96, 64)]), ("bisenetv2", 19, [(1, 64, 64), (1, 96, 160)])]
    {
        let weights = calibrated_preset(preset, d);
        let onnx = d.join(format!("{preset}.onnx"));
        let (w, o) = (weights.to_str().expect("utf-8"), onnx.to_str().expect("utf-8"));
        let text = ok(&segzoo(&["export", "--checkpoint", w, "--config", preset, "--format", "onnx", "--out", o]));
        assert!(text.contains("BatchNorms folded"), "{text}");
        for (k, (n, h, wd)) in sizes.into_iter().enumerate() {
            let x = randn(n, h, wd);
            let input = d.join("input.safetensors");
            Tensor::write_safetensors(&[("input", &x)], &input).expect("input");
            let fw = d.join("forward.safetensors");
            let args = ["forward", "--model", preset, "--weights", w, "--input", input.to_str().expect("utf-8")];
            ok(&segzoo(&[&args[..], &["--output", fw.to_str().expect("utf-8")]].concat()));
            let want = Tensor::read_safetensors(&fw).expect("forward output");
            let want = &want.iter().find(|(n, _)| n == "output_logits").expect("logits").1;
            let got = run_onnx(&onnx, &x, d);
            let diff = max_abs_diff(&got[0].1, want);
            eprintln!("{preset} size {k}: ONNX Runtime vs segzoo forward: {diff:.2e}");
            assert!(diff < TOL, "{preset} size {k}: ONNX Runtime differs from segzoo forward by {diff}");
        }
        // Metadata round-trips through ONNX Runtime's reader.
        let meta = d.join("meta.json");
        let input = d.join("input.safetensors");
        let out = Command::new(python())
            .arg(root().join("scripts/onnx_run.py"))
            .args([&onnx, &input, &d.join("o.safetensors")])
            .arg("--meta")
            .arg(&meta)
            .output()
            .expect("python");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&meta).expect("meta")).expect("json");
        assert_eq!(m["preset"], preset);
        assert_eq!(m["num_classes"], classes.to_string());
        let names: Vec<String> = serde_json::from_str(m["class_names"].as_str().expect("names")).expect("list");
        assert_eq!(names.len(), classes as usize);
        assert_eq!(names[0], "road");
        let palette: Vec<[u8; 3]> = serde_json::from_str(m["palette"].as_str().expect("palette")).expect("list");
        assert_eq!(palette[0], [128, 64, 128]);
        let mean: Vec<f64> = serde_json::from_str(m["mean"].as_str().expect("mean")).expect("list");
        assert!((mean[0] - 0.485).abs() < 1e-6);
        assert_eq!(m["dynamic"], "true");
        let inputs: serde_json::Value = serde_json::from_str(m["__inputs__"].as_str().expect("inputs")).expect("json");
        assert_eq!(inputs["image"], serde_json::json!(["batch", "3", "height", "width"]));
    }
}

#[test]
fn export_refuses_a_mismatched_checkpoint_a_bad_size_and_an_unwritable_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let tiny_weights = d.join("tiny.safetensors");
    segzoo::models::weights::save(&tiny("hrnetv2_w18_small_v2", 19, 1), &tiny_weights).expect("save");
    let w = tiny_weights.to_str().expect("utf-8");
    let out_path = d.join("out.onnx");
    let o = out_path.to_str().expect("utf-8");

    let export = |ckpt: &str, preset: &str, out: &str, extra: &[&str]| {
        let args = ["export", "--checkpoint", ckpt, "--config", preset, "--format", "onnx", "--out", out];
        segzoo(&[&args[..], extra].concat())
    };
    let e = export(w, "hrnetv2_w18_small_v2", o, &[]);
    let msg = String::from_utf8_lossy(&e.stderr);
    assert!(!e.status.success() && msg.contains("shape"), "mismatched checkpoint: {msg}");
    assert!(!out_path.exists(), "nothing written for a failed export");

    let bis = calibrated_preset("bisenetv2", d);
    let b = bis.to_str().expect("utf-8");
    let e = export(b, "bisenetv2", o, &["--input-size", "100x96"]);
    let msg = String::from_utf8_lossy(&e.stderr);
    assert!(!e.status.success() && msg.contains("multiples of 32"), "bad size: {msg}");
    assert!(!out_path.exists());

    std::fs::write(d.join("file"), b"x").expect("file");
    let under_file = d.join("file/out.onnx");
    let e = export(b, "bisenetv2", under_file.to_str().expect("utf-8"), &[]);
    let msg = String::from_utf8_lossy(&e.stderr);
    assert!(!e.status.success() && msg.contains(&d.join("file").display().to_string()), "unwritable: {msg}");
    let leftovers: Vec<_> = std::fs::read_dir(d).expect("dir").filter_map(|e| e.ok()).map(|e| e.file_name()).collect();
    assert!(leftovers.iter().all(|n| !n.to_string_lossy().contains("tmp")), "no temporary file left: {leftovers:?}");

    // A fixed size that is a multiple works and is recorded.
    ok(&export(b, "bisenetv2", o, &["--input-size", "64x96"]));
    let x = randn(2, 64, 96);
    let got = run_onnx(&out_path, &x, d);
    assert_eq!(got[0].1.size(), [2, 19, 64, 96], "batch stays dynamic with a fixed size");
}

#[test]
fn torchscript_export_of_the_deploy_form_loads_and_agrees() {
    let dir = tempfile::tempdir().expect("tempdir");
    let m = calibrated_tiny("hrnetv2_w18_small_v2", 5);
    let x = randn(1, 64, 96);
    let want = tch::no_grad(|| m.forward_main(&x, false));
    let path = dir.path().join("m.pt");
    let opts = ExportOptions { input_size: Some((64, 96)), ..Default::default() };
    segzoo::deploy::export::write_torchscript(&m, &opts, &path).expect("exports");
    let module = tch::CModule::load(&path).expect("loads");
    let got = tch::no_grad(|| module.forward_ts(&[x])).expect("runs");
    assert!(max_abs_diff(&got, &want) < TOL);
}

#[test]
fn onnx_runtime_predictions_score_the_same_miou_as_segzoo_eval() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let data = d.join("synth");
    let r = data.to_str().expect("utf-8");
    ok(&segzoo(&["synth", "cityscapes", "--out", r, "--train", "1", "--val", "3", "--size", "100x60", "--seed", "5"]));
    // The tiny HRNetV2 as a config describes it, with trained-like statistics.
    let mut cfg =
        segzoo::config::Config { model: common::tiny_model_config("hrnetv2_w18_small_v2"), ..Default::default() };
    cfg.data.root = data.clone();
    cfg.data.num_workers = 1;
    let cfg_path = d.join("tiny.toml");
    std::fs::write(&cfg_path, toml::to_string(&cfg).expect("toml")).expect("config");
    tch::manual_seed(5);
    let m = segzoo::app::build_model(&cfg, Device::Cpu).expect("builds");
    calibrate(&|x, t| m.forward_t(x, t), 64);
    tame(&m.state_dict(), 19, &|x| m.forward_main(x, false));
    let weights = d.join("w.safetensors");
    segzoo::models::weights::save(&m, &weights).expect("save");
    let (c, w) = (cfg_path.to_str().expect("utf-8"), weights.to_str().expect("utf-8"));

    let eval_json = d.join("eval.json");
    ok(&segzoo(&["eval", "--config", c, "--checkpoint", w, "--json", eval_json.to_str().expect("utf-8")]));
    let onnx = d.join("m.onnx");
    ok(&segzoo(&[
        "export",
        "--config",
        c,
        "--checkpoint",
        w,
        "--format",
        "onnx",
        "--out",
        onnx.to_str().expect("utf-8"),
    ]));
    // What scripts/run_infer_onnx.sh runs: ONNX Runtime over the list, then eval-preds.
    let preds = d.join("preds");
    let out = Command::new(python())
        .arg(root().join("scripts/onnx_infer.py"))
        .args([&onnx, &data, Path::new("val.lst"), &preds])
        .output()
        .expect("python");
    assert!(out.status.success(), "onnx_infer.py: {}", String::from_utf8_lossy(&out.stderr));
    let preds_json = d.join("preds.json");
    let list = data.join("val.lst");
    ok(&segzoo(&[
        "eval-preds",
        "--dataset",
        "cityscapes",
        "--pred-dir",
        preds.to_str().expect("utf-8"),
        "--list",
        list.to_str().expect("utf-8"),
        "--root",
        r,
        "--json",
        preds_json.to_str().expect("utf-8"),
    ]));
    let miou = |p: &Path| -> f64 {
        let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(p).expect("json")).expect("json");
        v["miou"].as_f64().expect("miou")
    };
    let (a, b) = (miou(&eval_json), miou(&preds_json));
    assert!(a > 0.0, "a meaningful score: {a}");
    assert!((a - b).abs() < 1e-4, "segzoo eval {a} vs ONNX Runtime {b}");
}
