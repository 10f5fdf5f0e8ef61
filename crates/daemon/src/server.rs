//! The listener: accepts connections (plain HTTP, or HTTPS with [`ServerTls`]) until
//! shutdown, then lets open requests finish and drains the tables.
//!
//! Abusive clients are bounded here: a request's head must arrive within
//! `limits.header_read_timeout_s` (from the connection's start, or from the end of the
//! previous request on a kept-alive connection), and at most `limits.max_connections` are open
//! at once. A connection beyond that makes room by closing the connection that has been idle
//! (waiting for a request) the longest, so that idle or slow sockets cannot keep `/ping` and
//! `/health` out; when every connection is busy with a request, the new one is closed at once.
//! Bodies are bounded where they are read ([`crate::app`]).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::body::{Frame, SizeHint};
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::app::App;
use crate::gateway::reply::Body;
use crate::metrics::Metrics;
use crate::tls::ServerTls;

/// The longest a client may take over its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// File descriptors kept for everything but client connections (WAL segments, connections to
/// ClickHouse, the spool).
const FDS_KEPT: u64 = 64;

/// Raises the soft limit of open files to the hard one and returns the number of client
/// connections the daemon can hold: `configured`, or fewer (with a warning) when the limit of
/// open files is too low for it.
pub fn connection_cap(configured: usize) -> usize {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        let raised = Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        if setrlimit(Resource::Nofile, raised).is_ok() {
            limit = raised;
        }
    }
    let Some(fds) = limit.current else {
        return configured;
    };
    let room = fds.saturating_sub(FDS_KEPT).max(1) as usize;
    if room < configured {
        tracing::warn!(
            max_connections = configured,
            open_files = fds,
            using = room,
            "limits.max_connections is above what the limit of open files allows"
        );
        room
    } else {
        configured
    }
}

/// A connection in the table.
struct Entry {
    /// Requests in progress on it (head read, response not yet sent whole).
    busy: Arc<AtomicUsize>,
    /// When it last started or ended a request, ms since the table began.
    active: Arc<AtomicU64>,
    /// Closes it.
    close: Option<oneshot::Sender<()>>,
}

/// The open connections.
struct Connections {
    max: usize,
    started: Instant,
    next: u64,
    open: BTreeMap<u64, Entry>,
    metrics: Arc<Metrics>,
}

/// A connection's place in the table.
struct Slot {
    id: u64,
    busy: Arc<AtomicUsize>,
    active: Arc<AtomicU64>,
    closed: oneshot::Receiver<()>,
}

impl Connections {
    fn now(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// A place for a new connection: made by closing the connection idle the longest when the
    /// table is full; `None` when every connection is busy.
    fn admit(&mut self) -> Option<Slot> {
        if self.open.len() >= self.max {
            let idle = self
                .open
                .iter()
                .filter(|(_, e)| e.busy.load(Relaxed) == 0)
                .min_by_key(|(_, e)| e.active.load(Relaxed))
                .map(|(id, _)| *id);
            let Some(id) = idle else {
                self.metrics.connections_refused.fetch_add(1, Relaxed);
                return None;
            };
            if let Some(mut e) = self.open.remove(&id) {
                if let Some(close) = e.close.take() {
                    let _ = close.send(());
                }
                self.metrics.connections.fetch_sub(1, Relaxed);
                self.metrics.connections_evicted.fetch_add(1, Relaxed);
            }
        }
        let id = self.next;
        self.next += 1;
        let (close, closed) = oneshot::channel();
        let busy = Arc::new(AtomicUsize::new(0));
        let active = Arc::new(AtomicU64::new(self.now()));
        self.open.insert(
            id,
            Entry {
                busy: busy.clone(),
                active: active.clone(),
                close: Some(close),
            },
        );
        self.metrics.connections.fetch_add(1, Relaxed);
        Some(Slot {
            id,
            busy,
            active,
            closed,
        })
    }

    fn remove(&mut self, id: u64) {
        if self.open.remove(&id).is_some() {
            self.metrics.connections.fetch_sub(1, Relaxed);
        }
    }
}

/// Marks a connection busy from a request's head to the end of its response's body.
struct Busy {
    busy: Arc<AtomicUsize>,
    active: Arc<AtomicU64>,
    started: Instant,
}

impl Busy {
    fn enter(busy: &Arc<AtomicUsize>, active: &Arc<AtomicU64>, started: Instant) -> Self {
        busy.fetch_add(1, Relaxed);
        Self {
            busy: busy.clone(),
            active: active.clone(),
            started,
        }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.active
            .store(self.started.elapsed().as_millis() as u64, Relaxed);
        self.busy.fetch_sub(1, Relaxed);
    }
}

/// A response body that keeps its connection marked busy until it is sent whole.
struct Tracked {
    inner: Body,
    _busy: Busy,
}

impl hyper::body::Body for Tracked {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Serves one connection until it ends, times out reading a request's head, or is closed to
/// make room for another.
async fn drive(
    conn: impl Future<Output = Result<(), hyper::Error>>,
    slot_closed: oneshot::Receiver<()>,
    metrics: Arc<Metrics>,
) {
    tokio::select! {
        result = conn => {
            if let Err(e) = result
                && e.is_timeout()
            {
                metrics.header_timeouts.fetch_add(1, Relaxed);
            }
        }
        // Closed to make room for another.
        _ = slot_closed => {}
    }
}

/// Serves `listener` (with TLS when `tls` is given) until `shutdown` resolves; then closes
/// the listener, waits for the requests in progress, and drains every table. Returns whether
/// the drain completed.
pub async fn serve(
    app: Arc<App>,
    listener: TcpListener,
    tls: Option<Arc<ServerTls>>,
    shutdown: impl Future<Output = ()>,
) -> bool {
    let limits = &app.settings.limits;
    let started = Instant::now();
    let max = connection_cap(limits.max_connections);
    app.metrics.connections_max.store(max as u64, Relaxed);
    let table = Arc::new(Mutex::new(Connections {
        max,
        started,
        next: 0,
        open: BTreeMap::new(),
        metrics: app.metrics.clone(),
    }));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(limits.header_read_timeout_s));
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            conn = listener.accept() => {
                let stream = match conn {
                    Ok((s, _)) => s,
                    Err(e) => {
                        // E.g. out of file descriptors: wait a little rather than spin.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Some(slot) = table.lock().unwrap().admit() else {
                    // Every connection is busy with a request: this one is closed at once.
                    drop(stream);
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let metrics = app.metrics.clone();
                let app = app.clone();
                let (busy, active) = (slot.busy.clone(), slot.active.clone());
                let service = service_fn(move |req| {
                    let app = app.clone();
                    let guard = Busy::enter(&busy, &active, started);
                    async move {
                        let response = app.handle(req).await?;
                        Ok::<_, Infallible>(response.map(|inner| Tracked { inner, _busy: guard }))
                    }
                });
                let (table, watcher, http) = (table.clone(), graceful.watcher(), http.clone());
                let acceptor = tls.as_ref().map(|t| t.acceptor());
                tokio::spawn(async move {
                    match acceptor {
                        None => {
                            let conn = watcher.watch(http.serve_connection(TokioIo::new(stream), service));
                            drive(conn, slot.closed, metrics).await;
                        }
                        Some(acceptor) => {
                            // The handshake on the connection's own task: a slow client holds
                            // up no one else.
                            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                                Ok(Ok(s)) => Some(s),
                                Ok(Err(e)) => {
                                    tracing::debug!(error = %e, "TLS handshake failed");
                                    None
                                }
                                Err(_) => {
                                    tracing::debug!("TLS handshake timed out");
                                    None
                                }
                            };
                            if let Some(stream) = stream {
                                let conn = watcher.watch(http.serve_connection(TokioIo::new(stream), service));
                                drive(conn, slot.closed, metrics).await;
                            }
                        }
                    }
                    table.lock().unwrap().remove(slot.id);
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    tracing::info!("stopped accepting connections; finishing open requests");
    if tokio::time::timeout(Duration::from_secs(30), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("open requests did not finish within 30 s");
    }
    tracing::info!("draining: sealing and sending what is accepted");
    app.shutdown().await
}
