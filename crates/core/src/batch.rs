//! The batcher: takes rows off the queue, encodes them, and seals a batch on rows, bytes or
//! linger time, whichever comes first.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::time::Instant;
use uuid::Uuid;

use crate::ack::AckState;
use crate::dedup::StreamId;
use crate::dispatch::Work;
use crate::encode::{BatchEncoder, RejectedRow, RowSourceRef};
use crate::queue::{Msg, RowGate};
use crate::stats::Counters;
use crate::writer::{Chunk, Spare, Writers};

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
    /// Where each row starts in `bytes`, when the format allows splitting at rows.
    pub row_offsets: Option<Arc<[u32]>>,
    /// The batch's rows, when its bytes cannot be split at rows (Native).
    pub source: Option<RowSourceRef>,
    /// Acknowledgements waiting for this batch.
    pub(crate) acks: Vec<Arc<AckState>>,
}

impl Batch {
    /// Splits the batch into two halves at a row boundary, each with an id derived from this
    /// batch's id (`id/0`, `id/1`). Only for a batch known not to have landed (the server
    /// rejected its data: one batch is one atomic insert block). `None` when the batch has
    /// one row or its format cannot be split.
    pub fn split(&self) -> Option<(Batch, Batch)> {
        if self.rows < 2 {
            return None;
        }
        if self.row_offsets.is_none()
            && let Some(source) = &self.source
        {
            let mid = self.rows / 2;
            let half = |part: u32, range: std::ops::Range<usize>| {
                let id = crate::dedup::derived_id(&self.id, part);
                let enc = source.0.encode(range, id);
                Batch {
                    id,
                    stream_id: self.stream_id,
                    sequence: self.sequence,
                    database: self.database.clone(),
                    table: self.table.clone(),
                    columns: enc.columns.into(),
                    format: enc.format,
                    bytes: enc.bytes,
                    rows: enc.rows,
                    rejected: Vec::new(),
                    row_offsets: None,
                    source: enc.source,
                    acks: Vec::new(),
                }
            };
            return Some((half(0, 0..mid), half(1, mid..self.rows)));
        }
        let offsets = self.row_offsets.as_ref()?;
        if self.rows < 2 || offsets.len() != self.rows {
            return None;
        }
        let mid = self.rows / 2;
        let cut = offsets[mid] as usize;
        let half = |part: u32, rows: std::ops::Range<usize>, bytes: std::ops::Range<usize>| {
            let base = bytes.start as u32;
            Batch {
                id: crate::dedup::derived_id(&self.id, part),
                stream_id: self.stream_id,
                sequence: self.sequence,
                database: self.database.clone(),
                table: self.table.clone(),
                columns: self.columns.clone(),
                format: self.format,
                bytes: self.bytes.slice(bytes),
                rows: rows.len(),
                rejected: Vec::new(),
                row_offsets: Some(offsets[rows].iter().map(|o| o - base).collect()),
                source: None,
                acks: Vec::new(),
            }
        };
        Some((
            half(0, 0..mid, 0..cut),
            half(1, mid..self.rows, cut..self.bytes.len()),
        ))
    }
}

/// Sealing thresholds.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Seal at this many rows.
    pub max_rows: usize,
    /// Seal at this many encoded bytes.
    pub max_bytes: usize,
    /// Seal this long after the first row of a batch.
    pub linger: Duration,
}

/// What the batches go to, and where their ids come from.
#[derive(Debug, Clone)]
pub struct Target {
    /// Database of the table.
    pub database: Arc<str>,
    /// The table.
    pub table: Arc<str>,
    /// The stream the batch ids derive from.
    pub stream_id: StreamId,
    /// Sequence number of the first batch.
    pub first_sequence: u64,
}

struct Open {
    id: Uuid,
    sequence: u64,
    deadline: Instant,
    rejected: Vec<RejectedRow>,
    acks: Vec<Arc<AckState>>,
}

/// Accumulates encoded rows and seals batches on rows or bytes; the caller seals on linger
/// (see [`Batcher::deadline`]). Synchronous: the engine runs it in its batcher task.
pub struct Batcher<E: BatchEncoder> {
    encoder: E,
    limits: Limits,
    target: Target,
    next_seq: u64,
    open: Option<Open>,
    last_columns: Option<Arc<[String]>>,
}

impl<E: BatchEncoder> Batcher<E> {
    /// A batcher with the given encoder, thresholds and target.
    pub fn new(encoder: E, limits: Limits, target: Target) -> Self {
        let next_seq = target.first_sequence;
        Self {
            encoder,
            limits,
            target,
            next_seq,
            open: None,
            last_columns: None,
        }
    }

    /// The encoder's producer-side row encoder, if it has one.
    pub(crate) fn row_encoder(&self) -> Option<Box<dyn crate::encode::RowEncoder<E::Row>>> {
        self.encoder.row_encoder()
    }

    /// When the open batch must be sealed, if one is open.
    pub fn deadline(&self) -> Option<Instant> {
        self.open.as_ref().map(|o| o.deadline)
    }

    /// Adds a row. Returns the batch this row filled, if any, and how many rows the encoder
    /// refused (refused rows are kept with the open batch, for the spool).
    pub fn push(&mut self, row: E::Row) -> (Option<Batch>, usize) {
        self.push_acked(row, None)
    }

    pub(crate) fn push_acked(
        &mut self,
        row: E::Row,
        ack: Option<&Arc<AckState>>,
    ) -> (Option<Batch>, usize) {
        if self.open.is_none() {
            self.open_batch();
        }
        if let (Some(ack), Some(open)) = (ack, self.open.as_mut())
            && !open.acks.last().is_some_and(|a| Arc::ptr_eq(a, ack))
        {
            ack.hold();
            open.acks.push(ack.clone());
        }
        let open = self.open.as_mut().expect("opened above");
        let before = open.rejected.len();
        self.encoder.push(row, &mut open.rejected);
        let rejected = open.rejected.len() - before;
        let full = self.encoder.rows() >= self.limits.max_rows
            || self.encoder.bytes() >= self.limits.max_bytes;
        (if full { self.seal() } else { None }, rejected)
    }

    /// Adds a chunk of rows from a writer, sealing as many batches as it fills (into
    /// `sealed`) exactly where rows one by one would have; an encoded chunk, spent, goes to
    /// `spare` for a writer to fill again. Returns how many rows the encoder refused.
    pub(crate) fn push_chunk(
        &mut self,
        chunk: Chunk<E::Row>,
        sealed: &mut Vec<Batch>,
        spare: &Spare,
    ) -> usize {
        match chunk {
            Chunk::Rows(rows) => {
                let mut refused = 0;
                for row in rows {
                    let (batch, r) = self.push_acked(row, None);
                    refused += r;
                    sealed.extend(batch);
                }
                refused
            }
            Chunk::Encoded(enc) => {
                let n = enc.rows();
                let mut i = 0;
                while i < n {
                    if self.open.is_none() {
                        self.open_batch();
                    }
                    let room = self.limits.max_rows.saturating_sub(self.encoder.rows());
                    let mut k = room.clamp(1, n - i);
                    // A row joins the batch when the batch is below max_bytes before it.
                    let have = self.encoder.bytes();
                    if have + enc.byte_range(i..n).len() >= self.limits.max_bytes {
                        let base = enc.offsets[i] as usize;
                        let left = self.limits.max_bytes.saturating_sub(have);
                        let fit =
                            enc.offsets[i..n].partition_point(|&o| (o as usize - base) < left);
                        k = k.min(fit.max(1));
                    }
                    self.encoder.push_encoded(&enc, i..i + k);
                    i += k;
                    if self.encoder.rows() >= self.limits.max_rows
                        || self.encoder.bytes() >= self.limits.max_bytes
                    {
                        sealed.extend(self.seal());
                    }
                }
                spare.put(enc);
                0
            }
        }
    }

    /// Keeps input that never became a row with the open batch (opening one if needed), for
    /// the spool. Returns a batch when rejected input piles up without rows to seal it.
    pub fn reject(&mut self, rejected: RejectedRow) -> Option<Batch> {
        if self.open.is_none() {
            self.open_batch();
        }
        let open = self.open.as_mut()?;
        open.rejected.push(rejected);
        (open.rejected.len() >= self.limits.max_rows).then(|| self.seal())?
    }

    fn open_batch(&mut self) {
        let sequence = self.next_seq;
        self.next_seq += 1;
        let id = self.target.stream_id.batch_id(sequence);
        self.encoder.begin(id);
        self.open = Some(Open {
            id,
            sequence,
            deadline: Instant::now() + self.limits.linger,
            rejected: Vec::new(),
            acks: Vec::new(),
        });
    }

    /// Seals the open batch, if any.
    pub fn seal(&mut self) -> Option<Batch> {
        let o = self.open.take()?;
        let enc = self.encoder.finish();
        let columns = match &self.last_columns {
            Some(c) if c[..] == enc.columns[..] => c.clone(),
            _ => {
                let c: Arc<[String]> = enc.columns.into();
                self.last_columns = Some(c.clone());
                c
            }
        };
        Some(Batch {
            id: o.id,
            stream_id: self.target.stream_id.0,
            sequence: o.sequence,
            database: self.target.database.clone(),
            table: self.target.table.clone(),
            columns,
            format: enc.format,
            bytes: enc.bytes,
            rows: enc.rows,
            rejected: o.rejected,
            row_offsets: enc.row_offsets.map(Arc::from),
            source: enc.source,
            acks: o.acks,
        })
    }
}

/// Runs until the queue closes (shutdown, or every handle dropped), then takes over what
/// writers still buffer, seals what it holds and closes the dispatcher's channel.
pub(crate) async fn run<E: BatchEncoder>(
    mut rx: mpsc::Receiver<Msg<E::Row>>,
    mut batcher: Batcher<E>,
    out: mpsc::Sender<Work>,
    counters: Arc<Counters>,
    gate: Arc<RowGate>,
    writers: Arc<Writers<E::Row>>,
) {
    let mut inbox: Vec<Msg<E::Row>> = Vec::with_capacity(1024);
    let mut sealed: Vec<Batch> = Vec::new();
    let linger = tokio::time::sleep(Duration::from_secs(3600));
    tokio::pin!(linger);
    let mut look = tokio::time::interval(writers.linger().max(Duration::from_millis(1)));
    look.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Batches go out in order; false once the dispatcher is gone.
    let send_all = async |sealed: &mut Vec<Batch>| {
        for b in sealed.drain(..) {
            counters.batches_sealed.fetch_add(1, Relaxed);
            if out.send(Work::Batch(Box::new(b))).await.is_err() {
                return false;
            }
        }
        true
    };
    // Writers' buffers taken over here were never counted as accepted.
    let adopt =
        |batcher: &mut Batcher<E>, taken: Vec<(Chunk<E::Row>, u64)>, sealed: &mut Vec<Batch>| {
            for (chunk, n) in taken {
                counters.rows_accepted.fetch_add(n, Relaxed);
                counters.rows_queued_out.fetch_add(n, Relaxed);
                let refused = batcher.push_chunk(chunk, sealed, &writers.spare);
                counters.rows_rejected.fetch_add(refused as u64, Relaxed);
            }
        };

    'main: loop {
        let deadline = batcher.deadline();
        if let Some(d) = deadline
            && linger.deadline() != d
        {
            linger.as_mut().reset(d);
        }
        tokio::select! {
            biased;
            n = rx.recv_many(&mut inbox, 1024) => {
                if n == 0 {
                    break 'main;
                }
                let mut rows_out = 0u64;
                for msg in inbox.drain(..) {
                    match msg {
                        Msg::AckEnd(ack) => ack.release(None),
                        Msg::Reject(rejected) => {
                            rows_out += 1;
                            counters.rows_rejected.fetch_add(1, Relaxed);
                            sealed.extend(batcher.reject(rejected));
                        }
                        Msg::Row(row, ack) => {
                            let n = E::input_rows(&row);
                            rows_out += n;
                            gate.release(n);
                            let (batch, rejected) = batcher.push_acked(row, ack.as_ref());
                            if rejected > 0 {
                                counters.rows_rejected.fetch_add(rejected as u64, Relaxed);
                            }
                            sealed.extend(batch);
                        }
                        Msg::Chunk(chunk, n) => {
                            rows_out += n;
                            gate.release(n);
                            let refused = batcher.push_chunk(chunk, &mut sealed, &writers.spare);
                            if refused > 0 {
                                counters.rows_rejected.fetch_add(refused as u64, Relaxed);
                            }
                        }
                        Msg::Collect => adopt(&mut batcher, writers.take(true, false), &mut sealed),
                        Msg::Flush(done) => {
                            adopt(&mut batcher, writers.take(true, false), &mut sealed);
                            sealed.extend(batcher.seal());
                            counters.rows_queued_out.fetch_add(std::mem::take(&mut rows_out), Relaxed);
                            if !send_all(&mut sealed).await {
                                break 'main;
                            }
                            let _ = out.send(Work::Flush(done)).await;
                        }
                        Msg::Shutdown => {
                            // Stop accepting; what is already queued is still drained.
                            rx.close();
                        }
                    }
                    if !sealed.is_empty() {
                        counters.rows_queued_out.fetch_add(std::mem::take(&mut rows_out), Relaxed);
                        if !send_all(&mut sealed).await {
                            break 'main;
                        }
                    }
                }
                counters.rows_queued_out.fetch_add(rows_out, Relaxed);
            }
            _ = &mut linger, if deadline.is_some() => {
                sealed.extend(batcher.seal());
                if !send_all(&mut sealed).await {
                    break 'main;
                }
            }
            _ = look.tick(), if writers.any() => {
                adopt(&mut batcher, writers.take(false, false), &mut sealed);
                if !send_all(&mut sealed).await {
                    break 'main;
                }
            }
        }
    }
    adopt(&mut batcher, writers.take(true, true), &mut sealed);
    sealed.extend(batcher.seal());
    send_all(&mut sealed).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::RowBinary;

    #[derive(clickhouse::Row, serde::Serialize)]
    struct R {
        a: u64,
        s: String,
    }

    fn batcher(max_rows: usize, max_bytes: usize) -> Batcher<RowBinary<R>> {
        Batcher::new(
            RowBinary::new(None),
            Limits {
                max_rows,
                max_bytes,
                linger: Duration::from_secs(60),
            },
            Target {
                database: Arc::from("db"),
                table: Arc::from("t"),
                stream_id: StreamId::named("x"),
                first_sequence: 5,
            },
        )
    }

    #[tokio::test]
    async fn seals_on_rows_then_bytes_with_sequential_ids() {
        let mut b = batcher(3, usize::MAX);
        assert!(b.deadline().is_none());
        let mut sealed = Vec::new();
        for a in 0..7 {
            if let (Some(batch), 0) = b.push(R { a, s: "x".into() }) {
                sealed.push(batch);
            }
        }
        assert_eq!(sealed.len(), 2);
        assert!(b.deadline().is_some());
        let last = b.seal().unwrap();
        assert_eq!(last.rows, 1);
        assert!(b.seal().is_none());
        assert_eq!(sealed[0].rows, 3);
        assert_eq!(sealed[0].bytes.len(), 3 * (8 + 2));
        assert_eq!(&sealed[0].columns[..], &["a".to_string(), "s".to_string()]);
        assert_eq!(
            [sealed[0].sequence, sealed[1].sequence, last.sequence],
            [5, 6, 7]
        );
        assert_eq!(sealed[1].id, StreamId::named("x").batch_id(6));

        // Splitting halves at a row boundary with derived ids.
        let (l, r) = sealed[0].split().unwrap();
        assert_eq!((l.rows, r.rows), (1, 2));
        assert_eq!(l.bytes.len() + r.bytes.len(), sealed[0].bytes.len());
        assert_eq!(&r.bytes[..], &sealed[0].bytes[10..]);
        assert_eq!(r.row_offsets.as_deref(), Some(&[0u32, 10][..]));
        assert_eq!(l.id, crate::dedup::derived_id(&sealed[0].id, 0));
        assert_ne!(l.id, r.id);
        let (rl, rr) = r.split().unwrap();
        assert_eq!((rl.rows, rr.rows), (1, 1));
        assert_eq!(&rr.bytes[..], &sealed[0].bytes[20..]);
        assert!(rr.split().is_none());

        // 10 bytes a row: a 25-byte limit seals at the third row.
        let mut b = batcher(usize::MAX, 25);
        assert!(
            b.push(R {
                a: 1,
                s: "x".into()
            })
            .0
            .is_none()
        );
        assert!(
            b.push(R {
                a: 2,
                s: "x".into()
            })
            .0
            .is_none()
        );
        assert_eq!(
            b.push(R {
                a: 3,
                s: "x".into()
            })
            .0
            .unwrap()
            .rows,
            3
        );
    }

    #[tokio::test]
    async fn encoded_chunks_seal_where_single_rows_would() {
        use crate::dedup::{InsertIdColumn, InsertIdType};
        let id_col = InsertIdColumn {
            name: "_insert_id".into(),
            ty: InsertIdType::Uuid,
        };
        let row = |a: u64| R {
            a,
            s: "x".repeat(a as usize % 7),
        };
        for (max_rows, max_bytes) in [(3, usize::MAX), (usize::MAX, 100), (4, 90), (1, 1)] {
            let limits = Limits {
                max_rows,
                max_bytes,
                linger: Duration::from_secs(60),
            };
            let target = Target {
                database: Arc::from("db"),
                table: Arc::from("t"),
                stream_id: StreamId::named("x"),
                first_sequence: 0,
            };
            let make = || {
                Batcher::new(
                    RowBinary::<R>::new(Some(id_col.clone())),
                    limits.clone(),
                    target.clone(),
                )
            };
            let mut one = make();
            let mut by_row: Vec<Batch> = (0..40).filter_map(|a| one.push(row(a)).0).collect();
            by_row.extend(one.seal());

            let mut chunked = make();
            let mut enc = chunked.row_encoder().unwrap();
            let mut out = Vec::new();
            for part in [0..5u64, 5..6, 6..29, 29..40] {
                let mut chunk = crate::encode::EncodedRows::default();
                for a in part {
                    chunk.push(&mut *enc, &row(a)).unwrap();
                }
                assert_eq!(
                    chunked.push_chunk(Chunk::Encoded(chunk), &mut out, &Spare::default()),
                    0
                );
            }
            out.extend(chunked.seal());
            let shape = |b: &[Batch]| {
                b.iter()
                    .map(|b| (b.id, b.rows, b.bytes.clone(), b.row_offsets.clone()))
                    .collect::<Vec<_>>()
            };
            assert_eq!(
                shape(&out),
                shape(&by_row),
                "{max_rows} rows, {max_bytes} bytes"
            );
        }
    }
}
