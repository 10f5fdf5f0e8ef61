//! One target table: its spool directory (stream id, columns, write-ahead log), its WAL
//! writer thread, and its feeder, which hands durable rows to the engine.
//!
//! Rows become batches in the core's pipeline: the feeder pushes the WAL's rows, in order,
//! into a [`chasync_core::Pipeline`] whose inputs are numbered from the WAL's row numbers.
//! The pipeline's seal hook makes a *seal record* (the batch's sequence number and row range,
//! [`Batch::inputs`]) durable before the batch goes to the shared dispatcher, and watches the
//! batch: when it ends, a *commit record* follows. After a crash, [`Table::open`] re-forms every
//! sealed-but-uncommitted batch from exactly its rows with the same sequence number (so the
//! same batch id, which ClickHouse deduplicates), and the pipeline batches the unsealed rows
//! anew.

use std::collections::{HashSet, VecDeque};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chasync_core::{
    Ack, Batch, Batcher, Config as CoreConfig, Dispatcher, Error as CoreError, InsertIdColumn,
    JsonEachRow, Limits, PipelineBuilder, SealHook, StreamId, Target,
};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;
use uuid::Uuid;

use crate::metrics::Metrics;
use crate::wal::{self, Fed, Op, Pending, WalStats};

/// What the spool remembers about a table (`table.json`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TableMeta {
    /// Database.
    pub database: String,
    /// Table.
    pub table: String,
    /// The stream the batch ids derive from; fixed at the table's first use.
    pub stream_id: Uuid,
    /// The type of the table's `_insert_id` column that the engine fills, if any.
    pub insert_id: Option<String>,
    /// The table's columns when last fetched.
    pub columns: Vec<String>,
}

impl TableMeta {
    fn insert_id_column(&self) -> Option<InsertIdColumn> {
        self.insert_id
            .as_deref()
            .and_then(|ty| InsertIdColumn::from_column(chasync_core::INSERT_ID_COLUMN, ty))
    }

    /// Writes `table.json` atomically (temporary file, fsync, rename, fsync of the directory).
    pub fn save(&self, dir: &Path) -> io::Result<()> {
        let tmp = dir.join("table.json.tmp");
        let mut f = std::fs::File::create(&tmp)?;
        io::Write::write_all(&mut f, &serde_json::to_vec_pretty(self)?)?;
        f.sync_all()?;
        std::fs::rename(&tmp, dir.join("table.json"))?;
        wal::sync_dir(dir)
    }

    /// Reads `table.json`.
    pub fn load(dir: &Path) -> io::Result<Self> {
        let text = std::fs::read(dir.join("table.json"))?;
        serde_json::from_slice(&text).map_err(io::Error::other)
    }
}

/// The directory of a table in the spool: `<db>.<table>` with every byte outside
/// `[A-Za-z0-9_-]` written as `%XX`.
pub fn table_dir(spool: &Path, database: &str, table: &str) -> PathBuf {
    fn esc(s: &str, out: &mut String) {
        for b in s.bytes() {
            if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
                out.push(b as char);
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
    }
    let mut name = String::new();
    esc(database, &mut name);
    name.push('.');
    esc(table, &mut name);
    spool.join("tables").join(name)
}

/// The schema cache of a table.
#[derive(Debug)]
pub struct Schema {
    /// Column names.
    pub columns: HashSet<String>,
    /// When they were fetched (`None`: read from the spool).
    pub fetched: Option<Instant>,
}

/// Per-table counters.
#[derive(Debug, Default)]
pub struct TableCounters {
    /// Rows accepted (durable).
    pub rows: AtomicU64,
    /// Bytes of rows accepted.
    pub bytes: AtomicU64,
}

/// A running table.
pub struct Table {
    /// Database.
    pub database: String,
    /// Table.
    pub table: String,
    /// Its spool directory.
    pub dir: PathBuf,
    meta: Mutex<TableMeta>,
    /// The column the engine fills (rows must not carry it).
    pub insert_id: Option<String>,
    /// The schema cache.
    pub schema: RwLock<Schema>,
    ops: mpsc::UnboundedSender<Op>,
    watermark: watch::Receiver<u64>,
    dead: Arc<Mutex<std::collections::VecDeque<(u64, u64)>>>,
    feeder: Mutex<Option<tokio::task::JoinHandle<()>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Counters.
    pub counters: TableCounters,
    closed: AtomicBool,
}

/// What the feeder and the ack watchers share.
#[derive(Clone)]
pub struct Shared {
    /// The engine's dispatcher, shared by every table.
    pub dispatcher: Arc<Dispatcher>,
    /// The engine's catalog of tables.
    pub catalog: Arc<chasync_core::Catalog>,
    /// The daemon's metrics.
    pub metrics: Arc<Metrics>,
    /// Bytes of accepted rows not yet in a batcher.
    pub queue_bytes: Arc<AtomicU64>,
    /// Counters of the WAL writers.
    pub wal: Arc<WalStats>,
    /// Segment size.
    pub segment_bytes: u64,
}

/// Why an append failed.
#[derive(Debug)]
pub enum AppendError {
    /// The WAL cannot be written.
    Io(io::Error),
    /// The table is shutting down.
    Closed,
}

impl Table {
    /// Opens (recovering its WAL) or creates the table's spool directory and starts its
    /// writer and feeder. `fresh` is the metadata to use when the directory is new.
    pub fn open(
        dir: PathBuf,
        fresh: Option<TableMeta>,
        config: CoreConfig,
        shared: Shared,
    ) -> io::Result<Arc<Self>> {
        std::fs::create_dir_all(&dir)?;
        let meta = match TableMeta::load(&dir) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let m = fresh.ok_or_else(|| io::Error::other("table.json missing"))?;
                m.save(&dir)?;
                if let Some(parent) = dir.parent() {
                    wal::sync_dir(parent)?;
                }
                m
            }
            Err(e) => return Err(e),
        };
        let recovered = wal::recover(&dir)?;
        let handles = wal::start_writer(
            wal::WriterStart {
                dir: dir.clone(),
                segment_bytes: shared.segment_bytes,
                segments: recovered.segments.clone(),
                pending: recovered.pending.clone(),
                next_row: recovered.next_row,
                next_seq: recovered.next_seq,
                sealed_end: recovered.sealed_end,
            },
            shared.wal.clone(),
        )?;
        if !recovered.pending.is_empty() || recovered.next_row > recovered.sealed_end {
            tracing::info!(
                table = %format!("{}.{}", meta.database, meta.table),
                batches = recovered.pending.len(),
                unsealed_rows = recovered.next_row - recovered.sealed_end,
                "replaying the write-ahead log"
            );
        }
        let insert_id = meta.insert_id_column();
        let table = Arc::new(Self {
            database: meta.database.clone(),
            table: meta.table.clone(),
            dir,
            insert_id: insert_id.as_ref().map(|c| c.name.clone()),
            schema: RwLock::new(Schema {
                columns: meta.columns.iter().cloned().collect(),
                fetched: None,
            }),
            meta: Mutex::new(meta.clone()),
            ops: handles.ops.clone(),
            watermark: handles.watermark,
            dead: handles.dead,
            feeder: Mutex::new(None),
            writer: Mutex::new(Some(handles.thread)),
            counters: TableCounters::default(),
            closed: AtomicBool::new(false),
        });
        let watchers = Arc::new(Watchers {
            ops: handles.ops.clone(),
            metrics: shared.metrics.clone(),
            tasks: Mutex::new(JoinSet::new()),
        });
        let feeder = Feeder {
            config,
            meta,
            insert_id,
            ops: handles.ops,
            shared,
            watchers,
        };
        *table.feeder.lock().unwrap() = Some(tokio::spawn(feeder.run(recovered, handles.fed)));
        Ok(table)
    }

    /// The metadata.
    pub fn meta(&self) -> TableMeta {
        self.meta.lock().unwrap().clone()
    }

    /// Replaces the cached columns (and saves them in the spool).
    pub fn set_columns(&self, columns: Vec<String>) {
        let mut meta = self.meta.lock().unwrap();
        if meta.columns != columns {
            meta.columns = columns.clone();
            if let Err(e) = meta.save(&self.dir) {
                tracing::warn!(error = %e, "cannot save the table's columns in the spool");
            }
        }
        *self.schema.write().unwrap() = Schema {
            columns: columns.into_iter().collect(),
            fetched: Some(Instant::now()),
        };
    }

    /// Appends validated rows; returns their row range once they are durable.
    pub async fn append(
        &self,
        body: Bytes,
        rows: u32,
        reserved: u64,
    ) -> Result<(u64, u64), AppendError> {
        if self.closed.load(Relaxed) {
            return Err(AppendError::Closed);
        }
        let len = body.len() as u64;
        let (reply, rx) = oneshot::channel();
        self.ops
            .send(Op::Data {
                body,
                rows,
                reserved,
                reply,
            })
            .map_err(|_| AppendError::Closed)?;
        match rx.await {
            Ok(Ok(range)) => {
                self.counters.rows.fetch_add(rows as u64, Relaxed);
                self.counters.bytes.fetch_add(len, Relaxed);
                Ok(range)
            }
            Ok(Err(e)) => Err(AppendError::Io(e)),
            Err(_) => Err(AppendError::Closed),
        }
    }

    /// Waits until every batch holding rows of `range` has ended. `Err` when a batch holding
    /// some of them had rows dead-lettered.
    pub async fn committed(&self, range: (u64, u64)) -> Result<(), String> {
        let mut w = self.watermark.clone();
        if w.wait_for(|w| *w >= range.1).await.is_err() {
            return Err("the daemon stopped before the rows were committed".into());
        }
        let dead = self.dead.lock().unwrap();
        if dead.iter().any(|(s, e)| *s < range.1 && *e > range.0) {
            // The engine isolates the refused rows of a batch; the others landed. Which of
            // this request's rows were refused is in the spool's entries.
            return Err(
                "some of these rows were refused by ClickHouse and written to the dead-letter \
                 spool (the others were committed)"
                    .into(),
            );
        }
        Ok(())
    }

    /// Stops taking rows; the feeder seals what it holds and waits for every batch.
    pub async fn drain(&self) {
        self.closed.store(true, Relaxed);
        let _ = self.ops.send(Op::CloseInput);
        let feeder = self.feeder.lock().unwrap().take();
        if let Some(f) = feeder
            && let Err(e) = f.await
            && e.is_panic()
        {
            std::panic::resume_unwind(e.into_panic());
        }
    }

    /// After [`drain`](Self::drain): stops the writer (its last records fsynced) and waits
    /// for its thread.
    pub fn stop_writer(&self) {
        let _ = self.ops.send(Op::Stop);
        let writer = self.writer.lock().unwrap().take();
        if let Some(w) = writer {
            let _ = w.join();
        }
    }
}

struct Feeder {
    config: CoreConfig,
    meta: TableMeta,
    insert_id: Option<InsertIdColumn>,
    ops: mpsc::UnboundedSender<Op>,
    shared: Shared,
    watchers: Arc<Watchers>,
}

/// Tasks that append a commit record once their batch has ended.
struct Watchers {
    ops: mpsc::UnboundedSender<Op>,
    metrics: Arc<Metrics>,
    tasks: Mutex<JoinSet<()>>,
}

impl Watchers {
    /// Appends a commit record once the batch `seq` has ended.
    fn watch(&self, ack: Ack, seq: u64) {
        let ops = self.ops.clone();
        let metrics = self.metrics.clone();
        let sealed_at = Instant::now();
        self.tasks.lock().unwrap().spawn(async move {
            let dead_lettered = match ack.wait().await {
                Ok(()) => false,
                Err(CoreError::DeadLettered { .. }) => true,
                // The engine stopped before the batch ended: the next start replays it.
                Err(_) => return,
            };
            metrics.batch_latency.observe(sealed_at.elapsed());
            let _ = ops.send(Op::Commit { seq, dead_lettered });
        });
    }

    /// Waits for every watcher, those started meanwhile included.
    async fn finish(&self) {
        loop {
            let tasks = std::mem::take(&mut *self.tasks.lock().unwrap());
            if tasks.is_empty() {
                return;
            }
            tasks.join_all().await;
        }
    }
}

impl Feeder {
    async fn run(self, recovered: wal::Recovered, mut fed: mpsc::UnboundedReceiver<Fed>) {
        let stream = StreamId(self.meta.stream_id);
        // 1. Batches that were sealed and may have been sent: the same rows under the same
        //    sequence number, so the same batch id and dedup token.
        for p in &recovered.pending {
            let mut b = Batcher::new(
                JsonEachRow::new(self.insert_id.clone(), Vec::new()),
                Limits {
                    max_rows: usize::MAX,
                    max_bytes: usize::MAX,
                    linger: Duration::from_secs(3600),
                },
                {
                    let mut t = Target::of(&self.config);
                    t.stream_id = stream;
                    t.first_sequence = p.seq;
                    t.first_input = p.start;
                    t
                },
            );
            for row in recovered.rows(p.start, p.end) {
                let _ = b.push(row);
            }
            let Some(batch) = b.seal() else { continue };
            debug_assert_eq!(batch.sequence(), p.seq);
            match self.shared.dispatcher.submit(batch).await {
                Ok(ack) => self.watchers.watch(ack, p.seq),
                Err(e) => {
                    tracing::error!(error = %e, seq = p.seq, "the engine refused a batch; it stays in the WAL");
                }
            }
        }
        // 2. Rows after the last seal were never in a sent batch: the pipeline batches them
        //    anew, numbered from the WAL's row numbers, then the new rows as they become
        //    durable.
        let mut config = self.config.clone();
        config.delivery.stream_id = Some(stream);
        config.delivery.first_sequence = recovered.next_seq;
        let pipeline = match PipelineBuilder::new(config)
            .dispatcher(self.shared.dispatcher.clone())
            .catalog(self.shared.catalog.clone())
            .first_input(recovered.sealed_end)
            .on_current_runtime()
            .on_seal(self.seal_hook())
            .start_with_encoder(JsonEachRow::new(self.insert_id.clone(), Vec::new()))
        {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, table = %format!("{}.{}", self.meta.database, self.meta.table), "cannot start the table's pipeline; its rows stay in the WAL");
                return;
            }
        };
        let handle = pipeline.handle();
        let tail = recovered.rows(recovered.sealed_end, recovered.next_row);
        drop(recovered);
        // Rows handed to the pipeline.
        let mut sent = 0u64;
        for row in tail {
            if handle.send(row).await.is_err() {
                break;
            }
            sent += 1;
        }
        // Accepted bodies count against `max_queue_bytes` until the batcher has taken their
        // rows off the pipeline's queue: (rows sent up to the body's last, its bytes).
        let mut waiting: VecDeque<(u64, u64)> = VecDeque::new();
        let release = |waiting: &mut VecDeque<(u64, u64)>, sent: u64| {
            let taken = sent - handle.queue_depth();
            while let Some(&(end, bytes)) = waiting.front()
                && end <= taken
            {
                self.shared.queue_bytes.fetch_sub(bytes, Relaxed);
                waiting.pop_front();
            }
        };
        let mut look = tokio::time::interval(Duration::from_millis(5));
        loop {
            tokio::select! {
                item = fed.recv() => {
                    let Some(Fed { body, reserved, .. }) = item else { break };
                    for row in wal::split_rows(&body) {
                        if handle.send(row).await.is_err() {
                            break;
                        }
                        sent += 1;
                    }
                    waiting.push_back((sent, reserved));
                    release(&mut waiting, sent);
                }
                _ = look.tick(), if !waiting.is_empty() => release(&mut waiting, sent),
            }
        }
        for (_, bytes) in waiting {
            self.shared.queue_bytes.fetch_sub(bytes, Relaxed);
        }
        drop(handle);
        if let Err(e) = pipeline.shutdown().await {
            tracing::error!(error = %e, "the table's pipeline did not stop cleanly");
        }
        self.watchers.finish().await;
    }

    /// The pipeline's seal hook: the seal record is made durable before the batch is sent
    /// (without it the batch must not be sent: a replay could form it differently; its rows
    /// stay in the WAL for the next start), then the batch is watched for its commit record.
    fn seal_hook(&self) -> SealHook {
        let ops = self.ops.clone();
        let watcher = self.watchers.clone();
        Box::new(move |batch: &mut Batch| {
            let inputs = batch.inputs();
            let seal = Pending {
                seq: batch.sequence(),
                start: inputs.start,
                end: inputs.end,
            };
            let ack = batch.watch();
            let ops = ops.clone();
            let watcher = watcher.clone();
            Box::pin(async move {
                let (reply, rx) = oneshot::channel();
                let durable =
                    ops.send(Op::Seal { seal, reply }).is_ok() && matches!(rx.await, Ok(Ok(())));
                if !durable {
                    tracing::error!(
                        seq = seal.seq,
                        "cannot record the seal of a batch; it stays in the WAL"
                    );
                    return false;
                }
                watcher.watch(ack, seal.seq);
                true
            })
        })
    }
}
