//! The training engine: exact resume, atomic checkpoints, overfitting, NaN stop,
//! recipes, and loading a checkpoint as pretrained weights.
mod common;

use segzoo::config::{Config, DataConfig, DatasetKind, Optimizer, Schedule};
use segzoo::data::synth;
use segzoo::train::checkpoint;
use segzoo::train::trainer::{self, Resume, TrainOptions};
use std::path::Path;
use tch::{Device, Tensor};

/// A tiny HRNet on a tiny LIP-layout set (big blobs), fast on 2 cores.
fn tiny_run(root: &Path, out: &Path) -> Config {
    let mut model = common::tiny_config("hrnetv2_w48", 20);
    model.num_classes = None;
    Config {
        model,
        data: DataConfig {
            dataset: DatasetKind::Lip,
            root: root.to_path_buf(),
            train_list: "train.lst".into(),
            val_list: "val.lst".into(),
            crop_size: [32, 32],
            base_size: 0,
            scale_range: [0.75, 1.25],
            flip: true,
            num_workers: 2,
            prefetch: 2,
            ..DataConfig::default()
        },
        train: segzoo::config::TrainConfig {
            epochs: 3,
            batch_size: 2,
            optimizer: Optimizer::Sgd,
            lr: 0.01,
            output_dir: out.to_path_buf(),
            ..Default::default()
        },
        ..Config::default()
    }
}

/// Torch's generator is process-global and a training reseeds it every step: trainings
/// in this test binary take turns so that they do not reseed each other's runs.
static TORCH_RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    TORCH_RNG.lock().unwrap_or_else(|e| e.into_inner())
}

fn opts(resume: Option<Resume>, max_steps: Option<u64>) -> TrainOptions {
    TrainOptions { resume, begin_epoch: None, max_steps, device: Device::Cpu, comm: segzoo::dist::collective::single() }
}

fn weights(path: &Path) -> Vec<(String, Tensor)> {
    let mut w = checkpoint::load(path).expect("checkpoint").model;
    w.sort_by(|a, b| a.0.cmp(&b.0));
    w
}

#[test]
fn resume_is_bit_identical() {
    let _turn = serial();
    let data = tempfile::tempdir().expect("tempdir");
    synth::lip(data.path(), 6, 40, 36, 1).expect("fixture");
    // 4 steps straight…
    let a = tempfile::tempdir().expect("tempdir");
    let cfg_a = tiny_run(data.path(), a.path());
    let straight = trainer::train(&cfg_a, &opts(None, Some(4))).expect("train");
    assert_eq!(straight.steps, 4);
    // …versus 2 steps, stop, resume for 2 more (crossing the epoch boundary at step 3).
    let b = tempfile::tempdir().expect("tempdir");
    let cfg_b = tiny_run(data.path(), b.path());
    trainer::train(&cfg_b, &opts(None, Some(2))).expect("first half");
    let resumed = trainer::train(&cfg_b, &opts(Some(Resume::Auto), Some(4))).expect("second half");
    assert_eq!(resumed.steps, 4);
    let wa = weights(&straight.last_checkpoint.expect("saved"));
    let wb = weights(&resumed.last_checkpoint.expect("saved"));
    assert_eq!(wa.len(), wb.len());
    for ((na, ta), (nb, tb)) in wa.iter().zip(&wb) {
        assert_eq!(na, nb);
        assert!(ta.equal(tb), "{na} differs after resume");
    }
}

#[test]
fn resume_auto_skips_broken_and_unfinished_checkpoints() {
    let _turn = serial();
    let data = tempfile::tempdir().expect("tempdir");
    synth::lip(data.path(), 4, 40, 36, 2).expect("fixture");
    let out = tempfile::tempdir().expect("tempdir");
    let mut cfg = tiny_run(data.path(), out.path());
    cfg.train.checkpoint_steps = 1;
    trainer::train(&cfg, &opts(None, Some(2))).expect("train");
    let dir = out.path().join("checkpoints");
    // A write interrupted before its rename leaves only a temporary file…
    std::fs::write(dir.join(".ckpt_step_00000003.safetensors.tmp-999"), b"partial").expect("write");
    // …and a damaged file under a real name is skipped too.
    std::fs::write(checkpoint::path_for_step(&dir, 4), b"not a checkpoint").expect("write");
    let (path, loaded) = checkpoint::latest_valid(&dir).expect("a valid one");
    assert_eq!(path, checkpoint::path_for_step(&dir, 2));
    assert_eq!(loaded.meta.step, 2);
    let e = format!("{:#}", checkpoint::load(&checkpoint::path_for_step(&dir, 4)).err().expect("corrupt"));
    assert!(e.contains("ckpt_step_00000004.safetensors") && e.contains("corrupt"), "{e}");
    // Resuming a checkpoint of another model is refused with both names.
    let mut other = cfg.clone();
    other.model.num_classes = Some(7);
    let e = format!("{:#}", trainer::train(&other, &opts(Some(Resume::Auto), Some(3))).expect_err("mismatch"));
    assert!(e.contains("written for hrnetv2_w48 with 20 classes") && e.contains("7 classes"), "{e}");
}

#[test]
fn tiny_model_overfits_a_handful_of_images() {
    let _turn = serial();
    let data = tempfile::tempdir().expect("tempdir");
    synth::lip(data.path(), 2, 64, 64, 3).expect("fixture");
    // Train and evaluate on the same two images, without augmentation.
    std::fs::copy(data.path().join("train.lst"), data.path().join("val.lst")).expect("copy");
    let out = tempfile::tempdir().expect("tempdir");
    let mut cfg = tiny_run(data.path(), out.path());
    cfg.data.scale_range = [1.0, 1.0];
    cfg.data.flip = false;
    cfg.data.crop_size = [64, 64];
    cfg.train.optimizer = Optimizer::Adam;
    cfg.train.lr = 0.01;
    cfg.train.weight_decay = 0.0;
    cfg.train.schedule = Schedule::Poly;
    cfg.train.batch_size = 2;
    cfg.train.epochs = 200;
    cfg.train.checkpoint_interval = 200;
    cfg.eval.start = 50;
    cfg.eval.interval = 50;
    cfg.log.interval = 100;
    let summary = trainer::train(&cfg, &opts(None, None)).expect("train");
    let miou = summary.best_miou.expect("evaluated");
    assert!(miou > 0.9, "mIoU {miou}");
    assert!(out.path().join("checkpoints/best.safetensors").is_file());
    let log = std::fs::read_to_string(out.path().join("metrics.jsonl")).expect("metrics");
    assert!(
        log.lines().any(|l| l.contains("\"kind\":\"eval\"")) && log.lines().any(|l| l.contains("\"kind\":\"train\""))
    );
}

#[test]
fn a_diverging_run_stops_with_the_step_and_last_finite_loss() {
    let _turn = serial();
    let data = tempfile::tempdir().expect("tempdir");
    synth::lip(data.path(), 4, 40, 36, 4).expect("fixture");
    let out = tempfile::tempdir().expect("tempdir");
    let mut cfg = tiny_run(data.path(), out.path());
    cfg.train.lr = 1e12;
    cfg.train.checkpoint_steps = 1;
    let e = format!("{:#}", trainer::train(&cfg, &opts(None, Some(50))).expect_err("diverges"));
    assert!(e.contains("loss became") && e.contains("at step") && e.contains("last finite loss"), "{e}");
    assert!(e.contains("ckpt_step_"), "names the last good checkpoint: {e}");
}

#[test]
fn checkpoints_load_as_pretrained_weights() {
    let _turn = serial();
    let data = tempfile::tempdir().expect("tempdir");
    synth::lip(data.path(), 2, 40, 36, 5).expect("fixture");
    let out = tempfile::tempdir().expect("tempdir");
    let cfg = tiny_run(data.path(), out.path());
    let s = trainer::train(&cfg, &opts(None, Some(1))).expect("train");
    let ckpt = s.last_checkpoint.expect("saved");
    let mut next = cfg.model.clone();
    next.pretrained = Some(ckpt.clone());
    next.freeze_bn = true;
    let m = segzoo::models::registry::build(&next, Some(20), Device::Cpu).expect("build");
    let report = segzoo::models::registry::load_pretrained(&m, &next).expect("load").expect("configured");
    assert_eq!(report.loaded, m.state_dict().len());
    assert!(report.missing.is_empty() && report.unexpected.is_empty());
}

#[test]
fn every_recipe_parses_and_builds() {
    let _turn = serial();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).expect("configs") {
        let path = entry.expect("entry").path();
        let cfg = segzoo::config::load_config(&path, &[]).unwrap_or_else(|e| panic!("{e}"));
        let m = segzoo::models::registry::build(&cfg.model, Some(cfg.data.dataset.num_classes()), Device::Cpu)
            .unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
        assert!(m.num_params() > 1_000_000);
        n += 1;
    }
    assert_eq!(n, 8);
}

#[test]
fn mixed_precision_trains_on_cpu() {
    let _turn = serial();
    let data = tempfile::tempdir().expect("tempdir");
    synth::lip(data.path(), 4, 40, 36, 6).expect("fixture");
    for (precision, scale) in [(segzoo::config::Precision::Bf16, None), (segzoo::config::Precision::Fp16, Some(128.0))]
    {
        let out = tempfile::tempdir().expect("tempdir");
        let mut cfg = tiny_run(data.path(), out.path());
        cfg.train.precision = precision;
        cfg.train.loss_scale = scale;
        let s = trainer::train(&cfg, &opts(None, Some(2))).expect("train");
        assert!(s.last_loss.is_finite(), "{precision:?}: {}", s.last_loss);
        let state = checkpoint::load(&s.last_checkpoint.expect("saved")).expect("load").optim;
        assert_eq!(state.contains_key("amp.scale"), scale.is_some(), "{precision:?}");
        if let Some(v) = scale {
            assert_eq!(state["amp.scale"].double_value(&[]), v);
        }
    }
}
