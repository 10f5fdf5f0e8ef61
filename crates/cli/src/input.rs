//! Readers of `chasync insert`'s inputs: NDJSON, CSV and TSV records with their file and
//! line, from files (gzip / zstd by extension) or stdin.
//!
//! A malformed record is reported with its place and the reader goes on; what to do with it
//! (dead-letter it, or stop under `--strict`) is the caller's choice.

// Only the readers' own tests use them until the engine's runtime-schema path lands.
#![allow(dead_code)]

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::cli::InputFormat;

/// One record of an input.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// An NDJSON object.
    Object(Map<String, Value>),
    /// CSV or TSV fields; `None` is a NULL (`\N` in TSV).
    Fields(Vec<Option<String>>),
}

/// A record that could not be read, with what was read of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Malformed {
    /// Why.
    pub reason: String,
    /// The raw text, when there is one.
    pub raw: Option<String>,
}

/// A record, or a malformed one, at a place in an input.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// The input's name (`-` for stdin).
    pub source: Arc<str>,
    /// The 1-based line the record starts on.
    pub line: u64,
    /// The record.
    pub record: Result<Record, Malformed>,
}

impl Item {
    /// `file:line`.
    pub fn place(&self) -> String {
        format!("{}:{}", self.source, self.line)
    }
}

/// The format of a file from its name (after `.gz` / `.zst`), if the name tells.
pub fn format_from_name(path: &Path) -> Option<InputFormat> {
    let name = path.file_name()?.to_string_lossy().to_ascii_lowercase();
    let name = name
        .strip_suffix(".gz")
        .or_else(|| name.strip_suffix(".zst"))
        .or_else(|| name.strip_suffix(".zstd"))
        .unwrap_or(&name);
    let ext = name.rsplit_once('.')?.1;
    match ext {
        "ndjson" | "jsonl" | "json" => Some(InputFormat::Ndjson),
        "csv" => Some(InputFormat::Csv),
        "tsv" | "tab" => Some(InputFormat::Tsv),
        _ => None,
    }
}

/// Opens an input (`-` = stdin), decompressing `.gz` and `.zst` / `.zstd`.
pub fn open(path: &Path) -> io::Result<Box<dyn BufRead + Send>> {
    if path == Path::new("-") {
        return Ok(Box::new(BufReader::new(io::stdin())));
    }
    let file = File::open(path)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot open {}: {e}", path.display())))?;
    let name = path.to_string_lossy().to_ascii_lowercase();
    let reader: Box<dyn Read + Send> = if name.ends_with(".gz") {
        Box::new(flate2::read::MultiGzDecoder::new(BufReader::new(file)))
    } else if name.ends_with(".zst") || name.ends_with(".zstd") {
        Box::new(zstd::Decoder::new(file)?)
    } else {
        Box::new(file)
    };
    Ok(Box::new(BufReader::with_capacity(1 << 16, reader)))
}

/// A reader of records of one input.
pub struct Reader {
    source: Arc<str>,
    inner: Inner,
    header: Option<Vec<String>>,
}

enum Inner {
    Lines {
        input: Box<dyn BufRead + Send>,
        line: u64,
        format: InputFormat,
        buf: String,
    },
    Csv(Box<csv::Reader<Box<dyn BufRead + Send>>>),
}

impl Reader {
    /// Opens `path` as `format`; with `header`, the first CSV/TSV line names the columns.
    pub fn open(path: &Path, format: InputFormat, header: bool) -> io::Result<Self> {
        let input = open(path)?;
        Self::new(path.to_string_lossy().as_ref(), input, format, header)
    }

    /// A reader of `input`, named `source` in messages.
    pub fn new(
        source: &str,
        input: Box<dyn BufRead + Send>,
        format: InputFormat,
        header: bool,
    ) -> io::Result<Self> {
        let source: Arc<str> = Arc::from(source);
        let mut reader = match format {
            InputFormat::Csv => {
                let csv = csv::ReaderBuilder::new()
                    .has_headers(header)
                    .flexible(true)
                    .from_reader(input);
                Self {
                    source,
                    inner: Inner::Csv(Box::new(csv)),
                    header: None,
                }
            }
            InputFormat::Ndjson | InputFormat::Tsv => Self {
                source,
                inner: Inner::Lines {
                    input,
                    line: 0,
                    format,
                    buf: String::new(),
                },
                header: None,
            },
        };
        if header {
            reader.header = match &mut reader.inner {
                Inner::Csv(csv) => Some(
                    csv.headers()
                        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?
                        .iter()
                        .map(str::to_string)
                        .collect(),
                ),
                Inner::Lines {
                    format: InputFormat::Tsv,
                    ..
                } => match reader.next() {
                    Some(Ok(Item {
                        record: Ok(Record::Fields(f)),
                        ..
                    })) => Some(f.into_iter().map(Option::unwrap_or_default).collect()),
                    Some(Ok(item)) => {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!("{}: malformed header line", item.place()),
                        ));
                    }
                    Some(Err(e)) => return Err(e),
                    None => Some(Vec::new()),
                },
                Inner::Lines { .. } => None,
            };
        }
        Ok(reader)
    }

    /// The column names of the header line, if the input has one.
    pub fn header(&self) -> Option<&[String]> {
        self.header.as_deref()
    }
}

impl Iterator for Reader {
    type Item = io::Result<Item>;

    fn next(&mut self) -> Option<Self::Item> {
        let source = self.source.clone();
        let width = self.header.as_ref().map(Vec::len).filter(|w| *w > 0);
        match &mut self.inner {
            Inner::Lines {
                input,
                line,
                format,
                buf,
            } => loop {
                buf.clear();
                match input.read_line(buf) {
                    Ok(0) => return None,
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                        *line += 1;
                        return Some(Ok(Item {
                            source,
                            line: *line,
                            record: Err(Malformed {
                                reason: "not valid UTF-8".into(),
                                raw: None,
                            }),
                        }));
                    }
                    Err(e) => return Some(Err(e)),
                }
                *line += 1;
                let text = buf.trim_end_matches(['\n', '\r']);
                if text.trim().is_empty() {
                    continue;
                }
                let record = match format {
                    InputFormat::Ndjson => parse_json_line(text),
                    _ => parse_tsv_line(text, width),
                };
                return Some(Ok(Item {
                    source,
                    line: *line,
                    record,
                }));
            },
            Inner::Csv(csv) => {
                let mut rec = csv::StringRecord::new();
                match csv.read_record(&mut rec) {
                    Ok(false) => None,
                    Ok(true) => {
                        let line = rec.position().map_or(0, |p| p.line());
                        let fields: Vec<Option<String>> =
                            rec.iter().map(|f| Some(f.to_string())).collect();
                        let record = match width {
                            Some(w) if fields.len() != w => Err(Malformed {
                                reason: format!("{} fields, the header has {w}", fields.len()),
                                raw: Some(rec.iter().collect::<Vec<_>>().join(",")),
                            }),
                            _ => Ok(Record::Fields(fields)),
                        };
                        Some(Ok(Item {
                            source,
                            line,
                            record,
                        }))
                    }
                    Err(e) => {
                        let line = e.position().map_or(0, |p| p.line());
                        if let csv::ErrorKind::Io(_) = e.kind() {
                            return Some(Err(io::Error::other(e.to_string())));
                        }
                        Some(Ok(Item {
                            source,
                            line,
                            record: Err(Malformed {
                                reason: e.to_string(),
                                raw: None,
                            }),
                        }))
                    }
                }
            }
        }
    }
}

fn parse_json_line(text: &str) -> Result<Record, Malformed> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(Record::Object(map)),
        Ok(other) => Err(Malformed {
            reason: format!(
                "expected a JSON object, found {}",
                match other {
                    Value::Array(_) => "an array",
                    Value::String(_) => "a string",
                    Value::Number(_) => "a number",
                    Value::Bool(_) => "a boolean",
                    _ => "null",
                }
            ),
            raw: Some(text.to_string()),
        }),
        Err(e) => Err(Malformed {
            reason: format!("invalid JSON: {e}"),
            raw: Some(text.to_string()),
        }),
    }
}

/// Splits a TabSeparated line and undoes its escapes (`\t`, `\n`, `\\`, ...; `\N` is NULL).
fn parse_tsv_line(text: &str, width: Option<usize>) -> Result<Record, Malformed> {
    let mut fields = Vec::new();
    for raw in text.split('\t') {
        if raw == "\\N" {
            fields.push(None);
            continue;
        }
        let mut out = String::with_capacity(raw.len());
        let mut chars = raw.chars();
        while let Some(c) = chars.next() {
            if c != '\\' {
                out.push(c);
                continue;
            }
            match chars.next() {
                Some('t') => out.push('\t'),
                Some('n') => out.push('\n'),
                Some('r') => out.push('\r'),
                Some('b') => out.push('\u{8}'),
                Some('f') => out.push('\u{c}'),
                Some('0') => out.push('\0'),
                Some(other) => out.push(other),
                None => {
                    return Err(Malformed {
                        reason: "a backslash at the end of a field".into(),
                        raw: Some(text.to_string()),
                    });
                }
            }
        }
        fields.push(Some(out));
    }
    match width {
        Some(w) if fields.len() != w => Err(Malformed {
            reason: format!("{} fields, the header has {w}", fields.len()),
            raw: Some(text.to_string()),
        }),
        _ => Ok(Record::Fields(fields)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn read_all(
        path: &Path,
        format: InputFormat,
        header: bool,
    ) -> (Option<Vec<String>>, Vec<Item>) {
        let r = Reader::open(path, format, header).unwrap();
        let header = r.header().map(<[String]>::to_vec);
        (header, r.map(Result::unwrap).collect())
    }

    fn s(v: &str) -> Option<String> {
        Some(v.to_string())
    }

    #[test]
    fn formats_from_names() {
        assert_eq!(
            format_from_name(Path::new("a/b.ndjson")),
            Some(InputFormat::Ndjson)
        );
        assert_eq!(
            format_from_name(Path::new("b.jsonl.gz")),
            Some(InputFormat::Ndjson)
        );
        assert_eq!(
            format_from_name(Path::new("b.CSV.zst")),
            Some(InputFormat::Csv)
        );
        assert_eq!(format_from_name(Path::new("b.tsv")), Some(InputFormat::Tsv));
        assert_eq!(format_from_name(Path::new("b.txt")), None);
        assert_eq!(format_from_name(Path::new("-")), None);
    }

    #[test]
    fn ndjson_with_malformed_lines_and_places() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.ndjson");
        std::fs::write(&p, "{\"a\":1}\n\n{\"a\":\n[1]\n{\"a\":2}\r\n").unwrap();
        let (header, items) = read_all(&p, InputFormat::Ndjson, true);
        assert_eq!(header, None);
        assert_eq!(items.len(), 4);
        assert_eq!(items[0].line, 1);
        assert!(matches!(&items[0].record, Ok(Record::Object(m)) if m["a"] == 1));
        assert_eq!(items[1].line, 3);
        let bad = items[1].record.as_ref().unwrap_err();
        assert!(bad.reason.starts_with("invalid JSON"), "{bad:?}");
        assert_eq!(bad.raw.as_deref(), Some("{\"a\":"));
        assert_eq!(items[2].line, 4);
        assert!(
            items[2]
                .record
                .as_ref()
                .unwrap_err()
                .reason
                .contains("an array")
        );
        assert_eq!(items[3].line, 5);
        assert!(items[3].record.is_ok());
        assert!(items[3].place().ends_with("x.ndjson:5"));
    }

    #[test]
    fn csv_with_header_quotes_and_bad_width() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.csv");
        std::fs::write(&p, "id,name\n1,\"a,b\"\n2,\"multi\nline\"\n3\n4,d\n").unwrap();
        let (header, items) = read_all(&p, InputFormat::Csv, true);
        assert_eq!(header, Some(vec!["id".to_string(), "name".to_string()]));
        let lines: Vec<u64> = items.iter().map(|i| i.line).collect();
        assert_eq!(lines, vec![2, 3, 5, 6]);
        assert_eq!(items[0].record, Ok(Record::Fields(vec![s("1"), s("a,b")])));
        assert_eq!(
            items[1].record,
            Ok(Record::Fields(vec![s("2"), s("multi\nline")]))
        );
        assert!(
            items[2]
                .record
                .as_ref()
                .unwrap_err()
                .reason
                .contains("1 fields")
        );
        assert_eq!(items[3].record, Ok(Record::Fields(vec![s("4"), s("d")])));
    }

    #[test]
    fn tsv_escapes_nulls_and_no_header() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.tsv");
        std::fs::write(&p, "1\ta\\tb\\nc\t\\N\n2\tx\\\\y\tz\n").unwrap();
        let (header, items) = read_all(&p, InputFormat::Tsv, false);
        assert_eq!(header, None);
        assert_eq!(
            items[0].record,
            Ok(Record::Fields(vec![s("1"), s("a\tb\nc"), None]))
        );
        assert_eq!(
            items[1].record,
            Ok(Record::Fields(vec![s("2"), s("x\\y"), s("z")]))
        );
        // With a header, a line of the wrong width is malformed.
        std::fs::write(&p, "a\tb\n1\t2\n3\n").unwrap();
        let (header, items) = read_all(&p, InputFormat::Tsv, true);
        assert_eq!(header, Some(vec!["a".to_string(), "b".to_string()]));
        assert_eq!(items[0].line, 2);
        assert_eq!(items[1].line, 3);
        assert!(items[1].record.is_err());
    }

    #[test]
    fn gzip_and_zstd_by_extension() {
        let dir = tempfile::tempdir().unwrap();
        let text = "{\"a\":1}\n{\"a\":2}\n";
        let gz = dir.path().join("x.ndjson.gz");
        let mut enc =
            flate2::write::GzEncoder::new(File::create(&gz).unwrap(), flate2::Compression::fast());
        enc.write_all(text.as_bytes()).unwrap();
        enc.finish().unwrap();
        let zst = dir.path().join("x.ndjson.zst");
        std::fs::write(&zst, zstd::encode_all(text.as_bytes(), 3).unwrap()).unwrap();
        for p in [gz, zst] {
            let (_, items) = read_all(&p, format_from_name(&p).unwrap(), false);
            assert_eq!(items.len(), 2, "{}", p.display());
            assert!(matches!(&items[1].record, Ok(Record::Object(m)) if m["a"] == 2));
        }
    }
}
