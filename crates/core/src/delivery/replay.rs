//! Replay of the dead-letter spool.

use std::collections::HashMap;
use std::sync::Arc;

use uuid::Uuid;

use crate::batch::{Batch, Format, Origin, Parts};
use crate::catalog::Catalog;
use crate::config::Config;
use crate::delivery::limiter::Limiter;
use crate::delivery::sink::{Outcome, Sink};
use crate::error::Result;
use crate::spool::{DeadLetterRecord, DeadLetterSpool, EntryKind, ShardRef};
use crate::stats::Counters;

/// What a replay did.
#[derive(Debug, Default, Clone)]
pub struct ReplayReport {
    /// Batches committed (and removed from the spool).
    pub batches: u64,
    /// Rows in those batches.
    pub rows: u64,
    /// Batches that failed again, or were not sent (left in the spool), with the reason.
    pub failed: Vec<(Uuid, String)>,
    /// Entries of rejected rows, which are not replayable as they are (left in the spool).
    pub skipped_rejected: u64,
    /// Entries written before the exact insert was recorded (record version 1) that were
    /// sent (see [`replay_with`]).
    pub legacy: u64,
}

/// How [`replay_with`] treats entries recorded for another user.
#[derive(Debug, Default, Clone)]
pub struct ReplayOptions {
    /// Also replay entries recorded for these users, as the configured user (without it, an
    /// entry recorded for a user other than the configured one is not sent).
    pub as_user: Vec<String>,
}

/// [`replay_with`] with the default options: only entries recorded for the configured user.
pub async fn replay(config: &Config, spool: &DeadLetterSpool) -> Result<ReplayReport> {
    replay_with(config, spool, &ReplayOptions::default()).await
}

/// The user `config` authenticates as.
fn configured_user(config: &Config) -> &str {
    config.clickhouse.user.as_deref().unwrap_or("default")
}

/// The batch that an entry's insert was, or why it cannot be sent again.
fn batch_of(
    config: &Config,
    options: &ReplayOptions,
    record: &DeadLetterRecord,
    bytes: bytes::Bytes,
) -> std::result::Result<Batch, String> {
    let user = configured_user(config);
    let recorded_user = record
        .insert
        .as_ref()
        .map(|i| i.user.as_str())
        .or(record.user.as_deref());
    if let Some(recorded) = recorded_user
        && recorded != user
        && !options.as_user.iter().any(|u| u == recorded)
    {
        return Err(format!(
            "recorded for user {recorded:?}, and this replay authenticates as {user:?}: \
             replay it as {recorded:?} (--user), or allow it with --as-user {recorded}"
        ));
    }
    let format: Format = record
        .format
        .parse()
        .map_err(|why| format!("unreadable record: {why}"))?;
    let (settings, exact) = match &record.insert {
        Some(insert) => {
            if insert.dedup_token != record.id.to_string() {
                return Err(format!(
                    "unreadable record: dedup token {} is not the entry's id",
                    insert.dedup_token
                ));
            }
            (insert.settings.clone(), true)
        }
        None => {
            // Version 1: the settings the batch carried (when recorded), the engine's own
            // added by the sink. Where the record does not say how unknown fields were
            // treated, the server's default could drop fields that the original insert
            // refused: send it strict, which can only refuse, never drop.
            let mut settings = record.settings.clone();
            if !settings
                .iter()
                .any(|(k, _)| k == "input_format_skip_unknown_fields")
            {
                settings.push(("input_format_skip_unknown_fields".into(), "0".into()));
            }
            (settings, false)
        }
    };
    let batch = Batch {
        id: record.id,
        origin: Origin {
            stream_id: record.stream_id,
            sequence: record.sequence,
            database: Arc::from(record.database.as_str()),
            table: Arc::from(record.table.as_str()),
            settings: Arc::from(settings),
            credentials: None,
            exact_settings: exact,
        },
        columns: Arc::from(record.columns.clone()),
        format,
        bytes,
        rows: record.rows as usize,
        parts: Parts::Whole,
        inputs: 0..0,
        rejected: Vec::new(),
        acks: Vec::new(),
        maybe_sent: None,
        insert_id: false,
    };
    if let Some(insert) = &record.insert
        && Sink::insert_sql(&batch) != insert.statement
    {
        return Err(format!(
            "unreadable record: its statement {:?} does not match its table, columns and format",
            insert.statement
        ));
    }
    Ok(batch)
}

/// Sends every batch entry of `spool` again, exactly as it was sent: the same statement
/// (table, columns, format), every setting it was sent with, its own batch id as dedup token
/// and query id, through the endpoints, credentials and retry policy of `config` (its table
/// is not used: each entry names its own). Committed entries are removed; failed ones stay,
/// with the new error logged.
///
/// An entry recorded for a user other than the one `config` authenticates as is not sent
/// (it stays, with the reason) unless [`ReplayOptions::as_user`] names that user: passwords
/// are never recorded, and another user's grants and settings profile could change what
/// lands. Entries written before the exact insert was recorded (version 1) are sent with the
/// settings they recorded, if any, and `input_format_skip_unknown_fields = 0` unless they say
/// otherwise.
///
/// Replaying a batch that had landed after all (e.g. its answer was lost) does not duplicate
/// it: on a table that deduplicates by token it is sent again as it is; on any other, an
/// entry whose last attempt's outcome was unknown is first looked up, as delivery does (see
/// [`crate::Guarantee`]): one that landed is removed without being sent, and one whose
/// outcome cannot be told stays, with the reason.
///
/// An entry of one shard of a sharded load (its record names the shard, [`ShardRef`]) goes
/// to that shard's replicas, as `system.clusters` of `config`'s server lists them (with
/// `config`'s `cluster_urls`), not to `config`'s endpoints: its rows belong on that shard. One
/// whose shard cannot be found stays, with the reason.
pub async fn replay_with(
    config: &Config,
    spool: &DeadLetterSpool,
    options: &ReplayOptions,
) -> Result<ReplayReport> {
    let limiter = Arc::new(Limiter::new(config.delivery.max_concurrency));
    let sink = Sink::new(config, limiter.clone())?;
    let counters = Counters::new(limiter.clone());
    let mut report = ReplayReport::default();
    // The sinks of the shards that entries were for, made at their first entry.
    let mut shards: HashMap<ShardRef, std::result::Result<Sink, String>> = HashMap::new();
    let mut catalog = None;
    for record in spool.list()? {
        if record.kind == EntryKind::Rejected {
            report.skipped_rejected += 1;
            continue;
        }
        let bytes = spool.payload(&record)?;
        let batch = match batch_of(config, options, &record, bytes) {
            Ok(b) => b,
            Err(why) => {
                tracing::warn!(id = %record.id, %why, "entry not replayed; kept");
                report.failed.push((record.id, why));
                continue;
            }
        };
        if record.insert.is_none() {
            report.legacy += 1;
        }
        // An attempt whose outcome was never established may have landed: the sink checks
        // before it sends (see `crate::Guarantee`).
        let mut batch = batch;
        if record.is_maybe_sent() {
            batch.mark_maybe_sent(
                record
                    .maybe_sent_since_ms
                    .map(|ms| std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms)),
            );
        }
        let sink = match &record.shard {
            None => &sink,
            Some(shard) => {
                if !shards.contains_key(shard) {
                    let made = shard_sink(config, &mut catalog, shard, &limiter).await;
                    shards.insert(shard.clone(), made);
                }
                match &shards[shard] {
                    Ok(s) => s,
                    Err(why) => {
                        tracing::warn!(id = %record.id, %why, "entry not replayed; kept");
                        report.failed.push((record.id, why.clone()));
                        continue;
                    }
                }
            }
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

/// The sink of `shard`'s replicas (found through `config`'s server), or why there is none.
async fn shard_sink(
    config: &Config,
    catalog: &mut Option<Catalog>,
    shard: &ShardRef,
    limiter: &Arc<Limiter>,
) -> std::result::Result<Sink, String> {
    let why = |e: crate::Error| {
        format!(
            "for shard {} of cluster {:?}, whose replicas cannot be found: {}",
            shard.shard,
            shard.cluster,
            e.report()
        )
    };
    if catalog.is_none() {
        *catalog = Some(Catalog::new(config).map_err(why)?);
    }
    let catalog = catalog.as_ref().expect("made above");
    let urls = crate::catalog::shard_urls(config, catalog, shard)
        .await
        .map_err(why)?;
    tracing::info!(
        cluster = %shard.cluster,
        shard = shard.shard,
        urls = %urls.join(", "),
        "replaying a shard's entries to its replicas"
    );
    let mut c = config.clone();
    c.clickhouse.url = urls;
    c.clickhouse.cluster = None;
    Sink::new(&c, limiter.clone()).map_err(why)
}
