//! The `Inserter` class: configuration from keyword options, conversion of the inputs, and
//! their hand-off to the engine (the async bridge).
//!
//! # The bridge
//!
//! Every write converts its input when it is *called* (Python objects are read under the GIL;
//! big inputs are converted on a blocking thread, see below) and is then ordered behind every
//! earlier write. When nothing is waiting, the rows go straight into the engine's queue
//! (`try_send`) and the call returns an already finished awaitable ([`crate::Ready`]): no trip
//! through the event loop, no thread hop. When the queue is full (backpressure) or earlier
//! writes are still waiting, the rows go to a hand-off task on the tokio runtime of
//! `pyo3-async-runtimes`, which waits for room in the queue; the call returns an asyncio
//! future (`future_into_py`) that resolves when the rows are in the queue. Awaiting never
//! blocks the event loop.
//!
//! Cancelling the awaitable does not take the rows back: once a write was called, its rows
//! are committed or dead-lettered (by the time `close()` returns).
//!
//! ## Why an ordered hand-off in front of the engine's queue
//!
//! The engine's queue is a tokio bounded channel behind [`Handle`](chasync_core::Handle),
//! and it is FIFO for the senders it holds: a `send().await` that waits keeps its place,
//! and a later `try_send` cannot overtake it (tokio's batch semaphore gives a freed slot to the oldest waiter, and
//! adds slots back to the count `try_send` takes from only once no sender waits:
//! `add_permits_locked` and `try_acquire` in `tokio/src/sync/batch_semaphore.rs`, 1.54; the
//! test `a_later_try_send_does_not_overtake_a_waiting_send` pins it). That orders the *inputs*
//! that have started waiting. The package promises more: *writes* land in the order they were
//! called, and `close()` commits every write called before it. Without a queue of its own in
//! front, that breaks in four places:
//!
//! 1. A write converted on a blocking thread has no rows yet when the next write is called:
//!    nothing in the engine's queue holds its place, and a short write converted in its call
//!    goes in first. (Tried: the row written right after a 6,000-row `write_many` landed
//!    before it; `test_writes_land_in_the_order_they_were_called`.)
//! 2. A write is several inputs (columnar chunks, rows, rejected rows) sent one after the
//!    other, and a place in the channel is per input, not per write: once one of them waits,
//!    a later write's inputs can come between its own. And a task spawned to wait for room
//!    takes its place only when it first runs, after later calls may have sent already.
//! 3. [`Handle::send`](chasync_core::Handle::send) waits for room in two places: the row
//!    gate (a semaphore bounding the rows of multi-row inputs) and then the channel. A
//!    single row skips the gate, so it passes a columnar chunk that waits at the gate.
//! 4. `close()` must commit writes whose rows are not in the engine's queue yet (a conversion
//!    still running, an awaitable that was cancelled while it waited for room): something
//!    has to know of them. (Tried: the 50,000 rows of a cancelled `write_many` were lost at
//!    `close()`; `test_a_cancelled_write_still_lands`.)
//!
//! So the order is kept here, and only while something waits: `backlog` counts the writes
//! handed to the task and not yet in the engine's queue. While it is 0 (the common case: the
//! engine keeps up) a write goes straight into the engine's queue, and `try_write` may too;
//! otherwise the write goes behind them to the hand-off task, the one sender while any waits,
//! which owns the pipeline and runs `close()` behind every earlier write. (Calls that
//! overlap, from several Python threads, are ordered as they reach the queue.)
//!
//! # The GIL
//!
//! `write_many` with more than [`INLINE_ROWS`] rows and `write_columns` with long columns
//! are converted on a tokio blocking thread that holds the GIL only while it reads Python
//! objects (the event loop keeps running between its turns), then releases it for the rest
//! (numpy buffers, grouping, chunking). Arrow input is imported under the GIL (no copy) and
//! converted entirely without it. Sending into the engine's queue happens without the GIL.

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};

use chasync_core::ColumnData;
use chasync_core::NativeOptions;
use chasync_core::{
    Config, ConfigBuilder, DynInput, DynTarget, DynTargetHandle, Error as CoreError, Stats,
    TrySendError,
};
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString, PyTuple};
use tokio::sync::{mpsc, oneshot};

use crate::convert::{self, Item, OnError, RawColumn};
use crate::errors::{self, ClosedError, ConfigError, PyConversion, QueueFull};
use crate::{Ready, arrow, runtime};

/// Inputs up to this many rows (or columns up to this length) are converted in the call
/// itself; longer ones on a blocking thread so the event loop keeps running.
pub const INLINE_ROWS: usize = 4096;

/// Why a hand-off failed.
enum WorkError {
    Core(CoreError),
    Conversion(PyConversion),
    Other(String),
}

impl WorkError {
    fn into_pyerr(self, py: Python<'_>) -> PyErr {
        match self {
            WorkError::Core(e) => errors::to_pyerr(py, e),
            WorkError::Conversion(c) => c.into_pyerr(py),
            WorkError::Other(m) => errors::Error::new_err(m),
        }
    }
}

type Converted = Result<Vec<Item>, WorkError>;

enum Payload {
    Ready(Vec<Item>),
    Pending(tokio::task::JoinHandle<Converted>),
}

enum Work {
    Items(Payload, Option<oneshot::Sender<Result<(), WorkError>>>),
    /// Items sent with an acknowledgement and sealed into a batch at once; the sender hears
    /// when they all are committed, or how many were dead-lettered (into the spool given).
    Acked(
        Payload,
        std::path::PathBuf,
        oneshot::Sender<Result<(), WorkError>>,
    ),
    Flush(oneshot::Sender<chasync_core::Result<()>>),
    /// Send what the engine holds now, reporting nothing.
    Seal,
    Close(oneshot::Sender<(chasync_core::Result<()>, chasync_core::Result<Stats>)>),
}

#[derive(Clone)]
struct Running {
    handle: DynTargetHandle,
    work: mpsc::UnboundedSender<Work>,
    /// Work items sent to the hand-off task and not finished: while not 0, new writes queue
    /// behind them (order).
    backlog: Arc<AtomicUsize>,
}

enum State {
    Idle,
    Starting,
    Running(Running),
    Closed(Option<DynTargetHandle>),
}

async fn send_items(handle: &DynTargetHandle, items: Vec<Item>) -> Result<(), WorkError> {
    for item in items {
        match item {
            Item::Input(input) => handle
                .send(input)
                .await
                .map_err(|_| WorkError::Core(CoreError::Closed))?,
            Item::Reject { reason, record } => handle
                .reject(reason, Some(record))
                .await
                .map_err(WorkError::Core)?,
        }
    }
    Ok(())
}

/// The items of a payload, once converted.
async fn resolve(payload: Payload) -> Result<Vec<Item>, WorkError> {
    match payload {
        Payload::Ready(items) => Ok(items),
        Payload::Pending(job) => match job.await {
            Ok(r) => r,
            Err(e) => Err(WorkError::Other(format!("conversion failed: {e}"))),
        },
    }
}

/// Sends items with one acknowledgement and seals the batch; returns a future of the
/// outcome: `Ok` when every row was committed, `DeadLettered` (rows that were not, rows
/// refused at conversion included) otherwise.
async fn send_acked(
    handle: &DynTargetHandle,
    items: Vec<Item>,
    spool: std::path::PathBuf,
) -> Result<impl Future<Output = Result<(), WorkError>> + Send + 'static, WorkError> {
    let mut inputs = Vec::with_capacity(items.len());
    let mut refused: Option<(u64, String)> = None;
    for item in items {
        match item {
            Item::Input(input) => inputs.push(input),
            Item::Reject { reason, record } => {
                let r = refused.get_or_insert((0, String::new()));
                r.0 += 1;
                r.1.clone_from(&reason);
                handle
                    .reject(reason, Some(record))
                    .await
                    .map_err(WorkError::Core)?;
            }
        }
    }
    let ack = handle
        .send_acked(inputs)
        .await
        .map_err(|_| WorkError::Core(CoreError::Closed))?;
    handle.seal().await.map_err(WorkError::Core)?;
    Ok(async move {
        let (mut rows, mut last_error, mut code) = match &refused {
            Some((n, reason)) => (*n, reason.clone(), None),
            None => (0, String::new(), None),
        };
        match ack.wait().await {
            Ok(()) => {}
            Err(CoreError::DeadLettered {
                rows: r,
                last_error: e,
                code: c,
                ..
            }) => {
                rows += r;
                last_error = e;
                code = c;
            }
            Err(e) => return Err(WorkError::Core(e)),
        }
        if rows == 0 {
            return Ok(());
        }
        Err(WorkError::Core(CoreError::DeadLettered {
            batches: 1,
            rows,
            spool,
            last_error,
            code,
        }))
    })
}

/// The hand-off task: sends work in order; owns the pipeline and shuts it down at `close()`
/// (or when the `Inserter` is dropped without one).
async fn hand_off(
    pipeline: DynTarget,
    mut rx: mpsc::UnboundedReceiver<Work>,
    backlog: Arc<AtomicUsize>,
) {
    let handle = pipeline.handle();
    while let Some(work) = rx.recv().await {
        match work {
            Work::Items(payload, done) => {
                let result = match resolve(payload).await {
                    Ok(items) => send_items(&handle, items).await,
                    Err(e) => Err(e),
                };
                backlog.fetch_sub(1, SeqCst);
                if let Some(done) = done {
                    let _ = done.send(result);
                }
            }
            Work::Acked(payload, spool, done) => {
                let sent = match resolve(payload).await {
                    Ok(items) => send_acked(&handle, items, spool).await,
                    Err(e) => Err(e),
                };
                backlog.fetch_sub(1, SeqCst);
                match sent {
                    // The outcome is awaited off this task, so later writes go on.
                    Ok(outcome) => {
                        tokio::spawn(async move {
                            let _ = done.send(outcome.await);
                        });
                    }
                    Err(e) => {
                        let _ = done.send(Err(e));
                    }
                }
            }
            Work::Seal => {
                let _ = handle.seal().await;
                backlog.fetch_sub(1, SeqCst);
            }
            Work::Flush(done) => {
                // Rows handed over before are in the queue already; wait for the outcome
                // off this task so that later writes are not held up.
                let h = handle.clone();
                backlog.fetch_sub(1, SeqCst);
                tokio::spawn(async move {
                    let _ = done.send(h.flush().await);
                });
            }
            Work::Close(done) => {
                let flushed = handle.flush().await;
                drop(handle);
                let stats = pipeline.shutdown().await;
                let _ = done.send((flushed, stats));
                return;
            }
        }
    }
    // Every sender is gone without close(): commit what the engine holds, then stop.
    drop(handle);
    if let Err(e) = pipeline.shutdown().await {
        tracing::error!(error = %e, "chasync inserter dropped without close(); shutdown failed");
    }
}

/// Tries to queue items at once; returns those that did not fit (from the first that did
/// not, in order).
fn try_send_all(handle: &DynTargetHandle, items: Vec<Item>) -> Result<Vec<Item>, CoreError> {
    let mut it = items.into_iter();
    while let Some(item) = it.next() {
        match item {
            Item::Input(input) => match handle.try_send(input) {
                Ok(()) => {}
                Err(TrySendError::Full(input)) => {
                    let mut rest = vec![Item::Input(input)];
                    rest.extend(it);
                    return Ok(rest);
                }
                Err(TrySendError::Closed(_)) => return Err(CoreError::Closed),
            },
            reject @ Item::Reject { .. } => {
                let mut rest = vec![reject];
                rest.extend(it);
                return Ok(rest);
            }
        }
    }
    Ok(Vec::new())
}

fn config_err(msg: impl Into<String>) -> PyErr {
    ConfigError::new_err(msg.into())
}

fn flag(name: &str, v: &Bound<'_, PyAny>) -> PyResult<bool> {
    v.extract::<bool>()
        .map_err(|_| config_err(format!("{name} must be True or False")))
}

/// A keyword argument's value as the engine's configuration takes it: text, numbers,
/// booleans, lists and dicts as they are, paths as text.
fn option_value(name: &str, v: &Bound<'_, PyAny>) -> PyResult<serde_json::Value> {
    use serde_json::Value;
    if v.is_instance_of::<pyo3::types::PyBool>() {
        return Ok(Value::Bool(v.extract()?));
    }
    if let Ok(n) = v.extract::<u64>() {
        return Ok(Value::from(n));
    }
    if let Ok(n) = v.extract::<i64>() {
        return Ok(Value::from(n));
    }
    if let Ok(f) = v.extract::<f64>() {
        return Ok(Value::from(f));
    }
    if let Ok(s) = v.cast::<PyString>() {
        return Ok(Value::from(s.to_cow()?.into_owned()));
    }
    if let Ok(d) = v.cast::<PyDict>() {
        let mut map = serde_json::Map::new();
        for (k, item) in d.iter() {
            let key: String = k
                .extract()
                .map_err(|_| config_err(format!("{name}: keys must be str")))?;
            let value =
                if item.is_instance_of::<pyo3::types::PyBool>() || item.extract::<f64>().is_ok() {
                    option_value(name, &item)?
                } else {
                    Value::from(item.str()?.to_cow()?.into_owned())
                };
            map.insert(key, value);
        }
        return Ok(Value::Object(map));
    }
    if let Ok(list) = v.extract::<Vec<Bound<'_, PyAny>>>()
        && !v.is_instance_of::<PyString>()
    {
        return list.iter().map(|i| option_value(name, i)).collect();
    }
    if let Ok(path) = v.extract::<std::path::PathBuf>() {
        return Ok(Value::from(path.to_string_lossy().into_owned()));
    }
    Err(config_err(format!(
        "{name}: {} is not a text, number, boolean, list or dict",
        v.get_type().name()?
    )))
}

/// The engine's options, by the names every frontend shares (`docs/configuration.md`), and
/// the conversion options of this package.
fn apply_options(
    mut builder: ConfigBuilder,
    native: &mut NativeOptions,
    on_error: &mut OnError,
    options: &Bound<'_, PyDict>,
) -> PyResult<ConfigBuilder> {
    for (k, v) in options.iter() {
        let key: String = k.extract()?;
        match key.as_str() {
            "skip_unknown_keys" => native.skip_unknown_keys = flag(&key, &v)?,
            "preserve_row_order" => native.preserve_row_order = flag(&key, &v)?,
            "insert_id_column" => native.insert_id_column = v.extract()?,
            "on_conversion_error" => {
                *on_error = match v.extract::<String>()?.as_str() {
                    "raise" => OnError::Raise,
                    "dead_letter" => OnError::DeadLetter,
                    other => {
                        return Err(config_err(format!(
                            "on_conversion_error must be 'raise' or 'dead_letter', not {other:?}"
                        )));
                    }
                }
            }
            // `None` leaves an option at its default.
            _ if v.is_none() => {}
            "compression" if v.is_instance_of::<pyo3::types::PyBool>() => {
                let on: bool = v.extract()?;
                builder = builder.set("compression", if on { "lz4" } else { "none" });
            }
            "urls" | "endpoints" if v.is_instance_of::<PyString>() => {
                builder = builder.set_text("url", &v.extract::<String>()?);
            }
            _ => builder = builder.set(&key, option_value(&key, &v)?),
        }
    }
    Ok(builder)
}

/// The dict of a [`Stats`] snapshot.
fn stats_dict<'py>(
    py: Python<'py>,
    stats: &Stats,
    spool: &std::path::Path,
) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    if let Ok(serde_json::Value::Object(map)) = serde_json::to_value(stats) {
        for (k, v) in map {
            match v {
                serde_json::Value::Bool(b) => d.set_item(k, b)?,
                serde_json::Value::Number(n) => match n.as_u64() {
                    Some(u) => d.set_item(k, u)?,
                    None => d.set_item(k, n.as_f64().unwrap_or(f64::NAN))?,
                },
                other => d.set_item(k, other.to_string())?,
            }
        }
    }
    d.set_item("dead_letter_dir", spool.display().to_string())?;
    Ok(d)
}

/// Streams rows into one ClickHouse table through the chasync engine.
///
/// `url` is the ClickHouse HTTP endpoint (`http://host:8123`, or `https://host:8443` with
/// TLS) or a list of them (attempts go to the least loaded healthy one);
/// `http://user:password@host:8123` (percent-encoded) carries the credentials (a `user` or
/// `password` argument that differs from them is an error). `None`: the environment's
/// `CHASYNC_URL` or `CLICKHOUSE_URL`, else `http://127.0.0.1:8123`. `table` is `name` or
/// `db.name`. The inserter connects in `start()` (or `async with`).
///
/// Every other option is a keyword argument, with the names the command line and the daemon
/// share (docs/configuration.md); an unknown name is a `ConfigError`. An option left out (or
/// `None`) comes from the environment (`CHASYNC_<OPTION>`, such as `CHASYNC_MAX_ROWS`;
/// `CLICKHOUSE_URL`, `CLICKHOUSE_USER`, `CLICKHOUSE_PASSWORD`, `CLICKHOUSE_DATABASE`, which
/// the `CHASYNC_` names override), else its default, given in parentheses below. Durations
/// are seconds (or text: `"500ms"`), sizes bytes (or text: `"32MiB"`).
///
/// Connection:
///   database            the database of tables named without one ("default")
///   user, password      ClickHouse credentials (ClickHouse's "default" user, no password);
///                       the password is never printed
///   compression         "lz4" (default) or "none": wire compression of insert bodies
///   connect_timeout     establishing a connection (5 s)
///   send_timeout        handing one chunk of an insert body to the connection (30 s)
///   insert_timeout      the server's answer to an insert once its body was sent (120 s);
///                       alias `timeout`
///   query_timeout       a metadata query, such as reading the table's schema (10 s)
///   settings            dict of ClickHouse settings sent with every insert
///   cluster             insert straight into the shards of this cluster (a name in
///                       `system.clusters`), rows routed to their shard on the client (None)
///   cluster_urls        dict of the replicas' HTTP URLs by `host:port` as `system.clusters`
///                       lists them (None: the host on the port and scheme of the first URL)
///
/// Batching (a batch is sent at whichever limit comes first):
///   max_rows            rows in a batch (250000); alias `batch_rows`
///   max_bytes           encoded bytes in a batch (32 MiB); alias `batch_bytes`
///   linger              seconds after a batch's first row (1.0)
///   queue_rows          rows that may wait in the queue before writes wait (200000);
///                       alias `queue_capacity`
///
/// Delivery:
///   max_concurrency     inserts in flight at most (4); the limit adapts below it
///   max_attempts        attempts of an insert, the first included (20000); only errors
///                       worth retrying are retried
///   retries             or: attempts after the first (max_attempts - 1)
///   initial_backoff     the wait before the second attempt (0.1 s)
///   max_backoff         the longest wait between two attempts (10 s)
///   backoff_multiplier  growth of the wait per attempt (2.0), jittered
///   fill_insert_id      write the batch id into the table's `_insert_id` column (True)
///   stream_id           a name (or UUID) whose batch ids are reproducible (random)
///   first_sequence      the sequence number of the first batch (0)
///   spool_dir           the dead-letter spool directory ("chasync-spool"); aliases
///                       `dlq_dir`, `dead_letter_dir`
///   urls, endpoints     more endpoints (the same as a list for `url`)
///
/// TLS of `https://` URLs (the server's certificate is checked against the system's trust
/// store, which `SSL_CERT_FILE` / `SSL_CERT_DIR` replace):
///   tls_ca_file         a PEM file of the CAs to trust instead of the system's (None)
///   tls_cert_file       a client certificate (PEM), for servers that require one (None)
///   tls_key_file        the client certificate's private key (PEM), with tls_cert_file
///   tls_insecure_skip_verify
///                       accept any server certificate, unverified (False); logs a warning
///
/// Conversion of Python objects:
///   skip_unknown_keys   ignore dict keys that name no column (False: a ConversionError)
///   preserve_row_order  keep the rows' order when their keys differ (True)
///   insert_id_column    the column that gets the batch id ("_insert_id"; None: none)
///   on_conversion_error "raise" (default: ConversionError, nothing of the call taken) or
///                       "dead_letter" (the row goes to the spool with its reason)
#[pyclass(module = "chasync._native")]
pub struct Inserter {
    config: Config,
    native: NativeOptions,
    on_error: OnError,
    chunk_rows: usize,
    state: Arc<Mutex<State>>,
}

impl Inserter {
    fn running(&self) -> PyResult<Running> {
        match &*self.state.lock().expect("state") {
            State::Running(r) => Ok(r.clone()),
            State::Idle => Err(ClosedError::new_err(
                "the inserter is not started: use `async with` or `await inserter.start()`",
            )),
            State::Starting => Err(ClosedError::new_err(
                "the inserter is still starting: await start() first",
            )),
            State::Closed(_) => Err(ClosedError::new_err("the inserter is closed")),
        }
    }

    fn enqueue<'py>(
        &self,
        py: Python<'py>,
        r: &Running,
        payload: Payload,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.enqueue_work(py, r, |tx| Work::Items(payload, Some(tx)))
    }

    /// Sends one work item, made with the sender of its outcome, to the hand-off task;
    /// returns the awaitable of the outcome.
    fn enqueue_work<'py>(
        &self,
        py: Python<'py>,
        r: &Running,
        work: impl FnOnce(oneshot::Sender<Result<(), WorkError>>) -> Work,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (tx, rx) = oneshot::channel();
        r.backlog.fetch_add(1, SeqCst);
        if r.work.send(work(tx)).is_err() {
            r.backlog.fetch_sub(1, SeqCst);
            return Err(ClosedError::new_err("the inserter is closed"));
        }
        runtime::future_into_py(py, async move {
            match rx.await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(Python::attach(|py| e.into_pyerr(py))),
                Err(_) => Err(ClosedError::new_err("the inserter is closed")),
            }
        })
    }

    /// Hands converted items over: straight into the queue when nothing waits before them
    /// and there is room, else through the hand-off task.
    fn submit<'py>(&self, py: Python<'py>, items: Vec<Item>) -> PyResult<Bound<'py, PyAny>> {
        let r = self.running()?;
        if items.is_empty() {
            return Ok(Bound::new(py, Ready)?.into_any());
        }
        if r.backlog.load(SeqCst) == 0 {
            let handle = r.handle.clone();
            let rest = py
                .detach(move || try_send_all(&handle, items))
                .map_err(|e| errors::to_pyerr(py, e))?;
            if rest.is_empty() {
                return Ok(Bound::new(py, Ready)?.into_any());
            }
            return self.enqueue(py, &r, Payload::Ready(rest));
        }
        self.enqueue(py, &r, Payload::Ready(items))
    }

    /// Runs `job` on a blocking thread (attached to Python only while `job` reads Python
    /// objects) and queues its result in order.
    fn submit_job<'py>(
        &self,
        py: Python<'py>,
        job: impl FnOnce() -> Converted + Send + 'static,
    ) -> PyResult<Bound<'py, PyAny>> {
        let r = self.running()?;
        let handle = runtime::spawn_blocking(job);
        self.enqueue(py, &r, Payload::Pending(handle))
    }

    /// The start of the engine, or `None` when it runs already.
    fn start_future(
        &self,
        py: Python<'_>,
    ) -> PyResult<Option<impl Future<Output = PyResult<()>> + Send + 'static>> {
        {
            let mut state = self.state.lock().expect("state");
            match &*state {
                State::Idle => *state = State::Starting,
                State::Running(_) => return Ok(None),
                State::Starting => {
                    return Err(errors::Error::new_err("the inserter is already starting"));
                }
                State::Closed(_) => return Err(ClosedError::new_err("the inserter is closed")),
            }
        }
        let _ = crate::logging::sync_log_level(py);
        let config = self.config.clone();
        let native = self.native.clone();
        let state = self.state.clone();
        // Spawned, so that cancelling the awaitable cannot leave the state half-way.
        let task = pyo3_async_runtimes::tokio::get_runtime().spawn(async move {
            match DynTarget::start(config, native).await {
                Ok(pipeline) => {
                    let (tx, rx) = mpsc::unbounded_channel();
                    let backlog = Arc::new(AtomicUsize::new(0));
                    let handle = pipeline.handle();
                    tokio::spawn(hand_off(pipeline, rx, backlog.clone()));
                    *state.lock().expect("state") = State::Running(Running {
                        handle,
                        work: tx,
                        backlog,
                    });
                    Ok(())
                }
                Err(e) => {
                    *state.lock().expect("state") = State::Idle;
                    Err(e)
                }
            }
        });
        Ok(Some(async move {
            match task.await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(errors::to_pyerr_attached(e)),
                Err(e) => Err(PyRuntimeError::new_err(format!("start failed: {e}"))),
            }
        }))
    }

    fn close_future(
        &self,
    ) -> Option<impl Future<Output = PyResult<Option<(Stats, std::path::PathBuf)>>> + Send + 'static>
    {
        let mut state = self.state.lock().expect("state");
        let r = match std::mem::replace(&mut *state, State::Closed(None)) {
            State::Running(r) => r,
            State::Closed(h) => {
                *state = State::Closed(h);
                return None;
            }
            State::Idle | State::Starting => return None,
        };
        *state = State::Closed(Some(r.handle.clone()));
        drop(state);
        let spool = self.config.spool.dir.clone();
        let (tx, rx) = oneshot::channel();
        let sent = r.work.send(Work::Close(tx)).is_ok();
        Some(async move {
            if !sent {
                return Ok(None);
            }
            // The hand-off task finishes close even if this future is cancelled.
            let (flushed, stats) = rx
                .await
                .map_err(|_| PyRuntimeError::new_err("the chasync hand-off task ended"))?;
            let stats = stats.map_err(errors::to_pyerr_attached)?;
            flushed.map_err(errors::to_pyerr_attached)?;
            Ok(Some((stats, spool)))
        })
    }
}

#[pymethods]
impl Inserter {
    /// Creates an inserter (it connects in `start()` / `async with`).
    #[new]
    #[pyo3(
        signature = (url, table, *, database=None, user=None, password=None, **options),
        text_signature = "(url, table, *, database=None, user=None, password=None, \
            compression='lz4', connect_timeout=5.0, send_timeout=30.0, insert_timeout=120.0, \
            query_timeout=10.0, settings=None, cluster=None, cluster_urls=None, \
            max_rows=250000, max_bytes=33554432, \
            linger=1.0, queue_rows=200000, max_concurrency=4, max_attempts=20000, \
            retries=None, initial_backoff=0.1, max_backoff=10.0, backoff_multiplier=2.0, \
            fill_insert_id=True, stream_id=None, first_sequence=0, \
            spool_dir='chasync-spool', urls=None, tls_ca_file=None, tls_cert_file=None, \
            tls_key_file=None, tls_insecure_skip_verify=False, skip_unknown_keys=False, \
            preserve_row_order=True, insert_id_column='_insert_id', \
            on_conversion_error='raise', **aliases)"
    )]
    fn new(
        url: &Bound<'_, PyAny>,
        table: String,
        database: Option<String>,
        user: Option<String>,
        password: Option<String>,
        options: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        // The environment (CLICKHOUSE_URL, CHASYNC_URL, ...) first, the arguments over it. A
        // URL's `user:password@` are the arguments' user and password.
        let mut builder = ConfigBuilder::new().merge_env();
        if !url.is_none() {
            builder = builder.set("url", option_value("url", url)?);
        }
        builder = builder.set("table", table);
        if let Some(db) = database {
            builder = builder.set("database", db);
        }
        if let Some(user) = user {
            builder = builder.set("user", user);
        }
        if let Some(password) = password {
            builder = builder.set("password", password);
        }
        let mut native = NativeOptions::default();
        let mut on_error = OnError::Raise;
        if let Some(options) = options {
            builder = apply_options(builder, &mut native, &mut on_error, options)?;
        }
        let config = builder.build().map_err(|e| {
            config_err(
                e.to_string()
                    .trim_start_matches("invalid configuration: ")
                    .to_string(),
            )
        })?;
        // Columnar pieces of at most ~64k rows that add up to the batch size.
        let k = config.batching.max_rows.div_ceil(65_536).max(1);
        let chunk_rows = config.batching.max_rows.div_ceil(k).max(1);
        Ok(Self {
            config,
            native,
            on_error,
            chunk_rows,
            state: Arc::new(Mutex::new(State::Idle)),
        })
    }

    /// The engine configuration the arguments resolve to, as JSON (the password as `***`).
    fn config_json(&self) -> String {
        serde_json::to_string(&self.config).expect("configurations serialise")
    }

    /// Reads the table's schema and starts the engine. Awaitable.
    fn start<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let fut = self.start_future(py)?;
        runtime::future_into_py(py, async move {
            if let Some(f) = fut {
                f.await?;
            }
            Ok(())
        })
    }

    fn __aenter__<'py>(slf: Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let fut = slf.borrow().start_future(py)?;
        let this = slf.unbind();
        runtime::future_into_py(py, async move {
            if let Some(f) = fut {
                f.await?;
            }
            Ok(this)
        })
    }

    #[pyo3(signature = (*_args))]
    fn __aexit__<'py>(
        &self,
        py: Python<'py>,
        _args: &Bound<'py, PyTuple>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let fut = self.close_future();
        runtime::future_into_py(py, async move {
            if let Some(f) = fut {
                f.await?;
            }
            Ok(false)
        })
    }

    /// Queues one row (a dict). Awaitable; resolves when the row is in the engine's queue.
    fn write<'py>(&self, py: Python<'py>, row: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let items = convert::convert_rows(std::iter::once(row.clone()), self.on_error, 1, 0, false)
            .map_err(|e| e.into_pyerr(py))?;
        self.submit(py, items)
    }

    /// Queues one row if there is room now; raises `QueueFull` otherwise. Not awaitable.
    fn try_write(&self, py: Python<'_>, row: &Bound<'_, PyAny>) -> PyResult<()> {
        let r = self.running()?;
        let items = convert::convert_rows(std::iter::once(row.clone()), self.on_error, 1, 0, false)
            .map_err(|e| e.into_pyerr(py))?;
        if r.backlog.load(SeqCst) != 0 || items.iter().any(|i| matches!(i, Item::Reject { .. })) {
            if items.iter().all(|i| matches!(i, Item::Input(_))) {
                return Err(QueueFull::new_err(
                    "earlier writes are still waiting for room",
                ));
            }
            // A rejected row goes through the hand-off task, in order.
            let (tx, _) = oneshot::channel();
            r.backlog.fetch_add(1, SeqCst);
            if r.work
                .send(Work::Items(Payload::Ready(items), Some(tx)))
                .is_err()
            {
                r.backlog.fetch_sub(1, SeqCst);
                return Err(ClosedError::new_err("the inserter is closed"));
            }
            return Ok(());
        }
        let rest = try_send_all(&r.handle, items).map_err(|e| errors::to_pyerr(py, e))?;
        if rest.is_empty() {
            Ok(())
        } else {
            Err(QueueFull::new_err("the queue is full"))
        }
    }

    /// Queues many rows (a list, tuple or iterable of dicts), converted in one call.
    /// Awaitable; resolves when every row is in the engine's queue.
    fn write_many<'py>(
        &self,
        py: Python<'py>,
        rows: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let seq: Bound<'py, PyAny> =
            if rows.is_instance_of::<PyList>() || rows.is_instance_of::<PyTuple>() {
                rows.clone()
            } else {
                PyList::new(py, rows.try_iter()?.collect::<PyResult<Vec<_>>>()?)?.into_any()
            };
        let n = seq.len()?;
        let (on_error, chunk) = (self.on_error, self.chunk_rows);
        if n <= INLINE_ROWS {
            let items = convert::convert_rows(
                seq.try_iter()?.filter_map(Result::ok),
                on_error,
                chunk,
                0,
                false,
            )
            .map_err(|e| e.into_pyerr(py))?;
            return self.submit(py, items);
        }
        let seq = seq.unbind();
        self.submit_job(py, move || convert_on_a_thread(seq, on_error, chunk))
    }

    /// Queues columnar data: a dict of equal-length lists / tuples / numpy arrays, or any
    /// object with `__arrow_c_stream__` (pyarrow Table / RecordBatch / RecordBatchReader,
    /// polars DataFrame, ...). Awaitable.
    fn write_columns<'py>(
        &self,
        py: Python<'py>,
        data: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let chunk = self.chunk_rows;
        if arrow::is_arrow(data) {
            self.running()?;
            let batches = arrow::import_stream(data)?;
            return self.submit_job(py, move || {
                let mut items = Vec::new();
                for b in &batches {
                    items.extend(
                        arrow::batch_chunks(b, chunk)
                            .map_err(WorkError::Other)?
                            .into_iter()
                            .map(|c| Item::Input(DynInput::Columns(c))),
                    );
                }
                Ok(items)
            });
        }
        let Ok(dict) = data.cast::<PyDict>() else {
            return Err(errors::ConversionError::new_err(format!(
                "write_columns takes a dict of columns or an object with __arrow_c_stream__, not {}",
                data.get_type().qualname()?
            )));
        };
        let longest = dict
            .values()
            .iter()
            .map(|v| v.len().unwrap_or(0))
            .max()
            .unwrap_or(0);
        if longest <= INLINE_ROWS {
            let raw = convert::take_columns(dict, chunk, false).map_err(|e| e.into_pyerr(py))?;
            let items = py
                .detach(move || finish_columns(raw, chunk))
                .map_err(|e| e.into_pyerr(py))?;
            return self.submit(py, items);
        }
        let dict = dict.clone().unbind();
        self.submit_job(py, move || {
            let raw = Python::try_attach(|py| convert::take_columns(dict.bind(py), chunk, true))
                .unwrap_or_else(|| {
                    Err(PyConversion {
                        row: 0,
                        column: None,
                        value: String::new(),
                        reason: "the interpreter is shutting down".into(),
                    })
                })
                .map_err(WorkError::Conversion)?;
            finish_columns(raw, chunk).map_err(WorkError::Conversion)
        })
    }

    /// Queues rows (a list, tuple or iterable of dicts, as `write_many`) and sends them at
    /// once, sealed into a batch with whatever the engine holds, without waiting for the
    /// linger. Awaitable; resolves once every one of these rows is committed, or raises
    /// `DeadLettered` (its `rows` counts these rows only) when some were dead-lettered
    /// instead. Other rows are not waited for.
    fn write_acked<'py>(
        &self,
        py: Python<'py>,
        rows: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let r = self.running()?;
        let seq: Bound<'py, PyAny> =
            if rows.is_instance_of::<PyList>() || rows.is_instance_of::<PyTuple>() {
                rows.clone()
            } else {
                PyList::new(py, rows.try_iter()?.collect::<PyResult<Vec<_>>>()?)?.into_any()
            };
        let (on_error, chunk) = (self.on_error, self.chunk_rows);
        let payload = if seq.len()? <= INLINE_ROWS {
            let items = convert::convert_rows(
                seq.try_iter()?.filter_map(Result::ok),
                on_error,
                chunk,
                0,
                false,
            )
            .map_err(|e| e.into_pyerr(py))?;
            Payload::Ready(items)
        } else {
            let seq = seq.unbind();
            Payload::Pending(runtime::spawn_blocking(move || {
                convert_on_a_thread(seq, on_error, chunk)
            }))
        };
        let spool = self.config.spool.dir.clone();
        self.enqueue_work(py, &r, |tx| Work::Acked(payload, spool, tx))
    }

    /// Waits until every row written before is committed or dead-lettered. Raises
    /// `DeadLettered` when rows were dead-lettered since the previous flush. Awaitable.
    fn flush<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let r = match &*self.state.lock().expect("state") {
            State::Running(r) => r.clone(),
            State::Idle => return Ok(Bound::new(py, Ready)?.into_any()),
            _ => return Err(ClosedError::new_err("the inserter is closed")),
        };
        let (tx, rx) = oneshot::channel();
        r.backlog.fetch_add(1, SeqCst);
        if r.work.send(Work::Flush(tx)).is_err() {
            r.backlog.fetch_sub(1, SeqCst);
            return Err(ClosedError::new_err("the inserter is closed"));
        }
        runtime::future_into_py(py, async move {
            match rx.await {
                Ok(r) => r.map_err(errors::to_pyerr_attached),
                Err(_) => Err(ClosedError::new_err("the inserter is closed")),
            }
        })
    }

    /// Asks the engine to seal and send what it holds now, without waiting (the outcome
    /// shows in `stats()`, and dead letters are reported by the next `flush()` or `close()`).
    fn flush_nowait(&self) -> PyResult<()> {
        if let State::Running(r) = &*self.state.lock().expect("state") {
            r.backlog.fetch_add(1, SeqCst);
            if r.work.send(Work::Seal).is_err() {
                r.backlog.fetch_sub(1, SeqCst);
            }
        }
        Ok(())
    }

    /// Flushes, stops the engine and returns the final stats (a dict); raises `DeadLettered`
    /// when rows were dead-lettered since the last flush (the engine is closed all the same).
    /// Awaitable; a second call returns `None`.
    fn close<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let fut = self.close_future();
        runtime::future_into_py(py, async move {
            let Some(f) = fut else {
                return Ok(None);
            };
            match f.await? {
                Some((stats, spool)) => {
                    Python::attach(|py| Ok(Some(stats_dict(py, &stats, &spool)?.unbind())))
                }
                None => Ok(None),
            }
        })
    }

    /// A snapshot of the engine's counters (a dict).
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let stats = match &*self.state.lock().expect("state") {
            State::Running(r) => r.handle.stats(),
            State::Closed(Some(h)) => h.stats(),
            _ => Stats::default(),
        };
        stats_dict(py, &stats, &self.config.spool.dir)
    }

    /// The dead-letter spool directory.
    #[getter]
    fn dead_letter_dir(&self) -> String {
        self.config.spool.dir.display().to_string()
    }

    /// `database.table`.
    #[getter]
    fn target(&self) -> String {
        format!("{}.{}", self.config.clickhouse.database, self.config.table)
    }

    /// Rows per columnar piece handed to the engine.
    #[getter]
    fn chunk_rows(&self) -> usize {
        self.chunk_rows
    }

    /// Whether the engine runs (started and not closed).
    #[getter(running)]
    fn is_running(&self) -> bool {
        matches!(&*self.state.lock().expect("state"), State::Running(_))
    }

    /// Whether `close()` was called.
    #[getter]
    fn closed(&self) -> bool {
        matches!(&*self.state.lock().expect("state"), State::Closed(_))
    }

    fn __repr__(&self) -> String {
        let state = match &*self.state.lock().expect("state") {
            State::Idle => "idle",
            State::Starting => "starting",
            State::Running(_) => "running",
            State::Closed(_) => "closed",
        };
        format!(
            "<chasync.Inserter {}.{} {state}>",
            self.config.clickhouse.database, self.config.table
        )
    }
}

/// Rows (a list or tuple of dicts) converted on a blocking thread, attached to Python only
/// while it reads them.
fn convert_on_a_thread(seq: Py<PyAny>, on_error: OnError, chunk: usize) -> Converted {
    Python::try_attach(|py| {
        let seq = seq.bind(py);
        let iter = seq
            .try_iter()
            .map_err(|e| WorkError::Other(e.to_string()))?;
        convert::convert_rows(iter.filter_map(Result::ok), on_error, chunk, 0, true)
            .map_err(WorkError::Conversion)
    })
    .unwrap_or_else(|| Err(WorkError::Other("the interpreter is shutting down".into())))
}

/// Numpy buffers to typed columns, lengths checked, split into columnar pieces.
fn finish_columns(raw: Vec<(String, RawColumn)>, chunk: usize) -> Result<Vec<Item>, PyConversion> {
    let mut cols = Vec::with_capacity(raw.len());
    for (name, col) in raw {
        let pieces = match col {
            RawColumn::Pieces(p) => p,
            RawColumn::Numpy { dtype, bytes } => {
                let typed =
                    convert::numpy_column(&dtype, &bytes).map_err(|reason| PyConversion {
                        row: 0,
                        column: Some(name.clone()),
                        value: dtype.clone(),
                        reason,
                    })?;
                convert::pieces(ColumnData::Typed(typed), chunk)
            }
        };
        let rows: usize = pieces.iter().map(ColumnData::len).sum();
        cols.push((name, rows, pieces));
    }
    if let Some((first, n, _)) = cols.first()
        && let Some((name, other, _)) = cols.iter().find(|(_, rows, _)| rows != n)
    {
        return Err(PyConversion {
            row: 0,
            column: Some(name.clone()),
            value: String::new(),
            reason: format!("columns differ in length: `{first}` has {n} values, `{name}` {other}"),
        });
    }
    Ok(
        convert::zip_pieces(cols.into_iter().map(|(name, _, p)| (name, p)).collect())
            .into_iter()
            .map(|c| Item::Input(DynInput::Columns(c)))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::task::{Context, Waker};

    use tokio::sync::mpsc::{self, error::TrySendError};

    /// What the module's ordering rests on, and where it stops: tokio's bounded channel (the
    /// engine's queue) serves the senders that wait in order, and a later `try_send` does not
    /// take the slot a waiting sender is owed; but a sender has a place only once it has
    /// started waiting (see the module docs).
    #[test]
    fn a_later_try_send_does_not_overtake_a_waiting_send() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut cx = Context::from_waker(Waker::noop());
            let (tx, mut rx) = mpsc::channel::<u32>(1);
            tx.try_send(0).unwrap();
            let mut first = Box::pin(tx.send(1));
            let mut second = Box::pin(tx.send(2));
            assert!(first.as_mut().poll(&mut cx).is_pending(), "full: it waits");
            assert!(second.as_mut().poll(&mut cx).is_pending(), "full: it waits");
            assert_eq!(rx.recv().await, Some(0));
            // The freed slot is the first waiter's: try_send finds none, the second waits on.
            assert!(matches!(tx.try_send(3), Err(TrySendError::Full(3))));
            assert!(second.as_mut().poll(&mut cx).is_pending());
            assert!(first.as_mut().poll(&mut cx).is_ready());
            assert_eq!(rx.recv().await, Some(1));
            assert!(matches!(tx.try_send(3), Err(TrySendError::Full(3))));
            assert!(second.as_mut().poll(&mut cx).is_ready());
            assert_eq!(rx.recv().await, Some(2));
            // No one waits: room for whoever comes.
            tx.try_send(3).unwrap();
            // A send made but not yet polled (a task spawned, not yet run) has no place: a
            // later try_send takes the slot first.
            let mut late = Box::pin(tx.send(4));
            assert_eq!(rx.recv().await, Some(3));
            tx.try_send(5).unwrap();
            assert!(late.as_mut().poll(&mut cx).is_pending());
            assert_eq!(rx.recv().await, Some(5));
            assert!(late.as_mut().poll(&mut cx).is_ready());
            assert_eq!(rx.recv().await, Some(4));
        });
    }
}
