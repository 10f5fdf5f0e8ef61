//! Answers shaped like ClickHouse's own: the status a ClickHouse error code maps to, the
//! `X-ClickHouse-Exception-Code` header, `Code: N. DB::Exception: ...` bodies, and
//! `X-ClickHouse-Summary` / `X-ClickHouse-Query-Id` on success.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};

/// The body type of every answer: a whole body, or a stream passed through from ClickHouse.
pub type Body = BoxBody<Bytes, hyper::Error>;

/// A whole body.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// A ClickHouse error, as the gateway answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChError {
    /// The ClickHouse error code.
    pub code: u32,
    /// The message, without the `Code: N. DB::Exception: ` prefix.
    pub message: String,
    /// The HTTP status (by default the one ClickHouse gives the code).
    pub status: u16,
    /// `Retry-After` (seconds), for a refusal the client should retry.
    pub retry_after: Option<u64>,
}

impl ChError {
    /// Error `code` with `message`, at the status ClickHouse gives the code.
    pub fn new(code: u32, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            status: status_of(code),
            retry_after: None,
        }
    }

    /// The same error with `Retry-After: seconds`.
    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// The same error at another status.
    pub fn with_status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }

    /// `Code: N. DB::Exception: <message>. (NAME) (version V)\n`, as ClickHouse writes it.
    pub fn body(&self, version: &str) -> String {
        let message = self.message.trim_end();
        let stop = if message.ends_with('.') { "" } else { "." };
        match name_of(self.code) {
            Some(name) => format!(
                "Code: {}. DB::Exception: {message}{stop} ({name}) (version {version})\n",
                self.code
            ),
            None => format!(
                "Code: {}. DB::Exception: {message}{stop} (version {version})\n",
                self.code
            ),
        }
    }

    /// The answer.
    pub fn response(&self, version: &str, query_id: Option<&str>) -> Response<Body> {
        let mut r = Response::new(full(self.body(version)));
        *r.status_mut() =
            StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let h = r.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=UTF-8"),
        );
        h.insert("X-ClickHouse-Exception-Code", HeaderValue::from(self.code));
        if let Some(id) = query_id.and_then(|q| HeaderValue::from_str(q).ok()) {
            h.insert("X-ClickHouse-Query-Id", id);
        }
        if let Some(s) = self.retry_after {
            h.insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        r
    }
}

impl std::fmt::Display for ChError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Code: {}. {}", self.code, self.message)
    }
}

/// The answer to an accepted insert of `rows` rows and `bytes` bytes: an empty 200 with
/// ClickHouse's summary (every value a string) and the query id.
pub fn inserted(rows: u64, bytes: u64, query_id: &str, elapsed_ns: u128) -> Response<Body> {
    let summary = format!(
        "{{\"read_rows\":\"{rows}\",\"read_bytes\":\"{bytes}\",\"written_rows\":\"{rows}\",\
         \"written_bytes\":\"{bytes}\",\"total_rows_to_read\":\"0\",\"result_rows\":\"{rows}\",\
         \"result_bytes\":\"{bytes}\",\"elapsed_ns\":\"{elapsed_ns}\",\"memory_usage\":\"0\"}}"
    );
    let mut r = Response::new(full(Bytes::new()));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=UTF-8"),
    );
    if let Ok(v) = HeaderValue::from_str(&summary) {
        h.insert("X-ClickHouse-Summary", v);
    }
    if let Ok(v) = HeaderValue::from_str(query_id) {
        h.insert("X-ClickHouse-Query-Id", v);
    }
    h.insert("X-Chasyncd-Rows", HeaderValue::from(rows));
    r
}

/// The HTTP status ClickHouse answers error `code` with (its `exceptionCodeToHTTPStatus`).
pub fn status_of(code: u32) -> u16 {
    match code {
        194 => 401,
        192 | 193 | 516 | 512 | 497 => 403,
        36 | 427 | 6 | 25 | 26 | 38 | 41 | 72 | 441 | 675 | 676 | 27 | 376 | 15 | 44 | 37 | 123
        | 8 | 167 | 168 | 223 | 62 | 117 | 53 | 321 => 400,
        60 | 46 | 47 | 50 | 56 | 81 | 115 | 152 | 63 | 73 | 336 | 78 | 511 => 404,
        229 => 413,
        48 => 501,
        209 | 76 | 439 => 503,
        381 => 411,
        159 => 408,
        779 => 415,
        _ => 500,
    }
}

/// The symbolic names of the error codes the gateway answers with itself.
pub fn name_of(code: u32) -> Option<&'static str> {
    Some(match code {
        6 => "CANNOT_PARSE_TEXT",
        16 => "NO_SUCH_COLUMN_IN_TABLE",
        26 => "CANNOT_PARSE_QUOTED_STRING",
        27 => "CANNOT_PARSE_INPUT_ASSERTION_FAILED",
        32 => "ATTEMPT_TO_READ_AFTER_EOF",
        33 => "CANNOT_READ_ALL_DATA",
        48 => "NOT_IMPLEMENTED",
        60 => "UNKNOWN_TABLE",
        62 => "SYNTAX_ERROR",
        73 => "UNKNOWN_FORMAT",
        81 => "UNKNOWN_DATABASE",
        115 => "UNKNOWN_SETTING",
        117 => "INCORRECT_DATA",
        164 => "READONLY",
        202 => "TOO_MANY_SIMULTANEOUS_QUERIES",
        209 => "SOCKET_TIMEOUT",
        241 => "MEMORY_LIMIT_EXCEEDED",
        252 => "TOO_MANY_PARTS",
        271 => "CHECKSUM_DOESNT_MATCH",
        381 => "HTTP_LENGTH_REQUIRED",
        432 => "UNKNOWN_CODEC",
        497 => "ACCESS_DENIED",
        516 => "AUTHENTICATION_FAILED",
        1000 => "POCO_EXCEPTION",
        1002 => "UNKNOWN_EXCEPTION",
        _ => return None,
    })
}

/// A plain-text answer of the daemon's own (health, metrics, its API).
pub fn text(status: StatusCode, body: impl Into<String>) -> Response<Body> {
    let mut body = body.into();
    if !body.is_empty() && !body.ends_with('\n') {
        body.push('\n');
    }
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=UTF-8"),
    );
    r
}

/// The answer to an `ack=committed` request whose rows could not be committed: ClickHouse's
/// error for its data (4xx), or a 5xx when retrying may help.
pub fn committed_error(e: chasync_core::Error) -> ChError {
    match e {
        chasync_core::Error::DeadLettered {
            last_error,
            code,
            spool,
            ..
        } => {
            let message = match last_error.split_once("): ") {
                Some((head, rest)) if head.starts_with("ClickHouse error") => rest.to_string(),
                _ => last_error.clone(),
            };
            let message = format!(
                "{message} (the request's rows are in chasyncd's dead-letter spool {})",
                spool.display()
            );
            match code {
                Some(code) => ChError::new(code, message),
                None => ChError::new(1002, message),
            }
        }
        other => ChError::new(1002, other.report()).with_status(503),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_shaped_like_clickhouse_s() {
        let e = ChError::new(60, "Table default.nope does not exist");
        assert_eq!(e.status, 404);
        assert_eq!(
            e.body("26.9.2.1"),
            "Code: 60. DB::Exception: Table default.nope does not exist. (UNKNOWN_TABLE) \
             (version 26.9.2.1)\n"
        );
        let r = ChError::new(516, "u: Authentication failed").response("v", Some("q1"));
        assert_eq!(r.status(), 403);
        assert_eq!(r.headers()["X-ClickHouse-Exception-Code"], "516");
        assert_eq!(r.headers()["X-ClickHouse-Query-Id"], "q1");
        assert_eq!(
            (status_of(27), status_of(33), status_of(48)),
            (400, 500, 501)
        );
        let r = inserted(3, 93, "id", 5);
        assert_eq!(r.status(), 200);
        let summary: serde_json::Value =
            serde_json::from_str(r.headers()["X-ClickHouse-Summary"].to_str().unwrap()).unwrap();
        assert_eq!(summary["written_rows"], "3");
        assert_eq!(summary["read_bytes"], "93");
    }
}
