//! NDJSON lines converted on the client to `RowBinaryWithDefaults` for the table's column

use bytes::Bytes;
use jiff::Timestamp;
use jiff::civil;
use jiff::tz::TimeZone;
use uuid::Uuid;

use super::rowbinary::put_leb128;
use super::{BatchBuffer, BatchEncoder, EncodedRows, Push, RowEncoder, append_encoded};
use crate::FastMap;
use crate::batch::{Encoded, Format, RejectedRow};
use crate::types::insert_id::InsertIdColumn;
use crate::types::schema::{ColumnType, DefaultKind, TableSchema};

/// Why a line is outside the converted subset.
pub(crate) type Fallback = &'static str;

type R<T = ()> = Result<T, Fallback>;

/// A time zone, resolved once per column.
#[derive(Debug, Clone)]
enum Zone {
    /// UTC or a fixed offset: local = UTC + seconds.
    Fixed(i64),
    /// A zone with offset changes.
    Named(TimeZone),
}

/// A column type compiled for conversion.
#[derive(Debug, Clone)]
enum Kind {
    Int {
        bytes: u8,
        signed: bool,
    },
    Float32,
    Float64,
    Bool,
    String,
    FixedString(usize),
    Uuid,
    IPv4,
    IPv6,
    Date,
    Date32,
    DateTime(Zone),
    DateTime64(u8, Zone),
    Enum8(Vec<(Box<[u8]>, i8)>),
    Enum16(Vec<(Box<[u8]>, i16)>),
    Nullable(Box<Kind>),
    Array(Box<Kind>),
    /// `Map(String, V)`: the value's kind.
    Map(Box<Kind>),
}

/// Names of time zones that are UTC at all times.
const UTC_NAMES: &[&str] = &[
    "UTC",
    "Etc/UTC",
    "UCT",
    "Etc/UCT",
    "GMT",
    "Etc/GMT",
    "GMT0",
    "Etc/GMT0",
    "GMT+0",
    "Etc/GMT+0",
    "GMT-0",
    "Etc/GMT-0",
    "Greenwich",
    "Etc/Greenwich",
    "Universal",
    "Etc/Universal",
    "Zulu",
    "Etc/Zulu",
];

fn zone(name: &str) -> Result<Zone, String> {
    if UTC_NAMES.contains(&name) {
        return Ok(Zone::Fixed(0));
    }
    let tz = TimeZone::get(name).map_err(|e| format!("unknown time zone `{name}`: {e}"))?;
    Ok(match tz.to_fixed_offset() {
        Ok(off) => Zone::Fixed(i64::from(off.seconds())),
        Err(_) => Zone::Named(tz),
    })
}

fn compile(ty: &ColumnType, server_tz: &str) -> Result<Kind, String> {
    use ColumnType as T;
    if let Some((bytes, signed)) = ty.int_width() {
        return Ok(Kind::Int { bytes, signed });
    }
    match ty {
        T::Float32 => Ok(Kind::Float32),
        T::Float64 => Ok(Kind::Float64),
        T::Bool => Ok(Kind::Bool),
        T::String => Ok(Kind::String),
        T::FixedString(n) => Ok(Kind::FixedString(*n)),
        T::Uuid => Ok(Kind::Uuid),
        T::IPv4 => Ok(Kind::IPv4),
        T::IPv6 => Ok(Kind::IPv6),
        T::Date => Ok(Kind::Date),
        T::Date32 => Ok(Kind::Date32),
        T::DateTime(tz) => Ok(Kind::DateTime(zone(tz.as_deref().unwrap_or(server_tz))?)),
        T::DateTime64(p, tz) if *p <= 9 => Ok(Kind::DateTime64(
            *p,
            zone(tz.as_deref().unwrap_or(server_tz))?,
        )),
        T::Enum8(items) => Ok(Kind::Enum8(
            items
                .iter()
                .map(|(n, v)| (n.as_bytes().into(), *v))
                .collect(),
        )),
        T::Enum16(items) => Ok(Kind::Enum16(
            items
                .iter()
                .map(|(n, v)| (n.as_bytes().into(), *v))
                .collect(),
        )),
        T::LowCardinality(inner) => compile(inner, server_tz),
        T::Nullable(inner) if !inner.is_nullable() => {
            Ok(Kind::Nullable(Box::new(compile(inner, server_tz)?)))
        }
        T::Array(inner) => Ok(Kind::Array(Box::new(compile(inner, server_tz)?))),
        T::Map(k, v)
            if matches!(&**k, T::String) || **k == T::LowCardinality(Box::new(T::String)) =>
        {
            Ok(Kind::Map(Box::new(compile(v, server_tz)?)))
        }
        other => Err(format!("type {other} has no conversion")),
    }
}

/// Options of [`JsonRowBinary`].
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonRowBinaryOptions {
    /// Keys that name no column are skipped (as with `input_format_skip_unknown_fields = 1`)
    /// instead of sending the line through.
    pub skip_unknown_fields: bool,
}

/// Converts NDJSON object lines to `RowBinaryWithDefaults` for a table's schema (the subset
/// converted exactly is below); lines outside it are handed back by its row encoder, or
/// refused with the reason when pushed to the batcher.
///
/// When the table has the `_insert_id` column the engine fills, every row carries the batch
/// id there; a line that sets `_insert_id` itself is not converted.
///
/// NDJSON lines converted on the client to `RowBinaryWithDefaults` for the table's column
/// types, so the server stores binary rows instead of parsing JSON.
///
/// Only what can be converted **exactly** (to what the server would store from the same line
/// read as JSONEachRow) is converted; anything else about a line (a spelling outside the
/// subset below, a number out of range, an unknown or repeated key, a nested object where a
/// string is expected, ...) leaves the whole line unconverted: the encoder's row encoder (a
/// [`crate::Writer`]'s, see [`crate::Writer::try_write`]) hands it back with the reason, so
/// the caller can send it as JSONEachRow and the server parses it as it would have; pushed to
/// the batcher as it is, such a line is refused with the reason.
///
/// The subset, per column type:
///
/// * integers of every width: a JSON integer (`-?(0|[1-9][0-9]*)`, no fraction or exponent),
///   plain or quoted (`"18446744073709551615"`), within the type's range;
/// * `Float32`, `Float64`: a JSON number, plain or quoted, parsed with correct rounding to the
///   column's width (as the server does); infinities and NaN go through;
/// * `Bool`: `true` / `false`;
/// * `String`, `FixedString(N)` (at most N bytes): a JSON string with every JSON escape,
///   surrogate pairs included (a lone surrogate goes through); bytes that are not UTF-8 are
///   kept as they are;
/// * `UUID`: `"xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx"`;
/// * `Date`, `Date32`: `"YYYY-MM-DD"` within the type's range;
/// * `DateTime`: `"YYYY-MM-DD hh:mm:ss"` (the server's output spelling) in the column's time
///   zone or the server's, or a non-negative JSON integer of seconds since the epoch;
/// * `DateTime64(p)`: `"YYYY-MM-DD hh:mm:ss[.f…]"` with at most `p` fraction digits, or a
///   non-negative JSON integer of seconds; in named time zones only local times that are more
///   than a day away from an offset change (UTC and fixed offsets: any);
/// * `Enum8`, `Enum16`: an element's name;
/// * `Nullable(T)`: `null` or a `T`; `LowCardinality(T)`: a `T`; `Array(T)`: a JSON array of
///   `T`; `Map(String, T)`: a JSON object of `T` without repeated keys.
///
/// A `null` or an omitted key for a column that is not `Nullable` takes the column's default
/// (its `DEFAULT` expression), as JSONEachRow does (`input_format_null_as_default`,
/// `input_format_defaults_for_omitted_fields`): `RowBinaryWithDefaults` marks that column of
/// that row "default". (`null` for an `Enum` goes through: JSONEachRow stores a raw 0 there.) A table with a column of another type (or an `EPHEMERAL` column) is not
/// converted at all ([`JsonRowBinary::new`] says why).
pub struct JsonRowBinary {
    /// Insert column list: the table's insertable columns in order.
    columns: Vec<String>,
    kinds: Vec<Option<Kind>>,
    /// What an omitted column gets: `[1]` ("use the default"), or for an `Enum` without a
    /// `DEFAULT` expression its default element written out (the server's "default" there
    /// would be a raw 0, not what JSONEachRow stores).
    omitted: Vec<Vec<u8>>,
    /// Which column is the `_insert_id` the engine fills.
    insert_id: Option<(usize, InsertIdColumn)>,
    by_name: FastMap<Box<[u8]>, usize>,
    /// Per column, `"name":` as it appears in a line that gives the keys in column order
    /// (`None` for a name JSON would spell with escapes): one comparison reads the key.
    key_texts: Vec<Option<KeyText>>,
    opts: JsonRowBinaryOptions,
    batch_id: Uuid,
    batch: BatchBuffer,
    /// Per row: where each column's bytes are in `scratch` (start, end); `u32::MAX` = unset.
    slots: Vec<(u32, u32)>,
    scratch: Vec<u8>,
    text: Vec<u8>,
}

impl JsonRowBinary {
    /// An encoder for `schema`; `insert_id` is the `_insert_id` column the engine fills, if
    /// any. Fails (with the reason) when a column's type or kind has no exact conversion; the
    /// caller then passes lines through as JSONEachRow.
    pub fn new(
        schema: &TableSchema,
        insert_id: Option<InsertIdColumn>,
        opts: JsonRowBinaryOptions,
    ) -> Result<Self, String> {
        let mut columns = Vec::new();
        let mut kinds = Vec::new();
        let mut omitted = Vec::new();
        let mut id_col = None;
        for c in &schema.columns {
            match c.default_kind {
                DefaultKind::Materialized | DefaultKind::Alias => continue,
                DefaultKind::Ephemeral => {
                    return Err(format!("column {} is EPHEMERAL", c.name));
                }
                DefaultKind::None | DefaultKind::Default => {}
            }
            if let Some(id) = &insert_id
                && id.name == c.name
            {
                // Placed last (below): rows encoded ahead of their batch end with it.
                id_col = Some(id.clone());
                continue;
            } else {
                let kind = compile(&c.ty, &schema.server_timezone)
                    .map_err(|e| format!("column {} ({}): {e}", c.name, c.type_name))?;
                let explicit = c.default_kind == DefaultKind::Default;
                omitted.push(match &kind {
                    // An Enum's default is its element with the least value.
                    Kind::Enum8(items) if !explicit => {
                        let min = items.iter().map(|(_, v)| *v).min().ok_or("an empty Enum")?;
                        vec![0, min as u8]
                    }
                    Kind::Enum16(items) if !explicit => {
                        let min = items.iter().map(|(_, v)| *v).min().ok_or("an empty Enum")?;
                        let [a, b] = min.to_le_bytes();
                        vec![0, a, b]
                    }
                    _ => vec![1],
                });
                kinds.push(Some(kind));
            }
            columns.push(c.name.clone());
        }
        if columns.is_empty() {
            return Err("the table has no insertable columns".into());
        }
        let id_col = id_col.map(|id| {
            columns.push(id.name.clone());
            kinds.push(None);
            omitted.push(Vec::new());
            (columns.len() - 1, id)
        });
        let by_name = columns
            .iter()
            .enumerate()
            .map(|(i, n)| (n.as_bytes().into(), i))
            .collect();
        let key_texts = columns
            .iter()
            .map(|n| {
                let plain = n.bytes().all(|b| b != b'"' && b != b'\\' && b >= 0x20);
                plain.then(|| KeyText::new([b"\"", n.as_bytes(), b"\":"].concat()))
            })
            .collect();
        Ok(Self {
            slots: vec![(u32::MAX, 0); columns.len()],
            columns,
            kinds,
            omitted,
            insert_id: id_col,
            by_name,
            key_texts,
            opts,
            batch_id: Uuid::nil(),
            batch: BatchBuffer::default(),
            scratch: Vec::new(),
            text: Vec::new(),
        })
    }

    /// A converter of the same table for another thread, with no batch.
    fn fresh_copy(&self) -> Self {
        Self {
            columns: self.columns.clone(),
            kinds: self.kinds.clone(),
            omitted: self.omitted.clone(),
            insert_id: self.insert_id.clone(),
            by_name: self.by_name.clone(),
            key_texts: self.key_texts.clone(),
            opts: self.opts,
            batch_id: Uuid::nil(),
            batch: BatchBuffer::default(),
            slots: vec![(u32::MAX, 0); self.columns.len()],
            scratch: Vec::new(),
            text: Vec::new(),
        }
    }

    /// The insert's column list.
    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    /// Converts one line to one `RowBinaryWithDefaults` row appended to `out` (with the
    /// current batch id in `_insert_id`). On `Err`, `out` may hold a partial row: the caller
    /// truncates it.
    pub fn convert(&mut self, line: &[u8], out: &mut Vec<u8>) -> R {
        // Keys usually come in column order: then values go straight to `out`. Otherwise
        // (a key for a column before the last one) the row is read again through `scratch`.
        let start = out.len();
        if self.row(line, out, true)? {
            return Ok(());
        }
        out.truncate(start);
        self.row(line, out, false).map(|_| ())
    }

    /// One row; `ordered`: write to `out` directly and give up (`Ok(false)`) on a key out of
    /// column order.
    fn row(&mut self, line: &[u8], out: &mut Vec<u8>, ordered: bool) -> R<bool> {
        if !ordered {
            self.scratch.clear();
            for s in &mut self.slots {
                *s = (u32::MAX, 0);
            }
        }
        let mut p = P { s: line, i: 0 };
        p.ws();
        if !p.eat(b'{') {
            return Err("not a JSON object");
        }
        p.ws();
        let mut next = 0usize;
        if !p.eat(b'}') {
            loop {
                p.ws();
                // The next column's key, as the line usually spells it; else read the key.
                let idx = if let Some(Some(k)) = self.key_texts.get(next)
                    && k.starts(&p.s[p.i..])
                {
                    p.i += k.text.len();
                    Some(next)
                } else {
                    let (key, escaped) = p.string_raw()?;
                    if escaped {
                        return Err("a key with escapes");
                    }
                    p.ws();
                    if !p.eat(b':') {
                        return Err("malformed JSON");
                    }
                    self.by_name.get(key).copied()
                };
                p.ws();
                match idx {
                    None => {
                        if !self.opts.skip_unknown_fields {
                            return Err("a key that names no column");
                        }
                        p.skip_value(0)?;
                    }
                    Some(i) => {
                        let Some(kind) = &self.kinds[i] else {
                            return Err("the line sets _insert_id");
                        };
                        let dst = if ordered {
                            if i < next {
                                return Ok(false);
                            }
                            for j in next..i {
                                fill(&self.omitted, &self.insert_id, &self.batch_id, j, out);
                            }
                            &mut *out
                        } else {
                            if self.slots[i].0 != u32::MAX {
                                return Err("a repeated key");
                            }
                            &mut self.scratch
                        };
                        let start = dst.len();
                        if p.lit(b"null") {
                            match kind {
                                Kind::Nullable(_) => dst.extend_from_slice(&[0, 1]),
                                // JSONEachRow stores the raw 0 there, which is not the
                                // Enum's default (its first element).
                                Kind::Enum8(_) | Kind::Enum16(_) => {
                                    return Err("null for an Enum");
                                }
                                _ => dst.push(1),
                            }
                        } else {
                            dst.push(0);
                            value(&mut p, kind, dst, &mut self.text)?;
                        }
                        if !ordered {
                            self.slots[i] = (start as u32, self.scratch.len() as u32);
                        }
                        next = i + 1;
                    }
                }
                p.ws();
                if p.eat(b',') {
                    continue;
                }
                if p.eat(b'}') {
                    break;
                }
                return Err("malformed JSON");
            }
        }
        p.ws();
        if p.i != line.len() {
            return Err("data after the object");
        }
        if ordered {
            for j in next..self.columns.len() {
                fill(&self.omitted, &self.insert_id, &self.batch_id, j, out);
            }
            return Ok(true);
        }
        for (i, slot) in self.slots.iter().enumerate() {
            if slot.0 == u32::MAX {
                fill(&self.omitted, &self.insert_id, &self.batch_id, i, out);
            } else {
                out.extend_from_slice(&self.scratch[slot.0 as usize..slot.1 as usize]);
            }
        }
        Ok(true)
    }
}

/// Column `i` of a row without a value from the line: the batch id for `_insert_id`, else
/// its default.
#[inline]
fn fill(
    omitted: &[Vec<u8>],
    insert_id: &Option<(usize, InsertIdColumn)>,
    batch_id: &Uuid,
    i: usize,
    out: &mut Vec<u8>,
) {
    match insert_id {
        Some((at, col)) if *at == i => {
            out.push(0);
            col.put(out, batch_id);
        }
        _ => out.extend_from_slice(&omitted[i]),
    }
}

impl BatchEncoder for JsonRowBinary {
    type Row = Bytes;

    fn begin(&mut self, batch_id: Uuid) {
        self.batch_id = batch_id;
        self.batch.begin();
    }

    fn push(&mut self, row: Bytes, rejected: &mut Vec<RejectedRow>) -> Push<Bytes> {
        let start = self.batch.buf.len();
        let mut buf = std::mem::take(&mut self.batch.buf);
        let result = self.convert(&row, &mut buf);
        self.batch.buf = buf;
        match result {
            Ok(()) => self.batch.row_at(start),
            Err(why) => {
                self.batch.buf.truncate(start);
                rejected.push(RejectedRow {
                    reason: format!("not converted to RowBinary: {why}"),
                    record: Some(String::from_utf8_lossy(&row).into_owned()),
                });
            }
        }
        Push::Done
    }

    fn rows(&self) -> usize {
        self.batch.rows()
    }

    fn bytes(&self) -> usize {
        self.batch.buf.len()
    }

    fn row_encoder(&self) -> Option<Box<dyn RowEncoder<Bytes>>> {
        Some(Box::new(self.fresh_copy()))
    }

    fn push_encoded(&mut self, chunk: &EncodedRows, range: std::ops::Range<usize>) {
        append_encoded(
            &mut self.batch.buf,
            &mut self.batch.offsets,
            chunk,
            range,
            self.insert_id.as_ref().map(|(_, c)| (c, &self.batch_id)),
        );
    }

    fn finish(&mut self) -> Encoded {
        self.batch
            .finish(self.columns.clone(), Format::RowBinaryWithDefaults)
    }
}

/// On a producer's thread (a [`crate::Writer`]): a line converted with a placeholder
/// `_insert_id` (the last column), or refused with the reason it is not converted.
impl RowEncoder<Bytes> for JsonRowBinary {
    fn encode(&mut self, row: &Bytes, buf: &mut Vec<u8>) -> Result<(), String> {
        self.convert(row, buf)
            .map_err(|why| format!("not converted to RowBinary: {why}"))
    }

    fn fresh(&self) -> Box<dyn RowEncoder<Bytes>> {
        Box::new(self.fresh_copy())
    }
}

/// A cursor over one line.
struct P<'a> {
    s: &'a [u8],
    i: usize,
}

impl<'a> P<'a> {
    #[inline]
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    #[inline]
    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\r' | b'\n')) {
            self.i += 1;
        }
    }

    #[inline]
    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    #[inline]
    fn lit(&mut self, word: &[u8]) -> bool {
        if self.s[self.i..].starts_with(word) {
            self.i += word.len();
            true
        } else {
            false
        }
    }

    /// A string at the cursor: its raw inner bytes and whether they hold escapes. Checks the
    /// escapes' syntax and that there are no control characters.
    #[inline]
    fn string_raw(&mut self) -> R<(&'a [u8], bool)> {
        if !self.eat(b'"') {
            return Err("expected a string");
        }
        let start = self.i;
        let mut escaped = false;
        loop {
            self.i = plain_run(self.s, self.i);
            let Some(&c) = self.s.get(self.i) else {
                return Err("an unterminated string");
            };
            self.i += 1;
            match c {
                b'"' => return Ok((&self.s[start..self.i - 1], escaped)),
                b'\\' => {
                    escaped = true;
                    match self.peek() {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => self.i += 1,
                        Some(b'u') => {
                            let hex = self.s.get(self.i + 1..self.i + 5);
                            if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                                return Err("a bad \\u escape");
                            }
                            self.i += 5;
                        }
                        _ => return Err("an unknown escape"),
                    }
                }
                c if c < 0x20 => return Err("a control character in a string"),
                _ => {}
            }
        }
    }

    /// A JSON number at the cursor (strict grammar: no leading zeros), as its text.
    fn number(&mut self) -> R<&'a [u8]> {
        let start = self.i;
        let end = number_end(self.s, start).ok_or("expected a number")?;
        self.i = end;
        Ok(&self.s[start..end])
    }

    /// Skips any JSON value (for keys that are skipped).
    fn skip_value(&mut self, depth: u32) -> R {
        if depth > 128 {
            return Err("JSON nested too deep");
        }
        self.ws();
        match self.peek() {
            Some(b'"') => self.string_raw().map(|_| ()),
            Some(b'{') | Some(b'[') => {
                let close = if self.peek() == Some(b'{') {
                    b'}'
                } else {
                    b']'
                };
                let object = close == b'}';
                self.i += 1;
                self.ws();
                if self.eat(close) {
                    return Ok(());
                }
                loop {
                    self.ws();
                    if object {
                        self.string_raw()?;
                        self.ws();
                        if !self.eat(b':') {
                            return Err("malformed JSON");
                        }
                    }
                    self.skip_value(depth + 1)?;
                    self.ws();
                    if self.eat(b',') {
                        continue;
                    }
                    if self.eat(close) {
                        return Ok(());
                    }
                    return Err("malformed JSON");
                }
            }
            Some(b't') if self.lit(b"true") => Ok(()),
            Some(b'f') if self.lit(b"false") => Ok(()),
            Some(b'n') if self.lit(b"null") => Ok(()),
            _ => self.number().map(|_| ()),
        }
    }

    /// The text of a number, plain or in quotes (`"123"`); `quoted` says which.
    fn number_text(&mut self) -> R<(&'a [u8], bool)> {
        if self.peek() == Some(b'"') {
            let (raw, escaped) = self.string_raw()?;
            if escaped || number_end(raw, 0) != Some(raw.len()) {
                return Err("a string that is not a plain number");
            }
            Ok((raw, true))
        } else {
            Ok((self.number()?, false))
        }
    }
}

/// The index of the first byte at or after `i` that ends a plain run of string bytes: a
/// quote, a backslash or a control character (or `s.len()`). Eight bytes at a time.
#[inline]
pub(crate) fn plain_run(s: &[u8], mut i: usize) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    while let Some(chunk) = s.get(i..i + 8) {
        let w = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
        let zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
        let special = zero(w ^ (ONES * u64::from(b'"')))
            | zero(w ^ (ONES * u64::from(b'\\')))
            | (w.wrapping_sub(ONES * 0x20) & !w & HIGH);
        if special != 0 {
            break;
        }
        i += 8;
    }
    while let Some(&c) = s.get(i) {
        if c == b'"' || c == b'\\' || c < 0x20 {
            break;
        }
        i += 1;
    }
    i
}

/// A key as a line spells it (`"name":`), with its first eight bytes as a word: most keys
/// are compared in one step.
#[derive(Clone)]
struct KeyText {
    text: Box<[u8]>,
    head: u64,
    mask: u64,
}

impl KeyText {
    fn new(text: Vec<u8>) -> Self {
        let n = text.len().min(8);
        let mut head = [0u8; 8];
        head[..n].copy_from_slice(&text[..n]);
        let mut mask = [0u8; 8];
        mask[..n].fill(0xff);
        Self {
            text: text.into(),
            head: u64::from_le_bytes(head),
            mask: u64::from_le_bytes(mask),
        }
    }

    /// Whether `s` starts with the key.
    #[inline]
    fn starts(&self, s: &[u8]) -> bool {
        match s.first_chunk::<8>() {
            Some(w) => {
                u64::from_le_bytes(*w) & self.mask == self.head
                    && (self.text.len() <= 8 || s[8..].starts_with(&self.text[8..]))
            }
            None => s.starts_with(&self.text),
        }
    }
}

/// The fast path of the usual number: an unsigned JSON integer of at most 19 digits (`0` or
/// no leading zero) that the next byte ends (not a digit, `.`, `e` or `E`): its value and
/// end. `None` for anything else, which the general path then reads (and judges).
#[inline]
fn plain_digits(s: &[u8], i: usize) -> Option<(u64, usize)> {
    let first = *s.get(i)?;
    let mut v = u64::from(first.wrapping_sub(b'0'));
    if v > 9 {
        return None;
    }
    let mut j = i + 1;
    if v != 0 {
        while let Some(&c) = s.get(j) {
            let d = c.wrapping_sub(b'0');
            if d > 9 {
                break;
            }
            if j - i >= 19 {
                return None;
            }
            v = v * 10 + u64::from(d);
            j += 1;
        }
    }
    match s.get(j) {
        Some(b'0'..=b'9' | b'.' | b'e' | b'E') => None,
        _ => Some((v, j)),
    }
}

/// The fast path of an integer column: a plain JSON integer (see [`plain_digits`], with an
/// optional `-` for signed types) in the range of `bytes` bytes: the value (two's
/// complement) and the end. `None` sends the text to the general path.
#[inline]
fn plain_int(s: &[u8], i: usize, bytes: u8, signed: bool) -> Option<(u64, usize)> {
    if bytes > 8 {
        return None;
    }
    let bits = u32::from(bytes) * 8;
    if s.get(i) == Some(&b'-') {
        let (mag, end) = plain_digits(s, i + 1)?;
        return (signed && mag != 0 && mag <= 1u64 << (bits - 1))
            .then(|| (mag.wrapping_neg(), end));
    }
    let (v, end) = plain_digits(s, i)?;
    let max = if signed {
        (1u64 << (bits - 1)) - 1
    } else if bits == 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    };
    (v <= max).then_some((v, end))
}

/// The fast path of a float column: `-?digits[.digits]` (JSON's grammar, at most 19 digits,
/// no exponent) whose digits and scale are exact in `f64` (Clinger's fast path: one
/// correctly rounded division), ended by the next byte. `None` sends it to [`parse_f64`].
#[inline]
fn plain_f64(s: &[u8], i: usize) -> Option<(f64, usize)> {
    let neg = s.get(i) == Some(&b'-');
    let start = i + usize::from(neg);
    let first = *s.get(start)?;
    if !first.is_ascii_digit() {
        return None;
    }
    let mut m = 0u64;
    let mut n = 0usize;
    let mut j = start;
    let mut scale = 0usize;
    let mut point = false;
    while let Some(&c) = s.get(j) {
        let d = c.wrapping_sub(b'0');
        if d <= 9 {
            // JSON: no leading zero before more integer digits.
            if !point && n == 1 && m == 0 {
                return None;
            }
            n += 1;
            if n > 19 {
                return None;
            }
            m = m * 10 + u64::from(d);
            scale += usize::from(point);
        } else if c == b'.' && !point {
            point = true;
            // A digit must follow the point.
            if !s.get(j + 1).is_some_and(u8::is_ascii_digit) {
                return None;
            }
        } else {
            break;
        }
        j += 1;
    }
    if matches!(s.get(j), Some(b'e' | b'E' | b'.')) || m > 1 << 53 || scale > 22 {
        return None;
    }
    let v = m as f64 / POW10_F64[scale];
    Some((if neg { -v } else { v }, j))
}

/// The end of a JSON number starting at `i`, if one does.
fn number_end(s: &[u8], mut i: usize) -> Option<usize> {
    let digit = |i: usize| s.get(i).is_some_and(u8::is_ascii_digit);
    if s.get(i) == Some(&b'-') {
        i += 1;
    }
    match s.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => {
            while digit(i) {
                i += 1;
            }
        }
        _ => return None,
    }
    if s.get(i) == Some(&b'.') {
        i += 1;
        if !digit(i) {
            return None;
        }
        while digit(i) {
            i += 1;
        }
    }
    if matches!(s.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(s.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if !digit(i) {
            return None;
        }
        while digit(i) {
            i += 1;
        }
    }
    Some(i)
}

/// Decodes the raw inner bytes of a JSON string (escapes included) into `out`.
fn unescape(raw: &[u8], out: &mut Vec<u8>) -> R {
    let mut i = 0;
    while i < raw.len() {
        let c = raw[i];
        if c != b'\\' {
            // Copy the run up to the next backslash at once.
            let end = raw[i..]
                .iter()
                .position(|&b| b == b'\\')
                .map_or(raw.len(), |n| i + n);
            out.extend_from_slice(&raw[i..end]);
            i = end;
            continue;
        }
        let e = raw[i + 1];
        i += 2;
        let simple = match e {
            b'"' => b'"',
            b'\\' => b'\\',
            b'/' => b'/',
            b'b' => 0x08,
            b'f' => 0x0c,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'u' => 0,
            _ => return Err("an unknown escape"),
        };
        if e != b'u' {
            out.push(simple);
            continue;
        }
        let hex4 = |at: usize| -> R<u32> {
            let h = raw.get(at..at + 4).ok_or("a bad \\u escape")?;
            let mut v = 0u32;
            for &d in h {
                v = v * 16 + (d as char).to_digit(16).ok_or("a bad \\u escape")?;
            }
            Ok(v)
        };
        let u = hex4(i)?;
        i += 4;
        let code = match u {
            0xD800..=0xDBFF => {
                if raw.get(i..i + 2) != Some(b"\\u") {
                    return Err("a lone surrogate");
                }
                let lo = hex4(i + 2)?;
                if !(0xDC00..=0xDFFF).contains(&lo) {
                    return Err("a lone surrogate");
                }
                i += 6;
                0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00)
            }
            0xDC00..=0xDFFF => return Err("a lone surrogate"),
            u => u,
        };
        let ch = char::from_u32(code).ok_or("a bad \\u escape")?;
        let mut tmp = [0u8; 4];
        out.extend_from_slice(ch.encode_utf8(&mut tmp).as_bytes());
    }
    Ok(())
}

/// Reads a JSON string value and calls `f` with its decoded bytes.
#[inline]
fn with_string<T>(p: &mut P<'_>, text: &mut Vec<u8>, f: impl FnOnce(&[u8]) -> R<T>) -> R<T> {
    if p.peek() != Some(b'"') {
        return Err("a value that is not a string");
    }
    let (raw, escaped) = p.string_raw()?;
    if escaped {
        text.clear();
        unescape(raw, text)?;
        f(text)
    } else {
        f(raw)
    }
}

/// Writes one value of `kind` (not `null` at the top of a column) to `out`.
fn value(p: &mut P<'_>, kind: &Kind, out: &mut Vec<u8>, text: &mut Vec<u8>) -> R {
    match kind {
        Kind::Int { bytes, signed } => {
            if let Some((v, end)) = plain_int(p.s, p.i, *bytes, *signed) {
                out.extend_from_slice(&v.to_le_bytes()[..*bytes as usize]);
                p.i = end;
                return Ok(());
            }
            let (t, _) = p.number_text()?;
            put_int(out, t, *bytes as usize, *signed)
        }
        Kind::Float64 => {
            if let Some((v, end)) = plain_f64(p.s, p.i) {
                out.extend_from_slice(&v.to_le_bytes());
                p.i = end;
                return Ok(());
            }
            out.extend_from_slice(&parse_f64(p)?.to_le_bytes());
            Ok(())
        }
        Kind::Float32 => {
            out.extend_from_slice(&parse_f32(p)?.to_le_bytes());
            Ok(())
        }
        Kind::Bool => {
            if p.lit(b"true") {
                out.push(1);
            } else if p.lit(b"false") {
                out.push(0);
            } else {
                return Err("a Bool that is not true or false");
            }
            Ok(())
        }
        Kind::String => {
            if p.peek() != Some(b'"') {
                return Err("a value that is not a string");
            }
            let (raw, escaped) = p.string_raw()?;
            if escaped {
                text.clear();
                unescape(raw, text)?;
                put_leb128(out, text.len() as u64);
                out.extend_from_slice(text);
            } else {
                put_leb128(out, raw.len() as u64);
                out.extend_from_slice(raw);
            }
            Ok(())
        }
        Kind::FixedString(n) => with_string(p, text, |s| {
            if s.len() > *n {
                return Err("a string longer than the FixedString");
            }
            out.extend_from_slice(s);
            out.resize(out.len() + (n - s.len()), 0);
            Ok(())
        }),
        Kind::Uuid => with_string(p, text, |s| {
            let id = parse_uuid(s).ok_or("not a UUID in its usual spelling")?;
            super::rowbinary::put_uuid(out, &id);
            Ok(())
        }),
        Kind::IPv4 => with_string(p, text, |s| {
            let ip = parse_ipv4(s).ok_or("not an IPv4 address in dotted-decimal spelling")?;
            out.extend_from_slice(&ip.to_le_bytes());
            Ok(())
        }),
        Kind::IPv6 => with_string(p, text, |s| {
            // Only the spellings of RFC 4291 that Rust's parser takes as well; anything
            // else (an IPv4 address, which the server maps, a zone id) is not converted.
            let ip: std::net::Ipv6Addr = std::str::from_utf8(s)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or("not an IPv6 address in its usual spelling")?;
            out.extend_from_slice(&ip.octets());
            Ok(())
        }),
        Kind::Date | Kind::Date32 => with_string(p, text, |s| {
            let (y, m, d) = parse_date(s).ok_or("not a YYYY-MM-DD date")?;
            let days = days_from_civil(y, m, d);
            if let Kind::Date = kind {
                if !(0..=65535).contains(&days) {
                    return Err("a Date out of range");
                }
                out.extend_from_slice(&(days as u16).to_le_bytes());
            } else {
                if !(DATE32_MIN_DAYS..=DATE32_MAX_DAYS).contains(&days) {
                    return Err("a Date32 out of range");
                }
                out.extend_from_slice(&(days as i32).to_le_bytes());
            }
            Ok(())
        }),
        Kind::DateTime(zone) => {
            let secs = if p.peek() == Some(b'"') {
                with_string(p, text, |s| {
                    if s.len() != 19 {
                        return Err("not a YYYY-MM-DD hh:mm:ss date-time");
                    }
                    local_to_utc(s, zone, 0)
                })?
                .0
            } else {
                epoch_secs(p)?
            };
            if !(0..=u32::MAX as i64).contains(&secs) {
                return Err("a DateTime out of range");
            }
            out.extend_from_slice(&(secs as u32).to_le_bytes());
            Ok(())
        }
        Kind::DateTime64(precision, zone) => {
            let scale = 10i64.pow(*precision as u32);
            let (secs, frac) = if p.peek() == Some(b'"') {
                with_string(p, text, |s| local_to_utc(s, zone, *precision))?
            } else {
                (epoch_secs(p)?, 0)
            };
            if !(DT64_MIN_SECS..=DT64_MAX_SECS).contains(&secs) {
                return Err("a DateTime64 out of range");
            }
            out.extend_from_slice(&(secs * scale + frac).to_le_bytes());
            Ok(())
        }
        Kind::Enum8(items) => with_string(p, text, |s| {
            let v = items
                .iter()
                .find(|(n, _)| &n[..] == s)
                .ok_or("not an element of the enum")?;
            out.push(v.1 as u8);
            Ok(())
        }),
        Kind::Enum16(items) => with_string(p, text, |s| {
            let v = items
                .iter()
                .find(|(n, _)| &n[..] == s)
                .ok_or("not an element of the enum")?;
            out.extend_from_slice(&v.1.to_le_bytes());
            Ok(())
        }),
        Kind::Nullable(inner) => {
            if p.lit(b"null") {
                out.push(1);
                Ok(())
            } else {
                out.push(0);
                value(p, inner, out, text)
            }
        }
        Kind::Array(inner) => {
            if !p.eat(b'[') {
                return Err("an Array value that is not a JSON array");
            }
            let start = out.len();
            out.push(0); // the count's first byte, written when known
            let mut n = 0u64;
            p.ws();
            if !p.eat(b']') {
                loop {
                    p.ws();
                    if p.peek() == Some(b'n') && !matches!(**inner, Kind::Nullable(_)) {
                        return Err("null in an array of a non-Nullable type");
                    }
                    value(p, inner, out, text)?;
                    n += 1;
                    p.ws();
                    if p.eat(b',') {
                        continue;
                    }
                    if p.eat(b']') {
                        break;
                    }
                    return Err("malformed JSON");
                }
            }
            set_count(out, start, n);
            Ok(())
        }
        Kind::Map(inner) => {
            if !p.eat(b'{') {
                return Err("a Map value that is not a JSON object");
            }
            let start = out.len();
            out.push(0); // the count's first byte, written when known
            let mut keys = Keys::default();
            p.ws();
            if !p.eat(b'}') {
                loop {
                    p.ws();
                    let (key, escaped) = p.string_raw()?;
                    if escaped {
                        return Err("a Map key with escapes");
                    }
                    if !keys.insert(key) {
                        return Err("a repeated Map key");
                    }
                    put_leb128(out, key.len() as u64);
                    out.extend_from_slice(key);
                    p.ws();
                    if !p.eat(b':') {
                        return Err("malformed JSON");
                    }
                    p.ws();
                    if p.peek() == Some(b'n') && !matches!(**inner, Kind::Nullable(_)) {
                        return Err("null in a Map of a non-Nullable type");
                    }
                    value(p, inner, out, text)?;
                    p.ws();
                    if p.eat(b',') {
                        continue;
                    }
                    if p.eat(b'}') {
                        break;
                    }
                    return Err("malformed JSON");
                }
            }
            set_count(out, start, keys.len as u64);
            Ok(())
        }
    }
}

/// Writes the element count `n` (LEB128) of the array that starts at `at` with a one-byte
/// placeholder: in place when it takes one byte (below 128), else moving the elements.
#[inline]
fn set_count(out: &mut Vec<u8>, at: usize, n: u64) {
    if n < 0x80 {
        out[at] = n as u8;
        return;
    }
    let mut leb = Vec::with_capacity(10);
    put_leb128(&mut leb, n);
    out.splice(at..at + 1, leb);
}

/// The keys of one Map value so far, to refuse a repeated one (the server would keep both):
/// a few inline, more on the heap.
#[derive(Default)]
struct Keys<'a> {
    inline: [&'a [u8]; 8],
    more: Vec<&'a [u8]>,
    len: usize,
}

impl<'a> Keys<'a> {
    /// Adds a key; `false` when it is already there.
    #[inline]
    fn insert(&mut self, key: &'a [u8]) -> bool {
        let n = self.len.min(8);
        if self.inline[..n].contains(&key) || self.more.contains(&key) {
            return false;
        }
        if self.len < 8 {
            self.inline[self.len] = key;
        } else {
            self.more.push(key);
        }
        self.len += 1;
        true
    }
}

/// A float value (a JSON number, or one in quotes), correctly rounded to `f64`.
fn parse_f64(p: &mut P<'_>) -> R<f64> {
    let (t, _) = p.number_text()?;
    if let Some((m, k)) = simple_decimal(t)
        && m <= 1 << 53
        && k <= 22
    {
        // Clinger's fast path: both operands are exact, so the one division rounds correctly.
        let v = m as f64 / POW10_F64[k];
        return Ok(if t[0] == b'-' { -v } else { v });
    }
    let text = std::str::from_utf8(t).map_err(|_| "not a number")?;
    text.parse().map_err(|_| "not a number")
}

/// A float value, correctly rounded to `f32` (directly, not through `f64`).
fn parse_f32(p: &mut P<'_>) -> R<f32> {
    let (t, _) = p.number_text()?;
    if let Some((m, k)) = simple_decimal(t)
        && m <= 1 << 24
        && k <= 10
    {
        let v = m as f32 / POW10_F32[k];
        return Ok(if t[0] == b'-' { -v } else { v });
    }
    let text = std::str::from_utf8(t).map_err(|_| "not a number")?;
    text.parse().map_err(|_| "not a number")
}

const POW10_F64: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];
const POW10_F32: [f32; 11] = [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10];

/// `-?digits[.digits]` without an exponent and with at most 19 digits: the digits as an
/// integer and how many of them follow the point.
#[inline]
fn simple_decimal(t: &[u8]) -> Option<(u64, usize)> {
    let t = t.strip_prefix(b"-").unwrap_or(t);
    let mut m = 0u64;
    let mut n = 0;
    let mut frac = None;
    for (i, &c) in t.iter().enumerate() {
        match c {
            b'0'..=b'9' => {
                n += 1;
                if n > 19 {
                    return None;
                }
                m = m * 10 + u64::from(c - b'0');
            }
            b'.' => frac = Some(i + 1),
            _ => return None,
        }
    }
    Some((m, frac.map_or(0, |f| t.len() - f)))
}

/// Seconds since the epoch from a plain non-negative JSON integer.
fn epoch_secs(p: &mut P<'_>) -> R<i64> {
    if let Some((v, end)) = plain_digits(p.s, p.i)
        && end - p.i <= 12
    {
        p.i = end;
        return Ok(v as i64);
    }
    let t = p.number()?;
    if t.len() > 12 || !t.iter().all(u8::is_ascii_digit) {
        return Err("a date-time number that is not plain whole seconds");
    }
    Ok(t.iter().fold(0i64, |v, d| v * 10 + i64::from(d - b'0')))
}

const DATE32_MIN_DAYS: i64 = -25567; // 1900-01-01
const DATE32_MAX_DAYS: i64 = 120529; // 2299-12-31
const DT64_MIN_SECS: i64 = -2208988800; // 1900-01-01 00:00:00 UTC
const DT64_MAX_SECS: i64 = 10413791999; // 2299-12-31 23:59:59 UTC

fn digits(s: &[u8]) -> Option<i64> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(s.iter().fold(0i64, |v, d| v * 10 + i64::from(d - b'0')))
}

/// `YYYY-MM-DD`, a valid calendar date.
fn parse_date(s: &[u8]) -> Option<(i64, i64, i64)> {
    if s.len() != 10 || s[4] != b'-' || s[7] != b'-' {
        return None;
    }
    let (y, m, d) = (digits(&s[0..4])?, digits(&s[5..7])?, digits(&s[8..10])?);
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let dim = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    (1..=dim).contains(&d).then_some((y, m, d))
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// `YYYY-MM-DD hh:mm:ss[.f…]` (at most `precision` fraction digits) read in `zone`: seconds
/// since the epoch and the fraction in units of `10^-precision` s.
fn local_to_utc(s: &[u8], zone: &Zone, precision: u8) -> R<(i64, i64)> {
    const BAD: &str = "not a YYYY-MM-DD hh:mm:ss date-time";
    if s.len() < 19 || s[10] != b' ' || s[13] != b':' || s[16] != b':' {
        return Err(BAD);
    }
    let (y, mo, d) = parse_date(&s[..10]).ok_or(BAD)?;
    let h = digits(&s[11..13]).ok_or(BAD)?;
    let mi = digits(&s[14..16]).ok_or(BAD)?;
    let sec = digits(&s[17..19]).ok_or(BAD)?;
    if h > 23 || mi > 59 || sec > 59 {
        return Err(BAD);
    }
    let frac = match &s[19..] {
        [] => 0,
        [b'.', f @ ..] if !f.is_empty() && f.len() <= precision as usize => {
            digits(f).ok_or(BAD)? * 10i64.pow(u32::from(precision) - f.len() as u32)
        }
        _ => return Err("a date-time spelling outside the fast path"),
    };
    let local = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec;
    let utc = match zone {
        Zone::Fixed(off) => local - off,
        Zone::Named(tz) => {
            if !(0..=u32::MAX as i64).contains(&local) {
                return Err("a date-time in a named time zone outside 1970..2106");
            }
            let dt =
                civil::DateTime::new(y as i16, mo as i8, d as i8, h as i8, mi as i8, sec as i8, 0)
                    .map_err(|_| BAD)?;
            let ts = tz
                .to_ambiguous_timestamp(dt)
                .unambiguous()
                .map_err(|_| "a local time skipped or repeated by a time zone change")?;
            let at = ts.as_second();
            let off = |t: i64| Timestamp::from_second(t).map(|t| tz.to_offset(t).seconds());
            let here = off(at).map_err(|_| BAD)?;
            if off(at - 86400).ok() != Some(here) || off(at + 86400).ok() != Some(here) {
                return Err("a local time near a time zone change");
            }
            at
        }
    };
    Ok((utc, frac))
}

/// A dotted-decimal IPv4 address as its `u32` value: four decimal octets of 0..=255, no
/// sign, no leading zeros (a spelling whose meaning could differ is not converted).
fn parse_ipv4(s: &[u8]) -> Option<u32> {
    let mut value = 0u32;
    let mut parts = 0;
    for part in s.split(|&b| b == b'.') {
        parts += 1;
        if parts > 4
            || part.is_empty()
            || part.len() > 3
            || (part.len() > 1 && part[0] == b'0')
            || !part.iter().all(u8::is_ascii_digit)
        {
            return None;
        }
        let octet = part.iter().fold(0u32, |n, d| n * 10 + u32::from(d - b'0'));
        if octet > 255 {
            return None;
        }
        value = value << 8 | octet;
    }
    (parts == 4).then_some(value)
}

fn parse_uuid(s: &[u8]) -> Option<Uuid> {
    if s.len() != 36 || s[8] != b'-' || s[13] != b'-' || s[18] != b'-' || s[23] != b'-' {
        return None;
    }
    let mut v: u128 = 0;
    for (i, &c) in s.iter().enumerate() {
        if matches!(i, 8 | 13 | 18 | 23) {
            continue;
        }
        v = (v << 4) | u128::from((c as char).to_digit(16)?);
    }
    Some(Uuid::from_u128(v))
}

/// Writes the integer `text` (`-?(0|[1-9][0-9]*)`) as a `bytes`-wide little-endian integer,
/// if it is one and in range.
fn put_int(out: &mut Vec<u8>, text: &[u8], bytes: usize, signed: bool) -> R {
    let (neg, ds) = match text {
        [b'-', rest @ ..] => (true, rest),
        _ => (false, text),
    };
    if ds.is_empty() || !ds.iter().all(u8::is_ascii_digit) {
        return Err("not an integer");
    }
    if neg && ds == b"0" {
        return Err("-0");
    }
    if neg && !signed {
        return Err("a negative number for an unsigned type");
    }
    let bits = bytes as u32 * 8;
    // Fast path: up to 19 digits fit in a u64.
    if ds.len() <= 19 && bytes <= 8 {
        let mag = ds.iter().fold(0u64, |v, d| v * 10 + u64::from(d - b'0'));
        let limit: u64 = if signed {
            1u64 << (bits - 1)
        } else if bits == 64 {
            u64::MAX
        } else {
            (1u64 << bits) - 1
        };
        let ok = if signed && !neg {
            mag < limit
        } else {
            mag <= limit
        };
        if !ok {
            return Err("an integer out of range");
        }
        let v = if neg { mag.wrapping_neg() } else { mag };
        out.extend_from_slice(&v.to_le_bytes()[..bytes]);
        return Ok(());
    }
    // Up to 256 bits in four limbs.
    let mut limbs = [0u64; 4];
    for &d in ds {
        let mut carry = u128::from(d - b'0');
        for l in &mut limbs {
            let x = u128::from(*l) * 10 + carry;
            *l = x as u64;
            carry = x >> 64;
        }
        if carry != 0 {
            return Err("an integer out of range");
        }
    }
    let width = 256
        - limbs
            .iter()
            .rev()
            .position(|&l| l != 0)
            .map_or(256, |k| 64 * k as u32 + limbs[3 - k].leading_zeros());
    let is_pow = |b: u32| {
        width == b + 1 && {
            let mut want = [0u64; 4];
            want[(b / 64) as usize] = 1u64 << (b % 64);
            want == limbs
        }
    };
    let ok = if !signed {
        width <= bits
    } else if neg {
        width < bits || is_pow(bits - 1)
    } else {
        width < bits
    };
    if !ok {
        return Err("an integer out of range");
    }
    if neg {
        let mut carry = 1u64;
        for l in &mut limbs {
            let (x, c) = (!*l).overflowing_add(carry);
            *l = x;
            carry = u64::from(c);
        }
    }
    let mut le = [0u8; 32];
    for (k, l) in limbs.iter().enumerate() {
        le[k * 8..k * 8 + 8].copy_from_slice(&l.to_le_bytes());
    }
    out.extend_from_slice(&le[..bytes]);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::schema::ColumnDef;

    fn enc(cols: &[(&str, &str)]) -> JsonRowBinary {
        let schema = TableSchema::from_columns(
            "d",
            "t",
            cols.iter().map(|(n, t)| ColumnDef::new(*n, *t)).collect(),
        );
        JsonRowBinary::new(&schema, None, JsonRowBinaryOptions::default()).unwrap()
    }

    fn row(e: &mut JsonRowBinary, line: &str) -> Result<Vec<u8>, Fallback> {
        let mut out = Vec::new();
        e.convert(line.as_bytes(), &mut out).map(|()| out)
    }

    /// The fast paths of plain numbers either step aside (`None`) or agree exactly with the
    /// general path, which judges everything they leave to it.
    #[test]
    fn plain_number_fast_paths_agree_with_the_general_path() {
        let texts = [
            "0",
            "-0",
            "00",
            "01",
            "-01",
            "1",
            "-1",
            "7",
            "10",
            "1.",
            ".5",
            "-",
            "",
            "1e5",
            "1E5",
            "1.5e3",
            "0.1",
            "-0.0",
            "0.25",
            "123.456",
            "-123.456",
            "249.75",
            "1700000000",
            "9999999999999999999",
            "12345678901234567890",
            "18446744073709551615",
            "18446744073709551616",
            "9223372036854775807",
            "9223372036854775808",
            "-9223372036854775808",
            "-9223372036854775809",
            "127",
            "128",
            "-128",
            "-129",
            "255",
            "256",
            "65535",
            "65536",
            "4294967295",
            "4294967296",
            "9007199254740992",
            "9007199254740993",
            "1.0000000000000000001",
            "0.0000000000000000000001",
            "1.2.3",
            "1..2",
            "--1",
            "+1",
            "1a",
            "999999999999",
            "1000000000000",
        ];
        for text in texts {
            for end in ["", ",", "}", " ", "]"] {
                let line = format!("{text}{end}");
                let s = line.as_bytes();
                // Integers of every width up to 64 bits.
                for bytes in [1u8, 2, 4, 8] {
                    for signed in [false, true] {
                        let Some((v, stop)) = plain_int(s, 0, bytes, signed) else {
                            continue;
                        };
                        // Where the general path's number ends too (`1a`: after `1`).
                        assert_eq!(Some(stop), number_end(s, 0), "{line:?}");
                        let mut want = Vec::new();
                        put_int(&mut want, &s[..stop], bytes as usize, signed)
                            .unwrap_or_else(|e| panic!("{line:?} {bytes} {signed}: {e}"));
                        assert_eq!(&v.to_le_bytes()[..bytes as usize], &want[..], "{line:?}");
                    }
                }
                // Floats.
                if let Some((v, stop)) = plain_f64(s, 0) {
                    assert_eq!(Some(stop), number_end(s, 0), "{line:?}");
                    let mut p = P { s, i: 0 };
                    let want = parse_f64(&mut p).unwrap_or_else(|e| panic!("{line:?}: {e}"));
                    assert_eq!(v.to_bits(), want.to_bits(), "{line:?}");
                    assert_eq!(p.i, stop, "{line:?}");
                }
                // Epoch seconds: the general path is the strict JSON number, then the check.
                if let Some((v, stop)) = plain_digits(s, 0) {
                    assert_eq!(number_end(s, 0), Some(stop), "{line:?}");
                    assert_eq!(line[..stop].parse::<u64>().ok(), Some(v), "{line:?}");
                }
            }
        }
        // What the fast paths must leave to the general path.
        for text in [
            "00",
            "01",
            "-0",
            "1.",
            "1e5",
            "12345678901234567890",
            "+1",
            ".5",
        ] {
            assert!(plain_int(text.as_bytes(), 0, 8, true).is_none(), "{text}");
            assert!(plain_digits(text.as_bytes(), 0).is_none(), "{text}");
        }
        for text in [
            "00.5", "01", "1.", "1e5", "1.5E3", ".5", "-", "1..2", "1.2.3",
        ] {
            assert!(plain_f64(text.as_bytes(), 0).is_none(), "{text}");
        }
        assert!(plain_int(b"256", 0, 1, false).is_none());
        assert!(plain_int(b"-129", 0, 1, true).is_none());
        assert!(plain_int(b"-1", 0, 8, false).is_none());
    }

    /// Keys read by their column-order spelling or, when spelled otherwise (spaces, escapes,
    /// another order), by the general path: the same row either way.
    #[test]
    fn keys_in_any_spelling_give_the_same_row() {
        let mut e = enc(&[("id", "UInt64"), ("name", "String"), ("v", "Float64")]);
        let want = row(&mut e, r#"{"id":1,"name":"a","v":0.5}"#).unwrap();
        for line in [
            r#"{ "id" : 1 , "name" : "a" , "v" : 0.5 }"#,
            r#"{"id":1, "name":"a", "v":0.5}"#,
            r#"{"name":"a","id":1,"v":0.5}"#,
            r#"{"v":0.5,"name":"a","id":1}"#,
            r#"{"id":1,"name":"a","v":0.5}"#,
        ] {
            match row(&mut e, line) {
                Ok(got) => assert_eq!(got, want, "{line}"),
                Err(_) => assert!(line.contains("\\u"), "{line} refused"),
            }
        }
        // A key that is a prefix of a column's spelled key is not taken for it.
        assert!(row(&mut e, r#"{"i":1}"#).is_err());
        assert!(row(&mut e, r#"{"id":1,"name":"a","v":0.5,"id":2}"#).is_err());
    }

    #[test]
    fn integers_of_every_width() {
        let mut e = enc(&[
            ("a", "UInt8"),
            ("b", "Int64"),
            ("c", "UInt256"),
            ("d", "Int128"),
        ]);
        let out = row(
            &mut e,
            r#"{"a": 255, "b": "-9223372036854775808", "c": "115792089237316195423570985008687907853269984665640564039457584007913129639935", "d": -170141183460469231731687303715884105728}"#,
        )
        .unwrap();
        let mut want = vec![0, 255, 0];
        want.extend_from_slice(&i64::MIN.to_le_bytes());
        want.push(0);
        want.extend_from_slice(&[0xff; 32]);
        want.push(0);
        want.extend_from_slice(&i128::MIN.to_le_bytes());
        assert_eq!(out, want);
        for bad in [
            r#"{"a": 256}"#,
            r#"{"a": -1}"#,
            r#"{"a": 1.0}"#,
            r#"{"a": "01"}"#,
            r#"{"b": 9223372036854775808}"#,
            r#"{"d": 170141183460469231731687303715884105728}"#,
            r#"{"c": 115792089237316195423570985008687907853269984665640564039457584007913129639936}"#,
            r#"{"b": -0}"#,
        ] {
            assert!(row(&mut e, bad).is_err(), "{bad}");
        }
        let mut e = enc(&[("d", "Int128")]);
        assert_eq!(
            row(&mut e, r#"{"d": -1}"#).unwrap()[1..],
            (-1i128).to_le_bytes()
        );
        assert_eq!(
            row(&mut e, r#"{"d": 18446744073709551616}"#).unwrap()[1..],
            (1i128 << 64).to_le_bytes()
        );
    }

    #[test]
    fn strings_escapes_defaults_and_order() {
        let mut e = enc(&[("s", "String"), ("n", "Nullable(String)"), ("x", "UInt8")]);
        let out = row(
            &mut e,
            r#"{"x": 7, "s": "a\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00"}"#,
        )
        .unwrap();
        let text = "a\"\\/\u{8}\u{c}\n\r\té😀";
        let mut want = vec![0, text.len() as u8];
        want.extend_from_slice(text.as_bytes());
        want.extend_from_slice(&[1, 0, 7]);
        assert_eq!(out, want);
        assert_eq!(
            row(&mut e, r#"{"n": null, "s": null}"#).unwrap(),
            vec![1, 0, 1, 1]
        );
        for bad in [
            r#"{"s": "\ud83d"}"#,
            r#"{"s": 1}"#,
            r#"{"s": {"a": 1}}"#,
            r#"{"s": "a", "s": "b"}"#,
            r#"{"zzz": 1}"#,
            r#"{"s": "a"} x"#,
        ] {
            assert!(row(&mut e, bad).is_err(), "{bad}");
        }
        // Bytes that are not UTF-8 are kept.
        let mut out = Vec::new();
        e.convert(b"{\"s\": \"\xff\"}", &mut out).unwrap();
        assert_eq!(out, vec![0, 1, 0xff, 1, 1]);
    }

    #[test]
    fn dates_times_and_zones() {
        let mut e = enc(&[
            ("d", "Date"),
            ("t", "DateTime('UTC')"),
            ("t3", "DateTime64(3, 'Asia/Tokyo')"),
        ]);
        let out = row(
            &mut e,
            r#"{"d": "2024-01-02", "t": "2023-11-14 22:13:20", "t3": "2024-01-01 09:00:00.5"}"#,
        )
        .unwrap();
        let mut want = vec![0];
        want.extend_from_slice(&19724u16.to_le_bytes());
        want.push(0);
        want.extend_from_slice(&1700000000u32.to_le_bytes());
        want.push(0);
        want.extend_from_slice(&1704067200500i64.to_le_bytes());
        assert_eq!(out, want);
        assert!(row(&mut e, r#"{"t": 1700000000}"#).is_ok());
        for bad in [
            r#"{"d": "2024-02-30"}"#,
            r#"{"d": 19724}"#,
            r#"{"t": "2023-11-14T22:13:20"}"#,
            r#"{"t3": "2024-01-01 09:00:00.5000"}"#,
            r#"{"t": -1}"#,
        ] {
            assert!(row(&mut e, bad).is_err(), "{bad}");
        }
        let mut ny = enc(&[("t", "DateTime('America/New_York')")]);
        assert!(row(&mut ny, r#"{"t": "2024-03-10 02:30:00"}"#).is_err());
        assert!(row(&mut ny, r#"{"t": "2024-03-11 02:30:00"}"#).is_err());
        let ok = row(&mut ny, r#"{"t": "2024-07-01 12:00:00"}"#).unwrap();
        assert_eq!(ok[1..], (1719849600u32).to_le_bytes());
    }

    #[test]
    fn arrays_maps_enums_uuids() {
        let mut e = enc(&[
            ("a", "Array(Nullable(UInt8))"),
            ("m", "Map(String, Array(String))"),
            ("e", "Enum8('x' = -1, 'y' = 5)"),
            ("u", "UUID"),
        ]);
        let out = row(
            &mut e,
            r#"{"a": [1, null], "m": {"k": ["v"]}, "e": "x", "u": "00000000-0000-0001-0000-000000000002"}"#,
        )
        .unwrap();
        let mut want = vec![0, 2, 0, 1, 1, 0, 1, 1, b'k', 1, 1, b'v', 0, 0xff, 0];
        want.extend_from_slice(&1u64.to_le_bytes());
        want.extend_from_slice(&2u64.to_le_bytes());
        assert_eq!(out, want);
        for bad in [
            r#"{"m": {"k": [], "k": []}}"#,
            r#"{"e": "z"}"#,
            r#"{"e": 5}"#,
            r#"{"m": {"k": null}}"#,
        ] {
            assert!(row(&mut e, bad).is_err(), "{bad}");
        }
        let schema =
            TableSchema::from_columns("d", "t", vec![ColumnDef::new("x", "Decimal(9, 2)")]);
        assert!(JsonRowBinary::new(&schema, None, JsonRowBinaryOptions::default()).is_err());
    }

    /// Counts of 128 elements and more take two LEB128 bytes, written before the elements
    /// once known; repeated Map keys are refused however many keys come before.
    #[test]
    fn long_arrays_and_maps() {
        let mut e = enc(&[("a", "Array(UInt8)"), ("m", "Map(String, UInt8)")]);
        for n in [0usize, 1, 127, 128, 300, 1_000] {
            let items: Vec<String> = (0..n).map(|i| (i % 256).to_string()).collect();
            let keys: Vec<String> = (0..n).map(|i| format!("\"k{i}\": {}", i % 256)).collect();
            let line = format!(
                r#"{{"a": [{}], "m": {{{}}}}}"#,
                items.join(","),
                keys.join(",")
            );
            let out = row(&mut e, &line).unwrap();
            let mut want = vec![0];
            crate::format::rowbinary::put_leb128(&mut want, n as u64);
            want.extend((0..n).map(|i| i as u8));
            want.push(0);
            crate::format::rowbinary::put_leb128(&mut want, n as u64);
            for i in 0..n {
                let k = format!("k{i}");
                want.push(k.len() as u8);
                want.extend_from_slice(k.as_bytes());
                want.push(i as u8);
            }
            assert_eq!(out, want, "{n} elements");
        }
        for at in [1usize, 7, 8, 9, 20] {
            let mut keys: Vec<String> = (0..20).map(|i| format!("\"k{i}\": 1")).collect();
            keys.insert(at, "\"k0\": 2".to_string());
            let line = format!(r#"{{"m": {{{}}}}}"#, keys.join(","));
            assert!(row(&mut e, &line).is_err(), "k0 repeated at {at}");
        }
    }

    #[test]
    fn batches_fill_the_insert_id_and_refuse_lines_outside_the_subset() {
        let schema = TableSchema::from_columns(
            "d",
            "t",
            vec![
                ColumnDef::new("id", "UInt8"),
                ColumnDef::new("_insert_id", "UUID"),
            ],
        );
        let mut e = JsonRowBinary::new(
            &schema,
            InsertIdColumn::from_column("_insert_id", "UUID"),
            JsonRowBinaryOptions::default(),
        )
        .unwrap();
        let id = Uuid::from_u128(5);
        e.begin(id);
        let mut rejected = Vec::new();
        assert!(
            e.push(Bytes::from_static(b"{\"id\": 1}"), &mut rejected)
                .is_done()
        );
        assert!(
            e.push(Bytes::from_static(b"{\"id\": 1000}"), &mut rejected)
                .is_done()
        );
        assert!(e.push(Bytes::from_static(b"{}"), &mut rejected).is_done());
        assert_eq!(rejected.len(), 1);
        assert_eq!(rejected[0].record.as_deref(), Some("{\"id\": 1000}"));
        assert!(
            rejected[0]
                .reason
                .starts_with("not converted to RowBinary: "),
            "{}",
            rejected[0].reason
        );
        let out = e.finish();
        assert_eq!(out.format, Format::RowBinaryWithDefaults);
        assert_eq!(out.columns, vec!["id", "_insert_id"]);
        assert_eq!(out.rows, 2);
        assert_eq!(out.parts.offsets().unwrap(), &[0, 19]);
        let mut want = vec![0, 1, 0];
        crate::format::rowbinary::put_uuid(&mut want, &id);
        want.extend_from_slice(&[1, 0]);
        crate::format::rowbinary::put_uuid(&mut want, &id);
        assert_eq!(&out.bytes[..], &want[..]);
    }
}
