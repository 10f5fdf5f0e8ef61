//! One insert of a batch through the `clickhouse` crate, and its retries.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicU32, AtomicUsize};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::batch::Batch;
use crate::client::client_for;
use crate::config::{Config, quote_ident, redact_url};
use crate::delivery::limiter::Limiter;
use crate::delivery::retry::RetryPolicy;
use crate::error::{Error, Result};
use crate::stats::Counters;

/// Body chunk size: each chunk is compressed and written on its own, so the request streams.
const CHUNK: usize = 1 << 20;

/// One ClickHouse endpoint and its health.
struct Endpoint {
    client: clickhouse::Client,
    url: String,
    in_flight: AtomicUsize,
    failures: AtomicU32,
    down_until: Mutex<Option<Instant>>,
}

/// Sends batches to the configured endpoints, retrying as the policy says, within the
/// adaptive concurrency limit.
pub(crate) struct Sink {
    endpoints: Vec<Endpoint>,
    next: AtomicUsize,
    limiter: Arc<Limiter>,
    send_timeout: Duration,
    insert_timeout: Duration,
    retry: RetryPolicy,
    block_rows: String,
    /// The user of batches that name none (the configuration's, or the server's `default`).
    default_user: String,
    /// Cancelled when delivery gives up ([`Sink::abandon`]).
    abandoned: tokio_util::sync::CancellationToken,
}

/// How a batch ended after all its attempts.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// Committed after this many attempts.
    Committed {
        /// Attempts made.
        attempts: u32,
    },
    /// Not committed; the last error and the attempts made.
    Failed {
        /// The last error.
        error: Error,
        /// Attempts made.
        attempts: u32,
    },
}

/// How long an endpoint that failed stays out before it is probed again: 500 ms, doubling
/// with each failure in a row, at most 30 s.
fn endpoint_pause(failures: u32) -> Duration {
    Duration::from_millis(500)
        .saturating_mul(1 << failures.saturating_sub(1).min(6))
        .min(Duration::from_secs(30))
}

impl Sink {
    /// A sink for the endpoints of `config`, sharing `limiter` with its pipeline.
    pub(crate) fn new(config: &Config, limiter: Arc<Limiter>) -> Result<Self> {
        Ok(Self {
            endpoints: config
                .clickhouse
                .url
                .iter()
                .map(|u| {
                    Ok(Endpoint {
                        client: client_for(config, u)?,
                        url: redact_url(u),
                        in_flight: AtomicUsize::new(0),
                        failures: AtomicU32::new(0),
                        down_until: Mutex::new(None),
                    })
                })
                .collect::<Result<_>>()?,
            next: AtomicUsize::new(0),
            limiter,
            send_timeout: config.clickhouse.send_timeout,
            insert_timeout: config.clickhouse.insert_timeout,
            retry: RetryPolicy::of(&config.delivery),
            block_rows: config.batching.max_rows.max(1_048_449).to_string(),
            default_user: config
                .clickhouse
                .user
                .clone()
                .unwrap_or_else(|| "default".into()),
            abandoned: tokio_util::sync::CancellationToken::new(),
        })
    }

    /// The token that gives up delivery when cancelled ([`crate::Dispatcher::abandon`]): no
    /// attempt starts from then on, attempts in flight are abandoned (their outcome is
    /// unknown) and waits between attempts end; every batch fails at once (and goes to the
    /// spool, under its own id).
    pub(crate) fn abandoned(&self) -> tokio_util::sync::CancellationToken {
        self.abandoned.clone()
    }

    /// The endpoint for the next attempt: the least loaded of those that are up (ties go
    /// round-robin); when all are down, the one whose pause ends first (a probe).
    fn pick(&self) -> usize {
        let n = self.endpoints.len();
        if n == 1 {
            return 0;
        }
        let now = Instant::now();
        let start = self.next.fetch_add(1, Relaxed);
        let mut best: Option<(usize, usize)> = None;
        let mut earliest: Option<(usize, Instant)> = None;
        for k in 0..n {
            let i = (start + k) % n;
            let e = &self.endpoints[i];
            match *e.down_until.lock().unwrap() {
                Some(until) if until > now => {
                    if earliest.is_none_or(|(_, t)| until < t) {
                        earliest = Some((i, until));
                    }
                }
                _ => {
                    let load = e.in_flight.load(Relaxed);
                    if best.is_none_or(|(_, l)| load < l) {
                        best = Some((i, load));
                    }
                }
            }
        }
        best.map(|(i, _)| i)
            .or(earliest.map(|(i, _)| i))
            .unwrap_or(0)
    }

    fn mark(&self, i: usize, result: &Result<()>) {
        let e = &self.endpoints[i];
        match result {
            Ok(()) => {
                e.failures.store(0, Relaxed);
                *e.down_until.lock().unwrap() = None;
            }
            // The server answered: it is up, whatever it thought of the insert.
            Err(Error::Server { .. }) => {
                e.failures.store(0, Relaxed);
                *e.down_until.lock().unwrap() = None;
            }
            Err(err) if err.kind().is_retryable() && self.endpoints.len() > 1 => {
                let failures = e.failures.fetch_add(1, Relaxed) + 1;
                let pause = endpoint_pause(failures);
                *e.down_until.lock().unwrap() = Some(Instant::now() + pause);
                tracing::warn!(endpoint = %e.url, ?pause, error = %err.report(), "endpoint taken out");
            }
            Err(_) => {}
        }
    }

    /// The INSERT statement of a batch.
    pub(crate) fn insert_sql(batch: &Batch) -> String {
        let mut sql = format!(
            "INSERT INTO {}.{}",
            quote_ident(batch.database()),
            quote_ident(batch.table())
        );
        if !batch.columns.is_empty() {
            sql.push_str(" (");
            for (i, c) in batch.columns.iter().enumerate() {
                if i > 0 {
                    sql.push_str(", ");
                }
                sql.push_str(&quote_ident(c));
            }
            sql.push(')');
        }
        sql.push_str(" FORMAT ");
        sql.push_str(batch.format.name());
        sql
    }

    /// Every setting an insert of `batch` is sent with, in order: the batch's own, then those
    /// the engine needs for idempotent, atomic inserts (which win over the batch's); or, for a
    /// replay of a recorded insert, the recorded ones as they are.
    pub(crate) fn settings_of(&self, batch: &Batch) -> Vec<(String, String)> {
        if batch.origin.exact_settings {
            return batch.origin.settings.to_vec();
        }
        let id = batch.id.to_string();
        let engine = [
            ("async_insert", "0".to_string()),
            ("insert_deduplicate", "1".to_string()),
            ("insert_deduplication_token", id.clone()),
            ("query_id", id),
            // One batch, one insert block: the insert is atomic, so a data error proves that
            // nothing of the batch landed.
            ("max_insert_block_size", self.block_rows.clone()),
        ];
        let mut out: Vec<(String, String)> = batch
            .origin
            .settings
            .iter()
            .filter(|(name, _)| !engine.iter().any(|(e, _)| e == name))
            .cloned()
            .collect();
        out.extend(engine.into_iter().map(|(k, v)| (k.to_string(), v)));
        out
    }

    /// The user `batch` is sent as.
    pub(crate) fn user_of<'a>(&'a self, batch: &'a Batch) -> &'a str {
        batch.user().unwrap_or(&self.default_user)
    }

    /// The exact insert of `batch` as this sink sends it, for the spool.
    pub(crate) fn insert_spec(&self, batch: &Batch) -> crate::spool::InsertSpec {
        let settings = self.settings_of(batch);
        let find = |name: &str| {
            settings
                .iter()
                .rev()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        crate::spool::InsertSpec {
            statement: Self::insert_sql(batch),
            dedup_token: find("insert_deduplication_token"),
            query_id: find("query_id"),
            user: self.user_of(batch).to_string(),
            settings,
        }
    }

    /// One attempt: the batch's bytes, its id as dedup token and query id, to one endpoint,
    /// within the concurrency limit.
    pub(crate) async fn attempt(&self, batch: &Batch) -> Result<()> {
        let permit = self.limiter.acquire().await;
        let i = self.pick();
        let e = &self.endpoints[i];
        e.in_flight.fetch_add(1, Relaxed);
        let result = self.attempt_on(&e.client, batch).await;
        e.in_flight.fetch_sub(1, Relaxed);
        self.mark(i, &result);
        permit.done(result.as_ref().err().map(Error::kind));
        result
    }

    async fn attempt_on(&self, client: &clickhouse::Client, batch: &Batch) -> Result<()> {
        let client = match &batch.origin.credentials {
            Some(c) => client
                .clone()
                .with_user(c.user.clone())
                .with_password(c.password.expose().to_string()),
            None => client.clone(),
        };
        let mut insert = client
            .insert_formatted_with(Self::insert_sql(batch))
            .with_timeouts(Some(self.send_timeout), Some(self.insert_timeout));
        for (name, value) in self.settings_of(batch) {
            insert = insert.with_setting(name, value);
        }
        let mut offset = 0;
        while offset < batch.bytes.len() {
            let end = (offset + CHUNK).min(batch.bytes.len());
            insert.send(batch.bytes.slice(offset..end)).await?;
            offset = end;
        }
        insert.end().await?;
        Ok(())
    }

    /// Attempts until the batch is committed, the error is not retryable, the policy's
    /// attempts are used up, or delivery gives up (see [`abandoned`](Self::abandoned)).
    pub(crate) async fn send(&self, batch: &Batch, counters: &Counters) -> Outcome {
        let mut attempt = 1;
        let mut last: Option<Error> = None;
        loop {
            let given_up = |last: Option<Error>, attempts: u32| Outcome::Failed {
                error: Error::Timeout(match last {
                    Some(e) => format!(
                        "delivery gave up (deadline) after {attempts} attempt(s); last error: {}",
                        e.report()
                    ),
                    None => "delivery gave up (deadline) before the batch could be sent".into(),
                }),
                attempts,
            };
            if self.abandoned.is_cancelled() {
                return given_up(last, attempt - 1);
            }
            let result = tokio::select! {
                biased;
                r = self.attempt(batch) => r,
                _ = self.abandoned.cancelled() => {
                    return given_up(Some(Error::Timeout(
                        "an attempt in flight was abandoned: its outcome is unknown".into(),
                    )), attempt);
                }
            };
            match result {
                Ok(()) => return Outcome::Committed { attempts: attempt },
                Err(error) => {
                    counters.failed_attempts.fetch_add(1, Relaxed);
                    counters.note_failure(&error);
                    let kind = error.kind();
                    if !kind.is_retryable() || attempt >= self.retry.max_attempts {
                        tracing::warn!(batch = %batch.id, attempt, %kind, error = %error.report(), "insert failed, not retrying");
                        return Outcome::Failed {
                            error,
                            attempts: attempt,
                        };
                    }
                    let wait = self.retry.backoff(attempt);
                    tracing::info!(batch = %batch.id, attempt, %kind, error = %error.report(), ?wait, "insert failed, retrying");
                    last = Some(error);
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = self.abandoned.cancelled() => return given_up(last, attempt),
                    }
                    counters.retries.fetch_add(1, Relaxed);
                    attempt += 1;
                }
            }
        }
    }
}

/// Shared by the dispatcher's tasks.
pub(crate) type SharedSink = Arc<Sink>;

/// The soft limit on open files of this process (`ulimit -n`), where the platform tells.
pub(crate) fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// Warns when the connections an ingestor may open come close to `ulimit -n`.
pub(crate) fn check_open_files(config: &Config) -> Option<String> {
    let planned = (config.delivery.max_concurrency * config.clickhouse.url.len()) as u64;
    let limit = open_files_limit()?;
    // Leave room for the process's other files (spool, logs, sockets of the application).
    (planned + 64 > limit).then(|| {
        format!(
            "up to {planned} connections planned ({} in flight x {} endpoint(s)) against \
             an open-files limit of {limit} (ulimit -n): raise the limit or lower max_concurrency",
            config.delivery.max_concurrency,
            config.clickhouse.url.len()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_files_limit_is_read_and_checked() {
        let limit = open_files_limit().expect("Linux tells the open-files limit");
        assert!(limit > 0);
        let mut c = Config::new("http://127.0.0.1:8123", "t");
        c.delivery.max_concurrency = 4;
        assert_eq!(check_open_files(&c), None);
        c.delivery.max_concurrency = limit as usize;
        c.clickhouse.url.push("http://127.0.0.1:8124".into());
        let warning = check_open_files(&c).expect("a warning");
        assert!(
            warning.contains(&format!("open-files limit of {limit}")),
            "{warning}"
        );
        assert!(warning.contains("2 endpoint(s)"), "{warning}");
    }

    #[test]
    fn endpoint_pauses_grow_and_are_capped() {
        assert_eq!(endpoint_pause(1), Duration::from_millis(500));
        assert_eq!(endpoint_pause(2), Duration::from_secs(1));
        assert_eq!(endpoint_pause(4), Duration::from_secs(4));
        assert_eq!(endpoint_pause(50), Duration::from_secs(30));
    }
}
