//! Evaluation: metrics (confusion matrix, IoU, top-k).
pub mod evaluate;
pub mod inference;
pub mod metrics;
pub mod predict;
pub mod preds;
pub mod visualise;
