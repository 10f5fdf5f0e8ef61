//! Bodies of rows already in their wire format (a gateway's requests), put one after the
//! other into one batch.

use std::sync::Arc;

use bytes::Bytes;
use uuid::Uuid;

use super::{BatchEncoder, Push};
use crate::batch::{Encoded, Format, Parts, RejectedRow, Units};
use crate::format::json::{id_prefix, read_object, write_object};
use crate::types::insert_id::InsertIdColumn;

/// One input of [`Bodies`]: a body of rows in the batch's format, and how many rows it holds.
#[derive(Debug, Clone)]
pub struct Body {
    /// The rows, in the format of the batch, without the format's header.
    pub bytes: Bytes,
    /// How many rows they are.
    pub rows: u32,
}

/// What goes between two bodies of a format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Joint {
    /// Nothing: the bodies of binary formats (RowBinary, Native blocks) follow one another.
    None,
    /// A line end, added to a body that does not end with one (CSV, TSV, `Values`: a body
    /// that ends in a `-- comment` would swallow the next one).
    Newline,
}

impl Joint {
    /// The bytes that go after `previous` (a body) before the next body is put after it.
    pub fn after(self, previous: &[u8]) -> &'static [u8] {
        match self {
            Joint::Newline if previous.last().is_some_and(|&b| b != b'\n') => b"\n",
            _ => b"",
        }
    }
}

/// Puts bodies of rows of one format one after the other: the batch is the format's header
/// (if it has one) followed by the bodies, each an indivisible unit ([`Parts::Units`]), so a
/// batch the server refuses is split between bodies and a body lands whole or not at all.
///
/// A format whose bodies cannot follow one another (Parquet, Arrow, ...) is `whole`: each
/// body is a batch of its own.
pub struct Bodies {
    format: Format,
    columns: Vec<String>,
    header: Bytes,
    joint: Joint,
    whole: bool,
    buf: Vec<u8>,
    starts: Vec<u32>,
    rows: Vec<u64>,
    /// JSON object lines only: the `_insert_id` column the batch id goes into.
    insert_id: Option<InsertIdColumn>,
    id_prefix: Vec<u8>,
}

impl Bodies {
    /// An encoder of bodies of `format` for `columns` (empty: every column), each batch
    /// starting with `header`.
    pub fn new(
        format: Format,
        columns: Vec<String>,
        header: Bytes,
        joint: Joint,
        whole: bool,
    ) -> Self {
        Self {
            format,
            columns,
            header,
            joint,
            whole,
            buf: Vec::new(),
            starts: Vec::new(),
            rows: vec![0],
            insert_id: None,
            id_prefix: Vec::new(),
        }
    }

    /// For bodies of JSON object lines (`JSONEachRow`): writes the batch id into `column` of
    /// every row, as [`crate::JsonEachRow`] does (rows must not set it themselves: the caller
    /// checks).
    pub fn with_insert_id(mut self, column: InsertIdColumn) -> Self {
        self.insert_id = Some(column);
        self
    }
}

impl BatchEncoder for Bodies {
    type Row = Body;

    fn begin(&mut self, batch_id: Uuid) {
        if let Some(col) = &self.insert_id {
            self.id_prefix = id_prefix(col, batch_id);
        }
        self.buf.clear();
        self.buf.extend_from_slice(&self.header);
        self.starts.clear();
        self.rows.clear();
        self.rows.push(0);
    }

    fn push(&mut self, body: Body, _rejected: &mut Vec<RejectedRow>) -> Push<Body> {
        // Batches are far below 4 GiB (`Config::validate` caps `max_bytes`).
        self.starts.push(self.buf.len() as u32);
        if self.insert_id.is_some() {
            // The objects as ClickHouse reads them: whitespace or commas between them, an
            // object over several lines.
            let bytes = &body.bytes[..];
            let mut at = 0;
            loop {
                while at < bytes.len() && matches!(bytes[at], b' ' | b'\t' | b'\r' | b'\n' | b',') {
                    at += 1;
                }
                if at == bytes.len() {
                    break;
                }
                match read_object(&bytes[at..], |_| {}) {
                    Ok(len) => {
                        write_object(&self.id_prefix, &bytes[at..at + len], &mut self.buf);
                        at += len;
                    }
                    Err(_) => {
                        // Not an object (the caller checks bodies first): left for the
                        // server to judge, as it came.
                        self.buf.extend_from_slice(&bytes[at..]);
                        self.buf.push(b'\n');
                        break;
                    }
                }
            }
        } else {
            self.buf.extend_from_slice(&body.bytes);
            self.buf.extend_from_slice(self.joint.after(&body.bytes));
        }
        let total = self.rows.last().copied().unwrap_or(0) + u64::from(body.rows);
        self.rows.push(total);
        Push::Done
    }

    fn input_rows(body: &Body) -> u64 {
        u64::from(body.rows)
    }

    fn rows(&self) -> usize {
        self.rows.last().copied().unwrap_or(0) as usize
    }

    fn units(&self) -> usize {
        self.starts.len()
    }

    fn bytes(&self) -> usize {
        self.buf.len()
    }

    fn full(&self) -> bool {
        self.whole && !self.starts.is_empty()
    }

    fn finish(&mut self) -> Encoded {
        let bytes = Bytes::from(std::mem::take(&mut self.buf));
        let units = Units {
            header_len: self.header.len(),
            starts: std::mem::take(&mut self.starts),
            rows: std::mem::replace(&mut self.rows, vec![0]),
        };
        Encoded {
            columns: self.columns.clone(),
            format: self.format,
            rows: *units.rows.last().unwrap_or(&0) as usize,
            bytes,
            parts: Parts::Units(Arc::new(units)),
        }
    }

    fn fills_insert_id(&self) -> bool {
        self.insert_id.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(text: &str, rows: u32) -> Body {
        Body {
            bytes: Bytes::copy_from_slice(text.as_bytes()),
            rows,
        }
    }

    #[test]
    fn bodies_follow_one_another_after_the_header_and_split_between_bodies() {
        let mut e = Bodies::new(
            Format::named("CSVWithNames"),
            vec!["a".into()],
            Bytes::from_static(b"a\n"),
            Joint::Newline,
            false,
        );
        e.begin(Uuid::nil());
        for (t, r) in [("1\n2", 2), ("3\n", 1), ("4\n5\n6\n", 3)] {
            assert!(e.push(body(t, r), &mut Vec::new()).is_done());
        }
        assert_eq!((e.rows(), e.units()), (6, 3));
        let enc = e.finish();
        assert_eq!(&enc.bytes[..], b"a\n1\n2\n3\n4\n5\n6\n");
        let Parts::Units(u) = &enc.parts else {
            panic!("units")
        };
        assert_eq!(
            (u.header_len, &u.starts[..], &u.rows[..]),
            (2, &[2, 6, 8][..], &[0, 2, 3, 6][..])
        );

        let mut v = Bodies::new(
            Format::named("Values"),
            vec![],
            Bytes::new(),
            Joint::Newline,
            false,
        );
        v.begin(Uuid::nil());
        assert!(v.push(body("(1),(2) -- two", 2), &mut Vec::new()).is_done());
        assert!(v.push(body("(3)", 1), &mut Vec::new()).is_done());
        assert_eq!(&v.finish().bytes[..], b"(1),(2) -- two\n(3)\n");

        let mut w = Bodies::new(
            Format::named("Parquet"),
            vec![],
            Bytes::new(),
            Joint::None,
            true,
        );
        w.begin(Uuid::nil());
        assert!(!w.full());
        assert!(w.push(body("PAR1", 4), &mut Vec::new()).is_done());
        assert!(w.full(), "a whole format takes one body a batch");
    }

    #[test]
    fn the_batch_id_goes_into_every_object_however_the_objects_are_laid_out() {
        let col = InsertIdColumn::from_column("_insert_id", "UUID").unwrap();
        let mut e = Bodies::new(
            Format::named("JSONEachRow"),
            vec![],
            Bytes::new(),
            Joint::Newline,
            false,
        )
        .with_insert_id(col);
        e.begin(Uuid::nil());
        let text = "{\"a\":1}, {\"a\":\n 2}\n\n{\"s\":\"x\\n}\"}\n{}";
        assert!(e.push(body(text, 4), &mut Vec::new()).is_done());
        let nil = Uuid::nil();
        let prefix = format!("{{\"_insert_id\":\"{nil}\"");
        assert_eq!(
            String::from_utf8(e.finish().bytes.to_vec()).unwrap(),
            format!(
                "{prefix},\"a\":1}}\n{prefix},\"a\":\n 2}}\n{prefix},\"s\":\"x\\n}}\"}}\n{prefix}}}\n"
            )
        );
    }
}
