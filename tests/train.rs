//! The training engine: exact resume, atomic checkpoints, overfitting, NaN stop, recipes
//! at their published sizes, mixed precision (the fp16 scale's trajectory), channels-last
//! training (same losses, NCHW checkpoints), and loading a checkpoint as pretrained weights.
mod common;

use segzoo::config::{Config, DataConfig, DatasetKind, MemoryFormatChoice, Optimizer, Schedule};
use segzoo::data::synth;
use segzoo::models::memory_format::{is_channels_last, to_format, MemoryFormat};
use segzoo::train::data_parallel::DataParallel;
use segzoo::train::optim::Optimizer as Optimizer_;
use segzoo::train::records::Record;
use segzoo::train::step::{self, StepContext};
use segzoo::train::{self as trainer, Resume, TrainOptions};
use segzoo::train::{build, checkpoint};
use std::path::Path;
use tch::{Device, Tensor};

/// A tiny HRNet on a tiny LIP-layout set (big blobs), fast on 2 cores.
fn tiny_run(root: &Path, out: &Path) -> Config {
    let model = common::tiny_model_config("hrnetv2_w48");
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
    TrainOptions {
        resume,
        begin_epoch: None,
        max_steps,
        device: Device::Cpu,
        comm: segzoo::distributed::collective::single(),
    }
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
    // In either layout: a checkpoint is NCHW on disk and loads into a channels-last model.
    for format in [MemoryFormatChoice::Contiguous, MemoryFormatChoice::ChannelsLast] {
        // 4 steps straight…
        let a = tempfile::tempdir().expect("tempdir");
        let mut cfg_a = tiny_run(data.path(), a.path());
        cfg_a.train.memory_format = format;
        let straight = trainer::train(&cfg_a, &opts(None, Some(4))).expect("train");
        assert_eq!(straight.steps, 4);
        // …versus 2 steps, stop, resume for 2 more (crossing the epoch boundary at step 3).
        let b = tempfile::tempdir().expect("tempdir");
        let mut cfg_b = tiny_run(data.path(), b.path());
        cfg_b.train.memory_format = format;
        trainer::train(&cfg_b, &opts(None, Some(2))).expect("first half");
        let resumed = trainer::train(&cfg_b, &opts(Some(Resume::Auto), Some(4))).expect("second half");
        assert_eq!(resumed.steps, 4);
        let wa = weights(&straight.last_checkpoint.expect("saved"));
        let wb = weights(&resumed.last_checkpoint.expect("saved"));
        assert_eq!(wa.len(), wb.len());
        for ((na, ta), (nb, tb)) in wa.iter().zip(&wb) {
            assert_eq!(na, nb);
            assert!(ta.equal(tb), "{format:?}: {na} differs after resume");
        }
    }
}

/// The per-step losses of `steps` steps (`log.interval` = 1), from `metrics.jsonl`.
fn step_losses(cfg: &Config, steps: u64) -> Vec<f64> {
    let mut cfg = cfg.clone();
    cfg.log.interval = 1;
    trainer::train(&cfg, &opts(None, Some(steps))).expect("train");
    let log = std::fs::read_to_string(cfg.train.output_dir.join("metrics.jsonl")).expect("metrics");
    log.lines()
        .filter_map(|l| match serde_json::from_str(l).expect("record") {
            Record::Train(t) => Some(t.loss),
            Record::Eval(_) | Record::Start(_) => None,
        })
        .collect()
}

/// A tiny HRNet built in `format` with parameters and input of `kind`, after one training
/// step on a fixed random batch: the model, its optimiser and the step's loss.
fn one_step(format: MemoryFormatChoice, kind: tch::Kind) -> (Config, segzoo::models::Model, Optimizer_, f64) {
    let mut cfg = Config { model: common::tiny_model_config("hrnetv2_w48"), ..Config::default() };
    cfg.model.num_classes = Some(5);
    cfg.train.memory_format = format;
    tch::manual_seed(11);
    let (mut model, memory_format) = build::build_train_model(&cfg, Device::Cpu).expect("model");
    model.vs.set_kind(kind);
    let mut optim = build::build_optimizer(&cfg, &model);
    let loss = build::build_loss(&cfg, &model).expect("loss");
    let dp = DataParallel::new(segzoo::distributed::collective::single(), 25.0, Device::Cpu);
    let ctx = StepContext { model: &model, loss: &loss, precision: cfg.train.precision, dp: &dp, memory_format };
    // 128×128, so that the lowest branch (1/32) still has 4×4 pixels for BatchNorm: at 1×1
    // its batch statistics over 2 values amplify rounding into percent-level gradients.
    let x = Tensor::randn([2, 3, 128, 128], (kind, Device::Cpu));
    let y = Tensor::randint(5, [2, 128, 128], (tch::Kind::Int64, Device::Cpu));
    let result = step::train_step(&ctx, &mut optim, None, &[(x, y)], 0.01).expect("step");
    let loss = result.loss.double_value(&[]);
    (cfg, model, optim, loss)
}

/// Channels-last changes strides, not the computation: one step's loss and gradients (in f64)
/// and the losses of a few steps of the fp32 training loop equal the contiguous run's within
/// rounding (the kernels sum in other orders).
#[test]
fn channels_last_training_matches_contiguous() {
    let _turn = serial();
    // In f64: in f32 a ReLU input within rounding of zero can switch sides between the two
    // layouts (it does on an AVX-512 EPYC for this seed), and one switched pixel moves a small
    // branch's BatchNorm gradients by percents. In f64 only the layout differs.
    let (_, _, oc, lc) = one_step(MemoryFormatChoice::Contiguous, tch::Kind::Double);
    let (_, _, ol, ll) = one_step(MemoryFormatChoice::ChannelsLast, tch::Kind::Double);
    assert!((lc - ll).abs() <= 1e-12 * lc.abs(), "one step: loss {lc} contiguous, {ll} channels-last");
    for (pc, pl) in oc.params.iter().zip(&ol.params) {
        let (gc, gl) = (pc.tensor.grad(), pl.tensor.grad());
        let scale = gc.abs().max().double_value(&[]).max(1e-3);
        let d = common::max_abs_diff(&gc, &gl);
        assert!(d <= 1e-9 * scale, "{}: gradients differ by {d} (largest {scale})", pc.name);
    }

    let data = tempfile::tempdir().expect("tempdir");
    synth::lip(data.path(), 6, 160, 144, 8).expect("fixture");
    let run = |format| {
        let out = tempfile::tempdir().expect("tempdir");
        let mut cfg = tiny_run(data.path(), out.path());
        cfg.train.memory_format = format;
        // From scratch on these flat blobs, steps at 0.01 (or crops of 32) turn 1e-6 rounding
        // differences into percent-level losses within three steps; a small rate and crops
        // where BatchNorm sees enough pixels keep the comparison about the layout.
        cfg.data.crop_size = [128, 128];
        cfg.train.lr = 1e-4;
        step_losses(&cfg, 3)
    };
    let (lc, ll) = (run(MemoryFormatChoice::Contiguous), run(MemoryFormatChoice::ChannelsLast));
    assert_eq!((lc.len(), ll.len()), (3, 3), "{lc:?} {ll:?}");
    for (step, (c, l)) in lc.iter().zip(&ll).enumerate() {
        assert!((c - l).abs() <= 1e-4 * c.abs(), "step {}: loss {c} contiguous, {l} channels-last", step + 1);
    }
}

/// A channels-last model's checkpoint — weights and the optimiser state that follows their
/// layout — is byte for byte the file its NCHW-contiguous copy writes, and loads back into
/// a channels-last model keeping the layout.
#[test]
fn a_channels_last_checkpoint_is_the_file_of_its_nchw_copy() {
    let _turn = serial();
    let (cfg, model, optim, _) = one_step(MemoryFormatChoice::ChannelsLast, tch::Kind::Float);
    let conv = &optim.params.iter().find(|p| p.name == "conv1.weight").expect("conv1").tensor;
    assert!(is_channels_last(conv) && !conv.is_contiguous(), "conv1.weight is channels-last");
    assert!(is_channels_last(&conv.grad()), "its gradient follows");
    let momentum = optim.state_tensors().into_iter().find(|(n, _)| n == "conv1.weight.momentum_buffer").expect("buf");
    assert!(is_channels_last(&momentum.1) && !momentum.1.is_contiguous(), "its momentum follows");

    let dir = tempfile::tempdir().expect("tempdir");
    let meta = checkpoint::Meta::new(&model.preset, 5, Default::default(), None, cfg.clone());
    let nchw = |ts: Vec<(String, Tensor)>| -> Vec<(String, Tensor)> {
        ts.into_iter().map(|(n, t)| (n, to_format(&t, MemoryFormat::Contiguous))).collect()
    };
    let (a, b) = (dir.path().join("a.safetensors"), dir.path().join("b.safetensors"));
    checkpoint::save(&a, &model.state_dict(), &optim.state_tensors(), &meta).expect("save");
    checkpoint::save(&b, &nchw(model.state_dict()), &nchw(optim.state_tensors()), &meta).expect("save");
    assert!(std::fs::read(&a).expect("a") == std::fs::read(&b).expect("b"), "the files differ");
    // The weights export writes the same tensors.
    segzoo::models::weights::save(&model, &dir.path().join("w.safetensors")).expect("export");
    let exported = Tensor::read_safetensors(dir.path().join("w.safetensors")).expect("read");
    let loaded = checkpoint::load(&a).expect("load");
    let by_name = |ts: &[(String, Tensor)], name: &str| ts.iter().find(|(n, _)| n == name).map(|(_, t)| t.copy());
    for (name, t) in model.state_dict() {
        let saved = by_name(&loaded.model, &name).expect("saved");
        assert!(saved.is_contiguous() && saved.equal(&t) && saved.size() == t.size(), "{name}");
        assert!(by_name(&exported, &name).expect("exported").equal(&t), "{name} exported");
    }
    // Loaded into a channels-last model, the weights keep that layout.
    let (fresh, _) = build::build_train_model(&cfg, Device::Cpu).expect("model");
    segzoo::models::weights::load_file(&fresh, &a, segzoo::models::weights::LoadMode::Strict).expect("load");
    for ((name, t), (_, f)) in model.state_dict().iter().zip(fresh.state_dict()) {
        assert!(f.equal(t), "{name} loaded");
        assert_eq!(is_channels_last(&f), t.dim() == 4, "{name} layout after loading");
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
    assert_eq!(loaded.meta.state.step, 2);
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
    let miou = summary.best.expect("evaluated").value;
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
    let m = segzoo::models::build(&segzoo::app::model_spec(&next, Some(20)), Device::Cpu).expect("build");
    let report = segzoo::app::load_pretrained(&m, &next).expect("load").expect("configured");
    assert_eq!(report.loaded, m.state_dict().len());
    assert!(report.missing.is_empty() && report.unexpected.is_empty());
}

/// Each recipe's model has exactly the counts of its official reference manifest
/// (tests/reference, copied from ../shared/reference), or for the quickstart's
/// W18-Small-v1, which has no manifest, of the official code's preset counts. Recipes of
/// another class count than the manifest's 19 add (n − 19) × (inputs + 1) parameters per
/// classifier: the official heads end in 1×1 convolutions with a bias (HRNetV2's last_layer
/// takes the four branches' channels, 720 for W48 and 240 for W18-Small-v1; OCRNet's
/// cls_head 512 and its aux head 720); buffers do not change.
#[test]
fn every_recipe_builds_its_published_parameter_and_buffer_counts() {
    let _turn = serial();
    // (recipe, manifest, classes, the classifiers' input channels)
    let manifests: [(&str, &str, i64, &[i64]); 13] = [
        ("bisenetv2_cityscapes", "bisenetv2_cityscapes", 19, &[]),
        ("custom_example", "preset_counts:hrnetv2_w18_small_v1", 5, &[240]),
        ("hrnet_w18_c_imagenet", "hrnet_w18_imagenet", 19, &[]),
        ("hrnetv2_w48_ade20k", "hrnetv2_w48_cityscapes", 150, &[720]),
        ("hrnetv2_w48_cityscapes", "hrnetv2_w48_cityscapes", 19, &[]),
        ("hrnetv2_w48_lip", "hrnetv2_w48_lip", 19, &[]),
        ("hrnetv2_w48_pascal_context", "hrnetv2_w48_cityscapes", 59, &[720]),
        ("ocrnet_hrnetv2_w48_ade20k", "ocrnet_hrnetv2_w48_cityscapes", 150, &[512, 720]),
        ("ocrnet_hrnetv2_w48_cityscapes", "ocrnet_hrnetv2_w48_cityscapes", 19, &[]),
        ("ocrnet_hrnetv2_w48_cocostuff", "ocrnet_hrnetv2_w48_cityscapes", 171, &[512, 720]),
        ("quickstart", "preset_counts:hrnetv2_w18_small_v1", 19, &[]),
        ("refinenet_r101_sbd", "refinenet_resnet101_voc", 19, &[]),
        ("refinenet_r101_voc", "refinenet_resnet101_voc", 19, &[]),
    ];
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
    let mut recipes: Vec<String> = std::fs::read_dir(&dir)
        .expect("configs")
        .map(|e| e.expect("entry").path().file_stem().expect("stem").to_string_lossy().into_owned())
        .collect();
    recipes.sort();
    assert_eq!(recipes, manifests.map(|(r, ..)| r.to_string()), "every recipe needs its manifest here");
    for (recipe, manifest, classes, heads) in manifests {
        let path = dir.join(format!("{recipe}.toml"));
        let cfg = segzoo::config::load_config(&path, &[]).unwrap_or_else(|e| panic!("{e}"));
        let m = segzoo::app::build_model(&cfg, Device::Cpu).unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
        let reference = match manifest.strip_prefix("preset_counts:") {
            Some(preset) => common::reference("preset_counts")["presets"][preset].clone(),
            None => common::reference(manifest),
        };
        if !heads.is_empty() {
            assert_eq!(m.num_classes, classes, "{recipe}: classes");
        }
        let extra: i64 = heads.iter().map(|inputs| (classes - 19) * (inputs + 1)).sum();
        let params = reference["num_params"].as_i64().expect("num_params") + extra;
        assert_eq!(m.num_params(), params, "{recipe}: parameters");
        assert_eq!(
            m.num_buffers() as i64,
            reference["num_buffers"].as_i64().expect("num_buffers"),
            "{recipe}: buffers"
        );
    }
}

#[test]
fn bf16_trains_on_cpu_and_saves_no_scaler_state() {
    let _turn = serial();
    let data = tempfile::tempdir().expect("tempdir");
    synth::lip(data.path(), 4, 40, 36, 6).expect("fixture");
    let out = tempfile::tempdir().expect("tempdir");
    let mut cfg = tiny_run(data.path(), out.path());
    cfg.train.precision = segzoo::config::Precision::Bf16;
    let s = trainer::train(&cfg, &opts(None, Some(2))).expect("train");
    assert!(s.last_loss.is_finite(), "{}", s.last_loss);
    let meta = checkpoint::load(&s.last_checkpoint.expect("saved")).expect("load").meta;
    assert_eq!(meta.state.amp, None);
}

/// The fp16 loss scale's trajectory, read from a checkpoint after every step: a step
/// whose gradients overflow is skipped and halves a dynamic scale (good steps reset);
/// a clean step keeps it and counts one more good step; a static scale never moves.
#[test]
fn fp16_loss_scale_follows_overflows_step_by_step() {
    let _turn = serial();
    let data = tempfile::tempdir().expect("tempdir");
    synth::lip(data.path(), 4, 40, 36, 6).expect("fixture");
    // Dynamic scaling starts at 2^16, as PyTorch's GradScaler; the static run uses 128.
    for (loss_scale, steps) in [(None, 4u64), (Some(128.0), 2)] {
        let out = tempfile::tempdir().expect("tempdir");
        let mut cfg = tiny_run(data.path(), out.path());
        cfg.train.precision = segzoo::config::Precision::Fp16;
        cfg.train.loss_scale = loss_scale;
        cfg.train.checkpoint_steps = 1;
        cfg.train.keep_checkpoints = 10;
        let s = trainer::train(&cfg, &opts(None, Some(steps))).expect("train");
        assert!(s.last_loss.is_finite(), "{loss_scale:?}: {}", s.last_loss);
        let dir = out.path().join("checkpoints");
        let mut prev =
            segzoo::train::state::ScalerState { scale: loss_scale.unwrap_or(65536.0), good_steps: 0, skipped: 0 };
        let mut skipped_any = false;
        for step in 1..=steps {
            let meta = checkpoint::load(&checkpoint::path_for_step(&dir, step)).expect("step checkpoint").meta;
            let amp = meta.state.amp.expect("fp16 checkpoints carry the scaler");
            if amp.skipped == prev.skipped + 1 {
                skipped_any = true;
                assert_eq!(amp.good_steps, 0, "step {step}: an overflow resets the good steps");
                let want = if loss_scale.is_some() { prev.scale } else { prev.scale / 2.0 };
                assert_eq!(amp.scale, want, "step {step}: overflow");
            } else {
                assert_eq!(amp.skipped, prev.skipped, "step {step}: skipped count");
                assert_eq!(amp.good_steps, prev.good_steps + 1, "step {step}: a clean step counts");
                assert_eq!(amp.scale, prev.scale, "step {step}: no growth before 2000 good steps");
            }
            prev = amp;
        }
        if loss_scale.is_some() {
            assert_eq!(prev.scale, 128.0, "a static scale never moves");
        } else {
            // 65536 makes the tiny model's fp16 gradients overflow at least once here.
            assert!(skipped_any, "expected an overflow from 2^16: {prev:?}");
        }
    }
}
