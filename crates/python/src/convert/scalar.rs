//! One Python object to a [`Value`]: exact built-in types by a pointer comparison, the
//! recognised library types (`datetime`, `Decimal`, `UUID` ...) by their type object's
//! address, then subclasses, numpy scalars and the rarer types (see the table in
//! [`super`]).

use chasync_core::Value;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{
    PyBool, PyByteArray, PyBytes, PyDict, PyFloat, PyFrozenSet, PyInt, PyList, PySet, PyString,
    PyTuple, PyType,
};

/// Python types the converter recognises by identity (their type object's address).
pub struct Types {
    datetime: Py<PyType>,
    date: Py<PyType>,
    time: Py<PyType>,
    timedelta: Py<PyType>,
    decimal: Py<PyType>,
    uuid: Py<PyType>,
    ipv4: Py<PyType>,
    ipv6: Py<PyType>,
    enum_: Py<PyType>,
    addr: [usize; 7],
}

static TYPES: PyOnceLock<Types> = PyOnceLock::new();

/// The recognised types (imported once).
pub fn types(py: Python<'_>) -> PyResult<&Types> {
    TYPES.get_or_try_init(py, || {
        let get = |module: &str, name: &str| -> PyResult<Py<PyType>> {
            Ok(py
                .import(module)?
                .getattr(name)?
                .cast_into::<PyType>()?
                .unbind())
        };
        let datetime = get("datetime", "datetime")?;
        let date = get("datetime", "date")?;
        let time = get("datetime", "time")?;
        let timedelta = get("datetime", "timedelta")?;
        let decimal = get("decimal", "Decimal")?;
        let uuid = get("uuid", "UUID")?;
        let ipv4 = get("ipaddress", "IPv4Address")?;
        let ipv6 = get("ipaddress", "IPv6Address")?;
        let enum_ = get("enum", "Enum")?;
        let addr = [
            datetime.as_ptr() as usize,
            date.as_ptr() as usize,
            time.as_ptr() as usize,
            decimal.as_ptr() as usize,
            uuid.as_ptr() as usize,
            ipv4.as_ptr() as usize,
            ipv6.as_ptr() as usize,
        ];
        Ok(Types {
            datetime,
            date,
            time,
            timedelta,
            decimal,
            uuid,
            ipv4,
            ipv6,
            enum_,
            addr,
        })
    })
}

const MAX_DEPTH: u32 = 64;

/// `repr(obj)` cut to about `max` characters (for error messages and the spool).
pub fn short_repr(obj: &Bound<'_, PyAny>, max: usize) -> String {
    let text = obj
        .repr()
        .ok()
        .and_then(|r| r.to_cow().ok().map(|c| c.into_owned()))
        .unwrap_or_else(|| "<unrepresentable>".to_owned());
    if text.chars().count() > max {
        let mut t: String = text.chars().take(max).collect();
        t.push_str("...");
        t
    } else {
        text
    }
}

fn text(obj: &Bound<'_, PyAny>) -> Result<String, String> {
    let s = obj.str().map_err(|e| e.to_string())?;
    s.to_cow()
        .map(|c| c.into_owned())
        .map_err(|e| e.to_string())
}

fn int_value(obj: &Bound<'_, PyAny>) -> Result<Value, String> {
    if let Ok(v) = obj.extract::<i64>() {
        return Ok(Value::Int(v));
    }
    if let Ok(v) = obj.extract::<u64>() {
        return Ok(Value::UInt(v));
    }
    if let Ok(v) = obj.extract::<i128>() {
        return Ok(Value::Int128(v));
    }
    if let Ok(v) = obj.extract::<u128>() {
        return Ok(Value::UInt128(v));
    }
    // Wider than 128 bits: the decimal text, which the encoder parses exactly (Int256 ...).
    text(obj).map(Value::String)
}

fn dict_value(d: &Bound<'_, PyDict>, t: &Types, depth: u32) -> Result<Value, String> {
    let mut fields: Vec<(String, Value)> = Vec::with_capacity(d.len());
    let mut pairs: Option<Vec<(Value, Value)>> = None;
    for (k, v) in d.iter() {
        let v = to_value(&v, t, depth + 1)?;
        match (&mut pairs, k.cast_exact::<PyString>()) {
            (None, Ok(s)) => fields.push((s.to_cow().map_err(|e| e.to_string())?.into_owned(), v)),
            (None, Err(_)) => {
                // A key that is not a string: a Map with typed keys.
                let mut p: Vec<(Value, Value)> = std::mem::take(&mut fields)
                    .into_iter()
                    .map(|(k, v)| (Value::String(k), v))
                    .collect();
                p.push((to_value(&k, t, depth + 1)?, v));
                pairs = Some(p);
            }
            (Some(p), _) => p.push((to_value(&k, t, depth + 1)?, v)),
        }
    }
    Ok(match pairs {
        Some(p) => Value::Map(p),
        None => Value::Object(fields),
    })
}

fn seq_values<'py>(
    items: impl Iterator<Item = Bound<'py, PyAny>>,
    t: &Types,
    depth: u32,
) -> Result<Vec<Value>, String> {
    items.map(|v| to_value(&v, t, depth + 1)).collect()
}

/// Whether `obj` is of a type of numpy's (its module is `numpy` or under it).
pub(super) fn type_module_is_numpy(obj: &Bound<'_, PyAny>) -> bool {
    obj.get_type()
        .getattr(intern!(obj.py(), "__module__"))
        .ok()
        .and_then(|m| m.cast_into::<PyString>().ok())
        .and_then(|m| {
            m.to_cow()
                .ok()
                .map(|m| m == "numpy" || m.starts_with("numpy."))
        })
        .unwrap_or(false)
}

/// Converts one Python value.
pub fn to_value(obj: &Bound<'_, PyAny>, t: &Types, depth: u32) -> Result<Value, String> {
    if depth > MAX_DEPTH {
        return Err("nested too deeply".to_owned());
    }
    let py = obj.py();
    // Exact built-in types first: the common case costs a pointer comparison.
    if let Ok(s) = obj.cast_exact::<PyString>() {
        return Ok(Value::String(
            s.to_cow().map_err(|e| e.to_string())?.into_owned(),
        ));
    }
    if obj.is_exact_instance_of::<PyInt>() {
        return int_value(obj);
    }
    if let Ok(f) = obj.cast_exact::<PyFloat>() {
        return Ok(Value::Float(f.value()));
    }
    if obj.is_none() {
        return Ok(Value::Null);
    }
    if let Ok(b) = obj.cast_exact::<PyBool>() {
        return Ok(Value::Bool(b.is_true()));
    }
    let tp = obj.get_type_ptr() as usize;
    if tp == t.addr[0] || tp == t.addr[1] || tp == t.addr[2] {
        let iso = obj
            .call_method0(intern!(py, "isoformat"))
            .map_err(|e| e.to_string())?;
        return text(&iso).map(Value::String);
    }
    if let Ok(d) = obj.cast_exact::<PyDict>() {
        return dict_value(d, t, depth);
    }
    if let Ok(l) = obj.cast_exact::<PyList>() {
        return seq_values(l.iter(), t, depth).map(Value::Array);
    }
    if let Ok(tu) = obj.cast_exact::<PyTuple>() {
        return seq_values(tu.iter(), t, depth).map(Value::Tuple);
    }
    if let Ok(b) = obj.cast_exact::<PyBytes>() {
        return Ok(Value::Bytes(b.as_bytes().to_vec()));
    }
    if t.addr[3..].contains(&tp) {
        return text(obj).map(Value::String);
    }
    slow_value(obj, t, depth)
}

/// Subclasses, numpy scalars and the rarer types.
fn slow_value(obj: &Bound<'_, PyAny>, t: &Types, depth: u32) -> Result<Value, String> {
    let py = obj.py();
    let is = |ty: &Py<PyType>| obj.is_instance(ty.bind(py)).unwrap_or(false);
    if is(&t.enum_) {
        let v = obj
            .getattr(intern!(py, "value"))
            .map_err(|e| e.to_string())?;
        return to_value(&v, t, depth + 1);
    }
    if obj.is_instance_of::<PyBool>() {
        return Ok(Value::Bool(obj.is_truthy().map_err(|e| e.to_string())?));
    }
    if obj.is_instance_of::<PyInt>() {
        return int_value(obj);
    }
    if obj.is_instance_of::<PyFloat>() {
        return obj
            .extract::<f64>()
            .map(Value::Float)
            .map_err(|e| e.to_string());
    }
    if let Ok(s) = obj.cast::<PyString>() {
        return Ok(Value::String(
            s.to_cow().map_err(|e| e.to_string())?.into_owned(),
        ));
    }
    if let Ok(b) = obj.cast::<PyBytes>() {
        return Ok(Value::Bytes(b.as_bytes().to_vec()));
    }
    if let Ok(b) = obj.cast::<PyByteArray>() {
        return Ok(Value::Bytes(b.to_vec()));
    }
    if is(&t.datetime) || is(&t.date) || is(&t.time) {
        let iso = obj
            .call_method0(intern!(py, "isoformat"))
            .map_err(|e| e.to_string())?;
        return text(&iso).map(Value::String);
    }
    if is(&t.timedelta) {
        return obj
            .call_method0(intern!(py, "total_seconds"))
            .and_then(|s| s.extract::<f64>())
            .map(Value::Float)
            .map_err(|e| e.to_string());
    }
    if is(&t.decimal) || is(&t.uuid) || is(&t.ipv4) || is(&t.ipv6) {
        return text(obj).map(Value::String);
    }
    if let Ok(d) = obj.cast::<PyDict>() {
        return dict_value(d, t, depth);
    }
    if let Ok(tu) = obj.cast::<PyTuple>() {
        // A named tuple: an object with its field names (for named Tuple columns).
        if let Ok(fields) = obj.getattr(intern!(py, "_fields"))
            && let Ok(fields) = fields.extract::<Vec<String>>()
            && fields.len() == tu.len()
        {
            let mut out = Vec::with_capacity(fields.len());
            for (name, v) in fields.into_iter().zip(tu.iter()) {
                out.push((name, to_value(&v, t, depth + 1)?));
            }
            return Ok(Value::Object(out));
        }
        return seq_values(tu.iter(), t, depth).map(Value::Tuple);
    }
    if let Ok(l) = obj.cast::<PyList>() {
        return seq_values(l.iter(), t, depth).map(Value::Array);
    }
    if let Ok(s) = obj.cast::<PySet>() {
        return seq_values(s.iter(), t, depth).map(Value::Array);
    }
    if let Ok(s) = obj.cast::<PyFrozenSet>() {
        return seq_values(s.iter(), t, depth).map(Value::Array);
    }
    if obj
        .get_type()
        .name()
        .map(|n| n == "memoryview")
        .unwrap_or(false)
    {
        return obj
            .call_method0(intern!(py, "tobytes"))
            .map_err(|e| e.to_string())?
            .cast::<PyBytes>()
            .map(|b| Value::Bytes(b.as_bytes().to_vec()))
            .map_err(|e| e.to_string());
    }
    if type_module_is_numpy(obj) {
        let name = obj
            .get_type()
            .name()
            .map(|n| n.to_string())
            .unwrap_or_default();
        if name == "datetime64" {
            let s = text(obj)?;
            return Ok(if s == "NaT" {
                Value::Null
            } else {
                Value::String(s)
            });
        }
        if name == "ndarray" {
            let l = obj
                .call_method0(intern!(py, "tolist"))
                .map_err(|e| e.to_string())?;
            return to_value(&l, t, depth + 1);
        }
        if let Ok(item) = obj.call_method0(intern!(py, "item"))
            && !item.is(obj)
        {
            return to_value(&item, t, depth + 1);
        }
    }
    let name = obj
        .get_type()
        .qualname()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".to_owned());
    Err(format!("unsupported Python type {name}"))
}
