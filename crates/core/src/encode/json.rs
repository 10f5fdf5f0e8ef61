//! JSONEachRow pass-through: rows that already are JSON objects (e.g. from an HTTP body or an
//! NDJSON file) are batched as they are, and ClickHouse parses them with its own JSONEachRow
//! rules (defaults for omitted fields, type conversion).

use bytes::Bytes;
use uuid::Uuid;

use super::{BatchEncoder, Encoded, RejectedRow};
use crate::dedup::InsertIdColumn;

/// Batches JSON object rows (one object per row, without the newline) into a JSONEachRow
/// body.
///
/// When the table has an `_insert_id` column, the batch id is added to every object as its
/// first key; rows must then not carry `_insert_id` themselves (the caller checks).
pub struct JsonEachRow {
    buf: Vec<u8>,
    offsets: Vec<u32>,
    insert_id: Option<InsertIdColumn>,
    id_prefix: Vec<u8>,
    columns: Vec<String>,
}

impl JsonEachRow {
    /// An encoder; `columns` is the insert's column list (empty: the server matches keys to
    /// columns by name).
    pub fn new(insert_id: Option<InsertIdColumn>, columns: Vec<String>) -> Self {
        Self {
            buf: Vec::new(),
            offsets: Vec::new(),
            insert_id,
            id_prefix: Vec::new(),
            columns,
        }
    }
}

impl BatchEncoder for JsonEachRow {
    type Row = Bytes;

    fn begin(&mut self, batch_id: Uuid) {
        self.buf = Vec::with_capacity(64 * 1024);
        self.offsets.clear();
        self.id_prefix.clear();
        if let Some(col) = &self.insert_id {
            self.id_prefix
                .extend_from_slice(format!("{{\"{}\":\"{batch_id}\"", col.name).as_bytes());
        }
    }

    fn push(&mut self, row: Bytes) -> Result<(), RejectedRow> {
        let trimmed = row.trim_ascii();
        if trimmed.first() != Some(&b'{') || trimmed.last() != Some(&b'}') {
            return Err(RejectedRow {
                reason: "a JSONEachRow row must be one JSON object".into(),
                record: Some(String::from_utf8_lossy(&row).into_owned()),
            });
        }
        self.offsets.push(self.buf.len() as u32);
        if self.id_prefix.is_empty() {
            self.buf.extend_from_slice(trimmed);
        } else {
            self.buf.extend_from_slice(&self.id_prefix);
            let inner = trimmed[1..].trim_ascii_start();
            if inner != b"}" {
                self.buf.push(b',');
            }
            self.buf.extend_from_slice(inner);
        }
        self.buf.push(b'\n');
        Ok(())
    }

    fn rows(&self) -> usize {
        self.offsets.len()
    }

    fn bytes(&self) -> usize {
        self.buf.len()
    }

    fn finish(&mut self) -> Encoded {
        let offsets = std::mem::take(&mut self.offsets);
        Encoded {
            columns: self.columns.clone(),
            format: "JSONEachRow",
            bytes: Bytes::from(std::mem::take(&mut self.buf)),
            rows: offsets.len(),
            row_offsets: Some(offsets),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_objects_through_and_injects_the_batch_id() {
        let mut e = JsonEachRow::new(None, Vec::new());
        e.begin(Uuid::nil());
        e.push(Bytes::from_static(b" {\"a\":1} ")).unwrap();
        assert!(e.push(Bytes::from_static(b"[1]")).is_err());
        let out = e.finish();
        assert_eq!(&out.bytes[..], b"{\"a\":1}\n");
        assert_eq!(out.rows, 1);

        let mut e = JsonEachRow::new(InsertIdColumn::from_column("_insert_id", "UUID"), vec![]);
        e.begin(Uuid::nil());
        e.push(Bytes::from_static(b"{\"a\":1}")).unwrap();
        e.push(Bytes::from_static(b"{ }")).unwrap();
        let out = e.finish();
        let nil = Uuid::nil();
        assert_eq!(
            String::from_utf8(out.bytes.to_vec()).unwrap(),
            format!("{{\"_insert_id\":\"{nil}\",\"a\":1}}\n{{\"_insert_id\":\"{nil}\"}}\n")
        );
        assert_eq!(out.row_offsets.unwrap(), vec![0, 60]);
    }
}
