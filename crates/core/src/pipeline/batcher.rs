//! The batcher: takes rows off the queue, encodes them, and seals a batch on rows, bytes or
//! linger time, whichever comes first.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use uuid::Uuid;

use crate::batch::ack::{Ack, AckSpan, AckState};
use crate::batch::{Batch, Origin, RejectedRow};
use crate::catalog::Catalog;
use crate::config::Credentials;
use crate::dedup::StreamId;
use crate::delivery::dispatcher::Work;
use crate::format::{BatchEncoder, Push};
use crate::pipeline::handle::{Msg, RowGate};
use crate::pipeline::writer::{Chunk, Spare, Writers};
use crate::stats::{Counters, QueueCounters};
use crate::types::schema::TableSchema;

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

/// What the batches go to, as whom and with which settings, and where their ids come from.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Target {
    /// Database of the table.
    pub database: Arc<str>,
    /// The table.
    pub table: Arc<str>,
    /// The stream the batch ids derive from.
    pub stream_id: StreamId,
    /// Sequence number of the first batch.
    pub first_sequence: u64,
    /// The number of the first input (inputs are numbered in the order they reach the
    /// batcher; a batch records the range of its inputs, see [`Batch::inputs`]).
    pub first_input: u64,
    /// ClickHouse settings sent with every insert of these batches.
    pub settings: Arc<[(String, String)]>,
    /// The user the batches are inserted as (`None`: the dispatcher's).
    pub credentials: Option<Credentials>,
}

impl Target {
    /// The batches of a pipeline of `config`: its table, stream (random when it names none),
    /// first sequence number, settings and user.
    pub fn of(config: &crate::config::Config) -> Self {
        let mut t = Target::new(
            &config.clickhouse.database,
            &config.table,
            config.delivery.stream_id.unwrap_or_else(StreamId::random),
        );
        t.first_sequence = config.delivery.first_sequence;
        t.settings = config
            .clickhouse
            .settings
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        t.credentials = config.clickhouse.user.as_ref().map(|user| Credentials {
            user: user.clone(),
            password: config.clickhouse.password.clone().unwrap_or_default(),
        });
        t
    }

    /// Batches of `database.table`, with ids of `stream_id` from sequence 0, inputs numbered
    /// from 0, no settings, inserted as the dispatcher's user.
    pub fn new(database: &str, table: &str, stream_id: StreamId) -> Self {
        Self {
            database: Arc::from(database),
            table: Arc::from(table),
            stream_id,
            first_sequence: 0,
            first_input: 0,
            settings: Arc::from(Vec::new()),
            credentials: None,
        }
    }
}

/// What became of a row pushed into the batcher.
pub(crate) enum Pushed<R> {
    /// Taken: the batch it filled, if any, and how many rows the encoder refused.
    Done {
        sealed: Option<Box<Batch>>,
        refused: usize,
    },
    /// The encoder wants a fresher schema; the row is handed back.
    Stale(R),
}

/// How the batcher task reads a table again when its encoder asks: through the catalog, on
/// the engine's runtime (the batcher's own thread only waits).
pub(crate) struct Refresh {
    pub catalog: Arc<Catalog>,
    pub runtime: tokio::runtime::Handle,
}

impl Refresh {
    async fn schema(&self, target: &Target) -> Option<Arc<TableSchema>> {
        let (catalog, database, table) = (
            self.catalog.clone(),
            target.database.clone(),
            target.table.clone(),
        );
        let read = self
            .runtime
            .spawn(async move { catalog.refresh(&database, &table).await });
        match read.await {
            Ok(Ok(schema)) => Some(schema),
            Ok(Err(e)) => {
                tracing::warn!(error = %e.report(), "schema refresh failed");
                None
            }
            Err(_) => None,
        }
    }
}

struct Open {
    id: Uuid,
    sequence: u64,
    first_input: u64,
    deadline: Instant,
    rejected: Vec<RejectedRow>,
    acks: Vec<AckSpan>,
}

/// Accumulates encoded rows and seals batches on rows or bytes; the caller seals on linger
/// (see [`Batcher::deadline`]). Synchronous: the engine runs it in its batcher task.
pub struct Batcher<E: BatchEncoder> {
    encoder: E,
    limits: Limits,
    target: Target,
    next_seq: u64,
    next_input: u64,
    open: Option<Open>,
    last_columns: Option<Arc<[String]>>,
}

impl<E: BatchEncoder> Batcher<E> {
    /// A batcher with the given encoder, thresholds and target.
    pub fn new(encoder: E, limits: Limits, target: Target) -> Self {
        let next_seq = target.first_sequence;
        let next_input = target.first_input;
        Self {
            encoder,
            limits,
            target,
            next_seq,
            next_input,
            open: None,
            last_columns: None,
        }
    }

    /// The encoder's producer-side row encoder, if it has one.
    pub(crate) fn row_encoder(&self) -> Option<Box<dyn crate::format::RowEncoder<E::Row>>> {
        self.encoder.row_encoder()
    }

    /// When the open batch must be sealed, if one is open.
    pub fn deadline(&self) -> Option<Instant> {
        self.open.as_ref().map(|o| o.deadline)
    }

    /// Adds a row. Returns the batch this row filled, if any, and how many rows the encoder
    /// refused (refused rows are kept with the open batch, for the spool).
    ///
    /// An encoder that asks for a fresher schema ([`Push::StaleSchema`]) gets the row again
    /// at once, without one: a batcher driven by hand has no catalog (the engine's own batcher
    /// task reads the table again first).
    pub fn push(&mut self, row: E::Row) -> (Option<Batch>, usize) {
        let mut row = row;
        loop {
            match self.push_acked(row, None) {
                Pushed::Done { sealed, refused } => return (sealed.map(|b| *b), refused),
                Pushed::Stale(again) => row = again,
            }
        }
    }

    /// Adds a row, as [`push`](Self::push) does, and returns an [`Ack`] that resolves when
    /// the batch (or, after a split, the part) holding it has ended: `Ok` once committed.
    pub fn push_with_ack(&mut self, row: E::Row) -> (Option<Batch>, usize, Ack) {
        let (state, ack) = AckState::new(1);
        let mut row = row;
        let out = loop {
            match self.push_acked(row, Some(&state)) {
                Pushed::Done { sealed, refused } => break (sealed.map(|b| *b), refused),
                Pushed::Stale(again) => row = again,
            }
        };
        // The hold of the queuing, as a producer's marker would end it.
        state.release(None);
        (out.0, out.1, ack)
    }

    /// Hands a schema read again to the encoder (after [`Pushed::Stale`]).
    pub(crate) fn update_schema(&mut self, schema: Arc<crate::types::schema::TableSchema>) {
        self.encoder.update_schema(schema);
    }

    pub(crate) fn push_acked(
        &mut self,
        row: E::Row,
        ack: Option<&Arc<AckState>>,
    ) -> Pushed<E::Row> {
        if self.open.is_none() {
            self.open_batch();
        }
        let open = self.open.as_mut().expect("opened above");
        let before = open.rejected.len();
        let first_unit = self.encoder.units() as u32;
        if let Push::StaleSchema(row) = self.encoder.push(row, &mut open.rejected) {
            return Pushed::Stale(row);
        }
        let refused = open.rejected.len() - before;
        if let Some(ack) = ack {
            let units = first_unit..self.encoder.units() as u32;
            match open.acks.last_mut() {
                Some(span) if Arc::ptr_eq(&span.ack, ack) => {
                    span.units.end = units.end;
                    span.refused += refused as u32;
                }
                _ => {
                    ack.hold();
                    open.acks.push(AckSpan {
                        ack: ack.clone(),
                        units,
                        refused: refused as u32,
                    });
                }
            }
        }
        self.next_input += 1;
        let full = self.encoder.rows() >= self.limits.max_rows
            || self.encoder.bytes() >= self.limits.max_bytes
            || self.encoder.full();
        Pushed::Done {
            sealed: if full {
                self.seal().map(Box::new)
            } else {
                None
            },
            refused,
        }
    }

    /// Adds a chunk of rows from a writer, sealing as many batches as it fills (into
    /// `sealed`) exactly where rows one by one would have; an encoded chunk, spent, goes to
    /// `spare` for a writer to fill again. Returns how many rows the encoder refused, and the
    /// rows not taken yet when the encoder asked for a fresher schema (the first of them is
    /// the row it handed back).
    pub(crate) fn push_chunk(
        &mut self,
        chunk: Chunk<E::Row>,
        sealed: &mut Vec<Batch>,
        spare: &Spare,
    ) -> (usize, Option<Chunk<E::Row>>) {
        match chunk {
            Chunk::Rows(rows) => {
                let mut refused = 0;
                let mut rows = rows.into_iter();
                while let Some(row) = rows.next() {
                    match self.push_acked(row, None) {
                        Pushed::Done {
                            sealed: batch,
                            refused: r,
                        } => {
                            refused += r;
                            sealed.extend(batch.map(|b| *b));
                        }
                        Pushed::Stale(row) => {
                            let mut rest = vec![row];
                            rest.extend(rows);
                            return (refused, Some(Chunk::Rows(rest)));
                        }
                    }
                }
                (refused, None)
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
                    self.next_input += k as u64;
                    i += k;
                    if self.encoder.rows() >= self.limits.max_rows
                        || self.encoder.bytes() >= self.limits.max_bytes
                    {
                        sealed.extend(self.seal());
                    }
                }
                spare.put(enc);
                (0, None)
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
        self.next_input += 1;
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
            first_input: self.next_input,
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
            origin: Origin {
                stream_id: self.target.stream_id.0,
                sequence: o.sequence,
                database: self.target.database.clone(),
                table: self.target.table.clone(),
                settings: self.target.settings.clone(),
                credentials: self.target.credentials.clone(),
                exact_settings: false,
            },
            columns,
            format: enc.format,
            bytes: enc.bytes,
            rows: enc.rows,
            parts: enc.parts,
            inputs: o.first_input..self.next_input,
            rejected: o.rejected,
            acks: o.acks,
            maybe_sent: None,
            insert_id: self.encoder.fills_insert_id(),
        })
    }
}

/// Called on the batcher task with every sealed batch, in order, before it goes to delivery
/// (see [`crate::PipelineBuilder::on_seal`]): a frontend records the batch durably here (a
/// write-ahead log's seal) and may [`watch`](Batch::watch) it. The future resolves to `false`
/// to hold the batch back: it is not sent.
pub type SealHook = Box<
    dyn FnMut(&mut Batch) -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send>>
        + Send,
>;

/// The batcher task: takes inputs off the queue into the [`Batcher`], seals on linger, and
/// hands sealed batches to delivery in order.
pub(crate) struct Task<E: BatchEncoder> {
    pub rx: mpsc::Receiver<Msg<E::Row>>,
    pub batcher: Batcher<E>,
    pub out: mpsc::Sender<Work>,
    pub counters: Arc<Counters>,
    pub queue: Arc<QueueCounters>,
    pub gate: Arc<RowGate>,
    pub writers: Arc<Writers<E::Row>>,
    pub refresh: Option<Refresh>,
    pub hook: Option<SealHook>,
}

impl<E: BatchEncoder> Task<E> {
    /// Runs until the queue closes (shutdown, or every handle dropped), then takes over what
    /// writers still buffer, seals what it holds and hands it over.
    pub(crate) async fn run(mut self) {
        let mut inbox: Vec<Msg<E::Row>> = Vec::with_capacity(1024);
        let mut sealed: Vec<Batch> = Vec::new();
        let linger = tokio::time::sleep(Duration::from_secs(3600));
        tokio::pin!(linger);
        let mut look = tokio::time::interval(self.writers.linger().max(Duration::from_millis(1)));
        look.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        'main: loop {
            let deadline = self.batcher.deadline();
            if let Some(d) = deadline
                && linger.deadline() != d
            {
                linger.as_mut().reset(d);
            }
            tokio::select! {
                biased;
                n = self.rx.recv_many(&mut inbox, 1024) => {
                    if n == 0 {
                        break 'main;
                    }
                    let mut rows_out = 0u64;
                    for msg in inbox.drain(..) {
                        match msg {
                            Msg::AckEnd(ack) => ack.release(None),
                            Msg::Reject(rejected) => {
                                rows_out += 1;
                                self.counters.rows_rejected.fetch_add(1, Relaxed);
                                sealed.extend(self.batcher.reject(rejected));
                            }
                            Msg::Row(row, ack) => {
                                let n = E::input_rows(&row);
                                rows_out += n;
                                self.gate.release(n);
                                self.push(row, ack.as_ref(), &mut sealed).await;
                            }
                            Msg::Chunk(chunk, n) => {
                                rows_out += n;
                                self.gate.release(n);
                                self.push_chunk(chunk, &mut sealed).await;
                            }
                            Msg::Collect => self.adopt(true, false, &mut sealed).await,
                            Msg::Flush(done) => {
                                self.adopt(true, false, &mut sealed).await;
                                sealed.extend(self.batcher.seal());
                                self.queue
                                    .rows_queued_out
                                    .fetch_add(std::mem::take(&mut rows_out), Relaxed);
                                if !self.send_all(&mut sealed).await {
                                    break 'main;
                                }
                                let _ = self.out.send(Work::Flush(done)).await;
                            }
                            Msg::Seal => {
                                self.adopt(true, false, &mut sealed).await;
                                sealed.extend(self.batcher.seal());
                            }
                            Msg::Shutdown => {
                                // Stop accepting; what is already queued is still drained.
                                self.rx.close();
                            }
                        }
                        if !sealed.is_empty() {
                            self.queue
                                .rows_queued_out
                                .fetch_add(std::mem::take(&mut rows_out), Relaxed);
                            if !self.send_all(&mut sealed).await {
                                break 'main;
                            }
                        }
                    }
                    self.queue.rows_queued_out.fetch_add(rows_out, Relaxed);
                }
                _ = &mut linger, if deadline.is_some() => {
                    sealed.extend(self.batcher.seal());
                    if !self.send_all(&mut sealed).await {
                        break 'main;
                    }
                }
                _ = look.tick(), if self.writers.any() => {
                    self.adopt(false, false, &mut sealed).await;
                    if !self.send_all(&mut sealed).await {
                        break 'main;
                    }
                }
                // A writer registered while none was: the loop starts checking on writers.
                () = self.writers.registered.notified() => {}
            }
        }
        self.adopt(true, true, &mut sealed).await;
        sealed.extend(self.batcher.seal());
        self.send_all(&mut sealed).await;
    }

    /// Reads the table again for an encoder that asked, and hands it the schema.
    async fn refresh(&mut self) {
        if let Some(refresh) = &self.refresh
            && let Some(schema) = refresh.schema(&self.batcher.target).await
        {
            self.batcher.update_schema(schema);
        }
    }

    async fn push(&mut self, row: E::Row, ack: Option<&Arc<AckState>>, sealed: &mut Vec<Batch>) {
        let mut row = row;
        loop {
            match self.batcher.push_acked(row, ack) {
                Pushed::Done {
                    sealed: batch,
                    refused,
                } => {
                    if refused > 0 {
                        self.counters
                            .rows_rejected
                            .fetch_add(refused as u64, Relaxed);
                    }
                    sealed.extend(batch.map(|b| *b));
                    return;
                }
                Pushed::Stale(again) => {
                    self.refresh().await;
                    row = again;
                }
            }
        }
    }

    async fn push_chunk(&mut self, chunk: Chunk<E::Row>, sealed: &mut Vec<Batch>) {
        let mut chunk = Some(chunk);
        while let Some(c) = chunk.take() {
            let (refused, rest) = self.batcher.push_chunk(c, sealed, &self.writers.spare);
            if refused > 0 {
                self.counters
                    .rows_rejected
                    .fetch_add(refused as u64, Relaxed);
            }
            if rest.is_some() {
                self.refresh().await;
            }
            chunk = rest;
        }
    }

    /// Takes over writers' buffers (see [`Writers::take`]); they were never counted as
    /// accepted.
    async fn adopt(&mut self, all: bool, close: bool, sealed: &mut Vec<Batch>) {
        for (chunk, n) in self.writers.take(all, close) {
            self.queue.rows_accepted.fetch_add(n, Relaxed);
            self.queue.rows_queued_out.fetch_add(n, Relaxed);
            self.push_chunk(chunk, sealed).await;
        }
    }

    /// Hands sealed batches to delivery, in order, each through the seal hook first; false
    /// once delivery is gone.
    async fn send_all(&mut self, sealed: &mut Vec<Batch>) -> bool {
        for mut b in sealed.drain(..) {
            if let Some(hook) = &mut self.hook
                && !hook(&mut b).await
            {
                continue;
            }
            self.counters.batches_sealed.fetch_add(1, Relaxed);
            if self.out.send(Work::Batch(Box::new(b))).await.is_err() {
                return false;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::RowBinary;

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
            {
                let mut t = Target::new("db", "t", StreamId::named("x"));
                t.first_sequence = 5;
                t
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
            [sealed[0].sequence(), sealed[1].sequence(), last.sequence()],
            [5, 6, 7]
        );
        assert_eq!(sealed[1].id, StreamId::named("x").batch_id(6));

        // Splitting halves at a row boundary with derived ids.
        let (l, r) = sealed[0].split().unwrap();
        assert_eq!((l.rows, r.rows), (1, 2));
        assert_eq!(l.bytes.len() + r.bytes.len(), sealed[0].bytes.len());
        assert_eq!(&r.bytes[..], &sealed[0].bytes[10..]);
        assert_eq!(r.parts.offsets(), Some(&[0u32, 10][..]));
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
        use crate::types::insert_id::{InsertIdColumn, InsertIdType};
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
            let target = Target::new("db", "t", StreamId::named("x"));
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
                let mut chunk = crate::format::EncodedRows::default();
                for a in part {
                    chunk.push(&mut *enc, &row(a)).unwrap();
                }
                let (refused, rest) =
                    chunked.push_chunk(Chunk::Encoded(chunk), &mut out, &Spare::default());
                assert_eq!(refused, 0);
                assert!(rest.is_none());
            }
            out.extend(chunked.seal());
            let shape = |b: &[Batch]| {
                b.iter()
                    .map(|b| {
                        (
                            b.id,
                            b.rows,
                            b.bytes.clone(),
                            b.parts.offsets().map(<[u32]>::to_vec),
                            b.inputs(),
                        )
                    })
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
