//! One partition's batches: messages in position order are cut into contiguous ranges (on
//! rows, bytes or linger), each range is sealed durably, formed into a batch whose id derives
//! from the range, inserted, and only then committed to the broker. The same for every
//! source: Kafka partitions and JetStream consumers.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use bytes::Bytes;
use chasync_core::{
    Batch, Batcher, Bodies, Config, Dispatcher, Error, FormatFamily, FormatInfo, FrameTable,
    InsertIdColumn, Limits, RejectedRow, RowSyntax, StreamId, TableSchema, Target, format_info,
};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::SourceError;
use crate::seal::{BoxFuture, PartitionKey, Seal, SealStore};

/// A message of a partition.
#[derive(Debug, Clone)]
pub struct Message {
    /// Its position: the Kafka offset, or the JetStream stream sequence.
    pub position: u64,
    /// Its value (`None`: a Kafka tombstone).
    pub payload: Option<Bytes>,
}

/// The id of the batch of positions `first..=last` of `key` for `database.table`: a UUIDv5
/// derived from exactly these (the same range of the same partition for the same table always
/// gets the same id, any other gets another). Sent as `insert_deduplication_token` and written
/// to `_insert_id`.
pub fn batch_id(key: &PartitionKey, first: u64, last: u64, database: &str, table: &str) -> Uuid {
    range_stream(key, first, last, database, table).batch_id(0)
}

fn range_stream(
    key: &PartitionKey,
    first: u64,
    last: u64,
    database: &str,
    table: &str,
) -> StreamId {
    StreamId::named(&format!(
        "{}\0{}\0{}\0{}\0{first}..{last}\0{database}.{table}",
        key.source, key.group, key.topic, key.partition
    ))
}

/// Counters of a source, shared by its partitions.
#[derive(Debug, Default)]
pub struct SourceCounters {
    /// Messages taken off the broker into batches.
    pub messages: AtomicU64,
    /// Batches committed to the broker (ClickHouse had them, or the dead-letter spool).
    pub batches: AtomicU64,
    /// Messages whose batch was committed to the broker.
    pub committed: AtomicU64,
    /// Batches formed again from a seal found at assignment.
    pub reformed: AtomicU64,
    /// Messages refused (not one row of the format, or a key the table lacks): they went to
    /// the dead-letter spool with their batch.
    pub refused: AtomicU64,
}

/// What a partition's batches go to: the table and its format, the engine's delivery, the
/// seal store.
pub struct Sink {
    pub(crate) config: Config,
    pub(crate) dispatcher: Arc<Dispatcher>,
    pub(crate) seals: Arc<dyn SealStore>,
    pub(crate) info: &'static FormatInfo,
    pub(crate) schema: Arc<TableSchema>,
    pub(crate) counters: Arc<SourceCounters>,
}

impl Sink {
    /// The sink of `config`'s table: its schema is read (the table must exist), `format` must
    /// be a format whose messages can be put one after the other without a header.
    pub async fn new(
        config: Config,
        format: &str,
        dispatcher: Arc<Dispatcher>,
        seals: Arc<dyn SealStore>,
    ) -> Result<Self, SourceError> {
        let info = format_info(format)
            .ok_or_else(|| SourceError::Config(format!("unknown format {format:?}")))?;
        if !matches!(info.family, FormatFamily::Rows | FormatFamily::Blocks) {
            return Err(SourceError::Config(format!(
                "format {}: messages must be rows without a header (JSONEachRow, CSV, \
                 TabSeparated, RowBinary, Native, ...)",
                info.name
            )));
        }
        let catalog = chasync_core::Catalog::new(&config).map_err(SourceError::Engine)?;
        let schema = catalog
            .table(&config.clickhouse.database, &config.table)
            .await
            .map_err(SourceError::Engine)?;
        Ok(Self {
            config,
            dispatcher,
            seals,
            info,
            schema,
            counters: Arc::default(),
        })
    }

    /// The counters of the partitions of this sink.
    pub fn counters(&self) -> &Arc<SourceCounters> {
        &self.counters
    }

    fn insert_id(&self) -> Option<InsertIdColumn> {
        (self.info.syntax == RowSyntax::JsonObjects && self.config.delivery.fill_insert_id)
            .then(|| self.schema.insert_id())
            .flatten()
    }

    /// The batch of `seal` from `messages` (those of the range, in order): every message that
    /// frames as rows of the format is a body of the batch, the others are refused into the
    /// dead-letter spool with it. The same messages give the same batch.
    pub(crate) fn form(&self, key: &PartitionKey, seal: &Seal, messages: &[Message]) -> Batch {
        let (db, table) = (&self.config.clickhouse.database, &self.config.table);
        let insert_id = self.insert_id();
        let mut bodies = Bodies::new(
            self.info.format(),
            Vec::new(),
            Bytes::new(),
            self.info.joint,
            false,
        );
        if let Some(col) = insert_id.clone() {
            bodies = bodies.with_insert_id(col);
        }
        let mut target = Target::of(&self.config);
        target.stream_id = range_stream(key, seal.first, seal.last, db, table);
        target.first_sequence = 0;
        target.first_input = seal.first;
        let mut batcher = Batcher::new(
            bodies,
            Limits {
                max_rows: usize::MAX,
                max_bytes: usize::MAX,
                linger: Duration::from_secs(3600),
            },
            target,
        );
        let reserved = insert_id.as_ref().map(|c| c.name.as_str());
        let columns: Vec<_> = self
            .schema
            .columns
            .iter()
            .filter(|c| {
                !matches!(
                    c.default_kind,
                    chasync_core::DefaultKind::Materialized
                        | chasync_core::DefaultKind::Alias
                        | chasync_core::DefaultKind::Ephemeral
                )
            })
            .map(|c| (c.name.as_str(), &c.ty))
            .collect();
        let has = |name: &str| self.schema.column(name).is_some();
        let frame_table = FrameTable {
            columns: Some(columns),
            skip_unknown: false,
            reserved,
            has: &has,
        };
        for m in messages {
            let refused = |reason: String, record: Option<String>| RejectedRow {
                reason: format!("{key} position {}: {reason}", m.position),
                record,
            };
            let rejected = match &m.payload {
                None => Some(refused("a message without a value".into(), None)),
                Some(p) if p.iter().all(u8::is_ascii_whitespace) => {
                    Some(refused("an empty message".into(), None))
                }
                Some(p) => match chasync_core::frame(self.info, p.clone(), &frame_table) {
                    Ok(f) if f.whole || f.rows == 0 => Some(refused(
                        format!("no rows of {}", self.info.name),
                        Some(String::from_utf8_lossy(p).into_owned()),
                    )),
                    Ok(f) => {
                        batcher.push(chasync_core::Body {
                            bytes: f.body,
                            rows: f.rows,
                        });
                        None
                    }
                    Err(e) => Some(refused(
                        format!("Code: {}. {}", e.code, e.message),
                        Some(String::from_utf8_lossy(p).into_owned()),
                    )),
                },
            };
            if let Some(r) = rejected {
                self.counters.refused.fetch_add(1, Relaxed);
                batcher.reject(r);
            }
        }
        batcher.seal().expect("a range holds at least one message")
    }
}

/// How a partition tells the broker that a range is done.
pub(crate) trait Committer: Send {
    /// Commits everything up to `seal.last` (Kafka: offset `last + 1`; JetStream: the ack of
    /// `last`, acknowledging all before it).
    fn commit<'a>(&'a mut self, seal: &'a Seal) -> BoxFuture<'a, Result<(), SourceError>>;
}

/// Kills the process (SIGKILL, as `kill -9`) at the named point when the environment asks
/// for it: `CHASYNC_TEST_CRASH_AT=<point>`, on its `CHASYNC_TEST_CRASH_AFTER`-th pass
/// (default 1). Compiled only with the `crash-points` feature, for tests.
pub fn crash_point(name: &str) {
    #[cfg(feature = "crash-points")]
    {
        static PASSES: AtomicU64 = AtomicU64::new(0);
        if std::env::var("CHASYNC_TEST_CRASH_AT").as_deref() == Ok(name) {
            let after: u64 = std::env::var("CHASYNC_TEST_CRASH_AFTER")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(1);
            if PASSES.fetch_add(1, Relaxed) + 1 >= after {
                eprintln!("chasync: test crash point {name}: SIGKILL");
                let _ = rustix::process::kill_process(
                    rustix::process::getpid(),
                    rustix::process::Signal::KILL,
                );
                std::process::abort();
            }
        }
    }
    #[cfg(not(feature = "crash-points"))]
    let _ = name;
}

/// One partition, from its assignment to its revocation.
pub(crate) struct Partition<C: Committer> {
    pub key: PartitionKey,
    pub sink: Arc<Sink>,
    pub committer: C,
    /// Bytes of messages sent to this partition and not yet taken into a batch.
    pub backlog: Arc<AtomicU64>,
    /// Set when the messages ended (a shutdown): the last range is being finished.
    pub draining: bool,
}

/// Messages of a range being collected.
#[derive(Default)]
struct Open {
    messages: Vec<Message>,
    bytes: usize,
    deadline: Option<Instant>,
}

impl<C: Committer> Partition<C> {
    /// Runs the partition: first the batch of `pending` (a seal found at assignment, formed
    /// again from exactly its range), then new ranges. Returns when `stop` is cancelled
    /// (after the range in progress, if one was sealed, is committed: an unsealed one is
    /// dropped, its messages are the next owner's), when the messages end, or on an error
    /// (the range in progress stays sealed for the next owner).
    pub async fn run(
        mut self,
        mut rx: mpsc::UnboundedReceiver<Message>,
        mut pending: Option<Seal>,
        stop: CancellationToken,
    ) -> Result<(), SourceError> {
        let limits = &self.sink.config.batching;
        let (max_rows, max_bytes, linger) = (limits.max_rows, limits.max_bytes, limits.linger);
        let mut open = Open::default();
        let mut reform: Vec<Message> = Vec::new();
        loop {
            let deadline = open.deadline;
            let message = tokio::select! {
                biased;
                _ = stop.cancelled() => return Ok(()),
                m = rx.recv() => match m {
                    Some(m) => Some(m),
                    None => {
                        // The messages ended: what is collected goes (a source that ends,
                        // not one that was revoked).
                        if !open.messages.is_empty() && pending.is_none() {
                            let msgs = std::mem::take(&mut open.messages);
                            self.draining = true;
                            self.step(None, msgs).await?;
                        }
                        return Ok(());
                    }
                },
                _ = sleep_until(deadline) => None,
            };
            let Some(m) = message else {
                // Linger.
                let msgs = std::mem::take(&mut open.messages);
                open = Open::default();
                self.step(None, msgs).await?;
                continue;
            };
            let size = m.payload.as_ref().map_or(0, |p| p.len());
            self.backlog.fetch_sub(size as u64, Relaxed);
            self.sink.counters.messages.fetch_add(1, Relaxed);
            if let Some(seal) = pending {
                // The sealed range first, exactly.
                if m.position < seal.first {
                    continue;
                }
                if m.position <= seal.last {
                    reform.push(m.clone());
                }
                if m.position >= seal.last {
                    pending = None;
                    let msgs = std::mem::take(&mut reform);
                    self.sink.counters.reformed.fetch_add(1, Relaxed);
                    self.step(Some(seal), msgs).await?;
                    if m.position == seal.last {
                        continue;
                    }
                } else {
                    continue;
                }
            }
            if open.messages.is_empty() {
                open.deadline = Some(Instant::now() + linger);
            }
            open.bytes += size;
            open.messages.push(m);
            if open.messages.len() >= max_rows || open.bytes >= max_bytes {
                let msgs = std::mem::take(&mut open.messages);
                open = Open::default();
                self.step(None, msgs).await?;
            }
        }
    }

    /// Seals the range of `messages` (or `seal`, a range sealed before), inserts its batch
    /// and commits it.
    async fn step(
        &mut self,
        seal: Option<Seal>,
        messages: Vec<Message>,
    ) -> Result<(), SourceError> {
        let sink = self.sink.clone();
        let seal = match seal {
            Some(s) => s,
            None => {
                let (Some(first), Some(last)) = (messages.first(), messages.last()) else {
                    return Ok(());
                };
                let (first, last) = (first.position, last.position);
                let s = Seal {
                    first,
                    last,
                    batch_id: batch_id(
                        &self.key,
                        first,
                        last,
                        &sink.config.clickhouse.database,
                        &sink.config.table,
                    ),
                };
                // 1. Durably sealed before anything is sent.
                let mut wait = Duration::from_millis(100);
                loop {
                    match sink.seals.write(&self.key, s).await {
                        Ok(()) => break,
                        Err(e) => {
                            tracing::warn!(partition = %self.key, error = %e, "cannot seal; trying again");
                            tokio::time::sleep(wait).await;
                            wait = (wait * 2).min(Duration::from_secs(5));
                        }
                    }
                }
                s
            }
        };
        if self.draining {
            crash_point("drain_before_insert");
        }
        crash_point("before_insert");
        // 2. Inserted (or its refused rows in the dead-letter spool).
        let n = messages.len() as u64;
        let batch = if messages.is_empty() {
            None
        } else {
            Some(sink.form(&self.key, &seal, &messages))
        };
        if let Some(batch) = batch {
            debug_assert_eq!(batch.id(), seal.batch_id);
            let ack = sink
                .dispatcher
                .submit(batch)
                .await
                .map_err(SourceError::Engine)?;
            match ack.wait().await {
                Ok(()) | Err(Error::DeadLettered { .. }) => {}
                Err(e) => return Err(SourceError::Engine(e)),
            }
        }
        crash_point("after_insert");
        // 3. Committed to the broker.
        self.committer.commit(&seal).await?;
        crash_point("after_commit");
        sink.counters.batches.fetch_add(1, Relaxed);
        sink.counters.committed.fetch_add(n, Relaxed);
        tracing::debug!(partition = %self.key, first = seal.first, last = seal.last, id = %seal.batch_id, "committed");
        Ok(())
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
