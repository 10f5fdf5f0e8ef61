//! The small part of ClickHouse's HTTP interface the daemon speaks: `INSERT INTO [db.]t
//! FORMAT JSONEachRow`, in the `query` parameter or at the start of the body.

/// The target and format of an insert.
#[derive(Debug, PartialEq, Eq)]
pub struct Insert {
    /// Database, when the query names one.
    pub database: Option<String>,
    /// Table.
    pub table: String,
    /// Bytes of the query text up to and including the format name (the data follows).
    pub consumed: usize,
}

/// Formats the daemon accepts (JSONEachRow and its aliases).
pub const FORMATS: [&str; 3] = ["jsoneachrow", "jsonlines", "ndjson"];

struct Lexer<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Lexer<'a> {
    fn skip_ws(&mut self) {
        while let Some(c) = self.s[self.pos..].chars().next() {
            if c.is_whitespace() {
                self.pos += c.len_utf8();
            } else if self.s[self.pos..].starts_with("--") {
                // A comment runs to the end of the line.
                let rest = &self.s[self.pos..];
                self.pos += rest.find('\n').map_or(rest.len(), |i| i + 1);
            } else {
                break;
            }
        }
    }

    fn word(&mut self) -> Option<&'a str> {
        self.skip_ws();
        let rest = &self.s[self.pos..];
        let len = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '$'))
            .unwrap_or(rest.len());
        (len > 0).then(|| {
            self.pos += len;
            &rest[..len]
        })
    }

    fn keyword(&mut self, kw: &str) -> bool {
        let save = self.pos;
        match self.word() {
            Some(w) if w.eq_ignore_ascii_case(kw) => true,
            _ => {
                self.pos = save;
                false
            }
        }
    }

    fn ident(&mut self) -> Result<String, String> {
        self.skip_ws();
        let rest = &self.s[self.pos..];
        match rest.chars().next() {
            Some(q @ ('`' | '"')) => {
                let mut out = String::new();
                let mut chars = rest.char_indices().skip(1);
                while let Some((i, c)) = chars.next() {
                    if c == '\\' {
                        if let Some((_, n)) = chars.next() {
                            out.push(n);
                        }
                    } else if c == q {
                        self.pos += i + 1;
                        return Ok(out);
                    } else {
                        out.push(c);
                    }
                }
                Err("unterminated quoted identifier".into())
            }
            _ => self
                .word()
                .map(str::to_string)
                .ok_or_else(|| "expected a table name".into()),
        }
    }

    fn peek(&mut self) -> Option<char> {
        self.skip_ws();
        self.s[self.pos..].chars().next()
    }
}

/// Parses `INSERT INTO [TABLE] [db.]table FORMAT JSONEachRow` at the start of `text`.
pub fn parse_insert(text: &str) -> Result<Insert, String> {
    let unsupported = || {
        "chasyncd accepts only `INSERT INTO [db.]table FORMAT JSONEachRow` (with the rows in the body)"
            .to_string()
    };
    let mut lx = Lexer { s: text, pos: 0 };
    if !(lx.keyword("INSERT") && lx.keyword("INTO")) {
        return Err(unsupported());
    }
    lx.keyword("TABLE");
    let first = lx.ident()?;
    let (database, table) = if lx.peek() == Some('.') {
        lx.pos += 1;
        (Some(first), lx.ident()?)
    } else {
        (None, first)
    };
    if lx.peek() == Some('(') {
        return Err(
            "column lists are not supported: JSONEachRow rows name their columns themselves".into(),
        );
    }
    if !lx.keyword("FORMAT") {
        return Err(unsupported());
    }
    let format = lx.word().ok_or_else(unsupported)?;
    if !FORMATS.iter().any(|f| format.eq_ignore_ascii_case(f)) {
        return Err(format!(
            "format {format} is not supported: chasyncd accepts JSONEachRow"
        ));
    }
    if table.is_empty() || database.as_deref() == Some("") {
        return Err("empty table name".into());
    }
    Ok(Insert {
        database,
        table,
        consumed: lx.pos,
    })
}

/// Decodes `%XX` escapes and `+` (as a space) of a URL query component.
pub fn percent_decode(s: &str, plus_is_space: bool) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 3;
                }
                _ => {
                    out.push(b'%');
                    i += 1;
                }
            },
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

/// The decoded `name=value` pairs of a URL query string.
pub fn query_params(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k, true), percent_decode(v, true))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_inserts_clickhouse_clients_send() {
        let i = parse_insert("INSERT INTO db.t FORMAT JSONEachRow").unwrap();
        assert_eq!(
            (i.database.as_deref(), i.table.as_str(), i.consumed),
            (Some("db"), "t", 35)
        );
        let i = parse_insert("insert into table `my db`.\"t\\\"x\" format JSONEachRow\n{\"a\":1}")
            .unwrap();
        assert_eq!(
            (i.database.as_deref(), i.table.as_str()),
            (Some("my db"), "t\"x")
        );
        assert_eq!(
            &"insert into table `my db`.\"t\\\"x\" format JSONEachRow\n{\"a\":1}"[i.consumed..],
            "\n{\"a\":1}"
        );
        let i = parse_insert("  INSERT INTO t FORMAT JSONLines").unwrap();
        assert_eq!((i.database, i.table.as_str()), (None, "t"));
        assert!(parse_insert("SELECT 1").is_err());
        assert!(parse_insert("INSERT INTO t VALUES (1)").is_err());
        assert!(
            parse_insert("INSERT INTO t FORMAT CSV")
                .unwrap_err()
                .contains("CSV")
        );
        assert!(
            parse_insert("INSERT INTO t (a) FORMAT JSONEachRow")
                .unwrap_err()
                .contains("column lists")
        );
    }

    #[test]
    fn decodes_query_strings() {
        assert_eq!(
            query_params("query=INSERT%20INTO+db.t%20FORMAT%20JSONEachRow&database=x&bad=%zz%"),
            vec![
                ("query".into(), "INSERT INTO db.t FORMAT JSONEachRow".into()),
                ("database".into(), "x".into()),
                ("bad".into(), "%zz%".into())
            ]
        );
    }
}
