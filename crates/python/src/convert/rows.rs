//! Rows (dicts) to engine inputs: runs of consecutive dicts with the same keys in the same
//! order are accumulated column by column (typed where a column's cells are of one kind, see
//! [`Cells`]) and cut into columnar batches; short runs and odd rows go as single rows.

use chasync_core::{ColumnBatch, ColumnData, DynInput, DynRow, TypedColumn, Value};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};

use super::columns::{Acc, FIRST_CAPACITY, typed_cells};
use super::scalar::{Types, short_repr, to_value, types};
use super::{Item, OnError, Yielder};
use crate::errors::PyConversion;

/// Runs of fewer rows with the same keys than this are sent as rows, longer ones as columns.
const MIN_COLUMNAR_RUN: usize = 8;

/// Most rows a column's vector is sized for at once after a chunk of a long run.
const MAX_CAPACITY: usize = 1 << 16;

/// The cells of one column of a [`Run`] so far.
///
/// A column starts typed: its first cell that is not `None` picks an [`Acc`] (`int`, `float`,
/// `str` or `bool`, exact types; or a `list` of such scalars, or a `dict` of `str` keys and
/// such scalar values, the items' kind picked by their first item that is not `None`), and
/// `None` cells (and items) are NULL in a null map, as in `typed_range` (in `columns`). A cell
/// of another kind (or one the accumulator cannot take: an `int` beyond 64 bits, a `str` that
/// is not UTF-8, a list of lists, a key that is not a `str` ...) turns the column into
/// [`Value`]s: the cells so far become the values they stand for
/// ([`TypedColumn::value`](chasync_core::TypedColumn::value), the values [`to_value`] gives
/// for them), and every later cell of the run is converted by [`to_value`]. Either way the
/// column means the same values, in the same order.
enum Cells {
    /// Every cell so far is `None` (the run's length of them): a chunk that ends so is the
    /// core's all-NULL column ([`TypedColumn::all_null`]).
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
            Cells::Nones => ColumnData::Typed(TypedColumn::all_null(rows)),
            Cells::Typed { acc, nulls } => match typed_cells(acc, nulls) {
                Some(col) => ColumnData::Typed(col),
                None => ColumnData::Typed(TypedColumn::all_null(rows)),
            },
            Cells::Values(v) => ColumnData::Values(v),
        }
    }
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

/// Rows of the same keys through [`convert_rows`], against the values [`to_value`] gives cell
/// by cell (what every run was before typed columns): `None` for a refused row.
#[cfg(test)]
mod tests {
    use std::ffi::CStr;

    use super::*;
    use crate::convert::test_support::norm;

    type Row = Vec<(String, Value)>;

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

    fn column<'a>(b: &'a ColumnBatch, name: &str) -> &'a ColumnData {
        &b.columns.iter().find(|(n, _)| n == name).unwrap().1
    }

    fn typed(b: &ColumnBatch, name: &str) -> bool {
        matches!(column(b, name), ColumnData::Typed(_))
    }

    /// The core's column of `rows` NULLs, as it makes it of that many `Value::Null`.
    fn all_null(rows: usize) -> ColumnData {
        let nulls = ColumnData::Values(vec![Value::Null; rows]).compact();
        assert_eq!(nulls, ColumnData::Typed(TypedColumn::all_null(rows)));
        nulls
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
            // None first (a chunk of only None: the core's all-NULL column), then ints
            assert!(typed(b[0], "n") && typed(b[1], "n") && typed(b[2], "n"));
            assert_eq!(column(b[0], "n"), &all_null(16));
            // bool, then an int
            assert!(typed(b[0], "b") && !typed(b[1], "b"));
            assert!(!typed(b[0], "f") && !typed(b[0], "nest"));
            for (c, rows) in b.iter().zip([16, 16, 16, 16, 16, 16]) {
                assert_eq!(column(c, "none"), &all_null(rows));
            }
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
