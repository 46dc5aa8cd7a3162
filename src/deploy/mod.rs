//! Deployment: the traced ATen graph of a forward (`trace.rs`), the deploy form with
//! BatchNorm folded into the convolutions (`fold.rs`), and export to ONNX (`onnx.rs`
//! translates the graph, `onnx_proto.rs` holds the protobuf types, `symbolic.rs` keeps
//! batch and image size dynamic) or TorchScript (`export.rs`).
pub mod bench;
pub mod export;
pub mod fold;
pub mod form;
pub mod onnx;
pub mod onnx_proto;
pub mod symbolic;
pub mod trace;
