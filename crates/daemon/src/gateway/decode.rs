//! Request-body decoding exactly as ClickHouse's HTTP interface does it (checked against 26.9).
//!
//! ClickHouse peels two independent layers off an HTTP request body, in this order:
//!
//! 1. **`Content-Encoding`** ([`decode_content`]): `gzip` (several members allowed), `deflate`
//!    (zlib-wrapped; several streams allowed), `br`, `xz` (several streams and stream padding
//!    allowed), `zstd` (several frames and skippable frames allowed), `lz4` (the LZ4 *frame*
//!    format, several frames and skippable frames allowed), `bz2` (several streams allowed) and
//!    `snappy` (the snappy *framing* format). The aliases `gz`, `brotli`, `lzma`, `zst` and the
//!    no-op values `none`, `auto` and the empty string are accepted; names are case-insensitive.
//!    Anything else, including `identity` and comma-separated lists, is refused with HTTP 501 /
//!    code 48, as ClickHouse does.
//! 2. **`decompress=1`** ([`decode_clickhouse_blocks`]): ClickHouse's own block framing, as sent
//!    by the Rust `clickhouse` crate: `[16 B CityHash128 v1.0.2][method][u32 LE compressed size
//!    incl. the 9 header bytes][u32 LE decompressed size][payload]`, with method `0x82` (LZ4
//!    block), `0x90` (ZSTD frame) or `0x02` (NONE), the same method in every block.
//!
//! [`decode_body`] applies both. Every error is a [`DecodeError`] carrying the HTTP status,
//! ClickHouse error code, its symbolic name and ClickHouse's message text, so that a gateway can
//! answer `Code: N. DB::Exception: <message> (<NAME>)` like the server would.
//!
//! Every decoder writes into a single `Vec<u8>` that never grows past `limit + 1` bytes: a body
//! that decodes to more than `limit` bytes is refused with [`DecodeError::is_too_large`] (HTTP
//! 413, code 307 `TOO_MANY_BYTES`, the gateway's own limit; ClickHouse has no such limit) as soon
//! as the limit is crossed, without decoding the rest.
//!
//! Deliberate differences from ClickHouse 26.9, all on malformed input:
//! * a body that ends inside a zstd or LZ4 frame (or frame header) is an error here (500, codes
//!   561 / 618); ClickHouse silently drops the incomplete frame, often all the data, and
//!   answers 200;
//! * on a `decompress=1` checksum mismatch ClickHouse tries every single-bit flip of blocks under
//!   1 MiB (up to 8 million CityHash runs) to append "The mismatch is caused by single bit flip
//!   in data block at byte N, bit M. …" to its message; this module only does the cheap check
//!   for a flipped checksum bit, so its message can be a prefix of ClickHouse's;
//! * a `decompress=1` block with a column codec (Delta, T64, Gorilla, …: never sent by HTTP
//!   clients) gets 501 / 48 here instead of whatever that codec would say;
//! * xz and zstd messages leave out the library version ClickHouse appends (`; ZSTD version:
//!   1.5.8`).
//!
//! The `bz2` encoding follows ClickHouse's source (`Bzip2ReadBuffer`); the chdb build of 26.9
//! used for the checks has no bzip2 and answers 501 `Unsupported compression method`.

use std::borrow::Cow;
use std::fmt;

/// Largest compressed or decompressed size one `decompress=1` block may declare: 1 GiB, as
/// ClickHouse's `DBMS_MAX_COMPRESSED_SIZE`.
pub const MAX_BLOCK_SIZE: usize = 0x4000_0000;

/// Why a request body could not be decoded, in ClickHouse's terms.
///
/// [`fmt::Display`] renders the text ClickHouse puts in the response body (without its trailing
/// ` (version …)` and newline): `Code: 48. DB::Exception: <message> (NOT_IMPLEMENTED)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    /// The HTTP status ClickHouse answers with: 501 for an unknown `Content-Encoding`, 500 for
    /// corrupt or truncated data; 413 for the gateway's own decoded-size limit.
    pub status: u16,
    /// The ClickHouse error code (also sent as `X-ClickHouse-Exception-Code`).
    pub code: u32,
    /// The symbolic name of [`Self::code`], e.g. `NOT_IMPLEMENTED`.
    pub name: &'static str,
    /// ClickHouse's message, ending with a period.
    pub message: String,
}

impl DecodeError {
    fn new(kind: Kind, message: impl Into<String>) -> Self {
        let mut message = message.into();
        if !message.ends_with('.') {
            message.push('.');
        }
        DecodeError {
            status: kind.status,
            code: kind.code,
            name: kind.name,
            message,
        }
    }

    /// True when the body was refused only because it decodes to more than the caller's limit.
    pub fn is_too_large(&self) -> bool {
        self.code == TOO_MANY_BYTES.code
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Code: {}. DB::Exception: {} ({})",
            self.code, self.message, self.name
        )
    }
}

impl std::error::Error for DecodeError {}

/// A ClickHouse error code, its name and the HTTP status the server maps it to.
#[derive(Clone, Copy)]
struct Kind {
    code: u32,
    name: &'static str,
    status: u16,
}

const fn kind(code: u32, name: &'static str, status: u16) -> Kind {
    Kind { code, name, status }
}

const UNEXPECTED_END_OF_FILE: Kind = kind(3, "UNEXPECTED_END_OF_FILE", 500);
const CANNOT_READ_ALL_DATA: Kind = kind(33, "CANNOT_READ_ALL_DATA", 500);
const TOO_LARGE_SIZE_COMPRESSED: Kind = kind(39, "TOO_LARGE_SIZE_COMPRESSED", 500);
const NOT_IMPLEMENTED: Kind = kind(48, "NOT_IMPLEMENTED", 501);
const CANNOT_DECOMPRESS: Kind = kind(271, "CANNOT_DECOMPRESS", 500);
const TOO_MANY_BYTES: Kind = kind(307, "TOO_MANY_BYTES", 413);
const ZLIB_INFLATE_FAILED: Kind = kind(354, "ZLIB_INFLATE_FAILED", 500);
const UNKNOWN_CODEC: Kind = kind(432, "UNKNOWN_CODEC", 500);
const BROTLI_READ_FAILED: Kind = kind(448, "BROTLI_READ_FAILED", 500);
const LZMA_STREAM_DECODER_FAILED: Kind = kind(554, "LZMA_STREAM_DECODER_FAILED", 500);
const ZSTD_DECODER_FAILED: Kind = kind(561, "ZSTD_DECODER_FAILED", 500);
const BZIP2_STREAM_DECODER_FAILED: Kind = kind(594, "BZIP2_STREAM_DECODER_FAILED", 500);
const LZ4_DECODER_FAILED: Kind = kind(618, "LZ4_DECODER_FAILED", 500);
const SNAPPY_UNCOMPRESS_FAILED: Kind = kind(638, "SNAPPY_UNCOMPRESS_FAILED", 500);

/// A `Content-Encoding` that ClickHouse accepts on request bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ContentEncoding {
    /// No encoding: header absent or empty, `none` or `auto`.
    Identity,
    /// `gzip` or `gz`: RFC 1952, one or more members.
    Gzip,
    /// `deflate`: RFC 1950 zlib streams (not raw deflate), one or more.
    Deflate,
    /// `br` or `brotli`.
    Brotli,
    /// `xz` or `lzma`: .xz streams (not the legacy .lzma format), one or more, with padding.
    Xz,
    /// `zstd` or `zst`: one or more zstd frames, skippable frames allowed.
    Zstd,
    /// `lz4`: one or more LZ4 frames (magic `04 22 4D 18`), skippable frames allowed.
    Lz4,
    /// `bz2`: one or more bzip2 streams.
    Bzip2,
    /// `snappy`: the snappy framing format (stream identifier `ff 06 00 00 sNaPpY`).
    Snappy,
}

impl ContentEncoding {
    /// Parses a `Content-Encoding` header value the way ClickHouse's `chooseCompressionMethod`
    /// does: surrounding blanks are ignored and the name is case-insensitive. `None` (no header)
    /// is [`ContentEncoding::Identity`].
    ///
    /// # Errors
    /// Any other value gives ClickHouse's HTTP 501 / code 48 `NOT_IMPLEMENTED` error.
    pub fn from_header(value: Option<&str>) -> Result<Self, DecodeError> {
        let Some(raw) = value else {
            return Ok(ContentEncoding::Identity);
        };
        let raw = raw.trim_matches(|c| c == ' ' || c == '\t');
        let lower = raw.to_ascii_lowercase();
        Ok(match lower.as_str() {
            "" | "none" | "auto" => ContentEncoding::Identity,
            "gzip" | "gz" => ContentEncoding::Gzip,
            "deflate" => ContentEncoding::Deflate,
            "br" | "brotli" => ContentEncoding::Brotli,
            "xz" | "lzma" => ContentEncoding::Xz,
            "zstd" | "zst" => ContentEncoding::Zstd,
            "lz4" => ContentEncoding::Lz4,
            "bz2" => ContentEncoding::Bzip2,
            "snappy" => ContentEncoding::Snappy,
            _ => {
                return Err(DecodeError::new(
                    NOT_IMPLEMENTED,
                    format!(
                        "Unknown compression method '{raw}'. Only 'auto', 'none', 'gzip', \
                         'deflate', 'br', 'xz', 'zstd', 'lz4', 'bz2', 'snappy' are supported as \
                         compression methods."
                    ),
                ));
            }
        })
    }

    /// The canonical header value (ClickHouse's spelling); empty for [`ContentEncoding::Identity`].
    pub fn as_str(self) -> &'static str {
        match self {
            ContentEncoding::Identity => "",
            ContentEncoding::Gzip => "gzip",
            ContentEncoding::Deflate => "deflate",
            ContentEncoding::Brotli => "br",
            ContentEncoding::Xz => "xz",
            ContentEncoding::Zstd => "zstd",
            ContentEncoding::Lz4 => "lz4",
            ContentEncoding::Bzip2 => "bz2",
            ContentEncoding::Snappy => "snappy",
        }
    }
}

/// Decodes a request body as ClickHouse does for its `Content-Encoding` header value.
///
/// An identity body is returned borrowed; anything else is decoded into one new `Vec`. The
/// result is at most `limit` bytes long.
///
/// # Errors
/// An unknown encoding (501 / `NOT_IMPLEMENTED`), corrupt or truncated data (500 with the
/// codec's ClickHouse error), or a decoded size above `limit` ([`DecodeError::is_too_large`]).
pub fn decode_content<'a>(
    encoding: Option<&str>,
    body: &'a [u8],
    limit: usize,
) -> Result<Cow<'a, [u8]>, DecodeError> {
    decode_encoding(ContentEncoding::from_header(encoding)?, body, limit)
}

/// Decodes a request body with an already parsed [`ContentEncoding`]; see [`decode_content`].
///
/// # Errors
/// As [`decode_content`], except for the unknown-encoding case.
pub fn decode_encoding(
    encoding: ContentEncoding,
    body: &[u8],
    limit: usize,
) -> Result<Cow<'_, [u8]>, DecodeError> {
    if encoding == ContentEncoding::Identity {
        if body.len() > limit {
            return Err(too_large(limit, encoding));
        }
        return Ok(Cow::Borrowed(body));
    }
    let mut out = Output::new(limit, content_size_hint(encoding, body), encoding.as_str());
    // ClickHouse reads an empty body as empty data whatever the encoding.
    if !body.is_empty() {
        decode_into(encoding, body, &mut out)?;
    }
    Ok(Cow::Owned(out.finish()))
}

/// Decodes a `decompress=1` body: a sequence of ClickHouse compressed blocks, with checksums
/// verified. The result is at most `limit` bytes long.
///
/// # Errors
/// ClickHouse's errors: truncated block (500 / 33 `CANNOT_READ_ALL_DATA`), unknown method byte
/// (500 / 432 `UNKNOWN_CODEC`), bad checksum, corrupt payload, different methods in one body or
/// impossible sizes (500 / 271 `CANNOT_DECOMPRESS`), a declared size above 1 GiB (500 / 39
/// `TOO_LARGE_SIZE_COMPRESSED`); a column codec that no HTTP client uses (Delta, T64, …) gives
/// 501 / 48; more than `limit` bytes gives [`DecodeError::is_too_large`].
pub fn decode_clickhouse_blocks(body: &[u8], limit: usize) -> Result<Vec<u8>, DecodeError> {
    decode_clickhouse_blocks_with(body, limit, true)
}

/// [`decode_clickhouse_blocks`] with checksum verification optional, as ClickHouse's setting
/// `http_native_compression_disable_checksumming_on_decompress=1` allows.
///
/// # Errors
/// As [`decode_clickhouse_blocks`].
pub fn decode_clickhouse_blocks_with(
    body: &[u8],
    limit: usize,
    verify_checksums: bool,
) -> Result<Vec<u8>, DecodeError> {
    let mut out = Output::new(limit, declared_blocks_size(body), "decompress=1");
    decode_blocks_into(body, &mut out, verify_checksums)?;
    Ok(out.finish())
}

/// Decodes a request body the way ClickHouse's HTTP handler does: first the `Content-Encoding`
/// (header value or `None`), then, when the URL has `decompress=1`, the ClickHouse block
/// framing. The result is at most `limit` bytes long.
///
/// With both layers, the framed data between them (no bigger than the body when there is no
/// `Content-Encoding`) may take up to [`framed_limit`]`(limit)` bytes, room for the framing that
/// surrounds `limit` bytes of data.
///
/// # Errors
/// Those of [`decode_content`], then those of [`decode_clickhouse_blocks`].
pub fn decode_body<'a>(
    content_encoding: Option<&str>,
    decompress: bool,
    body: &'a [u8],
    limit: usize,
) -> Result<Cow<'a, [u8]>, DecodeError> {
    let encoding = ContentEncoding::from_header(content_encoding)?;
    if !decompress {
        return decode_encoding(encoding, body, limit);
    }
    let framed = if encoding == ContentEncoding::Identity {
        Cow::Borrowed(body)
    } else {
        decode_encoding(encoding, body, framed_limit(limit))?
    };
    Ok(Cow::Owned(decode_clickhouse_blocks(&framed, limit)?))
}

/// The most bytes [`decode_body`] lets a `Content-Encoding` produce when `decompress=1` follows:
/// twice `limit` plus 64 KiB. ClickHouse blocks add 25 bytes each and incompressible LZ4 or
/// ZSTD payloads a little more, so only bodies cut into blocks of a few bytes come near it.
pub fn framed_limit(limit: usize) -> usize {
    limit.saturating_mul(2).saturating_add(64 << 10)
}

// ---------------------------------------------------------------------------------------------
// Output buffer with a hard size limit.

/// Smallest growth step of the output buffer.
const MIN_STEP: usize = 32 * 1024;

/// The decoded bytes: `buf[..len]`; `buf[len..]` is zeroed scratch space for the next write.
/// `buf` never grows past `limit + 1` bytes, and grows geometrically, so a body costs at most
/// about twice its decoded size in zero-filling and copying.
struct Output {
    buf: Vec<u8>,
    len: usize,
    limit: usize,
    what: &'static str,
}

impl Output {
    fn new(limit: usize, hint: usize, what: &'static str) -> Self {
        // Only reserved (not touched) memory; a lying size hint costs address space, no more.
        let cap = hint.min(limit.saturating_add(1));
        Output {
            buf: Vec::with_capacity(cap),
            len: 0,
            limit,
            what,
        }
    }

    fn too_large(&self) -> DecodeError {
        too_large_error(self.limit, self.what)
    }

    /// Room left before the buffer would pass `limit + 1` bytes.
    fn room(&self) -> usize {
        self.limit.saturating_add(1).saturating_sub(self.len)
    }

    /// Makes `buf[len..len + n]` exist; `n` must not exceed [`Self::room`].
    fn ensure(&mut self, n: usize) {
        let need = self.len + n;
        if need <= self.buf.len() {
            return;
        }
        let step = self.len.max(MIN_STEP);
        let target = need
            .max(self.len.saturating_add(step))
            .min(self.len + self.room());
        self.buf.reserve_exact(target - self.buf.len());
        self.buf.resize(target, 0);
    }

    /// A non-empty writable window after the decoded bytes.
    fn spare(&mut self) -> Result<&mut [u8], DecodeError> {
        if self.len == self.buf.len() {
            let room = self.room();
            if room == 0 {
                return Err(self.too_large());
            }
            self.ensure(self.len.max(MIN_STEP).min(room));
        }
        Ok(&mut self.buf[self.len..])
    }

    /// A writable window of `n` bytes, or of the room left when that is smaller (then `true`).
    fn window(&mut self, n: usize) -> (&mut [u8], bool) {
        let capped = n > self.room();
        let n = n.min(self.room());
        self.ensure(n);
        (&mut self.buf[self.len..self.len + n], capped)
    }

    /// Like [`Self::window`], plus the decoded bytes from `from` on, for LZ4 linked blocks.
    fn window_with_history(&mut self, n: usize, from: usize) -> (&[u8], &mut [u8], bool) {
        let capped = n > self.room();
        let n = n.min(self.room());
        self.ensure(n);
        let (head, tail) = self.buf.split_at_mut(self.len);
        (&head[from..], &mut tail[..n], capped)
    }

    /// Records `n` more decoded bytes written into the window.
    fn advance(&mut self, n: usize) -> Result<(), DecodeError> {
        self.len += n;
        if self.len > self.limit {
            return Err(self.too_large());
        }
        Ok(())
    }

    /// Appends bytes that need no decoding.
    fn extend(&mut self, data: &[u8]) -> Result<(), DecodeError> {
        if data.len() > self.limit - self.len {
            return Err(self.too_large());
        }
        self.ensure(data.len());
        self.buf[self.len..self.len + data.len()].copy_from_slice(data);
        self.len += data.len();
        Ok(())
    }

    /// The decoded bytes from `from` on.
    fn since(&self, from: usize) -> &[u8] {
        &self.buf[from..self.len]
    }

    fn finish(mut self) -> Vec<u8> {
        self.buf.truncate(self.len);
        // Growth leaves up to half the buffer unused; give it back when that is a lot.
        if self.buf.capacity() - self.len > self.len / 4 + MIN_STEP {
            self.buf.shrink_to_fit();
        }
        self.buf
    }
}

fn too_large(limit: usize, encoding: ContentEncoding) -> DecodeError {
    too_large_error(limit, encoding.as_str())
}

fn too_large_error(limit: usize, what: &str) -> DecodeError {
    let what = if what.is_empty() {
        String::new()
    } else if what == "decompress=1" {
        " (decompress=1)".to_string()
    } else {
        format!(" (Content-Encoding: {what})")
    };
    DecodeError::new(
        TOO_MANY_BYTES,
        format!("The request body decodes to more than the limit of {limit} bytes{what}"),
    )
}

/// A guess of the decoded size, to reserve the output buffer once.
fn content_size_hint(encoding: ContentEncoding, body: &[u8]) -> usize {
    let fallback = body.len().saturating_mul(4).max(4096);
    match encoding {
        // ISIZE of the last member: right for the usual single-member body.
        ContentEncoding::Gzip if body.len() >= 18 => {
            let isize = u32::from_le_bytes(body[body.len() - 4..].try_into().unwrap_or([0; 4]));
            (isize as usize).min(body.len().saturating_mul(1032))
        }
        ContentEncoding::Zstd => match zstd::zstd_safe::get_frame_content_size(body) {
            Ok(Some(n)) => usize::try_from(n).unwrap_or(usize::MAX),
            _ => fallback,
        },
        _ => fallback,
    }
}

fn decode_into(
    encoding: ContentEncoding,
    body: &[u8],
    out: &mut Output,
) -> Result<(), DecodeError> {
    match encoding {
        ContentEncoding::Identity => out.extend(body),
        ContentEncoding::Gzip => decode_gzip(body, out),
        ContentEncoding::Deflate => decode_zlib(body, out),
        ContentEncoding::Brotli => decode_brotli(body, out),
        ContentEncoding::Xz => decode_xz(body, out),
        ContentEncoding::Zstd => decode_zstd(body, out),
        ContentEncoding::Lz4 => decode_lz4_frames(body, out),
        ContentEncoding::Bzip2 => decode_bzip2(body, out),
        ContentEncoding::Snappy => decode_snappy(body, out),
    }
}

// ---------------------------------------------------------------------------------------------
// gzip and deflate (zlib), as zlib's inflate reports them: "data error" for corrupt data,
// "buffer error" when the body ends early.

fn zlib_error(what: &str) -> DecodeError {
    DecodeError::new(ZLIB_INFLATE_FAILED, format!("inflate failed: {what}"))
}

fn zlib_data_error() -> DecodeError {
    zlib_error("data error")
}

fn zlib_truncated() -> DecodeError {
    zlib_error("buffer error")
}

/// Inflates one deflate (or zlib) stream from the start of `input`; returns the bytes used.
fn inflate(
    d: &mut flate2::Decompress,
    input: &[u8],
    out: &mut Output,
) -> Result<usize, DecodeError> {
    let mut pos = 0;
    loop {
        let window = out.spare()?;
        let (in_before, out_before) = (d.total_in(), d.total_out());
        let status = d
            .decompress(&input[pos..], window, flate2::FlushDecompress::None)
            .map_err(|_| zlib_data_error())?;
        let consumed = (d.total_in() - in_before) as usize;
        let produced = (d.total_out() - out_before) as usize;
        pos += consumed;
        out.advance(produced)?;
        match status {
            flate2::Status::StreamEnd => return Ok(pos),
            _ if consumed == 0 && produced == 0 => {
                return Err(if pos >= input.len() {
                    zlib_truncated()
                } else {
                    zlib_data_error()
                });
            }
            _ => {}
        }
    }
}

fn decode_zlib(body: &[u8], out: &mut Output) -> Result<(), DecodeError> {
    let mut d = flate2::Decompress::new(true);
    let mut pos = 0;
    while pos < body.len() {
        if pos > 0 {
            d.reset(true);
        }
        pos += inflate(&mut d, &body[pos..], out)?;
    }
    Ok(())
}

fn decode_gzip(body: &[u8], out: &mut Output) -> Result<(), DecodeError> {
    let mut d = flate2::Decompress::new(false);
    let mut pos = 0;
    while pos < body.len() {
        let member = &body[pos..];
        let header = gzip_header(member)?;
        d.reset(false);
        let start = out.len;
        let used = header + inflate(&mut d, &member[header..], out)?;
        let Some(trailer) = member.get(used..used + 8) else {
            return Err(zlib_truncated());
        };
        let crc = u32::from_le_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]);
        let size = u32::from_le_bytes([trailer[4], trailer[5], trailer[6], trailer[7]]);
        let data = out.since(start);
        if crc != crc32fast::hash(data) || size != data.len() as u32 {
            return Err(zlib_data_error());
        }
        pos += used + 8;
    }
    Ok(())
}

/// Checks a gzip member header (RFC 1952 §2.3) as zlib's inflate does; returns its length.
fn gzip_header(input: &[u8]) -> Result<usize, DecodeError> {
    const FHCRC: u8 = 0x02;
    const FEXTRA: u8 = 0x04;
    const FNAME: u8 = 0x08;
    const FCOMMENT: u8 = 0x10;
    // zlib looks at the magic once it has two bytes, then at method and flags together.
    if input.len() >= 2 && input[..2] != [0x1f, 0x8b] {
        return Err(zlib_data_error());
    }
    if input.len() >= 4 && (input[2] != 8 || input[3] & 0xe0 != 0) {
        return Err(zlib_data_error());
    }
    if input.len() < 10 {
        return Err(zlib_truncated());
    }
    let flags = input[3];
    let mut pos = 10;
    if flags & FEXTRA != 0 {
        let len = input.get(pos..pos + 2).ok_or_else(zlib_truncated)?;
        pos += 2 + u16::from_le_bytes([len[0], len[1]]) as usize;
    }
    for flag in [FNAME, FCOMMENT] {
        if flags & flag != 0 {
            let rest = input.get(pos..).ok_or_else(zlib_truncated)?;
            let nul = rest
                .iter()
                .position(|&b| b == 0)
                .ok_or_else(zlib_truncated)?;
            pos += nul + 1;
        }
    }
    if flags & FHCRC != 0 {
        let crc = input.get(pos..pos + 2).ok_or_else(zlib_truncated)?;
        if u16::from_le_bytes([crc[0], crc[1]]) != crc32fast::hash(&input[..pos]) as u16 {
            return Err(zlib_data_error());
        }
        pos += 2;
    }
    if pos > input.len() {
        return Err(zlib_truncated());
    }
    Ok(pos)
}

// ---------------------------------------------------------------------------------------------
// brotli: one stream, nothing after it.

fn decode_brotli(body: &[u8], out: &mut Output) -> Result<(), DecodeError> {
    use brotli_decompressor::{BrotliDecompressStream, BrotliResult, BrotliState, StandardAlloc};
    let error = || DecodeError::new(BROTLI_READ_FAILED, "brotli decode error");
    let mut state = BrotliState::new(
        StandardAlloc::default(),
        StandardAlloc::default(),
        StandardAlloc::default(),
    );
    // The C decoder in ClickHouse rejects the non-standard large-window streams.
    state.large_window = false;
    let mut available_in = body.len();
    let mut input_offset = 0;
    let mut total_out = 0;
    loop {
        let window = out.spare()?;
        let mut available_out = window.len();
        let mut output_offset = 0;
        let result = BrotliDecompressStream(
            &mut available_in,
            &mut input_offset,
            body,
            &mut available_out,
            &mut output_offset,
            window,
            &mut total_out,
            &mut state,
        );
        out.advance(output_offset)?;
        match result {
            BrotliResult::NeedsMoreOutput => {}
            // Bytes after the end of the stream are an error, as in ClickHouse.
            BrotliResult::ResultSuccess if input_offset == body.len() => return Ok(()),
            BrotliResult::ResultSuccess
            | BrotliResult::NeedsMoreInput
            | BrotliResult::ResultFailure => return Err(error()),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// xz, with liblzma's LZMA_CONCATENATED like ClickHouse's LZMAInflatingReadBuffer.

fn lzma_error(name: &str) -> DecodeError {
    DecodeError::new(
        LZMA_STREAM_DECODER_FAILED,
        format!("lzma_stream_decoder failed: error code: error code {name}"),
    )
}

fn lzma_error_name(e: liblzma::stream::Error) -> &'static str {
    use liblzma::stream::Error;
    match e {
        Error::Data => "LZMA_DATA_ERROR",
        Error::Options => "LZMA_OPTIONS_ERROR",
        Error::Format => "LZMA_FORMAT_ERROR",
        Error::MemLimit => "LZMA_MEMLIMIT_ERROR",
        Error::Mem => "LZMA_MEM_ERROR",
        Error::Program => "LZMA_PROG_ERROR",
        Error::NoCheck => "LZMA_NO_CHECK",
        Error::UnsupportedCheck => "LZMA_UNSUPPORTED_CHECK",
    }
}

fn decode_xz(body: &[u8], out: &mut Output) -> Result<(), DecodeError> {
    use liblzma::stream::{Action, CONCATENATED, Status, Stream};
    let mut stream = Stream::new_stream_decoder(u64::MAX, CONCATENATED)
        .map_err(|e| lzma_error(lzma_error_name(e)))?;
    let mut pos = 0;
    loop {
        let window = out.spare()?;
        let (in_before, out_before) = (stream.total_in(), stream.total_out());
        // The whole body is at hand, so every call may finish the stream.
        let status = stream
            .process(&body[pos..], window, Action::Finish)
            .map_err(|e| lzma_error(lzma_error_name(e)))?;
        pos += (stream.total_in() - in_before) as usize;
        out.advance((stream.total_out() - out_before) as usize)?;
        match status {
            Status::StreamEnd => return Ok(()),
            // liblzma's LZMA_BUF_ERROR: no progress possible, the body ended early.
            Status::MemNeeded => return Err(lzma_error("LZMA_BUF_ERROR")),
            Status::Ok | Status::GetCheck => {}
        }
    }
}

// ---------------------------------------------------------------------------------------------
// zstd: concatenated and skippable frames, as libzstd's streaming decoder reads them.

fn zstd_error(what: &str) -> DecodeError {
    DecodeError::new(
        ZSTD_DECODER_FAILED,
        format!("ZSTD stream decoding failed: error '{what}'"),
    )
}

fn decode_zstd(body: &[u8], out: &mut Output) -> Result<(), DecodeError> {
    use zstd::stream::raw::{Decoder, Operation};
    let mut decoder = Decoder::new().map_err(|e| zstd_error(&e.to_string()))?;
    let mut pos = 0;
    let mut stalled = false;
    loop {
        let window = out.spare()?;
        let status = decoder
            .run_on_buffers(&body[pos..], window)
            .map_err(|e| zstd_error(&e.to_string()))?;
        pos += status.bytes_read;
        out.advance(status.bytes_written)?;
        // `remaining == 0`: the last frame is complete and flushed.
        if pos == body.len() && status.remaining == 0 {
            return Ok(());
        }
        // Twice no progress with room to write: the body ends inside a frame.
        let idle = status.bytes_read == 0 && status.bytes_written == 0;
        if idle && stalled {
            return Err(zstd_error(
                "Truncated input: the body ends inside a zstd frame",
            ));
        }
        stalled = idle;
    }
}

// ---------------------------------------------------------------------------------------------
// LZ4 frame format (https://github.com/lz4/lz4/blob/dev/doc/lz4_Frame_format.md), several
// frames, with the checks and error names of liblz4's LZ4F_decompress.

const LZ4F_MAGIC: u32 = 0x184D_2204;
const LZ4F_SKIPPABLE_MASK: u32 = 0xFFFF_FFF0;
const LZ4F_SKIPPABLE_MAGIC: u32 = 0x184D_2A50;

fn lz4_error(name: &str) -> DecodeError {
    DecodeError::new(
        LZ4_DECODER_FAILED,
        format!("LZ4 decompression failed. LZ4F version: 100. Error: {name}"),
    )
}

fn lz4_truncated() -> DecodeError {
    DecodeError::new(
        LZ4_DECODER_FAILED,
        "LZ4 decompression failed: the body ends inside an LZ4 frame",
    )
}

fn le32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

fn xxh32(data: &[u8]) -> u32 {
    twox_hash::XxHash32::oneshot(0, data)
}

fn decode_lz4_frames(body: &[u8], out: &mut Output) -> Result<(), DecodeError> {
    let mut pos = 0;
    while pos < body.len() {
        pos += decode_lz4_frame(&body[pos..], out)?;
    }
    Ok(())
}

/// Decodes the frame (or skips the skippable frame) at the start of `input`; returns its size.
fn decode_lz4_frame(input: &[u8], out: &mut Output) -> Result<usize, DecodeError> {
    let take = |from: usize, n: usize| input.get(from..from + n).ok_or_else(lz4_truncated);
    // Like LZ4F_decompress, look at nothing before the 7 bytes of the smallest frame header.
    take(0, 7)?;
    let magic = le32(take(0, 4)?);
    if magic & LZ4F_SKIPPABLE_MASK == LZ4F_SKIPPABLE_MAGIC {
        let size = le32(take(4, 4)?) as usize;
        take(8, size)?;
        return Ok(8 + size);
    }
    if magic != LZ4F_MAGIC {
        return Err(lz4_error("ERROR_frameType_unknown"));
    }
    // The checks and their order are those of LZ4F_decodeHeader.
    let flg = take(4, 1)?[0];
    if flg & 0x02 != 0 {
        return Err(lz4_error("ERROR_reservedFlag_set"));
    }
    if flg >> 6 != 1 {
        return Err(lz4_error("ERROR_headerVersion_wrong"));
    }
    let linked = flg & 0x20 == 0;
    let block_checksums = flg & 0x10 != 0;
    let has_content_size = flg & 0x08 != 0;
    let content_checksum = flg & 0x04 != 0;
    let has_dict_id = flg & 0x01 != 0;
    let descriptor_len = 2 + if has_content_size { 8 } else { 0 } + if has_dict_id { 4 } else { 0 };
    let descriptor = take(4, descriptor_len + 1)?;
    let bd = descriptor[1];
    if bd & 0x80 != 0 {
        return Err(lz4_error("ERROR_reservedFlag_set"));
    }
    let max_block = match (bd >> 4) & 0x07 {
        4 => 64 << 10,
        5 => 256 << 10,
        6 => 1 << 20,
        7 => 4 << 20,
        _ => return Err(lz4_error("ERROR_maxBlockSize_invalid")),
    };
    if bd & 0x0f != 0 {
        return Err(lz4_error("ERROR_reservedFlag_set"));
    }
    let (descriptor, header_checksum) = (&descriptor[..descriptor_len], descriptor[descriptor_len]);
    if header_checksum != (xxh32(descriptor) >> 8) as u8 {
        return Err(lz4_error("ERROR_headerChecksum_invalid"));
    }
    let content_size = has_content_size
        .then(|| u64::from_le_bytes(descriptor[2..10].try_into().unwrap_or([0; 8])));
    let mut pos = 4 + descriptor_len + 1;
    let start = out.len;
    loop {
        let word = le32(take(pos, 4)?);
        pos += 4;
        if word == 0 {
            break;
        }
        let stored = word & 0x8000_0000 != 0;
        let size = (word & 0x7FFF_FFFF) as usize;
        if size > max_block {
            return Err(lz4_error("ERROR_maxBlockSize_invalid"));
        }
        let data = take(pos, size)?;
        pos += size;
        if block_checksums {
            let checksum = le32(take(pos, 4)?);
            pos += 4;
            if checksum != xxh32(data) {
                return Err(lz4_error("ERROR_blockChecksum_invalid"));
            }
        }
        if stored {
            out.extend(data)?;
            continue;
        }
        // Linked blocks may refer to the last 64 KiB decoded in this frame.
        let history_start = if linked {
            out.len.saturating_sub(64 << 10).max(start)
        } else {
            out.len
        };
        let (history, window, capped) = out.window_with_history(max_block, history_start);
        let result = if history.is_empty() {
            lz4_flex::block::decompress_into(data, window)
        } else {
            lz4_flex::block::decompress_into_with_dict(data, window, history)
        };
        match result {
            Ok(n) => out.advance(n)?,
            Err(lz4_flex::block::DecompressError::OutputTooSmall { .. }) if capped => {
                return Err(out.too_large());
            }
            Err(_) => return Err(lz4_error("ERROR_decompressionFailed")),
        }
    }
    if content_checksum {
        let checksum = le32(take(pos, 4)?);
        pos += 4;
        if checksum != xxh32(out.since(start)) {
            return Err(lz4_error("ERROR_contentChecksum_invalid"));
        }
    }
    if content_size.is_some_and(|n| n != (out.len - start) as u64) {
        return Err(lz4_error("ERROR_frameSize_wrong"));
    }
    Ok(pos)
}

// ---------------------------------------------------------------------------------------------
// bzip2, several streams, as ClickHouse's Bzip2ReadBuffer.

fn decode_bzip2(body: &[u8], out: &mut Output) -> Result<(), DecodeError> {
    let error = |e: bzip2::Error| {
        // libbz2's return codes, which ClickHouse prints.
        let code = match e {
            bzip2::Error::Sequence => -1,
            bzip2::Error::Param => -2,
            bzip2::Error::Data => -4,
            bzip2::Error::DataMagic => -5,
        };
        DecodeError::new(
            BZIP2_STREAM_DECODER_FAILED,
            format!("bzip2 stream decoder failed: error code: {code}"),
        )
    };
    let mut pos = 0;
    while pos < body.len() {
        let mut d = bzip2::Decompress::new(false);
        loop {
            let window = out.spare()?;
            let (in_before, out_before) = (d.total_in(), d.total_out());
            let status = d.decompress(&body[pos..], window).map_err(error)?;
            let consumed = (d.total_in() - in_before) as usize;
            let produced = (d.total_out() - out_before) as usize;
            pos += consumed;
            out.advance(produced)?;
            if status == bzip2::Status::StreamEnd {
                break;
            }
            if consumed == 0 && produced == 0 {
                return Err(DecodeError::new(
                    UNEXPECTED_END_OF_FILE,
                    "Unexpected end of bzip2 archive",
                ));
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// snappy framing format (https://github.com/google/snappy/blob/main/framing_format.txt), with
// the checks, in the order, of ClickHouse's SnappyFramedReadBuffer.

const SNAPPY_STREAM_IDENTIFIER: &[u8; 10] = b"\xff\x06\x00\x00sNaPpY";
/// Most data one chunk may hold.
const SNAPPY_MAX_CHUNK: usize = 65536;
/// snappy's `MaxCompressedLength(SNAPPY_MAX_CHUNK)`.
const SNAPPY_MAX_COMPRESSED_CHUNK: usize = 32 + SNAPPY_MAX_CHUNK + SNAPPY_MAX_CHUNK / 6;

fn snappy_error(message: impl Into<String>) -> DecodeError {
    DecodeError::new(SNAPPY_UNCOMPRESS_FAILED, message)
}

/// CRC-32C (Castagnoli), byte at a time.
fn crc32c(data: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut crc = i as u32;
            let mut bit = 0;
            while bit < 8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0x82F6_3B78
                } else {
                    crc >> 1
                };
                bit += 1;
            }
            table[i] = crc;
            i += 1;
        }
        table
    };
    !data.iter().fold(!0u32, |crc, &b| {
        TABLE[((crc ^ b as u32) & 0xff) as usize] ^ (crc >> 8)
    })
}

/// The checksum the snappy framing format stores: CRC-32C, rotated and offset.
fn snappy_masked_crc(data: &[u8]) -> u32 {
    crc32c(data).rotate_right(15).wrapping_add(0xa282_ead8)
}

fn decode_snappy(body: &[u8], out: &mut Output) -> Result<(), DecodeError> {
    let mut pos = 0;
    // `n` bytes from `pos` on, or ClickHouse's truncation error.
    let take = |pos: usize, n: usize| {
        body.get(pos..pos + n).ok_or_else(|| {
            snappy_error(format!(
                "Truncated snappy stream: expected {n} bytes but got {}",
                body.len() - pos
            ))
        })
    };
    if take(0, SNAPPY_STREAM_IDENTIFIER.len())? != SNAPPY_STREAM_IDENTIFIER {
        return Err(snappy_error(
            "Invalid snappy framing format: bad stream identifier",
        ));
    }
    pos += SNAPPY_STREAM_IDENTIFIER.len();
    let mut decoder = snap::raw::Decoder::new();
    while pos < body.len() {
        let header = take(pos, 4)?;
        let kind = header[0];
        let len = u32::from_le_bytes([header[1], header[2], header[3], 0]) as usize;
        pos += 4;
        match kind {
            0xff => {
                if len != 6 {
                    return Err(snappy_error("Invalid snappy stream identifier chunk size"));
                }
                if take(pos, 6)? != &SNAPPY_STREAM_IDENTIFIER[4..] {
                    return Err(snappy_error("Invalid snappy stream identifier payload"));
                }
            }
            0x00 => {
                if len < 4 {
                    return Err(snappy_error("Compressed snappy chunk too small"));
                }
                if len - 4 > SNAPPY_MAX_COMPRESSED_CHUNK {
                    return Err(snappy_error(format!(
                        "Snappy compressed chunk payload size {} exceeds the framing format \
                         limit of {SNAPPY_MAX_COMPRESSED_CHUNK}",
                        len - 4
                    )));
                }
                let chunk = take(pos, len)?;
                let compressed = &chunk[4..];
                let size = snap::raw::decompress_len(compressed)
                    .map_err(|_| snappy_error("Cannot determine snappy uncompressed length"))?;
                if size > SNAPPY_MAX_CHUNK {
                    return Err(snappy_error(format!(
                        "Snappy chunk claims uncompressed length {size} which exceeds the \
                         framing format limit of {SNAPPY_MAX_CHUNK}"
                    )));
                }
                if size > out.limit - out.len {
                    return Err(out.too_large());
                }
                let (window, _) = out.window(size);
                match decoder.decompress(compressed, window) {
                    Ok(n) if n == size => {}
                    _ => return Err(snappy_error("Snappy decompression failed")),
                }
                if le32(chunk) != snappy_masked_crc(window) {
                    return Err(snappy_error("Snappy CRC-32C checksum mismatch"));
                }
                out.advance(size)?;
            }
            0x01 => {
                if len < 4 {
                    return Err(snappy_error("Uncompressed snappy chunk too small"));
                }
                if len - 4 > SNAPPY_MAX_CHUNK {
                    return Err(snappy_error(format!(
                        "Uncompressed snappy chunk payload size {} exceeds the framing format \
                         limit of {SNAPPY_MAX_CHUNK}",
                        len - 4
                    )));
                }
                let chunk = take(pos, len)?;
                if le32(chunk) != snappy_masked_crc(&chunk[4..]) {
                    return Err(snappy_error("Snappy CRC-32C checksum mismatch"));
                }
                out.extend(&chunk[4..])?;
            }
            0x80.. => {
                if body.len() - pos < len {
                    return Err(snappy_error(format!(
                        "Truncated snappy stream: skippable chunk expected {len} bytes but got {}",
                        body.len() - pos
                    )));
                }
            }
            _ => {
                return Err(snappy_error(format!(
                    "Unknown unskippable snappy chunk type: 0x{kind:02x}"
                )));
            }
        }
        pos += len;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// ClickHouse block framing (`decompress=1`).

const CHECKSUM_SIZE: usize = 16;
const HEADER_SIZE: usize = 9;
const METHOD_NONE: u8 = 0x02;
const METHOD_LZ4: u8 = 0x82;
const METHOD_ZSTD: u8 = 0x90;

/// Method bytes that ClickHouse 26.9 knows but that only column codecs use (Multiple, Delta,
/// T64, DoubleDelta, Gorilla, AES-128/256-GCM-SIV, FPC, GCD, ALP and two more); no HTTP client
/// sends them.
const COLUMN_CODEC_METHODS: [u8; 12] = [
    0x91, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x9a, 0x9c, 0x9e, 0x9f,
];

fn cannot_decompress(message: impl Into<String>) -> DecodeError {
    DecodeError::new(CANNOT_DECOMPRESS, message)
}

fn cannot_read_all(read: usize, expected: usize) -> DecodeError {
    DecodeError::new(
        CANNOT_READ_ALL_DATA,
        format!("Cannot read all data. Bytes read: {read}. Bytes expected: {expected}"),
    )
}

/// CityHash128 v1.0.2 of `data`, as the 16 bytes ClickHouse stores before a block.
fn block_checksum(data: &[u8]) -> [u8; 16] {
    cityhash_rs::cityhash_102_128(data)
        .rotate_right(64)
        .to_le_bytes()
}

const HARDWARE_FAILURE: &str = "This is most likely due to hardware failure. If you receive \
    broken data over network and the error does not repeat every time, this can be caused by bad \
    RAM on network interface controller or bad controller itself or bad RAM on network switches \
    or bad CPU on network switches (look at the logs on related network switches; note that TCP \
    checksums don't help) or bad RAM on host (look at dmesg or kern.log for enormous amount of \
    EDAC errors, ECC-related reports, Machine Check Exceptions, mcelog; note that ECC memory can \
    fail if the number of errors is huge) or bad CPU on host. If you read data from disk, this \
    can be caused by disk bit rot. This exception protects ClickHouse from data corruption due \
    to hardware failures.";

fn checksum_error(expected: [u8; 16], actual: [u8; 16], size: usize) -> DecodeError {
    let (expected, actual) = (u128::from_le_bytes(expected), u128::from_le_bytes(actual));
    let mut message = format!(
        "Checksum doesn't match: corrupted data. Reference: {expected:032x}. Actual: \
         {actual:032x}. Size of compressed block: {size}"
    );
    if (expected ^ actual).count_ones() == 1 {
        message.push_str(". The mismatch is caused by single bit flip in checksum. ");
        message.push_str(HARDWARE_FAILURE);
    }
    cannot_decompress(message)
}

/// Sum of the decompressed sizes the block headers declare, to reserve the output once.
fn declared_blocks_size(body: &[u8]) -> usize {
    let mut total = 0usize;
    let mut pos = 0;
    while let Some(header) = body.get(pos + CHECKSUM_SIZE..pos + CHECKSUM_SIZE + HEADER_SIZE) {
        let compressed = le32(&header[1..]) as usize;
        let decompressed = if header[0] == METHOD_NONE {
            compressed.saturating_sub(HEADER_SIZE)
        } else {
            le32(&header[5..]) as usize
        };
        total = total.saturating_add(decompressed);
        if compressed == 0 {
            break;
        }
        pos += CHECKSUM_SIZE + compressed;
    }
    total
}

fn decode_blocks_into(
    body: &[u8],
    out: &mut Output,
    verify_checksums: bool,
) -> Result<(), DecodeError> {
    let mut method = None;
    let mut zstd_context = None;
    let mut pos = 0;
    while pos < body.len() {
        let rest = &body[pos..];
        if rest.len() < CHECKSUM_SIZE + HEADER_SIZE {
            return Err(cannot_read_all(rest.len(), CHECKSUM_SIZE + HEADER_SIZE));
        }
        // The checks and their order are those of ClickHouse's CompressedReadBufferBase.
        let header = &rest[CHECKSUM_SIZE..CHECKSUM_SIZE + HEADER_SIZE];
        let this_method = header[0];
        match method {
            None if ![METHOD_NONE, METHOD_LZ4, METHOD_ZSTD].contains(&this_method)
                && !COLUMN_CODEC_METHODS.contains(&this_method) =>
            {
                return Err(DecodeError::new(
                    UNKNOWN_CODEC,
                    format!("Unknown codec family code: {this_method}"),
                ));
            }
            Some(previous) if previous != this_method => {
                return Err(cannot_decompress(format!(
                    "Data compressed with different methods, given method byte \
                     0x{this_method:02x}, previous method byte 0x{previous:02x}"
                )));
            }
            _ => method = Some(this_method),
        }
        let compressed = le32(&header[1..]) as usize;
        let decompressed = le32(&header[5..]) as usize;
        if compressed == 0 {
            return Err(cannot_decompress(
                "Can't decompress data: header is corrupt with compressed block size 0",
            ));
        }
        if decompressed == 0 {
            return Err(cannot_decompress(
                "Can't decompress data: header is corrupt with decompressed block size 0",
            ));
        }
        if compressed > MAX_BLOCK_SIZE {
            return Err(DecodeError::new(
                TOO_LARGE_SIZE_COMPRESSED,
                format!(
                    "Too large size_compressed_without_checksum: {compressed}. Most likely \
                     corrupted data"
                ),
            ));
        }
        if decompressed > MAX_BLOCK_SIZE {
            return Err(DecodeError::new(
                TOO_LARGE_SIZE_COMPRESSED,
                format!("Too large size_decompressed: {decompressed}. Most likely corrupted data"),
            ));
        }
        if compressed < HEADER_SIZE {
            return Err(cannot_decompress(format!(
                "Can't decompress data: the compressed data size ({compressed}, this should \
                 include header size) is less than the header size ({HEADER_SIZE})"
            )));
        }
        let total = CHECKSUM_SIZE + compressed;
        if rest.len() < total {
            return Err(cannot_read_all(rest.len(), total));
        }
        let block = &rest[CHECKSUM_SIZE..total];
        if verify_checksums {
            let expected: [u8; 16] = rest[..CHECKSUM_SIZE].try_into().unwrap_or([0; 16]);
            let actual = block_checksum(block);
            if expected != actual {
                return Err(checksum_error(expected, actual, compressed));
            }
        }
        let payload = &block[HEADER_SIZE..];
        match this_method {
            // ClickHouse 26.9 takes NONE payloads as they are, whatever size the header says.
            METHOD_NONE => out.extend(payload)?,
            METHOD_LZ4 => {
                if decompressed > out.limit - out.len {
                    return Err(out.too_large());
                }
                let (window, _) = out.window(decompressed);
                match lz4_flex::block::decompress_into(payload, window) {
                    Ok(n) if n == decompressed => out.advance(n)?,
                    _ => return Err(cannot_decompress("Cannot decompress LZ4-encoded data")),
                }
            }
            METHOD_ZSTD => {
                if decompressed > out.limit - out.len {
                    return Err(out.too_large());
                }
                let context = match &mut zstd_context {
                    Some(context) => context,
                    None => zstd_context.insert(zstd::bulk::Decompressor::new().map_err(|e| {
                        cannot_decompress(format!("Cannot decompress ZSTD-encoded data: {e}"))
                    })?),
                };
                let (window, _) = out.window(decompressed);
                match context.decompress_to_buffer(payload, window) {
                    Ok(n) if n == decompressed => out.advance(n)?,
                    Ok(n) => {
                        return Err(cannot_decompress(format!(
                            "Can't decompress data: The size after decompression ({n}) is \
                             different than the expected size ({decompressed}) for codec \
                             'ZSTD(1)'"
                        )));
                    }
                    Err(e) => {
                        return Err(cannot_decompress(format!(
                            "Cannot decompress ZSTD-encoded data: {e}"
                        )));
                    }
                }
            }
            // ClickHouse knows these and would try them; refuse them only once the block has
            // passed the checks above, so that a corrupt block fails as it does there.
            _ => {
                return Err(DecodeError::new(
                    NOT_IMPLEMENTED,
                    format!(
                        "Compression codec family code {this_method} is a column codec, not \
                         supported in a decompress=1 request body; only NONE (2), LZ4 (130) and \
                         ZSTD (144) are"
                    ),
                ));
            }
        }
        pos += total;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        let digit = |c: u8| (c as char).to_digit(16).expect("hex digit") as u8;
        s.as_bytes()
            .chunks(2)
            .map(|p| digit(p[0]) << 4 | digit(p[1]))
            .collect()
    }

    /// What a body decodes to.
    enum Plain {
        Text(&'static str),
        Hex(&'static str),
        /// A text repeated this many times.
        Repeat(&'static str, usize),
    }

    impl Plain {
        fn bytes(&self) -> Vec<u8> {
            match self {
                Plain::Text(s) => s.as_bytes().to_vec(),
                Plain::Hex(s) => unhex(s),
                Plain::Repeat(s, n) => s.repeat(*n).into_bytes(),
            }
        }
    }

    /// A body ClickHouse 26.9 accepted (HTTP 200) and the exact bytes it decoded, read back from
    /// a `RawBLOB` insert.
    struct Good {
        name: &'static str,
        encoding: Option<&'static str>,
        decompress: bool,
        body: &'static str,
        plain: Plain,
        /// False where the server could not take it (chdb has no bzip2).
        server: bool,
    }

    /// How the server's answer to a [`Bad`] body relates to ours.
    #[derive(PartialEq)]
    enum Server {
        /// Same status, code and name; the server's message starts with ours (less the final
        /// period): it may add a library version or a byte count.
        Same,
        /// The server answers 200 (it accepts a body cut inside a frame).
        Accepts,
        /// The server fails differently: it knows the column codecs, and the chdb build has no
        /// bzip2 (501 `Unsupported compression method`).
        Differs,
    }

    /// A body that fails, with our exact error.
    struct Bad {
        name: &'static str,
        encoding: Option<&'static str>,
        decompress: bool,
        body: &'static str,
        status: u16,
        code: u32,
        error: &'static str,
        message: &'static str,
        server: Server,
    }

    fn decode(
        encoding: Option<&str>,
        decompress: bool,
        body: &[u8],
        limit: usize,
    ) -> Result<Vec<u8>, DecodeError> {
        decode_body(encoding, decompress, body, limit).map(Cow::into_owned)
    }

    #[test]
    fn good_vectors_decode_to_the_bytes_clickhouse_decoded() {
        for v in GOOD {
            let got = decode(v.encoding, v.decompress, &unhex(v.body), usize::MAX)
                .unwrap_or_else(|e| panic!("{}: {e}", v.name));
            assert_eq!(got, v.plain.bytes(), "{}", v.name);
        }
    }

    #[test]
    fn limit_is_exact_for_every_good_vector() {
        for v in GOOD {
            let body = unhex(v.body);
            let n = v.plain.bytes().len();
            let got = decode(v.encoding, v.decompress, &body, n)
                .unwrap_or_else(|e| panic!("{}: {e}", v.name));
            assert_eq!(got.len(), n, "{}", v.name);
            let e = decode(v.encoding, v.decompress, &body, n - 1).expect_err(v.name);
            assert!(e.is_too_large(), "{}: {e}", v.name);
            assert_eq!(
                (e.status, e.code, e.name),
                (413, 307, "TOO_MANY_BYTES"),
                "{}",
                v.name
            );
        }
    }

    #[test]
    fn bad_vectors_fail_like_clickhouse() {
        for v in BAD {
            let e = decode(v.encoding, v.decompress, &unhex(v.body), usize::MAX).expect_err(v.name);
            assert_eq!(
                (e.status, e.code, e.name, e.message.as_str()),
                (v.status, v.code, v.error, v.message),
                "{}",
                v.name
            );
        }
    }

    #[test]
    fn error_display_is_clickhouse_text() {
        let e = ContentEncoding::from_header(Some("foo")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Code: 48. DB::Exception: Unknown compression method 'foo'. Only 'auto', 'none', \
             'gzip', 'deflate', 'br', 'xz', 'zstd', 'lz4', 'bz2', 'snappy' are supported as \
             compression methods. (NOT_IMPLEMENTED)"
        );
        assert_eq!((e.status, e.code), (501, 48));
    }

    #[test]
    fn encoding_names_are_clickhouse_names() {
        use ContentEncoding as E;
        let cases = [
            (None, E::Identity),
            (Some(""), E::Identity),
            (Some("none"), E::Identity),
            (Some("NONE"), E::Identity),
            (Some("auto"), E::Identity),
            (Some("gzip"), E::Gzip),
            (Some(" Gz\t"), E::Gzip),
            (Some("deflate"), E::Deflate),
            (Some("br"), E::Brotli),
            (Some("brotli"), E::Brotli),
            (Some("xz"), E::Xz),
            (Some("LZMA"), E::Xz),
            (Some("zstd"), E::Zstd),
            (Some("zst"), E::Zstd),
            (Some("lz4"), E::Lz4),
            (Some("bz2"), E::Bzip2),
            (Some("snappy"), E::Snappy),
        ];
        for (value, want) in cases {
            assert_eq!(
                ContentEncoding::from_header(value).unwrap(),
                want,
                "{value:?}"
            );
        }
        for value in [
            "identity",
            "x-gzip",
            "gzip, zstd",
            "gzip,zstd",
            "bzip2",
            "lz4_frame",
        ] {
            let e = ContentEncoding::from_header(Some(value)).unwrap_err();
            assert_eq!(
                (e.status, e.code, e.name),
                (501, 48, "NOT_IMPLEMENTED"),
                "{value}"
            );
        }
    }

    #[test]
    fn empty_body_is_empty_data_for_every_encoding() {
        for encoding in [
            "gzip", "deflate", "br", "xz", "zstd", "lz4", "bz2", "snappy", "none",
        ] {
            assert_eq!(
                decode(Some(encoding), false, b"", 0).unwrap(),
                b"",
                "{encoding}"
            );
        }
        assert_eq!(decode_clickhouse_blocks(b"", 0).unwrap(), b"");
    }

    #[test]
    fn identity_body_is_borrowed() {
        let body = b"{\"id\":1}\n";
        assert!(matches!(
            decode_content(None, body, 100).unwrap(),
            Cow::Borrowed(_)
        ));
        assert!(decode_content(None, body, 3).unwrap_err().is_too_large());
    }

    #[test]
    fn checksums_can_be_left_unverified() {
        let bad = BAD.iter().find(|v| v.name == "ch_bad_checksum").unwrap();
        let body = unhex(bad.body);
        assert_eq!(
            decode_clickhouse_blocks(&body, usize::MAX)
                .unwrap_err()
                .code,
            271
        );
        let plain = decode_clickhouse_blocks_with(&body, usize::MAX, false).unwrap();
        assert!(plain.starts_with(b"{\"id\":9300,"));
    }

    /// Decodes `body` into an `Output` limited to `limit` bytes; returns the error and the most
    /// memory the output buffer ever reserved.
    fn bomb(encoding: ContentEncoding, body: &[u8], limit: usize) -> (DecodeError, usize) {
        let mut out = Output::new(limit, 0, encoding.as_str());
        let e = decode_into(encoding, body, &mut out).expect_err("bomb");
        (e, out.buf.capacity())
    }

    #[test]
    fn bombs_stop_at_the_limit() {
        const LIMIT: usize = 1 << 20;
        let mib = vec![0u8; 1 << 20];
        // 256 gzip members and 1024 zstd frames of 1 MiB of zeros each: 256 MiB and 1 GiB.
        let mut member = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        std::io::Write::write_all(&mut member, &mib).unwrap();
        let gz = member.finish().unwrap().repeat(256);
        let zs = zstd::bulk::compress(&mib, 1).unwrap().repeat(1024);
        assert!(
            gz.len() < 2 << 20 && zs.len() < 256 << 10,
            "{} {}",
            gz.len(),
            zs.len()
        );
        for (encoding, body) in [(ContentEncoding::Gzip, &gz), (ContentEncoding::Zstd, &zs)] {
            let started = std::time::Instant::now();
            let (e, reserved) = bomb(encoding, body, LIMIT);
            assert!(e.is_too_large(), "{e}");
            assert_eq!(e.status, 413);
            assert!(reserved <= LIMIT + 1, "{encoding:?} reserved {reserved}");
            // Decoding all of it would take much longer.
            assert!(
                started.elapsed() < std::time::Duration::from_secs(5),
                "{encoding:?}"
            );
        }
        // A ClickHouse block that declares 1 GiB is refused before anything is allocated.
        let mut block = vec![0u8; 16];
        block.extend_from_slice(&[0x82, 12, 0, 0, 0, 0, 0, 0, 0x40, 0xff, 0xff, 0xff]);
        let checksum = block_checksum(&block[16..]);
        block[..16].copy_from_slice(&checksum);
        let mut out = Output::new(LIMIT, declared_blocks_size(&block), "decompress=1");
        let e = decode_blocks_into(&block, &mut out, true).unwrap_err();
        assert!(e.is_too_large(), "{e}");
        assert!(out.buf.capacity() <= LIMIT + 1);
        assert_eq!(out.buf.len(), 0);
    }

    #[test]
    fn decode_body_peels_content_encoding_first() {
        let v = GOOD.iter().find(|v| v.name == "gzip_over_ch_lz4").unwrap();
        let body = unhex(v.body);
        let framed = decode_content(v.encoding, &body, usize::MAX).unwrap();
        assert_eq!(framed[16], 0x82);
        assert_eq!(
            decode_clickhouse_blocks(&framed, usize::MAX).unwrap(),
            v.plain.bytes()
        );
    }

    // -----------------------------------------------------------------------------------------
    // Against a real server: set CHASYNC_DECODE_CLICKHOUSE=127.0.0.1:18523 (a ClickHouse 26.9
    // HTTP port, user `default` without password) to run it; it is skipped otherwise.

    /// `(status, X-ClickHouse-Exception-Code, body)` of a POST of `query` (percent-encoded here),
    /// with `params` (such as `decompress=1`) appended to the URL as they are.
    fn post(
        addr: &str,
        query: &str,
        params: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> (u16, Option<u32>, Vec<u8>) {
        use std::io::{Read, Write};
        let mut q = String::new();
        for b in query.bytes() {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                q.push(b as char);
            } else {
                q.push_str(&format!("%{b:02X}"));
            }
        }
        if !params.is_empty() {
            q.push('&');
            q.push_str(params);
        }
        let mut s = std::net::TcpStream::connect(addr).expect("connect");
        let mut req = format!(
            "POST /?query={q} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes()).unwrap();
        s.write_all(body).unwrap();
        let mut resp = Vec::new();
        s.read_to_end(&mut resp).unwrap();
        let split = resp
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("head");
        let head = String::from_utf8_lossy(&resp[..split]).to_ascii_lowercase();
        let mut rest = &resp[split + 4..];
        let status = head[9..12].parse().unwrap();
        let header = |name: &str| {
            head.lines().find_map(|l| {
                l.strip_prefix(name)?
                    .strip_prefix(':')
                    .map(|v| v.trim().to_string())
            })
        };
        let code = header("x-clickhouse-exception-code").map(|c| c.parse().unwrap());
        if header("transfer-encoding").as_deref() != Some("chunked") {
            return (status, code, rest.to_vec());
        }
        let mut data = Vec::new();
        loop {
            let eol = rest.windows(2).position(|w| w == b"\r\n").unwrap();
            let size = usize::from_str_radix(std::str::from_utf8(&rest[..eol]).unwrap().trim(), 16)
                .unwrap();
            if size == 0 {
                return (status, code, data);
            }
            data.extend_from_slice(&rest[eol + 2..eol + 2 + size]);
            rest = &rest[eol + 4 + size..];
        }
    }

    #[test]
    fn vectors_against_the_real_server() {
        let Ok(addr) = std::env::var("CHASYNC_DECODE_CLICKHOUSE") else {
            eprintln!("CHASYNC_DECODE_CLICKHOUSE is not set: skipped");
            return;
        };
        let ok = |r: (u16, Option<u32>, Vec<u8>)| {
            assert_eq!(r.0, 200, "{}", String::from_utf8_lossy(&r.2));
            r.2
        };
        for table in [
            "gw_decode_raw (n UInt64, s String)",
            "gw_decode_t (id UInt64, name String)",
        ] {
            let sql =
                format!("CREATE TABLE IF NOT EXISTS {table} ENGINE = MergeTree ORDER BY tuple()");
            ok(post(&addr, &sql, "", &[], b""));
        }
        let base = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_micros() as u64;
        let send = |n: u64, encoding: Option<&str>, decompress: bool, body: &[u8]| {
            let headers: Vec<(&str, &str)> = encoding
                .map(|e| ("Content-Encoding", e))
                .into_iter()
                .collect();
            let query = format!(
                "INSERT INTO gw_decode_raw (n, s) SELECT {n}, * FROM input('s String') FORMAT RawBLOB"
            );
            let params = if decompress { "decompress=1" } else { "" };
            let mut r = post(&addr, &query, params, &headers, body);
            if r.0 == 200 {
                let sql = format!("SELECT s FROM gw_decode_raw WHERE n = {n} FORMAT RawBLOB");
                r.2 = ok(post(&addr, &sql, "", &[], b""));
            }
            r
        };
        let mut n = base;
        for v in GOOD {
            n += 1;
            let body = unhex(v.body);
            let (status, code, data) = send(n, v.encoding, v.decompress, &body);
            if !v.server {
                assert_eq!((status, code), (501, Some(48)), "{}", v.name);
                continue;
            }
            assert_eq!(
                status,
                200,
                "{}: {}",
                v.name,
                String::from_utf8_lossy(&data)
            );
            let ours = decode(v.encoding, v.decompress, &body, usize::MAX).unwrap();
            assert_eq!(data, ours, "{}: the server decoded other bytes", v.name);
            if let Plain::Text(text) = v.plain {
                // The rows land in a JSONEachRow table too.
                let headers: Vec<(&str, &str)> = v
                    .encoding
                    .map(|e| ("Content-Encoding", e))
                    .into_iter()
                    .collect();
                let params = if v.decompress { "decompress=1" } else { "" };
                ok(post(
                    &addr,
                    "INSERT INTO gw_decode_t FORMAT JSONEachRow",
                    params,
                    &headers,
                    &body,
                ));
                let ids: Vec<&str> = text
                    .split("\"id\":")
                    .skip(1)
                    .map(|s| s.split(',').next().unwrap())
                    .collect();
                let sql = format!(
                    "SELECT uniqExact(id) FROM gw_decode_t WHERE id IN ({})",
                    ids.join(",")
                );
                let count = ok(post(&addr, &sql, "", &[], b""));
                let distinct = ids.iter().collect::<std::collections::BTreeSet<_>>().len();
                assert_eq!(
                    String::from_utf8_lossy(&count).trim(),
                    distinct.to_string(),
                    "{}",
                    v.name
                );
            }
        }
        for v in BAD {
            n += 1;
            let (status, code, data) = send(n, v.encoding, v.decompress, &unhex(v.body));
            let text = String::from_utf8_lossy(&data);
            match v.server {
                Server::Accepts => assert_eq!(status, 200, "{}: {text}", v.name),
                Server::Differs => assert_ne!(status, 200, "{}", v.name),
                Server::Same => {
                    assert_eq!(
                        (status, code),
                        (v.status, Some(v.code)),
                        "{}: {text}",
                        v.name
                    );
                    let prefix = format!(
                        "Code: {}. DB::Exception: {}",
                        v.code,
                        v.message.trim_end_matches('.')
                    );
                    assert!(
                        text.starts_with(&prefix),
                        "{}:\n server: {text}\n ours:   {prefix}",
                        v.name
                    );
                    assert!(
                        text.contains(&format!("({}) (version", v.error)),
                        "{}: {text}",
                        v.name
                    );
                }
            }
        }
    }
    /// Checked against ClickHouse 26.9.2.1 (chdb-core 26.9.0); generated with Python's gzip, zlib,
    /// lzma, bz2, brotli, zstandard, lz4 and python-snappy modules, clickhouse-cityhash for the
    /// block checksums, and captured from clickhouse-connect 1.13.0 and the Rust clickhouse 0.15.3.
    const GOOD: &[Good] = &[
        Good {
            name: "gzip_two_members",
            encoding: Some("gzip"),
            decompress: false,
            body: concat!(
                "1f8b0800000000000203ab56ca4c51b2b2343030d051ca4bcc4d55b2524aafd205f1956ab9aa619286689286c892",
                "46689246404900fb484ca5570000001f8b0800000000000203ab56ca4c51b2b2343030d651ca4bcc4d55b2524aaf",
                "d205f1956ab9aa6192266892264049008fabb4033a000000",
            ),
            plain: Plain::Text(concat!(
                "{\"id\":9000,\"name\":\"gz-9000\"}\n{\"id\":9001,\"name\":\"gz-9001\"}\n{\"id\":9002,\"name\":\"gz-9002\"}\n{\"id\"",
                ":9003,\"name\":\"gz-9003\"}\n{\"id\":9004,\"name\":\"gz-9004\"}\n",
            )),
            server: true,
        },
        // FEXTRA, FNAME, FCOMMENT and FHCRC set; upper-case name
        Good {
            name: "gzip_all_header_fields",
            encoding: Some("GZIP"),
            decompress: false,
            body: concat!(
                "1f8b081e0000000000ff030078797a726f77732e6a736f6e006120636f6d6d656e7400b326ab56ca4c51b2b23430",
                "34d051ca4bcc4d55b2524aafcad0050928d57255c3640dd1650d81b2001b45e1973c000000",
            ),
            plain: Plain::Text(
                "{\"id\":9010,\"name\":\"gzh-9010\"}\n{\"id\":9011,\"name\":\"gzh-9011\"}\n",
            ),
            server: true,
        },
        // clickhouse-connect 1.13.0 insert(compress='gzip'): SQL + Native
        Good {
            name: "gzip_clickhouse_connect",
            encoding: Some("gzip"),
            decompress: false,
            body: concat!(
                "1f8b0800000000000003f3f40b760d0a51f0f40bf15748284950d048c84c49d05148c84bcc4d4dd05470f30ff275",
                "0c51f04b2cc92c4be5626266ca4c610bf5cc2b3133e1506000034e28cd05a559403ad9824b8a32f3d239939375d3",
                "ab320b740de02c4338cb0800d9c5493d7b000000",
            ),
            plain: Plain::Hex(concat!(
                "494e5345525420494e544f206074602028606964602c20606e616d65602920464f524d4154204e61746976650a02",
                "030269640655496e743634082000000000000009200000000000000a20000000000000046e616d6506537472696e",
                "670963632d677a69702d300963632d677a69702d310963632d677a69702d32",
            )),
            server: true,
        },
        Good {
            name: "deflate_two_zlib_streams",
            encoding: Some("deflate"),
            decompress: false,
            body: concat!(
                "789cab56ca4c51b2b2343032d051ca4bcc4d55b252aacad105f1956ab9aa619286689286404900c5300f0d789cab",
                "56ca4c51b2b2343032d251ca4bcc4d55b252aacad105f1956ab90075ac078a",
            ),
            plain: Plain::Text(
                "{\"id\":9020,\"name\":\"zl-9020\"}\n{\"id\":9021,\"name\":\"zl-9021\"}\n{\"id\":9022,\"name\":\"zl-9022\"}\n",
            ),
            server: true,
        },
        Good {
            name: "br",
            encoding: Some("br"),
            decompress: false,
            body: concat!(
                "1b5600f81d87b11ba7212e3ff5c412d4c952bfccf64fa24655f6a58995021938e49c9f5aa2cd9b0780750003b090",
                "85fb9c1db58287a54b0b9f32cc3201",
            ),
            plain: Plain::Text(
                "{\"id\":9030,\"name\":\"br-9030\"}\n{\"id\":9031,\"name\":\"br-9031\"}\n{\"id\":9032,\"name\":\"br-9032\"}\n",
            ),
            server: true,
        },
        // clickhouse-connect insert(compress='br')
        Good {
            name: "br_clickhouse_connect",
            encoding: Some("br"),
            decompress: false,
            body: concat!(
                "1b7400001c07768cf8a669f5c3480c8b40d6ce7a7a65998c942f24db7ce9972f0c1a64ac8a6e012439e580020acc",
                "5ad4c29bdee57a8fb16b3b2cdb10af3bac5d354f1c29c314159c07e55898ae8c7a233932e57d5ff3005ef8885797",
                "53b842c9fed2387a06",
            ),
            plain: Plain::Hex(concat!(
                "494e5345525420494e544f206074602028606964602c20606e616d65602920464f524d4154204e61746976650a02",
                "030269640655496e7436346c200000000000006d200000000000006e20000000000000046e616d6506537472696e",
                "670763632d62722d300763632d62722d310763632d62722d32",
            )),
            server: true,
        },
        Good {
            name: "xz_two_streams_padding",
            encoding: Some("xz"),
            decompress: false,
            body: concat!(
                "fd377a585a000004e6d6b4460200210116000000742fe5a3e0003900265d003d888926819353ca9760b0a10dab10",
                "edc3a58170ffa0ffda3ba7bd19a96ad2b21b5925bf7c000000004e124bb940e669ce0001423a1e41c5241fb6f37d",
                "010000000004595a00000000fd377a585a0000016922de360200210116000000742fe5a3e0003900265d003d8889",
                "26819353ca9760b307e94abc335d01fe9cd6f4078c7abc14b801e56b6c56fd8db220000000000717ac0000013e3a",
                "e4774fa79042990d010000000001595a0000000000000000",
            ),
            plain: Plain::Text(concat!(
                "{\"id\":9040,\"name\":\"xz-9040\"}\n{\"id\":9041,\"name\":\"xz-9041\"}\n{\"id\":9042,\"name\":\"xz-9042\"}\n{\"id\"",
                ":9043,\"name\":\"xz-9043\"}\n",
            )),
            server: true,
        },
        Good {
            name: "zstd_frames_and_skippable",
            encoding: Some("zstd"),
            decompress: false,
            body: concat!(
                "28b52ffd243a4d0100f07b226964223a393035302c226e616d65223a227a732d227d0a3131227d0a0300a00ba06a",
                "98603601df20867e532a4d1805000000736b69702128b52ffd00004d0100f07b226964223a393035322c226e616d",
                "65223a227a732d227d0a3333227d0a0300a00ba06a98603601",
            ),
            plain: Plain::Text(concat!(
                "{\"id\":9050,\"name\":\"zs-9050\"}\n{\"id\":9051,\"name\":\"zs-9051\"}\n{\"id\":9052,\"name\":\"zs-9052\"}\n{\"id\"",
                ":9053,\"name\":\"zs-9053\"}\n",
            )),
            server: true,
        },
        // clickhouse-connect insert(compress='zstd'), one zstd frame per Native block
        Good {
            name: "zstd_clickhouse_connect_two_frames",
            encoding: Some("zstd"),
            decompress: false,
            body: concat!(
                "28b52ffd205dcd0200d404494e5345525420494e544f206074602028606964602c20606e616d65602920464f524d",
                "4154204e61746976650a02020269640655496e743634342100350406537472696e67036d2d30036d2d3103005505",
                "59c9cb2d800228b52ffd20306d0100440202020269640655496e74363436210037046e616d6506537472696e6703",
                "6d2d32036d2d3302002b29b4a00e",
            ),
            plain: Plain::Hex(concat!(
                "494e5345525420494e544f206074602028606964602c20606e616d65602920464f524d4154204e61746976650a02",
                "020269640655496e74363434210000000000003521000000000000046e616d6506537472696e67036d2d30036d2d",
                "3102020269640655496e74363436210000000000003721000000000000046e616d6506537472696e67036d2d3203",
                "6d2d33",
            )),
            server: true,
        },
        Good {
            name: "lz4_frames_checksums_skippable",
            encoding: Some("lz4"),
            decompress: false,
            body: concat!(
                "04224d187c403a00000000000000242a000000f0077b226964223a393036302c226e616d65223a226c7a2d100035",
                "227d0a1d001a311d00503631227d0a3d75771300000000f75017585a2a4d180300000061626304224d186040822a",
                "000000f0077b226964223a393036322c226e616d65223a226c7a2d100035227d0a1d001a331d00503633227d0a00",
                "000000",
            ),
            plain: Plain::Text(concat!(
                "{\"id\":9060,\"name\":\"lz-9060\"}\n{\"id\":9061,\"name\":\"lz-9061\"}\n{\"id\":9062,\"name\":\"lz-9062\"}\n{\"id\"",
                ":9063,\"name\":\"lz-9063\"}\n",
            )),
            server: true,
        },
        // clickhouse-connect insert(compress='lz4'), one LZ4 frame per Native block
        Good {
            name: "lz4_clickhouse_connect_two_frames",
            encoding: Some("lz4"),
            decompress: false,
            body: concat!(
                "04224d1848405d000000000000000e5a000000f12d494e5345525420494e544f206074602028606964602c20606e",
                "616d65602920464f524d4154204e61746976650a02020269640655496e743634d02000010013d10800f005046e61",
                "6d6506537472696e67036d2d30036d2d310000000004224d1848403000000000000000f72d000000f10002020269",
                "640655496e743634d22000010013d30800f005046e616d6506537472696e67036d2d32036d2d3300000000",
            ),
            plain: Plain::Hex(concat!(
                "494e5345525420494e544f206074602028606964602c20606e616d65602920464f524d4154204e61746976650a02",
                "020269640655496e743634d020000000000000d120000000000000046e616d6506537472696e67036d2d30036d2d",
                "3102020269640655496e743634d220000000000000d320000000000000046e616d6506537472696e67036d2d3203",
                "6d2d33",
            )),
            server: true,
        },
        // plain is 4000 copies of one row
        Good {
            name: "lz4_linked_blocks",
            encoding: Some("lz4"),
            decompress: false,
            body: concat!(
                "04224d184840a003020000000000032c010000ff127b226964223a393037302c226e616d65223a226c696e6b6564",
                "2d39303730227d0a2100ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
                "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
                "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
                "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
                "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
                "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffc75039303730220a0100",
                "000fe1ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
                "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
                "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
                "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
                "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
                "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffe850642d3930370d0000000f2100ffff",
                "ff8b503730227d0a00000000",
            ),
            plain: Plain::Repeat("{\"id\":9070,\"name\":\"linked-9070\"}\n", 4000),
            server: true,
        },
        Good {
            name: "lz4_stored_block",
            encoding: Some("lz4"),
            decompress: false,
            body: concat!(
                "04224d186040823a0000807b226964223a393037312c226e616d65223a2273742d39303731227d0a7b226964223a",
                "393037322c226e616d65223a2273742d39303732227d0a00000000",
            ),
            plain: Plain::Text(
                "{\"id\":9071,\"name\":\"st-9071\"}\n{\"id\":9072,\"name\":\"st-9072\"}\n",
            ),
            server: true,
        },
        Good {
            name: "snappy_two_streams",
            encoding: Some("snappy"),
            decompress: false,
            body: concat!(
                "ff060000734e61507059002e0000ea3de9803a547b226964223a393038302c226e616d65223a22736e2d01100822",
                "7d0a151d00313a1d000c31227d0aff060000734e61507059002e0000cd784aa13a547b226964223a393038322c22",
                "6e616d65223a22736e2d011008227d0a151d00333a1d000c33227d0a",
            ),
            plain: Plain::Text(concat!(
                "{\"id\":9080,\"name\":\"sn-9080\"}\n{\"id\":9081,\"name\":\"sn-9081\"}\n{\"id\":9082,\"name\":\"sn-9082\"}\n{\"id\"",
                ":9083,\"name\":\"sn-9083\"}\n",
            )),
            server: true,
        },
        // chdb 26.9 has no bzip2: the server answers 501
        Good {
            name: "bz2_two_streams",
            encoding: Some("bz2"),
            decompress: false,
            body: concat!(
                "425a6839314159265359101c4f4800001b59800010100660303623001a200050a69918989881554f483469ea1b52",
                "929614bb1845246a9bc4592521952cca14a59f8bb9229c2848080e27a400425a68393141592653597c59809e0000",
                "0dd9800010100650303623001a200021a9a00d3d436a14d32313131112eb0e1103772084d0a70c94fe2ee48a70a1",
                "20f8b3013c",
            ),
            plain: Plain::Text(
                "{\"id\":9090,\"name\":\"bz-9090\"}\n{\"id\":9091,\"name\":\"bz-9091\"}\n{\"id\":9092,\"name\":\"bz-9092\"}\n",
            ),
            server: false,
        },
        Good {
            name: "identity_none_upper",
            encoding: Some("NONE"),
            decompress: false,
            body: "7b226964223a393039352c226e616d65223a2269642d39303935227d0a",
            plain: Plain::Text("{\"id\":9095,\"name\":\"id-9095\"}\n"),
            server: true,
        },
        Good {
            name: "identity_auto",
            encoding: Some("Auto"),
            decompress: false,
            body: "7b226964223a393039352c226e616d65223a2269642d39303935227d0a",
            plain: Plain::Text("{\"id\":9095,\"name\":\"id-9095\"}\n"),
            server: true,
        },
        Good {
            name: "identity_empty_header",
            encoding: Some(""),
            decompress: false,
            body: "7b226964223a393039352c226e616d65223a2269642d39303935227d0a",
            plain: Plain::Text("{\"id\":9095,\"name\":\"id-9095\"}\n"),
            server: true,
        },
        Good {
            name: "ch_lz4_two_blocks",
            encoding: None,
            decompress: true,
            body: concat!(
                "b22b96f0665169acba71dc57f5349815823d0000005a000000f50f7b226964223a393130302c226e616d65223a22",
                "63686c2d39313030227d0a1e001c311e0018311e001b321e00503032227d0ae9f6f71f7f5028c733221bdb95b420",
                "a782350000003c000000f50f7b226964223a393130332c226e616d65223a2263686c2d39313033227d0a1e001b34",
                "1e00503034227d0a",
            ),
            plain: Plain::Text(concat!(
                "{\"id\":9100,\"name\":\"chl-9100\"}\n{\"id\":9101,\"name\":\"chl-9101\"}\n{\"id\":9102,\"name\":\"chl-9102\"}\n{\"",
                "id\":9103,\"name\":\"chl-9103\"}\n{\"id\":9104,\"name\":\"chl-9104\"}\n",
            )),
            server: true,
        },
        Good {
            name: "ch_zstd_two_blocks",
            encoding: None,
            decompress: true,
            body: concat!(
                "262b3f0a962a2f978adc8c3eb31e487d903e0000003c00000028b52ffd203c65010034027b226964223a39313130",
                "2c226e616d65223a2263687a2d39313130227d0a3131227d0a0200000943a19c13934ab1eb242fe51f47551573cf",
                "32cc903c0000003c00000028b52ffd203c550100f87b226964223a393131322c226e616d65223a2263687a2d227d",
                "0a3333227d0a03000089a06aa4603601",
            ),
            plain: Plain::Text(concat!(
                "{\"id\":9110,\"name\":\"chz-9110\"}\n{\"id\":9111,\"name\":\"chz-9111\"}\n{\"id\":9112,\"name\":\"chz-9112\"}\n{\"",
                "id\":9113,\"name\":\"chz-9113\"}\n",
            )),
            server: true,
        },
        Good {
            name: "ch_none_block",
            encoding: None,
            decompress: true,
            body: concat!(
                "20f224c612f409a02ed5788a3fac1b6d02450000003c0000007b226964223a393132302c226e616d65223a226368",
                "6e2d39313230227d0a7b226964223a393132312c226e616d65223a2263686e2d39313231227d0a",
            ),
            plain: Plain::Text(
                "{\"id\":9120,\"name\":\"chn-9120\"}\n{\"id\":9121,\"name\":\"chn-9121\"}\n",
            ),
            server: true,
        },
        // 26.9 ignores the decompressed size of NONE blocks
        Good {
            name: "ch_none_block_size_ignored",
            encoding: None,
            decompress: true,
            body: concat!(
                "7614d198b268f3548f3f759111d4fd550245000000010000007b226964223a393132302c226e616d65223a226368",
                "6e2d39313230227d0a7b226964223a393132312c226e616d65223a2263686e2d39313231227d0a",
            ),
            plain: Plain::Text(
                "{\"id\":9120,\"name\":\"chn-9120\"}\n{\"id\":9121,\"name\":\"chn-9121\"}\n",
            ),
            server: true,
        },
        Good {
            name: "gzip_over_ch_lz4",
            encoding: Some("gzip"),
            decompress: true,
            body: concat!(
                "1f8b08000000000002030bd4de52de26ae34f3484544e8255de5734dc60c0c0c1a40fc41b25a293345c9cad2d0d8",
                "4047292f313755c94a29bd2a39431724a254cb05978e34ae0e93bc98cdda9db075a7c44781fd60234c81f88fa021",
                "864e43649d46f20c01c6464011003b84138586000000",
            ),
            plain: Plain::Text(concat!(
                "{\"id\":9130,\"name\":\"gzch-9130\"}\n{\"id\":9131,\"name\":\"gzch-9131\"}\n{\"id\":9132,\"name\":\"gzch-9132\"}",
                "\n",
            )),
            server: true,
        },
        // clickhouse 0.15.3 (Rust) insert(), RowBinaryWithNamesAndTypes; /?query=INSERT+INTO+%60t%60%28%60id%60%2C%60name%60%29+FORMA
        Good {
            name: "ch_rust_clickhouse_lz4",
            encoding: None,
            decompress: true,
            body: concat!(
                "6154ba64470439ebf289a634b89323a082460000005f000000f10b02026964046e616d650655496e743634065374",
                "72696e67581b000100bc09727573742d373030305912002c315a120027325b120060742d37303033",
            ),
            plain: Plain::Hex(concat!(
                "02026964046e616d650655496e74363406537472696e67581b00000000000009727573742d37303030591b000000",
                "00000009727573742d373030315a1b00000000000009727573742d373030325b1b00000000000009727573742d37",
                "303033",
            )),
            server: true,
        },
        // clickhouse 0.15.3 (Rust) insert(), RowBinaryWithNamesAndTypes; /?query=INSERT+INTO+%60t%60%28%60id%60%2C%60name%60%29+FORMA
        Good {
            name: "ch_rust_clickhouse_zstd",
            encoding: None,
            decompress: true,
            body: concat!(
                "ebba724d277b381043ec50075311597490490000005f00000028b52ffd205fbd0100a40202026964046e616d6506",
                "55496e74363406537472696e67621b0009727573742d37303130633164326533040000c100c135d17b8131",
            ),
            plain: Plain::Hex(concat!(
                "02026964046e616d650655496e74363406537472696e67621b00000000000009727573742d37303130631b000000",
                "00000009727573742d37303131641b00000000000009727573742d37303132651b00000000000009727573742d37",
                "303133",
            )),
            server: true,
        },
    ];

    /// The server's own answers, except where `server` says otherwise (see the module docs).
    const BAD: &[Bad] = &[
        Bad {
            name: "unknown_encoding",
            encoding: Some("Foo"),
            decompress: false,
            body: concat!(
                "7b226964223a393230302c226e616d65223a22652d39323030227d0a7b226964223a393230312c226e616d65223a",
                "22652d39323031227d0a7b226964223a393230322c226e616d65223a22652d39323032227d0a7b226964223a3932",
                "30332c226e616d65223a22652d39323033227d0a7b226964223a393230342c226e616d65223a22652d3932303422",
                "7d0a7b226964223a393230352c226e616d65223a22652d39323035227d0a",
            ),
            status: 501,
            code: 48,
            error: "NOT_IMPLEMENTED",
            message: concat!(
                "Unknown compression method 'Foo'. Only 'auto', 'none', 'gzip', 'deflate', 'br', 'xz', 'zstd'",
                ", 'lz4', 'bz2', 'snappy' are supported as compression methods.",
            ),
            server: Server::Same,
        },
        Bad {
            name: "encoding_list",
            encoding: Some("gzip, zstd"),
            decompress: false,
            body: concat!(
                "1f8b0800000000000203ab56ca4c51b2b2343230d051ca4bcc4d55b2524ad50571956ab9aa617286a87286c87246",
                "a87246c872c6a872c6c87226a87226c872a6a872a6403900123f8fc1a8000000",
            ),
            status: 501,
            code: 48,
            error: "NOT_IMPLEMENTED",
            message: concat!(
                "Unknown compression method 'gzip, zstd'. Only 'auto', 'none', 'gzip', 'deflate', 'br', 'xz',",
                " 'zstd', 'lz4', 'bz2', 'snappy' are supported as compression methods.",
            ),
            server: Server::Same,
        },
        Bad {
            name: "encoding_identity",
            encoding: Some("identity"),
            decompress: false,
            body: concat!(
                "7b226964223a393230302c226e616d65223a22652d39323030227d0a7b226964223a393230312c226e616d65223a",
                "22652d39323031227d0a7b226964223a393230322c226e616d65223a22652d39323032227d0a7b226964223a3932",
                "30332c226e616d65223a22652d39323033227d0a7b226964223a393230342c226e616d65223a22652d3932303422",
                "7d0a7b226964223a393230352c226e616d65223a22652d39323035227d0a",
            ),
            status: 501,
            code: 48,
            error: "NOT_IMPLEMENTED",
            message: concat!(
                "Unknown compression method 'identity'. Only 'auto', 'none', 'gzip', 'deflate', 'br', 'xz', '",
                "zstd', 'lz4', 'bz2', 'snappy' are supported as compression methods.",
            ),
            server: Server::Same,
        },
        Bad {
            name: "gzip_bad_crc",
            encoding: Some("gzip"),
            decompress: false,
            body: concat!(
                "1f8b0800000000000203ab56ca4c51b2b2343230d051ca4bcc4d55b2524ad50571956ab9aa617286a87286c87246",
                "a87246c872c6a872c6c87226a87226c872a6a872a6403900123f70c1a8000000",
            ),
            status: 500,
            code: 354,
            error: "ZLIB_INFLATE_FAILED",
            message: "inflate failed: data error.",
            server: Server::Same,
        },
        Bad {
            name: "gzip_truncated",
            encoding: Some("gzip"),
            decompress: false,
            body: concat!(
                "1f8b0800000000000203ab56ca4c51b2b2343230d051ca4bcc4d55b2524ad50571956ab9aa617286a87286c87246",
                "a87246c872c6a872c6c87226a87226c872a6a872a640",
            ),
            status: 500,
            code: 354,
            error: "ZLIB_INFLATE_FAILED",
            message: "inflate failed: buffer error.",
            server: Server::Same,
        },
        Bad {
            name: "gzip_trailing_garbage",
            encoding: Some("gzip"),
            decompress: false,
            body: concat!(
                "1f8b0800000000000203ab56ca4c51b2b2343230d051ca4bcc4d55b2524ad50571956ab9aa617286a87286c87246",
                "a87246c872c6a872c6c87226a87226c872a6a872a6403900123f8fc1a800000067617262616765",
            ),
            status: 500,
            code: 354,
            error: "ZLIB_INFLATE_FAILED",
            message: "inflate failed: data error.",
            server: Server::Same,
        },
        Bad {
            name: "gzip_plain_body",
            encoding: Some("gzip"),
            decompress: false,
            body: concat!(
                "7b226964223a393230302c226e616d65223a22652d39323030227d0a7b226964223a393230312c226e616d65223a",
                "22652d39323031227d0a7b226964223a393230322c226e616d65223a22652d39323032227d0a7b226964223a3932",
                "30332c226e616d65223a22652d39323033227d0a7b226964223a393230342c226e616d65223a22652d3932303422",
                "7d0a7b226964223a393230352c226e616d65223a22652d39323035227d0a",
            ),
            status: 500,
            code: 354,
            error: "ZLIB_INFLATE_FAILED",
            message: "inflate failed: data error.",
            server: Server::Same,
        },
        Bad {
            name: "deflate_raw_not_zlib",
            encoding: Some("deflate"),
            decompress: false,
            body: concat!(
                "ab56ca4c51b2b2343230d051ca4bcc4d55b2524ad50571956ab9aa617286a87286c87246a87246c872c6a872c6c8",
                "7226a87226c872a6a872a6403900",
            ),
            status: 500,
            code: 354,
            error: "ZLIB_INFLATE_FAILED",
            message: "inflate failed: data error.",
            server: Server::Same,
        },
        Bad {
            name: "br_trailing_garbage",
            encoding: Some("br"),
            decompress: false,
            body: concat!(
                "1ba700f82d0eec66ce6f40cd999f64cdaaea44d9b7179665696e4e38248f07bd492d9253d636155ac85006e7bc2b",
                "259c04e8650002acf05b5b26cf7d461d3884c23842a2d41f0b007a7a",
            ),
            status: 500,
            code: 448,
            error: "BROTLI_READ_FAILED",
            message: "brotli decode error.",
            server: Server::Same,
        },
        Bad {
            name: "br_truncated",
            encoding: Some("br"),
            decompress: false,
            body: concat!(
                "1ba700f82d0eec66ce6f40cd999f64cdaaea44d9b7179665696e4e38248f07bd492d9253d636155ac85006e7bc2b",
                "259c04e8650002acf05b5b26cf7d461d3884c23842a2d4",
            ),
            status: 500,
            code: 448,
            error: "BROTLI_READ_FAILED",
            message: "brotli decode error.",
            server: Server::Same,
        },
        Bad {
            name: "xz_truncated",
            encoding: Some("xz"),
            decompress: false,
            body: concat!(
                "fd377a585a000004e6d6b4460200210116000000742fe5a3e000a700355d003d888926819353ca9b5854799d9496",
                "fcc3b4c6aa80c671b747863b0371c3f8fda3f0379db565109a885a611397f7715c72d6fa2b0000000000509de69f",
                "0c78d469000151a801000000bdbc6cfcb1c467fb020000",
            ),
            status: 500,
            code: 554,
            error: "LZMA_STREAM_DECODER_FAILED",
            message: "lzma_stream_decoder failed: error code: error code LZMA_BUF_ERROR.",
            server: Server::Same,
        },
        Bad {
            name: "xz_legacy_lzma",
            encoding: Some("lzma"),
            decompress: false,
            body: concat!(
                "5d00008000ffffffffffffffff003d888926819353ca9b5854799d9496fcc3b4c6aa80c671b747863b0371c3f8fd",
                "a3f0379db565109a885a611397f7715c72f525033ffff1faf400",
            ),
            status: 500,
            code: 554,
            error: "LZMA_STREAM_DECODER_FAILED",
            message: "lzma_stream_decoder failed: error code: error code LZMA_FORMAT_ERROR.",
            server: Server::Same,
        },
        Bad {
            name: "xz_bad_check",
            encoding: Some("xz"),
            decompress: false,
            body: concat!(
                "fd377a585a000004e6d6b4460200210116000000742fe5a3e000a700355d003d888926819353ca9b5854799d9496",
                "fcc3b4c6aa80c671b747863b0371c3f8fda3f0379db565109a885a611397f7715c72d6fa2b0000000000509de69f",
                "0c78d469000151a801000000bdbc6cfdb1c467fb020000000004595a",
            ),
            status: 500,
            code: 554,
            error: "LZMA_STREAM_DECODER_FAILED",
            message: "lzma_stream_decoder failed: error code: error code LZMA_DATA_ERROR.",
            server: Server::Same,
        },
        Bad {
            name: "zstd_trailing_garbage",
            encoding: Some("zstd"),
            decompress: false,
            body: concat!(
                "28b52ffd24a805020054027b226964223a393230302c226e616d65223a22652d227d0a3131323233333434353522",
                "7d0a0b004016c01d9019e004c80738066401dc01c97eaa2bd6bc036117eb3667617262616765",
            ),
            status: 500,
            code: 561,
            error: "ZSTD_DECODER_FAILED",
            message: "ZSTD stream decoding failed: error 'Unknown frame descriptor'.",
            server: Server::Same,
        },
        Bad {
            name: "zstd_bad_checksum",
            encoding: Some("zstd"),
            decompress: false,
            body: concat!(
                "28b52ffd24a805020054027b226964223a393230302c226e616d65223a22652d227d0a3131323233333434353522",
                "7d0a0b004016c01d9019e004c80738066401dc01c97eaa2bd6bc036117eb37",
            ),
            status: 500,
            code: 561,
            error: "ZSTD_DECODER_FAILED",
            message: "ZSTD stream decoding failed: error 'Restored data doesn't match checksum'.",
            server: Server::Same,
        },
        // ClickHouse answers 200 and inserts nothing
        Bad {
            name: "zstd_truncated",
            encoding: Some("zstd"),
            decompress: false,
            body: concat!(
                "28b52ffd24a805020054027b226964223a393230302c226e616d65223a22652d227d0a3131323233333434353522",
                "7d0a0b004016c01d9019e004c80738066401dc01c97eaa2bd6bc",
            ),
            status: 500,
            code: 561,
            error: "ZSTD_DECODER_FAILED",
            message: "ZSTD stream decoding failed: error 'Truncated input: the body ends inside a zstd frame'.",
            server: Server::Accepts,
        },
        Bad {
            name: "lz4_trailing_garbage",
            encoding: Some("lz4"),
            decompress: false,
            body: concat!(
                "04224d186c40a800000000000000c849000000f0067b226964223a393230302c226e616d65223a22652d0f003522",
                "7d0a1c001a311c0018311c001a321c0018321c001a331c0018331c001a341c0018341c0019351c00503035227d0a",
                "000000001d2a21be67617262616765",
            ),
            status: 500,
            code: 618,
            error: "LZ4_DECODER_FAILED",
            message: "LZ4 decompression failed. LZ4F version: 100. Error: ERROR_frameType_unknown.",
            server: Server::Same,
        },
        Bad {
            name: "lz4_bad_content_checksum",
            encoding: Some("lz4"),
            decompress: false,
            body: concat!(
                "04224d186c40a800000000000000c849000000f0067b226964223a393230302c226e616d65223a22652d0f003522",
                "7d0a1c001a311c0018311c001a321c0018321c001a331c0018331c001a341c0018341c0019351c00503035227d0a",
                "000000001d2a21bf",
            ),
            status: 500,
            code: 618,
            error: "LZ4_DECODER_FAILED",
            message: "LZ4 decompression failed. LZ4F version: 100. Error: ERROR_contentChecksum_invalid.",
            server: Server::Same,
        },
        // ClickHouse answers 200 and inserts nothing
        Bad {
            name: "lz4_truncated",
            encoding: Some("lz4"),
            decompress: false,
            body: concat!(
                "04224d186c40a800000000000000c849000000f0067b226964223a393230302c226e616d65223a22652d0f003522",
                "7d0a1c001a311c0018311c001a321c0018321c001a331c0018331c001a341c0018341c0019351c00503035227d",
            ),
            status: 500,
            code: 618,
            error: "LZ4_DECODER_FAILED",
            message: "LZ4 decompression failed: the body ends inside an LZ4 frame.",
            server: Server::Accepts,
        },
        Bad {
            name: "snappy_bad_crc",
            encoding: Some("snappy"),
            decompress: false,
            body: concat!(
                "ff060000734e615070590057000031312e17a8016c7b226964223a393230302c226e616d65223a22652d39323030",
                "227d0a151c0031361c0000312e1c000032361c0000322e1c000033361c0000332e1c000034361c0000342e1c0000",
                "35361c000c35227d0b",
            ),
            status: 500,
            code: 638,
            error: "SNAPPY_UNCOMPRESS_FAILED",
            message: "Snappy CRC-32C checksum mismatch.",
            server: Server::Same,
        },
        Bad {
            name: "snappy_hadoop_format",
            encoding: Some("snappy"),
            decompress: false,
            body: concat!(
                "000000a800000053a8016c7b226964223a393230302c226e616d65223a22652d39323030227d0a151c0031361c00",
                "00312e1c000032361c0000322e1c000033361c0000332e1c000034361c0000342e1c000035361c000c35227d0a",
            ),
            status: 500,
            code: 638,
            error: "SNAPPY_UNCOMPRESS_FAILED",
            message: "Invalid snappy framing format: bad stream identifier.",
            server: Server::Same,
        },
        // ClickHouse also says how many bytes it expected
        Bad {
            name: "snappy_truncated",
            encoding: Some("snappy"),
            decompress: false,
            body: concat!(
                "ff060000734e615070590057000031312e17a8016c7b226964223a393230302c226e616d65223a22652d39323030",
                "227d0a151c0031361c0000312e1c000032361c0000322e1c000033361c0000332e1c000034361c0000342e1c0000",
                "35361c000c35",
            ),
            status: 500,
            code: 638,
            error: "SNAPPY_UNCOMPRESS_FAILED",
            message: "Truncated snappy stream: expected 87 bytes but got 84.",
            server: Server::Same,
        },
        Bad {
            name: "ch_bad_checksum",
            encoding: None,
            decompress: true,
            body: concat!(
                "d802f4008ccda35b75bf73da8fcb57968254000000ae000000f50e7b226964223a393330302c226e616d65223a22",
                "63652d39333030227d0a1d001b311d0018311d001b321d0018321d001b331d0018331d001b341d0018341d001a35",
                "1d00503035227d0a",
            ),
            status: 500,
            code: 271,
            error: "CANNOT_DECOMPRESS",
            message: concat!(
                "Checksum doesn't match: corrupted data. Reference: 9657cb8fda73bf755ba3cd8c00f402d8. Actual:",
                " 9657cb8fda73af755ba3cd8c00f40227. Size of compressed block: 84.",
            ),
            server: Server::Same,
        },
        Bad {
            name: "ch_checksum_single_bit_flip",
            encoding: None,
            decompress: true,
            body: concat!(
                "2702f4208ccda35b75af73da8fcb57968254000000ae000000f50e7b226964223a393330302c226e616d65223a22",
                "63652d39333030227d0a1d001b311d0018311d001b321d0018321d001b331d0018331d001b341d0018341d001a35",
                "1d00503035227d0a",
            ),
            status: 500,
            code: 271,
            error: "CANNOT_DECOMPRESS",
            message: concat!(
                "Checksum doesn't match: corrupted data. Reference: 9657cb8fda73af755ba3cd8c20f40227. Actual:",
                " 9657cb8fda73af755ba3cd8c00f40227. Size of compressed block: 84. The mismatch is caused by s",
                "ingle bit flip in checksum. This is most likely due to hardware failure. If you receive brok",
                "en data over network and the error does not repeat every time, this can be caused by bad RAM",
                " on network interface controller or bad controller itself or bad RAM on network switches or ",
                "bad CPU on network switches (look at the logs on related network switches; note that TCP che",
                "cksums don't help) or bad RAM on host (look at dmesg or kern.log for enormous amount of EDAC",
                " errors, ECC-related reports, Machine Check Exceptions, mcelog; note that ECC memory can fai",
                "l if the number of errors is huge) or bad CPU on host. If you read data from disk, this can ",
                "be caused by disk bit rot. This exception protects ClickHouse from data corruption due to ha",
                "rdware failures.",
            ),
            server: Server::Same,
        },
        // ClickHouse adds where the flipped bit is
        Bad {
            name: "ch_data_single_bit_flip",
            encoding: None,
            decompress: true,
            body: concat!(
                "2702f4008ccda35b75af73da8fcb57968254000000ae000000f50e7b226960223a393330302c226e616d65223a22",
                "63652d39333030227d0a1d001b311d0018311d001b321d0018321d001b331d0018331d001b341d0018341d001a35",
                "1d00503035227d0a",
            ),
            status: 500,
            code: 271,
            error: "CANNOT_DECOMPRESS",
            message: concat!(
                "Checksum doesn't match: corrupted data. Reference: 9657cb8fda73af755ba3cd8c00f40227. Actual:",
                " 31b2e1b1ac88a9bf57f37a49eea813d0. Size of compressed block: 84.",
            ),
            server: Server::Same,
        },
        Bad {
            name: "ch_unknown_method",
            encoding: None,
            decompress: true,
            body: "6eb260286f3c4509e35b29df50a7353a830c0000000300000078797a",
            status: 500,
            code: 432,
            error: "UNKNOWN_CODEC",
            message: "Unknown codec family code: 131.",
            server: Server::Same,
        },
        Bad {
            name: "ch_plain_body",
            encoding: None,
            decompress: true,
            body: concat!(
                "7b226964223a393330302c226e616d65223a2263652d39333030227d0a7b226964223a393330312c226e616d6522",
                "3a2263652d39333031227d0a7b226964223a393330322c226e616d65223a2263652d39333032227d0a7b22696422",
                "3a393330332c226e616d65223a2263652d39333033227d0a7b226964223a393330342c226e616d65223a2263652d",
                "39333034227d0a7b226964223a393330352c226e616d65223a2263652d39333035227d0a",
            ),
            status: 500,
            code: 432,
            error: "UNKNOWN_CODEC",
            message: "Unknown codec family code: 34.",
            server: Server::Same,
        },
        // ClickHouse tries the Delta codec
        Bad {
            name: "ch_column_codec",
            encoding: None,
            decompress: true,
            body: "fcff9400fa749a718a2f5ff23e7a3c3c92130000000a00000001006162636465666768",
            status: 501,
            code: 48,
            error: "NOT_IMPLEMENTED",
            message: concat!(
                "Compression codec family code 146 is a column codec, not supported in a decompress=1 request",
                " body; only NONE (2), LZ4 (130) and ZSTD (144) are.",
            ),
            server: Server::Differs,
        },
        Bad {
            name: "ch_truncated_header",
            encoding: None,
            decompress: true,
            body: "2702f4008ccda35b75af73da8fcb579682540000",
            status: 500,
            code: 33,
            error: "CANNOT_READ_ALL_DATA",
            message: "Cannot read all data. Bytes read: 20. Bytes expected: 25.",
            server: Server::Same,
        },
        Bad {
            name: "ch_truncated_payload",
            encoding: None,
            decompress: true,
            body: concat!(
                "2702f4008ccda35b75af73da8fcb57968254000000ae000000f50e7b226964223a393330302c226e616d65223a22",
                "63652d39333030227d0a1d001b311d0018311d001b321d0018321d001b331d0018331d001b341d0018341d001a35",
                "1d00503035227d0a2702f4008ccda35b75af73da8fcb57968254000000ae000000f50e7b226964223a393330302c",
                "226e616d65223a2263652d39333030227d0a1d001b311d0018311d001b321d0018321d001b331d0018331d001b34",
                "1d0018341d001a351d00503035",
            ),
            status: 500,
            code: 33,
            error: "CANNOT_READ_ALL_DATA",
            message: "Cannot read all data. Bytes read: 97. Bytes expected: 100.",
            server: Server::Same,
        },
        Bad {
            name: "ch_trailing_byte",
            encoding: None,
            decompress: true,
            body: concat!(
                "2702f4008ccda35b75af73da8fcb57968254000000ae000000f50e7b226964223a393330302c226e616d65223a22",
                "63652d39333030227d0a1d001b311d0018311d001b321d0018321d001b331d0018331d001b341d0018341d001a35",
                "1d00503035227d0a78",
            ),
            status: 500,
            code: 33,
            error: "CANNOT_READ_ALL_DATA",
            message: "Cannot read all data. Bytes read: 1. Bytes expected: 25.",
            server: Server::Same,
        },
        Bad {
            name: "ch_mixed_methods",
            encoding: None,
            decompress: true,
            body: concat!(
                "2702f4008ccda35b75af73da8fcb57968254000000ae000000f50e7b226964223a393330302c226e616d65223a22",
                "63652d39333030227d0a1d001b311d0018311d001b321d0018321d001b331d0018331d001b341d0018341d001a35",
                "1d00503035227d0adcbf6e891b2f9ca318c9f3f267f2dca09055000000ae00000028b52ffd20ae1d0200a4027b22",
                "6964223a393330302c226e616d65223a2263652d39333030227d0a31313232333334343535227d0a0a00a013c01d",
                "e818e004740738063a01dc81ce0285ca03",
            ),
            status: 500,
            code: 271,
            error: "CANNOT_DECOMPRESS",
            message: "Data compressed with different methods, given method byte 0x90, previous method byte 0x82.",
            server: Server::Same,
        },
        Bad {
            name: "ch_compressed_size_0",
            encoding: None,
            decompress: true,
            body: "0155118c7cf0966751046c30ab72b0bc820000000005000000",
            status: 500,
            code: 271,
            error: "CANNOT_DECOMPRESS",
            message: "Can't decompress data: header is corrupt with compressed block size 0.",
            server: Server::Same,
        },
        Bad {
            name: "ch_decompressed_size_0",
            encoding: None,
            decompress: true,
            body: "c76630aef02c4f97b6d4c12a7fdf4255020900000000000000",
            status: 500,
            code: 271,
            error: "CANNOT_DECOMPRESS",
            message: "Can't decompress data: header is corrupt with decompressed block size 0.",
            server: Server::Same,
        },
        Bad {
            name: "ch_compressed_size_5",
            encoding: None,
            decompress: true,
            body: "21a0e03a250b27edbfd9e8a16146e23b020500000005000000",
            status: 500,
            code: 271,
            error: "CANNOT_DECOMPRESS",
            message: concat!(
                "Can't decompress data: the compressed data size (5, this should include header size) is less",
                " than the header size (9).",
            ),
            server: Server::Same,
        },
        Bad {
            name: "ch_compressed_too_large",
            encoding: None,
            decompress: true,
            body: "00b14facea00f541a5d979e392871219820100004003000000616263",
            status: 500,
            code: 39,
            error: "TOO_LARGE_SIZE_COMPRESSED",
            message: "Too large size_compressed_without_checksum: 1073741825. Most likely corrupted data.",
            server: Server::Same,
        },
        Bad {
            name: "ch_decompressed_too_large",
            encoding: None,
            decompress: true,
            body: "a448437da9a4a874046bcfffd059b039820c00000001000040616263",
            status: 500,
            code: 39,
            error: "TOO_LARGE_SIZE_COMPRESSED",
            message: "Too large size_decompressed: 1073741825. Most likely corrupted data.",
            server: Server::Same,
        },
        // follows Bzip2ReadBuffer; chdb has no bzip2 (501)
        Bad {
            name: "bz2_truncated",
            encoding: Some("bz2"),
            decompress: false,
            body: concat!(
                "425a683931415926535908efe8c400004e5980001010067e302623000a20004089547ea4186d50fd50a6134d01a6",
                "260d8d8e8707c8eb7e39eb555555b6e3e0d818160c1be24924924b0707f0e0f707060e0c1fe2ee48a70a12",
            ),
            status: 500,
            code: 3,
            error: "UNEXPECTED_END_OF_FILE",
            message: "Unexpected end of bzip2 archive.",
            server: Server::Differs,
        },
        // follows Bzip2ReadBuffer; chdb has no bzip2 (501)
        Bad {
            name: "bz2_trailing_garbage",
            encoding: Some("bz2"),
            decompress: false,
            body: concat!(
                "425a683931415926535908efe8c400004e5980001010067e302623000a20004089547ea4186d50fd50a6134d01a6",
                "260d8d8e8707c8eb7e39eb555555b6e3e0d818160c1be24924924b0707f0e0f707060e0c1fe2ee48a70a12011dfd",
                "188067617262616765",
            ),
            status: 500,
            code: 594,
            error: "BZIP2_STREAM_DECODER_FAILED",
            message: "bzip2 stream decoder failed: error code: -5.",
            server: Server::Differs,
        },
        Bad {
            name: "ch_lz4_size_mismatch",
            encoding: None,
            decompress: true,
            body: concat!(
                "fcb2fd13981ee3eb0ec07fbcb14d8f1e8254000000b3000000f50e7b226964223a393330302c226e616d65223a22",
                "63652d39333030227d0a1d001b311d0018311d001b321d0018321d001b331d0018331d001b341d0018341d001a35",
                "1d00503035227d0a",
            ),
            status: 500,
            code: 271,
            error: "CANNOT_DECOMPRESS",
            message: "Cannot decompress LZ4-encoded data.",
            server: Server::Same,
        },
        Bad {
            name: "ch_zstd_size_larger",
            encoding: None,
            decompress: true,
            body: concat!(
                "527493c15fd044c59a3b702ee247fa129053000000b300000028b52ffd20ae0d020064027b226964223a39333030",
                "2c226e616d65223a2263652d227d0a31313232333334343535227d0a0b00a013c01de818e004740738063a01dc81",
                "ce802a67822906",
            ),
            status: 500,
            code: 271,
            error: "CANNOT_DECOMPRESS",
            message: concat!(
                "Can't decompress data: The size after decompression (174) is different than the expected siz",
                "e (179) for codec 'ZSTD(1)'.",
            ),
            server: Server::Same,
        },
        Bad {
            name: "ch_zstd_size_smaller",
            encoding: None,
            decompress: true,
            body: concat!(
                "e7c4288af79bc59c2a4c47dfbac4a67c9053000000a900000028b52ffd20ae0d020064027b226964223a39333030",
                "2c226e616d65223a2263652d227d0a31313232333334343535227d0a0b00a013c01de818e004740738063a01dc81",
                "ce802a67822906",
            ),
            status: 500,
            code: 271,
            error: "CANNOT_DECOMPRESS",
            message: "Cannot decompress ZSTD-encoded data: Destination buffer is too small.",
            server: Server::Same,
        },
        Bad {
            name: "ch_zstd_garbage",
            encoding: None,
            decompress: true,
            body: "0c4d5d9fa63447ffeb7ac5069b7e966f901d00000064000000ffffffffffffffffffffffffffffffffffffffff",
            status: 500,
            code: 271,
            error: "CANNOT_DECOMPRESS",
            message: "Cannot decompress ZSTD-encoded data: Unknown frame descriptor.",
            server: Server::Same,
        },
        Bad {
            name: "gzip_over_ch_bad_checksum",
            encoding: Some("gzip"),
            decompress: true,
            body: concat!(
                "1f8b0800000000000203bbc1f485a1e7ece2e8d2f5c5b7fa4f874f6b0a6160605807c45ff9aa95325394ac2c8d0d",
                "0c7494f212735395ac94925375417ca55a2e5906694359060920963602d2402c6d0ca48158da044803b194a92c43",
                "808129502d001ba16b2764000000",
            ),
            status: 500,
            code: 271,
            error: "CANNOT_DECOMPRESS",
            message: concat!(
                "Checksum doesn't match: corrupted data. Reference: 9657cb8fda73af755ba3cd8c00f402d8. Actual:",
                " 9657cb8fda73af755ba3cd8c00f40227. Size of compressed block: 84.",
            ),
            server: Server::Same,
        },
    ];
}
