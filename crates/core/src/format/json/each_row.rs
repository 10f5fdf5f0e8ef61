//! JSONEachRow pass-through: rows that already are JSON objects (e.g. from an HTTP body or an
//! NDJSON file) are batched as they are, and ClickHouse parses them with its own JSONEachRow
//! rules (defaults for omitted fields, type conversion).

use bytes::Bytes;
use uuid::Uuid;

use crate::batch::{Encoded, Format, RejectedRow};
use crate::format::{BatchBuffer, BatchEncoder, Push};
use crate::types::insert_id::InsertIdColumn;

/// Batches JSON object rows (one object per row, without the newline) into a JSONEachRow
/// body.
///
/// When the table has an `_insert_id` column, the batch id is added to every object as its
/// first key; rows must then not carry `_insert_id` themselves (the caller checks).
pub struct JsonEachRow {
    lines: BatchBuffer,
    insert_id: Option<InsertIdColumn>,
    id_prefix: Vec<u8>,
    columns: Vec<String>,
}

impl JsonEachRow {
    /// An encoder; `columns` is the insert's column list (empty: the server matches keys to
    /// columns by name).
    pub fn new(insert_id: Option<InsertIdColumn>, columns: Vec<String>) -> Self {
        Self {
            lines: BatchBuffer::default(),
            insert_id,
            id_prefix: Vec::new(),
            columns,
        }
    }
}

/// Appends the JSON object `object` (trimmed, `{...}`) and a newline to `out`; with an
/// `id_prefix` (`{"_insert_id":"<batch id>"`), the object's keys follow it.
pub(crate) fn write_object(id_prefix: &[u8], object: &[u8], out: &mut Vec<u8>) {
    if id_prefix.is_empty() {
        out.extend_from_slice(object);
    } else {
        out.extend_from_slice(id_prefix);
        let inner = object[1..].trim_ascii_start();
        if inner != b"}" {
            out.push(b',');
        }
        out.extend_from_slice(inner);
    }
    out.push(b'\n');
}

/// The `{"<column>":"<batch id>"` prefix that puts a batch id into each JSON object row.
pub(crate) fn id_prefix(col: &InsertIdColumn, batch_id: Uuid) -> Vec<u8> {
    format!("{{\"{}\":\"{batch_id}\"", col.name).into_bytes()
}

impl BatchEncoder for JsonEachRow {
    type Row = Bytes;

    fn begin(&mut self, batch_id: Uuid) {
        self.lines.begin();
        self.id_prefix = match &self.insert_id {
            Some(col) => id_prefix(col, batch_id),
            None => Vec::new(),
        };
    }

    fn push(&mut self, row: Bytes, rejected: &mut Vec<RejectedRow>) -> Push<Bytes> {
        let trimmed = row.trim_ascii();
        if trimmed.first() != Some(&b'{') || trimmed.last() != Some(&b'}') {
            rejected.push(RejectedRow {
                reason: "a JSONEachRow row must be one JSON object".into(),
                record: Some(String::from_utf8_lossy(&row).into_owned()),
            });
            return Push::Done;
        }
        self.lines.start_row();
        write_object(&self.id_prefix, trimmed, &mut self.lines.buf);
        Push::Done
    }

    fn rows(&self) -> usize {
        self.lines.rows()
    }

    fn bytes(&self) -> usize {
        self.lines.buf.len()
    }

    fn finish(&mut self) -> Encoded {
        self.lines.finish(self.columns.clone(), Format::JsonEachRow)
    }

    fn fills_insert_id(&self) -> bool {
        self.insert_id.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_objects_through_and_injects_the_batch_id() {
        let mut e = JsonEachRow::new(None, Vec::new());
        e.begin(Uuid::nil());
        assert!(
            e.push(Bytes::from_static(b" {\"a\":1} "), &mut Vec::new())
                .is_done()
        );
        let mut r = Vec::new();
        assert!(e.push(Bytes::from_static(b"[1]"), &mut r).is_done());
        assert_eq!(r.len(), 1);
        let out = e.finish();
        assert_eq!(&out.bytes[..], b"{\"a\":1}\n");
        assert_eq!(out.rows, 1);

        let mut e = JsonEachRow::new(InsertIdColumn::from_column("_insert_id", "UUID"), vec![]);
        e.begin(Uuid::nil());
        assert!(
            e.push(Bytes::from_static(b"{\"a\":1}"), &mut Vec::new())
                .is_done()
        );
        assert!(
            e.push(Bytes::from_static(b"{ }"), &mut Vec::new())
                .is_done()
        );
        let out = e.finish();
        let nil = Uuid::nil();
        assert_eq!(
            String::from_utf8(out.bytes.to_vec()).unwrap(),
            format!("{{\"_insert_id\":\"{nil}\",\"a\":1}}\n{{\"_insert_id\":\"{nil}\"}}\n")
        );
        assert_eq!(out.parts.offsets().unwrap(), &[0, 60]);
    }
}
