//! The catalog: the one reader of table metadata. It reads a table's columns (types,
//! defaults), its `_insert_id` column, its engine and whether the engine deduplicates, and the
//! server's time zone; caches what it read; and reads again on an explicit
//! [`refresh`](Catalog::refresh). Every frontend and the pipeline ask it; encoders receive
//! the schemas it reads and never query the server themselves.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::types::schema::{ColumnDef, Deduplication, DefaultKind, TableSchema};

/// Table metadata read from the server, cached per `(database, table)`.
///
/// Cheap to share behind an `Arc`; lookups take a short lock that is never held across a
/// query. Two tasks missing the same table at once may both read it; the later one wins.
pub struct Catalog {
    /// One client per endpoint, tried in turn while an endpoint cannot be reached.
    clients: Vec<clickhouse::Client>,
    timeout: Duration,
    cache: Mutex<HashMap<(String, String), Arc<TableSchema>>>,
    /// Sets of settings the server accepted (see [`check_settings`](Catalog::check_settings)).
    settings_ok: Mutex<Vec<BTreeMap<String, String>>>,
}

impl std::fmt::Debug for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catalog")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Catalog {
    /// A catalog that reads through the endpoints of `config` (the next one when one cannot
    /// be reached), with its credentials; each metadata query is bounded by the
    /// configuration's `query_timeout`. Fails when the TLS options name files that cannot be
    /// read.
    pub fn new(config: &Config) -> Result<Self> {
        let clients = config
            .clickhouse
            .url
            .iter()
            .map(|u| crate::client::client_for(config, u))
            .collect::<Result<_>>()?;
        Ok(Self {
            clients,
            timeout: config.clickhouse.query_timeout,
            cache: Mutex::new(HashMap::new()),
            settings_ok: Mutex::new(Vec::new()),
        })
    }

    /// A catalog that reads with `client`; each query is bounded by `timeout`.
    pub fn with_client(client: clickhouse::Client, timeout: Duration) -> Self {
        Self {
            clients: vec![client],
            timeout,
            cache: Mutex::new(HashMap::new()),
            settings_ok: Mutex::new(Vec::new()),
        }
    }

    fn key(database: &str, table: &str) -> (String, String) {
        (database.to_owned(), table.to_owned())
    }

    /// The cached schema of a table, if it was read.
    pub fn cached(&self, database: &str, table: &str) -> Option<Arc<TableSchema>> {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.get(&Self::key(database, table)).cloned()
    }

    /// The schema of `database.table`: cached, or read and cached.
    ///
    /// Fails with [`Error::UnknownTable`] when there is no such table (or the user cannot see
    /// it), and with [`Error::Timeout`] when the server does not answer in time.
    pub async fn table(&self, database: &str, table: &str) -> Result<Arc<TableSchema>> {
        match self.cached(database, table) {
            Some(schema) => Ok(schema),
            None => self.refresh(database, table).await,
        }
    }

    /// Reads the schema again and replaces the cached one (e.g. after the table changed). On
    /// error the cached entry is dropped.
    pub async fn refresh(&self, database: &str, table: &str) -> Result<Arc<TableSchema>> {
        let key = Self::key(database, table);
        let result = self.read(database, table).await;
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        match result {
            Ok(schema) => {
                let schema = Arc::new(schema);
                cache.insert(key, schema.clone());
                Ok(schema)
            }
            Err(e) => {
                cache.remove(&key);
                Err(e)
            }
        }
    }

    /// Forgets the cached schema of a table.
    pub fn invalidate(&self, database: &str, table: &str) {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.remove(&Self::key(database, table));
    }

    /// Puts a schema into the cache (one built with [`TableSchema::from_columns`], say).
    pub fn insert(&self, schema: Arc<TableSchema>) {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.insert(Self::key(&schema.database, &schema.table), schema);
    }

    /// Checks ClickHouse settings (the `settings` option, sent with every insert) before
    /// any insert: the whole set by a `SELECT 1` that carries them (unknown names, values the
    /// server cannot parse, constraints, settings that cannot change in `readonly` mode), and
    /// when the server refuses them, each name against its `system.settings` (a name that is
    /// not there is named, with the known names closest to it). `readonly` other than 0 is
    /// refused (it forbids inserts). Fails with [`Error::Config`] naming what the server
    /// refuses; a set once accepted is not checked again. Custom settings (names with a
    /// prefix of the server's `custom_settings_prefixes`) pass when the server takes them.
    pub async fn check_settings(&self, settings: &BTreeMap<String, String>) -> Result<()> {
        if settings.is_empty() {
            return Ok(());
        }
        let known = |ok: &Vec<BTreeMap<String, String>>| ok.iter().any(|s| s == settings);
        if known(&self.settings_ok.lock().unwrap_or_else(|e| e.into_inner())) {
            return Ok(());
        }
        let mut last = None;
        for client in &self.clients {
            match self.check_settings_on(client, settings).await {
                Err(e @ (Error::Network { .. } | Error::Timeout(_) | Error::Http(_))) => {
                    last = Some(e);
                }
                Ok(verified) => {
                    let mut ok = self.settings_ok.lock().unwrap_or_else(|e| e.into_inner());
                    if verified && !known(&ok) {
                        ok.push(settings.clone());
                    }
                    return Ok(());
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| Error::Config("no ClickHouse URL".into())))
    }

    async fn check_settings_on(
        &self,
        client: &clickhouse::Client,
        settings: &BTreeMap<String, String>,
    ) -> Result<bool> {
        if let Some(mode) = settings.get("readonly")
            && mode.trim() != "0"
        {
            return Err(Error::Config(format!(
                "the ClickHouse setting readonly = {mode} forbids inserts: every batch would be \
                 refused"
            )));
        }
        let what = "the check of the ClickHouse settings";
        let names: Vec<&str> = settings.keys().map(String::as_str).collect();
        let found = self
            .bounded(
                what,
                client
                    .query("SELECT name FROM system.settings WHERE has(?, name)")
                    .bind(&names)
                    .fetch_all::<String>(),
            )
            .await?;
        let mut probe = client.query("SELECT 1");
        for (name, value) in settings {
            probe = probe.with_setting(name.clone(), value.clone());
        }
        // Only the server's refusal of the settings is theirs: a network error or a timeout is
        // reported as it is, and a passing fault (a busy server) leaves the check to the
        // inserts, which retry it.
        let refused = match self.bounded(what, probe.fetch_all::<u8>()).await {
            Ok(_) => return Ok(true),
            Err(e @ Error::Server { .. }) if e.kind() == crate::ErrorKind::Retryable => {
                tracing::warn!(error = %e.report(), "the check of the ClickHouse settings met a passing fault; going on");
                return Ok(false);
            }
            Err(e @ Error::Server { .. }) => e,
            Err(e) => return Err(e),
        };
        let mut problems = Vec::new();
        for name in names.iter().filter(|n| !found.iter().any(|f| f == *n)) {
            let close = self
                .bounded(
                    what,
                    client
                        .query(
                            "SELECT name FROM system.settings WHERE editDistance(name, ?) <= 3 \
                             ORDER BY editDistance(name, ?), name LIMIT 3",
                        )
                        .bind(name)
                        .bind(name)
                        .fetch_all::<String>(),
                )
                .await
                .unwrap_or_default();
            let mut p =
                format!("`{name}` is not a setting of this server (not in system.settings)");
            if !close.is_empty() {
                let close: Vec<String> = close.iter().map(|c| format!("`{c}`")).collect();
                p.push_str(&format!("; did you mean {}?", close.join(", ")));
            }
            problems.push(p);
        }
        let server = refused.report();
        let detail = if problems.is_empty() {
            String::new()
        } else {
            format!("{}; ", problems.join("; "))
        };
        Err(Error::Config(format!(
            "ClickHouse refuses the settings sent with every insert, checked before any insert: \
             {detail}{server}"
        )))
    }

    /// Runs one metadata query within the timeout.
    async fn bounded<T>(
        &self,
        what: &str,
        query: impl Future<Output = clickhouse::error::Result<T>>,
    ) -> Result<T> {
        match tokio::time::timeout(self.timeout, query).await {
            Ok(result) => result.map_err(Error::from),
            Err(_) => Err(Error::Timeout(format!(
                "no answer to {what} within {:?}",
                self.timeout
            ))),
        }
    }

    /// The engine of `database.table` and its full definition (`engine`, `engine_full` of
    /// `system.tables`), read now (not cached).
    pub(crate) async fn engine(&self, database: &str, table: &str) -> Result<(String, String)> {
        #[derive(clickhouse::Row, serde::Deserialize)]
        struct Row {
            engine: String,
            engine_full: String,
        }
        let what = format!("the schema query of {database}.{table} (its engine)");
        let row = self
            .first_answer(|client| {
                self.bounded(
                    &what,
                    client
                        .query(
                            "SELECT engine, engine_full FROM system.tables \
                             WHERE database = ? AND name = ?",
                        )
                        .bind(database)
                        .bind(table)
                        .fetch_optional::<Row>(),
                )
            })
            .await?;
        let Some(row) = row else {
            return Err(Error::UnknownTable {
                database: database.to_owned(),
                table: table.to_owned(),
            });
        };
        Ok((row.engine, row.engine_full))
    }

    /// The replicas of cluster `name` from `system.clusters`, in shard and replica order;
    /// an error when the server has no such cluster.
    pub(crate) async fn cluster(&self, name: &str) -> Result<Vec<ClusterReplica>> {
        let what = format!("the query of cluster {name} in system.clusters");
        let rows = self
            .first_answer(|client| {
                self.bounded(
                    &what,
                    client
                        .query(
                            "SELECT toUInt32(shard_num) AS shard_num, \
                             toUInt32(shard_weight) AS shard_weight, \
                             toUInt32(replica_num) AS replica_num, host_name, \
                             toUInt16(port) AS port FROM system.clusters WHERE cluster = ? \
                             ORDER BY shard_num, replica_num",
                        )
                        .bind(name)
                        .fetch_all::<ClusterReplica>(),
                )
            })
            .await?;
        if rows.is_empty() {
            return Err(Error::Config(format!(
                "the server has no cluster {name:?} (not in system.clusters; see remote_servers \
                 in its configuration)"
            )));
        }
        Ok(rows)
    }

    /// Runs a query through the first endpoint that answers.
    async fn first_answer<'a, T, F>(
        &'a self,
        query: impl Fn(&'a clickhouse::Client) -> F,
    ) -> Result<T>
    where
        F: Future<Output = Result<T>> + 'a,
    {
        let mut last = None;
        for client in &self.clients {
            match query(client).await {
                Err(e @ (Error::Network { .. } | Error::Timeout(_) | Error::Http(_))) => {
                    last = Some(e);
                }
                other => return other,
            }
        }
        Err(last.unwrap_or_else(|| Error::Config("no ClickHouse URL".into())))
    }

    /// Reads through the first endpoint that answers.
    async fn read(&self, database: &str, table: &str) -> Result<TableSchema> {
        let mut last = None;
        for client in &self.clients {
            match self.read_from(client, database, table).await {
                Err(e @ (Error::Network { .. } | Error::Timeout(_) | Error::Http(_))) => {
                    last = Some(e);
                }
                other => return other,
            }
        }
        Err(last.unwrap_or_else(|| Error::Config("no ClickHouse URL".into())))
    }

    async fn read_from(
        &self,
        client: &clickhouse::Client,
        database: &str,
        table: &str,
    ) -> Result<TableSchema> {
        #[derive(clickhouse::Row, serde::Deserialize)]
        struct Column {
            name: String,
            #[serde(rename = "type")]
            type_name: String,
            default_kind: String,
            default_expression: String,
            position: u64,
        }
        #[derive(clickhouse::Row, serde::Deserialize)]
        struct Table {
            engine: String,
            engine_full: String,
            timezone: String,
            window_default: String,
            replicated_window_default: String,
        }
        let what = format!("the schema query of {database}.{table}");
        let rows = self
            .bounded(
                &what,
                client
                    .query(
                        "SELECT name, type, default_kind, default_expression, position \
                         FROM system.columns WHERE database = ? AND table = ? ORDER BY position",
                    )
                    .bind(database)
                    .bind(table)
                    .fetch_all::<Column>(),
            )
            .await?;
        if rows.is_empty() {
            return Err(Error::UnknownTable {
                database: database.to_owned(),
                table: table.to_owned(),
            });
        }
        let query = |defaults: &str| {
            client
                .query(&format!(
                    "SELECT engine, engine_full, timezone() AS timezone, {defaults} \
                     FROM system.tables WHERE database = ? AND name = ?"
                ))
                .bind(database)
                .bind(table)
                .fetch_optional::<Table>()
        };
        let info = match self
            .bounded(
                &what,
                query(
                    "ifNull((SELECT any(value) FROM system.merge_tree_settings \
                             WHERE name = 'non_replicated_deduplication_window'), '0') \
                       AS window_default, \
                     ifNull((SELECT any(value) FROM system.merge_tree_settings \
                             WHERE name = 'replicated_deduplication_window'), '1') \
                       AS replicated_window_default",
                ),
            )
            .await
        {
            // A user with grants on its tables only may not read the server's MergeTree
            // defaults: then a table's own SETTINGS decide, and a plain MergeTree that sets
            // no window is taken not to deduplicate (the safe side: its retries are checked).
            Err(e) if e.code() == Some(497) => {
                self.bounded(
                    &what,
                    query("'0' AS window_default, '1' AS replicated_window_default"),
                )
                .await?
            }
            other => other?,
        };
        let columns = rows
            .into_iter()
            .map(|r| {
                let mut c = ColumnDef::new(r.name, r.type_name)
                    .with_default(DefaultKind::parse(&r.default_kind), r.default_expression);
                c.position = r.position;
                c
            })
            .collect();
        let (timezone, engine, dedup) = match info {
            Some(t) => {
                let dedup = Deduplication::of_table(
                    &t.engine,
                    &t.engine_full,
                    t.window_default.parse().unwrap_or(0),
                    t.replicated_window_default.parse().unwrap_or(1),
                );
                (t.timezone, t.engine, dedup)
            }
            // Dropped between the two queries.
            None => {
                return Err(Error::UnknownTable {
                    database: database.to_owned(),
                    table: table.to_owned(),
                });
            }
        };
        Ok(
            TableSchema::with_timezone(database.to_owned(), table.to_owned(), columns, timezone)
                .with_engine(engine, dedup),
        )
    }
}

/// One replica of a cluster, a row of `system.clusters`.
#[derive(Debug, Clone, PartialEq, Eq, clickhouse::Row, serde::Deserialize)]
pub(crate) struct ClusterReplica {
    /// The shard's number (1-based, in the cluster's order).
    pub shard_num: u32,
    /// The shard's weight.
    pub shard_weight: u32,
    /// The replica's number in its shard.
    pub replica_num: u32,
    /// The replica's host, as configured.
    pub host_name: String,
    /// The replica's native TCP port.
    pub port: u16,
}

/// The HTTP URL of a replica that `system.clusters` lists at `host:port` (native port): from
/// `cluster_urls`, else its host with the scheme and port of the first `url`.
pub(crate) fn replica_url(config: &Config, r: &ClusterReplica) -> Result<String> {
    let listed = format!("{}:{}", r.host_name, r.port);
    if let Some(url) = config.clickhouse.cluster_urls.get(&listed) {
        return Ok(url.clone());
    }
    let first = config
        .clickhouse
        .url
        .first()
        .ok_or_else(|| Error::Config("no ClickHouse URL".into()))?;
    let (scheme, rest) = first
        .split_once("://")
        .ok_or_else(|| Error::Config(format!("the URL {first:?} has no scheme")))?;
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let port = match authority.rfind(':') {
        Some(i) if !authority[i..].contains(']') => Some(&authority[i + 1..]),
        _ => None,
    };
    let host = if r.host_name.contains(':') && !r.host_name.starts_with('[') {
        format!("[{}]", r.host_name)
    } else {
        r.host_name.clone()
    };
    Ok(match port {
        Some(p) => format!("{scheme}://{host}:{p}"),
        None => format!("{scheme}://{host}"),
    })
}

/// The HTTP URLs of the replicas of `shard`, read from `system.clusters` through `catalog`
/// (as a sharded load finds them: `cluster_urls`, else the hosts with the first URL's scheme
/// and port). For the replay of a shard's spool entries.
pub(crate) async fn shard_urls(
    config: &Config,
    catalog: &Catalog,
    shard: &crate::spool::ShardRef,
) -> Result<Vec<String>> {
    let urls = catalog
        .cluster(&shard.cluster)
        .await?
        .iter()
        .filter(|r| r.shard_num == shard.shard)
        .map(|r| replica_url(config, r))
        .collect::<Result<Vec<_>>>()?;
    if urls.is_empty() {
        return Err(Error::Config(format!(
            "cluster {:?} has no shard {} in system.clusters",
            shard.cluster, shard.shard
        )));
    }
    Ok(urls)
}
