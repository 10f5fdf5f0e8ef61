//! RowBinary encoding of typed rows (`T: clickhouse::Row + Serialize`).
//!
//! The `clickhouse` crate keeps its RowBinary serializer private, so this is the same wire
//! format written by a small serde serializer of our own: little-endian numbers, LEB128
//! lengths, a null flag before `Option` values, and the crate's 256-bit integer and BFloat16
//! wrappers written as fixed bytes.

use serde::Serialize;
use serde::ser::{self, Impossible};

/// A serialization error of one row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowBinaryError(pub String);

impl std::fmt::Display for RowBinaryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RowBinaryError {}

impl ser::Error for RowBinaryError {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        Self(msg.to_string())
    }
}

type Result<T = ()> = std::result::Result<T, RowBinaryError>;

/// Appends `value` to `buf` in RowBinary. On error `buf` may hold a partial row: the caller
/// truncates it back.
pub(crate) fn serialize_into<T: Serialize + ?Sized>(buf: &mut Vec<u8>, value: &T) -> Result {
    value.serialize(&mut RowBinarySerializer {
        buf,
        raw_bytes: false,
    })
}

use crate::types::wire::put_leb128;

struct RowBinarySerializer<'a> {
    buf: &'a mut Vec<u8>,
    /// The next `serialize_bytes` is a fixed-size value (Int256, BFloat16): no length prefix.
    raw_bytes: bool,
}

/// Newtype names of the `clickhouse` crate's fixed-size wrappers, written without a length.
const FIXED_BYTES_PREFIXES: &[&str] = &["clickhouse::types::int256", "clickhouse::types::bf16"];

macro_rules! put_num {
    ($method:ident, $ty:ty) => {
        #[inline]
        fn $method(self, v: $ty) -> Result {
            self.buf.extend_from_slice(&v.to_le_bytes());
            Ok(())
        }
    };
}

impl<'a, 'b> ser::Serializer for &'b mut RowBinarySerializer<'a> {
    type Ok = ();
    type Error = RowBinaryError;
    type SerializeSeq = Self;
    type SerializeTuple = Self;
    type SerializeTupleStruct = Self;
    type SerializeTupleVariant = Impossible<(), RowBinaryError>;
    type SerializeMap = Self;
    type SerializeStruct = Self;
    type SerializeStructVariant = Impossible<(), RowBinaryError>;

    put_num!(serialize_i8, i8);
    put_num!(serialize_i16, i16);
    put_num!(serialize_i32, i32);
    put_num!(serialize_i64, i64);
    put_num!(serialize_i128, i128);
    put_num!(serialize_u8, u8);
    put_num!(serialize_u16, u16);
    put_num!(serialize_u32, u32);
    put_num!(serialize_u64, u64);
    put_num!(serialize_u128, u128);
    put_num!(serialize_f32, f32);
    put_num!(serialize_f64, f64);

    #[inline]
    fn serialize_bool(self, v: bool) -> Result {
        self.buf.push(v as u8);
        Ok(())
    }

    fn serialize_char(self, v: char) -> Result {
        let mut tmp = [0u8; 4];
        self.serialize_str(v.encode_utf8(&mut tmp))
    }

    #[inline]
    fn serialize_str(self, v: &str) -> Result {
        put_leb128(self.buf, v.len() as u64);
        self.buf.extend_from_slice(v.as_bytes());
        Ok(())
    }

    #[inline]
    fn serialize_bytes(self, v: &[u8]) -> Result {
        if !std::mem::take(&mut self.raw_bytes) {
            put_leb128(self.buf, v.len() as u64);
        }
        self.buf.extend_from_slice(v);
        Ok(())
    }

    #[inline]
    fn serialize_none(self) -> Result {
        self.buf.push(1);
        Ok(())
    }

    #[inline]
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result {
        self.buf.push(0);
        value.serialize(self)
    }

    fn serialize_unit(self) -> Result {
        Err(RowBinaryError(
            "unit values `()` have no ClickHouse type".into(),
        ))
    }

    fn serialize_unit_struct(self, name: &'static str) -> Result {
        Err(RowBinaryError(format!(
            "unit struct `{name}` has no ClickHouse type"
        )))
    }

    fn serialize_unit_variant(self, name: &'static str, _: u32, variant: &'static str) -> Result {
        Err(RowBinaryError(format!(
            "unit variant `{name}::{variant}`: derive Serialize_repr for ClickHouse enums"
        )))
    }

    #[inline]
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        value: &T,
    ) -> Result {
        if FIXED_BYTES_PREFIXES.iter().any(|p| name.starts_with(p)) {
            self.raw_bytes = true;
        }
        let res = value.serialize(&mut *self);
        self.raw_bytes = false;
        res
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        variant_index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result {
        // ClickHouse's Variant type: a discriminator byte, then the value.
        let idx = u8::try_from(variant_index).map_err(|_| {
            RowBinaryError(format!(
                "`{name}::{variant}`: Variant has at most 255 types"
            ))
        })?;
        self.buf.push(idx);
        value.serialize(self)
    }

    #[inline]
    fn serialize_seq(self, len: Option<usize>) -> Result<Self> {
        let len = len.ok_or_else(|| RowBinaryError("sequences need a known length".into()))?;
        put_leb128(self.buf, len as u64);
        Ok(self)
    }

    #[inline]
    fn serialize_tuple(self, _len: usize) -> Result<Self> {
        Ok(self)
    }

    fn serialize_tuple_struct(self, _name: &'static str, _len: usize) -> Result<Self> {
        Ok(self)
    }

    fn serialize_tuple_variant(
        self,
        name: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant> {
        Err(RowBinaryError(format!(
            "tuple variant `{name}::{variant}` is unsupported"
        )))
    }

    #[inline]
    fn serialize_map(self, len: Option<usize>) -> Result<Self> {
        let len = len.ok_or_else(|| RowBinaryError("maps need a known length".into()))?;
        put_leb128(self.buf, len as u64);
        Ok(self)
    }

    #[inline]
    fn serialize_struct(self, _name: &'static str, _len: usize) -> Result<Self> {
        Ok(self)
    }

    fn serialize_struct_variant(
        self,
        name: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant> {
        Err(RowBinaryError(format!(
            "struct variant `{name}::{variant}` is unsupported"
        )))
    }

    fn is_human_readable(&self) -> bool {
        false
    }
}

macro_rules! compound {
    ($trait:ident, $method:ident $(, $key:ident)?) => {
        impl ser::$trait for &mut RowBinarySerializer<'_> {
            type Ok = ();
            type Error = RowBinaryError;
            #[inline]
            fn $method<T: Serialize + ?Sized>(&mut self, $($key: &'static str,)? value: &T) -> Result {
                $(let _ = $key;)?
                value.serialize(&mut **self)
            }
            #[inline]
            fn end(self) -> Result {
                Ok(())
            }
        }
    };
}

compound!(SerializeSeq, serialize_element);
compound!(SerializeTuple, serialize_element);
compound!(SerializeTupleStruct, serialize_field);
compound!(SerializeStruct, serialize_field, key);

impl ser::SerializeMap for &mut RowBinarySerializer<'_> {
    type Ok = ();
    type Error = RowBinaryError;
    #[inline]
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result {
        key.serialize(&mut **self)
    }
    #[inline]
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result {
        value.serialize(&mut **self)
    }
    fn end(self) -> Result {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc<T: Serialize>(v: &T) -> Vec<u8> {
        let mut buf = Vec::new();
        serialize_into(&mut buf, v).unwrap();
        buf
    }

    #[test]
    fn scalars_and_strings() {
        assert_eq!(enc(&1u32), vec![1, 0, 0, 0]);
        assert_eq!(enc(&-2i16), vec![0xfe, 0xff]);
        assert_eq!(enc(&true), vec![1]);
        assert_eq!(enc(&"ab"), vec![2, b'a', b'b']);
        assert_eq!(enc(&Some(7u8)), vec![0, 7]);
        assert_eq!(enc(&None::<u8>), vec![1]);
        assert_eq!(enc(&vec![1u8, 2]), vec![2, 1, 2]);
        assert_eq!(enc(&(1u8, "x")), vec![1, 1, b'x']);
    }

    #[test]
    fn leb128_lengths() {
        let mut buf = Vec::new();
        put_leb128(&mut buf, 300);
        assert_eq!(buf, vec![0xac, 0x02]);
        let s = "a".repeat(200);
        let e = enc(&s.as_str());
        assert_eq!(&e[..2], &[0xc8, 0x01]);
        assert_eq!(e.len(), 202);
    }

    #[test]
    fn unsized_sequences_are_errors() {
        struct Unsized;
        impl Serialize for Unsized {
            fn serialize<S: ser::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                use ser::SerializeSeq;
                s.serialize_seq(None)?.end()
            }
        }
        let mut buf = Vec::new();
        assert!(serialize_into(&mut buf, &Unsized).is_err());
    }
}
