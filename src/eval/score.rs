//! [`Score`]: the result of one evaluation, segmentation ([`SegMetrics`]) or
//! classification ([`ClsScore`]). One shape for `segzoo eval --json`, the eval records of
//! `metrics.jsonl` and checkpoint metadata. NaN (an absent class) is `null` in JSON.
pub use super::metrics::ClsScore;
use super::metrics::SegMetrics;
pub use super::nan_json::{nan_as_null, nans_as_nulls};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Score {
    Seg(SegMetrics),
    Cls(ClsScore),
}

impl Score {
    /// The metric that ranks checkpoints: (name, value) — mIoU or top-1.
    pub fn main(&self) -> (&'static str, f64) {
        match self {
            Score::Seg(m) => ("miou", m.miou),
            Score::Cls(c) => ("top1", c.top1),
        }
    }

    /// The score without the per-image bulk (class names, confusion matrix), as logged.
    pub fn compact(&self) -> Score {
        match self {
            Score::Seg(m) => Score::Seg(SegMetrics { class_names: Vec::new(), confusion: Vec::new(), ..m.clone() }),
            Score::Cls(c) => Score::Cls(c.clone()),
        }
    }
}

/// As the recipes print it: `miou: …` / `iou array: […]` and a per-class table, or
/// top-1 / top-5 with the image count.
impl std::fmt::Display for Score {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Score::Seg(m) => write!(f, "{}\n{}", m.recipe_lines(), m.table()),
            Score::Cls(c) => {
                write!(f, "top-1 {:.2}%  top-5 {:.2}%  ({} images)", 100.0 * c.top1, 100.0 * c.top5, c.images)
            }
        }
    }
}
