//! Evaluation and inference: metrics (confusion matrix, IoU, top-k; `metrics.rs`) and the
//! one score shape they are reported in (`score.rs`; NaN as JSON null: `nan_json.rs`); inference modes — whole image,
//! sliding window, multi-scale, flip (`inference.rs`); one pass over a dataset
//! (`evaluate.rs`; its sharding over a job's ranks from a config is `app/evaluation.rs`);
//! whole-image prediction for `infer` (`predict.rs`); scoring
//! prediction PNGs made elsewhere (`preds.rs`); colourised outputs (`visualise.rs`).
pub mod evaluate;
pub mod inference;
pub mod metrics;
pub mod nan_json;
pub mod predict;
pub mod preds;
pub mod score;
pub mod visualise;
