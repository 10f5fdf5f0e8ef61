//! JSONEachRow pass-through: rows that already are JSON objects (e.g. from an HTTP body or an
//! NDJSON file) are batched as they are, and ClickHouse parses them with its own JSONEachRow
//! rules (defaults for omitted fields, type conversion).

use bytes::Bytes;
use uuid::Uuid;

use super::{BatchBuffer, BatchEncoder, Push};
use crate::batch::{Encoded, Format, RejectedRow};
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

/// What [`check_object`] found in a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectInfo {
    /// The object has a top-level `_insert_id` key.
    pub has_insert_id: bool,
}

/// Checks that `line` is exactly one JSON object, the way ClickHouse's JSONEachRow reads it:
/// strings may hold any bytes but control characters (ClickHouse strings are bytes, and its
/// own JSON output does not validate UTF-8), numbers of any width are fine. Returns why not,
/// with the byte position, when it is not.
pub fn check_object(line: &[u8]) -> Result<ObjectInfo, String> {
    let mut p = JsonCheck {
        s: line,
        i: 0,
        depth: 0,
    };
    p.ws();
    if p.peek() != Some(b'{') {
        return Err(match p.peek() {
            None => "an empty line is not a JSON object".into(),
            Some(c) => format!("expected a JSON object, found {:?} at byte 1", c as char),
        });
    }
    let info = p.object(true)?;
    p.ws();
    if p.i != line.len() {
        return Err(format!(
            "unexpected data after the object at byte {}",
            p.i + 1
        ));
    }
    Ok(info)
}

struct JsonCheck<'a> {
    s: &'a [u8],
    i: usize,
    depth: u32,
}

impl JsonCheck<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\r' | b'\n')) {
            self.i += 1;
        }
    }

    fn err<T>(&self, what: &str) -> Result<T, String> {
        Err(match self.peek() {
            None => format!("{what}, found the end of the line"),
            Some(c) => format!("{what}, found {:?} at byte {}", c as char, self.i + 1),
        })
    }

    fn expect(&mut self, c: u8, what: &str) -> Result<(), String> {
        if self.peek() == Some(c) {
            self.i += 1;
            Ok(())
        } else {
            self.err(what)
        }
    }

    fn object(&mut self, top: bool) -> Result<ObjectInfo, String> {
        self.depth += 1;
        if self.depth > 512 {
            return Err("JSON nested too deep".into());
        }
        let mut info = ObjectInfo {
            has_insert_id: false,
        };
        self.i += 1;
        self.ws();
        if self.peek() == Some(b'}') {
            self.i += 1;
            self.depth -= 1;
            return Ok(info);
        }
        loop {
            self.ws();
            if self.peek() != Some(b'"') {
                return self.err("expected a key string");
            }
            let key = self.string()?;
            if top && key == b"\"_insert_id\"" {
                info.has_insert_id = true;
            }
            self.ws();
            self.expect(b':', "expected ':'")?;
            self.value()?;
            self.ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b'}') => {
                    self.i += 1;
                    self.depth -= 1;
                    return Ok(info);
                }
                _ => return self.err("expected ',' or '}'"),
            }
        }
    }

    fn array(&mut self) -> Result<(), String> {
        self.depth += 1;
        if self.depth > 512 {
            return Err("JSON nested too deep".into());
        }
        self.i += 1;
        self.ws();
        if self.peek() == Some(b']') {
            self.i += 1;
            self.depth -= 1;
            return Ok(());
        }
        loop {
            self.value()?;
            self.ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b']') => {
                    self.i += 1;
                    self.depth -= 1;
                    return Ok(());
                }
                _ => return self.err("expected ',' or ']'"),
            }
        }
    }

    /// A string, quotes included; returns its raw bytes.
    fn string(&mut self) -> Result<&[u8], String> {
        let start = self.i;
        self.i += 1;
        loop {
            match self.peek() {
                None => {
                    return Err(format!(
                        "unterminated string starting at byte {}",
                        start + 1
                    ));
                }
                Some(b'"') => {
                    self.i += 1;
                    return Ok(&self.s[start..self.i]);
                }
                Some(b'\\') => {
                    self.i += 1;
                    match self.peek() {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => self.i += 1,
                        Some(b'u') => {
                            let hex = self.s.get(self.i + 1..self.i + 5);
                            if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                                return self.err("expected 4 hex digits after \\u");
                            }
                            self.i += 5;
                        }
                        _ => return self.err("invalid escape"),
                    }
                }
                Some(c) if c < 0x20 => return self.err("control character in a string"),
                Some(_) => self.i = super::json_binary::plain_run(self.s, self.i + 1),
            }
        }
    }

    fn number(&mut self) -> Result<(), String> {
        let start = self.i;
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        let digits = |p: &mut Self| {
            let s = p.i;
            while p.peek().is_some_and(|c| c.is_ascii_digit()) {
                p.i += 1;
            }
            p.i > s
        };
        if !digits(self) {
            self.i = start;
            return self.err("expected a value");
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            if !digits(self) {
                return self.err("expected digits after '.'");
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if !digits(self) {
                return self.err("expected an exponent");
            }
        }
        Ok(())
    }

    fn literal(&mut self, word: &[u8]) -> Result<(), String> {
        if self.s[self.i..].starts_with(word) {
            self.i += word.len();
            Ok(())
        } else {
            self.err("expected a value")
        }
    }

    fn value(&mut self) -> Result<(), String> {
        self.ws();
        match self.peek() {
            Some(b'{') => self.object(false).map(|_| ()),
            Some(b'[') => self.array(),
            Some(b'"') => self.string().map(|_| ()),
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            _ => self.number(),
        }
    }
}

#[cfg(test)]
mod check_tests {
    use super::check_object;

    #[test]
    fn accepts_what_clickhouse_writes() {
        assert!(check_object(br#"{}"#).is_ok());
        assert!(check_object(br#" {"a": 1, "b": [1, 2.5e-3, -7], "c": {"d": null}} "#).is_ok());
        // Wider than 64 bits, quoted 64-bit, raw non-UTF-8 bytes in a string.
        assert!(check_object(br#"{"u256": 115792089237316195423570985008687907853269984665640564039457584007913129639935, "i": "18446744073709551615"}"#).is_ok());
        assert!(check_object(b"{\"s\": \"\xff\xfe bytes\"}").is_ok());
        assert!(check_object(br#"{"e": "\u00e9\n\"x\""}"#).is_ok());
        assert!(
            check_object(br#"{"_insert_id": "x"}"#)
                .unwrap()
                .has_insert_id
        );
        assert!(
            !check_object(br#"{"a": {"_insert_id": 1}}"#)
                .unwrap()
                .has_insert_id
        );
    }

    #[test]
    fn rejects_broken_lines_with_a_position() {
        for (line, want) in [
            (&br#"{"a": 1"#[..], "expected ',' or '}'"),
            (br#"[1]"#, "expected a JSON object"),
            (br#"{"a": tru}"#, "expected a value"),
            (
                br#"{"a": 1} x"#,
                "unexpected data after the object at byte 10",
            ),
            (br#"{a: 1}"#, "expected a key string"),
            (br#"{"a": "x}"#, "unterminated string"),
            (br#"{"a": 01.}"#, "expected digits after '.'"),
            (b"", "empty line"),
        ] {
            let err = check_object(line).unwrap_err();
            assert!(
                err.contains(want),
                "{:?}: {err}",
                String::from_utf8_lossy(line)
            );
        }
    }
}
