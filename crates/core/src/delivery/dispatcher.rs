//! The dispatcher: up to `max_concurrency` inserts in flight; every batch ends committed or in
//! the dead-letter spool.

use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::batch::Batch;
use crate::batch::ack::{Ack, Failure};
use crate::config::Config;
use crate::delivery::limiter::Limiter;
use crate::delivery::sink::Sink;
use crate::delivery::sink::{Outcome, SharedSink};
use crate::error::{Error, ErrorKind, Result};
use crate::spool::{DeadLetterSpool, ShardRef};
use crate::stats::Counters;
use crate::stats::Stats;

/// A message to the dispatcher.
pub(crate) enum Work {
    Batch(Box<Batch>),
    Flush(oneshot::Sender<Result<()>>),
}

/// What the dispatcher's tasks share.
pub(crate) struct Shared {
    pub sink: SharedSink,
    pub spool: DeadLetterSpool,
    pub counters: Arc<Counters>,
    pub last_dead_letter_error: Mutex<Option<String>>,
    pub last_dead_letter_code: Mutex<Option<u32>>,
}

/// Sends sealed batches to ClickHouse: at most `max_concurrency` batches in progress (each
/// attempt within an adaptive limit that halves under overload and grows back), retries, isolation of
/// rejected rows, and the dead-letter spool. [`Pipeline`](crate::Pipeline) feeds it from its
/// batcher; a frontend that forms batches itself (e.g. from a write-ahead log, with
/// [`Batcher`](crate::Batcher)) can [`submit`](Self::submit) them directly.
pub struct Dispatcher {
    tx: mpsc::Sender<Work>,
    task: tokio::task::JoinHandle<()>,
    counters: Arc<Counters>,
    abandoned: tokio_util::sync::CancellationToken,
    sink: SharedSink,
}

impl Dispatcher {
    /// Starts a dispatcher for the endpoints, credentials, limits and spool of `config` on
    /// the current tokio runtime. The table of each batch is the batch's own.
    pub fn start(config: &Config) -> Result<Self> {
        Self::start_for_shard(config, None)
    }

    /// [`start`](Self::start) for the batches of one shard of a sharded load: their spool
    /// entries record `shard`, so that a replay sends them to it.
    pub(crate) fn start_for_shard(config: &Config, shard: Option<ShardRef>) -> Result<Self> {
        config.validate()?;
        let limiter = Arc::new(Limiter::new(config.delivery.max_concurrency));
        let sink = Sink::new(config, limiter.clone())?;
        let spool = DeadLetterSpool::new(config.spool.dir.clone()).for_shard(shard);
        Ok(Self::with_sink(config, sink, limiter, spool))
    }

    fn with_sink(
        config: &Config,
        sink: Sink,
        limiter: Arc<Limiter>,
        spool: DeadLetterSpool,
    ) -> Self {
        if let Some(warning) = crate::delivery::sink::check_open_files(config) {
            tracing::warn!("{warning}");
        }
        let counters = Arc::new(Counters::new(limiter));
        // One sealed batch may wait for a free slot; more would only hold memory.
        let (tx, rx) = mpsc::channel(1);
        let abandoned = sink.abandoned();
        let sink = Arc::new(sink);
        let shared = Arc::new(Shared {
            sink: sink.clone(),
            spool,
            counters: counters.clone(),
            last_dead_letter_error: Mutex::new(None),
            last_dead_letter_code: Mutex::new(None),
        });
        let task = tokio::spawn(run(rx, shared, config.delivery.max_concurrency));
        Self {
            tx,
            task,
            counters,
            abandoned,
            sink,
        }
    }

    /// Gives up delivery: no attempt starts from now on, attempts in flight are abandoned and
    /// waits between attempts end, so every batch in progress, and every batch that comes
    /// after, goes to the dead-letter spool at once (under its own id: a replay lands it
    /// once). For a load that must end by a deadline.
    pub fn abandon(&self) {
        self.abandoned.cancel();
    }

    /// The error of the last failed attempt, if any attempt failed.
    pub fn last_failure(&self) -> Option<String> {
        self.counters.last_failure()
    }

    pub(crate) fn sender(&self) -> mpsc::Sender<Work> {
        self.tx.clone()
    }

    pub(crate) fn counters(&self) -> Arc<Counters> {
        self.counters.clone()
    }

    /// Queues a sealed batch (waiting while all slots are busy) and returns an [`Ack`] that
    /// resolves when it has ended: committed, or (some rows) dead-lettered.
    pub async fn submit(&self, mut batch: Batch) -> Result<Ack> {
        let ack = batch.watch();
        self.counters.batches_sealed.fetch_add(1, Relaxed);
        self.tx
            .send(Work::Batch(Box::new(batch)))
            .await
            .map_err(|_| Error::Closed)?;
        Ok(ack)
    }

    /// Returns when every batch submitted before has ended; see [`Handle::flush`](crate::Handle::flush).
    pub async fn flush(&self) -> Result<()> {
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Work::Flush(done))
            .await
            .map_err(|_| Error::Closed)?;
        wait.await.map_err(|_| Error::Closed)?
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        self.counters.snapshot()
    }

    /// What each table this dispatcher has sent batches to gets when an attempt's outcome
    /// is unknown (for each user its batches were inserted as): see [`Guarantee`](crate::Guarantee).
    /// A table appears once what it allows has been read (in the background, after its
    /// first batch).
    pub fn guarantees(&self) -> Vec<crate::TableGuarantee> {
        self.sink.resolver.guarantees()
    }

    /// Waits for every batch to end and stops.
    pub async fn shutdown(self) -> Result<Stats> {
        drop(self.tx);
        if let Err(e) = self.task.await {
            if e.is_panic() {
                std::panic::resume_unwind(e.into_panic());
            }
            return Err(Error::Closed);
        }
        Ok(self.counters.snapshot())
    }
}

/// Runs until the batcher closes its channel and every insert has ended.
async fn run(mut rx: mpsc::Receiver<Work>, shared: Arc<Shared>, max_concurrency: usize) {
    let limiter = Arc::new(Semaphore::new(max_concurrency));
    let mut tasks = JoinSet::new();
    let mut dead_at_last_flush = (0u64, 0u64);
    // A slot is taken before the next batch is: while every slot is busy, the next sealed
    // batch waits in the channel, not here as well (one batch less held in memory when the
    // server is the bottleneck).
    let mut slot = None;
    loop {
        let permit = match slot.take() {
            Some(p) => p,
            None => limiter
                .clone()
                .acquire_owned()
                .await
                .expect("the limiter is never closed"),
        };
        let Some(work) = rx.recv().await else { break };
        while let Some(done) = tasks.try_join_next() {
            reap(done);
        }
        match work {
            Work::Batch(batch) => {
                let batch = *batch;
                let shared = shared.clone();
                let span = tracing::info_span!(
                    "chasync.batch",
                    id = %batch.id,
                    seq = batch.sequence(),
                    rows = batch.rows,
                    table = %batch.table(),
                );
                tasks.spawn(
                    async move {
                        process(batch, &shared).await;
                        drop(permit);
                    }
                    .instrument(span),
                );
            }
            Work::Flush(done) => {
                slot = Some(permit);
                while let Some(res) = tasks.join_next().await {
                    reap(res);
                }
                let now = (
                    shared.counters.batches_dead_lettered.load(Relaxed),
                    shared.counters.rows_dead_lettered.load(Relaxed),
                );
                let result = if now.0 > dead_at_last_flush.0 {
                    Err(Error::DeadLettered {
                        batches: now.0 - dead_at_last_flush.0,
                        rows: now.1 - dead_at_last_flush.1,
                        spool: shared.spool.dir().to_path_buf(),
                        last_error: shared
                            .last_dead_letter_error
                            .lock()
                            .unwrap()
                            .clone()
                            .unwrap_or_default(),
                        code: *shared.last_dead_letter_code.lock().unwrap(),
                    })
                } else {
                    Ok(())
                };
                dead_at_last_flush = now;
                let _ = done.send(result);
            }
        }
    }
    while let Some(res) = tasks.join_next().await {
        reap(res);
    }
    shared.sink.end_background(Duration::from_secs(2)).await;
}

fn reap(res: std::result::Result<(), tokio::task::JoinError>) {
    if let Err(e) = res
        && e.is_panic()
    {
        std::panic::resume_unwind(e.into_panic());
    }
}

/// Sends one batch and routes its outcome; every part of it that ends (committed, or in the
/// spool) releases the acknowledgements of the rows it holds.
async fn process(batch: Batch, shared: &Shared) {
    route(batch, shared).await;
}

/// How a part of a batch ended, for the acknowledgements of its rows.
fn release(batch: &Batch, failure: Option<(&Error, &Shared)>) {
    for span in &batch.acks {
        let failed = failure.map(|(error, shared)| Failure {
            rows: batch.rows_in(&span.units),
            error: error.report(),
            code: error.code(),
            spool: shared.spool.dir().to_path_buf(),
        });
        span.ack.release(failed);
    }
}

async fn route(mut batch: Batch, shared: &Shared) {
    let counters = &shared.counters;
    if !batch.rejected.is_empty() {
        let rows = batch.rejected.len() as u64;
        let reason = batch.rejected[0].reason.clone();
        let spool = shared.spool.clone();
        let b = batch.clone();
        let path = write_until_done(move || spool.write_rejected(&b, &b.rejected)).await;
        counters.rows_dead_lettered.fetch_add(rows, Relaxed);
        counters.batches_dead_lettered.fetch_add(1, Relaxed);
        *shared.last_dead_letter_error.lock().unwrap() = Some(reason.clone());
        *shared.last_dead_letter_code.lock().unwrap() = None;
        tracing::warn!(rows, path = %path.display(), %reason, "rejected rows dead-lettered");
        // The refused rows are those of the acknowledgements they came with.
        for span in &mut batch.acks {
            if span.refused > 0 {
                span.ack.fail(Failure {
                    rows: u64::from(span.refused),
                    error: reason.clone(),
                    code: None,
                    spool: shared.spool.dir().to_path_buf(),
                });
                span.refused = 0;
            }
        }
    }
    if batch.is_empty() {
        release(&batch, None);
        return;
    }
    Sink::probe_in_background(&shared.sink, &batch, &shared.counters);
    counters.enter_flight();
    let started = tokio::time::Instant::now();
    let outcome = shared.sink.send(&batch, counters).await;
    counters.leave_flight();
    match outcome {
        Outcome::Committed { attempts } => {
            counters.latency.record(started.elapsed());
            committed(&batch, counters);
            tracing::debug!(attempts, "batch committed");
        }
        Outcome::Failed {
            error, attempts, ..
        } if error.kind() == ErrorKind::Data && batch.splittable() => {
            isolate(batch, error, attempts, shared).await;
        }
        Outcome::Failed {
            error,
            attempts,
            maybe_sent,
        } => {
            batch.maybe_sent = maybe_sent;
            dead_letter(batch, error, attempts, shared).await
        }
    }
}

fn committed(batch: &Batch, counters: &Counters) {
    counters
        .rows_committed
        .fetch_add(batch.rows as u64, Relaxed);
    counters
        .bytes_committed
        .fetch_add(batch.bytes.len() as u64, Relaxed);
    counters.batches_committed.fetch_add(1, Relaxed);
    release(batch, None);
}

/// The server rejected the data of `batch` (so nothing of it landed: one batch is one atomic
/// insert block). Bisect: send each half under a derived id; halves that are rejected again
/// are split again, down to single units, which go to the spool with the server's reason.
/// k bad units among N cost O(k log N) inserts. Each half carries the acknowledgements of its
/// own units, so an acknowledgement hears only of its own rows.
async fn isolate(batch: Batch, error: Error, attempts: u32, shared: &Shared) {
    tracing::info!(rows = batch.rows, error = %error.report(), "server rejected the batch's data: isolating the bad rows");
    let mut rejected = vec![(batch, error, attempts)];
    while let Some((batch, error, attempts)) = rejected.pop() {
        let Some((left, right)) = batch.split() else {
            dead_letter(batch, error, attempts, shared).await;
            continue;
        };
        shared.counters.batches_split.fetch_add(1, Relaxed);
        for half in [right, left] {
            match shared.sink.send(&half, &shared.counters).await {
                Outcome::Committed { .. } => committed(&half, &shared.counters),
                Outcome::Failed {
                    error, attempts, ..
                } if error.kind() == ErrorKind::Data => {
                    rejected.push((half, error, attempts));
                }
                Outcome::Failed {
                    error,
                    attempts,
                    maybe_sent,
                } => {
                    let mut half = half;
                    half.maybe_sent = maybe_sent;
                    dead_letter(half, error, attempts, shared).await
                }
            }
        }
    }
}

async fn dead_letter(batch: Batch, error: Error, attempts: u32, shared: &Shared) {
    let counters = &shared.counters;
    let rows = batch.rows as u64;
    let message = error.report();
    let spool = shared.spool.clone();
    let (b, e) = (batch.clone(), error.report());
    let (code, kind) = (error.code(), error.kind());
    let insert = shared.sink.insert_spec(&batch);
    let path =
        write_until_done(move || spool.write_batch(&b, insert.clone(), &e, code, kind, attempts))
            .await;
    counters.rows_dead_lettered.fetch_add(rows, Relaxed);
    counters.batches_dead_lettered.fetch_add(1, Relaxed);
    *shared.last_dead_letter_error.lock().unwrap() = Some(message.clone());
    *shared.last_dead_letter_code.lock().unwrap() = code;
    tracing::error!(rows, attempts, path = %path.display(), error = %message, "batch dead-lettered");
    release(&batch, Some((&error, shared)));
}

/// Writes to the spool, retrying every second while the disk refuses: rows are never dropped,
/// and a spool that cannot be written stalls the engine (backpressure) instead.
async fn write_until_done<F>(write: F) -> PathBuf
where
    F: Fn() -> Result<PathBuf> + Send + Sync + 'static,
{
    let write = Arc::new(write);
    loop {
        let w = write.clone();
        match tokio::task::spawn_blocking(move || w()).await {
            Ok(Ok(path)) => return path,
            Ok(Err(e)) => {
                tracing::error!(error = %e.report(), "cannot write the dead-letter spool; retrying in 1 s");
            }
            Err(e) => {
                tracing::error!(error = %e, "dead-letter writer task failed; retrying in 1 s")
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
