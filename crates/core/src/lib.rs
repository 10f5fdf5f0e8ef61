//! # chasync-core
//!
//! The chasync ingestion engine for ClickHouse. Rows flow one way:
//!
//! ```text
//! Writer::write / Handle::send ─► queue (bounded) ─► batcher (rows | bytes | linger) ─► encoder
//!   ─► dispatcher (max_concurrency in flight) ─► sink (clickhouse crate, retries)
//!   ─► committed, or written to the dead-letter spool
//! ```
//!
//! * [`Ingestor`] / [`Pipeline`]: start with a [`Config`], send rows through cloneable
//!   [`Handle`]s or, fastest, a [`Writer`] per producer ([`Handle::writer`]: rows encoded on
//!   the producer's thread, queued in chunks), [`Pipeline::shutdown`] to flush and stop.
//! * Every batch has a deterministic id ([`dedup`]) sent as `insert_deduplication_token` and
//!   `query_id`, and written into an `_insert_id` column when the table has one: a retry or a
//!   replay lands once on tables that deduplicate.
//! * Errors are classified by ClickHouse error code ([`ErrorKind`]); retryable ones back off
//!   exponentially with jitter ([`RetryPolicy`]), the others go to the durable
//!   [`DeadLetterSpool`], which [`replay()`] sends again.

mod ack;

/// The hash map of the hot paths (per row or per value: column names, LowCardinality
/// dictionaries, row shapes): foldhash instead of the standard library's SipHash, several
/// times faster on short keys, still seeded per process.
pub(crate) type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

pub mod batch;
pub mod config;
pub mod dead_letter;
pub mod dedup;
pub mod dispatch;
pub mod encode;
pub mod error;
pub mod ingestor;
pub mod limiter;
pub mod native;
pub mod queue;
pub mod replay;
pub mod retry;
pub mod schema;
pub mod sink;
pub mod stats;
pub mod value;
pub mod writer;

pub use ack::Ack;
pub use batch::Batch;
pub use config::{Compression, Config, Secret, Timeouts};
pub use dead_letter::{DeadLetterRecord, DeadLetterSpool, EntryKind};
pub use dedup::StreamId;
pub use dispatch::Dispatcher;
pub use encode::{BatchEncoder, DynInput, RowBinary};
pub use error::{Error, ErrorKind, Result};
pub use ingestor::{DynIngestor, Ingestor, Pipeline};
pub use queue::{Handle, SendError, TrySendError};
pub use replay::{ReplayReport, replay};
pub use retry::RetryPolicy;
pub use stats::Stats;
pub use writer::{Refused, Writer};
