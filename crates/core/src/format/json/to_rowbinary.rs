//! NDJSON lines converted on the client to `RowBinaryWithDefaults` for the table's column
//! types: the encoder, and the writer of one value of a compiled column type.

use bytes::Bytes;
use uuid::Uuid;

use super::scan::{Cursor, Grammar, KeyText};
use crate::FastMap;
use crate::batch::{Encoded, Format, RejectedRow};
use crate::format::kind::{Scalar, scalar};
use crate::format::{BatchBuffer, BatchEncoder, EncodedRows, Push, RowEncoder, append_encoded};
use crate::types::insert_id::InsertIdColumn;
use crate::types::schema::{ColumnType, DefaultKind, TableSchema};
use crate::types::text::{self, plain_digits, plain_f64, plain_int};
use crate::types::time::{
    DATE_MAX_DAYS, DATE_MIN_DAYS, DATE32_MAX_DAYS, DATE32_MIN_DAYS, DT64_MAX_SECS, DT64_MIN_SECS,
    POW10, Zone, days_from_civil,
};
use crate::types::wire::{put_leb128, put_uuid};

/// Why a line is outside the converted subset.
pub(crate) type Fallback = &'static str;

type R<T = ()> = Result<T, Fallback>;

/// JSON's own grammar, for the values of keys that are skipped: a line the server might read
/// otherwise is not converted.
const JSON: Grammar = Grammar {
    leading_zeros: false,
    max_depth: 129,
};

/// A column type compiled for conversion: a scalar, or a wrapper the JSON spelling of which
/// is read here.
#[derive(Debug, Clone)]
enum Kind {
    Scalar(Scalar),
    Nullable(Box<Kind>),
    Array(Box<Kind>),
    /// `Map(String, V)`: the value's kind.
    Map(Box<Kind>),
}

/// Compiles a column type into what the converter reads, or says why it has no exact
/// conversion.
fn compile(ty: &ColumnType, server_tz: &Result<Zone, String>) -> Result<Kind, String> {
    use ColumnType as T;
    match ty {
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
        other => match scalar(other, server_tz)? {
            Some(Scalar::BFloat16 | Scalar::Decimal { .. } | Scalar::Json) | None => {
                Err(format!("type {other} has no conversion"))
            }
            Some(s) => Ok(Kind::Scalar(s)),
        },
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
        let server_tz = Zone::named(&schema.server_timezone);
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
                let kind = compile(&c.ty, &server_tz)
                    .map_err(|e| format!("column {} ({}): {e}", c.name, c.type_name))?;
                let explicit = c.default_kind == DefaultKind::Default;
                omitted.push(match &kind {
                    // An Enum's default is its element with the least value.
                    Kind::Scalar(Scalar::Enum8(items)) if !explicit => {
                        let min = items.iter().map(|(_, v)| *v).min().ok_or("an empty Enum")?;
                        vec![0, min as u8]
                    }
                    Kind::Scalar(Scalar::Enum16(items)) if !explicit => {
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
        let key_texts = columns.iter().map(|n| KeyText::of_name(n)).collect();
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
        let mut p = Cursor::new(line);
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
                        // Inside the line's object.
                        p.skip_value(1, JSON)?;
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
                                Kind::Scalar(Scalar::Enum8(_) | Scalar::Enum16(_)) => {
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

    fn fills_insert_id(&self) -> bool {
        self.insert_id.is_some()
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

/// Writes one value of `kind` (not `null` at the top of a column) to `out`.
fn value(p: &mut Cursor<'_>, kind: &Kind, out: &mut Vec<u8>, text: &mut Vec<u8>) -> R {
    match kind {
        Kind::Scalar(Scalar::Int { width, signed }) => {
            if let Some((v, end)) = plain_int(p.s, p.i, *width, *signed) {
                out.extend_from_slice(&v.to_le_bytes()[..*width as usize]);
                p.i = end;
                return Ok(());
            }
            let (t, _) = p.number_text()?;
            text::put_int(out, t, *width as usize, *signed)
        }
        Kind::Scalar(Scalar::Float64) => {
            if let Some((v, end)) = plain_f64(p.s, p.i) {
                out.extend_from_slice(&v.to_le_bytes());
                p.i = end;
                return Ok(());
            }
            let (t, _) = p.number_text()?;
            out.extend_from_slice(&text::parse_f64(t)?.to_le_bytes());
            Ok(())
        }
        Kind::Scalar(Scalar::Float32) => {
            let (t, _) = p.number_text()?;
            out.extend_from_slice(&text::parse_f32(t)?.to_le_bytes());
            Ok(())
        }
        Kind::Scalar(Scalar::Bool) => {
            if p.lit(b"true") {
                out.push(1);
            } else if p.lit(b"false") {
                out.push(0);
            } else {
                return Err("a Bool that is not true or false");
            }
            Ok(())
        }
        Kind::Scalar(Scalar::String) => p.with_string(text, |s| {
            put_leb128(out, s.len() as u64);
            out.extend_from_slice(s);
            Ok(())
        }),
        Kind::Scalar(Scalar::FixedString(n)) => p.with_string(text, |s| {
            if s.len() > *n {
                return Err("a string longer than the FixedString");
            }
            out.extend_from_slice(s);
            out.resize(out.len() + (n - s.len()), 0);
            Ok(())
        }),
        Kind::Scalar(Scalar::Uuid) => p.with_string(text, |s| {
            let id = text::parse_uuid(s).ok_or("not a UUID in its usual spelling")?;
            put_uuid(out, &id);
            Ok(())
        }),
        Kind::Scalar(Scalar::IPv4) => p.with_string(text, |s| {
            let ip = text::parse_ipv4(s).ok_or("not an IPv4 address in dotted-decimal spelling")?;
            out.extend_from_slice(&ip.to_le_bytes());
            Ok(())
        }),
        Kind::Scalar(Scalar::IPv6) => p.with_string(text, |s| {
            // Only the spellings of RFC 4291 that Rust's parser takes as well; anything
            // else (an IPv4 address, which the server maps, a zone id) is not converted.
            let ip: std::net::Ipv6Addr = std::str::from_utf8(s)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or("not an IPv6 address in its usual spelling")?;
            out.extend_from_slice(&ip.octets());
            Ok(())
        }),
        Kind::Scalar(date @ (Scalar::Date(_) | Scalar::Date32(_))) => p.with_string(text, |s| {
            let (y, m, d) = text::parse_date(s).ok_or("not a YYYY-MM-DD date")?;
            let days = days_from_civil(y, m, d);
            if let Scalar::Date(_) = date {
                if !(DATE_MIN_DAYS..=DATE_MAX_DAYS).contains(&days) {
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
        Kind::Scalar(Scalar::DateTime(zone)) => {
            let secs = if p.peek() == Some(b'"') {
                p.with_string(text, |s| {
                    if s.len() != 19 {
                        return Err("not a YYYY-MM-DD hh:mm:ss date-time");
                    }
                    let (at, _) = text::parse_date_time(s, 0)?;
                    zone.local_to_utc(&at)
                })?
            } else {
                epoch_secs(p)?
            };
            if !(0..=u32::MAX as i64).contains(&secs) {
                return Err("a DateTime out of range");
            }
            out.extend_from_slice(&(secs as u32).to_le_bytes());
            Ok(())
        }
        Kind::Scalar(Scalar::DateTime64 { precision, zone }) => {
            let (secs, frac) = if p.peek() == Some(b'"') {
                p.with_string(text, |s| {
                    let (at, frac) = text::parse_date_time(s, *precision)?;
                    Ok((zone.local_to_utc(&at)?, frac))
                })?
            } else {
                (epoch_secs(p)?, 0)
            };
            if !(DT64_MIN_SECS..=DT64_MAX_SECS).contains(&secs) {
                return Err("a DateTime64 out of range");
            }
            out.extend_from_slice(&(secs * POW10[*precision as usize] + frac).to_le_bytes());
            Ok(())
        }
        Kind::Scalar(Scalar::Enum8(items)) => p.with_string(text, |s| {
            let v = items
                .iter()
                .find(|(n, _)| n.as_bytes() == s)
                .ok_or("not an element of the enum")?;
            out.push(v.1 as u8);
            Ok(())
        }),
        Kind::Scalar(Scalar::Enum16(items)) => p.with_string(text, |s| {
            let v = items
                .iter()
                .find(|(n, _)| n.as_bytes() == s)
                .ok_or("not an element of the enum")?;
            out.extend_from_slice(&v.1.to_le_bytes());
            Ok(())
        }),
        // Refused when compiled.
        Kind::Scalar(Scalar::BFloat16 | Scalar::Decimal { .. } | Scalar::Json) => {
            Err("a type without conversion")
        }
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

/// Seconds since the epoch from a plain non-negative JSON integer.
fn epoch_secs(p: &mut Cursor<'_>) -> R<i64> {
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
            crate::types::wire::put_leb128(&mut want, n as u64);
            want.extend((0..n).map(|i| i as u8));
            want.push(0);
            crate::types::wire::put_leb128(&mut want, n as u64);
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
        crate::types::wire::put_uuid(&mut want, &id);
        want.extend_from_slice(&[1, 0]);
        crate::types::wire::put_uuid(&mut want, &id);
        assert_eq!(&out.bytes[..], &want[..]);
    }
}
