//! Typed TOML configuration: the schema (`schema.rs`), loading with `--set`
//! overrides and precise errors (`load.rs`), and the did-you-mean helper (`suggest.rs`).
mod load;
mod schema;
mod suggest;

pub use load::{load_config, parse_config, ConfigError, Override};
pub use schema::*;
pub use suggest::closest;
