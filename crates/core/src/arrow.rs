//! Arrow input: a record batch's columns as engine columns. Numbers, booleans, strings,
//! binaries, timestamps and dates become typed columns (one copy of the buffers, no per-cell
//! values; the Native encoder writes them with tight loops), and so do lists (list, large
//! list, fixed-size list) and maps of such columns (their offsets and typed items);
//! everything else becomes values. Every frontend that takes Arrow (Python's
//! `write_columns`, the command line's Parquet and Arrow files) goes through here.
//!
//! Built with the crate's `arrow` feature; [`arrow_array`] and [`arrow_schema`] are
//! re-exported, so that callers build record batches of the same version.

pub use arrow_array;
pub use arrow_schema;

use arrow_array::cast::AsArray;
use arrow_array::types::*;
use arrow_array::{Array, ArrowPrimitiveType, RecordBatch};
use arrow_schema::{DataType, TimeUnit};

use crate::types::value::{ColumnBatch, ColumnData, Strings, TypedColumn, TypedData, Value};

/// The civil (zone-less) text of nanoseconds since the epoch, e.g. `2026-11-24T09:00:00.25`.
fn civil_text(nanos: i128) -> Result<String, String> {
    let ts = jiff::Timestamp::from_nanosecond(nanos).map_err(|e| e.to_string())?;
    Ok(jiff::tz::TimeZone::UTC.to_datetime(ts).to_string())
}

/// The RFC 3339 text of an instant (nanoseconds since the epoch), e.g.
/// `2026-11-24T09:00:00.25Z`.
fn instant_text(nanos: i128) -> Result<String, String> {
    let ts = jiff::Timestamp::from_nanosecond(nanos).map_err(|e| e.to_string())?;
    Ok(ts.to_string())
}

/// A record batch as columnar batches of at most `chunk_rows` rows. Columns that become typed
/// are converted piece by piece (slicing an Arrow array costs nothing; a list's or map's
/// piece converts only the child items its offsets cover); the others are converted to
/// values once and the values split (a slice of a list array still refers to the whole
/// child array, so converting slices to values would convert the children again and again).
pub fn batch_chunks(batch: &RecordBatch, chunk_rows: usize) -> Result<Vec<ColumnBatch>, String> {
    let n = batch.num_rows();
    let chunk_rows = chunk_rows.max(1);
    let pieces = n.div_ceil(chunk_rows);
    let mut out: Vec<ColumnBatch> = (0..pieces).map(|_| ColumnBatch::new()).collect();
    let schema = batch.schema();
    for (f, a) in schema.fields().iter().zip(batch.columns()) {
        let name = f.name();
        let err = |e: String| format!("column `{name}`: {e}");
        let mut lo = 0;
        for (k, piece) in out.iter_mut().enumerate() {
            let len = chunk_rows.min(n - lo);
            let data = column_data(a.slice(lo, len).as_ref()).map_err(err)?;
            if let ColumnData::Values(_) = data {
                // Not a typed column: all its values at once, then split.
                let mut it = values(a.as_ref()).map_err(err)?.into_iter().skip(lo);
                for piece in out[k..].iter_mut() {
                    let len = chunk_rows.min(n - lo);
                    piece.push_column(name.clone(), it.by_ref().take(len).collect());
                    lo += len;
                }
                break;
            }
            piece.push_data(name.clone(), data);
            lo += len;
        }
    }
    Ok(out)
}

/// The null map of an array (1 = NULL), `None` without NULLs.
fn null_map(arr: &dyn Array) -> Option<Vec<u8>> {
    let nulls = arr.logical_nulls()?;
    if nulls.null_count() == 0 {
        return None;
    }
    Some((0..arr.len()).map(|i| nulls.is_null(i) as u8).collect())
}

fn strings<'a>(n: usize, value: impl Fn(usize) -> &'a [u8]) -> Strings {
    let mut s = Strings::with_capacity(n, 0);
    for i in 0..n {
        s.push(value(i));
    }
    s
}

/// Arrow's offsets + data, rebased to start at 0.
fn offset_strings<O: Copy + Into<i64>>(offsets: &[O], data: &[u8]) -> Strings {
    let first = offsets.first().map_or(0, |o| (*o).into());
    let last = offsets.last().map_or(0, |o| (*o).into());
    Strings {
        offsets: offsets
            .iter()
            .map(|o| ((*o).into() - first) as u64)
            .collect(),
        data: data[first as usize..last as usize].to_vec(),
    }
}

/// The offsets of a list-like array (Arrow's list or map layout over `items` child items)
/// rebased to start at 0, and the range of child items they cover; checked (the value path
/// refuses the same offsets).
fn rebased_offsets<O: Copy + Into<i64>>(
    offsets: &[O],
    items: usize,
) -> Result<(Vec<u64>, std::ops::Range<usize>), String> {
    let first: i64 = offsets.first().map_or(0, |o| (*o).into());
    let last: i64 = offsets.last().map_or(0, |o| (*o).into());
    let bad = || "bad offset".to_owned();
    if first < 0 || last < first || last as u64 > items as u64 {
        return Err(bad());
    }
    let mut out = Vec::with_capacity(offsets.len());
    let mut prev = first;
    for o in offsets {
        let o: i64 = (*o).into();
        if o < prev {
            return Err(bad());
        }
        prev = o;
        out.push((o - first) as u64);
    }
    if out.is_empty() {
        out.push(0);
    }
    Ok((out, first as usize..last as usize))
}

/// Whether arrays of type `t` become typed columns in [`column_data`] (dictionaries may still
/// turn out not to).
fn typed_type(t: &DataType) -> bool {
    use DataType as D;
    match t {
        D::Boolean
        | D::Int8
        | D::Int16
        | D::Int32
        | D::Int64
        | D::UInt8
        | D::UInt16
        | D::UInt32
        | D::UInt64
        | D::Float32
        | D::Float64
        | D::Utf8
        | D::LargeUtf8
        | D::Utf8View
        | D::Binary
        | D::LargeBinary
        | D::BinaryView
        | D::FixedSizeBinary(_)
        | D::Date32
        | D::Date64
        | D::Timestamp(_, _) => true,
        D::List(f) | D::LargeList(f) | D::FixedSizeList(f, _) => typed_type(f.data_type()),
        D::Map(f, _) => match f.data_type() {
            D::Struct(kv) if kv.len() == 2 => {
                typed_type(kv[0].data_type()) && typed_type(kv[1].data_type())
            }
            _ => false,
        },
        D::Dictionary(_, v) => typed_type(v),
        _ => false,
    }
}

/// The items `range` of a list's or map's child array as a typed column; `None` when the
/// child does not become a typed column (the list then goes the value path).
fn typed_items(
    child: &dyn Array,
    range: std::ops::Range<usize>,
) -> Result<Option<Box<TypedColumn>>, String> {
    if !typed_type(child.data_type()) {
        return Ok(None);
    }
    match column_data(child.slice(range.start, range.len()).as_ref())? {
        ColumnData::Typed(t) => Ok(Some(Box::new(t))),
        _ => Ok(None),
    }
}

/// A list-like array as [`TypedData::List`], `None` when its items are not typed.
fn typed_list<O: Copy + Into<i64>>(
    offsets: &[O],
    child: &dyn Array,
) -> Result<Option<TypedData>, String> {
    let (offsets, range) = rebased_offsets(offsets, child.len())?;
    Ok(typed_items(child, range)?.map(|values| TypedData::List { offsets, values }))
}

fn precision(unit: &TimeUnit) -> u8 {
    match unit {
        TimeUnit::Second => 0,
        TimeUnit::Millisecond => 3,
        TimeUnit::Microsecond => 6,
        TimeUnit::Nanosecond => 9,
    }
}

/// A whole Arrow array as an engine column: typed where the layout allows, values otherwise.
pub fn column_data(arr: &dyn Array) -> Result<ColumnData, String> {
    use DataType as D;
    macro_rules! prim {
        ($t:ty) => {
            TypedColumn::from(arr.as_primitive::<$t>().values().to_vec()).data
        };
    }
    let data = match arr.data_type() {
        D::Boolean => TypedData::Bool(arr.as_boolean().values().iter().collect()),
        D::Int8 => prim!(Int8Type),
        D::Int16 => prim!(Int16Type),
        D::Int32 => prim!(Int32Type),
        D::Int64 => prim!(Int64Type),
        D::UInt8 => prim!(UInt8Type),
        D::UInt16 => prim!(UInt16Type),
        D::UInt32 => prim!(UInt32Type),
        D::UInt64 => prim!(UInt64Type),
        D::Float32 => prim!(Float32Type),
        D::Float64 => prim!(Float64Type),
        D::Utf8 => {
            let a = arr.as_string::<i32>();
            TypedData::String(offset_strings(a.value_offsets(), a.value_data()))
        }
        D::LargeUtf8 => {
            let a = arr.as_string::<i64>();
            TypedData::String(offset_strings(a.value_offsets(), a.value_data()))
        }
        D::Utf8View => {
            let a = arr.as_string_view();
            TypedData::String(strings(a.len(), |i| a.value(i).as_bytes()))
        }
        D::Binary => {
            let a = arr.as_binary::<i32>();
            TypedData::Binary(offset_strings(a.value_offsets(), a.value_data()))
        }
        D::LargeBinary => {
            let a = arr.as_binary::<i64>();
            TypedData::Binary(offset_strings(a.value_offsets(), a.value_data()))
        }
        D::BinaryView => {
            let a = arr.as_binary_view();
            TypedData::Binary(strings(a.len(), |i| a.value(i)))
        }
        D::FixedSizeBinary(_) => {
            let a = arr.as_fixed_size_binary();
            TypedData::Binary(strings(a.len(), |i| a.value(i)))
        }
        D::Date32 => TypedData::Date32(arr.as_primitive::<Date32Type>().values().to_vec()),
        D::Date64 => TypedData::Timestamp {
            ticks: arr.as_primitive::<Date64Type>().values().to_vec(),
            precision: 3,
            zoned: false,
        },
        D::Timestamp(unit, tz) => {
            let ticks = match unit {
                TimeUnit::Second => arr.as_primitive::<TimestampSecondType>().values().to_vec(),
                TimeUnit::Millisecond => arr
                    .as_primitive::<TimestampMillisecondType>()
                    .values()
                    .to_vec(),
                TimeUnit::Microsecond => arr
                    .as_primitive::<TimestampMicrosecondType>()
                    .values()
                    .to_vec(),
                TimeUnit::Nanosecond => arr
                    .as_primitive::<TimestampNanosecondType>()
                    .values()
                    .to_vec(),
            };
            TypedData::Timestamp {
                ticks,
                precision: precision(unit),
                zoned: tz.is_some(),
            }
        }
        D::List(_) | D::LargeList(_) | D::FixedSizeList(_, _) | D::Map(_, _) => {
            let typed = match arr.data_type() {
                D::List(_) => {
                    let a = arr.as_list::<i32>();
                    typed_list(a.value_offsets(), a.values().as_ref())?
                }
                D::LargeList(_) => {
                    let a = arr.as_list::<i64>();
                    typed_list(a.value_offsets(), a.values().as_ref())?
                }
                D::FixedSizeList(_, size) => {
                    // The child is sliced with the list: row i holds items i*size..(i+1)*size.
                    let a = arr.as_fixed_size_list();
                    let size = (*size).max(0) as i64;
                    let offsets: Vec<i64> = (0..=a.len() as i64).map(|i| i * size).collect();
                    typed_list(&offsets, a.values().as_ref())?
                }
                _ => {
                    let a = arr.as_map();
                    let (offsets, range) = rebased_offsets(a.value_offsets(), a.keys().len())?;
                    if a.values().len() < range.end {
                        return Err("bad offset".to_owned());
                    }
                    match (
                        typed_items(a.keys().as_ref(), range.clone())?,
                        typed_items(a.values().as_ref(), range)?,
                    ) {
                        (Some(keys), Some(values)) => Some(TypedData::Map {
                            offsets,
                            keys,
                            values,
                            objects: false,
                        }),
                        _ => None,
                    }
                }
            };
            match typed {
                Some(t) => t,
                None => return Ok(ColumnData::Values(values(arr)?)),
            }
        }
        D::Dictionary(_, _) => {
            // Dictionary-encoded (pandas/polars categoricals): the dictionary converted once,
            // then picked by key.
            let a = arr.as_any_dictionary();
            let dict = column_data(a.values().as_ref())?;
            let ColumnData::Typed(dict) = dict else {
                return Ok(ColumnData::Values(values(arr)?));
            };
            if dict.is_empty() || dict.nulls.is_some() {
                return Ok(ColumnData::Values(values(arr)?));
            }
            let nulls = null_map(arr);
            let mut keys = a.normalized_keys();
            for (i, k) in keys.iter_mut().enumerate() {
                if nulls.as_ref().is_some_and(|n| n[i] != 0) || *k >= dict.len() {
                    if nulls.as_ref().is_some_and(|n| n[i] != 0) {
                        *k = 0;
                    } else {
                        return Err("dictionary key out of range".to_owned());
                    }
                }
            }
            let mut col = dict.take(&keys);
            if let Some(n) = nulls {
                col = col.with_nulls(n);
            }
            return Ok(ColumnData::Typed(col));
        }
        _ => return Ok(ColumnData::Values(values(arr)?)),
    };
    let mut col = TypedColumn::new(data);
    if let Some(n) = null_map(arr) {
        col = col.with_nulls(n);
    }
    Ok(ColumnData::Typed(col))
}

fn prim<T: ArrowPrimitiveType>(
    arr: &dyn Array,
    f: impl Fn(T::Native) -> Result<Value, String>,
) -> Result<Vec<Value>, String> {
    let a = arr.as_primitive::<T>();
    let nulls = arr.logical_nulls();
    (0..a.len())
        .map(|i| {
            if nulls.as_ref().is_some_and(|n| n.is_null(i)) {
                Ok(Value::Null)
            } else {
                f(a.value(i))
            }
        })
        .collect()
}

fn each(arr: &dyn Array, f: impl Fn(usize) -> Result<Value, String>) -> Result<Vec<Value>, String> {
    let nulls = arr.logical_nulls();
    (0..arr.len())
        .map(|i| {
            if nulls.as_ref().is_some_and(|n| n.is_null(i)) {
                Ok(Value::Null)
            } else {
                f(i)
            }
        })
        .collect()
}

fn unit_nanos(unit: &TimeUnit) -> i128 {
    match unit {
        TimeUnit::Second => 1_000_000_000,
        TimeUnit::Millisecond => 1_000_000,
        TimeUnit::Microsecond => 1_000,
        TimeUnit::Nanosecond => 1,
    }
}

fn time_text(nanos: i64) -> Result<Value, String> {
    if !(0..86_400_000_000_000).contains(&nanos) {
        return Err(format!("time of day out of range: {nanos} ns"));
    }
    let secs = nanos / 1_000_000_000;
    let frac = nanos % 1_000_000_000;
    let mut s = format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60);
    if frac != 0 {
        let f = format!("{frac:09}");
        s.push('.');
        s.push_str(f.trim_end_matches('0'));
    }
    Ok(Value::String(s))
}

fn timestamp(nanos: i128, zoned: bool) -> Result<Value, String> {
    if zoned {
        instant_text(nanos).map(Value::String)
    } else {
        civil_text(nanos).map(Value::String)
    }
}

/// Splits child values by offsets (list and map layouts).
fn split<O: Copy + TryInto<usize>>(
    arr: &dyn Array,
    offsets: &[O],
    mut child: Vec<Value>,
    wrap: impl Fn(Vec<Value>) -> Value,
) -> Result<Vec<Value>, String> {
    let nulls = arr.logical_nulls();
    let at = |o: O| o.try_into().map_err(|_| "bad offset".to_owned());
    (0..arr.len())
        .map(|i| {
            if nulls.as_ref().is_some_and(|n| n.is_null(i)) {
                return Ok(Value::Null);
            }
            let (s, e) = (at(offsets[i])?, at(offsets[i + 1])?);
            if s > e || e > child.len() {
                return Err("bad offset".to_owned());
            }
            Ok(wrap(child[s..e].iter_mut().map(std::mem::take).collect()))
        })
        .collect()
}

/// Converts a whole Arrow array.
pub fn values(arr: &dyn Array) -> Result<Vec<Value>, String> {
    use DataType as D;
    Ok(match arr.data_type() {
        D::Null => vec![Value::Null; arr.len()],
        D::Boolean => {
            let a = arr.as_boolean();
            each(arr, |i| Ok(Value::Bool(a.value(i))))?
        }
        D::Int8 => prim::<Int8Type>(arr, |x| Ok(Value::Int(x as i64)))?,
        D::Int16 => prim::<Int16Type>(arr, |x| Ok(Value::Int(x as i64)))?,
        D::Int32 => prim::<Int32Type>(arr, |x| Ok(Value::Int(x as i64)))?,
        D::Int64 => prim::<Int64Type>(arr, |x| Ok(Value::Int(x)))?,
        D::UInt8 => prim::<UInt8Type>(arr, |x| Ok(Value::UInt(x as u64)))?,
        D::UInt16 => prim::<UInt16Type>(arr, |x| Ok(Value::UInt(x as u64)))?,
        D::UInt32 => prim::<UInt32Type>(arr, |x| Ok(Value::UInt(x as u64)))?,
        D::UInt64 => prim::<UInt64Type>(arr, |x| Ok(Value::UInt(x)))?,
        D::Float16 => prim::<Float16Type>(arr, |x| Ok(Value::Float(x.to_f64())))?,
        D::Float32 => prim::<Float32Type>(arr, |x| Ok(Value::Float(x as f64)))?,
        D::Float64 => prim::<Float64Type>(arr, |x| Ok(Value::Float(x)))?,
        D::Utf8 => {
            let a = arr.as_string::<i32>();
            each(arr, |i| Ok(Value::String(a.value(i).to_owned())))?
        }
        D::LargeUtf8 => {
            let a = arr.as_string::<i64>();
            each(arr, |i| Ok(Value::String(a.value(i).to_owned())))?
        }
        D::Utf8View => {
            let a = arr.as_string_view();
            each(arr, |i| Ok(Value::String(a.value(i).to_owned())))?
        }
        D::Binary => {
            let a = arr.as_binary::<i32>();
            each(arr, |i| Ok(Value::Bytes(a.value(i).to_vec())))?
        }
        D::LargeBinary => {
            let a = arr.as_binary::<i64>();
            each(arr, |i| Ok(Value::Bytes(a.value(i).to_vec())))?
        }
        D::BinaryView => {
            let a = arr.as_binary_view();
            each(arr, |i| Ok(Value::Bytes(a.value(i).to_vec())))?
        }
        D::FixedSizeBinary(_) => {
            let a = arr.as_fixed_size_binary();
            each(arr, |i| Ok(Value::Bytes(a.value(i).to_vec())))?
        }
        D::Date32 => prim::<Date32Type>(arr, |d| {
            civil_text(d as i128 * 86_400_000_000_000).map(|t| Value::String(t[..10].to_owned()))
        })?,
        D::Date64 => prim::<Date64Type>(arr, |ms| timestamp(ms as i128 * 1_000_000, false))?,
        D::Timestamp(unit, tz) => {
            let per = unit_nanos(unit);
            let zoned = tz.is_some();
            match unit {
                TimeUnit::Second => {
                    prim::<TimestampSecondType>(arr, |x| timestamp(x as i128 * per, zoned))?
                }
                TimeUnit::Millisecond => {
                    prim::<TimestampMillisecondType>(arr, |x| timestamp(x as i128 * per, zoned))?
                }
                TimeUnit::Microsecond => {
                    prim::<TimestampMicrosecondType>(arr, |x| timestamp(x as i128 * per, zoned))?
                }
                TimeUnit::Nanosecond => {
                    prim::<TimestampNanosecondType>(arr, |x| timestamp(x as i128 * per, zoned))?
                }
            }
        }
        D::Time32(TimeUnit::Second) => {
            prim::<Time32SecondType>(arr, |x| time_text(x as i64 * 1_000_000_000))?
        }
        D::Time32(_) => prim::<Time32MillisecondType>(arr, |x| time_text(x as i64 * 1_000_000))?,
        D::Time64(TimeUnit::Microsecond) => {
            prim::<Time64MicrosecondType>(arr, |x| time_text(x * 1_000))?
        }
        D::Time64(_) => prim::<Time64NanosecondType>(arr, time_text)?,
        D::Duration(unit) => match unit {
            TimeUnit::Second => prim::<DurationSecondType>(arr, |x| Ok(Value::Int(x)))?,
            TimeUnit::Millisecond => prim::<DurationMillisecondType>(arr, |x| Ok(Value::Int(x)))?,
            TimeUnit::Microsecond => prim::<DurationMicrosecondType>(arr, |x| Ok(Value::Int(x)))?,
            TimeUnit::Nanosecond => prim::<DurationNanosecondType>(arr, |x| Ok(Value::Int(x)))?,
        },
        D::Decimal32(_, _) => {
            let a = arr.as_primitive::<Decimal32Type>();
            each(arr, |i| Ok(Value::String(a.value_as_string(i))))?
        }
        D::Decimal64(_, _) => {
            let a = arr.as_primitive::<Decimal64Type>();
            each(arr, |i| Ok(Value::String(a.value_as_string(i))))?
        }
        D::Decimal128(_, _) => {
            let a = arr.as_primitive::<Decimal128Type>();
            each(arr, |i| Ok(Value::String(a.value_as_string(i))))?
        }
        D::Decimal256(_, _) => {
            let a = arr.as_primitive::<Decimal256Type>();
            each(arr, |i| Ok(Value::String(a.value_as_string(i))))?
        }
        D::List(_) => {
            let a = arr.as_list::<i32>();
            let child = values(a.values().as_ref())?;
            split(arr, a.value_offsets(), child, Value::Array)?
        }
        D::LargeList(_) => {
            let a = arr.as_list::<i64>();
            let child = values(a.values().as_ref())?;
            split(arr, a.value_offsets(), child, Value::Array)?
        }
        D::FixedSizeList(_, size) => {
            let a = arr.as_fixed_size_list();
            let child = values(a.values().as_ref())?;
            let size = *size as usize;
            let offsets: Vec<usize> = (0..=a.len()).map(|i| (a.offset() + i) * size).collect();
            split(arr, &offsets, child, Value::Array)?
        }
        D::Struct(fields) => {
            let a = arr.as_struct();
            let mut cols: Vec<std::vec::IntoIter<Value>> = a
                .columns()
                .iter()
                .map(|c| values(c.as_ref()).map(Vec::into_iter))
                .collect::<Result<_, _>>()?;
            let nulls = arr.logical_nulls();
            let mut out = Vec::with_capacity(a.len());
            for i in 0..a.len() {
                let row: Vec<(String, Value)> = fields
                    .iter()
                    .zip(cols.iter_mut())
                    .map(|(f, c)| (f.name().clone(), c.next().unwrap_or_default()))
                    .collect();
                out.push(if nulls.as_ref().is_some_and(|n| n.is_null(i)) {
                    Value::Null
                } else {
                    Value::Object(row)
                });
            }
            out
        }
        D::Map(_, _) => {
            let a = arr.as_map();
            let keys = values(a.keys().as_ref())?;
            let vals = values(a.values().as_ref())?;
            let pairs: Vec<Value> = keys
                .into_iter()
                .zip(vals)
                .map(|(k, v)| Value::Tuple(vec![k, v]))
                .collect();
            split(arr, a.value_offsets(), pairs, |kv| {
                Value::Map(
                    kv.into_iter()
                        .map(|p| match p {
                            Value::Tuple(mut t) if t.len() == 2 => {
                                let v = t.pop().unwrap_or_default();
                                let k = t.pop().unwrap_or_default();
                                (k, v)
                            }
                            other => (other, Value::Null),
                        })
                        .collect(),
                )
            })?
        }
        D::Dictionary(_, _) => {
            let a = arr.as_any_dictionary();
            let dict = values(a.values().as_ref())?;
            let keys = a.normalized_keys();
            each(arr, |i| {
                dict.get(keys[i])
                    .cloned()
                    .ok_or_else(|| "dictionary key out of range".to_owned())
            })?
        }
        other => return Err(format!("unsupported Arrow type {other}")),
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::builder::{
        Int32Builder, ListBuilder, MapBuilder, StringBuilder, UInt64Builder,
    };
    use arrow_array::{
        ArrayRef, BinaryArray, BooleanArray, Date32Array, Date64Array, Decimal128Array,
        DictionaryArray, FixedSizeBinaryArray, FixedSizeListArray, Float32Array, Int64Array,
        LargeListArray, LargeStringArray, ListArray, StringArray, StringViewArray,
        TimestampMicrosecondArray, TimestampMillisecondArray, TimestampNanosecondArray,
        TimestampSecondArray, UInt8Array, UInt32Array,
    };
    use arrow_buffer::{NullBuffer, OffsetBuffer};
    use arrow_schema::Field;

    use super::*;

    /// Typed columns from Arrow stand for exactly the values the value path gives, whole
    /// and sliced.
    #[test]
    fn typed_columns_are_the_values() {
        let arrays: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(vec![
                Some(1),
                None,
                Some(-3),
                Some(i64::MAX),
            ])),
            Arc::new(UInt8Array::from(vec![0, 255, 7, 8])),
            Arc::new(Float32Array::from(vec![
                Some(1.5),
                Some(-0.0),
                None,
                Some(3.0),
            ])),
            Arc::new(BooleanArray::from(vec![
                Some(true),
                None,
                Some(false),
                Some(true),
            ])),
            Arc::new(StringArray::from(vec![
                Some("a"),
                None,
                Some("ccc"),
                Some(""),
            ])),
            Arc::new(LargeStringArray::from(vec!["x", "yy", "zzz", "é"])),
            Arc::new(StringViewArray::from(vec![
                Some("a long string beyond twelve bytes"),
                None,
                Some("b"),
                Some("c"),
            ])),
            Arc::new(BinaryArray::from(vec![
                Some(&b"\xff\x00"[..]),
                None,
                Some(&b"b"[..]),
                Some(&b""[..]),
            ])),
            Arc::new(
                FixedSizeBinaryArray::try_from_iter(
                    vec![vec![1u8, 2], vec![3, 4], vec![5, 6], vec![7, 8]].into_iter(),
                )
                .unwrap(),
            ),
            Arc::new(Date32Array::from(vec![
                Some(0),
                Some(18262),
                None,
                Some(-1),
            ])),
            Arc::new(Date64Array::from(vec![0, 1_500, -1, 86_400_000])),
            Arc::new(TimestampSecondArray::from(vec![0, 1_700_000_000, -1, 5])),
            Arc::new(
                TimestampMillisecondArray::from(vec![Some(1_500), None, Some(-1), Some(0)])
                    .with_timezone(Arc::from("UTC")),
            ),
            Arc::new(
                TimestampMicrosecondArray::from(vec![1, 2, 1_700_000_000_123_456, -7])
                    .with_timezone(Arc::from("Europe/Berlin")),
            ),
            Arc::new(TimestampNanosecondArray::from(vec![
                1,
                2,
                3,
                1_700_000_000_123_456_789,
            ])),
            Arc::new(
                vec![Some("a"), None, Some("b"), Some("a")]
                    .into_iter()
                    .collect::<DictionaryArray<Int32Type>>(),
            ),
        ];
        for a in arrays {
            let whole = column_data(a.as_ref()).unwrap();
            assert!(
                matches!(whole, ColumnData::Typed(_)),
                "{} is typed",
                a.data_type()
            );
            assert_eq!(
                whole.to_values(),
                values(a.as_ref()).unwrap(),
                "{}",
                a.data_type()
            );
            let part = a.slice(1, 2);
            assert_eq!(
                column_data(part.as_ref()).unwrap().to_values(),
                values(part.as_ref()).unwrap(),
                "{} sliced",
                a.data_type()
            );
        }
        // A batch in pieces: typed columns (lists too) sliced.
        let mut lb = ListBuilder::new(Int32Builder::new());
        for i in 0..5 {
            for j in 0..i {
                lb.values().append_value(j);
            }
            lb.append(i != 3);
        }
        let list: ArrayRef = Arc::new(lb.finish());
        let ids: ArrayRef = Arc::new(Int64Array::from(vec![10, 11, 12, 13, 14]));
        let batch = RecordBatch::try_from_iter([("id", ids.clone()), ("l", list.clone())]).unwrap();
        let pieces = batch_chunks(&batch, 2).unwrap();
        assert_eq!(pieces.len(), 3);
        for (col, whole) in [(0, &ids), (1, &list)] {
            let got: Vec<Value> = pieces
                .iter()
                .flat_map(|p| p.columns[col].1.to_values())
                .collect();
            assert_eq!(got, values(whole.as_ref()).unwrap());
        }
        assert!(matches!(pieces[2].columns[0].1, ColumnData::Typed(_)));
        assert_eq!(pieces[2].rows(), 1);
        assert!(matches!(pieces[2].columns[1].1, ColumnData::Typed(_)));
        // Lists of what does not become typed stay values.
        let dec = Decimal128Array::from(vec![1, 2])
            .with_precision_and_scale(10, 2)
            .unwrap();
        let l = ListArray::new(
            Arc::new(Field::new_list_field(dec.data_type().clone(), true)),
            OffsetBuffer::new(vec![0, 1, 2].into()),
            Arc::new(dec),
            None,
        );
        assert!(matches!(column_data(&l).unwrap(), ColumnData::Values(_)));
    }

    /// Lists (list, large list, fixed-size list, lists of lists) and maps become typed
    /// columns that stand for exactly the values the value path gives: with NULL lists (one
    /// whose offsets still cover items), NULL items, empty lists, sliced, and in pieces.
    #[test]
    fn typed_lists_and_maps_are_the_values() {
        let items = StringArray::from(vec![
            Some("a"),
            None,
            Some("ccc"),
            Some(""),
            Some("e"),
            Some("f"),
            Some("g"),
        ]);
        // rows: [a, NULL], NULL (over [ccc]), [], ["", e, f], [g]
        let offsets = vec![0, 2, 3, 3, 6, 7];
        let nulls = NullBuffer::from(vec![true, false, true, true, true]);
        let list = ListArray::new(
            Arc::new(Field::new_list_field(DataType::Utf8, true)),
            OffsetBuffer::new(offsets.clone().into()),
            Arc::new(items.clone()),
            Some(nulls.clone()),
        );
        let large = LargeListArray::new(
            Arc::new(Field::new_list_field(DataType::Utf8, true)),
            OffsetBuffer::new(offsets.iter().map(|&o| o as i64).collect::<Vec<_>>().into()),
            Arc::new(items.clone()),
            Some(nulls.clone()),
        );
        let fixed = FixedSizeListArray::new(
            Arc::new(Field::new_list_field(DataType::UInt32, true)),
            2,
            Arc::new(UInt32Array::from(vec![
                Some(1),
                None,
                Some(3),
                Some(4),
                Some(5),
                Some(6),
            ])),
            Some(NullBuffer::from(vec![true, false, true])),
        );
        let nested = ListArray::new(
            Arc::new(Field::new_list_field(list.data_type().clone(), true)),
            OffsetBuffer::new(vec![0, 2, 2, 5].into()),
            Arc::new(list.clone()),
            None,
        );
        let mut mb = MapBuilder::new(None, StringBuilder::new(), UInt64Builder::new());
        for i in 0..6u64 {
            for j in 0..i % 3 {
                mb.keys().append_value(format!("k{j}"));
                if (i + j) % 4 == 3 {
                    mb.values().append_null();
                } else {
                    mb.values().append_value(i * 10 + j);
                }
            }
            mb.append(i != 4).unwrap();
        }
        let map = mb.finish();
        let arrays: Vec<ArrayRef> = vec![
            Arc::new(list),
            Arc::new(large),
            Arc::new(fixed),
            Arc::new(nested),
            Arc::new(map),
        ];
        for a in arrays {
            let t = a.data_type();
            let whole = column_data(a.as_ref()).unwrap();
            assert!(matches!(whole, ColumnData::Typed(_)), "{t} is typed");
            assert_eq!(whole.to_values(), values(a.as_ref()).unwrap(), "{t}");
            for (lo, len) in [(1, 2), (2, 1), (0, 0), (a.len() - 1, 1)] {
                let part = a.slice(lo, len);
                let typed = column_data(part.as_ref()).unwrap();
                assert!(matches!(typed, ColumnData::Typed(_)), "{t} sliced is typed");
                assert_eq!(
                    typed.to_values(),
                    values(part.as_ref()).unwrap(),
                    "{t} sliced at {lo}+{len}"
                );
                // Offsets from 0, items cut to the slice.
                if let ColumnData::Typed(TypedColumn {
                    data: TypedData::List { offsets, values },
                    ..
                }) = &typed
                {
                    assert_eq!(offsets[0], 0);
                    assert_eq!(*offsets.last().unwrap() as usize, values.len());
                }
            }
            let batch = RecordBatch::try_from_iter([("c", a.clone())]).unwrap();
            let got: Vec<Value> = batch_chunks(&batch, 2)
                .unwrap()
                .iter()
                .flat_map(|p| p.columns[0].1.to_values())
                .collect();
            assert_eq!(got, values(a.as_ref()).unwrap(), "{t} in pieces");
        }
        assert!(rebased_offsets(&[0i32, 9], 7).is_err());
        assert!(rebased_offsets(&[2i32, 1], 7).is_err());
        assert_eq!(
            rebased_offsets(&[2i32, 2, 5], 7).unwrap(),
            (vec![0, 0, 3], 2..5)
        );
    }

    #[test]
    fn primitives_strings_lists_dictionaries_timestamps() {
        let a = Int64Array::from(vec![Some(1), None, Some(-3)]);
        assert_eq!(
            values(&a).unwrap(),
            [Value::Int(1), Value::Null, Value::Int(-3)]
        );
        let s = StringArray::from(vec!["x", "y"]).slice(1, 1);
        assert_eq!(values(&s).unwrap(), [Value::String("y".into())]);
        let mut lb = ListBuilder::new(Int32Builder::new());
        lb.values().append_value(1);
        lb.values().append_value(2);
        lb.append(true);
        lb.append(false);
        lb.values().append_value(3);
        lb.append(true);
        let l = lb.finish();
        assert_eq!(
            values(&l).unwrap(),
            [
                Value::Array(vec![Value::Int(1), Value::Int(2)]),
                Value::Null,
                Value::Array(vec![Value::Int(3)])
            ]
        );
        assert_eq!(
            values(&l.slice(2, 1)).unwrap(),
            [Value::Array(vec![Value::Int(3)])]
        );
        let d: DictionaryArray<Int32Type> = vec!["a", "b", "a"].into_iter().collect();
        assert_eq!(
            values(&d).unwrap(),
            [
                Value::String("a".into()),
                Value::String("b".into()),
                Value::String("a".into())
            ]
        );
        let t = TimestampMillisecondArray::from(vec![1_500]).with_timezone(Arc::from("UTC"));
        assert_eq!(
            values(&t).unwrap(),
            [Value::String("1970-01-01T00:00:01.5Z".into())]
        );
        let t = TimestampMillisecondArray::from(vec![1_500]);
        assert_eq!(
            values(&t).unwrap(),
            [Value::String("1970-01-01T00:00:01.5".into())]
        );
        assert_eq!(
            time_text(3_723_500_000_000).unwrap(),
            Value::String("01:02:03.5".into())
        );
    }
}
