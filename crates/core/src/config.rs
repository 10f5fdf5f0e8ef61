//! Configuration of an ingestor.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::dedup::StreamId;
use crate::error::{Error, Result};
use crate::retry::RetryPolicy;

/// Compression of the insert body on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    /// No compression.
    None,
    /// ClickHouse's native LZ4 block compression (the default).
    #[default]
    Lz4,
}

/// A password that never shows in `Debug` output, logs or errors.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself; only for handing to the client.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Timeouts of one insert attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timeouts {
    /// Establishing a TCP connection.
    pub connect: Duration,
    /// Handing one chunk of the body to the connection (a stalled server or network).
    pub send: Duration,
    /// Waiting for the server's answer after the body was sent (the insert itself, including
    /// materialized views).
    pub end: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(5),
            send: Duration::from_secs(30),
            end: Duration::from_secs(120),
        }
    }
}

/// Everything an ingestor needs to know.
///
/// ```
/// use chasync_core::Config;
/// use std::time::Duration;
///
/// let mut config = Config::new("http://127.0.0.1:8123", "events");
/// config.database = "analytics".into();
/// config.max_rows = 50_000;
/// config.linger = Duration::from_millis(500);
/// config.max_concurrency = 8;
/// config.validate().unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct Config {
    /// ClickHouse HTTP endpoints; attempts rotate over them (a retry goes to the next one).
    pub urls: Vec<String>,
    /// The database of the table.
    pub database: String,
    /// The target table.
    pub table: String,
    /// The user (`default` when `None`).
    pub user: Option<String>,
    /// The user's password.
    pub password: Option<Secret>,
    /// Wire compression of insert bodies.
    pub compression: Compression,
    /// A batch is sealed when it holds this many rows ...
    pub max_rows: usize,
    /// ... or this many encoded bytes ...
    pub max_bytes: usize,
    /// ... or when this much time has passed since its first row, whichever comes first.
    pub linger: Duration,
    /// Rows that may wait in the queue before `send` waits (backpressure).
    pub queue_capacity: usize,
    /// Inserts in flight at most.
    pub max_concurrency: usize,
    /// Retries of failed inserts.
    pub retry: RetryPolicy,
    /// Timeouts of each attempt.
    pub timeouts: Timeouts,
    /// Where batches that cannot be committed are written.
    pub dead_letter_dir: PathBuf,
    /// The stream whose batch ids this ingestor issues; random by default. Give a stable
    /// name ([`StreamId::named`]) and [`first_sequence`](Self::first_sequence) to reproduce
    /// the ids of an earlier run.
    pub stream_id: StreamId,
    /// The sequence number of the first batch.
    pub first_sequence: u64,
    /// Fill the table's `_insert_id` column with the batch id when it has one.
    pub fill_insert_id: bool,
    /// Extra ClickHouse settings sent with every insert.
    pub settings: Vec<(String, String)>,
}

impl Config {
    /// A configuration with defaults for the given endpoint and table (database `default`).
    pub fn new(url: impl Into<String>, table: impl Into<String>) -> Self {
        Self {
            urls: vec![url.into()],
            database: "default".into(),
            table: table.into(),
            user: None,
            password: None,
            compression: Compression::Lz4,
            // Fewer, larger inserts: each insert is a part (and later merges) for the server;
            // `max_bytes` bounds wide rows first.
            max_rows: 250_000,
            max_bytes: 32 << 20,
            linger: Duration::from_secs(1),
            queue_capacity: 200_000,
            max_concurrency: 4,
            retry: RetryPolicy::default(),
            timeouts: Timeouts::default(),
            dead_letter_dir: PathBuf::from("chasync-dlq"),
            stream_id: StreamId::random(),
            first_sequence: 0,
            fill_insert_id: true,
            settings: Vec::new(),
        }
    }

    /// Checks that the configuration can work.
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: &str| Err(Error::Config(msg.to_string()));
        if self.urls.is_empty() {
            return bad("at least one ClickHouse URL is needed");
        }
        for url in &self.urls {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(Error::Config(format!(
                    "URL {:?} must start with http:// (the ClickHouse HTTP interface)",
                    redact_url(url)
                )));
            }
            if url.starts_with("https://") {
                return bad("https:// endpoints are not supported yet: build with a TLS connector");
            }
        }
        if self.table.is_empty() {
            return bad("the table name is empty");
        }
        if self.max_rows == 0 || self.max_bytes == 0 {
            return bad("max_rows and max_bytes must be at least 1");
        }
        if self.max_bytes > 1 << 30 {
            return bad("max_bytes must be at most 1 GiB (ClickHouse prefers far smaller inserts)");
        }
        if self.queue_capacity == 0 {
            return bad("queue_capacity must be at least 1");
        }
        if self.max_concurrency == 0 {
            return bad("max_concurrency must be at least 1");
        }
        if self.retry.max_attempts == 0 {
            return bad("retry.max_attempts must be at least 1");
        }
        Ok(())
    }

    /// `db.table`, quoted for SQL.
    pub fn qualified_table(&self) -> String {
        format!(
            "{}.{}",
            quote_ident(&self.database),
            quote_ident(&self.table)
        )
    }
}

/// Quotes a ClickHouse identifier with backticks (see [`crate::schema::quote_ident`]).
pub fn quote_ident(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 2);
    crate::schema::quote_ident(name, &mut out);
    out
}

/// A URL with any `user:password@` part replaced, for messages.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_and_helpers() {
        let c = Config::new("http://127.0.0.1:8123", "t");
        c.validate().unwrap();
        let mut bad = c.clone();
        bad.max_concurrency = 0;
        assert!(bad.validate().is_err());
        let mut bad = c.clone();
        bad.urls = vec!["127.0.0.1:8123".into()];
        assert!(bad.validate().unwrap_err().to_string().contains("http://"));
        assert_eq!(quote_ident("a`b"), "`a\\`b`");
        assert_eq!(redact_url("http://u:pw@h:1/"), "http://***@h:1/");
        let mut c = c;
        c.password = Some(Secret::new("hunter2"));
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
