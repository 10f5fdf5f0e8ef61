//! # chasync-core
//!
//! The chasync ingestion engine for ClickHouse: rows in, idempotent inserts out, nothing
//! dropped. It batches rows (by rows, bytes and linger time), pushes back on producers when
//! its bounded queue is full, keeps an adaptive number of inserts in flight, retries only what
//! ClickHouse's error code says is worth retrying, sends every attempt of a batch with the
//! same bytes and the same deduplication token, isolates the rows the server refuses, and
//! writes what cannot be committed to a durable dead-letter spool.
//!
//! ```no_run
//! use chasync_core::{Config, Ingestor};
//!
//! #[derive(clickhouse::Row, serde::Serialize)]
//! struct Event {
//!     id: u64,
//!     name: String,
//! }
//!
//! # async fn run() -> chasync_core::Result<()> {
//! let config = Config::builder("http://127.0.0.1:8123", "analytics.events")
//!     .max_rows(100_000)
//!     .stream_id("events-loader") // reproducible batch ids
//!     .build()?;
//! let ingestor = Ingestor::<Event>::start(config).await?;
//! let mut writer = ingestor.handle().writer(); // one per producer: the fast path
//! for id in 0..1_000_000 {
//!     writer.write(Event { id, name: format!("e{id}") }).await.expect("running");
//! }
//! writer.close().await;
//! let stats = ingestor.shutdown().await?; // flush, stop, final counters
//! assert_eq!(stats.rows_committed + stats.rows_dead_lettered, 1_000_000);
//! # Ok(()) }
//! ```
//!
//! ## The data path
//!
//! ```text
//! Writer::write / Handle::send ─► queue (bounded) ─► Batcher (rows | bytes | linger)
//!   ─► encoder (RowBinary, Native, JSONEachRow, CSV, TSV) ─► Dispatcher (adaptive limit)
//!   ─► insert through the `clickhouse` crate (dedup token = query id = batch id)
//!   ─► committed, or rows refused isolated, or written to the DeadLetterSpool
//! ```
//!
//! ## What to start from
//!
//! * **Typed rows**: [`Ingestor<T>`] (RowBinary) for `T: clickhouse::Row + Serialize`.
//! * **Rows known at run time**: [`DynIngestor`] takes [`DynRow`]s and columnar
//!   [`ColumnBatch`]es ([`DynInput`]), converted to Native for the table's column types.
//! * **Text**: [`TextPipeline`] loads NDJSON (converted to RowBinary on the client where that
//!   is exact), CSV and TSV records.
//! * **Any encoder**: [`PipelineBuilder`] wires a [`BatchEncoder`] of the caller's, with a
//!   shared [`Dispatcher`] or [`Catalog`] and a [`SealHook`] (a write-ahead log's seal).
//! * **Bodies already in a ClickHouse format** (a gateway's requests): [`format_info`] knows
//!   every format by its names and aliases ([`FormatInfo`]: can its bodies be put one after
//!   the other?), [`frame`] splits a body into header and rows, counts and checks them, and
//!   [`Bodies`] puts bodies one after the other into batches.
//! * **Producers**: a cloneable [`Handle`] (`send`, `try_send`, `send_acked` with an [`Ack`],
//!   `flush`), or a [`Writer`] per producer, far cheaper per row.
//!
//! ## Configuration
//!
//! One [`Config`] with four groups ([`ClickHouse`], [`Batching`], [`Delivery`], [`Spool`]),
//! built with [`ConfigBuilder`] from flat options (`max_rows`, `linger`, `spool_dir`, ...),
//! TOML and the environment. The CLI's flags and config file, the daemon's TOML and Python's
//! keyword arguments are the same options: the same names, meanings and defaults.
//!
//! ## Guarantees
//!
//! * Every batch has a deterministic id ([`StreamId::batch_id`]), sent as
//!   `insert_deduplication_token` and `query_id`, and written into the table's `_insert_id`
//!   column when it has one ([`InsertIdColumn`]): a retry or a replay lands once on a table
//!   that deduplicates ([`Deduplication`], read by the [`Catalog`]). On any other table, an
//!   attempt whose answer was lost is looked up (`system.processes`, `system.query_log`, the
//!   `_insert_id` column) before the batch is sent again; a table where none of that is
//!   possible gets at-least-once delivery, and is reported ([`Guarantee`]).
//! * Errors are classified by ClickHouse error code ([`ErrorKind`]); retryable ones back off
//!   exponentially with jitter, the others go to the [`DeadLetterSpool`], which [`replay()`]
//!   sends again, exactly as it was first sent.
//! * Nothing accepted is dropped: shutting down (or dropping every handle) drains the queue
//!   and waits for every insert.

/// The hash map of the hot paths (per row or per value: column names, LowCardinality
/// dictionaries, row shapes): foldhash instead of the standard library's SipHash, several
/// times faster on short keys, still seeded per process.
pub(crate) type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

#[cfg(feature = "arrow")]
pub mod arrow;
mod batch;
mod catalog;
mod client;
mod config;
mod dedup;
mod delivery;
mod error;
mod format;
mod pipeline;
mod shard;
mod spool;
mod stats;
pub mod tls;
mod types;

pub use batch::ack::Ack;
pub use batch::{Batch, Encoded, Format, Parts, RejectedRow, RowSource, RowSourceRef, Units};
pub use catalog::Catalog;
pub use config::{
    Batching, ClickHouse, Compression, Config, ConfigBuilder, Delivery, Secret, Spool, Tls,
    parse_bytes, parse_duration, quote_ident, redact_url, user_config_candidates, user_config_file,
};
pub use dedup::StreamId;
pub use delivery::dispatcher::Dispatcher;
pub use delivery::outcome::{CHECKS_COMMENT, Guarantee, TableGuarantee, guarantee};
pub use delivery::replay::{ReplayOptions, ReplayReport, replay, replay_with};
pub use error::{Error, ErrorKind, Result, classify_code};
pub use format::bodies::{Bodies, Body, Joint};
pub use format::framing::{FrameError, FrameTable, Framed, frame};
pub use format::info::{FormatFamily, FormatInfo, HeaderKind, RowSyntax, format_info};
pub use format::native::{
    ColumnsOutcome, ConversionError, ConversionErrorKind, EncodedNative, NativeBatch, NativeOptions,
};
pub use format::{
    BatchEncoder, DelimitedRows, Delimiter, DynInput, DynamicRows, EncodedRows, JsonEachRow,
    JsonError, JsonRowBinary, JsonRowBinaryOptions, ObjectInfo, Push, RowBinary, RowEncoder,
    check_object, read_object,
};
pub use pipeline::batcher::{Batcher, Limits, SealHook, Target};
pub use pipeline::handle::{Handle, SendError, TrySendError};
pub use pipeline::text::{Rerun, TextFormat, TextOptions, TextPipeline, TextRefused, TextWriter};
pub use pipeline::writer::{Refused, Writer};
pub use pipeline::{DynIngestor, Ingestor, Pipeline, PipelineBuilder};
pub use shard::{
    Acks, DynTarget, DynTargetHandle, RouteError, Shard, ShardPlan, ShardRow, Sharded,
    ShardedDynIngestor, ShardedHandle,
};
pub use spool::{
    DeadLetterRecord, DeadLetterSpool, EntryKind, InsertSpec, RECORD_VERSION, ShardRef,
};
pub use stats::Stats;
pub use types::insert_id::{INSERT_ID_COLUMN, InsertIdColumn, InsertIdType};
pub use types::schema::{ColumnDef, ColumnType, Deduplication, DefaultKind, TableSchema};
pub use types::value::{ColumnBatch, ColumnData, DynRow, Strings, TypedColumn, TypedData, Value};
