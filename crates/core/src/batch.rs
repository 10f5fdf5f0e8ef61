//! The batcher: takes rows off the queue, encodes them, and seals a batch on rows, bytes or
//! linger time, whichever comes first.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::time::Instant;
use uuid::Uuid;

use crate::dedup::StreamId;
use crate::dispatch::Work;
use crate::encode::{BatchEncoder, RejectedRow};
use crate::queue::Msg;
use crate::stats::Counters;

/// The unit that moves from the batcher to the dispatcher and, if need be, to the
/// dead-letter spool.
#[derive(Debug, Clone)]
pub struct Batch {
    /// Deterministic id: dedup token, `query_id` and `_insert_id` value.
    pub id: Uuid,
    /// The stream the id derives from.
    pub stream_id: Uuid,
    /// Sequence number of the batch in its stream.
    pub sequence: u64,
    /// Database of the target table.
    pub database: Arc<str>,
    /// Target table.
    pub table: Arc<str>,
    /// Columns of the insert (empty: all, in table order).
    pub columns: Arc<[String]>,
    /// Format of `bytes`.
    pub format: &'static str,
    /// The encoded rows, sent as they are by every attempt.
    pub bytes: Bytes,
    /// Rows in `bytes`.
    pub rows: usize,
    /// Rows the encoder refused while this batch was open.
    pub rejected: Vec<RejectedRow>,
}

/// Sealing thresholds.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    pub max_rows: usize,
    pub max_bytes: usize,
    pub linger: Duration,
}

/// Identity of what the batches go to.
pub(crate) struct Target {
    pub database: Arc<str>,
    pub table: Arc<str>,
    pub stream_id: StreamId,
    pub first_sequence: u64,
}

struct Open {
    id: Uuid,
    sequence: u64,
    deadline: Instant,
    rejected: Vec<RejectedRow>,
}

/// Runs until the queue closes (shutdown, or every handle dropped), then seals what it holds
/// and closes the dispatcher's channel.
pub(crate) async fn run<E: BatchEncoder>(
    mut rx: mpsc::Receiver<Msg<E::Row>>,
    mut encoder: E,
    out: mpsc::Sender<Work>,
    limits: Limits,
    target: Target,
    counters: Arc<Counters>,
) {
    let mut next_seq = target.first_sequence;
    let mut open: Option<Open> = None;
    let mut last_columns: Option<Arc<[String]>> = None;
    let mut inbox: Vec<Msg<E::Row>> = Vec::with_capacity(1024);
    let linger = tokio::time::sleep(Duration::from_secs(3600));
    tokio::pin!(linger);

    let seal = |open: &mut Option<Open>,
                encoder: &mut E,
                last_columns: &mut Option<Arc<[String]>>|
     -> Option<Batch> {
        let o = open.take()?;
        let enc = encoder.finish();
        let columns = match last_columns {
            Some(c) if c[..] == enc.columns[..] => c.clone(),
            _ => {
                let c: Arc<[String]> = enc.columns.into();
                *last_columns = Some(c.clone());
                c
            }
        };
        counters.batches_sealed.fetch_add(1, Relaxed);
        Some(Batch {
            id: o.id,
            stream_id: target.stream_id.0,
            sequence: o.sequence,
            database: target.database.clone(),
            table: target.table.clone(),
            columns,
            format: enc.format,
            bytes: enc.bytes,
            rows: enc.rows,
            rejected: o.rejected,
        })
    };

    'main: loop {
        let timer_armed = open.is_some();
        tokio::select! {
            biased;
            n = rx.recv_many(&mut inbox, 1024) => {
                if n == 0 {
                    break 'main;
                }
                let mut rows_out = 0u64;
                for msg in inbox.drain(..) {
                    match msg {
                        Msg::Row(row) => {
                            rows_out += 1;
                            if open.is_none() {
                                let sequence = next_seq;
                                next_seq += 1;
                                let id = target.stream_id.batch_id(sequence);
                                encoder.begin(id);
                                let deadline = Instant::now() + limits.linger;
                                linger.as_mut().reset(deadline);
                                open = Some(Open { id, sequence, deadline, rejected: Vec::new() });
                            }
                            if let Err(rejected) = encoder.push(row) {
                                counters.rows_rejected.fetch_add(1, Relaxed);
                                if let Some(o) = open.as_mut() {
                                    o.rejected.push(rejected);
                                }
                            }
                            if encoder.rows() >= limits.max_rows || encoder.bytes() >= limits.max_bytes {
                                if let Some(b) = seal(&mut open, &mut encoder, &mut last_columns) {
                                    counters.rows_queued_out.fetch_add(rows_out, Relaxed);
                                    rows_out = 0;
                                    if out.send(Work::Batch(b)).await.is_err() {
                                        break 'main;
                                    }
                                }
                            }
                        }
                        Msg::Flush(done) => {
                            if let Some(b) = seal(&mut open, &mut encoder, &mut last_columns) {
                                let _ = out.send(Work::Batch(b)).await;
                            }
                            let _ = out.send(Work::Flush(done)).await;
                        }
                        Msg::Shutdown => {
                            // Stop accepting; what is already queued is still drained.
                            rx.close();
                        }
                    }
                }
                counters.rows_queued_out.fetch_add(rows_out, Relaxed);
            }
            _ = &mut linger, if timer_armed => {
                if open.as_ref().is_some_and(|o| Instant::now() >= o.deadline) {
                    if let Some(b) = seal(&mut open, &mut encoder, &mut last_columns) {
                        if out.send(Work::Batch(b)).await.is_err() {
                            break 'main;
                        }
                    }
                }
            }
        }
    }
    if let Some(b) = seal(&mut open, &mut encoder, &mut last_columns) {
        let _ = out.send(Work::Batch(b)).await;
    }
}
