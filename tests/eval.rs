//! `segzoo eval-preds` on hand-made PNGs with hand-computed IoUs (train ids and Cityscapes
//! label ids, and the printed recipe lines).
use segzoo::data::decode::write_gray_png;
use segzoo::data::kind::DatasetKind;
use std::path::Path;

/// Label ids (Cityscapes) of a 2×4 image: road road car car / sky sky unlabeled road.
const LABEL_IDS: [u8; 8] = [7, 7, 26, 26, 23, 23, 0, 7];
/// Predicted train ids: road car car car / sky void pole road.
const PRED_TRAIN: [u8; 8] = [0, 13, 13, 13, 10, 255, 5, 0];

fn fixture(dir: &Path, pred: &[u8]) {
    write_gray_png(&dir.join("gt/a_gtFine_labelIds.png"), 4, 2, &LABEL_IDS).expect("label");
    write_gray_png(&dir.join("pred/a_leftImg8bit.png"), 4, 2, pred).expect("pred");
    std::fs::write(dir.join("val.lst"), "img/a_leftImg8bit.png gt/a_gtFine_labelIds.png\n").expect("list");
}

fn check(m: &segzoo::eval::metrics::SegMetrics) {
    // road: label 3 px, predicted 2 px, 2 right → 2/3. car: label 2, predicted 3, 2 right → 2/3.
    // sky: label 2, predicted 1 (the void pixel is a miss, no one's false positive) → 1/2.
    // pole: predicted only where the label is ignored → in neither → NaN, not averaged.
    assert!((m.iou[0] - 2.0 / 3.0).abs() < 1e-12, "{:?}", m.iou);
    assert!((m.iou[13] - 2.0 / 3.0).abs() < 1e-12);
    assert!((m.iou[10] - 0.5).abs() < 1e-12);
    assert!(m.iou[5].is_nan() && m.iou[1].is_nan());
    assert!((m.miou - (2.0 / 3.0 + 2.0 / 3.0 + 0.5) / 3.0).abs() < 1e-12, "{}", m.miou);
    assert!((m.pixel_acc - 5.0 / 7.0).abs() < 1e-12);
}

#[test]
fn eval_preds_with_train_ids_and_label_ids() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    fixture(d, &PRED_TRAIN);
    let m = segzoo::eval::preds::evaluate(DatasetKind::Cityscapes, d, &d.join("val.lst"), &d.join("pred"), false)
        .expect("eval");
    check(&m);
    // The same prediction written as Cityscapes label ids (void → 0 "unlabeled").
    let as_label_ids: Vec<u8> = PRED_TRAIN
        .iter()
        .map(|&t| if t == 255 { 0 } else { segzoo::data::labels::cityscapes_train_to_label_id(t) })
        .collect();
    fixture(d, &as_label_ids);
    let m = segzoo::eval::preds::evaluate(DatasetKind::Cityscapes, d, &d.join("val.lst"), &d.join("pred"), true)
        .expect("eval");
    check(&m);
    // A missing prediction names the image; a wrong size names both sizes.
    std::fs::remove_file(d.join("pred/a_leftImg8bit.png")).expect("rm");
    let e = format!(
        "{:#}",
        segzoo::eval::preds::evaluate(DatasetKind::Cityscapes, d, &d.join("val.lst"), &d.join("pred"), false)
            .expect_err("missing")
    );
    assert!(e.contains("val.lst:1") && e.contains("a_leftImg8bit.png"), "{e}");
    write_gray_png(&d.join("pred/a_leftImg8bit.png"), 2, 2, &[0; 4]).expect("pred");
    let e = format!(
        "{:#}",
        segzoo::eval::preds::evaluate(DatasetKind::Cityscapes, d, &d.join("val.lst"), &d.join("pred"), false)
            .expect_err("size")
    );
    assert!(e.contains("prediction is 2×2 but the label is 4×2"), "{e}");
}

#[test]
fn eval_preds_command_prints_the_recipe_lines() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    fixture(d, &PRED_TRAIN);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_segzoo"))
        .args(["eval-preds", "--dataset", "cityscapes", "--pred-dir"])
        .arg(d.join("pred"))
        .arg("--list")
        .arg(d.join("val.lst"))
        .arg("--json")
        .arg(d.join("m.json"))
        .output()
        .expect("runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("miou: 0.61111111\niou array: [0.66666667, NaN"), "{text}");
    assert!(text.contains("road") && text.contains("66.67"), "{text}");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(d.join("m.json")).expect("json")).expect("valid");
    assert_eq!(v["iou"].as_array().map(Vec::len), Some(19));
}
