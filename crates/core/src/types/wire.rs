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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varuint() {
        for v in [0u64, 1, 127, 128, 300, u64::MAX] {
            let mut out = Vec::new();
            put_leb128(&mut out, v);
            assert_eq!(out.len(), leb128_len(v), "{v}");
        }
    }

    #[test]
    fn uuid_layout() {
        let id = uuid::Uuid::from_u128(0x0011_2233_4455_6677_8899_aabb_ccdd_eeff);
        let mut buf = Vec::new();
        put_uuid(&mut buf, &id);
        assert_eq!(
            buf,
            vec![
                0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, 0x00, 0xff, 0xee, 0xdd, 0xcc, 0xbb, 0xaa,
                0x99, 0x88
            ]
        );
    }
}
