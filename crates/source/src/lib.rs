//! # chasync-source
//!
//! Exactly-once sources for the chasync engine: a Kafka consumer group (feature `kafka`)
//! and NATS JetStream durable consumers (feature `nats`) into one ClickHouse table each.
//!
//! The contract is the same for both. A batch is one partition's contiguous range of
//! positions (Kafka offsets, JetStream stream sequences). Its id is a UUIDv5 derived from
//! (source, group, topic, partition, first..last position, table) ([`batch_id`]); it is sent
//! as `insert_deduplication_token` and written to the table's `_insert_id` column (JSON
//! formats). Before the batch is sent its range is sealed durably in a [`SealStore`]
//! ([`ClickHouseSeals`]: a small ReplacingMergeTree table); only after ClickHouse has the
//! batch is the range committed to the broker (Kafka offset commit, JetStream ack). Whoever
//! owns the partition next (after a crash, a rebalance, a restart) reads the seal, and when
//! the sealed range is not committed forms exactly the same batch again: the same id, which
//! ClickHouse's insert deduplication drops if the first insert had landed. The target table
//! must deduplicate (Replicated, or `non_replicated_deduplication_window`).

// Without a source feature the shared machinery has no user.
#![cfg_attr(not(any(feature = "kafka", feature = "nats")), allow(dead_code))]

mod partition;
mod seal;

#[cfg(feature = "kafka")]
pub mod kafka;
#[cfg(feature = "nats")]
pub mod nats;

pub use partition::{Message, SourceCounters, batch_id, crash_point};
pub use seal::{BoxFuture, ClickHouseSeals, PartitionKey, SEAL_TABLE, Seal, SealStore};

/// What stops a source.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// A bad option.
    #[error("{0}")]
    Config(String),
    /// The broker refused or failed.
    #[error("broker: {0}")]
    Broker(String),
    /// The seal store failed.
    #[error("seal store: {0}")]
    Seal(String),
    /// The engine (ClickHouse, the table) failed.
    #[error("{}", .0.report())]
    Engine(chasync_core::Error),
}
