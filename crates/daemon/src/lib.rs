//! # chasyncd
//!
//! An ingestion HTTP service in front of ClickHouse, on the chasync engine. Clients `POST`
//! JSONEachRow rows, ClickHouse-style (`/?query=INSERT INTO db.t FORMAT JSONEachRow`) or to
//! `/v1/tables/{db}.{table}`; the daemon validates them, appends them to a per-table
//! write-ahead log ([`wal`]), acknowledges (after the fsync, or after ClickHouse committed
//! them), and a feeder per table ([`table`]) batches them with the core's `Batcher` and sends
//! them through the core's `Dispatcher`, exactly once across crashes.

pub mod app;
pub mod config;
pub mod metrics;
pub mod query;
pub mod server;
pub mod table;
pub mod validate;
pub mod wal;

pub use app::App;
pub use config::{AckMode, Flags, Settings};
