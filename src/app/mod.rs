//! The application layer: maps the TOML config (`crate::config`, a leaf) onto the specs
//! that `models/` and `data/` own (`specs.rs`), so neither of those reads the config; and
//! the evaluation run a config describes, sharded over a job's ranks (`evaluation.rs`).
pub mod deploy;
pub mod evaluation;
pub mod specs;

pub use specs::{build_model, dataset, inference_options, load_pretrained, model_spec, seg_val_dataset};
