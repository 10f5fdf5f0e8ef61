//! The write-ahead log of one stream of inserts (a table, for one insert shape): accepted
//! request bodies, batch seals and batch commits, in segment files, written by one thread that
//! group-commits the fsyncs.
//!
//! # Records
//!
//! Every record is framed as `len: u32 LE | crc32: u32 LE | kind: u8 | payload`, where `len`
//! counts `kind` and `payload` and the CRC covers them. Each data record is one *input* (an
//! accepted request body, indivisible); inputs are numbered across the whole log (numbers
//! never repeat), so a batch is a range of inputs.
//!
//! | kind | payload | written when |
//! |---|---|---|
//! | `Data` | `input u64, rows u32, body` (a validated request body: rows in the stream's format) | a request is accepted; acknowledged (durable mode) after its fsync |
//! | `Seal` | `seq u64, start u64, end u64` (inputs `start..end`) | a batch is sealed, before it is submitted to the engine |
//! | `Commit` | `seq u64, dead_lettered u8` | the batch's acknowledgement resolved |
//! | `Checkpoint` | `next_input u64, next_seq u64, sealed_end u64` | first record of every segment but the very first |
//! | `Key` | `input u64, at_ms u64, key` | just before the `Data` record of a request that carries a retry key (its `insert_deduplication_token`) |
//!
//! How a keyed request ended goes to a second file, `keys.log`, in the same framing:
//!
//! | kind | payload | written when |
//! |---|---|---|
//! | `KeyEnded` | `at_ms u64, code u32, status u16, rows u32, key_len u16, key, message` | the input's part of its batch ended; fsynced before the batch's `Commit` record is written |
//!
//! A segment that holds a keyed input whose end is not yet in `keys.log` is not deleted, so
//! after a restart every key is either ended in `keys.log` or pending in the log.
//!
//! # Recovery
//!
//! [`recover`] reads every segment in order, cuts a torn tail (a record whose length or CRC
//! does not check), and returns the inputs, the batches sealed but not committed (re-formed
//! from exactly their input range and resubmitted with the same sequence number, hence the
//! same batch id) and where the unsealed inputs start.
//!
//! # Deletion
//!
//! The *committed watermark* is the first input of the oldest batch not yet ended (or the end
//! of the last sealed batch when none is open): every input below it is committed or
//! dead-lettered. A closed segment whose inputs all lie below the watermark and whose seals
//! have all ended is deleted, oldest first.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot, watch};

const DATA: u8 = 1;
const SEAL: u8 = 2;
const COMMIT: u8 = 3;
const CHECKPOINT: u8 = 4;
const KEY: u8 = 5;
const KEY_ENDED: u8 = 6;
const HEADER: usize = 9;
/// A record longer than this is corruption (bodies are far smaller).
const MAX_RECORD: usize = 1 << 30;

/// A decoded record.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// Accepted rows `first..first + rows`, one JSON object per line.
    Data {
        /// Number of the first row.
        first: u64,
        /// Rows in `body`.
        rows: u32,
        /// The rows, each followed by `\n`.
        body: Bytes,
    },
    /// Batch `seq` holds rows `start..end`.
    Seal {
        /// Sequence number of the batch in the table's stream.
        seq: u64,
        /// First row.
        start: u64,
        /// One past the last row.
        end: u64,
    },
    /// Batch `seq` ended.
    Commit {
        /// Sequence number.
        seq: u64,
        /// Whether it ended in the dead-letter spool.
        dead_lettered: bool,
    },
    /// Input `input` (the next data record) carries the retry key `key`.
    Key {
        /// The input.
        input: u64,
        /// When it was accepted (milliseconds since the Unix epoch).
        at_ms: u64,
        /// The key.
        key: Bytes,
    },
    /// How the input of retry key `key` ended (in `keys.log`).
    KeyEnded {
        /// When it was accepted (milliseconds since the Unix epoch).
        at_ms: u64,
        /// The key.
        key: Bytes,
        /// How it ended.
        outcome: KeyOutcome,
    },
    /// The state at the start of a segment.
    Checkpoint {
        /// The next row number.
        next_input: u64,
        /// The next batch sequence number.
        next_seq: u64,
        /// One past the last sealed row.
        sealed_end: u64,
    },
}

/// How the input of a retry key ended: committed (`code` 0), or the error its request is
/// answered with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyOutcome {
    /// 0 when committed, else the ClickHouse error code.
    pub code: u32,
    /// The HTTP status of the error.
    pub status: u16,
    /// The error's message.
    pub message: String,
    /// The rows of the request.
    pub rows: u32,
}

impl KeyOutcome {
    /// Committed.
    pub fn committed(rows: u32) -> Self {
        Self {
            code: 0,
            status: 200,
            message: String::new(),
            rows,
        }
    }
}

impl Record {
    /// Appends the framed record to `buf`.
    pub fn encode(&self, buf: &mut Vec<u8>) {
        let start = buf.len();
        buf.extend_from_slice(&[0u8; 8]);
        match self {
            Record::Data { first, rows, body } => {
                buf.push(DATA);
                buf.extend_from_slice(&first.to_le_bytes());
                buf.extend_from_slice(&rows.to_le_bytes());
                buf.extend_from_slice(body);
            }
            Record::Seal { seq, start, end } => {
                buf.push(SEAL);
                for v in [seq, start, end] {
                    buf.extend_from_slice(&v.to_le_bytes());
                }
            }
            Record::Commit { seq, dead_lettered } => {
                buf.push(COMMIT);
                buf.extend_from_slice(&seq.to_le_bytes());
                buf.push(*dead_lettered as u8);
            }
            Record::Key { input, at_ms, key } => {
                buf.push(KEY);
                buf.extend_from_slice(&input.to_le_bytes());
                buf.extend_from_slice(&at_ms.to_le_bytes());
                buf.extend_from_slice(key);
            }
            Record::KeyEnded {
                at_ms,
                key,
                outcome,
            } => {
                buf.push(KEY_ENDED);
                buf.extend_from_slice(&at_ms.to_le_bytes());
                buf.extend_from_slice(&outcome.code.to_le_bytes());
                buf.extend_from_slice(&outcome.status.to_le_bytes());
                buf.extend_from_slice(&outcome.rows.to_le_bytes());
                buf.extend_from_slice(&(key.len().min(u16::MAX as usize) as u16).to_le_bytes());
                buf.extend_from_slice(&key[..key.len().min(u16::MAX as usize)]);
                buf.extend_from_slice(outcome.message.as_bytes());
            }
            Record::Checkpoint {
                next_input,
                next_seq,
                sealed_end,
            } => {
                buf.push(CHECKPOINT);
                for v in [next_input, next_seq, sealed_end] {
                    buf.extend_from_slice(&v.to_le_bytes());
                }
            }
        }
        let len = (buf.len() - start - 8) as u32;
        let crc = crc32fast::hash(&buf[start + 8..]);
        buf[start..start + 4].copy_from_slice(&len.to_le_bytes());
        buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    }

    /// Decodes the record at the start of `data`; `None` when it is incomplete or corrupt.
    /// Returns the record and its framed length.
    pub fn decode(data: &Bytes) -> Option<(Record, usize)> {
        if data.len() < HEADER {
            return None;
        }
        let len = u32::from_le_bytes(data[0..4].try_into().unwrap()) as usize;
        let crc = u32::from_le_bytes(data[4..8].try_into().unwrap());
        if len == 0 || len > MAX_RECORD || data.len() < 8 + len {
            return None;
        }
        let body = &data[8..8 + len];
        if crc32fast::hash(body) != crc {
            return None;
        }
        let u64_at = |i: usize| -> Option<u64> {
            Some(u64::from_le_bytes(body.get(i..i + 8)?.try_into().ok()?))
        };
        let rec = match body[0] {
            DATA => Record::Data {
                first: u64_at(1)?,
                rows: u32::from_le_bytes(body.get(9..13)?.try_into().ok()?),
                body: data.slice(8 + 13..8 + len),
            },
            SEAL => Record::Seal {
                seq: u64_at(1)?,
                start: u64_at(9)?,
                end: u64_at(17)?,
            },
            COMMIT => Record::Commit {
                seq: u64_at(1)?,
                dead_lettered: *body.get(9)? != 0,
            },
            CHECKPOINT => Record::Checkpoint {
                next_input: u64_at(1)?,
                next_seq: u64_at(9)?,
                sealed_end: u64_at(17)?,
            },
            KEY => Record::Key {
                input: u64_at(1)?,
                at_ms: u64_at(9)?,
                key: data.slice(8 + 17..8 + len),
            },
            KEY_ENDED => {
                let key_len = u16::from_le_bytes(body.get(19..21)?.try_into().ok()?) as usize;
                Record::KeyEnded {
                    at_ms: u64_at(1)?,
                    outcome: KeyOutcome {
                        code: u32::from_le_bytes(body.get(9..13)?.try_into().ok()?),
                        status: u16::from_le_bytes(body.get(13..15)?.try_into().ok()?),
                        rows: u32::from_le_bytes(body.get(15..19)?.try_into().ok()?),
                        message: String::from_utf8_lossy(body.get(21 + key_len..)?).into_owned(),
                    },
                    key: Bytes::copy_from_slice(body.get(21..21 + key_len)?),
                }
            }
            _ => return None,
        };
        Some((rec, 8 + len))
    }
}

/// A segment file and what the deletion rule needs to know about it.
#[derive(Debug, Clone)]
pub struct Segment {
    /// Its index (the file is `wal-<index>.log`).
    pub index: u64,
    /// Its path.
    pub path: PathBuf,
    /// Its size.
    pub bytes: u64,
    /// One past the last row of its data records (0 when it has none).
    pub data_end: u64,
    /// The highest sequence number it seals, if it seals any.
    pub max_seal: Option<u64>,
}

/// A batch that was sealed (and so may have been sent) but whose end was not recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pending {
    /// Sequence number.
    pub seq: u64,
    /// First row.
    pub start: u64,
    /// One past the last row.
    pub end: u64,
}

/// What [`recover`] found.
#[derive(Debug, Default)]
pub struct Recovered {
    /// The segments, oldest first.
    pub segments: Vec<Segment>,
    /// Data records `(first, rows, body)`, in row order.
    pub data: Vec<(u64, u32, Bytes)>,
    /// Batches sealed and not ended, in sequence order.
    pub pending: Vec<Pending>,
    /// One past the last sealed row: the unsealed rows start here.
    pub sealed_end: u64,
    /// The next row number.
    pub next_input: u64,
    /// The next batch sequence number.
    pub next_seq: u64,
    /// Bytes of torn tail cut off.
    pub truncated: u64,
    /// Inputs that carry a retry key: `(input, at_ms, key)`.
    pub keys: Vec<(u64, u64, Bytes)>,
    /// Batches that ended: sequence number → whether dead-lettered.
    pub ended: BTreeMap<u64, bool>,
    /// Sealed batches: sequence number → inputs `start..end`.
    pub seals: BTreeMap<u64, (u64, u64)>,
}

impl Recovered {
    /// The inputs `start..end`: each data record's number, body and rows.
    pub fn inputs(&self, start: u64, end: u64) -> Vec<(u64, Bytes, u32)> {
        self.data
            .iter()
            .filter(|(first, _, _)| *first >= start && *first < end)
            .map(|(first, rows, body)| (*first, body.clone(), *rows))
            .collect()
    }
}

/// The file of ended retry keys, next to the segments.
pub const KEYS_FILE: &str = "keys.log";

/// Reads `keys.log` in `dir`: the ended retry keys accepted at or after `since_ms`, by key
/// (`(at_ms, outcome)`), and rewrites the file with only those (older keys are forgotten).
pub fn load_keys(dir: &Path, since_ms: u64) -> io::Result<HashMap<Bytes, (u64, KeyOutcome)>> {
    let path = dir.join(KEYS_FILE);
    let data = match std::fs::read(&path) {
        Ok(d) => Bytes::from(d),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(HashMap::new()),
        Err(e) => return Err(e),
    };
    let mut out = HashMap::new();
    let mut pos = 0;
    while pos < data.len() {
        // A torn last record (a crash while it was written) was never acted on.
        let Some((rec, len)) = Record::decode(&data.slice(pos..)) else {
            break;
        };
        pos += len;
        if let Record::KeyEnded {
            at_ms,
            key,
            outcome,
        } = rec
            && at_ms >= since_ms
        {
            out.insert(key, (at_ms, outcome));
        }
    }
    let mut buf = Vec::new();
    for (key, (at_ms, outcome)) in &out {
        Record::KeyEnded {
            at_ms: *at_ms,
            key: key.clone(),
            outcome: outcome.clone(),
        }
        .encode(&mut buf);
    }
    let tmp = dir.join("keys.log.tmp");
    {
        let mut f = File::create(&tmp)?;
        f.write_all(&buf)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, &path)?;
    sync_dir(dir)?;
    Ok(out)
}

fn segment_path(dir: &Path, index: u64) -> PathBuf {
    dir.join(format!("wal-{index:012}.log"))
}

fn list_segments(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if let Some(index) = name
            .strip_prefix("wal-")
            .and_then(|s| s.strip_suffix(".log"))
            .and_then(|s| s.parse::<u64>().ok())
        {
            out.push((index, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// fsyncs a directory, so that files created or removed in it stay so after a crash.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Reads the log in `dir` (which must exist), cutting a torn tail.
pub fn recover(dir: &Path) -> io::Result<Recovered> {
    let mut r = Recovered::default();
    let mut seals: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
    let mut commits: BTreeMap<u64, bool> = BTreeMap::new();
    for (index, path) in list_segments(dir)? {
        let data = Bytes::from(std::fs::read(&path)?);
        let mut pos = 0;
        let mut seg = Segment {
            index,
            path: path.clone(),
            bytes: 0,
            data_end: 0,
            max_seal: None,
        };
        while pos < data.len() {
            let Some((rec, len)) = Record::decode(&data.slice(pos..)) else {
                break;
            };
            pos += len;
            match rec {
                Record::Data { first, rows, body } => {
                    let _ = rows;
                    let end = first + 1;
                    r.next_input = r.next_input.max(end);
                    seg.data_end = seg.data_end.max(end);
                    r.data.push((first, rows, body));
                }
                Record::Seal { seq, start, end } => {
                    seals.insert(seq, (start, end));
                    r.next_seq = r.next_seq.max(seq + 1);
                    r.sealed_end = r.sealed_end.max(end);
                    seg.max_seal = Some(seg.max_seal.map_or(seq, |m| m.max(seq)));
                }
                Record::Commit { seq, dead_lettered } => {
                    commits.insert(seq, dead_lettered);
                }
                Record::Key { input, at_ms, key } => r.keys.push((input, at_ms, key)),
                // Only in keys.log.
                Record::KeyEnded { .. } => {}
                Record::Checkpoint {
                    next_input,
                    next_seq,
                    sealed_end,
                } => {
                    r.next_input = r.next_input.max(next_input);
                    r.next_seq = r.next_seq.max(next_seq);
                    r.sealed_end = r.sealed_end.max(sealed_end);
                }
            }
        }
        if pos < data.len() {
            // A torn write (crash during append): what follows was never acknowledged.
            let cut = (data.len() - pos) as u64;
            tracing::warn!(segment = %path.display(), bytes = cut, "cutting a torn tail off the write-ahead log");
            let f = OpenOptions::new().write(true).open(&path)?;
            f.set_len(pos as u64)?;
            f.sync_all()?;
            r.truncated += cut;
        }
        seg.bytes = pos as u64;
        r.segments.push(seg);
    }
    r.data.sort_by_key(|(first, _, _)| *first);
    r.pending = seals
        .iter()
        .filter(|(seq, _)| !commits.contains_key(seq))
        .map(|(&seq, &(start, end))| Pending { seq, start, end })
        .collect();
    r.seals = seals;
    r.ended = commits;
    Ok(r)
}

/// An operation for the writer thread.
pub enum Op {
    /// Append rows; answers with one past the last row number once they are durable.
    Data {
        /// A validated request body.
        body: Bytes,
        /// Its rows.
        rows: u32,
        /// Bytes reserved in the queue for it (handed on to the feeder).
        reserved: u64,
        /// Told how the input ended (committed, or in the spool), when the request waits for
        /// that (handed on to the feeder).
        outcome: Option<Outcome>,
        /// The request's retry key and when it was accepted (ms since the epoch).
        key: Option<(u64, Bytes)>,
        /// The answer.
        reply: oneshot::Sender<io::Result<(u64, u64)>>,
    },
    /// Record how the input of a retry key ended (in `keys.log`, fsynced before any commit
    /// record that follows it).
    KeyEnded {
        /// The input.
        input: u64,
        /// When it was accepted.
        at_ms: u64,
        /// The key.
        key: Bytes,
        /// How it ended.
        outcome: KeyOutcome,
    },
    /// Record a seal; answers once it is durable.
    Seal {
        /// The seal.
        seal: Pending,
        /// The answer.
        reply: oneshot::Sender<io::Result<()>>,
    },
    /// Record that a batch ended (not waited for).
    Commit {
        /// Sequence number.
        seq: u64,
        /// Dead-lettered rather than committed.
        dead_lettered: bool,
    },
    /// Stop handing rows to the feeder (the feeder then drains and stops).
    CloseInput,
    /// Apply what came before, fsync, and end the thread.
    Stop,
}

/// A durable input handed to the feeder.
#[derive(Debug)]
pub struct Fed {
    /// Its number.
    pub first: u64,
    /// The body of rows.
    pub body: Bytes,
    /// How many rows it holds.
    pub rows: u32,
    /// Queue bytes to release once they are in the batcher.
    pub reserved: u64,
    /// Told how the input ended, if the request waits for that.
    pub outcome: Option<Outcome>,
    /// The input's retry key, if it carries one.
    pub key: Option<Bytes>,
}

/// Where a request that waits for its rows to be committed hears how they ended.
pub type Outcome = oneshot::Sender<Result<(), chasync_core::Error>>;

/// Counters shared by the writers of all tables.
#[derive(Debug, Default)]
pub struct WalStats {
    /// Bytes of all segment files.
    pub spool_bytes: AtomicU64,
    /// fsyncs of segment files.
    pub fsyncs: AtomicU64,
    /// Data records appended.
    pub data_records: AtomicU64,
}

/// Where the writer of a table starts from.
pub struct WriterStart {
    /// The table's directory.
    pub dir: PathBuf,
    /// Segment size.
    pub segment_bytes: u64,
    /// From [`recover`].
    pub segments: Vec<Segment>,
    /// Batches open.
    pub pending: Vec<Pending>,
    /// Next row number.
    pub next_input: u64,
    /// Next sequence number.
    pub next_seq: u64,
    /// One past the last sealed row.
    pub sealed_end: u64,
    /// Keyed inputs whose end is not yet in `keys.log`.
    pub open_keys: BTreeSet<u64>,
}

/// The writer's state (owned by its thread).
struct Writer {
    dir: PathBuf,
    segment_bytes: u64,
    file: File,
    segments: VecDeque<Segment>,
    open: BTreeMap<u64, (u64, u64)>,
    next_input: u64,
    next_seq: u64,
    sealed_end: u64,
    watermark: watch::Sender<u64>,
    feeder: Option<mpsc::UnboundedSender<Fed>>,
    stats: Arc<WalStats>,
    broken: Option<String>,
    keys: File,
    open_keys: BTreeSet<u64>,
}

/// Handles to a running writer.
pub struct WriterHandles {
    /// Operations in.
    pub ops: mpsc::UnboundedSender<Op>,
    /// Durable rows out, in order.
    pub fed: mpsc::UnboundedReceiver<Fed>,
    /// The committed watermark.
    pub watermark: watch::Receiver<u64>,
    /// The thread.
    pub thread: std::thread::JoinHandle<()>,
}

/// Starts the writer thread of a table on a new segment.
pub fn start_writer(start: WriterStart, stats: Arc<WalStats>) -> io::Result<WriterHandles> {
    let index = start.segments.last().map_or(0, |s| s.index + 1);
    let existing: u64 = start.segments.iter().map(|s| s.bytes).sum();
    stats.spool_bytes.fetch_add(existing, Relaxed);
    let open: BTreeMap<u64, (u64, u64)> = start
        .pending
        .iter()
        .map(|p| (p.seq, (p.start, p.end)))
        .collect();
    let (watermark_tx, watermark_rx) = watch::channel(0);
    let (fed_tx, fed_rx) = mpsc::unbounded_channel();
    let (ops_tx, ops_rx) = mpsc::unbounded_channel();
    let keys = OpenOptions::new()
        .create(true)
        .append(true)
        .open(start.dir.join(KEYS_FILE))?;
    let mut w = Writer {
        file: File::create(segment_path(&start.dir, index))?,
        dir: start.dir,
        segment_bytes: start.segment_bytes,
        segments: start.segments.into(),
        open,
        next_input: start.next_input,
        next_seq: start.next_seq,
        sealed_end: start.sealed_end,
        watermark: watermark_tx,
        feeder: Some(fed_tx),
        stats,
        broken: None,
        keys,
        open_keys: start.open_keys,
    };
    w.begin_segment(index)?;
    w.publish_watermark();
    let thread = std::thread::Builder::new()
        .name("chasyncd-wal".into())
        .spawn(move || w.run(ops_rx))?;
    Ok(WriterHandles {
        ops: ops_tx,
        fed: fed_rx,
        watermark: watermark_rx,
        thread,
    })
}

impl Writer {
    /// Writes the checkpoint of a new (already created, empty) segment `index`.
    fn begin_segment(&mut self, index: u64) -> io::Result<()> {
        let mut buf = Vec::new();
        Record::Checkpoint {
            next_input: self.next_input,
            next_seq: self.next_seq,
            sealed_end: self.sealed_end,
        }
        .encode(&mut buf);
        self.file.write_all(&buf)?;
        self.file.sync_data()?;
        sync_dir(&self.dir)?;
        self.stats.spool_bytes.fetch_add(buf.len() as u64, Relaxed);
        self.segments.push_back(Segment {
            index,
            path: segment_path(&self.dir, index),
            bytes: buf.len() as u64,
            data_end: 0,
            max_seal: None,
        });
        Ok(())
    }

    fn run(mut self, mut rx: mpsc::UnboundedReceiver<Op>) {
        let mut ops = Vec::new();
        while let Some(op) = rx.blocking_recv() {
            ops.push(op);
            // Group commit: everything that queued up while the last fsync ran shares the
            // next one.
            while ops.len() < 8192 {
                match rx.try_recv() {
                    Ok(op) => ops.push(op),
                    Err(_) => break,
                }
            }
            let stop = ops.iter().any(|op| matches!(op, Op::Stop));
            self.apply(&mut ops);
            if stop {
                break;
            }
        }
        if let Err(e) = self.file.sync_data() {
            tracing::error!(error = %e, "final fsync of the write-ahead log failed");
        }
    }

    fn apply(&mut self, ops: &mut Vec<Op>) {
        let mut buf = Vec::new();
        let mut ended_keys = Vec::new();
        let mut needs_sync = false;
        let mut replies: Vec<Op> = Vec::with_capacity(ops.len());
        let mut data_ranges = Vec::new();
        for op in ops.drain(..) {
            if self.broken.is_some() {
                replies.push(op);
                continue;
            }
            match &op {
                Op::Data {
                    body, rows, key, ..
                } => {
                    let first = self.next_input;
                    self.next_input += 1;
                    if let Some((at_ms, key)) = key {
                        Record::Key {
                            input: first,
                            at_ms: *at_ms,
                            key: key.clone(),
                        }
                        .encode(&mut buf);
                        self.open_keys.insert(first);
                    }
                    Record::Data {
                        first,
                        rows: *rows,
                        body: body.clone(),
                    }
                    .encode(&mut buf);
                    data_ranges.push((first, self.next_input));
                    needs_sync = true;
                    self.stats.data_records.fetch_add(1, Relaxed);
                }
                Op::Seal { seal, .. } => {
                    Record::Seal {
                        seq: seal.seq,
                        start: seal.start,
                        end: seal.end,
                    }
                    .encode(&mut buf);
                    self.open.insert(seal.seq, (seal.start, seal.end));
                    self.next_seq = self.next_seq.max(seal.seq + 1);
                    self.sealed_end = self.sealed_end.max(seal.end);
                    let seg = self.segments.back_mut().expect("a current segment");
                    seg.max_seal = Some(seg.max_seal.map_or(seal.seq, |m| m.max(seal.seq)));
                    needs_sync = true;
                }
                Op::Commit { seq, dead_lettered } => {
                    Record::Commit {
                        seq: *seq,
                        dead_lettered: *dead_lettered,
                    }
                    .encode(&mut buf);
                    self.open.remove(seq);
                }
                Op::KeyEnded {
                    input,
                    at_ms,
                    key,
                    outcome,
                } => {
                    Record::KeyEnded {
                        at_ms: *at_ms,
                        key: key.clone(),
                        outcome: outcome.clone(),
                    }
                    .encode(&mut ended_keys);
                    self.open_keys.remove(input);
                }
                Op::CloseInput | Op::Stop => {}
            }
            replies.push(op);
        }
        // The ends of keyed inputs are durable before the commit records that follow them.
        if self.broken.is_none() && !ended_keys.is_empty() {
            let result = self
                .keys
                .write_all(&ended_keys)
                .and_then(|()| self.keys.sync_data());
            if let Err(e) = result {
                tracing::error!(error = %e, dir = %self.dir.display(), "cannot write keys.log; refusing writes from now on");
                self.broken = Some(e.to_string());
            }
        }
        if self.broken.is_none() && !buf.is_empty() {
            let result = self.file.write_all(&buf).and_then(|()| {
                if needs_sync {
                    self.stats.fsyncs.fetch_add(1, Relaxed);
                    self.file.sync_data()
                } else {
                    Ok(())
                }
            });
            match result {
                Ok(()) => {
                    self.stats.spool_bytes.fetch_add(buf.len() as u64, Relaxed);
                    let seg = self.segments.back_mut().expect("a current segment");
                    seg.bytes += buf.len() as u64;
                    if let Some((_, end)) = data_ranges.last() {
                        seg.data_end = seg.data_end.max(*end);
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, dir = %self.dir.display(), "cannot write the write-ahead log; refusing writes from now on");
                    self.broken = Some(e.to_string());
                }
            }
        }
        let mut ranges = data_ranges.into_iter();
        for op in replies {
            match op {
                Op::Data {
                    body,
                    rows,
                    reply,
                    reserved,
                    outcome,
                    key,
                } => match &self.broken {
                    Some(e) => {
                        let _ = reply.send(Err(io::Error::other(e.clone())));
                    }
                    None => {
                        let (first, end) = ranges.next().expect("a range per data op");
                        if let Some(feeder) = &self.feeder {
                            let _ = feeder.send(Fed {
                                first,
                                body,
                                rows,
                                reserved,
                                outcome,
                                key: key.map(|(_, k)| k),
                            });
                        }
                        let _ = reply.send(Ok((first, end)));
                    }
                },
                Op::Seal { reply, .. } => {
                    let _ = reply.send(match &self.broken {
                        Some(e) => Err(io::Error::other(e.clone())),
                        None => Ok(()),
                    });
                }
                Op::Commit { .. } | Op::KeyEnded { .. } | Op::Stop => {}
                Op::CloseInput => self.feeder = None,
            }
        }
        self.publish_watermark();
        if self.broken.is_none()
            && let Err(e) = self.maintain()
        {
            tracing::error!(error = %e, dir = %self.dir.display(), "cannot roll the write-ahead log");
            self.broken = Some(e.to_string());
        }
    }

    fn watermark(&self) -> u64 {
        self.open
            .first_key_value()
            .map_or(self.sealed_end, |(_, (start, _))| *start)
    }

    fn publish_watermark(&self) {
        let w = self.watermark();
        self.watermark.send_if_modified(|old| {
            let changed = *old != w;
            *old = w;
            changed
        });
    }

    /// Rolls to a new segment when the current one is full; deletes segments whose batches
    /// have all ended.
    fn maintain(&mut self) -> io::Result<()> {
        let watermark = self.watermark();
        let mut removed = false;
        while self.segments.len() > 1 {
            let front = &self.segments[0];
            let seals_done = front
                .max_seal
                .is_none_or(|s| self.open.range(..=s).next().is_none());
            // A keyed input whose end is not in keys.log yet keeps its segment.
            let keys_done = self.open_keys.range(..front.data_end).next().is_none();
            if !(seals_done && keys_done && front.data_end <= watermark) {
                break;
            }
            let seg = self.segments.pop_front().unwrap();
            std::fs::remove_file(&seg.path)?;
            self.stats.spool_bytes.fetch_sub(seg.bytes, Relaxed);
            removed = true;
            tracing::debug!(segment = %seg.path.display(), "write-ahead log segment deleted");
        }
        if removed {
            sync_dir(&self.dir)?;
        }
        let current = self.segments.back().expect("a current segment");
        if current.bytes >= self.segment_bytes {
            let index = current.index + 1;
            self.file.sync_data()?;
            self.file = File::create(segment_path(&self.dir, index))?;
            self.begin_segment(index)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(rows: &[&str]) -> Bytes {
        let mut b = Vec::new();
        for r in rows {
            b.extend_from_slice(r.as_bytes());
            b.push(b'\n');
        }
        Bytes::from(b)
    }

    #[test]
    fn records_round_trip_and_corruption_is_detected() {
        let recs = [
            Record::Data {
                first: 7,
                rows: 2,
                body: body(&["{\"a\":1}", "{\"a\":2}"]),
            },
            Record::Seal {
                seq: 3,
                start: 7,
                end: 9,
            },
            Record::Commit {
                seq: 3,
                dead_lettered: true,
            },
            Record::Checkpoint {
                next_input: 9,
                next_seq: 4,
                sealed_end: 9,
            },
            Record::Key {
                input: 9,
                at_ms: 1_700_000_000_000,
                key: Bytes::from_static(b"token-1"),
            },
            Record::KeyEnded {
                at_ms: 1_700_000_000_000,
                key: Bytes::from_static(b"token-1"),
                outcome: KeyOutcome {
                    code: 27,
                    status: 400,
                    message: "Cannot parse input".into(),
                    rows: 12,
                },
            },
        ];
        let mut buf = Vec::new();
        for r in &recs {
            r.encode(&mut buf);
        }
        let data = Bytes::from(buf.clone());
        let mut pos = 0;
        for r in &recs {
            let (got, len) = Record::decode(&data.slice(pos..)).unwrap();
            assert_eq!(&got, r);
            pos += len;
        }
        assert_eq!(pos, data.len());
        // A flipped bit and a cut record are both refused.
        let mut bad = buf.clone();
        bad[12] ^= 1;
        assert!(Record::decode(&Bytes::from(bad)).is_none());
        assert!(Record::decode(&data.slice(..20)).is_none());
    }

    async fn data(ops: &mpsc::UnboundedSender<Op>, rows: &[&str]) -> (u64, u64) {
        let (tx, rx) = oneshot::channel();
        ops.send(Op::Data {
            body: body(rows),
            rows: rows.len() as u32,
            reserved: 0,
            outcome: None,
            key: None,
            reply: tx,
        })
        .unwrap();
        rx.await.unwrap().unwrap()
    }

    async fn seal(ops: &mpsc::UnboundedSender<Op>, seq: u64, start: u64, end: u64) {
        let (tx, rx) = oneshot::channel();
        ops.send(Op::Seal {
            seal: Pending { seq, start, end },
            reply: tx,
        })
        .unwrap();
        rx.await.unwrap().unwrap();
    }

    fn start(dir: &Path, segment_bytes: u64, stats: Arc<WalStats>) -> WriterHandles {
        let r = recover(dir).unwrap();
        start_writer(
            WriterStart {
                dir: dir.to_path_buf(),
                segment_bytes,
                segments: r.segments,
                pending: r.pending,
                open_keys: Default::default(),
                next_input: r.next_input,
                next_seq: r.next_seq,
                sealed_end: r.sealed_end,
            },
            stats,
        )
        .unwrap()
    }

    #[tokio::test]
    async fn recovery_finds_open_batches_and_the_unsealed_tail_and_cuts_torn_writes() {
        let dir = tempfile::tempdir().unwrap();
        let stats = Arc::new(WalStats::default());
        let h = start(dir.path(), 1 << 20, stats.clone());
        // Each data record is one input, whatever its rows.
        assert_eq!(data(&h.ops, &["{\"a\":0}", "{\"a\":1}"]).await, (0, 1));
        assert_eq!(data(&h.ops, &["{\"a\":2}"]).await, (1, 2));
        assert_eq!(data(&h.ops, &["{\"a\":3}"]).await, (2, 3));
        seal(&h.ops, 0, 0, 1).await;
        seal(&h.ops, 1, 1, 3).await;
        assert_eq!(data(&h.ops, &["{\"a\":4}"]).await, (3, 4));
        h.ops
            .send(Op::Commit {
                seq: 1,
                dead_lettered: false,
            })
            .unwrap();
        // Batch 0 is open: the watermark stays at its start.
        let mut fed = h.fed;
        assert_eq!(fed.recv().await.unwrap().first, 0);
        drop(h.ops);
        h.thread.join().unwrap();
        assert_eq!(*h.watermark.borrow(), 0);
        // A torn append at the end.
        let seg = list_segments(dir.path()).unwrap().pop().unwrap().1;
        let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
        f.write_all(&[42, 0, 0, 0, 1, 2, 3]).unwrap();
        drop(f);

        let r = recover(dir.path()).unwrap();
        assert_eq!(r.truncated, 7);
        assert_eq!(
            r.pending,
            vec![Pending {
                seq: 0,
                start: 0,
                end: 1
            }]
        );
        assert_eq!((r.sealed_end, r.next_input, r.next_seq), (3, 4, 2));
        let inputs = r.inputs(0, 4);
        assert_eq!(inputs.len(), 4);
        assert_eq!(
            (inputs[0].0, &inputs[0].1[..], inputs[0].2),
            (0, &b"{\"a\":0}\n{\"a\":1}\n"[..], 2)
        );
        assert_eq!(&inputs[3].1[..], b"{\"a\":4}\n");
        assert_eq!(r.inputs(1, 3).len(), 2);
    }

    #[tokio::test]
    async fn segments_roll_and_are_deleted_once_their_batches_ended() {
        let dir = tempfile::tempdir().unwrap();
        let stats = Arc::new(WalStats::default());
        // Tiny segments: every group of records rolls to a new one.
        let h = start(dir.path(), 10, stats.clone());
        let mut end = 0;
        for seq in 0..5u64 {
            let (first, e) = data(&h.ops, &["{\"x\":1}", "{\"x\":2}"]).await;
            assert_eq!(first, end);
            seal(&h.ops, seq, first, e).await;
            end = e;
        }
        assert!(list_segments(dir.path()).unwrap().len() >= 5);
        for seq in 0..5u64 {
            h.ops
                .send(Op::Commit {
                    seq,
                    dead_lettered: seq == 2,
                })
                .unwrap();
        }
        // One more op so that the commits are applied and the segments reconsidered.
        data(&h.ops, &["{\"x\":3}"]).await;
        let mut watermark = h.watermark.clone();
        watermark.wait_for(|w| *w == 5).await.unwrap();
        drop(h.ops);
        h.thread.join().unwrap();
        let left = list_segments(dir.path()).unwrap();
        assert!(left.len() <= 2, "{left:?}");
        let on_disk: u64 = left
            .iter()
            .map(|(_, p)| std::fs::metadata(p).unwrap().len())
            .sum();
        assert_eq!(stats.spool_bytes.load(Relaxed), on_disk);

        // What is left still knows where the stream is.
        let r = recover(dir.path()).unwrap();
        assert!(r.pending.is_empty());
        assert_eq!((r.sealed_end, r.next_input, r.next_seq), (5, 6, 5));
        assert_eq!(r.inputs(5, 6).len(), 1);
    }
}
