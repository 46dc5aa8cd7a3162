//! Models with the official PyTorch parameter names, one file per architecture, each
//! describing itself through [`Network`]: HRNetV2 (`hrnetv2.rs`), OCRNet (`ocr.rs`),
//! HRNet-C (`hrnet_cls.rs`), BiSeNetV2 (`bisenetv2.rs`) and RefineNet (`refinenet.rs`),
//! on the shared HRNet backbone (`hrnet.rs`), ResNet (`resnet.rs`), residual blocks
//! (`blocks.rs`) and layers (`layers.rs`). [`Model`] owns the variables in official
//! state-dict order (`model.rs`); [`ModelSpec`] and [`build`] say what to build
//! (`spec.rs`) from the preset table (`registry.rs`); `weights.rs` reads and writes
//! checkpoints; `memory_format.rs` lays a model out channels-last. Nothing here reads
//! the TOML config: the application maps it onto [`ModelSpec`].
pub mod bisenetv2;
pub mod blocks;
pub mod fusion;
pub mod hrnet;
pub mod hrnet_cls;
pub mod hrnetv2;
pub mod layers;
pub mod memory_format;
pub mod model;
pub mod numerics;
pub mod ocr;
pub mod refinenet;
pub mod registry;
pub mod resnet;
pub mod spec;
pub mod sync_bn;
pub mod weights;

pub use model::{Arch, Averaging, Model, Network, Task, TensorInfo};
pub use numerics::Numerics;
pub use spec::{build, ModelSpec};
