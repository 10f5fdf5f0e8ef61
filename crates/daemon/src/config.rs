//! The daemon's configuration: a TOML file, the environment and flags (flags win over the
//! environment, which wins over the file).
//!
//! The engine's options are the engine's own vocabulary ([`chasync_core::Config`]): the
//! `[clickhouse]`, `[batching]`, `[delivery]` and `[spool]` sections, the same names, meanings
//! and defaults as the CLI's flags and Python's keyword arguments. The daemon adds its own:
//! `listen`, `[listen_tls]`, `ack`, `token`, `log_format`, `[limits]`, `[ready]`, and per-table
//! batching in `[tables."db.table"]`. The engine's `[tls]` is the TLS of its connections to
//! ClickHouse; `[listen_tls]` is that of chasyncd's own listener.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use chasync_core::{Config as CoreConfig, ConfigBuilder, Secret};
use serde::Deserialize;

pub use crate::tls::ListenTls;

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
    /// Human-readable lines (also `human`, the command line's name).
    #[default]
    #[serde(alias = "human")]
    #[value(alias = "human")]
    Text,
    /// One JSON object per line.
    Json,
}

/// The `[limits]` section.
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq)]
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
    /// The `Retry-After` of a 503, seconds.
    pub retry_after_s: u64,
    /// Longest wait of a drain at SIGTERM (seconds); what is left stays in the WAL.
    pub shutdown_timeout_s: u64,
    /// Longest wait for a request's head (seconds), from the connection's start or the end of
    /// its previous request: the connection is closed after it (slow or idle clients).
    pub header_read_timeout_s: u64,
    /// Longest wait for a request's whole body (seconds): 408 after it.
    pub body_read_timeout_s: u64,
    /// Most bytes of request bodies held in memory at once, all requests together, from the
    /// first byte read to the body's append to the WAL (decoded copies included): 503 with
    /// `Retry-After` above. A body with a `Content-Length` takes its share before any of it is
    /// read.
    pub max_body_bytes_in_flight: u64,
    /// Most connections open at once. Beyond it the connection idle the longest (waiting for a
    /// request) is closed to make room; when every connection is busy the new one is closed.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 16 << 20,
            max_spool_bytes: 8 << 30,
            max_queue_bytes: 256 << 20,
            segment_bytes: 64 << 20,
            retry_after_s: 1,
            shutdown_timeout_s: 60,
            header_read_timeout_s: 10,
            body_read_timeout_s: 60,
            max_body_bytes_in_flight: 256 << 20,
            max_connections: 1024,
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

/// The TOML file: the daemon's own keys, and the engine's sections, which go to the engine's
/// [`ConfigBuilder`] as they are.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<SocketAddr>,
    listen_tls: Option<ListenTls>,
    ack: Option<AckMode>,
    token: Option<String>,
    log_format: Option<LogFormat>,
    #[serde(default)]
    limits: Option<Limits>,
    #[serde(default)]
    ready: Option<Ready>,
    /// Per-table batching, keyed `"db.table"`: any of `[batching]`'s options.
    #[serde(default)]
    tables: BTreeMap<String, toml::Table>,
    clickhouse: Option<toml::Table>,
    tls: Option<toml::Table>,
    batching: Option<toml::Table>,
    delivery: Option<toml::Table>,
    spool: Option<toml::Table>,
    /// Brokers consumed into tables: `[[sources.kafka]]`, `[[sources.nats]]`.
    #[serde(default)]
    sources: Sources,
}

/// The `[sources]` section: brokers the daemon consumes, exactly once, into tables
/// ([`chasync_source`]).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Sources {
    /// `[[sources.kafka]]`: Kafka consumer groups.
    #[serde(default)]
    pub kafka: Vec<KafkaSource>,
    /// `[[sources.nats]]`: NATS JetStream durable consumers.
    #[serde(default)]
    pub nats: Vec<NatsSource>,
}

/// One `[[sources.kafka]]`: a consumer group's topics into a table.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KafkaSource {
    /// Bootstrap brokers, `host:port[,host:port...]`.
    pub brokers: String,
    /// The consumer group.
    pub group: String,
    /// The topics.
    pub topics: Vec<String>,
    /// The target table, `db.table`.
    pub table: String,
    /// The format of the message values (default `JSONEachRow`).
    #[serde(default)]
    pub format: Option<String>,
    /// `session.timeout.ms` as a duration (`45s`).
    #[serde(default)]
    pub session_timeout: Option<String>,
    /// The seal table (default `chasync_source_seals` in the target's database).
    #[serde(default)]
    pub seal_table: Option<String>,
    /// Other librdkafka properties.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

/// One `[[sources.nats]]`: subject filters of a JetStream stream into a table.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NatsSource {
    /// The server URL (default `nats://127.0.0.1:4222`).
    #[serde(default)]
    pub url: Option<String>,
    /// The stream.
    pub stream: String,
    /// The partitions: one subject filter each.
    pub subjects: Vec<String>,
    /// The durable consumers' name prefix (default `chasync`).
    #[serde(default)]
    pub durable: Option<String>,
    /// The target table, `db.table`.
    pub table: String,
    /// The format of the payloads (default `JSONEachRow`).
    #[serde(default)]
    pub format: Option<String>,
    /// The consumers' `ack_wait` as a duration (`60s`).
    #[serde(default)]
    pub ack_wait: Option<String>,
    /// The seal table (default `chasync_source_seals` in the target's database).
    #[serde(default)]
    pub seal_table: Option<String>,
}

/// Command-line flags (each also readable from a `CHASYNCD_*` environment variable; the
/// engine's options also from `CHASYNC_*` and `CLICKHOUSE_URL` / `_USER` / `_PASSWORD` /
/// `_DATABASE`).
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
    /// Serve HTTPS with this certificate (PEM, with its chain); with `--listen-tls-key`.
    /// Read again on SIGHUP.
    #[arg(long, env = "CHASYNCD_LISTEN_TLS_CERT", value_name = "FILE")]
    pub listen_tls_cert: Option<PathBuf>,
    /// The private key of `--listen-tls-cert` (PEM).
    #[arg(long, env = "CHASYNCD_LISTEN_TLS_KEY", value_name = "FILE")]
    pub listen_tls_key: Option<PathBuf>,
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
    /// The spool directory: write-ahead logs (under `tables/`) and dead letters
    /// [default: chasync-spool].
    #[arg(long, env = "CHASYNCD_SPOOL_DIR")]
    pub spool_dir: Option<PathBuf>,
    /// Any engine option, `name=value` (repeatable): `--set max_rows=100000`.
    #[arg(long = "set", value_name = "NAME=VALUE")]
    pub set: Vec<String>,
    /// Default acknowledgement mode: durable or committed.
    #[arg(long, env = "CHASYNCD_ACK")]
    pub ack: Option<AckMode>,
    /// Bearer token required on the ingest endpoints.
    #[arg(long, env = "CHASYNCD_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Log format.
    #[arg(long, env = "CHASYNCD_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// Check the configuration, print what it resolves to (JSON, passwords as `***`) and exit:
    /// 0 when it is valid, 2 when not.
    #[arg(long)]
    pub check_config: bool,
    /// Acknowledge every report of write-ahead log damage in the spool (`corrupt/*.json`), so
    /// that `/ready` can answer 200 again, print them and exit. Works whether a daemon runs on
    /// the spool or not.
    #[arg(long)]
    pub ack_corruption: bool,
}

/// The resolved configuration the daemon runs with.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// HTTPS on the listener: its certificate and key.
    pub listen_tls: Option<ListenTls>,
    /// The engine's configuration (table unset: every table takes it with
    /// [`config_for`](Self::config_for)).
    pub engine: CoreConfig,
    /// Default acknowledgement mode.
    pub ack: AckMode,
    /// Bearer token, if the ingest endpoints require one.
    pub token: Option<Secret>,
    /// Log format.
    pub log_format: LogFormat,
    /// Limits.
    pub limits: Limits,
    /// Readiness.
    pub ready: Ready,
    /// Brokers consumed into tables (`[sources]`).
    pub sources: Sources,
    /// The engine's options as layered (file, environment, flags), for per-table configs.
    layers: ConfigBuilder,
    /// Per-table batching overrides, keyed `"db.table"`.
    tables: BTreeMap<String, serde_json::Value>,
}

/// A placeholder table name: the daemon's shared engine options have no table of their own.
const NO_TABLE: &str = "-";

impl Settings {
    /// Merges the file named by `flags.config` (if any), the environment and the flags.
    pub fn load(flags: Flags) -> Result<Self, String> {
        let text = match &flags.config {
            Some(path) => read_file(path)?,
            None => String::new(),
        };
        Self::from_parts(&text, flags, |name| std::env::var(name).ok())
    }

    /// [`load`](Self::load) from the file's text, the flags and an environment.
    pub fn from_parts(
        text: &str,
        flags: Flags,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, String> {
        let file: FileConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut sections = toml::Table::new();
        for (name, section) in [
            ("clickhouse", &file.clickhouse),
            ("tls", &file.tls),
            ("batching", &file.batching),
            ("delivery", &file.delivery),
            ("spool", &file.spool),
        ] {
            if let Some(s) = section {
                sections.insert(name.into(), toml::Value::Table(s.clone()));
            }
        }
        let mut layers = ConfigBuilder::new()
            .merge(serde_json::to_value(sections).map_err(|e| e.to_string())?)
            .merge_vars(env);
        if !flags.urls.is_empty() {
            layers = layers.set("url", flags.urls.clone());
        }
        if let Some(user) = &flags.user {
            layers = layers.set("user", user.as_str());
        }
        if let Some(password) = &flags.password {
            layers = layers.set("password", password.as_str());
        }
        if let Some(dir) = &flags.spool_dir {
            layers = layers.spool_dir(dir);
        }
        for kv in &flags.set {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| format!("--set {kv}: expected NAME=VALUE"))?;
            layers = layers.set_text(k.trim(), v.trim());
        }
        let engine = layers
            .clone()
            .set("table", NO_TABLE)
            .build()
            .map_err(|e| e.to_string())?;
        let mut tables = BTreeMap::new();
        for (key, batching) in file.tables {
            if !key.contains('.') {
                return Err(format!(
                    "[tables.\"{key}\"]: name tables as \"database.table\""
                ));
            }
            tables.insert(
                key,
                serde_json::json!({ "batching": serde_json::to_value(batching).map_err(|e| e.to_string())? }),
            );
        }
        let listen_tls = match (
            flags
                .listen_tls_cert
                .or(file.listen_tls.as_ref().map(|t| t.cert_file.clone())),
            flags
                .listen_tls_key
                .or(file.listen_tls.as_ref().map(|t| t.key_file.clone())),
        ) {
            (Some(cert_file), Some(key_file)) => Some(ListenTls {
                cert_file,
                key_file,
            }),
            (None, None) => None,
            _ => {
                return Err(
                    "listen_tls: the certificate and the key go together (--listen-tls-cert \
                     and --listen-tls-key, or cert_file and key_file)"
                        .into(),
                );
            }
        };
        let s = Self {
            listen: flags
                .listen
                .or(file.listen)
                .unwrap_or_else(|| "127.0.0.1:8124".parse().expect("an address")),
            listen_tls,
            engine,
            ack: flags.ack.or(file.ack).unwrap_or_default(),
            token: flags
                .token
                .or(file.token)
                .filter(|t| !t.is_empty())
                .map(Secret::new),
            log_format: flags.log_format.or(file.log_format).unwrap_or_default(),
            limits: file.limits.unwrap_or_default(),
            ready: file.ready.unwrap_or_default(),
            sources: file.sources,
            layers,
            tables,
        };
        s.validate()?;
        Ok(s)
    }

    fn validate(&self) -> Result<(), String> {
        if let Some(cluster) = &self.engine.clickhouse.cluster {
            return Err(format!(
                "the cluster option ({cluster:?}) is not taken by chasyncd: it inserts into the \
                 tables its clients name (a Distributed table forwards to its shards); \
                 chasync insert routes NDJSON to a cluster's shards"
            ));
        }
        let l = &self.limits;
        if l.max_body_bytes == 0
            || l.segment_bytes == 0
            || l.header_read_timeout_s == 0
            || l.body_read_timeout_s == 0
            || l.max_connections == 0
        {
            return Err(
                "limits: max_body_bytes, segment_bytes, header_read_timeout_s, \
                 body_read_timeout_s and max_connections must be positive"
                    .into(),
            );
        }
        if l.max_body_bytes_in_flight < l.max_body_bytes as u64 {
            return Err(format!(
                "limits: max_body_bytes_in_flight ({}) must be at least max_body_bytes ({}), or no body of the largest size could be taken",
                l.max_body_bytes_in_flight, l.max_body_bytes
            ));
        }
        if let Some(files) = &self.listen_tls {
            // Read now, so that `--check-config` and the start fail on a bad file.
            crate::tls::ServerTls::load(files)?;
        }
        for key in self.tables.keys() {
            let (db, t) = key.split_once('.').expect("checked above");
            self.config_for(db, t)
                .map_err(|e| format!("[tables.\"{key}\"]: {e}"))?;
        }
        let tables = self
            .sources
            .kafka
            .iter()
            .map(|k| ("kafka", &k.table, &k.session_timeout))
            .chain(
                self.sources
                    .nats
                    .iter()
                    .map(|n| ("nats", &n.table, &n.ack_wait)),
            );
        for (kind, table, duration) in tables {
            if !table.contains('.') {
                return Err(format!(
                    "[[sources.{kind}]] table {table:?}: name tables as \"database.table\""
                ));
            }
            if let Some(d) = duration {
                chasync_core::parse_duration(d)
                    .map_err(|e| format!("[[sources.{kind}]] ({table}): {e}"))?;
            }
        }
        Ok(())
    }

    /// What the configuration resolves to, for `--check-config` (secrets as `***`).
    pub fn describe(&self) -> serde_json::Value {
        serde_json::json!({
            "listen": self.listen.to_string(),
            "listen_tls": self.listen_tls,
            "ack": format!("{:?}", self.ack).to_lowercase(),
            "token": self.token.as_ref().map(|_| "***"),
            "engine": self.engine,
            "limits": self.limits,
            "tables": self.tables,
            "sources": {
                "kafka": self.sources.kafka.iter().map(|k| serde_json::json!({
                    "brokers": k.brokers, "group": k.group, "topics": k.topics, "table": k.table,
                })).collect::<Vec<_>>(),
                "nats": self.sources.nats.iter().map(|n| serde_json::json!({
                    "url": n.url, "stream": n.stream, "subjects": n.subjects, "table": n.table,
                })).collect::<Vec<_>>(),
            },
        })
    }

    /// The spool directory.
    pub fn spool_dir(&self) -> &Path {
        &self.engine.spool.dir
    }

    /// The engine configuration of table `db.table`: the engine's options, with its
    /// `[tables."db.table"]` entry over `[batching]`.
    pub fn config_for(&self, database: &str, table: &str) -> Result<CoreConfig, String> {
        let mut layers = self.layers.clone();
        if let Some(over) = self.tables.get(&format!("{database}.{table}")) {
            layers = layers.merge(over.clone());
        }
        let mut c = layers
            .set("table", NO_TABLE)
            .build()
            .map_err(|e| e.to_string())?;
        c.clickhouse.database = database.to_string();
        c.table = table.to_string();
        Ok(c)
    }
}

fn read_file(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn flags_override_the_file_and_tables_override_batching() {
        let text = r#"
            listen = "127.0.0.1:9999"
            ack = "committed"
            token = "file-token"
            [clickhouse]
            url = ["http://a:8123", "http://b:8123/"]
            [spool]
            dir = "/tmp/x"
            [limits]
            max_body_bytes = 1000
            [batching]
            max_rows = 500
            linger = "200ms"
            [tables."db.t"]
            max_rows = 7
            "#;
        let flags = Flags {
            listen: Some("127.0.0.1:1".parse().unwrap()),
            token: Some("flag-token".into()),
            set: vec!["max_concurrency=2".into()],
            ..Flags::default()
        };
        let s = Settings::from_parts(text, flags, no_env).unwrap();
        assert_eq!(s.listen.port(), 1);
        assert_eq!(
            s.engine.clickhouse.url,
            vec!["http://a:8123", "http://b:8123"]
        );
        assert_eq!(s.ack, AckMode::Committed);
        assert_eq!(s.token.as_ref().unwrap().expose(), "flag-token");
        assert_eq!(s.limits.max_body_bytes, 1000);
        assert_eq!(s.engine.delivery.max_concurrency, 2);
        assert_eq!(s.spool_dir(), Path::new("/tmp/x"));
        let t = s.config_for("db", "t").unwrap();
        assert_eq!((t.database(), t.table.as_str()), ("db", "t"));
        assert_eq!(t.batching.max_rows, 7);
        assert_eq!(t.batching.linger, Duration::from_millis(200));
        assert_eq!(s.config_for("db", "u").unwrap().batching.max_rows, 500);
    }

    #[test]
    fn typos_and_bad_values_are_refused() {
        let load = |text: &str| Settings::from_parts(text, Flags::default(), no_env);
        assert!(load("listn = \"x\"").is_err());
        assert!(load("[limits]\nmax_body = 1").is_err());
        assert!(
            load("[batching]\nmax_rowz = 1")
                .unwrap_err()
                .contains("max_rowz")
        );
        assert!(
            load("[clickhouse]\nurl = [\"127.0.0.1:8123\"]")
                .unwrap_err()
                .contains("http://")
        );
        assert!(load("[tables.t]\nmax_rows = 1").is_err());
        assert!(
            load("[limits]\nmax_body_bytes = 100\nmax_body_bytes_in_flight = 99")
                .unwrap_err()
                .contains("max_body_bytes_in_flight")
        );
        assert!(load("[limits]\nheader_read_timeout_s = 0").is_err());
        assert!(load("[limits]\nmax_connections = 0").is_err());
        assert!(
            load(
                "[[sources.kafka]]\nbrokers = \"b\"\ngroup = \"g\"\ntopics = [\"t\"]\ntable = \"t\""
            )
            .unwrap_err()
            .contains("database.table")
        );
        assert!(
            load("[[sources.nats]]\nstream = \"S\"\nsubjects = [\"s\"]\ntable = \"d.t\"\nack_wait = \"soon\"")
                .unwrap_err()
                .contains("sources.nats")
        );
        assert!(load("[[sources.kafka]]\nbrokerz = \"b\"").is_err());
        assert!(
            load("[tables.\"d.t\"]\nmax_rows = 0")
                .unwrap_err()
                .contains("d.t")
        );
    }
}
