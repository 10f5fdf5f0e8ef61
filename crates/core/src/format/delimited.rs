//! CSV and TabSeparated pass-through: rows that already are lines of the format are batched as
//! they are, with the insert's column list, and ClickHouse parses them.

use bytes::Bytes;
use uuid::Uuid;

use super::{BatchBuffer, BatchEncoder, Push};
use crate::batch::{Encoded, Format, RejectedRow};
use crate::types::insert_id::InsertIdColumn;

/// CSV or TabSeparated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delimiter {
    /// `CSV` (RFC 4180 quoting; `\N` is NULL).
    Csv,
    /// `TabSeparated` (backslash escapes; `\N` is NULL).
    Tsv,
}

/// Batches CSV or TSV lines (one record per row, no trailing newline; a CSV record may span
/// lines inside quotes). When the table has an `_insert_id` column that the column list lacks,
/// the batch id is appended to every record as the last field.
pub struct DelimitedRows {
    delimiter: Delimiter,
    columns: Vec<String>,
    lines: BatchBuffer,
    suffix: Vec<u8>,
    insert_id: Option<InsertIdColumn>,
}

impl DelimitedRows {
    /// An encoder for records whose fields are `columns`, in order (empty: all the table's
    /// columns, in table order).
    pub fn new(
        delimiter: Delimiter,
        columns: Vec<String>,
        insert_id: Option<InsertIdColumn>,
    ) -> Self {
        let insert_id = insert_id.filter(|c| !columns.is_empty() && !columns.contains(&c.name));
        let mut columns = columns;
        if let Some(c) = &insert_id {
            columns.push(c.name.clone());
        }
        Self {
            delimiter,
            columns,
            lines: BatchBuffer::default(),
            suffix: Vec::new(),
            insert_id,
        }
    }
}

impl BatchEncoder for DelimitedRows {
    type Row = Bytes;

    fn begin(&mut self, batch_id: Uuid) {
        self.lines.begin();
        self.suffix.clear();
        if self.insert_id.is_some() {
            self.suffix.push(match self.delimiter {
                Delimiter::Csv => b',',
                Delimiter::Tsv => b'\t',
            });
            self.suffix
                .extend_from_slice(batch_id.hyphenated().to_string().as_bytes());
        }
    }

    fn push(&mut self, row: Bytes, rejected: &mut Vec<RejectedRow>) -> Push<Bytes> {
        let line = row.strip_suffix(b"\n").unwrap_or(&row);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if self.delimiter == Delimiter::Tsv && line.contains(&b'\n') {
            rejected.push(RejectedRow {
                reason: "a TabSeparated row cannot hold a raw newline".into(),
                record: Some(String::from_utf8_lossy(line).into_owned()),
            });
            return Push::Done;
        }
        self.lines.start_row();
        self.lines.buf.extend_from_slice(line);
        self.lines.buf.extend_from_slice(&self.suffix);
        self.lines.buf.push(b'\n');
        Push::Done
    }

    fn rows(&self) -> usize {
        self.lines.rows()
    }

    fn bytes(&self) -> usize {
        self.lines.buf.len()
    }

    fn finish(&mut self) -> Encoded {
        let format = match self.delimiter {
            Delimiter::Csv => Format::Csv,
            Delimiter::Tsv => Format::TabSeparated,
        };
        self.lines.finish(self.columns.clone(), format)
    }

    fn fills_insert_id(&self) -> bool {
        self.insert_id.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_the_batch_id_as_last_field() {
        let id = InsertIdColumn::from_column("_insert_id", "UUID");
        let mut e = DelimitedRows::new(Delimiter::Csv, vec!["a".into(), "b".into()], id);
        e.begin(Uuid::nil());
        assert!(
            e.push(Bytes::from_static(b"1,\"x\ny\"\r\n"), &mut Vec::new())
                .is_done()
        );
        let out = e.finish();
        assert_eq!(out.columns, vec!["a", "b", "_insert_id"]);
        assert_eq!(
            String::from_utf8(out.bytes.to_vec()).unwrap(),
            format!("1,\"x\ny\",{}\n", Uuid::nil())
        );
        let mut e = DelimitedRows::new(Delimiter::Tsv, vec![], None);
        e.begin(Uuid::nil());
        let mut r = Vec::new();
        assert!(e.push(Bytes::from_static(b"a\nb"), &mut r).is_done());
        assert_eq!(r.len(), 1);
        assert!(
            e.push(Bytes::from_static(b"a\tb"), &mut Vec::new())
                .is_done()
        );
        assert_eq!(&e.finish().bytes[..], b"a\tb\n");
    }
}
