//! The MindSpore ModelZoo side of segzoo's interop: the `.ckpt` file format and the
//! ModelZoo's parameter names for each architecture.
pub mod ckpt;
pub mod names;
mod proto;
