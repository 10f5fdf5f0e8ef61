//! Replay of the dead-letter spool.

use std::sync::Arc;

use uuid::Uuid;

use crate::batch::{Batch, Format, Origin, Parts};
use crate::config::Config;
use crate::delivery::limiter::Limiter;
use crate::delivery::sink::{Outcome, Sink};
use crate::error::Result;
use crate::spool::{DeadLetterSpool, EntryKind};
use crate::stats::Counters;

/// What a replay did.
#[derive(Debug, Default, Clone)]
pub struct ReplayReport {
    /// Batches committed (and removed from the spool).
    pub batches: u64,
    /// Rows in those batches.
    pub rows: u64,
    /// Batches that failed again (left in the spool), with the error.
    pub failed: Vec<(Uuid, String)>,
    /// Entries of rejected rows, which are not replayable as they are (left in the spool).
    pub skipped_rejected: u64,
}

/// Sends every batch entry of `spool` again, with its own batch id as the dedup token, through
/// the endpoints, credentials and retry policy of `config` (its table is not used: each entry
/// names its own). Committed entries are removed; failed ones stay, with the new error logged.
///
/// Replaying a batch that had landed after all (e.g. its answer was lost) does not duplicate
/// it on tables that deduplicate (see [`crate::Deduplication`]).
pub async fn replay(config: &Config, spool: &DeadLetterSpool) -> Result<ReplayReport> {
    let limiter = Arc::new(Limiter::new(config.delivery.max_concurrency));
    let sink = Sink::new(config, limiter.clone())?;
    let counters = Counters::new(limiter);
    let mut report = ReplayReport::default();
    for record in spool.list()? {
        if record.kind == EntryKind::Rejected {
            report.skipped_rejected += 1;
            continue;
        }
        let bytes = spool.payload(&record)?;
        let format = match record.format.parse::<Format>() {
            Ok(f) => f,
            Err(why) => {
                report.failed.push((record.id, why));
                continue;
            }
        };
        let batch = Batch {
            id: record.id,
            origin: Origin {
                stream_id: record.stream_id,
                sequence: record.sequence,
                database: Arc::from(record.database.as_str()),
                table: Arc::from(record.table.as_str()),
                settings: Arc::from(record.settings.clone()),
                credentials: None,
            },
            columns: Arc::from(record.columns.clone()),
            format,
            bytes,
            rows: record.rows as usize,
            parts: Parts::Whole,
            inputs: 0..0,
            rejected: Vec::new(),
            acks: Vec::new(),
        };
        match sink.send(&batch, &counters).await {
            Outcome::Committed { .. } => {
                spool.remove(&record)?;
                report.batches += 1;
                report.rows += record.rows;
            }
            Outcome::Failed { error, .. } => {
                tracing::warn!(id = %record.id, error = %error.report(), "replay failed; entry kept");
                report.failed.push((record.id, error.report()));
            }
        }
    }
    Ok(report)
}
