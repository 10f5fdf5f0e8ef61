//! Encoders: rows in, the bytes of one batch out.
//!
//! A batch is encoded once, as its rows arrive, into the bytes that every attempt of its insert
//! sends. [`RowBinary`] encodes typed rows (`T: clickhouse::Row + Serialize`).
//!
//! Bodies already in a ClickHouse format (a gateway's requests) are looked up in the catalog
//! of formats (`info`), framed (`framing`: header split off, rows counted, checked as far as
//! cheap) and put one after the other (`bodies`).

pub(crate) mod bodies;
mod buffer;
pub(crate) mod delimited;
pub(crate) mod dynamic;
pub(crate) mod framing;
pub(crate) mod info;
pub(crate) mod json;
pub(crate) mod kind;
pub(crate) mod native;
pub(crate) mod rowbinary;

pub use delimited::{DelimitedRows, Delimiter};
pub use dynamic::{DynInput, DynamicRows};
pub use json::{
    JsonEachRow, JsonError, JsonRowBinary, JsonRowBinaryOptions, ObjectInfo, check_object,
    read_object,
};

use std::marker::PhantomData;

use serde::Serialize;
use uuid::Uuid;

use crate::batch::{Encoded, Format, RejectedRow};
use crate::types::insert_id::InsertIdColumn;
pub(crate) use buffer::BatchBuffer;

/// What became of an input pushed into an encoder.
#[derive(Debug)]
#[must_use]
pub enum Push<R> {
    /// Encoded, or refused into the rejected rows.
    Done,
    /// The input names something the encoder's schema lacks (a column added since it was
    /// read): the input is handed back, to push again once the schema is read again.
    StaleSchema(R),
}

impl<R> Push<R> {
    /// Whether the input was taken (encoded or refused).
    pub fn is_done(&self) -> bool {
        matches!(self, Push::Done)
    }
}

/// Turns rows into the encoded bytes of one batch at a time.
///
/// The batcher calls [`begin`](Self::begin) with the batch id before the first row of each
/// batch, [`push`](Self::push) for every row, and [`finish`](Self::finish) when the batch is
/// sealed.
pub trait BatchEncoder: Send + 'static {
    /// The row type producers send.
    type Row: Send + 'static;

    /// Starts a new batch with the given id (the value of the `_insert_id` column, if any).
    fn begin(&mut self, batch_id: Uuid);

    /// Adds one input (a row, or for columnar encoders a set of rows) to the current batch.
    /// Rows that cannot be encoded leave no trace in the batch and are appended to
    /// `rejected`. An encoder whose schema may be out of date hands the input back
    /// ([`Push::StaleSchema`]); the pipeline then reads the table again, gives the encoder the
    /// schema ([`update_schema`](Self::update_schema)) and pushes the input once more.
    fn push(&mut self, row: Self::Row, rejected: &mut Vec<RejectedRow>) -> Push<Self::Row>;

    /// Takes a schema read again after [`Push::StaleSchema`] (the same one when nothing
    /// changed). Encoders that do not ask for schemas ignore it.
    fn update_schema(&mut self, _schema: std::sync::Arc<crate::types::schema::TableSchema>) {}

    /// Rows in the current batch.
    fn rows(&self) -> usize;

    /// The units the current batch can be split at (see [`crate::Parts`]): its rows, unless
    /// the encoder splits at something else.
    fn units(&self) -> usize {
        self.rows()
    }

    /// Whether the current batch must be sealed now whatever its size (an encoder whose
    /// batches hold one input each, say).
    fn full(&self) -> bool {
        false
    }

    /// Encoded bytes in the current batch (exact or a close estimate).
    fn bytes(&self) -> usize;

    /// Seals the current batch and returns its bytes.
    fn finish(&mut self) -> Encoded;

    /// How many rows one input holds, for the counters ([`crate::Stats::rows_accepted`],
    /// [`crate::Stats::queue_depth`]): 1 unless an input can carry several rows (a columnar
    /// batch).
    fn input_rows(_row: &Self::Row) -> u64
    where
        Self: Sized,
    {
        1
    }

    /// Readies an input for the queue, on the producer's thread before it is queued: the
    /// input itself unless the encoder keeps inputs in another form (the dynamic encoder
    /// holds columnar batches as typed columns where their values allow, in a fraction of
    /// the memory; see [`crate::types::value::ColumnData::compact`]).
    fn prepare(row: Self::Row) -> Self::Row
    where
        Self: Sized,
    {
        row
    }

    /// An encoder of single rows that producers may run on their own threads (see
    /// [`crate::Writer`]; each writer gets a copy with [`RowEncoder::fresh`]): rows then reach
    /// the batcher already encoded, in chunks, and are dropped where they were made. `None`
    /// (the default) when this encoder's output cannot be built row by row ahead of its
    /// batch; producers then hand over the rows themselves.
    ///
    /// Rows so encoded end with the `_insert_id` column, if the insert has one the engine
    /// fills, holding a placeholder of the column's width that
    /// [`push_encoded`](Self::push_encoded) overwrites with the batch id.
    fn row_encoder(&self) -> Option<Box<dyn RowEncoder<Self::Row>>> {
        None
    }

    /// Appends rows `range` of a chunk made by [`row_encoder`](Self::row_encoder)'s encoder
    /// to the current batch. Only called on encoders that return a row encoder.
    fn push_encoded(&mut self, _chunk: &EncodedRows, _range: std::ops::Range<usize>) {
        unreachable!("push_encoded on an encoder without a row encoder")
    }

    /// Whether every row of a batch carries the batch id in the table's `_insert_id` column
    /// ([`crate::Batch::carries_insert_id`]): delivery then can look a batch's rows up in the
    /// table to tell whether an attempt whose answer was lost landed. `false` (the default)
    /// unless the encoder fills the column.
    fn fills_insert_id(&self) -> bool {
        false
    }
}

/// Encodes one row at a time on a producer's thread, into a chunk that the batcher appends
/// to a batch with [`BatchEncoder::push_encoded`].
pub trait RowEncoder<R>: Send {
    /// Appends `row` to `buf`. On error `buf` may hold part of the row: the caller truncates
    /// it back.
    fn encode(&mut self, row: &R, buf: &mut Vec<u8>) -> Result<(), String>;

    /// Another encoder like this one, for another producer.
    fn fresh(&self) -> Box<dyn RowEncoder<R>>;
}

/// Appends rows `range` of `chunk` to a batch's `buf` and `offsets`; with `insert_id`, the
/// batch id encoded as that column, written over the placeholder at the end of each row.
pub(crate) fn append_encoded(
    buf: &mut Vec<u8>,
    offsets: &mut Vec<u32>,
    chunk: &EncodedRows,
    range: std::ops::Range<usize>,
    insert_id: Option<(&InsertIdColumn, &Uuid)>,
) {
    let bytes = chunk.byte_range(range.clone());
    let base = buf.len() as i64 - bytes.start as i64;
    let first = offsets.len();
    buf.extend_from_slice(&chunk.bytes[bytes]);
    // Batches are far below 4 GiB (`Config::validate` caps `max_bytes`).
    offsets.extend(
        chunk.offsets[range]
            .iter()
            .map(|&o| (o as i64 + base) as u32),
    );
    if let Some((col, batch_id)) = insert_id {
        let mut id = Vec::with_capacity(40);
        col.put(&mut id, batch_id);
        let n = offsets.len();
        for i in first..n {
            let end = if i + 1 < n {
                offsets[i + 1] as usize
            } else {
                buf.len()
            };
            buf[end - id.len()..end].copy_from_slice(&id);
        }
    }
}

/// Rows encoded by a [`RowEncoder`]: their bytes, back to back, and where each starts.
#[derive(Debug, Default)]
pub struct EncodedRows {
    /// The rows' bytes.
    pub bytes: Vec<u8>,
    /// Where each row starts in `bytes`.
    pub offsets: Vec<u32>,
}

impl EncodedRows {
    /// Rows held.
    pub fn rows(&self) -> usize {
        self.offsets.len()
    }

    /// The byte range of rows `range`.
    pub fn byte_range(&self, range: std::ops::Range<usize>) -> std::ops::Range<usize> {
        let start = self
            .offsets
            .get(range.start)
            .map_or(self.bytes.len(), |&o| o as usize);
        let end = self
            .offsets
            .get(range.end)
            .map_or(self.bytes.len(), |&o| o as usize);
        start..end
    }

    /// Appends one row with `encoder`; on error nothing of it is kept.
    pub fn push<R>(&mut self, encoder: &mut dyn RowEncoder<R>, row: &R) -> Result<(), String> {
        let start = self.bytes.len();
        match encoder.encode(row, &mut self.bytes) {
            Ok(()) => {
                // Chunks are far below 4 GiB (a writer sends its chunk at 1 MiB).
                self.offsets.push(start as u32);
                Ok(())
            }
            Err(e) => {
                self.bytes.truncate(start);
                Err(e)
            }
        }
    }
}

/// RowBinary encoder of typed rows.
///
/// When the table has an `_insert_id` column that `T` does not have, every row is followed by
/// the batch id, and `_insert_id` is appended to the column list.
pub struct RowBinary<T> {
    batch: BatchBuffer,
    columns: Vec<String>,
    insert_id: Option<InsertIdColumn>,
    batch_id: Uuid,
    _row: PhantomData<fn(T)>,
}

impl<T> RowBinary<T>
where
    T: clickhouse::Row + Serialize + Send + 'static,
{
    /// An encoder for `T`; `insert_id` is how the table stores `_insert_id`, if it does and `T`
    /// does not carry it itself.
    pub fn new(insert_id: Option<InsertIdColumn>) -> Self {
        let mut columns: Vec<String> = T::COLUMN_NAMES.iter().map(|c| c.to_string()).collect();
        let insert_id = insert_id.filter(|col| !columns.iter().any(|c| c == &col.name));
        if let Some(col) = &insert_id {
            columns.push(col.name.clone());
        }
        Self {
            batch: BatchBuffer::default(),
            columns,
            insert_id,
            batch_id: Uuid::nil(),
            _row: PhantomData,
        }
    }
}

impl<T> BatchEncoder for RowBinary<T>
where
    T: clickhouse::Row + Serialize + Send + 'static,
{
    type Row = T;

    fn begin(&mut self, batch_id: Uuid) {
        self.batch_id = batch_id;
        self.batch.begin();
    }

    #[inline]
    fn push(&mut self, row: T, rejected: &mut Vec<RejectedRow>) -> Push<T> {
        let buf = &mut self.batch.buf;
        let start = buf.len();
        if let Err(e) = rowbinary::serialize_into(buf, &row) {
            buf.truncate(start);
            rejected.push(RejectedRow {
                reason: e.0,
                record: None,
            });
            return Push::Done;
        }
        if let Some(col) = &self.insert_id {
            col.put(buf, &self.batch_id);
        }
        self.batch.row_at(start);
        Push::Done
    }

    fn rows(&self) -> usize {
        self.batch.rows()
    }

    fn bytes(&self) -> usize {
        self.batch.buf.len()
    }

    fn row_encoder(&self) -> Option<Box<dyn RowEncoder<T>>> {
        Some(Box::new(RowBinaryRow {
            insert_id: self.insert_id.clone(),
        }))
    }

    fn push_encoded(&mut self, chunk: &EncodedRows, range: std::ops::Range<usize>) {
        append_encoded(
            &mut self.batch.buf,
            &mut self.batch.offsets,
            chunk,
            range,
            self.insert_id.as_ref().map(|c| (c, &self.batch_id)),
        );
    }

    fn finish(&mut self) -> Encoded {
        self.batch.finish(self.columns.clone(), Format::RowBinary)
    }

    fn fills_insert_id(&self) -> bool {
        self.insert_id.is_some()
    }
}

/// [`RowBinary`]'s encoder of single rows: the row, then a placeholder `_insert_id` of the
/// column's width that [`BatchEncoder::push_encoded`] overwrites with the batch id.
struct RowBinaryRow {
    insert_id: Option<InsertIdColumn>,
}

impl<T: Serialize> RowEncoder<T> for RowBinaryRow {
    #[inline]
    fn encode(&mut self, row: &T, buf: &mut Vec<u8>) -> Result<(), String> {
        rowbinary::serialize_into(buf, row).map_err(|e| e.0)?;
        if let Some(col) = &self.insert_id {
            col.put(buf, &Uuid::nil());
        }
        Ok(())
    }

    fn fresh(&self) -> Box<dyn RowEncoder<T>> {
        Box::new(RowBinaryRow {
            insert_id: self.insert_id.clone(),
        })
    }
}

/// A boxed encoder is an encoder: lets one pipeline type serve encoders chosen at run time
/// (e.g. JSONEachRow or CSV rows of `Bytes`).
impl<R: Send + 'static> BatchEncoder for Box<dyn BatchEncoder<Row = R>> {
    type Row = R;

    fn begin(&mut self, batch_id: Uuid) {
        (**self).begin(batch_id)
    }

    fn push(&mut self, row: R, rejected: &mut Vec<RejectedRow>) -> Push<R> {
        (**self).push(row, rejected)
    }

    fn update_schema(&mut self, schema: std::sync::Arc<crate::types::schema::TableSchema>) {
        (**self).update_schema(schema)
    }

    fn rows(&self) -> usize {
        (**self).rows()
    }

    fn units(&self) -> usize {
        (**self).units()
    }

    fn full(&self) -> bool {
        (**self).full()
    }

    fn bytes(&self) -> usize {
        (**self).bytes()
    }

    fn finish(&mut self) -> Encoded {
        (**self).finish()
    }

    fn row_encoder(&self) -> Option<Box<dyn RowEncoder<R>>> {
        (**self).row_encoder()
    }

    fn push_encoded(&mut self, chunk: &EncodedRows, range: std::ops::Range<usize>) {
        (**self).push_encoded(chunk, range)
    }

    fn fills_insert_id(&self) -> bool {
        (**self).fills_insert_id()
    }
}
