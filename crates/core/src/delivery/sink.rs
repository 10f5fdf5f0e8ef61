//! One insert of a batch through the `clickhouse` crate, and its retries.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicU32, AtomicUsize};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::batch::{Batch, MaybeSent};
use crate::client::client_for;
use crate::config::{Config, Credentials, quote_ident, redact_url};
use crate::delivery::limiter::Limiter;
use crate::delivery::outcome::{CHECKS_COMMENT, Resolution, Resolver};
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
    /// The probes running in the background, ended by [`Sink::end_background`] when
    /// delivery ends: none outlives the engine (it would report on a table the engine no
    /// longer writes to).
    background: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// Settles attempts whose outcome is unknown.
    pub(crate) resolver: Resolver,
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
        /// An attempt may have landed (its outcome is unknown and was not established).
        maybe_sent: Option<MaybeSent>,
    },
}

/// Attempts of a batch whose outcome is unknown: since when, and on which endpoints.
struct Unknown {
    maybe: MaybeSent,
    endpoints: Vec<usize>,
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
            background: Mutex::new(Vec::new()),
            resolver: Resolver::new(config),
        })
    }

    /// The token that gives up delivery when cancelled ([`crate::Dispatcher::abandon`]): no
    /// attempt starts from then on, attempts in flight are abandoned (their outcome is
    /// unknown) and waits between attempts end; every batch fails at once (and goes to the
    /// spool, under its own id).
    pub(crate) fn abandoned(&self) -> tokio_util::sync::CancellationToken {
        self.abandoned.clone()
    }

    /// The client of endpoint `i`, as the user of `credentials` when given.
    fn client(&self, i: usize, credentials: Option<&Credentials>) -> clickhouse::Client {
        let client = self.endpoints[i].client.clone();
        match credentials {
            Some(c) => client
                .with_user(c.user.clone())
                .with_password(c.password.expose().to_string()),
            None => client,
        }
    }

    /// Clients of endpoints `endpoints`, as the batch's user, for the checks of an unknown
    /// outcome (their queries carry [`CHECKS_COMMENT`] as `log_comment`).
    fn clients(
        &self,
        batch: &Batch,
        endpoints: impl Iterator<Item = usize>,
    ) -> Vec<clickhouse::Client> {
        endpoints
            .map(|i| {
                self.client(i, batch.origin.credentials.as_ref())
                    .with_setting("log_comment", CHECKS_COMMENT)
            })
            .collect()
    }

    /// Reads in the background what the checks of `batch`'s table can use, the first time
    /// the table (and user) is seen, so that a table that gets at-least-once delivery is
    /// reported before any attempt of it fails.
    pub(crate) fn probe_in_background(sink: &Arc<Sink>, batch: &Batch, counters: &Arc<Counters>) {
        let key = sink.resolver.key(batch);
        if !sink.resolver.wants_probe(&key) {
            return;
        }
        let clients = sink.clients(batch, 0..sink.endpoints.len());
        let task = {
            let (sink, counters) = (sink.clone(), counters.clone());
            tokio::spawn(async move {
                sink.resolver.probe_now(&key, &clients, &counters).await;
            })
        };
        let mut running = sink.background.lock().unwrap_or_else(|e| e.into_inner());
        running.retain(|t| !t.is_finished());
        running.push(task);
    }

    /// Ends the probes still running in the background, called when every batch has ended:
    /// waits up to `grace` for them (so that a short load still says what its tables get),
    /// then stops the rest.
    pub(crate) async fn end_background(&self, grace: Duration) {
        let running: Vec<_> =
            std::mem::take(&mut *self.background.lock().unwrap_or_else(|e| e.into_inner()));
        let deadline = tokio::time::Instant::now() + grace;
        for mut task in running {
            if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
                task.abort();
            }
        }
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
    /// within the concurrency limit. Returns the endpoint too.
    pub(crate) async fn attempt(&self, batch: &Batch) -> (usize, Result<()>) {
        let permit = self.limiter.acquire().await;
        let i = self.pick();
        let e = &self.endpoints[i];
        e.in_flight.fetch_add(1, Relaxed);
        let result = self.attempt_on(i, batch).await;
        e.in_flight.fetch_sub(1, Relaxed);
        self.mark(i, &result);
        permit.done(result.as_ref().err().map(Error::kind));
        (i, result)
    }

    async fn attempt_on(&self, i: usize, batch: &Batch) -> Result<()> {
        let client = self.client(i, batch.origin.credentials.as_ref());
        let mut insert = client
            .insert_formatted_with(Self::insert_sql(batch))
            .with_timeouts(Some(self.send_timeout), Some(self.insert_timeout));
        for (name, value) in self.settings_of(batch) {
            insert = insert.with_setting(name, value);
        }
        let mut offset = 0;
        while offset < batch.bytes.len() {
            let end = (offset + CHUNK).min(batch.bytes.len());
            if let Err(e) = insert.send(batch.bytes.slice(offset..end)).await {
                // The body's channel closed: the request's own end tells why (the server's
                // answer, or a connection that was never made).
                return Err(match insert.end().await {
                    Err(cause) => cause.into(),
                    Ok(()) => e.into(),
                });
            }
            offset = end;
        }
        insert.end().await?;
        Ok(())
    }

    /// Attempts until the batch is committed, the error is not retryable, the policy's
    /// attempts are used up, or delivery gives up (see [`abandoned`](Self::abandoned)).
    /// Before a batch is sent again after an attempt whose outcome is unknown (or, for a
    /// batch that [may have been sent](Batch::mark_maybe_sent), before it is sent at all),
    /// whether that attempt landed is established (see [`crate::Guarantee`]): a batch that
    /// landed is committed without another attempt, and one whose outcome the checks cannot
    /// tell is not sent again.
    pub(crate) async fn send(&self, batch: &Batch, counters: &Counters) -> Outcome {
        // Attempts made, and rounds (attempts and checks that could not be made), which the
        // policy bounds.
        let (mut sent, mut rounds) = (0u32, 0u32);
        let mut last: Option<Error> = None;
        let mut unknown = batch.maybe_sent.map(|maybe| Unknown {
            maybe,
            endpoints: (0..self.endpoints.len()).collect(),
        });
        let given_up =
            |last: Option<Error>, attempts: u32, maybe_sent: Option<MaybeSent>| Outcome::Failed {
                error: Error::Timeout(match last {
                    Some(e) => format!(
                        "delivery gave up (deadline) after {attempts} attempt(s); last error: {}",
                        e.report()
                    ),
                    None => "delivery gave up (deadline) before the batch could be sent".into(),
                }),
                attempts,
                maybe_sent,
            };
        loop {
            if self.abandoned.is_cancelled() {
                return given_up(last, sent, unknown.map(|u| u.maybe));
            }
            if let Some(u) = &unknown {
                let targets = self.clients(batch, u.endpoints.iter().copied());
                let all = self.clients(batch, 0..self.endpoints.len());
                let resolution = tokio::select! {
                    biased;
                    r = self.resolver.resolve(batch, u.maybe, &targets, &all, counters) => r,
                    _ = self.abandoned.cancelled() => {
                        return given_up(last, sent, Some(u.maybe));
                    }
                };
                match resolution {
                    Resolution::Landed(how) => {
                        counters.outcomes_landed.fetch_add(1, Relaxed);
                        tracing::info!(batch = %batch.id, rows = batch.rows, %how, "an earlier attempt whose answer was lost had landed: committed, not sent again");
                        return Outcome::Committed { attempts: sent };
                    }
                    Resolution::NotLanded(how) => {
                        counters.outcomes_not_landed.fetch_add(1, Relaxed);
                        tracing::info!(batch = %batch.id, %how, "no earlier attempt landed: sending it");
                        unknown = None;
                    }
                    Resolution::Deduplicated => unknown = None,
                    Resolution::Unchecked => {
                        counters.unchecked_resends.fetch_add(1, Relaxed);
                        tracing::info!(batch = %batch.id, "sent again unchecked: it may land twice");
                        unknown = None;
                    }
                    Resolution::Unresolved(reason) => {
                        counters.outcomes_unresolved.fetch_add(1, Relaxed);
                        let maybe = u.maybe;
                        let error = Error::UnresolvedOutcome {
                            id: batch.id,
                            reason,
                        };
                        tracing::error!(batch = %batch.id, error = %error.report(), "batch not sent again");
                        return Outcome::Failed {
                            error,
                            attempts: sent,
                            maybe_sent: Some(maybe),
                        };
                    }
                    Resolution::Retry(error) => {
                        rounds += 1;
                        if rounds >= self.retry.max_attempts {
                            tracing::warn!(batch = %batch.id, error = %error.report(), "cannot establish whether an earlier attempt landed, not retrying");
                            return Outcome::Failed {
                                error,
                                attempts: sent,
                                maybe_sent: Some(u.maybe),
                            };
                        }
                        let wait = self.retry.backoff(rounds);
                        tracing::info!(batch = %batch.id, error = %error.report(), ?wait, "cannot establish yet whether an earlier attempt landed");
                        let maybe = u.maybe;
                        tokio::select! {
                            _ = tokio::time::sleep(wait) => {}
                            _ = self.abandoned.cancelled() => {
                                return given_up(Some(error), sent, Some(maybe));
                            }
                        }
                        continue;
                    }
                }
            }
            if sent > 0 {
                counters.retries.fetch_add(1, Relaxed);
            }
            sent += 1;
            rounds += 1;
            let started = std::time::SystemTime::now();
            let (endpoint, result) = tokio::select! {
                biased;
                r = self.attempt(batch) => r,
                _ = self.abandoned.cancelled() => {
                    // The attempt in flight may land: its outcome is unknown.
                    let maybe = MaybeSent { since: Some(started) };
                    let maybe = match unknown {
                        Some(u) => u.maybe.merge(maybe),
                        None => maybe,
                    };
                    return given_up(Some(Error::Timeout(
                        "an attempt in flight was abandoned: its outcome is unknown".into(),
                    )), sent, Some(maybe));
                }
            };
            let error = match result {
                Ok(()) => return Outcome::Committed { attempts: sent },
                Err(error) => error,
            };
            counters.failed_attempts.fetch_add(1, Relaxed);
            counters.note_failure(&error);
            if error.maybe_applied() {
                let maybe = MaybeSent {
                    since: Some(started),
                };
                unknown = Some(match unknown.take() {
                    None => Unknown {
                        maybe,
                        endpoints: vec![endpoint],
                    },
                    Some(mut u) => {
                        u.maybe = u.maybe.merge(maybe);
                        if !u.endpoints.contains(&endpoint) {
                            u.endpoints.push(endpoint);
                        }
                        u
                    }
                });
            }
            let kind = error.kind();
            if !kind.is_retryable() || rounds >= self.retry.max_attempts {
                tracing::warn!(batch = %batch.id, attempt = sent, %kind, error = %error.report(), "insert failed, not retrying");
                return Outcome::Failed {
                    error,
                    attempts: sent,
                    maybe_sent: unknown.map(|u| u.maybe),
                };
            }
            let wait = self.retry.backoff(rounds);
            tracing::info!(batch = %batch.id, attempt = sent, %kind, error = %error.report(), ?wait, "insert failed, retrying");
            last = Some(error);
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.abandoned.cancelled() => {
                    return given_up(last, sent, unknown.map(|u| u.maybe));
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
