//! The durable dead-letter spool.
//!
//! A batch that cannot be committed is written to a directory as two files:
//! `<id>.bin`, the encoded payload exactly as it was sent, and `<id>.json`, a
//! [`DeadLetterRecord`] (table, format, columns, batch id, error, attempts, times). Rows the
//! encoder refused are written as `<id>.rejected.jsonl` (one JSON object per row with its
//! reason) next to a record of kind [`EntryKind::Rejected`]. Each file is written to a
//! temporary name, fsynced and renamed, the record last, so a record on disk always has its
//! whole payload. Replaying a batch (see [`crate::replay()`]) sends the same bytes with the same
//! batch id as dedup token, so a batch that had in fact landed is not doubled.
//!
//! A record of [`RECORD_VERSION`] 2 holds the exact insert ([`InsertSpec`]): the statement,
//! every setting it was sent with (the engine's own included), the user it was sent as, the
//! dedup token and the query id. Replay sends exactly that again, so it cannot change what
//! lands. No password is ever written.
//!
//! A batch of one shard of a sharded load ([`crate::Sharded`]) records its shard
//! ([`ShardRef`]): its rows belong on that shard's local table, and a replay sends them
//! there, wherever it is started from.

pub(crate) mod journal;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::batch::Batch;
use crate::batch::RejectedRow;
use crate::error::{Error, ErrorKind, Result};

/// What a spool entry holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    /// An encoded batch the server did not commit; replayable.
    Batch,
    /// Rows the encoder refused (not replayable as they are: fix and resend them).
    Rejected,
}

/// The version of the records this build writes. Records without a version (written before
/// the exact insert was recorded) are version 1.
pub const RECORD_VERSION: u32 = 2;

/// The exact insert of a spooled batch, as it was sent (everything but the password).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InsertSpec {
    /// `INSERT INTO db.t (columns) FORMAT <format>`, as sent.
    pub statement: String,
    /// Every ClickHouse setting of the insert, the engine's own included
    /// (`insert_deduplication_token`, `query_id`, `async_insert`, `max_insert_block_size`,
    /// ...), in the order they were applied.
    pub settings: Vec<(String, String)>,
    /// The user it was sent as.
    pub user: String,
    /// Its `insert_deduplication_token`.
    pub dedup_token: String,
    /// Its `query_id`.
    pub query_id: String,
}

/// The shard of a cluster that a spooled batch was for: its cluster (a name in
/// `system.clusters`) and its shard number there.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ShardRef {
    /// The cluster.
    pub cluster: String,
    /// The shard's number in `system.clusters` (1-based).
    pub shard: u32,
}

/// The metadata of one spool entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetterRecord {
    /// The record's version ([`RECORD_VERSION`]; 1 for records written without one).
    #[serde(default = "version_one")]
    pub version: u32,
    /// The batch id (dedup token) of the entry.
    pub id: Uuid,
    /// Batch or rejected rows.
    pub kind: EntryKind,
    /// Database of the target table.
    pub database: String,
    /// Target table.
    pub table: String,
    /// Insert column list (empty: all columns).
    pub columns: Vec<String>,
    /// Format of the payload (`RowBinary`, `Native`, or `JSONEachRow` for rejected rows).
    pub format: String,
    /// Rows in the payload.
    pub rows: u64,
    /// Payload size in bytes.
    pub bytes: u64,
    /// The last error.
    pub error: String,
    /// Its classification.
    pub error_kind: ErrorKind,
    /// The ClickHouse error code, if any.
    pub code: Option<u32>,
    /// Attempts made.
    pub attempts: u32,
    /// The stream the batch id derives from.
    pub stream_id: Uuid,
    /// Sequence number of the batch.
    pub sequence: u64,
    /// When it was written, milliseconds since the Unix epoch.
    pub dead_lettered_at_ms: u64,
    /// The payload file name, relative to the spool directory.
    pub payload_file: String,
    /// The ClickHouse settings the insert was sent with.
    #[serde(default)]
    pub settings: Vec<(String, String)>,
    /// The user it was inserted as (version 1 records: only when a user was configured).
    #[serde(default)]
    pub user: Option<String>,
    /// The exact insert (version 2 records of batches).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insert: Option<InsertSpec>,
    /// Whether an attempt of the batch may have landed (its outcome was unknown and was not
    /// established): a replay establishes it before sending (`None` in entries written
    /// before this was recorded: then an entry whose error kind is `unknown_outcome`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maybe_sent: Option<bool>,
    /// The earliest time such an attempt can have started, milliseconds since the Unix
    /// epoch, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maybe_sent_since_ms: Option<u64>,
    /// The shard the batch was for, in a sharded load: a replay sends it to that shard's
    /// replicas (read from `system.clusters` of the server it is given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<ShardRef>,
}

fn version_one() -> u32 {
    1
}

impl DeadLetterRecord {
    /// Whether an attempt of the entry's batch may have landed: its outcome was unknown and
    /// was not established.
    pub fn is_maybe_sent(&self) -> bool {
        self.maybe_sent
            .unwrap_or(self.error_kind == ErrorKind::UnknownOutcome)
    }
}

/// A dead-letter spool directory.
#[derive(Debug, Clone)]
pub struct DeadLetterSpool {
    dir: PathBuf,
    /// The shard whose batches this spool writes (recorded with each batch entry).
    shard: Option<ShardRef>,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Spool {
        path: path.to_path_buf(),
        source,
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl DeadLetterSpool {
    /// A spool in `dir` (created on first write).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            shard: None,
        }
    }

    /// The spool of one shard's batches: each batch entry records `shard`.
    pub(crate) fn for_shard(mut self, shard: Option<ShardRef>) -> Self {
        self.shard = shard;
        self
    }

    /// The spool directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn write_atomically(&self, name: &str, data: &[u8]) -> Result<()> {
        let path = self.dir.join(name);
        let tmp = self.dir.join(format!(".{name}.tmp"));
        let mut file = std::fs::File::create(&tmp).map_err(io_err(&tmp))?;
        file.write_all(data).map_err(io_err(&tmp))?;
        file.sync_all().map_err(io_err(&tmp))?;
        drop(file);
        std::fs::rename(&tmp, &path).map_err(io_err(&path))?;
        Ok(())
    }

    fn sync_dir(&self) -> Result<()> {
        std::fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(&self.dir))
    }

    fn write_entry(&self, record: &DeadLetterRecord, payload: &[u8]) -> Result<()> {
        std::fs::create_dir_all(&self.dir).map_err(io_err(&self.dir))?;
        self.write_atomically(&record.payload_file, payload)?;
        let meta = serde_json::to_vec_pretty(record).expect("records serialize");
        self.write_atomically(&format!("{}.json", record.id), &meta)?;
        self.sync_dir()
    }

    /// Writes a batch that could not be committed, with the exact insert it was sent as
    /// (blocking I/O: call from a blocking context).
    pub fn write_batch(
        &self,
        batch: &Batch,
        insert: InsertSpec,
        error: &str,
        code: Option<u32>,
        kind: ErrorKind,
        attempts: u32,
    ) -> Result<PathBuf> {
        let record = DeadLetterRecord {
            version: RECORD_VERSION,
            id: batch.id,
            kind: EntryKind::Batch,
            database: batch.database().to_string(),
            table: batch.table().to_string(),
            columns: batch.columns.to_vec(),
            format: batch.format.to_string(),
            rows: batch.rows as u64,
            bytes: batch.bytes.len() as u64,
            error: error.to_string(),
            error_kind: kind,
            code,
            attempts,
            stream_id: batch.stream_id(),
            sequence: batch.sequence(),
            dead_lettered_at_ms: now_ms(),
            payload_file: format!("{}.bin", batch.id),
            settings: batch.settings().to_vec(),
            user: Some(insert.user.clone()),
            insert: Some(insert),
            maybe_sent: Some(batch.maybe_sent.is_some()),
            maybe_sent_since_ms: batch.maybe_sent.and_then(|m| m.since).map(|t| {
                t.duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64)
            }),
            shard: self.shard.clone(),
        };
        self.write_entry(&record, &batch.bytes)?;
        Ok(self.dir.join(format!("{}.json", record.id)))
    }

    /// Writes rows the encoder refused while batch `batch` was open.
    pub fn write_rejected(&self, batch: &Batch, rows: &[RejectedRow]) -> Result<PathBuf> {
        let id = crate::dedup::derived_id(&batch.id, u32::MAX);
        let mut payload = Vec::new();
        for row in rows {
            let line = serde_json::json!({
                "reason": row.reason,
                "row": row.record,
            });
            serde_json::to_writer(&mut payload, &line).expect("json");
            payload.push(b'\n');
        }
        let record = DeadLetterRecord {
            version: RECORD_VERSION,
            id,
            kind: EntryKind::Rejected,
            database: batch.database().to_string(),
            table: batch.table().to_string(),
            columns: Vec::new(),
            format: "JSONEachRow".into(),
            rows: rows.len() as u64,
            bytes: payload.len() as u64,
            error: rows.first().map(|r| r.reason.clone()).unwrap_or_default(),
            error_kind: ErrorKind::Data,
            code: None,
            attempts: 0,
            stream_id: batch.stream_id(),
            sequence: batch.sequence(),
            dead_lettered_at_ms: now_ms(),
            payload_file: format!("{id}.rejected.jsonl"),
            settings: batch.settings().to_vec(),
            user: batch.user().map(str::to_string),
            insert: None,
            maybe_sent: Some(false),
            maybe_sent_since_ms: None,
            // Not replayable; and a row that could not be routed has no shard.
            shard: None,
        };
        self.write_entry(&record, &payload)?;
        Ok(self.dir.join(format!("{id}.json")))
    }

    /// All complete entries, oldest first.
    pub fn list(&self) -> Result<Vec<DeadLetterRecord>> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err(&self.dir)(e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io_err(&self.dir))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') || !name.ends_with(".json") {
                continue;
            }
            let path = entry.path();
            let data = std::fs::read(&path).map_err(io_err(&path))?;
            let record: DeadLetterRecord = serde_json::from_slice(&data).map_err(|e| {
                io_err(&path)(std::io::Error::new(std::io::ErrorKind::InvalidData, e))
            })?;
            out.push(record);
        }
        out.sort_by_key(|r| (r.dead_lettered_at_ms, r.sequence));
        Ok(out)
    }

    /// The record of entry `id`.
    pub fn record(&self, id: &Uuid) -> Result<DeadLetterRecord> {
        let path = self.dir.join(format!("{id}.json"));
        let data = std::fs::read(&path).map_err(io_err(&path))?;
        serde_json::from_slice(&data)
            .map_err(|e| io_err(&path)(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))
    }

    /// The payload of an entry.
    pub fn payload(&self, record: &DeadLetterRecord) -> Result<Bytes> {
        let path = self.dir.join(&record.payload_file);
        std::fs::read(&path).map(Bytes::from).map_err(io_err(&path))
    }

    /// Deletes an entry (record first, so a crash leaves no record without payload).
    pub fn remove(&self, record: &DeadLetterRecord) -> Result<()> {
        let meta = self.dir.join(format!("{}.json", record.id));
        std::fs::remove_file(&meta).map_err(io_err(&meta))?;
        let payload = self.dir.join(&record.payload_file);
        match std::fs::remove_file(&payload) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io_err(&payload)(e)),
            _ => {}
        }
        self.sync_dir()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn batch() -> Batch {
        Batch {
            id: Uuid::new_v4(),
            origin: crate::batch::Origin {
                stream_id: Uuid::new_v4(),
                sequence: 3,
                database: Arc::from("db"),
                table: Arc::from("t"),
                settings: Arc::from(vec![("s".to_string(), "1".to_string())]),
                credentials: None,
                exact_settings: false,
            },
            columns: Arc::from(vec!["a".to_string()]),
            format: crate::batch::Format::RowBinary,
            bytes: Bytes::from_static(b"\x01\x02"),
            rows: 1,
            parts: crate::batch::Parts::Whole,
            inputs: 0..1,
            rejected: Vec::new(),
            acks: Vec::new(),
            maybe_sent: None,
            insert_id: false,
        }
    }

    fn spec(b: &Batch) -> InsertSpec {
        InsertSpec {
            statement: "INSERT INTO db.t (a) FORMAT RowBinary".into(),
            settings: vec![("s".into(), "1".into())],
            user: "u".into(),
            dedup_token: b.id.to_string(),
            query_id: b.id.to_string(),
        }
    }

    #[test]
    fn old_records_read_as_version_one() {
        let json = r#"{"id":"6c3c0f8e-2b7d-4d55-9a43-51c27b1e93a4","kind":"batch","database":"db",
            "table":"t","columns":[],"format":"RowBinaryWithDefaults","rows":1,"bytes":2,
            "error":"x","error_kind":"retryable","code":null,"attempts":2,
            "stream_id":"6c3c0f8e-2b7d-4d55-9a43-51c27b1e93a4","sequence":0,
            "dead_lettered_at_ms":1,"payload_file":"x.bin"}"#;
        let r: DeadLetterRecord = serde_json::from_str(json).unwrap();
        assert_eq!(r.version, 1);
        assert_eq!(r.insert, None);
        assert!(r.settings.is_empty());
    }

    #[test]
    fn write_list_read_remove() {
        let dir = tempfile::tempdir().unwrap();
        let spool = DeadLetterSpool::new(dir.path().join("dlq"));
        assert!(spool.list().unwrap().is_empty());
        let b = batch();
        let err =
            crate::error::parse_server_error("Code: 60. DB::Exception: no table. (UNKNOWN_TABLE)");
        spool
            .write_batch(&b, spec(&b), &err.report(), err.code(), err.kind(), 1)
            .unwrap();
        spool
            .write_rejected(
                &b,
                &[RejectedRow {
                    reason: "bad value".into(),
                    record: Some("{\"a\":\"x\"}".into()),
                }],
            )
            .unwrap();
        let list = spool.list().unwrap();
        assert_eq!(list.len(), 2);
        let rec = list.iter().find(|r| r.kind == EntryKind::Batch).unwrap();
        assert_eq!(rec.id, b.id);
        assert_eq!(rec.version, RECORD_VERSION);
        assert_eq!(rec.insert, Some(spec(&b)));
        assert_eq!(rec.user.as_deref(), Some("u"));
        assert_eq!(rec.code, Some(60));
        assert_eq!(rec.error_kind, ErrorKind::Permanent);
        assert_eq!(spool.payload(rec).unwrap(), b.bytes);
        assert_eq!(spool.record(&b.id).unwrap(), *rec);
        let rej = list.iter().find(|r| r.kind == EntryKind::Rejected).unwrap();
        let text = String::from_utf8(spool.payload(rej).unwrap().to_vec()).unwrap();
        assert!(text.contains("bad value"), "{text}");
        spool.remove(rec).unwrap();
        assert_eq!(spool.list().unwrap().len(), 1);
    }
}
