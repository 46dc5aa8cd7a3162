//! MindSpore's `checkpoint.proto` (proto2), written for segzoo from the format's field
//! numbers: a checkpoint is `repeated Value value = 1`, each value a tag and a raw tensor.
//! Proto2 `required` fields are always encoded and `repeated int64 dims` is unpacked, as
//! MindSpore's own files are, so what segzoo writes is byte for byte what MindSpore would.

#[derive(Clone, PartialEq, prost::Message)]
pub struct Value {
    #[prost(string, required, tag = "1")]
    pub tag: String,
    #[prost(oneof = "Payload", tags = "2, 3")]
    pub payload: Option<Payload>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Payload {
    #[prost(message, tag = "2")]
    Tensor(TensorProto),
    /// A `MapParameter` (embedding tables); segzoo's models have none.
    #[prost(message, tag = "3")]
    MapTensor(MapTensorProto),
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorProto {
    #[prost(int64, repeated, packed = "false", tag = "1")]
    pub dims: Vec<i64>,
    /// "Float32", "Float16", "BFloat16", "Int32", … ("str" for UTF-32 strings).
    #[prost(string, required, tag = "2")]
    pub tensor_type: String,
    /// Little-endian elements, row-major.
    #[prost(bytes = "vec", required, tag = "3")]
    pub tensor_content: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct MapTensorProto {
    #[prost(message, repeated, tag = "1")]
    pub tensor: Vec<TensorProto>,
}
