//! BiSeNetV2 and RefineNet-ResNet-101: reference names and counts, outputs,
//! aux-head loading rules, frozen BN, weights round trip, gradients.
mod common;

use common::{assert_same_tensors, max_abs_diff, reference};
use segzoo::models::weights::{self, LoadMode};
use segzoo::models::Model;
use segzoo::models::ModelSpec;
use tch::{Device, Kind, Tensor};

fn build(preset: &str, edit: impl FnOnce(&mut ModelSpec)) -> Model {
    let mut cfg = ModelSpec::preset(preset);
    edit(&mut cfg);
    segzoo::models::build(&cfg, Device::Cpu).expect("builds")
}

#[test]
fn bisenetv2_matches_reference_with_and_without_aux_heads() {
    let r = reference("bisenetv2_cityscapes");
    assert_same_tensors(&build("bisenetv2", |_| {}), &r, "bisenetv2");
    let infer = build("bisenetv2", |c| c.aux_heads = false);
    assert_eq!(infer.num_params(), 3_358_627);
    assert_eq!(
        infer.tensor_infos().len() as i64,
        r["without_aux_heads"]["num_state_dict_entries"].as_i64().expect("n")
    );
    assert_eq!(infer.output_names(), vec!["logits"]);
}

#[test]
fn refinenet_matches_reference_and_freeze_bn_keeps_the_names() {
    let r = reference("refinenet_resnet101_voc");
    assert_same_tensors(&build("refinenet_r101", |_| {}), &r, "refinenet_r101");
    // Frozen BN: same state dict and parameter count, but BN affine parameters are not trained.
    let frozen = build("refinenet_r101", |c| c.freeze_bn = true);
    assert_same_tensors(&frozen, &r, "refinenet_r101 (frozen BN)");
    let infos = frozen.tensor_infos();
    let bn_affine: i64 = infos
        .iter()
        .filter(|t| t.is_param && !t.trainable)
        .map(|t| {
            assert!(t.name.contains("bn") || t.name.contains("downsample.1"), "{} frozen", t.name);
            t.shape.iter().product::<i64>()
        })
        .sum();
    let trainable: i64 = frozen.trainable_params().iter().map(|(_, t)| t.numel() as i64).sum();
    assert!(bn_affine > 0);
    assert_eq!(trainable + bn_affine, 118_052_437);
}

#[test]
fn bisenetv2_outputs_five_full_resolution_maps() {
    tch::manual_seed(0);
    let m = build("bisenetv2", |_| {});
    assert_eq!(m.output_names(), vec!["logits", "aux2", "aux3", "aux4", "aux5_4"]);
    let x = Tensor::randn([1, 3, 64, 128], (Kind::Float, Device::Cpu));
    // Eval mode still returns every head of a training build, as the reference does.
    let outs = tch::no_grad(|| m.forward_t(&x, false));
    assert_eq!(outs.len(), 5);
    for o in &outs {
        assert_eq!(o.size(), vec![1, 19, 64, 128]);
    }
    let e = m.check_input_size(64, 100).expect_err("not a multiple of 32").to_string();
    assert!(e.contains("multiples of 32") && e.contains("64×100"), "{e}");
}

#[test]
fn refinenet_output_is_quarter_resolution_rounded_up() {
    tch::manual_seed(0);
    let m = build("refinenet_r101", |_| {});
    let x = Tensor::randn([1, 3, 65, 70], (Kind::Float, Device::Cpu));
    let outs = tch::no_grad(|| m.forward_t(&x, false));
    assert_eq!(outs[0].size(), vec![1, 21, 17, 18]);
    assert!(m.check_input_size(513, 513).is_ok());
}

#[test]
fn inference_build_loads_a_training_checkpoint_ignoring_only_aux_keys() {
    tch::manual_seed(1);
    let train = build("bisenetv2", |_| {});
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bisenet.safetensors");
    weights::save(&train, &path).expect("save");
    let infer = build("bisenetv2", |c| c.aux_heads = false);
    let report = weights::load_file(&infer, &path, LoadMode::Strict).expect("aux keys are ignored");
    assert_eq!(report.loaded, infer.state_dict().len());
    let x = Tensor::randn([1, 3, 64, 64], (Kind::Float, Device::Cpu));
    let (a, b) = tch::no_grad(|| (train.forward_t(&x, false), infer.forward_t(&x, false)));
    assert_eq!(max_abs_diff(&a[0], &b[0]), 0.0, "logits agree");
    // Any other stray key is still an error.
    let mut tensors = train.state_dict();
    tensors.push(("aux6.conv.weight".into(), Tensor::zeros([1], (Kind::Float, Device::Cpu))));
    let e = weights::load_into(&infer, tensors, LoadMode::Strict, "x").expect_err("stray key").to_string();
    assert!(e.contains("0 missing, 1 unexpected") && e.contains("aux6.conv.weight"), "{e}");
    // A training build needs the aux heads from the checkpoint.
    let no_aux = dir.path().join("infer.safetensors");
    weights::save(&infer, &no_aux).expect("save");
    let e = weights::load_file(&train, &no_aux, LoadMode::Strict).expect_err("aux missing").to_string();
    assert!(e.contains("aux2.conv.conv.weight"), "{e}");
}

#[test]
fn round_trip_reproduces_outputs() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (preset, size) in [("bisenetv2", [2, 3, 64, 64]), ("refinenet_r101", [1, 3, 48, 48])] {
        tch::manual_seed(3);
        let a = build(preset, |_| {});
        tch::no_grad(|| a.forward_t(&Tensor::randn(size, (Kind::Float, Device::Cpu)), true));
        let path = dir.path().join(format!("{preset}.safetensors"));
        weights::save(&a, &path).expect("save");
        tch::manual_seed(4);
        let b = build(preset, |_| {});
        weights::load_file(&b, &path, LoadMode::Strict).expect("load");
        let x = Tensor::randn([1, 3, 64, 64], (Kind::Float, Device::Cpu));
        let (ya, yb) = tch::no_grad(|| (a.forward_t(&x, false), b.forward_t(&x, false)));
        for (p, q) in ya.iter().zip(&yb) {
            assert_eq!(max_abs_diff(p, q), 0.0, "{preset}");
        }
    }
}

#[test]
fn bisenetv2_gradients_reach_every_parameter() {
    tch::manual_seed(5);
    let m = build("bisenetv2", |_| {});
    // The last BN of each GE layer starts at γ = 0 (as in the reference), which would
    // zero the gradient of the convolutions before it; start from γ = 1 here.
    tch::no_grad(|| {
        for (name, t) in m.state_dict() {
            if name.ends_with("conv2.1.weight") {
                let _ = t.shallow_clone().fill_(1.0);
            }
        }
    });
    let x = Tensor::randn([2, 3, 64, 64], (Kind::Float, Device::Cpu));
    let loss =
        m.forward_t(&x, true).iter().map(|o| o.square().mean(Kind::Float)).fold(Tensor::from(0f32), |a, b| a + b);
    loss.backward();
    let params = m.trainable_params();
    assert_eq!(params.len(), 197); // num_param_tensors of the reference
    for (name, t) in params {
        let g = t.grad();
        assert!(g.defined(), "{name} got no gradient");
        // The context block's BN β adds a per-channel constant to 1×1 maps that the next
        // BN (batch statistics) subtracts again: its gradient is exactly zero, here as in
        // the reference implementation.
        if name != "segment.S5_5.bn.bias" {
            assert!(g.abs().sum(Kind::Float).double_value(&[]) > 0.0, "{name} has an all-zero gradient");
        }
    }
}

#[test]
fn refinenet_frozen_bn_trains_convs_only() {
    tch::manual_seed(6);
    let m = build("refinenet_r101", |c| c.freeze_bn = true);
    let before: Vec<Tensor> =
        m.state_dict().iter().filter(|(n, _)| n.contains("running_mean")).map(|(_, t)| t.copy()).collect();
    let x = Tensor::randn([2, 3, 32, 32], (Kind::Float, Device::Cpu));
    let out = m.forward_t(&x, true);
    out[0].square().mean(Kind::Float).backward();
    for (name, t) in m.state_dict() {
        let is_bn_affine = !t.requires_grad() && (name.ends_with(".weight") || name.ends_with(".bias"));
        if is_bn_affine {
            assert!(!t.grad().defined(), "{name}: a frozen BN parameter got a gradient");
        } else if t.requires_grad() {
            assert!(t.grad().defined(), "{name}: no gradient");
        }
    }
    // Frozen BN does not update its running statistics in train mode.
    let after: Vec<Tensor> =
        m.state_dict().iter().filter(|(n, _)| n.contains("running_mean")).map(|(_, t)| t.copy()).collect();
    for (a, b) in before.iter().zip(&after) {
        assert_eq!(max_abs_diff(a, b), 0.0);
    }
}
