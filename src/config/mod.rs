//! Typed TOML configuration, a leaf of the crate (it imports no other module): the
//! sections (`model.rs`, `data.rs`, `train.rs`; the rest and cross-field checks in
//! `schema.rs`), loading with `--set`
//! overrides and precise errors (`load.rs`), and the did-you-mean helper (`suggest.rs`).
mod data;
mod load;
mod model;
mod schema;
mod suggest;
mod train;

pub use load::{load_config, parse_config, ConfigError, Override};
pub use schema::*;
pub use suggest::closest;
