//! `segzoo eval-preds`: score prediction PNGs made by another tool against a list's
//! labels, so numbers can be compared across tools.
use super::metrics::{ConfusionMatrix, SegMetrics};
use crate::data::classes::ClassSet;
use crate::data::decode::read_label;
use crate::data::kind::DatasetKind;
use crate::data::labels::{LabelMap, IGNORE};
use crate::data::lists::{read_list, Columns};
use crate::data::masks::MaskRule;
use anyhow::{bail, Context};
use std::path::Path;
use tch::{Device, Tensor};

/// Predictions are `<pred_dir>/<image file stem>.png`, grey, holding train ids or (with
/// `label_ids`, Cityscapes) label ids.
pub fn evaluate(
    kind: DatasetKind,
    root: &Path,
    list: &Path,
    pred_dir: &Path,
    label_ids: bool,
) -> anyhow::Result<SegMetrics> {
    if kind.is_classification() {
        bail!("eval-preds is for segmentation datasets");
    }
    if label_ids && kind != DatasetKind::Cityscapes {
        bail!("--pred-ids labelid is for Cityscapes predictions");
    }
    let (Some(rule), Some(classes)) = (MaskRule::for_dataset(kind), ClassSet::builtin(kind)) else {
        bail!("eval-preds scores the benchmarks' layouts; a custom dataset's predictions: segzoo eval --config")
    };
    let entries = read_list(list, Columns::Pair)?;
    let n = rule.num_classes() as i64;
    // One extra "void" column: a pixel predicted as no class is a false negative of its
    // true class and a false positive of none (as cityscapesScripts counts it).
    let mut cm = ConfusionMatrix::new(n + 1, IGNORE as i64, Device::Cpu);
    for e in &entries {
        let at = format!("{}:{}", list.display(), e.line);
        let label_path = root.join(e.target.as_deref().unwrap_or_default());
        let label = rule.read(&label_path).with_context(|| at.clone())?;
        if let Some((v, _)) = label.unknown.first() {
            bail!("{at}: label {} has invalid {v}", label_path.display());
        }
        let stem = e.image.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
        let pred_path = pred_dir.join(format!("{stem}.png"));
        let mut pred = read_label(&pred_path).with_context(|| format!("{at}: prediction for {}", e.image.display()))?;
        if (pred.width, pred.height) != (label.width, label.height) {
            bail!(
                "{}: prediction is {}×{} but the label is {}×{}",
                pred_path.display(),
                pred.width,
                pred.height,
                label.width,
                label.height
            );
        }
        if label_ids {
            if let Some(map) = LabelMap::for_dataset(DatasetKind::Cityscapes) {
                let _ = map.apply(&mut pred.data);
            }
        }
        if let Some(v) = pred.data.iter().find(|&&v| v as i64 >= n && v != IGNORE) {
            bail!("{}: value {v} is not a train id (0–{}) nor 255", pred_path.display(), n - 1);
        }
        let shape = [1, label.height as i64, label.width as i64];
        let p: Vec<i64> = pred.data.iter().map(|&v| if v == IGNORE { n } else { v as i64 }).collect();
        let l: Vec<i64> = label.ids.iter().map(|&v| v as i64).collect();
        cm.update(&Tensor::from_slice(&p).view(shape), &Tensor::from_slice(&l).view(shape));
    }
    Ok(SegMetrics::from_matrix(&cm.matrix.narrow(0, 0, n), &classes.names))
}
