//! Producer-side buffering: a [`Writer`] collects one producer's rows into chunks and hands

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::format::{EncodedRows, RowEncoder};
use crate::pipeline::handle::{Handle, Msg, SendError};
use crate::stats::Stats;

/// Rows on their way from a writer to the batcher: encoded, or as they are.
pub(crate) enum Chunk<R> {
    /// The rows themselves (the encoder cannot encode rows ahead of their batch).
    Rows(Vec<R>),
    /// Rows encoded by the encoder's [`RowEncoder`].
    Encoded(EncodedRows),
}

/// What a writer holds and has not handed over yet.
pub(crate) struct Pending<R> {
    chunk: Chunk<R>,
    /// Rows in `chunk` (inputs of several rows count as many).
    rows: u64,
    /// When the first row of `chunk` was written.
    since: Option<Instant>,
    /// The batcher has taken its last chunks: the ingestor is shut down.
    closed: bool,
}

impl<R> Pending<R> {
    fn new(encoded: bool) -> Self {
        Self {
            chunk: if encoded {
                Chunk::Encoded(EncodedRows::default())
            } else {
                Chunk::Rows(Vec::new())
            },
            rows: 0,
            since: None,
            closed: false,
        }
    }

    fn bytes(&self) -> usize {
        match &self.chunk {
            Chunk::Encoded(e) => e.bytes.len(),
            Chunk::Rows(_) => 0,
        }
    }

    /// Takes the chunk out, leaving an empty one (a spent one of `spare`'s, if it has one).
    fn take(&mut self, spare: &Spare) -> Option<(Chunk<R>, u64)> {
        if self.rows == 0 {
            return None;
        }
        let empty = match &self.chunk {
            Chunk::Encoded(e) => Chunk::Encoded(spare.take(e)),
            Chunk::Rows(v) => Chunk::Rows(Vec::with_capacity(v.len())),
        };
        let rows = std::mem::replace(&mut self.rows, 0);
        self.since = None;
        Some((std::mem::replace(&mut self.chunk, empty), rows))
    }
}

type Shared<R> = Arc<Mutex<Pending<R>>>;

/// Encoded chunks the batcher has appended to its batches, for writers to fill again: a
/// chunk is written into memory already in use instead of fresh pages every time.
#[derive(Default)]
pub(crate) struct Spare(Mutex<Vec<EncodedRows>>);

impl Spare {
    /// Spent chunks kept: enough for the chunks of several writers in turn.
    const KEEP: usize = 8;

    /// An empty chunk with room for as much as `like` holds.
    fn take(&self, like: &EncodedRows) -> EncodedRows {
        let spent = self.0.lock().unwrap_or_else(|e| e.into_inner()).pop();
        match spent {
            Some(mut c)
                if c.bytes.capacity() >= like.bytes.len()
                    && c.offsets.capacity() >= like.offsets.len() =>
            {
                c.bytes.clear();
                c.offsets.clear();
                c
            }
            _ => EncodedRows {
                bytes: Vec::with_capacity(like.bytes.len()),
                offsets: Vec::with_capacity(like.offsets.len()),
            },
        }
    }

    /// Keeps a chunk whose rows are in a batch now.
    pub(crate) fn put(&self, chunk: EncodedRows) {
        let mut spare = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if spare.len() < Self::KEEP {
            spare.push(chunk);
        }
    }
}

fn lock<R>(p: &Mutex<Pending<R>>) -> MutexGuard<'_, Pending<R>> {
    // A panic while holding the lock leaves plain data behind: keep going with it.
    p.lock().unwrap_or_else(|e| e.into_inner())
}

/// Every writer's buffer, for the batcher to take over; and how writers chunk.
pub(crate) struct Writers<R> {
    /// The registered buffers, and whether the batcher has ended (no more are taken over).
    list: Mutex<(Vec<Shared<R>>, bool)>,
    /// Wakes the batcher when a writer registers, so that it starts checking on writers
    /// (it does not while none is registered).
    pub(crate) registered: tokio::sync::Notify,
    /// The encoder each writer gets a copy of, when rows can be encoded ahead.
    encoder: Option<Mutex<Box<dyn RowEncoder<R>>>>,
    /// Spent encoded chunks, for the writers' next ones.
    pub(crate) spare: Spare,
    chunk_rows: u64,
    chunk_bytes: usize,
    linger: Duration,
}

impl<R> Writers<R> {
    pub(crate) fn new(
        encoder: Option<Box<dyn RowEncoder<R>>>,
        max_rows: usize,
        max_bytes: usize,
        linger: Duration,
    ) -> Self {
        Self {
            list: Mutex::new((Vec::new(), false)),
            registered: tokio::sync::Notify::new(),
            encoder: encoder.map(Mutex::new),
            spare: Spare::default(),
            // Small enough that a chunk rarely crosses a batch, large enough that the
            // hand-off is paid once per thousands of rows.
            chunk_rows: (max_rows as u64 / 8).clamp(1, 4096),
            chunk_bytes: (max_bytes / 8).clamp(1, 1 << 20),
            linger,
        }
    }

    fn register(&self) -> Shared<R> {
        let mut pending = Pending::new(self.encoder.is_some());
        let mut list = self.list.lock().unwrap_or_else(|e| e.into_inner());
        if list.1 {
            // Created after shutdown: accepts nothing.
            pending.closed = true;
            return Arc::new(Mutex::new(pending));
        }
        if list.0.len() >= 32 {
            // Forget writers dropped empty (e.g. one per `send_all`), so the list stays
            // short however long the batcher's look interval.
            list.0
                .retain(|p| Arc::strong_count(p) > 1 || lock(p).rows > 0);
        }
        let p = Arc::new(Mutex::new(pending));
        list.0.push(p.clone());
        drop(list);
        self.registered.notify_one();
        p
    }

    /// Whether any writer is registered (the batcher then checks on them every `linger`).
    pub(crate) fn any(&self) -> bool {
        !self
            .list
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .0
            .is_empty()
    }

    /// How often the batcher checks on writers.
    pub(crate) fn linger(&self) -> Duration {
        self.linger
    }

    /// Takes over the writers' buffered rows: those of dropped writers always, the others
    /// when `all` or when they have waited `linger`. With `close`, writers accept nothing
    /// more afterwards. Forgets dropped writers.
    pub(crate) fn take(&self, all: bool, close: bool) -> Vec<(Chunk<R>, u64)> {
        let mut out = Vec::new();
        let mut list = self.list.lock().unwrap_or_else(|e| e.into_inner());
        list.1 |= close;
        list.0.retain(|shared| {
            let dropped = Arc::strong_count(shared) == 1;
            let mut p = lock(shared);
            let due =
                all || close || dropped || p.since.is_some_and(|t| t.elapsed() >= self.linger);
            if due && let Some(c) = p.take(&self.spare) {
                out.push(c);
            }
            if close {
                p.closed = true;
            }
            !dropped && !close
        });
        out
    }
}

/// A buffered producer of one ingestor, for one task or thread.
///
/// ```no_run
/// use chasync_core::{Config, Ingestor};
///
/// #[derive(clickhouse::Row, serde::Serialize)]
/// struct Event {
///     id: u64,
///     name: String,
/// }
///
/// # async fn run() -> chasync_core::Result<()> {
/// let ingestor = Ingestor::<Event>::start(Config::new("http://127.0.0.1:8123", "events")).await?;
/// let mut writer = ingestor.handle().writer();
/// for id in 0..10_000_000 {
///     writer.write(Event { id, name: format!("e{id}") }).await.expect("running");
/// }
/// writer.close().await;
/// ingestor.shutdown().await?;
/// # Ok(()) }
/// ```
///
/// Producer-side buffering: a [`Writer`] collects one producer's rows into chunks and hands
/// the queue a chunk at a time.
///
/// [`Handle::send`] puts every row through the bounded queue on its own: fine for a few
/// thousand rows a second, but at millions a second the per-row hand-off between threads
/// (and freeing each row on the batcher's thread) costs more than encoding it. A writer
/// belongs to one producer: when the encoder can encode single rows ahead of their batch
/// (RowBinary), the writer encodes each row on the producer's thread right away and the row
/// is dropped there; the batcher then appends encoded chunks. Otherwise the writer collects
/// the rows themselves and sends them as one message.
///
/// Rows written to a writer belong to the engine at once: they are never lost, also not
/// when the writer is dropped, its `write` future is cancelled, or the ingestor shuts down
/// with rows still buffered. Every writer's buffer is registered with the batcher, which
/// takes it over when it has waited `linger`, on [`Handle::flush`], when the writer is
/// dropped, and at shutdown.
pub struct Writer<R: Send + 'static> {
    handle: Handle<R>,
    pending: Shared<R>,
    /// This writer's own row encoder (encoded chunks), or none (chunks of rows).
    encoder: Option<Box<dyn RowEncoder<R>>>,
}

/// Why [`Writer::try_write`] did not take a row; the row is handed back.
pub enum Refused<R> {
    /// The ingestor is shut down.
    Closed(R),
    /// The writer's row encoder cannot encode the row, for the reason given.
    Unencodable(R, String),
}

impl<R> std::fmt::Debug for Refused<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Closed(_) => f.write_str("Closed(..)"),
            Self::Unencodable(_, why) => write!(f, "Unencodable(.., {why:?})"),
        }
    }
}

impl<R: Send + 'static> std::fmt::Debug for Writer<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let p = lock(&self.pending);
        f.debug_struct("Writer")
            .field("buffered_rows", &p.rows)
            .field("closed", &p.closed)
            .finish()
    }
}

impl<R: Send + 'static> Handle<R> {
    /// A [`Writer`]: buffered, for one producer, much cheaper per row than
    /// [`send`](Self::send).
    pub fn writer(&self) -> Writer<R> {
        let encoder = self.writers.encoder.as_ref().map(|e| {
            e.lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .fresh()
        });
        Writer {
            pending: self.writers.register(),
            handle: self.clone(),
            encoder,
        }
    }
}

impl<R: Send + 'static> Writer<R> {
    /// Takes a row, handing a chunk to the queue when one is full (waiting while the queue
    /// is full: backpressure). A row the encoder refuses is dead-lettered with its reason,
    /// as with [`Handle::send`]. Fails only when the ingestor is shut down; the row is
    /// handed back.
    #[inline]
    pub async fn write(&mut self, row: R) -> Result<(), SendError<R>> {
        match self.try_write(row).await {
            Ok(()) => Ok(()),
            Err(Refused::Closed(row)) => Err(SendError(row)),
            Err(Refused::Unencodable(_, reason)) => {
                // Dead-lettered through the queue, like a row the batcher's encoder refuses.
                let _ = self.handle.reject(reason, None).await;
                Ok(())
            }
        }
    }

    /// Like [`write`](Self::write), but a row the writer's row encoder cannot encode is
    /// handed back with the reason instead of being dead-lettered (e.g. to send it another
    /// way).
    #[inline]
    pub async fn try_write(&mut self, row: R) -> Result<(), Refused<R>> {
        let writers = &self.handle.writers;
        // Rows the writer does not encode are readied for the queue here, not under the lock
        // the batcher takes the buffer with.
        let row = match self.encoder {
            Some(_) => row,
            None => (self.handle.prepare)(row),
        };
        let full = {
            let mut p = lock(&self.pending);
            if p.closed {
                return Err(Refused::Closed(row));
            }
            let n = (self.handle.count)(&row);
            match (&mut p.chunk, &mut self.encoder) {
                (Chunk::Encoded(e), Some(enc)) => {
                    if let Err(reason) = e.push(&mut **enc, &row) {
                        return Err(Refused::Unencodable(row, reason));
                    }
                }
                (Chunk::Rows(v), _) => v.push(row),
                (Chunk::Encoded(_), None) => unreachable!("encoded chunks need an encoder"),
            }
            p.rows += n;
            if p.since.is_none() {
                p.since = Some(Instant::now());
            }
            p.rows >= writers.chunk_rows || p.bytes() >= writers.chunk_bytes
        };
        if full {
            self.ship().await;
        }
        Ok(())
    }

    /// Takes every row of `rows` (see [`write`](Self::write)); on shutdown hands back the
    /// rows not taken.
    pub async fn write_all(
        &mut self,
        rows: impl IntoIterator<Item = R>,
    ) -> Result<(), SendError<Vec<R>>> {
        let mut rows = rows.into_iter();
        while let Some(row) = rows.next() {
            if let Err(SendError(row)) = self.write(row).await {
                let mut rest = vec![row];
                rest.extend(rows);
                return Err(SendError(rest));
            }
        }
        Ok(())
    }

    /// Hands the buffered rows to the queue now (waiting for room). Cancel-safe: the rows
    /// stay with the writer until the queue has room for them.
    pub async fn send_buffered(&mut self) {
        self.ship().await;
    }

    async fn ship(&mut self) {
        let rows = lock(&self.pending).rows;
        if rows == 0 {
            return;
        }
        // Room first (both waits are cancel-safe), then the chunk moves in one step.
        let room = self.handle.gate.room(rows).await;
        let Ok(slot) = self.handle.tx.reserve().await else {
            // Shut down: the batcher takes the buffer over at its end.
            return;
        };
        let Some((chunk, rows)) = lock(&self.pending).take(&self.handle.writers.spare) else {
            return;
        };
        slot.send(Msg::Chunk(chunk, rows));
        if let Some(room) = room {
            room.forget();
        }
        self.handle.queue.rows_accepted.fetch_add(rows, Relaxed);
    }

    /// Hands the buffered rows over, then waits until every row queued so far by any
    /// producer is committed or dead-lettered (see [`Handle::flush`]).
    pub async fn flush(&mut self) -> crate::error::Result<()> {
        self.ship().await;
        self.handle.flush().await
    }

    /// Hands the buffered rows to the queue and drops the writer.
    pub async fn close(mut self) {
        self.ship().await;
    }

    /// The handle this writer queues through.
    pub fn handle(&self) -> &Handle<R> {
        &self.handle
    }

    /// Rows buffered here, not yet handed to the queue.
    pub fn buffered_rows(&self) -> u64 {
        lock(&self.pending).rows
    }

    /// A snapshot of the ingestor's counters ([`Stats::rows_accepted`] counts a writer's
    /// rows once they leave its buffer).
    pub fn stats(&self) -> Stats {
        self.handle.stats()
    }
}

impl<R: Send + 'static> Drop for Writer<R> {
    fn drop(&mut self) {
        if lock(&self.pending).rows > 0 {
            // The batcher takes the rows over at its next look; ask it to look now.
            let _ = self.handle.tx.try_send(Msg::Collect);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spent_chunk_is_filled_again_when_it_is_large_enough() {
        let spare = Spare::default();
        let full = |n: usize| EncodedRows {
            bytes: vec![1; n],
            offsets: (0..n as u32).collect(),
        };
        let spent = full(1000);
        let at = spent.bytes.as_ptr();
        spare.put(spent);
        let next = spare.take(&full(1000));
        assert_eq!(next.bytes.as_ptr(), at);
        assert!(next.bytes.is_empty() && next.offsets.is_empty());
        // Too small for what the writer's chunks hold now: a new one.
        spare.put(next);
        let bigger = spare.take(&full(5000));
        assert_ne!(bigger.bytes.as_ptr(), at);
        assert!(bigger.bytes.capacity() >= 5000 && bigger.offsets.capacity() >= 5000);
        for _ in 0..20 {
            spare.put(full(10));
        }
        assert_eq!(spare.0.lock().unwrap().len(), Spare::KEEP);
    }

    #[test]
    fn writers_dropped_empty_are_forgotten_as_new_ones_register() {
        let writers = Writers::<u64>::new(None, 100, 1 << 20, Duration::from_secs(3600));
        let mut kept = Vec::new();
        for i in 0..1000 {
            let p = writers.register();
            if i % 100 == 0 {
                lock(&p).rows = 1; // dropped with rows: the batcher must still see it
            }
            if i % 250 == 0 {
                kept.push(p); // alive
            }
        }
        let list = writers.list.lock().unwrap();
        assert!(list.0.len() < 50, "{} entries", list.0.len());
        for p in &kept {
            assert!(list.0.iter().any(|q| Arc::ptr_eq(p, q)));
        }
        assert_eq!(list.0.iter().filter(|p| lock(p).rows == 1).count(), 10);
    }
}
