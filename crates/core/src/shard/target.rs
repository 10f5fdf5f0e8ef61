//! Rows known at run time into a table, or routed over the shards of a cluster: one handle
//! for frontends that take either (the Python package).

use std::borrow::Cow;
use std::sync::Arc;

use crate::batch::ack::Ack;
use crate::catalog::Catalog;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::format::DynInput;
use crate::format::native::NativeOptions;
use crate::pipeline::handle::{Handle, SendError, TrySendError};
use crate::pipeline::{DynIngestor, PipelineBuilder};
use crate::stats::Stats;
use crate::types::value::Value;

use super::{DeadLetters, RouteError, ShardPlan, ShardRow, ShardedDynIngestor, ShardedHandle};

/// Rows known at run time ([`DynInput`]) into the configuration's table: one pipeline, or one
/// per shard when the target is sharded (a `Distributed` table whose sharding key the client
/// computes, or the `cluster` option; see [`ShardPlan::resolve`]).
pub enum DynTarget {
    /// One table through its endpoints.
    Table(DynIngestor),
    /// The shards of a cluster.
    Shards(ShardedDynIngestor),
}

impl DynTarget {
    /// Starts the pipelines of `config`'s target. A `Distributed` table that the client
    /// cannot route to (a sharding key it does not compute, say) takes its rows through the
    /// `Distributed` table, with a warning; with the `cluster` option that is an error
    /// ([`Error::Config`]).
    pub async fn start(config: Config, opts: NativeOptions) -> Result<Self> {
        config.validate()?;
        // One catalog for the look at the target and the table's pipeline.
        let catalog = Arc::new(Catalog::new(&config)?);
        let plan = match ShardPlan::resolve_with(&config, &catalog).await {
            Ok(plan) => plan,
            Err(Error::Config(why)) if config.clickhouse.cluster.is_none() => {
                tracing::warn!(
                    table = %format!("{}.{}", config.clickhouse.database, config.table),
                    "a Distributed table; {why}: the rows go through the Distributed table"
                );
                None
            }
            Err(e) => return Err(e),
        };
        Ok(match plan {
            None => Self::Table(
                PipelineBuilder::new(config)
                    .catalog(catalog)
                    .start_dynamic(opts)
                    .await?,
            ),
            Some(plan) => {
                Self::Shards(ShardedDynIngestor::start_dynamic(config, plan, opts).await?)
            }
        })
    }

    /// A cloneable handle to send rows.
    pub fn handle(&self) -> DynTargetHandle {
        match self {
            Self::Table(p) => DynTargetHandle::Table(p.handle()),
            Self::Shards(s) => DynTargetHandle::Shards(s.handle()),
        }
    }

    /// The shards' plan, when the target is sharded.
    pub fn plan(&self) -> Option<&ShardPlan> {
        match self {
            Self::Table(_) => None,
            Self::Shards(s) => Some(s.plan()),
        }
    }

    /// Commits everything queued and stops; the counters of every pipeline together.
    pub async fn shutdown(self) -> Result<Stats> {
        match self {
            Self::Table(p) => p.shutdown().await,
            Self::Shards(s) => s.shutdown().await,
        }
    }
}

/// A handle of a [`DynTarget`]. A row whose shard cannot be computed (its key column missing
/// or null) goes to the dead-letter spool with the reason, as a refused row does.
#[derive(Clone)]
pub enum DynTargetHandle {
    /// One table.
    Table(Handle<DynInput>),
    /// The shards of a cluster.
    Shards(ShardedHandle<DynInput>),
}

/// A readable copy of row `row` of `input` (for the spool).
fn record_of(input: &DynInput, row: Option<usize>) -> String {
    let fields = match (input, row) {
        (DynInput::Row(r), _) => r.fields.clone(),
        (DynInput::Columns(c), Some(i)) => c
            .columns
            .iter()
            .map(|(name, data)| (name.clone(), data.value(i).unwrap_or(Value::Null)))
            .collect(),
        (DynInput::Columns(_), None) => Vec::new(),
    };
    Value::Object(fields).to_string()
}

impl DynTargetHandle {
    /// Queues an input, waiting while the queue is full; hands it back when the target is
    /// shut down. Rows whose shard cannot be computed go to the spool.
    pub async fn send(&self, input: DynInput) -> std::result::Result<(), SendError<DynInput>> {
        match self {
            Self::Table(h) => h.send(input).await,
            Self::Shards(h) => match h.send(input).await {
                Ok(()) => Ok(()),
                Err(RouteError::Unroutable(rows, why)) => {
                    self.reject_unroutable(&rows, &why).await.map(|_| ())
                }
                Err(RouteError::Full(r) | RouteError::Closed(r)) => Err(SendError(r)),
            },
        }
    }

    /// Writes the rows of `input` (which cannot be routed, for `why`) to the spool; how many.
    async fn reject_unroutable(
        &self,
        input: &DynInput,
        why: &str,
    ) -> std::result::Result<u64, SendError<DynInput>> {
        let rows: Vec<Option<usize>> = match ShardRow::rows(input) {
            None => vec![None],
            Some(n) => (0..n).map(Some).collect(),
        };
        for &row in &rows {
            // A row of columnar input: its own reason (`why` is the first bad row's).
            let own = match (self, row) {
                (Self::Shards(h), Some(i)) => h
                    .plan
                    .route(&h.turn, |c| input.row_value(i, c).map(Cow::Owned))
                    .err(),
                _ => None,
            };
            let reason = format!(
                "the row cannot be routed to a shard: {}",
                own.as_deref().unwrap_or(why)
            );
            if self
                .reject(reason, Some(record_of(input, row)))
                .await
                .is_err()
            {
                return Err(SendError(input.clone()));
            }
        }
        Ok(rows.len() as u64)
    }

    /// Queues an input if there is room now. On a sharded target, columnar input and rows
    /// whose shard cannot be computed are handed back as `Full`: [`send`](Self::send) takes
    /// them.
    pub fn try_send(&self, input: DynInput) -> std::result::Result<(), TrySendError<DynInput>> {
        match self {
            Self::Table(h) => h.try_send(input),
            Self::Shards(h) => h.try_send(input).map_err(|e| match e {
                RouteError::Unroutable(r, _) | RouteError::Full(r) => TrySendError::Full(r),
                RouteError::Closed(r) => TrySendError::Closed(r),
            }),
        }
    }

    /// Dead-letters input that could not become a row, with its reason.
    pub async fn reject(&self, reason: String, record: Option<String>) -> Result<()> {
        match self {
            Self::Table(h) => h.reject(reason, record).await,
            Self::Shards(h) => h.reject(reason, record).await,
        }
    }

    /// Queues inputs and returns [`Acks`] that resolve when every batch holding any of them
    /// has ended (on a sharded target, on every shard they went to).
    pub async fn send_acked(
        &self,
        inputs: Vec<DynInput>,
    ) -> std::result::Result<Acks, SendError<Vec<DynInput>>> {
        match self {
            Self::Table(h) => Ok(Acks {
                acks: vec![h.send_acked(inputs).await?],
                unroutable: None,
            }),
            Self::Shards(h) => {
                let (groups, bad) = h.split(inputs);
                let mut acks = Vec::new();
                for (shard, group) in groups.into_iter().enumerate() {
                    if !group.is_empty() {
                        acks.push(h.send_acked_to(shard, group).await?);
                    }
                }
                let mut unroutable = None;
                for (input, why) in bad {
                    let n = self
                        .reject_unroutable(&input, &why)
                        .await
                        .map_err(|e| SendError(vec![e.0]))?;
                    let u = unroutable.get_or_insert((0, String::new(), h.spool.to_path_buf()));
                    u.0 += n;
                    u.1 = why;
                }
                Ok(Acks { acks, unroutable })
            }
        }
    }

    /// Returns when every row queued before is committed or dead-lettered (see
    /// [`Handle::flush`]).
    pub async fn flush(&self) -> Result<()> {
        match self {
            Self::Table(h) => h.flush().await,
            Self::Shards(h) => h.flush().await,
        }
    }

    /// Seals the batches being filled and sends them now (see [`Handle::seal`]).
    pub async fn seal(&self) -> Result<()> {
        match self {
            Self::Table(h) => h.seal().await,
            Self::Shards(h) => h.seal().await,
        }
    }

    /// A snapshot of the counters (of every shard together).
    pub fn stats(&self) -> Stats {
        match self {
            Self::Table(h) => h.stats(),
            Self::Shards(h) => h.stats(),
        }
    }
}

/// The acknowledgements of inputs sent with [`DynTargetHandle::send_acked`].
pub struct Acks {
    acks: Vec<Ack>,
    /// Rows that could not be routed (dead-lettered at once), with the last reason and the
    /// spool.
    unroutable: Option<(u64, String, std::path::PathBuf)>,
}

impl Acks {
    /// Waits for every acknowledgement: `Ok` when all rows were committed, else
    /// [`Error::DeadLettered`] with the rows that were not (the unroutable ones included).
    pub async fn wait(self) -> Result<()> {
        let mut report = DeadLetters::default();
        for ack in self.acks {
            report.add(ack.wait().await);
        }
        if let Some((rows, last_error, spool)) = self.unroutable {
            report.add(Err(Error::DeadLettered {
                batches: 0,
                rows,
                spool,
                last_error,
                code: None,
            }));
        }
        report.into_result()
    }
}

impl<R: ShardRow + Send + 'static> ShardedHandle<R> {
    /// Seals the batch being filled on every shard and sends it now.
    pub async fn seal(&self) -> Result<()> {
        for h in &self.handles {
            h.seal().await?;
        }
        Ok(())
    }

    /// `inputs` grouped by shard (index into [`ShardPlan::shards`]), columnar ones split,
    /// and those whose shard cannot be computed, with the reason.
    fn split(&self, inputs: Vec<R>) -> (Vec<Vec<R>>, Vec<(R, String)>) {
        let mut groups: Vec<Vec<R>> = (0..self.handles.len()).map(|_| Vec::new()).collect();
        let mut bad = Vec::new();
        for input in inputs {
            match input.rows() {
                None => match self.shard_of(&input) {
                    Ok(s) => groups[s].push(input),
                    Err(why) => bad.push((input, why)),
                },
                Some(n) => {
                    let routed = self.route_rows(&input, n);
                    for (s, rows) in routed.parts.iter().enumerate() {
                        if !rows.is_empty() {
                            groups[s].push(input.take(rows));
                        }
                    }
                    if let Some(w) = routed.why {
                        bad.push((input.take(&routed.bad), w));
                    }
                }
            }
        }
        (groups, bad)
    }

    /// Queues `rows` on shard `shard`'s pipeline with one acknowledgement.
    async fn send_acked_to(
        &self,
        shard: usize,
        rows: Vec<R>,
    ) -> std::result::Result<Ack, SendError<Vec<R>>> {
        self.handles[shard].send_acked(rows).await
    }
}
