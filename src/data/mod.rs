//! Data: readers for Cityscapes, LIP, VOC/SBD and ImageNet-style folders, list
//! makers, augmentation, the sharded sampler, the threaded loader, and synthetic data.
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
pub mod transforms;
