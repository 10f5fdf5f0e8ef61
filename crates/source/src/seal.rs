//! Seals: the range of a partition that is in a batch on its way to ClickHouse, recorded
//! durably before the batch is sent, so that whoever owns the partition next (the same
//! process after a crash, or another one after a rebalance) forms exactly the same batch
//! again.

use std::future::Future;
use std::pin::Pin;
use std::time::{SystemTime, UNIX_EPOCH};

use chasync_core::{Config, quote_ident};
use uuid::Uuid;

use crate::SourceError;

/// A boxed future, as the [`SealStore`] methods return them.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One partition of one source, as consumed by one group.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PartitionKey {
    /// The kind of source: `kafka` or `nats`.
    pub source: &'static str,
    /// The consumer group (Kafka) or the durable consumer's name prefix (NATS).
    pub group: String,
    /// The topic (Kafka) or the stream (NATS).
    pub topic: String,
    /// The partition number (Kafka) or the subject filter (NATS).
    pub partition: String,
}

impl std::fmt::Display for PartitionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}/{}[{}]",
            self.source, self.group, self.topic, self.partition
        )
    }
}

/// A sealed range: the positions (Kafka offsets, JetStream stream sequences) `first..=last`
/// of one partition form one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seal {
    /// The position of the batch's first message.
    pub first: u64,
    /// The position of its last message.
    pub last: u64,
    /// The batch id (derived from the partition, the range and the table).
    pub batch_id: Uuid,
}

/// Where seals are kept. One seal per partition: a seal is written only after the previous
/// range of the partition was committed, so the latest seal is the only one that can be
/// outstanding.
pub trait SealStore: Send + Sync {
    /// The latest seal of `key`, if any.
    fn read<'a>(
        &'a self,
        key: &'a PartitionKey,
    ) -> BoxFuture<'a, Result<Option<Seal>, SourceError>>;
    /// Records `seal` as the latest of `key`, durably: when this returns `Ok`, a later
    /// [`read`](Self::read) (by any process) returns it.
    fn write<'a>(
        &'a self,
        key: &'a PartitionKey,
        seal: Seal,
    ) -> BoxFuture<'a, Result<(), SourceError>>;
}

/// The default name of the seal table (in the configuration's database).
pub const SEAL_TABLE: &str = "chasync_source_seals";

/// Seals in a small ClickHouse table, the role the ClickHouse Kafka Connect sink gives a
/// `KeeperMap` table: a `ReplacingMergeTree` keyed by (source, group, topic, partition),
/// read with `FINAL`. A seal is an insert that ClickHouse acknowledged (`async_insert=0`,
/// `wait_end_of_query=1`), as durable as the rows the batches themselves insert.
///
/// The latest write wins: exactly one process owns a partition at a time, it reads the seal
/// when it takes the partition, and it writes a seal only after the previous one was
/// committed. The version is the writer's clock in nanoseconds, or one more than the version
/// it read when that is higher (clocks of two machines may disagree).
pub struct ClickHouseSeals {
    client: clickhouse::Client,
    table: String,
    /// The latest version read or written per partition: a new seal's version is above it
    /// even when this machine's clock is behind the previous owner's.
    versions: std::sync::Mutex<std::collections::HashMap<PartitionKey, u64>>,
}

impl ClickHouseSeals {
    /// A store in `table` (`db.table` or a table of the configuration's database) through the
    /// configuration's first endpoint, credentials and TLS options.
    pub fn new(config: &Config, table: &str) -> Result<Self, SourceError> {
        let table = match table.split_once('.') {
            Some((db, t)) => format!("{}.{}", quote_ident(db), quote_ident(t)),
            None => format!(
                "{}.{}",
                quote_ident(&config.clickhouse.database),
                quote_ident(table)
            ),
        };
        Ok(Self {
            client: config
                .client()
                .map_err(|e| SourceError::Seal(e.report()))?
                .with_setting("async_insert", "0")
                .with_setting("wait_end_of_query", "1"),
            table,
            versions: Default::default(),
        })
    }

    /// Creates the table if it does not exist.
    pub async fn create(&self) -> Result<(), SourceError> {
        let ddl = format!(
            "CREATE TABLE IF NOT EXISTS {} (\
               source LowCardinality(String), `group` String, topic String, partition String, \
               first UInt64, last UInt64, batch_id UUID, version UInt64, \
               sealed_at DateTime64(3) DEFAULT now64(3)) \
             ENGINE = ReplacingMergeTree(version) ORDER BY (source, `group`, topic, partition)",
            self.table
        );
        self.client
            .query(&ddl)
            .execute()
            .await
            .map_err(|e| SourceError::Seal(format!("cannot create {}: {e}", self.table)))
    }
}

impl SealStore for ClickHouseSeals {
    fn read<'a>(
        &'a self,
        key: &'a PartitionKey,
    ) -> BoxFuture<'a, Result<Option<Seal>, SourceError>> {
        Box::pin(async move {
            let sql = format!(
                "SELECT first, last, toString(batch_id), version FROM {} FINAL \
                 WHERE source = ? AND `group` = ? AND topic = ? AND partition = ? \
                 ORDER BY version DESC LIMIT 1",
                self.table
            );
            let row = self
                .client
                .query(&sql)
                .bind(key.source)
                .bind(&key.group)
                .bind(&key.topic)
                .bind(&key.partition)
                .fetch_optional::<(u64, u64, String, u64)>()
                .await
                .map_err(|e| SourceError::Seal(format!("cannot read the seal of {key}: {e}")))?;
            if let Some((.., version)) = &row {
                let mut versions = self.versions.lock().unwrap();
                let seen = versions.entry(key.clone()).or_default();
                *seen = (*seen).max(*version);
            }
            Ok(row.map(|(first, last, id, _)| Seal {
                first,
                last,
                batch_id: Uuid::parse_str(&id).unwrap_or_default(),
            }))
        })
    }

    fn write<'a>(
        &'a self,
        key: &'a PartitionKey,
        seal: Seal,
    ) -> BoxFuture<'a, Result<(), SourceError>> {
        Box::pin(async move {
            let version = {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(0);
                let mut versions = self.versions.lock().unwrap();
                let seen = versions.entry(key.clone()).or_default();
                *seen = now.max(*seen + 1);
                *seen
            };
            let sql = format!(
                "INSERT INTO {} (source, `group`, topic, partition, first, last, batch_id, version) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                self.table
            );
            self.client
                .query(&sql)
                .bind(key.source)
                .bind(&key.group)
                .bind(&key.topic)
                .bind(&key.partition)
                .bind(seal.first)
                .bind(seal.last)
                .bind(seal.batch_id.to_string())
                .bind(version)
                .execute()
                .await
                .map_err(|e| SourceError::Seal(format!("cannot write the seal of {key}: {e}")))
        })
    }
}
