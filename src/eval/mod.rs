//! Evaluation: metrics (confusion matrix, IoU, top-k).
pub mod evaluate;
pub mod metrics;
pub mod predict;
pub mod visualise;
