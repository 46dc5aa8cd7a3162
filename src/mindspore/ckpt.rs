//! MindSpore `.ckpt` files: read and write without MindSpore.
//!
//! The file is a sequence of `Checkpoint` messages of one `Value` each (so the whole file
//! parses as one `Checkpoint`); a tensor over 512 MiB is split across values with the same
//! tag. `save_checkpoint(..., crc_check=True)` appends `crc_num` and the CRC-32 of the
//! protobuf bytes as 10 big-endian bytes. Encrypted checkpoints begin with a magic number
//! and are refused: decrypting needs the user's key and MindSpore.
use super::proto::{Payload, TensorProto, Value};
use anyhow::{bail, Context};
use prost::Message;
use std::path::Path;
use tch::{Kind, Tensor};

const CRC_MARK: &[u8] = b"crc_num";
const CRC_TRAILER: usize = 7 + 10;
/// The magic numbers of MindSpore's encrypted checkpoints (AES-GCM, AES-CBC, SM4-CBC),
/// stored big-endian at the start of the file.
const ENCRYPTED_MAGIC: [(u32, &str); 3] =
    [(0x7F3A_5ED8, "AES-GCM"), (0x7F3A_5ED9, "AES-CBC"), (0x7F3A_5EDA, "SM4-CBC")];

fn encryption(bytes: &[u8]) -> Option<&'static str> {
    let head: [u8; 4] = bytes.get(..4)?.try_into().ok()?;
    let (be, le) = (u32::from_be_bytes(head), u32::from_le_bytes(head));
    ENCRYPTED_MAGIC.iter().find(|(m, _)| *m == be || *m == le).map(|(_, name)| *name)
}

/// The kind and element size of a `tensor_type`.
fn kind_of(tensor_type: &str) -> Option<(Kind, usize)> {
    Some(match tensor_type {
        "Float32" => (Kind::Float, 4),
        "Float16" => (Kind::Half, 2),
        "BFloat16" => (Kind::BFloat16, 2),
        "Float64" => (Kind::Double, 8),
        "Int8" => (Kind::Int8, 1),
        "UInt8" => (Kind::Uint8, 1),
        "Int16" => (Kind::Int16, 2),
        "Int32" => (Kind::Int, 4),
        "Int64" => (Kind::Int64, 8),
        "Bool" => (Kind::Bool, 1),
        _ => return None,
    })
}

fn type_of(kind: Kind) -> anyhow::Result<&'static str> {
    Ok(match kind {
        Kind::Float => "Float32",
        Kind::Half => "Float16",
        Kind::BFloat16 => "BFloat16",
        Kind::Double => "Float64",
        Kind::Int8 => "Int8",
        Kind::Uint8 => "UInt8",
        Kind::Int16 => "Int16",
        Kind::Int => "Int32",
        Kind::Int64 => "Int64",
        Kind::Bool => "Bool",
        other => bail!("a MindSpore checkpoint cannot hold {other:?} tensors"),
    })
}

/// One decoded value before chunks are joined.
struct Piece {
    tag: String,
    dims: Vec<i64>,
    tensor_type: String,
    content: Vec<u8>,
    offset: usize,
}

/// Read a varint at `pos`; `None` when the bytes end first.
fn varint(bytes: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *bytes.get(*pos)?;
        *pos += 1;
        v |= u64::from(b & 0x7F) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// Every tensor of a checkpoint, in file order, by MindSpore tag; string values (metadata
/// a training script may add) are left out.
pub fn read(path: &Path) -> anyhow::Result<Vec<(String, Tensor)>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    parse_file(path, &bytes)
}

/// [`parse`] on the bytes already read from `path`, which errors name.
pub fn parse_file(path: &Path, bytes: &[u8]) -> anyhow::Result<Vec<(String, Tensor)>> {
    parse(bytes).with_context(|| format!("{}: not a readable MindSpore checkpoint", path.display()))
}

/// [`read`] on bytes in memory.
pub fn parse(bytes: &[u8]) -> anyhow::Result<Vec<(String, Tensor)>> {
    if let Some(cipher) = encryption(bytes) {
        bail!(
            "the checkpoint is encrypted ({cipher}); decrypt it with MindSpore first \
             (load_checkpoint(path, dec_key=…, dec_mode=…), then save_checkpoint without enc_key)"
        );
    }
    if bytes.is_empty() {
        bail!("the file is empty");
    }
    let body = strip_crc(bytes)?;
    let mut pieces: Vec<Piece> = Vec::new();
    let mut pos = 0;
    while pos < body.len() {
        let offset = pos;
        let key = varint(body, &mut pos).with_context(|| format!("truncated field key at byte {offset}"))?;
        if key != 0x0A {
            bail!(
                "byte {offset}: expected a checkpoint value (field 1), found field {} wire type {}",
                key >> 3,
                key & 7
            );
        }
        let len = varint(body, &mut pos).with_context(|| format!("truncated length of the value at byte {offset}"))?;
        let end = pos.checked_add(len as usize).filter(|&e| e <= body.len()).with_context(|| {
            format!(
                "truncated: the value at byte {offset} needs {len} bytes, {} remain (file of {} bytes)",
                body.len() - pos,
                bytes.len()
            )
        })?;
        let value = Value::decode(&body[pos..end]).with_context(|| format!("malformed value at byte {offset}"))?;
        pos = end;
        match value.payload {
            Some(Payload::Tensor(t)) => pieces.push(Piece {
                tag: value.tag,
                dims: t.dims,
                tensor_type: t.tensor_type,
                content: t.tensor_content,
                offset,
            }),
            Some(Payload::MapTensor(_)) => {
                bail!("byte {offset}: `{}` is a MapParameter, which segzoo's models do not have", value.tag)
            }
            None => bail!("byte {offset}: `{}` holds no tensor", value.tag),
        }
    }
    join(pieces)
}

/// The protobuf bytes, without a `crc_num` trailer, which must match when present.
fn strip_crc(bytes: &[u8]) -> anyhow::Result<&[u8]> {
    if bytes.len() < CRC_TRAILER || &bytes[bytes.len() - CRC_TRAILER..bytes.len() - 10] != CRC_MARK {
        return Ok(bytes);
    }
    let body = &bytes[..bytes.len() - CRC_TRAILER];
    let stored = bytes[bytes.len() - 10..].iter().fold(0u128, |v, &b| (v << 8) | u128::from(b));
    let actual = crc32fast::hash(body);
    if stored != u128::from(actual) {
        bail!(
            "CRC mismatch: the trailer says {stored}, the {} bytes before it give {actual}: the file is corrupt",
            body.len()
        );
    }
    Ok(body)
}

/// Join the chunks of split tensors and build tch tensors.
fn join(pieces: Vec<Piece>) -> anyhow::Result<Vec<(String, Tensor)>> {
    let mut out: Vec<(String, Tensor)> = Vec::new();
    let mut pieces = pieces.into_iter().peekable();
    while let Some(mut first) = pieces.next() {
        // The content moves, and grows only for a split tensor.
        while let Some(next) = pieces.next_if(|p| p.tag == first.tag) {
            first.content.extend_from_slice(&next.content);
        }
        if first.tensor_type != "str" {
            let tensor = tensor_from(&first)?;
            out.push((first.tag, tensor));
        }
    }
    Ok(out)
}

fn tensor_from(piece: &Piece) -> anyhow::Result<Tensor> {
    let content = &piece.content;
    let (kind, size) = kind_of(&piece.tensor_type).with_context(|| {
        format!(
            "byte {}: `{}` has tensor type {:?}, which segzoo does not read",
            piece.offset, piece.tag, piece.tensor_type
        )
    })?;
    if piece.dims.iter().any(|&d| d < 0) {
        bail!("byte {}: `{}` has negative dims {:?}", piece.offset, piece.tag, piece.dims);
    }
    let numel: i64 = piece.dims.iter().product();
    if content.len() != numel as usize * size {
        bail!(
            "byte {}: `{}` ({} {:?}) should hold {} bytes, holds {}",
            piece.offset,
            piece.tag,
            piece.tensor_type,
            piece.dims,
            numel as usize * size,
            content.len()
        );
    }
    // The format is little-endian; so are the hosts libtorch runs on.
    Ok(Tensor::from_data_size(content, &piece.dims, kind))
}

/// The bytes of a checkpoint holding `tensors` under their tags, in order.
pub fn encode(tensors: &[(String, Tensor)]) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    for (tag, t) in tensors {
        let t = t.to_device(tch::Device::Cpu).contiguous();
        let tensor_type = type_of(t.kind()).with_context(|| format!("tensor `{tag}`"))?;
        let numel = t.numel();
        let mut content = vec![0u8; numel * t.kind().elt_size_in_bytes()];
        t.copy_data_u8(&mut content, numel);
        let value = Value {
            tag: tag.clone(),
            payload: Some(Payload::Tensor(TensorProto {
                dims: t.size(),
                tensor_type: tensor_type.into(),
                tensor_content: content,
            })),
        };
        // One `Checkpoint { value: [v] }` per tensor, as MindSpore writes them.
        prost::encoding::message::encode(1, &value, &mut out);
    }
    Ok(out)
}

/// Write `tensors` as a checkpoint at `path` (atomically: a crash leaves the old file).
pub fn write(path: &Path, tensors: &[(String, Tensor)]) -> anyhow::Result<()> {
    let bytes = encode(tensors)?;
    crate::atomic::write_bytes(path, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<(String, Tensor)> {
        vec![
            ("conv1.weight".into(), Tensor::arange(24, (Kind::Float, tch::Device::Cpu)).reshape([2, 3, 2, 2])),
            ("bn1.gamma".into(), Tensor::from_slice(&[1.5f32, -2.0])),
            ("global_step".into(), Tensor::from_slice(&[7i32])),
            ("learning_rate".into(), Tensor::from(0.01f32)),
            ("half".into(), Tensor::from_slice(&[1.0f32, 2.0]).to_kind(Kind::Half)),
        ]
    }

    #[test]
    fn tensors_round_trip_with_tags_kinds_and_shapes() {
        let back = parse(&encode(&sample()).expect("encode")).expect("parse");
        assert_eq!(back.len(), 5);
        for ((n, t), (m, u)) in sample().iter().zip(&back) {
            assert_eq!((n, t.size(), t.kind()), (m, u.size(), u.kind()));
            assert!(t.equal(u), "{n}");
        }
    }

    #[test]
    fn split_tensors_are_joined_and_strings_skipped() {
        let piece = |tag: &str, ty: &str, dims: Vec<i64>, content: Vec<u8>| Value {
            tag: tag.into(),
            payload: Some(Payload::Tensor(TensorProto { dims, tensor_type: ty.into(), tensor_content: content })),
        };
        let mut bytes = Vec::new();
        let halves: Vec<u8> = [1.0f32, 2.0, 3.0, 4.0].iter().flat_map(|f| f.to_le_bytes()).collect();
        for v in [
            piece("w", "Float32", vec![2, 2], halves[..8].to_vec()),
            piece("w", "Float32", vec![2, 2], halves[8..].to_vec()),
            piece("note", "str", vec![], "hi".chars().flat_map(|c| (c as u32).to_le_bytes()).collect()),
        ] {
            prost::encoding::message::encode(1, &v, &mut bytes);
        }
        let back = parse(&bytes).expect("parse");
        assert_eq!(back.len(), 1);
        assert!(back[0].1.equal(&Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0]).reshape([2, 2])));
    }

    #[test]
    fn a_crc_trailer_is_checked() {
        let body = encode(&sample()).expect("encode");
        let mut file = body.clone();
        file.extend_from_slice(CRC_MARK);
        file.extend_from_slice(&u128::from(crc32fast::hash(&body)).to_be_bytes()[6..]);
        assert_eq!(parse(&file).expect("parse").len(), 5);
        let n = file.len();
        file[n - 1] ^= 1;
        let e = format!("{:#}", parse(&file).expect_err("bad crc"));
        assert!(e.contains("CRC mismatch"), "{e}");
    }

    #[test]
    fn truncated_encrypted_and_foreign_files_name_the_problem() {
        let body = encode(&sample()).expect("encode");
        let e = format!("{:#}", parse(&body[..body.len() - 5]).expect_err("truncated"));
        assert!(e.contains("truncated") && e.contains("byte"), "{e}");
        let e = format!("{:#}", parse(&[0x7F, 0x3A, 0x5E, 0xD9, 1, 2, 3]).expect_err("encrypted"));
        assert!(e.contains("encrypted (AES-CBC)"), "{e}");
        let e = format!("{:#}", parse(b"PK\x03\x04zip").expect_err("zip"));
        assert!(e.contains("byte 0"), "{e}");
    }
}
