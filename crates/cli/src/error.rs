//! The CLI's error, its exit codes, and the hint for a server that does not answer.

use std::fmt;

/// Exit codes of `chasync`.
pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// The command could not do its job: cannot connect, server error, bad input, I/O.
    pub const ERROR: u8 = 1;
    /// Usage error: bad flags or values, a missing `--yes`.
    pub const USAGE: u8 = 2;
    /// Rows were not committed: dead-lettered, or a replay left entries that failed again.
    pub const NOT_COMMITTED: u8 = 3;
    /// `doctor` found problems that need attention (warnings or worse).
    pub const FINDINGS: u8 = 4;
    /// `insert` did not read all of its input: an input could not be read to its end (a bad
    /// or truncated file), or `--deadline` passed first.
    pub const INCOMPLETE: u8 = 5;
    /// stdout was closed early (a pipe to `head`, say): output stopped quietly, as for a
    /// process killed by SIGPIPE (128 + 13).
    pub const BROKEN_PIPE: u8 = 141;
}

/// An error that ends the command, with its exit code.
#[derive(Debug)]
pub struct CliError {
    /// The exit code.
    pub code: u8,
    /// What went wrong.
    pub message: String,
    /// What to do about it, if we know.
    pub hint: Option<String>,
    /// The server could not be reached (so a hint about starting one may help).
    pub unreachable: bool,
}

impl CliError {
    /// An error (exit code 1).
    pub fn error(message: impl Into<String>) -> Self {
        Self {
            code: exit::ERROR,
            message: message.into(),
            hint: None,
            unreachable: false,
        }
    }

    /// A usage error (exit code 2).
    pub fn usage(message: impl Into<String>) -> Self {
        Self {
            code: exit::USAGE,
            ..Self::error(message)
        }
    }

    /// An error with another exit code.
    pub fn with_code(code: u8, message: impl Into<String>) -> Self {
        Self {
            code,
            ..Self::error(message)
        }
    }

    /// Adds a hint.
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<chasync_core::Error> for CliError {
    fn from(e: chasync_core::Error) -> Self {
        use chasync_core::Error as E;
        let code = match &e {
            E::DeadLettered { .. } => exit::NOT_COMMITTED,
            _ => exit::ERROR,
        };
        let report = e.report();
        // Something answered when a TLS handshake failed: the message says what to do.
        let unreachable =
            matches!(e, E::Network { .. }) && chasync_core::tls::hint(&report).is_none();
        let mut err = Self::with_code(code, report);
        err.unreachable = unreachable;
        if let E::Server { code: 516, .. } = e {
            err.hint =
                Some("check --user / --password (or CHASYNC_USER / CHASYNC_PASSWORD)".into());
        }
        err
    }
}

impl From<clickhouse::error::Error> for CliError {
    fn from(e: clickhouse::error::Error) -> Self {
        chasync_core::Error::from(e).into()
    }
}

/// What to say when nothing answers at `url`.
pub fn unreachable_hint(url: &str, url_given: bool) -> String {
    let start = "start the project's local ClickHouse with `./run clickhouse-start` \
                 (or `scripts/clickhouse.sh start`)";
    if url_given {
        format!(
            "nothing answers at {}: is ClickHouse running there? If it is the project's local \
             server, {start}",
            chasync_core::redact_url(url)
        )
    } else {
        format!(
            "no --url given and nothing answers at the default {url}: {start}, or point \
             chasync at your server with --url / CHASYNC_URL"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints() {
        let h = unreachable_hint("http://127.0.0.1:8123", false);
        assert!(h.contains("no --url given"), "{h}");
        assert!(h.contains("./run clickhouse-start"), "{h}");
        assert!(h.contains("scripts/clickhouse.sh start"), "{h}");
        let h = unreachable_hint("http://u:pw@h:1", true);
        assert!(!h.contains("pw"), "{h}");
        assert!(h.contains("./run clickhouse-start"), "{h}");
    }

    #[test]
    fn exit_codes_of_core_errors() {
        let e: CliError = chasync_core::Error::DeadLettered {
            batches: 1,
            rows: 2,
            spool: "x".into(),
            last_error: "y".into(),
            code: Some(27),
        }
        .into();
        assert_eq!(e.code, exit::NOT_COMMITTED);
        let e: CliError = chasync_core::Error::network("refused").into();
        assert_eq!(e.code, exit::ERROR);
        assert!(e.unreachable);
    }
}
