//! Validation of a JSONEachRow body before it is accepted: every row one JSON object, every
//! key a column of the table. The result is the WAL's body format: one object per line.
//!
//! The rows are read by the engine's JSON checker ([`chasync_core::read_object`]), the one the
//! text pipeline checks its JSON lines with: JSON the way ClickHouse's JSONEachRow reads it.

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use bytes::Bytes;
use chasync_core::read_object;

/// A body that passed: the rows, one per line (each followed by `\n`), and how many.
#[derive(Debug)]
pub struct Rows {
    /// The rows.
    pub body: Bytes,
    /// Row count.
    pub rows: u32,
    /// Keys that are not columns of the table, with the line of their first use.
    pub unknown: BTreeMap<String, u64>,
    /// The line of the first row that carries the engine's `_insert_id`, if any.
    pub insert_id_line: Option<u64>,
}

/// Why a body was refused.
#[derive(Debug, PartialEq)]
pub struct Invalid {
    /// 1-based line of the request body.
    pub line: u64,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// What the validator checks keys against.
pub trait Columns {
    /// Whether `key` names a column (or the parent of nested columns `key.x`).
    fn has(&self, key: &str) -> bool;
}

impl Columns for HashSet<String> {
    fn has(&self, key: &str) -> bool {
        self.contains(key)
            || self.iter().any(|c| {
                c.len() > key.len() && c.starts_with(key) && c.as_bytes()[key.len()] == b'.'
            })
    }
}

/// Validates `data` (a JSONEachRow body). `first_line` is the body line `data` starts at
/// (1 unless the query came first). `insert_id` names the column the engine fills, which
/// rows must not carry.
pub fn validate(
    data: &[u8],
    first_line: u64,
    columns: &dyn Columns,
    insert_id: Option<&str>,
) -> Result<Rows, Invalid> {
    let mut out = Vec::with_capacity(data.len() + 1);
    let mut rows = 0u32;
    let mut unknown = BTreeMap::new();
    let mut insert_id_line = None;
    let mut line = first_line;
    let mut seen: HashSet<String> = HashSet::new();
    let mut at = 0usize;
    loop {
        // The white space before a row (JSON's: spaces, tabs and line breaks).
        while let Some(&c) = data.get(at)
            && matches!(c, b' ' | b'\t' | b'\r' | b'\n')
        {
            line += u64::from(c == b'\n');
            at += 1;
        }
        if at == data.len() {
            break;
        }
        let mut not_utf8 = false;
        let read = read_object(&data[at..], |key| {
            let Ok(key) = std::str::from_utf8(key) else {
                not_utf8 = true;
                return;
            };
            if insert_id == Some(key) {
                insert_id_line.get_or_insert(line);
            } else if !seen.contains(key) {
                if !columns.has(key) {
                    unknown.entry(key.to_string()).or_insert(line);
                }
                seen.insert(key.to_string());
            }
        });
        let end = match read {
            Ok(len) => at + len,
            Err(e) => {
                return Err(Invalid {
                    line: line + count_newlines(&data[at..at + e.offset]),
                    message: format!("invalid JSONEachRow row: {e}"),
                });
            }
        };
        if not_utf8 {
            return Err(Invalid {
                line,
                message: "invalid JSONEachRow row: a key that is not UTF-8".into(),
            });
        }
        let row = &data[at..end];
        let start = out.len();
        out.extend_from_slice(row);
        // A row spread over lines (pretty-printed): JSON has no raw newlines inside
        // strings, so turning them into spaces keeps its meaning and makes it one line.
        let nl = count_newlines(row);
        if nl > 0 {
            for b in &mut out[start..] {
                if *b == b'\n' || *b == b'\r' {
                    *b = b' ';
                }
            }
        }
        line += nl;
        out.push(b'\n');
        rows += 1;
        at = end;
    }
    if rows == 0 && !data.trim_ascii().is_empty() {
        return Err(Invalid {
            line: first_line,
            message: "no JSON object found".into(),
        });
    }
    Ok(Rows {
        body: Bytes::from(out),
        rows,
        unknown,
        insert_id_line,
    })
}

fn count_newlines(b: &[u8]) -> u64 {
    b.iter().filter(|&&c| c == b'\n').count() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cols(names: &[&str]) -> HashSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn normalises_rows_and_reports_lines() {
        let c = cols(&["a", "b", "n.x"]);
        let r = validate(
            b"{\"a\":1}\n\r\n  {\"b\":\"x\\ny\"}\n{\n \"a\": 2,\n \"n\": {\"x\": [1]}\n}\n",
            1,
            &c,
            None,
        )
        .unwrap();
        assert_eq!(r.rows, 3);
        assert_eq!(
            std::str::from_utf8(&r.body).unwrap(),
            "{\"a\":1}\n{\"b\":\"x\\ny\"}\n{  \"a\": 2,  \"n\": {\"x\": [1]} }\n"
        );
        assert!(r.unknown.is_empty());

        let e = validate(b"{\"a\":1}\n{\"a\":2}\n{\"a\":}\n", 1, &c, None).unwrap_err();
        assert_eq!(e.line, 3, "{e}");
        let e = validate(b"{\"a\":1}\n[1,2]\n", 2, &c, None).unwrap_err();
        assert_eq!(e.line, 3, "{e}");
        assert!(e.message.contains("JSON object"), "{e}");

        let r = validate(b"{\"a\":1}\n\n{\"zz\":1,\"a\":2}\n{\"zz\":3}", 1, &c, None).unwrap();
        assert_eq!(
            r.unknown.into_iter().collect::<Vec<_>>(),
            vec![("zz".to_string(), 3)]
        );

        let r = validate(
            b"{\"a\":1}\n{\"_insert_id\":\"x\"}",
            1,
            &c,
            Some("_insert_id"),
        )
        .unwrap();
        assert_eq!(r.insert_id_line, Some(2));

        let r = validate(b"  \n", 1, &c, None).unwrap();
        assert_eq!(r.rows, 0);
        assert!(validate(b"nonsense", 1, &c, None).is_err());
    }

    /// An error names the line of the byte that is wrong, also inside a row spread over
    /// lines; keys are read with their escapes decoded; a key must be UTF-8.
    #[test]
    fn errors_name_the_line_of_the_byte() {
        let c = cols(&["a", "b"]);
        let e = validate(b"{\"a\": 1}\n{\n  \"a\": 2,\n  \"b\": }\n", 5, &c, None).unwrap_err();
        assert_eq!(e.line, 8, "{e}");
        assert!(e.message.starts_with("invalid JSONEachRow row: "), "{e}");
        let e = validate(b"{\"a\": 1} x", 1, &c, None).unwrap_err();
        assert_eq!(e.line, 1, "{e}");
        assert!(e.message.contains("JSON object"), "{e}");
        let r = validate(b"{\"\\u0061\": 1}{\"b\": 2}", 1, &c, None).unwrap();
        assert_eq!(r.rows, 2);
        assert!(r.unknown.is_empty());
        let e = validate(b"{\"a\": 1}\n{\"\xff\": 1}", 1, &c, None).unwrap_err();
        assert_eq!(e.line, 2, "{e}");
        assert!(e.message.contains("UTF-8"), "{e}");
    }
}
