//! Rows whose schema is known only at run time (dynamic rows and columnar batches), encoded
//! as Native for the table's column types through the same pipeline as typed rows.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use uuid::Uuid;

use super::{BatchEncoder, Push};
use crate::batch::{Encoded, Format, Parts, RejectedRow, RowSource, RowSourceRef};
use crate::format::native::{
    ConversionError, ConversionErrorKind, EncodedNative, NativeBatch, NativeOptions,
};
use crate::types::schema::TableSchema;
use crate::types::value::{ColumnBatch, DynRow, Value};

/// One input of a dynamic pipeline: a row, or a columnar batch of rows.
#[derive(Debug, Clone)]
pub enum DynInput {
    /// A row of named values.
    Row(DynRow),
    /// Named columns of equal length.
    Columns(ColumnBatch),
}

impl From<DynRow> for DynInput {
    fn from(row: DynRow) -> Self {
        Self::Row(row)
    }
}

impl From<ColumnBatch> for DynInput {
    fn from(cols: ColumnBatch) -> Self {
        Self::Columns(cols)
    }
}

/// The least time between two schema refreshes caused by unknown keys.
const REFRESH_EVERY: Duration = Duration::from_secs(1);

/// Encodes [`DynInput`]s as Native for the table's schema.
///
/// A key that names no column asks the pipeline for a fresher schema (at most once a second:
/// [`Push::StaleSchema`]), so columns added by `ALTER TABLE ... ADD COLUMN` are picked up
/// without a restart; the row is tried again against the new schema. Rows that still cannot be converted are rejected
/// with an error naming the row, column, value and target type.
pub struct DynamicRows {
    schema: Arc<TableSchema>,
    opts: NativeOptions,
    fill_insert_id: bool,
    current: Option<NativeBatch>,
    /// Parts of the open batch encoded under an earlier schema.
    done: Vec<EncodedNative>,
    /// The open batch's inputs and which of their rows were accepted, kept so that the engine
    /// can encode parts of the batch again to isolate rows the server rejects.
    inputs: Vec<DynInput>,
    accepted: Vec<(u32, u32)>,
    batch_id: Uuid,
    last_refresh: Option<Instant>,
}

impl DynamicRows {
    /// An encoder for `schema`; with `fill_insert_id`, the table's `_insert_id` column (if
    /// any) holds the batch id.
    pub fn new(schema: Arc<TableSchema>, opts: NativeOptions, fill_insert_id: bool) -> Self {
        Self {
            schema,
            opts,
            fill_insert_id,
            current: None,
            done: Vec::new(),
            inputs: Vec::new(),
            accepted: Vec::new(),
            batch_id: Uuid::nil(),
            last_refresh: None,
        }
    }

    /// The schema rows are encoded for now.
    pub fn schema(&self) -> &Arc<TableSchema> {
        &self.schema
    }

    fn current(&mut self) -> &mut NativeBatch {
        self.current
            .get_or_insert_with(|| NativeBatch::new(self.schema.clone(), self.opts.clone()))
    }

    fn insert_id(&self) -> Option<Uuid> {
        self.fill_insert_id.then_some(self.batch_id)
    }

    /// Whether a conversion error calls for a fresher schema: a key that names no column,
    /// at most once per [`REFRESH_EVERY`].
    fn wants_refresh(&mut self, err: &ConversionError) -> bool {
        if err.kind != ConversionErrorKind::UnknownColumn
            || self
                .last_refresh
                .is_some_and(|t| t.elapsed() < REFRESH_EVERY)
        {
            return false;
        }
        self.last_refresh = Some(Instant::now());
        true
    }
}

fn row_json(row: &DynRow) -> String {
    let mut out = String::from("{");
    for (i, (k, v)) in row.fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&serde_json::to_string(k).expect("string"));
        out.push(':');
        v.write_json(&mut out);
    }
    out.push('}');
    out
}

fn column_row_json(cols: &ColumnBatch, row: usize) -> String {
    let mut out = String::from("{");
    let mut first = true;
    for (name, data) in &cols.columns {
        if let Some(v) = data.value(row) {
            if !first {
                out.push(',');
            }
            first = false;
            out.push_str(&serde_json::to_string(name).expect("string"));
            out.push(':');
            v.write_json(&mut out);
        }
    }
    out.push('}');
    out
}

fn columns_json(cols: &ColumnBatch) -> String {
    let mut out = String::from("{");
    for (i, (name, data)) in cols.columns.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&serde_json::to_string(name).expect("string"));
        out.push(':');
        Value::Array(data.to_values()).write_json(&mut out);
    }
    out.push('}');
    out
}

impl BatchEncoder for DynamicRows {
    type Row = DynInput;

    fn begin(&mut self, batch_id: Uuid) {
        self.batch_id = batch_id;
        self.current = None;
        self.done.clear();
        self.inputs.clear();
        self.accepted.clear();
    }

    fn push(&mut self, input: DynInput, rejected: &mut Vec<RejectedRow>) -> Push<DynInput> {
        match input {
            DynInput::Row(row) => {
                let result = self.current().push_row(&row);
                if let Err(e) = &result
                    && self.wants_refresh(e)
                {
                    return Push::StaleSchema(DynInput::Row(row));
                }
                match result {
                    Ok(()) => {
                        self.accepted.push((self.inputs.len() as u32, 0));
                        self.inputs.push(DynInput::Row(row));
                    }
                    Err(e) => rejected.push(RejectedRow {
                        reason: e.to_string(),
                        record: Some(row_json(&row)),
                    }),
                }
            }
            DynInput::Columns(cols) => {
                let result = self.current().push_columns(&cols);
                if let Err(e) = &result
                    && self.wants_refresh(e)
                {
                    return Push::StaleSchema(DynInput::Columns(cols));
                }
                match result {
                    Ok(outcome) => {
                        let mut bad = vec![false; cols.rows()];
                        for e in outcome.rejected {
                            if let Some(b) = bad.get_mut(e.row) {
                                *b = true;
                            }
                            rejected.push(RejectedRow {
                                record: Some(column_row_json(&cols, e.row)),
                                reason: e.to_string(),
                            });
                        }
                        let input = self.inputs.len() as u32;
                        self.accepted.extend(
                            (0..cols.rows())
                                .filter(|r| !bad[*r])
                                .map(|r| (input, r as u32)),
                        );
                        self.inputs.push(DynInput::Columns(cols));
                    }
                    // The whole batch is refused (unknown or non-insertable column, columns
                    // of different lengths): every row goes to the spool with the reason, so
                    // the counters count rows, not batches.
                    Err(e) => {
                        let n = cols.columns.iter().map(|(_, c)| c.len()).max().unwrap_or(0);
                        if n == 0 {
                            rejected.push(RejectedRow {
                                reason: format!("columnar batch refused: {e}"),
                                record: Some(columns_json(&cols)),
                            });
                        }
                        for row in 0..n {
                            rejected.push(RejectedRow {
                                reason: format!(
                                    "columnar batch of {} rows refused: {e}",
                                    cols.rows()
                                ),
                                record: Some(column_row_json(&cols, row)),
                            });
                        }
                    }
                }
            }
        }
        Push::Done
    }

    fn update_schema(&mut self, schema: Arc<TableSchema>) {
        if schema.columns == self.schema.columns {
            return;
        }
        tracing::info!(table = %schema.qualified_name(), "the table's schema changed: refreshed");
        if let Some(part) = self.current.take()
            && !part.is_empty()
        {
            self.done.push(part.finish(self.insert_id()));
        }
        self.schema = schema;
    }

    fn input_rows(input: &DynInput) -> u64
    where
        Self: Sized,
    {
        match input {
            DynInput::Row(_) => 1,
            DynInput::Columns(cols) => cols.rows() as u64,
        }
    }

    /// Columnar batches become typed columns where their values allow: they wait in the
    /// queue and stay with their batch until it is committed (to isolate rows the server
    /// refuses) in a fraction of the memory, and encode into the same bytes, faster.
    fn prepare(input: DynInput) -> DynInput
    where
        Self: Sized,
    {
        match input {
            DynInput::Columns(cols) => DynInput::Columns(cols.compact()),
            row => row,
        }
    }

    fn rows(&self) -> usize {
        self.done.iter().map(|p| p.rows).sum::<usize>()
            + self.current.as_ref().map_or(0, NativeBatch::rows)
    }

    fn bytes(&self) -> usize {
        self.done.iter().map(|p| p.bytes.len()).sum::<usize>()
            + self.current.as_ref().map_or(0, NativeBatch::encoded_bytes)
    }

    fn finish(&mut self) -> Encoded {
        let source = (!self.accepted.is_empty()).then(|| {
            let retained = Arc::new(Retained {
                schema: self.schema.clone(),
                opts: self.opts.clone(),
                fill_insert_id: self.fill_insert_id,
                inputs: std::mem::take(&mut self.inputs),
                accepted: std::mem::take(&mut self.accepted),
            });
            let rows = retained.accepted.len();
            RowSourceRef(Arc::new(RetainedRange {
                all: retained,
                range: 0..rows,
            }))
        });
        let mut encoded = self.finish_parts();
        if let Some(source) = source {
            encoded.parts = Parts::Source(source);
        }
        encoded
    }

    fn fills_insert_id(&self) -> bool {
        self.fill_insert_id && self.schema.insert_id().is_some()
    }
}

impl DynamicRows {
    fn finish_parts(&mut self) -> Encoded {
        let insert_id = self.insert_id();
        if let Some(part) = self.current.take()
            && (!part.is_empty() || self.done.is_empty())
        {
            self.done.push(part.finish(insert_id));
        }
        let mut parts = std::mem::take(&mut self.done);
        if parts.len() == 1 {
            let part = parts.pop().expect("one part");
            return Encoded {
                columns: part.columns,
                format: Format::Native,
                bytes: part.bytes,
                rows: part.rows,
                parts: Parts::Whole,
            };
        }
        // Parts under different schemas: one insert whose column list covers them all; each
        // Native block names its own columns and the server fills the others with defaults.
        let mut columns: Vec<String> = Vec::new();
        for c in &self.schema.columns {
            if parts.iter().any(|p| p.columns.contains(&c.name)) {
                columns.push(c.name.clone());
            }
        }
        for p in &parts {
            for c in &p.columns {
                if !columns.contains(c) {
                    columns.push(c.clone());
                }
            }
        }
        let mut bytes = BytesMut::with_capacity(parts.iter().map(|p| p.bytes.len()).sum());
        for p in &parts {
            bytes.extend_from_slice(&p.bytes);
        }
        Encoded {
            columns,
            format: Format::Native,
            bytes: Bytes::from(bytes),
            rows: parts.iter().map(|p| p.rows).sum(),
            parts: Parts::Whole,
        }
    }
}

/// The accepted rows of a sealed dynamic batch.
struct Retained {
    schema: Arc<TableSchema>,
    opts: NativeOptions,
    fill_insert_id: bool,
    inputs: Vec<DynInput>,
    /// (input, row within the input) of each accepted row, in batch order.
    accepted: Vec<(u32, u32)>,
}

/// A range of the rows of a [`Retained`] batch.
struct RetainedRange {
    all: Arc<Retained>,
    range: std::ops::Range<usize>,
}

impl RowSource for RetainedRange {
    fn rows(&self) -> usize {
        self.range.len()
    }

    fn encode(&self, range: std::ops::Range<usize>, batch_id: Uuid) -> Encoded {
        let all = &self.all;
        let abs = self.range.start + range.start..self.range.start + range.end;
        let mut batch = NativeBatch::new(all.schema.clone(), all.opts.clone());
        let picks = &all.accepted[abs.clone()];
        let mut i = 0;
        while i < picks.len() {
            let (input, _) = picks[i];
            let mut j = i;
            while j < picks.len() && picks[j].0 == input {
                j += 1;
            }
            // These rows were accepted once: they convert again (errors cannot happen, and
            // would only drop rows already dead-lettered).
            match &all.inputs[input as usize] {
                DynInput::Row(row) => {
                    let _ = batch.push_row(row);
                }
                DynInput::Columns(cols) => {
                    let rows: Vec<usize> = picks[i..j].iter().map(|p| p.1 as usize).collect();
                    let mut part = ColumnBatch::new();
                    let contiguous = rows.windows(2).all(|w| w[1] == w[0] + 1);
                    for (name, data) in &cols.columns {
                        let data = match (contiguous, rows.first(), rows.last()) {
                            (true, Some(&lo), Some(&hi)) => data.slice(lo..hi + 1),
                            _ => data.take(&rows),
                        };
                        part.push_data(name.clone(), data);
                    }
                    let _ = batch.push_columns(&part);
                }
            }
            i = j;
        }
        let part = batch.finish(all.fill_insert_id.then_some(batch_id));
        Encoded {
            columns: part.columns,
            format: Format::Native,
            bytes: part.bytes,
            rows: part.rows,
            parts: Parts::Source(RowSourceRef(Arc::new(RetainedRange {
                all: all.clone(),
                range: abs,
            }))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::schema::ColumnDef;

    fn encoder() -> DynamicRows {
        let schema = Arc::new(TableSchema::from_columns(
            "db",
            "t",
            vec![
                ColumnDef::new("id", "UInt64"),
                ColumnDef::new("name", "String"),
                ColumnDef::new("v", "Nullable(Float64)"),
                ColumnDef::new("tags", "Array(LowCardinality(String))"),
                ColumnDef::new("_insert_id", "UUID"),
            ],
        ));
        DynamicRows::new(schema, NativeOptions::default(), true)
    }

    fn row(i: u64) -> DynRow {
        let tags = (0..i % 3)
            .map(|t| Value::from(format!("t{t}")))
            .collect::<Vec<_>>();
        match i % 7 {
            // Another order of the keys, a column left out.
            0 => DynRow::new().with("name", format!("n{i}")).with("id", i),
            // NULL in a column that is not Nullable: the row omits it.
            1 => DynRow::new()
                .with("id", i)
                .with("name", Value::Null)
                .with("v", i as f64 / 2.0),
            // A key twice; no fields at all.
            2 => DynRow::new().with("id", i).with("id", i + 1),
            3 => DynRow::new(),
            // A value the column refuses.
            4 if i.is_multiple_of(4) => DynRow::new().with("id", -1i64),
            _ => DynRow::new()
                .with("id", i)
                .with("name", format!("n{i}"))
                .with(
                    "v",
                    if i.is_multiple_of(5) {
                        Value::Null
                    } else {
                        Value::Float(i as f64)
                    },
                )
                .with("tags", Value::Array(tags)),
        }
    }

    fn columns(from: u64, n: u64) -> ColumnBatch {
        ColumnBatch::new()
            .with_column("id", (from..from + n).map(Value::from).collect())
            .with_column(
                "name",
                (from..from + n)
                    .map(|i| Value::from(format!("c{i}")))
                    .collect(),
            )
    }

    /// Encodes `inputs` as one batch: the bytes, the rows rejected, and the rows kept.
    fn batch(inputs: Vec<DynInput>, id: Uuid) -> (Encoded, usize) {
        let mut enc = encoder();
        enc.begin(id);
        let mut rejected = Vec::new();
        for input in inputs {
            assert!(enc.push(input, &mut rejected).is_done());
        }
        (enc.finish(), rejected.len())
    }

    /// The rows a batch keeps (rows and columnar input, with rows refused) encode again
    /// into the same bytes, and any range of them into the bytes of a batch of just those
    /// rows: what isolating rows the server refuses relies on.
    #[test]
    fn kept_rows_encode_again_into_the_same_bytes() {
        let mut inputs: Vec<DynInput> = (0..40).map(|i| row(i).into()).collect();
        inputs.insert(20, columns(1000, 5).into());
        inputs.extend((40..60).map(|i| DynInput::from(row(i))));
        // A long run of rows with the same keys.
        inputs.extend((100..130).map(|i| DynInput::from(row(i * 7 + 5))));
        let id = Uuid::from_u128(7);
        let (encoded, rejected) = batch(inputs.clone(), id);
        assert!(rejected > 0);
        let Parts::Source(source) = &encoded.parts else {
            panic!("a source")
        };
        let n = source.0.rows();
        assert_eq!(n, encoded.rows);
        let again = source.0.encode(0..n, id);
        assert_eq!(again.bytes, encoded.bytes);
        assert_eq!(again.columns, encoded.columns);

        // Any range: the bytes of a batch of the same rows (those accepted, in order).
        let mut rows_in_order: Vec<DynInput> = Vec::new();
        for input in inputs {
            match input {
                DynInput::Row(r) => {
                    let (e, rej) = batch(vec![r.clone().into()], id);
                    if rej == 0 && e.rows == 1 {
                        rows_in_order.push(r.into());
                    }
                }
                DynInput::Columns(c) => {
                    for i in 0..c.rows() {
                        let mut one = ColumnBatch::new();
                        for (k, d) in &c.columns {
                            one.push_data(k.clone(), d.slice(i..i + 1));
                        }
                        rows_in_order.push(one.into());
                    }
                }
            }
        }
        assert_eq!(rows_in_order.len(), n);
        for range in [0..1, 3..9, 10..30, 17..n, 0..n] {
            let part = source.0.encode(range.clone(), id);
            let (fresh, _) = batch(rows_in_order[range.clone()].to_vec(), id);
            assert_eq!(part.rows, range.len());
            assert_eq!(part.bytes, fresh.bytes, "rows {range:?}");
        }
    }
}
