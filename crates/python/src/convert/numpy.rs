//! numpy arrays: a 1-D array of numbers, booleans or `datetime64` is taken as its bytes
//! (`tobytes()`, under the GIL) and those bytes become a typed column without the GIL; other
//! arrays are read as the list of their items.

use chasync_core::{TypedColumn, TypedData};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use super::scalar::type_module_is_numpy;

/// Whether `v` is a numpy array (an object of numpy's with a `dtype`).
pub(super) fn is_array(v: &Bound<'_, PyAny>) -> bool {
    type_module_is_numpy(v) && v.hasattr(intern!(v.py(), "dtype")).unwrap_or(false)
}

/// What [`take_array`] took of an array.
pub(super) enum Taken<'py> {
    /// A 1-D array of a fixed-width type: its dtype text (`<i8`, `<M8[ns]` ...) and bytes, for
    /// [`numpy_column`].
    Bytes {
        /// `dtype.str`.
        dtype: String,
        /// `arr.tobytes()`.
        bytes: Vec<u8>,
    },
    /// Any other array as the list of its items (`tolist()`).
    List(Bound<'py, PyAny>),
}

/// Takes a numpy array ([`is_array`]): 1-D arrays of numbers (not `float16`), booleans and
/// `datetime64` by their bytes, the others as the list of their items.
pub(super) fn take_array<'py>(v: &Bound<'py, PyAny>) -> Result<Taken<'py>, String> {
    let py = v.py();
    let ndim: usize = v
        .getattr(intern!(py, "ndim"))
        .and_then(|n| n.extract())
        .unwrap_or(0);
    let dtype: String = v
        .getattr(intern!(py, "dtype"))
        .and_then(|d| d.getattr(intern!(py, "str")))
        .and_then(|s| s.extract())
        .map_err(|e| e.to_string())?;
    let kind = dtype.as_bytes().get(1).copied().unwrap_or(b'O');
    if ndim == 1 && matches!(kind, b'b' | b'i' | b'u' | b'f' | b'M') && dtype != "<f2" {
        let bytes = v
            .call_method0(intern!(py, "tobytes"))
            .map_err(|e| e.to_string())?;
        let bytes = bytes.cast::<PyBytes>().map_err(|e| e.to_string())?;
        return Ok(Taken::Bytes {
            dtype,
            bytes: bytes.as_bytes().to_vec(),
        });
    }
    v.call_method0(intern!(py, "tolist"))
        .map(Taken::List)
        .map_err(|e| e.to_string())
}

/// A numpy array's bytes as a typed column (no GIL needed): numbers, booleans and
/// `datetime64` (wall-clock times; `NaT` is NULL).
pub fn numpy_column(dtype: &str, bytes: &[u8]) -> Result<TypedColumn, String> {
    let b = dtype.as_bytes();
    if b.len() < 3 {
        return Err(format!("unsupported numpy dtype {dtype}"));
    }
    let big = b[0] == b'>';
    let kind = b[1];
    let rest = &dtype[2..];
    let (size, unit) = match rest.find('[') {
        Some(i) => (&rest[..i], Some(rest[i + 1..].trim_end_matches(']'))),
        None => (rest, None),
    };
    let size: usize = size
        .parse()
        .map_err(|_| format!("unsupported numpy dtype {dtype}"))?;
    if size == 0 || !bytes.len().is_multiple_of(size) {
        return Err(format!("numpy buffer does not fit dtype {dtype}"));
    }
    macro_rules! num {
        ($t:ty) => {{
            let v: Vec<$t> = bytes
                .chunks_exact(std::mem::size_of::<$t>())
                .map(|c| {
                    let a: [u8; std::mem::size_of::<$t>()] = c.try_into().expect("width");
                    if big {
                        <$t>::from_be_bytes(a)
                    } else {
                        <$t>::from_le_bytes(a)
                    }
                })
                .collect();
            v
        }};
    }
    Ok(match (kind, size) {
        (b'b', 1) => TypedColumn::from(bytes.iter().map(|&x| x != 0).collect::<Vec<bool>>()),
        (b'i', 1) => num!(i8).into(),
        (b'i', 2) => num!(i16).into(),
        (b'i', 4) => num!(i32).into(),
        (b'i', 8) => num!(i64).into(),
        (b'u', 1) => bytes.to_vec().into(),
        (b'u', 2) => num!(u16).into(),
        (b'u', 4) => num!(u32).into(),
        (b'u', 8) => num!(u64).into(),
        (b'f', 4) => num!(f32).into(),
        (b'f', 8) => num!(f64).into(),
        (b'M', 8) => {
            let (precision, mul): (u8, i64) = match unit.unwrap_or("") {
                "s" => (0, 1),
                "ms" => (3, 1),
                "us" => (6, 1),
                "ns" => (9, 1),
                "D" => (0, 86_400),
                "h" => (0, 3_600),
                "m" => (0, 60),
                other => return Err(format!("unsupported datetime64 unit {other:?}")),
            };
            let mut ticks = num!(i64);
            let nulls: Vec<u8> = ticks.iter().map(|&x| (x == i64::MIN) as u8).collect();
            for t in ticks.iter_mut() {
                if *t == i64::MIN {
                    *t = 0; // NaT
                } else {
                    *t = t
                        .checked_mul(mul)
                        .ok_or_else(|| format!("datetime64 value out of range: {t} {unit:?}"))?;
                }
            }
            TypedColumn::new(TypedData::Timestamp {
                ticks,
                precision,
                zoned: false,
            })
            .with_nulls(nulls)
        }
        _ => return Err(format!("unsupported numpy dtype {dtype}")),
    })
}

#[cfg(test)]
mod tests {
    use chasync_core::{ColumnData, Value};

    use super::*;

    fn numpy_values(dtype: &str, bytes: &[u8]) -> Result<Vec<Value>, String> {
        numpy_column(dtype, bytes).map(|c| ColumnData::Typed(c).to_values())
    }

    #[test]
    fn numpy_bytes() {
        let b: Vec<u8> = [1i64, -2, 3].iter().flat_map(|x| x.to_le_bytes()).collect();
        assert_eq!(
            numpy_values("<i8", &b).unwrap(),
            [Value::Int(1), Value::Int(-2), Value::Int(3)]
        );
        let b: Vec<u8> = [1.5f64].iter().flat_map(|x| x.to_be_bytes()).collect();
        assert_eq!(numpy_values(">f8", &b).unwrap(), [Value::Float(1.5)]);
        assert_eq!(
            numpy_values("|b1", &[0, 1]).unwrap(),
            [Value::Bool(false), Value::Bool(true)]
        );
        let b: Vec<u8> = [1_000i64, i64::MIN]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        assert_eq!(
            numpy_values("<M8[ms]", &b).unwrap(),
            [Value::String("1970-01-01T00:00:01".into()), Value::Null]
        );
        let b: Vec<u8> = 1i64.to_le_bytes().to_vec();
        assert_eq!(
            numpy_values("<M8[D]", &b).unwrap(),
            [Value::String("1970-01-02T00:00:00".into())]
        );
        assert!(numpy_values("<c16", &[0; 16]).is_err());
    }
}
