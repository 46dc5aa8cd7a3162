//! Segmentation metrics from a confusion matrix accumulated on the device, and
//! top-k accuracy for classification. Classes absent from both prediction and label
//! have no IoU (NaN) and are left out of the mean, as cityscapesScripts does.
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

/// Top-1 / top-5 accuracy over `images`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClsScore {
    pub top1: f64,
    pub top5: f64,
    #[serde(default)]
    pub images: i64,
}

/// A C×C confusion matrix (rows: label, columns: prediction), kept on the device.
pub struct ConfusionMatrix {
    pub num_classes: i64,
    pub ignore: i64,
    pub matrix: Tensor,
}

impl ConfusionMatrix {
    pub fn new(num_classes: i64, ignore: i64, device: Device) -> Self {
        ConfusionMatrix {
            num_classes,
            ignore,
            matrix: Tensor::zeros([num_classes, num_classes], (Kind::Int64, device)),
        }
    }

    /// Add predictions (N×H×W class ids) against labels (N×H×W, `ignore` skipped).
    pub fn update(&mut self, pred: &Tensor, label: &Tensor) {
        let n = self.num_classes;
        let label = label.to_kind(Kind::Int64).flatten(0, -1);
        let pred = pred.to_kind(Kind::Int64).flatten(0, -1);
        let keep = label.ne(self.ignore).logical_and(&label.ge(0)).logical_and(&label.lt(n));
        let idx = label.masked_select(&keep) * n + pred.masked_select(&keep);
        let counts = idx.bincount::<Tensor>(None, n * n).view([n, n]);
        self.matrix += counts.to_kind(Kind::Int64);
    }

    /// Add logits (N×C×h×w): argmax over classes, compared at the labels' size.
    pub fn update_logits(&mut self, logits: &Tensor, label: &Tensor, align_corners: bool) {
        let (h, w) = (label.size()[1], label.size()[2]);
        let logits = crate::models::layers::resize_bilinear(logits, h, w, align_corners);
        self.update(&logits.argmax(1, false), label);
    }

    pub fn summary(&self, class_names: &[String]) -> SegMetrics {
        SegMetrics::from_matrix(&self.matrix, class_names)
    }
}

/// Segmentation scores. The same shape is written by `segzoo eval --json` and (without
/// the class names and the matrix) as an eval record of `metrics.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegMetrics {
    #[serde(with = "super::nan_json::nan_as_null")]
    pub miou: f64,
    /// Per-class IoU; NaN (null in JSON) where the class is in neither label nor prediction.
    #[serde(with = "super::nan_json::nans_as_nulls")]
    pub iou: Vec<f64>,
    #[serde(with = "super::nan_json::nan_as_null")]
    pub pixel_acc: f64,
    #[serde(with = "super::nan_json::nan_as_null")]
    pub mean_class_acc: f64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub class_names: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub confusion: Vec<Vec<i64>>,
}

fn nan_mean(v: &[f64]) -> f64 {
    let finite: Vec<f64> = v.iter().copied().filter(|x| !x.is_nan()).collect();
    if finite.is_empty() {
        f64::NAN
    } else {
        finite.iter().sum::<f64>() / finite.len() as f64
    }
}

impl SegMetrics {
    pub fn from_matrix(matrix: &Tensor, class_names: &[String]) -> Self {
        // Rows are labels; there may be extra prediction columns (e.g. "void") beyond the classes.
        let (n, cols) = (matrix.size()[0] as usize, matrix.size()[1] as usize);
        let flat: Vec<i64> =
            Vec::<i64>::try_from(matrix.to_device(Device::Cpu).contiguous().flatten(0, -1)).unwrap_or_default();
        let m: Vec<Vec<i64>> = flat.chunks(cols.max(1)).map(<[i64]>::to_vec).collect();
        let (mut iou, mut acc) = (Vec::with_capacity(n), Vec::with_capacity(n));
        let (mut correct, mut total) = (0i64, 0i64);
        for (c, row) in m.iter().enumerate() {
            let tp = row[c];
            let label_c: i64 = row.iter().sum();
            let pred_c: i64 = (0..n).map(|r| m[r][c]).sum();
            let union = label_c + pred_c - tp;
            iou.push(if union == 0 { f64::NAN } else { tp as f64 / union as f64 });
            acc.push(if label_c == 0 { f64::NAN } else { tp as f64 / label_c as f64 });
            correct += tp;
            total += label_c;
        }
        SegMetrics {
            miou: nan_mean(&iou),
            iou,
            pixel_acc: if total == 0 { f64::NAN } else { correct as f64 / total as f64 },
            mean_class_acc: nan_mean(&acc),
            class_names: class_names.iter().take(n).cloned().collect(),
            confusion: m,
        }
    }

    /// The recipes' two lines: `miou: …` and `iou array: […]`.
    pub fn recipe_lines(&self) -> String {
        let arr: Vec<String> = self.iou.iter().map(|v| format!("{v:.8}")).collect();
        format!("miou: {:.8}\niou array: [{}]", self.miou, arr.join(", "))
    }

    /// A table with class names.
    pub fn table(&self) -> String {
        let mut s = format!("{:<16} {:>8}\n", "class", "IoU");
        for (i, v) in self.iou.iter().enumerate() {
            let name = self.class_names.get(i).cloned().unwrap_or_else(|| format!("class {i}"));
            let shown = if v.is_nan() { "-".to_string() } else { format!("{:.2}", 100.0 * v) };
            s += &format!("{name:<16} {shown:>8}\n");
        }
        s += &format!(
            "{:<16} {:>8.2}\npixel acc {:.2}  mean class acc {:.2}\n",
            "mIoU",
            100.0 * self.miou,
            100.0 * self.pixel_acc,
            100.0 * self.mean_class_acc
        );
        s
    }
}

/// Classification accuracy counts, summed over batches and ranks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TopK {
    pub top1_correct: i64,
    pub top5_correct: i64,
    pub images: i64,
}

impl TopK {
    /// Add a batch of `logits` (N×C) against `targets` (N).
    pub fn update(&mut self, logits: &Tensor, targets: &Tensor) {
        let (top1, top5) = topk_correct(logits, targets, 5);
        self.top1_correct += top1;
        self.top5_correct += top5;
        self.images += targets.size()[0];
    }

    pub fn score(&self) -> ClsScore {
        let n = self.images.max(1) as f64;
        ClsScore { top1: self.top1_correct as f64 / n, top5: self.top5_correct as f64 / n, images: self.images }
    }
}

/// Correct top-1 and top-k predictions of `logits` (N×C) against `targets` (N).
pub fn topk_correct(logits: &Tensor, targets: &Tensor, k: i64) -> (i64, i64) {
    let k = k.min(logits.size()[1]);
    let (_, idx) = logits.topk(k, 1, true, true);
    let hits = idx.eq_tensor(&targets.unsqueeze(1).to_kind(Kind::Int64));
    let top1 = hits.narrow(1, 0, 1).sum(Kind::Int64).int64_value(&[]);
    let topk = hits.sum(Kind::Int64).int64_value(&[]);
    (top1, topk)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confusion_and_iou_by_hand() {
        // 3 classes; class 2 appears nowhere; 255 is ignored.
        let label = Tensor::from_slice(&[0i64, 0, 1, 1, 255, 0]).view([1, 2, 3]);
        let pred = Tensor::from_slice(&[0i64, 1, 1, 1, 2, 0]).view([1, 2, 3]);
        let mut cm = ConfusionMatrix::new(3, 255, Device::Cpu);
        cm.update(&pred, &label);
        let m = cm.summary(&["a".into(), "b".into(), "c".into()]);
        assert_eq!(m.confusion, vec![vec![2, 1, 0], vec![0, 2, 0], vec![0, 0, 0]]);
        // IoU a = 2 / (3 + 2 - 2) = 2/3; b = 2 / (2 + 3 - 2) = 2/3; c: absent → NaN, excluded.
        assert!((m.iou[0] - 2.0 / 3.0).abs() < 1e-12 && (m.iou[1] - 2.0 / 3.0).abs() < 1e-12);
        assert!(m.iou[2].is_nan());
        assert!((m.miou - 2.0 / 3.0).abs() < 1e-12);
        assert!((m.pixel_acc - 0.8).abs() < 1e-12);
        assert!((m.mean_class_acc - (2.0 / 3.0 + 1.0) / 2.0).abs() < 1e-12);
        assert!(m.recipe_lines().starts_with("miou: 0.66666667\niou array: [0.66666667, 0.66666667, NaN]"));
        // A class predicted but never labelled has IoU 0, and counts in the mean.
        let mut cm = ConfusionMatrix::new(3, 255, Device::Cpu);
        cm.update(&Tensor::from_slice(&[2i64, 0]).view([1, 1, 2]), &Tensor::from_slice(&[0i64, 0]).view([1, 1, 2]));
        let m = cm.summary(&[]);
        assert_eq!(m.iou[2], 0.0);
        assert!((m.miou - 0.25).abs() < 1e-12);
    }

    #[test]
    fn topk() {
        let logits = Tensor::from_slice(&[0.1f32, 0.5, 0.4, 0.9, 0.05, 0.05]).view([2, 3]);
        let targets = Tensor::from_slice(&[2i64, 0]);
        assert_eq!(topk_correct(&logits, &targets, 2), (1, 2));
    }
}
