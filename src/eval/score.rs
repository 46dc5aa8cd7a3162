//! [`Score`]: the result of one evaluation, segmentation ([`SegMetrics`]) or
//! classification ([`ClsScore`]). One shape for `segzoo eval --json`, the eval records of
//! `metrics.jsonl` and checkpoint metadata. NaN (an absent class) is `null` in JSON.
use super::metrics::SegMetrics;
use serde::{Deserialize, Serialize};

/// Top-1 / top-5 accuracy over `images`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClsScore {
    pub top1: f64,
    pub top5: f64,
    #[serde(default)]
    pub images: i64,
}

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

/// serde for an `f64` that may be NaN: written as `null`, read back as NaN.
pub mod nan_as_null {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        if v.is_nan() {
            s.serialize_none()
        } else {
            s.serialize_f64(*v)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
    }
}

/// serde for a `Vec<f64>` whose entries may be NaN (`null` in JSON).
pub mod nans_as_nulls {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[f64], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(|x| if x.is_nan() { None } else { Some(*x) }))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
        Ok(Vec::<Option<f64>>::deserialize(d)?.into_iter().map(|x| x.unwrap_or(f64::NAN)).collect())
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
