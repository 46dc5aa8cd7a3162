//! TensorBoard event files, written without TensorFlow: the `Event`/`Summary` protobuf
//! messages (`proto.rs`, hand-written prost types, so no `protoc` at build time), the
//! TFRecord framing around each (`record.rs`), and a writer that appends scalars and
//! images and, on resume, drops what lies beyond the resumed step (`writer.rs`).
pub mod proto;
pub mod record;
pub mod writer;

pub use writer::{read_dir, EventWriter, Point};
