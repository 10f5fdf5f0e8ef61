//! Dynamic values, dynamic rows and columnar batches for tables whose schema is only known at
//! run time.
//!
//! A [`Value`] is what a JSON document, a Python object or any other schemaless source produces.
//! It carries no ClickHouse type: [`crate::format::native::NativeBatch`] converts it to the column's type
//! when it is pushed. A [`DynRow`] is an ordered list of named values (one row); a
//! [`ColumnBatch`] holds the same data column by column.
//!
//! JSON text can be parsed straight into these types with `serde_json::from_str::<DynRow>()`
//! (or [`DynRow::from_json_str`]). That path keeps object keys in their order and keeps
//! duplicate keys, which matters for `Map(K, V)` columns, and it keeps 64-bit integers exact.
//! Converting from an already parsed [`serde_json::Value`] works too, but the key order then
//! depends on serde_json's `preserve_order` feature and duplicate keys are already gone.

use std::fmt::{self, Write as _};

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// A dynamically typed value.
///
/// Integers wider than 64 bits have their own variants; 256-bit integers (and decimals that
/// must stay exact) are given as [`Value::String`] holding their decimal text, which the
/// encoder parses exactly.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Value {
    /// SQL `NULL` / JSON `null` / Python `None`.
    #[default]
    Null,
    /// A boolean.
    Bool(bool),
    /// A signed integer.
    Int(i64),
    /// An unsigned integer.
    UInt(u64),
    /// A signed 128-bit integer.
    Int128(i128),
    /// An unsigned 128-bit integer.
    UInt128(u128),
    /// A floating point number.
    Float(f64),
    /// A UTF-8 string (also the text form of big integers, decimals, dates, UUIDs, IPs, ...).
    String(String),
    /// Raw bytes (for `String`/`FixedString` columns; need not be UTF-8).
    Bytes(Vec<u8>),
    /// A list: `Array(T)`, or a `Tuple(...)` given by position.
    Array(Vec<Value>),
    /// Key/value pairs in order, duplicates allowed: `Map(K, V)`.
    Map(Vec<(Value, Value)>),
    /// A positional tuple: `Tuple(...)`.
    Tuple(Vec<Value>),
    /// A JSON-like object: named `Tuple(a T, ...)`, `Map(String, V)` or a `JSON` column.
    Object(Vec<(String, Value)>),
}

impl Value {
    /// Whether this is [`Value::Null`].
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// A short name of the variant, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::Int(_) | Value::UInt(_) | Value::Int128(_) | Value::UInt128(_) => "integer",
            Value::Float(_) => "float",
            Value::String(_) => "string",
            Value::Bytes(_) => "bytes",
            Value::Array(_) => "array",
            Value::Map(_) => "map",
            Value::Tuple(_) => "tuple",
            Value::Object(_) => "object",
        }
    }

    /// Appends the JSON text of this value to `out`.
    ///
    /// Non-finite floats become `null`; bytes that are not UTF-8 are replaced with U+FFFD;
    /// map keys that are not strings are written as their JSON text inside a string.
    pub fn write_json(&self, out: &mut String) {
        match self {
            Value::Null => out.push_str("null"),
            Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Value::Int(v) => {
                let _ = write!(out, "{v}");
            }
            Value::UInt(v) => {
                let _ = write!(out, "{v}");
            }
            Value::Int128(v) => {
                let _ = write!(out, "{v}");
            }
            Value::UInt128(v) => {
                let _ = write!(out, "{v}");
            }
            Value::Float(v) => {
                if v.is_finite() {
                    let _ = write!(out, "{v}");
                } else {
                    out.push_str("null");
                }
            }
            Value::String(s) => write_json_str(s, out),
            Value::Bytes(b) => write_json_str(&String::from_utf8_lossy(b), out),
            Value::Array(items) | Value::Tuple(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write_json(out);
                }
                out.push(']');
            }
            Value::Map(pairs) => {
                out.push('{');
                for (i, (k, v)) in pairs.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    match k {
                        Value::String(s) => write_json_str(s, out),
                        other => {
                            let mut key = String::new();
                            other.write_json(&mut key);
                            write_json_str(&key, out);
                        }
                    }
                    out.push(':');
                    v.write_json(out);
                }
                out.push('}');
            }
            Value::Object(fields) => {
                out.push('{');
                for (i, (k, v)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_json_str(k, out);
                    out.push(':');
                    v.write_json(out);
                }
                out.push('}');
            }
        }
    }

    /// The JSON text of this value (see [`Value::write_json`]).
    pub fn to_json_string(&self) -> String {
        let mut out = String::new();
        self.write_json(&mut out);
        out
    }

    /// The JSON text of this value cut to at most `max` bytes (plus `...` when cut), for
    /// error messages.
    pub fn to_truncated_string(&self, max: usize) -> String {
        let mut s = self.to_json_string();
        if s.len() > max {
            let mut cut = max;
            while !s.is_char_boundary(cut) {
                cut -= 1;
            }
            s.truncate(cut);
            s.push_str("...");
        }
        s
    }
}

fn write_json_str(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_json_string())
    }
}

macro_rules! from_prim {
    ($($t:ty => $var:ident as $as:ty),* $(,)?) => {$(
        impl From<$t> for Value {
            fn from(v: $t) -> Self {
                Value::$var(v as $as)
            }
        }
    )*};
}
from_prim!(
    i8 => Int as i64, i16 => Int as i64, i32 => Int as i64, i64 => Int as i64,
    u8 => UInt as u64, u16 => UInt as u64, u32 => UInt as u64, u64 => UInt as u64,
    i128 => Int128 as i128, u128 => UInt128 as u128, f32 => Float as f64, f64 => Float as f64,
);

impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Bool(v)
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::String(v.to_owned())
    }
}
impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::String(v)
    }
}
impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}
impl<T: Into<Value>> From<Vec<T>> for Value {
    fn from(v: Vec<T>) -> Self {
        Value::Array(v.into_iter().map(Into::into).collect())
    }
}

impl From<serde_json::Value> for Value {
    /// Integers stay exact (`i64`/`u64`); other numbers become [`Value::Float`].
    /// With serde_json's `arbitrary_precision` feature, numbers that fit no `i64`/`u64`
    /// are kept as their text ([`Value::String`]) so decimals and big integers stay exact.
    fn from(v: serde_json::Value) -> Self {
        match v {
            serde_json::Value::Null => Value::Null,
            serde_json::Value::Bool(b) => Value::Bool(b),
            serde_json::Value::Number(n) => number_to_value(&n),
            serde_json::Value::String(s) => Value::String(s),
            serde_json::Value::Array(a) => Value::Array(a.into_iter().map(Value::from).collect()),
            serde_json::Value::Object(o) => {
                Value::Object(o.into_iter().map(|(k, v)| (k, Value::from(v))).collect())
            }
        }
    }
}

fn number_to_value(n: &serde_json::Number) -> Value {
    if let Some(u) = n.as_u64() {
        return Value::UInt(u);
    }
    if let Some(i) = n.as_i64() {
        return Value::Int(i);
    }
    // Any decimal text with at most 15 significant digits survives a trip through f64.
    // Longer texts (serde_json's `arbitrary_precision`, or big integers) stay text so that
    // the encoder parses them exactly for Decimal/Int128/Int256 and floats alike.
    let text = n.to_string();
    let mantissa = text.split(['e', 'E']).next().unwrap_or("");
    let significant = mantissa
        .bytes()
        .filter(u8::is_ascii_digit)
        .skip_while(|&b| b == b'0')
        .count();
    match n.as_f64() {
        Some(f) if significant <= 15 => Value::Float(f),
        _ => Value::String(text),
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::UInt(v))
    }
    fn visit_i128<E>(self, v: i128) -> Result<Value, E> {
        Ok(Value::Int128(v))
    }
    fn visit_u128<E>(self, v: u128) -> Result<Value, E> {
        Ok(Value::UInt128(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_bytes<E>(self, v: &[u8]) -> Result<Value, E> {
        Ok(Value::Bytes(v.to_vec()))
    }
    fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Value, E> {
        Ok(Value::Bytes(v))
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Value::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(0).min(4096));
        while let Some((k, v)) = map.next_entry::<String, Value>()? {
            fields.push((k, v));
        }
        Ok(Value::Object(fields))
    }
}

impl<'de> Deserialize<'de> for Value {
    /// Deserializes any self-describing data (JSON, ...) keeping object key order and
    /// duplicate keys.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

/// One dynamic row: named values in the order they were given.
///
/// Names are matched to the table's columns when the row is pushed into a
/// [`crate::format::native::NativeBatch`]; a name may appear only once.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DynRow {
    /// The `(column name, value)` pairs.
    pub fields: Vec<(String, Value)>,
}

impl DynRow {
    /// An empty row.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty row with room for `n` fields.
    pub fn with_capacity(n: usize) -> Self {
        Self {
            fields: Vec::with_capacity(n),
        }
    }

    /// Appends a field.
    pub fn push(&mut self, name: impl Into<String>, value: impl Into<Value>) {
        self.fields.push((name.into(), value.into()));
    }

    /// Builder-style [`DynRow::push`].
    pub fn with(mut self, name: impl Into<String>, value: impl Into<Value>) -> Self {
        self.push(name, value);
        self
    }

    /// The number of fields.
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// Whether the row has no fields.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// The value of the field `name`, if present.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.fields.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// Parses a JSON object (keeps key order, duplicates and exact 64-bit integers).
    pub fn from_json_str(s: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(s)
    }
}

impl<'de> Deserialize<'de> for DynRow {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::Object(fields) => Ok(DynRow { fields }),
            other => Err(de::Error::custom(format_args!(
                "a row must be an object, got {}",
                other.kind()
            ))),
        }
    }
}

impl From<Vec<(String, Value)>> for DynRow {
    fn from(fields: Vec<(String, Value)>) -> Self {
        Self { fields }
    }
}

impl FromIterator<(String, Value)> for DynRow {
    fn from_iter<I: IntoIterator<Item = (String, Value)>>(iter: I) -> Self {
        Self {
            fields: iter.into_iter().collect(),
        }
    }
}

impl TryFrom<serde_json::Value> for DynRow {
    type Error = String;

    /// Only a JSON object is a row.
    fn try_from(v: serde_json::Value) -> Result<Self, String> {
        match Value::from(v) {
            Value::Object(fields) => Ok(DynRow { fields }),
            other => Err(format!("a row must be an object, got {}", other.kind())),
        }
    }
}

/// The values of one column of a [`ColumnBatch`].
///
/// [`ColumnData::Values`] holds any dynamic values; [`ColumnData::Typed`] holds values of one
/// type in flat buffers (as Arrow and numpy keep them), which the Native encoder
/// writes with tight loops (a copy when the column's type matches) instead of one [`Value`]
/// at a time. Both mean the same: a typed cell converts exactly like the [`Value`] that
/// [`TypedColumn::value`] gives for it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ColumnData {
    /// Dynamic values, one per row.
    Values(Vec<Value>),
    /// Values of one type (primitive, or lists and maps of typed items), with an optional
    /// null map.
    Typed(TypedColumn),
}

impl ColumnData {
    /// The number of rows.
    pub fn len(&self) -> usize {
        match self {
            ColumnData::Values(v) => v.len(),
            ColumnData::Typed(t) => t.len(),
        }
    }

    /// Whether the column has no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The value of row `row` (cloned or materialised), `None` past the end.
    pub fn value(&self, row: usize) -> Option<Value> {
        match self {
            ColumnData::Values(v) => v.get(row).cloned(),
            ColumnData::Typed(t) => (row < t.len()).then(|| t.value(row)),
        }
    }

    /// Whether row `row` is NULL.
    pub fn is_null(&self, row: usize) -> bool {
        match self {
            ColumnData::Values(v) => v.get(row).is_some_and(Value::is_null),
            ColumnData::Typed(t) => t.is_null(row),
        }
    }

    /// Whether any row is NULL.
    pub fn has_nulls(&self) -> bool {
        match self {
            ColumnData::Values(v) => v.iter().any(Value::is_null),
            ColumnData::Typed(t) => t.null_count() > 0,
        }
    }

    /// The rows `rows` (indices, in that order) as a new column of the same kind.
    pub fn take(&self, rows: &[usize]) -> ColumnData {
        match self {
            ColumnData::Values(v) => {
                ColumnData::Values(rows.iter().map(|r| v[*r].clone()).collect())
            }
            ColumnData::Typed(t) => ColumnData::Typed(t.take(rows)),
        }
    }

    /// The rows `range` as a new column of the same kind.
    pub fn slice(&self, range: std::ops::Range<usize>) -> ColumnData {
        match self {
            ColumnData::Values(v) => ColumnData::Values(v[range].to_vec()),
            ColumnData::Typed(t) => ColumnData::Typed(t.slice(range)),
        }
    }

    /// The column as a typed column when its values allow it
    /// ([`TypedColumn::from_values`]): the same rows in a fraction of the memory, encoded
    /// into the same bytes. Unchanged otherwise.
    pub fn compact(self) -> ColumnData {
        match self {
            ColumnData::Values(v) => match TypedColumn::from_values(&v) {
                Some(t) => ColumnData::Typed(t),
                None => ColumnData::Values(v),
            },
            typed => typed,
        }
    }

    /// Every row as a dynamic value.
    pub fn to_values(&self) -> Vec<Value> {
        match self {
            ColumnData::Values(v) => v.clone(),
            ColumnData::Typed(t) => (0..t.len()).map(|r| t.value(r)).collect(),
        }
    }
}

impl From<Vec<Value>> for ColumnData {
    fn from(v: Vec<Value>) -> Self {
        ColumnData::Values(v)
    }
}

impl From<TypedColumn> for ColumnData {
    fn from(t: TypedColumn) -> Self {
        ColumnData::Typed(t)
    }
}

/// Variable-length values in Arrow's layout: value `i` is `data[offsets[i]..offsets[i + 1]]`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Strings {
    /// `len + 1` non-decreasing offsets into `data`, the first one 0.
    pub offsets: Vec<u64>,
    /// The bytes of all values, one after the other.
    pub data: Vec<u8>,
}

impl Strings {
    /// No values.
    pub fn new() -> Self {
        Self {
            offsets: vec![0],
            data: Vec::new(),
        }
    }

    /// No values, with room for `n` values of `bytes` bytes in all.
    pub fn with_capacity(n: usize, bytes: usize) -> Self {
        let mut offsets = Vec::with_capacity(n + 1);
        offsets.push(0);
        Self {
            offsets,
            data: Vec::with_capacity(bytes),
        }
    }

    /// Appends one value.
    #[inline]
    pub fn push(&mut self, v: &[u8]) {
        self.data.extend_from_slice(v);
        self.offsets.push(self.data.len() as u64);
    }

    /// The number of values.
    pub fn len(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    /// Whether there are no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Value `i`.
    #[inline]
    pub fn get(&self, i: usize) -> &[u8] {
        &self.data[self.offsets[i] as usize..self.offsets[i + 1] as usize]
    }

    fn take(&self, rows: &[usize]) -> Strings {
        let mut out = Strings::with_capacity(rows.len(), 0);
        for &r in rows {
            out.push(self.get(r));
        }
        out
    }

    fn slice(&self, range: std::ops::Range<usize>) -> Strings {
        let lo = self.offsets[range.start];
        let hi = self.offsets[range.end];
        Strings {
            offsets: self.offsets[range.start..=range.end]
                .iter()
                .map(|o| o - lo)
                .collect(),
            data: self.data[lo as usize..hi as usize].to_vec(),
        }
    }
}

impl<S: AsRef<[u8]>> FromIterator<S> for Strings {
    fn from_iter<I: IntoIterator<Item = S>>(iter: I) -> Self {
        let mut out = Strings::new();
        for s in iter {
            out.push(s.as_ref());
        }
        out
    }
}

/// The values of a [`TypedColumn`]: one primitive type in a flat buffer, or lists or maps
/// whose items are typed columns themselves (offsets into them, as Arrow keeps them).
///
/// The comments say which [`Value`] each cell stands for (see [`TypedColumn::value`]).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum TypedData {
    /// Booleans ([`Value::Bool`]).
    Bool(Vec<bool>),
    /// [`Value::Int`].
    Int8(Vec<i8>),
    /// [`Value::Int`].
    Int16(Vec<i16>),
    /// [`Value::Int`].
    Int32(Vec<i32>),
    /// [`Value::Int`].
    Int64(Vec<i64>),
    /// [`Value::UInt`].
    UInt8(Vec<u8>),
    /// [`Value::UInt`].
    UInt16(Vec<u16>),
    /// [`Value::UInt`].
    UInt32(Vec<u32>),
    /// [`Value::UInt`].
    UInt64(Vec<u64>),
    /// [`Value::Float`].
    Float32(Vec<f32>),
    /// [`Value::Float`].
    Float64(Vec<f64>),
    /// UTF-8 text ([`Value::String`]).
    String(Strings),
    /// Bytes ([`Value::Bytes`]).
    Binary(Strings),
    /// Points in time: `ticks` of 10^-`precision` seconds since 1970-01-01 00:00:00
    /// (`precision` 0, 3, 6 or 9). With `zoned` they are instants (RFC 3339 text with `Z`);
    /// without, wall-clock times read in the column's time zone (text without an offset), as
    /// Arrow timestamps with and without a time zone.
    Timestamp {
        /// The values.
        ticks: Vec<i64>,
        /// Decimal digits of the unit: 0 (s), 3 (ms), 6 (us) or 9 (ns).
        precision: u8,
        /// Whether the ticks are instants (`true`) or wall-clock times (`false`).
        zoned: bool,
    },
    /// Calendar dates as days since 1970-01-01 (`YYYY-MM-DD` text).
    Date32(Vec<i32>),
    /// Lists ([`Value::Array`] of the items' values), in Arrow's list layout: row `i` holds
    /// the items `offsets[i]..offsets[i + 1]` of `values`. The Native encoder writes an
    /// `Array(T)` column of it as the offsets then the items, the items with the loops of
    /// their own type.
    List {
        /// `len + 1` non-decreasing offsets into `values` (the first one need not be 0; the
        /// last one is at most `values.len()`). A NULL row holds no items in the value it
        /// stands for, whatever its offsets say.
        offsets: Vec<u64>,
        /// The items of all rows, one after the other (with their own null map).
        values: Box<TypedColumn>,
    },
    /// Maps ([`Value::Map`] of the `(key, value)` pairs in order), in Arrow's map layout:
    /// row `i` holds the pairs `offsets[i]..offsets[i + 1]` of `keys` and `values`. A
    /// `Map(K, V)` column is `Array(Tuple(K, V))` on the wire: the offsets, then the keys,
    /// then the values.
    ///
    /// With `objects`, the rows are objects instead ([`Value::Object`] of the fields in
    /// order, the keys as text), as dicts of `str` keys or JSON objects give them: into a
    /// `Map` column they encode as the maps of the same pairs; into any other type cell by
    /// cell, as the objects they stand for (a named `Tuple`, `JSON` ...).
    Map {
        /// `len + 1` non-decreasing offsets into `keys` and `values`, as for
        /// [`TypedData::List`].
        offsets: Vec<u64>,
        /// The keys of all rows, one after the other.
        keys: Box<TypedColumn>,
        /// The values of all rows, one after the other (as long as `keys`).
        values: Box<TypedColumn>,
        /// The rows stand for [`Value::Object`]s (then `keys` is a column of UTF-8 text
        /// without NULLs), not [`Value::Map`]s.
        objects: bool,
    },
}

/// One column of values of one type ([`TypedData`]: a primitive type, or lists and maps of
/// typed columns) and an optional null map.
#[derive(Debug, Clone, PartialEq)]
pub struct TypedColumn {
    /// The values (any value where the row is NULL).
    pub data: TypedData,
    /// One byte per row, 1 where the row is NULL ([`Value::Null`]), 0 elsewhere: the layout
    /// of a Native null map. `None`: no NULLs.
    pub nulls: Option<Vec<u8>>,
}

macro_rules! typed_from {
    ($($t:ty => $var:ident),* $(,)?) => {$(
        impl From<Vec<$t>> for TypedColumn {
            fn from(v: Vec<$t>) -> Self {
                TypedColumn::new(TypedData::$var(v))
            }
        }
        impl From<Vec<$t>> for ColumnData {
            fn from(v: Vec<$t>) -> Self {
                ColumnData::Typed(v.into())
            }
        }
    )*};
}
typed_from!(
    bool => Bool, i8 => Int8, i16 => Int16, i32 => Int32, i64 => Int64, u8 => UInt8,
    u16 => UInt16, u32 => UInt32, u64 => UInt64, f32 => Float32, f64 => Float64,
);

impl From<Strings> for TypedColumn {
    /// UTF-8 text.
    fn from(s: Strings) -> Self {
        TypedColumn::new(TypedData::String(s))
    }
}

impl From<Strings> for ColumnData {
    /// UTF-8 text.
    fn from(s: Strings) -> Self {
        ColumnData::Typed(s.into())
    }
}

fn take_vec<T: Copy>(v: &[T], rows: &[usize]) -> Vec<T> {
    rows.iter().map(|r| v[*r]).collect()
}

/// The offsets of rows `rows` of a list-like column (from 0) and the indices of their items.
fn take_offsets(offsets: &[u64], rows: &[usize]) -> (Vec<u64>, Vec<usize>) {
    let mut out = Vec::with_capacity(rows.len() + 1);
    let mut items = Vec::new();
    out.push(0);
    for &r in rows {
        items.extend(offsets[r] as usize..offsets[r + 1] as usize);
        out.push(items.len() as u64);
    }
    (out, items)
}

/// The offsets of rows `range` of a list-like column (from 0) and the range of their items.
fn slice_offsets(
    offsets: &[u64],
    range: std::ops::Range<usize>,
) -> (Vec<u64>, std::ops::Range<usize>) {
    let lo = offsets[range.start];
    let hi = offsets[range.end];
    (
        offsets[range.start..=range.end]
            .iter()
            .map(|o| o - lo)
            .collect(),
        lo as usize..hi as usize,
    )
}

const NANOS_PER: [i128; 10] = [
    1_000_000_000,
    100_000_000,
    10_000_000,
    1_000_000,
    100_000,
    10_000,
    1_000,
    100,
    10,
    1,
];

impl TypedColumn {
    /// A column without NULLs.
    pub fn new(data: TypedData) -> Self {
        Self { data, nulls: None }
    }

    /// Sets the null map (see [`TypedColumn::nulls`]); a map without a 1 is dropped.
    pub fn with_nulls(mut self, nulls: Vec<u8>) -> Self {
        self.nulls = nulls.iter().any(|&b| b != 0).then_some(nulls);
        self
    }

    /// The number of rows.
    pub fn len(&self) -> usize {
        match &self.data {
            TypedData::Bool(v) => v.len(),
            TypedData::Int8(v) => v.len(),
            TypedData::Int16(v) => v.len(),
            TypedData::Int32(v) => v.len(),
            TypedData::Int64(v) => v.len(),
            TypedData::UInt8(v) => v.len(),
            TypedData::UInt16(v) => v.len(),
            TypedData::UInt32(v) => v.len(),
            TypedData::UInt64(v) => v.len(),
            TypedData::Float32(v) => v.len(),
            TypedData::Float64(v) => v.len(),
            TypedData::String(s) | TypedData::Binary(s) => s.len(),
            TypedData::Timestamp { ticks, .. } => ticks.len(),
            TypedData::Date32(v) => v.len(),
            TypedData::List { offsets, .. } | TypedData::Map { offsets, .. } => {
                offsets.len().saturating_sub(1)
            }
        }
    }

    /// Whether the column has no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether row `row` is NULL.
    #[inline]
    pub fn is_null(&self, row: usize) -> bool {
        self.nulls
            .as_ref()
            .is_some_and(|n| n.get(row).is_some_and(|&b| b != 0))
    }

    /// The number of NULL rows.
    pub fn null_count(&self) -> usize {
        self.nulls
            .as_ref()
            .map_or(0, |n| n.iter().filter(|&&b| b != 0).count())
    }

    /// The value row `row` stands for; panics past the end.
    pub fn value(&self, row: usize) -> Value {
        if self.is_null(row) {
            return Value::Null;
        }
        match &self.data {
            TypedData::Bool(v) => Value::Bool(v[row]),
            TypedData::Int8(v) => Value::Int(v[row].into()),
            TypedData::Int16(v) => Value::Int(v[row].into()),
            TypedData::Int32(v) => Value::Int(v[row].into()),
            TypedData::Int64(v) => Value::Int(v[row]),
            TypedData::UInt8(v) => Value::UInt(v[row].into()),
            TypedData::UInt16(v) => Value::UInt(v[row].into()),
            TypedData::UInt32(v) => Value::UInt(v[row].into()),
            TypedData::UInt64(v) => Value::UInt(v[row]),
            TypedData::Float32(v) => Value::Float(v[row].into()),
            TypedData::Float64(v) => Value::Float(v[row]),
            TypedData::String(s) => Value::String(String::from_utf8_lossy(s.get(row)).into_owned()),
            TypedData::Binary(s) => Value::Bytes(s.get(row).to_vec()),
            TypedData::Timestamp {
                ticks,
                precision,
                zoned,
            } => {
                let nanos = ticks[row] as i128 * NANOS_PER[(*precision).min(9) as usize];
                match jiff::Timestamp::from_nanosecond(nanos) {
                    Ok(ts) if *zoned => Value::String(ts.to_string()),
                    Ok(ts) => Value::String(jiff::tz::TimeZone::UTC.to_datetime(ts).to_string()),
                    // Out of range for any date/time column: text that says so.
                    Err(_) => Value::String(format!(
                        "{} ticks of 1e-{precision} s (out of range)",
                        ticks[row]
                    )),
                }
            }
            TypedData::Date32(v) => {
                let d = jiff::Span::new()
                    .try_days(v[row])
                    .and_then(|span| jiff::civil::date(1970, 1, 1).checked_add(span));
                match d {
                    Ok(d) => Value::String(d.to_string()),
                    Err(_) => Value::String(format!("{} days (out of range)", v[row])),
                }
            }
            TypedData::List { offsets, values } => Value::Array(
                (offsets[row] as usize..offsets[row + 1] as usize)
                    .map(|i| values.value(i))
                    .collect(),
            ),
            TypedData::Map {
                offsets,
                keys,
                values,
                objects: false,
            } => Value::Map(
                (offsets[row] as usize..offsets[row + 1] as usize)
                    .map(|i| (keys.value(i), values.value(i)))
                    .collect(),
            ),
            TypedData::Map {
                offsets,
                keys,
                values,
                objects: true,
            } => Value::Object(
                (offsets[row] as usize..offsets[row + 1] as usize)
                    .map(|i| match keys.value(i) {
                        Value::String(k) => (k, values.value(i)),
                        other => (other.to_json_string(), values.value(i)),
                    })
                    .collect(),
            ),
        }
    }

    /// The rows `rows` (indices, in that order) as a new column.
    pub fn take(&self, rows: &[usize]) -> TypedColumn {
        let data = match &self.data {
            TypedData::Bool(v) => TypedData::Bool(take_vec(v, rows)),
            TypedData::Int8(v) => TypedData::Int8(take_vec(v, rows)),
            TypedData::Int16(v) => TypedData::Int16(take_vec(v, rows)),
            TypedData::Int32(v) => TypedData::Int32(take_vec(v, rows)),
            TypedData::Int64(v) => TypedData::Int64(take_vec(v, rows)),
            TypedData::UInt8(v) => TypedData::UInt8(take_vec(v, rows)),
            TypedData::UInt16(v) => TypedData::UInt16(take_vec(v, rows)),
            TypedData::UInt32(v) => TypedData::UInt32(take_vec(v, rows)),
            TypedData::UInt64(v) => TypedData::UInt64(take_vec(v, rows)),
            TypedData::Float32(v) => TypedData::Float32(take_vec(v, rows)),
            TypedData::Float64(v) => TypedData::Float64(take_vec(v, rows)),
            TypedData::String(s) => TypedData::String(s.take(rows)),
            TypedData::Binary(s) => TypedData::Binary(s.take(rows)),
            TypedData::Timestamp {
                ticks,
                precision,
                zoned,
            } => TypedData::Timestamp {
                ticks: take_vec(ticks, rows),
                precision: *precision,
                zoned: *zoned,
            },
            TypedData::Date32(v) => TypedData::Date32(take_vec(v, rows)),
            TypedData::List { offsets, values } => {
                let (offsets, items) = take_offsets(offsets, rows);
                TypedData::List {
                    offsets,
                    values: Box::new(values.take(&items)),
                }
            }
            TypedData::Map {
                offsets,
                keys,
                values,
                objects,
            } => {
                let (offsets, items) = take_offsets(offsets, rows);
                TypedData::Map {
                    offsets,
                    keys: Box::new(keys.take(&items)),
                    values: Box::new(values.take(&items)),
                    objects: *objects,
                }
            }
        };
        TypedColumn {
            data,
            nulls: self.nulls.as_ref().map(|n| take_vec(n, rows)),
        }
        .normalized()
    }

    /// The rows `range` as a new column.
    pub fn slice(&self, range: std::ops::Range<usize>) -> TypedColumn {
        let r = range.clone();
        let data = match &self.data {
            TypedData::Bool(v) => TypedData::Bool(v[r].to_vec()),
            TypedData::Int8(v) => TypedData::Int8(v[r].to_vec()),
            TypedData::Int16(v) => TypedData::Int16(v[r].to_vec()),
            TypedData::Int32(v) => TypedData::Int32(v[r].to_vec()),
            TypedData::Int64(v) => TypedData::Int64(v[r].to_vec()),
            TypedData::UInt8(v) => TypedData::UInt8(v[r].to_vec()),
            TypedData::UInt16(v) => TypedData::UInt16(v[r].to_vec()),
            TypedData::UInt32(v) => TypedData::UInt32(v[r].to_vec()),
            TypedData::UInt64(v) => TypedData::UInt64(v[r].to_vec()),
            TypedData::Float32(v) => TypedData::Float32(v[r].to_vec()),
            TypedData::Float64(v) => TypedData::Float64(v[r].to_vec()),
            TypedData::String(s) => TypedData::String(s.slice(r)),
            TypedData::Binary(s) => TypedData::Binary(s.slice(r)),
            TypedData::Timestamp {
                ticks,
                precision,
                zoned,
            } => TypedData::Timestamp {
                ticks: ticks[r].to_vec(),
                precision: *precision,
                zoned: *zoned,
            },
            TypedData::Date32(v) => TypedData::Date32(v[r].to_vec()),
            TypedData::List { offsets, values } => {
                let (offsets, items) = slice_offsets(offsets, r);
                TypedData::List {
                    offsets,
                    values: Box::new(values.slice(items)),
                }
            }
            TypedData::Map {
                offsets,
                keys,
                values,
                objects,
            } => {
                let (offsets, items) = slice_offsets(offsets, r);
                TypedData::Map {
                    offsets,
                    keys: Box::new(keys.slice(items.clone())),
                    values: Box::new(values.slice(items)),
                    objects: *objects,
                }
            }
        };
        TypedColumn {
            data,
            nulls: self.nulls.as_ref().map(|n| n[range].to_vec()),
        }
        .normalized()
    }

    fn normalized(mut self) -> Self {
        if self
            .nulls
            .as_ref()
            .is_some_and(|n| n.iter().all(|&b| b == 0))
        {
            self.nulls = None;
        }
        self
    }
}

impl TypedColumn {
    /// The values as a typed column, when a typed column gives every one of them back
    /// ([`TypedColumn::value`] of each row is the value): every value that is not NULL is
    /// of one kind, `Bool`, `Int`, `UInt`, `Float`, `String` or `Bytes`, or an `Array`,
    /// `Map` or `Object` whose items are such values themselves. `None` otherwise (kinds
    /// mixed, 128-bit integers, tuples).
    ///
    /// A typed column holds its rows in a fraction of the memory of their values (a
    /// [`Value`] takes 32 bytes and each string an allocation of its own) and encodes into
    /// the same bytes with tight loops.
    pub fn from_values(values: &[Value]) -> Option<TypedColumn> {
        typed_of(values)
    }

    /// `len` rows, every one NULL, as [`TypedColumn::from_values`] makes a column of NULLs
    /// only (and the empty items of lists or maps that are all empty): `Bool` data (one byte
    /// a row) with every row NULL in its null map (no null map when `len` is 0).
    ///
    /// The one kind of an all-NULL column: a frontend that builds typed columns from objects
    /// of its own (Python's accumulator, which reads Python objects without making values)
    /// makes its all-NULL columns and items with this, so that they are the columns the core
    /// makes of the same values.
    pub fn all_null(len: usize) -> TypedColumn {
        TypedColumn {
            data: TypedData::Bool(vec![false; len]),
            nulls: (len > 0).then(|| vec![1; len]),
        }
    }
}

/// [`TypedColumn::from_values`] of values or of references to them (the items of lists and
/// maps). NULLs only: [`TypedColumn::all_null`].
fn typed_of<V: std::borrow::Borrow<Value>>(values: &[V]) -> Option<TypedColumn> {
    let all = || values.iter().map(std::borrow::Borrow::borrow);
    let nulls = all()
        .any(Value::is_null)
        .then(|| all().map(|v| v.is_null() as u8).collect::<Vec<u8>>());
    let first = all().find(|v| !v.is_null()).unwrap_or(&Value::Null);
    let data = match first {
        Value::Null => return Some(TypedColumn::all_null(values.len())),
        Value::Bool(_) => TypedData::Bool(prims(values, |v| match v {
            Value::Bool(b) => Some(*b),
            _ => None,
        })?),
        Value::Int(_) => TypedData::Int64(prims(values, |v| match v {
            Value::Int(x) => Some(*x),
            _ => None,
        })?),
        Value::UInt(_) => TypedData::UInt64(prims(values, |v| match v {
            Value::UInt(x) => Some(*x),
            _ => None,
        })?),
        Value::Float(_) => TypedData::Float64(prims(values, |v| match v {
            Value::Float(x) => Some(*x),
            _ => None,
        })?),
        Value::String(_) => TypedData::String(strings(values, |v| match v {
            Value::String(s) => Some(s.as_bytes()),
            _ => None,
        })?),
        Value::Bytes(_) => TypedData::Binary(strings(values, |v| match v {
            Value::Bytes(b) => Some(b.as_slice()),
            _ => None,
        })?),
        Value::Array(_) => {
            let mut items: Vec<&Value> = Vec::new();
            let offsets = nested(values, |v| match v {
                Value::Array(a) => {
                    items.extend(a);
                    true
                }
                _ => false,
            })?;
            TypedData::List {
                offsets,
                values: Box::new(typed_of(&items)?),
            }
        }
        Value::Map(_) => {
            let (mut keys, mut vals): (Vec<&Value>, Vec<&Value>) = (Vec::new(), Vec::new());
            let offsets = nested(values, |v| match v {
                Value::Map(m) => {
                    for (k, v) in m {
                        keys.push(k);
                        vals.push(v);
                    }
                    true
                }
                _ => false,
            })?;
            TypedData::Map {
                offsets,
                keys: Box::new(typed_of(&keys)?),
                values: Box::new(typed_of(&vals)?),
                objects: false,
            }
        }
        Value::Object(_) => {
            let (mut keys, mut vals) = (Strings::new(), Vec::<&Value>::new());
            let offsets = nested(values, |v| match v {
                Value::Object(fields) => {
                    for (k, v) in fields {
                        keys.push(k.as_bytes());
                        vals.push(v);
                    }
                    true
                }
                _ => false,
            })?;
            keys.offsets.shrink_to_fit();
            keys.data.shrink_to_fit();
            TypedData::Map {
                offsets,
                keys: Box::new(TypedColumn::new(TypedData::String(keys))),
                values: Box::new(typed_of(&vals)?),
                objects: true,
            }
        }
        Value::Int128(_) | Value::UInt128(_) | Value::Tuple(_) => return None,
    };
    Some(TypedColumn { data, nulls })
}

/// One primitive per value (the default for NULL); `None` at a value `get` refuses.
fn prims<V: std::borrow::Borrow<Value>, T: Default>(
    values: &[V],
    get: impl Fn(&Value) -> Option<T>,
) -> Option<Vec<T>> {
    let mut out = Vec::with_capacity(values.len());
    for v in values {
        let v = v.borrow();
        out.push(if v.is_null() { T::default() } else { get(v)? });
    }
    Some(out)
}

/// The bytes of each value (none for NULL), sized exactly; `None` at a value `get` refuses.
fn strings<'a, V: std::borrow::Borrow<Value>>(
    values: &'a [V],
    get: impl Fn(&'a Value) -> Option<&'a [u8]>,
) -> Option<Strings> {
    let bytes = values
        .iter()
        .map(|v| get(v.borrow()).map_or(0, <[u8]>::len))
        .sum();
    let mut out = Strings::with_capacity(values.len(), bytes);
    for v in values {
        let v = v.borrow();
        out.push(if v.is_null() { &[] } else { get(v)? });
    }
    Some(out)
}

/// The offsets of list-like values, `push` taking each one's items (nothing for NULL);
/// `None` at a value `push` refuses.
fn nested<'a, V: std::borrow::Borrow<Value>>(
    values: &'a [V],
    mut push: impl FnMut(&'a Value) -> bool,
) -> Option<Vec<u64>> {
    let mut offsets = Vec::with_capacity(values.len() + 1);
    offsets.push(0);
    let mut n = 0u64;
    for v in values {
        let v = v.borrow();
        if !v.is_null() {
            if !push(v) {
                return None;
            }
            n += item_count(v);
        }
        offsets.push(n);
    }
    Some(offsets)
}

fn item_count(v: &Value) -> u64 {
    match v {
        Value::Array(a) => a.len() as u64,
        Value::Map(m) => m.len() as u64,
        Value::Object(f) => f.len() as u64,
        _ => 0,
    }
}

/// Columnar input: named columns of equal length. A column may be left out entirely (every
/// row then gets the server's default for it), and [`Value::Null`] in a non-`Nullable`
/// column means "omitted" for that row.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ColumnBatch {
    /// `(column name, values)` pairs.
    pub columns: Vec<(String, ColumnData)>,
}

impl ColumnBatch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every column [compacted](ColumnData::compact).
    pub fn compact(mut self) -> Self {
        for (_, data) in &mut self.columns {
            *data = std::mem::replace(data, ColumnData::Values(Vec::new())).compact();
        }
        self
    }

    /// Appends a column of dynamic values.
    pub fn push_column(&mut self, name: impl Into<String>, values: Vec<Value>) {
        self.columns.push((name.into(), ColumnData::Values(values)));
    }

    /// Appends a column of any kind (dynamic values or a [`TypedColumn`]).
    pub fn push_data(&mut self, name: impl Into<String>, data: impl Into<ColumnData>) {
        self.columns.push((name.into(), data.into()));
    }

    /// Builder-style [`ColumnBatch::push_data`].
    pub fn with_data(mut self, name: impl Into<String>, data: impl Into<ColumnData>) -> Self {
        self.push_data(name, data);
        self
    }

    /// Builder-style [`ColumnBatch::push_column`].
    pub fn with_column(mut self, name: impl Into<String>, values: Vec<Value>) -> Self {
        self.push_column(name, values);
        self
    }

    /// The number of rows: the length of the first column (0 without columns).
    pub fn rows(&self) -> usize {
        self.columns.first().map_or(0, |(_, c)| c.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_keeps_order_duplicates_and_integers() {
        let row = DynRow::from_json_str(
            r#"{"z":1,"a":18446744073709551615,"m":{"k":1,"k":2},"n":-9223372036854775808}"#,
        )
        .unwrap();
        assert_eq!(row.fields[0].0, "z");
        assert_eq!(row.get("a"), Some(&Value::UInt(u64::MAX)));
        assert_eq!(row.get("n"), Some(&Value::Int(i64::MIN)));
        assert_eq!(
            row.get("m"),
            Some(&Value::Object(vec![
                ("k".into(), Value::UInt(1)),
                ("k".into(), Value::UInt(2))
            ]))
        );
        assert!(DynRow::from_json_str("[1]").is_err());
    }

    #[test]
    fn from_serde_json_value() {
        let v: serde_json::Value = serde_json::json!({"a": 1.5, "b": [true, null], "c": -3});
        let row = DynRow::try_from(v).unwrap();
        assert_eq!(row.get("a"), Some(&Value::Float(1.5)));
        assert_eq!(
            row.get("b"),
            Some(&Value::Array(vec![Value::Bool(true), Value::Null]))
        );
        assert_eq!(row.get("c"), Some(&Value::Int(-3)));
    }

    /// NULLs only, and the items of lists that are all empty or hold only NULLs: the one
    /// all-NULL column ([`TypedColumn::all_null`]), which frontends building typed columns of
    /// their own use for the same input.
    #[test]
    fn all_null_is_what_nulls_compact_to() {
        for n in [0, 1, 5] {
            let col = TypedColumn::all_null(n);
            assert_eq!(
                TypedColumn::from_values(&vec![Value::Null; n]),
                Some(col.clone())
            );
            assert_eq!(col.len(), n);
            assert!((0..n).all(|r| col.value(r) == Value::Null));
            assert_eq!(col.null_count(), n);
        }
        let lists = [
            Value::Array(vec![]),
            Value::Array(vec![Value::Null, Value::Null]),
            Value::Null,
            Value::Array(vec![Value::Null]),
        ];
        let Some(TypedColumn {
            data: TypedData::List { values, .. },
            ..
        }) = TypedColumn::from_values(&lists)
        else {
            panic!("lists of NULLs are a typed list");
        };
        assert_eq!(*values, TypedColumn::all_null(3));
        let empty = TypedColumn::from_values(&[Value::Array(vec![]), Value::Array(vec![])]);
        let Some(TypedColumn {
            data: TypedData::List { values, .. },
            ..
        }) = empty
        else {
            panic!("empty lists are a typed list");
        };
        assert_eq!(*values, TypedColumn::all_null(0));
    }

    #[test]
    fn json_text_and_truncation() {
        let v = Value::Object(vec![(
            "a\"b".into(),
            Value::Array(vec![Value::Float(f64::NAN), Value::String("x\ny".into())]),
        )]);
        assert_eq!(v.to_json_string(), r#"{"a\"b":[null,"x\ny"]}"#);
        assert_eq!(
            Value::String("é".repeat(10)).to_truncated_string(4),
            "\"é..."
        );
    }
}
