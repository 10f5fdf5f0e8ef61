//! Sharded clusters: rows routed on the client to the shard the server would choose, and
//! inserted straight into each shard's local table.
//!
//! For a `Distributed` target table (or the `cluster` option), [`ShardPlan::resolve`] reads
//! the cluster's shards from `system.clusters` (through the [`Catalog`]) and the table's
//! sharding key from its engine. [`Sharded`] runs one [`Pipeline`] per shard (its own batches,
//! ids, adaptive limit and dispatcher, failing over across the shard's replicas) and a
//! [`ShardedHandle`] sends each row to its shard: the key's value modulo the sum of the
//! weights picks a slot, the slots given to the shards in order, `weight` slots each, as the
//! `Distributed` engine does.

pub(crate) mod hash;
pub(crate) mod key;
mod target;

pub use target::{Acks, DynTarget, DynTargetHandle};

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::catalog::{Catalog, replica_url};
use crate::config::Config;
use crate::dedup::StreamId;
use crate::error::{Error, Result};
use crate::format::native::NativeOptions;
use crate::format::{BatchEncoder, DynInput, DynamicRows};
use crate::pipeline::handle::{Handle, TrySendError};
use crate::pipeline::{Pipeline, PipelineBuilder};
use crate::spool::ShardRef;
use crate::stats::Stats;
use crate::types::schema::TableSchema;
use crate::types::value::{DynRow, Value};

use key::{BoundKey, KeyExpr};

/// One shard of a [`ShardPlan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shard {
    /// The shard's number in `system.clusters` (1-based).
    pub num: u32,
    /// Its weight: its share of the slots.
    pub weight: u32,
    /// The HTTP URLs of its replicas, in replica order (the shard's pipeline fails over
    /// across them).
    pub urls: Vec<String>,
}

/// Where the rows of a sharded target go: the cluster's shards, the local table on each,
/// and the key that routes a row.
#[derive(Debug, Clone)]
pub struct ShardPlan {
    /// The cluster.
    pub cluster: String,
    /// The database of the local tables.
    pub database: String,
    /// The local table on every shard.
    pub table: String,
    /// The sharding key expression as the table's engine gives it (`None`: no key, rows
    /// spread over the shards by weight).
    pub sharding_key: Option<String>,
    /// The shards, in the cluster's order.
    pub shards: Vec<Shard>,
    key: BoundKey,
    /// Slot -> index into `shards`.
    slots: Vec<usize>,
}

/// The arguments of a `Distributed` table's engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DistributedEngine {
    /// The cluster (a name in `system.clusters`).
    pub cluster: String,
    /// The database of the local tables on the shards.
    pub database: String,
    /// The local table on the shards.
    pub table: String,
    /// The sharding key expression, when there is one.
    pub sharding_key: Option<String>,
}

impl DistributedEngine {
    /// Reads `Distributed(cluster, database, table[, sharding_key[, policy]])[ SETTINGS ...]`
    /// as `system.tables.engine_full` shows it.
    pub(crate) fn parse(engine_full: &str) -> Result<Self> {
        let bad = || {
            Error::Config(format!(
                "cannot read the Distributed engine's arguments from `{engine_full}`"
            ))
        };
        let rest = engine_full
            .trim()
            .strip_prefix("Distributed")
            .ok_or_else(bad)?
            .trim_start();
        let rest = rest.strip_prefix('(').ok_or_else(bad)?;
        // The closing parenthesis of the argument list (outside quotes).
        let (mut depth, mut quote, mut escaped, mut end) = (1i32, None::<char>, false, None);
        for (i, c) in rest.char_indices() {
            if let Some(q) = quote {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                }
                continue;
            }
            match c {
                '\'' | '`' | '"' => quote = Some(c),
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    if depth == 0 {
                        end = Some(i);
                        break;
                    }
                }
                _ => {}
            }
        }
        let args = key::split_args(&rest[..end.ok_or_else(bad)?]);
        if args.len() < 3 {
            return Err(bad());
        }
        Ok(Self {
            cluster: key::unquote(&args[0]),
            database: key::unquote(&args[1]),
            table: key::unquote(&args[2]),
            sharding_key: args.get(3).map(|k| k.trim().to_string()),
        })
    }
}

impl ShardPlan {
    /// The plan of the configuration's target, or `None` when it is not sharded: neither a
    /// `Distributed` table nor named with the `cluster` option.
    ///
    /// Fails with [`Error::Config`] when the `cluster` option names another cluster than the
    /// Distributed table's, when the server has no such cluster, when the sharding key is not
    /// one the client computes exactly as the server does (docs/scaling.md), or when a Distributed
    /// table of several shards has no sharding key (the server refuses inserts into it too).
    pub async fn resolve(config: &Config) -> Result<Option<Self>> {
        let catalog = Catalog::new(config)?;
        Self::resolve_with(config, &catalog).await
    }

    /// [`resolve`](Self::resolve) through a catalog of the caller's.
    pub async fn resolve_with(config: &Config, catalog: &Catalog) -> Result<Option<Self>> {
        let (db, table) = (&config.clickhouse.database, &config.table);
        let (engine, engine_full) = catalog.engine(db, table).await?;
        let distributed = if engine == "Distributed" {
            Some(DistributedEngine::parse(&engine_full)?)
        } else {
            None
        };
        let (cluster, local_db, local_table, key_text) =
            match (distributed, &config.clickhouse.cluster) {
                (None, None) => return Ok(None),
                (Some(d), Some(c)) if *c != d.cluster => {
                    return Err(Error::Config(format!(
                        "{db}.{table} is a Distributed table over cluster {:?}, and the cluster \
                         option names {c:?}",
                        d.cluster
                    )));
                }
                (Some(d), _) => (d.cluster, d.database, d.table, d.sharding_key),
                (None, Some(c)) => (c.clone(), db.clone(), table.clone(), None),
            };
        let replicas = catalog.cluster(&cluster).await?;
        let mut shards: Vec<Shard> = Vec::new();
        for r in &replicas {
            let url = replica_url(config, r)?;
            match shards.last_mut() {
                Some(s) if s.num == r.shard_num => s.urls.push(url),
                _ => shards.push(Shard {
                    num: r.shard_num,
                    weight: r.shard_weight,
                    urls: vec![url],
                }),
            }
        }
        let expr = match &key_text {
            Some(k) => KeyExpr::parse(k)?,
            None if shards.len() > 1 && engine == "Distributed" => {
                return Err(Error::Config(format!(
                    "{db}.{table} is a Distributed table of {} shards without a sharding key: \
                     ClickHouse refuses inserts into it too",
                    shards.len()
                )));
            }
            None => KeyExpr::Random,
        };
        let schema = catalog.table(db, table).await?;
        let key = expr.bind(&schema)?;
        let slots: Vec<usize> = shards
            .iter()
            .enumerate()
            .flat_map(|(i, s)| std::iter::repeat_n(i, s.weight as usize))
            .collect();
        if slots.is_empty() {
            return Err(Error::Config(format!(
                "cluster {cluster:?} has no shard of a weight above 0"
            )));
        }
        Ok(Some(Self {
            cluster,
            database: local_db,
            table: local_table,
            sharding_key: key_text,
            shards,
            key,
            slots,
        }))
    }

    /// The configuration of shard `i`'s pipeline: its replicas' URLs, the local table, and
    /// (with a `stream_id`) a stream of its own derived from it, so that every shard's batch
    /// ids are reproducible and distinct.
    pub fn shard_config(&self, base: &Config, i: usize) -> Config {
        let shard = &self.shards[i];
        let mut c = base.clone();
        c.clickhouse.url = shard.urls.clone();
        c.clickhouse.database = self.database.clone();
        c.table = self.table.clone();
        c.clickhouse.cluster = None;
        c.clickhouse.cluster_urls.clear();
        if let Some(s) = &base.delivery.stream_id {
            c.delivery.stream_id = Some(StreamId(crate::dedup::derived_id(&s.0, shard.num)));
        }
        c
    }

    /// The index (into [`shards`](Self::shards)) of the shard of a row whose columns `get`
    /// gives; an error names why the row cannot be routed. A random key takes the slots in
    /// turn from `turn`.
    fn route<'a>(
        &self,
        turn: &AtomicUsize,
        get: impl Fn(&str) -> Option<Cow<'a, Value>>,
    ) -> std::result::Result<usize, String> {
        let n = self.slots.len();
        Ok(match self.key.eval(get)? {
            Some(k) => self.slots[(k % n as u64) as usize],
            None => self.slots[turn.fetch_add(1, Ordering::Relaxed) % n],
        })
    }
}

/// A row whose shard can be computed: it gives the values of its columns by name. An input
/// of several rows (columnar) gives them row by row and is split over the shards.
pub trait ShardRow: Sized {
    /// The row's value of `column`, if it has one.
    fn column_value(&self, column: &str) -> Option<Cow<'_, Value>>;

    /// For an input of several rows: how many (`None`: one row, [`column_value`] applies).
    ///
    /// [`column_value`]: ShardRow::column_value
    fn rows(&self) -> Option<usize> {
        None
    }

    /// For an input of several rows: row `row`'s value of `column`, if it has one.
    fn row_value(&self, _row: usize, _column: &str) -> Option<Value> {
        None
    }

    /// For an input of several rows: rows `rows` (indices, in order) as an input of their own.
    fn take(&self, _rows: &[usize]) -> Self {
        unreachable!("take is called only on inputs of several rows")
    }
}

impl ShardRow for DynRow {
    fn column_value(&self, column: &str) -> Option<Cow<'_, Value>> {
        self.get(column).map(Cow::Borrowed)
    }
}

impl ShardRow for DynInput {
    fn column_value(&self, column: &str) -> Option<Cow<'_, Value>> {
        match self {
            DynInput::Row(r) => r.column_value(column),
            DynInput::Columns(_) => None,
        }
    }

    fn rows(&self) -> Option<usize> {
        match self {
            DynInput::Row(_) => None,
            DynInput::Columns(c) => Some(c.rows()),
        }
    }

    fn row_value(&self, row: usize, column: &str) -> Option<Value> {
        match self {
            DynInput::Row(_) => None,
            // A null in a column that is not Nullable means "omitted": the key then has no
            // value, and the row cannot be routed (neither can a Nullable key's null).
            DynInput::Columns(c) => c
                .columns
                .iter()
                .find(|(name, _)| name == column)
                .and_then(|(_, data)| data.value(row)),
        }
    }

    fn take(&self, rows: &[usize]) -> Self {
        match self {
            DynInput::Row(r) => DynInput::Row(r.clone()),
            DynInput::Columns(c) => DynInput::Columns(crate::types::value::ColumnBatch {
                columns: c
                    .columns
                    .iter()
                    .map(|(name, data)| (name.clone(), data.take(rows)))
                    .collect(),
            }),
        }
    }
}

/// Why a [`ShardedHandle`] did not take a row; the row is handed back.
pub enum RouteError<R> {
    /// The row's shard cannot be computed (a key column missing, null or of another type),
    /// with the reason.
    Unroutable(R, String),
    /// Its shard's queue is full (`try_send`).
    Full(R),
    /// The pipelines are shut down.
    Closed(R),
}

impl<R> RouteError<R> {
    /// The row that was not taken.
    pub fn into_inner(self) -> R {
        match self {
            Self::Unroutable(r, _) | Self::Full(r) | Self::Closed(r) => r,
        }
    }
}

impl<R> std::fmt::Debug for RouteError<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unroutable(_, why) => write!(f, "Unroutable({why:?})"),
            Self::Full(_) => f.write_str("Full(..)"),
            Self::Closed(_) => f.write_str("Closed(..)"),
        }
    }
}

impl<R> std::fmt::Display for RouteError<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unroutable(_, why) => write!(f, "the row cannot be routed to a shard: {why}"),
            Self::Full(_) => f.write_str("the shard's queue is full; the row was not accepted"),
            Self::Closed(_) => f.write_str("the ingestor is shut down; the row was not accepted"),
        }
    }
}

impl<R> std::error::Error for RouteError<R> {}

/// The rows of a columnar input by shard (indices into the input).
struct Routed {
    /// Per shard, its rows.
    parts: Vec<Vec<usize>>,
    /// The rows whose shard cannot be computed.
    bad: Vec<usize>,
    /// The first of those, with the reason.
    why: Option<String>,
}

/// A cloneable handle that sends each row to its shard's pipeline.
pub struct ShardedHandle<R> {
    plan: Arc<ShardPlan>,
    turn: Arc<AtomicUsize>,
    handles: Vec<Handle<R>>,
    /// The dead-letter spool of the pipelines.
    spool: Arc<std::path::Path>,
}

impl<R> Clone for ShardedHandle<R> {
    fn clone(&self) -> Self {
        Self {
            plan: self.plan.clone(),
            turn: self.turn.clone(),
            handles: self.handles.clone(),
            spool: self.spool.clone(),
        }
    }
}

impl<R: ShardRow + Send + 'static> ShardedHandle<R> {
    /// The index of the shard (into [`ShardPlan::shards`]) a row goes to.
    pub fn shard_of(&self, row: &R) -> std::result::Result<usize, String> {
        self.plan.route(&self.turn, |c| row.column_value(c))
    }

    /// The rows of an input of `n` rows by shard, and those whose shard cannot be computed.
    fn route_rows(&self, input: &R, n: usize) -> Routed {
        let mut parts: Vec<Vec<usize>> = vec![Vec::new(); self.handles.len()];
        let (mut bad, mut why) = (Vec::new(), None);
        for i in 0..n {
            match self
                .plan
                .route(&self.turn, |c| input.row_value(i, c).map(Cow::Owned))
            {
                Ok(s) => parts[s].push(i),
                Err(w) => {
                    bad.push(i);
                    why.get_or_insert(format!("row {i}: {w}"));
                }
            }
        }
        Routed { parts, bad, why }
    }

    /// Queues a row on its shard's pipeline, waiting while that queue is full. An input of
    /// several rows (columnar) is split: each shard's rows go to it in one input, and the rows
    /// whose shard cannot be computed are handed back together
    /// (`RouteError::Unroutable`, with the first reason) after the others were queued.
    pub async fn send(&self, row: R) -> std::result::Result<(), RouteError<R>> {
        if let Some(n) = row.rows() {
            let Routed { parts, bad, why } = self.route_rows(&row, n);
            for (s, rows) in parts.iter().enumerate() {
                if rows.is_empty() {
                    continue;
                }
                if let Err(e) = self.handles[s].send(row.take(rows)).await {
                    // Shut down: what was not queued goes back, this part's rows and the
                    // parts after it.
                    let mut rest: Vec<usize> = parts[s..].concat();
                    rest.extend(&bad);
                    rest.sort_unstable();
                    drop(e);
                    return Err(RouteError::Closed(row.take(&rest)));
                }
            }
            return match why {
                None => Ok(()),
                Some(w) => Err(RouteError::Unroutable(row.take(&bad), w)),
            };
        }
        let i = match self.shard_of(&row) {
            Ok(i) => i,
            Err(why) => return Err(RouteError::Unroutable(row, why)),
        };
        self.handles[i]
            .send(row)
            .await
            .map_err(|e| RouteError::Closed(e.0))
    }

    /// Queues a row on its shard's pipeline if there is room now. An input of several rows
    /// (columnar) is not taken here (it may have to be split over shards): it is handed back
    /// as [`RouteError::Full`]; [`send`](Self::send) takes it.
    pub fn try_send(&self, row: R) -> std::result::Result<(), RouteError<R>> {
        if row.rows().is_some() {
            return Err(RouteError::Full(row));
        }
        let i = match self.shard_of(&row) {
            Ok(i) => i,
            Err(why) => return Err(RouteError::Unroutable(row, why)),
        };
        self.handles[i].try_send(row).map_err(|e| match e {
            TrySendError::Full(r) => RouteError::Full(r),
            TrySendError::Closed(r) => RouteError::Closed(r),
        })
    }

    /// Writes a row that cannot be routed (or read) to the dead-letter spool with its reason
    /// (through the first shard's pipeline, whose spool it is), instead of dropping it.
    pub async fn reject(&self, reason: String, record: Option<String>) -> Result<()> {
        self.handles[0].reject(reason, record).await
    }

    /// Waits until every row queued so far on every shard is committed or dead-lettered.
    /// Fails with [`Error::DeadLettered`] counting the batches and rows of every shard that
    /// dead-lettered some since the previous flush (the last error among them).
    pub async fn flush(&self) -> Result<()> {
        let mut report = DeadLetters::default();
        for h in &self.handles {
            report.add(h.flush().await);
        }
        report.into_result()
    }

    /// The counters of all shards together.
    pub fn stats(&self) -> Stats {
        sum(self.handles.iter().map(Handle::stats))
    }
}

/// The outcomes of several flushes or acknowledgements as one: dead letters added up, any
/// other error kept (the first).
#[derive(Default)]
pub(crate) struct DeadLetters {
    result: Option<Error>,
}

impl DeadLetters {
    /// Adds one outcome.
    pub(crate) fn add(&mut self, outcome: Result<()>) {
        let Err(e) = outcome else { return };
        match (&mut self.result, e) {
            (None, e) => self.result = Some(e),
            (
                Some(Error::DeadLettered {
                    batches,
                    rows,
                    last_error,
                    code,
                    ..
                }),
                Error::DeadLettered {
                    batches: b,
                    rows: r,
                    last_error: l,
                    code: c,
                    ..
                },
            ) => {
                *batches += b;
                *rows += r;
                *last_error = l;
                *code = c;
            }
            // Another error wins over dead letters; the first of them is kept.
            (Some(Error::DeadLettered { .. }), e) => self.result = Some(e),
            (Some(_), _) => {}
        }
    }

    /// The outcome of them all.
    pub(crate) fn into_result(self) -> Result<()> {
        self.result.map_or(Ok(()), Err)
    }
}

/// Counters summed over shards; the concurrency limits, in-flight counts and latency
/// percentiles are the largest of any shard.
fn sum(all: impl Iterator<Item = Stats>) -> Stats {
    let mut t = Stats::default();
    let mut first = true;
    for s in all {
        t.rows_accepted += s.rows_accepted;
        t.rows_committed += s.rows_committed;
        t.bytes_committed += s.bytes_committed;
        t.batches_committed += s.batches_committed;
        t.batches_sealed += s.batches_sealed;
        t.retries += s.retries;
        t.failed_attempts += s.failed_attempts;
        t.batches_dead_lettered += s.batches_dead_lettered;
        t.rows_dead_lettered += s.rows_dead_lettered;
        t.rows_rejected += s.rows_rejected;
        t.batches_split += s.batches_split;
        t.concurrency_limit = t.concurrency_limit.max(s.concurrency_limit);
        t.min_concurrency_limit = if first {
            s.min_concurrency_limit
        } else {
            t.min_concurrency_limit.min(s.min_concurrency_limit)
        };
        t.concurrency_decreases += s.concurrency_decreases;
        t.breaker_opens += s.breaker_opens;
        t.breaker_open |= s.breaker_open;
        t.queue_depth += s.queue_depth;
        t.in_flight += s.in_flight;
        t.max_in_flight = t.max_in_flight.max(s.max_in_flight);
        t.latency_ms_p50 = t.latency_ms_p50.max(s.latency_ms_p50);
        t.latency_ms_p95 = t.latency_ms_p95.max(s.latency_ms_p95);
        t.latency_ms_p99 = t.latency_ms_p99.max(s.latency_ms_p99);
        first = false;
    }
    t
}

/// One pipeline per shard of a [`ShardPlan`], each inserting into its shard's local table.
pub struct Sharded<E: BatchEncoder> {
    plan: Arc<ShardPlan>,
    pipelines: Vec<Pipeline<E>>,
    handle: ShardedHandle<E::Row>,
}

/// Rows known at run time ([`DynInput`] rows) routed to the shards of a cluster.
pub type ShardedDynIngestor = Sharded<DynamicRows>;

impl Sharded<DynamicRows> {
    /// Starts a dynamic pipeline per shard of `plan` (see [`crate::DynIngestor`]).
    pub async fn start_dynamic(
        config: Config,
        plan: ShardPlan,
        opts: NativeOptions,
    ) -> Result<Self> {
        let fill = config.delivery.fill_insert_id;
        Self::start(config, plan, move |table| {
            DynamicRows::new(Arc::new(table.clone()), opts.clone(), fill)
        })
        .await
    }
}

impl<E: BatchEncoder> Sharded<E>
where
    E::Row: ShardRow,
{
    /// Starts one pipeline per shard (each reads its local table's schema from its shard and
    /// builds its encoder with `make`). Stops those already started when one cannot start.
    pub async fn start(
        config: Config,
        plan: ShardPlan,
        make: impl Fn(&TableSchema) -> E,
    ) -> Result<Self> {
        let mut pipelines = Vec::with_capacity(plan.shards.len());
        for i in 0..plan.shards.len() {
            let shard_config = plan.shard_config(&config, i);
            let shard = ShardRef {
                cluster: plan.cluster.clone(),
                shard: plan.shards[i].num,
            };
            match PipelineBuilder::new(shard_config)
                .shard(shard)
                .start(&make)
                .await
            {
                Ok(p) => pipelines.push(p),
                Err(e) => {
                    for p in pipelines {
                        let _ = p.shutdown().await;
                    }
                    let shard = format!(
                        "shard {} of cluster {} ({})",
                        plan.shards[i].num,
                        plan.cluster,
                        plan.shards[i].urls.join(", ")
                    );
                    return Err(match e {
                        Error::Config(m) => Error::Config(format!("{shard}: {m}")),
                        other => {
                            tracing::error!(error = %other.report(), "{shard} cannot start");
                            other
                        }
                    });
                }
            }
        }
        let plan = Arc::new(plan);
        let handle = ShardedHandle {
            plan: plan.clone(),
            turn: Arc::new(AtomicUsize::new(0)),
            handles: pipelines.iter().map(Pipeline::handle).collect(),
            spool: Arc::from(config.spool.dir.as_path()),
        };
        Ok(Self {
            plan,
            pipelines,
            handle,
        })
    }

    /// The plan the pipelines follow.
    pub fn plan(&self) -> &ShardPlan {
        &self.plan
    }

    /// A handle that routes rows to the shards.
    pub fn handle(&self) -> ShardedHandle<E::Row> {
        self.handle.clone()
    }

    /// The counters of each shard's pipeline, in [`ShardPlan::shards`] order.
    pub fn shard_stats(&self) -> Vec<Stats> {
        self.pipelines.iter().map(Pipeline::stats).collect()
    }

    /// The counters of all shards together (see [`ShardedHandle::stats`]).
    pub fn stats(&self) -> Stats {
        self.handle.stats()
    }

    /// Shuts every shard's pipeline down (each commits or dead-letters what it accepted)
    /// and returns the counters of all together; the first error, after all have ended.
    pub async fn shutdown(self) -> Result<Stats> {
        drop(self.handle);
        let mut stats = Vec::new();
        let mut first = None;
        for p in self.pipelines {
            match p.shutdown().await {
                Ok(s) => stats.push(s),
                Err(e) => {
                    first.get_or_insert(e);
                }
            }
        }
        match first {
            Some(e) => Err(e),
            None => Ok(sum(stats.into_iter())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::ClusterReplica;

    #[test]
    fn reads_the_engine_arguments() {
        let e = DistributedEngine::parse(
            "Distributed('two', 'd,b', 'l', cityHash64(a, b)) SETTINGS fsync_after_insert = 0",
        )
        .unwrap();
        assert_eq!(e.cluster, "two");
        assert_eq!(e.database, "d,b");
        assert_eq!(e.table, "l");
        assert_eq!(e.sharding_key.as_deref(), Some("cityHash64(a, b)"));
        let e = DistributedEngine::parse("Distributed('c', 'db', 't')").unwrap();
        assert_eq!(e.sharding_key, None);
        assert!(DistributedEngine::parse("MergeTree ORDER BY x").is_err());
    }

    #[test]
    fn replica_urls_from_the_map_or_the_first_url() {
        let mut c = Config::new("https://u:p@ch:8443/x", "t");
        c.clickhouse.url = vec!["https://ch:8443/x".into()];
        c.clickhouse
            .cluster_urls
            .insert("h2:9000".into(), "http://h2:18123".into());
        let r = |h: &str| ClusterReplica {
            shard_num: 1,
            shard_weight: 1,
            replica_num: 1,
            host_name: h.into(),
            port: 9000,
        };
        assert_eq!(replica_url(&c, &r("h1")).unwrap(), "https://h1:8443");
        assert_eq!(replica_url(&c, &r("h2")).unwrap(), "http://h2:18123");
        assert_eq!(replica_url(&c, &r("::1")).unwrap(), "https://[::1]:8443");
    }
}
