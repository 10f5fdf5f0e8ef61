//! Conversions of one dynamic [`Value`] into the Native image of one scalar ClickHouse type.
//!
//! Every function appends to `out` only when it succeeds (callers roll back on error anyway).

use std::fmt::Write as _;
use std::net::Ipv6Addr;

use jiff::Timestamp;
use jiff::civil;
use jiff::tz::TimeZone;

pub(crate) use crate::format::kind::Scalar;
use crate::types::text::{self, U256};
use crate::types::time::{
    DATE_MAX_DAYS, DATE_MIN_DAYS, DATE32_MAX_DAYS, DATE32_MIN_DAYS, DT64_MAX_SECS, DT64_MIN_SECS,
    POW10, days_from_civil, days_of,
};
use crate::types::value::Value;
use crate::types::wire::{put_leb128, put_uuid};

/// Why a value could not be converted (the caller adds row, column and type).
pub(crate) type Reason = String;

#[inline]
pub(crate) fn write_str_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_leb128(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// An integer of any supported width: sign and magnitude.
#[derive(Clone, Copy)]
struct BigInt {
    neg: bool,
    mag: U256,
}

fn int_from_str(s: &str) -> Result<BigInt, Reason> {
    let t = s.trim();
    let (neg, digits) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        return U256::parse_digits(digits.as_bytes())
            .map(|mag| BigInt { neg, mag })
            .ok_or_else(|| "integer out of range".to_owned());
    }
    // "1.0", "1e3": accept when the number is integral and exact in f64.
    match t.parse::<f64>() {
        Ok(f) if f.is_finite() => int_from_f64(f),
        _ => Err("not an integer".to_owned()),
    }
}

fn int_from_f64(f: f64) -> Result<BigInt, Reason> {
    if !f.is_finite() {
        return Err("not a finite number".to_owned());
    }
    if f.fract() != 0.0 {
        return Err("has a fractional part".to_owned());
    }
    if f.abs() >= 1.7e38 {
        return Err("integer out of range".to_owned());
    }
    let i = f as i128;
    Ok(BigInt {
        neg: i < 0,
        mag: U256::from_u128(i.unsigned_abs()),
    })
}

fn big_int(v: &Value) -> Result<BigInt, Reason> {
    match v {
        Value::Int(i) => Ok(BigInt {
            neg: *i < 0,
            mag: U256::from_u128(i.unsigned_abs() as u128),
        }),
        Value::UInt(u) => Ok(BigInt {
            neg: false,
            mag: U256::from_u128(*u as u128),
        }),
        Value::Int128(i) => Ok(BigInt {
            neg: *i < 0,
            mag: U256::from_u128(i.unsigned_abs()),
        }),
        Value::UInt128(u) => Ok(BigInt {
            neg: false,
            mag: U256::from_u128(*u),
        }),
        Value::Bool(b) => Ok(BigInt {
            neg: false,
            mag: U256::from_u128(*b as u128),
        }),
        Value::Float(f) => int_from_f64(*f),
        Value::String(s) => int_from_str(s),
        Value::Bytes(b) => int_from_str(std::str::from_utf8(b).map_err(|_| "not an integer")?),
        other => Err(format!("expected an integer, got {}", other.kind())),
    }
}

fn encode_int(v: &Value, width: u8, signed: bool, out: &mut Vec<u8>) -> Result<(), Reason> {
    // Fast paths for the common cases.
    if width <= 8 {
        let range_err = || "out of range".to_owned();
        let (lo, hi): (i128, i128) = if signed {
            let bits = width as u32 * 8;
            (-(1i128 << (bits - 1)), (1i128 << (bits - 1)) - 1)
        } else {
            (0, (1i128 << (width as u32 * 8)) - 1)
        };
        let x: i128 = match v {
            Value::Int(i) => *i as i128,
            Value::UInt(u) => *u as i128,
            _ => {
                let b = big_int(v)?;
                let m = b.mag.to_u128().ok_or_else(range_err)?;
                if m > i128::MAX as u128 {
                    return Err(range_err());
                }
                if b.neg { -(m as i128) } else { m as i128 }
            }
        };
        if x < lo || x > hi {
            return Err(range_err());
        }
        out.extend_from_slice(&x.to_le_bytes()[..width as usize]);
        return Ok(());
    }
    let b = big_int(v)?;
    if b.neg && !b.mag.is_zero() && !signed {
        return Err("negative value for an unsigned type".to_owned());
    }
    if width == 16 {
        let m = b.mag.to_u128().ok_or("out of range")?;
        if signed {
            let max = if b.neg {
                1u128 << 127
            } else {
                (1u128 << 127) - 1
            };
            if m > max {
                return Err("out of range".to_owned());
            }
            let x = if b.neg {
                (m as i128).wrapping_neg()
            } else {
                m as i128
            };
            out.extend_from_slice(&x.to_le_bytes());
        } else {
            out.extend_from_slice(&m.to_le_bytes());
        }
        return Ok(());
    }
    // 256 bits.
    if signed {
        let top = b.mag.0[3];
        let over = if b.neg {
            top > 1 << 63 || (top == 1 << 63 && b.mag.0[..3] != [0, 0, 0])
        } else {
            top >= 1 << 63
        };
        if over {
            return Err("out of range".to_owned());
        }
    }
    let x = if b.neg { b.mag.neg() } else { b.mag };
    out.extend_from_slice(&x.to_le_bytes());
    Ok(())
}

/// Parses decimal text (`-12.345`, `1e-3`) into the unscaled magnitude at `scale`; extra
/// fractional digits are truncated, as ClickHouse does.
fn decimal_from_str(s: &str, scale: u8) -> Result<BigInt, Reason> {
    let t = s.trim().as_bytes();
    let (neg, t) = match t.first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let (mant, exp) = match t.iter().position(|&b| b == b'e' || b == b'E') {
        Some(p) => {
            let e = std::str::from_utf8(&t[p + 1..])
                .ok()
                .and_then(|e| e.parse::<i32>().ok())
                .filter(|e| e.abs() <= 1000)
                .ok_or("bad exponent")?;
            (&t[..p], e)
        }
        None => (t, 0),
    };
    let (int_part, frac_part) = match mant.iter().position(|&b| b == b'.') {
        Some(p) => (&mant[..p], &mant[p + 1..]),
        None => (mant, &[][..]),
    };
    if (int_part.is_empty() && frac_part.is_empty())
        || !int_part.iter().chain(frac_part).all(u8::is_ascii_digit)
    {
        return Err("not a decimal number".to_owned());
    }
    // The digits are int_part ++ frac_part with the point after int_part.len() + exp digits.
    let point = int_part.len() as i64 + exp as i64;
    let keep = point + scale as i64; // how many leading digits form the unscaled value
    let all = int_part.iter().chain(frac_part);
    let mut mag = U256::ZERO;
    let mut taken = 0i64;
    for &b in all {
        if taken >= keep {
            break;
        }
        mag = mag
            .mul_add(10, (b - b'0') as u64)
            .ok_or("too many digits")?;
        taken += 1;
    }
    while taken < keep {
        mag = mag.mul_add(10, 0).ok_or("too many digits")?;
        taken += 1;
    }
    Ok(BigInt { neg, mag })
}

/// A small stack buffer for formatting numbers without allocating.
struct StackBuf {
    buf: [u8; 64],
    len: usize,
}

impl StackBuf {
    fn new() -> Self {
        Self {
            buf: [0; 64],
            len: 0,
        }
    }
    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }
}

impl std::fmt::Write for StackBuf {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let b = s.as_bytes();
        if self.len + b.len() > self.buf.len() {
            return Err(std::fmt::Error);
        }
        self.buf[self.len..self.len + b.len()].copy_from_slice(b);
        self.len += b.len();
        Ok(())
    }
}

fn decimal_value(v: &Value, scale: u8) -> Result<BigInt, Reason> {
    match v {
        Value::String(s) => decimal_from_str(s, scale),
        Value::Bytes(b) => {
            decimal_from_str(std::str::from_utf8(b).map_err(|_| "not UTF-8")?, scale)
        }
        Value::Float(f) => {
            if !f.is_finite() {
                return Err("not a finite number".to_owned());
            }
            // The shortest text that reads back as this float: 0.1 stays 0.1.
            let mut b = StackBuf::new();
            write!(b, "{f:e}").map_err(|_| "cannot format float")?;
            decimal_from_str(b.as_str(), scale)
        }
        Value::Bool(_) => Err("expected a decimal number, got bool".to_owned()),
        _ => {
            let i = big_int(v)?;
            let mut mag = i.mag;
            for _ in 0..scale {
                mag = mag.mul_add(10, 0).ok_or("too many digits")?;
            }
            Ok(BigInt { neg: i.neg, mag })
        }
    }
}

fn encode_decimal(
    v: &Value,
    width: u8,
    scale: u8,
    limit: &U256,
    out: &mut Vec<u8>,
) -> Result<(), Reason> {
    let d = decimal_value(v, scale)?;
    if d.mag.cmp_limbs(limit) != std::cmp::Ordering::Less {
        return Err("too many digits for the precision".to_owned());
    }
    let x = if d.neg { d.mag.neg() } else { d.mag };
    // Below the limit the value fits the width, so the low bytes of the two's complement
    // 256-bit image are the value's image at that width.
    out.extend_from_slice(&x.to_le_bytes()[..width as usize]);
    Ok(())
}

fn float_value(v: &Value) -> Result<f64, Reason> {
    match v {
        Value::Float(f) => Ok(*f),
        Value::Int(i) => Ok(*i as f64),
        Value::UInt(u) => Ok(*u as f64),
        Value::Int128(i) => Ok(*i as f64),
        Value::UInt128(u) => Ok(*u as f64),
        Value::Bool(b) => Ok(*b as u8 as f64),
        Value::String(s) => parse_float(s),
        Value::Bytes(b) => parse_float(std::str::from_utf8(b).map_err(|_| "not UTF-8")?),
        other => Err(format!("expected a number, got {}", other.kind())),
    }
}

fn parse_float(s: &str) -> Result<f64, Reason> {
    s.trim()
        .parse::<f64>()
        .map_err(|_| "not a number".to_owned())
}

fn f32_value(v: &Value) -> Result<f32, Reason> {
    let f = match v {
        // Parse text straight to f32 to avoid double rounding.
        Value::String(s) => {
            return s
                .trim()
                .parse::<f32>()
                .map_err(|_| "not a number".to_owned());
        }
        other => float_value(other)?,
    };
    let g = f as f32;
    if g.is_infinite() && f.is_finite() {
        return Err("out of range for Float32".to_owned());
    }
    Ok(g)
}

fn bool_value(v: &Value) -> Result<bool, Reason> {
    let bad = || "expected a boolean".to_owned();
    match v {
        Value::Bool(b) => Ok(*b),
        Value::Int(0) | Value::UInt(0) => Ok(false),
        Value::Int(1) | Value::UInt(1) => Ok(true),
        Value::Float(f) if *f == 0.0 => Ok(false),
        Value::Float(f) if *f == 1.0 => Ok(true),
        Value::String(s) => {
            let s = s.trim();
            for t in ["true", "1", "yes", "on", "t", "y", "enable"] {
                if s.eq_ignore_ascii_case(t) {
                    return Ok(true);
                }
            }
            for f in ["false", "0", "no", "off", "f", "n", "disable"] {
                if s.eq_ignore_ascii_case(f) {
                    return Ok(false);
                }
            }
            Err(bad())
        }
        _ => Err(bad()),
    }
}

/// Passes the text (bytes) of a string-ish value to `sink`: strings and bytes as they are,
/// numbers and booleans as their text, arrays and objects as JSON text (like ClickHouse's
/// `input_format_json_read_{numbers,bools,arrays,objects}_as_strings`).
fn with_text<R>(v: &Value, sink: impl FnOnce(&[u8]) -> R) -> Result<R, Reason> {
    let mut b = StackBuf::new();
    let formatted = match v {
        Value::String(s) => return Ok(sink(s.as_bytes())),
        Value::Bytes(b) => return Ok(sink(b)),
        Value::Null => return Err("null".to_owned()),
        Value::Int(i) => write!(b, "{i}"),
        Value::UInt(u) => write!(b, "{u}"),
        Value::Int128(i) => write!(b, "{i}"),
        Value::UInt128(u) => write!(b, "{u}"),
        Value::Float(f) => write!(b, "{f}"),
        Value::Bool(x) => write!(b, "{x}"),
        other => return Ok(sink(other.to_json_string().as_bytes())),
    };
    if formatted.is_ok() {
        Ok(sink(&b.buf[..b.len]))
    } else {
        // Only very long float texts (1e300 has 301 digits) get here.
        Ok(sink(v.to_json_string().as_bytes()))
    }
}

fn has_explicit_offset(s: &str) -> bool {
    // "...Z", "...+02:00", "...-0530" after the time part.
    let b = s.as_bytes();
    if b.last().is_some_and(|c| *c == b'Z' || *c == b'z') {
        return true;
    }
    if let Some(t) = s.find(['T', 't', ' ']) {
        let tail = &s[t + 1..];
        return tail.contains('+') || tail.contains('-') || tail.contains('[');
    }
    false
}

/// Parses date/time text into a timestamp; text without an offset is read in `tz`.
fn parse_timestamp(s: &str, tz: &TimeZone) -> Result<Timestamp, Reason> {
    let s = s.trim();
    if has_explicit_offset(s)
        && let Ok(ts) = s.parse::<Timestamp>()
    {
        return Ok(ts);
    }
    let dt = s.parse::<civil::DateTime>().map_err(|_| {
        "not a date/time (expected RFC 3339, YYYY-MM-DD hh:mm:ss[.fff] or epoch seconds)".to_owned()
    })?;
    tz.to_ambiguous_timestamp(dt)
        .compatible()
        .map_err(|e| format!("invalid local time: {e}"))
}

fn is_epoch_text(s: &str) -> bool {
    let t = s.trim();
    let t = t.strip_prefix('-').unwrap_or(t);
    !t.is_empty()
        && t.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && t.bytes().filter(|&b| b == b'.').count() <= 1
        && (t.len() != 8 || t.contains('.')) // "20240101" is a date
}

/// Seconds since the epoch for DateTime.
fn datetime_secs(v: &Value, tz: &TimeZone) -> Result<i64, Reason> {
    match v {
        Value::String(s) if is_epoch_text(s) => {
            let b = int_from_str(s).map_err(|_| "epoch seconds must be whole for DateTime")?;
            let m = b
                .mag
                .to_u128()
                .filter(|m| *m <= i64::MAX as u128)
                .ok_or("out of range")? as i64;
            Ok(if b.neg { -m } else { m })
        }
        Value::String(s) => Ok(parse_timestamp(s, tz)?.as_second()),
        Value::Float(f) => {
            if f.fract() != 0.0 {
                return Err("epoch seconds must be whole for DateTime".to_owned());
            }
            Ok(*f as i64)
        }
        Value::Int(i) => Ok(*i),
        Value::UInt(u) => i64::try_from(*u).map_err(|_| "out of range".to_owned()),
        Value::Int128(_) | Value::UInt128(_) => {
            let b = big_int(v)?;
            let m = b
                .mag
                .to_u128()
                .filter(|m| *m <= i64::MAX as u128)
                .ok_or("out of range")? as i64;
            Ok(if b.neg { -m } else { m })
        }
        other => Err(format!("expected a date/time, got {}", other.kind())),
    }
}

/// Days since the epoch for Date/Date32; integers below the `days_limit` are days, larger
/// ones are epoch seconds (ClickHouse's `toDate` rule).
fn date_days(v: &Value, tz: &TimeZone, day_range: (i64, i64)) -> Result<i64, Reason> {
    let from_secs = |secs: i64| -> Result<i64, Reason> {
        let ts = Timestamp::from_second(secs).map_err(|_| "out of range".to_owned())?;
        Ok(days_of(tz.to_datetime(ts).date()))
    };
    let from_int = |i: i64| -> Result<i64, Reason> {
        if i >= day_range.0 && i <= day_range.1 {
            Ok(i)
        } else {
            from_secs(i)
        }
    };
    match v {
        Value::String(s) => {
            let t = s.trim();
            if is_epoch_text(t) {
                return from_int(datetime_secs(v, tz)?);
            }
            if let Some((y, m, d)) = text::parse_date(t.as_bytes()) {
                return Ok(days_from_civil(y, m, d));
            }
            if t.len() == 10 {
                let d = t
                    .parse::<civil::Date>()
                    .map_err(|_| "not a date (expected YYYY-MM-DD)".to_owned())?;
                return Ok(days_of(d));
            }
            let ts = parse_timestamp(t, tz)?;
            Ok(days_of(tz.to_datetime(ts).date()))
        }
        Value::Int(_) | Value::UInt(_) | Value::Int128(_) | Value::UInt128(_) | Value::Float(_) => {
            from_int(datetime_secs(v, tz).map_err(|e| e.replace("DateTime", "Date"))?)
        }
        other => Err(format!("expected a date, got {}", other.kind())),
    }
}

fn datetime64_ticks(v: &Value, precision: u8, tz: &TimeZone) -> Result<i64, Reason> {
    let scale = POW10[precision as usize];
    let range = || "out of range for DateTime64".to_owned();
    let ticks: i64 = match v {
        Value::String(s) if is_epoch_text(s) => {
            let d = decimal_from_str(s, precision)?;
            let m = d
                .mag
                .to_u128()
                .filter(|m| *m <= i64::MAX as u128)
                .ok_or_else(range)? as i64;
            if d.neg { -m } else { m }
        }
        Value::String(s) => {
            let ts = parse_timestamp(s, tz)?;
            let nanos = ts.as_nanosecond();
            let div = (POW10[9] / scale) as i128;
            i64::try_from(nanos.div_euclid(div)).map_err(|_| range())?
        }
        Value::Float(f) => {
            if !f.is_finite() {
                return Err("not a finite number".to_owned());
            }
            let t = (f * scale as f64).round();
            if t.abs() >= 9.2e18 {
                return Err(range());
            }
            t as i64
        }
        Value::Int(_) | Value::UInt(_) | Value::Int128(_) | Value::UInt128(_) => {
            let b = big_int(v)?;
            let m = b
                .mag
                .to_u128()
                .filter(|m| *m <= i64::MAX as u128)
                .ok_or_else(range)? as i64;
            let secs = if b.neg { -m } else { m };
            secs.checked_mul(scale).ok_or_else(range)?
        }
        other => return Err(format!("expected a date/time, got {}", other.kind())),
    };
    let secs = ticks.div_euclid(scale);
    if !(DT64_MIN_SECS..=DT64_MAX_SECS).contains(&secs) {
        return Err("out of range for DateTime64 (1900-01-01 .. 2299-12-31)".to_owned());
    }
    Ok(ticks)
}

fn enum_value<T: Copy + TryFrom<i64> + PartialEq>(
    v: &Value,
    items: &[(String, T)],
) -> Result<T, Reason> {
    let by_value = |i: i64| -> Result<T, Reason> {
        let t = T::try_from(i).map_err(|_| "not an element of the enum".to_owned())?;
        if items.iter().any(|(_, x)| *x == t) {
            Ok(t)
        } else {
            Err("not an element of the enum".to_owned())
        }
    };
    match v {
        Value::String(s) => {
            if let Some((_, x)) = items.iter().find(|(n, _)| n == s) {
                return Ok(*x);
            }
            match s.trim().parse::<i64>() {
                Ok(i) => by_value(i),
                Err(_) => Err("not an element of the enum".to_owned()),
            }
        }
        Value::Bytes(b) => match items.iter().find(|(n, _)| n.as_bytes() == &b[..]) {
            Some((_, x)) => Ok(*x),
            None => Err("not an element of the enum".to_owned()),
        },
        Value::Int(i) => by_value(*i),
        Value::UInt(u) => by_value(i64::try_from(*u).unwrap_or(i64::MAX)),
        Value::Float(f) if f.fract() == 0.0 && f.abs() < 1e6 => by_value(*f as i64),
        other => Err(format!(
            "expected an enum name or value, got {}",
            other.kind()
        )),
    }
}

impl Scalar {
    /// Appends the Native image of `v` (never `Null`; the caller handles it).
    pub(crate) fn encode(&self, v: &Value, out: &mut Vec<u8>) -> Result<(), Reason> {
        match self {
            Scalar::Int { width, signed } => encode_int(v, *width, *signed, out),
            Scalar::Float64 => {
                let f = float_value(v)?;
                out.extend_from_slice(&f.to_le_bytes());
                Ok(())
            }
            Scalar::Float32 => {
                let f = f32_value(v)?;
                out.extend_from_slice(&f.to_le_bytes());
                Ok(())
            }
            Scalar::BFloat16 => {
                // ClickHouse converts Float32 to BFloat16 by dropping the low 16 bits.
                let f = f32_value(v)?;
                out.extend_from_slice(&((f.to_bits() >> 16) as u16).to_le_bytes());
                Ok(())
            }
            Scalar::Decimal {
                width,
                scale,
                limit,
            } => encode_decimal(v, *width, *scale, limit, out),
            Scalar::Bool => {
                out.push(bool_value(v)? as u8);
                Ok(())
            }
            Scalar::String => with_text(v, |b| write_str_bytes(out, b)),
            Scalar::Json => match v {
                Value::String(s) => {
                    write_str_bytes(out, s.as_bytes());
                    Ok(())
                }
                Value::Bytes(b) => {
                    write_str_bytes(out, b);
                    Ok(())
                }
                Value::Object(_) | Value::Map(_) => {
                    let s = v.to_json_string();
                    write_str_bytes(out, s.as_bytes());
                    Ok(())
                }
                other => Err(format!(
                    "expected a JSON object or its text, got {}",
                    other.kind()
                )),
            },
            Scalar::FixedString(n) => {
                let n = *n;
                with_text(v, |b| {
                    if b.len() > n {
                        return Err(format!("{} bytes do not fit FixedString({n})", b.len()));
                    }
                    out.extend_from_slice(b);
                    out.resize(out.len() + n - b.len(), 0);
                    Ok(())
                })?
            }
            Scalar::Uuid => {
                let u = match v {
                    Value::String(s) => {
                        uuid::Uuid::parse_str(s.trim()).map_err(|_| "not a UUID".to_owned())?
                    }
                    Value::Bytes(b) if b.len() == 16 => {
                        uuid::Uuid::from_slice(b).map_err(|_| "not a UUID".to_owned())?
                    }
                    Value::UInt128(u) => uuid::Uuid::from_u128(*u),
                    other => return Err(format!("expected a UUID string, got {}", other.kind())),
                };
                put_uuid(out, &u);
                Ok(())
            }
            Scalar::IPv4 => {
                let x: u32 = match v {
                    Value::String(s) => text::parse_ipv4(s.trim().as_bytes())
                        .ok_or_else(|| "not an IPv4 address".to_owned())?,
                    Value::Int(_) | Value::UInt(_) => {
                        let b = big_int(v)?;
                        b.mag
                            .to_u128()
                            .filter(|m| !b.neg && *m <= u32::MAX as u128)
                            .ok_or("out of range for IPv4")? as u32
                    }
                    other => {
                        return Err(format!("expected an IPv4 address, got {}", other.kind()));
                    }
                };
                out.extend_from_slice(&x.to_le_bytes());
                Ok(())
            }
            Scalar::IPv6 => {
                let octets = match v {
                    Value::String(s) => {
                        let t = s.trim();
                        match t.parse::<Ipv6Addr>() {
                            Ok(a) => a.octets(),
                            Err(_) => text::parse_ipv4(t.as_bytes())
                                .map(|v| std::net::Ipv4Addr::from(v).to_ipv6_mapped().octets())
                                .ok_or_else(|| "not an IPv6 address".to_owned())?,
                        }
                    }
                    Value::Bytes(b) if b.len() == 16 => {
                        let mut o = [0u8; 16];
                        o.copy_from_slice(b);
                        o
                    }
                    other => {
                        return Err(format!("expected an IPv6 address, got {}", other.kind()));
                    }
                };
                out.extend_from_slice(&octets);
                Ok(())
            }
            Scalar::Date(zone) => {
                let d = date_days(v, zone.tz(), (DATE_MIN_DAYS, DATE_MAX_DAYS))?;
                if !(DATE_MIN_DAYS..=DATE_MAX_DAYS).contains(&d) {
                    return Err("out of range for Date (1970-01-01 .. 2149-06-06)".to_owned());
                }
                out.extend_from_slice(&(d as u16).to_le_bytes());
                Ok(())
            }
            Scalar::Date32(zone) => {
                let d = date_days(v, zone.tz(), (DATE32_MIN_DAYS, DATE32_MAX_DAYS))?;
                if !(DATE32_MIN_DAYS..=DATE32_MAX_DAYS).contains(&d) {
                    return Err("out of range for Date32 (1900-01-01 .. 2299-12-31)".to_owned());
                }
                out.extend_from_slice(&(d as i32).to_le_bytes());
                Ok(())
            }
            Scalar::DateTime(zone) => {
                let s = datetime_secs(v, zone.tz())?;
                let s = u32::try_from(s).map_err(|_| {
                    "out of range for DateTime (1970-01-01 .. 2106-02-07 06:28:15 UTC)".to_owned()
                })?;
                out.extend_from_slice(&s.to_le_bytes());
                Ok(())
            }
            Scalar::DateTime64 { precision, zone } => {
                let t = datetime64_ticks(v, *precision, zone.tz())?;
                out.extend_from_slice(&t.to_le_bytes());
                Ok(())
            }
            Scalar::Enum8(items) => {
                out.push(enum_value(v, items)? as u8);
                Ok(())
            }
            Scalar::Enum16(items) => {
                out.extend_from_slice(&enum_value(v, items)?.to_le_bytes());
                Ok(())
            }
        }
    }

    /// Appends the Native image of the type's default value.
    pub(crate) fn encode_default(&self, out: &mut Vec<u8>) {
        let zeros = |out: &mut Vec<u8>, n: usize| out.resize(out.len() + n, 0);
        match self {
            Scalar::Int { width, .. } => zeros(out, *width as usize),
            Scalar::Float32 | Scalar::IPv4 | Scalar::Date32(_) | Scalar::DateTime(_) => {
                zeros(out, 4)
            }
            Scalar::Float64 | Scalar::DateTime64 { .. } => zeros(out, 8),
            Scalar::BFloat16 | Scalar::Date(_) => zeros(out, 2),
            Scalar::Decimal { width, .. } => zeros(out, *width as usize),
            Scalar::Bool => zeros(out, 1),
            Scalar::String => out.push(0),
            Scalar::Json => write_str_bytes(out, b"{}"),
            Scalar::FixedString(n) => zeros(out, *n),
            Scalar::Uuid | Scalar::IPv6 => zeros(out, 16),
            // The default of an enum is its smallest value.
            Scalar::Enum8(items) => out.push(items.iter().map(|x| x.1).min().unwrap_or(0) as u8),
            Scalar::Enum16(items) => {
                out.extend_from_slice(&items.iter().map(|x| x.1).min().unwrap_or(0).to_le_bytes())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::time::Zone;

    fn enc(s: &Scalar, v: Value) -> Result<Vec<u8>, Reason> {
        let mut out = Vec::new();
        s.encode(&v, &mut out).map(|_| out)
    }

    #[test]
    fn ints() {
        let u8t = Scalar::Int {
            width: 1,
            signed: false,
        };
        assert_eq!(enc(&u8t, Value::UInt(255)).unwrap(), [255]);
        assert!(enc(&u8t, Value::UInt(300)).is_err());
        assert!(enc(&u8t, Value::Int(-1)).is_err());
        assert!(enc(&u8t, "abc".into()).is_err());
        assert!(enc(&u8t, Value::Float(1.5)).is_err());
        assert_eq!(enc(&u8t, Value::Float(7.0)).unwrap(), [7]);
        assert_eq!(enc(&u8t, " 12 ".into()).unwrap(), [12]);
        let i256 = Scalar::Int {
            width: 32,
            signed: true,
        };
        let min = "-57896044618658097711785492504343953926634992332820282019728792003956564819968";
        let mut expect = vec![0u8; 31];
        expect.push(0x80);
        assert_eq!(enc(&i256, min.into()).unwrap(), expect);
        assert!(enc(&i256, format!("{min}0").into()).is_err());
        assert_eq!(enc(&i256, Value::Int(-1)).unwrap(), vec![0xff; 32]);
        let u256 = Scalar::Int {
            width: 32,
            signed: false,
        };
        let max = "115792089237316195423570985008687907853269984665640564039457584007913129639935";
        assert_eq!(enc(&u256, max.into()).unwrap(), vec![0xff; 32]);
        assert!(
            enc(
                &u256,
                "115792089237316195423570985008687907853269984665640564039457584007913129639936"
                    .into()
            )
            .is_err()
        );
        assert!(enc(&u256, Value::Int(-1)).is_err());
    }

    #[test]
    fn decimals() {
        let d = |p: u32, s: u8, w: u8| Scalar::Decimal {
            width: w,
            scale: s,
            limit: U256::pow10(p).unwrap(),
        };
        let d92 = d(9, 2, 4);
        assert_eq!(enc(&d92, "1.239".into()).unwrap(), 123i32.to_le_bytes());
        assert_eq!(enc(&d92, "-0.5".into()).unwrap(), (-50i32).to_le_bytes());
        assert_eq!(enc(&d92, Value::Float(0.1)).unwrap(), 10i32.to_le_bytes());
        assert_eq!(enc(&d92, "1e2".into()).unwrap(), 10000i32.to_le_bytes());
        assert_eq!(enc(&d92, Value::Int(-3)).unwrap(), (-300i32).to_le_bytes());
        assert_eq!(
            enc(&d92, "9999999.99".into()).unwrap(),
            999999999i32.to_le_bytes()
        );
        assert!(enc(&d92, "10000000".into()).is_err());
        assert!(enc(&d92, "1.2.3".into()).is_err());
        assert!(enc(&d92, "abc".into()).is_err());
    }

    #[test]
    fn dates() {
        let utc = Zone::UTC;
        let tokyo = Zone::named("Asia/Tokyo").unwrap();
        let dt = Scalar::DateTime(tokyo.clone());
        let want = 1_700_000_000u32.to_le_bytes().to_vec();
        assert_eq!(enc(&dt, "2023-11-15 07:13:20".into()).unwrap(), want);
        assert_eq!(enc(&dt, "2023-11-14T22:13:20Z".into()).unwrap(), want);
        assert_eq!(enc(&dt, "2023-11-15T07:13:20+09:00".into()).unwrap(), want);
        assert_eq!(enc(&dt, Value::UInt(1_700_000_000)).unwrap(), want);
        assert_eq!(enc(&dt, "1700000000".into()).unwrap(), want);
        assert!(enc(&dt, Value::Float(1.5)).is_err());
        assert!(enc(&dt, "yesterday".into()).is_err());
        assert!(enc(&dt, Value::Int(-1)).is_err());
        let dt64 = Scalar::DateTime64 {
            precision: 3,
            zone: utc.clone(),
        };
        let t = 1_700_000_000_123i64.to_le_bytes().to_vec();
        assert_eq!(enc(&dt64, "2023-11-14 22:13:20.123".into()).unwrap(), t);
        assert_eq!(enc(&dt64, "2023-11-14 22:13:20.1239".into()).unwrap(), t);
        assert_eq!(enc(&dt64, Value::Float(1_700_000_000.123)).unwrap(), t);
        assert_eq!(enc(&dt64, "1700000000.123".into()).unwrap(), t);
        assert_eq!(
            enc(&dt64, "1969-12-31 23:59:59.5".into()).unwrap(),
            (-500i64).to_le_bytes()
        );
        assert!(enc(&dt64, "2300-01-01 00:00:00".into()).is_err());
        assert_eq!(
            enc(&Scalar::Date(utc.clone()), "2020-01-01".into()).unwrap(),
            18262u16.to_le_bytes()
        );
        assert_eq!(
            enc(&Scalar::Date(utc.clone()), Value::UInt(18262)).unwrap(),
            18262u16.to_le_bytes()
        );
        assert_eq!(
            enc(&Scalar::Date(utc.clone()), Value::UInt(18262 * 86400 + 5)).unwrap(),
            18262u16.to_le_bytes()
        );
        assert!(enc(&Scalar::Date(utc.clone()), "1969-12-31".into()).is_err());
        assert_eq!(
            enc(&Scalar::Date32(utc.clone()), "1900-01-01".into()).unwrap(),
            (-25567i32).to_le_bytes()
        );
    }

    #[test]
    fn misc() {
        assert_eq!(
            enc(&Scalar::Uuid, "00112233-4455-6677-8899-aabbccddeeff".into()).unwrap(),
            [
                0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, 0x00, 0xff, 0xee, 0xdd, 0xcc, 0xbb, 0xaa,
                0x99, 0x88
            ]
        );
        assert_eq!(enc(&Scalar::IPv4, "1.2.3.4".into()).unwrap(), [4, 3, 2, 1]);
        assert_eq!(
            enc(&Scalar::IPv4, Value::UInt(0x01020304)).unwrap(),
            [4, 3, 2, 1]
        );
        assert!(enc(&Scalar::IPv4, "1.2.3".into()).is_err());
        let v6 = enc(&Scalar::IPv6, "2001:db8::1".into()).unwrap();
        assert_eq!(&v6[..4], &[0x20, 0x01, 0x0d, 0xb8]);
        assert_eq!(enc(&Scalar::Bool, "true".into()).unwrap(), [1]);
        assert_eq!(enc(&Scalar::Bool, Value::Int(0)).unwrap(), [0]);
        assert!(enc(&Scalar::Bool, Value::Int(2)).is_err());
        assert_eq!(
            enc(&Scalar::FixedString(4), "ab".into()).unwrap(),
            b"ab\0\0"
        );
        assert!(enc(&Scalar::FixedString(1), "ab".into()).is_err());
        assert_eq!(enc(&Scalar::String, Value::Int(-5)).unwrap(), b"\x02-5");
        let e = Scalar::Enum8(vec![("a".to_owned(), 1i8), ("b".to_owned(), -2)].into());
        assert_eq!(enc(&e, "b".into()).unwrap(), [(-2i8) as u8]);
        assert_eq!(enc(&e, Value::Int(1)).unwrap(), [1]);
        assert!(enc(&e, "c".into()).is_err());
        assert!(enc(&e, Value::Int(3)).is_err());
        let mut out = Vec::new();
        e.encode_default(&mut out);
        assert_eq!(out, [(-2i8) as u8]);
        assert_eq!(
            enc(&Scalar::Float32, "0.1".into()).unwrap(),
            0.1f32.to_le_bytes()
        );
        assert_eq!(
            enc(&Scalar::BFloat16, Value::Float(1.0)).unwrap(),
            0x3f80u16.to_le_bytes()
        );
        assert!(enc(&Scalar::Float64, "x".into()).is_err());
        assert!(enc(&Scalar::Float64, "nan".into()).is_ok());
    }
}
