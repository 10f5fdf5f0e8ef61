//! The bodies of inserts in a ClickHouse input format (a gateway's requests), framed before
//! they are acknowledged: split into the format's header
//! (of the `WithNames` formats) and the rows, the rows counted, and checked as far as that is
//! cheap, so that a broken body gets ClickHouse's 400 before the durable acknowledgement
//! instead of a 200 followed by a dead letter. What a check cannot see (a value of the wrong
//! type in a well-formed row) the server refuses when the batch is inserted; the request's rows
//! then go to the spool together.
//!
//! A body that cannot be framed here (a column type the walkers do not know) is not refused:
//! it goes to ClickHouse in a batch of its own, where the server judges it.

use bytes::Bytes;

use crate::format::info::{FormatFamily, FormatInfo, HeaderKind, RowSyntax};
use crate::format::json::read_object;
use crate::types::schema::ColumnType;

/// A framed body.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Framed {
    /// The format's header (`WithNames` formats): bodies coalesce when it is the same.
    pub header: Bytes,
    /// The rows, without the header.
    pub body: Bytes,
    /// How many rows (0 when not known: `whole` bodies of formats framing does not read).
    pub rows: u32,
    /// The body goes to ClickHouse alone (a format whose bodies do not follow one another, or
    /// one the walkers could not frame).
    pub whole: bool,
}

/// What framing needs to know of the table.
pub struct FrameTable<'a> {
    /// The insert's columns with their types, in order (the insert's column list, or the
    /// table's insertable columns); `None` when the table's schema is not known.
    pub columns: Option<Vec<(&'a str, &'a ColumnType)>>,
    /// Whether a JSON key may name no column (`input_format_skip_unknown_fields`).
    pub skip_unknown: bool,
    /// A column name rows must not set (the `_insert_id` the engine fills), if any.
    pub reserved: Option<&'a str>,
    /// Whether `name` is a column of the table.
    pub has: &'a dyn Fn(&str) -> bool,
}

/// A body that cannot be framed: the error ClickHouse answers such a body with.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FrameError {
    /// ClickHouse's error code (27 `CANNOT_PARSE_INPUT_ASSERTION_FAILED`, 33
    /// `CANNOT_READ_ALL_DATA`, 117 `INCORRECT_DATA`, ...).
    pub code: u32,
    /// The message, without the `Code: N. DB::Exception: ` prefix.
    pub message: String,
}

impl FrameError {
    /// The code of a JSON key that names no column (ClickHouse's `INCORRECT_DATA`).
    pub const UNKNOWN_FIELD: u32 = 117;
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Code: {}. {}", self.code, self.message)
    }
}

impl std::error::Error for FrameError {}

fn bad(code: u32, message: impl Into<String>) -> FrameError {
    FrameError {
        code,
        message: message.into(),
    }
}

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Frames `data` (the bytes after the statement) of format `info`.
pub fn frame(info: &FormatInfo, data: Bytes, table: &FrameTable<'_>) -> Result<Framed, FrameError> {
    let data = if data.starts_with(BOM) {
        data.slice(BOM.len()..)
    } else {
        data
    };
    let whole = |data: Bytes| Framed {
        header: Bytes::new(),
        body: data,
        rows: 0,
        whole: true,
    };
    match info.family {
        FormatFamily::Whole | FormatFamily::OutputOnly => Ok(whole(data)),
        FormatFamily::Blocks => match info.syntax {
            RowSyntax::Native => match native_rows(&data) {
                Ok(Some(rows)) => Ok(Framed {
                    header: Bytes::new(),
                    rows,
                    body: data,
                    whole: false,
                }),
                Ok(None) => Ok(whole(data)),
                Err(e) => Err(e),
            },
            _ => Ok(whole(data)),
        },
        FormatFamily::Rows => rows(info, data, None, table),
        FormatFamily::RowsWithHeader { header } => rows(info, data, Some(header), table),
    }
}

fn rows(
    info: &FormatInfo,
    data: Bytes,
    header: Option<HeaderKind>,
    table: &FrameTable<'_>,
) -> Result<Framed, FrameError> {
    let framed = |header: Bytes, body: Bytes, rows: Option<u32>| match rows {
        Some(rows) => Framed {
            header,
            body,
            rows,
            whole: false,
        },
        None => Framed {
            header: Bytes::new(),
            body: data.clone(),
            rows: 0,
            whole: true,
        },
    };
    match info.syntax {
        RowSyntax::JsonObjects if header.is_none() => {
            let rows = json_rows(&data, table)?;
            Ok(framed(Bytes::new(), data.clone(), Some(rows)))
        }
        RowSyntax::TabSeparated | RowSyntax::TabSeparatedRaw | RowSyntax::Lines => {
            let lines = header.map_or(0, |h| match h {
                HeaderKind::Names => 1,
                HeaderKind::NamesAndTypes => 2,
            });
            let (head, body) = split_lines(&data, lines)?;
            let rows = count_lines(&body);
            Ok(framed(head, body, Some(rows)))
        }
        RowSyntax::Csv => {
            let lines = header.map_or(0, |h| match h {
                HeaderKind::Names => 1,
                HeaderKind::NamesAndTypes => 2,
            });
            let (head, body) = split_csv_records(&data, lines)?;
            let rows = count_csv_records(&body)?;
            Ok(framed(head, body, Some(rows)))
        }
        RowSyntax::Values => {
            let body = trim_values(&data);
            let rows = count_values(&body)?;
            Ok(framed(Bytes::new(), body, Some(rows)))
        }
        RowSyntax::RowBinary => {
            let (head, body, types) = match header {
                None => (Bytes::new(), data.clone(), None),
                Some(kind) => {
                    let (len, types) = rowbinary_header(&data, kind)?;
                    (data.slice(..len), data.slice(len..), types)
                }
            };
            let types: Option<Vec<ColumnType>> = match types {
                Some(t) => Some(t),
                None if info.name == "RowBinaryWithDefaults" => None,
                None => table
                    .columns
                    .as_ref()
                    .map(|c| c.iter().map(|(_, t)| (*t).clone()).collect()),
            };
            let rows = match types {
                Some(types) => rowbinary_rows(&body, &types)?,
                None => None,
            };
            Ok(framed(head, body, rows))
        }
        _ => Ok(framed(Bytes::new(), data.clone(), None)),
    }
}

/// The JSON objects of a JSONEachRow body (whitespace or commas between them, as ClickHouse
/// reads them), each checked, its keys against the table.
fn json_rows(data: &[u8], table: &FrameTable<'_>) -> Result<u32, FrameError> {
    let mut at = 0;
    let mut rows = 0u32;
    let line_of = |at: usize| 1 + data[..at].iter().filter(|b| **b == b'\n').count();
    loop {
        while at < data.len() && matches!(data[at], b' ' | b'\t' | b'\r' | b'\n' | b',') {
            at += 1;
        }
        if at == data.len() {
            return Ok(rows);
        }
        let mut problem: Option<String> = None;
        let read = read_object(&data[at..], |key| {
            if problem.is_some() {
                return;
            }
            let key = String::from_utf8_lossy(key);
            if table.reserved == Some(key.as_ref()) {
                problem = Some(format!(
                    "rows must not set `{key}`: chasyncd fills it with the batch id"
                ));
            } else if !table.skip_unknown && table.columns.is_some() && !(table.has)(&key) {
                problem = Some(format!(
                    "Unknown field found while parsing JSONEachRow format: {key}"
                ));
            }
        });
        match read {
            Ok(len) => {
                if let Some(p) = problem {
                    return Err(bad(117, format!("{p}: (at row {})", rows + 1)));
                }
                at += len;
                rows += 1;
            }
            Err(e) => {
                return Err(bad(
                    27,
                    format!(
                        "Cannot parse input: {}: (at row {}, line {})",
                        e.message,
                        rows + 1,
                        line_of(at + e.offset.min(data.len() - at))
                    ),
                ));
            }
        }
    }
}

/// Splits off the first `n` lines (the header of a text format).
fn split_lines(data: &Bytes, n: usize) -> Result<(Bytes, Bytes), FrameError> {
    let mut at = 0;
    for _ in 0..n {
        match data[at..].iter().position(|b| *b == b'\n') {
            Some(i) => at += i + 1,
            None if at < data.len() => at = data.len(),
            None => return Err(bad(27, "Cannot parse input: the header is missing")),
        }
    }
    Ok((data.slice(..at), data.slice(at..)))
}

/// Lines of a text body (a last line without its newline counts).
fn count_lines(body: &[u8]) -> u32 {
    let newlines = body.iter().filter(|b| **b == b'\n').count();
    let tail = !body.is_empty() && !body.ends_with(b"\n");
    (newlines + tail as usize) as u32
}

/// The end of the CSV record starting at `at` (after its newline), quotes respected.
fn csv_record_end(data: &[u8], mut at: usize) -> usize {
    let mut quoted = false;
    while at < data.len() {
        match data[at] {
            b'"' => quoted = !quoted,
            b'\n' if !quoted => return at + 1,
            _ => {}
        }
        at += 1;
    }
    at
}

fn split_csv_records(data: &Bytes, n: usize) -> Result<(Bytes, Bytes), FrameError> {
    let mut at = 0;
    for _ in 0..n {
        if at >= data.len() {
            return Err(bad(27, "Cannot parse input: the header is missing"));
        }
        at = csv_record_end(data, at);
    }
    Ok((data.slice(..at), data.slice(at..)))
}

fn count_csv_records(body: &[u8]) -> Result<u32, FrameError> {
    let (mut at, mut rows) = (0, 0u32);
    while at < body.len() {
        let end = csv_record_end(body, at);
        let record = &body[at..end];
        if record.iter().filter(|b| **b == b'"').count() % 2 == 1 {
            return Err(bad(
                27,
                format!(
                    "Cannot parse input: a quoted CSV field is not closed: (at row {})",
                    rows + 1
                ),
            ));
        }
        if !record.trim_ascii().is_empty() {
            rows += 1;
        }
        at = end;
    }
    Ok(rows)
}

/// A Values body without what would end the data early (a trailing `;` ends it).
fn trim_values(data: &Bytes) -> Bytes {
    let trimmed = data.trim_ascii_end();
    match trimmed.strip_suffix(b";") {
        Some(t) => data.slice(..t.len()),
        None => data.clone(),
    }
}

/// The tuples of a Values body: `(...)` at depth 0, quotes and comments respected.
fn count_values(body: &[u8]) -> Result<u32, FrameError> {
    let (mut depth, mut rows, mut i) = (0i32, 0u32, 0);
    while i < body.len() {
        match body[i] {
            q @ (b'\'' | b'"' | b'`') => {
                i += 1;
                while i < body.len() && body[i] != q {
                    if body[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
                if i >= body.len() {
                    return Err(bad(
                        26,
                        format!(
                            "Cannot parse quoted string: it is not closed (at row {})",
                            rows + 1
                        ),
                    ));
                }
            }
            b'-' if body.get(i + 1) == Some(&b'-') => {
                while i < body.len() && body[i] != b'\n' {
                    i += 1;
                }
            }
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => {
                depth -= 1;
                if depth < 0 {
                    return Err(bad(
                        62,
                        "Cannot parse expression: unmatched closing bracket",
                    ));
                }
                if depth == 0 && body[i] == b')' {
                    rows += 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    if depth != 0 {
        return Err(bad(
            27,
            format!(
                "Cannot parse input: a row is not closed (at row {})",
                rows + 1
            ),
        ));
    }
    Ok(rows)
}

/// A cursor over binary data; `None` when it ends early.
struct Bin<'a> {
    s: &'a [u8],
    i: usize,
}

impl Bin<'_> {
    fn skip(&mut self, n: usize) -> Option<()> {
        let end = self.i.checked_add(n)?;
        (end <= self.s.len()).then(|| self.i = end)
    }

    fn byte(&mut self) -> Option<u8> {
        let b = *self.s.get(self.i)?;
        self.i += 1;
        Some(b)
    }

    fn leb128(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }

    fn u64(&mut self) -> Option<u64> {
        let bytes = self.s.get(self.i..self.i + 8)?;
        self.i += 8;
        Some(u64::from_le_bytes(bytes.try_into().ok()?))
    }

    fn string(&mut self) -> Option<&[u8]> {
        let n = usize::try_from(self.leb128()?).ok()?;
        let start = self.i;
        self.skip(n)?;
        Some(&self.s[start..self.i])
    }
}

/// The fixed width of a value of `ty` in RowBinary and Native, if it has one.
fn fixed_width(ty: &ColumnType) -> Option<usize> {
    use ColumnType as T;
    if let Some((bytes, _)) = ty.int_width() {
        return Some(bytes as usize);
    }
    Some(match ty {
        T::Float32 | T::Date32 | T::DateTime(_) | T::IPv4 => 4,
        T::Float64 | T::DateTime64(..) => 8,
        T::BFloat16 | T::Date => 2,
        T::Bool | T::Enum8(_) => 1,
        T::Enum16(_) => 2,
        T::Uuid | T::IPv6 => 16,
        T::FixedString(n) => *n,
        T::Decimal { precision, .. } => match precision {
            0..=9 => 4,
            10..=18 => 8,
            19..=38 => 16,
            _ => 32,
        },
        _ => return None,
    })
}

/// Skips one RowBinary value of `ty`; `Some(false)` for a type the walker does not know.
fn skip_rowbinary(b: &mut Bin<'_>, ty: &ColumnType) -> Option<bool> {
    use ColumnType as T;
    if let Some(w) = fixed_width(ty) {
        b.skip(w)?;
        return Some(true);
    }
    match ty {
        T::String | T::Json(_) => {
            b.string()?;
        }
        T::Nullable(inner) => {
            if b.byte()? == 0 {
                return skip_rowbinary(b, inner);
            }
        }
        T::LowCardinality(inner) => return skip_rowbinary(b, inner),
        T::Array(inner) => {
            for _ in 0..b.leb128()? {
                if !skip_rowbinary(b, inner)? {
                    return Some(false);
                }
            }
        }
        T::Map(k, v) => {
            for _ in 0..b.leb128()? {
                if !skip_rowbinary(b, k)? || !skip_rowbinary(b, v)? {
                    return Some(false);
                }
            }
        }
        T::Tuple(items) => {
            for (_, t) in items {
                if !skip_rowbinary(b, t)? {
                    return Some(false);
                }
            }
        }
        _ => return Some(false),
    }
    Some(true)
}

/// The rows of a RowBinary body of `types`; `None` when a type is one the walker does not
/// know; an error when the body ends inside a row.
fn rowbinary_rows(body: &[u8], types: &[ColumnType]) -> Result<Option<u32>, FrameError> {
    let mut b = Bin { s: body, i: 0 };
    let mut rows = 0u32;
    while b.i < body.len() {
        for ty in types {
            match skip_rowbinary(&mut b, ty) {
                Some(true) => {}
                Some(false) => return Ok(None),
                None => {
                    return Err(bad(
                        33,
                        format!(
                            "Cannot read all data: the body ends inside row {} (at byte {})",
                            rows + 1,
                            body.len()
                        ),
                    ));
                }
            }
        }
        rows += 1;
    }
    Ok(Some(rows))
}

/// The length of a `RowBinaryWithNames[AndTypes]` header, and the types it names.
fn rowbinary_header(
    data: &[u8],
    kind: HeaderKind,
) -> Result<(usize, Option<Vec<ColumnType>>), FrameError> {
    let short = || bad(33, "Cannot read all data: the body ends inside its header");
    let mut b = Bin { s: data, i: 0 };
    let n = b.leb128().ok_or_else(short)?;
    for _ in 0..n {
        b.string().ok_or_else(short)?;
    }
    if kind == HeaderKind::Names {
        return Ok((b.i, None));
    }
    let mut types = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let name = b.string().ok_or_else(short)?;
        let name =
            std::str::from_utf8(name).map_err(|_| bad(50, "Unknown data type in the header"))?;
        types.push(ColumnType::parse(name).ok());
    }
    let types = types.into_iter().collect::<Option<Vec<_>>>();
    Ok((b.i, types))
}

/// Skips the bulk data of `rows` values of `ty` in a Native column; `Some(false)` for a type the
/// walker does not know.
fn skip_native(b: &mut Bin<'_>, ty: &ColumnType, rows: u64) -> Option<bool> {
    use ColumnType as T;
    if let Some(w) = fixed_width(ty) {
        b.skip(usize::try_from(rows).ok()?.checked_mul(w)?)?;
        return Some(true);
    }
    match ty {
        T::String | T::Json(_) => {
            for _ in 0..rows {
                b.string()?;
            }
        }
        T::Nullable(inner) => {
            b.skip(usize::try_from(rows).ok()?)?;
            return skip_native(b, inner, rows);
        }
        T::Array(inner) => {
            let mut last = 0;
            for _ in 0..rows {
                last = b.u64()?;
            }
            return skip_native(b, inner, last);
        }
        T::Map(k, v) => {
            let mut last = 0;
            for _ in 0..rows {
                last = b.u64()?;
            }
            return Some(skip_native(b, k, last)? && skip_native(b, v, last)?);
        }
        T::Tuple(items) => {
            for (_, t) in items {
                if !skip_native(b, t, rows)? {
                    return Some(false);
                }
            }
        }
        T::LowCardinality(inner) => {
            if rows == 0 {
                return Some(true);
            }
            let flags = b.u64()?;
            let key_width = 1usize << (flags & 0xff);
            if key_width > 8 {
                return Some(false);
            }
            let dictionary = match &**inner {
                T::Nullable(t) => &**t,
                t => t,
            };
            if flags & (1 << 9) != 0 {
                let size = b.u64()?;
                if !skip_native(b, dictionary, size)? {
                    return Some(false);
                }
            }
            let n = b.u64()?;
            b.skip(usize::try_from(n).ok()?.checked_mul(key_width)?)?;
        }
        _ => return Some(false),
    }
    Some(true)
}

/// The prefix a column of `ty` starts with in Native (the key version of each
/// `LowCardinality` in it).
fn skip_native_prefix(b: &mut Bin<'_>, ty: &ColumnType) -> Option<()> {
    use ColumnType as T;
    match ty {
        T::LowCardinality(_) => {
            b.u64()?;
        }
        T::Nullable(t) | T::Array(t) => skip_native_prefix(b, t)?,
        T::Map(k, v) => {
            skip_native_prefix(b, k)?;
            skip_native_prefix(b, v)?;
        }
        T::Tuple(items) => {
            for (_, t) in items {
                skip_native_prefix(b, t)?;
            }
        }
        _ => {}
    }
    Some(())
}

/// The rows of a Native body (blocks without BlockInfo, as insert bodies are); `None` when a
/// column type is one the walker does not know; an error when a block ends early.
fn native_rows(data: &[u8]) -> Result<Option<u32>, FrameError> {
    let mut b = Bin { s: data, i: 0 };
    let mut rows = 0u64;
    let short = |block: usize| {
        bad(
            33,
            format!("Cannot read all data: the body ends inside Native block {block}"),
        )
    };
    let mut block = 0;
    while b.i < data.len() {
        block += 1;
        let columns = b.leb128().ok_or_else(|| short(block))?;
        let n = b.leb128().ok_or_else(|| short(block))?;
        for _ in 0..columns {
            b.string().ok_or_else(|| short(block))?;
            let type_name = b.string().ok_or_else(|| short(block))?;
            let Some(ty) = std::str::from_utf8(type_name)
                .ok()
                .and_then(|t| ColumnType::parse(t).ok())
            else {
                return Ok(None);
            };
            skip_native_prefix(&mut b, &ty).ok_or_else(|| short(block))?;
            match skip_native(&mut b, &ty, n) {
                Some(true) => {}
                Some(false) => return Ok(None),
                None => return Err(short(block)),
            }
        }
        rows += n;
    }
    Ok(Some(u32::try_from(rows).unwrap_or(u32::MAX)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::info::format_info;

    fn table<'a>(
        columns: Option<Vec<(&'a str, &'a ColumnType)>>,
        has: &'a dyn Fn(&str) -> bool,
    ) -> FrameTable<'a> {
        FrameTable {
            columns,
            skip_unknown: false,
            reserved: Some("_insert_id"),
            has,
        }
    }

    #[test]
    fn json_text_and_values_bodies_are_counted_and_checked() {
        let has = |k: &str| matches!(k, "id" | "name");
        let t = table(Some(vec![]), &has);
        let f = |name: &str, body: &str| {
            frame(
                format_info(name).unwrap(),
                Bytes::copy_from_slice(body.as_bytes()),
                &t,
            )
        };
        let j = f(
            "JSONEachRow",
            "{\"id\":1}\n{\"id\":2,\n \"name\":\"x\"} {\"id\":3}",
        )
        .unwrap();
        assert_eq!((j.rows, j.whole), (3, false));
        let e = f("JSONEachRow", "{\"id\":1}\n{\"id\":").unwrap_err();
        assert_eq!(e.code, 27);
        let e = f("JSONEachRow", "{\"nope\":1}").unwrap_err();
        assert!(e.message.contains("nope"), "{e}");
        assert!(f("JSONEachRow", "{\"_insert_id\":\"x\"}").is_err());
        let c = f("CSVWithNames", "\u{feff}id,name\n1,\"a\nb\"\n2,c").unwrap();
        assert_eq!((&c.header[..], c.rows), (&b"id,name\n"[..], 2));
        assert!(f("CSV", "1,\"open\n").is_err());
        let v = f("Values", "(1,'a(b'),(2, [3,4]) -- note\n;").unwrap();
        assert_eq!(v.rows, 2);
        assert!(!v.body.ends_with(b";"));
        assert!(f("Values", "(1,'a").is_err());
        let p = f("Parquet", "PAR1...").unwrap();
        assert!(p.whole);
    }

    #[test]
    fn binary_bodies_are_walked_by_their_types() {
        let (u64t, st) = (ColumnType::UInt64, ColumnType::String);
        let has = |_: &str| true;
        let t = table(Some(vec![("id", &u64t), ("s", &st)]), &has);
        let mut body = Vec::new();
        for i in 0..3u64 {
            body.extend_from_slice(&i.to_le_bytes());
            body.extend_from_slice(&[2, b'h', b'i']);
        }
        let f = |name: &str, body: &[u8]| {
            frame(format_info(name).unwrap(), Bytes::copy_from_slice(body), &t)
        };
        assert_eq!(f("RowBinary", &body).unwrap().rows, 3);
        let e = f("RowBinary", &body[..body.len() - 1]).unwrap_err();
        assert_eq!(e.code, 33);
        // With names and types: the header is split off and the types come from it.
        let mut with = vec![2, 2, b'i', b'd', 1, b's', 6];
        with.extend_from_slice(b"UInt64");
        with.push(6);
        with.extend_from_slice(b"String");
        let header_len = with.len();
        with.extend_from_slice(&body);
        let r = f("RowBinaryWithNamesAndTypes", &with).unwrap();
        assert_eq!((r.header.len(), r.rows), (header_len, 3));
        // Native: two blocks of a UInt64 and a LowCardinality(Nullable(String)) column.
        let mut native = Vec::new();
        for rows in [2u64, 1] {
            native.extend_from_slice(&[2, rows as u8, 2, b'i', b'd', 6]);
            native.extend_from_slice(b"UInt64");
            for i in 0..rows {
                native.extend_from_slice(&i.to_le_bytes());
            }
            native.extend_from_slice(&[3, b't', b'a', b'g']);
            let ty = b"LowCardinality(Nullable(String))";
            native.push(ty.len() as u8);
            native.extend_from_slice(ty);
            native.extend_from_slice(&1u64.to_le_bytes()); // key version
            native.extend_from_slice(&(0x0600u64).to_le_bytes()); // flags: UInt8 keys, with keys
            native.extend_from_slice(&2u64.to_le_bytes()); // dictionary: null, "a"
            native.extend_from_slice(&[0, 1, b'a']);
            native.extend_from_slice(&rows.to_le_bytes());
            native.extend(std::iter::repeat_n(1u8, rows as usize));
        }
        let n = f("Native", &native).unwrap();
        assert_eq!((n.rows, n.whole), (3, false));
        assert_eq!(
            f("Native", &native[..native.len() - 1]).unwrap_err().code,
            33
        );
    }
}
