//! Table schemas (as the catalog reads them, or built by hand) and a parser of ClickHouse
//! type names into [`ColumnType`]. Data only: [`crate::Catalog`] reads them from the server.

use std::fmt::{self, Write as _};

use crate::FastMap;
use crate::types::insert_id::InsertIdColumn;

/// A ClickHouse column type, parsed from its name (see [`ColumnType::parse`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ColumnType {
    /// `Int8`.
    Int8,
    /// `Int16`.
    Int16,
    /// `Int32`.
    Int32,
    /// `Int64`.
    Int64,
    /// `Int128`.
    Int128,
    /// `Int256`.
    Int256,
    /// `UInt8`.
    UInt8,
    /// `UInt16`.
    UInt16,
    /// `UInt32`.
    UInt32,
    /// `UInt64`.
    UInt64,
    /// `UInt128`.
    UInt128,
    /// `UInt256`.
    UInt256,
    /// `Float32`.
    Float32,
    /// `Float64`.
    Float64,
    /// `BFloat16`.
    BFloat16,
    /// `Decimal(P, S)`; also `Decimal32/64/128/256(S)`, which are `Decimal(9/18/38/76, S)`.
    Decimal {
        /// Total number of digits, 1..=76.
        precision: u8,
        /// Digits after the point, 0..=precision.
        scale: u8,
    },
    /// `Bool`.
    Bool,
    /// `String`.
    String,
    /// `FixedString(N)`.
    FixedString(usize),
    /// `UUID`.
    Uuid,
    /// `IPv4`.
    IPv4,
    /// `IPv6`.
    IPv6,
    /// `Date`.
    Date,
    /// `Date32`.
    Date32,
    /// `DateTime` or `DateTime('tz')`.
    DateTime(Option<String>),
    /// `DateTime64(precision)` or `DateTime64(precision, 'tz')`.
    DateTime64(u8, Option<String>),
    /// `Enum8('name' = value, ...)`.
    Enum8(Vec<(String, i8)>),
    /// `Enum16('name' = value, ...)`.
    Enum16(Vec<(String, i16)>),
    /// `LowCardinality(T)`.
    LowCardinality(Box<ColumnType>),
    /// `Nullable(T)`.
    Nullable(Box<ColumnType>),
    /// `Array(T)`.
    Array(Box<ColumnType>),
    /// `Map(K, V)`.
    Map(Box<ColumnType>, Box<ColumnType>),
    /// `Tuple(T, ...)` (names are `None`) or `Tuple(a T, ...)` (all names are `Some`).
    Tuple(Vec<(Option<String>, ColumnType)>),
    /// `JSON(...)` or the legacy `Object('json')`; written as JSON text (a `String` column
    /// that the server converts). The string holds the type's full original name.
    Json(String),
    /// A type this crate cannot encode (e.g. `Variant`, `Dynamic`, `AggregateFunction`),
    /// with its original name. Rows may omit such columns; setting one is an error.
    Unsupported(String),
}

/// Why a type name could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TypeParseError {
    /// The type (or a type nested in it) is not supported.
    #[error("unsupported ClickHouse type `{ty}` in `{full}`")]
    Unsupported {
        /// The unsupported (inner) type.
        ty: String,
        /// The full type name that was parsed.
        full: String,
    },
    /// The name is malformed.
    #[error("cannot parse ClickHouse type `{full}` at byte {pos}: {reason}")]
    Syntax {
        /// The full type name.
        full: String,
        /// Byte offset of the problem.
        pos: usize,
        /// What was wrong.
        reason: String,
    },
}

impl ColumnType {
    /// For an integer type, its width in bytes and whether it is signed.
    pub fn int_width(&self) -> Option<(u8, bool)> {
        use ColumnType as T;
        Some(match self {
            T::Int8 => (1, true),
            T::Int16 => (2, true),
            T::Int32 => (4, true),
            T::Int64 => (8, true),
            T::Int128 => (16, true),
            T::Int256 => (32, true),
            T::UInt8 => (1, false),
            T::UInt16 => (2, false),
            T::UInt32 => (4, false),
            T::UInt64 => (8, false),
            T::UInt128 => (16, false),
            T::UInt256 => (32, false),
            _ => return None,
        })
    }

    /// Parses a ClickHouse type name as the server spells it (the `type` the catalog reads).
    pub fn parse(s: &str) -> Result<ColumnType, TypeParseError> {
        let mut p = TypeParser { s, pos: 0 };
        let ty = p.parse_type()?;
        p.skip_ws();
        if p.pos != s.len() {
            return Err(p.syntax("trailing characters"));
        }
        Ok(ty)
    }

    /// Whether values may be `NULL` at this level (`Nullable(T)` or
    /// `LowCardinality(Nullable(T))`).
    pub fn is_nullable(&self) -> bool {
        match self {
            ColumnType::Nullable(_) => true,
            ColumnType::LowCardinality(inner) => inner.is_nullable(),
            _ => false,
        }
    }

    /// Whether this type or a type nested in it is [`ColumnType::Unsupported`].
    pub fn has_unsupported(&self) -> bool {
        match self {
            ColumnType::Unsupported(_) => true,
            ColumnType::LowCardinality(t) | ColumnType::Nullable(t) | ColumnType::Array(t) => {
                t.has_unsupported()
            }
            ColumnType::Map(k, v) => k.has_unsupported() || v.has_unsupported(),
            ColumnType::Tuple(items) => items.iter().any(|(_, t)| t.has_unsupported()),
            _ => false,
        }
    }

    /// The type name to put in a Native block for this column: the type itself, except that
    /// `JSON` is sent as `String` (the server parses the text).
    pub fn wire_name(&self) -> String {
        let mut out = String::new();
        self.write_name(&mut out, true);
        out
    }

    fn write_name(&self, out: &mut String, wire: bool) {
        let simple = match self {
            ColumnType::Int8 => "Int8",
            ColumnType::Int16 => "Int16",
            ColumnType::Int32 => "Int32",
            ColumnType::Int64 => "Int64",
            ColumnType::Int128 => "Int128",
            ColumnType::Int256 => "Int256",
            ColumnType::UInt8 => "UInt8",
            ColumnType::UInt16 => "UInt16",
            ColumnType::UInt32 => "UInt32",
            ColumnType::UInt64 => "UInt64",
            ColumnType::UInt128 => "UInt128",
            ColumnType::UInt256 => "UInt256",
            ColumnType::Float32 => "Float32",
            ColumnType::Float64 => "Float64",
            ColumnType::BFloat16 => "BFloat16",
            ColumnType::Bool => "Bool",
            ColumnType::String => "String",
            ColumnType::Uuid => "UUID",
            ColumnType::IPv4 => "IPv4",
            ColumnType::IPv6 => "IPv6",
            ColumnType::Date => "Date",
            ColumnType::Date32 => "Date32",
            ColumnType::Json(name) => {
                if wire {
                    "String"
                } else {
                    name
                }
            }
            ColumnType::Unsupported(name) => name,
            _ => "",
        };
        if !simple.is_empty() {
            out.push_str(simple);
            return;
        }
        match self {
            ColumnType::Decimal { precision, scale } => {
                let _ = write!(out, "Decimal({precision}, {scale})");
            }
            ColumnType::FixedString(n) => {
                let _ = write!(out, "FixedString({n})");
            }
            ColumnType::DateTime(tz) => {
                out.push_str("DateTime");
                if let Some(tz) = tz {
                    out.push('(');
                    write_quoted(tz, out);
                    out.push(')');
                }
            }
            ColumnType::DateTime64(p, tz) => {
                let _ = write!(out, "DateTime64({p}");
                if let Some(tz) = tz {
                    out.push_str(", ");
                    write_quoted(tz, out);
                }
                out.push(')');
            }
            ColumnType::Enum8(items) => write_enum("Enum8", items, out),
            ColumnType::Enum16(items) => write_enum("Enum16", items, out),
            ColumnType::LowCardinality(t) => wrap("LowCardinality", t, out, wire),
            ColumnType::Nullable(t) => wrap("Nullable", t, out, wire),
            ColumnType::Array(t) => wrap("Array", t, out, wire),
            ColumnType::Map(k, v) => {
                out.push_str("Map(");
                k.write_name(out, wire);
                out.push_str(", ");
                v.write_name(out, wire);
                out.push(')');
            }
            ColumnType::Tuple(items) => {
                out.push_str("Tuple(");
                for (i, (name, t)) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    if let Some(name) = name {
                        write_ident(name, out);
                        out.push(' ');
                    }
                    t.write_name(out, wire);
                }
                out.push(')');
            }
            _ => unreachable!("simple types are handled above"),
        }
    }
}

fn wrap(name: &str, inner: &ColumnType, out: &mut String, wire: bool) {
    out.push_str(name);
    out.push('(');
    inner.write_name(out, wire);
    out.push(')');
}

fn write_enum<T: fmt::Display>(name: &str, items: &[(String, T)], out: &mut String) {
    out.push_str(name);
    out.push('(');
    for (i, (n, v)) in items.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        write_quoted(n, out);
        let _ = write!(out, " = {v}");
    }
    out.push(')');
}

fn write_quoted(s: &str, out: &mut String) {
    out.push('\'');
    for c in s.chars() {
        if c == '\'' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('\'');
}

fn write_ident(s: &str, out: &mut String) {
    let plain = s
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if plain {
        out.push_str(s);
    } else {
        quote_ident(s, out);
    }
}

impl fmt::Display for ColumnType {
    /// The ClickHouse name of the type (round-trips through [`ColumnType::parse`]).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::new();
        self.write_name(&mut out, false);
        f.write_str(&out)
    }
}

struct TypeParser<'a> {
    s: &'a str,
    pos: usize,
}

impl TypeParser<'_> {
    fn syntax(&self, reason: impl Into<String>) -> TypeParseError {
        TypeParseError::Syntax {
            full: self.s.to_owned(),
            pos: self.pos,
            reason: reason.into(),
        }
    }

    fn unsupported(&self, ty: &str) -> TypeParseError {
        TypeParseError::Unsupported {
            ty: ty.to_owned(),
            full: self.s.to_owned(),
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_whitespace()) {
            self.pos += 1;
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        self.skip_ws();
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, c: u8) -> Result<(), TypeParseError> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(self.syntax(format!("expected `{}`", c as char)))
        }
    }

    fn ident(&mut self) -> Result<String, TypeParseError> {
        self.skip_ws();
        if self.peek() == Some(b'`') || self.peek() == Some(b'"') {
            let q = self.peek().unwrap_or(b'`');
            return self.quoted(q);
        }
        let start = self.pos;
        while self
            .peek()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            self.pos += 1;
        }
        if start == self.pos {
            return Err(self.syntax("expected a name"));
        }
        Ok(self.s[start..self.pos].to_owned())
    }

    /// A quoted string with backslash escapes; the opening quote is at `pos`.
    fn quoted(&mut self, q: u8) -> Result<String, TypeParseError> {
        self.skip_ws();
        if self.peek() != Some(q) {
            return Err(self.syntax(format!("expected `{}`", q as char)));
        }
        self.pos += 1;
        let mut out = Vec::new();
        loop {
            match self.peek() {
                None => return Err(self.syntax("unterminated quoted string")),
                Some(b'\\') => {
                    self.pos += 1;
                    let c = self.peek().ok_or_else(|| self.syntax("dangling escape"))?;
                    out.push(match c {
                        b'n' => b'\n',
                        b't' => b'\t',
                        b'r' => b'\r',
                        b'0' => 0,
                        other => other,
                    });
                    self.pos += 1;
                }
                Some(c) if c == q => {
                    self.pos += 1;
                    // SQL style doubled quote.
                    if self.peek() == Some(q) {
                        out.push(q);
                        self.pos += 1;
                    } else {
                        break;
                    }
                }
                Some(c) => {
                    out.push(c);
                    self.pos += 1;
                }
            }
        }
        String::from_utf8(out).map_err(|_| self.syntax("quoted string is not UTF-8"))
    }

    fn int(&mut self) -> Result<i64, TypeParseError> {
        self.skip_ws();
        let start = self.pos;
        if matches!(self.peek(), Some(b'-' | b'+')) {
            self.pos += 1;
        }
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.pos += 1;
        }
        self.s[start..self.pos]
            .parse()
            .map_err(|_| self.syntax("expected an integer"))
    }

    fn small(&mut self, what: &str, max: i64) -> Result<i64, TypeParseError> {
        let at = self.pos;
        let v = self.int()?;
        if !(0..=max).contains(&v) {
            self.pos = at;
            return Err(self.syntax(format!("{what} {v} is out of range 0..={max}")));
        }
        Ok(v)
    }

    /// Skips balanced parentheses (the opening one is next).
    fn skip_args(&mut self) -> Result<(), TypeParseError> {
        self.expect(b'(')?;
        let mut depth = 1;
        while depth > 0 {
            match self.peek() {
                None => return Err(self.syntax("unbalanced parentheses")),
                Some(q @ (b'\'' | b'`' | b'"')) => {
                    self.quoted(q)?;
                    continue;
                }
                Some(b'(') => depth += 1,
                Some(b')') => depth -= 1,
                _ => {}
            }
            self.pos += 1;
        }
        Ok(())
    }

    fn parse_type(&mut self) -> Result<ColumnType, TypeParseError> {
        let start = self.pos;
        let name = self.ident()?;
        let simple = match name.as_str() {
            "Int8" => Some(ColumnType::Int8),
            "Int16" => Some(ColumnType::Int16),
            "Int32" => Some(ColumnType::Int32),
            "Int64" => Some(ColumnType::Int64),
            "Int128" => Some(ColumnType::Int128),
            "Int256" => Some(ColumnType::Int256),
            "UInt8" => Some(ColumnType::UInt8),
            "UInt16" => Some(ColumnType::UInt16),
            "UInt32" => Some(ColumnType::UInt32),
            "UInt64" => Some(ColumnType::UInt64),
            "UInt128" => Some(ColumnType::UInt128),
            "UInt256" => Some(ColumnType::UInt256),
            "Float32" => Some(ColumnType::Float32),
            "Float64" => Some(ColumnType::Float64),
            "BFloat16" => Some(ColumnType::BFloat16),
            "Bool" => Some(ColumnType::Bool),
            "String" => Some(ColumnType::String),
            "UUID" => Some(ColumnType::Uuid),
            "IPv4" => Some(ColumnType::IPv4),
            "IPv6" => Some(ColumnType::IPv6),
            "Date" => Some(ColumnType::Date),
            "Date32" => Some(ColumnType::Date32),
            _ => None,
        };
        self.skip_ws();
        let has_args = self.peek() == Some(b'(');
        if let Some(t) = simple {
            if has_args {
                return Err(self.syntax(format!("`{name}` takes no arguments")));
            }
            return Ok(t);
        }
        let ty = match name.as_str() {
            "DateTime" => {
                let tz = if has_args {
                    self.expect(b'(')?;
                    let tz = self.quoted(b'\'')?;
                    self.expect(b')')?;
                    Some(tz)
                } else {
                    None
                };
                ColumnType::DateTime(tz)
            }
            "DateTime64" => {
                self.expect(b'(')?;
                let p = self.small("DateTime64 precision", 9)? as u8;
                let tz = if self.eat(b',') {
                    Some(self.quoted(b'\'')?)
                } else {
                    None
                };
                self.expect(b')')?;
                ColumnType::DateTime64(p, tz)
            }
            "Decimal" => {
                self.expect(b'(')?;
                let p = self.small("Decimal precision", 76)?;
                let s = if self.eat(b',') {
                    self.small("Decimal scale", p)?
                } else {
                    0
                };
                self.expect(b')')?;
                if p == 0 {
                    return Err(self.syntax("Decimal precision must be at least 1"));
                }
                ColumnType::Decimal {
                    precision: p as u8,
                    scale: s as u8,
                }
            }
            "Decimal32" | "Decimal64" | "Decimal128" | "Decimal256" => {
                let p = match name.as_str() {
                    "Decimal32" => 9,
                    "Decimal64" => 18,
                    "Decimal128" => 38,
                    _ => 76,
                };
                self.expect(b'(')?;
                let s = self.small("Decimal scale", p)?;
                self.expect(b')')?;
                ColumnType::Decimal {
                    precision: p as u8,
                    scale: s as u8,
                }
            }
            "FixedString" => {
                self.expect(b'(')?;
                let n = self.small("FixedString length", 1 << 30)?;
                self.expect(b')')?;
                if n == 0 {
                    return Err(self.syntax("FixedString length must be at least 1"));
                }
                ColumnType::FixedString(n as usize)
            }
            "Enum8" | "Enum16" | "Enum" => {
                self.expect(b'(')?;
                let mut items: Vec<(String, i64)> = Vec::new();
                let mut next = 1i64;
                loop {
                    let n = self.quoted(b'\'')?;
                    let v = if self.eat(b'=') { self.int()? } else { next };
                    next = v + 1;
                    if items.iter().any(|(x, y)| *x == n || *y == v) {
                        return Err(self.syntax(format!("duplicate enum element `{n}` = {v}")));
                    }
                    items.push((n, v));
                    if !self.eat(b',') {
                        break;
                    }
                }
                self.expect(b')')?;
                let fits8 = items.iter().all(|(_, v)| i8::try_from(*v).is_ok());
                if name == "Enum8" || (name == "Enum" && fits8) {
                    if !fits8 {
                        return Err(self.syntax("Enum8 value out of range"));
                    }
                    ColumnType::Enum8(items.into_iter().map(|(n, v)| (n, v as i8)).collect())
                } else {
                    if items.iter().any(|(_, v)| i16::try_from(*v).is_err()) {
                        return Err(self.syntax("Enum16 value out of range"));
                    }
                    ColumnType::Enum16(items.into_iter().map(|(n, v)| (n, v as i16)).collect())
                }
            }
            "LowCardinality" | "Nullable" | "Array" => {
                self.expect(b'(')?;
                let inner = Box::new(self.parse_type()?);
                self.expect(b')')?;
                match name.as_str() {
                    "LowCardinality" => ColumnType::LowCardinality(inner),
                    "Nullable" => ColumnType::Nullable(inner),
                    _ => ColumnType::Array(inner),
                }
            }
            "Map" => {
                self.expect(b'(')?;
                let k = self.parse_type()?;
                self.expect(b',')?;
                let v = self.parse_type()?;
                self.expect(b')')?;
                ColumnType::Map(Box::new(k), Box::new(v))
            }
            "Tuple" => {
                self.expect(b'(')?;
                let mut items = Vec::new();
                loop {
                    items.push(self.tuple_element()?);
                    if !self.eat(b',') {
                        break;
                    }
                }
                self.expect(b')')?;
                let named = items.iter().filter(|(n, _)| n.is_some()).count();
                if named != 0 && named != items.len() {
                    return Err(self.syntax("a Tuple must name all elements or none"));
                }
                ColumnType::Tuple(items)
            }
            "JSON" => {
                if has_args {
                    self.skip_args()?;
                }
                ColumnType::Json(self.s[start..self.pos].trim().to_owned())
            }
            "Object" => {
                self.expect(b'(')?;
                let kind = self.quoted(b'\'')?;
                self.expect(b')')?;
                if !kind.eq_ignore_ascii_case("json") {
                    return Err(self.unsupported(&self.s[start..self.pos]));
                }
                ColumnType::Json(self.s[start..self.pos].trim().to_owned())
            }
            _ => {
                if has_args {
                    self.skip_args()?;
                }
                return Err(self.unsupported(self.s[start..self.pos].trim()));
            }
        };
        Ok(ty)
    }

    fn tuple_element(&mut self) -> Result<(Option<String>, ColumnType), TypeParseError> {
        self.skip_ws();
        let save = self.pos;
        let quoted = matches!(self.peek(), Some(b'`' | b'"'));
        let name = self.ident()?;
        self.skip_ws();
        let followed_by_type = !matches!(self.peek(), Some(b',' | b')' | b'(') | None);
        if quoted || followed_by_type {
            let ty = self.parse_type()?;
            Ok((Some(name), ty))
        } else {
            self.pos = save;
            Ok((None, self.parse_type()?))
        }
    }
}

/// How a column's value is produced when an `INSERT` does not give it
/// (the `default_kind` the catalog reads).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultKind {
    /// No default expression: the type's default value.
    None,
    /// `DEFAULT expr`.
    Default,
    /// `MATERIALIZED expr`: always computed, never inserted.
    Materialized,
    /// `ALIAS expr`: not stored, never inserted.
    Alias,
    /// `EPHEMERAL [expr]`: insertable, not stored.
    Ephemeral,
}

impl DefaultKind {
    /// Parses a column's `default_kind` (`""`, `DEFAULT`, `MATERIALIZED`, ...).
    pub fn parse(s: &str) -> DefaultKind {
        match s {
            "DEFAULT" => DefaultKind::Default,
            "MATERIALIZED" => DefaultKind::Materialized,
            "ALIAS" => DefaultKind::Alias,
            "EPHEMERAL" => DefaultKind::Ephemeral,
            _ => DefaultKind::None,
        }
    }

    /// Whether an `INSERT` may give this column a value.
    pub fn insertable(self) -> bool {
        !matches!(self, DefaultKind::Materialized | DefaultKind::Alias)
    }
}

/// One column of a table.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnDef {
    /// The column name.
    pub name: String,
    /// The type name as the server gave it.
    pub type_name: String,
    /// The parsed type ([`ColumnType::Unsupported`] when it could not be parsed).
    pub ty: ColumnType,
    /// The default kind.
    pub default_kind: DefaultKind,
    /// The default expression (empty when none).
    pub default_expression: String,
    /// 1-based position in the table.
    pub position: u64,
}

impl ColumnDef {
    /// A column without a default. An unparsable type becomes [`ColumnType::Unsupported`].
    pub fn new(name: impl Into<String>, type_name: impl Into<String>) -> Self {
        let type_name = type_name.into();
        let ty = ColumnType::parse(&type_name)
            .unwrap_or_else(|_| ColumnType::Unsupported(type_name.clone()));
        Self {
            name: name.into(),
            type_name,
            ty,
            default_kind: DefaultKind::None,
            default_expression: String::new(),
            position: 0,
        }
    }

    /// Sets the default kind and expression.
    pub fn with_default(mut self, kind: DefaultKind, expression: impl Into<String>) -> Self {
        self.default_kind = kind;
        self.default_expression = expression.into();
        self
    }
}

/// Whether a table deduplicates inserts by their `insert_deduplication_token` (the batch id),
/// which is what makes a retry or a replay land once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Deduplication {
    /// A `Replicated*MergeTree`: deduplicated by default (`replicated_deduplication_window`).
    Replicated,
    /// A plain `*MergeTree` with `non_replicated_deduplication_window` = this many blocks.
    Window(u64),
    /// A plain `*MergeTree` without a window, or an engine that never deduplicates.
    Off,
    /// Not known (a schema built by hand, or an engine such as `Distributed` whose target
    /// decides).
    Unknown,
}

impl Deduplication {
    /// Reads the engine's name and full definition (`system.tables.engine`, `engine_full`);
    /// `window_default` is the server's `non_replicated_deduplication_window` default.
    /// A replicated table is taken to keep its default `replicated_deduplication_window`
    /// (see [`of_table`](Self::of_table)).
    pub fn of_engine(engine: &str, engine_full: &str, window_default: u64) -> Self {
        Self::of_table(engine, engine_full, window_default, 1)
    }

    /// Reads the engine's name and full definition (`system.tables.engine`, `engine_full`),
    /// with the server's defaults of `non_replicated_deduplication_window` and
    /// `replicated_deduplication_window` (`system.merge_tree_settings`) for a table whose
    /// `SETTINGS` do not set them. A replicated (or ClickHouse Cloud's `Shared`) table whose
    /// `replicated_deduplication_window` is 0 does not deduplicate.
    pub fn of_table(
        engine: &str,
        engine_full: &str,
        window_default: u64,
        replicated_window_default: u64,
    ) -> Self {
        // ClickHouse Cloud's SharedMergeTree deduplicates like a replicated table.
        if engine.starts_with("Replicated") || engine.starts_with("Shared") {
            let window = setting_in(engine_full, "replicated_deduplication_window")
                .and_then(|v| v.parse().ok())
                .unwrap_or(replicated_window_default);
            return if window > 0 {
                Deduplication::Replicated
            } else {
                Deduplication::Off
            };
        }
        if engine == "Distributed" {
            return Deduplication::Unknown;
        }
        if !engine.ends_with("MergeTree") {
            return Deduplication::Off;
        }
        let window = setting_in(engine_full, "non_replicated_deduplication_window")
            .and_then(|v| v.parse().ok())
            .unwrap_or(window_default);
        if window > 0 {
            Deduplication::Window(window)
        } else {
            Deduplication::Off
        }
    }

    /// Whether ClickHouse deduplicates the table's inserts by token, so that a retried or
    /// replayed batch is known to land once.
    pub fn is_on(self) -> bool {
        matches!(self, Deduplication::Replicated | Deduplication::Window(_))
    }
}

/// The value of `name = value` in the `SETTINGS` of an engine definition.
fn setting_in<'a>(engine_full: &'a str, name: &str) -> Option<&'a str> {
    let settings = &engine_full[engine_full.find("SETTINGS ")? + 9..];
    settings.split(',').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k.trim() == name).then(|| v.trim())
    })
}

/// The columns of one table plus what is needed to convert values for it.
#[derive(Debug, Clone)]
pub struct TableSchema {
    /// Database name.
    pub database: String,
    /// Table name.
    pub table: String,
    /// Columns in table order.
    pub columns: Vec<ColumnDef>,
    /// The server's time zone (`timezone()`), used for `DateTime` columns without one.
    pub server_timezone: String,
    /// The table engine (`MergeTree`, `ReplicatedMergeTree`, ...; empty when not known).
    pub engine: String,
    /// Whether the table deduplicates inserts.
    pub deduplication: Deduplication,
    by_name: FastMap<String, usize>,
}

impl PartialEq for TableSchema {
    fn eq(&self, other: &Self) -> bool {
        self.database == other.database
            && self.table == other.table
            && self.columns == other.columns
            && self.server_timezone == other.server_timezone
            && self.engine == other.engine
            && self.deduplication == other.deduplication
    }
}

impl TableSchema {
    /// Builds a schema without a server (tests, benchmarks, or a schema known in advance).
    /// Positions are renumbered 1.. in the given order; the server time zone is `UTC`.
    pub fn from_columns(
        database: impl Into<String>,
        table: impl Into<String>,
        columns: Vec<ColumnDef>,
    ) -> Self {
        let mut columns = columns;
        for (i, c) in columns.iter_mut().enumerate() {
            c.position = i as u64 + 1;
        }
        Self::with_timezone(database.into(), table.into(), columns, "UTC".to_owned())
    }

    /// Sets the server time zone used for `DateTime` columns without their own.
    pub fn with_server_timezone(mut self, tz: impl Into<String>) -> Self {
        self.server_timezone = tz.into();
        self
    }

    pub(crate) fn with_timezone(
        database: String,
        table: String,
        columns: Vec<ColumnDef>,
        server_timezone: String,
    ) -> Self {
        let by_name = columns
            .iter()
            .enumerate()
            .map(|(i, c)| (c.name.clone(), i))
            .collect();
        Self {
            database,
            table,
            columns,
            server_timezone,
            engine: String::new(),
            deduplication: Deduplication::Unknown,
            by_name,
        }
    }

    /// Sets the engine and whether the table deduplicates.
    pub fn with_engine(mut self, engine: impl Into<String>, deduplication: Deduplication) -> Self {
        self.engine = engine.into();
        self.deduplication = deduplication;
        self
    }

    /// The `_insert_id` column the engine fills with the batch id, if the table has one of a
    /// type it can fill (`UUID` or `String`).
    pub fn insert_id(&self) -> Option<InsertIdColumn> {
        self.columns
            .iter()
            .find_map(|c| InsertIdColumn::from_column(&c.name, &c.type_name))
    }

    /// The columns a row without names fills (a header-less CSV or TSV line), in table
    /// order: every insertable column but `_insert_id`, which the engine fills.
    pub fn positional_columns(&self) -> impl Iterator<Item = &ColumnDef> {
        self.columns.iter().filter(|c| {
            c.name != crate::types::insert_id::INSERT_ID_COLUMN
                && !matches!(
                    c.default_kind,
                    DefaultKind::Materialized | DefaultKind::Alias | DefaultKind::Ephemeral
                )
        })
    }

    /// The index of the column `name` in [`TableSchema::columns`].
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    /// The column `name`.
    pub fn column(&self, name: &str) -> Option<&ColumnDef> {
        self.column_index(name).map(|i| &self.columns[i])
    }

    /// `db.table` with both parts backquoted, for SQL.
    pub fn qualified_name(&self) -> String {
        let mut out = String::new();
        quote_ident(&self.database, &mut out);
        out.push('.');
        quote_ident(&self.table, &mut out);
        out
    }
}

/// Backquotes an identifier for SQL.
pub(crate) fn quote_ident(s: &str, out: &mut String) {
    out.push('`');
    for c in s.chars() {
        if c == '`' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('`');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deduplication_of_engines_and_their_settings() {
        let d = |engine: &str, full: &str| Deduplication::of_table(engine, full, 0, 10000);
        assert_eq!(
            d(
                "MergeTree",
                "MergeTree ORDER BY id SETTINGS index_granularity = 8192"
            ),
            Deduplication::Off
        );
        assert_eq!(
            d(
                "MergeTree",
                "MergeTree ORDER BY id SETTINGS non_replicated_deduplication_window = 100, index_granularity = 8192"
            ),
            Deduplication::Window(100)
        );
        assert_eq!(
            Deduplication::of_table("MergeTree", "MergeTree ORDER BY id", 5, 10000),
            Deduplication::Window(5)
        );
        assert_eq!(
            d(
                "ReplicatedMergeTree",
                "ReplicatedMergeTree('/t', 'r') ORDER BY id"
            ),
            Deduplication::Replicated
        );
        assert_eq!(
            d(
                "ReplicatedMergeTree",
                "ReplicatedMergeTree('/t', 'r') ORDER BY id SETTINGS replicated_deduplication_window = 0"
            ),
            Deduplication::Off
        );
        assert_eq!(
            Deduplication::of_table("SharedMergeTree", "SharedMergeTree ORDER BY id", 0, 0),
            Deduplication::Off
        );
        assert_eq!(
            d("Distributed", "Distributed(c, db, t)"),
            Deduplication::Unknown
        );
        assert_eq!(d("Memory", "Memory"), Deduplication::Off);
        assert!(!Deduplication::Unknown.is_on());
    }

    fn p(s: &str) -> ColumnType {
        ColumnType::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn scalars() {
        for (s, t) in [
            ("Int8", ColumnType::Int8),
            ("UInt256", ColumnType::UInt256),
            ("Int128", ColumnType::Int128),
            ("BFloat16", ColumnType::BFloat16),
            ("Bool", ColumnType::Bool),
            ("UUID", ColumnType::Uuid),
            ("IPv6", ColumnType::IPv6),
            ("Date32", ColumnType::Date32),
            ("DateTime", ColumnType::DateTime(None)),
            (
                "DateTime('Asia/Tokyo')",
                ColumnType::DateTime(Some("Asia/Tokyo".into())),
            ),
            ("DateTime64(3)", ColumnType::DateTime64(3, None)),
            (
                "DateTime64(9, 'America/New_York')",
                ColumnType::DateTime64(9, Some("America/New_York".into())),
            ),
            ("FixedString(16)", ColumnType::FixedString(16)),
        ] {
            assert_eq!(p(s), t, "{s}");
            assert_eq!(t.to_string(), s);
        }
    }

    #[test]
    fn decimals() {
        let d = |precision, scale| ColumnType::Decimal { precision, scale };
        assert_eq!(p("Decimal(9, 2)"), d(9, 2));
        assert_eq!(p("Decimal(10)"), d(10, 0));
        assert_eq!(p("Decimal32(4)"), d(9, 4));
        assert_eq!(p("Decimal64(4)"), d(18, 4));
        assert_eq!(p("Decimal128(20)"), d(38, 20));
        assert_eq!(p("Decimal256(40)"), d(76, 40));
        assert!(ColumnType::parse("Decimal(77, 2)").is_err());
        assert!(ColumnType::parse("Decimal(5, 6)").is_err());
    }

    #[test]
    fn enums() {
        let t = p("Enum8('a' = -1, 'b\\'c' = 2)");
        assert_eq!(
            t,
            ColumnType::Enum8(vec![("a".into(), -1), ("b'c".into(), 2)])
        );
        assert_eq!(t.to_string(), "Enum8('a' = -1, 'b\\'c' = 2)");
        assert_eq!(
            p("Enum16('x' = 1000, 'y = z' = -1000)"),
            ColumnType::Enum16(vec![("x".into(), 1000), ("y = z".into(), -1000)])
        );
        assert!(ColumnType::parse("Enum8('a' = 300)").is_err());
    }

    #[test]
    fn nested() {
        let t = p(
            "Array(Map(String, Tuple(a Nullable(UInt8), `b c` Array(LowCardinality(Nullable(String))))))",
        );
        let ColumnType::Array(m) = &t else { panic!() };
        let ColumnType::Map(k, v) = &**m else {
            panic!()
        };
        assert_eq!(**k, ColumnType::String);
        let ColumnType::Tuple(items) = &**v else {
            panic!()
        };
        assert_eq!(items[0].0.as_deref(), Some("a"));
        assert_eq!(items[1].0.as_deref(), Some("b c"));
        assert_eq!(
            items[1].1,
            ColumnType::Array(Box::new(ColumnType::LowCardinality(Box::new(
                ColumnType::Nullable(Box::new(ColumnType::String))
            ))))
        );
        assert_eq!(p(&t.to_string()), t);
        let u = p("Tuple(UInt8, String, DateTime('UTC'))");
        assert_eq!(
            u,
            ColumnType::Tuple(vec![
                (None, ColumnType::UInt8),
                (None, ColumnType::String),
                (None, ColumnType::DateTime(Some("UTC".into())))
            ])
        );
        assert!(p("LowCardinality(Nullable(String))").is_nullable());
        assert!(!p("Array(Nullable(String))").is_nullable());
    }

    #[test]
    fn json_and_unsupported() {
        assert_eq!(p("JSON"), ColumnType::Json("JSON".into()));
        assert_eq!(
            p("JSON(max_dynamic_paths = 10, a.b UInt32)"),
            ColumnType::Json("JSON(max_dynamic_paths = 10, a.b UInt32)".into())
        );
        assert_eq!(
            p("Object('json')"),
            ColumnType::Json("Object('json')".into())
        );
        assert_eq!(p("Array(JSON)").wire_name(), "Array(String)");
        for s in [
            "Dynamic",
            "Variant(String, UInt8)",
            "AggregateFunction(sum, UInt64)",
            "Array(Dynamic)",
        ] {
            match ColumnType::parse(s) {
                Err(TypeParseError::Unsupported { .. }) => {}
                other => panic!("{s}: {other:?}"),
            }
        }
        assert!(matches!(
            ColumnType::parse("Array(UInt8"),
            Err(TypeParseError::Syntax { .. })
        ));
        assert!(matches!(
            ColumnType::parse("UInt8(3)"),
            Err(TypeParseError::Syntax { .. })
        ));
        let c = ColumnDef::new("x", "Dynamic");
        assert_eq!(c.ty, ColumnType::Unsupported("Dynamic".into()));
    }
}
