//! Parsers of the text spellings the encoders read exactly: JSON numbers (with fast paths
//! for the usual ones), integers of every width, dates and date-times, IPv4 addresses and
//! UUIDs. Pure functions over bytes: no allocation, no I/O.
//!
//! Each parser accepts only spellings whose meaning is certain; what it refuses (`None`, or
//! `Err` with the reason) is left to a more general reader by its caller.

use uuid::Uuid;

use super::time::LocalTime;

/// Why a text is not read (a reason for a person, fixed at compile time).
pub(crate) type Reason = &'static str;

// ---- Numbers ---------------------------------------------------------------------------

/// The end of a JSON number starting at `i` (strict grammar: `-?(0|[1-9][0-9]*)`, an
/// optional fraction and exponent), if one does.
pub(crate) fn number_end(s: &[u8], mut i: usize) -> Option<usize> {
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

/// The fast path of the usual number: an unsigned JSON integer of at most 19 digits (`0` or
/// no leading zero) that the next byte ends (not a digit, `.`, `e` or `E`): its value and
/// end. `None` for anything else, which the general path then reads (and judges).
#[inline]
pub(crate) fn plain_digits(s: &[u8], i: usize) -> Option<(u64, usize)> {
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
/// complement) and the end. `None` sends the text to the general path ([`put_int`]).
#[inline]
pub(crate) fn plain_int(s: &[u8], i: usize, bytes: u8, signed: bool) -> Option<(u64, usize)> {
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
pub(crate) fn plain_f64(s: &[u8], i: usize) -> Option<(f64, usize)> {
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

/// A number's text (a JSON number) read as a float of any width, correctly rounded.
fn parse_float<F: std::str::FromStr>(t: &[u8]) -> Result<F, Reason> {
    let text = std::str::from_utf8(t).map_err(|_| "not a number")?;
    text.parse().map_err(|_| "not a number")
}

/// A JSON number's text, correctly rounded to `f64`.
pub(crate) fn parse_f64(t: &[u8]) -> Result<f64, Reason> {
    if let Some((m, k)) = simple_decimal(t)
        && m <= 1 << 53
        && k <= 22
    {
        // Clinger's fast path: both operands are exact, so the one division rounds correctly.
        let v = m as f64 / POW10_F64[k];
        return Ok(if t[0] == b'-' { -v } else { v });
    }
    parse_float(t)
}

/// A JSON number's text, correctly rounded to `f32` (directly, not through `f64`).
pub(crate) fn parse_f32(t: &[u8]) -> Result<f32, Reason> {
    if let Some((m, k)) = simple_decimal(t)
        && m <= 1 << 24
        && k <= 10
    {
        let v = m as f32 / POW10_F32[k];
        return Ok(if t[0] == b'-' { -v } else { v });
    }
    parse_float(t)
}

/// Writes the integer `text` (`-?(0|[1-9][0-9]*)`) as a `bytes`-wide little-endian integer,
/// if it is one and in range.
pub(crate) fn put_int(
    out: &mut Vec<u8>,
    text: &[u8],
    bytes: usize,
    signed: bool,
) -> Result<(), Reason> {
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
    // Up to 256 bits.
    let mag = U256::parse_digits(ds).ok_or("an integer out of range")?;
    let limbs = mag.0;
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
    let v = if neg { mag.neg() } else { mag };
    out.extend_from_slice(&v.to_le_bytes()[..bytes]);
    Ok(())
}

/// A 256-bit unsigned integer as four little-endian u64 limbs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct U256(pub(crate) [u64; 4]);

impl U256 {
    pub(crate) const ZERO: U256 = U256([0; 4]);

    pub(crate) fn from_u128(v: u128) -> Self {
        U256([v as u64, (v >> 64) as u64, 0, 0])
    }

    /// `self * m + a`, `None` on overflow.
    pub(crate) fn mul_add(self, m: u64, a: u64) -> Option<Self> {
        let mut out = [0u64; 4];
        let mut carry = a as u128;
        for (i, limb) in self.0.iter().enumerate() {
            let t = (*limb as u128) * (m as u128) + carry;
            out[i] = t as u64;
            carry = t >> 64;
        }
        if carry != 0 { None } else { Some(U256(out)) }
    }

    pub(crate) fn pow10(n: u32) -> Option<Self> {
        let mut v = U256::from_u128(1);
        for _ in 0..n {
            v = v.mul_add(10, 0)?;
        }
        Some(v)
    }

    /// Decimal digits (only `0-9`), `None` when they are not or do not fit.
    pub(crate) fn parse_digits(d: &[u8]) -> Option<Self> {
        let mut v = U256::ZERO;
        for &b in d {
            if !b.is_ascii_digit() {
                return None;
            }
            v = v.mul_add(10, (b - b'0') as u64)?;
        }
        Some(v)
    }

    pub(crate) fn cmp_limbs(&self, other: &Self) -> std::cmp::Ordering {
        for i in (0..4).rev() {
            match self.0[i].cmp(&other.0[i]) {
                std::cmp::Ordering::Equal => continue,
                o => return o,
            }
        }
        std::cmp::Ordering::Equal
    }

    pub(crate) fn is_zero(&self) -> bool {
        self.0 == [0; 4]
    }

    pub(crate) fn to_u128(self) -> Option<u128> {
        if self.0[2] != 0 || self.0[3] != 0 {
            None
        } else {
            Some(self.0[0] as u128 | ((self.0[1] as u128) << 64))
        }
    }

    /// Two's complement negation.
    pub(crate) fn neg(self) -> Self {
        let mut out = [0u64; 4];
        let mut carry = 1u128;
        for (o, limb) in out.iter_mut().zip(self.0) {
            let t = (!limb) as u128 + carry;
            *o = t as u64;
            carry = t >> 64;
        }
        U256(out)
    }

    /// The 32 little-endian bytes; the first `n` are the image at an `n`-byte width of a
    /// value that fits it.
    pub(crate) fn to_le_bytes(self) -> [u8; 32] {
        let mut le = [0u8; 32];
        for (k, l) in self.0.iter().enumerate() {
            le[k * 8..k * 8 + 8].copy_from_slice(&l.to_le_bytes());
        }
        le
    }
}

// ---- Dates and times -------------------------------------------------------------------

/// ASCII digits as a number (`None` for an empty text or another byte).
fn digits(s: &[u8]) -> Option<i64> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(s.iter().fold(0i64, |v, d| v * 10 + i64::from(d - b'0')))
}

/// `YYYY-MM-DD`, a valid calendar date: year, month, day.
pub(crate) fn parse_date(s: &[u8]) -> Option<(i64, i64, i64)> {
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

/// `YYYY-MM-DD hh:mm:ss[.f…]` with at most `precision` fraction digits: the local time and
/// the fraction in units of `10^-precision` s.
pub(crate) fn parse_date_time(s: &[u8], precision: u8) -> Result<(LocalTime, i64), Reason> {
    const BAD: &str = "not a YYYY-MM-DD hh:mm:ss date-time";
    if s.len() < 19 || s[10] != b' ' || s[13] != b':' || s[16] != b':' {
        return Err(BAD);
    }
    let (year, month, day) = parse_date(&s[..10]).ok_or(BAD)?;
    let hour = digits(&s[11..13]).ok_or(BAD)?;
    let minute = digits(&s[14..16]).ok_or(BAD)?;
    let second = digits(&s[17..19]).ok_or(BAD)?;
    if hour > 23 || minute > 59 || second > 59 {
        return Err(BAD);
    }
    let frac = match &s[19..] {
        [] => 0,
        [b'.', f @ ..] if !f.is_empty() && f.len() <= precision as usize => {
            digits(f).ok_or(BAD)? * 10i64.pow(u32::from(precision) - f.len() as u32)
        }
        _ => return Err("a date-time spelling outside the fast path"),
    };
    let at = LocalTime {
        year,
        month,
        day,
        hour,
        minute,
        second,
    };
    Ok((at, frac))
}

// ---- Addresses and ids -----------------------------------------------------------------

/// A dotted-decimal IPv4 address as its `u32` value: four decimal octets of 0..=255, no
/// sign, no leading zeros (a spelling whose meaning could differ is not read). The same
/// spellings as the standard library's `Ipv4Addr` parser, without the UTF-8 check.
pub(crate) fn parse_ipv4(s: &[u8]) -> Option<u32> {
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

/// A UUID in its usual spelling: `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` (hex digits of
/// either case).
pub(crate) fn parse_uuid(s: &[u8]) -> Option<Uuid> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
                // Floats: the general path reads the JSON number, then its text.
                if let Some((v, stop)) = plain_f64(s, 0) {
                    let end = number_end(s, 0).unwrap_or_else(|| panic!("{line:?}"));
                    let want = parse_f64(&s[..end]).unwrap_or_else(|e| panic!("{line:?}: {e}"));
                    assert_eq!(v.to_bits(), want.to_bits(), "{line:?}");
                    assert_eq!(end, stop, "{line:?}");
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

    #[test]
    fn wide_integers() {
        let put = |t: &str, bytes, signed| {
            let mut out = Vec::new();
            put_int(&mut out, t.as_bytes(), bytes, signed).map(|()| out)
        };
        let u256_max =
            "115792089237316195423570985008687907853269984665640564039457584007913129639935";
        assert_eq!(put(u256_max, 32, false).unwrap(), vec![0xff; 32]);
        assert!(put(&format!("{u256_max}0"), 32, false).is_err());
        assert_eq!(
            put("-170141183460469231731687303715884105728", 16, true).unwrap(),
            i128::MIN.to_le_bytes()
        );
        assert!(put("170141183460469231731687303715884105728", 16, true).is_err());
        assert_eq!(
            put("18446744073709551616", 16, true).unwrap(),
            (1i128 << 64).to_le_bytes()
        );
        assert!(put("-0", 8, true).is_err());
        assert!(put("-1", 16, false).is_err());
        assert_eq!(U256::parse_digits(b"12a"), None);
        assert_eq!(
            U256::pow10(3).unwrap().to_le_bytes()[..2],
            1000u16.to_le_bytes()
        );
        assert_eq!(U256::from_u128(1).neg().to_le_bytes(), [0xff; 32]);
    }

    #[test]
    fn dates_and_times() {
        assert_eq!(parse_date(b"2024-02-29"), Some((2024, 2, 29)));
        for bad in [
            "2023-02-29",
            "2024-13-01",
            "2024-00-10",
            "2024-01-32",
            "2024-1-01",
            "2024/01/01",
            "+024-01-01",
        ] {
            assert_eq!(parse_date(bad.as_bytes()), None, "{bad}");
        }
        let (at, frac) = parse_date_time(b"2024-01-01 09:00:00.5", 3).unwrap();
        assert_eq!((at.hour, at.minute, at.second, frac), (9, 0, 0, 500));
        assert_eq!(at.seconds(), 1704099600);
        assert!(parse_date_time(b"2024-01-01 09:00:00.5000", 3).is_err());
        assert!(parse_date_time(b"2024-01-01T09:00:00", 0).is_err());
        assert!(parse_date_time(b"2024-01-01 24:00:00", 0).is_err());
        assert!(parse_date_time(b"2024-01-01 09:00:00.", 3).is_err());
    }

    /// The IPv4 reader takes exactly the spellings the standard library's does.
    #[test]
    fn ipv4_as_the_standard_library_reads_it() {
        for text in [
            "1.2.3.4",
            "0.0.0.0",
            "255.255.255.255",
            "256.1.1.1",
            "01.2.3.4",
            "1.2.3",
            "1.2.3.4.5",
            "1..3.4",
            "1.2.3.4 ",
            " 1.2.3.4",
            "+1.2.3.4",
            "1.2.3.0004",
            "1.2.3.a",
            "",
            "...",
            "10.0.0.1",
            "192.168.001.1",
        ] {
            let std = text.parse::<std::net::Ipv4Addr>().ok().map(u32::from);
            assert_eq!(parse_ipv4(text.as_bytes()), std, "{text:?}");
        }
    }

    #[test]
    fn uuids() {
        let id = "00112233-4455-6677-8899-AABBCCDDEEFF";
        assert_eq!(parse_uuid(id.as_bytes()), Uuid::parse_str(id).ok());
        for bad in [
            "00112233445566778899aabbccddeeff",
            "{00112233-4455-6677-8899-aabbccddeeff}",
            "00112233-4455-6677-8899-aabbccddeefg",
            "0011223-34455-6677-8899-aabbccddeeff",
        ] {
            assert_eq!(parse_uuid(bad.as_bytes()), None, "{bad}");
        }
    }
}
