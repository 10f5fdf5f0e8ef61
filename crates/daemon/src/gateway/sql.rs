//! The SQL front end of the chasyncd ingestion gateway: it recognises the `INSERT` statements
//! that ClickHouse clients send over HTTP, finds where the data after them starts, and knows
//! which input formats can be coalesced by concatenating request bodies.
//!
//! # How ClickHouse forms the query text (26.9, checked against the server)
//!
//! The query text is the `query` URL parameter, then `"\n"`, then the request body. With no
//! `query` parameter, or an empty one (`query=`), it is the body alone. The statement is lexed
//! from the start of that text; for an `INSERT` the rest of the text (and of the body) is data:
//!
//! * `... FORMAT <name>`: the data starts right after the name, after any run of spaces, tabs and
//!   form feeds, then one optional `\r`, then one optional `\n`. A `;` right after the name is a
//!   syntax error (code 62). Anything else (`SETTINGS ...`, `-- comment`, `/**/`) is data.
//! * `... VALUES`: the data starts at the first byte after `VALUES` that is not whitespace or a
//!   comment. `VALUES;` means "no data" (and anything after the `;` is a multi-statement error).
//!
//! Only the statement is subject to `max_query_size` (default 256 KiB): a token that ends beyond
//! it is the syntax error "Max query size exceeded". The data can be of any size.
//!
//! # Use
//!
//! Call [`classify`] with the decoded (and decompressed) `query` parameter and the first bytes of
//! the body. It answers [`Classified::NeedMore`] until it has seen the end of the statement; feed
//! it a longer head (or say the body is complete) and call again. It never asks for more once
//! `query.len() + 1 + body_head.len()` exceeds `max_query_size + 1`. The result for an `INSERT`
//! says where the data starts ([`DataStart`]); look its format up with [`Format::info`] (the
//! core's catalog, [`chasync_core::format_info`]) to learn whether bodies in that format can be
//! concatenated.
#![forbid(unsafe_code)]

use std::borrow::Cow;
use std::fmt;

use chasync_core::{FormatInfo, format_info};

/// ClickHouse's default `max_query_size`: 262144 bytes (256 KiB).
pub const DEFAULT_MAX_QUERY_SIZE: usize = 262_144;

/// ClickHouse shows at most this many bytes of the query after the failing position.
const SHOW_CHARS_ON_SYNTAX_ERROR: usize = 160;

/// Bytes kept beyond `max_query_size` (enough to quote the text after an error position).
const TAIL_SLACK: usize = 256;

/// Heredoc tags (`$tag$`) longer than this are not looked for (bounds the search cost).
const MAX_HEREDOC_TAG: usize = 1024;

// ------------------------------------------------------------------------------------------------
// Public types
// ------------------------------------------------------------------------------------------------

/// What a request's SQL is, as far as the gateway is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Classified {
    /// Not an `INSERT INTO` statement (SELECT, DESCRIBE, SHOW, EXISTS, CREATE, `WITH ... INSERT`,
    /// an empty query, `INSERT` not followed by `INTO`, text that does not lex, ...). The gateway
    /// passes the request through; ClickHouse gives the answer (or the error).
    NotInsert,
    /// An `INSERT INTO <table> [(columns)] [SETTINGS ...] FORMAT <name> | VALUES` whose data follows
    /// the statement: the statement the gateway can coalesce.
    Insert(InsertStatement),
    /// `INSERT INTO [TABLE] FUNCTION ...`: an insert into a table function. Pass it through.
    InsertFunction,
    /// `INSERT INTO <table> [(columns)] [SETTINGS ...] SELECT | WITH | FROM <t> | (<subquery>)`: the
    /// rows come from a query, not from the body. Pass it through.
    InsertSelect,
    /// An insert whose statement uses a construct this module does not model; see
    /// [`PassThrough`]. Pass it through.
    InsertOther(PassThrough),
    /// The body head ends before the statement does: call again with more of the body (or with
    /// `body_complete = true` once the whole body is there).
    NeedMore,
    /// The statement is an `INSERT INTO` that ClickHouse would refuse; answer with this error.
    Error(SqlError),
}

/// Why an insert is classified [`Classified::InsertOther`] rather than parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PassThrough {
    /// The column list uses a matcher: `*`, `t.*`, `COLUMNS('re')` (with any transformers).
    ColumnMatcher,
    /// The column list has a `{name:Type}` query parameter (ClickHouse rejects it; let it say so).
    ColumnParameter,
    /// A `SETTINGS` value that is not a number, string or boolean literal: `NULL`, `DEFAULT`,
    /// `inf`/`nan`, a `{param:Type}` substitution, a map `{'k':'v'}`, a function call
    /// (`disk(...)`), a name with no value (`SETTINGS async_insert`), an integer beyond 64 bits or
    /// a hexadecimal float. The rest of the statement parsed fine.
    SettingValue,
    /// `FORMAT {name:Identifier}` (ClickHouse 26.9 answers 500 LOGICAL_ERROR for it).
    FormatParameter,
    /// `FROM INFILE '...'` (a client-side construct).
    FromInfile,
    /// A quoted name or string decodes to bytes that are not UTF-8.
    NonUtf8,
    /// A quoted name or string has an escape this module does not decode (`\x` without two hex
    /// digits).
    BadEscape,
}

/// A parsed `INSERT ... FORMAT <name>` or `INSERT ... VALUES` statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InsertStatement {
    /// The database, when the statement names one (`db.t`); `None` means the request's current
    /// database (`database` URL parameter, `X-ClickHouse-Database` header, or the user's default).
    pub database: Option<String>,
    /// The table name, unquoted (`` `a``b` `` gives ``a`b``), with `{name:Identifier}` resolved.
    pub table: String,
    /// The column list, if any: each column's name parts unquoted and joined with `.` (so `n.x`,
    /// `` `n`.`x` `` and `` `n.x` `` all give `n.x`). A trailing comma is allowed, as in ClickHouse.
    pub columns: Option<Vec<String>>,
    /// `SETTINGS k = v, ...` in order. Names are unquoted and dot-joined. Values are the text
    /// ClickHouse would apply: strings unquoted and unescaped (also `x'..'`, `b'..'` and `$$..$$`),
    /// integers in decimal (`0x10` gives `16`, `1_000` gives `1000`, `+1` gives `1`), floats in
    /// shortest form (`1e1` gives `10`, `1.50` gives `1.5`), `true`/`false` as `1`/`0`.
    pub settings: Vec<(String, String)>,
    /// `FORMAT <name>` or `VALUES`.
    pub format: Format,
    /// Where the data starts.
    pub data: DataStart,
}

/// The data format named by the statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Format {
    /// `FORMAT <name>`: the name as written (case preserved, unquoted if it was quoted). Not
    /// checked here: look it up with [`Format::info`].
    Named(String),
    /// The `VALUES` keyword: the data is in the `Values` format and starts at the first
    /// non-blank byte after the keyword.
    Values,
}

/// Where the data of an insert starts in the query text (`query` param + `"\n"` + body).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataStart {
    /// The data starts inside the `query` parameter: it is `query[offset..]`, then `"\n"`, then the
    /// whole body. `offset == query.len()` means the data is `"\n"` followed by the body (the
    /// parameter ended with a newline after the format name, so the joining newline is data).
    Param {
        /// Byte offset in the `query` parameter.
        offset: usize,
    },
    /// The data is the body from this byte offset on (`0` when the whole statement is in the
    /// `query` parameter).
    Body {
        /// Byte offset in the body.
        offset: usize,
    },
}

/// An error ClickHouse would answer, with its code, symbolic name and HTTP status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlError {
    /// ClickHouse error code (`62` for SYNTAX_ERROR).
    pub code: u32,
    /// Symbolic name (`"SYNTAX_ERROR"`).
    pub name: &'static str,
    /// The HTTP status ClickHouse 26.9 answers with.
    pub http_status: u16,
    /// The exception message, without the final `.` that ClickHouse adds before `(NAME)`.
    pub message: String,
}

// ------------------------------------------------------------------------------------------------
// Entry points
// ------------------------------------------------------------------------------------------------

/// Classifies a request's SQL with ClickHouse's default `max_query_size`; see
/// [`classify_with_limit`].
pub fn classify(
    query_param: Option<&[u8]>,
    body_head: &[u8],
    body_complete: bool,
    params: &dyn Fn(&str) -> Option<String>,
) -> Classified {
    classify_with_limit(
        query_param,
        body_head,
        body_complete,
        params,
        DEFAULT_MAX_QUERY_SIZE,
    )
}

/// Classifies a request's SQL.
///
/// * `query_param`: the URL-decoded `query` parameter (or the `query` field of a multipart form),
///   if the request has one. `Some(b"")` is treated like `None`, as ClickHouse does.
/// * `body_head`: the first bytes of the body, after `Content-Encoding` and `decompress=1`
///   decoding.
/// * `body_complete`: whether `body_head` is the whole body.
/// * `params`: looks up query parameters by name (`database` for `{database:Identifier}`); the
///   caller maps it to the `param_<name>` URL parameters or form fields, see [`param_lookup`].
/// * `max_query_size`: the `max_query_size` setting in force (`0` means no limit, as in
///   ClickHouse).
///
/// Never panics, whatever the bytes.
pub fn classify_with_limit(
    query_param: Option<&[u8]>,
    body_head: &[u8],
    body_complete: bool,
    params: &dyn Fn(&str) -> Option<String>,
    max_query_size: usize,
) -> Classified {
    let limit = if max_query_size == 0 {
        usize::MAX
    } else {
        max_query_size
    };
    let cap = limit.saturating_add(TAIL_SLACK);
    let param = query_param.filter(|p| !p.is_empty());
    let (text, full_len): (Cow<'_, [u8]>, usize) = match param {
        None => (
            Cow::Borrowed(&body_head[..body_head.len().min(cap)]),
            body_head.len(),
        ),
        Some(p) => {
            let full = p.len().saturating_add(1).saturating_add(body_head.len());
            let mut t = Vec::with_capacity(full.min(cap));
            t.extend_from_slice(&p[..p.len().min(cap)]);
            if t.len() < cap {
                t.push(b'\n');
            }
            let room = cap - t.len();
            t.extend_from_slice(&body_head[..body_head.len().min(room)]);
            (Cow::Owned(t), full)
        }
    };
    let complete = body_complete && text.len() == full_len;
    let mut parser = Parser {
        text: &text,
        lexer: Lexer::new(&text, complete, limit),
        toks: Vec::new(),
        done: false,
        i: 0,
        params,
        param_len: param.map(<[u8]>::len),
        complete,
        limit,
        deferred: None,
    };
    match parser.parse() {
        Ok(statement) => match parser.deferred {
            Some(reason) => Classified::InsertOther(reason),
            None => Classified::Insert(statement),
        },
        Err(stop) => stop.into(),
    }
}

/// Builds a `params` lookup for [`classify`] from URL parameters or form fields: the parameter
/// `name` is the value of `param_<name>` (the last one wins when repeated, as in ClickHouse).
pub fn param_lookup<'a, K: AsRef<str>, V: AsRef<str>>(
    url_params: &'a [(K, V)],
) -> impl Fn(&str) -> Option<String> + 'a {
    move |name: &str| {
        url_params
            .iter()
            .rev()
            .find(|(k, _)| k.as_ref().strip_prefix("param_") == Some(name))
            .map(|(_, v)| v.as_ref().to_owned())
    }
}

/// A `params` lookup for [`classify`] that knows no parameters.
pub fn no_params(_name: &str) -> Option<String> {
    None
}

/// Back-quotes a name for ClickHouse SQL (`` a`b `` gives `` `a\`b` ``); ClickHouse reads it back
/// as the same name.
pub fn quote_identifier(name: &str) -> String {
    quote_with(name, '`')
}

/// Quotes a string as a ClickHouse SQL string literal (`it's` gives `'it\'s'`).
pub fn quote_string(value: &str) -> String {
    quote_with(value, '\'')
}

fn quote_with(s: &str, q: char) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push(q);
    for ch in s.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\0' => out.push_str("\\0"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            c if c == q => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out.push(q);
    out
}

// ------------------------------------------------------------------------------------------------
// Methods of the public types
// ------------------------------------------------------------------------------------------------

impl Classified {
    /// True for the outcomes that mean "an insert the gateway should pass through unchanged":
    /// [`Classified::InsertFunction`], [`Classified::InsertSelect`] and [`Classified::InsertOther`].
    pub fn is_pass_through_insert(&self) -> bool {
        matches!(
            self,
            Classified::InsertFunction | Classified::InsertSelect | Classified::InsertOther(_)
        )
    }
}

impl Format {
    /// The format name: the name as written, or `"Values"` for the `VALUES` keyword.
    pub fn name(&self) -> &str {
        match self {
            Format::Named(n) => n,
            Format::Values => "Values",
        }
    }

    /// The catalog entry for this format, or ClickHouse's `UNKNOWN_FORMAT` error (code 73,
    /// HTTP 404) for a name ClickHouse does not know.
    pub fn info(&self) -> Result<&'static FormatInfo, SqlError> {
        format_info(self.name()).ok_or_else(|| SqlError::unknown_format(self.name()))
    }
}

impl DataStart {
    /// Offset in the body where the body's share of the data begins (`0` for
    /// [`DataStart::Param`], whose data includes the whole body).
    pub fn body_offset(&self) -> usize {
        match *self {
            DataStart::Param { .. } => 0,
            DataStart::Body { offset } => offset,
        }
    }

    /// The data bytes that precede the body: for [`DataStart::Param`], `query_param[offset..]`
    /// followed by `"\n"`; empty for [`DataStart::Body`]. The data is this prefix followed by
    /// `body[self.body_offset()..]`.
    pub fn prefix(&self, query_param: &[u8]) -> Vec<u8> {
        match *self {
            DataStart::Param { offset } => {
                let mut v = query_param.get(offset..).unwrap_or_default().to_vec();
                v.push(b'\n');
                v
            }
            DataStart::Body { .. } => Vec::new(),
        }
    }
}

impl InsertStatement {
    /// Renders the statement in a canonical form that ClickHouse (and [`classify`]) read back as
    /// the same statement: `` INSERT INTO `db`.`t` (`a`, `b`) SETTINGS k = 1, s = 'x' FORMAT Name ``
    /// or `... VALUES`. No trailing newline: append `"\n"` before FORMAT data, as clients do.
    pub fn to_sql(&self) -> String {
        let mut s = String::from("INSERT INTO ");
        if let Some(db) = &self.database {
            s.push_str(&quote_identifier(db));
            s.push('.');
        }
        s.push_str(&quote_identifier(&self.table));
        if let Some(cols) = &self.columns {
            s.push_str(" (");
            for (i, c) in cols.iter().enumerate() {
                if i > 0 {
                    s.push_str(", ");
                }
                s.push_str(&quote_identifier(c));
            }
            s.push(')');
        }
        if !self.settings.is_empty() {
            s.push_str(" SETTINGS ");
            for (i, (k, v)) in self.settings.iter().enumerate() {
                if i > 0 {
                    s.push_str(", ");
                }
                s.push_str(&quote_identifier(k));
                s.push_str(" = ");
                if is_plain_number(v) {
                    s.push_str(v);
                } else {
                    s.push_str(&quote_string(v));
                }
            }
        }
        match &self.format {
            Format::Values => s.push_str(" VALUES"),
            Format::Named(n) => {
                s.push_str(" FORMAT ");
                if is_plain_identifier(n) {
                    s.push_str(n);
                } else {
                    s.push_str(&quote_identifier(n));
                }
            }
        }
        s
    }
}

/// Whether a setting value reads back as itself when written as a bare number literal.
fn is_plain_number(v: &str) -> bool {
    let (negative, digits) = match v.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, v),
    };
    digits.bytes().next().is_some_and(|c| c.is_ascii_digit())
        && digits
            .bytes()
            .all(|c| c.is_ascii_digit() || matches!(c, b'.' | b'e' | b'-' | b'+'))
        && normalize_number(negative, digits.as_bytes()).as_deref() == Some(v)
}

fn is_plain_identifier(n: &str) -> bool {
    let b = n.as_bytes();
    !b.is_empty() && (b[0].is_ascii_alphabetic() || b[0] == b'_') && b.iter().all(|&c| is_word(c))
}

impl SqlError {
    /// Code 62, `SYNTAX_ERROR`, HTTP 400.
    pub const SYNTAX_ERROR: u32 = 62;
    /// Code 73, `UNKNOWN_FORMAT`, HTTP 404.
    pub const UNKNOWN_FORMAT: u32 = 73;
    /// Code 456, `UNKNOWN_QUERY_PARAMETER`, HTTP 500.
    pub const UNKNOWN_QUERY_PARAMETER: u32 = 456;
    /// Code 457, `BAD_QUERY_PARAMETER`, HTTP 500.
    pub const BAD_QUERY_PARAMETER: u32 = 457;

    /// A `SYNTAX_ERROR` (62, HTTP 400) with the given message.
    pub fn syntax(message: String) -> SqlError {
        SqlError {
            code: Self::SYNTAX_ERROR,
            name: "SYNTAX_ERROR",
            http_status: 400,
            message,
        }
    }

    /// ClickHouse's answer to `FORMAT <name>` with an unknown name: `Unknown format <name>.`
    /// (73, HTTP 404), the name as written.
    pub fn unknown_format(name: &str) -> SqlError {
        SqlError {
            code: Self::UNKNOWN_FORMAT,
            name: "UNKNOWN_FORMAT",
            http_status: 404,
            message: format!("Unknown format {name}"),
        }
    }

    /// A `{name:Identifier}` with no `param_<name>`: ``Substitution `name` is not set.``
    /// (456, HTTP 500).
    pub fn unknown_query_parameter(name: &str) -> SqlError {
        SqlError {
            code: Self::UNKNOWN_QUERY_PARAMETER,
            name: "UNKNOWN_QUERY_PARAMETER",
            http_status: 500,
            message: format!("Substitution `{name}` is not set"),
        }
    }

    /// A `{name:Identifier}` whose `param_<name>` is empty (457, HTTP 500).
    pub fn bad_query_parameter(name: &str) -> SqlError {
        SqlError {
            code: Self::BAD_QUERY_PARAMETER,
            name: "BAD_QUERY_PARAMETER",
            http_status: 500,
            message: format!("Empty Identifier part after parameter `{name}` substitution"),
        }
    }

    /// The response body ClickHouse sends for this error:
    /// `Code: 62. DB::Exception: <message>. (SYNTAX_ERROR) (version 26.9.2.1)\n`.
    pub fn response_body(&self, version: &str) -> String {
        format!(
            "Code: {}. DB::Exception: {}. ({}) (version {})\n",
            self.code, self.message, self.name, version
        )
    }
}

impl fmt::Display for SqlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Code: {}. DB::Exception: {}. ({})",
            self.code, self.message, self.name
        )
    }
}

impl std::error::Error for SqlError {}

// ------------------------------------------------------------------------------------------------
// Lexer: a port of ClickHouse's src/Parsers/Lexer.cpp (same token boundaries), plus knowledge of
// whether a token might still grow when more of the body arrives.
// ------------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tk {
    Whitespace,
    Comment,
    BareWord,
    Number,
    StringLiteral,
    QuotedIdentifier,
    HereDoc,
    LParen,
    RParen,
    LBracket,
    RBracket,
    LCurly,
    RCurly,
    Comma,
    Semicolon,
    Dot,
    Plus,
    Minus,
    Asterisk,
    Equals,
    Colon,
    DoubleColon,
    DollarSign,
    Operator,
    Error(LexError),
    End,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LexError {
    Unrecognized,
    CommentNotClosed,
    SingleQuoteNotClosed,
    DoubleQuoteNotClosed,
    BackQuoteNotClosed,
    SingleExclamationMark,
    WrongNumber,
}

impl LexError {
    fn description(self) -> &'static str {
        match self {
            LexError::Unrecognized => "Unrecognized token",
            LexError::CommentNotClosed => "Multiline comment is not closed",
            LexError::SingleQuoteNotClosed => "Single quoted string is not closed",
            LexError::DoubleQuoteNotClosed => "Double quoted string is not closed",
            LexError::BackQuoteNotClosed => "Back quoted string is not closed",
            LexError::SingleExclamationMark => "Exclamation mark can only occur in != operator",
            LexError::WrongNumber => "Wrong number",
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Token {
    kind: Tk,
    begin: usize,
    end: usize,
    /// More input could change this token (or what follows it is unknown).
    incomplete: bool,
    /// The token ends beyond `max_query_size`.
    too_long: bool,
}

fn is_word(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

fn is_ws_ascii(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

/// ClickHouse's `isNumberSeparator`: `_` between digits of a number.
fn is_number_separator(t: &[u8], p: usize, start_of_block: bool, hex: bool) -> bool {
    if t[p] != b'_' || start_of_block {
        return false;
    }
    match t.get(p + 1) {
        None => false,
        Some(&n) => {
            if hex {
                n.is_ascii_hexdigit()
            } else {
                n.is_ascii_digit()
            }
        }
    }
}

/// ClickHouse's `skipWhitespacesUTF8`: ASCII whitespace and U+0085 U+00A0 U+180E U+2000..U+200D
/// U+2028 U+2029 U+202F U+205F U+2060 U+3000 U+FEFF.
fn skip_ws_utf8(t: &[u8], mut p: usize) -> usize {
    let n = t.len();
    while p < n {
        if is_ws_ascii(t[p]) {
            p += 1;
        } else if p + 1 < n && t[p] == 0xC2 && (t[p + 1] == 0x85 || t[p + 1] == 0xA0) {
            p += 2;
        } else if p + 2 < n
            && ((t[p] == 0xE1 && t[p + 1] == 0xA0 && t[p + 2] == 0x8E)
                || (t[p] == 0xE2
                    && ((t[p + 1] == 0x80
                        && ((0x80..=0x8D).contains(&t[p + 2])
                            || (0xA8..=0xA9).contains(&t[p + 2])
                            || t[p + 2] == 0xAF))
                        || (t[p + 1] == 0x81 && (t[p + 2] == 0x9F || t[p + 2] == 0xA0))))
                || (t[p] == 0xE3 && t[p + 1] == 0x80 && t[p + 2] == 0x80)
                || (t[p] == 0xEF && t[p + 1] == 0xBB && t[p + 2] == 0xBF))
        {
            p += 3;
        } else {
            break;
        }
    }
    p
}

fn find_byte(hay: &[u8], from: usize, b: u8) -> Option<usize> {
    hay.get(from..)?
        .iter()
        .position(|&c| c == b)
        .map(|i| i + from)
}

fn find_slice(hay: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(from);
    }
    let hay = hay.get(from..)?;
    let first = needle[0];
    let mut i = 0;
    while i + needle.len() <= hay.len() {
        match hay[i..].iter().position(|&c| c == first) {
            None => return None,
            Some(j) => {
                i += j;
                if hay.get(i..i + needle.len()) == Some(needle) {
                    return Some(from + i);
                }
                i += 1;
            }
        }
    }
    None
}

struct Lexer<'a> {
    t: &'a [u8],
    pos: usize,
    complete: bool,
    limit: usize,
    prev: Tk,
}

impl<'a> Lexer<'a> {
    fn new(t: &'a [u8], complete: bool, limit: usize) -> Self {
        Lexer {
            t,
            pos: 0,
            complete,
            limit,
            prev: Tk::Whitespace,
        }
    }

    fn next(&mut self) -> Token {
        let begin = self.pos;
        let (kind, end, maybe_more) = self.scan();
        let end = end.clamp(begin, self.t.len());
        self.pos = end;
        let unambiguous = matches!(
            kind,
            Tk::LParen
                | Tk::RParen
                | Tk::LBracket
                | Tk::RBracket
                | Tk::LCurly
                | Tk::RCurly
                | Tk::Comma
                | Tk::Semicolon
                | Tk::Asterisk
                | Tk::Plus
        );
        let touches_end = end >= self.t.len();
        let incomplete =
            !self.complete && (maybe_more || kind == Tk::End || (touches_end && !unambiguous));
        // Whatever more input makes of an incomplete token, it then ends beyond the limit.
        let too_long = end > self.limit || (incomplete && self.t.len() > self.limit);
        if !matches!(kind, Tk::Whitespace | Tk::Comment) {
            self.prev = kind;
        }
        Token {
            kind,
            begin,
            end,
            incomplete,
            too_long,
        }
    }

    fn scan(&self) -> (Tk, usize, bool) {
        let t = self.t;
        let n = t.len();
        let mut p = self.pos;
        if p >= n {
            return (Tk::End, n, false);
        }
        let begin = p;
        let next_is = |q: usize, c: u8| t.get(q) == Some(&c);
        match t[p] {
            b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c => {
                p += 1;
                while p < n && is_ws_ascii(t[p]) {
                    p += 1;
                }
                (Tk::Whitespace, p, false)
            }
            b'0'..=b'9' => self.scan_number(p),
            b'\'' => quoted(
                t,
                p,
                b'\'',
                Tk::StringLiteral,
                LexError::SingleQuoteNotClosed,
            ),
            b'"' => quoted(
                t,
                p,
                b'"',
                Tk::QuotedIdentifier,
                LexError::DoubleQuoteNotClosed,
            ),
            b'`' => quoted(
                t,
                p,
                b'`',
                Tk::QuotedIdentifier,
                LexError::BackQuoteNotClosed,
            ),
            b'(' => (Tk::LParen, p + 1, false),
            b')' => (Tk::RParen, p + 1, false),
            b'[' => (Tk::LBracket, p + 1, false),
            b']' => (Tk::RBracket, p + 1, false),
            b'{' => (Tk::LCurly, p + 1, false),
            b'}' => (Tk::RCurly, p + 1, false),
            b',' => (Tk::Comma, p + 1, false),
            b';' => (Tk::Semicolon, p + 1, false),
            b'.' => {
                let digit_follows = t.get(p + 1).is_some_and(u8::is_ascii_digit);
                if p > 0
                    && (!digit_follows
                        || matches!(
                            self.prev,
                            Tk::RParen
                                | Tk::RBracket
                                | Tk::BareWord
                                | Tk::QuotedIdentifier
                                | Tk::Number
                        ))
                {
                    return (Tk::Dot, p + 1, false);
                }
                p += 1;
                let mut start_of_block = true;
                while p < n
                    && (t[p].is_ascii_digit() || is_number_separator(t, p, start_of_block, false))
                {
                    p += 1;
                    start_of_block = false;
                }
                p = scan_exponent(t, p, false);
                (Tk::Number, p, false)
            }
            b'+' => (Tk::Plus, p + 1, false),
            b'-' => {
                if next_is(p + 1, b'>') {
                    (Tk::Operator, p + 2, false)
                } else if next_is(p + 1, b'-') {
                    (Tk::Comment, line_end(t, p + 2), false)
                } else {
                    (Tk::Minus, p + 1, false)
                }
            }
            b'*' => (Tk::Asterisk, p + 1, false),
            b'/' => {
                if next_is(p + 1, b'/') {
                    (Tk::Comment, line_end(t, p + 2), false)
                } else if next_is(p + 1, b'*') {
                    p += 2;
                    let mut level = 1usize;
                    while p + 2 <= n {
                        if t[p] == b'/' && t[p + 1] == b'*' {
                            p += 2;
                            level += 1;
                        } else if t[p] == b'*' && t[p + 1] == b'/' {
                            p += 2;
                            level -= 1;
                            if level == 0 {
                                return (Tk::Comment, p, false);
                            }
                        } else {
                            p += 1;
                        }
                    }
                    (Tk::Error(LexError::CommentNotClosed), n, false)
                } else {
                    (Tk::Operator, p + 1, false)
                }
            }
            b'#' => {
                if next_is(p + 1, b' ') || next_is(p + 1, b'!') {
                    (Tk::Comment, line_end(t, p + 1), false)
                } else {
                    (Tk::Error(LexError::Unrecognized), p + 1, false)
                }
            }
            b'%' | b'?' => (Tk::Operator, p + 1, false),
            b'=' => (
                Tk::Equals,
                if next_is(p + 1, b'=') { p + 2 } else { p + 1 },
                false,
            ),
            b'!' => {
                if next_is(p + 1, b'=') {
                    (Tk::Operator, p + 2, false)
                } else {
                    (Tk::Error(LexError::SingleExclamationMark), p + 1, false)
                }
            }
            b'<' => (
                Tk::Operator,
                if next_is(p + 1, b'=') || next_is(p + 1, b'>') {
                    p + 2
                } else {
                    p + 1
                },
                false,
            ),
            b'>' => (
                Tk::Operator,
                if next_is(p + 1, b'=') { p + 2 } else { p + 1 },
                false,
            ),
            b':' => {
                if next_is(p + 1, b':') {
                    (Tk::DoubleColon, p + 2, false)
                } else {
                    (Tk::Colon, p + 1, false)
                }
            }
            b'|' => (
                Tk::Operator,
                if next_is(p + 1, b'|') { p + 2 } else { p + 1 },
                false,
            ),
            b'@' => (
                Tk::Operator,
                if next_is(p + 1, b'@') { p + 2 } else { p + 1 },
                false,
            ),
            b'\\' => {
                if next_is(p + 1, b'G') {
                    (Tk::Operator, p + 2, false)
                } else {
                    (Tk::Error(LexError::Unrecognized), p + 1, false)
                }
            }
            c => {
                let mut maybe_more = false;
                if c == b'$' {
                    // ClickHouse looks for the closing tag within its parse buffer
                    // (max_query_size + 1 bytes).
                    let region = &t[..n.min(self.limit.saturating_add(1))];
                    if let Some(j) = find_byte(region, p + 1, b'$') {
                        let tag = &region[p..=j];
                        if tag.len() <= MAX_HEREDOC_TAG
                            && let Some(k) = find_slice(region, j + 1, tag)
                        {
                            return (Tk::HereDoc, k + tag.len(), false);
                        }
                    }
                    // A closing tag may still arrive.
                    maybe_more = !self.complete && n <= self.limit;
                    if t.get(p + 1).is_none_or(|&d| !is_word(d)) {
                        return (Tk::DollarSign, p + 1, maybe_more);
                    }
                }
                if p + 2 < n && t[p + 1] == b'\'' && matches!(c, b'x' | b'X' | b'b' | b'B') {
                    let hex = matches!(c, b'x' | b'X');
                    p += 2;
                    while p < n
                        && (if hex {
                            t[p].is_ascii_hexdigit()
                        } else {
                            t[p] == b'0' || t[p] == b'1'
                        })
                    {
                        p += 1;
                    }
                    if p >= n || t[p] != b'\'' {
                        return (Tk::Error(LexError::SingleQuoteNotClosed), n, false);
                    }
                    return (Tk::StringLiteral, p + 1, false);
                }
                if is_word(c) || c == b'$' {
                    p += 1;
                    while p < n && (is_word(t[p]) || t[p] == b'$') {
                        p += 1;
                    }
                    return (Tk::BareWord, p, maybe_more);
                }
                let q = skip_ws_utf8(t, p);
                if q > begin {
                    (Tk::Whitespace, q, false)
                } else {
                    // A multi-byte whitespace character may be cut at the end of the head.
                    (
                        Tk::Error(LexError::Unrecognized),
                        p + 1,
                        matches!(c, 0xC2 | 0xE1 | 0xE2 | 0xE3 | 0xEF)
                            && p + 3 > n
                            && !self.complete,
                    )
                }
            }
        }
    }

    fn scan_number(&self, begin: usize) -> (Tk, usize, bool) {
        let t = self.t;
        let n = t.len();
        let mut p = begin;
        if self.prev == Tk::Dot {
            // After a dot only a plain integer (tuple access `x.1.1`).
            p += 1;
            while p < n && (t[p].is_ascii_digit() || is_number_separator(t, p, false, false)) {
                p += 1;
            }
        } else {
            let mut start_of_block = false;
            let mut hex = false;
            if p + 2 < n && t[p] == b'0' && matches!(t[p + 1], b'x' | b'X' | b'b' | b'B') {
                let valid = if matches!(t[p + 1], b'x' | b'X') {
                    hex = t[p + 2].is_ascii_hexdigit();
                    hex
                } else {
                    t[p + 2] == b'0' || t[p + 2] == b'1'
                };
                if valid {
                    p += 2;
                    start_of_block = true;
                } else {
                    p += 1;
                }
            } else {
                p += 1;
            }
            let digit = |c: u8| {
                if hex {
                    c.is_ascii_hexdigit()
                } else {
                    c.is_ascii_digit()
                }
            };
            while p < n && (digit(t[p]) || is_number_separator(t, p, start_of_block, hex)) {
                p += 1;
                start_of_block = false;
            }
            if p < n && t[p] == b'.' {
                start_of_block = true;
                p += 1;
                while p < n && (digit(t[p]) || is_number_separator(t, p, start_of_block, hex)) {
                    p += 1;
                    start_of_block = false;
                }
            }
            p = scan_exponent(t, p, hex);
        }
        if p < n && is_word(t[p]) {
            p += 1;
            while p < n && is_word(t[p]) {
                p += 1;
            }
            if t[begin..p].iter().all(|&c| is_word(c) || c == b'$') {
                return (Tk::BareWord, p, false);
            }
            return (Tk::Error(LexError::WrongNumber), p, false);
        }
        (Tk::Number, p, false)
    }
}

fn scan_exponent(t: &[u8], mut p: usize, hex: bool) -> usize {
    let n = t.len();
    let is_exp = |c: u8| {
        if hex {
            c == b'p' || c == b'P'
        } else {
            c == b'e' || c == b'E'
        }
    };
    if p + 1 < n && is_exp(t[p]) {
        let mut start_of_block = true;
        p += 1;
        if p + 1 < n && (t[p] == b'-' || t[p] == b'+') {
            p += 1;
        }
        while p < n && (t[p].is_ascii_digit() || is_number_separator(t, p, start_of_block, false)) {
            p += 1;
            start_of_block = false;
        }
    }
    p
}

fn line_end(t: &[u8], from: usize) -> usize {
    find_byte(t, from, b'\n').unwrap_or(t.len())
}

fn quoted(t: &[u8], begin: usize, quote: u8, ok: Tk, err: LexError) -> (Tk, usize, bool) {
    let n = t.len();
    let mut p = begin + 1;
    loop {
        match t
            .get(p..)
            .and_then(|rest| rest.iter().position(|&c| c == quote || c == b'\\'))
        {
            None => return (Tk::Error(err), n, false),
            Some(i) => {
                p += i;
                if t[p] == quote {
                    p += 1;
                    if p < n && t[p] == quote {
                        p += 1;
                        continue;
                    }
                    return (ok, p, false);
                }
                // A backslash escapes the next byte.
                p += 1;
                if p >= n {
                    return (Tk::Error(err), n, false);
                }
                p += 1;
            }
        }
    }
}

// ------------------------------------------------------------------------------------------------
// Literal decoding (ClickHouse's readQuotedStringWithSQLStyle & co.)
// ------------------------------------------------------------------------------------------------

fn escape_char(c: u8) -> u8 {
    match c {
        b'a' => 0x07,
        b'b' => 0x08,
        b'e' => 0x1b,
        b'f' => 0x0c,
        b'n' => b'\n',
        b'r' => b'\r',
        b't' => b'\t',
        b'v' => 0x0b,
        b'0' => 0,
        other => other,
    }
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Decodes a quoted token (`'..'`, `".."` or `` `..` ``): doubled quotes, and backslash escapes
/// with ClickHouse's rule of keeping the backslash before ordinary characters (`\%` stays `\%`).
/// `None` for an escape it cannot decode (`\x` without two hex digits).
fn unquote(tok: &[u8]) -> Option<Vec<u8>> {
    let (&q, rest) = tok.split_first()?;
    let inner = rest.strip_suffix(&[q])?;
    let mut out = Vec::with_capacity(inner.len());
    let mut i = 0;
    while i < inner.len() {
        let c = inner[i];
        if c == q {
            out.push(q);
            i += 2;
        } else if c == b'\\' {
            let e = *inner.get(i + 1)?;
            match e {
                b'x' => {
                    let h = inner.get(i + 2..i + 4)?;
                    out.push(hex_val(h[0])? << 4 | hex_val(h[1])?);
                    i += 4;
                }
                b'N' => i += 2,
                _ => {
                    let d = escape_char(e);
                    if !matches!(d, b'\\' | b'\'' | b'"' | b'`' | b'/' | b'=') && d > 31 {
                        out.push(b'\\');
                    }
                    out.push(d);
                    i += 2;
                }
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    Some(out)
}

/// Decodes a string literal token: `'...'`, `x'..'` (hex, odd length padded on the left) or
/// `b'..'` (bits, padded on the left to whole bytes).
fn decode_string_literal(tok: &[u8]) -> Option<Vec<u8>> {
    match tok.first()? {
        b'\'' => unquote(tok),
        b'x' | b'X' => {
            let digits = tok.get(2..tok.len().checked_sub(1)?)?;
            let mut padded = Vec::with_capacity(digits.len() + 1);
            if digits.len() % 2 == 1 {
                padded.push(b'0');
            }
            padded.extend_from_slice(digits);
            padded
                .chunks(2)
                .map(|p| Some(hex_val(p[0])? << 4 | hex_val(*p.get(1)?)?))
                .collect()
        }
        b'b' | b'B' => {
            let digits = tok.get(2..tok.len().checked_sub(1)?)?;
            let pad = (8 - digits.len() % 8) % 8;
            let bits: Vec<u8> = std::iter::repeat_n(b'0', pad)
                .chain(digits.iter().copied())
                .collect();
            Some(
                bits.chunks(8)
                    .map(|c| c.iter().fold(0u8, |acc, &b| (acc << 1) | (b - b'0')))
                    .collect(),
            )
        }
        _ => None,
    }
}

/// The text ClickHouse would give a setting for a number literal, or `None` when it is not a
/// plain 64-bit integer or finite float.
fn normalize_number(negative: bool, literal: &[u8]) -> Option<String> {
    let s: String = literal
        .iter()
        .filter(|&&c| c != b'_')
        .map(|&c| char::from(c))
        .collect();
    let lower = s.to_ascii_lowercase();
    let int = if let Some(h) = lower.strip_prefix("0x") {
        if h.contains(['.', 'p']) {
            return None;
        }
        Some(u64::from_str_radix(h, 16).ok()?)
    } else if let Some(b) = lower.strip_prefix("0b") {
        Some(u64::from_str_radix(b, 2).ok()?)
    } else if lower.bytes().all(|c| c.is_ascii_digit()) {
        Some(lower.parse::<u64>().ok()?)
    } else {
        None
    };
    if let Some(v) = int {
        return if !negative || v == 0 {
            Some(v.to_string())
        } else if v <= 1u64 << 63 {
            Some(format!("-{v}"))
        } else {
            None
        };
    }
    let f: f64 = lower.parse().ok()?;
    if !f.is_finite() {
        return None;
    }
    let f = if negative { -f } else { f };
    if f.fract() == 0.0 && f.abs() < 1e18 {
        Some(format!("{}", f as i64))
    } else {
        Some(format!("{f:?}"))
    }
}

// ------------------------------------------------------------------------------------------------
// Parser
// ------------------------------------------------------------------------------------------------

/// Why parsing stopped before producing a statement (a [`Classified`] without `Insert`, so that
/// `Result`s stay small).
#[derive(Debug)]
enum Stop {
    NotInsert,
    InsertFunction,
    InsertSelect,
    InsertOther(PassThrough),
    NeedMore,
    Error(SqlError),
}

impl From<Stop> for Classified {
    fn from(stop: Stop) -> Classified {
        match stop {
            Stop::NotInsert => Classified::NotInsert,
            Stop::InsertFunction => Classified::InsertFunction,
            Stop::InsertSelect => Classified::InsertSelect,
            Stop::InsertOther(r) => Classified::InsertOther(r),
            Stop::NeedMore => Classified::NeedMore,
            Stop::Error(e) => Classified::Error(e),
        }
    }
}

type PResult<T> = Result<T, Stop>;

const EXP_AFTER_INTO: &str = "TABLE, FUNCTION, identifier";
const EXP_AFTER_TABLE_KW: &str = "FUNCTION, identifier";
const EXP_AFTER_TABLE: &str =
    "token, Dot, OpeningRoundBracket, FROM INFILE, SETTINGS, VALUES, FORMAT, SELECT, WITH, FROM";
const EXP_AFTER_DB_TABLE: &str =
    "token, OpeningRoundBracket, FROM INFILE, SETTINGS, VALUES, FORMAT, SELECT, WITH, FROM";
const EXP_AFTER_COLUMNS: &str =
    "FROM INFILE, SETTINGS, VALUES, FORMAT, SELECT, WITH, FROM, OpeningRoundBracket";
const EXP_AFTER_SETTINGS: &str = "VALUES, FORMAT, SELECT, WITH, FROM, token, OpeningRoundBracket";
const EXP_COLUMN: &str = "list of elements, insert element, COLUMNS matcher, COLUMNS, qualified asterisk, \
     compound identifier, identifier, asterisk, qualified COLUMNS matcher, SELECT query, subquery";
const EXP_AFTER_COLUMN: &str = "token sequence, Dot, token, Comma, ClosingRoundBracket";
const EXP_SETTING_NAME: &str = "SET query, compound identifier, identifier";
const EXP_SETTING_VALUE: &str = "DEFAULT, function, function name, compound identifier, identifier, substitution, \
     literal or map, literal, NULL, number, Bool, TRUE, FALSE, string literal, token, OpeningCurlyBrace";
const EXP_AFTER_NAME_VALUE: &str = "token sequence, Dot, token, OpeningRoundBracket";

struct Parser<'a> {
    text: &'a [u8],
    lexer: Lexer<'a>,
    /// Significant tokens lexed so far; the last one is terminal once `done`.
    toks: Vec<Token>,
    done: bool,
    /// Cursor into `toks`.
    i: usize,
    params: &'a dyn Fn(&str) -> Option<String>,
    param_len: Option<usize>,
    complete: bool,
    limit: usize,
    /// A pass-through reason found in SETTINGS; reported if the statement parses.
    deferred: Option<PassThrough>,
}

impl<'a> Parser<'a> {
    // ---- token access ----

    /// The `k`-th significant token (or the terminal one: end, incomplete, too long).
    fn raw(&mut self, k: usize) -> Token {
        while self.toks.len() <= k && !self.done {
            let t = loop {
                let t = self.lexer.next();
                let skippable =
                    matches!(t.kind, Tk::Whitespace | Tk::Comment) && !t.incomplete && !t.too_long;
                if !skippable {
                    break t;
                }
            };
            if t.kind == Tk::End || t.incomplete || t.too_long {
                self.done = true;
            }
            self.toks.push(t);
        }
        match self.toks.get(k) {
            Some(t) => *t,
            None => self.toks.last().copied().unwrap_or(Token {
                kind: Tk::End,
                begin: self.text.len(),
                end: self.text.len(),
                incomplete: !self.complete,
                too_long: false,
            }),
        }
    }

    /// The `k`-th significant token, or the outcome that stops parsing (need more, too long).
    fn get(&mut self, k: usize) -> PResult<Token> {
        let t = self.raw(k);
        if t.too_long {
            return Err(Stop::Error(self.too_long_error(t)));
        }
        if t.incomplete {
            return Err(Stop::NeedMore);
        }
        Ok(t)
    }

    fn peek(&mut self) -> PResult<Token> {
        self.get(self.i)
    }

    fn peek_at(&mut self, ahead: usize) -> PResult<Token> {
        self.get(self.i + ahead)
    }

    fn bump(&mut self) {
        self.i += 1;
    }

    fn bytes(&self, t: &Token) -> &'a [u8] {
        self.text.get(t.begin..t.end).unwrap_or_default()
    }

    fn is_kw(&self, t: &Token, kw: &str) -> bool {
        t.kind == Tk::BareWord && self.bytes(t).eq_ignore_ascii_case(kw.as_bytes())
    }

    // ---- errors ----

    fn failed_at(&self, t: &Token) -> String {
        let n = self.text.len();
        let begin = t.begin.min(n);
        let label = if t.kind == Tk::End {
            "end of query".to_owned()
        } else {
            let end = t.end.min(begin + SHOW_CHARS_ON_SYNTAX_ERROR).min(n);
            String::from_utf8_lossy(&self.text[begin..end]).into_owned()
        };
        let mut line_col = String::new();
        if find_byte(self.text, 0, b'\n').is_some_and(|nl| nl + 1 < n) {
            let before = &self.text[..begin];
            let line = 1 + before.iter().filter(|&&c| c == b'\n').count();
            let col = begin
                - before
                    .iter()
                    .rposition(|&c| c == b'\n')
                    .map_or(0, |p| p + 1)
                + 1;
            line_col = format!(" (line {line}, col {col})");
        }
        let rest_end = (begin + SHOW_CHARS_ON_SYNTAX_ERROR).min(n);
        let rest = String::from_utf8_lossy(&self.text[begin..rest_end]);
        format!(
            "Syntax error: failed at position {} ({label}){line_col}: {rest}",
            begin + 1
        )
    }

    fn syntax_error(&self, t: &Token, expected: &str) -> Stop {
        let message = match t.kind {
            Tk::Error(e) => format!("{}: {}. ", e.description(), self.failed_at(t)),
            _ => format!(
                "{}. Expected one of: {expected}, end of query",
                self.failed_at(t)
            ),
        };
        Stop::Error(SqlError::syntax(message))
    }

    fn too_long_error(&self, t: Token) -> SqlError {
        let n = self.text.len();
        let begin = t.begin.min(n);
        let end = t.end.min(begin + SHOW_CHARS_ON_SYNTAX_ERROR).min(n);
        let tok = if t.kind == Tk::End {
            "end of query".to_owned()
        } else {
            String::from_utf8_lossy(&self.text[begin..end]).into_owned()
        };
        SqlError::syntax(format!(
            "Max query size exceeded (can be increased with the `max_query_size` setting): \
             Syntax error: failed at position {} ({tok}): {tok}. ",
            begin + 1
        ))
    }

    // ---- grammar ----

    /// `INSERT` / `INTO` at the start: anything else is not an insert.
    fn leading_word(&mut self, kw: &str) -> PResult<()> {
        let t = self.raw(self.i);
        if t.kind == Tk::BareWord {
            let s = self.bytes(&t);
            let matches_kw = if t.incomplete {
                s.len() <= kw.len() && kw.as_bytes()[..s.len()].eq_ignore_ascii_case(s)
            } else {
                s.eq_ignore_ascii_case(kw.as_bytes())
            };
            if !matches_kw {
                return Err(Stop::NotInsert);
            }
            if t.too_long {
                return Err(Stop::Error(self.too_long_error(t)));
            }
            if t.incomplete {
                return Err(Stop::NeedMore);
            }
            self.bump();
            return Ok(());
        }
        if t.too_long {
            return Err(if self.i > 0 {
                Stop::Error(self.too_long_error(t))
            } else {
                Stop::NotInsert
            });
        }
        if t.incomplete && self.may_become_blank(&t) {
            return Err(Stop::NeedMore);
        }
        Err(Stop::NotInsert)
    }

    /// Whether an incomplete token could still turn out to be whitespace or a comment.
    fn may_become_blank(&self, t: &Token) -> bool {
        matches!(
            t.kind,
            Tk::Whitespace | Tk::Comment | Tk::End | Tk::Error(LexError::CommentNotClosed)
        ) || self
            .text
            .get(t.begin)
            .is_some_and(|&c| matches!(c, b'-' | b'/' | b'#') || c >= 0x80)
    }

    fn parse(&mut self) -> PResult<InsertStatement> {
        self.leading_word("INSERT")?;
        self.leading_word("INTO")?;

        let mut t = self.peek()?;
        let table_kw = self.is_kw(&t, "TABLE");
        if table_kw {
            self.bump();
            t = self.peek()?;
        }
        if self.is_kw(&t, "FUNCTION") {
            return Err(Stop::InsertFunction);
        }
        let first = self.identifier(
            true,
            if table_kw {
                EXP_AFTER_TABLE_KW
            } else {
                EXP_AFTER_INTO
            },
        )?;
        let (database, table) = if self.peek()?.kind == Tk::Dot {
            self.bump();
            (Some(first), self.identifier(true, "identifier")?)
        } else {
            (None, first)
        };
        let mut expected = if database.is_some() {
            EXP_AFTER_DB_TABLE
        } else {
            EXP_AFTER_TABLE
        };

        let mut columns = None;
        if self.peek()?.kind == Tk::LParen {
            self.bump();
            columns = Some(self.column_list()?);
            expected = EXP_AFTER_COLUMNS;
        }

        let mut settings = Vec::new();
        let t = self.peek()?;
        if self.is_kw(&t, "SETTINGS") {
            self.bump();
            settings = self.settings_list()?;
            expected = EXP_AFTER_SETTINGS;
        }

        let t = self.peek()?;
        let (format, data_pos) = if self.is_kw(&t, "VALUES") {
            self.bump();
            (Format::Values, self.values_data()?)
        } else if self.is_kw(&t, "FORMAT") {
            self.bump();
            let name_tok = self.peek()?;
            let name = match name_tok.kind {
                Tk::BareWord | Tk::QuotedIdentifier => self.identifier(false, "identifier")?,
                Tk::LCurly => return Err(Stop::InsertOther(PassThrough::FormatParameter)),
                _ => return Err(self.syntax_error(&name_tok, "identifier")),
            };
            (Format::Named(name), self.format_data(name_tok.end)?)
        } else if self.is_kw(&t, "SELECT") || self.is_kw(&t, "WITH") || t.kind == Tk::LParen {
            return Err(Stop::InsertSelect);
        } else if self.is_kw(&t, "FROM") {
            self.bump();
            let next = self.peek()?;
            return Err(if self.is_kw(&next, "INFILE") {
                Stop::InsertOther(PassThrough::FromInfile)
            } else {
                Stop::InsertSelect
            });
        } else {
            return Err(self.syntax_error(&t, expected));
        };

        Ok(InsertStatement {
            database,
            table,
            columns,
            settings,
            format,
            data: self.map_pos(data_pos),
        })
    }

    /// A table, database, column, setting or format name: bare word, quoted identifier, or (where
    /// allowed) a `{name:Identifier}` query parameter.
    fn identifier(&mut self, allow_param: bool, expected: &str) -> PResult<String> {
        let t = self.peek()?;
        match t.kind {
            Tk::BareWord => {
                self.bump();
                Ok(String::from_utf8_lossy(self.bytes(&t)).into_owned())
            }
            Tk::QuotedIdentifier => {
                let v = unquote(self.bytes(&t)).ok_or(Stop::InsertOther(PassThrough::BadEscape))?;
                if v.is_empty() {
                    return Err(self.syntax_error(&t, expected));
                }
                let s =
                    String::from_utf8(v).map_err(|_| Stop::InsertOther(PassThrough::NonUtf8))?;
                self.bump();
                Ok(s)
            }
            Tk::LCurly if allow_param => self.substitution(),
            _ => Err(self.syntax_error(&t, expected)),
        }
    }

    /// `{name:Identifier}`, resolved through `params`.
    fn substitution(&mut self) -> PResult<String> {
        self.bump(); // {
        let name_tok = self.peek()?;
        if name_tok.kind != Tk::BareWord {
            return Err(self.syntax_error(&name_tok, "substitution name (identifier)"));
        }
        self.bump();
        let colon = self.peek()?;
        if colon.kind != Tk::Colon {
            return Err(self.syntax_error(&colon, "Colon"));
        }
        self.bump();
        let ty = self.peek()?;
        if ty.kind != Tk::BareWord {
            return Err(self.syntax_error(&ty, "substitution type (identifier)"));
        }
        self.bump();
        let close = self.peek()?;
        if self.bytes(&ty) != b"Identifier" {
            return Err(self.syntax_error(&close, "substitution type (identifier)"));
        }
        if close.kind != Tk::RCurly {
            return Err(self.syntax_error(&close, "ClosingCurlyBrace"));
        }
        self.bump();
        let name = String::from_utf8_lossy(self.bytes(&name_tok)).into_owned();
        match (self.params)(&name) {
            None => Err(Stop::Error(SqlError::unknown_query_parameter(&name))),
            Some(v) if v.is_empty() => Err(Stop::Error(SqlError::bad_query_parameter(&name))),
            Some(v) => Ok(v),
        }
    }

    /// The column list after `(`; a list that does not parse but starts like a subquery is
    /// `INSERT ... SELECT`.
    fn column_list(&mut self) -> PResult<Vec<String>> {
        let first = self.peek()?;
        let maybe_select = first.kind == Tk::LParen
            || self.is_kw(&first, "SELECT")
            || self.is_kw(&first, "WITH")
            || self.is_kw(&first, "FROM");
        match self.column_list_inner() {
            Err(Stop::Error(_)) if maybe_select => Err(Stop::InsertSelect),
            other => other,
        }
    }

    fn column_list_inner(&mut self) -> PResult<Vec<String>> {
        let mut cols = Vec::new();
        loop {
            let mut name = self.column_part(true)?;
            while self.peek()?.kind == Tk::Dot {
                self.bump();
                name.push('.');
                name.push_str(&self.column_part(false)?);
            }
            cols.push(name);
            let t = self.peek()?;
            match t.kind {
                Tk::Comma => {
                    self.bump();
                    if self.peek()?.kind == Tk::RParen {
                        self.bump();
                        return Ok(cols);
                    }
                }
                Tk::RParen => {
                    self.bump();
                    return Ok(cols);
                }
                _ => return Err(self.syntax_error(&t, EXP_AFTER_COLUMN)),
            }
        }
    }

    fn column_part(&mut self, first: bool) -> PResult<String> {
        let t = self.peek()?;
        match t.kind {
            Tk::Asterisk => Err(Stop::InsertOther(PassThrough::ColumnMatcher)),
            Tk::LCurly if first => Err(Stop::InsertOther(PassThrough::ColumnParameter)),
            Tk::BareWord if self.is_kw(&t, "COLUMNS") && self.peek_at(1)?.kind == Tk::LParen => {
                Err(Stop::InsertOther(PassThrough::ColumnMatcher))
            }
            Tk::BareWord | Tk::QuotedIdentifier => self.identifier(false, EXP_COLUMN),
            _ => Err(self.syntax_error(
                &t,
                if first {
                    EXP_COLUMN
                } else {
                    "identifier, asterisk, COLUMNS"
                },
            )),
        }
    }

    /// `name [= value], ...` after `SETTINGS`.
    fn settings_list(&mut self) -> PResult<Vec<(String, String)>> {
        let mut out = Vec::new();
        loop {
            let t = self.peek()?;
            if !matches!(t.kind, Tk::BareWord | Tk::QuotedIdentifier) {
                return Err(self.syntax_error(&t, EXP_SETTING_NAME));
            }
            let mut name = self.identifier(false, EXP_SETTING_NAME)?;
            while self.peek()?.kind == Tk::Dot {
                self.bump();
                name.push('.');
                name.push_str(&self.identifier(false, "identifier")?);
            }
            if self.peek()?.kind == Tk::Equals {
                self.bump();
                if let Some(value) = self.setting_value()? {
                    out.push((name, value));
                }
            } else {
                // `SETTINGS flag`: a boolean shorthand ClickHouse checks against the setting type.
                self.defer(PassThrough::SettingValue);
            }
            if self.peek()?.kind != Tk::Comma {
                return Ok(out);
            }
            self.bump();
        }
    }

    fn defer(&mut self, reason: PassThrough) {
        self.deferred.get_or_insert(reason);
    }

    /// A setting value; `None` when it is valid but not modelled (the insert is then passed
    /// through, unless a syntax error comes later).
    fn setting_value(&mut self) -> PResult<Option<String>> {
        let t = self.peek()?;
        match t.kind {
            Tk::Number => {
                self.bump();
                Ok(self.number_value(false, &t))
            }
            Tk::Minus | Tk::Plus => {
                self.bump();
                let n = self.peek()?;
                match n.kind {
                    Tk::Number => {
                        self.bump();
                        Ok(self.number_value(t.kind == Tk::Minus, &n))
                    }
                    Tk::BareWord => {
                        // -inf, -nan
                        self.bump();
                        self.defer(PassThrough::SettingValue);
                        Ok(None)
                    }
                    _ => Err(self.syntax_error(&n, "number")),
                }
            }
            Tk::StringLiteral => {
                self.bump();
                match decode_string_literal(self.bytes(&t)) {
                    None => {
                        self.defer(PassThrough::BadEscape);
                        Ok(None)
                    }
                    Some(v) => match String::from_utf8(v) {
                        Ok(s) => Ok(Some(s)),
                        Err(_) => {
                            self.defer(PassThrough::NonUtf8);
                            Ok(None)
                        }
                    },
                }
            }
            Tk::HereDoc => {
                self.bump();
                let b = self.bytes(&t);
                let tag_len = b
                    .iter()
                    .skip(1)
                    .position(|&c| c == b'$')
                    .map_or(1, |p| p + 2);
                let body = b
                    .get(tag_len..b.len().saturating_sub(tag_len))
                    .unwrap_or_default();
                match std::str::from_utf8(body) {
                    Ok(s) => Ok(Some(s.to_owned())),
                    Err(_) => {
                        self.defer(PassThrough::NonUtf8);
                        Ok(None)
                    }
                }
            }
            Tk::BareWord => {
                self.bump();
                if self.is_kw(&t, "TRUE") {
                    return Ok(Some("1".to_owned()));
                }
                if self.is_kw(&t, "FALSE") {
                    return Ok(Some("0".to_owned()));
                }
                let simple = ["NULL", "DEFAULT", "inf", "infinity", "nan"]
                    .iter()
                    .any(|k| self.is_kw(&t, k));
                let next = self.peek()?;
                if next.kind == Tk::LParen {
                    // A function call such as disk(...).
                    self.skip_balanced(Tk::LParen, Tk::RParen)?;
                } else if !simple {
                    return Err(self.syntax_error(&next, EXP_AFTER_NAME_VALUE));
                }
                self.defer(PassThrough::SettingValue);
                Ok(None)
            }
            Tk::LCurly => {
                // {name:Type} substitution or {'k':'v'} map.
                self.skip_balanced(Tk::LCurly, Tk::RCurly)?;
                self.defer(PassThrough::SettingValue);
                Ok(None)
            }
            _ => Err(self.syntax_error(&t, EXP_SETTING_VALUE)),
        }
    }

    fn number_value(&mut self, negative: bool, t: &Token) -> Option<String> {
        let v = normalize_number(negative, self.bytes(t));
        if v.is_none() {
            self.defer(PassThrough::SettingValue);
        }
        v
    }

    /// Skips from an opening bracket at the cursor to its matching closing one.
    fn skip_balanced(&mut self, open: Tk, close: Tk) -> PResult<()> {
        let mut depth = 0usize;
        loop {
            let t = self.peek()?;
            self.bump();
            if t.kind == open {
                depth += 1;
            } else if t.kind == close {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return Ok(());
                }
            } else if t.kind == Tk::End || matches!(t.kind, Tk::Error(_)) {
                return Err(self.syntax_error(&t, "ClosingBracket"));
            }
        }
    }

    /// Where the data starts after `VALUES`: the first token that is not whitespace or a
    /// comment. `VALUES;` means no data (and nothing may follow the `;`).
    fn values_data(&mut self) -> PResult<usize> {
        let t = self.raw(self.i);
        if t.too_long {
            // ClickHouse takes the data from where its lexer gave up.
            return Ok(t.begin);
        }
        if t.incomplete {
            if self.may_become_blank(&t) {
                return Err(Stop::NeedMore);
            }
            return Ok(t.begin);
        }
        if t.kind == Tk::Semicolon {
            // `VALUES;` (ClickHouse also takes `VALUES;;`): no data, and nothing may follow.
            let mut k = self.i + 1;
            while self.raw(k).kind == Tk::Semicolon && !self.raw(k).incomplete {
                k += 1;
            }
            let u = self.raw(k);
            if u.too_long {
                return Err(Stop::Error(self.too_long_error(u)));
            }
            if u.incomplete {
                return Err(Stop::NeedMore);
            }
            if u.kind == Tk::End {
                return Ok(self.text.len());
            }
            let message = format!(
                "Syntax error (Multi-statements are not allowed): failed at position {} (end of query): {}. ",
                t.begin + 1,
                String::from_utf8_lossy(
                    &self.text
                        [t.begin..(t.begin + SHOW_CHARS_ON_SYNTAX_ERROR).min(self.text.len())]
                )
            );
            return Err(Stop::Error(SqlError::syntax(message)));
        }
        Ok(t.begin)
    }

    /// Where the data starts after `FORMAT <name>` (the name token ends at `name_end`).
    fn format_data(&mut self, name_end: usize) -> PResult<usize> {
        let t = self.text;
        let n = t.len();
        // ClickHouse parses from a buffer of max_query_size + 1 bytes.
        let scan_limit = self.limit.saturating_add(1).min(n);
        let need_more = |d: usize| d >= n && !self.complete && d < self.limit.saturating_add(1);
        let mut d = name_end;
        if need_more(d) {
            return Err(Stop::NeedMore);
        }
        if d < n && t[d] == b';' {
            return Err(Stop::Error(SqlError::syntax(
                "You have excessive ';' symbol before data for INSERT.\nExample:\n\n\
                 INSERT INTO t (x, y) FORMAT TabSeparated\n;\tHello\n2\tWorld\n\n\
                 Note that there is no ';' just after format name, you need to put at least one \
                 whitespace symbol before the data"
                    .to_owned(),
            )));
        }
        while d < scan_limit && matches!(t[d], b' ' | b'\t' | 0x0c) {
            d += 1;
        }
        if need_more(d) {
            return Err(Stop::NeedMore);
        }
        if d < scan_limit && t[d] == b'\r' {
            d += 1;
            if need_more(d) {
                return Err(Stop::NeedMore);
            }
        }
        if d < scan_limit && t[d] == b'\n' {
            d += 1;
        }
        Ok(d)
    }

    fn map_pos(&self, pos: usize) -> DataStart {
        match self.param_len {
            Some(p) if pos <= p => DataStart::Param { offset: pos },
            Some(p) => DataStart::Body {
                offset: pos - p - 1,
            },
            None => DataStart::Body { offset: pos },
        }
    }
}

// ------------------------------------------------------------------------------------------------
// Tests
// ------------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    const P: &[(&str, &str)] = &[
        ("param_database", "default"),
        ("param_table", "t"),
        ("param_tbl", "blob"),
        ("param_empty", ""),
    ];

    fn run(param: Option<&str>, body: &[u8], complete: bool) -> Classified {
        let lookup = param_lookup(P);
        classify(param.map(str::as_bytes), body, complete, &lookup)
    }

    /// A compact rendering of an outcome, with the data bytes spelled out.
    fn show(param: Option<&str>, body: &[u8], c: &Classified) -> String {
        match c {
            Classified::NotInsert => "not-insert".into(),
            Classified::NeedMore => "need-more".into(),
            Classified::InsertFunction => "insert-function".into(),
            Classified::InsertSelect => "insert-select".into(),
            Classified::InsertOther(r) => format!("insert-other {r:?}"),
            Classified::Error(e) => format!("error {}", e.code),
            Classified::Insert(s) => {
                let mut out = String::from("insert ");
                if let Some(db) = &s.database {
                    out += &format!("{db:?}.");
                }
                out += &format!("{:?}", s.table);
                if let Some(cols) = &s.columns {
                    out += &format!(" cols={cols:?}");
                }
                if !s.settings.is_empty() {
                    out += &format!(" settings={:?}", s.settings);
                }
                match &s.format {
                    Format::Values => out += " VALUES",
                    Format::Named(n) => out += &format!(" FORMAT {n}"),
                }
                let mut data = s.data.prefix(
                    param
                        .filter(|p| !p.is_empty())
                        .unwrap_or_default()
                        .as_bytes(),
                );
                data.extend_from_slice(&body[s.data.body_offset()..]);
                let place = match s.data {
                    DataStart::Param { .. } => "param",
                    DataStart::Body { .. } => "body",
                };
                out += &format!(" data@{place}={:?}", String::from_utf8_lossy(&data));
                out
            }
        }
    }

    fn check(cases: &[(Option<&str>, &str, &str)]) {
        let mut failures = Vec::new();
        for (param, body, want) in cases {
            let c = run(*param, body.as_bytes(), true);
            let got = show(*param, body.as_bytes(), &c);
            if got != *want {
                failures.push(format!(
                    "param={param:?} body={body:?}\n   want: {want}\n    got: {got}"
                ));
            }
        }
        assert!(
            failures.is_empty(),
            "{} failures:\n{}",
            failures.len(),
            failures.join("\n")
        );
    }

    #[test]
    fn captured_client_statements() {
        check(&[
            // aiochclient / Vector / curl: the statement in the query param, data in the body.
            (
                Some("INSERT INTO t FORMAT JSONEachRow"),
                r#"{"id": 960, "name": "j"}"#,
                r#"insert "t" FORMAT JSONEachRow data@body="{\"id\": 960, \"name\": \"j\"}""#,
            ),
            (
                Some("INSERT INTO t VALUES"),
                "(900,'2024-01-01 00:00:00','ai\\'o0',0.0),(901,'x','y',1)",
                r#"insert "t" VALUES data@body="(900,'2024-01-01 00:00:00','ai\\'o0',0.0),(901,'x','y',1)""#,
            ),
            (
                Some("INSERT INTO t (id, name) VALUES"),
                "(950,'x\ty\\\\z'),(951,NULL)",
                r#"insert "t" cols=["id", "name"] VALUES data@body="(950,'x\ty\\\\z'),(951,NULL)""#,
            ),
            (
                Some("INSERT INTO t2 VALUES"),
                "(10,'lc',NULL,[1,2]),(11,'lc2','s',[])",
                r#"insert "t2" VALUES data@body="(10,'lc',NULL,[1,2]),(11,'lc2','s',[])""#,
            ),
            (
                Some("INSERT INTO t FORMAT CSV"),
                "1,2\n",
                r#"insert "t" FORMAT CSV data@body="1,2\n""#,
            ),
            (
                Some("INSERT INTO t FORMAT TSV"),
                "3005\tx\n",
                r#"insert "t" FORMAT TSV data@body="3005\tx\n""#,
            ),
            (
                Some(r#"INSERT INTO "default"."t" FORMAT JSONEachRow"#),
                "{}",
                r#"insert "default"."t" FORMAT JSONEachRow data@body="{}""#,
            ),
            (
                Some("INSERT INTO {database:Identifier}.{table:Identifier} FORMAT JSONEachRow"),
                "{}\n",
                r#"insert "default"."t" FORMAT JSONEachRow data@body="{}\n""#,
            ),
            (
                Some("insert into default.t (id,name) settings async_insert=0 format JSONEachRow"),
                "{}",
                r#"insert "default"."t" cols=["id", "name"] settings=[("async_insert", "0")] FORMAT JSONEachRow data@body="{}""#,
            ),
            (
                Some("INSERT INTO t SETTINGS insert_deduplicate=0 FORMAT JSONEachRow"),
                "{}",
                r#"insert "t" settings=[("insert_deduplicate", "0")] FORMAT JSONEachRow data@body="{}""#,
            ),
            (
                Some("INSERT INTO t"),
                " FORMAT TSV\n3005\tx",
                r#"insert "t" FORMAT TSV data@body="3005\tx""#,
            ),
            (
                Some("INSERT INTO t FORMAT NoSuchFormat"),
                "{}",
                r#"insert "t" FORMAT NoSuchFormat data@body="{}""#,
            ),
            (
                Some("INSERT INTO nope FORMAT JSONEachRow"),
                "",
                r#"insert "nope" FORMAT JSONEachRow data@body="""#,
            ),
            (
                Some("INSERT INTO nodb.t FORMAT JSONEachRow"),
                "",
                r#"insert "nodb"."t" FORMAT JSONEachRow data@body="""#,
            ),
            (
                Some(r#"INSERT INTO TABLE "t" FORMAT JSONEachRow"#),
                "{}",
                r#"insert "t" FORMAT JSONEachRow data@body="{}""#,
            ),
            (
                Some(
                    "INSERT INTO FUNCTION remote('127.0.0.1:19000','default','t') FORMAT JSONEachRow",
                ),
                "{}",
                "insert-function",
            ),
            (
                Some("INSERT INTO `default`.`t` (`id`, name) FORMAT JSONEachRow"),
                "{}",
                r#"insert "default"."t" cols=["id", "name"] FORMAT JSONEachRow data@body="{}""#,
            ),
            (
                Some("INSERT INTO tmp VALUES (7)"),
                "",
                r#"insert "tmp" VALUES data@param="(7)\n""#,
            ),
            (
                Some("INSERT INTO t VALUES (3020,now(),'get',1)"),
                "",
                r#"insert "t" VALUES data@param="(3020,now(),'get',1)\n""#,
            ),
            (
                Some("INSERT INTO t VALUES"),
                "(3003,now(),'x',1),(3004,now(),'y',2)",
                r#"insert "t" VALUES data@body="(3003,now(),'x',1),(3004,now(),'y',2)""#,
            ),
            // Rust clickhouse crate: glued column list, no spaces.
            (
                Some("INSERT INTO `t`(`id`,`ts`,`name`,`v`) FORMAT RowBinaryWithNamesAndTypes"),
                "\x04\x02id",
                r#"insert "t" cols=["id", "ts", "name", "v"] FORMAT RowBinaryWithNamesAndTypes data@body="\u{4}\u{2}id""#,
            ),
            (
                Some("INSERT INTO `t`(`id`,`ts`,`name`,`v`) FORMAT RowBinary"),
                "",
                r#"insert "t" cols=["id", "ts", "name", "v"] FORMAT RowBinary data@body="""#,
            ),
            (
                Some("INSERT INTO `t`(`id`) FORMAT RowBinary"),
                "x",
                r#"insert "t" cols=["id"] FORMAT RowBinary data@body="x""#,
            ),
            (
                Some(
                    "INSERT INTO `t2`(`id`,`tag`,`maybe`,`arr`) FORMAT RowBinaryWithNamesAndTypes",
                ),
                "",
                r#"insert "t2" cols=["id", "tag", "maybe", "arr"] FORMAT RowBinaryWithNamesAndTypes data@body="""#,
            ),
            (
                Some("INSERT INTO `t` (`id`, `ts`, `name`, `v`) FORMAT Arrow"),
                "ARROW1",
                r#"insert "t" cols=["id", "ts", "name", "v"] FORMAT Arrow data@body="ARROW1""#,
            ),
            // clickhouse-connect: the statement in the (decompressed) body.
            (
                None,
                "INSERT INTO `t` (`id`, `ts`, `name`, `v`) FORMAT Native\n\x04\x03\x02id",
                r#"insert "t" cols=["id", "ts", "name", "v"] FORMAT Native data@body="\u{4}\u{3}\u{2}id""#,
            ),
            (
                None,
                "INSERT INTO `default`.`t` (`id`, `ts`, `name`, `v`) FORMAT Native\n\x04",
                r#"insert "default"."t" cols=["id", "ts", "name", "v"] FORMAT Native data@body="\u{4}""#,
            ),
            (
                None,
                "INSERT INTO `t2` (`id`, `tag`, `maybe`, `arr`) FORMAT Native\n",
                r#"insert "t2" cols=["id", "tag", "maybe", "arr"] FORMAT Native data@body="""#,
            ),
            (
                None,
                "INSERT INTO t (`id`, `ts`, `name`, `v`) FORMAT CSV\n1,2",
                r#"insert "t" cols=["id", "ts", "name", "v"] FORMAT CSV data@body="1,2""#,
            ),
            (
                None,
                "INSERT INTO t FORMAT JSONEachRow\n{\"id\":3000}\n{}",
                r#"insert "t" FORMAT JSONEachRow data@body="{\"id\":3000}\n{}""#,
            ),
            (
                None,
                "INSERT INTO t VALUES (1),(2)",
                r#"insert "t" VALUES data@body="(1),(2)""#,
            ),
            // Requests that are not inserts.
            (None, "SELECT version(), timezone()", "not-insert"),
            (
                None,
                "SELECT name, value, readonly FROM system.settings LIMIT 10000\n FORMAT Native",
                "not-insert",
            ),
            (None, "SELECT 1 AS check\n FORMAT Native", "not-insert"),
            (None, "DESCRIBE TABLE `t`\n FORMAT Native", "not-insert"),
            (None, "DESCRIBE TABLE `t`", "not-insert"),
            (Some("SELECT 1"), "", "not-insert"),
            (
                Some(
                    "SELECT name, engine FROM system.tables WHERE database = {db:String} AND name = {tbl:String} FORMAT JSONEachRow",
                ),
                "",
                "not-insert",
            ),
            (None, "CREATE TEMPORARY TABLE tmp (x UInt8)", "not-insert"),
            (None, "SHOW TABLES", "not-insert"),
            (None, "EXISTS TABLE t", "not-insert"),
            (None, "WITH 1 AS x SELECT x", "not-insert"),
            (
                None,
                "WITH 1 AS x INSERT INTO blob VALUES ('a')",
                "not-insert",
            ),
            (None, "EXPLAIN INSERT INTO blob VALUES ('a')", "not-insert"),
            (None, "(INSERT INTO blob VALUES ('a'))", "not-insert"),
            (None, "INSERT blob FORMAT RawBLOB\nabc", "not-insert"),
            (None, "INSERTINTO blob FORMAT RawBLOB\nabc", "not-insert"),
            (None, "", "not-insert"),
            (None, "   \n", "not-insert"),
            (Some(""), "", "not-insert"),
            (Some("   "), "abc", "not-insert"),
        ]);
    }

    #[test]
    fn where_the_data_starts() {
        check(&[
            (
                Some("INSERT INTO blob FORMAT RawBLOB"),
                "abc",
                r#"insert "blob" FORMAT RawBLOB data@body="abc""#,
            ),
            (
                Some("INSERT INTO blob FORMAT RawBLOB   "),
                "abc",
                r#"insert "blob" FORMAT RawBLOB data@body="abc""#,
            ),
            (
                Some("INSERT INTO blob FORMAT RawBLOB\n"),
                "abc",
                r#"insert "blob" FORMAT RawBLOB data@param="\nabc""#,
            ),
            (
                Some("INSERT INTO blob FORMAT RawBLOB\r\n"),
                "abc",
                r#"insert "blob" FORMAT RawBLOB data@param="\nabc""#,
            ),
            (
                Some("INSERT INTO blob FORMAT RawBLOB\r"),
                "abc",
                r#"insert "blob" FORMAT RawBLOB data@body="abc""#,
            ),
            (
                Some("INSERT INTO blob FORMAT RawBLOB\nxyz"),
                "abc",
                r#"insert "blob" FORMAT RawBLOB data@param="xyz\nabc""#,
            ),
            (
                None,
                "INSERT INTO blob FORMAT RawBLOB \t\x0c\r\n\nabc",
                r#"insert "blob" FORMAT RawBLOB data@body="\nabc""#,
            ),
            (
                None,
                "INSERT INTO blob FORMAT RawBLOB\rabc",
                r#"insert "blob" FORMAT RawBLOB data@body="abc""#,
            ),
            (
                None,
                "INSERT INTO blob FORMAT RawBLOB\x0babc",
                r#"insert "blob" FORMAT RawBLOB data@body="\u{b}abc""#,
            ),
            (
                None,
                "INSERT INTO blob FORMAT RawBLOB  abc",
                r#"insert "blob" FORMAT RawBLOB data@body="abc""#,
            ),
            (None, "INSERT INTO blob FORMAT RawBLOB;abc", "error 62"),
            (
                None,
                "INSERT INTO blob FORMAT RawBLOB ;abc",
                r#"insert "blob" FORMAT RawBLOB data@body=";abc""#,
            ),
            (
                None,
                "INSERT INTO blob FORMAT RawBLOB",
                r#"insert "blob" FORMAT RawBLOB data@body="""#,
            ),
            (
                None,
                "INSERT INTO blob FORMAT RawBLOB\n",
                r#"insert "blob" FORMAT RawBLOB data@body="""#,
            ),
            (
                Some(""),
                "INSERT INTO blob FORMAT RawBLOB\nabc",
                r#"insert "blob" FORMAT RawBLOB data@body="abc""#,
            ),
            (
                Some("INSERT INTO blob"),
                " FORMAT RawBLOB\nabc",
                r#"insert "blob" FORMAT RawBLOB data@body="abc""#,
            ),
            (
                Some("INSERT INTO blob FORMAT"),
                "RawBLOB\nabc",
                r#"insert "blob" FORMAT RawBLOB data@body="abc""#,
            ),
            (
                Some("INSERT INTO blob FORMAT Raw"),
                "BLOB\nabc",
                r#"insert "blob" FORMAT Raw data@body="BLOB\nabc""#,
            ),
            (
                Some("INSERT INTO"),
                "blob FORMAT RawBLOB abc",
                r#"insert "blob" FORMAT RawBLOB data@body="abc""#,
            ),
            (
                Some("INSERT"),
                "INTO blob (b) FORMAT RawBLOB abc",
                r#"insert "blob" cols=["b"] FORMAT RawBLOB data@body="abc""#,
            ),
            (
                None,
                "INSERT/**/INTO/**/blob/**/FORMAT/**/RawBLOB/**/abc",
                r#"insert "blob" FORMAT RawBLOB data@body="/**/abc""#,
            ),
            (
                None,
                "INSERT INTO blob FORMAT RawBLOB -- x\nabc",
                r#"insert "blob" FORMAT RawBLOB data@body="-- x\nabc""#,
            ),
            (
                None,
                "INSERT INTO blob FORMAT RawBLOB SETTINGS max_threads=1\nabc",
                r#"insert "blob" FORMAT RawBLOB data@body="SETTINGS max_threads=1\nabc""#,
            ),
            (
                None,
                "INSERT INTO blob FORMAT Native\x04\x03",
                r#"insert "blob" FORMAT Native data@body="\u{4}\u{3}""#,
            ),
            (
                None,
                "INSERT INTO blob FORMAT JSONEachRow{\"a\":1}",
                r#"insert "blob" FORMAT JSONEachRow data@body="{\"a\":1}""#,
            ),
            // VALUES: the data starts at the first token after the keyword.
            (
                None,
                "INSERT INTO blob VALUES ('abc')",
                r#"insert "blob" VALUES data@body="('abc')""#,
            ),
            (
                None,
                "INSERT INTO blob VALUES('x')",
                r#"insert "blob" VALUES data@body="('x')""#,
            ),
            (
                None,
                "INSERT INTO blob VALUES /*c*/ ('x')",
                r#"insert "blob" VALUES data@body="('x')""#,
            ),
            (
                None,
                "INSERT INTO blob VALUES -- c\n ('x')",
                r#"insert "blob" VALUES data@body="('x')""#,
            ),
            (
                None,
                "INSERT INTO blob VALUES ('x');",
                r#"insert "blob" VALUES data@body="('x');""#,
            ),
            (
                None,
                "INSERT INTO blob VALUES",
                r#"insert "blob" VALUES data@body="""#,
            ),
            (
                None,
                "INSERT INTO blob VALUES;",
                r#"insert "blob" VALUES data@body="""#,
            ),
            (
                None,
                "INSERT INTO blob VALUES ; -- nothing\n",
                r#"insert "blob" VALUES data@body="""#,
            ),
            (None, "INSERT INTO blob VALUES; ('x')", "error 62"),
            (
                None,
                "INSERT INTO blob VALUES;;",
                r#"insert "blob" VALUES data@body="""#,
            ),
            (None, "INSERT INTO blob VALUES;; SELECT 1", "error 62"),
            (
                None,
                "INSERT INTO blob VALUES SETTINGS max_threads=1 ('x')",
                r#"insert "blob" VALUES data@body="SETTINGS max_threads=1 ('x')""#,
            ),
            (
                Some("INSERT INTO blob VALUES"),
                "('x'),('y')",
                r#"insert "blob" VALUES data@body="('x'),('y')""#,
            ),
            (
                Some("INSERT INTO blob VALUES"),
                "  \n ('x')",
                r#"insert "blob" VALUES data@body="('x')""#,
            ),
            (
                Some("INSERT INTO blob VALUES"),
                "",
                r#"insert "blob" VALUES data@body="""#,
            ),
            (
                Some("INSERT INTO blob VALUES ('x'),"),
                "('y')",
                r#"insert "blob" VALUES data@param="('x'),\n('y')""#,
            ),
            (
                Some("INSERT INTO blob VALUES;"),
                "",
                r#"insert "blob" VALUES data@body="""#,
            ),
            (Some("INSERT INTO blob VALUES;"), "('x')", "error 62"),
            (
                Some("INSERT INTO blob FORMAT Values"),
                "('x')",
                r#"insert "blob" FORMAT Values data@body="('x')""#,
            ),
        ]);
    }

    #[test]
    fn comments_whitespace_and_case() {
        check(&[
            (
                None,
                "/* a /* nested */ b */ INSERT INTO blob FORMAT RawBLOB\nabc",
                r#"insert "blob" FORMAT RawBLOB data@body="abc""#,
            ),
            (
                None,
                "/* a /* nested */ INSERT INTO blob FORMAT RawBLOB\nabc */ SELECT 1",
                "not-insert",
            ),
            (
                None,
                "-- c\nINSERT INTO blob FORMAT RawBLOB\nabc",
                r#"insert "blob" FORMAT RawBLOB data@body="abc""#,
            ),
            (
                None,
                "# c\nINSERT INTO blob FORMAT RawBLOB\nabc",
                r#"insert "blob" FORMAT RawBLOB data@body="abc""#,
            ),
            (
                None,
                "#!c\nINSERT INTO blob FORMAT RawBLOB\nabc",
                r#"insert "blob" FORMAT RawBLOB data@body="abc""#,
            ),
            (
                None,
                "// c\nINSERT INTO blob FORMAT RawBLOB\nabc",
                r#"insert "blob" FORMAT RawBLOB data@body="abc""#,
            ),
            (
                None,
                "#c\nINSERT INTO blob FORMAT RawBLOB\nabc",
                "not-insert",
            ),
            (
                Some("-- hi"),
                "INSERT INTO blob FORMAT RawBLOB\nabc",
                r#"insert "blob" FORMAT RawBLOB data@body="abc""#,
            ),
            (
                Some("/* hi */"),
                "INSERT INTO blob FORMAT RawBLOB\nabc",
                r#"insert "blob" FORMAT RawBLOB data@body="abc""#,
            ),
            (
                None,
                "INSERT -- c\n INTO /* x */ blob # y\n FORMAT // z\n RawBLOB\nabc",
                r#"insert "blob" FORMAT RawBLOB data@body="abc""#,
            ),
            (
                None,
                "\u{feff}INSERT INTO blob FORMAT RawBLOB\nabc",
                r#"insert "blob" FORMAT RawBLOB data@body="abc""#,
            ),
            (
                None,
                "INSERT\u{a0}INTO blob FORMAT RawBLOB\nabc",
                r#"insert "blob" FORMAT RawBLOB data@body="abc""#,
            ),
            (
                None,
                "INSERT INTO\u{3000}blob FORMAT RawBLOB\nabc",
                r#"insert "blob" FORMAT RawBLOB data@body="abc""#,
            ),
            (
                None,
                "INSERT\u{2028}INTO\u{85}blob\u{200b}FORMAT\u{2060}RawBLOB\nabc",
                r#"insert "blob" FORMAT RawBLOB data@body="abc""#,
            ),
            (
                None,
                "INSERT\u{180e}INTO\u{2009}blob\u{202f}FORMAT\u{205f}RawBLOB\nabc",
                r#"insert "blob" FORMAT RawBLOB data@body="abc""#,
            ),
            (
                None,
                "INSERT\u{2030}INTO blob FORMAT RawBLOB\nabc",
                "not-insert",
            ),
            (
                None,
                "insert into TABLE blob format rawblob\nabc",
                r#"insert "blob" FORMAT rawblob data@body="abc""#,
            ),
            (
                None,
                "InSeRt InTo TaBlE blob FoRmAt RAWBLOB\nabc",
                r#"insert "blob" FORMAT RAWBLOB data@body="abc""#,
            ),
            (
                None,
                "insert into blob values (1)",
                r#"insert "blob" VALUES data@body="(1)""#,
            ),
            (
                None,
                "\r\n\t INSERT INTO blob FORMAT TSV\n",
                r#"insert "blob" FORMAT TSV data@body="""#,
            ),
        ]);
    }

    #[test]
    fn names() {
        check(&[
            (
                None,
                "INSERT INTO `we``ird` FORMAT RawBLOB\nabc",
                r#"insert "we`ird" FORMAT RawBLOB data@body="abc""#,
            ),
            (
                None,
                "INSERT INTO `we\\`ird` FORMAT RawBLOB\nabc",
                r#"insert "we`ird" FORMAT RawBLOB data@body="abc""#,
            ),
            (
                None,
                "INSERT INTO \"q\\\"t\" FORMAT RawBLOB\nabc",
                r#"insert "q\"t" FORMAT RawBLOB data@body="abc""#,
            ),
            (
                None,
                "INSERT INTO \"q\"\"t\" FORMAT RawBLOB\nabc",
                r#"insert "q\"t" FORMAT RawBLOB data@body="abc""#,
            ),
            (
                None,
                "INSERT INTO a$b FORMAT RawBLOB\nabc",
                r#"insert "a$b" FORMAT RawBLOB data@body="abc""#,
            ),
            (
                None,
                "INSERT INTO 1t FORMAT RawBLOB\nabc",
                r#"insert "1t" FORMAT RawBLOB data@body="abc""#,
            ),
            (
                None,
                "INSERT INTO t_1.x_2 FORMAT RawBLOB\nabc",
                r#"insert "t_1"."x_2" FORMAT RawBLOB data@body="abc""#,
            ),
            (
                None,
                "INSERT INTO `db.t` FORMAT RawBLOB\nabc",
                r#"insert "db.t" FORMAT RawBLOB data@body="abc""#,
            ),
            (
                None,
                "INSERT INTO `bs\\q` FORMAT RawBLOB\nabc",
                r#"insert "bs\\q" FORMAT RawBLOB data@body="abc""#,
            ),
            (
                None,
                "INSERT INTO `\\x62lob` FORMAT RawBLOB\nabc",
                r#"insert "blob" FORMAT RawBLOB data@body="abc""#,
            ),
            (
                None,
                "INSERT INTO `a\\nb\\%` FORMAT RawBLOB\nabc",
                r#"insert "a\nb\\%" FORMAT RawBLOB data@body="abc""#,
            ),
            (
                None,
                "INSERT INTO `\\xZZ` FORMAT RawBLOB\nabc",
                "insert-other BadEscape",
            ),
            (
                None,
                "INSERT INTO `\\xff` FORMAT RawBLOB\nabc",
                "insert-other NonUtf8",
            ),
            (
                None,
                "INSERT INTO `таблица` FORMAT RawBLOB\nabc",
                r#"insert "таблица" FORMAT RawBLOB data@body="abc""#,
            ),
            (None, "INSERT INTO таблица FORMAT RawBLOB\nabc", "error 62"),
            (
                None,
                "INSERT INTO `default`.`blob` FORMAT RawBLOB\nabc",
                r#"insert "default"."blob" FORMAT RawBLOB data@body="abc""#,
            ),
            (
                None,
                "INSERT INTO default . blob FORMAT RawBLOB\nabc",
                r#"insert "default"."blob" FORMAT RawBLOB data@body="abc""#,
            ),
            (
                None,
                "INSERT INTO \"default\".\"blob\" FORMAT RawBLOB\nabc",
                r#"insert "default"."blob" FORMAT RawBLOB data@body="abc""#,
            ),
            (None, "INSERT INTO `` FORMAT RawBLOB\nabc", "error 62"),
            (
                None,
                "INSERT INTO a.default.blob FORMAT RawBLOB\nabc",
                "error 62",
            ),
            (None, "INSERT INTO 123 FORMAT RawBLOB\nabc", "error 62"),
            (None, "INSERT INTO 'blob' FORMAT RawBLOB\nabc", "error 62"),
            (
                None,
                "INSERT INTO TABLE table FORMAT RawBLOB\nabc",
                r#"insert "table" FORMAT RawBLOB data@body="abc""#,
            ),
            (
                None,
                "INSERT INTO `function` FORMAT RawBLOB\nabc",
                r#"insert "function" FORMAT RawBLOB data@body="abc""#,
            ),
            (
                None,
                "INSERT INTO values VALUES (1)",
                r#"insert "values" VALUES data@body="(1)""#,
            ),
            // Quoted format names.
            (
                None,
                "INSERT INTO blob FORMAT `RawBLOB`\nabc",
                r#"insert "blob" FORMAT RawBLOB data@body="abc""#,
            ),
            (
                None,
                "INSERT INTO blob FORMAT \"RawBLOB\"\nabc",
                r#"insert "blob" FORMAT RawBLOB data@body="abc""#,
            ),
            (None, "INSERT INTO blob FORMAT 'RawBLOB'\nabc", "error 62"),
            (None, "INSERT INTO blob FORMAT 123", "error 62"),
        ]);
    }

    #[test]
    fn query_parameters() {
        check(&[
            (
                Some("INSERT INTO {tbl:Identifier} FORMAT RawBLOB"),
                "abc",
                r#"insert "blob" FORMAT RawBLOB data@body="abc""#,
            ),
            (
                Some("INSERT INTO { tbl : Identifier } FORMAT RawBLOB"),
                "abc",
                r#"insert "blob" FORMAT RawBLOB data@body="abc""#,
            ),
            (
                Some("INSERT INTO {tbl:Identifier}FORMAT RawBLOB"),
                "abc",
                r#"insert "blob" FORMAT RawBLOB data@body="abc""#,
            ),
            (
                Some("INSERT INTO default.{tbl:Identifier} FORMAT RawBLOB"),
                "abc",
                r#"insert "default"."blob" FORMAT RawBLOB data@body="abc""#,
            ),
            (
                Some("INSERT INTO {database:Identifier}.blob (b) FORMAT RawBLOB"),
                "abc",
                r#"insert "default"."blob" cols=["b"] FORMAT RawBLOB data@body="abc""#,
            ),
            (
                Some("INSERT INTO {missing:Identifier} FORMAT RawBLOB"),
                "abc",
                "error 456",
            ),
            (
                Some("INSERT INTO {empty:Identifier} FORMAT RawBLOB"),
                "abc",
                "error 457",
            ),
            (
                Some("INSERT INTO {tbl:String} FORMAT RawBLOB"),
                "abc",
                "error 62",
            ),
            (
                Some("INSERT INTO {tbl:identifier} FORMAT RawBLOB"),
                "abc",
                "error 62",
            ),
            (
                Some("INSERT INTO {`tbl`:Identifier} FORMAT RawBLOB"),
                "abc",
                "error 62",
            ),
            (
                Some("INSERT INTO {tbl Identifier} FORMAT RawBLOB"),
                "abc",
                "error 62",
            ),
            (
                Some("INSERT INTO blob FORMAT {f:Identifier}"),
                "abc",
                "insert-other FormatParameter",
            ),
            (
                Some("INSERT INTO blob ({c:Identifier}) FORMAT RawBLOB"),
                "abc",
                "insert-other ColumnParameter",
            ),
        ]);
        // Parameter values are used verbatim, dots and quotes included.
        let params = [("param_t", "we`ird.x"), ("param_t", "last wins")];
        let lookup = param_lookup(&params);
        let c = classify(
            Some(b"INSERT INTO {t:Identifier} FORMAT TSV"),
            b"",
            true,
            &lookup,
        );
        let Classified::Insert(s) = c else {
            panic!("{c:?}")
        };
        assert_eq!(s.table, "last wins");
        assert_eq!(s.database, None);
        let params = [("param_t", "we`ird.x")];
        let lookup = param_lookup(&params);
        let c = classify(
            Some(b"INSERT INTO {t:Identifier} FORMAT TSV"),
            b"",
            true,
            &lookup,
        );
        let Classified::Insert(s) = c else {
            panic!("{c:?}")
        };
        assert_eq!(s.table, "we`ird.x");
        let c = classify(
            Some(b"INSERT INTO {t:Identifier} FORMAT TSV"),
            b"",
            true,
            &no_params,
        );
        let Classified::Error(e) = c else {
            panic!("{c:?}")
        };
        assert_eq!(
            (e.code, e.http_status, e.name),
            (456, 500, "UNKNOWN_QUERY_PARAMETER")
        );
        assert_eq!(e.message, "Substitution `t` is not set");
    }

    #[test]
    fn column_lists() {
        check(&[
            (
                None,
                "INSERT INTO blob (b) FORMAT RawBLOB\nabc",
                r#"insert "blob" cols=["b"] FORMAT RawBLOB data@body="abc""#,
            ),
            (
                None,
                "INSERT INTO blob(b)FORMAT RawBLOB\nabc",
                r#"insert "blob" cols=["b"] FORMAT RawBLOB data@body="abc""#,
            ),
            (
                None,
                "INSERT INTO blob (b,) FORMAT RawBLOB\nabc",
                r#"insert "blob" cols=["b"] FORMAT RawBLOB data@body="abc""#,
            ),
            (
                None,
                "INSERT INTO blob ( a , b ) FORMAT RawBLOB\nabc",
                r#"insert "blob" cols=["a", "b"] FORMAT RawBLOB data@body="abc""#,
            ),
            (
                None,
                "INSERT INTO blob (blob.b) FORMAT RawBLOB\nabc",
                r#"insert "blob" cols=["blob.b"] FORMAT RawBLOB data@body="abc""#,
            ),
            (
                None,
                "INSERT INTO nest (b, n.x) FORMAT JSONEachRow\n{}",
                r#"insert "nest" cols=["b", "n.x"] FORMAT JSONEachRow data@body="{}""#,
            ),
            (
                None,
                "INSERT INTO nest (`b`, `n`.`x`) FORMAT JSONEachRow\n{}",
                r#"insert "nest" cols=["b", "n.x"] FORMAT JSONEachRow data@body="{}""#,
            ),
            (
                None,
                "INSERT INTO nest (`b`, `n.x`, \"c d\") FORMAT JSONEachRow\n{}",
                r#"insert "nest" cols=["b", "n.x", "c d"] FORMAT JSONEachRow data@body="{}""#,
            ),
            (
                None,
                "INSERT INTO kw (select) FORMAT TSV\nabc",
                r#"insert "kw" cols=["select"] FORMAT TSV data@body="abc""#,
            ),
            (
                None,
                "INSERT INTO blob (b, b) FORMAT RawBLOB\nabc",
                r#"insert "blob" cols=["b", "b"] FORMAT RawBLOB data@body="abc""#,
            ),
            (
                None,
                "INSERT INTO blob (b) VALUES ('x')",
                r#"insert "blob" cols=["b"] VALUES data@body="('x')""#,
            ),
            (
                None,
                "INSERT INTO blob (*) FORMAT RawBLOB\nabc",
                "insert-other ColumnMatcher",
            ),
            (
                None,
                "INSERT INTO blob (* EXCEPT b) FORMAT RawBLOB\nabc",
                "insert-other ColumnMatcher",
            ),
            (
                None,
                "INSERT INTO blob (blob.*) FORMAT RawBLOB\nabc",
                "insert-other ColumnMatcher",
            ),
            (
                None,
                "INSERT INTO blob (COLUMNS('b')) FORMAT RawBLOB\nabc",
                "insert-other ColumnMatcher",
            ),
            (
                None,
                "INSERT INTO blob (a, blob.COLUMNS('b')) FORMAT RawBLOB\nabc",
                "insert-other ColumnMatcher",
            ),
            (
                None,
                "INSERT INTO blob (columns) FORMAT RawBLOB\nabc",
                r#"insert "blob" cols=["columns"] FORMAT RawBLOB data@body="abc""#,
            ),
            (None, "INSERT INTO blob () FORMAT RawBLOB\nabc", "error 62"),
            (
                None,
                "INSERT INTO blob (,b) FORMAT RawBLOB\nabc",
                "error 62",
            ),
            (
                None,
                "INSERT INTO blob (b c) FORMAT RawBLOB\nabc",
                "error 62",
            ),
            (
                None,
                "INSERT INTO blob (b,,) FORMAT RawBLOB\nabc",
                "error 62",
            ),
            (None, "INSERT INTO blob (b FORMAT RawBLOB\nabc", "error 62"),
            (None, "INSERT INTO blob (b", "error 62"),
            (
                None,
                "INSERT INTO blob (a.) FORMAT RawBLOB\nabc",
                "error 62",
            ),
            (
                None,
                "INSERT INTO blob (`` ) FORMAT RawBLOB\nabc",
                "error 62",
            ),
        ]);
    }

    #[test]
    fn settings_clause() {
        let f = |s: &str| format!("INSERT INTO blob SETTINGS {s} FORMAT RawBLOB\nabc");
        let ok = |settings: &str| {
            format!(r#"insert "blob" settings={settings} FORMAT RawBLOB data@body="abc""#)
        };
        let cases: Vec<(String, String)> = vec![
            (
                f("max_threads=1, max_block_size = 10"),
                ok(r#"[("max_threads", "1"), ("max_block_size", "10")]"#),
            ),
            (
                f("max_threads = 1 , max_block_size = 10"),
                ok(r#"[("max_threads", "1"), ("max_block_size", "10")]"#),
            ),
            (
                f("format_csv_delimiter='x'"),
                ok(r#"[("format_csv_delimiter", "x")]"#),
            ),
            (
                f(r"d='a\'b''c\\d\te\%'"),
                ok(r#"[("d", "a'b'c\\d\te\\%")]"#),
            ),
            (f(r"d='\x41'"), ok(r#"[("d", "A")]"#)),
            (f("d=x'41'"), ok(r#"[("d", "A")]"#)),
            (f("d=X'414'"), ok(r#"[("d", "\u{4}\u{14}")]"#)),
            (f("d=b'101000001'"), ok(r#"[("d", "\u{1}A")]"#)),
            (f("d=$$;$$"), ok(r#"[("d", ";")]"#)),
            (f("d=$a$ b $a$"), ok(r#"[("d", " b ")]"#)),
            (f("x=true, y=FALSE"), ok(r#"[("x", "1"), ("y", "0")]"#)),
            (
                f("x=-1, y=+1, z=- 2"),
                ok(r#"[("x", "-1"), ("y", "1"), ("z", "-2")]"#),
            ),
            (
                f("x=0x10, y=0b11, z=1_000"),
                ok(r#"[("x", "16"), ("y", "3"), ("z", "1000")]"#),
            ),
            (
                f("x=1.5, y=1e1, z=1.50, w=.5, v=-2.5e-3"),
                ok(r#"[("x", "1.5"), ("y", "10"), ("z", "1.5"), ("w", "0.5"), ("v", "-0.0025")]"#),
            ),
            (
                f("x=18446744073709551615, y=-9223372036854775808"),
                ok(r#"[("x", "18446744073709551615"), ("y", "-9223372036854775808")]"#),
            ),
            (
                f("`max_threads`=1, \"a.b\"=2, c.d=3"),
                ok(r#"[("max_threads", "1"), ("a.b", "2"), ("c.d", "3")]"#),
            ),
            (f("param_x='v'"), ok(r#"[("param_x", "v")]"#)),
            // Valid but not modelled: pass through.
            (f("async_insert"), "insert-other SettingValue".into()),
            (
                f("async_insert, max_threads=1"),
                "insert-other SettingValue".into(),
            ),
            (f("x=NULL"), "insert-other SettingValue".into()),
            (f("x=DEFAULT"), "insert-other SettingValue".into()),
            (f("x=inf"), "insert-other SettingValue".into()),
            (f("x=-nan"), "insert-other SettingValue".into()),
            (f("x={n:UInt64}"), "insert-other SettingValue".into()),
            (f("x={'a':'b'}"), "insert-other SettingValue".into()),
            (
                f("x=disk(type='local', path='/x/')"),
                "insert-other SettingValue".into(),
            ),
            (
                f("x=18446744073709551616"),
                "insert-other SettingValue".into(),
            ),
            (f("x=0x1p4"), "insert-other SettingValue".into()),
            (f("x='\\xff'"), "insert-other NonUtf8".into()),
            // Syntax errors.
            (f("date_time_input_format=best_effort"), "error 62".into()),
            (f("x=[1]"), "error 62".into()),
            (f("x=(1)"), "error 62".into()),
            (f("x=1 y=2"), "error 62".into()),
            (f("x=1,"), "error 62".into()),
            (f("x=-'a'"), "error 62".into()),
            (f(""), "error 62".into()),
            (f("x=NULL y=2"), "error 62".into()),
            ("INSERT INTO blob SETTINGS".into(), "error 62".into()),
            (
                "INSERT INTO blob SETTINGS max_threads=".into(),
                "error 62".into(),
            ),
            (
                "INSERT INTO blob SETTINGS x=1 SETTINGS y=2 FORMAT RawBLOB\nabc".into(),
                "error 62".into(),
            ),
            // SETTINGS come before VALUES; after VALUES they are data.
            (
                "INSERT INTO blob SETTINGS max_threads=1 VALUES ('x')".into(),
                r#"insert "blob" settings=[("max_threads", "1")] VALUES data@body="('x')""#.into(),
            ),
            (
                "INSERT INTO blob (b) SETTINGS a=1 SELECT 'x'".into(),
                "insert-select".into(),
            ),
        ];
        let cases: Vec<(Option<&str>, &str, &str)> = cases
            .iter()
            .map(|(b, w)| (None, b.as_str(), w.as_str()))
            .collect();
        check(&cases);
    }

    #[test]
    fn pass_through_inserts() {
        check(&[
            (
                None,
                "INSERT INTO FUNCTION remote('127.0.0.1:19000','default','t') FORMAT JSONEachRow\n{}",
                "insert-function",
            ),
            (
                None,
                "INSERT INTO TABLE FUNCTION file('x.tsv') FORMAT TSV\n",
                "insert-function",
            ),
            (
                None,
                "insert into function s3('u') values (1)",
                "insert-function",
            ),
            (None, "INSERT INTO FUNCTION", "insert-function"),
            (None, "INSERT INTO blob SELECT 'q'", "insert-select"),
            (None, "INSERT INTO blob (b) SELECT 'q'", "insert-select"),
            (
                None,
                "INSERT INTO blob WITH 'z' AS z SELECT z",
                "insert-select",
            ),
            (None, "INSERT INTO blob (SELECT 'q')", "insert-select"),
            (
                None,
                "INSERT INTO blob (WITH 1 AS x SELECT x)",
                "insert-select",
            ),
            (None, "INSERT INTO blob ((SELECT 1))", "insert-select"),
            (None, "INSERT INTO blob (b) (SELECT 'q')", "insert-select"),
            (
                None,
                "INSERT INTO blob FROM system.one SELECT 'f'",
                "insert-select",
            ),
            (
                None,
                "INSERT INTO blob FROM INFILE 'x' FORMAT RawBLOB",
                "insert-other FromInfile",
            ),
            (
                None,
                "INSERT INTO blob (b) FROM INFILE 'x.gz' COMPRESSION 'gzip' FORMAT TSV",
                "insert-other FromInfile",
            ),
        ]);
        assert!(run(None, b"INSERT INTO blob SELECT 1", true).is_pass_through_insert());
        assert!(!run(None, b"SELECT 1", true).is_pass_through_insert());
    }

    #[test]
    fn syntax_errors_look_like_clickhouse() {
        let err = |param: Option<&str>, body: &str| match run(param, body.as_bytes(), true) {
            Classified::Error(e) => e,
            other => panic!("{param:?} {body:?}: {other:?}"),
        };
        let e = err(Some("INSERT INTO t FORMA JSONEachRow"), "{\"id\":1}");
        assert_eq!((e.code, e.http_status, e.name), (62, 400, "SYNTAX_ERROR"));
        assert!(
            e.message.starts_with(
                "Syntax error: failed at position 15 (FORMA) (line 1, col 15): FORMA JSONEachRow\n{\"id\":1}. Expected one of: token, Dot, OpeningRoundBracket, FROM INFILE, SETTINGS, VALUES, FORMAT, SELECT, WITH, FROM, end of query"
            ),
            "{}",
            e.message
        );
        assert_eq!(
            err(None, "INSERT INTO").message,
            "Syntax error: failed at position 12 (end of query): . Expected one of: TABLE, FUNCTION, identifier, end of query"
        );
        assert_eq!(
            err(None, "INSERT INTO blob FORMAT 123").message,
            "Syntax error: failed at position 25 (123): 123. Expected one of: identifier, end of query"
        );
        assert_eq!(
            err(None, "INSERT INTO blob\n").message,
            "Syntax error: failed at position 18 (end of query): . Expected one of: token, Dot, OpeningRoundBracket, FROM INFILE, SETTINGS, VALUES, FORMAT, SELECT, WITH, FROM, end of query"
        );
        assert_eq!(
            err(None, "INSERT INTO blob (b c) FORMAT RawBLOB").message,
            "Syntax error: failed at position 21 (c): c) FORMAT RawBLOB. Expected one of: token sequence, Dot, token, Comma, ClosingRoundBracket, end of query"
        );
        assert_eq!(
            err(None, "INSERT INTO blob VALUES; ('x')").message,
            "Syntax error (Multi-statements are not allowed): failed at position 24 (end of query): ; ('x'). "
        );
        let e = err(None, "INSERT INTO blob FORMAT RawBLOB;abc");
        assert!(
            e.message
                .starts_with("You have excessive ';' symbol before data for INSERT.")
        );
        assert!(
            e.message
                .ends_with("you need to put at least one whitespace symbol before the data")
        );
        let e = err(None, "INSERT INTO blob SETTINGS x='abc");
        assert!(e.message.starts_with("Single quoted string is not closed: Syntax error: failed at position 29 ('abc): 'abc. "), "{}", e.message);
        assert_eq!(
            e.response_body("26.9.2.1"),
            format!(
                "Code: 62. DB::Exception: {}. (SYNTAX_ERROR) (version 26.9.2.1)\n",
                e.message
            )
        );
        // The text after the position is cut at 160 bytes.
        let long = format!("INSERT INTO blob ( a b {}", "x".repeat(1000));
        let e = err(None, &long);
        assert!(e.message.len() < 400, "{}", e.message);
    }

    #[test]
    fn max_query_size() {
        let lim = |body: &str, limit: usize| {
            show(
                None,
                body.as_bytes(),
                &classify_with_limit(None, body.as_bytes(), true, &no_params, limit),
            )
        };
        assert_eq!(lim("INSERT INTO blob FORMAT TSV\nabc", 20), "error 62");
        assert_eq!(lim("INSERT INTO blob FORMAT TSV\nabc", 26), "error 62");
        assert_eq!(
            lim("INSERT INTO blob FORMAT TSV\nabc", 27),
            r#"insert "blob" FORMAT TSV data@body="abc""#
        );
        assert_eq!(
            lim("INSERT INTO blob FORMAT TSV\nabcdefgh", 28),
            r#"insert "blob" FORMAT TSV data@body="abcdefgh""#
        );
        assert_eq!(lim("INSERT INTO blob VALUES ('a')", 22), "error 62");
        // The blank after VALUES crosses the limit: ClickHouse's data then starts at that blank.
        assert_eq!(
            lim("INSERT INTO blob VALUES ('abcdefgh')", 23),
            r#"insert "blob" VALUES data@body=" ('abcdefgh')""#
        );
        assert_eq!(
            lim("INSERT INTO blob VALUES   ('a')", 23),
            r#"insert "blob" VALUES data@body="   ('a')""#
        );
        assert_eq!(
            lim("INSERT INTO blob VALUES   ('a')", 26),
            r#"insert "blob" VALUES data@body="('a')""#
        );
        assert_eq!(
            lim("INSERT INTO blob FORMAT TSV\nabc", 0),
            r#"insert "blob" FORMAT TSV data@body="abc""#
        );
        let Classified::Error(e) = classify_with_limit(
            None,
            b"INSERT INTO blob FORMAT TSV\nabc",
            true,
            &no_params,
            20,
        ) else {
            panic!()
        };
        assert_eq!(
            e.message,
            "Max query size exceeded (can be increased with the `max_query_size` setting): Syntax error: failed at position 18 (FORMAT): FORMAT. "
        );
        // The default limit: a statement longer than 256 KiB is refused, even if the body is not
        // complete yet, and a long head never gives NeedMore.
        let mut body = b"INSERT INTO blob SETTINGS x = '".to_vec();
        body.extend(std::iter::repeat_n(b'a', DEFAULT_MAX_QUERY_SIZE));
        assert_eq!(
            show(None, &body, &classify(None, &body, false, &no_params)),
            "error 62"
        );
        let mut body = b"INSERT INTO blob (".to_vec();
        while body.len() <= DEFAULT_MAX_QUERY_SIZE {
            body.extend_from_slice(b"a, ");
        }
        assert_eq!(
            show(None, &body, &classify(None, &body, false, &no_params)),
            "error 62"
        );
        // Data longer than the limit is fine.
        let mut body = b"INSERT INTO blob FORMAT TSV\n".to_vec();
        body.extend(std::iter::repeat_n(b'a', 3 * DEFAULT_MAX_QUERY_SIZE));
        let c = classify(None, &body, true, &no_params);
        assert!(
            matches!(c, Classified::Insert(ref s) if s.data == DataStart::Body { offset: 28 }),
            "{c:?}"
        );
        // So is a long query param holding data after VALUES.
        let param = format!(
            "INSERT INTO t VALUES {}",
            "(1),".repeat(DEFAULT_MAX_QUERY_SIZE)
        );
        let c = classify(Some(param.as_bytes()), b"(2)", true, &no_params);
        assert!(
            matches!(c, Classified::Insert(ref s) if s.data == DataStart::Param { offset: 21 }),
            "{c:?}"
        );
        // Leading blanks beyond the limit: ClickHouse refuses the query, whatever it is.
        let body = format!(
            "{}INSERT INTO t FORMAT TSV\n",
            " ".repeat(DEFAULT_MAX_QUERY_SIZE + 10)
        );
        assert_eq!(
            classify(None, body.as_bytes(), true, &no_params),
            Classified::NotInsert
        );
        let body = format!(
            "INSERT {}INTO t FORMAT TSV\n",
            " ".repeat(DEFAULT_MAX_QUERY_SIZE + 10)
        );
        assert!(matches!(
            classify(None, body.as_bytes(), true, &no_params),
            Classified::Error(_)
        ));
    }

    #[test]
    fn need_more() {
        let inc = |param: Option<&str>, body: &str| {
            show(param, body.as_bytes(), &run(param, body.as_bytes(), false))
        };
        assert_eq!(inc(None, ""), "need-more");
        assert_eq!(inc(None, "  \n"), "need-more");
        assert_eq!(inc(None, "INS"), "need-more");
        assert_eq!(inc(None, "ins"), "need-more");
        assert_eq!(inc(None, "INSERT"), "need-more");
        assert_eq!(inc(None, "INSERT "), "need-more");
        assert_eq!(inc(None, "INSERT IN"), "need-more");
        assert_eq!(inc(None, "SEL"), "not-insert");
        assert_eq!(inc(None, "INSERTS"), "not-insert");
        assert_eq!(inc(None, "INSERT INTOX"), "not-insert");
        assert_eq!(inc(None, "SELECT 1"), "not-insert");
        assert_eq!(inc(None, "/* abc"), "need-more");
        assert_eq!(inc(None, "-- abc"), "need-more");
        assert_eq!(inc(None, "-"), "need-more");
        assert_eq!(inc(None, "/"), "need-more");
        assert_eq!(inc(None, "#"), "need-more");
        assert_eq!(inc(None, "\u{c2}"), "not-insert");
        assert_eq!(inc(None, "\u{a0}"), "need-more");
        assert_eq!(run(None, b"\xe3", false), Classified::NeedMore);
        assert_eq!(run(None, b"\xe3\x80", false), Classified::NeedMore);
        assert_eq!(run(None, b"\xe3\x80", true), Classified::NotInsert);
        assert_eq!(run(None, b"\xe3\x80\x80", false), Classified::NeedMore);
        let c = run(None, b"\xe3\x80\x80INSERT INTO t FORMAT TSV\n", false);
        assert!(
            matches!(c, Classified::Insert(ref s) if s.data == DataStart::Body { offset: 28 }),
            "{c:?}"
        );
        assert_eq!(inc(None, "INSERT INTO t FORMAT JSONEach"), "need-more");
        assert_eq!(inc(None, "INSERT INTO t FORMAT JSONEachRow"), "need-more");
        assert_eq!(inc(None, "INSERT INTO t FORMAT JSONEachRow  "), "need-more");
        assert_eq!(inc(None, "INSERT INTO t FORMAT JSONEachRow\r"), "need-more");
        assert_eq!(
            inc(None, "INSERT INTO t FORMAT JSONEachRow\n"),
            r#"insert "t" FORMAT JSONEachRow data@body="""#
        );
        assert_eq!(
            inc(None, "INSERT INTO t FORMAT JSONEachRow {"),
            r#"insert "t" FORMAT JSONEachRow data@body="{""#
        );
        assert_eq!(inc(None, "INSERT INTO `t"), "need-more");
        assert_eq!(inc(None, "INSERT INTO `t`"), "need-more");
        assert_eq!(inc(None, "INSERT INTO t (a, `b"), "need-more");
        assert_eq!(inc(None, "INSERT INTO t SETTINGS x = 'a"), "need-more");
        assert_eq!(inc(None, "INSERT INTO t SETTINGS x = $$a"), "need-more");
        assert_eq!(inc(None, "INSERT INTO t SETTINGS x = $$a$$"), "need-more");
        assert_eq!(inc(None, "INSERT INTO t VALUES"), "need-more");
        assert_eq!(inc(None, "INSERT INTO t VALUES "), "need-more");
        assert_eq!(inc(None, "INSERT INTO t VALUES -"), "need-more");
        assert_eq!(
            inc(None, "INSERT INTO t VALUES ("),
            r#"insert "t" VALUES data@body="(""#
        );
        assert_eq!(
            inc(None, "INSERT INTO t VALUES (1, 'abc"),
            r#"insert "t" VALUES data@body="(1, 'abc""#
        );
        assert_eq!(inc(None, "INSERT INTO t VALUES;"), "need-more");
        assert_eq!(inc(None, "INSERT INTO t VALUES; "), "need-more");
        assert_eq!(inc(None, "INSERT INTO t FROM"), "need-more");
        assert_eq!(inc(None, "INSERT INTO t SELECT"), "need-more");
        assert_eq!(inc(None, "INSERT INTO t SELECT "), "insert-select");
        assert_eq!(inc(None, "INSERT INTO FUNCTION"), "need-more");
        assert_eq!(inc(None, "INSERT INTO FUNCTION "), "insert-function");
        assert_eq!(inc(None, "INSERT INTO t FORMA JSONEachRow\n"), "error 62");
        // The statement in the param: no body bytes needed for FORMAT.
        assert_eq!(
            inc(Some("INSERT INTO t FORMAT JSONEachRow"), ""),
            r#"insert "t" FORMAT JSONEachRow data@body="""#
        );
        assert_eq!(inc(Some("INSERT INTO t VALUES"), ""), "need-more");
        assert_eq!(inc(Some("INSERT INTO t VALUES"), "  "), "need-more");
        assert_eq!(
            inc(Some("INSERT INTO t VALUES"), " (1"),
            r#"insert "t" VALUES data@body="(1""#
        );
        assert_eq!(inc(Some("INSERT INTO t"), ""), "need-more");
        assert_eq!(inc(Some("INSERT INTO t"), " FORMAT TSV"), "need-more");
        assert_eq!(
            inc(Some("INSERT INTO t"), " FORMAT TSV\n"),
            r#"insert "t" FORMAT TSV data@body="""#
        );
    }

    /// Every prefix of a statement either gives the same outcome as the whole text or asks for
    /// more; the whole text, cut anywhere and declared complete, never panics.
    #[test]
    fn prefixes_parse_the_same_or_ask_for_more() {
        let statements: &[(Option<&str>, &str)] = &[
            (
                None,
                "INSERT INTO `t` (`id`, `ts`, `name`, `v`) FORMAT Native\n\x04\x03\x02id",
            ),
            (
                None,
                "/* c /* d */ */ -- x\n insert into TABLE `d\\`b`.\"t\"\"x\"(a.b,`c`,) settings x = 1, y='z\\'', z=0x1F, w=$$q$$ format JSONEachRow  \r\n{\"a\":1}",
            ),
            (
                None,
                "INSERT INTO t SETTINGS async_insert, s = NULL FORMAT TSV\n1\n",
            ),
            (None, "INSERT INTO t VALUES /* c */ (1, 'a'), (2, 'b')"),
            (None, "INSERT INTO t VALUES ; -- nothing\n"),
            (None, "INSERT INTO t VALUES ;; ;"),
            (None, "INSERT INTO t VALUES ; (1)"),
            (None, "INSERT INTO t (SELECT 1)"),
            (None, "INSERT INTO t (a b) FORMAT TSV\n"),
            (None, "INSERT INTO FUNCTION f() FORMAT TSV\n"),
            (None, "INSERT INTO t FORMAT TSV;1"),
            (
                None,
                "INSERT INTO {database:Identifier}.{table:Identifier} FORMAT JSONEachRow\n{}",
            ),
            (None, "INSERT INTO {nope:Identifier} FORMAT JSONEachRow\n{}"),
            (None, "INSERT INTO 1t.0x1F FORMAT JSONEachRow\n{}"),
            (None, "INSERT\u{a0}INTO t\u{3000}FORMAT\u{feff}TSV\n"),
            (None, "SELECT 1"),
            (Some("INSERT INTO t"), " FORMAT TSV\n1\t2\n"),
            (Some("INSERT INTO t VALUES"), "  (1), (2)"),
            (Some("INSERT INTO t FORMAT TSV"), "1\t2\n"),
            (
                Some("INSERT INTO"),
                " t (a) SETTINGS b = -1.5e3 FORMAT RowBinary\n\x01\x02",
            ),
        ];
        let lookup = param_lookup(P);
        for (param, body) in statements {
            let body = body.as_bytes();
            let param = param.map(str::as_bytes);
            let full = classify(param, body, true, &lookup);
            for k in 0..=body.len() {
                let head = &body[..k];
                let partial = classify(param, head, false, &lookup);
                let same = match (&partial, &full) {
                    (Classified::NeedMore, _) => true,
                    (Classified::Error(a), Classified::Error(b)) => a.code == b.code,
                    (a, b) => a == b,
                };
                assert!(
                    same,
                    "prefix {:?} of {:?}: {partial:?} vs {full:?}",
                    String::from_utf8_lossy(head),
                    String::from_utf8_lossy(body)
                );
                let _ = classify(param, head, true, &lookup);
            }
            assert_ne!(full, Classified::NeedMore);
        }
    }

    /// Moving the boundary between the query param and the body to any blank of the statement
    /// (the joining newline replaces that blank) gives the same statement and the same data.
    #[test]
    fn any_split_at_a_blank_gives_the_same_statement() {
        let texts = [
            "INSERT INTO db.t (a, `b\tc`) SETTINGS x = 1, y = 'q\tr' FORMAT TSV\n1\t2\n",
            "INSERT INTO t (a) VALUES (1), (2)",
            "insert into {database:Identifier}.{table:Identifier} format JSONEachRow {}",
        ];
        let lookup = param_lookup(P);
        for text in texts {
            let full = classify(None, text.as_bytes(), true, &lookup);
            let Classified::Insert(want) = &full else {
                panic!("{full:?}")
            };
            let data_at = want.data.body_offset();
            let want_data = &text.as_bytes()[data_at..];
            for (k, c) in text.bytes().enumerate() {
                if c != b' ' || k >= data_at {
                    continue;
                }
                let (param, body) = (&text[..k], &text[k + 1..]);
                let got = classify(Some(param.as_bytes()), body.as_bytes(), true, &lookup);
                let Classified::Insert(got) = got else {
                    panic!("{param:?} + {body:?}: {got:?}")
                };
                assert_eq!(
                    (
                        &got.database,
                        &got.table,
                        &got.columns,
                        &got.settings,
                        &got.format
                    ),
                    (
                        &want.database,
                        &want.table,
                        &want.columns,
                        &want.settings,
                        &want.format
                    )
                );
                let mut data = got.data.prefix(param.as_bytes());
                data.extend_from_slice(&body.as_bytes()[got.data.body_offset()..]);

                assert_eq!(data, want_data, "{param:?} + {body:?}");
            }
        }
    }

    #[test]
    fn to_sql_round_trips() {
        let texts = [
            "INSERT INTO `t`(`id`,`ts`,`name`,`v`) FORMAT RowBinaryWithNamesAndTypes",
            "insert into default.t (id,name) settings async_insert=0 format JSONEachRow",
            "INSERT INTO `we``ird`.`a\\nb` (`n`.`x`, \"q\"\"t\") SETTINGS s = 'it''s \\\\ \\t', f = 1.5, n = -3, b = true FORMAT `odd name`",
            "INSERT INTO t VALUES",
            "INSERT INTO t SETTINGS x = '01', y = '1e5' FORMAT TSV",
        ];
        for text in texts {
            let Classified::Insert(a) = classify(None, text.as_bytes(), true, &no_params) else {
                panic!("{text}")
            };
            let sql = a.to_sql();
            let Classified::Insert(b) =
                classify(None, format!("{sql}\n").as_bytes(), true, &no_params)
            else {
                panic!("{sql}")
            };
            assert_eq!(
                (&a.database, &a.table, &a.columns, &a.settings, &a.format),
                (&b.database, &b.table, &b.columns, &b.settings, &b.format),
                "{sql}"
            );
        }
        let Classified::Insert(s) = classify(
            Some(b"INSERT INTO `t`(`id`) FORMAT RowBinary"),
            b"",
            true,
            &no_params,
        ) else {
            panic!()
        };
        assert_eq!(s.to_sql(), "INSERT INTO `t` (`id`) FORMAT RowBinary");
        assert_eq!(quote_identifier("a`b\\c\nd"), "`a\\`b\\\\c\\nd`");
        assert_eq!(quote_string("it's"), "'it\\'s'");
    }

    /// Random bytes, random SQL-ish fragments, random cuts: no panic, and offsets in range.
    #[test]
    fn fuzz_no_panics() {
        let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut rnd = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let pieces: &[&[u8]] = &[
            b"INSERT",
            b"INTO",
            b" ",
            b"\n",
            b"\r",
            b"\t",
            b"TABLE",
            b"FUNCTION",
            b"t",
            b".",
            b"`",
            b"\"",
            b"'",
            b"\\",
            b"(",
            b")",
            b",",
            b";",
            b"{",
            b"}",
            b":",
            b"Identifier",
            b"SETTINGS",
            b"=",
            b"1",
            b"0x",
            b"_",
            b"e",
            b"FORMAT",
            b"VALUES",
            b"SELECT",
            b"FROM",
            b"INFILE",
            b"--",
            b"/*",
            b"*/",
            b"#",
            b"#!",
            b"$",
            b"$$",
            b"x'",
            b"\xc2\xa0",
            b"\xe3\x80\x80",
            b"\xef\xbb\xbf",
            b"\xff",
            b"*",
            b"-",
            b"+",
            b"COLUMNS",
            b"NULL",
            b"true",
            b"JSONEachRow",
            b"db",
            b"{database:Identifier}",
        ];
        let lookup = param_lookup(P);
        for round in 0..60_000u32 {
            let mut text = Vec::new();
            let parts = (rnd() % 24) as usize;
            for _ in 0..parts {
                if rnd() % 5 == 0 {
                    text.push((rnd() & 0xff) as u8);
                } else {
                    text.extend_from_slice(pieces[(rnd() as usize) % pieces.len()]);
                }
            }
            if round % 2 == 0 {
                let mut s = b"INSERT INTO ".to_vec();
                s.extend_from_slice(&text);
                text = s;
            }
            let split = if text.is_empty() {
                0
            } else {
                (rnd() as usize) % (text.len() + 1)
            };
            let (p, b) = text.split_at(split);
            let param = if rnd() % 3 == 0 { Some(p) } else { None };
            let body = if param.is_some() { b } else { &text[..] };
            let cut = (rnd() as usize) % (body.len() + 1);
            let limit = [0, 5, 13, 40, DEFAULT_MAX_QUERY_SIZE][(rnd() % 5) as usize];
            for (head, complete) in [(&body[..cut], false), (body, true), (&body[..cut], true)] {
                let c = classify_with_limit(param, head, complete, &lookup, limit);
                let text_len = match param {
                    Some(p) if !p.is_empty() => p.len() + 1 + head.len(),
                    _ => head.len(),
                };
                if limit > 0 && text_len > limit + 1 {
                    assert_ne!(c, Classified::NeedMore, "{param:?} {head:?} limit {limit}");
                }
                if let Classified::Insert(s) = &c {
                    match s.data {
                        DataStart::Param { offset } => {
                            assert!(offset <= param.map_or(0, <[u8]>::len))
                        }
                        DataStart::Body { offset } => assert!(offset <= head.len(), "{c:?}"),
                    }
                    let _ = s.to_sql();
                    let _ = s.format.info();
                }
                if let Classified::Error(e) = &c {
                    let _ = e.response_body("26.9.2.1");
                }
            }
        }
    }

    #[test]
    fn format_of_a_statement() {
        let e = Format::Named("NoSuchFormat".into()).info().unwrap_err();
        assert_eq!((e.code, e.http_status, e.name), (73, 404, "UNKNOWN_FORMAT"));
        assert_eq!(
            e.response_body("26.9.2.1"),
            "Code: 73. DB::Exception: Unknown format NoSuchFormat. (UNKNOWN_FORMAT) (version 26.9.2.1)\n"
        );
        assert_eq!(Format::Values.info().map(|f| f.name), Ok("Values"));
        assert_eq!(
            Format::Named("ndjson".into()).info().map(|f| f.name),
            Ok("JSONEachRow")
        );
    }

    #[test]
    fn data_start_helpers() {
        let d = DataStart::Param { offset: 3 };
        assert_eq!(d.prefix(b"abcdef"), b"def\n");
        assert_eq!(d.body_offset(), 0);
        assert_eq!(DataStart::Param { offset: 99 }.prefix(b"ab"), b"\n");
        let d = DataStart::Body { offset: 4 };
        assert_eq!(d.prefix(b"abcdef"), b"");
        assert_eq!(d.body_offset(), 4);
    }

    #[test]
    fn lexer_numbers_and_words() {
        let kinds = |s: &str| {
            let mut lx = Lexer::new(s.as_bytes(), true, usize::MAX);
            let mut v = Vec::new();
            loop {
                let t = lx.next();
                if t.kind == Tk::End {
                    return v;
                }
                if t.kind != Tk::Whitespace {
                    v.push((t.kind, s[t.begin..t.end].to_owned()));
                }
            }
        };
        assert_eq!(
            kinds("(.5) 1t 1.5 0x1F 0x1Fg 1e5x 1_000 .5 x.1"),
            vec![
                (Tk::LParen, "(".into()),
                (Tk::Number, ".5".into()),
                (Tk::RParen, ")".into()),
                (Tk::BareWord, "1t".into()),
                (Tk::Number, "1.5".into()),
                (Tk::Number, "0x1F".into()),
                (Tk::BareWord, "0x1Fg".into()),
                (Tk::BareWord, "1e5x".into()),
                (Tk::Number, "1_000".into()),
                (Tk::Dot, ".".into()),
                (Tk::Number, "5".into()),
                (Tk::BareWord, "x".into()),
                (Tk::Dot, ".".into()),
                (Tk::Number, "1".into()),
            ]
        );
        assert_eq!(
            kinds("1.5x"),
            vec![(Tk::Error(LexError::WrongNumber), "1.5x".into())]
        );
        assert_eq!(
            kinds("$a$ x $a$ $$y$$ $z"),
            vec![
                (Tk::HereDoc, "$a$ x $a$".into()),
                (Tk::HereDoc, "$$y$$".into()),
                (Tk::BareWord, "$z".into())
            ]
        );
        assert_eq!(
            kinds("x'4A' b'01' 'a''b' `c`"),
            vec![
                (Tk::StringLiteral, "x'4A'".into()),
                (Tk::StringLiteral, "b'01'".into()),
                (Tk::StringLiteral, "'a''b'".into()),
                (Tk::QuotedIdentifier, "`c`".into()),
            ]
        );
        assert_eq!(
            unquote(b"'\\q\\%\\a\\e\\x41\\N\\/\\=\\_\\\\\\'\\\"\\`\\0\\b\\f\\v\\Z'").unwrap(),
            b"\\q\\%\x07\x1bA/=\\_\\'\"`\0\x08\x0c\x0b\\Z"
        );
    }
}
