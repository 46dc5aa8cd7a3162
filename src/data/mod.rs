//! Data: the dataset layouts (`kind.rs`), their classes' names and colours (`classes.rs`,
//! the benchmarks' tables in `tables/`), label maps (`labels.rs`) and how masks are read
//! (`masks.rs`); list files (`lists.rs`) and their makers (`make_lists.rs`; a custom
//! layout's in `custom.rs`); the data check (`check.rs`, `check_report.rs`); image decoding
//! (`decode.rs`); readers (`dataset.rs`); augmentation (`transforms.rs`); the sharded
//! sampler, per-sample RNG and the threaded loader (`sampler.rs`, `rng.rs`, `loader.rs`);
//! synthetic data (`synth.rs`; street scenes in `synth_scene.rs`, the other layouts' in
//! `synth_sets.rs`). Nothing here reads the TOML config: the application maps it onto these types.
pub mod check;
pub mod check_report;
pub mod classes;
pub mod custom;
pub mod dataset;
pub mod decode;
pub mod kind;
pub mod labels;
pub mod lists;
pub mod loader;
pub mod make_lists;
pub mod masks;
pub mod rng;
pub mod sampler;
pub mod synth;
pub mod synth_scene;
pub mod synth_sets;
pub mod tables;
pub mod transforms;
