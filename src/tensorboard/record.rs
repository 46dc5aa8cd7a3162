//! TFRecord framing, as TensorBoard reads event files: for each record, its length
//! (u64, little-endian), the masked CRC-32C of those 8 bytes, the payload, and the
//! masked CRC-32C of the payload.

/// TensorFlow's CRC mask: the CRC rotated right by 15 bits plus a constant, so that a
/// CRC computed over data that itself holds CRCs stays well distributed.
fn masked_crc(bytes: &[u8]) -> u32 {
    let crc = crc32c::crc32c(bytes);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// One framed record.
pub fn frame(payload: &[u8]) -> Vec<u8> {
    let len = (payload.len() as u64).to_le_bytes();
    let mut out = Vec::with_capacity(payload.len() + 16);
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc(&len).to_le_bytes());
    out.extend_from_slice(payload);
    out.extend_from_slice(&masked_crc(payload).to_le_bytes());
    out
}

/// The payloads of the whole records at the start of `bytes`, and the byte length they
/// span. Reading stops at the first incomplete or corrupt record: what a crash in the
/// middle of a write leaves at the end of a file.
pub fn unframe(bytes: &[u8]) -> (Vec<&[u8]>, usize) {
    let mut records = Vec::new();
    let mut at = 0;
    while bytes.len() - at >= 12 {
        let len_bytes = &bytes[at..at + 8];
        let crc = u32::from_le_bytes([bytes[at + 8], bytes[at + 9], bytes[at + 10], bytes[at + 11]]);
        if crc != masked_crc(len_bytes) {
            break;
        }
        let len = u64::from_le_bytes(len_bytes.try_into().unwrap_or_default()) as usize;
        let start = at + 12;
        let Some(end) = start.checked_add(len).filter(|&e| e.checked_add(4).is_some_and(|t| t <= bytes.len())) else {
            break;
        };
        let payload = &bytes[start..end];
        let crc = u32::from_le_bytes([bytes[end], bytes[end + 1], bytes[end + 2], bytes[end + 3]]);
        if crc != masked_crc(payload) {
            break;
        }
        records.push(payload);
        at = end + 4;
    }
    (records, at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_uses_masked_crc32c_on_header_and_payload() {
        // RFC 3720's CRC-32C check values.
        assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
        assert_eq!(crc32c::crc32c(&[0u8; 32]), 0x8a91_36aa);
        let framed = frame(b"123456789");
        assert_eq!(framed.len(), 8 + 4 + 9 + 4);
        assert_eq!(u64::from_le_bytes(framed[..8].try_into().unwrap()), 9);
        // TensorFlow's mask, spelled as TensorFlow writes it.
        #[allow(clippy::manual_rotate)]
        let mask = |crc: u32| ((crc >> 15) | (crc << 17)).wrapping_add(0xa282_ead8);
        assert_eq!(u32::from_le_bytes(framed[21..].try_into().unwrap()), mask(0xe306_9283));
        assert_eq!(u32::from_le_bytes(framed[8..12].try_into().unwrap()), mask(crc32c::crc32c(&framed[..8])));
    }

    #[test]
    fn unframe_returns_whole_records_and_stops_at_a_torn_tail() {
        let mut bytes = frame(b"first");
        bytes.extend(frame(b"second record"));
        let whole = bytes.len();
        bytes.extend(&frame(b"cut short")[..10]);
        let (records, end) = unframe(&bytes);
        assert_eq!(records, vec![&b"first"[..], &b"second record"[..]]);
        assert_eq!(end, whole);
        // A flipped payload byte ends reading at that record.
        let mut corrupt = frame(b"abc");
        corrupt[13] ^= 1;
        assert_eq!(unframe(&corrupt), (Vec::<&[u8]>::new(), 0));
    }
}
