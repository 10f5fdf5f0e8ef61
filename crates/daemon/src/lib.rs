//! # chasyncd
//!
//! A ClickHouse HTTP gateway on the chasync engine: existing ClickHouse clients point at it
//! unchanged. An `INSERT` it can batch ([`gateway`]) is checked against ClickHouse as the
//! client's own user, framed, appended to the write-ahead log of its stream ([`wal`],
//! [`stream`]: one per table, format, settings and user) and acknowledged (after the fsync, or
//! after ClickHouse committed it); the stream's pipeline coalesces many small inserts into few
//! large ones, sent through the core's shared `Dispatcher`, exactly once across crashes.
//! Everything else (queries, schema probes, `/ping`) passes through to ClickHouse.

pub mod app;
pub mod budget;
pub mod config;
pub mod corrupt;
pub mod gateway;
pub mod metrics;
pub mod notify;
pub mod server;
pub mod stream;
pub mod tls;
pub mod wal;

pub use app::App;
pub use config::{AckMode, Flags, Settings};
