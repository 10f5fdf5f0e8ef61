//! Attempts whose outcome is unknown: whether they landed is established before a batch is
//! sent again, so that a table that does not deduplicate inserts by token still gets every
//! batch once; and what each table can be promised ([`Guarantee`]).
//!
//! An attempt's outcome is unknown when its answer never came (the connection broke after the
//! request went out, no answer in time, a proxy's HTTP error), or when a batch was sealed by a
//! process that died before it heard the answer ([`crate::Batch::mark_maybe_sent`]). On a
//! table that deduplicates by token the batch is simply sent again with the same token. On
//! any other table, before it is sent again, [`Resolver::resolve`] asks the server that the
//! attempt went to:
//!
//! 1. `system.processes`: an attempt still running (its `query_id` is the batch id) is waited
//!    for, at most `insert_timeout`;
//! 2. `system.query_log`, after `SYSTEM FLUSH LOGS`: a `QueryFinish` of the batch id means it
//!    landed. Attempts that all ended in exceptions before writing a row, or no entry at all,
//!    mean that none landed, but only if the server has been up since before the first
//!    attempt that may have been sent (its query log keeps entries in memory for a while and
//!    loses them when it stops), and every attempt that started also ended;
//! 3. where the batch's rows carry its id in the table's `_insert_id` column, the rows with
//!    that id: some means it landed, none that it did not.
//!
//! The batch is sent again only when it is known not to have landed; when the checks cannot
//! tell, it goes to the dead-letter spool with the reason. Where none of the checks is
//! possible (no grant, query logging off, no `_insert_id`), the table gets at-least-once
//! delivery, which is said once, loudly: a warning in the log, [`crate::Stats`]'
//! `at_least_once_tables`, [`crate::Dispatcher::guarantees`].

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde::Serialize;
use tokio::sync::OnceCell;
use tokio::time::Instant;

use crate::batch::{Batch, MaybeSent};
use crate::catalog::Catalog;
use crate::config::{Config, quote_ident};
use crate::error::{Error, Result};
use crate::stats::Counters;
use crate::types::schema::Deduplication;

/// The settings that decide whether an insert appears in `system.query_log`.
const LOG_SETTINGS: [&str; 4] = [
    "log_queries",
    "log_queries_min_type",
    "log_queries_min_query_duration_ms",
    "log_queries_probability",
];

/// How often a still-running attempt is looked for again.
const POLL: Duration = Duration::from_millis(200);

/// Seconds the server must have been up beyond the age of the first attempt for its query
/// log to be complete: `uptime()` counts whole seconds, and clocks tick.
const UPTIME_MARGIN_S: u64 = 2;

/// The `log_comment` of the queries that check an unknown outcome (and read what a table
/// gets), so that they can be told apart in the server's query log.
pub const CHECKS_COMMENT: &str = "chasync: outcome checks";

/// What a table gets when an attempt's outcome is unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Guarantee {
    /// ClickHouse deduplicates the table's inserts by token (a `Replicated*` or `Shared*`
    /// table, or a MergeTree with `non_replicated_deduplication_window`): the batch is sent
    /// again with the same token and lands once.
    Deduplicated,
    /// Whether an earlier attempt landed is established before the batch is sent again
    /// (`system.processes`, `system.query_log`, the `_insert_id` column): the batch lands
    /// once, or, when the checks cannot tell, goes to the dead-letter spool.
    Checked,
    /// None of that is possible: the batch is sent again unchecked, and an attempt whose
    /// answer was lost may land twice.
    AtLeastOnce,
}

impl Guarantee {
    /// A short name: `deduplicated`, `checked`, `at-least-once`.
    pub fn name(self) -> &'static str {
        match self {
            Guarantee::Deduplicated => "deduplicated",
            Guarantee::Checked => "checked",
            Guarantee::AtLeastOnce => "at-least-once",
        }
    }
}

/// What one table gets, for the inserts of one user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableGuarantee {
    /// Database.
    pub database: String,
    /// Table.
    pub table: String,
    /// The user the inserts (and the checks) are made as.
    pub user: String,
    /// The table's engine, and its dedup window when it is a MergeTree.
    pub engine: String,
    /// The guarantee.
    pub guarantee: Guarantee,
    /// Whether `system.query_log` (with `system.processes`) is used for the checks.
    pub query_log: bool,
    /// Whether the `_insert_id` column is used for the checks.
    pub insert_id: bool,
    /// Why the checks that are not used cannot be (a missing grant, logging off, no column).
    pub limits: Vec<String>,
}

impl TableGuarantee {
    /// One line for a log, a readiness probe or a report.
    pub fn describe(&self) -> String {
        let who = format!(
            "{}.{} ({}) for user {}",
            self.database, self.table, self.engine, self.user
        );
        match self.guarantee {
            Guarantee::Deduplicated => format!(
                "{who}: exactly once: ClickHouse deduplicates its inserts by token, so a retry lands once"
            ),
            Guarantee::Checked => {
                let how = match (self.query_log, self.insert_id) {
                    (true, true) => "system.processes, system.query_log and the _insert_id column",
                    (true, false) => "system.processes and system.query_log",
                    _ => "system.processes and the _insert_id column",
                };
                let mut line = format!(
                    "{who}: exactly once: before a batch whose answer was lost is sent again, {how} tell whether it landed"
                );
                if !self.limits.is_empty() {
                    line.push_str(&format!(" ({})", self.limits.join("; ")));
                }
                line
            }
            Guarantee::AtLeastOnce => format!(
                "{who}: AT LEAST ONCE: a batch whose answer was lost is sent again unchecked and may be stored twice, because {}",
                self.limits.join("; ")
            ),
        }
    }
}

/// What the checks of one table and user can use (read once, then cached).
#[derive(Debug)]
pub(crate) struct Probe {
    pub(crate) report: TableGuarantee,
    /// The `SYSTEM FLUSH LOGS` statement the server takes.
    flush: &'static str,
    /// The table is a plain `MergeTree`, which keeps every row it was given.
    plain: bool,
}

impl Probe {
    fn dedup(&self) -> bool {
        self.report.guarantee == Guarantee::Deduplicated
    }
}

/// What the checks of a batch are cached under: the table, the user, the settings of the
/// batch that decide query logging, and whether the rows carry the batch id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct ProbeKey {
    database: String,
    table: String,
    user: String,
    log_settings: Vec<(String, String)>,
    carries_insert_id: bool,
}

impl ProbeKey {
    pub(crate) fn of(batch: &Batch, default_user: &str) -> Self {
        Self::new(
            batch.database(),
            batch.table(),
            batch.user().unwrap_or(default_user),
            batch.settings(),
            batch.insert_id,
        )
    }

    fn new(
        database: &str,
        table: &str,
        user: &str,
        settings: &[(String, String)],
        carries_insert_id: bool,
    ) -> Self {
        let mut log_settings: Vec<(String, String)> = settings
            .iter()
            .filter(|(k, _)| LOG_SETTINGS.contains(&k.as_str()))
            .cloned()
            .collect();
        log_settings.sort();
        Self {
            database: database.to_owned(),
            table: table.to_owned(),
            user: user.to_owned(),
            log_settings,
            carries_insert_id,
        }
    }
}

/// A probe of one key: done once; while it cannot be done (the server is down), tried again.
#[derive(Default)]
struct Entry {
    cell: OnceCell<Arc<Probe>>,
    /// A probe started in the background is running.
    busy: AtomicBool,
}

/// How the outcome of a batch's earlier attempts was settled.
#[derive(Debug)]
pub(crate) enum Resolution {
    /// An earlier attempt landed (how it was seen): the batch is committed.
    Landed(&'static str),
    /// No earlier attempt landed (how it was seen): the batch is sent.
    NotLanded(&'static str),
    /// The table deduplicates by token: the batch is sent again as it is.
    Deduplicated,
    /// No check is possible: the batch is sent again unchecked.
    Unchecked,
    /// Cannot be established now (the server cannot be reached, an attempt is still
    /// running): asked again after a backoff.
    Retry(Error),
    /// The checks cannot tell: the batch is not sent again.
    Unresolved(String),
}

/// What one server says of a batch's earlier attempts.
enum Seen {
    Landed,
    NotLanded,
    CannotTell(String),
}

/// Establishes the outcome of attempts whose answer was lost, with a cache of what each
/// table and user allows.
pub(crate) struct Resolver {
    probes: Mutex<HashMap<ProbeKey, Arc<Entry>>>,
    /// Bound of every query.
    timeout: Duration,
    /// How long an attempt that is still running is waited for.
    wait: Duration,
    /// The user of batches that name none.
    default_user: String,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolver").finish_non_exhaustive()
    }
}

/// Runs one query within `timeout`.
async fn bounded<T>(
    timeout: Duration,
    what: &str,
    query: impl Future<Output = clickhouse::error::Result<T>>,
) -> Result<T> {
    match tokio::time::timeout(timeout, query).await {
        Ok(result) => result.map_err(Error::from),
        Err(_) => Err(Error::Timeout(format!(
            "no answer to {what} within {timeout:?}"
        ))),
    }
}

/// Whether an error is the server's answer (a missing grant, an unknown table), as opposed
/// to no answer at all.
fn answered(e: &Error) -> bool {
    matches!(e, Error::Server { .. })
}

impl Resolver {
    pub(crate) fn new(config: &Config) -> Self {
        Self {
            probes: Mutex::new(HashMap::new()),
            timeout: config.clickhouse.query_timeout,
            wait: config.clickhouse.insert_timeout,
            default_user: config
                .clickhouse
                .user
                .clone()
                .unwrap_or_else(|| "default".into()),
        }
    }

    fn entry(&self, key: &ProbeKey) -> Arc<Entry> {
        let mut probes = self.probes.lock().unwrap_or_else(|e| e.into_inner());
        probes.entry(key.clone()).or_default().clone()
    }

    /// The key of a batch's checks.
    pub(crate) fn key(&self, batch: &Batch) -> ProbeKey {
        ProbeKey::of(batch, &self.default_user)
    }

    /// Whether the checks of `key` still have to be probed (and no probe is running).
    pub(crate) fn wants_probe(&self, key: &ProbeKey) -> bool {
        let entry = self.entry(key);
        !entry.cell.initialized() && !entry.busy.swap(true, Relaxed)
    }

    /// Probes in the background, after [`wants_probe`](Self::wants_probe) said so.
    pub(crate) async fn probe_now(
        &self,
        key: &ProbeKey,
        clients: &[clickhouse::Client],
        counters: &Counters,
    ) {
        let entry = self.entry(key);
        if let Err(e) = self.probe(key, clients, counters).await {
            tracing::debug!(table = %format!("{}.{}", key.database, key.table), error = %e.report(), "cannot tell yet what the table guarantees");
        }
        entry.busy.store(false, Relaxed);
    }

    /// What the checks of `key` can use: read once (through the first of `clients` that
    /// answers), then cached. The first time, says what the table gets: a warning when it
    /// is at-least-once.
    pub(crate) async fn probe(
        &self,
        key: &ProbeKey,
        clients: &[clickhouse::Client],
        counters: &Counters,
    ) -> Result<Arc<Probe>> {
        let entry = self.entry(key);
        entry
            .cell
            .get_or_try_init(|| async {
                let mut last = Error::Config("no ClickHouse URL".into());
                for client in clients {
                    match probe(client, self.timeout, key).await {
                        Ok(p) => {
                            self.announce(&p.report, counters);
                            return Ok(Arc::new(p));
                        }
                        Err(e) if answered(&e) => return Err(e),
                        Err(e) => last = e,
                    }
                }
                Err(last)
            })
            .await
            .cloned()
    }

    fn announce(&self, report: &TableGuarantee, counters: &Counters) {
        let table = format!("{}.{}", report.database, report.table);
        match report.guarantee {
            Guarantee::AtLeastOnce => {
                counters.at_least_once_tables.fetch_add(1, Relaxed);
                tracing::warn!(
                    %table,
                    user = %report.user,
                    guarantee = report.guarantee.name(),
                    "{}",
                    report.describe()
                );
            }
            _ => tracing::info!(
                %table,
                user = %report.user,
                guarantee = report.guarantee.name(),
                "{}",
                report.describe()
            ),
        }
    }

    /// What every table seen so far gets.
    pub(crate) fn guarantees(&self) -> Vec<TableGuarantee> {
        let probes = self.probes.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<TableGuarantee> = probes
            .values()
            .filter_map(|e| e.cell.get().map(|p| p.report.clone()))
            .collect();
        out.sort_by(|a, b| (&a.database, &a.table, &a.user).cmp(&(&b.database, &b.table, &b.user)));
        out.dedup();
        out
    }

    /// Settles whether an earlier attempt of `batch` landed. `targets` are clients (as the
    /// batch's user) of the endpoints an attempt may have gone to; `all` those of every
    /// endpoint, for the probe.
    pub(crate) async fn resolve(
        &self,
        batch: &Batch,
        maybe: MaybeSent,
        targets: &[clickhouse::Client],
        all: &[clickhouse::Client],
        counters: &Counters,
    ) -> Resolution {
        let key = self.key(batch);
        let probe = match self.probe(&key, all, counters).await {
            Ok(p) => p,
            Err(e) => return Resolution::Retry(e),
        };
        if probe.dedup() {
            return Resolution::Deduplicated;
        }
        if probe.report.guarantee == Guarantee::AtLeastOnce {
            return Resolution::Unchecked;
        }
        let id = batch.id.to_string();
        // How long ago the first attempt that may have landed can have started.
        let age = maybe
            .since
            .map(|t| SystemTime::now().duration_since(t).unwrap_or_default());
        let mut seen = Vec::with_capacity(targets.len());
        for client in targets {
            match self.still_running(client, &id).await {
                Ok(false) => {}
                Ok(true) => {
                    return Resolution::Retry(Error::Timeout(format!(
                        "an earlier attempt of batch {id} is still running after {:?}",
                        self.wait
                    )));
                }
                Err(e) => return Resolution::Retry(e),
            }
            if probe.report.query_log {
                match self.in_query_log(client, &probe, &id, age).await {
                    Ok(s) => seen.push(s),
                    Err(e) => return Resolution::Retry(e),
                }
            } else {
                seen.push(Seen::CannotTell("the query log cannot be used".to_string()));
            }
        }
        if seen.iter().any(|s| matches!(s, Seen::Landed)) {
            return Resolution::Landed("system.query_log");
        }
        if seen.iter().all(|s| matches!(s, Seen::NotLanded)) {
            return Resolution::NotLanded("system.query_log");
        }
        let why: Vec<String> = seen
            .into_iter()
            .filter_map(|s| match s {
                Seen::CannotTell(why) => Some(why),
                _ => None,
            })
            .collect();
        if !(probe.report.insert_id && batch.insert_id) {
            return Resolution::Unresolved(why.join("; "));
        }
        // The rows themselves.
        let mut landed = 0u64;
        for client in targets {
            match self.rows_with_id(client, batch, &id).await {
                Ok(n) => landed += n,
                Err(e) => return Resolution::Retry(e),
            }
        }
        if landed == 0 {
            return Resolution::NotLanded("the _insert_id column");
        }
        let rows = batch.rows as u64;
        // A plain MergeTree keeps every row: fewer than the batch's means that part of it
        // landed (an insert of several partitions stopped half way). Other engines may have
        // merged rows away since.
        if rows > 0 && landed < rows && probe.plain {
            return Resolution::Unresolved(format!(
                "{landed} of its {rows} rows are in the table: part of it landed"
            ));
        }
        Resolution::Landed("the _insert_id column")
    }

    /// Whether an attempt with query id `id` is still running, after waiting for it to end
    /// (at most `insert_timeout`).
    async fn still_running(&self, client: &clickhouse::Client, id: &str) -> Result<bool> {
        let deadline = Instant::now() + self.wait;
        let mut waited = false;
        loop {
            let running: u64 = bounded(
                self.timeout,
                "the look for a running attempt in system.processes",
                client
                    .query("SELECT count() FROM system.processes WHERE query_id = ?")
                    .bind(id)
                    .fetch_one::<u64>(),
            )
            .await?;
            if running == 0 {
                if waited {
                    tracing::info!(batch = %id, "an earlier attempt that was still running has ended");
                }
                return Ok(false);
            }
            if !waited {
                tracing::info!(batch = %id, "an earlier attempt is still running: waiting for it to end");
                waited = true;
            }
            if Instant::now() >= deadline {
                return Ok(true);
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// What one server's query log says of the attempts with query id `id`.
    async fn in_query_log(
        &self,
        client: &clickhouse::Client,
        probe: &Probe,
        id: &str,
        age: Option<Duration>,
    ) -> Result<Seen> {
        #[derive(clickhouse::Row, serde::Deserialize)]
        struct Entry {
            kind: String,
            written_rows: u64,
        }
        bounded(
            self.timeout,
            "SYSTEM FLUSH LOGS",
            client.query(probe.flush).execute(),
        )
        .await?;
        // Entries of the last day at least, back to the first attempt (a day more, for
        // the server's clock).
        let back = age.map_or(30 * 86_400, |a| a.as_secs() + 86_400);
        let entries = bounded(
            self.timeout,
            "the look for the attempts in system.query_log",
            client
                .query(
                    "SELECT toString(type) AS kind, written_rows FROM system.query_log \
                     WHERE event_date >= toDate(now() - toIntervalSecond(?)) AND query_id = ?",
                )
                .bind(back)
                .bind(id)
                .fetch_all::<Entry>(),
        )
        .await?;
        if entries.iter().any(|e| e.kind == "QueryFinish") {
            return Ok(Seen::Landed);
        }
        if entries
            .iter()
            .any(|e| e.kind == "ExceptionWhileProcessing" && e.written_rows > 0)
        {
            return Ok(Seen::CannotTell(
                "an attempt failed after it had written rows (a materialized view or a later \
                 partition failed), so part of it may have landed"
                    .into(),
            ));
        }
        let started = entries.iter().filter(|e| e.kind == "QueryStart").count();
        let ended = entries
            .iter()
            .filter(|e| e.kind == "ExceptionWhileProcessing")
            .count();
        if started > ended {
            return Ok(Seen::CannotTell(
                "an attempt started and never ended (the server stopped during it)".into(),
            ));
        }
        // Every attempt in the log ended without landing. Attempts missing from it never
        // started, if the server has kept its log since the first of them.
        let uptime: u64 = bounded(
            self.timeout,
            "uptime()",
            client.query("SELECT toUInt64(uptime())").fetch_one::<u64>(),
        )
        .await?;
        match age {
            Some(age) if uptime > age.as_secs() + UPTIME_MARGIN_S => Ok(Seen::NotLanded),
            Some(_) => Ok(Seen::CannotTell(format!(
                "the server restarted {uptime} s ago, after an attempt may have been sent, and \
                 its query log keeps nothing from before"
            ))),
            None => Ok(Seen::CannotTell(
                "it is not known when an attempt may have been sent, so the query log \
                 cannot prove that none started"
                    .into(),
            )),
        }
    }

    /// Rows of `batch`'s table whose `_insert_id` is `id`.
    async fn rows_with_id(
        &self,
        client: &clickhouse::Client,
        batch: &Batch,
        id: &str,
    ) -> Result<u64> {
        let sql = format!(
            "SELECT count() FROM {}.{} WHERE {} = ?",
            quote_ident(batch.database()),
            quote_ident(batch.table()),
            quote_ident(crate::types::insert_id::INSERT_ID_COLUMN)
        );
        bounded(
            self.timeout,
            "the look for the batch's rows by _insert_id",
            client.query(&sql).bind(id).fetch_one::<u64>(),
        )
        .await
    }
}

/// What the checks of `key` can use, read through `client` (as the key's user).
async fn probe(client: &clickhouse::Client, timeout: Duration, key: &ProbeKey) -> Result<Probe> {
    let (database, table, user) = (&key.database, &key.table, &key.user);
    let schema = Catalog::with_client(client.clone(), timeout)
        .table(database, table)
        .await?;
    let engine = match schema.deduplication {
        Deduplication::Window(n) => format!("{}, dedup window {n}", schema.engine),
        Deduplication::Off if schema.engine.ends_with("MergeTree") => {
            format!("{}, no dedup window", schema.engine)
        }
        Deduplication::Off if schema.engine.starts_with("Replicated") => {
            format!("{}, replicated_deduplication_window = 0", schema.engine)
        }
        _ => schema.engine.clone(),
    };
    let mut report = TableGuarantee {
        database: database.clone(),
        table: table.clone(),
        user: user.clone(),
        engine,
        guarantee: Guarantee::Deduplicated,
        query_log: false,
        insert_id: false,
        limits: Vec::new(),
    };
    if schema.deduplication.is_on() {
        return Ok(Probe {
            report,
            flush: "SYSTEM FLUSH LOGS",
            plain: false,
        });
    }
    let mut limits = Vec::new();
    // Whether these inserts are logged: the user's settings, and the batch's own.
    let mut settings: HashMap<String, String> = match bounded(
        timeout,
        "the query logging settings",
        client
            .query("SELECT name, value FROM system.settings WHERE name IN ?")
            .bind(LOG_SETTINGS)
            .fetch_all::<(String, String)>(),
    )
    .await
    {
        Ok(rows) => rows.into_iter().collect(),
        Err(e) if answered(&e) => {
            limits.push(format!(
                "the query logging settings cannot be read: {}",
                e.report()
            ));
            // Nothing known: the checks below decide (and the log is not trusted).
            HashMap::from([("log_queries".to_string(), "0".to_string())])
        }
        Err(e) => return Err(e),
    };
    for (k, v) in &key.log_settings {
        settings.insert(k.clone(), v.clone());
    }
    let get = |name: &str| settings.get(name).map(|v| v.trim().to_ascii_uppercase());
    let mut logged = true;
    if !matches!(get("log_queries").as_deref(), Some("1" | "TRUE")) {
        logged = false;
        limits.push("its inserts are not logged (log_queries = 0)".to_string());
    }
    if !matches!(
        get("log_queries_min_type").as_deref(),
        None | Some("QUERY_START" | "QUERY_FINISH" | "1" | "2")
    ) {
        logged = false;
        limits.push("log_queries_min_type leaves finished inserts out of the query log".into());
    }
    if get("log_queries_min_query_duration_ms").is_some_and(|v| v != "0") {
        logged = false;
        limits.push(
            "log_queries_min_query_duration_ms leaves short inserts out of the query log".into(),
        );
    }
    if get("log_queries_probability").is_some_and(|v| v.parse::<f64>().map_or(true, |p| p < 1.0)) {
        logged = false;
        limits.push("log_queries_probability logs only some inserts".into());
    }
    // The flush first: a server creates its query_log table at its first flush.
    let mut flush = "SYSTEM FLUSH LOGS query_log";
    let mut query_log = logged;
    if query_log {
        let mut result = bounded(timeout, flush, client.query(flush).execute()).await;
        if matches!(&result, Err(e) if e.code() == Some(62)) {
            // A server that flushes all its logs or none.
            flush = "SYSTEM FLUSH LOGS";
            result = bounded(timeout, flush, client.query(flush).execute()).await;
        }
        match result {
            Ok(()) => {}
            Err(e) if answered(&e) => {
                query_log = false;
                limits.push(match e.code() {
                    Some(497) => format!(
                        "user {user} may not flush the query log (GRANT SYSTEM FLUSH LOGS ON *.* TO {user})"
                    ),
                    _ => format!("SYSTEM FLUSH LOGS fails: {}", e.report()),
                });
            }
            Err(e) => return Err(e),
        }
    }
    if query_log {
        match bounded(
            timeout,
            "system.query_log",
            client
                .query("SELECT query_id FROM system.query_log LIMIT 0")
                .fetch_all::<String>(),
        )
        .await
        {
            Ok(_) => {}
            Err(e) if answered(&e) => {
                query_log = false;
                limits.push(match e.code() {
                    Some(60) => "the server keeps no query log (system.query_log does not exist)".into(),
                    Some(497) => format!(
                        "user {user} may not read system.query_log (GRANT SELECT ON system.query_log TO {user})"
                    ),
                    _ => format!("system.query_log cannot be read: {}", e.report()),
                });
            }
            Err(e) => return Err(e),
        }
    }
    let processes = match bounded(
        timeout,
        "system.processes",
        client
            .query("SELECT query_id FROM system.processes LIMIT 0")
            .fetch_all::<String>(),
    )
    .await
    {
        Ok(_) => true,
        Err(e) if answered(&e) => {
            limits.push(match e.code() {
                Some(497) => format!(
                    "user {user} may not read system.processes, where an attempt still running shows (GRANT SELECT ON system.processes TO {user})"
                ),
                _ => format!("system.processes cannot be read: {}", e.report()),
            });
            false
        }
        Err(e) => return Err(e),
    };
    let mut insert_id = false;
    match schema.insert_id() {
        None => limits.push("the table has no _insert_id column".into()),
        Some(_) if !key.carries_insert_id => limits.push(
            "the rows do not carry the batch id in _insert_id (fill_insert_id = false)".into(),
        ),
        Some(_) => {
            let sql = format!(
                "SELECT toString({}) FROM {}.{} LIMIT 0",
                quote_ident(crate::types::insert_id::INSERT_ID_COLUMN),
                quote_ident(database),
                quote_ident(table)
            );
            match bounded(
                timeout,
                "the _insert_id column",
                client.query(&sql).fetch_all::<String>(),
            )
            .await
            {
                Ok(_) => insert_id = true,
                Err(e) if answered(&e) => limits.push(match e.code() {
                    Some(497) => format!(
                        "user {user} may not read {database}.{table} (GRANT SELECT ON {database}.{table} TO {user})"
                    ),
                    _ => format!("the _insert_id column cannot be read: {}", e.report()),
                }),
                Err(e) => return Err(e),
            }
        }
    }
    report.query_log = query_log && processes;
    report.insert_id = insert_id && processes;
    report.guarantee = if report.query_log || report.insert_id {
        Guarantee::Checked
    } else {
        Guarantee::AtLeastOnce
    };
    report.limits = limits;
    Ok(Probe {
        report,
        flush,
        plain: schema.engine == "MergeTree",
    })
}

/// What `database.table` gets with `config` (its endpoints, user, settings and
/// `fill_insert_id`) when an attempt's outcome is unknown: what the engine's delivery would
/// find, for a report such as `chasync doctor`. Fails when no endpoint answers, or the table
/// does not exist.
pub async fn guarantee(config: &Config, database: &str, table: &str) -> Result<TableGuarantee> {
    let user = config.clickhouse.user.as_deref().unwrap_or("default");
    let settings: Vec<(String, String)> = config
        .clickhouse
        .settings
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let key = ProbeKey::new(
        database,
        table,
        user,
        &settings,
        config.delivery.fill_insert_id,
    );
    let mut last = Error::Config("no ClickHouse URL".into());
    for url in &config.clickhouse.url {
        let client =
            crate::client::client_for(config, url)?.with_setting("log_comment", CHECKS_COMMENT);
        match probe(&client, config.clickhouse.query_timeout, &key).await {
            Ok(p) => return Ok(p.report),
            Err(e) if answered(&e) || matches!(e, Error::UnknownTable { .. }) => return Err(e),
            Err(e) => last = e,
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(
        guarantee: Guarantee,
        query_log: bool,
        insert_id: bool,
        limits: &[&str],
    ) -> TableGuarantee {
        TableGuarantee {
            database: "db".into(),
            table: "t".into(),
            user: "u".into(),
            engine: "MergeTree, no dedup window".into(),
            guarantee,
            query_log,
            insert_id,
            limits: limits.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn descriptions_name_the_table_the_user_and_the_guarantee() {
        let d = report(Guarantee::AtLeastOnce, false, false, &["a", "b"]).describe();
        assert_eq!(
            d,
            "db.t (MergeTree, no dedup window) for user u: AT LEAST ONCE: a batch whose answer \
             was lost is sent again unchecked and may be stored twice, because a; b"
        );
        let d = report(
            Guarantee::Checked,
            true,
            false,
            &["the table has no _insert_id column"],
        )
        .describe();
        assert!(d.contains("exactly once: before a batch whose answer was lost is sent again, system.processes and system.query_log tell"), "{d}");
        assert!(d.ends_with("(the table has no _insert_id column)"), "{d}");
        let d = report(Guarantee::Checked, false, true, &[]).describe();
        assert!(
            d.contains("system.processes and the _insert_id column"),
            "{d}"
        );
        assert!(
            report(Guarantee::Deduplicated, false, false, &[])
                .describe()
                .contains("deduplicates its inserts by token")
        );
    }

    #[test]
    fn the_key_keeps_only_the_logging_settings() {
        let k = ProbeKey::new(
            "db",
            "t",
            "u",
            &[
                ("log_queries".into(), "0".into()),
                ("max_threads".into(), "2".into()),
            ],
            true,
        );
        assert_eq!(
            k.log_settings,
            vec![("log_queries".to_string(), "0".to_string())]
        );
    }
}
