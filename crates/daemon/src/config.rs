//! The daemon's configuration: a TOML file, environment variables and flags (flags win over
//! the environment, which wins over the file).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chasync_core::{Config as CoreConfig, RetryPolicy, Secret, StreamId};
use serde::Deserialize;

/// When a request is answered with 200.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum AckMode {
    /// After the rows are fsynced to the write-ahead log (the default).
    #[default]
    Durable,
    /// After ClickHouse committed them.
    Committed,
}

impl std::str::FromStr for AckMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "durable" => Ok(Self::Durable),
            "committed" => Ok(Self::Committed),
            other => Err(format!("unknown ack mode {other:?} (durable or committed)")),
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Batching of one table (all fields optional: unset ones come from `[batching]`).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TableBatching {
    /// Seal a batch at this many rows.
    pub max_rows: Option<usize>,
    /// Seal a batch at this many bytes of JSON.
    pub max_bytes: Option<usize>,
    /// Seal a batch this long (milliseconds) after its first row.
    pub linger_ms: Option<u64>,
}

/// Resolved batching limits of a table.
#[derive(Debug, Clone, PartialEq)]
pub struct Batching {
    /// Seal a batch at this many rows.
    pub max_rows: usize,
    /// Seal a batch at this many bytes of JSON.
    pub max_bytes: usize,
    /// Seal a batch this long after its first row.
    pub linger: Duration,
}

/// The `[limits]` section.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest request body (413 above).
    pub max_body_bytes: usize,
    /// Most bytes of write-ahead log on disk, all tables together (503 above).
    pub max_spool_bytes: u64,
    /// Most bytes of accepted rows held in memory before the batchers take them (503 above).
    pub max_queue_bytes: u64,
    /// The write-ahead log of a table rolls to a new segment file at this size.
    pub segment_bytes: u64,
    /// Inserts in flight at most (the engine's `max_concurrency`).
    pub max_concurrency: usize,
    /// The `Retry-After` of a 503, seconds.
    pub retry_after_s: u64,
    /// Longest wait of a drain at SIGTERM (seconds); what is left stays in the WAL.
    pub shutdown_timeout_s: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 16 << 20,
            max_spool_bytes: 8 << 30,
            max_queue_bytes: 256 << 20,
            segment_bytes: 64 << 20,
            max_concurrency: 4,
            retry_after_s: 1,
            shutdown_timeout_s: 60,
        }
    }
}

/// The `[retry]` section: how long a retryable insert is retried before it is
/// dead-lettered. The default retries for about a day, so that an outage of ClickHouse
/// never turns acknowledged rows into dead letters.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Retry {
    /// Attempts in all.
    pub max_attempts: u32,
    /// First backoff, milliseconds.
    pub initial_backoff_ms: u64,
    /// Longest backoff, milliseconds.
    pub max_backoff_ms: u64,
}

impl Default for Retry {
    fn default() -> Self {
        Self {
            max_attempts: 20_000,
            initial_backoff_ms: 100,
            max_backoff_ms: 5_000,
        }
    }
}

/// The `[ready]` section: what `/ready` checks.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Ready {
    /// A replica whose `absolute_delay` exceeds this (seconds) makes the daemon not ready.
    pub max_replica_delay_s: u64,
    /// Timeout of the checks, milliseconds.
    pub timeout_ms: u64,
}

impl Default for Ready {
    fn default() -> Self {
        Self {
            max_replica_delay_s: 300,
            timeout_ms: 2_000,
        }
    }
}

/// The TOML file, as written.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Address to listen on.
    pub listen: Option<SocketAddr>,
    /// ClickHouse HTTP endpoints (several: failover).
    pub urls: Option<Vec<String>>,
    /// ClickHouse user.
    pub user: Option<String>,
    /// ClickHouse password.
    pub password: Option<String>,
    /// Spool directory (write-ahead logs, stream ids, dead letters).
    pub spool_dir: Option<PathBuf>,
    /// Default acknowledgement mode.
    pub ack: Option<AckMode>,
    /// Bearer token for the ingest endpoints.
    pub token: Option<String>,
    /// Log format.
    pub log_format: Option<LogFormat>,
    /// Limits.
    #[serde(default)]
    pub limits: Option<Limits>,
    /// Default batching of every table.
    #[serde(default)]
    pub batching: Option<TableBatching>,
    /// Retries.
    #[serde(default)]
    pub retry: Option<Retry>,
    /// Readiness.
    #[serde(default)]
    pub ready: Option<Ready>,
    /// Per-table batching, keyed `"db.table"`.
    #[serde(default)]
    pub tables: BTreeMap<String, TableBatching>,
}

/// Command-line flags (each also readable from a `CHASYNCD_*` environment variable).
#[derive(Debug, Clone, Default, clap::Parser)]
#[command(
    name = "chasyncd",
    version,
    about = "ClickHouse ingestion daemon on the chasync engine"
)]
pub struct Flags {
    /// TOML configuration file.
    #[arg(long, env = "CHASYNCD_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8124].
    #[arg(long, env = "CHASYNCD_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// ClickHouse HTTP endpoint; repeat (or comma-separate in the variable) for failover
    /// [default: http://127.0.0.1:8123].
    #[arg(long = "url", env = "CHASYNCD_URL", value_delimiter = ',')]
    pub urls: Vec<String>,
    /// ClickHouse user.
    #[arg(long, env = "CHASYNCD_USER")]
    pub user: Option<String>,
    /// ClickHouse password.
    #[arg(long, env = "CHASYNCD_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    /// Spool directory [default: ./chasyncd-spool].
    #[arg(long, env = "CHASYNCD_SPOOL_DIR")]
    pub spool_dir: Option<PathBuf>,
    /// Default acknowledgement mode: durable or committed.
    #[arg(long, env = "CHASYNCD_ACK")]
    pub ack: Option<AckMode>,
    /// Bearer token required on the ingest endpoints.
    #[arg(long, env = "CHASYNCD_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Log format.
    #[arg(long, env = "CHASYNCD_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
}

/// The resolved configuration the daemon runs with.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// ClickHouse HTTP endpoints.
    pub urls: Vec<String>,
    /// ClickHouse user.
    pub user: Option<String>,
    /// ClickHouse password.
    pub password: Option<Secret>,
    /// Spool directory.
    pub spool_dir: PathBuf,
    /// Default acknowledgement mode.
    pub ack: AckMode,
    /// Bearer token, if the ingest endpoints require one.
    pub token: Option<Secret>,
    /// Log format.
    pub log_format: LogFormat,
    /// Limits.
    pub limits: Limits,
    /// Default batching.
    pub batching: Batching,
    /// Retries.
    pub retry: Retry,
    /// Readiness.
    pub ready: Ready,
    /// Per-table overrides, keyed `"db.table"`.
    pub tables: BTreeMap<String, TableBatching>,
}

impl Settings {
    /// Merges the file named by `flags.config` (if any) with the flags.
    pub fn load(flags: Flags) -> Result<Self, String> {
        let file = match &flags.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        Self::merge(file, flags)
    }

    /// Flags (and the environment, through them) override the file.
    pub fn merge(file: FileConfig, flags: Flags) -> Result<Self, String> {
        let defaults = TableBatching::default();
        let b = file.batching.unwrap_or(defaults);
        let batching = Batching {
            max_rows: b.max_rows.unwrap_or(100_000),
            max_bytes: b.max_bytes.unwrap_or(32 << 20),
            linger: Duration::from_millis(b.linger_ms.unwrap_or(1_000)),
        };
        let urls = if !flags.urls.is_empty() {
            flags.urls
        } else {
            file.urls
                .unwrap_or_else(|| vec!["http://127.0.0.1:8123".into()])
        };
        let urls: Vec<String> = urls
            .into_iter()
            .map(|u| u.trim().trim_end_matches('/').to_string())
            .filter(|u| !u.is_empty())
            .collect();
        let s = Self {
            listen: flags
                .listen
                .or(file.listen)
                .unwrap_or_else(|| "127.0.0.1:8124".parse().unwrap()),
            urls,
            user: flags.user.or(file.user),
            password: flags.password.or(file.password).map(Secret::new),
            spool_dir: flags
                .spool_dir
                .or(file.spool_dir)
                .unwrap_or_else(|| PathBuf::from("chasyncd-spool")),
            ack: flags.ack.or(file.ack).unwrap_or_default(),
            token: flags
                .token
                .or(file.token)
                .filter(|t| !t.is_empty())
                .map(Secret::new),
            log_format: flags.log_format.or(file.log_format).unwrap_or_default(),
            limits: file.limits.unwrap_or_default(),
            batching,
            retry: file.retry.unwrap_or_default(),
            ready: file.ready.unwrap_or_default(),
            tables: file.tables,
        };
        s.validate()?;
        Ok(s)
    }

    fn validate(&self) -> Result<(), String> {
        for key in self.tables.keys() {
            if !key.contains('.') {
                return Err(format!(
                    "[tables.\"{key}\"]: name tables as \"database.table\""
                ));
            }
        }
        if self.limits.max_body_bytes == 0 || self.limits.segment_bytes == 0 {
            return Err("limits: max_body_bytes and segment_bytes must be positive".into());
        }
        let core = self.core_config();
        core.validate().map_err(|e| e.to_string())?;
        for (key, t) in &self.tables {
            let b = self.batching_for_key(key, t);
            if b.max_rows == 0 || b.max_bytes == 0 {
                return Err(format!(
                    "[tables.\"{key}\"]: max_rows and max_bytes must be positive"
                ));
            }
        }
        Ok(())
    }

    fn batching_for_key(&self, _key: &str, t: &TableBatching) -> Batching {
        Batching {
            max_rows: t.max_rows.unwrap_or(self.batching.max_rows),
            max_bytes: t.max_bytes.unwrap_or(self.batching.max_bytes),
            linger: t
                .linger_ms
                .map(Duration::from_millis)
                .unwrap_or(self.batching.linger),
        }
    }

    /// The batching of table `db.table`: its `[tables."db.table"]` entry over `[batching]`.
    pub fn batching_for(&self, database: &str, table: &str) -> Batching {
        let key = format!("{database}.{table}");
        match self.tables.get(&key) {
            Some(t) => self.batching_for_key(&key, t),
            None => self.batching.clone(),
        }
    }

    /// The engine configuration of the shared dispatcher (endpoints, credentials,
    /// concurrency, retries, dead-letter spool). Batches carry their own table.
    pub fn core_config(&self) -> CoreConfig {
        let mut c = CoreConfig::new(self.urls.first().cloned().unwrap_or_default(), "chasyncd");
        c.urls = self.urls.clone();
        c.user = self.user.clone();
        c.password = self.password.clone();
        c.max_concurrency = self.limits.max_concurrency;
        c.max_rows = self.batching.max_rows;
        c.max_bytes = self.batching.max_bytes;
        c.dead_letter_dir = self.spool_dir.join("dead-letter");
        c.stream_id = StreamId::random();
        c.retry = RetryPolicy {
            max_attempts: self.retry.max_attempts,
            initial_backoff: Duration::from_millis(self.retry.initial_backoff_ms),
            max_backoff: Duration::from_millis(self.retry.max_backoff_ms),
            multiplier: 2.0,
        };
        c
    }
}

fn read_file(path: &Path) -> Result<FileConfig, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_file_and_tables_override_batching() {
        let file: FileConfig = toml::from_str(
            r#"
            listen = "127.0.0.1:9999"
            urls = ["http://a:8123", "http://b:8123/"]
            spool_dir = "/tmp/x"
            ack = "committed"
            token = "file-token"
            [limits]
            max_body_bytes = 1000
            [batching]
            max_rows = 500
            linger_ms = 200
            [tables."db.t"]
            max_rows = 7
            "#,
        )
        .unwrap();
        let flags = Flags {
            listen: Some("127.0.0.1:1".parse().unwrap()),
            token: Some("flag-token".into()),
            ..Flags::default()
        };
        let s = Settings::merge(file, flags).unwrap();
        assert_eq!(s.listen.port(), 1);
        assert_eq!(s.urls, vec!["http://a:8123", "http://b:8123"]);
        assert_eq!(s.ack, AckMode::Committed);
        assert_eq!(s.token.as_ref().unwrap().expose(), "flag-token");
        assert_eq!(s.limits.max_body_bytes, 1000);
        assert_eq!(s.limits.max_concurrency, 4);
        assert_eq!(s.batching_for("db", "t").max_rows, 7);
        assert_eq!(s.batching_for("db", "t").linger, Duration::from_millis(200));
        assert_eq!(s.batching_for("db", "u").max_rows, 500);
        assert_eq!(s.core_config().urls.len(), 2);
    }

    #[test]
    fn typos_and_bad_values_are_refused() {
        assert!(toml::from_str::<FileConfig>("listn = \"x\"").is_err());
        assert!(toml::from_str::<FileConfig>("[limits]\nmax_body = 1").is_err());
        let file: FileConfig = toml::from_str("urls = [\"127.0.0.1:8123\"]").unwrap();
        assert!(
            Settings::merge(file, Flags::default())
                .unwrap_err()
                .contains("http://")
        );
        let file: FileConfig = toml::from_str("[tables.t]\nmax_rows = 1").unwrap();
        assert!(Settings::merge(file, Flags::default()).is_err());
    }
}
