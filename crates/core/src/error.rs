//! The one error type of the engine, and the classification the engine acts on.
//!
//! Every failure is an [`Error`]; its [`Error::kind`] tells the engine what to do with the batch
//! that met it: retry it (with the same bytes and dedup token), slow down, or dead-letter it.

use std::fmt;
use std::path::PathBuf;

/// What the engine does about an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// A passing fault (network, a busy or restarting server): retry with backoff.
    Retryable,
    /// The server is overloaded (too many parts, memory, simultaneous queries): retry with
    /// backoff and send less at once.
    Overload,
    /// The request may or may not have been applied (connection lost after the body was sent,
    /// no answer in time): retry with the same dedup token, so it lands at most once.
    UnknownOutcome,
    /// The server rejected the data of the batch (parse or type errors): retrying the same
    /// bytes cannot succeed; the rows go to the dead-letter spool.
    Data,
    /// Nothing to gain from retrying (unknown table or column, syntax, authentication, access).
    Permanent,
}

impl ErrorKind {
    /// Whether a batch that met this error should be sent again.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            Self::Retryable | Self::Overload | Self::UnknownOutcome
        )
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Retryable => "retryable",
            Self::Overload => "overload",
            Self::UnknownOutcome => "unknown outcome",
            Self::Data => "data",
            Self::Permanent => "permanent",
        })
    }
}

/// Errors of the chasync engine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration cannot work (missing table, zero limits, bad URL ...).
    #[error("invalid configuration: {0}")]
    Config(String),

    /// The table does not exist, or the user cannot see it.
    #[error("table {database}.{table} does not exist (or the user cannot see it)")]
    UnknownTable {
        /// Database name.
        database: String,
        /// Table name.
        table: String,
    },

    /// ClickHouse answered with an exception.
    #[error("ClickHouse error {code}{}: {message}", name.as_deref().map(|n| format!(" ({n})")).unwrap_or_default())]
    Server {
        /// The ClickHouse error code (`Code: N`), e.g. 60 for UNKNOWN_TABLE.
        code: u32,
        /// The error name when the server gave one, e.g. `UNKNOWN_TABLE`.
        name: Option<String>,
        /// The server's message.
        message: String,
    },

    /// The server answered with an HTTP error status and no ClickHouse exception code.
    #[error("HTTP error from ClickHouse: {0}")]
    Http(String),

    /// The connection failed or broke; whether the insert was applied is unknown.
    #[error("network error: {message}")]
    Network {
        /// What failed.
        message: String,
        /// Why, when a lower layer said.
        #[source]
        source: Option<BoxError>,
    },

    /// No answer within the configured timeout; whether the insert was applied is unknown.
    #[error("timed out: {0}")]
    Timeout(String),

    /// A row could not be encoded for the table.
    #[error("cannot encode row: {0}")]
    Encode(String),

    /// The dead-letter spool could not be written or read.
    #[error("dead-letter spool error at {path}: {source}")]
    Spool {
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },

    /// Rows could not be committed and were written to the dead-letter spool.
    #[error(
        "{rows} row(s) in {batches} batch(es) were dead-lettered to {spool} (last error: {last_error})"
    )]
    DeadLettered {
        /// Dead-lettered batches.
        batches: u64,
        /// Dead-lettered rows.
        rows: u64,
        /// The spool directory.
        spool: PathBuf,
        /// The error of the last dead-lettered batch.
        last_error: String,
        /// Its ClickHouse error code, if the server gave one.
        code: Option<u32>,
    },

    /// An earlier attempt of a batch may have landed, and the checks could not establish
    /// whether it did (see [`crate::Guarantee`]): the batch is not sent again, so that it
    /// cannot land twice, and goes to the dead-letter spool with this reason.
    #[error(
        "the outcome of an earlier attempt of batch {id} is unknown and could not be established ({reason}): not sent again, so that it cannot land twice; check the table before replaying it"
    )]
    UnresolvedOutcome {
        /// The batch id (its `query_id` and dedup token).
        id: uuid::Uuid,
        /// Why the checks could not tell.
        reason: String,
    },

    /// The engine has shut down and accepts no more rows.
    #[error("the ingestor is shut down")]
    Closed,

    /// Another error of the `clickhouse` crate, or of the engine's own machinery.
    #[error("clickhouse client error: {message}")]
    Client {
        /// What failed.
        message: String,
        /// Why, when a lower layer said.
        #[source]
        source: Option<BoxError>,
    },
}

/// A boxed cause of an [`Error`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A `Result` with the engine's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// How the engine treats this error; see [`ErrorKind`].
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Server { code, .. } => classify_code(*code),
            Error::Http(_) => ErrorKind::Retryable,
            Error::Network { .. } | Error::Timeout(_) | Error::UnresolvedOutcome { .. } => {
                ErrorKind::UnknownOutcome
            }
            Error::Encode(_) => ErrorKind::Data,
            Error::Config(_)
            | Error::UnknownTable { .. }
            | Error::Spool { .. }
            | Error::DeadLettered { .. }
            | Error::Closed
            | Error::Client { .. } => ErrorKind::Permanent,
        }
    }

    /// A network error with `message` and no lower cause.
    pub fn network(message: impl Into<String>) -> Self {
        Error::Network {
            message: message.into(),
            source: None,
        }
    }

    /// The error and its causes, each once: `a: b: c` (for messages and logs).
    pub fn report(&self) -> String {
        error_chain(self)
    }

    /// Whether the request surely never reached the server: the connection (or its TLS
    /// handshake) could not be established. Such an attempt cannot have landed.
    pub(crate) fn never_reached_server(&self) -> bool {
        let Error::Network {
            source: Some(source),
            ..
        } = self
        else {
            return false;
        };
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(source.as_ref());
        while let Some(c) = cause {
            if let Some(e) = c.downcast_ref::<hyper_util::client::legacy::Error>() {
                return e.is_connect();
            }
            cause = c.source();
        }
        false
    }

    /// Whether a failed attempt may have been applied by the server all the same: no answer
    /// (connection lost after the request went out, timeout), an HTTP error without a
    /// ClickHouse exception (a proxy's 502 or 504 may come after the server took the insert),
    /// or `QUERY_WITH_SAME_ID_IS_ALREADY_RUNNING` (an earlier attempt is still running).
    pub(crate) fn maybe_applied(&self) -> bool {
        match self {
            Error::Network { .. } => !self.never_reached_server(),
            Error::Timeout(_) | Error::Http(_) => true,
            Error::Server { code: 216, .. } => true,
            _ => false,
        }
    }

    /// The ClickHouse error code, when the server sent one.
    pub fn code(&self) -> Option<u32> {
        match self {
            Error::Server { code, .. } => Some(*code),
            Error::DeadLettered { code, .. } => *code,
            _ => None,
        }
    }
}

impl From<clickhouse::error::Error> for Error {
    fn from(err: clickhouse::error::Error) -> Self {
        use clickhouse::error::Error as Ch;
        match err {
            Ch::BadResponse(text) => parse_server_error(&text),
            // The whole chain in the message: hyper's own text is only "client error
            // (Connect)", the reason (refused, a TLS certificate problem) is in its causes.
            Ch::Network(e) => {
                let mut message = error_chain(&*e);
                if let Some(hint) = tls_hint(&message) {
                    message = format!("{message} ({hint})");
                }
                Error::Network {
                    message,
                    source: Some(e),
                }
            }
            Ch::TimedOut => Error::Timeout("no answer from ClickHouse in time".into()),
            other => Error::Client {
                message: other.to_string(),
                source: Some(Box::new(other)),
            },
        }
    }
}

fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let m = s.to_string();
        if !text.contains(&m) {
            text.push_str(": ");
            text.push_str(&m);
        }
        source = s.source();
    }
    text
}

/// Turns the body (or status line) of a failed ClickHouse response into an [`Error`].
///
/// ClickHouse errors read `Code: 60. DB::Exception: Table x.y does not exist. (UNKNOWN_TABLE)
/// (version 26.9.2.1)`; when only the `X-ClickHouse-Exception-Code` header was available the
/// `clickhouse` crate reports `Code: 60`. Anything without a code is an HTTP error.
pub(crate) fn parse_server_error(text: &str) -> Error {
    let text = text.trim();
    let Some(code) = text
        .find("Code: ")
        .map(|i| &text[i + 6..])
        .and_then(|rest| {
            let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
            digits.parse::<u32>().ok()
        })
    else {
        return Error::Http(text.to_string());
    };
    let message = text
        .find("DB::Exception: ")
        .map(|i| &text[i + 15..])
        .unwrap_or(text);
    // Drop the trailing "(version ...)".
    let message = match message.rfind(" (version ") {
        Some(i) if message.ends_with(')') => &message[..i],
        _ => message,
    };
    // The error name is the last parenthesised upper-case word.
    let name = message.rfind(" (").and_then(|i| {
        let cand = message[i + 2..].strip_suffix(')')?;
        (!cand.is_empty()
            && cand
                .chars()
                .all(|c| c.is_ascii_uppercase() || c == '_' || c.is_ascii_digit()))
        .then(|| (i, cand.to_string()))
    });
    let (message, name) = match name {
        Some((i, n)) => (
            message[..i].trim_end_matches('.').to_string() + ".",
            Some(n),
        ),
        None => (message.to_string(), None),
    };
    Error::Server {
        code,
        name,
        message,
    }
}

/// Classifies a ClickHouse error code.
///
/// The lists follow ClickHouse's `ErrorCodes.cpp`. A code not listed is treated as permanent:
/// the batch is dead-lettered rather than retried forever.
pub fn classify_code(code: u32) -> ErrorKind {
    match code {
        // TOO_MANY_SIMULTANEOUS_QUERIES, MEMORY_LIMIT_EXCEEDED, TOO_MANY_PARTS,
        // CANNOT_ALLOCATE_MEMORY, NO_FREE_CONNECTION, CANNOT_SCHEDULE_TASK, QUOTA_EXCEEDED
        202 | 241 | 252 | 173 | 203 | 439 | 201 => ErrorKind::Overload,
        // TIMEOUT_EXCEEDED, SOCKET_TIMEOUT, NETWORK_ERROR, UNKNOWN_STATUS_OF_INSERT,
        // SYSTEM_ERROR, QUERY_WITH_SAME_ID_IS_ALREADY_RUNNING, TABLE_IS_READ_ONLY, ABORTED,
        // QUERY_WAS_CANCELLED, DNS_ERROR, ALL_CONNECTION_TRIES_FAILED, NO_ZOOKEEPER,
        // REPLICA_IS_NOT_IN_QUORUM, TOO_LESS_LIVE_REPLICAS, UNEXPECTED_ZOOKEEPER_ERROR,
        // TABLE_IS_DROPPED (while being re-created), SESSION_IS_LOCKED, KEEPER_EXCEPTION,
        // POCO_EXCEPTION, CANNOT_READ_FROM_SOCKET, CANNOT_WRITE_TO_SOCKET, TIMEOUT_EXCEEDED on
        // distributed sends, UNFINISHED, CANNOT_ASSIGN_ALTER ...
        159 | 209 | 210 | 319 | 425 | 216 | 242 | 236 | 394 | 198 | 279 | 225 | 289 | 285 | 999
        | 218 | 373 | 1000 | 95 | 96 | 341 | 517 => ErrorKind::Retryable,
        // Bad data in the batch: parse and conversion errors, constraint violations.
        6 | 26 | 27 | 32 | 33 | 38 | 41 | 53 | 69 | 70 | 72 | 117 | 128 | 131 | 349 | 395 | 407
        | 469 | 76 => ErrorKind::Data,
        _ => ErrorKind::Permanent,
    }
}

/// What to do about a TLS failure, by the reason in an error's text: `None` when the text
/// names none this knows.
pub fn tls_hint(error: &str) -> Option<&'static str> {
    if error.contains("UnknownIssuer") {
        Some(
            "the server's certificate is not signed by a CA this client trusts: set \
             tls_ca_file (or SSL_CERT_FILE) to the CA that signed it",
        )
    } else if error.contains("certificate not valid for name") {
        Some("the server's certificate does not name the host of the URL")
    } else if error.contains("CertificateRequired") {
        Some("the server requires a client certificate: set tls_cert_file and tls_key_file")
    } else if error.contains("fatal alert: UnknownCA")
        || error.contains("fatal alert: BadCertificate")
    {
        Some("the server refused the client certificate (tls_cert_file)")
    } else if error.contains("InvalidContentType") || error.contains("CorruptMessage") {
        Some("the server did not answer with TLS: is it an http:// endpoint?")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_server_exception() {
        let e = parse_server_error(
            "Code: 60. DB::Exception: Table db.t does not exist. (UNKNOWN_TABLE) (version 26.9.2.1)\n",
        );
        match &e {
            Error::Server {
                code,
                name,
                message,
            } => {
                assert_eq!(*code, 60);
                assert_eq!(name.as_deref(), Some("UNKNOWN_TABLE"));
                assert_eq!(message, "Table db.t does not exist.");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(e.kind(), ErrorKind::Permanent);
        assert_eq!(
            e.to_string(),
            "ClickHouse error 60 (UNKNOWN_TABLE): Table db.t does not exist."
        );
    }

    #[test]
    fn header_only_code_and_plain_http() {
        let e = parse_server_error("Code: 252");
        assert_eq!(e.code(), Some(252));
        assert_eq!(e.kind(), ErrorKind::Overload);
        let e = parse_server_error("503 Service Unavailable");
        assert!(matches!(e, Error::Http(_)));
        assert_eq!(e.kind(), ErrorKind::Retryable);
    }

    #[test]
    fn causes_are_kept_as_sources_and_reported_once() {
        use std::error::Error as _;
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
        let e = Error::Network {
            message: "client error (Connect)".into(),
            source: Some(Box::new(io)),
        };
        assert_eq!(e.to_string(), "network error: client error (Connect)");
        assert_eq!(e.source().unwrap().to_string(), "connection refused");
        assert_eq!(
            e.report(),
            "network error: client error (Connect): connection refused"
        );
        assert_eq!(e.kind(), ErrorKind::UnknownOutcome);
    }

    #[test]
    fn classification() {
        for code in [202, 241, 252] {
            assert_eq!(classify_code(code), ErrorKind::Overload, "{code}");
        }
        for code in [159, 209, 210, 319, 425, 216] {
            assert_eq!(classify_code(code), ErrorKind::Retryable, "{code}");
        }
        for code in [27, 6, 53, 117] {
            assert_eq!(classify_code(code), ErrorKind::Data, "{code}");
        }
        for code in [60, 62, 81, 16, 516, 497, 164] {
            assert_eq!(classify_code(code), ErrorKind::Permanent, "{code}");
            assert!(!classify_code(code).is_retryable());
        }
    }
}
