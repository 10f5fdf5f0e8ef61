//! The pipeline: producers' handles and writers, the bounded queue, and the batcher, wired
//! to delivery; [`Pipeline`] owns their tasks.

pub(crate) mod batcher;
pub(crate) mod handle;
pub(crate) mod text;
pub(crate) mod writer;

use std::sync::Arc;

use serde::Serialize;
use tokio::sync::mpsc;

use crate::catalog::Catalog;
use crate::config::Config;
use crate::delivery::dispatcher::Dispatcher;
use crate::error::{Error, Result};
use crate::format::native::NativeOptions;
use crate::format::{BatchEncoder, DynamicRows, RowBinary};
use crate::pipeline::batcher::{Batcher, Limits, Refresh, SealHook, Target, Task};
use crate::pipeline::handle::{Handle, Msg, RowGate};
use crate::pipeline::writer::Writers;
use crate::spool::ShardRef;
use crate::stats::{QueueCounters, Stats};
use crate::types::schema::TableSchema;

/// Where the batcher task runs.
enum BatcherRun {
    /// A thread of its own (encoding is CPU work that should not hold up the caller's
    /// executor: an application's tasks, or Python's event loop); says whether it ended
    /// normally.
    Thread(tokio::sync::oneshot::Receiver<bool>),
    /// A task on the runtime the pipeline was started on.
    Task(tokio::task::JoinHandle<()>),
}

/// A running ingestion pipeline for one table, generic over how rows are encoded.
///
/// Most users want [`Ingestor<T>`] for typed rows or [`DynIngestor`] for rows whose schema
/// is known at run time; [`PipelineBuilder`] wires any [`BatchEncoder`].
pub struct Pipeline<E: BatchEncoder> {
    handle: Handle<E::Row>,
    batcher: BatcherRun,
    dispatcher: Arc<Dispatcher>,
    /// The dispatcher is this pipeline's own (stopped with it) rather than shared.
    owns_dispatcher: bool,
}

/// An ingestor of typed rows, encoded as RowBinary.
///
/// ```no_run
/// use chasync_core::{Config, Ingestor};
///
/// #[derive(clickhouse::Row, serde::Serialize)]
/// struct Event {
///     id: u64,
///     name: String,
/// }
///
/// # async fn run() -> chasync_core::Result<()> {
/// let config = Config::builder("http://127.0.0.1:8123", "events")
///     .max_rows(50_000)
///     .build()?;
/// let ingestor = Ingestor::<Event>::start(config).await?;
/// let handle = ingestor.handle();
/// for id in 0..1_000_000 {
///     handle.send(Event { id, name: format!("e{id}") }).await.expect("running");
/// }
/// let stats = ingestor.shutdown().await?;
/// assert_eq!(stats.rows_committed + stats.rows_dead_lettered, 1_000_000);
/// # Ok(()) }
/// ```
pub type Ingestor<T> = Pipeline<RowBinary<T>>;

impl<T> Pipeline<RowBinary<T>>
where
    T: clickhouse::Row + Serialize + Send + 'static,
{
    /// Checks the table, then starts the pipeline's tasks on the current tokio runtime.
    ///
    /// Fails when the table does not exist or the server cannot be reached.
    pub async fn start(config: Config) -> Result<Self> {
        let fill = config.delivery.fill_insert_id;
        PipelineBuilder::new(config)
            .start(|table| RowBinary::new(table.insert_id().filter(|_| fill)))
            .await
    }
}

/// An ingestor of rows whose schema is known only at run time ([`crate::DynInput`]: rows or
/// columnar batches), encoded as Native for the table's column types.
///
/// ```no_run
/// use chasync_core::{Config, DynIngestor, DynRow, NativeOptions};
///
/// # async fn run() -> chasync_core::Result<()> {
/// let config = Config::new("http://127.0.0.1:8123", "events");
/// let ingestor = DynIngestor::start_dynamic(config, NativeOptions::default()).await?;
/// let row = DynRow::new().with("id", 1u64).with("name", "first");
/// ingestor.handle().send(row.into()).await.expect("running");
/// ingestor.shutdown().await?;
/// # Ok(()) }
/// ```
pub type DynIngestor = Pipeline<DynamicRows>;

impl Pipeline<DynamicRows> {
    /// Reads the table's schema, then starts a dynamic pipeline. A key that names no column
    /// reads the schema again (at most once a second), so columns added later are picked up.
    pub async fn start_dynamic(config: Config, opts: NativeOptions) -> Result<Self> {
        PipelineBuilder::new(config).start_dynamic(opts).await
    }
}

/// Builds a [`Pipeline`] with a catalog, delivery or seal hook of the caller's, see
/// [`PipelineBuilder`].
pub struct PipelineBuilder {
    config: Config,
    catalog: Option<Arc<Catalog>>,
    dispatcher: Option<Arc<Dispatcher>>,
    hook: Option<SealHook>,
    first_input: u64,
    own_thread: bool,
    shard: Option<ShardRef>,
}

impl PipelineBuilder {
    /// A builder for a pipeline of `config`: with a catalog, a dispatcher or a seal hook of
    /// the caller's, then started from the table's schema or with a given encoder.
    ///
    /// ```no_run
    /// use chasync_core::{Config, JsonEachRow, PipelineBuilder};
    ///
    /// # async fn run() -> chasync_core::Result<()> {
    /// let config = Config::new("http://127.0.0.1:8123", "events");
    /// let pipeline = PipelineBuilder::new(config)
    ///     .start(|table| JsonEachRow::new(table.insert_id(), Vec::new()))
    ///     .await?;
    /// pipeline.handle().send(r#"{"id":1}"#.into()).await.expect("running");
    /// pipeline.shutdown().await?;
    /// # Ok(()) }
    /// ```
    pub fn new(config: Config) -> Self {
        Self {
            config,
            catalog: None,
            dispatcher: None,
            hook: None,
            first_input: 0,
            own_thread: true,
            shard: None,
        }
    }

    /// The pipeline of one shard of a sharded load: the spool entries of its batches record
    /// the shard (see [`ShardRef`]). With a dispatcher of the caller's, that one's spool
    /// decides.
    pub(crate) fn shard(mut self, shard: ShardRef) -> Self {
        self.shard = Some(shard);
        self
    }

    /// Reads table schemas through this catalog (shared with other pipelines, or with the
    /// caller's own metadata needs) instead of one of the pipeline's own.
    pub fn catalog(mut self, catalog: Arc<Catalog>) -> Self {
        self.catalog = Some(catalog);
        self
    }

    /// Sends batches through this dispatcher, shared with other pipelines (its concurrency
    /// limit, endpoints and spool then hold for all of them together, and so do the
    /// [`Stats`]), instead of one of the pipeline's own.
    pub fn dispatcher(mut self, dispatcher: Arc<Dispatcher>) -> Self {
        self.dispatcher = Some(dispatcher);
        self
    }

    /// Calls `hook` on the batcher task with every sealed batch, in order, before it goes to
    /// delivery (see [`SealHook`]).
    pub fn on_seal(mut self, hook: SealHook) -> Self {
        self.hook = Some(hook);
        self
    }

    /// Numbers the inputs from `first` (see [`crate::Batch::inputs`]).
    pub fn first_input(mut self, first: u64) -> Self {
        self.first_input = first;
        self
    }

    /// Runs the batcher as a task on the current runtime instead of a thread of its own: for
    /// encoders that do little work per input (JSONEachRow pass-through, say) and frontends
    /// that run many pipelines.
    pub fn on_current_runtime(mut self) -> Self {
        self.own_thread = false;
        self
    }

    /// Reads the table's schema through the catalog, builds the encoder from it and starts
    /// the pipeline on the current tokio runtime.
    ///
    /// Fails with [`Error::UnknownTable`] when the table does not exist, with
    /// [`Error::Config`] when the server refuses the ClickHouse `settings` of the
    /// configuration ([`Catalog::check_settings`]), or when the server cannot be reached.
    pub async fn start<E: BatchEncoder>(
        mut self,
        make: impl FnOnce(&TableSchema) -> E,
    ) -> Result<Pipeline<E>> {
        self.config.validate()?;
        let catalog = match &self.catalog {
            Some(c) => c.clone(),
            None => {
                let c = Arc::new(Catalog::new(&self.config)?);
                self.catalog = Some(c.clone());
                c
            }
        };
        catalog
            .check_settings(&self.config.clickhouse.settings)
            .await?;
        let table = catalog
            .table(&self.config.clickhouse.database, &self.config.table)
            .await?;
        let encoder = make(&table);
        self.start_with_encoder(encoder)
    }

    /// [`start`](Self::start) with the encoder of rows known at run time (see
    /// [`DynIngestor::start_dynamic`]).
    pub async fn start_dynamic(self, opts: NativeOptions) -> Result<DynIngestor> {
        let fill = self.config.delivery.fill_insert_id;
        self.start(|table| DynamicRows::new(Arc::new(table.clone()), opts, fill))
            .await
    }

    /// Starts the pipeline with `encoder` on the current tokio runtime, without reading the
    /// table first.
    pub fn start_with_encoder<E: BatchEncoder>(self, encoder: E) -> Result<Pipeline<E>> {
        let config = self.config;
        config.validate()?;
        if let Some(cluster) = &config.clickhouse.cluster {
            // One pipeline inserts into one table through its endpoints; rows go to a
            // cluster's shards through `Sharded`, whose pipelines have no `cluster`.
            return Err(Error::Config(format!(
                "the cluster option ({cluster:?}) routes rows to the shards of a cluster, which \
                 this pipeline does not do (one table, one set of endpoints): use \
                 DynTarget or Sharded (or chasync insert with NDJSON, or the Python \
                 Inserter), or leave cluster out (and insert into a Distributed table, if \
                 need be)"
            )));
        }
        let (dispatcher, owns_dispatcher) = match self.dispatcher {
            Some(d) => (d, false),
            None => (
                Arc::new(Dispatcher::start_for_shard(&config, self.shard)?),
                true,
            ),
        };
        let catalog = match self.catalog {
            Some(c) => c,
            None => Arc::new(Catalog::new(&config)?),
        };
        let counters = dispatcher.counters();
        let queue = Arc::new(QueueCounters::default());
        let (tx, rx) = mpsc::channel::<Msg<E::Row>>(config.batching.queue_rows);
        let batcher = Batcher::new(
            encoder,
            Limits {
                max_rows: config.batching.max_rows,
                max_bytes: config.batching.max_bytes,
                linger: config.batching.linger,
            },
            {
                let mut t = Target::of(&config);
                t.first_input = self.first_input;
                t
            },
        );
        let gate = Arc::new(RowGate::new(config.batching.queue_rows));
        let writers = Arc::new(Writers::new(
            batcher.row_encoder(),
            config.batching.max_rows,
            config.batching.max_bytes,
            config.batching.linger,
        ));
        let task = Task {
            rx,
            batcher,
            out: dispatcher.sender(),
            counters: counters.clone(),
            queue: queue.clone(),
            gate: gate.clone(),
            writers: writers.clone(),
            refresh: Some(Refresh {
                catalog,
                runtime: tokio::runtime::Handle::current(),
            }),
            hook: self.hook,
        };
        let batcher = if self.own_thread {
            let (done_tx, done_rx) = tokio::sync::oneshot::channel();
            std::thread::Builder::new()
                .name("chasync-batcher".into())
                .spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_time()
                        .build()
                        .expect("the batcher's runtime");
                    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        rt.block_on(task.run())
                    }));
                    let _ = done_tx.send(result.is_ok());
                })
                .map_err(|e| Error::Config(format!("cannot start the batcher thread: {e}")))?;
            BatcherRun::Thread(done_rx)
        } else {
            BatcherRun::Task(tokio::spawn(task.run()))
        };
        Ok(Pipeline {
            handle: Handle {
                tx,
                counters,
                queue,
                count: E::input_rows,
                prepare: E::prepare,
                gate,
                writers,
            },
            batcher,
            dispatcher,
            owns_dispatcher,
        })
    }
}

impl<E: BatchEncoder> Pipeline<E> {
    /// A producer handle; clone it freely.
    pub fn handle(&self) -> Handle<E::Row> {
        self.handle.clone()
    }

    /// The dispatcher the pipeline sends through, e.g. to [`submit`](Dispatcher::submit)
    /// batches formed elsewhere (a write-ahead log's, after a restart) to the same delivery.
    pub fn dispatcher(&self) -> &Arc<Dispatcher> {
        &self.dispatcher
    }

    /// See [`Handle::flush`].
    pub async fn flush(&self) -> Result<()> {
        self.handle.flush().await
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        self.handle.stats()
    }

    /// Stops accepting rows, commits or dead-letters everything accepted, and returns the
    /// final counters. Handles still held get [`Error::Closed`]-style refusals afterwards.
    ///
    /// A pipeline on a shared dispatcher waits for its own batches (and any others in the
    /// dispatcher at the time) to end; the dispatcher goes on for the others.
    pub async fn shutdown(self) -> Result<Stats> {
        // Err only when the batcher is already gone, which is fine.
        let _ = self.handle.tx.send(Msg::Shutdown).await;
        let (counters, queue) = (self.handle.counters.clone(), self.handle.queue.clone());
        drop(self.handle);
        let ended = match self.batcher {
            BatcherRun::Thread(done) => matches!(done.await, Ok(true)),
            BatcherRun::Task(task) => match task.await {
                Ok(()) => true,
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Err(_) => false,
            },
        };
        if !ended {
            return Err(Error::Client {
                message: "the batcher thread panicked".into(),
                source: None,
            });
        }
        if !self.owns_dispatcher {
            // The shared dispatcher's other users may have dead-lettered too: the result of
            // this flush is not this pipeline's; its own rows show in the counters.
            let _ = self.dispatcher.flush().await;
            return Ok(counters.snapshot_of(&queue));
        }
        match Arc::try_unwrap(self.dispatcher) {
            Ok(dispatcher) => {
                dispatcher.shutdown().await?;
            }
            // Someone kept a reference from `Pipeline::dispatcher`: wait for the batches.
            Err(dispatcher) => {
                let _ = dispatcher.flush().await;
            }
        }
        Ok(counters.snapshot_of(&queue))
    }
}
