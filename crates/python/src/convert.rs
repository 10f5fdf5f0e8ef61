//! Python objects to the engine's values.
//!
//! | Python | [`Value`] | lands in |
//! |---|---|---|
//! | `None` | `Null` | NULL, or the column's default when it is not `Nullable` |
//! | `bool` | `Bool` | Bool, integers |
//! | `int` | `Int`/`UInt` (64 bit), `Int128`/`UInt128`, else its decimal text | any integer width up to 256 bits, Decimal, Float |
//! | `float` | `Float` | Float32/64, Decimal |
//! | `str` | `String` | String, and anything ClickHouse can read from text |
//! | `bytes`, `bytearray`, `memoryview` | `Bytes` | String, FixedString (need not be UTF-8), UUID/IPv6 (16 bytes) |
//! | `datetime` | ISO text; naive ones are read in the column's time zone, aware ones keep their instant | DateTime, DateTime64, Date |
//! | `date`, `time` | ISO text | Date, Date32, DateTime*, String |
//! | `timedelta` | `Float` seconds | numbers |
//! | `Decimal`, `UUID`, `IPv4Address`, `IPv6Address` | their text (exact) | Decimal*, UUID, IPv4, IPv6, String |
//! | `enum.Enum` | its value | |
//! | `list`, `set` | `Array` | Array, positional Tuple, Map (as a list of pairs) |
//! | `tuple` | `Tuple`; a named tuple becomes an object with its field names | Tuple, Array |
//! | `dict` | `Object` (all keys `str`) or `Map` | Map, named Tuple, JSON |
//! | numpy scalars | their Python value (`datetime64` as ISO text, `NaT` as `None`) | |
//! | numpy arrays (nested) | `Array` | Array |

use chasync_core::DynInput;
use chasync_core::{ColumnBatch, ColumnData, DynRow, Strings, TypedColumn, TypedData, Value};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{
    PyBool, PyByteArray, PyBytes, PyDict, PyFloat, PyFrozenSet, PyInt, PyList, PySequence, PySet,
    PyString, PyTuple, PyType,
};

use crate::errors::PyConversion;

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

fn type_module_is_numpy(obj: &Bound<'_, PyAny>) -> bool {
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

/// What to do with a row the frontend cannot convert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    /// Raise `ConversionError`; nothing of the call is taken.
    Raise,
    /// Dead-letter the row with its reason (through the engine's spool); the others go on.
    DeadLetter,
}

/// One unit of work for the engine.
pub enum Item {
    /// Rows for the queue.
    Input(DynInput),
    /// A row that could not be converted, for the dead-letter spool.
    Reject {
        /// Why.
        reason: String,
        /// A readable copy of the row.
        record: String,
    },
}

impl Item {
    /// The rows it holds.
    pub fn rows(&self) -> usize {
        match self {
            Item::Input(DynInput::Row(_)) | Item::Reject { .. } => 1,
            Item::Input(DynInput::Columns(c)) => c.rows(),
        }
    }
}

/// Lets other threads (the event loop) take the GIL now and then during a long conversion on
/// a thread of its own. Native code holding the GIL is never asked to give it up, and releasing
/// it only to take it back at once starves the waiting thread (its timed wait restarts on every
/// release and never asks for a switch): a short pause lets it in. At most 0.1 ms per 2 ms of
/// work (~5%), only for conversions that run in the background.
pub struct Yielder {
    on: bool,
    n: u32,
    last: std::time::Instant,
}

impl Yielder {
    /// A yielder; `background` false makes it do nothing (conversions on the loop's thread).
    pub fn new(background: bool) -> Self {
        Self {
            on: background,
            n: 0,
            last: std::time::Instant::now(),
        }
    }

    /// Call once per converted item.
    #[inline]
    pub fn tick(&mut self, py: Python<'_>) {
        if !self.on {
            return;
        }
        self.n += 1;
        if self.n < 256 {
            return;
        }
        self.n = 0;
        if self.last.elapsed() >= std::time::Duration::from_millis(2) {
            py.detach(|| std::thread::sleep(std::time::Duration::from_micros(100)));
            self.last = std::time::Instant::now();
        }
    }
}

/// Runs of fewer rows with the same keys than this are sent as rows, longer ones as columns.
const MIN_COLUMNAR_RUN: usize = 8;

/// Capacity of a column's first vector in a run (it grows as the run does).
const FIRST_CAPACITY: usize = 16;

/// Most rows a column's vector is sized for at once after a chunk of a long run.
const MAX_CAPACITY: usize = 1 << 16;

/// The cells of one column of a [`Run`] so far.
///
/// A column starts typed: its first cell that is not `None` picks an [`Acc`] (`int`, `float`,
/// `str` or `bool`, exact types; or a `list` of such scalars, or a `dict` of `str` keys and
/// such scalar values, the items' kind picked by their first item that is not `None`), and
/// `None` cells (and items) are NULL in a null map, as in [`typed_range`]. A cell of another
/// kind (or one the accumulator cannot take: an `int` beyond 64 bits, a `str` that is not
/// UTF-8, a list of lists, a key that is not a `str` ...) turns the column into [`Value`]s: the
/// cells so far become the values they stand for ([`TypedColumn::value`], the values
/// [`to_value`] gives for them), and every later cell of the run is converted by
/// [`to_value`]. Either way the column means the same values, in the same order.
enum Cells {
    /// Every cell so far is `None` (the run's length of them).
    Nones,
    /// One kind of cell, with a null map (one byte per cell) once a `None` came.
    Typed { acc: Acc, nulls: Option<Vec<u8>> },
    /// Dynamic values.
    Values(Vec<Value>),
}

impl Cells {
    /// A fresh column: typed unless `values`.
    fn new(values: bool, cap: usize) -> Self {
        if values {
            Cells::Values(Vec::with_capacity(cap))
        } else {
            Cells::Nones
        }
    }

    /// Appends the cell of row `row` (the cells before it are rows `0..row`); `Err` with the
    /// reason when [`to_value`] refuses it, leaving the column's cells as they were (the
    /// columns before it in the row are cut back by [`Run::truncate`]).
    #[inline]
    fn push(
        &mut self,
        v: &Bound<'_, PyAny>,
        t: &Types,
        row: usize,
        cap: usize,
    ) -> Result<(), String> {
        match self {
            Cells::Values(values) => {
                values.push(to_value(v, t, 0)?);
                return Ok(());
            }
            Cells::Typed { acc, nulls } => {
                if v.is_none() {
                    acc.push_null();
                    nulls.get_or_insert_with(|| vec![0; row]).push(1);
                    return Ok(());
                }
                if acc.push(v) {
                    if let Some(n) = nulls {
                        n.push(0);
                    }
                    return Ok(());
                }
            }
            Cells::Nones => {
                if v.is_none() {
                    return Ok(());
                }
                if let Some(mut acc) = Acc::start_cell(v, cap.max(row + 1), row)
                    && acc.push(v)
                {
                    let nulls = (row > 0).then(|| {
                        let mut n = Vec::with_capacity(cap.max(row + 1));
                        n.resize(row, 1);
                        n.push(0);
                        n
                    });
                    *self = Cells::Typed { acc, nulls };
                    return Ok(());
                }
            }
        }
        // Not of the column's kind: the column becomes values.
        let mut values = self.take_values(row, cap);
        let pushed = to_value(v, t, 0).map(|v| values.push(v));
        *self = Cells::Values(values);
        pushed
    }

    /// The first `rows` cells as the values they stand for; leaves `Nones`.
    fn take_values(&mut self, rows: usize, cap: usize) -> Vec<Value> {
        match std::mem::replace(self, Cells::Nones) {
            Cells::Nones => {
                let mut v = Vec::with_capacity(cap.max(rows + 1));
                v.resize(rows, Value::Null);
                v
            }
            Cells::Typed { acc, nulls } => {
                let mut v = Vec::with_capacity(cap.max(rows + 1));
                if let Some(col) = typed_cells(acc, nulls) {
                    v.extend((0..rows).map(|r| col.value(r)));
                }
                v
            }
            Cells::Values(mut v) => {
                v.truncate(rows);
                v
            }
        }
    }

    /// Keeps the first `rows` cells (drops what a refused row left).
    fn truncate(&mut self, rows: usize) {
        match self {
            Cells::Nones => {}
            Cells::Typed { acc, nulls } => {
                acc.truncate(rows);
                if let Some(n) = nulls {
                    n.truncate(rows);
                }
            }
            Cells::Values(v) => v.truncate(rows),
        }
    }

    /// The column of `rows` cells, and the fresh column that follows it in the same run
    /// (values stay values: a column that changed kind does not try again).
    fn finish(&mut self, rows: usize, cap: usize) -> ColumnData {
        let next = Cells::new(matches!(self, Cells::Values(_)), cap);
        match std::mem::replace(self, next) {
            Cells::Nones => ColumnData::Values(vec![Value::Null; rows]),
            Cells::Typed { acc, nulls } => match typed_cells(acc, nulls) {
                Some(col) => ColumnData::Typed(col),
                None => ColumnData::Values(vec![Value::Null; rows]),
            },
            Cells::Values(v) => ColumnData::Values(v),
        }
    }
}

/// An accumulator and its null map as a typed column.
fn typed_cells(acc: Acc, nulls: Option<Vec<u8>>) -> Option<TypedColumn> {
    let col = TypedColumn::new(acc.finish()?);
    Some(match nulls {
        Some(n) => col.with_nulls(n),
        None => col,
    })
}

/// Consecutive rows with the same keys in the same order, kept column by column (one key
/// string per column instead of one per row; see [`Cells`]).
struct Run<'py> {
    keys: Vec<Bound<'py, PyAny>>,
    names: Vec<String>,
    cols: Vec<Cells>,
    len: usize,
    /// Capacity for the next vectors of the columns.
    cap: usize,
}

impl<'py> Run<'py> {
    fn new(n: usize) -> Self {
        Self {
            keys: Vec::with_capacity(n),
            names: Vec::with_capacity(n),
            cols: Vec::with_capacity(n),
            len: 0,
            cap: FIRST_CAPACITY,
        }
    }

    /// Drops the cells a refused row left.
    fn truncate(&mut self) {
        for c in &mut self.cols {
            c.truncate(self.len);
        }
    }

    /// Emits the rows so far (as one columnar batch, or as rows when there are few) and
    /// starts the next chunk of the same run.
    fn flush(&mut self, chunk_rows: usize, out: &mut Vec<Item>) {
        let len = std::mem::take(&mut self.len);
        let cap = self.cap;
        if len >= chunk_rows {
            // A long run: size the next chunk for a whole one.
            self.cap = chunk_rows.clamp(FIRST_CAPACITY, MAX_CAPACITY);
        }
        if len == 0 {
            for c in &mut self.cols {
                c.finish(0, cap);
            }
            return;
        }
        let next_cap = self.cap;
        let cols = self.cols.iter_mut().map(|c| c.finish(len, next_cap));
        if len >= MIN_COLUMNAR_RUN {
            let mut batch = ColumnBatch::new();
            for (name, data) in self.names.iter().zip(cols) {
                batch.push_data(name.clone(), data);
            }
            out.push(Item::Input(DynInput::Columns(batch)));
        } else {
            let mut rows: Vec<DynRow> = (0..len)
                .map(|_| DynRow::with_capacity(self.names.len()))
                .collect();
            for (name, data) in self.names.iter().zip(cols) {
                let values = match data {
                    ColumnData::Values(v) => v,
                    other => other.to_values(),
                };
                for (row, v) in rows.iter_mut().zip(values) {
                    row.push(name.clone(), v);
                }
            }
            out.extend(rows.into_iter().map(|r| Item::Input(DynInput::Row(r))));
        }
    }
}

/// Whether dict key `k` is the run's key `key` (named `name`): the same object, or a `str`
/// of the same text (compared as UTF-8 bytes, without a call through `==`).
fn same_key(k: &Bound<'_, PyAny>, key: &Bound<'_, PyAny>, name: &str) -> bool {
    k.is(key)
        || k.cast_exact::<PyString>()
            .is_ok_and(|s| s.to_str().is_ok_and(|s| s == name))
}

/// Converts rows (dicts) into engine inputs: runs of rows with the same keys become columnar
/// batches of at most `chunk_rows` rows (typed columns where a column's cells are of one
/// kind, see `Cells`), the others single rows.
pub fn convert_rows<'py>(
    rows: impl Iterator<Item = Bound<'py, PyAny>>,
    on_error: OnError,
    chunk_rows: usize,
    first_row: usize,
    background: bool,
) -> Result<Vec<Item>, PyConversion> {
    let mut out = Vec::new();
    let mut yielder = Yielder::new(background);
    let mut run: Option<Run<'py>> = None;
    let mut types_ref: Option<&Types> = None;
    // Chunks that short are sent as rows: no point in typed columns.
    let values_only = chunk_rows < MIN_COLUMNAR_RUN;
    for (i, obj) in rows.enumerate() {
        let py = obj.py();
        yielder.tick(py);
        let t = match types_ref {
            Some(t) => t,
            None => {
                let t = types(py).map_err(|e| PyConversion {
                    row: first_row + i,
                    column: None,
                    value: String::new(),
                    reason: e.to_string(),
                })?;
                types_ref = Some(t);
                t
            }
        };
        let fail = |column: Option<String>, reason: String, out: &mut Vec<Item>| {
            let err = PyConversion {
                row: first_row + i,
                column,
                value: String::new(),
                reason,
            };
            match on_error {
                OnError::Raise => Err(err),
                OnError::DeadLetter => {
                    out.push(Item::Reject {
                        reason: match &err.column {
                            Some(c) => format!("column `{c}`: {}", err.reason),
                            None => err.reason.clone(),
                        },
                        record: short_repr(&obj, 10_000),
                    });
                    Ok(())
                }
            }
        };
        let Ok(dict) = obj.cast::<PyDict>() else {
            let reason = format!(
                "a row must be a dict, got {}",
                obj.get_type()
                    .qualname()
                    .map(|n| n.to_string())
                    .unwrap_or_default()
            );
            fail(None, reason, &mut out).map_err(|mut e| {
                e.value = short_repr(&obj, 200);
                e
            })?;
            continue;
        };
        // Try the open run: same keys in the same order.
        if let Some(r) = &mut run
            && dict.len() == r.keys.len()
        {
            let mut matched = true;
            let mut refused = None;
            for (j, (k, v)) in dict.iter().enumerate() {
                if !same_key(&k, &r.keys[j], &r.names[j]) {
                    matched = false;
                    break;
                }
                if let Err(reason) = r.cols[j].push(&v, t, r.len, r.cap) {
                    refused = Some((j, v, reason));
                    break;
                }
            }
            if matched && refused.is_none() {
                r.len += 1;
                if r.len >= chunk_rows {
                    r.flush(chunk_rows, &mut out);
                }
                continue;
            }
            r.truncate();
            if let Some((j, v, reason)) = refused {
                let col = r.names[j].clone();
                fail(Some(col), reason, &mut out).map_err(|mut e| {
                    e.value = short_repr(&v, 200);
                    e
                })?;
                continue;
            }
        }
        // A new run starts with this row.
        if let Some(mut r) = run.take() {
            r.flush(chunk_rows, &mut out);
        }
        let mut r = Run::new(dict.len());
        let mut ok = true;
        for (k, v) in dict.iter() {
            let name = match k.cast::<PyString>() {
                Ok(s) => s
                    .to_cow()
                    .map(|c| c.into_owned())
                    .map_err(|e| e.to_string()),
                Err(_) => Err(format!(
                    "a column name must be a str, got {}",
                    short_repr(&k, 50)
                )),
            };
            let name = match name {
                Ok(n) => n,
                Err(reason) => {
                    fail(None, reason, &mut out).map_err(|mut e| {
                        e.value = short_repr(&k, 200);
                        e
                    })?;
                    ok = false;
                    break;
                }
            };
            let mut cells = Cells::new(values_only, r.cap);
            if let Err(reason) = cells.push(&v, t, 0, r.cap) {
                fail(Some(name), reason, &mut out).map_err(|mut e| {
                    e.value = short_repr(&v, 200);
                    e
                })?;
                ok = false;
                break;
            }
            r.keys.push(k);
            r.names.push(name);
            r.cols.push(cells);
        }
        if ok {
            r.len = 1;
            if r.len >= chunk_rows {
                r.flush(chunk_rows, &mut out);
            }
            run = Some(r);
        }
    }
    if let Some(mut r) = run.take() {
        r.flush(chunk_rows, &mut out);
    }
    Ok(out)
}

/// One column of columnar input, taken from Python and ready to become values without the
/// GIL where possible.
pub enum RawColumn {
    /// A list or tuple (other iterables are made lists first), converted a chunk of rows at
    /// a time: each piece typed when its items allow it (`typed_range`), values otherwise.
    Pieces(Vec<ColumnData>),
    /// A 1-D numpy array of a fixed-width type: its dtype text (`<i8`, `<M8[ns]` ...) and bytes.
    Numpy {
        /// `dtype.str`.
        dtype: String,
        /// `arr.tobytes()`.
        bytes: Vec<u8>,
    },
}

/// Takes the columns of a dict: numpy arrays of numbers, booleans and datetimes by their
/// bytes (converted later without the GIL); lists and tuples `chunk_rows` items at a time,
/// each piece in one loop into a typed column when its items are all ints, all floats, all
/// str, all bools (and `None`), or lists or dicts of such, value by value otherwise; other
/// iterables as the list of their items.
pub fn take_columns(
    dict: &Bound<'_, PyDict>,
    chunk_rows: usize,
    background: bool,
) -> Result<Vec<(String, RawColumn)>, PyConversion> {
    let py = dict.py();
    let t = types(py).map_err(|e| PyConversion {
        row: 0,
        column: None,
        value: String::new(),
        reason: e.to_string(),
    })?;
    let mut out = Vec::with_capacity(dict.len());
    for (k, v) in dict.iter() {
        let name: String = k
            .cast::<PyString>()
            .map_err(|_| PyConversion {
                row: 0,
                column: None,
                value: short_repr(&k, 200),
                reason: "a column name must be a str".to_owned(),
            })?
            .to_cow()
            .map(|c| c.into_owned())
            .map_err(|e| PyConversion {
                row: 0,
                column: None,
                value: String::new(),
                reason: e.to_string(),
            })?;
        let col =
            take_column(&v, t, chunk_rows.max(1), background).map_err(|(row, value, reason)| {
                PyConversion {
                    row,
                    column: Some(name.clone()),
                    value,
                    reason,
                }
            })?;
        out.push((name, col));
    }
    Ok(out)
}

type ColumnError = (usize, String, String);

/// A list or tuple in pieces of `chunk_rows` items ([`RawColumn::Pieces`]).
fn take_pieces(
    seq: &Bound<'_, PySequence>,
    t: &Types,
    chunk_rows: usize,
    background: bool,
) -> Result<RawColumn, ColumnError> {
    let n = seq
        .len()
        .map_err(|e| (0, short_repr(seq, 200), e.to_string()))?;
    let mut pieces = Vec::with_capacity(n.div_ceil(chunk_rows));
    let mut lo = 0;
    while lo < n {
        let hi = (lo + chunk_rows).min(n);
        let piece = match typed_range(seq, lo..hi, background)
            .map_err(|r| (lo, String::new(), r))?
        {
            Some(col) => ColumnData::Typed(col),
            None => {
                let py = seq.py();
                let mut out = Vec::with_capacity(hi - lo);
                let mut yielder = Yielder::new(background);
                for i in lo..hi {
                    yielder.tick(py);
                    let item = seq
                        .get_item(i)
                        .map_err(|e| (i, String::new(), e.to_string()))?;
                    out.push(to_value(&item, t, 0).map_err(|r| (i, short_repr(&item, 200), r))?);
                }
                ColumnData::Values(out)
            }
        };
        pieces.push(piece);
        lo = hi;
    }
    Ok(RawColumn::Pieces(pieces))
}

fn take_column(
    v: &Bound<'_, PyAny>,
    t: &Types,
    chunk_rows: usize,
    background: bool,
) -> Result<RawColumn, ColumnError> {
    let py = v.py();
    let whole = |reason: String| (0usize, short_repr(v, 200), reason);
    if v.is_instance_of::<PyList>() || v.is_instance_of::<PyTuple>() {
        let seq = v.cast::<PySequence>().map_err(|e| whole(e.to_string()))?;
        return take_pieces(seq, t, chunk_rows, background);
    }
    if type_module_is_numpy(v) && v.hasattr(intern!(py, "dtype")).unwrap_or(false) {
        let ndim: usize = v
            .getattr(intern!(py, "ndim"))
            .and_then(|n| n.extract())
            .unwrap_or(0);
        let dtype: String = v
            .getattr(intern!(py, "dtype"))
            .and_then(|d| d.getattr(intern!(py, "str")))
            .and_then(|s| s.extract())
            .map_err(|e| whole(e.to_string()))?;
        let kind = dtype.as_bytes().get(1).copied().unwrap_or(b'O');
        if ndim == 1 && matches!(kind, b'b' | b'i' | b'u' | b'f' | b'M') && dtype != "<f2" {
            let bytes = v
                .call_method0(intern!(py, "tobytes"))
                .map_err(|e| whole(e.to_string()))?;
            let bytes = bytes.cast::<PyBytes>().map_err(|e| whole(e.to_string()))?;
            return Ok(RawColumn::Numpy {
                dtype,
                bytes: bytes.as_bytes().to_vec(),
            });
        }
        let list = v
            .call_method0(intern!(py, "tolist"))
            .map_err(|e| whole(e.to_string()))?;
        return take_column(&list, t, chunk_rows, background);
    }
    // pandas Series and the like.
    if v.hasattr(intern!(py, "to_numpy")).unwrap_or(false)
        && let Ok(arr) = v.call_method0(intern!(py, "to_numpy"))
        && type_module_is_numpy(&arr)
    {
        return take_column(&arr, t, chunk_rows, background);
    }
    if v.is_instance_of::<PyString>()
        || v.is_instance_of::<PyBytes>()
        || v.is_instance_of::<PyDict>()
    {
        return Err(whole(
            "a column must be a list, tuple or array of values".to_owned(),
        ));
    }
    let items = v
        .try_iter()
        .and_then(|iter| iter.collect::<PyResult<Vec<_>>>())
        .and_then(|items| PyList::new(py, items))
        .map_err(|e| whole(e.to_string()))?;
    take_pieces(items.as_sequence(), t, chunk_rows, background)
}

/// The items of a list converted into one typed vector.
enum Acc {
    Empty,
    I64(Vec<i64>),
    U64(Vec<u64>),
    F64(Vec<f64>),
    Str(Strings),
    Bool(Vec<bool>),
    /// `list` cells of scalar items ([`TypedData::List`]).
    List {
        offsets: Vec<u64>,
        items: Box<Items>,
    },
    /// `dict` cells of `str` keys and scalar values ([`TypedData::Map`] of objects).
    Object {
        offsets: Vec<u64>,
        keys: Strings,
        values: Box<Items>,
    },
}

/// The items of the lists (or the values of the dicts) of an [`Acc`]: scalars of one kind
/// (exact `int`, `float`, `str` or `bool`, as [`Acc::start`] takes them), `None` items NULL
/// in a null map; the kind is unknown until the first item that is not `None`.
struct Items {
    acc: Acc,
    nulls: Option<Vec<u8>>,
    len: usize,
}

impl Items {
    /// No items yet (of a kind still unknown).
    fn new() -> Self {
        Self {
            acc: Acc::Empty,
            nulls: None,
            len: 0,
        }
    }

    /// Appends an item; `false` (leaving the items as they were) when it is not of their kind.
    #[inline]
    fn push(&mut self, item: &Bound<'_, PyAny>) -> bool {
        if item.is_none() {
            self.acc.push_null();
            self.nulls.get_or_insert_with(|| vec![0; self.len]).push(1);
        } else {
            if let Acc::Empty = self.acc {
                match Acc::start(item, (self.len + 1).max(FIRST_CAPACITY), self.len) {
                    Some(a) => self.acc = a,
                    None => return false,
                }
            }
            if !self.acc.push(item) {
                return false;
            }
            if let Some(n) = &mut self.nulls {
                n.push(0);
            }
        }
        self.len += 1;
        true
    }

    /// Keeps the first `n` items.
    fn truncate(&mut self, n: usize) {
        self.acc.truncate(n);
        if let Some(nulls) = &mut self.nulls {
            nulls.truncate(n);
        }
        self.len = self.len.min(n);
    }

    /// The items as a typed column (NULL `Int64`s when every item is `None`).
    fn finish(self) -> TypedColumn {
        let len = self.len;
        let col = TypedColumn::new(
            self.acc
                .finish()
                .unwrap_or_else(|| TypedData::Int64(vec![0; len])),
        );
        match self.nulls {
            Some(n) => col.with_nulls(n),
            None => col,
        }
    }
}

impl Acc {
    /// Starts the vector of a column's cells with the first one that is not `None`, after
    /// `nones` of them: a scalar ([`Acc::start`]), a `list` or a `dict`.
    fn start_cell(item: &Bound<'_, PyAny>, cap: usize, nones: usize) -> Option<Acc> {
        let mut acc = if item.is_exact_instance_of::<PyList>() {
            Acc::List {
                offsets: Vec::with_capacity(cap + 1),
                items: Box::new(Items::new()),
            }
        } else if item.is_exact_instance_of::<PyDict>() {
            Acc::Object {
                offsets: Vec::with_capacity(cap + 1),
                keys: Strings::with_capacity(cap, cap * 8),
                values: Box::new(Items::new()),
            }
        } else {
            return Acc::start(item, cap, nones);
        };
        if let Acc::List { offsets, .. } | Acc::Object { offsets, .. } = &mut acc {
            offsets.resize(nones + 1, 0);
        }
        Some(acc)
    }

    /// Starts the vector with the first item that is not `None`, after `nones` of them.
    fn start(item: &Bound<'_, PyAny>, cap: usize, nones: usize) -> Option<Acc> {
        let mut acc = if item.is_exact_instance_of::<PyInt>() {
            Acc::I64(Vec::with_capacity(cap))
        } else if item.is_exact_instance_of::<PyFloat>() {
            Acc::F64(Vec::with_capacity(cap))
        } else if item.is_exact_instance_of::<PyString>() {
            Acc::Str(Strings::with_capacity(cap, cap * 8))
        } else if item.is_exact_instance_of::<PyBool>() {
            Acc::Bool(Vec::with_capacity(cap))
        } else {
            return None;
        };
        for _ in 0..nones {
            acc.push_null();
        }
        Some(acc)
    }

    fn push_null(&mut self) {
        match self {
            Acc::Empty => {}
            Acc::I64(v) => v.push(0),
            Acc::U64(v) => v.push(0),
            Acc::F64(v) => v.push(0.0),
            Acc::Str(s) => s.push(b""),
            Acc::Bool(v) => v.push(false),
            Acc::List { offsets, .. } | Acc::Object { offsets, .. } => {
                let end = offsets.last().copied().unwrap_or(0);
                offsets.push(end);
            }
        }
    }

    /// Appends an item; `false` when it is not of the vector's kind.
    #[inline]
    fn push(&mut self, item: &Bound<'_, PyAny>) -> bool {
        match self {
            Acc::I64(v) => {
                if !item.is_exact_instance_of::<PyInt>() {
                    return false;
                }
                if let Ok(x) = item.extract::<i64>() {
                    v.push(x);
                    return true;
                }
                // Beyond i64: unsigned, if nothing so far is negative.
                let Ok(x) = item.extract::<u64>() else {
                    return false;
                };
                if v.iter().any(|&y| y < 0) {
                    return false;
                }
                let mut u: Vec<u64> = Vec::with_capacity(v.capacity());
                u.extend(v.iter().map(|&y| y as u64));
                u.push(x);
                *self = Acc::U64(u);
                true
            }
            Acc::U64(v) => {
                if !item.is_exact_instance_of::<PyInt>() {
                    return false;
                }
                match item.extract::<u64>() {
                    Ok(x) => {
                        v.push(x);
                        true
                    }
                    Err(_) => false,
                }
            }
            Acc::F64(v) => match item.cast_exact::<PyFloat>() {
                Ok(f) => {
                    v.push(f.value());
                    true
                }
                Err(_) => false,
            },
            // The str's own UTF-8 (kept by the str itself), no bytes object per cell.
            Acc::Str(s) => match item.cast_exact::<PyString>() {
                Ok(t) => match t.to_str() {
                    Ok(b) => {
                        s.push(b.as_bytes());
                        true
                    }
                    Err(_) => false,
                },
                Err(_) => false,
            },
            Acc::Bool(v) => match item.cast_exact::<PyBool>() {
                Ok(b) => {
                    v.push(b.is_true());
                    true
                }
                Err(_) => false,
            },
            Acc::List { offsets, items } => {
                let Ok(list) = item.cast_exact::<PyList>() else {
                    return false;
                };
                let start = items.len;
                for x in list.iter() {
                    if !items.push(&x) {
                        items.truncate(start);
                        return false;
                    }
                }
                offsets.push(items.len as u64);
                true
            }
            Acc::Object {
                offsets,
                keys,
                values,
            } => {
                let Ok(dict) = item.cast_exact::<PyDict>() else {
                    return false;
                };
                let start = values.len;
                for (k, v) in dict.iter() {
                    let key = k
                        .cast_exact::<PyString>()
                        .ok()
                        .and_then(|k| k.to_str().ok());
                    let Some(key) = key.filter(|_| values.push(&v)) else {
                        // Not a str key, or a value of another kind: as it was.
                        values.truncate(start);
                        truncate_strings(keys, start);
                        return false;
                    };
                    keys.push(key.as_bytes());
                }
                offsets.push(values.len as u64);
                true
            }
            Acc::Empty => false,
        }
    }

    /// Keeps the first `n` items.
    fn truncate(&mut self, n: usize) {
        match self {
            Acc::Empty => {}
            Acc::I64(v) => v.truncate(n),
            Acc::U64(v) => v.truncate(n),
            Acc::F64(v) => v.truncate(n),
            Acc::Str(s) => truncate_strings(s, n),
            Acc::Bool(v) => v.truncate(n),
            Acc::List { offsets, items } => {
                if offsets.len() > n + 1 {
                    offsets.truncate(n + 1);
                    items.truncate(offsets[n] as usize);
                }
            }
            Acc::Object {
                offsets,
                keys,
                values,
            } => {
                if offsets.len() > n + 1 {
                    offsets.truncate(n + 1);
                    values.truncate(offsets[n] as usize);
                    truncate_strings(keys, offsets[n] as usize);
                }
            }
        }
    }

    fn finish(self) -> Option<TypedData> {
        Some(match self {
            Acc::Empty => return None,
            Acc::I64(v) => TypedData::Int64(v),
            Acc::U64(v) => TypedData::UInt64(v),
            Acc::F64(v) => TypedData::Float64(v),
            Acc::Str(s) => TypedData::String(s),
            Acc::Bool(v) => TypedData::Bool(v),
            Acc::List { offsets, items } => TypedData::List {
                offsets,
                values: Box::new(items.finish()),
            },
            Acc::Object {
                offsets,
                keys,
                values,
            } => TypedData::Map {
                offsets,
                keys: Box::new(TypedColumn::from(keys)),
                values: Box::new(values.finish()),
                objects: true,
            },
        })
    }
}

/// Keeps the first `n` strings.
fn truncate_strings(s: &mut Strings, n: usize) {
    if s.len() > n {
        s.offsets.truncate(n + 1);
        s.data.truncate(s.offsets[n] as usize);
    }
}

/// Items [`fetch`] takes at a time.
const FETCH_ROWS: usize = 256;

/// The items `range` of a sequence into `out`, in a tight loop that has many of them in flight
/// at once, with a prefetch of each one's next 48 bytes (a `str`'s length, state and first
/// characters lie there); whether they are scattered in memory: more than one in eight
/// farther than [`NEAR`] bytes from the one before (`None`, one object, left out).
///
/// A list's objects are often far apart in memory: a dict of lists made from rows spreads a
/// column's objects over all the rows' memory, and each one is then a cache miss. The
/// conversion does too much per item for the processor to fetch more than one or two ahead;
/// this loop does little else, and the conversion then finds them in the cache. Measured on
/// the dict of lists of a million wide rows made from parsed JSON, `write_columns`: 2.2 s
/// reading the items one by one as they are converted, 1.7–1.8 s fetched ahead like this.
/// Objects one after the other in memory (a list of numbers made in a loop) are fetched
/// ahead by the processor itself, and this loop would only cost time.
fn fetch<'py>(
    seq: &Bound<'py, PySequence>,
    range: std::ops::Range<usize>,
    out: &mut Vec<Bound<'py, PyAny>>,
) -> Result<bool, String> {
    let n = range.len();
    let mut far = 0;
    let mut last = 0usize;
    for at in range {
        let item = seq.get_item(at).map_err(|e| e.to_string())?;
        if !item.is_none() {
            let p = item.as_ptr();
            prefetch(p.cast::<i8>().wrapping_add(48));
            far += usize::from((p as usize).abs_diff(last) > NEAR);
            last = p as usize;
        }
        out.push(item);
    }
    Ok(far * 8 > n)
}

/// Objects closer than this to the one before count as near in [`fetch`].
const NEAR: usize = 512;

/// Asks the processor to bring the cache line of `p` in (a hint: nothing on other targets).
#[inline(always)]
#[allow(unsafe_code)]
fn prefetch(p: *const i8) {
    // SAFETY: a prefetch is a hint that never reads memory into the program nor faults,
    // whatever the address; SSE, which it needs, is part of every x86-64 processor.
    #[cfg(target_arch = "x86_64")]
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p)
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Items `range` of a list or tuple, when they are all `int` (64-bit), all `float`, all
/// `str` or all `bool` (exact types; `None` anywhere is NULL), or all lists of such scalars,
/// or all dicts of `str` keys and such scalar values (see [`Cells`]), converted in one loop
/// into a typed column.
/// `None` when an item is of another kind (or every item is `None`): the caller converts
/// them value by value, which gives the same result more slowly.
fn typed_range(
    seq: &Bound<'_, PySequence>,
    range: std::ops::Range<usize>,
    background: bool,
) -> Result<Option<TypedColumn>, String> {
    let py = seq.py();
    let n = range.len();
    let mut acc = Acc::Empty;
    let mut nones = 0usize;
    let mut nulls: Option<Vec<u8>> = None;
    let mut yielder = Yielder::new(background);
    // An item into the column; `false` when it is of another kind than the ones before.
    let mut i = 0;
    let mut step = |item: &Bound<'_, PyAny>| {
        let row = i;
        i += 1;
        if row == FETCH_ROWS
            && let Acc::Str(s) = &mut acc
        {
            // The text of the rest at the first rows' mean length, an eighth more: one
            // allocation instead of doubling from 8 bytes a string (copies and fresh pages).
            let rest = s.data.len() / row * (n - row);
            s.data.reserve(rest + rest / 8);
        }
        if item.is_none() {
            nulls.get_or_insert_with(|| vec![0; n])[row] = 1;
            match acc {
                Acc::Empty => nones += 1,
                ref mut a => a.push_null(),
            }
            return true;
        }
        if let Acc::Empty = acc {
            match Acc::start_cell(item, n, nones) {
                Some(a) => acc = a,
                None => return false,
            }
        }
        acc.push(item)
    };
    // Fetched ahead while the items are scattered in memory, one by one once they are not.
    let mut block = Vec::with_capacity(FETCH_ROWS.min(n));
    let mut scattered = true;
    let mut at = range.start;
    while at < range.end {
        if scattered {
            let hi = (at + FETCH_ROWS).min(range.end);
            scattered = fetch(seq, at..hi, &mut block)?;
            for item in block.drain(..) {
                yielder.tick(py);
                if !step(&item) {
                    return Ok(None);
                }
            }
            at = hi;
        } else {
            yielder.tick(py);
            let item = seq.get_item(at).map_err(|e| e.to_string())?;
            if !step(&item) {
                return Ok(None);
            }
            at += 1;
        }
    }
    let Some(data) = acc.finish() else {
        return Ok(None);
    };
    let mut col = TypedColumn::new(data);
    if let Some(nulls) = nulls {
        col = col.with_nulls(nulls);
    }
    Ok(Some(col))
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

/// The wall-clock text (no offset: read in the column's time zone) of nanoseconds since the
/// epoch, e.g. `2026-11-24T10:00:00.25`.
pub fn civil_text(nanos: i128) -> Result<String, String> {
    let ts = jiff::Timestamp::from_nanosecond(nanos).map_err(|e| e.to_string())?;
    Ok(jiff::tz::TimeZone::UTC.to_datetime(ts).to_string())
}

/// The RFC 3339 text of an instant (nanoseconds since the epoch), e.g.
/// `2026-11-24T09:00:00.25Z`.
pub fn instant_text(nanos: i128) -> Result<String, String> {
    let ts = jiff::Timestamp::from_nanosecond(nanos).map_err(|e| e.to_string())?;
    Ok(ts.to_string())
}

/// A column cut into pieces of `chunk_rows` rows (the last one shorter; none when empty).
pub fn pieces(data: ColumnData, chunk_rows: usize) -> Vec<ColumnData> {
    let n = data.len();
    let chunk_rows = chunk_rows.max(1);
    if n == 0 {
        return Vec::new();
    }
    if n <= chunk_rows {
        return vec![data];
    }
    match data {
        ColumnData::Values(values) => {
            let mut it = values.into_iter();
            (0..n.div_ceil(chunk_rows))
                .map(|_| ColumnData::Values(it.by_ref().take(chunk_rows).collect()))
                .collect()
        }
        other => (0..n)
            .step_by(chunk_rows)
            .map(|lo| other.slice(lo..(lo + chunk_rows).min(n)))
            .collect(),
    }
}

/// Batches of columns already in pieces of the same rows (see [`pieces`]): batch `i` holds
/// piece `i` of every column.
pub fn zip_pieces(cols: Vec<(String, Vec<ColumnData>)>) -> Vec<ColumnBatch> {
    let count = cols.iter().map(|(_, p)| p.len()).max().unwrap_or(0);
    let mut batches: Vec<ColumnBatch> = (0..count).map(|_| ColumnBatch::new()).collect();
    for (name, column) in cols {
        for (b, piece) in batches.iter_mut().zip(column) {
            b.push_data(name.clone(), piece);
        }
    }
    batches
}

#[cfg(test)]
mod tests {
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

    #[test]
    fn chunks() {
        let cols = vec![
            (
                "a".to_owned(),
                ColumnData::Values((0..5).map(Value::from).collect::<Vec<_>>()),
            ),
            (
                "b".to_owned(),
                ColumnData::Values((10..15).map(Value::from).collect()),
            ),
            (
                "c".to_owned(),
                ColumnData::from((20..25).collect::<Vec<u64>>()),
            ),
        ];
        let b = zip_pieces(
            cols.into_iter()
                .map(|(name, data)| (name, pieces(data, 2)))
                .collect(),
        );
        assert_eq!(b.len(), 3);
        assert_eq!(b[2].rows(), 1);
        assert_eq!(
            b[1].columns[1].1,
            ColumnData::Values(vec![Value::Int(12), Value::Int(13)])
        );
        assert_eq!(b[1].columns[2].1, ColumnData::from(vec![22u64, 23]));
        assert_eq!(b[2].columns[2].1, ColumnData::from(vec![24u64]));
        assert_eq!(civil_text(250_000_000).unwrap(), "1970-01-01T00:00:00.25");
        assert_eq!(instant_text(0).unwrap(), "1970-01-01T00:00:00Z");
    }

    /// Rows of the same keys through [`convert_rows`], against the values [`to_value`] gives
    /// cell by cell (what every run was before typed columns): `None` for a refused row.
    mod dict_runs {
        use std::ffi::CStr;

        use super::*;

        type Row = Vec<(String, Value)>;

        /// `UInt` within `i64` as `Int`: an accumulator that went unsigned keeps its earlier
        /// (non-negative) ints as `UInt`, which every column type reads the same.
        fn norm(v: Value) -> Value {
            match v {
                Value::UInt(u) if u <= i64::MAX as u64 => Value::Int(u as i64),
                Value::Array(items) => Value::Array(items.into_iter().map(norm).collect()),
                Value::Object(fields) => {
                    Value::Object(fields.into_iter().map(|(k, v)| (k, norm(v))).collect())
                }
                other => other,
            }
        }

        fn reference(rows: &Bound<'_, PyAny>) -> Vec<Option<Row>> {
            let t = types(rows.py()).unwrap();
            rows.try_iter()
                .unwrap()
                .map(|r| {
                    let r = r.unwrap();
                    let d = r.cast::<PyDict>().ok()?;
                    d.iter()
                        .map(|(k, v)| {
                            let k = k.cast::<PyString>().ok()?.to_cow().ok()?.into_owned();
                            Some((k, norm(to_value(&v, t, 0).ok()?)))
                        })
                        .collect()
                })
                .collect()
        }

        fn flatten(items: Vec<Item>) -> Vec<Option<Row>> {
            let mut out = Vec::new();
            for item in items {
                match item {
                    Item::Reject { .. } => out.push(None),
                    Item::Input(DynInput::Row(r)) => out.push(Some(
                        r.fields.into_iter().map(|(k, v)| (k, norm(v))).collect(),
                    )),
                    Item::Input(DynInput::Columns(b)) => {
                        for row in 0..b.rows() {
                            out.push(Some(
                                b.columns
                                    .iter()
                                    .map(|(k, c)| (k.clone(), norm(c.value(row).unwrap())))
                                    .collect(),
                            ));
                        }
                    }
                }
            }
            out
        }

        fn batches(items: &[Item]) -> Vec<&ColumnBatch> {
            items
                .iter()
                .filter_map(|i| match i {
                    Item::Input(DynInput::Columns(b)) => Some(b),
                    _ => None,
                })
                .collect()
        }

        fn typed(b: &ColumnBatch, name: &str) -> bool {
            let (_, c) = b.columns.iter().find(|(n, _)| n == name).unwrap();
            matches!(c, ColumnData::Typed(_))
        }

        fn check(code: &CStr, chunk: usize, each: impl FnOnce(&[Item])) {
            Python::initialize();
            Python::attach(|py| {
                let rows = py.eval(code, None, None).unwrap();
                let want = reference(&rows);
                let items = convert_rows(
                    rows.try_iter().unwrap().map(Result::unwrap),
                    OnError::DeadLetter,
                    chunk,
                    0,
                    false,
                )
                .unwrap();
                each(&items);
                // Refused rows go out at once, the rows of a run when it closes: compare the
                // rows taken, in order, and count the refused ones.
                let (got_ok, got_refused): (Vec<_>, Vec<_>) =
                    flatten(items).into_iter().partition(Option::is_some);
                let (want_ok, want_refused): (Vec<_>, Vec<_>) =
                    want.into_iter().partition(Option::is_some);
                assert_eq!(got_ok, want_ok);
                assert_eq!(got_refused.len(), want_refused.len());
            });
        }

        #[test]
        fn columns_that_change_kind_keep_every_value_in_order() {
            let code = c"[{'id': i, \
                'v': i if i < 20 else (f's{i}' if i < 40 else None), \
                'f': float(i) if i % 7 else i, \
                'b': (i % 2 == 0) if i < 30 else i, \
                'n': None if i < 25 else i, \
                'nn': None if i % 3 else 'x', \
                'u': 2**63 + i if i > 10 else i, \
                'neg': -1 if i == 0 else (2**64 - 1 if i == 5 else i), \
                'big': 2**70 if i == 33 else -i, \
                'nest': [i, {'k': i}], \
                's': 'x' * (i % 5) + ('é' if i % 4 else ''), \
                'none': None} for i in range(100)]";
            check(code, 16, |items| {
                let b = batches(items);
                assert_eq!(b.len(), 6, "6 chunks of 16, then 4 rows");
                for name in ["id", "s", "u", "nn"] {
                    assert!(b.iter().all(|c| typed(c, name)), "{name}");
                }
                // int then str: values from there on, in the next chunks too
                assert!(typed(b[0], "v") && !typed(b[1], "v") && !typed(b[3], "v"));
                // None first, then ints
                assert!(!typed(b[0], "n") && typed(b[1], "n") && typed(b[2], "n"));
                // bool, then an int
                assert!(typed(b[0], "b") && !typed(b[1], "b"));
                assert!(!typed(b[0], "f") && !typed(b[0], "nest") && !typed(b[0], "none"));
            });
        }

        #[test]
        fn refused_rows_and_other_keys_leave_the_run_intact() {
            let code = c"[ \
                {'a': i, 'b': str(i), 'c': object() if i in (9, 30) else i} if i % 11 else \
                ({'a': i, 'x': 'other keys', 'c': 1} if i % 2 == 0 else 'not a dict') \
                for i in range(60)] + \
                [{'a': 1, 'b': 'x', 'c': '\\ud800'}, {'a': 2, 'b': '\\ud800', 'c': 3}, \
                 {1: 2, 'a': 1, 'b': 2}] + \
                [{'a': i, 'b': 'y', 'c': i} for i in range(20)]";
            check(code, 8, |items| assert!(!batches(items).is_empty()));
            // Raise: the first refused row, with its column and value.
            Python::attach(|py| {
                let rows = py.eval(code, None, None).unwrap();
                let err = convert_rows(
                    rows.try_iter().unwrap().map(Result::unwrap),
                    OnError::Raise,
                    8,
                    0,
                    false,
                )
                .err()
                .unwrap();
                assert_eq!((err.row, err.column.as_deref()), (9, Some("c")));
                assert!(err.value.starts_with("<object object"), "{}", err.value);
                assert_eq!(err.reason, "unsupported Python type object");
            });
        }

        /// Lists and dicts of scalars: typed lists and objects (empty ones, `None` cells and
        /// items, items whose kind comes late), and every way out of them back to values.
        #[test]
        fn lists_and_dicts() {
            let code = c"[{'id': i, \
                'tags': [f't{j}' for j in range(i % 4)], \
                'counts': [j for j in range(i % 3)] if i % 5 else None, \
                'ni': [None if j % 2 else j for j in range(i % 4)], \
                'attrs': {f'k{j}': j for j in range(i % 3)}, \
                'sattrs': ({'a': str(i), 'b': None} if i % 4 else {}) if i % 7 else None, \
                'late': [] if i < 20 else ([None] if i < 25 else [float(i), None]), \
                'nonelist': None if i < 10 else [i], \
                'big': [2**63 + i] if i > 5 else [i], \
                'flags': [i % 2 == 0], \
                'nest': [[i]] if i == 30 else [i], \
                'mixed': [i, 'x'] if i == 40 else [i], \
                'kind': [i] if i < 50 else {'k': i}, \
                'key': {'k': i} if i != 60 else {'k': i, 1: i}, \
                'huge': [2**70] if i == 70 else [i], \
                'vals': {'x': [i]} if i == 80 else {'x': i}, \
                'scal': [i] if i < 90 else i, \
                'bad': [i, object()] if i in (33, 95) else [i], \
                'tup': (i, i)} for i in range(100)]";
            check(code, 16, |items| {
                let b = batches(items);
                assert_eq!(
                    b.len(),
                    6,
                    "6 chunks of 16 (rows 33 and 95 refused), then 2 rows"
                );
                for name in [
                    "tags", "counts", "ni", "attrs", "sattrs", "late", "nonelist", "big", "flags",
                ] {
                    assert!(b.iter().all(|c| typed(c, name)), "{name}");
                }
                // Typed until the row that does not fit, values from its chunk on.
                for (name, chunk) in [
                    ("nest", 1),
                    ("mixed", 2),
                    ("kind", 3),
                    ("key", 3),
                    ("huge", 4),
                    ("vals", 4),
                    ("scal", 5),
                    // A refused cell turns its column into values too (as for scalars).
                    ("bad", 2),
                ] {
                    assert!(typed(b[chunk - 1], name), "{name}");
                    assert!(b[chunk..].iter().all(|c| !typed(c, name)), "{name}");
                }
                assert!(!typed(b[0], "tup"));
            });
            Python::attach(|py| {
                let rows = py.eval(code, None, None).unwrap();
                let err = convert_rows(
                    rows.try_iter().unwrap().map(Result::unwrap),
                    OnError::Raise,
                    16,
                    0,
                    false,
                )
                .err()
                .unwrap();
                assert_eq!((err.row, err.column.as_deref()), (33, Some("bad")));
                assert!(
                    err.value.starts_with("[33, <object object"),
                    "{}",
                    err.value
                );
            });
        }

        /// A dict of lists taken in pieces: every piece decides on its own (typed, or values
        /// when its items are of mixed kinds or all `None`), and the pieces together hold the
        /// values [`to_value`] gives item by item; a bad item names its row in the whole
        /// column, not in its piece.
        #[test]
        fn dict_of_lists_in_pieces() {
            Python::initialize();
            Python::attach(|py| {
                let t = types(py).unwrap();
                let code = c"{'a': [1, 2, 3, 4, 'x', 6, 7], 'b': [None, None, None, 1.5, None, 2.0, None], 'c': ('p', 'q', 'r', 's', 't', 'u', 'v'), 'd': [[1], [], None, [2, 3], [4], [5], [6]], 'e': range(10, 17)}";
                let dict = py.eval(code, None, None).unwrap();
                let dict = dict.cast::<PyDict>().unwrap();
                let cols = take_columns(dict, 3, false).unwrap();
                for (name, raw) in cols {
                    let RawColumn::Pieces(pieces) = raw else {
                        panic!("{name}: a list or tuple is taken in pieces");
                    };
                    assert_eq!(
                        pieces.iter().map(ColumnData::len).collect::<Vec<_>>(),
                        [3, 3, 1],
                        "{name}"
                    );
                    let typed: Vec<bool> = pieces
                        .iter()
                        .map(|p| matches!(p, ColumnData::Typed(_)))
                        .collect();
                    let want_typed = match name.as_str() {
                        "a" => [true, false, true],
                        "b" => [false, true, false],
                        _ => [true, true, true],
                    };
                    assert_eq!(typed, want_typed, "{name}");
                    let got: Vec<Value> = pieces
                        .iter()
                        .flat_map(|p| p.to_values())
                        .map(norm)
                        .collect();
                    let want: Vec<Value> = dict
                        .get_item(&name)
                        .unwrap()
                        .unwrap()
                        .try_iter()
                        .unwrap()
                        .map(|v| norm(to_value(&v.unwrap(), t, 0).unwrap()))
                        .collect();
                    assert_eq!(got, want, "{name}");
                }
                let bad = py
                    .eval(
                        c"{'a': list(range(10)), 'b': [1.0] * 7 + ['x', object(), 2.0]}",
                        None,
                        None,
                    )
                    .unwrap();
                let e = take_columns(bad.cast::<PyDict>().unwrap(), 4, false)
                    .err()
                    .expect("an object() cannot be converted");
                assert_eq!((e.row, e.column.as_deref()), (8, Some("b")));
                assert!(e.value.starts_with("<object object"), "{}", e.value);
                // Another iterable (a generator) is read as the list of its items.
                let bad = py
                    .eval(
                        c"{'g': (x if x != 5 else object() for x in range(9))}",
                        None,
                        None,
                    )
                    .unwrap();
                let e = take_columns(bad.cast::<PyDict>().unwrap(), 4, false)
                    .err()
                    .expect("an object() cannot be converted");
                assert_eq!((e.row, e.column.as_deref()), (5, Some("g")));
            });
        }

        /// A dict-of-lists column of lists or dicts ([`typed_range`]): the values of its items.
        #[test]
        fn columns_of_lists_and_dicts() {
            Python::initialize();
            Python::attach(|py| {
                let t = types(py).unwrap();
                for (code, is_typed) in [
                    (c"[[1, None], None, [], [2**63]]", true),
                    (c"[None, [], ['a', 'b'], [None]]", true),
                    (c"[{'a': 1.5}, {}, None, {'b': None, 'c': 2.0}]", true),
                    (c"[[1], [[2]]]", false),
                    (c"[[1], {'a': 1}]", false),
                    (c"[{'a': 1}, {2: 1}]", false),
                ] {
                    let seq = py.eval(code, None, None).unwrap();
                    let n = seq.len().unwrap();
                    let col = typed_range(seq.cast::<PySequence>().unwrap(), 0..n, false).unwrap();
                    assert_eq!(col.is_some(), is_typed, "{code:?}");
                    if let Some(col) = col {
                        let want: Vec<Value> = seq
                            .try_iter()
                            .unwrap()
                            .map(|v| norm(to_value(&v.unwrap(), t, 0).unwrap()))
                            .collect();
                        let got: Vec<Value> = (0..col.len()).map(|r| norm(col.value(r))).collect();
                        assert_eq!(got, want, "{code:?}");
                    }
                }
            });
        }

        /// [`typed_range`] reads scattered objects fetched ahead a block at a time and near
        /// ones one by one ([`fetch`]); either way the column holds the same values, and an
        /// item of another kind after the first block still makes it untyped.
        #[test]
        fn fetched_ahead_or_one_by_one() {
            Python::initialize();
            Python::attach(|py| {
                let t = types(py).unwrap();
                let near = py
                    .eval(
                        c"[None if i % 7 == 3 else f's{i}' for i in range(1000)]",
                        None,
                        None,
                    )
                    .unwrap();
                // The same strings in an order far from their order in memory.
                let scattered = py
                    .eval(
                        c"(lambda l: [l[(i * 389) % 1000] for i in range(1000)])([f'v{i}' * (i % 5 + 1) for i in range(1000)])",
                        None,
                        None,
                    )
                    .unwrap();
                for (seq, is_scattered) in [(&near, false), (&scattered, true)] {
                    let seq = seq.cast::<PySequence>().unwrap();
                    let mut block = Vec::new();
                    assert_eq!(fetch(seq, 0..256, &mut block).unwrap(), is_scattered);
                    assert_eq!(block.len(), 256);
                    for range in [0..1000, 250..700, 999..1000] {
                        let col = typed_range(seq, range.clone(), false).unwrap().unwrap();
                        let got: Vec<Value> = (0..col.len()).map(|r| col.value(r)).collect();
                        let want: Vec<Value> = range
                            .map(|i| to_value(&seq.get_item(i).unwrap(), t, 0).unwrap())
                            .collect();
                        assert_eq!(got, want, "scattered: {is_scattered}");
                    }
                }
                for code in [
                    c"[f's{i}' for i in range(600)] + [1] + ['x'] * 10",
                    c"(lambda l: [l[(i * 389) % 1000] for i in range(1000)])([str(i) for i in range(999)] + [2.5])",
                ] {
                    let seq = py.eval(code, None, None).unwrap();
                    let seq = seq.cast::<PySequence>().unwrap();
                    let n = seq.len().unwrap();
                    assert!(typed_range(seq, 0..n, false).unwrap().is_none(), "{code:?}");
                    assert!(typed_range(seq, 0..256, false).unwrap().is_some(), "{code:?}");
                }
            });
        }

        #[test]
        fn single_rows_and_short_chunks() {
            for chunk in [1, 2, 7, 8, 9, 1000] {
                check(
                    c"[{'a': i, 'b': None if i % 2 else 'x', 'c': i / 2} for i in range(30)]",
                    chunk,
                    |items| {
                        if chunk < MIN_COLUMNAR_RUN {
                            assert!(batches(items).is_empty());
                        } else {
                            assert!(batches(items).iter().all(|b| typed(b, "a")));
                        }
                    },
                );
            }
        }
    }
}
