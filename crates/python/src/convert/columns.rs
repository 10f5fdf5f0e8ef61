//! Columns to engine inputs: a dict of columns (`write_columns`) taken a chunk of rows at a
//! time, and the typed accumulator ([`Acc`]) that turns runs of Python objects of one kind
//! into typed columns, for these columns and for the columns of runs of rows
//! ([`super::rows`]).

use chasync_core::{ColumnBatch, ColumnData, Strings, TypedColumn, TypedData};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyInt, PyList, PySequence, PyString, PyTuple};

use super::Yielder;
use super::numpy;
use super::scalar::{Types, short_repr, to_value, type_module_is_numpy, types};
use crate::errors::PyConversion;

/// Capacity of a column's first vector in a run (it grows as the run does).
pub(super) const FIRST_CAPACITY: usize = 16;

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
    if numpy::is_array(v) {
        return match numpy::take_array(v).map_err(whole)? {
            numpy::Taken::Bytes { dtype, bytes } => Ok(RawColumn::Numpy { dtype, bytes }),
            numpy::Taken::List(list) => take_column(&list, t, chunk_rows, background),
        };
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
///
/// Python's side of the core's [`TypedColumn::from_values`], read from the objects themselves
/// rather than from a [`Value`] made for each one (a copy of every string, 32 bytes a cell):
/// the typed columns the core makes of the values these objects stand for (`int` as `Int64`,
/// `float` as `Float64`, `str` as `String`, `bool` as `Bool`, lists as `List`, dicts of `str`
/// keys as `Map` of objects; `None` NULL, the type's default in the data), except that ints
/// beyond `i64` make an `int` column `UInt64` when none is negative (the core keeps values
/// of both signs apart). What has no kind of its own is the core's: an all-`None` column, or
/// the items of lists that are all empty or all `None`, is [`TypedColumn::all_null`].
///
/// [`Value`]: chasync_core::Value
pub(super) enum Acc {
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
pub(super) struct Items {
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

    /// The items as a typed column; when every item is `None` (or there is none), the core's
    /// all-NULL column ([`TypedColumn::all_null`]), as it makes of the same values.
    fn finish(self) -> TypedColumn {
        let Some(data) = self.acc.finish() else {
            return TypedColumn::all_null(self.len);
        };
        let col = TypedColumn::new(data);
        match self.nulls {
            Some(n) => col.with_nulls(n),
            None => col,
        }
    }
}

impl Acc {
    /// Starts the vector of a column's cells with the first one that is not `None`, after
    /// `nones` of them: a scalar ([`Acc::start`]), a `list` or a `dict`.
    pub(super) fn start_cell(item: &Bound<'_, PyAny>, cap: usize, nones: usize) -> Option<Acc> {
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

    pub(super) fn push_null(&mut self) {
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
    pub(super) fn push(&mut self, item: &Bound<'_, PyAny>) -> bool {
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
    pub(super) fn truncate(&mut self, n: usize) {
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

    pub(super) fn finish(self) -> Option<TypedData> {
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

/// An accumulator and its null map as a typed column.
pub(super) fn typed_cells(acc: Acc, nulls: Option<Vec<u8>>) -> Option<TypedColumn> {
    let col = TypedColumn::new(acc.finish()?);
    Some(match nulls {
        Some(n) => col.with_nulls(n),
        None => col,
    })
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
/// or all dicts of `str` keys and such scalar values (see `Cells` in `rows`), converted in
/// one loop into a typed column; every item `None`: the core's all-NULL column
/// ([`TypedColumn::all_null`]).
/// `None` when an item is of another kind: the caller converts them value by value, which
/// gives the same result more slowly.
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
        // Every item `None` (or none at all).
        return Ok(Some(TypedColumn::all_null(n)));
    };
    let mut col = TypedColumn::new(data);
    if let Some(nulls) = nulls {
        col = col.with_nulls(nulls);
    }
    Ok(Some(col))
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
    use chasync_core::Value;

    use super::*;
    use crate::convert::test_support::norm;

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
    }

    /// A dict of lists taken in pieces: every piece decides on its own (typed, the core's
    /// all-NULL column when its items are all `None`, or values when they are of mixed
    /// kinds), and the pieces together hold the values [`to_value`] gives item by item; a
    /// bad item names its row in the whole column, not in its piece.
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
                    _ => [true, true, true],
                };
                assert_eq!(typed, want_typed, "{name}");
                if name == "b" {
                    assert_eq!(pieces[0], ColumnData::Typed(TypedColumn::all_null(3)));
                }
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

    /// Columns (and the items of lists and dicts) of Python objects are the typed columns
    /// the core makes of the values they stand for ([`TypedColumn::from_values`]): the same
    /// kind, the same data and null map; `None` only, or no items at all, is the core's
    /// all-NULL column, not a kind of Python's choosing.
    #[test]
    fn the_cores_typed_columns() {
        Python::initialize();
        Python::attach(|py| {
            let t = types(py).unwrap();
            for code in [
                c"[None, None, None]",
                c"[None]",
                c"[[None], [None, None], [], None]",
                c"[[], [], []]",
                c"[{'a': None}, {}, None, {'b': None, 'c': None}]",
                c"[{}, {}]",
                c"[None, 1, None, -2]",
                c"[None, 1.5]",
                c"['x', None, 'yz']",
                c"[True, None, False]",
                c"[[1, None], None, [], [3]]",
                c"[None, [], ['a', None]]",
                c"[{'a': 1.5}, {}, None, {'b': None, 'c': 2.0}]",
            ] {
                let seq = py.eval(code, None, None).unwrap();
                let seq = seq.cast::<PySequence>().unwrap();
                let n = seq.len().unwrap();
                let values: Vec<Value> = (0..n)
                    .map(|i| to_value(&seq.get_item(i).unwrap(), t, 0).unwrap())
                    .collect();
                let core = TypedColumn::from_values(&values).expect("the core types these");
                let python = typed_range(seq, 0..n, false).unwrap();
                assert_eq!(python.as_ref(), Some(&core), "{code:?}");
            }
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
                // Where the near strings lie depends on what the allocator had free (other
                // tests run on other threads): only the scattered order is sure to be seen.
                let seen_scattered = fetch(seq, 0..256, &mut block).unwrap();
                if is_scattered {
                    assert!(seen_scattered);
                }
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
}
