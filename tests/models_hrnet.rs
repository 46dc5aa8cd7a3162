//! HRNet / OCRNet / HRNet-C: official names and shapes, outputs, weights I/O, gradients.
mod common;

use common::{assert_same_tensors, max_abs_diff, reference, tiny, tiny_config};
use segzoo::models::weights::{self, LoadMode};
use segzoo::models::{build, registry, ModelSpec};
use std::path::Path;
use tch::{Device, Kind, Tensor};

/// Names, shapes and order identical to the official state dict; same parameter count.
fn assert_matches_reference(preset: &str, classes: i64, manifest: &str) {
    let mut cfg = ModelSpec::preset(preset);
    cfg.num_classes = Some(classes);
    let m = build(&cfg, Device::Cpu).expect("builds");
    assert_same_tensors(&m, &reference(manifest), preset);
}

#[test]
fn hrnetv2_w48_cityscapes_matches_official() {
    assert_matches_reference("hrnetv2_w48", 19, "hrnetv2_w48_cityscapes");
}

#[test]
fn hrnetv2_w48_lip_matches_official() {
    assert_matches_reference("hrnetv2_w48", 20, "hrnetv2_w48_lip");
}

#[test]
fn hrnetv2_w18_small_v2_matches_official() {
    assert_matches_reference("hrnetv2_w18_small_v2", 19, "hrnetv2_w18_small_v2_cityscapes");
}

#[test]
fn ocrnet_cityscapes_matches_official() {
    assert_matches_reference("ocrnet_hrnetv2_w48", 19, "ocrnet_hrnetv2_w48_cityscapes");
}

#[test]
fn ocrnet_lip_matches_official() {
    assert_matches_reference("ocrnet_hrnetv2_w48", 20, "hrnetv2_w48_ocr_lip");
}

#[test]
fn hrnet_w18_c_matches_official() {
    assert_matches_reference("hrnet_w18_c", 1000, "hrnet_w18_imagenet");
}

/// Every preset's parameter and buffer counts equal the official code's at the same
/// stages (tests/reference/preset_counts.json, written by scripts/fixtures/gen_preset_counts.py
/// from HRNet-Semantic-Segmentation and HRNet-Image-Classification); BiSeNetV2 and
/// RefineNet against their reference manifests.
#[test]
fn every_preset_builds_with_stated_counts() {
    let counts = reference("preset_counts");
    let counts = counts["presets"].as_object().expect("presets");
    let manifests = [("bisenetv2", "bisenetv2_cityscapes"), ("refinenet_r101", "refinenet_resnet101_voc")];
    for p in registry::presets() {
        let expected = match manifests.iter().find(|(name, _)| *name == p.name) {
            Some((_, manifest)) => reference(manifest),
            None => counts.get(p.name).unwrap_or_else(|| panic!("{}: no published counts", p.name)).clone(),
        };
        let mut spec = ModelSpec::preset(p.name);
        // The manifests list the preset's own class count; preset_counts.json states it.
        spec.num_classes = Some(expected["num_classes"].as_i64().unwrap_or(p.num_classes));
        let m = build(&spec, Device::Cpu).unwrap_or_else(|e| panic!("{}: {e:#}", p.name));
        assert_eq!(m.num_params(), expected["num_params"].as_i64().expect("num_params"), "{}: parameters", p.name);
        assert_eq!(m.num_buffers() as i64, expected["num_buffers"].as_i64().expect("num_buffers"), "{}", p.name);
    }
}

#[test]
fn segmentation_output_is_quarter_resolution() {
    let m = tiny("hrnetv2_w48", 19, 0);
    let out = tch::no_grad(|| m.forward_t(&Tensor::randn([1, 3, 64, 128], (Kind::Float, Device::Cpu)), false));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].size(), vec![1, 19, 16, 32]);
    // Odd sizes: every stride-2 step rounds up.
    let out = tch::no_grad(|| m.forward_t(&Tensor::randn([1, 3, 57, 91], (Kind::Float, Device::Cpu)), false));
    assert_eq!(out[0].size(), vec![1, 19, 15, 23]);
}

#[test]
fn ocrnet_returns_aux_then_out() {
    let m = tiny("ocrnet_hrnetv2_w48", 19, 0);
    assert_eq!(m.output_names(), vec!["aux", "logits"]);
    let out = tch::no_grad(|| m.forward_t(&Tensor::randn([2, 3, 57, 91], (Kind::Float, Device::Cpu)), false));
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].size(), vec![2, 19, 15, 23]);
    assert_eq!(out[1].size(), vec![2, 19, 15, 23]);
    assert!(max_abs_diff(&out[0], &out[1]) > 0.0, "aux and out are different heads");
}

#[test]
fn classifier_outputs_one_row_per_image() {
    let m = tiny("hrnet_w18_c", 1000, 0);
    let out = tch::no_grad(|| m.forward_t(&Tensor::randn([1, 3, 64, 64], (Kind::Float, Device::Cpu)), false));
    assert_eq!(out[0].size(), vec![1, 1000]);
}

#[test]
fn safetensors_round_trip_reproduces_outputs() {
    let dir = tempfile::tempdir().expect("tempdir");
    for preset in ["hrnetv2_w48", "ocrnet_hrnetv2_w48", "hrnet_w18_c"] {
        let a = tiny(preset, 7, 1);
        // Move BN running statistics away from their initial values so they are checked too.
        let warm = Tensor::randn([2, 3, 64, 64], (Kind::Float, Device::Cpu));
        tch::no_grad(|| a.forward_t(&warm, true));
        let path = dir.path().join(format!("{preset}.safetensors"));
        weights::save(&a, &path).expect("save");
        let b = tiny(preset, 7, 2);
        let x = Tensor::randn([1, 3, 64, 64], (Kind::Float, Device::Cpu));
        let before = tch::no_grad(|| b.forward_t(&x, false));
        let report = weights::load_file(&b, &path, LoadMode::Strict).expect("strict load");
        assert_eq!(report.loaded, b.state_dict().len());
        let ya = tch::no_grad(|| a.forward_t(&x, false));
        let yb = tch::no_grad(|| b.forward_t(&x, false));
        for (p, q) in ya.iter().zip(&yb) {
            assert_eq!(max_abs_diff(p, q), 0.0, "{preset}: outputs differ after reload");
        }
        assert!(max_abs_diff(&before[0], &yb[0]) > 0.0, "{preset}: load changed nothing");
        // No temporary file is left behind.
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .expect("dir")
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains(".tmp"))
            .collect();
        assert!(leftovers.is_empty());
    }
}

#[test]
fn shape_mismatch_is_listed_by_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("w.safetensors");
    weights::save(&tiny("hrnetv2_w48", 19, 0), &path).expect("save");
    let other = tiny("hrnetv2_w48", 20, 0);
    for mode in [LoadMode::Strict, LoadMode::Partial] {
        let e = weights::load_file(&other, &path, mode).expect_err("classes differ").to_string();
        assert!(e.contains("2 with the wrong shape"), "{e}");
        assert!(e.contains("last_layer.3.weight: file [19, 60, 1, 1], model [20, 60, 1, 1]"), "{e}");
        assert!(e.contains("last_layer.3.bias: file [19], model [20]"), "{e}");
    }
}

#[test]
fn strict_load_lists_missing_and_unexpected() {
    let seg = tiny("hrnetv2_w48", 19, 0);
    let mut tensors: Vec<(String, Tensor)> =
        seg.state_dict().into_iter().filter(|(n, _)| !n.starts_with("last_layer.0")).collect();
    tensors.push(("head.extra.weight".into(), Tensor::zeros([3], (Kind::Float, Device::Cpu))));
    let e = weights::load_into(&seg, tensors, LoadMode::Strict, "x.safetensors").expect_err("mismatch").to_string();
    assert!(e.contains("2 missing, 1 unexpected, 0 with the wrong shape"), "{e}");
    assert!(e.contains("last_layer.0.weight") && e.contains("last_layer.0.bias"), "{e}");
    assert!(e.contains("head.extra.weight"), "{e}");
}

#[test]
fn official_checkpoint_conventions_are_accepted() {
    let m = tiny("hrnetv2_w48", 19, 0);
    // `model.` prefix (FullModel), the loss's class weights, and no num_batches_tracked (InPlaceABN era).
    let mut tensors: Vec<(String, Tensor)> = m
        .state_dict()
        .into_iter()
        .filter(|(n, _)| !n.ends_with("num_batches_tracked"))
        .map(|(n, t)| (format!("model.{n}"), t.copy()))
        .collect();
    tensors.push(("loss.criterion.weight".into(), Tensor::ones([19], (Kind::Float, Device::Cpu))));
    let fresh = tiny("hrnetv2_w48", 19, 5);
    weights::load_into(&fresh, tensors, LoadMode::Strict, "official.pth").expect("official layout loads strictly");
    let x = Tensor::randn([1, 3, 32, 32], (Kind::Float, Device::Cpu));
    let (a, b) = tch::no_grad(|| (m.forward_t(&x, false), fresh.forward_t(&x, false)));
    assert_eq!(max_abs_diff(&a[0], &b[0]), 0.0);
}

#[test]
fn imagenet_backbone_loads_partially_into_segmentation() {
    let cls = tiny("hrnet_w18_c", 1000, 3);
    let seg = tiny("hrnetv2_w48", 19, 4);
    let report = weights::load_into(&seg, cls.state_dict(), LoadMode::Partial, "imagenet.pth").expect("partial load");
    // The seg head is new; the classification head is dropped, as the official init does.
    assert!(report.missing.iter().all(|n| n.starts_with("last_layer.")), "{:?}", report.missing);
    assert_eq!(report.missing.len(), 8); // last_layer.{0,1,3}.*, num_batches_tracked aside
    assert!(report.unexpected.iter().any(|n| n.starts_with("incre_modules.")));
    assert!(report.unexpected.iter().any(|n| n.starts_with("classifier.")));
    let (a, b) = (cls.state_dict(), seg.state_dict());
    let get =
        |d: &[(String, Tensor)], k: &str| d.iter().find(|(n, _)| n == k).map(|(_, t)| t.shallow_clone()).expect(k);
    assert_eq!(
        max_abs_diff(&get(&a, "stage4.0.branches.3.0.conv2.weight"), &get(&b, "stage4.0.branches.3.0.conv2.weight")),
        0.0
    );
    // Strict mode refuses the same load and says why.
    let e =
        weights::load_into(&seg, cls.state_dict(), LoadMode::Strict, "imagenet.pth").expect_err("strict").to_string();
    assert!(e.contains("partial"), "{e}");
}

#[test]
fn pth_checkpoints_are_read_natively() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny_official.pth");
    let tensors = weights::normalise_names(weights::read_tensors(&path).expect("reads .pth"));
    let names: Vec<&str> = tensors.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.len(), 4, "{names:?}");
    assert!(!names.iter().any(|n| n.starts_with("model.") || n.starts_with("loss.")), "{names:?}");
    let get = |k: &str| tensors.iter().find(|(n, _)| n == k).map(|(_, t)| t.shallow_clone()).expect(k);
    let conv = get("conv.weight");
    assert_eq!(conv.size(), vec![2, 3, 2, 2]);
    assert_eq!(conv.double_value(&[1, 2, 1, 0]), 22.0);
    // Saved transposed (non-contiguous): element [i][j] = original[j][i] = 3*j + i.
    let fc = get("fc.weight");
    assert_eq!(fc.size(), vec![3, 2]);
    assert_eq!(fc.double_value(&[2, 1]), 5.0);
    assert_eq!(fc.double_value(&[1, 0]), 1.0);
    let nbt = get("bn.num_batches_tracked");
    assert_eq!((nbt.kind(), nbt.int64_value(&[])), (Kind::Int64, 7));
    let half = get("half");
    assert_eq!(half.kind(), Kind::Half);
    assert_eq!(half.to_kind(Kind::Float).double_value(&[1]), -1.25);
}

#[test]
fn every_parameter_gets_a_gradient() {
    for preset in ["hrnetv2_w48", "ocrnet_hrnetv2_w48", "hrnet_w18_c"] {
        let m = tiny(preset, 5, 0);
        let x = Tensor::randn([2, 3, 64, 64], (Kind::Float, Device::Cpu));
        let loss =
            m.forward_t(&x, true).iter().map(|o| o.square().mean(Kind::Float)).fold(Tensor::from(0.0f32), |a, b| a + b);
        loss.backward();
        let mut checked = 0;
        for (name, t) in m.state_dict() {
            if !t.requires_grad() {
                continue;
            }
            let g = t.grad();
            assert!(g.defined(), "{preset}: {name} has no gradient");
            assert!(g.abs().sum(Kind::Float).double_value(&[]) > 0.0, "{preset}: {name} has an all-zero gradient");
            checked += 1;
        }
        assert!(checked > 50, "{preset}: only {checked} parameters");
        // Train mode counted the batch in every BN.
        let nbt = m.state_dict().into_iter().find(|(n, _)| n == "bn1.num_batches_tracked").expect("bn1").1;
        assert_eq!(nbt.int64_value(&[]), 1);
    }
}

#[test]
fn config_errors_name_the_field() {
    let mut cfg = tiny_config("hrnetv2_w48", 19);
    if let Some(s) = cfg.hrnet.as_mut() {
        s.stage3.num_channels.pop();
    }
    let e = format!("{:#}", build(&cfg, Device::Cpu).err().expect("bad spec"));
    assert!(e.contains("model.hrnet.stage3"), "{e}");
    let e = format!("{:#}", build(&ModelSpec::preset("hrnetv2_w84"), Device::Cpu).err().expect("unknown"));
    assert!(e.contains("did you mean `hrnetv2_w48`?"), "{e}");
}

/// Fixtures made once with the official PyTorch code (HRNet-Semantic-Segmentation,
/// HRNet-OCR branch, lib/models/seg_hrnet{,_ocr}.py) at the tiny stage widths of
/// `common::tiny_spec` (OCR mid 16 / key 8), random weights and BN statistics:
/// `parity_<m>.pth` is the official checkpoint layout (`model.` prefix, loss weights),
/// `parity_<m>.safetensors` holds `input` and the official outputs.
/// Regenerate with scripts/fixtures/gen_parity.py (its docstring has the command).
fn assert_official_parity(preset: &str, fixture: &str) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let m = build(&tiny_config(preset, 19), Device::Cpu).expect("builds");
    weights::load_file(&m, &dir.join(format!("{fixture}.pth")), LoadMode::Strict)
        .expect("official checkpoint loads strictly");
    let refs: std::collections::HashMap<String, Tensor> =
        Tensor::read_safetensors(dir.join(format!("{fixture}.safetensors"))).expect("fixture").into_iter().collect();
    let outs = tch::no_grad(|| m.forward_t(&refs["input"], false));
    assert_eq!(outs.len(), m.output_names().len());
    for (name, out) in m.output_names().iter().zip(&outs) {
        let want = &refs[&format!("output_{name}")];
        assert_eq!(out.size(), want.size(), "{preset} {name}");
        let scale = want.abs().max().double_value(&[]);
        let diff = max_abs_diff(out, want);
        assert!(diff <= 1e-5 * scale.max(1.0), "{preset} {name}: max |diff| {diff} (max |ref| {scale})");
    }
}

#[test]
fn hrnetv2_matches_official_outputs() {
    assert_official_parity("hrnetv2_w48", "parity_hrnetv2");
}

#[test]
fn ocrnet_matches_official_outputs() {
    assert_official_parity("ocrnet_hrnetv2_w48", "parity_ocrnet");
}

#[test]
fn pretrained_backbone_from_config() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("imagenet.safetensors");
    weights::save(&tiny("hrnet_w18_c", 1000, 3), &path).expect("save");
    let m = build(&tiny_config("ocrnet_hrnetv2_w48", 19), Device::Cpu).expect("builds");
    let mut cfg = segzoo::config::ModelConfig { pretrained: Some(path.clone()), ..Default::default() };
    let report = segzoo::app::load_pretrained(&m, &cfg).expect("loads").expect("configured");
    assert!(report.loaded > 100);
    assert!(report.missing.iter().all(|n| !n.starts_with("stage") && !n.starts_with("layer1")), "{:?}", report.missing);
    cfg.pretrained = Some(dir.path().join("nope.safetensors"));
    let e = format!("{:#}", segzoo::app::load_pretrained(&m, &cfg).expect_err("missing file"));
    assert!(e.contains("model.pretrained") && e.contains("nope.safetensors"), "{e}");
    assert!(e.contains("trains from scratch"), "the way out is named: {e}");
    // An empty path is no pretrained weights (a recipe's weights overridden away).
    cfg.pretrained = Some(std::path::PathBuf::new());
    assert!(segzoo::app::load_pretrained(&m, &cfg).expect("no weights").is_none());
}
