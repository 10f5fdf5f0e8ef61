//! Readers of `chasync insert`'s inputs: NDJSON, CSV and TSV records with their file and
//! line, from files (gzip / zstd by extension) or stdin.
//!
//! A malformed record is reported with its place and the reader goes on; what to do with it
//! (dead-letter it, or stop under `--strict`) is the caller's choice.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use crate::cli::{FormatName, InputFormat};

/// A record that could not be read, with what was read of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Malformed {
    /// Why.
    pub reason: String,
    /// The raw text (lossy for bytes that are not UTF-8), when there is one.
    pub raw: Option<String>,
}

/// A record, or a malformed one, at a place in an input.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// The input's name (`-` for stdin).
    pub source: Arc<str>,
    /// The 1-based line the record starts on.
    pub line: u64,
    /// The record, as the bytes ClickHouse will parse (an NDJSON line, a TabSeparated line, or
    /// a CSV record re-quoted by the CSV reader, which may span lines), without its line end;
    /// or why it could not be read.
    pub record: Result<Bytes, Malformed>,
}

impl Item {
    /// `file:line`.
    pub fn place(&self) -> String {
        format!("{}:{}", self.source, self.line)
    }
}

/// The format of a file from its name (after `.gz` / `.zst`), if the name tells.
pub fn format_from_name(path: &Path) -> Option<FormatName> {
    let name = path.file_name()?.to_string_lossy().to_ascii_lowercase();
    let name = name
        .strip_suffix(".gz")
        .or_else(|| name.strip_suffix(".zst"))
        .or_else(|| name.strip_suffix(".zstd"))
        .unwrap_or(&name);
    let ext = name.rsplit_once('.')?.1;
    let format = match ext {
        "ndjson" | "jsonl" | "json" => InputFormat::Ndjson,
        "csv" => InputFormat::Csv,
        "tsv" | "tab" => InputFormat::Tsv,
        "parquet" | "pq" => InputFormat::Parquet,
        "arrow" | "feather" | "ipc" => InputFormat::ArrowFile,
        "arrows" => InputFormat::ArrowStream,
        _ => return None,
    };
    Some(FormatName {
        format,
        header: None,
    })
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
///
/// An input that cannot be read to its end (a truncated `.gz`, an I/O error) gives one error
/// that names it and the place it reached (line, and byte of the decompressed text), then
/// ends.
pub struct Reader {
    source: Arc<str>,
    inner: Inner,
    header: Option<Vec<String>>,
    failed: bool,
}

enum Inner {
    Lines {
        input: Box<dyn BufRead + Send>,
        line: u64,
        format: InputFormat,
        /// Read ahead; records are cut from it without copying (they share its memory).
        buf: BytesMut,
        eof: bool,
        /// Bytes of the (decompressed) text cut into lines so far.
        consumed: u64,
    },
    Csv {
        reader: Box<csv::Reader<Box<dyn BufRead + Send>>>,
        record: csv::ByteRecord,
    },
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
        if format.columnar() {
            return Err(io::Error::other(format!(
                "{source}: {format:?} is not read as text records"
            )));
        }
        let mut reader = match format {
            InputFormat::Csv => Self {
                source,
                inner: Inner::Csv {
                    reader: Box::new(
                        csv::ReaderBuilder::new()
                            .has_headers(header)
                            .flexible(true)
                            .from_reader(input),
                    ),
                    record: csv::ByteRecord::new(),
                },
                header: None,
                failed: false,
            },
            _ => Self {
                source,
                inner: Inner::Lines {
                    input,
                    line: 0,
                    format,
                    buf: BytesMut::new(),
                    eof: false,
                    consumed: 0,
                },
                header: None,
                failed: false,
            },
        };
        if header {
            reader.header = match &mut reader.inner {
                Inner::Csv { reader: csv, .. } => Some(
                    csv.byte_headers()
                        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?
                        .iter()
                        .map(|f| String::from_utf8_lossy(f).into_owned())
                        .collect(),
                ),
                Inner::Lines {
                    format: InputFormat::Tsv,
                    ..
                } => match reader.next() {
                    Some(Ok(Item {
                        record: Ok(rec), ..
                    })) => Some(
                        rec.split(|b| *b == b'\t')
                            .map(|f| String::from_utf8_lossy(f).into_owned())
                            .collect(),
                    ),
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

    /// The input's name.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The place reached: the last line read, and the bytes of the (decompressed) text read
    /// into records.
    pub fn reached(&self) -> (u64, u64) {
        match &self.inner {
            Inner::Lines { line, consumed, .. } => (*line, *consumed),
            Inner::Csv { reader, .. } => {
                let p = reader.position();
                (p.line().saturating_sub(1), p.byte())
            }
        }
    }

    /// An error that ends the input, with its place.
    fn fail(&mut self, e: io::Error) -> io::Error {
        self.failed = true;
        let (line, byte) = self.reached();
        io::Error::new(
            e.kind(),
            format!(
                "{}: cannot be read past line {line} (byte {byte} of its text): {e}",
                self.source
            ),
        )
    }
}

impl Iterator for Reader {
    type Item = io::Result<Item>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        match self.next_item() {
            Some(Err(e)) => Some(Err(self.fail(e))),
            other => other,
        }
    }
}

impl Reader {
    fn next_item(&mut self) -> Option<io::Result<Item>> {
        let source = self.source.clone();
        // Checked here for CSV (the reader frames fields); the engine checks TSV lines.
        let width = self.header.as_ref().map(Vec::len).filter(|w| *w > 0);
        match &mut self.inner {
            Inner::Lines {
                input,
                line,
                buf,
                eof,
                consumed,
                ..
            } => loop {
                let raw = match next_line(input, buf, eof) {
                    Ok(Some(raw)) => raw,
                    Ok(None) => return None,
                    Err(e) => return Some(Err(e)),
                };
                *line += 1;
                *consumed += raw.len() as u64;
                let mut len = raw.len();
                if raw[..len].ends_with(b"\n") {
                    len -= 1;
                }
                if raw[..len].ends_with(b"\r") {
                    len -= 1;
                }
                if raw[..len].trim_ascii().is_empty() {
                    continue;
                }
                return Some(Ok(Item {
                    source,
                    line: *line,
                    record: Ok(raw.slice(..len)),
                }));
            },
            Inner::Csv { reader, record } => match reader.read_byte_record(record) {
                Ok(false) => None,
                Ok(true) => {
                    let line = record.position().map_or(0, |p| p.line());
                    let result = match width {
                        Some(w) if record.len() != w => Err(Malformed {
                            reason: format!("{} fields, the header has {w}", record.len()),
                            raw: Some(lossy_join(record)),
                        }),
                        _ => Ok(write_csv(record)),
                    };
                    Some(Ok(Item {
                        source,
                        line,
                        record: result,
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
            },
        }
    }
}

/// Reads ahead at least this much at a time.
const READ_AHEAD: usize = 1 << 20;

/// The next line of `input` (with its `\n`, if it has one), cut from the read-ahead buffer.
fn next_line(
    input: &mut Box<dyn BufRead + Send>,
    buf: &mut BytesMut,
    eof: &mut bool,
) -> io::Result<Option<Bytes>> {
    let mut searched = 0;
    loop {
        if let Some(n) = memchr::memchr(b'\n', &buf[searched..]) {
            return Ok(Some(buf.split_to(searched + n + 1).freeze()));
        }
        searched = buf.len();
        if *eof {
            return Ok((!buf.is_empty()).then(|| buf.split().freeze()));
        }
        // Lines cut earlier share the old buffer; `reserve` moves the partial line to a new
        // one when needed.
        buf.reserve(READ_AHEAD);
        let start = buf.len();
        buf.resize(buf.capacity(), 0);
        let n = loop {
            match input.read(&mut buf[start..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    buf.truncate(start);
                    return Err(e);
                }
            }
        };
        buf.truncate(start + n);
        if n == 0 {
            *eof = true;
        }
    }
}

fn lossy_join(record: &csv::ByteRecord) -> String {
    record
        .iter()
        .map(String::from_utf8_lossy)
        .collect::<Vec<_>>()
        .join(",")
}

/// One CSV record as ClickHouse's CSV reads it (quoted where needed).
fn write_csv(record: &csv::ByteRecord) -> Bytes {
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(Vec::with_capacity(record.as_slice().len() + 8));
    w.write_byte_record(record).expect("writing to memory");
    let mut out = w.into_inner().expect("writing to memory");
    if out.last() == Some(&b'\n') {
        out.pop();
    }
    Bytes::from(out)
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

    fn text(item: &Item) -> String {
        String::from_utf8_lossy(item.record.as_ref().unwrap()).into_owned()
    }

    #[test]
    fn formats_from_names() {
        let f = |name: &str| format_from_name(Path::new(name)).map(|f| f.format);
        assert_eq!(f("a/b.ndjson"), Some(InputFormat::Ndjson));
        assert_eq!(f("b.jsonl.gz"), Some(InputFormat::Ndjson));
        assert_eq!(f("b.CSV.zst"), Some(InputFormat::Csv));
        assert_eq!(f("b.tsv"), Some(InputFormat::Tsv));
        assert_eq!(f("b.parquet"), Some(InputFormat::Parquet));
        assert_eq!(f("b.arrow"), Some(InputFormat::ArrowFile));
        assert_eq!(f("b.arrows"), Some(InputFormat::ArrowStream));
        assert_eq!(f("b.txt"), None);
        assert_eq!(f("-"), None);
    }

    #[test]
    fn ndjson_lines_with_their_places() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.ndjson");
        std::fs::write(&p, b"{\"a\":1}\n\n{\"a\":\n[1]\n{\"a\":\"\xff\"}\r\n").unwrap();
        let (header, items) = read_all(&p, InputFormat::Ndjson, true);
        assert_eq!(header, None);
        // Blank lines are skipped; the engine checks each record (see `TextWriter`).
        let lines: Vec<u64> = items.iter().map(|i| i.line).collect();
        assert_eq!(lines, vec![1, 3, 4, 5]);
        assert_eq!(text(&items[0]), "{\"a\":1}");
        assert_eq!(text(&items[1]), "{\"a\":");
        assert_eq!(text(&items[2]), "[1]");
        // Bytes that are not UTF-8 pass through untouched, without the line end.
        assert_eq!(&items[3].record.as_ref().unwrap()[..], b"{\"a\":\"\xff\"}");
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
        assert_eq!(text(&items[0]), "1,\"a,b\"");
        assert_eq!(text(&items[1]), "2,\"multi\nline\"");
        assert!(
            items[2]
                .record
                .as_ref()
                .unwrap_err()
                .reason
                .contains("1 fields")
        );
        assert_eq!(text(&items[3]), "4,d");
    }

    #[test]
    fn tsv_lines_and_their_header() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.tsv");
        std::fs::write(&p, "1\ta\\tb\\nc\t\\N\n2\tx\\\\y\tz\n").unwrap();
        let (header, items) = read_all(&p, InputFormat::Tsv, false);
        assert_eq!(header, None);
        assert_eq!(text(&items[0]), "1\ta\\tb\\nc\t\\N");
        assert_eq!(text(&items[1]), "2\tx\\\\y\tz");
        // The header names the columns; the engine checks each line's width against it.
        std::fs::write(&p, "a\tb\n1\t2\n3\n").unwrap();
        let (header, items) = read_all(&p, InputFormat::Tsv, true);
        assert_eq!(header, Some(vec!["a".to_string(), "b".to_string()]));
        assert_eq!((items[0].line, items[1].line), (2, 3));
        assert_eq!(text(&items[1]), "3");
    }

    #[test]
    fn gzip_and_zstd_by_extension() {
        let dir = tempfile::tempdir().unwrap();
        let text_in = "{\"a\":1}\n{\"a\":2}\n";
        let gz = dir.path().join("x.ndjson.gz");
        let mut enc =
            flate2::write::GzEncoder::new(File::create(&gz).unwrap(), flate2::Compression::fast());
        enc.write_all(text_in.as_bytes()).unwrap();
        enc.finish().unwrap();
        let zst = dir.path().join("x.ndjson.zst");
        std::fs::write(&zst, zstd::encode_all(text_in.as_bytes(), 3).unwrap()).unwrap();
        for p in [gz, zst] {
            let (_, items) = read_all(&p, format_from_name(&p).unwrap().format, false);
            assert_eq!(items.len(), 2, "{}", p.display());
            assert_eq!(text(&items[1]), "{\"a\":2}");
        }
    }

    #[test]
    fn a_truncated_gzip_is_named_with_its_place_and_ends() {
        let dir = tempfile::tempdir().unwrap();
        let mut text = String::new();
        for i in 0..20_000 {
            text.push_str(&format!("{{\"id\":{i},\"pad\":\"{}\"}}\n", i * 7919));
        }
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(text.as_bytes()).unwrap();
        let gz = enc.finish().unwrap();
        let p = dir.path().join("cut.ndjson.gz");
        std::fs::write(&p, &gz[..gz.len() / 2]).unwrap();
        let mut r = Reader::open(&p, InputFormat::Ndjson, false).unwrap();
        let mut lines = 0u64;
        let err = loop {
            match r.next() {
                Some(Ok(item)) => {
                    lines += 1;
                    assert_eq!(item.line, lines);
                }
                Some(Err(e)) => break e,
                None => panic!("a truncated input ended without an error"),
            }
        };
        assert!(lines > 0 && lines < 20_000, "{lines}");
        let msg = err.to_string();
        assert!(msg.contains("cut.ndjson.gz"), "{msg}");
        assert!(
            msg.contains(&format!("cannot be read past line {lines} (byte ")),
            "{msg}"
        );
        assert!(r.next().is_none());
    }
}
