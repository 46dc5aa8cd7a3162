//! segzoo: semantic-segmentation training, evaluation and serving on libtorch.
pub mod app;
pub mod atomic;
pub mod cli;
pub mod config;
pub mod data;
pub mod deploy;
pub mod dist;
pub mod envinfo;
pub mod eval;
pub mod fonts;
pub mod logging;
pub mod models;
pub mod progress;
pub mod suggest;
pub mod tensorboard;
pub mod timeline;
pub mod train;
