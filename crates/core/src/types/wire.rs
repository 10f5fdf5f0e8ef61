//! Wire helpers shared by the formats: LEB128 lengths and UUIDs as RowBinary and Native
//! write them.

/// Appends an unsigned LEB128 integer (RowBinary's length prefix).
#[inline]
pub(crate) fn put_leb128(buf: &mut Vec<u8>, mut value: u64) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            buf.push(byte);
            return;
        }
        buf.push(byte | 0x80);
    }
}

/// Appends a UUID the way RowBinary stores it: the high and the low 64 bits, each little-endian.
#[inline]
pub(crate) fn put_uuid(buf: &mut Vec<u8>, id: &uuid::Uuid) {
    let (high, low) = id.as_u64_pair();
    buf.extend_from_slice(&high.to_le_bytes());
    buf.extend_from_slice(&low.to_le_bytes());
}

/// The length of `value` in LEB128.
#[inline]
pub(crate) fn leb128_len(value: u64) -> usize {
    (64 - (value | 1).leading_zeros()).div_ceil(7) as usize
}
