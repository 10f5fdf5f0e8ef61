//! The ingestor: wires queue → batcher → dispatcher → sink, and owns their tasks.

use std::sync::Arc;

use serde::Serialize;
use tokio::sync::mpsc;

use crate::batch::{self, Batcher, Limits, Target};
use crate::config::Config;
use crate::dedup::InsertIdColumn;
use crate::dispatch::Dispatcher;
use crate::encode::{BatchEncoder, DynamicRows, RowBinary};
use crate::error::{Error, Result};
use crate::limiter::Limiter;
use crate::native::NativeOptions;
use crate::queue::{Handle, Msg, RowGate};
use crate::schema::{SchemaError, TableSchema};
use crate::sink::Sink;
use crate::stats::Stats;
use crate::writer::Writers;

/// A running ingestion pipeline for one table, generic over how rows are encoded.
///
/// Most users want [`Ingestor<T>`] for typed rows.
pub struct Pipeline<E: BatchEncoder> {
    handle: Handle<E::Row>,
    /// Says whether the batcher thread ended normally.
    batcher: tokio::sync::oneshot::Receiver<bool>,
    dispatcher: Dispatcher,
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
/// let mut config = Config::new("http://127.0.0.1:8123", "events");
/// config.max_rows = 50_000;
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
        Self::start_with(config, |table| RowBinary::new(table.insert_id.clone())).await
    }
}

/// An ingestor of rows whose schema is known only at run time ([`crate::DynInput`]: rows or
/// columnar batches), encoded as Native for the table's column types.
///
/// ```no_run
/// use chasync_core::{Config, DynIngestor, native::NativeOptions, value::DynRow};
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
    /// Reads the table's schema, then starts a dynamic pipeline. Unknown keys refresh the
    /// schema once (columns added later are picked up).
    pub async fn start_dynamic(config: Config, opts: NativeOptions) -> Result<Self> {
        config.validate()?;
        let limiter = Arc::new(Limiter::new(config.max_concurrency));
        let sink = Sink::new(&config, limiter.clone());
        let schema = TableSchema::fetch(sink.client(), &config.database, &config.table)
            .await
            .map_err(|e| match e {
                SchemaError::UnknownTable { database, table } => Error::Config(format!(
                    "table {database}.{table} does not exist (or the user cannot see it)"
                )),
                SchemaError::Query { source, .. } => source.into(),
            })?;
        let encoder = DynamicRows::new(
            Arc::new(schema),
            opts,
            config.fill_insert_id,
            Some(config.clone()),
        );
        Self::with_parts(config, sink, limiter, encoder)
    }
}

/// What the engine learned about the target table at start.
#[derive(Debug, Clone)]
pub struct TableInfo {
    /// (name, type) of each column, in table order.
    pub columns: Vec<(String, String)>,
    /// The `_insert_id` column the engine fills, if the table has one (and
    /// [`Config::fill_insert_id`] is on).
    pub insert_id: Option<InsertIdColumn>,
}

/// The (name, type) pairs of a table's columns, in order; an error if there is no such table.
pub async fn table_columns(
    client: &clickhouse::Client,
    database: &str,
    table: &str,
) -> Result<Vec<(String, String)>> {
    let columns: Vec<(String, String)> = client
        .query(
            "SELECT name, type FROM system.columns WHERE database = ? AND table = ? \
             ORDER BY position",
        )
        .bind(database)
        .bind(table)
        .fetch_all()
        .await?;
    if columns.is_empty() {
        return Err(Error::Config(format!(
            "table {database}.{table} does not exist (or the user cannot see it)"
        )));
    }
    Ok(columns)
}

impl<E: BatchEncoder> Pipeline<E> {
    /// Checks the table, builds the encoder from what it learned, and starts the pipeline.
    pub async fn start_with(config: Config, make: impl FnOnce(&TableInfo) -> E) -> Result<Self> {
        config.validate()?;
        let limiter = Arc::new(Limiter::new(config.max_concurrency));
        let sink = Sink::new(&config, limiter.clone());
        let columns = table_columns(sink.client(), &config.database, &config.table).await?;
        let insert_id = if config.fill_insert_id {
            columns
                .iter()
                .find_map(|(name, ty)| InsertIdColumn::from_column(name, ty))
        } else {
            None
        };
        let encoder = make(&TableInfo { columns, insert_id });
        Self::with_parts(config, sink, limiter, encoder)
    }

    /// Starts a pipeline with a given encoder on the current tokio runtime.
    pub fn with_encoder(config: Config, encoder: E) -> Result<Self> {
        config.validate()?;
        let limiter = Arc::new(Limiter::new(config.max_concurrency));
        let sink = Sink::new(&config, limiter.clone());
        Self::with_parts(config, sink, limiter, encoder)
    }

    fn with_parts(config: Config, sink: Sink, limiter: Arc<Limiter>, encoder: E) -> Result<Self> {
        let dispatcher = Dispatcher::with_sink(&config, sink, limiter);
        let counters = dispatcher.counters();
        let (tx, rx) = mpsc::channel::<Msg<E::Row>>(config.queue_capacity);
        let batcher = Batcher::new(
            encoder,
            Limits {
                max_rows: config.max_rows,
                max_bytes: config.max_bytes,
                linger: config.linger,
            },
            Target {
                database: Arc::from(config.database.as_str()),
                table: Arc::from(config.table.as_str()),
                stream_id: config.stream_id,
                first_sequence: config.first_sequence,
            },
        );
        // The batcher encodes: CPU work that should not hold up the caller's executor (an
        // application's tasks, or Python's event loop). It gets a thread of its own.
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        let gate = Arc::new(RowGate::new(config.queue_capacity));
        let writers = Arc::new(Writers::new(
            batcher.row_encoder(),
            config.max_rows,
            config.max_bytes,
            config.linger,
        ));
        let run = batch::run(
            rx,
            batcher,
            dispatcher.sender(),
            counters.clone(),
            gate.clone(),
            writers.clone(),
        );
        std::thread::Builder::new()
            .name("chasync-batcher".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_time()
                    .build()
                    .expect("the batcher's runtime");
                let result =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| rt.block_on(run)));
                let _ = done_tx.send(result.is_ok());
            })
            .map_err(|e| Error::Config(format!("cannot start the batcher thread: {e}")))?;
        let batcher = done_rx;
        Ok(Self {
            handle: Handle {
                tx,
                counters,
                spool: dispatcher.spool_dir(),
                count: E::input_rows,
                prepare: E::prepare,
                gate,
                writers,
            },
            batcher,
            dispatcher,
        })
    }

    /// A producer handle; clone it freely.
    pub fn handle(&self) -> Handle<E::Row> {
        self.handle.clone()
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
    pub async fn shutdown(self) -> Result<Stats> {
        // Err only when the batcher is already gone, which is fine.
        let _ = self.handle.tx.send(Msg::Shutdown).await;
        drop(self.handle);
        match self.batcher.await {
            Ok(true) => {}
            _ => return Err(Error::Client("the batcher thread panicked".into())),
        }
        self.dispatcher.shutdown().await
    }
}
