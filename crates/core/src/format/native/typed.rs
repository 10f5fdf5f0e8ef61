//! Typed columns ([`TypedColumn`]: flat buffers of one primitive type) into the Native image
//! of a scalar column type, with tight loops per (source, target) pair.
//!
//! Every cell converts exactly as the [`Value`](crate::types::value::Value) that
//! [`TypedColumn::value`] gives for it would: the loops take the cases they can decide from
//! the number alone (same type: a copy; another width: a range check; timestamps in UTC: a
//! division) and hand every other cell to the value path ([`Scalar::encode`]), which also
//! words the error of a cell that does not fit.

use std::ops::Range;

use super::convert::{Reason, Scalar, write_str_bytes};
use crate::types::time::{
    DATE_MAX_DAYS, DATE_MIN_DAYS, DATE32_MAX_DAYS, DATE32_MIN_DAYS, DT64_MAX_SECS, DT64_MIN_SECS,
    POW10,
};
use crate::types::value::{TypedColumn, TypedData};

/// A primitive number as the loops see it.
trait Num: Copy {
    const N: usize;
    fn put(self, out: &mut [u8]);
    fn as_i128(self) -> i128;
    fn as_f64(self) -> f64;
}

macro_rules! num {
    ($($t:ty),*) => {$(
        impl Num for $t {
            const N: usize = std::mem::size_of::<$t>();
            #[inline(always)]
            fn put(self, out: &mut [u8]) {
                out.copy_from_slice(&self.to_le_bytes());
            }
            #[inline(always)]
            fn as_i128(self) -> i128 {
                self as i128
            }
            #[inline(always)]
            fn as_f64(self) -> f64 {
                self as f64
            }
        }
    )*};
}
num!(i8, i16, i32, i64, u8, u16, u32, u64, f32, f64);

impl Num for bool {
    const N: usize = 1;
    #[inline(always)]
    fn put(self, out: &mut [u8]) {
        out[0] = self as u8;
    }
    #[inline(always)]
    fn as_i128(self) -> i128 {
        self as i128
    }
    #[inline(always)]
    fn as_f64(self) -> f64 {
        self as u8 as f64
    }
}

/// Appends the little-endian images of `src` (a copy on little-endian machines).
fn copy_le<T: Num>(src: &[T], out: &mut Vec<u8>) {
    let start = out.len();
    out.resize(start + src.len() * T::N, 0);
    for (c, x) in out[start..].chunks_exact_mut(T::N).zip(src) {
        x.put(c);
    }
}

/// The cells the loops leave to the value path.
struct Slow<'a> {
    scalar: &'a Scalar,
    col: &'a TypedColumn,
    fails: &'a mut Vec<(usize, Reason)>,
}

impl Slow<'_> {
    #[cold]
    fn cell(&mut self, row: usize, out: &mut Vec<u8>) {
        if let Err(reason) = self.scalar.encode(&self.col.value(row), out) {
            self.fails.push((row, reason));
        }
    }
}

/// Writes `x` as a `W`-byte integer (two's complement, sign-extended beyond 16 bytes).
#[inline(always)]
fn put_int<const W: usize>(x: i128, out: &mut Vec<u8>) {
    let b = x.to_le_bytes();
    if W <= 16 {
        out.extend_from_slice(&b[..W]);
    } else {
        out.extend_from_slice(&b);
        out.extend_from_slice(&[if x < 0 { 0xff } else { 0 }; 16]);
    }
}

fn int_bounds(width: u8, signed: bool) -> (i128, i128) {
    match (width, signed) {
        (16.., true) => (i128::MIN, i128::MAX),
        (16.., false) => (0, i128::MAX),
        (w, true) => {
            let bits = w as u32 * 8;
            (-(1i128 << (bits - 1)), (1i128 << (bits - 1)) - 1)
        }
        (w, false) => (0, (1i128 << (w as u32 * 8)) - 1),
    }
}

fn ints_to_int<T: Num, const W: usize>(
    src: &[T],
    base: usize,
    (lo, hi): (i128, i128),
    out: &mut Vec<u8>,
    slow: &mut Slow<'_>,
) {
    out.reserve(src.len() * W);
    for (i, &x) in src.iter().enumerate() {
        let v = x.as_i128();
        if v < lo || v > hi {
            slow.cell(base + i, out);
        } else {
            put_int::<W>(v, out);
        }
    }
}

fn floats_to_int<T: Num, const W: usize>(
    src: &[T],
    base: usize,
    (lo, hi): (i128, i128),
    out: &mut Vec<u8>,
    slow: &mut Slow<'_>,
) {
    out.reserve(src.len() * W);
    for (i, &x) in src.iter().enumerate() {
        let f = x.as_f64();
        if f.fract() == 0.0 && f.abs() < 1.7e38 {
            let v = f as i128;
            if v >= lo && v <= hi {
                put_int::<W>(v, out);
                continue;
            }
        }
        slow.cell(base + i, out);
    }
}

fn to_int<T: Num>(
    src: &[T],
    base: usize,
    float: bool,
    width: u8,
    signed: bool,
    out: &mut Vec<u8>,
    slow: &mut Slow<'_>,
) {
    let b = int_bounds(width, signed);
    macro_rules! go {
        ($w:literal) => {
            if float {
                floats_to_int::<T, $w>(src, base, b, out, slow)
            } else {
                ints_to_int::<T, $w>(src, base, b, out, slow)
            }
        };
    }
    match width {
        1 => go!(1),
        2 => go!(2),
        4 => go!(4),
        8 => go!(8),
        16 => go!(16),
        _ => go!(32),
    }
}

fn to_f64<T: Num>(src: &[T], out: &mut Vec<u8>) {
    let start = out.len();
    out.resize(start + src.len() * 8, 0);
    for (c, x) in out[start..].chunks_exact_mut(8).zip(src) {
        c.copy_from_slice(&x.as_f64().to_le_bytes());
    }
}

fn to_f32<T: Num>(src: &[T], base: usize, out: &mut Vec<u8>, slow: &mut Slow<'_>) {
    out.reserve(src.len() * 4);
    for (i, &x) in src.iter().enumerate() {
        let f = x.as_f64();
        let g = f as f32;
        if g.is_infinite() && f.is_finite() {
            slow.cell(base + i, out);
        } else {
            out.extend_from_slice(&g.to_le_bytes());
        }
    }
}

/// Integers (or whole floats) in `lo..=hi`, written as `W` bytes; others to the value path.
fn ranged<T: Num, const W: usize>(
    src: &[T],
    base: usize,
    float: bool,
    (lo, hi): (i64, i64),
    out: &mut Vec<u8>,
    slow: &mut Slow<'_>,
) {
    out.reserve(src.len() * W);
    for (i, &x) in src.iter().enumerate() {
        let v = if float {
            let f = x.as_f64();
            if f.fract() != 0.0 {
                slow.cell(base + i, out);
                continue;
            }
            f as i128
        } else {
            x.as_i128()
        };
        if v >= lo as i128 && v <= hi as i128 {
            out.extend_from_slice(&(v as i64).to_le_bytes()[..W]);
        } else {
            slow.cell(base + i, out);
        }
    }
}

fn to_bool<T: Num>(src: &[T], base: usize, out: &mut Vec<u8>, slow: &mut Slow<'_>) {
    out.reserve(src.len());
    for (i, &x) in src.iter().enumerate() {
        let f = x.as_f64();
        if f == 0.0 || f == 1.0 {
            out.push(f as u8);
        } else {
            slow.cell(base + i, out);
        }
    }
}

/// Appends the Native images of rows `range` of `col` for `scalar`. The rows must not be
/// NULL. A row that does not convert leaves nothing and is reported in `fails`.
pub(crate) fn encode_range(
    scalar: &Scalar,
    col: &TypedColumn,
    range: Range<usize>,
    out: &mut Vec<u8>,
    fails: &mut Vec<(usize, Reason)>,
) {
    let base = range.start;
    let mut slow = Slow { scalar, col, fails };
    macro_rules! numeric {
        (|$src:ident, $float:ident| $body:expr) => {
            match &col.data {
                TypedData::Bool(v) => {
                    let ($src, $float) = (&v[range.clone()], false);
                    $body
                }
                TypedData::Int8(v) => {
                    let ($src, $float) = (&v[range.clone()], false);
                    $body
                }
                TypedData::Int16(v) => {
                    let ($src, $float) = (&v[range.clone()], false);
                    $body
                }
                TypedData::Int32(v) => {
                    let ($src, $float) = (&v[range.clone()], false);
                    $body
                }
                TypedData::Int64(v) => {
                    let ($src, $float) = (&v[range.clone()], false);
                    $body
                }
                TypedData::UInt8(v) => {
                    let ($src, $float) = (&v[range.clone()], false);
                    $body
                }
                TypedData::UInt16(v) => {
                    let ($src, $float) = (&v[range.clone()], false);
                    $body
                }
                TypedData::UInt32(v) => {
                    let ($src, $float) = (&v[range.clone()], false);
                    $body
                }
                TypedData::UInt64(v) => {
                    let ($src, $float) = (&v[range.clone()], false);
                    $body
                }
                TypedData::Float32(v) => {
                    let ($src, $float) = (&v[range.clone()], true);
                    $body
                }
                TypedData::Float64(v) => {
                    let ($src, $float) = (&v[range.clone()], true);
                    $body
                }
                _ => false,
            }
        };
    }
    // Date (2 bytes) and Date32 (4 bytes): days from dates, or from numbers in range.
    macro_rules! days {
        ($width:literal, $bounds:expr) => {
            match &col.data {
                TypedData::Date32(v) => {
                    ranged::<_, $width>(&v[range.clone()], base, false, $bounds, out, &mut slow);
                    true
                }
                TypedData::Timestamp { .. } | TypedData::Bool(_) => false,
                _ => numeric!(|src, float| {
                    ranged::<_, $width>(src, base, float, $bounds, out, &mut slow);
                    true
                }),
            }
        };
    }
    let done = match scalar {
        Scalar::Int { width, signed } => {
            // The same type: a copy.
            match (&col.data, width, signed) {
                (TypedData::Int8(v), 1, true) => {
                    copy_le(&v[range.clone()], out);
                    true
                }
                (TypedData::Int16(v), 2, true) => {
                    copy_le(&v[range.clone()], out);
                    true
                }
                (TypedData::Int32(v), 4, true) => {
                    copy_le(&v[range.clone()], out);
                    true
                }
                (TypedData::Int64(v), 8, true) => {
                    copy_le(&v[range.clone()], out);
                    true
                }
                (TypedData::UInt8(v), 1, false) => {
                    copy_le(&v[range.clone()], out);
                    true
                }
                (TypedData::UInt16(v), 2, false) => {
                    copy_le(&v[range.clone()], out);
                    true
                }
                (TypedData::UInt32(v), 4, false) => {
                    copy_le(&v[range.clone()], out);
                    true
                }
                (TypedData::UInt64(v), 8, false) => {
                    copy_le(&v[range.clone()], out);
                    true
                }
                _ => numeric!(|src, float| {
                    to_int(src, base, float, *width, *signed, out, &mut slow);
                    true
                }),
            }
        }
        Scalar::Float64 => match &col.data {
            TypedData::Float64(v) => {
                copy_le(&v[range.clone()], out);
                true
            }
            _ => numeric!(|src, _float| {
                to_f64(src, out);
                true
            }),
        },
        Scalar::Float32 => match &col.data {
            TypedData::Float32(v) => {
                copy_le(&v[range.clone()], out);
                true
            }
            _ => numeric!(|src, _float| {
                to_f32(src, base, out, &mut slow);
                true
            }),
        },
        Scalar::Bool => match &col.data {
            TypedData::Bool(v) => {
                copy_le(&v[range.clone()], out);
                true
            }
            _ => numeric!(|src, _float| {
                to_bool(src, base, out, &mut slow);
                true
            }),
        },
        Scalar::String => match &col.data {
            TypedData::String(s) | TypedData::Binary(s) => {
                let lo = s.offsets[range.start] as usize;
                let hi = s.offsets[range.end] as usize;
                out.reserve(hi - lo + range.len());
                for r in range.clone() {
                    write_str_bytes(out, s.get(r));
                }
                true
            }
            _ => false,
        },
        Scalar::FixedString(n) => match &col.data {
            TypedData::String(s) | TypedData::Binary(s) => {
                out.reserve(range.len() * n);
                for r in range.clone() {
                    let b = s.get(r);
                    if b.len() <= *n {
                        out.extend_from_slice(b);
                        out.resize(out.len() + n - b.len(), 0);
                    } else {
                        slow.cell(r, out);
                    }
                }
                true
            }
            _ => false,
        },
        Scalar::Uuid | Scalar::IPv4 | Scalar::IPv6 => match &col.data {
            // Text without surrounding spaces parsed in place (the value path trims and
            // words the errors).
            TypedData::String(s) => {
                out.reserve(range.len() * 16);
                for r in range.clone() {
                    let b = s.get(r);
                    let ok = match scalar {
                        Scalar::Uuid => uuid::Uuid::try_parse_ascii(b)
                            .map(|u| {
                                let x = u.as_u128();
                                out.extend_from_slice(&((x >> 64) as u64).to_le_bytes());
                                out.extend_from_slice(&(x as u64).to_le_bytes());
                            })
                            .is_ok(),
                        Scalar::IPv4 => std::str::from_utf8(b)
                            .ok()
                            .and_then(|t| t.parse::<std::net::Ipv4Addr>().ok())
                            .map(|a| out.extend_from_slice(&u32::from(a).to_le_bytes()))
                            .is_some(),
                        _ => std::str::from_utf8(b)
                            .ok()
                            .and_then(|t| t.parse::<std::net::Ipv6Addr>().ok())
                            .map(|a| out.extend_from_slice(&a.octets()))
                            .is_some(),
                    };
                    if !ok {
                        slow.cell(r, out);
                    }
                }
                true
            }
            _ => false,
        },
        Scalar::DateTime(zone) => match &col.data {
            TypedData::Timestamp {
                ticks,
                precision,
                zoned,
            } if *precision <= 9 && (*zoned || zone.is_utc()) => {
                let per = POW10[*precision as usize];
                out.reserve(range.len() * 4);
                for (i, &t) in ticks[range.clone()].iter().enumerate() {
                    // Negative ticks round towards zero in the value path: leave them to it.
                    match u32::try_from(t / per) {
                        Ok(s) if t >= 0 => out.extend_from_slice(&s.to_le_bytes()),
                        _ => slow.cell(base + i, out),
                    }
                }
                true
            }
            TypedData::UInt32(v) => {
                copy_le(&v[range.clone()], out);
                true
            }
            TypedData::Bool(_) => false,
            _ => numeric!(|src, float| {
                ranged::<_, 4>(src, base, float, (0, u32::MAX as i64), out, &mut slow);
                true
            }),
        },
        Scalar::DateTime64 { precision, zone } => match &col.data {
            TypedData::Timestamp {
                ticks,
                precision: from,
                zoned,
            } if *from <= 9 && *precision <= 9 && (*zoned || zone.is_utc()) => {
                let scale = POW10[*precision as usize];
                let (up, down) = if from <= precision {
                    (POW10[(precision - from) as usize], 1)
                } else {
                    (1, POW10[(from - precision) as usize])
                };
                out.reserve(range.len() * 8);
                for (i, &t) in ticks[range.clone()].iter().enumerate() {
                    let v = if down > 1 {
                        Some(t.div_euclid(down))
                    } else {
                        t.checked_mul(up)
                    };
                    match v {
                        Some(v)
                            if (DT64_MIN_SECS..=DT64_MAX_SECS).contains(&v.div_euclid(scale)) =>
                        {
                            out.extend_from_slice(&v.to_le_bytes())
                        }
                        _ => slow.cell(base + i, out),
                    }
                }
                true
            }
            TypedData::Float32(_) | TypedData::Float64(_) | TypedData::Bool(_) => false,
            _ => {
                let scale = POW10[*precision as usize];
                numeric!(|src, _float| {
                    out.reserve(src.len() * 8);
                    for (i, &x) in src.iter().enumerate() {
                        let secs = x.as_i128();
                        let ticks = (DT64_MIN_SECS as i128..=DT64_MAX_SECS as i128)
                            .contains(&secs)
                            .then(|| (secs as i64).checked_mul(scale))
                            .flatten();
                        match ticks {
                            Some(t) => out.extend_from_slice(&t.to_le_bytes()),
                            None => slow.cell(base + i, out),
                        }
                    }
                    true
                })
            }
        },
        Scalar::Date(_) => days!(2, (DATE_MIN_DAYS, DATE_MAX_DAYS)),
        Scalar::Date32(_) => days!(4, (DATE32_MIN_DAYS, DATE32_MAX_DAYS)),
        _ => false,
    };
    if !done {
        for r in range {
            slow.cell(r, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::format::native::{NativeBatch, NativeOptions};
    use crate::types::schema::{ColumnDef, TableSchema};
    use crate::types::value::{ColumnBatch, ColumnData, DynRow, Strings, TypedColumn, TypedData};

    const TYPES: &[&str] = &[
        "UInt8",
        "UInt16",
        "UInt32",
        "UInt64",
        "Int8",
        "Int16",
        "Int32",
        "Int64",
        "Int128",
        "UInt128",
        "Int256",
        "UInt256",
        "Float32",
        "Float64",
        "Bool",
        "String",
        "FixedString(3)",
        "DateTime",
        "DateTime('Asia/Tokyo')",
        "DateTime64(3)",
        "DateTime64(6, 'UTC')",
        "DateTime64(0, 'Europe/Berlin')",
        "DateTime64(9)",
        "Date",
        "Date32",
        "Decimal(10, 2)",
        "Enum8('a' = 1, 'b' = 2)",
        "UUID",
        "IPv4",
        "IPv6",
        "Nullable(UInt32)",
        "Nullable(Int64)",
        "Nullable(String)",
        "Nullable(DateTime64(9))",
        "Nullable(Float64)",
        "LowCardinality(String)",
        "LowCardinality(Nullable(String))",
        "LowCardinality(UInt32)",
        "Array(UInt8)",
    ];

    fn data() -> Vec<TypedData> {
        let strings = [
            "a",
            "abcd",
            "1",
            "2023-11-14 22:13:20",
            "",
            "1.2.3.4",
            "2001:db8::1",
            "00112233-4455-6677-8899-aabbccddeeff",
        ];
        let ts = vec![
            0,
            1_700_000_000_123,
            -1,
            -1_500,
            4_294_967_295_000,
            4_294_967_296_000,
            10_413_791_999_999,
            i64::MAX,
        ];
        vec![
            TypedData::Bool(vec![true, false, true, true, false, false, true, false]),
            TypedData::Int8(vec![-128, -1, 0, 1, 127, 2, 3, 4]),
            TypedData::Int16(vec![-300, -1, 0, 1, 300, 2, 18262, 4]),
            TypedData::Int32(vec![i32::MIN, -1, 0, 1, i32::MAX, 65535, 65536, -25567]),
            TypedData::Int64(vec![
                i64::MIN,
                -1,
                0,
                1,
                255,
                65535,
                4_294_967_295,
                i64::MAX,
            ]),
            TypedData::UInt8(vec![0, 1, 2, 255, 128, 127, 3, 4]),
            TypedData::UInt16(vec![0, 1, 2, 65535, 256, 255, 18262, 4]),
            TypedData::UInt32(vec![0, 1, 2, u32::MAX, 256, 1_700_000_000, 65536, 4]),
            TypedData::UInt64(vec![0, 1, 255, 256, u32::MAX as u64, u64::MAX, 1 << 63, 7]),
            TypedData::Float64(vec![0.0, 1.0, -1.5, 2.0, 1e10, 1e300, f64::INFINITY, -0.0]),
            TypedData::Float32(vec![0.0, 1.0, -1.5, 2.0, 1e10, 3e38, f32::INFINITY, 7.0]),
            TypedData::String(strings.iter().collect()),
            TypedData::Binary(strings.iter().collect()),
            TypedData::Timestamp {
                ticks: ts.clone(),
                precision: 3,
                zoned: true,
            },
            TypedData::Timestamp {
                ticks: ts.clone(),
                precision: 3,
                zoned: false,
            },
            TypedData::Timestamp {
                ticks: ts.iter().map(|t| t / 1000).collect(),
                precision: 0,
                zoned: false,
            },
            TypedData::Timestamp {
                ticks: ts.iter().map(|t| t.saturating_mul(1_000_000)).collect(),
                precision: 9,
                zoned: true,
            },
            TypedData::Date32(vec![0, 18262, -1, 65535, 65536, -25567, 200_000, i32::MIN]),
        ]
    }

    fn encode(ty: &str, cols: ColumnBatch) -> (Vec<u8>, Vec<String>) {
        let schema = Arc::new(TableSchema::from_columns(
            "db",
            "t",
            vec![ColumnDef::new("c", ty)],
        ));
        let mut b = NativeBatch::new(schema, NativeOptions::default());
        let outcome = b.push_columns(&cols).unwrap();
        let errors = outcome.rejected.iter().map(|e| e.to_string()).collect();
        (b.finish(None).bytes.to_vec(), errors)
    }

    fn encode_rows(ty: &str, values: &[crate::types::value::Value]) -> (Vec<u8>, Vec<String>) {
        let schema = Arc::new(TableSchema::from_columns(
            "db",
            "t",
            vec![ColumnDef::new("c", ty)],
        ));
        let mut b = NativeBatch::new(schema, NativeOptions::default());
        let mut errors = Vec::new();
        for v in values {
            if let Err(e) = b.push_row(&DynRow::new().with("c", v.clone())) {
                errors.push(e.to_string());
            }
        }
        (b.finish(None).bytes.to_vec(), errors)
    }

    /// Every typed column encodes exactly like its values, into every type: the same bytes
    /// and the same rejected rows with the same reasons (with and without NULLs).
    #[test]
    fn typed_columns_encode_like_their_values() {
        let mut checked = 0;
        for ty in TYPES {
            for d in data() {
                for nulls in [None, Some(vec![0u8, 1, 0, 0, 1, 0, 0, 0])] {
                    let mut col = TypedColumn::new(d.clone());
                    if let Some(n) = nulls {
                        col = col.with_nulls(n);
                    }
                    let values = ColumnData::Typed(col.clone()).to_values();
                    let typed = encode(ty, ColumnBatch::new().with_data("c", col.clone()));
                    let dynamic = encode(ty, ColumnBatch::new().with_column("c", values.clone()));
                    assert_eq!(typed, dynamic, "{ty} from {d:?}");
                    // And the columnar path is the row path.
                    let rows = encode_rows(ty, &values);
                    assert_eq!(typed, rows, "{ty} from {d:?} (rows)");
                    // A slice converts like the same rows.
                    let part = encode(ty, ColumnBatch::new().with_data("c", col.slice(2..7)));
                    let part_rows = encode_rows(ty, &values[2..7]);
                    assert_eq!(part.0, part_rows.0, "{ty} from {d:?} (slice)");
                    checked += 1;
                }
            }
        }
        assert_eq!(checked, TYPES.len() * data().len() * 2);
    }

    /// Lists and maps of typed items (8 rows each; offsets that do not start at 0, empty
    /// lists, NULL items, lists of lists).
    fn nested_data() -> Vec<TypedColumn> {
        let ints = || {
            // rows: [1, NULL], [300], [], [4, MAX], [6, 7], [8], [9], [10]
            TypedColumn::new(TypedData::List {
                offsets: vec![1, 3, 4, 4, 6, 8, 9, 10, 11],
                values: Box::new(
                    TypedColumn::new(TypedData::UInt32(vec![
                        99,
                        1,
                        2,
                        300,
                        4,
                        u32::MAX,
                        6,
                        7,
                        8,
                        9,
                        10,
                    ]))
                    .with_nulls(vec![0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]),
                ),
            })
        };
        let strings = [
            "a",
            "abcd",
            "1",
            "",
            "1.2.3.4",
            "x",
            "00112233-4455-6677-8899-aabbccddeeff",
            "b",
        ];
        let words = TypedColumn::new(TypedData::List {
            offsets: vec![0, 2, 2, 3, 5, 6, 6, 7, 8],
            values: Box::new(
                TypedColumn::new(TypedData::String(strings.iter().collect()))
                    .with_nulls(vec![0, 0, 0, 1, 0, 0, 0, 0]),
            ),
        });
        let lists = TypedColumn::new(TypedData::List {
            offsets: vec![0, 2, 2, 3, 5, 6, 7, 8, 8],
            values: Box::new(ints().with_nulls(vec![0, 0, 0, 0, 1, 0, 0, 0])),
        });
        let keys: Vec<&str> = vec!["a", "b", "a", "c", "1.2.3.4", "k", "a", "", "zz", "q"];
        let map = |values: TypedData| {
            TypedColumn::new(TypedData::Map {
                objects: false,
                offsets: vec![0, 1, 3, 3, 4, 6, 7, 9, 10],
                keys: Box::new(TypedColumn::new(TypedData::String(keys.iter().collect()))),
                values: Box::new(
                    TypedColumn::new(values).with_nulls(vec![0, 0, 1, 0, 0, 0, 0, 0, 0, 0]),
                ),
            })
        };
        // Objects: keys that a named tuple has (`a`, `c`), repeated, missing and unknown.
        let object = TypedColumn::new(TypedData::Map {
            objects: true,
            offsets: vec![0, 1, 3, 3, 4, 6, 7, 9, 10],
            keys: Box::new(TypedColumn::new(TypedData::String(
                ["a", "a", "c", "c", "a", "c", "c", "a", "zz", "a"]
                    .iter()
                    .collect(),
            ))),
            values: Box::new(
                TypedColumn::new(TypedData::UInt64(vec![1, 2, 3, 4, 5, 6, 7, 300, 9, 10]))
                    .with_nulls(vec![0, 0, 1, 0, 0, 0, 0, 0, 0, 0]),
            ),
        });
        vec![
            ints(),
            words,
            lists,
            map(TypedData::UInt64(vec![
                1,
                2,
                3,
                4,
                5,
                6,
                7,
                300,
                9,
                u64::MAX,
            ])),
            map(TypedData::Float64(vec![
                0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0,
            ])),
            object,
        ]
    }

    const NESTED_TYPES: &[&str] = &[
        "Array(UInt8)",
        "Array(UInt32)",
        "Array(Int64)",
        "Array(Nullable(UInt32))",
        "Array(Float64)",
        "Array(String)",
        "Array(Nullable(String))",
        "Array(LowCardinality(String))",
        "Array(LowCardinality(Nullable(String)))",
        "Array(IPv4)",
        "Array(Array(UInt8))",
        "Array(Array(Nullable(UInt32)))",
        "Array(Tuple(UInt8, String))",
        "Map(String, UInt64)",
        "Map(String, Nullable(UInt8))",
        "Map(LowCardinality(String), Float64)",
        "Map(IPv4, UInt64)",
        "Map(String, Array(UInt8))",
        "Tuple(a UInt64, c Nullable(UInt8))",
        "JSON",
        "String",
        "UInt8",
    ];

    /// Lists and maps encode exactly like their values into every type: the same bytes and
    /// rejected rows (with and without NULL rows, whole, sliced, and pushed in two parts
    /// into one block).
    #[test]
    fn nested_typed_columns_encode_like_their_values() {
        let mut checked = 0;
        for ty in NESTED_TYPES {
            for d in nested_data() {
                for nulls in [None, Some(vec![0u8, 1, 0, 0, 1, 0, 0, 0])] {
                    let mut col = d.clone();
                    if let Some(n) = nulls {
                        col = col.with_nulls(n);
                    }
                    let values = ColumnData::Typed(col.clone()).to_values();
                    let typed = encode(ty, ColumnBatch::new().with_data("c", col.clone()));
                    let dynamic = encode(ty, ColumnBatch::new().with_column("c", values.clone()));
                    assert_eq!(typed, dynamic, "{ty} from {col:?}");
                    let rows = encode_rows(ty, &values);
                    assert_eq!(typed, rows, "{ty} from {col:?} (rows)");
                    let part = encode(ty, ColumnBatch::new().with_data("c", col.slice(2..7)));
                    let part_rows = encode_rows(ty, &values[2..7]);
                    assert_eq!(part, part_rows, "{ty} from {col:?} (slice)");
                    let picked = [7, 0, 3, 3, 5];
                    let taken = encode(ty, ColumnBatch::new().with_data("c", col.take(&picked)));
                    let taken_rows = encode_rows(ty, &picked.map(|r| values[r].clone()));
                    assert_eq!(taken, taken_rows, "{ty} from {col:?} (take)");
                    // Two pushes into one block: the second one's offsets follow the first.
                    let two = encode_parts(ty, &[col.slice(0..3), col.slice(3..8)]);
                    assert_eq!(two, rows.0, "{ty} from {col:?} (two parts)");
                    checked += 1;
                }
            }
        }
        assert_eq!(checked, NESTED_TYPES.len() * nested_data().len() * 2);
    }

    fn encode_parts(ty: &str, parts: &[TypedColumn]) -> Vec<u8> {
        let schema = Arc::new(TableSchema::from_columns(
            "db",
            "t",
            vec![ColumnDef::new("c", ty)],
        ));
        let mut b = NativeBatch::new(schema, NativeOptions::default());
        for p in parts {
            b.push_columns(&ColumnBatch::new().with_data("c", p.clone()))
                .unwrap();
        }
        b.finish(None).bytes.to_vec()
    }

    /// The wire image of typed lists and maps: UInt64 end offsets, then the items (a map's
    /// keys, then its values); a copy of the items when their type matches.
    #[test]
    fn nested_wire_image() {
        let list = TypedColumn::new(TypedData::List {
            offsets: vec![2, 4, 4, 5],
            values: Box::new(vec![9u32, 9, 1, 2, 3].into()),
        });
        let (bytes, errors) = encode("Array(UInt32)", ColumnBatch::new().with_data("c", list));
        assert!(errors.is_empty());
        let mut want: Vec<u8> = [2u64, 2, 3].iter().flat_map(|o| o.to_le_bytes()).collect();
        want.extend([1u32, 2, 3].iter().flat_map(|x| x.to_le_bytes()));
        assert!(bytes.ends_with(&want));
        let map = TypedColumn::new(TypedData::Map {
            objects: false,
            offsets: vec![0, 1, 1, 3],
            keys: Box::new(["a", "b", "c"].iter().collect::<Strings>().into()),
            values: Box::new(vec![1u64, 2, 3].into()),
        });
        let (bytes, errors) = encode(
            "Map(String, UInt64)",
            ColumnBatch::new().with_data("c", map),
        );
        assert!(errors.is_empty());
        let mut want: Vec<u8> = [1u64, 1, 3].iter().flat_map(|o| o.to_le_bytes()).collect();
        want.extend(b"\x01a\x01b\x01c");
        want.extend([1u64, 2, 3].iter().flat_map(|x| x.to_le_bytes()));
        assert!(bytes.ends_with(&want));
    }

    #[test]
    fn exact_types_are_copies() {
        let ids: Vec<u64> = (0..1000).collect();
        let (bytes, errors) = encode("UInt64", ColumnBatch::new().with_data("c", ids.clone()));
        assert!(errors.is_empty());
        let le: Vec<u8> = ids.iter().flat_map(|x| x.to_le_bytes()).collect();
        assert!(bytes.ends_with(&le));
        let s: Strings = ["x", "yz"].iter().collect();
        let (bytes, _) = encode("String", ColumnBatch::new().with_data("c", s));
        assert!(bytes.ends_with(b"\x01x\x02yz"));
    }

    /// Value columns compacted into typed columns ([`TypedColumn::from_values`], what a
    /// dynamic batch keeps of columnar input) give their values back and encode into every
    /// type exactly like the values: the same bytes and the same rejected rows.
    #[test]
    fn compacted_values_encode_like_the_values() {
        use crate::types::value::Value;
        let mut columns: Vec<Vec<Value>> = Vec::new();
        let nulls = [None, Some(vec![0u8, 1, 0, 0, 1, 0, 0, 0])];
        for n in &nulls {
            let with = |c: TypedColumn| match n {
                Some(n) => c.with_nulls(n.clone()),
                None => c,
            };
            for d in data() {
                columns.push(ColumnData::Typed(with(TypedColumn::new(d))).to_values());
            }
            for c in nested_data() {
                columns.push(ColumnData::Typed(with(c)).to_values());
            }
        }
        // Only NULLs; lists that are all empty or hold only NULLs; bytes.
        columns.push(vec![Value::Null; 8]);
        columns.push(vec![Value::Array(vec![]); 8]);
        columns.push(vec![Value::Array(vec![Value::Null, Value::Null]); 8]);
        columns.push(
            (0..8u8)
                .map(|i| Value::Bytes(vec![i; i as usize]))
                .collect(),
        );
        let types = TYPES.iter().chain(NESTED_TYPES);
        let mut checked = 0;
        for values in &columns {
            let typed =
                TypedColumn::from_values(values).unwrap_or_else(|| panic!("{values:?} compacts"));
            assert_eq!(&ColumnData::Typed(typed.clone()).to_values(), values);
            assert!(matches!(
                ColumnData::Values(values.clone()).compact(),
                ColumnData::Typed(_)
            ));
            for ty in types.clone() {
                let compact = encode(ty, ColumnBatch::new().with_data("c", typed.clone()));
                let dynamic = encode(ty, ColumnBatch::new().with_column("c", values.clone()));
                assert_eq!(compact, dynamic, "{ty} from {values:?}");
                checked += 1;
            }
        }
        assert_eq!(checked, columns.len() * (TYPES.len() + NESTED_TYPES.len()));

        // What a typed column cannot give back stays values.
        for values in [
            vec![Value::Int(-1), Value::UInt(1)],
            vec![Value::UInt(1), Value::Float(1.0)],
            vec![Value::String("a".into()), Value::Bytes(b"a".to_vec())],
            vec![Value::Int128(1)],
            vec![Value::UInt128(1)],
            vec![Value::Tuple(vec![Value::UInt(1)])],
            vec![Value::Array(vec![Value::UInt(1)]), Value::UInt(1)],
            vec![Value::Array(vec![Value::UInt(1), Value::Int(-1)])],
            vec![Value::Map(vec![(Value::UInt(1), Value::Int128(1))])],
            vec![
                Value::Object(vec![("a".into(), Value::UInt(1))]),
                Value::Map(vec![]),
            ],
        ] {
            assert_eq!(TypedColumn::from_values(&values), None, "{values:?}");
            assert_eq!(
                ColumnData::Values(values.clone()).compact(),
                ColumnData::Values(values)
            );
        }
    }
}
