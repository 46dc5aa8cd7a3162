//! The application layer: maps the TOML config (`crate::config`, a leaf) onto the specs
//! that `models/` and `data/` own (`specs.rs`; the dataset's classes and mask rule in
//! `labels.rs`), so neither of those reads the config; and the evaluation run a config
//! describes, sharded over a job's ranks (`evaluation.rs`).
pub mod deploy;
pub mod evaluation;
pub mod labels;
pub mod specs;

pub use labels::{check_spec, classes, mask_rule};
pub use specs::{build_model, dataset, inference_options, load_pretrained, model_spec, seg_val_dataset};
