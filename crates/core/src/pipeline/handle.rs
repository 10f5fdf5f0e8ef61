//! The bounded queue between producers and the batcher, and the producers' [`Handle`].

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use tokio::sync::{mpsc, oneshot};

use crate::batch::RejectedRow;
use crate::batch::ack::{Ack, AckState};
use crate::error::{Error, Result};
use crate::pipeline::writer::{Chunk, Writers};
use crate::stats::{Counters, QueueCounters, Stats};

/// A message to the batcher.
pub(crate) enum Msg<R> {
    Row(R, Option<Arc<AckState>>),
    /// Rows from a [`crate::Writer`], and how many.
    Chunk(Chunk<R>, u64),
    /// Take over the writers' buffers now (a writer was dropped with rows in it).
    Collect,
    /// Every row of this acknowledgement has been queued.
    AckEnd(Arc<AckState>),
    /// Input that never became a row (malformed): dead-lettered with the open batch.
    Reject(RejectedRow),
    Flush(oneshot::Sender<Result<()>>),
    /// Seal the open batch and send it now, without waiting for its outcome.
    Seal,
    Shutdown,
}

/// A cloneable producer handle of an ingestor.
///
/// Rows accepted by [`send`](Self::send) or [`try_send`](Self::try_send) are committed to
/// ClickHouse or written to the dead-letter spool; none is dropped, also not when every
/// handle is dropped (the engine then flushes what it holds and stops).
pub struct Handle<R> {
    pub(crate) tx: mpsc::Sender<Msg<R>>,
    pub(crate) counters: Arc<Counters>,
    /// This pipeline's queue counters.
    pub(crate) queue: Arc<QueueCounters>,
    /// Rows in one input (see [`crate::BatchEncoder::input_rows`]).
    pub(crate) count: fn(&R) -> u64,
    /// Readies an input for the queue (see [`crate::BatchEncoder::prepare`]).
    pub(crate) prepare: fn(R) -> R,
    /// Bounds the rows of multi-row inputs (columnar batches) waiting in the queue.
    pub(crate) gate: Arc<RowGate>,
    /// The buffers of this ingestor's [`crate::Writer`]s.
    pub(crate) writers: Arc<Writers<R>>,
}

/// The queue's bound in rows for inputs that carry many rows at once (a columnar batch is one
/// message but many rows): such an input takes as many permits as it has rows (at most the
/// capacity) before it is queued, and the batcher gives them back when it takes the input.
/// Single-row inputs are bounded by the channel's capacity alone, so the hot path of typed
/// rows pays nothing for it.
#[derive(Debug)]
pub(crate) struct RowGate {
    rows: tokio::sync::Semaphore,
    capacity: u64,
}

impl RowGate {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            rows: tokio::sync::Semaphore::new(capacity),
            capacity: capacity as u64,
        }
    }

    fn permits(&self, n: u64) -> u32 {
        n.min(self.capacity).min(u32::MAX as u64) as u32
    }

    /// Waits for room for an input of `n` rows.
    async fn admit(&self, n: u64) {
        if n > 1 {
            self.rows
                .acquire_many(self.permits(n))
                .await
                .expect("the row gate is never closed")
                .forget();
        }
    }

    /// Waits for room for `n` rows; the room is held until the permit is forgotten (the
    /// rows were queued) or dropped (they were not). `None` when `n` needs none.
    pub(crate) async fn room(&self, n: u64) -> Option<tokio::sync::SemaphorePermit<'_>> {
        if n <= 1 {
            return None;
        }
        Some(
            self.rows
                .acquire_many(self.permits(n))
                .await
                .expect("the row gate is never closed"),
        )
    }

    /// Takes room for an input of `n` rows if there is some now.
    fn try_admit(&self, n: u64) -> bool {
        if n <= 1 {
            return true;
        }
        match self.rows.try_acquire_many(self.permits(n)) {
            Ok(p) => {
                p.forget();
                true
            }
            Err(_) => false,
        }
    }

    /// Gives back the room of an input of `n` rows (taken out of the queue, or not queued).
    pub(crate) fn release(&self, n: u64) {
        if n > 1 {
            self.rows.add_permits(self.permits(n) as usize);
        }
    }
}

impl<R> Clone for Handle<R> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            counters: self.counters.clone(),
            queue: self.queue.clone(),
            count: self.count,
            prepare: self.prepare,
            gate: self.gate.clone(),
            writers: self.writers.clone(),
        }
    }
}

impl<R> fmt::Debug for Handle<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handle")
            .field("closed", &self.tx.is_closed())
            .finish()
    }
}

/// `send` failed because the ingestor is shut down; the row is handed back.
pub struct SendError<R>(pub R);

/// `try_send` could not take the row; the row is handed back.
pub enum TrySendError<R> {
    /// The queue is full: retry later or use `send`, which waits.
    Full(R),
    /// The ingestor is shut down.
    Closed(R),
}

impl<R> TrySendError<R> {
    /// The row that was not taken.
    pub fn into_inner(self) -> R {
        match self {
            Self::Full(r) | Self::Closed(r) => r,
        }
    }
}

impl<R> fmt::Debug for SendError<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SendError(..)")
    }
}

impl<R> fmt::Display for SendError<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the ingestor is shut down; the row was not accepted")
    }
}

impl<R> std::error::Error for SendError<R> {}

impl<R> fmt::Debug for TrySendError<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Full(_) => f.write_str("Full(..)"),
            Self::Closed(_) => f.write_str("Closed(..)"),
        }
    }
}

impl<R> fmt::Display for TrySendError<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Full(_) => f.write_str("the queue is full; the row was not accepted"),
            Self::Closed(_) => f.write_str("the ingestor is shut down; the row was not accepted"),
        }
    }
}

impl<R> std::error::Error for TrySendError<R> {}

impl<R: Send + 'static> Handle<R> {
    /// Queues a row, waiting while the queue is full (backpressure).
    pub async fn send(&self, row: R) -> std::result::Result<(), SendError<R>> {
        let row = (self.prepare)(row);
        let n = (self.count)(&row);
        self.gate.admit(n).await;
        match self.tx.send(Msg::Row(row, None)).await {
            Ok(()) => {
                self.queue.rows_accepted.fetch_add(n, Relaxed);
                Ok(())
            }
            Err(mpsc::error::SendError(msg)) => {
                self.gate.release(n);
                Err(SendError(into_row(msg)))
            }
        }
    }

    /// Queues a row if there is room now; otherwise hands it back.
    pub fn try_send(&self, row: R) -> std::result::Result<(), TrySendError<R>> {
        let row = (self.prepare)(row);
        let n = (self.count)(&row);
        if !self.gate.try_admit(n) {
            return Err(if self.tx.is_closed() {
                TrySendError::Closed(row)
            } else {
                TrySendError::Full(row)
            });
        }
        match self.tx.try_send(Msg::Row(row, None)) {
            Ok(()) => {
                self.queue.rows_accepted.fetch_add(n, Relaxed);
                Ok(())
            }
            Err(mpsc::error::TrySendError::Full(msg)) => {
                self.gate.release(n);
                Err(TrySendError::Full(into_row(msg)))
            }
            Err(mpsc::error::TrySendError::Closed(msg)) => {
                self.gate.release(n);
                Err(TrySendError::Closed(into_row(msg)))
            }
        }
    }

    /// Queues many rows, waiting for room as needed; on shutdown returns the rows not taken.
    ///
    /// The rows go through a [`crate::Writer`] (encoded on the caller's thread when the
    /// encoder can, handed over in chunks), so this costs far less per row than calling
    /// [`send`](Self::send) in a loop.
    pub async fn send_all(
        &self,
        rows: impl IntoIterator<Item = R>,
    ) -> std::result::Result<(), SendError<Vec<R>>> {
        let mut writer = self.writer();
        writer.write_all(rows).await?;
        writer.close().await;
        Ok(())
    }

    /// Dead-letters input that could not become a row (e.g. a malformed line), with its
    /// reason: it goes to the spool with the batch open at the time, through the same path as
    /// rows the encoder refuses, and counts in [`Stats::rows_dead_lettered`].
    pub async fn reject(&self, reason: String, record: Option<String>) -> Result<()> {
        self.queue.rows_accepted.fetch_add(1, Relaxed);
        self.tx
            .send(Msg::Reject(RejectedRow { reason, record }))
            .await
            .map_err(|_| Error::Closed)
    }

    /// Queues rows (waiting for room as needed) and returns an [`Ack`] that resolves when
    /// every batch holding any of them has ended: `Ok` when all were committed. Rows batch
    /// with other producers' rows as usual; no flush is forced.
    pub async fn send_acked(
        &self,
        rows: impl IntoIterator<Item = R>,
    ) -> std::result::Result<Ack, SendError<Vec<R>>> {
        let (state, ack) = AckState::new(1);
        let mut rows = rows.into_iter();
        while let Some(row) = rows.next() {
            let row = (self.prepare)(row);
            let n = (self.count)(&row);
            self.gate.admit(n).await;
            match self.tx.send(Msg::Row(row, Some(state.clone()))).await {
                Ok(()) => {
                    self.queue.rows_accepted.fetch_add(n, Relaxed);
                }
                Err(mpsc::error::SendError(msg)) => {
                    self.gate.release(n);
                    let mut rest = vec![into_row(msg)];
                    rest.extend(rows);
                    return Err(SendError(rest));
                }
            }
        }
        if self.tx.send(Msg::AckEnd(state.clone())).await.is_err() {
            // Shut down after the rows were queued: the engine drains them, but this marker
            // is lost; release the hold here.
            state.release(None);
        }
        Ok(ack)
    }

    /// Returns when every row queued before this call is committed or dead-lettered.
    ///
    /// Fails with [`Error::DeadLettered`] when batches were dead-lettered since the previous
    /// flush, and with [`Error::Closed`] after shutdown.
    pub async fn flush(&self) -> Result<()> {
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Msg::Flush(done))
            .await
            .map_err(|_| Error::Closed)?;
        wait.await.map_err(|_| Error::Closed)?
    }

    /// Seals the batch being filled and sends it now, with every row queued before this call,
    /// without waiting for the outcome (waits only for room in the queue).
    ///
    /// Unlike [`flush`](Self::flush) it reports nothing: batches dead-lettered since the
    /// previous flush are still reported by the next one.
    pub async fn seal(&self) -> Result<()> {
        self.tx.send(Msg::Seal).await.map_err(|_| Error::Closed)
    }

    /// A snapshot of the ingestor's counters.
    pub fn stats(&self) -> Stats {
        self.counters.snapshot_of(&self.queue)
    }

    /// Rows accepted and not yet taken off the queue by the batcher (cheaper than
    /// [`stats`](Self::stats)).
    pub fn queue_depth(&self) -> u64 {
        let accepted = self.queue.rows_accepted.load(Relaxed);
        accepted.saturating_sub(self.queue.rows_queued_out.load(Relaxed))
    }

    /// Whether the ingestor still accepts rows.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

pub(crate) fn into_row<R>(msg: Msg<R>) -> R {
    match msg {
        Msg::Row(r, _) => r,
        _ => unreachable!("only rows are handed back"),
    }
}

#[cfg(test)]
mod tests {
    use super::RowGate;

    #[tokio::test]
    async fn the_row_gate_bounds_multi_row_inputs_only() {
        let gate = RowGate::new(1000);
        // Single rows never touch it.
        assert!(gate.try_admit(1));
        assert_eq!(gate.rows.available_permits(), 1000);
        assert!(gate.try_admit(800));
        assert!(!gate.try_admit(300), "only 200 rows of room left");
        assert!(gate.try_admit(1));
        // An input larger than the whole queue takes all of it (once there is all of it).
        gate.release(800);
        gate.admit(5000).await;
        assert_eq!(gate.rows.available_permits(), 0);
        assert!(!gate.try_admit(2));
        gate.release(5000);
        assert_eq!(gate.rows.available_permits(), 1000);
    }
}
