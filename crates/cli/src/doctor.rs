//! `chasync doctor`: the server (and a table) seen from an ingestion point of view, with a
//! concrete piece of advice for every finding.

use std::collections::BTreeMap;

use chasync_core::redact_url;
use serde::Serialize;

use crate::cli::DoctorArgs;
use crate::error::{CliError, exit};
use crate::output::{format_time_ms, print_json, table};
use crate::settings::Settings;

/// How much a finding matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Fine.
    Ok,
    /// Worth knowing.
    Info,
    /// Needs attention.
    Warning,
    /// Ingestion fails or will fail.
    Critical,
}

/// One finding, with advice.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// How much it matters.
    pub severity: Severity,
    /// The section it belongs to.
    pub section: &'static str,
    /// What was found.
    pub message: String,
    /// What to do.
    pub advice: Option<String>,
}

/// A failed insert from `system.query_log`.
#[derive(Debug, Clone, Serialize, clickhouse::Row, serde::Deserialize)]
pub struct InsertException {
    /// When, seconds since the epoch.
    pub time: u32,
    /// `ExceptionBeforeStart` or `ExceptionWhileProcessing`.
    pub kind: String,
    /// The error code.
    pub code: i64,
    /// The error name.
    pub name: String,
    /// The message.
    pub exception: String,
    /// The query id (chasync's batch id for its inserts).
    pub query_id: String,
    /// The user.
    pub user: String,
    /// The start of the query.
    pub query_head: String,
}

/// Connection counts and server limits.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Connections {
    /// `system.metrics` values (TCPConnection, HTTPConnection, ...).
    pub metrics: BTreeMap<String, i64>,
    /// `max_connections` of the server.
    pub max_connections: Option<u64>,
    /// `max_concurrent_queries` (0 = unlimited).
    pub max_concurrent_queries: Option<u64>,
    /// `max_concurrent_insert_queries` (0 = unlimited).
    pub max_concurrent_insert_queries: Option<u64>,
    /// Connections the loader plans to open.
    pub planned: u64,
}

/// Active parts of one partition.
#[derive(Debug, Clone, Serialize, clickhouse::Row, serde::Deserialize)]
pub struct PartitionParts {
    /// The partition (`tuple()` when unpartitioned).
    pub partition: String,
    /// Active parts.
    pub active_parts: u64,
}

/// The table under examination.
#[derive(Debug, Clone, Serialize, Default)]
pub struct TableReport {
    /// Database.
    pub database: String,
    /// Table.
    pub table: String,
    /// Engine.
    pub engine: String,
    /// Active parts per partition, most first.
    pub partitions: Vec<PartitionParts>,
    /// All active parts.
    pub total_active_parts: u64,
    /// Effective `parts_to_delay_insert`.
    pub parts_to_delay_insert: Option<u64>,
    /// Effective `parts_to_throw_insert`.
    pub parts_to_throw_insert: Option<u64>,
    /// Effective `max_parts_in_total`.
    pub max_parts_in_total: Option<u64>,
    /// Effective `non_replicated_deduplication_window`.
    pub non_replicated_deduplication_window: Option<u64>,
    /// The table's own SETTINGS clause.
    pub table_settings: BTreeMap<String, String>,
    /// Whether it has an `_insert_id` column.
    pub has_insert_id: bool,
    /// What a batch whose answer was lost gets on this table, for the configured user (see
    /// `chasync_core::Guarantee`); `None` when it could not be established.
    pub guarantee: Option<chasync_core::TableGuarantee>,
}

/// A row of `system.replicas`.
#[derive(Debug, Clone, Serialize, clickhouse::Row, serde::Deserialize)]
pub struct Replica {
    /// Database.
    pub database: String,
    /// Table.
    pub table: String,
    /// Read-only (lost Keeper session or metadata).
    pub is_readonly: u8,
    /// The Keeper session expired.
    pub is_session_expired: u8,
    /// Seconds behind.
    pub absolute_delay: u64,
    /// Replication queue size.
    pub queue_size: u64,
    /// Inserts waiting in the queue.
    pub inserts_in_queue: u64,
    /// Active replicas.
    pub active_replicas: u64,
    /// All replicas.
    pub total_replicas: u64,
}

/// A row of `system.clusters`.
#[derive(Debug, Clone, Serialize, clickhouse::Row, serde::Deserialize)]
pub struct ClusterNode {
    /// Cluster name.
    pub cluster: String,
    /// Shard.
    pub shard_num: u32,
    /// Replica.
    pub replica_num: u32,
    /// Host.
    pub host_name: String,
    /// Port.
    pub port: u16,
    /// This server.
    pub is_local: u8,
    /// Connection errors to it.
    pub errors_count: u64,
}

/// File-descriptor limits of this process.
#[derive(Debug, Clone, Serialize)]
pub struct Limits {
    /// Soft `RLIMIT_NOFILE` (None = unlimited).
    pub nofile_soft: Option<u64>,
    /// Hard `RLIMIT_NOFILE`.
    pub nofile_hard: Option<u64>,
    /// Connections planned.
    pub planned_connections: u64,
    /// Descriptors the plan needs: one per connection plus a reserve for files and stdio.
    pub needed: u64,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The server (credentials redacted).
    pub url: String,
    /// `version()`.
    pub version: String,
    /// Seconds since the server started.
    pub uptime_s: u64,
    /// Recent failed inserts, newest first.
    pub insert_exceptions: Vec<InsertException>,
    /// Connections.
    pub connections: Connections,
    /// The table, when `--table` was given and it exists.
    pub table: Option<TableReport>,
    /// Replicas (of the table, or all).
    pub replicas: Vec<Replica>,
    /// Cluster layout.
    pub clusters: Vec<ClusterNode>,
    /// Process limits.
    pub limits: Limits,
    /// Findings, worst first.
    pub findings: Vec<Finding>,
}

/// Descriptors kept for stdio, input files, the spool and the runtime.
const FD_RESERVE: u64 = 64;

fn finding(
    severity: Severity,
    section: &'static str,
    message: impl Into<String>,
    advice: Option<String>,
) -> Finding {
    Finding {
        severity,
        section,
        message: message.into(),
        advice,
    }
}

/// Advice for a ClickHouse error code met by inserts.
pub fn advice_for_code(code: i64) -> String {
    match code {
        252 => "too many parts: send fewer, larger inserts: raise --max-rows / --linger, lower \
                --max-concurrency, and check that merges keep up (system.merges)"
            .into(),
        241 | 173 => "out of memory: lower --batch-bytes or --max-concurrency".into(),
        202 => "too many simultaneous queries: lower --max-concurrency (or raise the server's \
                max_concurrent_queries)"
            .into(),
        16 | 47 => "the rows do not match the table's columns: fix the table (ALTER TABLE ... \
                    ADD COLUMN) or the data, then `chasync dlq replay`"
            .into(),
        60 | 81 => {
            "the table or database does not exist: create it, then `chasync dlq replay`".into()
        }
        516 | 192 | 194 => "authentication failed: check --user / --password".into(),
        497 => "access denied: GRANT INSERT ON the table to the user".into(),
        159 | 209 | 210 | 394 => "timeouts or network errors: chasync retries them; if they \
                                   persist, lower --batch-bytes or check the network"
            .into(),
        c if chasync_core::classify_code(c as u32) == chasync_core::ErrorKind::Data => {
            "the data cannot be parsed as the table's types: chasync dead-letters such batches \
             (`chasync dlq list`); fix the data or the table, then `chasync dlq replay`"
                .into()
        }
        _ => "see the exception text; batches chasync could not commit are in its dead-letter \
              spool (`chasync dlq list`)"
            .into(),
    }
}

/// The `SETTINGS` of a `CREATE TABLE` statement, as name → value text.
pub fn table_settings(create: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let Some(i) = create.rfind(" SETTINGS ") else {
        return out;
    };
    let mut rest = &create[i + 10..];
    if let Some(j) = rest.find(" COMMENT ") {
        rest = &rest[..j];
    }
    for pair in rest.split(", ") {
        if let Some((k, v)) = pair.split_once(" = ") {
            out.insert(
                k.trim().to_string(),
                v.trim().trim_matches('\'').to_string(),
            );
        }
    }
    out
}

async fn query_section<T>(q: clickhouse::query::Query) -> Result<Vec<T>, String>
where
    T: clickhouse::RowOwned + clickhouse::RowRead,
{
    q.fetch_all::<T>()
        .bounded()
        .await
        .map_err(|e| e.to_string())
}

/// The longest the doctor waits for the answer to one query (`query_timeout`).
static QUERY_TIMEOUT: std::sync::OnceLock<std::time::Duration> = std::sync::OnceLock::new();

/// A query of the doctor's, bounded by `query_timeout`: a server that accepts connections
/// and never answers gives a clear error instead of a hang.
trait Bounded<T>: std::future::Future<Output = clickhouse::error::Result<T>> + Sized {
    async fn bounded(self) -> Result<T, chasync_core::Error> {
        let limit = *QUERY_TIMEOUT.get_or_init(|| std::time::Duration::from_secs(10));
        match tokio::time::timeout(limit, self).await {
            Ok(r) => r.map_err(chasync_core::Error::from),
            Err(_) => Err(chasync_core::Error::Timeout(format!(
                "the server accepted the connection but did not answer a query within {limit:?} \
                 (query_timeout)"
            ))),
        }
    }
}

impl<T, F: std::future::Future<Output = clickhouse::error::Result<T>>> Bounded<T> for F {}

/// Runs `doctor`.
pub async fn run(settings: &Settings, args: DoctorArgs) -> Result<u8, CliError> {
    let _ = QUERY_TIMEOUT.set(settings.base().clickhouse.query_timeout);
    let client = settings.client()?;
    let (version, uptime_s): (String, u64) = client
        .query("SELECT version(), toUInt64(uptime())")
        .fetch_one()
        .bounded()
        .await?;
    let mut findings = Vec::new();
    let target = match &args.table {
        Some(t) => Some(settings.table_ref(t)?),
        None => None,
    };
    let planned = args
        .planned_connections
        .unwrap_or(settings.base().delivery.max_concurrency as u64);

    // Recent failed inserts. Flushing the logs makes the last seconds visible (best effort:
    // it needs the SYSTEM FLUSH LOGS privilege).
    let _ = client.query("SYSTEM FLUSH LOGS").execute().bounded().await;
    let mut sql = String::from(
        "SELECT toUInt32(event_time) AS time, toString(type) AS kind, \
         toInt64(exception_code) AS code, errorCodeToName(exception_code) AS name, exception, \
         query_id, user, substring(query, 1, 300) AS query_head \
         FROM system.query_log \
         WHERE type IN ('ExceptionBeforeStart', 'ExceptionWhileProcessing') \
         AND query_kind = 'Insert' AND event_time >= now() - toIntervalSecond(?)",
    );
    if target.is_some() {
        // Inserts that fail before they start have no `tables`: match the query text, with
        // the table qualified, or unqualified in the query's current database.
        sql.push_str(
            " AND (has(tables, ?) OR (empty(tables) AND (position(query, ?) > 0 \
             OR position(query, ?) > 0 OR (current_database = ? AND \
             (positionCaseInsensitive(query, ?) > 0 OR positionCaseInsensitive(query, ?) > 0)))))",
        );
    }
    sql.push_str(" ORDER BY event_time DESC LIMIT ?");
    let mut q = client.query(&sql).bind(args.since.as_secs());
    if let Some((db, t)) = &target {
        q = q
            .bind(format!("{db}.{t}"))
            .bind(format!(
                "{}.{}",
                chasync_core::quote_ident(db),
                chasync_core::quote_ident(t)
            ))
            .bind(format!("{db}.{t}"))
            .bind(db.as_str())
            .bind(format!("INSERT INTO {t} "))
            .bind(format!("INSERT INTO {} ", chasync_core::quote_ident(t)));
    }
    let insert_exceptions: Vec<InsertException> = match query_section(q.bind(args.exceptions)).await
    {
        Ok(rows) => rows,
        Err(e) => {
            findings.push(finding(
                Severity::Info,
                "exceptions",
                format!("cannot read system.query_log: {e}"),
                Some("grant SELECT on system.query_log to see failed inserts".into()),
            ));
            Vec::new()
        }
    };
    let mut by_code: BTreeMap<(i64, String), usize> = BTreeMap::new();
    for e in &insert_exceptions {
        *by_code.entry((e.code, e.name.clone())).or_default() += 1;
    }
    for ((code, name), n) in &by_code {
        findings.push(finding(
            Severity::Warning,
            "exceptions",
            format!(
                "{n} failed insert(s) with error {code} ({name}) in the last {}",
                human_secs(args.since.as_secs())
            ),
            Some(advice_for_code(*code)),
        ));
    }
    if insert_exceptions.is_empty() && !findings.iter().any(|f| f.section == "exceptions") {
        findings.push(finding(
            Severity::Ok,
            "exceptions",
            format!(
                "no failed inserts in the last {}",
                human_secs(args.since.as_secs())
            ),
            None,
        ));
    }

    let connections = connections(&client, planned, &mut findings).await;
    let table = match &target {
        Some((db, t)) => table_report(settings, &client, db, t, &mut findings).await?,
        None => None,
    };
    let replicas = replicas(&client, target.as_ref(), &mut findings).await;
    let clusters = clusters(&client, &mut findings).await;
    let limits = limits(planned, &mut findings);

    findings.sort_by_key(|f| std::cmp::Reverse(f.severity));
    let report = Report {
        url: redact_url(settings.url()),
        version,
        uptime_s,
        insert_exceptions,
        connections,
        table,
        replicas,
        clusters,
        limits,
        findings,
    };
    if settings.json {
        print_json(&report);
    } else {
        print!("{}", render(&report, args.since.as_secs()));
    }
    let worst = report.findings.first().map(|f| f.severity);
    Ok(if worst >= Some(Severity::Warning) {
        exit::FINDINGS
    } else {
        exit::OK
    })
}

fn human_secs(s: u64) -> String {
    match s {
        s if s >= 86_400 && s % 3600 == 0 => format!("{}h", s / 3600),
        s if s >= 3600 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        s if s >= 60 => format!("{}m {}s", s / 60, s % 60),
        s => format!("{s}s"),
    }
}

async fn connections(
    client: &clickhouse::Client,
    planned: u64,
    findings: &mut Vec<Finding>,
) -> Connections {
    let mut c = Connections {
        planned,
        ..Connections::default()
    };
    match query_section::<(String, i64)>(client.query(
        "SELECT metric, toInt64(value) FROM system.metrics WHERE metric IN \
         ('TCPConnection', 'HTTPConnection', 'InterserverConnection', 'MySQLConnection', \
         'PostgreSQLConnection', 'Query')",
    ))
    .await
    {
        Ok(rows) => c.metrics = rows.into_iter().collect(),
        Err(e) => findings.push(finding(
            Severity::Info,
            "connections",
            format!("cannot read system.metrics: {e}"),
            None,
        )),
    }
    match query_section::<(String, String)>(client.query(
        "SELECT name, value FROM system.server_settings WHERE name IN \
         ('max_connections', 'max_concurrent_queries', 'max_concurrent_insert_queries')",
    ))
    .await
    {
        Ok(rows) => {
            for (name, value) in rows {
                let v = value.parse().ok();
                match name.as_str() {
                    "max_connections" => c.max_connections = v,
                    "max_concurrent_queries" => c.max_concurrent_queries = v,
                    _ => c.max_concurrent_insert_queries = v,
                }
            }
        }
        Err(e) => findings.push(finding(
            Severity::Info,
            "connections",
            format!("cannot read system.server_settings: {e}"),
            None,
        )),
    }
    let open: i64 = c
        .metrics
        .iter()
        .filter(|(k, _)| k.ends_with("Connection"))
        .map(|(_, v)| *v)
        .sum();
    let open = open.max(0) as u64;
    let mut fine = true;
    if let Some(max) = c.max_connections.filter(|m| *m > 0) {
        if open + planned > max {
            fine = false;
            findings.push(finding(
                Severity::Critical,
                "connections",
                format!("{open} connections open + {planned} planned exceed max_connections {max}"),
                Some(format!("lower --max-concurrency (or the number of loaders) so that all loaders together stay under {max}, or raise max_connections on the server")),
            ));
        } else if (open + planned) * 10 > max * 8 {
            fine = false;
            findings.push(finding(
                Severity::Warning,
                "connections",
                format!("{open} connections open + {planned} planned are over 80% of max_connections {max}"),
                Some("lower --max-concurrency or spread loaders over more servers".into()),
            ));
        }
    }
    for (name, limit) in [
        (
            "max_concurrent_insert_queries",
            c.max_concurrent_insert_queries,
        ),
        ("max_concurrent_queries", c.max_concurrent_queries),
    ] {
        if let Some(max) = limit.filter(|m| *m > 0)
            && planned > max
        {
            fine = false;
            findings.push(finding(
                Severity::Warning,
                "connections",
                format!("{planned} planned concurrent inserts exceed {name} {max}"),
                Some(format!(
                    "inserts beyond {max} fail with TOO_MANY_SIMULTANEOUS_QUERIES (202) and are \
                     retried: set --max-concurrency to at most {max}"
                )),
            ));
        }
    }
    if fine {
        findings.push(finding(
            Severity::Ok,
            "connections",
            format!(
                "{open} connections open, {planned} planned, max_connections {}",
                c.max_connections
                    .map_or("unknown".to_string(), |m| m.to_string())
            ),
            None,
        ));
    }
    c
}

async fn table_report(
    settings: &Settings,
    client: &clickhouse::Client,
    db: &str,
    t: &str,
    findings: &mut Vec<Finding>,
) -> Result<Option<TableReport>, CliError> {
    let meta: Option<(String, String)> = client
        .query(
            "SELECT engine, create_table_query FROM system.tables WHERE database = ? AND name = ?",
        )
        .bind(db)
        .bind(t)
        .fetch_optional()
        .bounded()
        .await?;
    let Some((engine, create)) = meta else {
        findings.push(finding(
            Severity::Critical,
            "table",
            format!("table {db}.{t} does not exist (or the user cannot see it)"),
            Some("create it, or check --table / --database and the user's grants".into()),
        ));
        return Ok(None);
    };
    let mut r = TableReport {
        database: db.to_string(),
        table: t.to_string(),
        engine: engine.clone(),
        table_settings: table_settings(&create),
        ..TableReport::default()
    };
    let columns = settings.columns(db, t).await?;
    r.has_insert_id = columns.iter().any(|(n, _)| n == "_insert_id");
    // What a batch whose answer was lost (a timeout, a crash) gets: what the engine's
    // delivery finds, with the same user, settings and endpoints.
    match chasync_core::guarantee(&settings.config(db, t)?, db, t).await {
        Ok(g) => {
            findings.push(guarantee_finding(&g));
            r.guarantee = Some(g);
        }
        Err(e) => findings.push(finding(
            Severity::Info,
            "delivery",
            format!(
                "cannot tell whether a retry after a lost answer can store {db}.{t}'s rows twice: {}",
                e.report()
            ),
            None,
        )),
    }
    if !engine.ends_with("MergeTree") {
        findings.push(finding(
            Severity::Info,
            "table",
            format!(
                "{db}.{t} is a {engine} table: parts and dedup checks apply to MergeTree tables"
            ),
            None,
        ));
        return Ok(Some(r));
    }
    let defaults: Vec<(String, String)> = match query_section(client.query(
        "SELECT name, value FROM system.merge_tree_settings WHERE name IN \
         ('parts_to_delay_insert', 'parts_to_throw_insert', 'max_parts_in_total', \
         'non_replicated_deduplication_window')",
    ))
    .await
    {
        Ok(rows) => rows,
        Err(e) => {
            findings.push(finding(
                Severity::Info,
                "parts",
                format!("cannot read system.merge_tree_settings: {e}"),
                Some(
                    "grant SELECT on system.merge_tree_settings to see the server's defaults"
                        .into(),
                ),
            ));
            Vec::new()
        }
    };
    let effective = |name: &str| -> Option<u64> {
        r.table_settings
            .get(name)
            .or_else(|| defaults.iter().find(|(n, _)| n == name).map(|(_, v)| v))
            .and_then(|v| v.parse().ok())
    };
    r.parts_to_delay_insert = effective("parts_to_delay_insert");
    r.parts_to_throw_insert = effective("parts_to_throw_insert");
    r.max_parts_in_total = effective("max_parts_in_total");
    r.non_replicated_deduplication_window = effective("non_replicated_deduplication_window");
    match query_section(
        client
            .query(
                "SELECT partition, toUInt64(count()) AS active_parts FROM system.parts \
                 WHERE database = ? AND table = ? AND active \
                 GROUP BY partition ORDER BY active_parts DESC, partition LIMIT 100",
            )
            .bind(db)
            .bind(t),
    )
    .await
    {
        Ok(rows) => r.partitions = rows,
        Err(e) => {
            findings.push(finding(
                Severity::Info,
                "parts",
                format!("cannot read system.parts: {e}"),
                Some("grant SELECT on system.parts to see the table's parts".into()),
            ));
            return Ok(Some(r));
        }
    }
    r.total_active_parts = client
        .query("SELECT toUInt64(count()) FROM system.parts WHERE database = ? AND table = ? AND active")
        .bind(db)
        .bind(t)
        .fetch_one()
        .bounded()
        .await?;

    let (delay, throw) = (r.parts_to_delay_insert, r.parts_to_throw_insert);
    let thresholds = format!(
        "delay at {} / throw at {}",
        delay.map_or("?".into(), |v| v.to_string()),
        throw.map_or("?".into(), |v| v.to_string())
    );
    let mut parts_fine = true;
    for p in r.partitions.iter().take(5) {
        let n = p.active_parts;
        let place = format!(
            "{n} active parts in partition {} of {db}.{t}, {thresholds}",
            p.partition
        );
        if throw.is_some_and(|th| th > 0 && n >= th) {
            parts_fine = false;
            findings.push(finding(
                Severity::Critical,
                "parts",
                format!("{place}: inserts fail with TOO_MANY_PARTS (252)"),
                Some("raise --max-rows (or --linger) or lower --max-concurrency so that fewer, larger parts are written; check that merges run (SYSTEM START MERGES, system.merges)".into()),
            ));
        } else if delay.is_some_and(|d| d > 0 && n >= d) {
            parts_fine = false;
            findings.push(finding(
                Severity::Warning,
                "parts",
                format!("{place}: inserts are being delayed"),
                Some("raise --max-rows or lower --max-concurrency (fewer, larger inserts); check that merges keep up (system.merges)".into()),
            ));
        } else if delay.is_some_and(|d| d > 0 && n * 2 >= d) {
            parts_fine = false;
            findings.push(finding(
                Severity::Info,
                "parts",
                format!("{place}: over half way to the delay"),
                Some("consider raising --max-rows or --linger".into()),
            ));
        }
    }
    if let Some(max) = r.max_parts_in_total.filter(|m| *m > 0)
        && r.total_active_parts * 10 >= max * 8
    {
        parts_fine = false;
        findings.push(finding(
            Severity::Warning,
            "parts",
            format!(
                "{} active parts in {db}.{t}, max_parts_in_total {max}",
                r.total_active_parts
            ),
            Some("fewer partitions (a coarser PARTITION BY) and larger inserts".into()),
        ));
    }
    if parts_fine {
        let worst = r.partitions.first().map_or(0, |p| p.active_parts);
        findings.push(finding(
            Severity::Ok,
            "parts",
            format!("at most {worst} active parts per partition of {db}.{t}, {thresholds}"),
            None,
        ));
    }
    if !r.has_insert_id {
        findings.push(finding(
            Severity::Info,
            "table",
            format!("{db}.{t} has no _insert_id column"),
            Some(format!(
                "ALTER TABLE {db}.{t} ADD COLUMN _insert_id UUID to record each row's batch id"
            )),
        ));
    }
    Ok(Some(r))
}

/// The finding of what a table gets when an insert's answer is lost.
fn guarantee_finding(g: &chasync_core::TableGuarantee) -> Finding {
    use chasync_core::Guarantee;
    let (db, t) = (&g.database, &g.table);
    match g.guarantee {
        Guarantee::AtLeastOnce => finding(
            Severity::Warning,
            "delivery",
            g.describe(),
            Some(format!(
                "give the table a dedup window (ALTER TABLE {db}.{t} MODIFY SETTING \
                 non_replicated_deduplication_window = 1000), or lift what stops the checks \
                 (above: the grants to add, query logging to turn on, an _insert_id UUID column)"
            )),
        ),
        _ => finding(Severity::Ok, "delivery", g.describe(), None),
    }
}

async fn replicas(
    client: &clickhouse::Client,
    target: Option<&(String, String)>,
    findings: &mut Vec<Finding>,
) -> Vec<Replica> {
    let mut sql = String::from(
        "SELECT database, table, toUInt8(is_readonly) AS is_readonly, \
         toUInt8(is_session_expired) AS is_session_expired, \
         toUInt64(absolute_delay) AS absolute_delay, toUInt64(queue_size) AS queue_size, \
         toUInt64(inserts_in_queue) AS inserts_in_queue, \
         toUInt64(active_replicas) AS active_replicas, \
         toUInt64(total_replicas) AS total_replicas FROM system.replicas",
    );
    if target.is_some() {
        sql.push_str(" WHERE database = ? AND table = ?");
    }
    sql.push_str(" ORDER BY database, table LIMIT 1000");
    let mut q = client.query(&sql);
    if let Some((db, t)) = target {
        q = q.bind(db.as_str()).bind(t.as_str());
    }
    let rows: Vec<Replica> = match query_section(q).await {
        Ok(r) => r,
        Err(e) => {
            findings.push(finding(
                Severity::Info,
                "replicas",
                format!("cannot read system.replicas: {e}"),
                None,
            ));
            return Vec::new();
        }
    };
    let mut fine = true;
    for r in &rows {
        let name = format!("{}.{}", r.database, r.table);
        if r.is_readonly == 1 || r.is_session_expired == 1 {
            fine = false;
            findings.push(finding(
                Severity::Critical,
                "replicas",
                format!("replica of {name} is read-only (session expired: {})", r.is_session_expired == 1),
                Some("inserts fail with TABLE_IS_READ_ONLY (chasync retries them): check Keeper connectivity and the server log".into()),
            ));
        }
        if r.absolute_delay > 300 {
            fine = false;
            findings.push(finding(
                Severity::Warning,
                "replicas",
                format!("replica of {name} is {} s behind", r.absolute_delay),
                Some("check fetches and merges (system.replication_queue)".into()),
            ));
        }
        if r.active_replicas < r.total_replicas {
            fine = false;
            findings.push(finding(
                Severity::Warning,
                "replicas",
                format!(
                    "{name}: {} of {} replicas active",
                    r.active_replicas, r.total_replicas
                ),
                Some("bring the missing replicas back, or insert_quorum inserts will fail".into()),
            ));
        }
    }
    if fine {
        findings.push(finding(
            Severity::Ok,
            "replicas",
            if rows.is_empty() {
                "no replicated tables".to_string()
            } else {
                format!("{} replicated table(s), all healthy", rows.len())
            },
            None,
        ));
    }
    rows
}

async fn clusters(client: &clickhouse::Client, findings: &mut Vec<Finding>) -> Vec<ClusterNode> {
    let rows: Vec<ClusterNode> = match query_section(client.query(
        "SELECT cluster, toUInt32(shard_num) AS shard_num, toUInt32(replica_num) AS replica_num, \
         host_name, toUInt16(port) AS port, toUInt8(is_local) AS is_local, \
         toUInt64(errors_count) AS errors_count FROM system.clusters \
         ORDER BY cluster, shard_num, replica_num LIMIT 1000",
    ))
    .await
    {
        Ok(r) => r,
        Err(e) => {
            findings.push(finding(
                Severity::Info,
                "clusters",
                format!("cannot read system.clusters: {e}"),
                None,
            ));
            return Vec::new();
        }
    };
    let mut fine = true;
    for n in rows.iter().filter(|n| n.errors_count > 0) {
        fine = false;
        findings.push(finding(
            Severity::Warning,
            "clusters",
            format!(
                "cluster {}: {} errors connecting to {}:{} (shard {}, replica {})",
                n.cluster, n.errors_count, n.host_name, n.port, n.shard_num, n.replica_num
            ),
            Some("check that host is up and reachable from this server".into()),
        ));
    }
    if fine {
        let names: std::collections::BTreeSet<&str> =
            rows.iter().map(|n| n.cluster.as_str()).collect();
        findings.push(finding(
            Severity::Ok,
            "clusters",
            if rows.is_empty() {
                "no clusters configured (a single server)".to_string()
            } else {
                format!("{} cluster(s), no connection errors", names.len())
            },
            None,
        ));
    }
    rows
}

fn limits(planned: u64, findings: &mut Vec<Finding>) -> Limits {
    let lim = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    let needed = planned + FD_RESERVE;
    let l = Limits {
        nofile_soft: lim.current,
        nofile_hard: lim.maximum,
        planned_connections: planned,
        needed,
    };
    let show = |v: Option<u64>| v.map_or("unlimited".to_string(), |v| v.to_string());
    match l.nofile_soft {
        Some(soft) if soft < needed => {
            let hard_ok = l.nofile_hard.is_none_or(|h| h >= needed);
            findings.push(finding(
                if hard_ok { Severity::Warning } else { Severity::Critical },
                "limits",
                format!(
                    "ulimit -n is {soft} (hard {}), {planned} planned connections need about {needed}",
                    show(l.nofile_hard)
                ),
                Some(if hard_ok {
                    format!("run `ulimit -n {needed}` (or more) before the loader")
                } else {
                    format!("raise the hard limit (limits.conf / systemd LimitNOFILE) to at least {needed}, or plan fewer connections")
                }),
            ));
        }
        _ => findings.push(finding(
            Severity::Ok,
            "limits",
            format!(
                "ulimit -n {} (hard {}) covers {planned} planned connections",
                show(l.nofile_soft),
                show(l.nofile_hard)
            ),
            None,
        )),
    }
    l
}

/// The report as text.
pub fn render(r: &Report, since_s: u64) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "chasync doctor: {} (ClickHouse {}, up {})\n",
        r.url,
        r.version,
        human_secs(r.uptime_s)
    );
    let _ = writeln!(
        o,
        "Insert exceptions (last {}{}):",
        human_secs(since_s),
        r.table
            .as_ref()
            .map(|t| format!(", {}.{}", t.database, t.table))
            .unwrap_or_default()
    );
    if r.insert_exceptions.is_empty() {
        let _ = writeln!(o, "  none");
    } else {
        let rows: Vec<Vec<String>> = r
            .insert_exceptions
            .iter()
            .map(|e| {
                let mut msg = e.exception.replace('\n', " ");
                if msg.chars().count() > 160 {
                    msg = msg.chars().take(160).collect::<String>() + "...";
                }
                vec![
                    format_time_ms(u64::from(e.time) * 1000),
                    format!("{} {}", e.code, e.name),
                    e.query_id.clone(),
                    msg,
                ]
            })
            .collect();
        for line in table(&["TIME", "ERROR", "QUERY ID", "MESSAGE"], &rows).lines() {
            let _ = writeln!(o, "  {line}");
        }
    }
    let c = &r.connections;
    let metrics: Vec<String> = c.metrics.iter().map(|(k, v)| format!("{k} {v}")).collect();
    let show = |v: Option<u64>| v.map_or("?".to_string(), |v| v.to_string());
    let _ = writeln!(
        o,
        "\nConnections: {}\n  max_connections {}, max_concurrent_queries {}, \
         max_concurrent_insert_queries {} (0 = unlimited); planned {}",
        metrics.join(", "),
        show(c.max_connections),
        show(c.max_concurrent_queries),
        show(c.max_concurrent_insert_queries),
        c.planned
    );
    if let Some(t) = &r.table {
        let _ = writeln!(
            o,
            "\nTable {}.{} ({}): {} active parts in {} partition(s); parts_to_delay_insert {}, \
             parts_to_throw_insert {}, max_parts_in_total {}",
            t.database,
            t.table,
            t.engine,
            t.total_active_parts,
            t.partitions.len(),
            show(t.parts_to_delay_insert),
            show(t.parts_to_throw_insert),
            show(t.max_parts_in_total)
        );
        if !t.partitions.is_empty() {
            let rows: Vec<Vec<String>> = t
                .partitions
                .iter()
                .take(10)
                .map(|p| vec![p.partition.clone(), p.active_parts.to_string()])
                .collect();
            for line in table(&["PARTITION", "ACTIVE PARTS"], &rows).lines() {
                let _ = writeln!(o, "  {line}");
            }
        }
    }
    let _ = writeln!(o, "\nReplicas: {}", r.replicas.len());
    for rep in &r.replicas {
        let _ = writeln!(
            o,
            "  {}.{}: readonly {}, delay {} s, queue {}, replicas {}/{}",
            rep.database,
            rep.table,
            rep.is_readonly,
            rep.absolute_delay,
            rep.queue_size,
            rep.active_replicas,
            rep.total_replicas
        );
    }
    let _ = writeln!(o, "Clusters: {} node(s)", r.clusters.len());
    for n in &r.clusters {
        let _ = writeln!(
            o,
            "  {} shard {} replica {}: {}:{}{} errors {}",
            n.cluster,
            n.shard_num,
            n.replica_num,
            n.host_name,
            n.port,
            if n.is_local == 1 { " (local)" } else { "" },
            n.errors_count
        );
    }
    let _ = writeln!(
        o,
        "Limits: ulimit -n {} (hard {}), planned connections {}",
        r.limits
            .nofile_soft
            .map_or("unlimited".into(), |v| v.to_string()),
        r.limits
            .nofile_hard
            .map_or("unlimited".into(), |v| v.to_string()),
        r.limits.planned_connections
    );
    let _ = writeln!(o, "\nFindings:");
    for f in &r.findings {
        let tag = match f.severity {
            Severity::Ok => "ok",
            Severity::Info => "info",
            Severity::Warning => "WARNING",
            Severity::Critical => "CRITICAL",
        };
        let _ = writeln!(o, "  [{tag}] {}: {}", f.section, f.message);
        if let Some(a) = &f.advice {
            let _ = writeln!(o, "      advice: {a}");
        }
    }
    let count = |s| r.findings.iter().filter(|f| f.severity == s).count();
    let _ = writeln!(
        o,
        "\n{} critical, {} warning(s), {} info",
        count(Severity::Critical),
        count(Severity::Warning),
        count(Severity::Info)
    );
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_table_settings() {
        let s = table_settings(
            "CREATE TABLE d.t (`a` UInt64) ENGINE = MergeTree ORDER BY a SETTINGS \
             parts_to_delay_insert = 5, parts_to_throw_insert = 10, storage_policy = 'x' \
             COMMENT 'hi'",
        );
        assert_eq!(s["parts_to_delay_insert"], "5");
        assert_eq!(s["parts_to_throw_insert"], "10");
        assert_eq!(s["storage_policy"], "x");
        assert_eq!(s.len(), 3);
        assert!(table_settings("CREATE TABLE d.t (a UInt8) ENGINE = Memory").is_empty());
    }

    #[test]
    fn advice_names_the_flags() {
        assert!(advice_for_code(252).contains("--max-rows"));
        assert!(advice_for_code(16).contains("chasync dlq replay"));
        assert!(advice_for_code(27).contains("dead-letters"));
        assert_eq!(human_secs(86_400), "24h");
        assert_eq!(human_secs(90), "1m 30s");
    }
}
