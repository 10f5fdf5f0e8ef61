//! Arrow input through the [Arrow PyCapsule interface]: any object with
//! `__arrow_c_stream__` (pyarrow `Table`/`RecordBatch`/`RecordBatchReader`, polars
//! `DataFrame`, ...) is imported without a copy through the C stream interface, and its
//! columns become engine values without the GIL.
//!
//! This is the one module of the crate with `unsafe` code: taking the stream out of its
//! capsule.
//!
//! [Arrow PyCapsule interface]: https://arrow.apache.org/docs/format/CDataInterface/PyCapsuleInterface.html

use std::ffi::CStr;

use arrow_array::cast::AsArray;
use arrow_array::ffi_stream::{FFI_ArrowArrayStream, RecordBatchStreamReader};
use arrow_array::types::*;
use arrow_array::{Array, ArrowPrimitiveType, RecordBatch};
use arrow_schema::{DataType, TimeUnit};
use chasync_core::value::Value;
use pyo3::exceptions::PyValueError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyCapsule, PyCapsuleMethods};

use crate::convert::{civil_text, instant_text};

const STREAM_CAPSULE: &CStr = c"arrow_array_stream";

/// Whether `obj` exports an Arrow C stream.
pub fn is_arrow(obj: &Bound<'_, PyAny>) -> bool {
    obj.hasattr(intern!(obj.py(), "__arrow_c_stream__"))
        .unwrap_or(false)
}

/// Imports every record batch of `obj.__arrow_c_stream__()`. The batches share the
/// producer's buffers (no copy). Reading releases the GIL (producers that need it take it).
pub fn import_stream(obj: &Bound<'_, PyAny>) -> PyResult<Vec<RecordBatch>> {
    let py = obj.py();
    let capsule = obj.call_method0(intern!(py, "__arrow_c_stream__"))?;
    let capsule = capsule.cast::<PyCapsule>()?;
    let ptr = capsule.pointer_checked(Some(STREAM_CAPSULE))?;
    #[allow(unsafe_code)]
    // SAFETY: the PyCapsule interface says a capsule named "arrow_array_stream" holds a
    // pointer to a valid, initialised, aligned `struct ArrowArrayStream`, owned by the capsule
    // (`pointer_checked` verified the name and that the pointer is not null). `from_raw` moves
    // the stream out and leaves a released (empty) struct behind, so the capsule's destructor,
    // which releases only streams whose `release` is set, does not free it a second time. The
    // capsule stays alive (we hold a reference) while the struct is read.
    let reader =
        unsafe { RecordBatchStreamReader::from_raw(ptr.as_ptr().cast::<FFI_ArrowArrayStream>()) }
            .map_err(|e| PyValueError::new_err(format!("cannot import the Arrow stream: {e}")))?;
    py.detach(move || reader.collect::<Result<Vec<_>, _>>())
        .map_err(|e| PyValueError::new_err(format!("cannot read the Arrow stream: {e}")))
}

/// The columns of a record batch as engine values.
pub fn batch_columns(batch: &RecordBatch) -> Result<Vec<(String, Vec<Value>)>, String> {
    batch
        .schema()
        .fields()
        .iter()
        .zip(batch.columns())
        .map(|(f, a)| {
            values(a.as_ref())
                .map(|v| (f.name().clone(), v))
                .map_err(|e| format!("column `{}`: {e}", f.name()))
        })
        .collect()
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

    use arrow_array::builder::{Int32Builder, ListBuilder};
    use arrow_array::{DictionaryArray, Int64Array, StringArray, TimestampMillisecondArray};

    use super::*;

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
