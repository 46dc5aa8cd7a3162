//! Data pipeline: readers and list makers on generated fixtures, SBD conversion,
//! loader determinism, and every bad-input case named in the docs.
use segzoo::config::{DataConfig, DatasetKind};
use segzoo::data::check_report::{FindingKind, Report};
use segzoo::data::dataset::{ClsDataset, Dataset, SegDataset, Split};
use segzoo::data::kind::DatasetKind as Kind;
use segzoo::data::labels::{IGNORE, LIP_FLIP_PAIRS};
use segzoo::data::loader::{self, LoaderOptions};
use segzoo::data::sampler::ShardedSampler;
use segzoo::data::transforms::{ClsTransform, SegTransform};
use segzoo::data::{decode, make_lists, synth};
use std::path::Path;
use std::sync::Arc;

/// `segzoo data check` of one list of a benchmark layout.
fn check(kind: DatasetKind, root: &Path, list: &str) -> Report {
    let mut cfg = segzoo::config::Config::default();
    (cfg.data.dataset, cfg.data.root) = (kind, root.to_path_buf());
    let mut spec = segzoo::app::check_spec(&cfg, 2).expect("spec");
    (spec.lists, spec.crop) = (vec![("train".into(), list.into())], None);
    segzoo::data::check::run(&spec).expect("check runs")
}

fn assert_clean(r: &Report) {
    assert!(r.problems.is_empty(), "{}", r.render());
}

fn plain() -> SegTransform {
    SegTransform {
        crop: None,
        base_size: 0,
        scale_range: [1.0, 1.0],
        flip: false,
        flip_pairs: vec![],
        jitter: None,
        mean: [0.5; 3],
        std: [0.25; 3],
        pad_value: 0,
    }
}

fn cityscapes_cfg(root: &Path) -> DataConfig {
    DataConfig {
        dataset: DatasetKind::Cityscapes,
        root: root.to_path_buf(),
        crop_size: [64, 96],
        base_size: 160,
        num_workers: 2,
        ..DataConfig::default()
    }
}

#[test]
fn synthetic_cityscapes_reads_back_and_checks_clean() {
    let dir = tempfile::tempdir().expect("tempdir");
    let written = synth::cityscapes(dir.path(), 3, 2, 160, 80, 11, 2).expect("synth");
    assert_eq!(written.iter().map(|w| w.entries).collect::<Vec<_>>(), vec![3, 2]);
    assert!(dir.path().join("leftImg8bit/train/aachen/aachen_000000_000019_leftImg8bit.png").is_file());
    assert!(dir.path().join("gtFine/val/frankfurt/frankfurt_000003_000019_gtFine_labelIds.png").is_file());
    let ds = SegDataset::open(Kind::Cityscapes, dir.path(), Path::new("train.lst"), plain()).expect("open");
    assert_eq!(ds.len(), 3);
    let (img, label) = ds.load_raw(0).expect("load");
    assert_eq!((img.width(), img.height()), (160, 80));
    assert!(label.iter().all(|&v| v < 19 || v == IGNORE), "train ids only");
    // Stored label ids are the real Cityscapes ids (road 7, sky 23, …), mapped to train ids.
    let raw = decode::read_label(&dir.path().join(ds.entries[0].target.clone().expect("label"))).expect("raw");
    assert!(raw.data.contains(&7) && raw.data.contains(&23));
    assert!(label.contains(&0) && label.contains(&10));
    for list in ["train.lst", "val.lst"] {
        let r = check(DatasetKind::Cityscapes, dir.path(), list);
        assert_clean(&r);
        let px = |c: usize| r.classes[c].splits["train"].pixels;
        assert!(px(0) > 0 && px(10) > 0, "road and sky present");
    }
    // Deterministic per seed.
    let again = tempfile::tempdir().expect("tempdir");
    synth::cityscapes(again.path(), 3, 2, 160, 80, 11, 1).expect("synth");
    let p = "gtFine/train/bochum/bochum_000001_000019_gtFine_labelIds.png";
    assert_eq!(std::fs::read(dir.path().join(p)).expect("a"), std::fs::read(again.path().join(p)).expect("b"));
}

#[test]
fn lip_reader_and_flip_pairs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let written = synth::lip(dir.path(), 3, 40, 30, 1).expect("synth");
    assert_eq!(written.len(), 2);
    let text = std::fs::read_to_string(dir.path().join("train.lst")).expect("list");
    assert!(text.starts_with("TrainVal_images/train_images/00000_train.jpg TrainVal_parsing_annotations/train_segmentations/00000_train.png"), "{text}");
    let cfg = DataConfig {
        dataset: DatasetKind::Lip,
        root: dir.path().to_path_buf(),
        crop_size: [24, 24],
        base_size: 0,
        ..DataConfig::default()
    };
    // Training on LIP swaps left/right parts when flipping.
    let ds = SegDataset::open(Kind::Lip, dir.path(), Path::new("train.lst"), plain()).expect("open");
    let (_, label) = ds.load_raw(1).expect("load");
    assert!(label.iter().all(|&v| v < 20));
    let train = segzoo::app::dataset(&cfg, Split::Train).expect("dataset");
    assert_eq!(train.len(), 3);
    assert_clean(&check(DatasetKind::Lip, dir.path(), "val.lst"));
    let mut t = plain();
    t.flip = true;
    t.flip_pairs = LIP_FLIP_PAIRS.to_vec();
    let img = image::RgbImage::from_fn(4, 1, |x, _| image::Rgb([x as u8, 0, 0]));
    let lab = vec![14u8, 16, 0, 19];
    let mut seen_flip = false;
    for seed in 0..20 {
        let p =
            t.apply(&img, &lab, &mut <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(seed)).expect("apply");
        if p.label != lab {
            assert_eq!(p.label, vec![18, 0, 17, 15], "mirrored, with left and right parts swapped");
            seen_flip = true;
        }
    }
    assert!(seen_flip);
}

#[test]
fn voc_lists_palette_labels_and_sbd_exclusion() {
    let dir = tempfile::tempdir().expect("tempdir");
    let written = synth::voc(dir.path(), 3, 50, 30, 2).expect("synth");
    let names: Vec<String> =
        written.iter().map(|w| w.path.file_name().expect("name").to_string_lossy().into_owned()).collect();
    assert_eq!(names, ["voc_train_lst.txt", "voc_val_lst.txt", "sbd_train_lst.txt"]);
    // SBD lists its own images, not the one that is also in VOC val.
    let sbd = std::fs::read_to_string(dir.path().join("sbd_train_lst.txt")).expect("list");
    assert_eq!(sbd.lines().count(), 3);
    assert!(!sbd.contains("2007_001000"), "{sbd}");
    assert!(sbd.contains("benchmark_RELEASE/dataset/cls_png/2008_000000.png"));
    for list in ["voc_train_lst.txt", "voc_val_lst.txt", "sbd_train_lst.txt"] {
        assert_clean(&check(DatasetKind::Voc, dir.path(), list));
    }
    // Palette PNGs give class indices (not colours); the boundary value 255 stays ignore.
    let ds = SegDataset::open(Kind::Voc, dir.path(), Path::new("voc_train_lst.txt"), plain()).expect("open");
    let (_, label) = ds.load_raw(0).expect("load");
    assert_eq!(label[0], IGNORE);
    assert!(label.iter().all(|&v| v <= 20 || v == IGNORE));
}

#[test]
fn sbd_mat_conversion_keeps_orientation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (w, h) = (5usize, 3usize);
    let label: Vec<u8> = (0..(w * h) as u8).collect();
    let mat = dir.path().join("x.mat");
    synth::write_sbd_mat(&mat, w, h, &label).expect("write mat");
    let png = dir.path().join("x.png");
    make_lists::sbd_mat_to_png(&mat, &png).expect("convert");
    let back = decode::read_label(&png).expect("read");
    assert_eq!((back.width, back.height), (5, 3));
    assert_eq!(back.data, label);
    std::fs::write(&mat, b"MATLAB 5.0 MAT-file, but not really").expect("write");
    let e = format!("{:#}", make_lists::sbd_mat_to_png(&mat, &png).expect_err("corrupt"));
    assert!(e.contains("x.mat"), "{e}");
}

#[test]
fn imagenet_folders_lists_and_transforms() {
    let dir = tempfile::tempdir().expect("tempdir");
    synth::imagenet(dir.path(), 3, 2, 40, 0).expect("synth");
    let t = |train| ClsTransform { size: 32, resize: 36, train, mean: [0.5; 3], std: [0.5; 3] };
    let from_list = ClsDataset::open(dir.path(), Path::new("val.lst"), t(false)).expect("list");
    let from_folder = ClsDataset::from_folder(&dir.path().join("val"), t(false)).expect("folder");
    assert_eq!(from_list.len(), 6);
    let classes = |d: &ClsDataset| d.entries.iter().map(|e| e.1).collect::<Vec<_>>();
    assert_eq!(classes(&from_list), vec![0, 0, 1, 1, 2, 2]);
    assert_eq!(classes(&from_list), classes(&from_folder));
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(0);
    let item = from_list.get(3, &mut rng).expect("item");
    assert_eq!((item.prepared.height, item.prepared.width, item.class), (32, 32, Some(1)));
    assert_eq!(item.prepared.image.len(), 3 * 32 * 32);
    let train = ClsDataset::open(dir.path(), Path::new("train.lst"), t(true)).expect("list");
    assert_eq!(train.get(0, &mut rng).expect("item").prepared.image.len(), 3 * 32 * 32);
    let r = check(DatasetKind::Imagenet, dir.path(), "train.lst");
    assert_clean(&r);
    assert_eq!((0..3).map(|c| r.classes[c].splits["train"].images).collect::<Vec<_>>(), [2, 2, 2]);
}

fn batches(ds: Arc<dyn Dataset>, workers: usize, epoch: u64) -> Vec<(Vec<usize>, tch::Tensor, tch::Tensor)> {
    let indices = ShardedSampler::train(ds.len(), 1, 0, 5).indices(epoch);
    let opts = LoaderOptions { batch_size: 2, workers, prefetch: 2, drop_last: true, seed: 9 };
    loader::epoch(ds, &indices, epoch, &opts)
        .map(|b| b.expect("batch"))
        .map(|b| (b.indices, b.images, b.targets))
        .collect()
}

#[test]
fn loader_is_deterministic_whatever_the_thread_count() {
    let dir = tempfile::tempdir().expect("tempdir");
    synth::cityscapes(dir.path(), 5, 1, 160, 80, 3, 2).expect("synth");
    let mut cfg = cityscapes_cfg(dir.path());
    cfg.color_jitter = Some(segzoo::config::ColorJitter { contrast: Some([0.4, 1.6]), ..Default::default() });
    let ds: Arc<dyn Dataset> = segzoo::app::dataset(&cfg, Split::Train).expect("dataset").into();
    let one = batches(ds.clone(), 1, 0);
    let three = batches(ds.clone(), 3, 0);
    assert_eq!(one.len(), 2, "5 samples, batch 2, drop_last");
    for ((i1, x1, y1), (i3, x3, y3)) in one.iter().zip(&three) {
        assert_eq!(i1, i3);
        assert_eq!(x1.size(), vec![2, 3, 64, 96]);
        assert_eq!(y1.size(), vec![2, 64, 96]);
        assert_eq!(y1.kind(), tch::Kind::Int64);
        assert!(x1.equal(x3) && y1.equal(y3), "identical pixels with 1 and 3 workers");
    }
    // Another epoch: another order and other augmentations.
    let next = batches(ds, 2, 1);
    assert!(next.iter().zip(&one).any(|(a, b)| a.0 != b.0 || !a.1.equal(&b.1)));
}

#[test]
fn eval_split_keeps_full_images_and_last_partial_batch() {
    let dir = tempfile::tempdir().expect("tempdir");
    synth::cityscapes(dir.path(), 1, 3, 96, 48, 4, 1).expect("synth");
    let ds: Arc<dyn Dataset> = segzoo::app::dataset(&cityscapes_cfg(dir.path()), Split::Val).expect("dataset").into();
    let indices = ShardedSampler::eval(ds.len(), 1, 0).indices(0);
    let opts = LoaderOptions { batch_size: 2, workers: 2, prefetch: 1, drop_last: false, seed: 0 };
    let got: Vec<_> = loader::epoch(ds, &indices, 0, &opts).map(|b| b.expect("batch")).collect();
    assert_eq!(got.iter().map(|b| b.indices.clone()).collect::<Vec<_>>(), vec![vec![0, 1], vec![2]]);
    assert_eq!(got[0].images.size(), vec![2, 3, 48, 96]);
}

/// A Cityscapes-layout root with one good pair, for the bad-input cases.
fn one_pair(dir: &Path) {
    synth::cityscapes(dir, 1, 0, 64, 32, 0, 1).expect("synth");
}

fn load_err(dir: &Path, list: &str) -> String {
    std::fs::write(dir.join("bad.lst"), list).expect("write list");
    match SegDataset::open(Kind::Cityscapes, dir, Path::new("bad.lst"), plain()) {
        Err(e) => format!("{e:#}"),
        Ok(ds) => format!("{:#}", ds.load_raw(0).expect_err("load fails")),
    }
}

const IMG: &str = "leftImg8bit/train/aachen/aachen_000000_000019_leftImg8bit.png";
const LAB: &str = "gtFine/train/aachen/aachen_000000_000019_gtFine_labelIds.png";

#[test]
fn bad_lists_are_reported_with_file_and_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    one_pair(dir.path());
    let e = load_err(dir.path(), "# nothing here\n\n");
    assert!(e.contains("bad.lst: the list has no entries"), "{e}");
    let e = load_err(dir.path(), &format!("{IMG} {LAB}\n{IMG}\n"));
    assert!(e.contains("bad.lst:2: expected `image label`, found one column"), "{e}");
    let e = load_err(dir.path(), &format!("{IMG} {LAB} extra\n"));
    assert!(e.contains("bad.lst:1: expected at most two columns"), "{e}");
    let e = load_err(dir.path(), &format!("{IMG} gtFine/missing.png\n"));
    assert!(e.contains("bad.lst:1") && e.contains("gtFine/missing.png: cannot open"), "{e}");
}

/// The error names the list file and line and every file at fault.
fn assert_names(e: &str, parts: &[&str]) {
    for p in parts {
        assert!(e.contains(p), "`{p}` not named in: {e}");
    }
}

#[test]
fn bad_files_are_reported_with_list_line_and_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    one_pair(d);
    // Image and label of different sizes: both files named, with their sizes.
    decode::write_gray_png(&d.join("small.png"), 10, 10, &[7; 100]).expect("png");
    let e = load_err(d, &format!("{IMG} small.png\n"));
    assert_names(
        &e,
        &["bad.lst:1", &format!("image {}", d.join(IMG).display()), "is 64×32 but label", "small.png is 10×10"],
    );
    // The same in the data check.
    std::fs::write(d.join("mismatch.lst"), format!("{IMG} small.png\n")).expect("list");
    let r = check(DatasetKind::Cityscapes, d, "mismatch.lst");
    assert_eq!(r.problems.len(), 1, "{}", r.render());
    assert_eq!(r.problems[0].kind, FindingKind::SizeMismatch);
    let e = format!("{}: {}", r.problems[0].file, r.problems[0].detail);
    assert_names(&e, &["mismatch.lst:1", IMG, "is 64×32 but mask", "small.png is 10×10"]);
    // Corrupt and truncated PNGs.
    std::fs::write(d.join("corrupt.png"), b"\x89PNG\r\n\x1a\nnot really a png").expect("write");
    let e = load_err(d, &format!("corrupt.png {LAB}\n"));
    assert_names(&e, &["bad.lst:1", "corrupt.png"]);
    let bytes = std::fs::read(d.join(IMG)).expect("read");
    std::fs::write(d.join("cut.png"), &bytes[..bytes.len() / 2]).expect("write");
    let e = load_err(d, &format!("cut.png {LAB}\n"));
    assert_names(&e, &["bad.lst:1", "cut.png: corrupt or truncated image"]);
    let lab = std::fs::read(d.join(LAB)).expect("read");
    std::fs::write(d.join("cut_label.png"), &lab[..lab.len() / 2]).expect("write");
    let e = load_err(d, &format!("{IMG} cut_label.png\n"));
    assert_names(&e, &["bad.lst:1", "cut_label.png: corrupt or truncated mask PNG"]);
    // A truncated JPEG.
    let img = decode::read_rgb(&d.join(IMG)).expect("img");
    img.save_with_format(d.join("x.jpg"), image::ImageFormat::Jpeg).expect("jpeg");
    let jpg = std::fs::read(d.join("x.jpg")).expect("read");
    std::fs::write(d.join("cut.jpg"), &jpg[..jpg.len() - 40]).expect("write");
    let e = load_err(d, &format!("cut.jpg {LAB}\n"));
    assert_names(&e, &["bad.lst:1", "cut.jpg: truncated JPEG"]);
    // An RGB label.
    decode::write_rgb_png(&d.join("rgb_label.png"), &img).expect("png");
    let e = load_err(d, &format!("{IMG} rgb_label.png\n"));
    assert_names(&e, &["bad.lst:1", "rgb_label.png", "an RGB mask", "mask_format = \"rgb\""]);
    // A missing image.
    let e = load_err(d, &format!("leftImg8bit/none.png {LAB}\n"));
    assert_names(&e, &["bad.lst:1", "leftImg8bit/none.png"]);
}

#[test]
fn label_values_outside_the_classes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    one_pair(d);
    let mut values = vec![7u8; 64 * 32];
    values[5] = 200;
    decode::write_gray_png(&d.join("odd.png"), 64, 32, &values).expect("png");
    std::fs::write(d.join("odd.lst"), format!("{IMG} odd.png\n")).expect("list");
    // Cityscapes: unknown label ids are mapped to ignore (documented).
    let ds = SegDataset::open(Kind::Cityscapes, d, Path::new("odd.lst"), plain()).expect("open");
    let (_, label) = ds.load_raw(0).expect("mapped");
    assert_eq!((label[5], label[6]), (IGNORE, 0));
    // VOC and LIP: a value that is neither a class nor 255 is an error naming it.
    let ds = SegDataset::open(Kind::Voc, d, Path::new("odd.lst"), plain()).expect("open");
    let e = format!("{:#}", ds.load_raw(0).expect_err("rejected"));
    assert_names(&e, &["odd.lst:1", "odd.png has value 200 in 1 pixel(s)", "21 classes", "segzoo data check"]);
    let r = check(DatasetKind::Lip, d, "odd.lst");
    assert_eq!(r.problems.len(), 1, "{}", r.render());
    let p = &r.problems[0];
    assert_eq!((p.kind, p.file.ends_with("odd.lst:1")), (FindingKind::OutsideClasses, true));
    assert_names(&p.detail, &["odd.png", "value 200 (1 px)"]);
}

#[test]
fn loader_reports_the_failing_sample_and_stops() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    one_pair(d);
    std::fs::write(d.join("mixed.lst"), format!("{IMG} {LAB}\n{IMG} {LAB}\nmissing.png {LAB}\n{IMG} {LAB}\n"))
        .expect("list");
    let ds: Arc<dyn Dataset> =
        Arc::new(SegDataset::open(Kind::Cityscapes, d, Path::new("mixed.lst"), plain()).expect("open"));
    let opts = LoaderOptions { batch_size: 1, workers: 2, prefetch: 2, drop_last: false, seed: 0 };
    let results: Vec<_> = loader::epoch(ds, &[0, 1, 2, 3], 0, &opts).collect();
    assert!(results[0].is_ok() && results[1].is_ok());
    let e = format!("{:#}", results[2].as_ref().err().expect("third fails"));
    assert!(e.contains("mixed.lst:3") && e.contains("missing.png"), "{e}");
    assert_eq!(results.len(), 3, "iteration stops at the first error");
}
