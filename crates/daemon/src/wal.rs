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
//! [`recover`] reads every segment in order and returns the inputs, the batches sealed but not
//! committed (re-formed from exactly their input range and resubmitted with the same sequence
//! number, hence the same batch id) and where the unsealed inputs start.
//!
//! A *torn tail* is only the incomplete last record of the last segment (its length runs past
//! the end of the file, or the rest of the file is zeros) with no valid record after it: a
//! crash during an append, never acknowledged. It is cut. Any other record that does not
//! check (length, CRC, kind) is *damage*: recovery skips to the next valid record (see
//! `resync`) and reads on, so every record after the damage is recovered, and reports the
//! byte ranges it could not read ([`Damage`]). A damaged segment is never cut. What the lost
//! records meant is worked out in [`Recovered`]: a lost seal between two known ones is
//! re-formed from its neighbours when its range and number are certain
//! ([`Recovered::pending`]); inputs whose batch record may have been lost are sent again under
//! new sequence numbers ([`Recovered::orphans`]); input numbers lost with their data are
//! listed ([`Recovered::lost`]).
//!
//! # Deletion
//!
//! The *committed watermark* is the first input of the oldest batch not yet ended (or the end
//! of the last sealed batch when none is open): every input below it is committed or
//! dead-lettered. A closed segment whose inputs all lie below the watermark and whose seals
//! have all ended is deleted, oldest first; a segment that held damage is moved to its
//! [`Segment::quarantine`] path instead (kept for forensics).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::ops::Range;
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
/// Framed length of a seal record: the most seal records a damaged range can have held is
/// its length over this.
const SEAL_FRAMED: u64 = 8 + 25;
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
    /// Where the segment goes instead of being deleted: set for a segment that held damage,
    /// which is kept for forensics.
    pub quarantine: Option<PathBuf>,
}

/// A byte range of a segment that does not read as records: lost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// The segment's index.
    pub index: u64,
    /// The segment's path.
    pub path: PathBuf,
    /// The bytes lost, `start..end` (offsets in the segment file).
    pub bytes: Range<u64>,
    /// Records read after the range in the same segment.
    pub records_after: u64,
    /// Records are missing after the end of the segment (the next segment's checkpoint counts
    /// inputs or seals it does not hold), or the whole segment is missing; `bytes` is then
    /// empty: how many were lost is not known.
    pub ends_short: bool,
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
    /// Sealed batches: sequence number → inputs `start..end` (after damage, with the seals
    /// re-formed from their neighbours).
    pub seals: BTreeMap<u64, (u64, u64)>,
    /// Damaged byte ranges (empty for a sound log).
    pub damage: Vec<Damage>,
    /// After damage: runs of inputs that are in the log but whose batch record may have been
    /// lost (so whether they were sent is not known); they are sent again under new sequence
    /// numbers ([`assign_resends`](Self::assign_resends)). At least once, not exactly once.
    pub orphans: Vec<Range<u64>>,
    /// After damage: input numbers whose data record was lost and whose batch is not known to
    /// have ended (their rows are gone unless ClickHouse has them).
    pub lost: Vec<Range<u64>>,
    /// Where the pipeline's inputs start: `sealed_end`, or after damage the input after the
    /// last lost one of the unsealed tail (the pipeline numbers inputs without gaps; the
    /// inputs before go in [`orphans`](Self::orphans)).
    pub tail_start: u64,
}

impl Recovered {
    /// The inputs `start..end`: each data record's number, body and rows.
    pub fn inputs(&self, start: u64, end: u64) -> Vec<(u64, Bytes, u32)> {
        let from = self.data.partition_point(|(first, _, _)| *first < start);
        self.data[from..]
            .iter()
            .take_while(|(first, _, _)| *first < end)
            .map(|(first, rows, body)| (*first, body.clone(), *rows))
            .collect()
    }

    /// Cuts the [`orphans`](Self::orphans) into batches to send again, numbered from
    /// `next_seq` on (which moves past them): one input a batch when each body is a batch of
    /// its own (`whole`), else runs of at most `max_bytes` of bodies. Their seal records must
    /// be made durable before they are sent.
    pub fn assign_resends(&mut self, whole: bool, max_bytes: usize) -> Vec<Pending> {
        let mut out = Vec::new();
        for run in std::mem::take(&mut self.orphans) {
            let from = self
                .data
                .partition_point(|(first, _, _)| *first < run.start);
            let mut start = run.start;
            let mut bytes = 0usize;
            for (first, _, body) in self.data[from..]
                .iter()
                .take_while(|(f, _, _)| *f < run.end)
            {
                if *first > start && (whole || bytes + body.len() > max_bytes) {
                    out.push(Pending {
                        seq: self.next_seq,
                        start,
                        end: *first,
                    });
                    self.next_seq += 1;
                    start = *first;
                    bytes = 0;
                }
                bytes += body.len();
            }
            out.push(Pending {
                seq: self.next_seq,
                start,
                end: run.end,
            });
            self.next_seq += 1;
        }
        out
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
    // A torn last record (a crash while it was written) was never acted on; damage elsewhere
    // costs only the ends it held (those keys are forgotten), not the ones after it.
    let read = read_segment(&data, true);
    for (range, after) in &read.damaged {
        tracing::error!(file = %path.display(), bytes = %format!("{}..{}", range.start, range.end), records_after = after, "keys.log damaged: the retry keys whose ends these bytes held are forgotten; the file as found is kept as keys.log.damaged");
    }
    if !read.damaged.is_empty() {
        std::fs::copy(&path, dir.join("keys.log.damaged"))?;
    }
    for rec in read.records {
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

/// What one segment file holds.
struct SegmentRead {
    /// The records, in order.
    records: Vec<Record>,
    /// Byte ranges that do not read as records, with how many records follow each.
    damaged: Vec<(Range<usize>, u64)>,
    /// Where a torn tail starts (last segment only).
    torn: Option<usize>,
}

/// The length of the valid record at `pos`, if one is there.
fn record_at(data: &Bytes, pos: usize) -> Option<(Record, usize)> {
    if data.len() - pos < HEADER {
        return None;
    }
    let len = u32::from_le_bytes(data[pos..pos + 4].try_into().unwrap()) as usize;
    // Cheap refusal before slicing and checksumming.
    if len == 0 || len > data.len() - pos - 8 {
        return None;
    }
    Record::decode(&data.slice(pos..))
}

/// The offset of the first valid record after the bad one at `pos`. Two candidates: where
/// the bad record's length points (right when only its payload is damaged), and the first
/// later offset where a record's length and CRC check (right when its length is damaged).
/// When the second comes first, it is taken only if the records from it lead exactly to the
/// first: otherwise it is a record-like run of bytes inside the damaged record's payload.
fn resync(data: &Bytes, pos: usize) -> Option<usize> {
    let pointed = (data.len() - pos >= 8)
        .then(|| u32::from_le_bytes(data[pos..pos + 4].try_into().unwrap()) as usize)
        .filter(|len| *len > 0)
        .and_then(|len| pos.checked_add(8 + len))
        .filter(|next| *next < data.len() && record_at(data, *next).is_some());
    let limit = pointed.unwrap_or(data.len().saturating_sub(HEADER - 1));
    let scanned = (pos + 1..limit).find(|&q| record_at(data, q).is_some());
    match (scanned, pointed) {
        (Some(q), Some(p)) => {
            let mut at = q;
            while at < p {
                match record_at(data, at) {
                    Some((_, len)) => at += len,
                    None => break,
                }
            }
            Some(if at == p { q } else { p })
        }
        (q, p) => q.or(p),
    }
}

/// Reads the records of a segment, skipping damage. Only the `last` segment may end in a
/// torn tail: an incomplete record (its length runs past the end, or nothing but zeros
/// follows) with no valid record after it.
fn read_segment(data: &Bytes, last: bool) -> SegmentRead {
    let mut out = SegmentRead {
        records: Vec::new(),
        damaged: Vec::new(),
        torn: None,
    };
    let mut pos = 0;
    while pos < data.len() {
        if let Some((rec, len)) = record_at(data, pos) {
            out.records.push(rec);
            for (_, after) in &mut out.damaged {
                *after += 1;
            }
            pos += len;
            continue;
        }
        match resync(data, pos) {
            Some(next) => {
                out.damaged.push((pos..next, 0));
                pos = next;
            }
            None => {
                let rest = &data[pos..];
                let incomplete = rest.len() < HEADER
                    || 8 + u32::from_le_bytes(rest[0..4].try_into().unwrap()) as usize > rest.len()
                    || rest.iter().all(|b| *b == 0);
                if last && incomplete {
                    out.torn = Some(pos);
                } else {
                    out.damaged.push((pos..data.len(), 0));
                }
                break;
            }
        }
    }
    out
}

/// Reads the log in `dir` (which must exist): cuts a torn tail, reads past damage and works
/// out what it cost (see the module's documentation).
pub fn recover(dir: &Path) -> io::Result<Recovered> {
    let mut r = Recovered::default();
    let mut seals: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
    let mut commits: BTreeMap<u64, bool> = BTreeMap::new();
    let segments = list_segments(dir)?;
    // The state at the start of the oldest segment: every input and sequence number before it
    // belongs to batches that ended (the deletion rule).
    let mut base: Option<(u64, u64, u64)> = match segments.first() {
        Some((0, _)) => Some((0, 0, 0)),
        _ => None,
    };
    let count = segments.len();
    // The previous segment's index, path and length.
    let mut prev: Option<(u64, PathBuf, u64)> = None;
    let mut prev_damaged = false;
    for (i, (index, path)) in segments.into_iter().enumerate() {
        let data = Bytes::from(std::fs::read(&path)?);
        let read = read_segment(&data, i + 1 == count);
        // What the segments before hold: a checkpoint that counts more means records were
        // lost at their end (or a whole segment is missing).
        let before = (r.next_input.max(r.sealed_end), r.sealed_end);
        let mut seg = Segment {
            index,
            path: path.clone(),
            bytes: data.len() as u64,
            data_end: 0,
            max_seal: None,
            quarantine: None,
        };
        for rec in read.records {
            match rec {
                Record::Data { first, rows, body } => {
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
                    // Only the first record of a segment is a checkpoint.
                    if i == 0 {
                        base = Some((next_input, next_seq, sealed_end));
                    }
                    if let Some((p_index, p_path, p_len)) = &prev
                        && !prev_damaged
                        && (next_input > before.0 || sealed_end > before.1)
                    {
                        r.damage.push(if *p_index + 1 == index {
                            Damage {
                                index: *p_index,
                                path: p_path.clone(),
                                bytes: *p_len..*p_len,
                                records_after: 0,
                                ends_short: true,
                            }
                        } else {
                            Damage {
                                index: *p_index + 1,
                                path: segment_path(dir, *p_index + 1),
                                bytes: 0..0,
                                records_after: 0,
                                ends_short: true,
                            }
                        });
                    }
                    r.next_input = r.next_input.max(next_input);
                    r.next_seq = r.next_seq.max(next_seq);
                    r.sealed_end = r.sealed_end.max(sealed_end);
                }
            }
        }
        prev_damaged = !read.damaged.is_empty();
        for (range, after) in read.damaged {
            r.damage.push(Damage {
                index,
                path: path.clone(),
                bytes: range.start as u64..range.end as u64,
                records_after: after,
                ends_short: false,
            });
        }
        prev = Some((index, path.clone(), data.len() as u64));
        if let Some(pos) = read.torn {
            // A torn write (crash during append): what follows was never acknowledged.
            let cut = (data.len() - pos) as u64;
            tracing::warn!(segment = %path.display(), bytes = cut, "cutting a torn tail off the write-ahead log");
            let f = OpenOptions::new().write(true).open(&path)?;
            f.set_len(pos as u64)?;
            f.sync_all()?;
            r.truncated += cut;
            seg.bytes = pos as u64;
        }
        r.segments.push(seg);
    }
    r.data.sort_by_key(|(first, _, _)| *first);
    // A data record lost with its seal may leave sealed inputs above the last one read.
    r.next_input = r.next_input.max(r.sealed_end);
    r.tail_start = r.sealed_end;
    if r.truncated > 0 {
        // A torn tail's seals were never durable, so their batches were never sent; but
        // damage can look like a torn tail: never reuse a number it can have held.
        r.next_seq += r.truncated / SEAL_FRAMED + 1;
    }
    if !r.damage.is_empty() {
        plan_after_damage(&mut r, &mut seals, &commits, base);
    }
    r.pending = seals
        .iter()
        .filter(|(seq, _)| !commits.contains_key(seq))
        .map(|(&seq, &(start, end))| Pending { seq, start, end })
        .collect();
    r.seals = seals;
    r.ended = commits;
    Ok(r)
}

/// After damage: re-forms lost seals whose range and number are certain (into `seals`),
/// lists the inputs to send again and the inputs lost, starts the pipeline after the last
/// gap of the unsealed tail, and moves `next_seq` past every number a lost seal can have had.
///
/// `base` is the state at the start of the oldest segment (`next_input, next_seq,
/// sealed_end`), when known: every input below its `next_input` was in segments deleted
/// because their batches had ended, and every batch sealed since has a sequence number of at
/// least its `next_seq`.
fn plan_after_damage(
    r: &mut Recovered,
    seals: &mut BTreeMap<u64, (u64, u64)>,
    commits: &BTreeMap<u64, bool>,
    base: Option<(u64, u64, u64)>,
) {
    let present: BTreeSet<u64> = r.data.iter().map(|(first, _, _)| *first).collect();
    // Inputs below this are not expected in the log.
    let lowest = match base {
        Some((next_input, _, _)) => next_input,
        None => {
            let first_data = present.first().copied().unwrap_or(r.next_input);
            let first_seal = seals.values().map(|(s, _)| *s).min().unwrap_or(first_data);
            first_data.min(first_seal)
        }
    };
    let damaged_bytes: u64 = r.damage.iter().map(|d| d.bytes.end - d.bytes.start).sum();
    // The pipeline numbers its inputs without gaps: it starts after the last lost input of the
    // unsealed tail.
    let missing_in_tail = (r.sealed_end..r.next_input)
        .rev()
        .find(|i| !present.contains(i));
    r.tail_start = missing_in_tail.map_or(r.sealed_end, |i| i + 1);
    // The input ranges no known seal covers, below the tail, with the sequence numbers of the
    // known batches around them (`None`: not known).
    let mut by_start: Vec<(u64, u64, u64)> = seals.iter().map(|(q, (s, e))| (*s, *e, *q)).collect();
    by_start.sort_unstable();
    let mut gaps: Vec<(Range<u64>, Option<u64>, Option<u64>)> = Vec::new();
    let mut at = base.map_or(lowest, |(_, _, sealed_end)| sealed_end.min(lowest));
    let mut before = base.and_then(|(_, next_seq, _)| next_seq.checked_sub(1));
    for &(s, e, q) in &by_start {
        if s > at {
            gaps.push((at..s, before, Some(q)));
        }
        at = at.max(e);
        before = Some(q);
    }
    // Inputs a checkpoint counts as sealed after the last known seal.
    if r.sealed_end > at {
        gaps.push((at..r.sealed_end, before, Some(r.next_seq)));
        at = r.sealed_end;
    }
    // Unsealed inputs before the tail's last gap.
    if r.tail_start > at {
        gaps.push((at..r.tail_start, None, None));
    }
    let mut lost: Vec<u64> = Vec::new();
    for (gap, before, after) in gaps {
        // The sequence numbers a batch of this gap can have had: between the neighbours'.
        let from = match before {
            Some(b) => Some(b + 1),
            // No known batch before: the oldest segment's first number, if known.
            None if after.is_some() => base.map(|(_, next_seq, _)| next_seq),
            None => None,
        };
        let candidates: Option<Vec<u64>> = match (from, after) {
            (Some(f), Some(a)) if a > f => {
                Some((f..a).filter(|q| !seals.contains_key(q)).collect())
            }
            _ => None,
        };
        match candidates.as_deref() {
            Some(c) if !c.is_empty() && c.iter().all(|q| commits.contains_key(q)) => {
                // Every batch the gap can have been in ended.
                continue;
            }
            Some(&[seq]) => {
                // One lost seal between known ones: its range and number are certain.
                tracing::warn!(seq, inputs = ?gap, "re-forming a batch whose seal record was lost");
                seals.insert(seq, (gap.start, gap.end));
                continue;
            }
            _ => {}
        }
        let mut run: Option<Range<u64>> = None;
        for i in gap {
            if present.contains(&i) {
                match &mut run {
                    Some(r) => r.end = i + 1,
                    None => run = Some(i..i + 1),
                }
            } else {
                if i >= lowest {
                    lost.push(i);
                }
                r.orphans.extend(run.take());
            }
        }
        r.orphans.extend(run);
    }
    // Lost inputs of batches not known to have ended, and of the tail.
    for (seq, (s, e)) in seals.iter() {
        if !commits.contains_key(seq) {
            lost.extend((*s..*e).filter(|i| *i >= lowest && !present.contains(i)));
        }
    }
    lost.extend((r.tail_start..r.next_input).filter(|i| !present.contains(i)));
    lost.sort_unstable();
    lost.dedup();
    for i in lost {
        match r.lost.last_mut() {
            Some(l) if l.end == i => l.end = i + 1,
            _ => r.lost.push(i..i + 1),
        }
    }
    // A lost seal may have used any number above the highest known one: never reuse them.
    let highest = seals.keys().next_back().map_or(0, |q| q + 1);
    r.next_seq = r.next_seq.max(highest) + damaged_bytes / SEAL_FRAMED + 1;
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
            quarantine: None,
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
        // The lowest start: a batch sent again after damage has a new number for old inputs.
        self.open
            .values()
            .map(|(start, _)| *start)
            .min()
            .unwrap_or(self.sealed_end)
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
            match &seg.quarantine {
                Some(to) => match std::fs::rename(&seg.path, to) {
                    Ok(()) => {
                        if let Some(parent) = to.parent() {
                            sync_dir(parent)?;
                        }
                        tracing::warn!(segment = %seg.path.display(), kept_as = %to.display(), "a damaged write-ahead log segment is done with: kept for forensics");
                    }
                    // Never deleted: it stays where it is.
                    Err(e) => {
                        tracing::error!(segment = %seg.path.display(), kept_as = %to.display(), error = %e, "cannot move a damaged write-ahead log segment aside; it stays in the log")
                    }
                },
                None => {
                    std::fs::remove_file(&seg.path)?;
                    tracing::debug!(segment = %seg.path.display(), "write-ahead log segment deleted");
                }
            }
            self.stats.spool_bytes.fetch_sub(seg.bytes, Relaxed);
            removed = true;
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
#[allow(clippy::single_range_in_vec_init)]
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
        // Sequence numbers skip what the torn bytes can have held.
        assert_eq!((r.sealed_end, r.next_input, r.next_seq), (3, 4, 3));
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

    // ---------------------------------------------------------------------------------------
    // Damage.

    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    /// A log as the writer lays it out, record by record, with where each record is.
    struct Sim {
        /// Segment files' bytes, index = position.
        segs: Vec<Vec<u8>>,
        /// `(segment, byte span, record)`.
        spans: Vec<(usize, Range<usize>, Record)>,
    }

    impl Sim {
        fn write(&self, dir: &Path) {
            for (i, bytes) in self.segs.iter().enumerate() {
                std::fs::write(segment_path(dir, i as u64), bytes).unwrap();
            }
        }

        fn seals(&self) -> BTreeMap<u64, (u64, u64)> {
            self.spans
                .iter()
                .filter_map(|(_, _, r)| match r {
                    Record::Seal { seq, start, end } => Some((*seq, (*start, *end))),
                    _ => None,
                })
                .collect()
        }

        fn commits(&self) -> BTreeSet<u64> {
            self.spans
                .iter()
                .filter_map(|(_, _, r)| match r {
                    Record::Commit { seq, .. } => Some(*seq),
                    _ => None,
                })
                .collect()
        }
    }

    /// A random stream's log: data records of 1 to 5 rows, seals of contiguous ranges,
    /// commits of some of them, over 1 to 4 segments (each after the first opening with its
    /// checkpoint).
    fn simulate(rng: &mut StdRng) -> Sim {
        let (mut next_input, mut next_seq, mut sealed_end) = (0u64, 0u64, 0u64);
        let mut open: Vec<u64> = Vec::new();
        let mut sim = Sim {
            segs: Vec::new(),
            spans: Vec::new(),
        };
        let segments = rng.random_range(1..=4);
        for s in 0..segments {
            let mut buf = Vec::new();
            let mut push = |rec: Record, buf: &mut Vec<u8>| {
                let at = buf.len();
                rec.encode(buf);
                sim.spans.push((s, at..buf.len(), rec));
            };
            if s > 0 {
                push(
                    Record::Checkpoint {
                        next_input,
                        next_seq,
                        sealed_end,
                    },
                    &mut buf,
                );
            }
            for _ in 0..rng.random_range(1..30) {
                let pick = rng.random_range(0..10);
                if pick < 6 || next_input == sealed_end && open.is_empty() {
                    let n = rng.random_range(1..=5u64);
                    let rows: Vec<String> = (0..n)
                        .map(|k| {
                            format!(
                                "{{\"id\":{},\"pad\":\"{}\"}}",
                                next_input * 10 + k,
                                "x".repeat(rng.random_range(0..40))
                            )
                        })
                        .collect();
                    let rows: Vec<&str> = rows.iter().map(String::as_str).collect();
                    push(
                        Record::Data {
                            first: next_input,
                            rows: n as u32,
                            body: body(&rows),
                        },
                        &mut buf,
                    );
                    next_input += 1;
                } else if pick < 8 && next_input > sealed_end {
                    let end = rng.random_range(sealed_end + 1..=next_input);
                    push(
                        Record::Seal {
                            seq: next_seq,
                            start: sealed_end,
                            end,
                        },
                        &mut buf,
                    );
                    open.push(next_seq);
                    next_seq += 1;
                    sealed_end = end;
                } else if !open.is_empty() {
                    let seq = open.remove(rng.random_range(0..open.len()));
                    push(
                        Record::Commit {
                            seq,
                            dead_lettered: false,
                        },
                        &mut buf,
                    );
                }
            }
            sim.segs.push(buf);
        }
        sim
    }

    /// What recovery must guarantee whatever the damage, given which records it touched:
    /// every untouched record is read and nothing is invented; every input not known to have
    /// ended is sent (re-formed, sent again, or in the tail); a batch number is re-used only
    /// for exactly its original inputs, and new numbers are above every number ever used.
    fn check_recovery(sim: &Sim, touched: &BTreeSet<usize>, r: &Recovered, what: &str) {
        let original: BTreeMap<u64, Bytes> = sim
            .spans
            .iter()
            .filter_map(|(_, _, rec)| match rec {
                Record::Data { first, body, .. } => Some((*first, body.clone())),
                _ => None,
            })
            .collect();
        let got: BTreeMap<u64, Bytes> = r.data.iter().map(|(f, _, b)| (*f, b.clone())).collect();
        assert_eq!(got.len(), r.data.len(), "{what}: an input read twice");
        for (f, b) in &got {
            assert_eq!(original.get(f), Some(b), "{what}: input {f} invented");
        }
        for (i, (_, _, rec)) in sim.spans.iter().enumerate() {
            if let Record::Data { first, .. } = rec
                && !touched.contains(&i)
            {
                assert!(
                    got.contains_key(first),
                    "{what}: untouched input {first} not read"
                );
            }
        }
        let seals = sim.seals();
        let commits = sim.commits();
        let ended = |i: u64| {
            seals
                .iter()
                .any(|(q, (s, e))| (*s..*e).contains(&i) && commits.contains(q))
        };
        let mut resends = Recovered {
            data: r.data.clone(),
            orphans: r.orphans.clone(),
            next_seq: r.next_seq,
            ..Recovered::default()
        };
        let resent = resends.assign_resends(false, 1 << 20);
        for i in got.keys() {
            let sent = r.pending.iter().any(|p| (p.start..p.end).contains(i))
                || resent.iter().any(|p| (p.start..p.end).contains(i))
                || *i >= r.tail_start;
            assert!(
                sent || ended(*i),
                "{what}: input {i} neither ended nor sent: {r:#?}"
            );
        }
        for p in &r.pending {
            if let Some((s, e)) = seals.get(&p.seq) {
                assert_eq!(
                    (p.start, p.end),
                    (*s, *e),
                    "{what}: batch {} re-formed with other inputs",
                    p.seq
                );
            } else {
                panic!(
                    "{what}: batch {} re-formed under a number never used",
                    p.seq
                );
            }
        }
        let highest = seals.keys().next_back().map_or(0, |q| q + 1);
        assert!(
            r.next_seq >= highest,
            "{what}: next_seq {} re-uses a number",
            r.next_seq
        );
        assert!(r.next_input >= r.sealed_end && r.tail_start >= r.sealed_end);
        // The pipeline's inputs have no gaps.
        let tail: Vec<u64> = got.keys().copied().filter(|i| *i >= r.tail_start).collect();
        assert!(
            tail.iter()
                .enumerate()
                .all(|(k, i)| *i == r.tail_start + k as u64),
            "{what}: gap in the tail {tail:?} from {}",
            r.tail_start
        );
        assert_eq!(
            tail.len() as u64,
            r.next_input - r.tail_start,
            "{what}: tail {tail:?}"
        );
    }

    #[test]
    fn recovery_reads_every_record_the_damage_did_not_touch() {
        // CHASYNCD_WAL_FUZZ=<rounds>[:<seed>] runs longer, or from another seed.
        let (rounds, seed) = std::env::var("CHASYNCD_WAL_FUZZ")
            .ok()
            .and_then(|v| {
                let (r, s) = v.split_once(':').unwrap_or((&v, "0"));
                Some((r.parse().ok()?, s.parse().ok()?))
            })
            .unwrap_or((400u64, 0u64));
        let mut rng = StdRng::seed_from_u64(0x5eed_0fda_4a6e ^ seed);
        for round in 0..rounds {
            let sim = simulate(&mut rng);
            let dir = tempfile::tempdir().unwrap();
            let mut segs = sim.segs.clone();
            let last = segs.len() - 1;
            let mut touched = BTreeSet::new();
            let kind = rng.random_range(0..4);
            let seg = rng.random_range(0..segs.len());
            let what;
            let mut torn_only = false;
            let mut cut_mid_record = false;
            match kind {
                // Truncation (a torn tail when it is the last segment).
                0 | 1 => {
                    let seg = if kind == 0 { last } else { seg };
                    let len = segs[seg].len();
                    let cut = rng.random_range(0..=len);
                    segs[seg].truncate(cut);
                    cut_mid_record = sim
                        .spans
                        .iter()
                        .any(|(s, span, _)| *s == seg && span.start < cut && cut < span.end);
                    what = format!(
                        "round {round}: segment {seg} of {} cut at {cut} of {len}",
                        last + 1
                    );
                    for (i, (s, span, _)) in sim.spans.iter().enumerate() {
                        if *s == seg && span.end > cut {
                            touched.insert(i);
                        }
                    }
                    torn_only = seg == last;
                }
                // One to three flipped bytes.
                _ => {
                    let flips = rng.random_range(1..=3);
                    let mut at = Vec::new();
                    for _ in 0..flips {
                        let seg = rng.random_range(0..segs.len());
                        if segs[seg].is_empty() {
                            continue;
                        }
                        let pos = rng.random_range(0..segs[seg].len());
                        segs[seg][pos] ^= rng.random_range(1..=255u8);
                        at.push((seg, pos));
                        for (i, (s, span, _)) in sim.spans.iter().enumerate() {
                            if *s == seg && span.contains(&pos) {
                                touched.insert(i);
                            }
                        }
                    }
                    what = format!("round {round}: flips at {at:?}");
                }
            }
            let damaged = Sim {
                segs,
                spans: Vec::new(),
            };
            damaged.write(dir.path());
            let r = recover(dir.path()).unwrap();
            if torn_only {
                // A torn write: what it cut was never written (nor acknowledged).
                let written = Sim {
                    segs: Vec::new(),
                    spans: sim
                        .spans
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| !touched.contains(i))
                        .map(|(_, s)| s.clone())
                        .collect(),
                };
                check_recovery(&written, &BTreeSet::new(), &r, &what);
            } else {
                check_recovery(&sim, &touched, &r, &what);
            }
            if torn_only {
                assert!(
                    r.damage.is_empty(),
                    "{what}: a torn tail reported as damage: {:?}",
                    r.damage
                );
            } else if touched.iter().any(|i| {
                // Damage is reported when it cost data or seals (a lost commit only costs a
                // deduplicated resend, and a cut at a record boundary leaves nothing to see
                // but what the next checkpoint counts) or left a partial record ...
                matches!(sim.spans[*i].2, Record::Data { .. } | Record::Seal { .. })
                    || kind >= 2
                    || cut_mid_record
            }) {
                // ... unless it reads as a torn tail: an incomplete record of the last
                // segment with nothing valid after it.
                let torn_from = (damaged.segs[last].len() as u64 - r.truncated) as usize;
                let looks_torn = r.truncated > 0
                    && touched.iter().all(|i| {
                        let (s, span, _) = &sim.spans[*i];
                        *s == last && span.end > torn_from
                    });
                let beyond_checkpoints = kind == 1 && seg == last;
                assert!(
                    !r.damage.is_empty() || looks_torn || beyond_checkpoints,
                    "{what}: damage not reported"
                );
            }
            // Every damaged range holds a touched record's bytes, never only untouched ones.
            for d in &r.damage {
                let seg = d.index as usize;
                let hits_touched = sim.spans.iter().enumerate().any(|(i, (s, span, _))| {
                    *s == seg
                        && touched.contains(&i)
                        && (d.ends_short || (span.start as u64) < d.bytes.end)
                        && d.bytes.start < span.end as u64
                });
                assert!(hits_touched, "{what}: damage {d:?} on untouched records");
            }
        }
    }

    #[tokio::test]
    async fn a_flipped_byte_mid_segment_loses_one_record_and_the_records_after_it_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let stats = Arc::new(WalStats::default());
        let h = start(dir.path(), 1 << 30, stats);
        for k in 0..200u64 {
            data(&h.ops, &[&format!("{{\"id\":{k}}}")]).await;
        }
        drop(h.ops);
        h.thread.join().unwrap();
        let (_, seg) = list_segments(dir.path()).unwrap().pop().unwrap();
        let mut bytes = std::fs::read(&seg).unwrap();
        // The record holding the middle byte.
        let mid = bytes.len() / 2;
        let data = Bytes::from(bytes.clone());
        let (mut pos, mut hit) = (0, None);
        while pos < data.len() {
            let (rec, len) = Record::decode(&data.slice(pos..)).unwrap();
            if (pos..pos + len).contains(&mid) {
                hit = Some((rec, pos..pos + len));
            }
            pos += len;
        }
        let (Record::Data { first: lost, .. }, span) = hit.unwrap() else {
            panic!("not a data record")
        };
        bytes[mid] ^= 0x20;
        std::fs::write(&seg, &bytes).unwrap();

        let r = recover(dir.path()).unwrap();
        assert_eq!(r.truncated, 0);
        assert_eq!(r.damage.len(), 1, "{:?}", r.damage);
        let d = &r.damage[0];
        assert_eq!(d.bytes, span.start as u64..span.end as u64);
        assert_eq!(d.records_after, 199 - lost);
        assert_eq!(d.path, seg);
        let firsts: Vec<u64> = r.data.iter().map(|(f, _, _)| *f).collect();
        assert_eq!(firsts, (0..200).filter(|i| *i != lost).collect::<Vec<_>>());
        // The inputs before the lost one go again in batches of their own, the pipeline
        // starts after it.
        assert_eq!(r.orphans, vec![0..lost]);
        assert_eq!(r.lost, vec![lost..lost + 1]);
        assert_eq!((r.tail_start, r.next_input), (lost + 1, 200));
        // Nothing was cut: the damaged segment is as it was found.
        assert_eq!(std::fs::read(&seg).unwrap(), bytes);
    }

    /// Writes `records` as segment 0 and recovers it with the record at `drop` destroyed.
    fn recover_without(records: &[Record], drop: usize) -> Recovered {
        let dir = tempfile::tempdir().unwrap();
        let mut buf = Vec::new();
        let mut spans = Vec::new();
        for rec in records {
            let at = buf.len();
            rec.encode(&mut buf);
            spans.push(at..buf.len());
        }
        for b in &mut buf[spans[drop].clone()] {
            *b = 0xEE;
        }
        std::fs::write(segment_path(dir.path(), 0), &buf).unwrap();
        recover(dir.path()).unwrap()
    }

    fn d(first: u64) -> Record {
        Record::Data {
            first,
            rows: 1,
            body: body(&[&format!("{{\"i\":{first}}}")]),
        }
    }

    fn seal_rec(seq: u64, start: u64, end: u64) -> Record {
        Record::Seal { seq, start, end }
    }

    fn commit(seq: u64) -> Record {
        Record::Commit {
            seq,
            dead_lettered: false,
        }
    }

    #[test]
    fn resync_tells_a_damaged_length_from_a_record_inside_a_payload() {
        let dir = tempfile::tempdir().unwrap();
        type Damager<'a> = &'a dyn Fn(&mut Vec<u8>, &[Range<usize>]);
        let write = |records: &[Record], damage: Damager| {
            let mut buf = Vec::new();
            let mut spans = Vec::new();
            for rec in records {
                let at = buf.len();
                rec.encode(&mut buf);
                spans.push(at..buf.len());
            }
            damage(&mut buf, &spans);
            std::fs::write(segment_path(dir.path(), 0), &buf).unwrap();
            recover(dir.path()).unwrap()
        };
        let firsts = |r: &Recovered| r.data.iter().map(|(f, _, _)| *f).collect::<Vec<_>>();
        // A seal whose length now points past the next record, to the one after: the next
        // record is still read.
        let log = [d(0), seal_rec(0, 0, 1), d(1), commit(0), d(2)];
        let r = write(&log, &|buf, spans| {
            let len = (spans[3].start - spans[1].start - 8) as u32;
            buf[spans[1].start..spans[1].start + 4].copy_from_slice(&len.to_le_bytes());
        });
        assert_eq!(firsts(&r), vec![0, 1, 2]);
        assert_eq!(
            r.damage[0].bytes,
            spans_of(&log)[1].start as u64..spans_of(&log)[2].start as u64
        );
        // A body that holds a whole record, and a damaged byte in that body after it: the
        // record inside the body is not taken for one.
        let mut inner = Vec::new();
        commit(0).encode(&mut inner);
        let mut body = b"{\"x\":\"".to_vec();
        body.extend_from_slice(&inner);
        body.extend_from_slice(b"\"}\n");
        let log = [
            d(0),
            seal_rec(0, 0, 1),
            Record::Data {
                first: 1,
                rows: 1,
                body: Bytes::from(body),
            },
            d(2),
        ];
        let r = write(&log, &|buf, spans| {
            let last = spans[2].end - 3;
            buf[last] ^= 1;
        });
        assert_eq!(firsts(&r), vec![0, 2]);
        assert_eq!(
            r.pending,
            vec![Pending {
                seq: 0,
                start: 0,
                end: 1
            }]
        );
        assert_eq!(r.damage.len(), 1);
    }

    fn spans_of(records: &[Record]) -> Vec<Range<usize>> {
        let mut buf = Vec::new();
        records
            .iter()
            .map(|rec| {
                let at = buf.len();
                rec.encode(&mut buf);
                at..buf.len()
            })
            .collect()
    }

    #[test]
    fn damage_in_keys_log_costs_only_the_ends_it_held() {
        let dir = tempfile::tempdir().unwrap();
        let mut buf = Vec::new();
        let mut spans = Vec::new();
        for k in 0..3u32 {
            let at = buf.len();
            Record::KeyEnded {
                at_ms: 1_000 + u64::from(k),
                key: Bytes::from(format!("token-{k}")),
                outcome: KeyOutcome::committed(k),
            }
            .encode(&mut buf);
            spans.push(at..buf.len());
        }
        buf[spans[1].start + 12] ^= 0xFF;
        std::fs::write(dir.path().join(KEYS_FILE), &buf).unwrap();
        let keys = load_keys(dir.path(), 0).unwrap();
        let mut names: Vec<&[u8]> = keys.keys().map(|k| &k[..]).collect();
        names.sort();
        assert_eq!(names, vec![&b"token-0"[..], &b"token-2"[..]]);
        // Kept as found.
        assert_eq!(
            std::fs::read(dir.path().join("keys.log.damaged")).unwrap(),
            buf
        );
    }

    #[test]
    fn a_lost_seal_between_known_ones_is_re_formed_under_its_own_number() {
        let log = [
            d(0),
            d(1),
            d(2),
            d(3),
            seal_rec(0, 0, 1),
            seal_rec(1, 1, 3),
            seal_rec(2, 3, 4),
            d(4),
        ];
        let r = recover_without(&log, 5);
        assert_eq!(r.damage.len(), 1);
        assert_eq!(
            r.pending,
            vec![
                Pending {
                    seq: 0,
                    start: 0,
                    end: 1
                },
                Pending {
                    seq: 1,
                    start: 1,
                    end: 3
                },
                Pending {
                    seq: 2,
                    start: 3,
                    end: 4
                },
            ]
        );
        assert!(r.orphans.is_empty() && r.lost.is_empty());
        assert_eq!((r.tail_start, r.next_input), (4, 5));
        assert!(r.next_seq > 3);

        // Its commit survived: nothing to send for it.
        let log = [
            d(0),
            d(1),
            d(2),
            seal_rec(0, 0, 1),
            seal_rec(1, 1, 2),
            seal_rec(2, 2, 3),
            commit(1),
        ];
        let r = recover_without(&log, 4);
        assert_eq!(
            r.pending.iter().map(|p| p.seq).collect::<Vec<_>>(),
            vec![0, 2]
        );
        assert!(r.orphans.is_empty());
    }

    #[test]
    fn inputs_whose_batch_number_is_not_certain_are_sent_again_under_new_numbers() {
        // The last seal is lost: its inputs may have been sent; they are batched again with
        // the tail (at least once), under numbers above any the lost seal can have had.
        let log = [d(0), d(1), d(2), seal_rec(0, 0, 1), seal_rec(1, 1, 3), d(3)];
        let r = recover_without(&log, 4);
        assert_eq!(
            r.pending,
            vec![Pending {
                seq: 0,
                start: 0,
                end: 1
            }]
        );
        assert!(r.orphans.is_empty());
        assert_eq!((r.tail_start, r.next_input), (1, 4));
        assert!(r.next_seq >= 2);

        // A lost data record of the unsealed tail: the inputs before it go again in batches
        // of their own, the pipeline starts after it.
        let log = [d(0), seal_rec(0, 0, 1), d(1), d(2), d(3), d(4), d(5)];
        let mut r = recover_without(&log, 4);
        assert_eq!(r.orphans, vec![1..3]);
        assert_eq!(r.lost, vec![3..4]);
        assert_eq!((r.tail_start, r.next_input), (4, 6));
        assert_eq!(r.inputs(r.tail_start, r.next_input).len(), 2);
        let n = r.next_seq;
        assert!(n >= 1);
        let mut whole = Recovered {
            data: r.data.clone(),
            orphans: r.orphans.clone(),
            next_seq: n,
            ..Recovered::default()
        };
        assert_eq!(
            r.assign_resends(false, 1 << 20),
            vec![Pending {
                seq: n,
                start: 1,
                end: 3
            }]
        );
        assert_eq!(r.next_seq, n + 1);
        // One body a batch for a format whose bodies do not follow one another, and batches
        // of at most `max_bytes` otherwise.
        assert_eq!(
            whole.assign_resends(true, 1 << 20),
            vec![
                Pending {
                    seq: n,
                    start: 1,
                    end: 2
                },
                Pending {
                    seq: n + 1,
                    start: 2,
                    end: 3
                }
            ]
        );
        whole.orphans = vec![1..3];
        whole.next_seq = n;
        assert_eq!(whole.assign_resends(false, 1).len(), 2);
    }

    #[tokio::test]
    async fn batches_sent_again_hold_the_segments_of_their_inputs() {
        let dir = tempfile::tempdir().unwrap();
        let stats = Arc::new(WalStats::default());
        // Tiny segments: one per group of records.
        let h = start(dir.path(), 10, stats.clone());
        for _ in 0..4 {
            data(&h.ops, &["{\"x\":1}"]).await;
        }
        seal(&h.ops, 0, 0, 1).await;
        drop(h.ops);
        h.thread.join().unwrap();
        // Damage in the segment of input 1: inputs 2 and 3 are the tail, input 1 is lost.
        let segs = list_segments(dir.path()).unwrap();
        let seg1 = &segs[1].1;
        let mut b = std::fs::read(seg1).unwrap();
        let at = b.len() - 3;
        b[at] ^= 1;
        std::fs::write(seg1, &b).unwrap();
        let mut r = recover(dir.path()).unwrap();
        assert_eq!(r.damage.len(), 1);
        assert_eq!((r.lost.clone(), r.tail_start), (vec![1..2], 2));
        // A batch sent again with a high number and low inputs keeps the watermark low.
        r.orphans = vec![0..1];
        let resend = r.assign_resends(false, 1 << 20);
        let h = start_writer(
            WriterStart {
                dir: dir.path().to_path_buf(),
                segment_bytes: 10,
                segments: r.segments.clone(),
                pending: r.pending.iter().chain(&resend).copied().collect(),
                next_input: r.next_input,
                next_seq: r.next_seq,
                sealed_end: r.sealed_end,
                open_keys: Default::default(),
            },
            stats,
        )
        .unwrap();
        h.ops
            .send(Op::Commit {
                seq: 0,
                dead_lettered: false,
            })
            .unwrap();
        data(&h.ops, &["{\"x\":2}"]).await;
        assert_eq!(*h.watermark.borrow(), 0);
        assert!(segment_path(dir.path(), 0).exists());
        drop(h.ops);
        h.thread.join().unwrap();
    }
}
