//! `metrics.jsonl`: one typed [`Record`] per line, appended by rank 0 while training
//! and read back by `curves.rs` (a resumed run appends to the same file).
use crate::eval::score::Score;
use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Record {
    /// The mean of the last `log.interval` steps.
    Train(TrainRecord),
    Eval(EvalRecord),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainRecord {
    /// 1-based.
    pub epoch: usize,
    pub step: u64,
    #[serde(with = "crate::eval::score::nan_as_null")]
    pub loss: f64,
    pub lr: f64,
    pub ms_per_step: f64,
    pub img_per_s: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalRecord {
    /// Epochs completed (1-based).
    pub epoch: usize,
    pub step: u64,
    #[serde(flatten)]
    pub score: Score,
}

/// Appends records to `metrics.jsonl` (rank 0 only: `None` elsewhere).
pub struct MetricsLog(Option<std::fs::File>);

impl MetricsLog {
    /// Open `path` for appending on rank 0; a no-op log elsewhere.
    pub fn open(path: &Path, writer: bool) -> anyhow::Result<Self> {
        if !writer {
            return Ok(MetricsLog(None));
        }
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        Ok(MetricsLog(Some(f)))
    }

    /// A failed append is a warning: losing a log line must not stop training.
    pub fn write(&mut self, record: &Record) {
        if let Some(f) = &mut self.0 {
            let line = serde_json::to_string(record).unwrap_or_default();
            if let Err(e) = writeln!(f, "{line}") {
                tracing::warn!("cannot append to metrics.jsonl: {e}");
            }
        }
    }
}

/// Every record of a `metrics.jsonl`; lines that are not records (a line cut short by a
/// crash) are skipped.
pub fn read(path: &Path) -> anyhow::Result<Vec<Record>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::metrics::SegMetrics;
    use crate::eval::score::ClsScore;

    #[test]
    fn records_round_trip_through_json_lines_with_nan_as_null() {
        let seg = SegMetrics {
            miou: 0.5,
            iou: vec![0.25, f64::NAN, 0.75],
            pixel_acc: 0.9,
            mean_class_acc: 0.6,
            class_names: Vec::new(),
            confusion: Vec::new(),
        };
        let records = [
            Record::Train(TrainRecord { epoch: 1, step: 10, loss: 1.5, lr: 0.01, ms_per_step: 20.0, img_per_s: 4.0 }),
            Record::Eval(EvalRecord { epoch: 1, step: 10, score: Score::Seg(seg) }),
            Record::Eval(EvalRecord {
                epoch: 2,
                step: 20,
                score: Score::Cls(ClsScore { top1: 0.5, top5: 0.75, images: 8 }),
            }),
        ];
        let lines: Vec<String> = records.iter().map(|r| serde_json::to_string(r).expect("serialises")).collect();
        assert!(lines[0].starts_with(r#"{"kind":"train","epoch":1,"step":10,"loss":1.5"#), "{}", lines[0]);
        assert!(lines[1].contains(r#""iou":[0.25,null,0.75]"#), "{}", lines[1]);
        assert!(lines[2].contains(r#""kind":"eval""#) && lines[2].contains(r#""top1":0.5"#), "{}", lines[2]);
        let back: Vec<Record> = lines.iter().map(|l| serde_json::from_str(l).expect("parses")).collect();
        match &back[1] {
            Record::Eval(EvalRecord { score: Score::Seg(m), .. }) => {
                assert_eq!(m.iou[0], 0.25);
                assert!(m.iou[1].is_nan());
            }
            other => panic!("expected a segmentation eval record, got {other:?}"),
        }
        assert_eq!(back[0], records[0]);
        assert_eq!(back[2], records[2]);
    }
}
