//! The JSON object checker: whether a text is one JSON object the way ClickHouse's
//! JSONEachRow reads it, with the byte position of what is wrong, and its top-level keys.

use std::fmt;

use super::scan::{Bad, Cursor, Grammar, unescape};

/// JSON as ClickHouse's JSONEachRow reads it: numbers may have leading zeros.
const CLICKHOUSE: Grammar = Grammar {
    leading_zeros: true,
    max_depth: 512,
};

/// What [`check_object`] found in a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectInfo {
    /// The object has a top-level `_insert_id` key.
    pub has_insert_id: bool,
}

/// Why a text is not a JSON object, and where ([`read_object`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonError {
    /// The offset in the text of the byte that is wrong (its length: the text ended).
    pub offset: usize,
    /// What is wrong, with the position (1-based) of the byte in the text.
    pub message: String,
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for JsonError {}

/// Checks that `line` is exactly one JSON object, the way ClickHouse's JSONEachRow reads it:
/// strings may hold any bytes but control characters (ClickHouse strings are bytes, and its
/// own JSON output does not validate UTF-8), numbers of any width are fine. Returns why not,
/// with the byte position, when it is not.
pub fn check_object(line: &[u8]) -> Result<ObjectInfo, String> {
    let mut info = ObjectInfo {
        has_insert_id: false,
    };
    let end = read_object(line, |key| {
        info.has_insert_id |= key == b"_insert_id";
    })
    .map_err(|e| e.message)?;
    let mut p = Cursor { s: line, i: end };
    p.ws();
    if p.i != line.len() {
        return Err(format!(
            "unexpected data after the object at byte {}",
            p.i + 1
        ));
    }
    Ok(info)
}

/// Reads the JSON object at the start of `text` (after white space) as [`check_object`]
/// does, calling `on_key` with each of its top-level keys (escapes decoded; a key with half
/// a surrogate pair alone as it is spelled), and returns where the object ends: what comes
/// after it is not read. For texts of many objects, such as a request body.
pub fn read_object(text: &[u8], mut on_key: impl FnMut(&[u8])) -> Result<usize, JsonError> {
    let mut p = Cursor::new(text);
    p.ws();
    if p.peek() != Some(b'{') {
        let message = match p.peek() {
            None => "an empty line is not a JSON object".into(),
            Some(c) => format!(
                "expected a JSON object, found {:?} at byte {}",
                c as char,
                p.i + 1
            ),
        };
        return Err(JsonError {
            offset: p.i,
            message,
        });
    }
    let mut decoded = Vec::new();
    let walked = p.object(0, CLICKHOUSE, &mut |key, escaped| {
        if escaped {
            decoded.clear();
            if unescape(key, &mut decoded).is_ok() {
                return on_key(&decoded);
            }
        }
        on_key(key)
    });
    match walked {
        Ok(()) => Ok(p.i),
        Err(bad) => Err(JsonError {
            offset: p.i,
            message: message(&p, bad),
        }),
    }
}

/// What is wrong at the cursor, in words, with the position.
fn message(p: &Cursor<'_>, bad: Bad) -> String {
    let what = match bad {
        Bad::TooDeep => return "JSON nested too deep".into(),
        Bad::Unterminated => {
            return format!("unterminated string starting at byte {}", p.i + 1);
        }
        Bad::UnicodeEscape => "expected 4 hex digits after \\u",
        Bad::Escape => "invalid escape",
        // Strings are not decoded while checked.
        Bad::LoneSurrogate => "a lone surrogate",
        Bad::Control => "control character in a string",
        Bad::Key => "expected a key string",
        Bad::Colon => "expected ':'",
        Bad::CommaOrBrace => "expected ',' or '}'",
        Bad::CommaOrBracket => "expected ',' or ']'",
        Bad::Value => "expected a value",
        Bad::Fraction => "expected digits after '.'",
        Bad::Exponent => "expected an exponent",
    };
    match p.peek() {
        None => format!("{what}, found the end of the line"),
        Some(c) => format!("{what}, found {:?} at byte {}", c as char, p.i + 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_what_clickhouse_writes() {
        assert!(check_object(br#"{}"#).is_ok());
        assert!(check_object(br#" {"a": 1, "b": [1, 2.5e-3, -7], "c": {"d": null}} "#).is_ok());
        // Wider than 64 bits, quoted 64-bit, raw non-UTF-8 bytes in a string.
        assert!(check_object(br#"{"u256": 115792089237316195423570985008687907853269984665640564039457584007913129639935, "i": "18446744073709551615"}"#).is_ok());
        assert!(check_object(b"{\"s\": \"\xff\xfe bytes\"}").is_ok());
        assert!(check_object(br#"{"e": "\u00e9\n\"x\""}"#).is_ok());
        assert!(
            check_object(br#"{"_insert_id": "x"}"#)
                .unwrap()
                .has_insert_id
        );
        assert!(
            !check_object(br#"{"a": {"_insert_id": 1}}"#)
                .unwrap()
                .has_insert_id
        );
    }

    #[test]
    fn rejects_broken_lines_with_a_position() {
        for (line, want) in [
            (&br#"{"a": 1"#[..], "expected ',' or '}'"),
            (br#"[1]"#, "expected a JSON object"),
            (br#"{"a": tru}"#, "expected a value"),
            (
                br#"{"a": 1} x"#,
                "unexpected data after the object at byte 10",
            ),
            (br#"{a: 1}"#, "expected a key string"),
            (br#"{"a": "x}"#, "unterminated string"),
            (br#"{"a": 01.}"#, "expected digits after '.'"),
            (b"", "empty line"),
        ] {
            let err = check_object(line).unwrap_err();
            assert!(
                err.contains(want),
                "{:?}: {err}",
                String::from_utf8_lossy(line)
            );
        }
    }

    /// Each message names the byte, as the checker always has.
    #[test]
    fn messages_name_the_byte() {
        for (line, want) in [
            (
                &br#"{"a": 1"#[..],
                "expected ',' or '}', found the end of the line",
            ),
            (br#"{"a": tru}"#, "expected a value, found 't' at byte 7"),
            (br#"{"a": "x}"#, "unterminated string starting at byte 7"),
            (br#"{"a": "\q"}"#, "invalid escape, found 'q' at byte 9"),
            (
                br#"{"a": "\u12"}"#,
                "expected 4 hex digits after \\u, found 'u' at byte 9",
            ),
            (
                b"{\"a\": \"\t\"}",
                "control character in a string, found '\\t' at byte 8",
            ),
            (br#"{"a" 1}"#, "expected ':', found '1' at byte 6"),
            (
                br#"{"a": [1 2]}"#,
                "expected ',' or ']', found '2' at byte 10",
            ),
            (br#"{"a": 1e}"#, "expected an exponent, found '}' at byte 9"),
            (br#"  [1]"#, "expected a JSON object, found '[' at byte 3"),
        ] {
            assert_eq!(
                check_object(line).unwrap_err(),
                want,
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
        let deep = format!("{{\"a\": {}{}}}", "[".repeat(511), "]".repeat(511));
        assert!(check_object(deep.as_bytes()).is_ok());
        let deeper = format!("{{\"a\": {}{}}}", "[".repeat(512), "]".repeat(512));
        assert_eq!(
            check_object(deeper.as_bytes()).unwrap_err(),
            "JSON nested too deep"
        );
    }

    /// Keys come decoded, in order, only the object's own; the object ends where it ends.
    #[test]
    fn reads_objects_and_their_keys() {
        let text =
            br#" {"a": 1, "b\u0063": {"x": 2}, "_insert_\u0069d": 3, "\ud800": 4}{"next": 1}"#;
        let mut keys = Vec::new();
        let end =
            read_object(text, |k| keys.push(String::from_utf8_lossy(k).into_owned())).unwrap();
        assert_eq!(keys, ["a", "bc", "_insert_id", r"\ud800"]);
        assert_eq!(&text[end..], br#"{"next": 1}"#);
        assert!(
            check_object(br#"{"_insert_\u0069d": 3}"#)
                .unwrap()
                .has_insert_id
        );
        let err = read_object(b"{\"a\":\n}", |_| {}).unwrap_err();
        assert_eq!(err.offset, 6);
        assert_eq!(err.message, "expected a value, found '}' at byte 7");
        assert_eq!(err.to_string(), err.message);
    }
}
