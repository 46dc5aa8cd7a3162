//! The application layer: maps the TOML config (`crate::config`, a leaf) onto the specs
//! that `models/` and `data/` own (`specs.rs`), so neither of those reads the config.
pub mod deploy;
pub mod specs;

pub use specs::{build_model, dataset, inference_options, load_pretrained, model_spec, seg_val_dataset};
