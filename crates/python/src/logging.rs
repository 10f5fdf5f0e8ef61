//! The engine's `tracing` events, forwarded to Python's `logging` under the logger `chasync`.
//!
//! A `tracing` layer formats each enabled event (message and fields) and hands it to a
//! bounded channel; one forwarder thread takes the GIL for a moment per group of records and
//! calls `logging.getLogger("chasync").log(level, message)`. Engine threads never wait for
//! the GIL. The level threshold is `logging.getLogger("chasync").getEffectiveLevel()`, read
//! when the module loads, when an `Inserter` starts, by [`sync_log_level`], and by the
//! forwarder at least once a second. Each record carries `chasync_target` (the Rust module)
//! and `chasync_fields` (a dict of the event's fields).
//!
//! The forwarder stops taking the GIL when the interpreter exits ([`stop`], from the module's
//! `atexit` hook): a thread that takes the GIL while the interpreter finalizes makes the
//! process abort.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::PyDict;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::prelude::*;

/// Python's level numbers.
const DEBUG: u8 = 10;
const INFO: u8 = 20;
const WARNING: u8 = 30;
const ERROR: u8 = 40;

/// The lowest Python level forwarded now (51 = nothing).
static THRESHOLD: AtomicU8 = AtomicU8::new(WARNING);
/// Records dropped because the forwarder fell behind.
static DROPPED: AtomicU64 = AtomicU64::new(0);
static SENDER: OnceLock<SyncSender<Record>> = OnceLock::new();
/// Set at interpreter exit: the forwarder never takes the GIL again.
static STOPPED: AtomicBool = AtomicBool::new(false);
/// Held by the forwarder while it may take the GIL, so that the exit hook can wait for it.
static ATTACHING: Mutex<()> = Mutex::new(());

struct Record {
    level: u8,
    target: String,
    message: String,
    fields: Vec<(String, String)>,
}

fn py_level(level: &Level) -> u8 {
    match *level {
        Level::ERROR => ERROR,
        Level::WARN => WARNING,
        Level::INFO => INFO,
        // Python has no TRACE: both map to DEBUG (5 for trace keeps them apart).
        Level::DEBUG => DEBUG,
        Level::TRACE => 5,
    }
}

fn ours(meta: &Metadata<'_>) -> bool {
    meta.target().starts_with("chasync")
}

struct Forward;

#[derive(Default)]
struct Fields {
    message: String,
    fields: Vec<(String, String)>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            self.fields
                .push((field.name().to_owned(), value.to_owned()));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            self.fields
                .push((field.name().to_owned(), format!("{value:?}")));
        }
    }
}

impl<S: Subscriber> Layer<S> for Forward {
    fn register_callsite(&self, meta: &'static Metadata<'static>) -> tracing::subscriber::Interest {
        if ours(meta) {
            // The threshold changes at run time: ask per event.
            tracing::subscriber::Interest::sometimes()
        } else {
            tracing::subscriber::Interest::never()
        }
    }

    fn enabled(&self, meta: &Metadata<'_>, _ctx: Context<'_, S>) -> bool {
        ours(meta) && py_level(meta.level()) >= THRESHOLD.load(Relaxed)
    }

    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let meta = event.metadata();
        let mut f = Fields::default();
        event.record(&mut f);
        let mut message = f.message;
        for (k, v) in &f.fields {
            let _ = write!(message, " {k}={v}");
        }
        let record = Record {
            level: py_level(meta.level()),
            target: meta.target().to_owned(),
            message,
            fields: f.fields,
        };
        if let Some(tx) = SENDER.get()
            && let Err(TrySendError::Full(_)) = tx.try_send(record)
        {
            DROPPED.fetch_add(1, Relaxed);
        }
    }
}

fn read_threshold(py: Python<'_>) -> PyResult<u8> {
    let logger = py
        .import("logging")?
        .call_method1("getLogger", ("chasync",))?;
    let level: i64 = logger.call_method0("getEffectiveLevel")?.extract()?;
    let disabled: bool = logger
        .getattr("disabled")
        .and_then(|d| d.extract())
        .unwrap_or(false);
    Ok(if disabled {
        51
    } else {
        level.clamp(0, 51) as u8
    })
}

/// Reads the level of the `chasync` logger again (the forwarder also does this every second).
#[pyfunction]
pub fn sync_log_level(py: Python<'_>) -> PyResult<()> {
    THRESHOLD.store(read_threshold(py)?, Relaxed);
    Ok(())
}

fn emit(py: Python<'_>, records: Vec<Record>) -> PyResult<()> {
    let logger = py
        .import("logging")?
        .call_method1("getLogger", ("chasync",))?;
    let dropped = DROPPED.swap(0, Relaxed);
    if dropped > 0 {
        logger.call_method1(
            "log",
            (
                WARNING,
                format!("{dropped} chasync log records were dropped (the logger fell behind)"),
            ),
        )?;
    }
    for r in records {
        let extra = PyDict::new(py);
        extra.set_item("chasync_target", &r.target)?;
        let fields = PyDict::new(py);
        for (k, v) in &r.fields {
            fields.set_item(k, v)?;
        }
        extra.set_item("chasync_fields", fields)?;
        let kwargs = PyDict::new(py);
        kwargs.set_item("extra", extra)?;
        logger.call_method("log", (r.level, r.message), Some(&kwargs))?;
    }
    THRESHOLD.store(read_threshold(py)?, Relaxed);
    Ok(())
}

fn forward(rx: Receiver<Record>) {
    loop {
        let first = match rx.recv_timeout(Duration::from_secs(1)) {
            Ok(r) => Some(r),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let mut records: Vec<Record> = first.into_iter().collect();
        while records.len() < 1024 {
            match rx.try_recv() {
                Ok(r) => records.push(r),
                Err(_) => break,
            }
        }
        let _attaching = ATTACHING.lock().unwrap_or_else(|e| e.into_inner());
        if STOPPED.load(Relaxed) {
            return;
        }
        // None: the interpreter is shutting down; drop the records.
        let _ = Python::try_attach(|py| {
            if records.is_empty() {
                if let Ok(t) = read_threshold(py) {
                    THRESHOLD.store(t, Relaxed);
                }
            } else if let Err(e) = emit(py, records) {
                e.print(py);
            }
        });
    }
}

/// Stops the forwarder for good (at interpreter exit), waiting until it is not taking the
/// GIL. Call without the GIL held.
pub fn stop() {
    STOPPED.store(true, Relaxed);
    drop(ATTACHING.lock().unwrap_or_else(|e| e.into_inner()));
}

/// Installs the forwarding layer as the global `tracing` subscriber (once; if the host
/// process already set one, chasync's events go there instead).
pub fn install(py: Python<'_>) {
    if SENDER.get().is_some() {
        return;
    }
    if let Ok(t) = read_threshold(py) {
        THRESHOLD.store(t, Relaxed);
    }
    let (tx, rx) = sync_channel::<Record>(10_000);
    if SENDER.set(tx).is_err() {
        return;
    }
    let subscriber = tracing_subscriber::registry().with(Forward);
    if tracing::subscriber::set_global_default(subscriber).is_ok() {
        let _ = std::thread::Builder::new()
            .name("chasync-logging".into())
            .spawn(move || forward(rx));
    }
}
