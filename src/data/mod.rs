//! Data: the dataset layouts (`kind.rs`) and their labels and palettes (`labels.rs`);
//! list files (`lists.rs`) and their makers and checks (`make_lists.rs`); image decoding
//! (`decode.rs`); readers for Cityscapes, LIP, VOC/SBD and ImageNet-style folders
//! (`dataset.rs`); augmentation (`transforms.rs`); the sharded sampler, per-sample RNG and
//! the threaded loader (`sampler.rs`, `rng.rs`, `loader.rs`); synthetic data (`synth.rs`, the street scenes in `synth_scene.rs`).
//! Nothing here reads the TOML config: the application maps it onto these types.
pub mod dataset;
pub mod decode;
pub mod kind;
pub mod labels;
pub mod lists;
pub mod loader;
pub mod make_lists;
pub mod rng;
pub mod sampler;
pub mod synth;
pub mod synth_scene;
pub mod transforms;
