//! The command line: options and subcommands (clap derive).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::settings::{parse_bytes, parse_duration};

/// chasync: stream data into ClickHouse, and look after what the engine leaves behind.
///
/// Options are read from flags, then the environment (`CHASYNC_<OPTION>` for every option,
/// e.g. `CHASYNC_URL`, `CHASYNC_DATABASE`, `CHASYNC_SPOOL_DIR`; and `CLICKHOUSE_URL`,
/// `CLICKHOUSE_USER`, `CLICKHOUSE_PASSWORD`, `CLICKHOUSE_DATABASE`, which the `CHASYNC_` ones
/// override), then the config file (`--config`, `CHASYNC_CONFIG`, or
/// `$XDG_CONFIG_HOME/chasync/config.toml`, `~/.config/chasync/config.toml`), then defaults.
/// A URL may carry the credentials: `http://user:password@host:8123`.
///
/// Exit codes: 0 success; 1 error (cannot connect, server error, bad input, I/O); 2 usage
/// error; 3 rows not committed (dead-lettered, or a replay left entries that failed again);
/// 4 `doctor` found problems that need attention; 5 `insert` did not read all of its input
/// (an input could not be read to its end, or the deadline passed); 141 stdout was closed
/// early (a pipe to `head`, say): the output stops quietly.
#[derive(Debug, Parser)]
#[command(name = "chasync", version, about, long_about)]
pub struct Cli {
    /// Options shared by every command.
    #[command(flatten)]
    pub global: GlobalOpts,
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Debug, Args)]
#[command(next_help_heading = "Global options")]
pub struct GlobalOpts {
    /// ClickHouse HTTP URL, `http://[user[:password]@]host:port`; several separated by commas
    /// [default: http://127.0.0.1:8123].
    #[arg(long, global = true)]
    pub url: Option<String>,
    /// ClickHouse user [default: default].
    #[arg(long, global = true)]
    pub user: Option<String>,
    /// ClickHouse password (never printed).
    #[arg(long, global = true)]
    pub password: Option<String>,
    /// Database of tables named without one [default: default].
    #[arg(long, global = true)]
    pub database: Option<String>,
    /// A TOML file with any of the options (flags and environment override it) [default:
    /// CHASYNC_CONFIG, or $XDG_CONFIG_HOME/chasync/config.toml, or
    /// ~/.config/chasync/config.toml, if there is one].
    #[arg(long, value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,
    /// No progress bars or notes on stderr; results still go to stdout.
    #[arg(long, short, global = true)]
    pub quiet: bool,
    /// Machine-readable JSON on stdout (errors as JSON on stderr).
    #[arg(long, global = true)]
    pub json: bool,
    /// More log output on stderr: -v info (retries, endpoints), -vv debug, -vvv trace.
    #[arg(short, long, action = clap::ArgAction::Count, global = true, conflicts_with = "log_level")]
    pub verbose: u8,
    /// Log level or filter (`warn`, `debug`, `warn,chasync_core=debug`) [default: RUST_LOG, or
    /// warn]. A RUST_LOG that does not parse is an error.
    #[arg(long, value_name = "FILTER", global = true)]
    pub log_level: Option<String>,
    /// Log lines as text for people or one JSON object each.
    #[arg(
        long,
        value_enum,
        value_name = "FORMAT",
        default_value = "human",
        global = true
    )]
    pub log_format: LogFormat,
    /// TLS of `https://` URLs.
    #[command(flatten)]
    pub tls: TlsOpts,
}

/// TLS of `https://` URLs (the `[tls]` options of the config file).
#[derive(Debug, Args, Default, Clone)]
#[command(next_help_heading = "TLS of https:// URLs")]
pub struct TlsOpts {
    /// PEM file of the CA certificates to trust instead of the system's store (which
    /// `SSL_CERT_FILE` replaces).
    #[arg(long, value_name = "FILE", global = true)]
    pub tls_ca_file: Option<PathBuf>,
    /// PEM file of a client certificate, for servers that require one (mutual TLS).
    #[arg(long, value_name = "FILE", global = true, requires = "tls_key_file")]
    pub tls_cert_file: Option<PathBuf>,
    /// PEM file of the client certificate's private key.
    #[arg(long, value_name = "FILE", global = true, requires = "tls_cert_file")]
    pub tls_key_file: Option<PathBuf>,
    /// INSECURE: accept any server certificate without verifying it (tests only; warns).
    #[arg(long, global = true)]
    pub tls_insecure_skip_verify: bool,
}

/// The format of log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Text lines.
    #[value(alias = "text")]
    Human,
    /// One JSON object per line.
    Json,
}

/// Wire compression of insert bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CompressionArg {
    /// ClickHouse's LZ4 block compression.
    Lz4,
    /// Uncompressed.
    None,
}

/// The engine's options, for commands that ingest: the same names, meanings and defaults as
/// the config file's, the daemon's and Python's (`docs/configuration.md`).
#[derive(Debug, Args, Default, Clone)]
#[command(next_help_heading = "Engine options")]
pub struct IngestOpts {
    /// Seal a batch at this many rows [default: 250000].
    #[arg(long, value_name = "N", alias = "batch-rows")]
    pub max_rows: Option<usize>,
    /// ... or at this many encoded bytes (`1000000`, `32MiB`, `10MB`) [default: 32MiB].
    #[arg(long, value_name = "SIZE", value_parser = parse_bytes, alias = "batch-bytes")]
    pub max_bytes: Option<u64>,
    /// ... or this long after its first row (`500ms`, `2s`, `1m`) [default: 1s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub linger: Option<Duration>,
    /// Inserts in flight at most [default: 4].
    #[arg(long, value_name = "N")]
    pub max_concurrency: Option<usize>,
    /// Attempts of an insert in all, the first included; only retryable errors are retried
    /// [default: 20000].
    #[arg(long, value_name = "N", conflicts_with = "retries")]
    pub max_attempts: Option<u32>,
    /// Retries of a failed insert after the first attempt (`max_attempts` - 1; 0 = never
    /// retry).
    #[arg(long, value_name = "N")]
    pub retries: Option<u32>,
    /// The dead-letter spool directory [default: chasync-spool].
    #[arg(long, value_name = "DIR", alias = "dlq-dir")]
    pub spool_dir: Option<PathBuf>,
    /// Wire compression [default: lz4].
    #[arg(long, value_enum)]
    pub compression: Option<CompressionArg>,
    /// A ClickHouse setting sent with every insert (repeatable): `--setting
    /// input_format_skip_unknown_fields=1`.
    #[arg(long = "setting", value_name = "NAME=VALUE")]
    pub settings: Vec<String>,
    /// Insert straight into the shards of this cluster (from `system.clusters`), each row
    /// routed on the client by the sharding key of a Distributed target table (NDJSON, Parquet
    /// and Arrow input).
    #[arg(long, value_name = "NAME")]
    pub cluster: Option<String>,
    /// The HTTP URL of a cluster replica that `system.clusters` lists at HOST:PORT (its
    /// native port), repeatable [default: the replica's host with the port of --url].
    #[arg(long = "cluster-url", value_name = "HOST:PORT=URL")]
    pub cluster_urls: Vec<String>,
    /// Any engine option by its name (repeatable): `--set insert_timeout=5m`.
    #[arg(long = "set", value_name = "OPTION=VALUE")]
    pub set: Vec<String>,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Diagnose the server (and a table) for ingestion: insert errors, connections, parts,
    /// replicas, clusters, file-descriptor limits, with advice.
    Doctor(DoctorArgs),
    /// The dead-letter spool: list, show, replay, purge.
    Dlq(DlqArgs),
    /// Schema helpers.
    #[command(subcommand)]
    Schema(SchemaCommand),
    /// Load generator: synthetic rows through the engine, with throughput and latency figures.
    Bench(BenchArgs),
    /// Insert NDJSON, CSV, TSV, Parquet or Arrow files (or stdin) into a table.
    Insert(InsertArgs),
    /// Print the engine configuration the options resolve to (JSON; the password as `***`).
    Config(ConfigArgs),
    /// Consume a Kafka consumer group or NATS JetStream consumers into a table, exactly once
    /// (sealed ranges, deterministic batch ids, commits after ClickHouse has the rows); runs
    /// until SIGINT or SIGTERM.
    #[command(subcommand)]
    Consume(ConsumeCommand),
}

/// `chasync consume`.
#[derive(Debug, Subcommand)]
pub enum ConsumeCommand {
    /// A Kafka consumer group: members started with the same `--group` share the partitions.
    Kafka(KafkaArgs),
    /// NATS JetStream: one durable pull consumer per `--subject` (a partition).
    Nats(NatsArgs),
}

/// `chasync consume kafka`.
#[derive(Debug, Args)]
pub struct KafkaArgs {
    /// Bootstrap brokers, `host:port[,host:port...]`.
    #[arg(long, value_name = "HOSTS")]
    pub brokers: String,
    /// The consumer group.
    #[arg(long)]
    pub group: String,
    /// A topic to consume (repeatable).
    #[arg(long = "topic", required = true, value_name = "TOPIC")]
    pub topics: Vec<String>,
    /// The target table (`db.table`, or `table` in `--database`).
    #[arg(long)]
    pub table: String,
    /// The ClickHouse format of message values (one or more rows each, without a header).
    #[arg(long, default_value = "JSONEachRow")]
    pub format: String,
    /// `session.timeout.ms` of the group membership [default: 45s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub session_timeout: Option<Duration>,
    /// The table of seals (`db.table`, or a table in `--database`).
    #[arg(long, default_value = "chasync_source_seals", value_name = "TABLE")]
    pub seal_table: String,
    /// Another librdkafka property (repeatable): `--property fetch.max.bytes=52428800` (this
    /// build has no TLS or SASL to the broker).
    #[arg(long = "property", value_name = "NAME=VALUE")]
    pub properties: Vec<String>,
    /// Engine options.
    #[command(flatten)]
    pub ingest: IngestOpts,
}

/// `chasync consume nats`.
#[derive(Debug, Args)]
pub struct NatsArgs {
    /// The NATS server URL(s).
    #[arg(long, default_value = "nats://127.0.0.1:4222", value_name = "URL")]
    pub server: String,
    /// The JetStream stream.
    #[arg(long)]
    pub stream: String,
    /// A partition: a subject filter of the stream, consumed by a durable consumer of its
    /// own (repeatable).
    #[arg(long = "subject", required = true, value_name = "SUBJECT")]
    pub subjects: Vec<String>,
    /// The durable consumers' name prefix.
    #[arg(long, default_value = "chasync")]
    pub durable: String,
    /// The target table (`db.table`, or `table` in `--database`).
    #[arg(long)]
    pub table: String,
    /// The ClickHouse format of message payloads (one or more rows each, without a header).
    #[arg(long, default_value = "JSONEachRow")]
    pub format: String,
    /// The consumers' `ack_wait` [default: 60s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub ack_wait: Option<Duration>,
    /// The table of seals (`db.table`, or a table in `--database`).
    #[arg(long, default_value = "chasync_source_seals", value_name = "TABLE")]
    pub seal_table: String,
    /// Engine options.
    #[command(flatten)]
    pub ingest: IngestOpts,
}

/// `chasync config`.
#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// The target table (`db.table`, or `table` in `--database`).
    #[arg(long, default_value = "-")]
    pub table: String,
    /// Engine options.
    #[command(flatten)]
    pub ingest: IngestOpts,
}

/// `chasync doctor`.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Also check this table (`db.table`, or `table` in `--database`).
    #[arg(long)]
    pub table: Option<String>,
    /// Connections the loader will open, checked against `ulimit -n` and server limits
    /// [default: `max_concurrency` of the config file, or 4].
    #[arg(long, value_name = "N")]
    pub planned_connections: Option<u64>,
    /// How many recent insert exceptions to show.
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub exceptions: u64,
    /// How far back to look for insert exceptions.
    #[arg(long, default_value = "24h", value_parser = parse_duration, value_name = "DURATION")]
    pub since: Duration,
}

/// `chasync dlq`.
#[derive(Debug, Args)]
pub struct DlqArgs {
    /// The dead-letter spool directory [default: chasync-spool].
    #[arg(long, value_name = "DIR", global = true, alias = "dlq-dir")]
    pub spool_dir: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: DlqCommand,
}

/// `chasync dlq ...`.
#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// List the entries: table, rows, bytes, error kind and code, attempts, time.
    List,
    /// Show one entry (an id or a unique prefix of one).
    Show {
        /// The entry id.
        id: String,
    },
    /// Send every batch entry again exactly as it was sent (statement, settings, its own
    /// batch id as dedup token: idempotent); committed entries are removed. Authenticates as
    /// the configured user (--user / --password); entries recorded for another user are
    /// kept, unless --as-user names that user. An entry of one shard of a sharded load
    /// goes to that shard's replicas (found in `system.clusters` of --url).
    Replay {
        /// Also replay the entries recorded for this user, as the configured user
        /// (repeatable).
        #[arg(long, value_name = "USER")]
        as_user: Vec<String>,
        /// Retries of a failed insert after the first attempt (`max_attempts` - 1).
        #[arg(long, value_name = "N")]
        retries: Option<u32>,
        /// Wire compression [default: lz4].
        #[arg(long, value_enum)]
        compression: Option<CompressionArg>,
        /// For the entries of a sharded load, which go to their shard's replicas: the HTTP
        /// URL of a replica that `system.clusters` lists at HOST:PORT (its native port),
        /// repeatable [default: the replica's host with the port of --url].
        #[arg(long = "cluster-url", value_name = "HOST:PORT=URL")]
        cluster_urls: Vec<String>,
    },
    /// Delete entries: all, or one with `--id`. Requires `--yes`.
    Purge {
        /// Only this entry (an id or a unique prefix of one).
        #[arg(long)]
        id: Option<String>,
        /// Really delete.
        #[arg(long)]
        yes: bool,
    },
}

/// `chasync schema ...`.
#[derive(Debug, Subcommand)]
pub enum SchemaCommand {
    /// Print (or create) a Buffer table in front of a table, with the same columns.
    Buffer(BufferArgs),
}

/// `chasync schema buffer`.
#[derive(Debug, Args)]
pub struct BufferArgs {
    /// The target table (`db.table`, or `table` in `--database`).
    #[arg(long)]
    pub table: String,
    /// Create the Buffer table instead of only printing its DDL.
    #[arg(long)]
    pub apply: bool,
    /// Name of the Buffer table (`name` or `db.name`) [default: TABLE_buffer].
    #[arg(long, value_name = "NAME")]
    pub buffer_table: Option<String>,
    /// Buffer's num_layers (independent buffers).
    #[arg(long, default_value_t = 16)]
    pub num_layers: u64,
    /// Flush when all min_* are reached; seconds.
    #[arg(long, default_value_t = 10)]
    pub min_time: u64,
    /// Flush when any max_* is reached; seconds.
    #[arg(long, default_value_t = 100)]
    pub max_time: u64,
    /// Buffer's min_rows.
    #[arg(long, default_value_t = 10_000)]
    pub min_rows: u64,
    /// Buffer's max_rows.
    #[arg(long, default_value_t = 1_000_000)]
    pub max_rows: u64,
    /// Buffer's min_bytes.
    #[arg(long, default_value_t = 10_000_000)]
    pub min_bytes: u64,
    /// Buffer's max_bytes.
    #[arg(long, default_value_t = 100_000_000)]
    pub max_bytes: u64,
}

/// `chasync bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// The table (`db.table`, or `table` in `--database`); columns `id UInt64, ts DateTime,
    /// name String, value Float64` (and optionally `_insert_id UUID`).
    #[arg(long)]
    pub table: String,
    /// Create the table if it does not exist (MergeTree with `_insert_id UUID` and
    /// `non_replicated_deduplication_window`).
    #[arg(long)]
    pub create: bool,
    /// Rows to send [default: 1000000 unless --duration].
    #[arg(long, value_name = "N", conflicts_with = "duration")]
    pub rows: Option<u64>,
    /// Send for this long instead of a row count (`10s`, `1m`).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Target rows per second (default: as fast as the engine takes them).
    #[arg(long, value_name = "R")]
    pub rate: Option<f64>,
    /// First `id` of the synthetic rows.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub start_id: u64,
    /// Engine options.
    #[command(flatten)]
    pub ingest: IngestOpts,
}

/// Input formats of `chasync insert`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputFormat {
    /// One JSON object per line.
    Ndjson,
    /// Comma-separated values.
    Csv,
    /// Tab-separated values (ClickHouse TabSeparated escaping).
    Tsv,
    /// Apache Parquet files.
    Parquet,
    /// Arrow IPC files (the random-access file format, `.arrow`, `.feather` v2).
    ArrowFile,
    /// Arrow IPC streams (`.arrows`).
    ArrowStream,
}

impl InputFormat {
    /// Whether the input is columnar (read as Arrow record batches).
    pub fn columnar(self) -> bool {
        matches!(self, Self::Parquet | Self::ArrowFile | Self::ArrowStream)
    }
}

/// An input format as named on the command line: the format, and whether the name says the
/// input has a header line (`CSVWithNames`: yes, ClickHouse's `CSV`: no; chasync's `csv`:
/// not said, a header unless `--no-header`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FormatName {
    /// The format.
    pub format: InputFormat,
    /// The header line the name implies, if it does.
    pub header: Option<bool>,
}

/// chasync's own format names, written exactly so (lower case): CSV and TSV with a header
/// line unless `--no-header`. Every other name is ClickHouse's.
const CHASYNC_FORMATS: [(&str, InputFormat); 6] = [
    ("ndjson", InputFormat::Ndjson),
    ("csv", InputFormat::Csv),
    ("tsv", InputFormat::Tsv),
    ("parquet", InputFormat::Parquet),
    ("arrow", InputFormat::ArrowFile),
    ("arrow-stream", InputFormat::ArrowStream),
];

/// The ClickHouse formats `chasync insert` reads, by ClickHouse's name for each, and whether
/// it has a header line.
const CLICKHOUSE_FORMATS: [(&str, InputFormat, Option<bool>); 8] = [
    ("JSONEachRow", InputFormat::Ndjson, None),
    ("CSV", InputFormat::Csv, Some(false)),
    ("CSVWithNames", InputFormat::Csv, Some(true)),
    ("TabSeparated", InputFormat::Tsv, Some(false)),
    ("TabSeparatedWithNames", InputFormat::Tsv, Some(true)),
    ("Parquet", InputFormat::Parquet, None),
    ("Arrow", InputFormat::ArrowFile, None),
    ("ArrowStream", InputFormat::ArrowStream, None),
];

/// Parses `--format`: chasync's own names (`ndjson`, `csv`, `tsv`, `parquet`, `arrow`,
/// `arrow-stream`, written so), or any name ClickHouse gives one of the formats `insert`
/// reads, aliases included and in any case as in ClickHouse (`JSONEachRow`, `JSONLines`,
/// `CSVWithNames`, `TSV`, `TSVWithNames`, `Parquet`, ...), looked up in the engine's catalog
/// of ClickHouse's formats, with ClickHouse's meaning (`CSV` has no header line).
pub fn parse_format(name: &str) -> Result<FormatName, String> {
    if let Some((_, format)) = CHASYNC_FORMATS.iter().find(|(n, _)| *n == name) {
        return Ok(FormatName {
            format: *format,
            header: None,
        });
    }
    let readable: Vec<&str> = CLICKHOUSE_FORMATS.iter().map(|(n, _, _)| *n).collect();
    let Some(info) = chasync_core::format_info(name) else {
        return Err(format!(
            "unknown format {name:?}: give one of ClickHouse's ({}, or an alias such as TSV), \
             or ndjson, csv, tsv",
            readable.join(", ")
        ));
    };
    match CLICKHOUSE_FORMATS.iter().find(|(n, _, _)| *n == info.name) {
        Some((_, format, header)) => Ok(FormatName {
            format: *format,
            header: *header,
        }),
        None => Err(format!(
            "chasync insert does not read ClickHouse's {} format; it reads {}",
            info.name,
            readable.join(", ")
        )),
    }
}

/// `chasync insert`.
#[derive(Debug, Args)]
pub struct InsertArgs {
    /// The target table (`db.table`, or `table` in `--database`).
    #[arg(long)]
    pub table: String,
    /// Input files (`-` = stdin); `.gz` and `.zst` text files are decompressed.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Input format: ClickHouse's name or alias (JSONEachRow, JSONLines, CSV, CSVWithNames,
    /// TabSeparated, TSV, TabSeparatedWithNames, TSVWithNames, Parquet, Arrow, ArrowStream; any
    /// case, as in ClickHouse), meaning what it means in ClickHouse (CSV and TSV have no header
    /// line), or chasync's own, written in lower case: ndjson, csv, tsv (a header line unless
    /// --no-header), parquet, arrow, arrow-stream [default: from the file extension; required
    /// for stdin].
    #[arg(long, value_parser = parse_format, value_name = "FORMAT")]
    pub format: Option<FormatName>,
    /// CSV/TSV input has no header line: fields map to the table's columns in order.
    #[arg(long)]
    pub no_header: bool,
    /// Stop at the first malformed line instead of dead-lettering it and going on.
    #[arg(long)]
    pub strict: bool,
    /// Threads converting NDJSON lines on the fast path (default 1: the reading thread). More
    /// help when the client has cores to spare; rows then reach batches in no particular
    /// order. `--strict` uses one, so that it stops at the first malformed line.
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Ignore input fields that name no column of the table (default: such a row is refused
    /// by the server and dead-lettered with its reason).
    #[arg(long)]
    pub skip_unknown_fields: bool,
    /// NDJSON: send every line to the server as JSONEachRow (the server parses it) instead of
    /// converting what can be converted exactly to RowBinary on the client.
    #[arg(long)]
    pub no_convert: bool,
    /// Skip the batches that an earlier run of the same load committed (its journal, in the
    /// spool directory), instead of sending them again. Files only, one thread.
    #[arg(long)]
    pub resume: bool,
    /// Finish within this long (`30s`, `10m`): stop reading when it passes, give up on inserts
    /// in progress, and dead-letter what did not land.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub deadline: Option<Duration>,
    /// Stop at the first input that cannot be read to its end (a truncated .gz, say) instead
    /// of naming it and going on with the next.
    #[arg(long)]
    pub stop_on_bad_input: bool,
    /// Engine options.
    #[command(flatten)]
    pub ingest: IngestOpts,
}
