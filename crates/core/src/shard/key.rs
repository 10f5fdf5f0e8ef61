//! A `Distributed` table's sharding key: the expressions the client computes as the server
//! does (an integer column, `intHash64`, `cityHash64`, `sipHash64`, `xxHash64` of columns;
//! `rand()`), bound to the table's column types, and evaluated for one row.

use std::borrow::Cow;

use crate::error::{Error, Result};
use crate::shard::hash::{HashFn, KeyValue};
use crate::types::schema::{ColumnType, TableSchema};
use crate::types::value::Value;

/// A sharding key expression the client can compute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KeyExpr {
    /// An integer column: its value is the key.
    Column(String),
    /// A hash function of columns.
    Hash(HashFn, Vec<String>),
    /// `rand()` (or no key at all with a single shard): any shard, spread by weight.
    Random,
}

/// How a key column's values are read, from its ClickHouse type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyType {
    /// An integer of `width` bytes.
    Int { width: u8, signed: bool },
    /// `String` (or `LowCardinality(String)`).
    String,
    /// `FixedString(n)`: the bytes, zero-padded to `n`.
    Fixed(usize),
}

impl KeyType {
    fn of(ty: &ColumnType) -> Option<Self> {
        Some(match ty {
            ColumnType::Int8 => KeyType::Int {
                width: 1,
                signed: true,
            },
            ColumnType::Int16 => KeyType::Int {
                width: 2,
                signed: true,
            },
            ColumnType::Int32 => KeyType::Int {
                width: 4,
                signed: true,
            },
            ColumnType::Int64 => KeyType::Int {
                width: 8,
                signed: true,
            },
            ColumnType::UInt8 => KeyType::Int {
                width: 1,
                signed: false,
            },
            ColumnType::UInt16 => KeyType::Int {
                width: 2,
                signed: false,
            },
            ColumnType::UInt32 => KeyType::Int {
                width: 4,
                signed: false,
            },
            ColumnType::UInt64 => KeyType::Int {
                width: 8,
                signed: false,
            },
            ColumnType::String => KeyType::String,
            ColumnType::FixedString(n) => KeyType::Fixed(*n),
            ColumnType::LowCardinality(inner) if **inner == ColumnType::String => KeyType::String,
            _ => return None,
        })
    }

    /// A row's value of a column of this type, as ClickHouse would hold it.
    fn read(self, column: &str, value: &Value) -> std::result::Result<KeyValue, String> {
        let bad = || {
            format!(
                "the sharding key column `{column}` holds {} ({}), not a value of its type",
                value.kind(),
                short(value)
            )
        };
        match self {
            KeyType::Int { width, signed } => {
                let wide: i128 = match value {
                    Value::Int(i) => i128::from(*i),
                    Value::UInt(u) => i128::from(*u),
                    Value::Int128(i) => *i,
                    Value::UInt128(u) => i128::try_from(*u).map_err(|_| bad())?,
                    Value::Bool(b) => i128::from(*b),
                    Value::String(s) => s.trim().parse::<i128>().map_err(|_| bad())?,
                    _ => return Err(bad()),
                };
                let bitsw = u32::from(width) * 8;
                let (lo, hi) = if signed {
                    (-(1i128 << (bitsw - 1)), (1i128 << (bitsw - 1)) - 1)
                } else {
                    (0, (1i128 << bitsw) - 1)
                };
                if wide < lo || wide > hi {
                    return Err(format!(
                        "the sharding key column `{column}` holds {wide}, out of the range of \
                         its type"
                    ));
                }
                Ok(KeyValue::Int { value: wide, width })
            }
            KeyType::String | KeyType::Fixed(_) => {
                let mut bytes = match value {
                    Value::String(s) => s.as_bytes().to_vec(),
                    Value::Bytes(b) => b.clone(),
                    _ => return Err(bad()),
                };
                if let KeyType::Fixed(n) = self {
                    if bytes.len() > n {
                        return Err(format!(
                            "the sharding key column `{column}` holds {} bytes, more than its \
                             FixedString({n})",
                            bytes.len()
                        ));
                    }
                    bytes.resize(n, 0);
                }
                Ok(KeyValue::Bytes(bytes))
            }
        }
    }
}

fn short(v: &Value) -> String {
    let text = format!("{v:?}");
    if text.chars().count() > 60 {
        format!("{}...", text.chars().take(60).collect::<String>())
    } else {
        text
    }
}

impl KeyExpr {
    /// Parses a sharding key as `system.tables` shows it; an expression the client cannot
    /// compute as the server does is an error that names it.
    pub(crate) fn parse(text: &str) -> Result<Self> {
        let unsupported = || {
            Error::Config(format!(
                "the sharding key `{text}` is not one chasync computes on the client (an integer \
                 column, or intHash64, cityHash64, sipHash64 or xxHash64 of columns, or rand()): \
                 insert through the Distributed table instead"
            ))
        };
        let t = strip_parens(text.trim());
        if let Some(name) = ident(t) {
            return Ok(KeyExpr::Column(name));
        }
        let open = t.find('(').ok_or_else(unsupported)?;
        if !t.ends_with(')') {
            return Err(unsupported());
        }
        let func = t[..open].trim();
        let inner = &t[open + 1..t.len() - 1];
        if inner.trim().is_empty()
            && matches!(
                func.to_ascii_lowercase().as_str(),
                "rand" | "rand32" | "rand64"
            )
        {
            return Ok(KeyExpr::Random);
        }
        let hash = HashFn::named(func).ok_or_else(unsupported)?;
        let args = split_args(inner)
            .iter()
            .map(|a| ident(a.trim()))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(unsupported)?;
        if !hash.accepts(args.len()) {
            return Err(unsupported());
        }
        Ok(KeyExpr::Hash(hash, args))
    }

    /// Binds the key's columns to the table's types; a column that is not in the table, or
    /// whose type the client cannot hash as the server does, is an error.
    pub(crate) fn bind(self, schema: &TableSchema) -> Result<BoundKey> {
        let names: Vec<String> = match &self {
            KeyExpr::Column(c) => vec![c.clone()],
            KeyExpr::Hash(_, cols) => cols.clone(),
            KeyExpr::Random => Vec::new(),
        };
        let mut columns = Vec::with_capacity(names.len());
        for name in names {
            let col = schema.column(&name).ok_or_else(|| {
                Error::Config(format!(
                    "the sharding key names column `{name}`, which {}.{} does not have",
                    schema.database, schema.table
                ))
            })?;
            let ty = KeyType::of(&col.ty).ok_or_else(|| {
                Error::Config(format!(
                    "the sharding key column `{name}` is a {}: chasync computes keys of integer \
                     (Int8..Int64, UInt8..UInt64) and String/FixedString columns only",
                    col.type_name
                ))
            })?;
            if matches!(self, KeyExpr::Column(_)) && !matches!(ty, KeyType::Int { .. }) {
                return Err(Error::Config(format!(
                    "the sharding key `{name}` is a {}: a key must be an integer (ClickHouse \
                     refuses such a Distributed table too)",
                    col.type_name
                )));
            }
            if matches!(self, KeyExpr::Hash(HashFn::IntHash64, _))
                && !matches!(ty, KeyType::Int { .. })
            {
                return Err(Error::Config(format!(
                    "intHash64 of `{name}`, a {}: chasync computes intHash64 of integer columns",
                    col.type_name
                )));
            }
            columns.push((name, ty));
        }
        Ok(BoundKey {
            expr: self,
            columns,
        })
    }
}

/// A sharding key bound to the column types of the table it routes.
#[derive(Debug, Clone)]
pub(crate) struct BoundKey {
    pub(crate) expr: KeyExpr,
    columns: Vec<(String, KeyType)>,
}

impl BoundKey {
    /// The key of one row, given a column's value by name; `Ok(None)` for a random key.
    pub(crate) fn eval<'a>(
        &self,
        get: impl Fn(&str) -> Option<Cow<'a, Value>>,
    ) -> std::result::Result<Option<u64>, String> {
        let mut values = Vec::with_capacity(self.columns.len());
        for (name, ty) in &self.columns {
            let v = get(name).ok_or_else(|| {
                format!(
                    "the row has no value for the sharding key column `{name}` (chasync routes \
                     rows by the values they carry, not by column defaults)"
                )
            })?;
            if v.is_null() {
                return Err(format!("the sharding key column `{name}` is null"));
            }
            values.push(ty.read(name, &v)?);
        }
        Ok(match &self.expr {
            KeyExpr::Random => None,
            KeyExpr::Column(_) => values[0].as_key(),
            KeyExpr::Hash(f, _) => f.apply(&values),
        })
    }
}

/// `name` or `` `name` `` as one identifier.
fn ident(t: &str) -> Option<String> {
    let t = t.trim();
    if let Some(inner) = t.strip_prefix('`').and_then(|r| r.strip_suffix('`')) {
        if !inner.contains('`') && !inner.is_empty() {
            return Some(inner.to_string());
        }
        return None;
    }
    let mut chars = t.chars();
    let first = chars.next()?;
    if !(first.is_ascii_alphabetic() || first == '_') {
        return None;
    }
    chars
        .all(|c| c.is_ascii_alphanumeric() || c == '_')
        .then(|| t.to_string())
}

/// `(x)` as `x`, as often as it is so wrapped.
fn strip_parens(mut t: &str) -> &str {
    while t.starts_with('(') && t.ends_with(')') {
        let inner = &t[1..t.len() - 1];
        // Only when the outer parentheses enclose the whole expression.
        let mut depth = 0i32;
        let balanced = inner.chars().all(|c| {
            match c {
                '(' => depth += 1,
                ')' => depth -= 1,
                _ => {}
            }
            depth >= 0
        });
        if !balanced || depth != 0 {
            break;
        }
        t = inner.trim();
    }
    t
}

/// Splits a list of arguments at the commas outside parentheses, brackets and quotes.
pub(crate) fn split_args(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut depth = 0i32;
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for c in text.chars() {
        if let Some(q) = quote {
            cur.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == q {
                quote = None;
            }
            continue;
        }
        match c {
            '\'' | '`' | '"' => {
                quote = Some(c);
                cur.push(c);
            }
            '(' | '[' => {
                depth += 1;
                cur.push(c);
            }
            ')' | ']' => {
                depth -= 1;
                cur.push(c);
            }
            ',' if depth == 0 => out.push(std::mem::take(&mut cur).trim().to_string()),
            _ => cur.push(c),
        }
    }
    if !cur.trim().is_empty() || !out.is_empty() {
        out.push(cur.trim().to_string());
    }
    out
}

/// The text of a string literal (`'...'`, backslash escapes) or an identifier.
pub(crate) fn unquote(arg: &str) -> String {
    let a = arg.trim();
    if let Some(inner) = a
        .strip_prefix('\'')
        .and_then(|r| r.strip_suffix('\''))
        .or_else(|| a.strip_prefix('`').and_then(|r| r.strip_suffix('`')))
    {
        let mut out = String::new();
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                if let Some(n) = chars.next() {
                    out.push(n);
                }
            } else {
                out.push(c);
            }
        }
        return out;
    }
    a.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_keys_it_computes_and_names_the_others() {
        assert_eq!(KeyExpr::parse("id").unwrap(), KeyExpr::Column("id".into()));
        assert_eq!(
            KeyExpr::parse("(`id`)").unwrap(),
            KeyExpr::Column("id".into())
        );
        assert_eq!(
            KeyExpr::parse("cityHash64(user, `id`)").unwrap(),
            KeyExpr::Hash(HashFn::CityHash64, vec!["user".into(), "id".into()])
        );
        assert_eq!(
            KeyExpr::parse("intHash64(id)").unwrap(),
            KeyExpr::Hash(HashFn::IntHash64, vec!["id".into()])
        );
        assert_eq!(KeyExpr::parse("rand()").unwrap(), KeyExpr::Random);
        for bad in [
            "id % 7",
            "toDate(ts)",
            "intHash64(id, x)",
            "cityHash64(lower(s))",
            "murmurHash3_64(s)",
        ] {
            let e = KeyExpr::parse(bad).unwrap_err().to_string();
            assert!(e.contains(bad) && e.contains("Distributed"), "{e}");
        }
    }

    #[test]
    fn splits_engine_arguments() {
        assert_eq!(
            split_args("'two', 'd b', 'l', cityHash64(a, b)"),
            vec!["'two'", "'d b'", "'l'", "cityHash64(a, b)"]
        );
        assert_eq!(split_args("'a\\',b', x"), vec!["'a\\',b'", "x"]);
        assert_eq!(unquote("'a\\'b'"), "a'b");
        assert_eq!(unquote("`t`"), "t");
    }

    #[test]
    fn integer_keys_are_their_unsigned_bits() {
        let t = KeyType::Int {
            width: 4,
            signed: true,
        };
        assert_eq!(
            t.read("k", &Value::Int(-1)).unwrap().as_key(),
            Some(0xffff_ffff)
        );
        assert!(
            t.read("k", &Value::Int(1 << 40))
                .unwrap_err()
                .contains("out of the range")
        );
        let u = KeyType::Int {
            width: 1,
            signed: false,
        };
        assert!(u.read("k", &Value::Int(-1)).is_err());
        assert_eq!(
            u.read("k", &Value::String("200".into())).unwrap().as_key(),
            Some(200)
        );
    }
}
