//! One stream of inserts: the requests of one *shape* (table, column list, format and its
//! header, settings, user) that coalesce into the same batches. Each stream has its spool
//! directory (shape, stream id, write-ahead log), its WAL writer thread, and its feeder, which
//! hands durable request bodies to the engine.
//!
//! Bodies become batches in the core's pipeline: the feeder pushes the WAL's inputs, in order,
//! into a [`chasync_core::Pipeline`] of the [`Bodies`] encoder whose inputs are numbered from
//! the WAL's input numbers. The pipeline's seal hook makes a *seal record* (the batch's sequence
//! number and input range, [`Batch::inputs`]) durable before the batch goes to the shared
//! dispatcher, and watches the batch: when it ends, a *commit record* follows. After a crash,
//! [`Stream::open`] re-forms every sealed-but-uncommitted batch from exactly its inputs with
//! the same sequence number (so the same batch id, which ClickHouse deduplicates) and marks it
//! as maybe sent ([`Batch::mark_maybe_sent`]: on a table that does not deduplicate, the engine
//! establishes whether it landed before sending it), and the pipeline batches the unsealed
//! inputs anew. A body is one input: it lands whole or goes to
//! the spool whole.

use std::collections::VecDeque;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chasync_core::{
    Ack, Batch, Batcher, Bodies, Body, Config as CoreConfig, Dispatcher, Error as CoreError,
    Format, InsertIdColumn, Joint, Limits, PipelineBuilder, SealHook, StreamId, Target,
};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;
use uuid::Uuid;

use crate::gateway::reply::committed_error;
use crate::metrics::Metrics;
use crate::wal::{self, Fed, KeyOutcome, Op, Outcome, Pending, WalStats};

/// How long the end of a request with a retry key is remembered.
pub const KEY_TTL: Duration = Duration::from_secs(3600);

/// Where the request of a retry key stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyState {
    /// Durable, not ended yet.
    Pending,
    /// Ended: committed, or the error its request was answered with.
    Ended(KeyOutcome),
    /// The daemon stopped before it ended (it is in the log; the next start sends it).
    Interrupted,
}

/// A request that carried a retry key (its `insert_deduplication_token`): a retry with the
/// same key is answered from here instead of being appended again.
#[derive(Debug)]
pub struct KeyEntry {
    /// The key.
    pub key: Bytes,
    /// When the first request was accepted (ms since the Unix epoch).
    pub at_ms: u64,
    /// Its rows.
    pub rows: u32,
    /// Where it stands.
    pub state: watch::Sender<KeyState>,
}

impl KeyEntry {
    fn new(key: Bytes, at_ms: u64, rows: u32, state: KeyState) -> Arc<Self> {
        Arc::new(Self {
            key,
            at_ms,
            rows,
            state: watch::channel(state).0,
        })
    }

    /// Waits until the request ended (`None`: the daemon is stopping before it did).
    pub async fn ended(&self) -> Option<KeyOutcome> {
        let mut rx = self.state.subscribe();
        let state = rx
            .wait_for(|s| !matches!(s, KeyState::Pending))
            .await
            .map(|s| s.clone());
        match state {
            Ok(KeyState::Ended(o)) => Some(o),
            _ => None,
        }
    }

    fn end(&self, outcome: KeyOutcome) {
        self.state.send_replace(KeyState::Ended(outcome));
    }
}

/// What a retry key found.
pub enum Claim {
    /// The key is new: the request goes on, under this entry.
    New(Arc<KeyEntry>),
    /// A request with this key was accepted before.
    Seen(Arc<KeyEntry>),
}

/// The retry keys of a stream: by key, and the keyed inputs not sealed yet by input number.
#[derive(Default)]
struct Keys {
    by_key: std::collections::HashMap<Bytes, Arc<KeyEntry>>,
    by_input: std::collections::BTreeMap<u64, Arc<KeyEntry>>,
    claims: u64,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// How an input's acknowledgement ended, as its request is answered (`None`: the engine
/// stopped first).
fn key_outcome(result: Result<(), CoreError>, rows: u32) -> Option<KeyOutcome> {
    match result {
        Ok(()) => Some(KeyOutcome::committed(rows)),
        Err(CoreError::Closed) => None,
        Err(e) => {
            let e = committed_error(e);
            Some(KeyOutcome {
                code: e.code,
                status: e.status,
                message: e.message,
                rows,
            })
        }
    }
}

/// What the requests of a stream share, and so its batches: the insert they make, and as whom.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Hash)]
pub struct Shape {
    /// Database.
    pub database: String,
    /// Table.
    pub table: String,
    /// The insert's column list (`None`: every column, in table order).
    pub columns: Option<Vec<String>>,
    /// The ClickHouse format of the bodies.
    pub format: String,
    /// The format's header every batch starts with (the `WithNames` formats), hex.
    pub header: String,
    /// How bodies are joined (`true`: a line end after a body without one).
    pub newline_joint: bool,
    /// Each body is a batch of its own (a format whose bodies do not follow one another).
    pub whole: bool,
    /// ClickHouse settings of the insert, sorted by name.
    pub settings: Vec<(String, String)>,
    /// The ClickHouse user the batches are inserted as.
    pub user: String,
}

impl Shape {
    /// The stream's directory: `tables/<db>.<table>/<shape id>`, names %-escaped.
    pub fn dir(&self, spool: &Path) -> PathBuf {
        table_dir(spool, &self.database, &self.table).join(self.id().to_string())
    }

    /// A name of the shape: the same shape, the same id.
    pub fn id(&self) -> Uuid {
        let text = serde_json::to_vec(self).expect("shapes serialise");
        Uuid::new_v5(&Uuid::NAMESPACE_OID, &text)
    }

    /// The header bytes.
    pub fn header_bytes(&self) -> Bytes {
        Bytes::from(hex_decode(&self.header))
    }
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hex_decode(text: &str) -> Vec<u8> {
    (0..text.len() / 2)
        .filter_map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok())
        .collect()
}

/// What the spool remembers about a stream (`stream.json`, readable by the daemon's user only:
/// it holds the password the stream's batches are inserted with, so that a restart can send
/// them).
#[derive(Clone, Serialize, Deserialize, PartialEq)]
pub struct StreamMeta {
    /// The shape.
    pub shape: Shape,
    /// The stream the batch ids derive from; fixed at the stream's first use.
    pub stream_id: Uuid,
    /// The password of the shape's user (the last one that was checked).
    pub password: String,
    /// The type of the table's `_insert_id` column that the engine fills, if any.
    pub insert_id: Option<String>,
}

impl std::fmt::Debug for StreamMeta {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamMeta")
            .field("shape", &self.shape)
            .field("stream_id", &self.stream_id)
            .field("password", &"***")
            .field("insert_id", &self.insert_id)
            .finish()
    }
}

impl StreamMeta {
    fn insert_id_column(&self) -> Option<InsertIdColumn> {
        self.insert_id
            .as_deref()
            .and_then(|ty| InsertIdColumn::from_column(chasync_core::INSERT_ID_COLUMN, ty))
    }

    /// Writes `stream.json` atomically (temporary file with mode 0600, fsync, rename, fsync of
    /// the directory).
    pub fn save(&self, dir: &Path) -> io::Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        let tmp = dir.join("stream.json.tmp");
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        io::Write::write_all(&mut f, &serde_json::to_vec_pretty(self)?)?;
        f.sync_all()?;
        std::fs::rename(&tmp, dir.join("stream.json"))?;
        wal::sync_dir(dir)
    }

    /// Reads `stream.json`.
    pub fn load(dir: &Path) -> io::Result<Self> {
        let text = std::fs::read(dir.join("stream.json"))?;
        serde_json::from_slice(&text).map_err(io::Error::other)
    }
}

/// The directory of a table in the spool: `tables/<db>.<table>` with every byte outside
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

/// Per-stream counters.
#[derive(Debug, Default)]
pub struct StreamCounters {
    /// Rows accepted (durable).
    pub rows: AtomicU64,
    /// Bytes of rows accepted.
    pub bytes: AtomicU64,
    /// Rows ClickHouse committed.
    pub committed_rows: AtomicU64,
    /// Bytes (as received) of the rows ClickHouse committed.
    pub committed_bytes: AtomicU64,
    /// Rows written to the dead-letter spool.
    pub dead_rows: AtomicU64,
    /// Bytes (as received) of the rows written to the dead-letter spool.
    pub dead_bytes: AtomicU64,
}

impl StreamCounters {
    /// Counts how an input of `rows` rows and `bytes` bytes ended.
    fn ended(&self, result: &Result<(), CoreError>, rows: u32, bytes: u64) {
        let (r, b) = match result {
            Ok(()) => (&self.committed_rows, &self.committed_bytes),
            Err(CoreError::DeadLettered { .. }) => (&self.dead_rows, &self.dead_bytes),
            Err(_) => return,
        };
        r.fetch_add(u64::from(rows), Relaxed);
        b.fetch_add(bytes, Relaxed);
    }
}

/// A running stream.
pub struct Stream {
    /// Its shape.
    pub shape: Shape,
    /// Its spool directory.
    pub dir: PathBuf,
    meta: Mutex<StreamMeta>,
    ops: mpsc::UnboundedSender<Op>,
    feeder: Mutex<Option<tokio::task::JoinHandle<()>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Counters.
    pub counters: Arc<StreamCounters>,
    closed: AtomicBool,
    _watermark: watch::Receiver<u64>,
    keys: Arc<Mutex<Keys>>,
}

/// What the feeders and the ack watchers share.
#[derive(Clone)]
pub struct Shared {
    /// The engine's dispatcher, shared by every stream.
    pub dispatcher: Arc<Dispatcher>,
    /// The engine's catalog of tables.
    pub catalog: Arc<chasync_core::Catalog>,
    /// The daemon's metrics.
    pub metrics: Arc<Metrics>,
    /// Bytes of accepted bodies not yet taken by a batcher.
    pub queue_bytes: Arc<AtomicU64>,
    /// Counters of the WAL writers.
    pub wal: Arc<WalStats>,
    /// Segment size.
    pub segment_bytes: u64,
    /// The spool directory (damage reports go to its `corrupt/`).
    pub spool: PathBuf,
    /// The earliest time a batch recovered from a write-ahead log at this start can have
    /// been sent (`None`: not known; see [`crate::app::App::start`]).
    pub recovered_since: Option<std::time::SystemTime>,
}

/// Why an append failed.
#[derive(Debug)]
pub enum AppendError {
    /// The WAL cannot be written.
    Io(io::Error),
    /// The stream is shutting down.
    Closed,
}

impl Stream {
    /// Opens (recovering its WAL) or creates the stream's spool directory and starts its
    /// writer and feeder. `fresh` is the metadata to use when the directory is new; `config`
    /// is the engine's configuration of the stream's table.
    pub fn open(
        dir: PathBuf,
        fresh: Option<StreamMeta>,
        config: CoreConfig,
        shared: Shared,
    ) -> io::Result<Arc<Self>> {
        std::fs::create_dir_all(&dir)?;
        let meta = match StreamMeta::load(&dir) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let m = fresh.ok_or_else(|| io::Error::other("stream.json missing"))?;
                m.save(&dir)?;
                if let Some(parent) = dir.parent() {
                    wal::sync_dir(parent)?;
                }
                m
            }
            Err(e) => return Err(e),
        };
        let name = format!("{}.{}", meta.shape.database, meta.shape.table);
        let mut recovered = wal::recover(&dir)?;
        if !recovered.damage.is_empty() {
            // Reported, and the damaged segments kept rather than deleted.
            let kept = crate::corrupt::report(&shared.spool, &dir, &name, &recovered)?;
            for seg in &mut recovered.segments {
                seg.quarantine = kept.get(&seg.index).cloned();
            }
            let m = &shared.metrics;
            m.wal_corruptions
                .fetch_add(recovered.damage.len() as u64, Relaxed);
            m.wal_corrupt_bytes.fetch_add(
                recovered
                    .damage
                    .iter()
                    .map(|d| d.bytes.end - d.bytes.start)
                    .sum(),
                Relaxed,
            );
        }
        let keys = Arc::new(Mutex::new(Keys::default()));
        let counters = Arc::new(StreamCounters::default());
        let mut open_keys = std::collections::BTreeSet::new();
        {
            let since = now_ms().saturating_sub(KEY_TTL.as_millis() as u64);
            let ended = wal::load_keys(&dir, since)?;
            let mut k = keys.lock().unwrap();
            for (key, (at_ms, outcome)) in ended {
                let entry =
                    KeyEntry::new(key.clone(), at_ms, outcome.rows, KeyState::Ended(outcome));
                k.by_key.insert(key, entry);
            }
            for (input, at_ms, key) in &recovered.keys {
                if k.by_key.contains_key(key) {
                    continue;
                }
                let rows = recovered
                    .data
                    .iter()
                    .find(|(first, _, _)| first == input)
                    .map_or(0, |(_, rows, _)| *rows);
                let batch_ended = recovered
                    .seals
                    .iter()
                    .find(|(_, (start, end))| start <= input && input < end)
                    .is_some_and(|(seq, _)| recovered.ended.contains_key(seq));
                if batch_ended {
                    // Its end was written before its batch's commit record, always; a log
                    // without it was damaged.
                    tracing::warn!(
                        input,
                        "a keyed input's batch ended but its end is not in keys.log"
                    );
                    let entry = KeyEntry::new(
                        key.clone(),
                        *at_ms,
                        rows,
                        KeyState::Ended(KeyOutcome {
                            code: 1002,
                            status: 500,
                            message: "the outcome of the earlier request with this \
                                      insert_deduplication_token is unknown (chasyncd's log of it \
                                      was damaged): check the table before sending it again"
                                .into(),
                            rows,
                        }),
                    );
                    k.by_key.insert(key.clone(), entry);
                    continue;
                }
                let entry = KeyEntry::new(key.clone(), *at_ms, rows, KeyState::Pending);
                k.by_key.insert(key.clone(), entry.clone());
                k.by_input.insert(*input, entry);
                open_keys.insert(*input);
            }
        }
        let resend = recovered.assign_resends(meta.shape.whole, config.batching.max_bytes);
        let handles = wal::start_writer(
            wal::WriterStart {
                dir: dir.clone(),
                segment_bytes: shared.segment_bytes,
                segments: recovered.segments.clone(),
                pending: recovered.pending.iter().chain(&resend).copied().collect(),
                next_input: recovered.next_input,
                next_seq: recovered.next_seq,
                sealed_end: recovered.sealed_end,
                open_keys,
            },
            shared.wal.clone(),
        )?;
        if !recovered.pending.is_empty()
            || !resend.is_empty()
            || recovered.next_input > recovered.sealed_end
        {
            tracing::info!(
                table = %name,
                batches = recovered.pending.len(),
                resent_batches = resend.len(),
                unsealed_inputs = recovered.next_input - recovered.tail_start,
                "replaying the write-ahead log"
            );
        }
        let stream = Arc::new(Self {
            shape: meta.shape.clone(),
            dir,
            meta: Mutex::new(meta.clone()),
            ops: handles.ops.clone(),
            feeder: Mutex::new(None),
            writer: Mutex::new(Some(handles.thread)),
            counters: counters.clone(),
            closed: AtomicBool::new(false),
            _watermark: handles.watermark,
            keys: keys.clone(),
        });
        let watchers = Arc::new(Watchers {
            ops: handles.ops.clone(),
            counters,
            metrics: shared.metrics.clone(),
            tasks: Mutex::new(JoinSet::new()),
        });
        let feeder = Feeder {
            keys,
            config: stream_config(config, &meta),
            meta,
            ops: handles.ops,
            shared,
            watchers,
        };
        *stream.feeder.lock().unwrap() =
            Some(tokio::spawn(feeder.run(recovered, resend, handles.fed)));
        Ok(stream)
    }

    /// The metadata.
    pub fn meta(&self) -> StreamMeta {
        self.meta.lock().unwrap().clone()
    }

    /// Remembers the password the shape's user was last checked with (for a restart).
    pub fn set_password(&self, password: &str) {
        let mut meta = self.meta.lock().unwrap();
        if meta.password != password {
            meta.password = password.to_string();
            if let Err(e) = meta.save(&self.dir) {
                tracing::warn!(error = %e, "cannot save the stream's metadata in the spool");
            }
        }
    }

    /// Looks up the retry key of a request (`insert_deduplication_token`, scoped to the
    /// stream): a key seen within [`KEY_TTL`] is answered from its entry; a new one is claimed
    /// for the request, which must then [`append`](Self::append) with it or
    /// [`unclaim`](Self::unclaim) it.
    pub fn claim(&self, key: Bytes, rows: u32) -> Claim {
        let mut k = self.keys.lock().unwrap();
        if let Some(e) = k.by_key.get(&key) {
            return Claim::Seen(e.clone());
        }
        k.claims += 1;
        if k.claims.is_multiple_of(1024) {
            let since = now_ms().saturating_sub(KEY_TTL.as_millis() as u64);
            k.by_key
                .retain(|_, e| e.at_ms >= since || matches!(*e.state.borrow(), KeyState::Pending));
        }
        let entry = KeyEntry::new(key.clone(), now_ms(), rows, KeyState::Pending);
        k.by_key.insert(key, entry.clone());
        Claim::New(entry)
    }

    /// Forgets a claimed key whose request was not appended.
    pub fn unclaim(&self, entry: &Arc<KeyEntry>) {
        let mut k = self.keys.lock().unwrap();
        if k.by_key
            .get(&entry.key)
            .is_some_and(|e| Arc::ptr_eq(e, entry))
        {
            k.by_key.remove(&entry.key);
        }
    }

    /// Appends a validated body; returns its input range once it is durable. With `outcome`,
    /// the feeder tells how the input ended; with a claimed `key`, its entry hears it.
    pub async fn append(
        &self,
        body: Bytes,
        rows: u32,
        reserved: u64,
        outcome: Option<Outcome>,
        key: Option<&Arc<KeyEntry>>,
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
                outcome,
                key: key.map(|e| (e.at_ms, e.key.clone())),
                reply,
            })
            .map_err(|_| AppendError::Closed)?;
        match rx.await {
            Ok(Ok(range)) => {
                self.counters.rows.fetch_add(u64::from(rows), Relaxed);
                self.counters.bytes.fetch_add(len, Relaxed);
                Ok(range)
            }
            Ok(Err(e)) => Err(AppendError::Io(e)),
            Err(_) => Err(AppendError::Closed),
        }
    }

    /// Stops taking bodies; the feeder seals what it holds and waits for every batch.
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

/// The engine's configuration of a stream: its table's, with the shape's settings and user.
fn stream_config(mut config: CoreConfig, meta: &StreamMeta) -> CoreConfig {
    config.clickhouse.settings = meta.shape.settings.iter().cloned().collect();
    config.clickhouse.user = Some(meta.shape.user.clone());
    config.clickhouse.password = Some(chasync_core::Secret::new(meta.password.clone()));
    config.delivery.stream_id = Some(StreamId(meta.stream_id));
    config
}

/// Keyed inputs of a batch: input numbers and their entries.
type Keyed = Vec<(u64, Arc<KeyEntry>)>;

struct Feeder {
    keys: Arc<Mutex<Keys>>,
    config: CoreConfig,
    meta: StreamMeta,
    ops: mpsc::UnboundedSender<Op>,
    shared: Shared,
    watchers: Arc<Watchers>,
}

/// Tasks that append a commit record once their batch has ended.
struct Watchers {
    ops: mpsc::UnboundedSender<Op>,
    counters: Arc<StreamCounters>,
    metrics: Arc<Metrics>,
    tasks: Mutex<JoinSet<()>>,
}

impl Watchers {
    /// Appends a commit record once the batch `seq` has ended, after the ends of its keyed
    /// inputs (`keyed`: input numbers and their entries), so that a key's end is never lost
    /// while its batch counts as ended.
    fn watch(&self, ack: Ack, seq: u64, keyed: Vec<(u64, Arc<KeyEntry>)>) {
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
            for (input, entry) in keyed {
                // Each input's own acknowledgement ends with (or before) its batch's.
                let Some(outcome) = entry.ended().await else {
                    return;
                };
                let _ = ops.send(Op::KeyEnded {
                    input,
                    at_ms: entry.at_ms,
                    key: entry.key.clone(),
                    outcome,
                });
            }
            metrics.batch_latency.observe(sealed_at.elapsed());
            let _ = ops.send(Op::Commit { seq, dead_lettered });
        });
    }

    /// Counts how an input (`rows`, `bytes`) ended, and tells its waiting request or the
    /// entry of its retry key.
    fn tell(
        &self,
        ack: Ack,
        (rows, bytes): (u32, u64),
        outcome: Option<Outcome>,
        entry: Option<Arc<KeyEntry>>,
    ) {
        let counters = self.counters.clone();
        self.tasks.lock().unwrap().spawn(async move {
            let result = ack.wait().await;
            counters.ended(&result, rows, bytes);
            match entry {
                Some(entry) => match key_outcome(result, entry.rows) {
                    Some(o) => entry.end(o),
                    None => {
                        entry.state.send_replace(KeyState::Interrupted);
                    }
                },
                None => {
                    if let Some(outcome) = outcome {
                        let _ = outcome.send(result);
                    }
                }
            }
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
    /// The stream's encoder: request bodies one after the other, after the format's header.
    fn encoder(&self) -> Bodies {
        let shape = &self.meta.shape;
        let bodies = Bodies::new(
            Format::named(&shape.format),
            shape.columns.clone().unwrap_or_default(),
            shape.header_bytes(),
            if shape.newline_joint {
                Joint::Newline
            } else {
                Joint::None
            },
            shape.whole,
        );
        match self.meta.insert_id_column() {
            Some(col) => bodies.with_insert_id(col),
            None => bodies,
        }
    }

    /// The batch of exactly the inputs of `p`, numbered `p.seq` (so the same batch id), each
    /// input told how it ended; with its keyed inputs.
    fn reform(&self, recovered: &wal::Recovered, p: &Pending) -> Option<(Batch, Keyed)> {
        let mut b = Batcher::new(
            self.encoder(),
            Limits {
                max_rows: usize::MAX,
                max_bytes: usize::MAX,
                linger: Duration::from_secs(3600),
            },
            {
                let mut t = Target::of(&self.config);
                t.stream_id = StreamId(self.meta.stream_id);
                t.first_sequence = p.seq;
                t.first_input = p.start;
                t
            },
        );
        let mut keyed = Vec::new();
        for (input, bytes, rows) in recovered.inputs(p.start, p.end) {
            let size = (rows, bytes.len() as u64);
            let entry = self.keys.lock().unwrap().by_input.remove(&input);
            let (_, _, ack) = b.push_with_ack(Body { bytes, rows });
            self.watchers.tell(ack, size, None, entry.clone());
            if let Some(entry) = entry {
                keyed.push((input, entry));
            }
        }
        let batch = b.seal()?;
        debug_assert_eq!(batch.sequence(), p.seq);
        Some((batch, keyed))
    }

    async fn run(
        self,
        recovered: wal::Recovered,
        resend: Vec<Pending>,
        mut fed: mpsc::UnboundedReceiver<Fed>,
    ) {
        // 1. Batches that were sealed and may have been sent: the same inputs under the same
        //    sequence number, so the same batch id and dedup token.
        for p in &recovered.pending {
            let Some((mut batch, keyed)) = self.reform(&recovered, p) else {
                // Every input of it was lost with damage (reported): nothing to send, and it
                // must not hold its segments for ever.
                tracing::warn!(seq = p.seq, inputs = ?(p.start..p.end), "a batch whose inputs were all lost to damage is recorded as ended");
                let _ = self.ops.send(Op::Commit {
                    seq: p.seq,
                    dead_lettered: false,
                });
                continue;
            };
            // It may have been sent before the crash, and landed: the engine establishes
            // whether it did before it sends it (on a table that does not deduplicate).
            batch.mark_maybe_sent(self.shared.recovered_since);
            match self.shared.dispatcher.submit(batch).await {
                Ok(ack) => self.watchers.watch(ack, p.seq, keyed),
                Err(e) => {
                    tracing::error!(error = %e, seq = p.seq, "the engine refused a batch; it stays in the WAL");
                }
            }
        }
        // 1b. After damage, inputs whose batch record may have been lost: new batches, sealed
        //     (durably) before they are sent, like any other.
        for p in &resend {
            let Some((batch, keyed)) = self.reform(&recovered, p) else {
                continue;
            };
            let (reply, rx) = oneshot::channel();
            let durable = self.ops.send(Op::Seal { seal: *p, reply }).is_ok()
                && matches!(rx.await, Ok(Ok(())));
            if !durable {
                tracing::error!(
                    seq = p.seq,
                    "cannot record the seal of a batch; its inputs stay in the WAL"
                );
                break;
            }
            match self.shared.dispatcher.submit(batch).await {
                Ok(ack) => self.watchers.watch(ack, p.seq, keyed),
                Err(e) => {
                    tracing::error!(error = %e, seq = p.seq, "the engine refused a batch; it stays in the WAL");
                }
            }
        }
        // 2. Inputs after the last seal were never in a sent batch: the pipeline batches them
        //    anew, numbered from the WAL's input numbers, then the new inputs as they become
        //    durable.
        let mut config = self.config.clone();
        config.delivery.first_sequence = recovered.next_seq;
        let pipeline = match PipelineBuilder::new(config)
            .dispatcher(self.shared.dispatcher.clone())
            .catalog(self.shared.catalog.clone())
            .first_input(recovered.tail_start)
            .on_current_runtime()
            .on_seal(self.seal_hook())
            .start_with_encoder(self.encoder())
        {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, table = %format!("{}.{}", self.meta.shape.database, self.meta.shape.table), "cannot start the stream's pipeline; its inputs stay in the WAL");
                return;
            }
        };
        let handle = pipeline.handle();
        let tail = recovered.inputs(recovered.tail_start, recovered.next_input);
        drop(recovered);
        // Rows handed to the pipeline.
        let mut sent = 0u64;
        for (input, bytes, rows) in tail {
            let size = (rows, bytes.len() as u64);
            let queued = match handle.send_acked([Body { bytes, rows }]).await {
                Ok(ack) => {
                    self.watchers.tell(ack, size, None, self.keyed(input));
                    true
                }
                Err(_) => false,
            };
            if !queued {
                break;
            }
            sent += u64::from(rows);
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
                    let Some(Fed { first, body, rows, reserved, outcome, key }) = item else { break };
                    let size = (rows, body.len() as u64);
                    let input = Body { bytes: body, rows };
                    let entry = key.and_then(|key| {
                        let mut k = self.keys.lock().unwrap();
                        let entry = k.by_key.get(&key).cloned()?;
                        k.by_input.insert(first, entry.clone());
                        Some(entry)
                    });
                    // Every input hears how it ended: inputs land or fail whole, so the
                    // per-table counts of committed and dead-lettered rows are exact.
                    let queued = match handle.send_acked([input]).await {
                        Ok(ack) => {
                            self.watchers.tell(ack, size, outcome, entry);
                            true
                        }
                        Err(_) => false,
                    };
                    if !queued {
                        break;
                    }
                    sent += u64::from(rows);
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
            tracing::error!(error = %e, "the stream's pipeline did not stop cleanly");
        }
        self.watchers.finish().await;
    }

    /// The entry of keyed input `input`, if it is one.
    fn keyed(&self, input: u64) -> Option<Arc<KeyEntry>> {
        self.keys.lock().unwrap().by_input.get(&input).cloned()
    }

    /// The pipeline's seal hook: the seal record is made durable before the batch is sent
    /// (without it the batch must not be sent: a replay could form it differently; its inputs
    /// stay in the WAL for the next start), then the batch is watched for its commit record.
    fn seal_hook(&self) -> SealHook {
        let ops = self.ops.clone();
        let watcher = self.watchers.clone();
        let keys = self.keys.clone();
        Box::new(move |batch: &mut Batch| {
            let inputs = batch.inputs();
            let seal = Pending {
                seq: batch.sequence(),
                start: inputs.start,
                end: inputs.end,
            };
            let keyed: Vec<(u64, Arc<KeyEntry>)> = {
                let mut k = keys.lock().unwrap();
                let taken: Vec<u64> = k.by_input.range(inputs.clone()).map(|(i, _)| *i).collect();
                taken
                    .into_iter()
                    .filter_map(|i| Some((i, k.by_input.remove(&i)?)))
                    .collect()
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
                watcher.watch(ack, seal.seq, keyed);
                true
            })
        })
    }
}
