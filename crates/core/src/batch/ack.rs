//! Acknowledgements: a future that resolves when every batch holding a set of rows has ended.

use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::{AcqRel, Relaxed};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use crate::error::{Error, Result};

/// Shared state of one acknowledgement.
#[derive(Debug)]
pub(crate) struct AckState {
    /// Batches holding some of the rows that have not ended, plus one while rows are still
    /// being queued.
    pending: AtomicUsize,
    failure: Mutex<Option<Failure>>,
    done: Mutex<Option<oneshot::Sender<()>>>,
}

/// Resolves when the rows it covers are committed (`Ok`) or, for some of them, written to the
/// dead-letter spool (`Err(Error::DeadLettered)` with the count and the last error).
#[derive(Debug)]
pub struct Ack {
    state: Arc<AckState>,
    rx: oneshot::Receiver<()>,
}

/// Rows of an acknowledgement that were dead-lettered.
#[derive(Debug, Clone)]
pub(crate) struct Failure {
    /// How many.
    pub rows: u64,
    /// The last error.
    pub error: String,
    /// The ClickHouse error code of the last error, if the server gave one.
    pub code: Option<u32>,
    /// The spool they went to.
    pub spool: std::path::PathBuf,
}

/// An acknowledgement's share of a batch: the batch's units (rows, or whatever the batch
/// splits at) that hold its rows, and how many of its rows the encoder refused. A batch that is
/// split hands each half the spans of its units; each span is released once, by the part of
/// the batch that holds it, with that part's outcome.
#[derive(Debug, Clone)]
pub(crate) struct AckSpan {
    pub ack: Arc<AckState>,
    pub units: std::ops::Range<u32>,
    pub refused: u32,
}

impl AckState {
    /// A new acknowledgement with `pending` holds on it.
    pub(crate) fn new(pending: usize) -> (Arc<Self>, Ack) {
        let (tx, rx) = oneshot::channel();
        let state = Arc::new(Self {
            pending: AtomicUsize::new(pending),
            failure: Mutex::new(None),
            done: Mutex::new(Some(tx)),
        });
        (state.clone(), Ack { state, rx })
    }

    /// One more batch holds some of the rows.
    pub(crate) fn hold(&self) {
        self.pending.fetch_add(1, Relaxed);
    }

    /// Records that `new.rows` of the rows were dead-lettered (without ending a hold).
    pub(crate) fn fail(&self, new: Failure) {
        let mut f = self.failure.lock().unwrap();
        let rows = f.as_ref().map_or(0, |old| old.rows) + new.rows;
        *f = Some(Failure { rows, ..new });
    }

    /// A hold ended; `failed` rows of the rows it covered were dead-lettered.
    pub(crate) fn release(&self, failed: Option<Failure>) {
        if let Some(new) = failed {
            self.fail(new);
        }
        if self.pending.fetch_sub(1, AcqRel) == 1
            && let Some(tx) = self.done.lock().unwrap().take()
        {
            let _ = tx.send(());
        }
    }
}

impl Ack {
    /// Waits for the outcome.
    pub async fn wait(self) -> Result<()> {
        // A dropped sender means the engine stopped before the rows ended.
        self.rx.await.map_err(|_| Error::Closed)?;
        match self.state.failure.lock().unwrap().take() {
            None => Ok(()),
            Some(f) => Err(Error::DeadLettered {
                batches: 1,
                rows: f.rows,
                spool: f.spool,
                last_error: f.error,
                code: f.code,
            }),
        }
    }
}
