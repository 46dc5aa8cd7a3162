//! Your own data (docs/your-data.md): the custom layout with index and RGB masks, nested
//! folders and PNG/JPEG/BMP images; the ADE20K, PASCAL-Context and COCO-Stuff readers on
//! their synthetic sets; the data check's findings on a deliberately broken set and its
//! JSON; the bad inputs it names; predicting a folder; export formats from the extension.
#[path = "common/jobs.rs"]
mod jobs;

use jobs::{ok, segzoo, text};
use segzoo::data::dataset::Split;
use segzoo::data::labels::IGNORE;
use std::path::Path;

const CUSTOM: &str = r#"
[model]
name = "hrnetv2_w18_small_v1"

[data]
dataset = "custom"
root = "mine"
classes = ["background", "sky", "road", "car", "person"]
palette = [[0, 0, 0], [70, 130, 180], [128, 64, 128], [0, 0, 142], [220, 20, 60]]
mask_format = "rgb"
crop_size = [48, 64]
base_size = 0
scale_range = [1.0, 1.0]
num_workers = 1

[train]
epochs = 2
batch_size = 2
optimizer = "adam"
lr = 0.001
checkpoint_steps = 2
output_dir = "run"

[eval]
start = 99

[log]
interval = 1
tensorboard = false
"#;

fn write(d: &Path, name: &str, text: &str) {
    std::fs::write(d.join(name), text).expect("write");
}

fn config(d: &Path, name: &str, text: &str) -> segzoo::config::Config {
    write(d, name, text);
    segzoo::config::load_config(&d.join(name), &[]).expect("config")
}

fn exit_code(out: &std::process::Output) -> Option<i32> {
    out.status.code()
}

#[test]
fn custom_rgb_masks_train_evaluate_predict_and_export_with_their_names_and_colours() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let t =
        ok(segzoo(d, &["synth", "custom", "--out", "mine", "--n", "10", "--size", "64x48", "--mask-format", "rgb"]));
    assert!(t.contains("wrote mine/train.lst (8 entries)") && t.contains("mine/val.lst (2 entries)"), "{t}");
    // Nested folders and three image formats.
    for f in ["images/park/img_0000.png", "images/street/night/img_0001.jpg", "images/park/img_0002.bmp"] {
        assert!(d.join("mine").join(f).is_file(), "{f}");
    }
    write(d, "c.toml", CUSTOM);
    let t = ok(segzoo(d, &["data", "check", "--config", "c.toml", "--json", "check.json"]));
    assert!(t.contains("check: no problems found") && t.contains("class_weights = ["), "{t}");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("check.json")).expect("json")).expect("JSON");
    assert_eq!(report["classes"][3]["name"], "car");
    assert!(report["classes"][3]["splits"]["train"]["pixels"].as_u64().expect("pixels") > 0);
    let mut data = segzoo::config::load_config(&d.join("c.toml"), &[]).expect("cfg").data;
    data.root = d.join("mine");
    let ds = segzoo::app::dataset(&data, Split::Val).expect("val set");
    assert_eq!(ds.len(), 2);

    ok(segzoo(d, &["train", "--config", "c.toml", "--max-steps", "2"]));
    let ckpt = "run/checkpoints/ckpt_step_00000002.safetensors";
    let t = ok(segzoo(d, &["eval", "--config", "c.toml", "--checkpoint", ckpt, "--json", "m.json"]));
    assert!(t.contains("person") && t.contains("road"), "per-class IoU by name: {t}");
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(d.join("m.json")).expect("json")).expect("JSON");
    assert_eq!(m["iou"].as_array().map(Vec::len), Some(5));
    // Predictions of a folder mirror its subfolders, in the palette's colours.
    let t = ok(segzoo(
        d,
        &["infer", "--config", "c.toml", "--checkpoint", ckpt, "--input", "mine/images", "--output", "p"],
    ));
    assert!(t.contains("wrote 10 predictions"), "{t}");
    let png = image::open(d.join("p/street/night/img_0001_infer.png")).expect("mirrored").to_rgb8();
    let palette = [[0u8, 0, 0], [70, 130, 180], [128, 64, 128], [0, 0, 142], [220, 20, 60]];
    assert!(png.pixels().all(|p| palette.contains(&p.0)), "only the palette's colours");
    // ONNX: the format from the extension, the names and colours in the metadata.
    ok(segzoo(d, &["export", "--config", "c.toml", "--checkpoint", ckpt, "--out", "m.onnx"]));
    let onnx = std::fs::read(d.join("m.onnx")).expect("onnx");
    let model = <segzoo::deploy::onnx_proto::ModelProto as prost::Message>::decode(onnx.as_slice()).expect("ONNX");
    let meta = |k: &str| model.metadata_props.iter().find(|p| p.key == k).map(|p| p.value.clone()).unwrap_or_default();
    assert_eq!(meta("class_names"), r#"["background","sky","road","car","person"]"#);
    assert!(meta("palette").starts_with("[[0,0,0],[70,130,180]"), "{}", meta("palette"));
    assert_eq!(meta("dataset"), "custom");
}

#[test]
fn custom_index_masks_with_reduced_zero_label_nested_folders_and_four_image_formats() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let root = d.join("ade_like");
    // Masks 0 (other: ignored), 1..=3 the classes, 255 left as is.
    for (i, (sub, ext, format)) in [
        ("a", "png", image::ImageFormat::Png),
        ("b/c", "jpg", image::ImageFormat::Jpeg),
        ("b", "bmp", image::ImageFormat::Bmp),
        ("b/c/d", "tif", image::ImageFormat::Tiff),
    ]
    .into_iter()
    .enumerate()
    {
        std::fs::create_dir_all(root.join("images").join(sub)).expect("dir");
        std::fs::create_dir_all(root.join("masks").join(sub)).expect("dir");
        let img = image::RgbImage::from_pixel(8, 4, image::Rgb([10 * i as u8, 20, 30]));
        img.save_with_format(root.join(format!("images/{sub}/s{i}.{ext}")), format).expect("image");
        let values: Vec<u8> = (0..32).map(|p| [0u8, 1, 2, 3][p % 4]).collect();
        segzoo::data::decode::write_gray_png(&root.join(format!("masks/{sub}/s{i}.png")), 8, 4, &values).expect("mask");
    }
    let t = ok(segzoo(d, &["make-lists", "custom", "--root", "ade_like", "--val-fraction", "0.34", "--seed", "3"]));
    assert!(t.contains("train.lst (3 entries)") && t.contains("val.lst (1 entries)"), "{t}");
    let cfg = config(
        d,
        "i.toml",
        "[data]\ndataset = \"custom\"\nroot = \"ade_like\"\nclasses = [\"a\", \"b\", \"c\"]\nreduce_zero_label = true\n",
    );
    let mut data = cfg.data.clone();
    data.root = root.clone();
    let ds = segzoo::app::seg_val_dataset(&data).expect("val");
    let (img, label) = ds.load_raw(0).expect("read");
    assert_eq!((img.width(), img.height()), (8, 4));
    assert_eq!(&label[..4], &[IGNORE, 0, 1, 2], "0 ignored, k is class k-1");
    // The same masks as plain index masks with 3 classes: value 3 is outside them.
    let plain =
        config(d, "p.toml", "[data]\ndataset = \"custom\"\nroot = \"ade_like\"\nclasses = [\"a\", \"b\", \"c\"]\n");
    let mut data = plain.data.clone();
    data.root = root;
    let e = format!("{:#}", segzoo::app::seg_val_dataset(&data).expect("val").load_raw(0).expect_err("value 3"));
    assert!(e.contains("val.lst:1") && e.contains("has value 3 in 8 pixel(s)"), "{e}");
    // A list with other entries is not replaced without --force; an identical one is fine.
    std::fs::write(d.join("ade_like/val.lst"), "images/a/s0.png masks/a/s0.png\n").expect("hand-written list");
    let out = segzoo(d, &["make-lists", "custom", "--root", "ade_like", "--val-fraction", "0.34", "--seed", "3"]);
    let e = text(&out);
    assert!(!out.status.success() && e.contains("holds another list: --force replaces it"), "{e}");
    ok(segzoo(d, &["make-lists", "custom", "--root", "ade_like", "--val-fraction", "0.34", "--seed", "3", "--force"]));
}

#[test]
fn ade20k_pascal_context_and_coco_stuff_read_their_synthetic_sets_cleanly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    for (kind, root) in [("ade20k", "ade"), ("pascal_context", "pc"), ("cocostuff", "coco")] {
        let t = ok(segzoo(d, &["synth", kind, "--out", root, "--n", "2", "--size", "32x24"]));
        assert!(t.contains("train.lst (2 entries)") && t.contains("val.lst (2 entries)"), "{kind}: {t}");
        let cfg = config(
            d,
            &format!("{kind}.toml"),
            &format!("[data]\ndataset = \"{kind}\"\nroot = \"{root}\"\ncrop_size = [24, 32]\n"),
        );
        let t = ok(segzoo(d, &["data", "check", "--config", &format!("{kind}.toml")]));
        assert!(t.contains("check: no problems found"), "{kind}: {t}");
        let mut data = cfg.data.clone();
        data.root = d.join(root);
        let (_, label) = segzoo::app::seg_val_dataset(&data).expect("val").load_raw(0).expect("read");
        let n = segzoo::app::classes(&data).len() as u8;
        assert!(label.iter().all(|&v| v < n || v == IGNORE), "{kind}: train ids only");
        if kind == "cocostuff" {
            // The unlabelled first row and the band of an id unused in COCO 2017 are ignored.
            assert!(label[..32].iter().all(|&v| v == IGNORE));
            assert!(label.iter().filter(|&&v| v == IGNORE).count() >= 64);
        }
        assert_eq!(
            n as usize,
            [150, 59, 171][["ade20k", "pascal_context", "cocostuff"].iter().position(|k| *k == kind).expect("kind")]
        );
    }
}

/// A custom set with one of each problem the check names.
fn broken_set(d: &Path) {
    ok(segzoo(d, &["synth", "custom", "--out", "bad", "--n", "6", "--size", "32x24", "--mask-format", "rgb"]));
    let b = d.join("bad");
    // A truncated JPEG.
    let jpg = std::fs::read(b.join("images/street/night/img_0001.jpg")).expect("jpg");
    std::fs::write(b.join("images/street/night/img_0001.jpg"), &jpg[..jpg.len() / 2]).expect("cut");
    // A mask of another size.
    let small = image::RgbImage::from_pixel(8, 8, image::Rgb([0, 0, 0]));
    segzoo::data::decode::write_rgb_png(&b.join("masks/park/img_0002.png"), &small).expect("small mask");
    // Colours no class has.
    let mut odd = image::RgbImage::from_pixel(32, 24, image::Rgb([70, 130, 180]));
    odd.put_pixel(0, 0, image::Rgb([1, 2, 3]));
    segzoo::data::decode::write_rgb_png(&b.join("masks/street/night/img_0003.png"), &odd).expect("odd mask");
    // An image without a mask, a mask without an image.
    std::fs::copy(b.join("images/park/img_0000.png"), b.join("images/park/lonely.png")).expect("copy");
    std::fs::copy(b.join("masks/park/img_0000.png"), b.join("masks/park/orphan.png")).expect("copy");
    // Every pair listed, img_0000 in both splits.
    let lines: Vec<String> =
        ["park/img_0000.png", "street/night/img_0001.jpg", "park/img_0002.bmp", "street/night/img_0003.png"]
            .iter()
            .map(|f| format!("images/{f} masks/{}.png", f.rsplit_once('.').expect("ext").0))
            .collect();
    std::fs::write(b.join("train.lst"), lines.join("\n") + "\n").expect("list");
    std::fs::write(b.join("val.lst"), format!("{}\n", lines[0])).expect("list");
}

#[test]
fn the_data_check_names_every_problem_of_a_broken_set_and_writes_them_as_json() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    broken_set(d);
    write(d, "c.toml", &CUSTOM.replace("root = \"mine\"", "root = \"bad\"").replace("[48, 64]", "[64, 64]"));
    let out = segzoo(d, &["data", "check", "--config", "c.toml", "--json", "check.json"]);
    let t = text(&out);
    assert_eq!(exit_code(&out), Some(1), "problems: exit 1\n{t}");
    for want in [
        "unreadable, truncated or wrong-format files (1)",
        "train.lst:2: bad/images/street/night/img_0001.jpg: truncated JPEG",
        "image and mask sizes differ (1)",
        "is 32×24 but mask",
        "mask values outside the classes (1)",
        "colour [1, 2, 3] (1 px)",
        "images without a mask (1)",
        "images/park/lonely.png",
        "masks without an image (1)",
        "masks/park/orphan.png",
        "the same image in two splits (1)",
        "images/park/img_0000.png: in both train and val",
        "data.crop_size [64, 64] is larger than the smallest images (32×24)",
    ] {
        assert!(t.contains(want), "`{want}` not in:\n{t}");
    }
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("check.json")).expect("json")).expect("JSON");
    let kinds: Vec<&str> =
        report["problems"].as_array().expect("problems").iter().map(|p| p["kind"].as_str().expect("kind")).collect();
    assert_eq!(
        kinds,
        ["unreadable", "size_mismatch", "outside_classes", "image_without_mask", "mask_without_image", "in_two_splits"]
    );
    let outside = &report["problems"][2];
    assert_eq!(outside["values"][0], serde_json::json!([[1, 2, 3], 1]));
    // The same masks read as index masks: each named as the wrong kind.
    write(
        d,
        "i.toml",
        &CUSTOM
            .replace("root = \"mine\"", "root = \"bad\"")
            .replace("mask_format = \"rgb\"", "mask_format = \"index\""),
    );
    let t = text(&segzoo(d, &["data", "check", "--config", "i.toml"]));
    assert!(t.contains("an RGB mask, but this dataset's masks hold class indices"), "{t}");
    // A config that cannot be used: exit 2.
    write(d, "x.toml", &CUSTOM.replace("mask_format = \"rgb\"", "mask_format = \"rgb\"\nreduce_zero_label = true"));
    let out = segzoo(d, &["data", "check", "--config", "x.toml"]);
    assert_eq!(exit_code(&out), Some(2), "{}", text(&out));
}

#[test]
fn bad_class_lists_palettes_and_layouts_are_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let cases = [
        (
            "classes = [\"background\", \"sky\", \"road\", \"car\", \"person\"]",
            "classes = []",
            "key `data.classes`: is empty",
        ),
        ("\"car\", \"person\"]", "\"car\", \"sky\"]", "\"sky\" is listed twice (classes 1 and 4)"),
        ("[220, 20, 60]]", "]", "key `data.palette`: has 4 colours for 5 classes"),
        ("[220, 20, 60]]", "[0, 0, 142]]", "colour [0, 0, 142] is used twice (classes 3 and 4)"),
        ("palette = [", "# palette = [", "key `data.palette`: is needed with mask_format = \"rgb\""),
        (
            "name = \"hrnetv2_w18_small_v1\"",
            "name = \"hrnetv2_w18_small_v1\"\nnum_classes = 4",
            "key `model.num_classes`: must equal",
        ),
    ];
    for (from, to, want) in cases {
        assert!(CUSTOM.contains(from), "{from}");
        write(d, "c.toml", &CUSTOM.replacen(from, to, 1));
        let out = segzoo(d, &["config", "show", "c.toml"]);
        let e = text(&out);
        assert!(!out.status.success() && e.contains("c.toml") && e.contains(want), "`{want}` not in: {e}");
    }
    // Layouts: a root without images/, and an image the readers do not take.
    std::fs::create_dir_all(d.join("r/masks")).expect("dir");
    let e = text(&segzoo(d, &["make-lists", "custom", "--root", "r"]));
    assert!(e.contains("r/images: no images folder"), "{e}");
    std::fs::create_dir_all(d.join("r/images")).expect("dir");
    std::fs::write(d.join("r/images/x.gif"), b"GIF89a").expect("gif");
    let e = text(&segzoo(d, &["make-lists", "custom", "--root", "r"]));
    assert!(e.contains("x.gif: not an image the readers take (png, jpg, jpeg, bmp, tif, tiff)"), "{e}");
}

#[test]
fn a_folder_is_predicted_subfolders_mirrored_unreadable_images_skipped_nothing_overwritten() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    ok(segzoo(d, &["synth", "custom", "--out", "mine", "--n", "4", "--size", "32x24"]));
    write(
        d,
        "c.toml",
        &CUSTOM.replace("mask_format = \"rgb\"", "mask_format = \"index\"").replace("[48, 64]", "[24, 32]"),
    );
    ok(segzoo(d, &["train", "--config", "c.toml", "--max-steps", "1", "--set", "train.checkpoint_steps=1"]));
    let ckpt = "run/checkpoints/ckpt_step_00000001.safetensors";
    // Two images of one name in two folders, and a truncated one.
    let jpg = "mine/images/street/night/img_0001.jpg";
    for sub in ["in/a", "in/b"] {
        std::fs::create_dir_all(d.join(sub)).expect("dir");
        std::fs::copy(d.join(jpg), d.join(sub).join("x.jpg")).expect("copy");
    }
    let bytes = std::fs::read(d.join(jpg)).expect("jpg");
    std::fs::write(d.join("in/b/cut.jpg"), &bytes[..bytes.len() / 2]).expect("cut");
    let args = ["infer", "--config", "c.toml", "--checkpoint", ckpt, "--input", "in", "--output", "out"];
    let out = segzoo(d, &args);
    let t = text(&out);
    assert_eq!(exit_code(&out), Some(1), "{t}");
    assert!(t.contains("wrote 2 predictions") && t.contains("skipped 1 of 3 images") && t.contains("b/cut.jpg"), "{t}");
    assert!(d.join("out/a/x_infer.png").is_file() && d.join("out/b/x_infer.png").is_file());
    let t = text(&segzoo(d, &args));
    assert!(t.contains("out/a/x_infer.png already exists (and 1 more of the 3 predictions): --force"), "{t}");
    std::fs::remove_file(d.join("in/b/cut.jpg")).expect("rm");
    ok(segzoo(d, &[&args[..], &["--force"]].concat()));
    // Export: the format from the extension, and an extension that contradicts --format.
    let out = segzoo(d, &["export", "--checkpoint", ckpt, "--format", "safetensors", "--out", "m.onnx"]);
    let e = text(&out);
    assert!(!out.status.success() && e.contains("--format safetensors but m.onnx names onnx"), "{e}");
    assert!(!d.join("m.onnx").exists());
    let e = text(&segzoo(d, &["export", "--checkpoint", ckpt, "--out", "m.weights"]));
    assert!(e.contains("m.weights: no format in its extension"), "{e}");
    ok(segzoo(d, &["export", "--checkpoint", ckpt, "--out", "w.safetensors"]));
    assert!(tch::Tensor::read_safetensors(d.join("w.safetensors")).expect("safetensors").len() > 100);
}
