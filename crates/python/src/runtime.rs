//! The async runtime behind the module's awaitables, with every piece of work that may
//! attach to Python counted, so that interpreter exit can wait for it deterministically.
//!
//! It is pyo3-async-runtimes' tokio runtime ([`pyo3_async_runtimes::tokio::get_runtime`])
//! driven through the crate's generic [`future_into_py`](generic::future_into_py). The
//! only difference from `pyo3_async_runtimes::tokio::future_into_py` is bookkeeping: that
//! function hands each result to Python on a blocking thread that attaches to the
//! interpreter, and tokio does not count blocking work among a runtime's alive tasks. A
//! hand-over still attached when the interpreter finalizes ends its thread inside CPython
//! (`PyThread_exit_thread`), which crashes the process. Here each hand-over, and each
//! conversion job spawned with [`spawn_blocking`], is counted from before it is spawned
//! until its closure has returned (and so has left the interpreter), and
//! [`wait_until_idle`] waits for the count to reach zero.

use std::cell::OnceCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::{Duration, Instant};

use pyo3::prelude::*;
use pyo3_async_runtimes::TaskLocals;
use pyo3_async_runtimes::generic::{self, ContextExt, Runtime};

/// Blocking closures spawned and not yet returned.
static BLOCKING: AtomicUsize = AtomicUsize::new(0);

tokio::task_local! {
    static TASK_LOCALS: OnceCell<TaskLocals>;
}

/// Counts one blocking closure from its creation until it is dropped (after running, or
/// unrun when the runtime refuses it).
struct Counted;

impl Counted {
    fn new() -> Self {
        BLOCKING.fetch_add(1, SeqCst);
        Counted
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        BLOCKING.fetch_sub(1, SeqCst);
    }
}

/// Runs `f` on the runtime's blocking pool, counted (see the module docs).
pub fn spawn_blocking<F, R>(f: F) -> tokio::task::JoinHandle<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    let counted = Counted::new();
    pyo3_async_runtimes::tokio::get_runtime().spawn_blocking(move || {
        let _counted = counted;
        f()
    })
}

/// The tokio runtime of pyo3-async-runtimes, with its blocking work counted.
struct Tracked;

impl Runtime for Tracked {
    type JoinError = tokio::task::JoinError;
    type JoinHandle = tokio::task::JoinHandle<()>;

    fn spawn<F>(fut: F) -> Self::JoinHandle
    where
        F: Future<Output = ()> + Send + 'static,
    {
        pyo3_async_runtimes::tokio::get_runtime().spawn(fut)
    }

    fn spawn_blocking<F>(f: F) -> Self::JoinHandle
    where
        F: FnOnce() + Send + 'static,
    {
        spawn_blocking(f)
    }
}

impl ContextExt for Tracked {
    fn scope<F, R>(locals: TaskLocals, fut: F) -> Pin<Box<dyn Future<Output = R> + Send>>
    where
        F: Future<Output = R> + Send + 'static,
    {
        let cell = OnceCell::new();
        let _ = cell.set(locals);
        Box::pin(TASK_LOCALS.scope(cell, fut))
    }

    fn get_task_locals() -> Option<TaskLocals> {
        TASK_LOCALS
            .try_with(|c| c.get().cloned())
            .unwrap_or_default()
    }
}

/// A Python awaitable that resolves with `fut`'s output (as
/// `pyo3_async_runtimes::tokio::future_into_py`, with the hand-over counted), wrapped in a
/// [`crate::Pending`] so that `asyncio.create_task` takes it as a coroutine.
pub fn future_into_py<F, T>(py: Python<'_>, fut: F) -> PyResult<Bound<'_, PyAny>>
where
    F: Future<Output = PyResult<T>> + Send + 'static,
    T: for<'py> IntoPyObject<'py> + Send + 'static,
{
    crate::Pending::wrap(generic::future_into_py::<Tracked, F, T>(py, fut)?)
}

/// Waits, up to `limit`, until no task is alive on the runtime and no counted blocking
/// closure is left; true when that happened. Call without the GIL held: the work waited
/// for may need it to finish.
pub fn wait_until_idle(limit: Duration) -> bool {
    let runtime = pyo3_async_runtimes::tokio::get_runtime();
    let deadline = Instant::now() + limit;
    loop {
        // Tasks first: a task spawns its hand-over (counted at once) before it ends.
        if runtime.metrics().num_alive_tasks() == 0 && BLOCKING.load(SeqCst) == 0 {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocking_work_is_counted_until_it_returns() {
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let handle = spawn_blocking(move || {
            go_rx.recv().unwrap();
            7
        });
        assert!(!wait_until_idle(Duration::from_millis(50)));
        go_tx.send(()).unwrap();
        assert!(wait_until_idle(Duration::from_secs(10)));
        let out = pyo3_async_runtimes::tokio::get_runtime()
            .block_on(handle)
            .unwrap();
        assert_eq!(out, 7);
    }
}
