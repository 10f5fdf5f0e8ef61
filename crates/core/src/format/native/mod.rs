//! Encoding dynamic rows into ClickHouse's [Native] columnar format for tables whose schema is

mod column;
mod convert;
mod typed;

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;

use self::column::{Builder, column_header_len, write_column_header};
use crate::FastMap;
use crate::types::schema::{ColumnType, DefaultKind, TableSchema, quote_ident};
use crate::types::time::Zone;
use crate::types::value::{ColumnBatch, ColumnData, DynRow, Value};
use crate::types::wire::{leb128_len, put_leb128};

/// Options of a [`NativeBatch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NativeOptions {
    /// Ignore row keys that name no column of the table (default: such a key is an error).
    pub skip_unknown_keys: bool,
    /// The column filled with the insert id by [`NativeBatch::finish`] (default
    /// `Some("_insert_id")`). It is used only when the table has it with a type that can
    /// hold a UUID (`UUID`, `String`, `FixedString(N >= 36)`, optionally `Nullable` or
    /// `LowCardinality`); rows may not set it then.
    pub insert_id_column: Option<String>,
    /// Start a new block whenever a row gives a different set of columns than the previous
    /// one, so rows reach the server in the order they were pushed (default `true`). When
    /// `false`, rows are grouped by their set of columns: fewer blocks, different order.
    pub preserve_row_order: bool,
}

impl Default for NativeOptions {
    fn default() -> Self {
        Self {
            skip_unknown_keys: false,
            insert_id_column: Some("_insert_id".to_owned()),
            preserve_row_order: true,
        }
    }
}

/// What went wrong in a [`ConversionError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConversionErrorKind {
    /// The value cannot be converted to the column's type.
    InvalidValue,
    /// The key names no column of the table (the schema may be stale: refresh and retry).
    UnknownColumn,
    /// The column is `MATERIALIZED`/`ALIAS`, or the reserved insert id column.
    NotInsertable,
    /// The row names the same column twice.
    DuplicateColumn,
    /// The column's type cannot be encoded by this crate.
    UnsupportedType,
    /// Columnar input whose columns differ in length.
    ColumnLengths,
}

/// A value that could not be put into a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversionError {
    /// For [`NativeBatch::push_row`]: the ordinal of the row among all rows offered to the
    /// batch (rejected ones included, from 0). For [`NativeBatch::push_columns`]: the row
    /// index within that [`ColumnBatch`] (0 for errors about the whole batch).
    pub row: usize,
    /// The column (or unknown key).
    pub column: String,
    /// The offending value as JSON text, truncated to about 200 bytes. For nested types
    /// this is the innermost value that failed.
    pub value: String,
    /// The ClickHouse type the value was converted to (innermost for nested types).
    pub target_type: String,
    /// Why it failed.
    pub reason: String,
    /// The category.
    pub kind: ConversionErrorKind,
}

impl fmt::Display for ConversionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "row {}, column `{}`: cannot insert value {}",
            self.row, self.column, self.value
        )?;
        if !self.target_type.is_empty() {
            write!(f, " as {}", self.target_type)?;
        }
        write!(f, ": {}", self.reason)
    }
}

impl std::error::Error for ConversionError {}

/// The outcome of [`NativeBatch::push_columns`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ColumnsOutcome {
    /// Rows added to the batch.
    pub accepted: usize,
    /// Rows left out, one error each (`row` is the index in the [`ColumnBatch`]).
    pub rejected: Vec<ConversionError>,
}

/// The result of [`NativeBatch::finish`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedNative {
    /// The columns sent (table order, the insert id column last), for the `INSERT` column
    /// list. Empty when every row left every column to its default.
    pub columns: Vec<String>,
    /// The Native stream: one or more blocks.
    pub bytes: Bytes,
    /// The number of rows.
    pub rows: usize,
}

impl EncodedNative {
    /// `INSERT INTO `db`.`table` (`c1`, ...) FORMAT Native` for these bytes.
    pub fn insert_sql(&self, schema: &TableSchema) -> String {
        let mut sql = format!("INSERT INTO {}", schema.qualified_name());
        if !self.columns.is_empty() {
            sql.push_str(" (");
            for (i, c) in self.columns.iter().enumerate() {
                if i > 0 {
                    sql.push_str(", ");
                }
                quote_ident(c, &mut sql);
            }
            sql.push(')');
        }
        sql.push_str(" FORMAT Native");
        sql
    }
}

/// The ranges of `0..n` without the rows of `fails` (sorted by row, one per row).
fn good_ranges<K, F>(fails: &[(usize, K, F)], n: usize) -> Vec<std::ops::Range<usize>> {
    let mut ranges = Vec::new();
    let mut start = 0;
    for (r, _, _) in fails {
        if *r > start {
            ranges.push(start..*r);
        }
        start = r + 1;
    }
    if start < n {
        ranges.push(start..n);
    }
    ranges
}

/// One Native block in the making: the rows that give the same set of columns.
#[derive(Debug)]
struct Block {
    shape: Box<[u64]>,
    cols: Vec<usize>,
    builders: Vec<Builder>,
    rows: usize,
}

/// A batch of rows for one table, encoded column by column as rows arrive.
///
/// How missing columns, NULLs and special types are handled is below.
///
/// Encoding dynamic rows into ClickHouse's [Native] columnar format for tables whose schema is
/// read at run time.
///
/// The entry point is [`NativeBatch`]: create one per (table, batch) from a
/// [`TableSchema`], push rows ([`NativeBatch::push_row`]) or columns
/// ([`NativeBatch::push_columns`]), watch [`NativeBatch::encoded_bytes`] against the batch byte
/// limit, then [`NativeBatch::finish`] and send the bytes:
///
/// ```ignore
/// let mut batch = NativeBatch::new(schema.clone(), NativeOptions::default());
/// batch.push_row(&row)?;
/// let encoded = batch.finish(Some(insert_id));
/// let mut insert = client.insert_formatted_with(encoded.insert_sql(&schema));
/// insert.send(encoded.bytes).await?;
/// insert.end().await?;
/// ```
///
/// # What the server does with the bytes (verified against ClickHouse 26.9)
///
/// * Columns a row does not give are **left out of its block**, so the server computes their
///   `DEFAULT` expressions (`input_format_defaults_for_omitted_fields`, on by default). Rows
///   are therefore put into blocks by the set of columns they give ("shape"). By default a new
///   block starts whenever the shape changes, which keeps the row order; with
///   [`NativeOptions::preserve_row_order`] off, rows of the same shape share one block.
/// * A top-level `null` for a column that is not `Nullable` counts as "not given", as with
///   JSONEachRow's `input_format_null_as_default`: the server computes the default. A `null`
///   nested in an array, map or tuple becomes the type's default value.
/// * `MATERIALIZED` and `ALIAS` columns are never sent; a row that sets one is an error.
/// * An `Enum` column without a DEFAULT expression is the exception to leaving columns out:
///   the server fills such a column of a Native block with 0, which is no element of the enum
///   (26.9), so a row that leaves it out gets the enum's smallest value sent explicitly, which
///   is what JSONEachRow stores for an omitted field.
/// * `LowCardinality` columns are sent dictionary encoded.
/// * `JSON` columns are sent as `String` columns holding JSON text; the server converts them
///   (`input_format_native_allow_types_conversion`, on by default).
///
/// [Native]: https://clickhouse.com/docs/interfaces/formats/Native
#[derive(Debug)]
pub struct NativeBatch {
    schema: Arc<TableSchema>,
    opts: NativeOptions,
    /// Empty builders per column, or why the column cannot be encoded.
    protos: Vec<Result<Builder, String>>,
    wire_types: Vec<String>,
    nullable: Vec<bool>,
    /// Values sent for columns a row leaves out, where the server's own filling would be
    /// wrong: a Native block without an `Enum` column stores 0 there (ClickHouse 26.9), which
    /// is no element of the enum, while JSONEachRow stores the enum's smallest value.
    implicit: Arc<[Option<Value>]>,
    insert_id_col: Option<usize>,
    /// Encoded size of the insert id column: (per block, per row).
    insert_id_cost: (usize, usize),
    blocks: Vec<Block>,
    by_shape: FastMap<Box<[u64]>, usize>,
    rows: usize,
    offered: usize,
    // Scratch, reused across rows.
    slots: Vec<u32>,
    shape: Vec<u64>,
    marks: Vec<usize>,
}

fn holds_uuid_text(ty: &ColumnType) -> bool {
    match ty {
        ColumnType::Uuid | ColumnType::String => true,
        ColumnType::FixedString(n) => *n >= 36,
        ColumnType::Nullable(t) | ColumnType::LowCardinality(t) => holds_uuid_text(t),
        _ => false,
    }
}

impl NativeBatch {
    /// An empty batch for `schema`.
    pub fn new(schema: Arc<TableSchema>, opts: NativeOptions) -> Self {
        // A server time zone unknown here reads local times in UTC.
        let server_tz = Ok(Zone::named(&schema.server_timezone).unwrap_or(Zone::UTC));
        let protos: Vec<Result<Builder, String>> = schema
            .columns
            .iter()
            .map(|c| Builder::new(&c.ty, &server_tz))
            .collect();
        let wire_types = schema.columns.iter().map(|c| c.ty.wire_name()).collect();
        let nullable = schema.columns.iter().map(|c| c.ty.is_nullable()).collect();
        let implicit = schema
            .columns
            .iter()
            .map(|c| {
                if c.default_kind != DefaultKind::None {
                    return None;
                }
                match &c.ty {
                    ColumnType::Enum8(items) => items
                        .iter()
                        .map(|(_, v)| *v)
                        .min()
                        .map(|v| Value::Int(v.into())),
                    ColumnType::Enum16(items) => items
                        .iter()
                        .map(|(_, v)| *v)
                        .min()
                        .map(|v| Value::Int(v.into())),
                    _ => None,
                }
            })
            .collect();
        let insert_id_col = opts
            .insert_id_column
            .as_deref()
            .and_then(|n| schema.column_index(n))
            .filter(|&i| {
                let c = &schema.columns[i];
                c.default_kind.insertable() && holds_uuid_text(&c.ty)
            });
        let insert_id_cost = insert_id_col.map_or((0, 0), |ci| {
            let mut b: Builder = match &protos[ci] {
                Ok(b) => b.clone(),
                Err(_) => return (0, 0),
            };
            let v = Value::String(uuid::Uuid::nil().hyphenated().to_string());
            let _ = b.push(&v);
            let one = b.encoded_len();
            let _ = b.push(&v);
            let per_row = b.encoded_len() - one;
            let header =
                column_header_len(&schema.columns[ci].name, &schema.columns[ci].ty.wire_name());
            (header + one - per_row, per_row)
        });
        let n = schema.columns.len();
        Self {
            insert_id_cost,
            protos,
            wire_types,
            nullable,
            implicit,
            insert_id_col,
            blocks: Vec::new(),
            by_shape: FastMap::default(),
            rows: 0,
            offered: 0,
            slots: vec![0; n],
            shape: vec![0; n.div_ceil(64).max(1)],
            marks: Vec::new(),
            schema,
            opts,
        }
    }

    /// The schema this batch encodes for.
    pub fn schema(&self) -> &Arc<TableSchema> {
        &self.schema
    }

    /// The number of rows in the batch.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Whether the batch has no rows.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// The number of Native blocks the batch will send.
    pub fn blocks(&self) -> usize {
        self.blocks.len()
    }

    /// The size of the bytes [`NativeBatch::finish`] will produce, assuming the insert id
    /// column (if the table has one) gets filled. Exact (the LowCardinality dictionary of
    /// the insert id column is counted once per block).
    pub fn encoded_bytes(&self) -> usize {
        let mut total = 0;
        for b in &self.blocks {
            total += leb128_len(b.cols.len() as u64 + 1) + leb128_len(b.rows as u64);
            for (k, &ci) in b.cols.iter().enumerate() {
                total += column_header_len(&self.schema.columns[ci].name, &self.wire_types[ci])
                    + b.builders[k].encoded_len();
            }
            if self.insert_id_col.is_some() {
                total += self.insert_id_cost.0 + b.rows * self.insert_id_cost.1;
            }
        }
        total
    }

    fn error(
        &self,
        row: usize,
        column: &str,
        value: &Value,
        kind: ConversionErrorKind,
        reason: String,
    ) -> ConversionError {
        let target_type = self
            .schema
            .column(column)
            .map(|c| c.type_name.clone())
            .unwrap_or_default();
        ConversionError {
            row,
            column: column.to_owned(),
            value: value.to_truncated_string(200),
            target_type,
            reason,
            kind,
        }
    }

    /// Checks that column `ci` may take `value` and records it in the shape. Returns whether
    /// the value is sent (`false`: a top-level NULL for a non-Nullable column, i.e. omitted).
    fn admit(
        &mut self,
        row: usize,
        ci: usize,
        value: &Value,
        slots: &[u32],
    ) -> Result<bool, ConversionError> {
        let col = &self.schema.columns[ci];
        if !col.default_kind.insertable() {
            return Err(self.error(
                row,
                &col.name,
                value,
                ConversionErrorKind::NotInsertable,
                format!(
                    "the column is {} and cannot be inserted",
                    match col.default_kind {
                        DefaultKind::Alias => "ALIAS",
                        _ => "MATERIALIZED",
                    }
                ),
            ));
        }
        if Some(ci) == self.insert_id_col {
            return Err(self.error(
                row,
                &col.name,
                value,
                ConversionErrorKind::NotInsertable,
                "the column is reserved for the insert id".to_owned(),
            ));
        }
        if slots[ci] != 0 {
            return Err(self.error(
                row,
                &col.name,
                value,
                ConversionErrorKind::DuplicateColumn,
                "the column is given twice".to_owned(),
            ));
        }
        if value.is_null() && !self.nullable[ci] {
            return Ok(false);
        }
        if let Err(reason) = &self.protos[ci] {
            return Err(self.error(
                row,
                &col.name,
                value,
                ConversionErrorKind::UnsupportedType,
                reason.clone(),
            ));
        }
        self.shape[ci / 64] |= 1 << (ci % 64);
        Ok(true)
    }

    /// Converts one row into the column buffers. On `Err` nothing of the row remains in the
    /// batch. The row is borrowed so that the caller can keep it (e.g. for a dead-letter
    /// spool) when it is rejected.
    pub fn push_row(&mut self, row: &DynRow) -> Result<(), ConversionError> {
        let row_no = self.offered;
        self.offered += 1;
        self.shape.fill(0);
        let mut slots = std::mem::take(&mut self.slots);
        let mut result = Ok(());
        let mut guess = 0;
        for (fi, (name, value)) in row.fields.iter().enumerate() {
            let cols = &self.schema.columns;
            let ci = if guess < cols.len() && cols[guess].name == *name {
                guess
            } else {
                match self.schema.column_index(name) {
                    Some(ci) => ci,
                    None if self.opts.skip_unknown_keys => continue,
                    None => {
                        result = Err(ConversionError {
                            row: row_no,
                            column: name.clone(),
                            value: value.to_truncated_string(200),
                            target_type: String::new(),
                            reason: format!(
                                "no such column in {}.{}",
                                self.schema.database, self.schema.table
                            ),
                            kind: ConversionErrorKind::UnknownColumn,
                        });
                        break;
                    }
                }
            };
            guess = ci + 1;
            match self.admit(row_no, ci, value, &slots) {
                Ok(true) => slots[ci] = fi as u32 + 1,
                Ok(false) => {}
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        if result.is_ok() {
            let implicit = self.implicit.clone();
            for (ci, v) in implicit.iter().enumerate() {
                if v.is_some() && self.shape[ci / 64] & (1 << (ci % 64)) == 0 {
                    self.shape[ci / 64] |= 1 << (ci % 64);
                    slots[ci] = u32::MAX;
                }
            }
            result = self.push_shaped(row_no, |ci| match slots[ci] {
                u32::MAX => implicit[ci].as_ref().expect("an implicit value"),
                s => &row.fields[s as usize - 1].1,
            });
        }
        self.clear_slots(&mut slots);
        self.slots = slots;
        result
    }

    fn clear_slots(&self, slots: &mut [u32]) {
        for (w, &word) in self.shape.iter().enumerate() {
            let mut bits = word;
            while bits != 0 {
                let b = bits.trailing_zeros() as usize;
                slots[w * 64 + b] = 0;
                bits &= bits - 1;
            }
        }
    }

    /// Appends one row whose shape is in `self.shape`; `get(ci)` gives column `ci`'s value.
    fn push_shaped<'v>(
        &mut self,
        row_no: usize,
        get: impl Fn(usize) -> &'v Value,
    ) -> Result<(), ConversionError> {
        let bi = self.block_for_shape();
        let block = &mut self.blocks[bi];
        self.marks.clear();
        for b in &block.builders {
            b.mark(&mut self.marks);
        }
        for k in 0..block.cols.len() {
            let ci = block.cols[k];
            if let Err(f) = block.builders[k].push(get(ci)) {
                let mut it = self.marks.iter();
                for b in &mut block.builders {
                    b.rollback(&mut it);
                }
                if block.rows == 0 {
                    let b = self
                        .blocks
                        .pop()
                        .expect("BUG: the new block is the last one");
                    self.by_shape.remove(&b.shape);
                }
                return Err(ConversionError {
                    row: row_no,
                    column: self.schema.columns[ci].name.clone(),
                    value: f.value,
                    target_type: f.target_type,
                    reason: f.reason,
                    kind: ConversionErrorKind::InvalidValue,
                });
            }
        }
        block.rows += 1;
        self.rows += 1;
        Ok(())
    }

    fn block_for_shape(&mut self) -> usize {
        if let Some(last) = self.blocks.last()
            && *last.shape == *self.shape
        {
            return self.blocks.len() - 1;
        }
        if !self.opts.preserve_row_order
            && let Some(&bi) = self.by_shape.get(&self.shape[..])
        {
            return bi;
        }
        let mut cols = Vec::new();
        for (w, &word) in self.shape.iter().enumerate() {
            let mut bits = word;
            while bits != 0 {
                cols.push(w * 64 + bits.trailing_zeros() as usize);
                bits &= bits - 1;
            }
        }
        let builders = cols
            .iter()
            .map(|&ci| {
                self.protos[ci]
                    .as_ref()
                    .expect("BUG: unsupported columns are rejected before")
                    .clone()
            })
            .collect();
        let shape: Box<[u64]> = self.shape.clone().into_boxed_slice();
        if !self.opts.preserve_row_order {
            self.by_shape.insert(shape.clone(), self.blocks.len());
        }
        self.blocks.push(Block {
            shape,
            cols,
            builders,
            rows: 0,
        });
        self.blocks.len() - 1
    }

    /// Adds columnar input. Rows that fail are left out and reported in
    /// [`ColumnsOutcome::rejected`]; the others are added. `Err` (nothing added) when the
    /// batch itself is malformed: columns of different lengths, an unknown column (unless
    /// skipped), a column given twice, a column that cannot be inserted, or one of an
    /// unsupported type.
    ///
    /// When every row gives the same columns (no NULL in a column that is not `Nullable`),
    /// the batch is encoded column by column into one block, typed columns
    /// ([`ColumnData::Typed`]) with tight loops; otherwise row by row, like
    /// [`NativeBatch::push_row`].
    pub fn push_columns(&mut self, batch: &ColumnBatch) -> Result<ColumnsOutcome, ConversionError> {
        let n = batch.rows();
        let mut cols: Vec<(usize, &ColumnData)> = Vec::with_capacity(batch.columns.len());
        let mut slots = std::mem::take(&mut self.slots);
        self.shape.fill(0);
        let mut result = Ok(());
        for (name, data) in &batch.columns {
            if data.len() != n {
                result = Err(ConversionError {
                    row: 0,
                    column: name.clone(),
                    value: String::new(),
                    target_type: String::new(),
                    reason: format!("the column has {} values, the first one {n}", data.len()),
                    kind: ConversionErrorKind::ColumnLengths,
                });
                break;
            }
            let Some(ci) = self.schema.column_index(name) else {
                if self.opts.skip_unknown_keys {
                    continue;
                }
                result = Err(ConversionError {
                    row: 0,
                    column: name.clone(),
                    value: String::new(),
                    target_type: String::new(),
                    reason: format!(
                        "no such column in {}.{}",
                        self.schema.database, self.schema.table
                    ),
                    kind: ConversionErrorKind::UnknownColumn,
                });
                break;
            };
            // Check insertability with a non-null probe so that NULL does not hide it.
            let probe = (0..n)
                .find(|&r| !data.is_null(r))
                .and_then(|r| data.value(r))
                .unwrap_or(Value::Bool(true));
            if let Err(e) = self.admit(0, ci, &probe, &slots) {
                result = Err(e);
                break;
            }
            cols.push((ci, data));
            slots[ci] = cols.len() as u32;
        }
        if let Err(e) = result {
            self.clear_slots(&mut slots);
            self.slots = slots;
            return Err(e);
        }
        let same_shape = cols
            .iter()
            .all(|&(ci, data)| self.nullable[ci] || !data.has_nulls());
        let outcome = if same_shape {
            self.push_columns_whole(n, &cols, &slots)
        } else {
            self.push_columns_by_row(n, &cols, &slots)
        };
        for &(ci, _) in &cols {
            slots[ci] = 0;
        }
        self.slots = slots;
        Ok(outcome)
    }

    /// Columnar input whose rows all give the same columns: one block, column by column.
    /// A first pass encodes every row; when some fail, the block is rolled back and a second
    /// pass encodes the rows that did not fail.
    fn push_columns_whole(
        &mut self,
        n: usize,
        cols: &[(usize, &ColumnData)],
        slots: &[u32],
    ) -> ColumnsOutcome {
        let mut outcome = ColumnsOutcome::default();
        self.offered += n;
        if n == 0 {
            return outcome;
        }
        self.shape.fill(0);
        for &(ci, _) in cols {
            self.shape[ci / 64] |= 1 << (ci % 64);
        }
        for (ci, v) in self.implicit.iter().enumerate() {
            if v.is_some() {
                self.shape[ci / 64] |= 1 << (ci % 64);
            }
        }
        let implicit = self.implicit.clone();
        let bi = self.block_for_shape();
        let block = &mut self.blocks[bi];
        self.marks.clear();
        for b in &block.builders {
            b.mark(&mut self.marks);
        }
        // (row, builder, failure)
        let mut fails = Vec::new();
        let mut scratch = Vec::new();
        let mut push_all =
            |block: &mut Block, ranges: &[std::ops::Range<usize>], fails: &mut Vec<_>| {
                let rows: usize = ranges.iter().map(|r| r.len()).sum();
                for k in 0..block.cols.len() {
                    let ci = block.cols[k];
                    let builder = &mut block.builders[k];
                    if slots[ci] != 0 {
                        let data = cols[slots[ci] as usize - 1].1;
                        for r in ranges {
                            builder.push_data_range(data, r.clone(), &mut scratch);
                        }
                        fails.extend(scratch.drain(..).map(|(r, f)| (r, k, f)));
                    } else {
                        let v = implicit[ci].as_ref().expect("an implicit value");
                        builder
                            .push_repeated(v, rows)
                            .expect("BUG: an implicit value converts");
                    }
                }
            };
        push_all(block, std::slice::from_ref(&(0..n)), &mut fails);
        let mut good = n;
        if !fails.is_empty() {
            let mut it = self.marks.iter();
            for b in &mut block.builders {
                b.rollback(&mut it);
            }
            // One error per row: the first column (in table order) that failed.
            fails.sort_by_key(|(r, k, _)| (*r, *k));
            fails.dedup_by_key(|(r, _, _)| *r);
            let mut ranges = good_ranges(&fails, n);
            loop {
                let mut again = Vec::new();
                push_all(block, &ranges, &mut again);
                if again.is_empty() {
                    break;
                }
                // Conversions are deterministic, so this does not happen; if it did, the
                // columns would be out of step: leave those rows out too and encode again.
                debug_assert!(false, "BUG: rows that converted once fail");
                let mut it = self.marks.iter();
                for b in &mut block.builders {
                    b.rollback(&mut it);
                }
                fails.extend(again);
                fails.sort_by_key(|(r, k, _)| (*r, *k));
                fails.dedup_by_key(|(r, _, _)| *r);
                ranges = good_ranges(&fails, n);
            }
            good = n - fails.len();
            for (r, k, f) in fails {
                outcome.rejected.push(ConversionError {
                    row: r,
                    column: self.schema.columns[block.cols[k]].name.clone(),
                    value: f.value,
                    target_type: f.target_type,
                    reason: f.reason,
                    kind: ConversionErrorKind::InvalidValue,
                });
            }
        }
        block.rows += good;
        self.rows += good;
        outcome.accepted = good;
        if block.rows == 0 {
            let b = self
                .blocks
                .pop()
                .expect("BUG: the new block is the last one");
            self.by_shape.remove(&b.shape);
        }
        outcome
    }

    /// Columnar input whose rows differ in the columns they give (NULL in a column that is
    /// not `Nullable` leaves it to its default): row by row.
    fn push_columns_by_row(
        &mut self,
        n: usize,
        cols: &[(usize, &ColumnData)],
        slots: &[u32],
    ) -> ColumnsOutcome {
        let owned: Vec<std::borrow::Cow<'_, [Value]>> = cols
            .iter()
            .map(|(_, data)| match data {
                ColumnData::Values(v) => std::borrow::Cow::Borrowed(&v[..]),
                other => std::borrow::Cow::Owned(other.to_values()),
            })
            .collect();
        let cols: Vec<(usize, &[Value])> = cols
            .iter()
            .zip(&owned)
            .map(|((ci, _), v)| (*ci, &v[..]))
            .collect();
        let mut outcome = ColumnsOutcome::default();
        let implicit = self.implicit.clone();
        let nullable = self.nullable.clone();
        for r in 0..n {
            self.offered += 1;
            self.shape.fill(0);
            for &(ci, values) in &cols {
                if !values[r].is_null() || self.nullable[ci] {
                    self.shape[ci / 64] |= 1 << (ci % 64);
                }
            }
            for (ci, v) in implicit.iter().enumerate() {
                if v.is_some() {
                    self.shape[ci / 64] |= 1 << (ci % 64);
                }
            }
            let pushed = self.push_shaped(r, |ci| {
                if slots[ci] != 0 {
                    let v = &cols[slots[ci] as usize - 1].1[r];
                    if !v.is_null() || nullable[ci] {
                        return v;
                    }
                }
                implicit[ci].as_ref().expect("an implicit value")
            });
            match pushed {
                Ok(()) => outcome.accepted += 1,
                Err(e) => outcome.rejected.push(e),
            }
        }
        outcome
    }

    /// Finishes the batch: the `INSERT` column list and the Native bytes. `insert_id` fills
    /// the insert id column (see [`NativeOptions::insert_id_column`]) of every row when the
    /// table has one; with `None` that column is left to its default.
    pub fn finish(self, insert_id: Option<uuid::Uuid>) -> EncodedNative {
        if self.rows == 0 {
            return EncodedNative {
                columns: Vec::new(),
                bytes: Bytes::new(),
                rows: 0,
            };
        }
        let id = insert_id.and_then(|u| self.insert_id_col.map(|ci| (ci, u)));
        let id_value = id.map(|(_, u)| Value::String(u.hyphenated().to_string()));
        let mut out = Vec::with_capacity(self.encoded_bytes() + 64);
        let mut used = vec![false; self.schema.columns.len()];
        for b in &self.blocks {
            put_leb128(&mut out, (b.cols.len() + id.is_some() as usize) as u64);
            put_leb128(&mut out, b.rows as u64);
            for (k, &ci) in b.cols.iter().enumerate() {
                used[ci] = true;
                write_column_header(
                    &self.schema.columns[ci].name,
                    &self.wire_types[ci],
                    &mut out,
                );
                b.builders[k].write_prefix(&mut out);
                b.builders[k].write_data(&mut out);
            }
            if let (Some((ci, _)), Some(v)) = (id, &id_value) {
                let mut builder = self.protos[ci]
                    .as_ref()
                    .expect("BUG: the insert id column has a supported type")
                    .clone();
                builder
                    .push_repeated(v, b.rows)
                    .expect("BUG: the insert id column takes a UUID's text");
                write_column_header(
                    &self.schema.columns[ci].name,
                    &self.wire_types[ci],
                    &mut out,
                );
                builder.write_prefix(&mut out);
                builder.write_data(&mut out);
            }
        }
        let mut columns: Vec<String> = self
            .schema
            .columns
            .iter()
            .zip(&used)
            .filter(|(_, u)| **u)
            .map(|(c, _)| c.name.clone())
            .collect();
        if let Some((ci, _)) = id {
            columns.push(self.schema.columns[ci].name.clone());
        }
        EncodedNative {
            columns,
            bytes: Bytes::from(out),
            rows: self.rows,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::schema::ColumnDef;

    fn schema() -> Arc<TableSchema> {
        Arc::new(TableSchema::from_columns(
            "db",
            "t",
            vec![
                ColumnDef::new("a", "UInt8"),
                ColumnDef::new("s", "String"),
                ColumnDef::new("m", "UInt8").with_default(DefaultKind::Materialized, "a + 1"),
                ColumnDef::new("arr", "Array(Nullable(UInt8))"),
                ColumnDef::new("_insert_id", "UUID"),
            ],
        ))
    }

    #[test]
    fn encodes_a_block_like_the_server() {
        let mut b = NativeBatch::new(schema(), NativeOptions::default());
        b.push_row(
            &DynRow::new()
                .with("a", 7u8)
                .with("s", "hi")
                .with("arr", Value::Array(vec![Value::UInt(1), Value::UInt(2)])),
        )
        .unwrap();
        let before = b.encoded_bytes();
        let e = b.finish(None);
        // The bytes of `SELECT toUInt8(7) AS a, 'hi' AS s, [1,2]::Array(Nullable(UInt8)) AS arr
        // FORMAT Native` from ClickHouse 26.9.
        let want: &[u8] = b"\x03\x01\x01a\x05UInt8\x07\x01s\x06String\x02hi\x03arr\x16Array(Nullable(UInt8))\x02\0\0\0\0\0\0\0\0\0\x01\x02";
        assert_eq!(&e.bytes[..], want);
        assert_eq!(e.columns, ["a", "s", "arr"]);
        assert_eq!(
            before,
            want.len() + column_header_len("_insert_id", "UUID") + 16
        );
    }

    #[test]
    fn rejected_rows_leave_nothing() {
        let mut b = NativeBatch::new(schema(), NativeOptions::default());
        b.push_row(&DynRow::new().with("a", 1u8)).unwrap();
        let size = b.encoded_bytes();
        let bad = DynRow::new()
            .with("a", 2u8)
            .with("arr", Value::Array(vec![Value::UInt(1), Value::UInt(300)]));
        let err = b.push_row(&bad).unwrap_err();
        assert_eq!(err.row, 1);
        assert_eq!(err.column, "arr");
        assert_eq!(err.value, "300");
        assert_eq!(err.target_type, "UInt8");
        assert_eq!(b.encoded_bytes(), size);
        assert_eq!(b.rows(), 1);
        assert_eq!(b.blocks(), 1);
        let err = b
            .push_row(&DynRow::new().with("a", 1u8).with("zz", 1))
            .unwrap_err();
        assert_eq!(err.kind, ConversionErrorKind::UnknownColumn);
        assert!(err.to_string().contains("zz"), "{err}");
        let err = b.push_row(&DynRow::new().with("m", 1u8)).unwrap_err();
        assert_eq!(err.kind, ConversionErrorKind::NotInsertable);
        let err = b
            .push_row(&DynRow::new().with("_insert_id", "x"))
            .unwrap_err();
        assert_eq!(err.kind, ConversionErrorKind::NotInsertable);
        let err = b
            .push_row(&DynRow::new().with("a", 1u8).with("a", 2u8))
            .unwrap_err();
        assert_eq!(err.kind, ConversionErrorKind::DuplicateColumn);
        b.push_row(&DynRow::new().with("a", 3u8)).unwrap();
        assert_eq!(b.rows(), 2);
        assert_eq!(b.blocks(), 1);
    }

    #[test]
    fn shapes_make_blocks() {
        let rows = [
            DynRow::new().with("a", 1u8),
            DynRow::new().with("s", "x"),
            DynRow::new().with("a", 2u8).with("s", Value::Null),
        ];
        let mut ordered = NativeBatch::new(schema(), NativeOptions::default());
        let mut grouped = NativeBatch::new(
            schema(),
            NativeOptions {
                preserve_row_order: false,
                ..NativeOptions::default()
            },
        );
        for r in &rows {
            ordered.push_row(r).unwrap();
            grouped.push_row(r).unwrap();
        }
        assert_eq!(ordered.blocks(), 3);
        assert_eq!(grouped.blocks(), 2);
        let e = grouped.finish(Some(uuid::Uuid::nil()));
        assert_eq!(e.columns, ["a", "s", "_insert_id"]);
        assert_eq!(e.rows, 3);
    }
}
