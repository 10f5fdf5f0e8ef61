//! The JSON scanner: a cursor over one text with the tokens both JSON readers take (white
//! space, literals, strings with their escapes, numbers), the walk over any value that the
//! checker and the converter share, and the string helpers (plain runs eight bytes at a
//! time, keys compared a word at a time, unescaping).

use crate::types::text::number_end;

/// What is wrong at the cursor, which stays on the offending byte (for an unterminated
/// string: on its opening quote).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Bad {
    /// A string that does not end.
    Unterminated,
    /// `\u` without four hex digits after it.
    UnicodeEscape,
    /// A backslash before a byte that is not an escape.
    Escape,
    /// A `\u` escape of half a surrogate pair alone (decoding only).
    LoneSurrogate,
    /// A control character in a string.
    Control,
    /// Something else where a key's string is due.
    Key,
    /// Something else where a `:` is due.
    Colon,
    /// Something else where `,` or `}` is due.
    CommaOrBrace,
    /// Something else where `,` or `]` is due.
    CommaOrBracket,
    /// No value (or no number) where one is due.
    Value,
    /// A number's point without digits after it.
    Fraction,
    /// A number's exponent without digits.
    Exponent,
    /// Arrays and objects nested deeper than the grammar allows.
    TooDeep,
}

/// The reasons the converter gives for a line it leaves to the server.
impl From<Bad> for &'static str {
    fn from(bad: Bad) -> &'static str {
        match bad {
            Bad::Unterminated => "an unterminated string",
            Bad::UnicodeEscape => "a bad \\u escape",
            Bad::Escape => "an unknown escape",
            Bad::LoneSurrogate => "a lone surrogate",
            Bad::Control => "a control character in a string",
            Bad::Key => "expected a string",
            Bad::Colon | Bad::CommaOrBrace | Bad::CommaOrBracket => "malformed JSON",
            Bad::Value | Bad::Fraction | Bad::Exponent => "expected a number",
            Bad::TooDeep => "JSON nested too deep",
        }
    }
}

/// Which JSON a walk over values takes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Grammar {
    /// Numbers may have leading zeros (`01`), as ClickHouse reads them; else JSON's grammar.
    pub(crate) leading_zeros: bool,
    /// How many arrays and objects may enclose one another, the outermost counted.
    pub(crate) max_depth: u32,
}

/// A cursor over one text.
pub(crate) struct Cursor<'a> {
    pub(crate) s: &'a [u8],
    pub(crate) i: usize,
}

impl<'a> Cursor<'a> {
    #[inline]
    pub(crate) fn new(s: &'a [u8]) -> Self {
        Self { s, i: 0 }
    }

    #[inline]
    pub(crate) fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    #[inline]
    pub(crate) fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\r' | b'\n')) {
            self.i += 1;
        }
    }

    #[inline]
    pub(crate) fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    #[inline]
    pub(crate) fn lit(&mut self, word: &[u8]) -> bool {
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
    pub(crate) fn string_raw(&mut self) -> Result<(&'a [u8], bool), Bad> {
        if self.peek() != Some(b'"') {
            return Err(Bad::Key);
        }
        let open = self.i;
        self.i += 1;
        let start = self.i;
        let mut escaped = false;
        loop {
            self.i = plain_run(self.s, self.i);
            let Some(&c) = self.s.get(self.i) else {
                self.i = open;
                return Err(Bad::Unterminated);
            };
            match c {
                b'"' => {
                    self.i += 1;
                    return Ok((&self.s[start..self.i - 1], escaped));
                }
                b'\\' => {
                    escaped = true;
                    self.i += 1;
                    match self.peek() {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => self.i += 1,
                        Some(b'u') => {
                            let hex = self.s.get(self.i + 1..self.i + 5);
                            if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                                return Err(Bad::UnicodeEscape);
                            }
                            self.i += 5;
                        }
                        _ => return Err(Bad::Escape),
                    }
                }
                // A control character: `plain_run` stops at nothing else.
                _ => return Err(Bad::Control),
            }
        }
    }

    /// A JSON number at the cursor (strict grammar: no leading zeros), as its text.
    pub(crate) fn number(&mut self) -> Result<&'a [u8], Bad> {
        let start = self.i;
        let end = number_end(self.s, start).ok_or(Bad::Value)?;
        self.i = end;
        Ok(&self.s[start..end])
    }

    /// A number the way ClickHouse reads one: JSON's, but with leading zeros allowed.
    fn number_with_leading_zeros(&mut self) -> Result<(), Bad> {
        let start = self.i;
        self.eat(b'-');
        let digits = |p: &mut Self| {
            let s = p.i;
            while p.peek().is_some_and(|c| c.is_ascii_digit()) {
                p.i += 1;
            }
            p.i > s
        };
        if !digits(self) {
            self.i = start;
            return Err(Bad::Value);
        }
        if self.eat(b'.') && !digits(self) {
            return Err(Bad::Fraction);
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if !digits(self) {
                return Err(Bad::Exponent);
            }
        }
        Ok(())
    }

    /// The text of a number, plain or in quotes (`"123"`); `quoted` says which.
    pub(crate) fn number_text(&mut self) -> Result<(&'a [u8], bool), &'static str> {
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

    /// Reads a JSON string value and calls `f` with its decoded bytes (decoded into `text`
    /// when it holds escapes).
    #[inline]
    pub(crate) fn with_string<T>(
        &mut self,
        text: &mut Vec<u8>,
        f: impl FnOnce(&[u8]) -> Result<T, &'static str>,
    ) -> Result<T, &'static str> {
        if self.peek() != Some(b'"') {
            return Err("a value that is not a string");
        }
        let (raw, escaped) = self.string_raw()?;
        if escaped {
            text.clear();
            unescape(raw, text)?;
            f(text)
        } else {
            f(raw)
        }
    }

    /// Walks over one value (after white space) that `depth` arrays and objects enclose.
    pub(crate) fn skip_value(&mut self, depth: u32, g: Grammar) -> Result<(), Bad> {
        self.ws();
        match self.peek() {
            Some(b'{') => self.object(depth, g, &mut |_: &'a [u8], _: bool| {}),
            Some(b'[') => self.array(depth, g),
            Some(b'"') => self.string_raw().map(|_| ()),
            Some(b't') if self.lit(b"true") => Ok(()),
            Some(b'f') if self.lit(b"false") => Ok(()),
            Some(b'n') if self.lit(b"null") => Ok(()),
            Some(b't' | b'f' | b'n') => Err(Bad::Value),
            _ if g.leading_zeros => self.number_with_leading_zeros(),
            _ => self.number().map(|_| ()),
        }
    }

    /// Walks over the object at the cursor (on its `{`) that `depth` arrays and objects
    /// enclose, calling `on_key` with each of its own keys (raw, and whether it holds
    /// escapes).
    pub(crate) fn object<F: FnMut(&'a [u8], bool)>(
        &mut self,
        depth: u32,
        g: Grammar,
        on_key: &mut F,
    ) -> Result<(), Bad> {
        if depth >= g.max_depth {
            return Err(Bad::TooDeep);
        }
        self.i += 1;
        self.ws();
        if self.eat(b'}') {
            return Ok(());
        }
        loop {
            self.ws();
            let (key, escaped) = self.string_raw()?;
            on_key(key, escaped);
            self.ws();
            if !self.eat(b':') {
                return Err(Bad::Colon);
            }
            self.skip_value(depth + 1, g)?;
            self.ws();
            if self.eat(b',') {
                continue;
            }
            if self.eat(b'}') {
                return Ok(());
            }
            return Err(Bad::CommaOrBrace);
        }
    }

    /// Walks over the array at the cursor (on its `[`).
    fn array(&mut self, depth: u32, g: Grammar) -> Result<(), Bad> {
        if depth >= g.max_depth {
            return Err(Bad::TooDeep);
        }
        self.i += 1;
        self.ws();
        if self.eat(b']') {
            return Ok(());
        }
        loop {
            self.skip_value(depth + 1, g)?;
            self.ws();
            if self.eat(b',') {
                continue;
            }
            if self.eat(b']') {
                return Ok(());
            }
            return Err(Bad::CommaOrBracket);
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
pub(crate) struct KeyText {
    pub(crate) text: Box<[u8]>,
    head: u64,
    mask: u64,
}

impl KeyText {
    /// The spelled key `"name":` of a column, `None` for a name JSON would spell with
    /// escapes.
    pub(crate) fn of_name(name: &str) -> Option<Self> {
        let plain = name.bytes().all(|b| b != b'"' && b != b'\\' && b >= 0x20);
        plain.then(|| KeyText::new([b"\"", name.as_bytes(), b"\":"].concat()))
    }

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
    pub(crate) fn starts(&self, s: &[u8]) -> bool {
        match s.first_chunk::<8>() {
            Some(w) => {
                u64::from_le_bytes(*w) & self.mask == self.head
                    && (self.text.len() <= 8 || s[8..].starts_with(&self.text[8..]))
            }
            None => s.starts_with(&self.text),
        }
    }
}

/// Decodes the raw inner bytes of a JSON string (escapes included) into `out`.
pub(crate) fn unescape(raw: &[u8], out: &mut Vec<u8>) -> Result<(), Bad> {
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
            _ => return Err(Bad::Escape),
        };
        if e != b'u' {
            out.push(simple);
            continue;
        }
        let hex4 = |at: usize| -> Result<u32, Bad> {
            let h = raw.get(at..at + 4).ok_or(Bad::UnicodeEscape)?;
            let mut v = 0u32;
            for &d in h {
                v = v * 16 + (d as char).to_digit(16).ok_or(Bad::UnicodeEscape)?;
            }
            Ok(v)
        };
        let u = hex4(i)?;
        i += 4;
        let code = match u {
            0xD800..=0xDBFF => {
                if raw.get(i..i + 2) != Some(b"\\u") {
                    return Err(Bad::LoneSurrogate);
                }
                let lo = hex4(i + 2)?;
                if !(0xDC00..=0xDFFF).contains(&lo) {
                    return Err(Bad::LoneSurrogate);
                }
                i += 6;
                0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00)
            }
            0xDC00..=0xDFFF => return Err(Bad::LoneSurrogate),
            u => u,
        };
        let ch = char::from_u32(code).ok_or(Bad::UnicodeEscape)?;
        let mut tmp = [0u8; 4];
        out.extend_from_slice(ch.encode_utf8(&mut tmp).as_bytes());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_runs_stop_at_quotes_backslashes_and_control_characters() {
        for (s, want) in [
            (&b""[..], 0),
            (b"abc", 3),
            (b"abcdefghijkl\"", 12),
            (b"abcdefgh\\", 8),
            (b"abcdefghij\nk", 10),
            (b"\xff\xfe\x80 bytes\"", 9),
            (b"\"", 0),
        ] {
            assert_eq!(plain_run(s, 0), want, "{:?}", String::from_utf8_lossy(s));
        }
    }

    #[test]
    fn strings_leave_the_cursor_on_what_is_wrong() {
        let read = |s: &'static [u8]| {
            let mut c = Cursor::new(s);
            let r = c.string_raw();
            (r, c.i)
        };
        assert_eq!(read(br#""a\"b" x"#), (Ok((&br#"a\"b"#[..], true)), 6));
        assert_eq!(read(b"\"abc"), (Err(Bad::Unterminated), 0));
        assert_eq!(read(br#""a\x""#), (Err(Bad::Escape), 3));
        assert_eq!(read(br#""a\u12g4""#), (Err(Bad::UnicodeEscape), 3));
        assert_eq!(read(b"\"ab\tc\""), (Err(Bad::Control), 3));
        assert_eq!(read(b"x"), (Err(Bad::Key), 0));
    }

    #[test]
    fn unescaping() {
        let mut out = Vec::new();
        unescape(br#"a\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00"#, &mut out).unwrap();
        assert_eq!(out, "a\"\\/\u{8}\u{c}\n\r\té😀".as_bytes());
        for lone in [&br"\ud83d"[..], br"\ude00", br"\ud83dx", br"\ud83d\u0041"] {
            assert_eq!(unescape(lone, &mut Vec::new()), Err(Bad::LoneSurrogate));
        }
    }

    /// The walk takes JSON's numbers, or ClickHouse's with leading zeros, and nests only
    /// as deep as its grammar says.
    #[test]
    fn walks_over_values() {
        let json = Grammar {
            leading_zeros: false,
            max_depth: 3,
        };
        let clickhouse = Grammar {
            leading_zeros: true,
            max_depth: 3,
        };
        let walk = |s: &[u8], g| {
            let mut c = Cursor::new(s);
            c.skip_value(0, g).map(|()| c.i)
        };
        assert_eq!(walk(b" [1, {\"a\": [true]}] x", json), Ok(19));
        assert_eq!(walk(b"[[[1]]]", json), Ok(7));
        assert_eq!(walk(b"[[[[]]]]", json), Err(Bad::TooDeep));
        assert_eq!(walk(b"01", json), Ok(1));
        assert_eq!(walk(b"01", clickhouse), Ok(2));
        assert_eq!(walk(b"1.", clickhouse), Err(Bad::Fraction));
        assert_eq!(walk(b"1e", clickhouse), Err(Bad::Exponent));
        assert_eq!(walk(b"tru", json), Err(Bad::Value));
        assert_eq!(walk(b"[1,]", json), Err(Bad::Value));
        assert_eq!(walk(b"[1 2]", json), Err(Bad::CommaOrBracket));
        assert_eq!(walk(b"{\"a\" 1}", json), Err(Bad::Colon));
        assert_eq!(walk(b"{\"a\": 1 \"b\"}", json), Err(Bad::CommaOrBrace));
        let mut keys = Vec::new();
        let mut c = Cursor::new(br#"{"a": {"x": 1}, "b\n": []}"#);
        c.object(0, json, &mut |k, escaped| keys.push((k, escaped)))
            .unwrap();
        assert_eq!(keys, [(&b"a"[..], false), (&br"b\n"[..], true)]);
    }
}
