//! MindSpore ModelZoo checkpoints in and out, against fixtures made by the ModelZoo's own
//! networks (scripts/fixtures/gen_mindspore.py): tiny HRNetV2 and OCRNet `.ckpt` files with
//! their MindSpore eval-mode outputs, a training checkpoint of each, and the full-size
//! networks' tag lists.
mod common;

use segzoo::mindspore::{ckpt, names};
use segzoo::models::weights::{self, LoadMode};
use segzoo::models::Arch;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use tch::Tensor;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn segzoo(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_segzoo")).args(args).output().expect("segzoo runs")
}

fn ok(out: &Output) -> String {
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn failure(out: &Output) -> String {
    assert!(!out.status.success(), "succeeded: {}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf8 path")
}

/// The tiny HRNet of the fixtures (19 classes; OCR mid 16, key 8) as a config file.
fn tiny_config(dir: &Path, preset: &str) -> PathBuf {
    let path = dir.join(format!("{preset}.toml"));
    std::fs::write(&path, common::tiny_toml(preset, 19)).expect("write config");
    path
}

fn read_map(path: &Path) -> HashMap<String, Tensor> {
    Tensor::read_safetensors(path).expect("safetensors").into_iter().collect()
}

/// `segzoo forward` on the fixture's input with `numerics`: the largest difference from
/// the MindSpore output of each head, and that output's largest magnitude.
fn forward_diffs(preset: &str, fixture_stem: &str, numerics: &str) -> Vec<(String, f64, f64)> {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = tiny_config(dir.path(), preset);
    let out = dir.path().join("out.safetensors");
    ok(&segzoo(&[
        "forward",
        "--model",
        s(&cfg),
        "--set",
        &format!("model.numerics={numerics}"),
        "--weights",
        s(&fixture(&format!("{fixture_stem}.ckpt"))),
        "--input",
        s(&fixture(&format!("{fixture_stem}.safetensors"))),
        "--output",
        s(&out),
    ]));
    let (got, want) = (read_map(&out), read_map(&fixture(&format!("{fixture_stem}.safetensors"))));
    let mut diffs: Vec<(String, f64, f64)> = want
        .iter()
        .filter(|(k, _)| k.starts_with("output_"))
        .map(|(k, w)| {
            assert_eq!(got[k].size(), w.size(), "{k}");
            (k.clone(), common::max_abs_diff(&got[k], w), w.abs().max().double_value(&[]))
        })
        .collect();
    diffs.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(!diffs.is_empty());
    diffs
}

/// OCRNet follows MindSpore to rounding; the ModelZoo's HRNetV2 rounds its concatenated
/// features to float16, where a 1e-7 difference upstream flips a few values by one half
/// ulp, so it is held to 1e-4 of the output's magnitude.
#[test]
fn modelzoo_checkpoints_reproduce_mindspore_outputs_only_under_mindspore_numerics() {
    for (preset, stem, tol) in [("ocrnet_hrnetv2_w48", "ms_ocrnet", 1e-5), ("hrnetv2_w48", "ms_hrnetv2", 1e-4)] {
        for (head, diff, scale) in forward_diffs(preset, stem, "mindspore") {
            assert!(diff <= tol * scale.max(1.0), "{stem} {head}: max |diff| {diff} (max |ref| {scale})");
        }
        // The official PyTorch operators give visibly different outputs.
        let worst = forward_diffs(preset, stem, "pytorch").iter().map(|d| d.1 / d.2).fold(0.0, f64::max);
        assert!(worst > 1e-2, "{stem}: pytorch numerics differ by only {worst} of the output");
    }
}

#[test]
fn training_checkpoints_hold_the_same_network_weights_and_skip_optimiser_state() {
    for (stem, arch) in [("ms_hrnetv2", Arch::HrnetV2), ("ms_ocrnet", Arch::OcrNet)] {
        let raw = ckpt::read(&fixture(&format!("{stem}_train.ckpt"))).expect("train ckpt");
        assert!(raw.iter().any(|(t, _)| t.starts_with("moments.")), "{stem}: no optimiser state in the fixture");
        assert!(raw.iter().any(|(t, _)| t == "global_step" || t == "learning_rate"));
        let eval = weights::read_tensors_for(&fixture(&format!("{stem}.ckpt")), Some(arch)).expect("ckpt");
        let train: HashMap<String, Tensor> =
            weights::read_tensors_for(&fixture(&format!("{stem}_train.ckpt")), Some(arch))
                .expect("ckpt")
                .into_iter()
                .collect();
        assert_eq!(eval.len(), train.len(), "{stem}");
        for (name, x) in &eval {
            assert!(train.get(name).is_some_and(|y| x.equal(y)), "{stem}: {name} differs or is missing");
        }
    }
    // A training checkpoint loads strictly into the model.
    let dir = tempfile::tempdir().expect("tempdir");
    let m = common::tiny("hrnetv2_w48", 19, 0);
    let report = weights::load_file(&m, &fixture("ms_hrnetv2_train.ckpt"), LoadMode::Strict).expect("strict load");
    assert!(report.loaded > 300, "{report:?}");
    // …as does Adam's, whose moment1/moment2/beta powers are skipped.
    weights::load_file(&m, &fixture("ms_hrnetv2_train_adam.ckpt"), LoadMode::Strict).expect("adam checkpoint");
    // And with a CRC trailer, which is checked.
    weights::load_file(&m, &fixture("ms_hrnetv2_crc.ckpt"), LoadMode::Strict).expect("crc checkpoint");
    let mut bytes = std::fs::read(fixture("ms_hrnetv2_crc.ckpt")).expect("read");
    bytes[100] ^= 0x40;
    let bad = dir.path().join("bad_crc.ckpt");
    std::fs::write(&bad, bytes).expect("write");
    let e = format!("{:#}", weights::load_file(&m, &bad, LoadMode::Strict).expect_err("corrupt"));
    assert!(e.contains("bad_crc.ckpt") && e.contains("CRC mismatch"), "{e}");
}

#[test]
fn ckpt_to_safetensors_and_back_is_bit_identical() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (preset, stem) in [("hrnetv2_w48", "ms_hrnetv2"), ("ocrnet_hrnetv2_w48", "ms_ocrnet")] {
        let cfg = tiny_config(dir.path(), preset);
        let st = dir.path().join(format!("{stem}.safetensors"));
        let back = dir.path().join(format!("{stem}.ckpt"));
        ok(&segzoo(&["convert", s(&fixture(&format!("{stem}.ckpt"))), s(&st), "--model", s(&cfg)]));
        // Back with the model, whose order is the ModelZoo network's: the very same file.
        let text = ok(&segzoo(&["convert", s(&st), s(&back), "--model", s(&cfg)]));
        assert!(text.contains("MindSpore ModelZoo"), "{text}");
        let original = std::fs::read(fixture(&format!("{stem}.ckpt"))).expect("read");
        assert!(std::fs::read(&back).expect("read") == original, "{stem}: the round trip changed the file");
        // From a training checkpoint, and back without --model (the names tell the
        // architecture; safetensors keeps no order): the same tensors, bit for bit.
        let st = dir.path().join(format!("{stem}_train.safetensors"));
        ok(&segzoo(&["convert", s(&fixture(&format!("{stem}_train.ckpt"))), s(&st)]));
        ok(&segzoo(&["convert", s(&st), s(&back)]));
        let by_tag = |p: &Path| -> HashMap<String, Vec<u8>> {
            ckpt::read(p)
                .expect("ckpt")
                .into_iter()
                .map(|(tag, t)| {
                    let mut bytes = vec![0u8; t.numel() * t.kind().elt_size_in_bytes()];
                    t.copy_data_u8(&mut bytes, t.numel());
                    (tag, bytes)
                })
                .collect()
        };
        assert!(by_tag(&back) == by_tag(&fixture(&format!("{stem}.ckpt"))), "{stem}: training checkpoint round trip");
    }
}

#[test]
fn export_ckpt_writes_the_tags_and_shapes_the_modelzoo_network_saves() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (preset, stem) in [("hrnetv2_w48", "ms_hrnetv2"), ("ocrnet_hrnetv2_w48", "ms_ocrnet")] {
        let cfg = tiny_config(dir.path(), preset);
        // A segzoo model with other weights (and non-zero OCR biases).
        let m = segzoo::models::build(&common::tiny_config(preset, 19), tch::Device::Cpu).expect("model");
        tch::no_grad(|| {
            for (name, t) in m.state_dict() {
                if name.ends_with(".bias") || name.ends_with("running_mean") {
                    let _ = t.shallow_clone().uniform_(-0.5, 0.5);
                }
            }
        });
        let weights_file = dir.path().join(format!("{stem}_segzoo.safetensors"));
        weights::save(&m, &weights_file).expect("save");
        let out = dir.path().join(format!("{stem}_export.ckpt"));
        let text = ok(&segzoo(&[
            "export",
            "--format",
            "ckpt",
            "--checkpoint",
            s(&weights_file),
            "--config",
            s(&cfg),
            "--out",
            s(&out),
        ]));
        assert!(text.contains("wrote"), "{text}");
        let err = failure(&segzoo(&[
            "export",
            "--format",
            "onnx",
            "--checkpoint",
            s(&weights_file),
            "--config",
            s(&cfg),
            "--set",
            "model.numerics=mindspore",
            "--out",
            s(&dir.path().join("m.onnx")),
        ]));
        assert!(err.contains("model.numerics = \"pytorch\""), "{err}");
        let exported = ckpt::read(&out).expect("exported ckpt");
        let modelzoo = ckpt::read(&fixture(&format!("{stem}.ckpt"))).expect("fixture");
        let sig = |ts: &[(String, Tensor)]| -> Vec<(String, Vec<i64>, tch::Kind)> {
            ts.iter().map(|(n, t)| (n.clone(), t.size(), t.kind())).collect()
        };
        assert_eq!(sig(&exported), sig(&modelzoo), "{stem}: tags, order, shapes or kinds differ");
        // Loaded back (OCR biases zero), the network computes what the segzoo model did:
        // each bias went into its BatchNorm's running mean.
        let again = segzoo::models::build(&common::tiny_config(preset, 19), tch::Device::Cpu).expect("model");
        weights::load_file(&again, &out, LoadMode::Strict).expect("exported ckpt loads");
        let x = Tensor::randn([1, 3, 64, 64], (tch::Kind::Float, tch::Device::Cpu));
        let (a, b) = tch::no_grad(|| (m.forward_t(&x, false), again.forward_t(&x, false)));
        for (p, q) in a.iter().zip(&b) {
            let d = common::max_abs_diff(p, q);
            assert!(d <= 1e-4 * p.abs().max().double_value(&[]).max(1.0), "{stem}: {d}");
        }
    }
}

#[test]
fn bad_checkpoints_fail_with_the_file_and_the_problem() {
    let dir = tempfile::tempdir().expect("tempdir");
    let m = common::tiny("hrnetv2_w48", 19, 0);
    let original = std::fs::read(fixture("ms_hrnetv2.ckpt")).expect("read");
    let truncated = dir.path().join("truncated.ckpt");
    std::fs::write(&truncated, &original[..original.len() / 2]).expect("write");
    let e = format!("{:#}", weights::load_file(&m, &truncated, LoadMode::Strict).expect_err("truncated"));
    assert!(e.contains("truncated.ckpt") && e.contains("truncated: the value at byte"), "{e}");

    let encrypted = dir.path().join("encrypted.ckpt");
    let mut bytes = vec![0x7F, 0x3A, 0x5E, 0xD8];
    bytes.extend_from_slice(&original[..64]);
    std::fs::write(&encrypted, bytes).expect("write");
    let e = format!("{:#}", weights::load_file(&m, &encrypted, LoadMode::Strict).expect_err("encrypted"));
    assert!(e.contains("encrypted.ckpt") && e.contains("encrypted (AES-GCM)"), "{e}");

    // Another model's checkpoint: OCRNet's into HRNetV2.
    let e = format!("{:#}", weights::load_file(&m, &fixture("ms_ocrnet.ckpt"), LoadMode::Strict).expect_err("other"));
    assert!(e.contains("ms_ocrnet.ckpt") && e.contains("in the file but not in the model"), "{e}");
    assert!(e.contains("ocr_distri_head."), "{e}");

    // Through the CLI too, with a non-zero exit.
    let cfg = tiny_config(dir.path(), "hrnetv2_w48");
    let err = failure(&segzoo(&[
        "forward",
        "--model",
        s(&cfg),
        "--weights",
        s(&truncated),
        "--input",
        s(&fixture("ms_hrnetv2.safetensors")),
        "--output",
        s(&dir.path().join("y.safetensors")),
    ]));
    assert!(err.contains("truncated.ckpt") && err.contains("not a readable MindSpore checkpoint"), "{err}");
}

/// A `.ckpt` that is a zip (PyTorch Lightning saves `torch.save` archives under that
/// name) is read as a `.pth`, not as MindSpore's protobuf.
#[test]
fn a_zip_ckpt_reads_as_a_pytorch_checkpoint() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lightning = dir.path().join("lightning.ckpt");
    std::fs::copy(fixture("parity_hrnetv2.pth"), &lightning).expect("copy");
    let as_ckpt = weights::read_tensors(&lightning).expect("zip .ckpt");
    let as_pth: HashMap<String, Tensor> =
        weights::read_tensors(&fixture("parity_hrnetv2.pth")).expect("pth").into_iter().collect();
    assert_eq!(as_ckpt.len(), as_pth.len());
    for (name, t) in &as_ckpt {
        assert!(as_pth.get(name).is_some_and(|u| t.equal(u)), "{name}");
    }
}

/// `segzoo model-info --json` tensors of a preset: (name, shape), buffers included.
fn model_tensors(preset: &str) -> Vec<(String, Vec<i64>)> {
    let v: serde_json::Value =
        serde_json::from_str(&ok(&segzoo(&["model-info", preset, "--json"]))).expect("model-info JSON");
    common::tensor_list(&v)
}

/// A committed tag list: `tag<TAB>d0,d1,…` per line, in `save_checkpoint` order.
fn tag_list(file: &str) -> Vec<(String, Vec<i64>)> {
    std::fs::read_to_string(fixture(file))
        .expect("tag list")
        .lines()
        .map(|l| {
            let (tag, dims) = l.split_once('\t').expect("tab");
            let dims = dims.split(',').filter(|d| !d.is_empty()).map(|d| d.parse().expect("dim")).collect();
            (tag.to_string(), dims)
        })
        .collect()
}

#[test]
fn full_size_modelzoo_tags_map_one_to_one_onto_the_presets() {
    for (preset, file, arch) in [
        ("hrnetv2_w48", "ms_tags_hrnetv2_w48.txt", Arch::HrnetV2),
        ("ocrnet_hrnetv2_w48", "ms_tags_ocrnet_w48.txt", Arch::OcrNet),
        ("refinenet_r101", "ms_tags_refinenet_r101.txt", Arch::RefineNet),
    ] {
        let tags = tag_list(file);
        // Import: every tag lands on a distinct model tensor of the same shape, and every
        // model tensor but `num_batches_tracked` is covered (OCRNet's two biases as zeros).
        let placeholders: Vec<(String, Tensor)> =
            tags.iter().map(|(t, dims)| (t.clone(), Tensor::zeros(dims.as_slice(), tch::kind::FLOAT_CPU))).collect();
        let imported: Vec<(String, Vec<i64>)> =
            names::to_official(Some(arch), placeholders).into_iter().map(|(n, t)| (n, t.size())).collect();
        let mut model: Vec<(String, Vec<i64>)> =
            model_tensors(preset).into_iter().filter(|(n, _)| !n.ends_with("num_batches_tracked")).collect();
        let mut got = imported.clone();
        got.sort();
        model.sort();
        assert_eq!(got, model, "{preset}: imported names and shapes");
        // Detected from the tags alone too.
        let detected = names::detect(tags.iter().map(|(t, _)| t.as_str()));
        assert_eq!(detected, Some(arch), "{file}");
        // Export: the model's state dict in the ModelZoo's tags, in save_checkpoint order.
        let dict: Vec<(String, Tensor)> = model_tensors(preset)
            .into_iter()
            .map(|(n, dims)| {
                let kind = if n.ends_with("num_batches_tracked") { tch::Kind::Int64 } else { tch::Kind::Float };
                (n, Tensor::zeros(dims.as_slice(), (kind, tch::Device::Cpu)))
            })
            .collect();
        let exported: Vec<(String, Vec<i64>)> =
            names::to_modelzoo(arch, &dict).expect("export").into_iter().map(|(n, t)| (n, t.size())).collect();
        assert_eq!(exported, tags, "{preset}: exported tags");
    }
}

/// Under MindSpore numerics every architecture with a ModelZoo version still trains: one
/// step's loss is finite and every trained tensor gets a gradient.
#[test]
fn mindspore_numerics_models_train() {
    use segzoo::models::{ModelSpec, Numerics};
    let mut specs = vec![common::tiny_config("hrnetv2_w48", 5), common::tiny_config("ocrnet_hrnetv2_w48", 5)];
    let mut bisenet = ModelSpec::preset("bisenetv2");
    bisenet.num_classes = Some(5);
    specs.push(bisenet);
    for mut spec in specs {
        spec.numerics = Numerics::MindSpore;
        tch::manual_seed(0);
        let m = segzoo::models::build(&spec, tch::Device::Cpu).expect("builds");
        let x = Tensor::randn([2, 3, 64, 64], tch::kind::FLOAT_CPU);
        let outs = m.forward_t(&x, true);
        let loss = outs.iter().map(|o| o.square().mean(tch::Kind::Float)).fold(Tensor::from(0.0f32), |a, b| a + b);
        assert!(loss.double_value(&[]).is_finite(), "{}", spec.preset);
        loss.backward();
        for (name, t) in m.vs.variables() {
            if t.requires_grad() {
                let g = t.grad();
                assert!(g.defined() && g.isfinite().all().int64_value(&[]) == 1, "{}: {name}", spec.preset);
            }
        }
    }
    // RefineNet's ModelZoo network resizes its logits to the input size; PyTorch's stays at 1/4.
    let mut refinenet = ModelSpec::preset("refinenet_r101");
    let x = Tensor::randn([1, 3, 64, 96], tch::kind::FLOAT_CPU);
    for (numerics, want) in [(Numerics::PyTorch, [1, 21, 16, 24]), (Numerics::MindSpore, [1, 21, 64, 96])] {
        refinenet.numerics = numerics;
        let m = segzoo::models::build(&refinenet, tch::Device::Cpu).expect("builds");
        let out = tch::no_grad(|| m.forward_t(&x, false));
        assert_eq!(out[0].size(), want, "{numerics:?}");
    }
    let mut cls = common::tiny_config("hrnet_w18_c", 10);
    cls.numerics = Numerics::MindSpore;
    let e = segzoo::models::build(&cls, tch::Device::Cpu).err().expect("no ModelZoo HRNet-C");
    assert!(format!("{e:#}").contains("model.numerics"), "{e:#}");
}
