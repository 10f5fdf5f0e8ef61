//! The daemon's state: its streams, the engine's dispatcher and catalog, the ClickHouse it
//! passes requests through to, and the checks of clients' credentials.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use chasync_core::{Catalog, Dispatcher, Error as CoreError};
use http_body_util::BodyExt;

use crate::budget::{Budget, Held};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use uuid::Uuid;

use crate::config::Settings;
use crate::gateway::proxy::Upstream;
use crate::gateway::reply::{self, Body, ChError};
use crate::gateway::{self};
use crate::metrics::{self, Metrics, Sample};
use crate::stream::{Shape, Shared, Stream, StreamMeta};
use crate::wal::WalStats;

/// How long a successful check of a client's credentials and insert is trusted.
const CHECKED_FOR: Duration = Duration::from_secs(10);
/// How long it is trusted while ClickHouse cannot be reached to check again.
const CHECKED_FOR_IN_OUTAGE: Duration = Duration::from_secs(3600);

/// The running daemon.
pub struct App {
    /// Its configuration.
    pub settings: Settings,
    pub(crate) dispatcher: Arc<Dispatcher>,
    pub(crate) catalog: Arc<Catalog>,
    pub(crate) upstream: Upstream,
    streams: RwLock<HashMap<Shape, Arc<Stream>>>,
    creating: tokio::sync::Mutex<()>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) queue_bytes: Arc<AtomicU64>,
    pub(crate) wal: Arc<WalStats>,
    /// Request bodies in memory (`limits.max_body_bytes_in_flight`).
    pub(crate) bodies: Arc<Budget>,
    clients: Vec<clickhouse::Client>,
    /// Checks of inserts that passed, by what was checked, until when they are trusted.
    checked: Mutex<HashMap<String, Instant>>,
    /// Whether the last readiness check reached each endpoint.
    endpoint_up: Mutex<Vec<Option<bool>>>,
    /// One lock per check in progress.
    check_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// ClickHouse's version, for error bodies shaped like its own.
    version: Mutex<Option<String>>,
    /// The earliest time a batch recovered at this start can have been sent.
    recovered_since: Option<std::time::SystemTime>,
    /// The brokers consumed into tables (`[sources]`): their stop, and their tasks.
    sources: Mutex<
        Option<(
            tokio_util::sync::CancellationToken,
            tokio::task::JoinSet<()>,
        )>,
    >,
    /// Held (locked) while the daemon runs: one daemon per spool.
    _lock: std::fs::File,
}

impl App {
    /// Starts the engine and replays every stream found in the spool.
    pub async fn start(settings: Settings) -> Result<Arc<Self>, String> {
        let spool = settings.spool_dir().to_path_buf();
        std::fs::create_dir_all(spool.join("tables"))
            .map_err(|e| format!("cannot create the spool {}: {e}", spool.display()))?;
        let lock = std::fs::File::create(spool.join("lock"))
            .map_err(|e| format!("cannot create {}: {e}", spool.join("lock").display()))?;
        if lock.try_lock().is_err() {
            return Err(format!(
                "the spool {} is in use by another chasyncd (two daemons must never share a spool)",
                spool.display()
            ));
        }
        let recovered_since = running_since(&spool)?;
        let dispatcher = Dispatcher::start(&settings.engine).map_err(|e| e.to_string())?;
        let clients = settings
            .engine
            .clickhouse
            .url
            .iter()
            .map(|u| {
                let mut one = settings.engine.clone();
                one.clickhouse.url = vec![u.clone()];
                one.client()
            })
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string())?;
        let bodies = Budget::new(settings.limits.max_body_bytes_in_flight);
        let app = Arc::new(Self {
            catalog: Arc::new(Catalog::new(&settings.engine).map_err(|e| e.to_string())?),
            upstream: Upstream::new(
                &settings.engine.clickhouse.url,
                &settings.engine.tls,
                settings.engine.clickhouse.connect_timeout,
            )
            .map_err(|e| e.to_string())?,
            settings,
            dispatcher: Arc::new(dispatcher),
            streams: RwLock::new(HashMap::new()),
            creating: tokio::sync::Mutex::new(()),
            metrics: Arc::new(Metrics::default()),
            queue_bytes: Arc::new(AtomicU64::new(0)),
            wal: Arc::new(WalStats::default()),
            bodies,
            clients,
            checked: Mutex::new(HashMap::new()),
            check_locks: Mutex::new(HashMap::new()),
            endpoint_up: Mutex::new(Vec::new()),
            version: Mutex::new(None),
            recovered_since,
            sources: Mutex::new(None),
            _lock: lock,
        });
        // Settings the server refuses would dead-letter every batch: refused before any is
        // sent. A server that does not answer yet does not keep the daemon from starting.
        match app
            .catalog
            .check_settings(&app.settings.engine.clickhouse.settings)
            .await
        {
            Ok(()) => {}
            Err(e @ chasync_core::Error::Config(_)) => return Err(e.to_string()),
            Err(e) => tracing::warn!(
                error = %e.report(),
                "cannot check the ClickHouse settings now; inserts will be refused if the server refuses them"
            ),
        }
        let mut dirs = Vec::new();
        for table in std::fs::read_dir(spool.join("tables")).map_err(|e| e.to_string())? {
            let table = table.map_err(|e| e.to_string())?.path();
            let Ok(entries) = std::fs::read_dir(&table) else {
                continue;
            };
            for entry in entries.filter_map(Result::ok) {
                if entry.path().join("stream.json").exists() {
                    dirs.push(entry.path());
                }
            }
        }
        dirs.sort();
        for dir in dirs {
            let meta = StreamMeta::load(&dir)
                .map_err(|e| format!("{}: cannot read stream.json: {e}", dir.display()))?;
            let config = app
                .settings
                .config_for(&meta.shape.database, &meta.shape.table)?;
            let stream = Stream::open(dir.clone(), None, config, app.shared())
                .map_err(|e| format!("{}: cannot open the write-ahead log: {e}", dir.display()))?;
            app.streams
                .write()
                .unwrap()
                .insert(meta.shape.clone(), stream);
        }
        app.start_sources()?;
        Ok(app)
    }

    /// Starts the `[sources]`: each consumes its broker into its table through the daemon's
    /// dispatcher until the daemon stops.
    fn start_sources(&self) -> Result<(), String> {
        let sources = &self.settings.sources;
        #[cfg(not(feature = "kafka"))]
        if !sources.kafka.is_empty() {
            return Err(
                "[[sources.kafka]]: this chasyncd was built without the kafka feature".into(),
            );
        }
        #[cfg(not(feature = "nats"))]
        if !sources.nats.is_empty() {
            return Err(
                "[[sources.nats]]: this chasyncd was built without the nats feature".into(),
            );
        }
        let stop = tokio_util::sync::CancellationToken::new();
        #[cfg_attr(not(any(feature = "kafka", feature = "nats")), allow(unused_mut))]
        let mut tasks = tokio::task::JoinSet::new();
        #[cfg(feature = "kafka")]
        for k in &sources.kafka {
            let (db, t) = k.table.split_once('.').expect("checked by the settings");
            let config = self.settings.config_for(db, t)?;
            let mut opts =
                chasync_source::kafka::KafkaOptions::new(&k.brokers, &k.group, k.topics.clone());
            if let Some(f) = &k.format {
                opts.format = f.clone();
            }
            if let Some(d) = &k.session_timeout {
                opts.session_timeout = chasync_core::parse_duration(d)?;
            }
            if let Some(s) = &k.seal_table {
                opts.seal_table = s.clone();
            }
            opts.properties = k.properties.clone().into_iter().collect();
            let (dispatcher, stop, table) =
                (self.dispatcher.clone(), stop.clone(), k.table.clone());
            tasks.spawn(async move {
                if let Err(e) = chasync_source::kafka::run(opts, config, dispatcher, stop).await {
                    tracing::error!(table = %table, error = %e, "the kafka source stopped");
                }
            });
        }
        #[cfg(feature = "nats")]
        for n in &sources.nats {
            let (db, t) = n.table.split_once('.').expect("checked by the settings");
            let config = self.settings.config_for(db, t)?;
            let mut opts = chasync_source::nats::NatsOptions::new(
                n.url.as_deref().unwrap_or("nats://127.0.0.1:4222"),
                &n.stream,
                n.subjects.clone(),
                n.durable.as_deref().unwrap_or("chasync"),
            );
            if let Some(f) = &n.format {
                opts.format = f.clone();
            }
            if let Some(d) = &n.ack_wait {
                opts.ack_wait = chasync_core::parse_duration(d)?;
            }
            if let Some(s) = &n.seal_table {
                opts.seal_table = s.clone();
            }
            let (dispatcher, stop, table) =
                (self.dispatcher.clone(), stop.clone(), n.table.clone());
            tasks.spawn(async move {
                if let Err(e) = chasync_source::nats::run(opts, config, dispatcher, stop).await {
                    tracing::error!(table = %table, error = %e, "the nats source stopped");
                }
            });
        }
        *self.sources.lock().unwrap() = Some((stop, tasks));
        Ok(())
    }

    fn shared(&self) -> Shared {
        Shared {
            dispatcher: self.dispatcher.clone(),
            catalog: self.catalog.clone(),
            metrics: self.metrics.clone(),
            queue_bytes: self.queue_bytes.clone(),
            wal: self.wal.clone(),
            segment_bytes: self.settings.limits.segment_bytes,
            spool: self.settings.spool_dir().to_path_buf(),
            recovered_since: self.recovered_since,
        }
    }

    /// Stops every stream: seals what the batchers hold and waits for every batch, at most
    /// `limits.shutdown_timeout_s`. Returns whether everything ended.
    pub async fn shutdown(&self) -> bool {
        // The sources first: each finishes its open ranges (insert, commit) and stops.
        let sources = self.sources.lock().unwrap().take();
        if let Some((stop, tasks)) = sources {
            stop.cancel();
            let timeout = Duration::from_secs(self.settings.limits.shutdown_timeout_s);
            if tokio::time::timeout(timeout, tasks.join_all())
                .await
                .is_err()
            {
                tracing::warn!(
                    ?timeout,
                    "the sources did not stop in time; their open ranges are sealed and go again at the next start"
                );
            }
        }
        let streams: Vec<Arc<Stream>> = self
            .streams
            .write()
            .unwrap()
            .drain()
            .map(|(_, s)| s)
            .collect();
        let timeout = Duration::from_secs(self.settings.limits.shutdown_timeout_s);
        let drained = tokio::time::timeout(timeout, async {
            for s in &streams {
                s.drain().await;
            }
        })
        .await
        .is_ok();
        if !drained {
            tracing::warn!(
                ?timeout,
                "drain timed out: the rest stays in the write-ahead log and is sent at the next start"
            );
            return false;
        }
        let _ = self.dispatcher.flush().await;
        for s in streams {
            let _ = tokio::task::spawn_blocking(move || s.stop_writer()).await;
        }
        // Nothing is left in flight: the next start recovers no batch that was sent.
        let marker = self.settings.spool_dir().join(RUNNING);
        if let Err(e) = std::fs::remove_file(&marker)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %marker.display(), error = %e, "cannot remove the run marker");
        }
        true
    }

    /// The refusal of a body that does not fit in the budget of bodies in flight: 503, retry.
    pub(crate) fn bodies_full(&self) -> ChError {
        self.metrics.bodies_refused.fetch_add(1, Relaxed);
        ChError::new(
            202,
            format!(
                "chasyncd holds {} bytes of request bodies in memory, its limit \
                 (limits.max_body_bytes_in_flight); retry later",
                self.settings.limits.max_body_bytes_in_flight
            ),
        )
        .with_status(503)
        .with_retry_after(self.settings.limits.retry_after_s)
    }

    /// A metadata query on the first endpoint that answers.
    async fn on_any<T, F, Fut>(&self, f: F) -> Result<T, CoreError>
    where
        F: Fn(clickhouse::Client) -> Fut,
        Fut: std::future::Future<Output = Result<T, clickhouse::error::Error>>,
    {
        let mut last = CoreError::Config("no ClickHouse URL".into());
        let timeout = Duration::from_millis(self.settings.ready.timeout_ms);
        for c in &self.clients {
            match tokio::time::timeout(timeout, f(c.clone())).await {
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(e)) => {
                    let e = CoreError::from(e);
                    if matches!(e, CoreError::Server { .. }) {
                        return Err(e);
                    }
                    last = e;
                }
                Err(_) => last = CoreError::Timeout("metadata query".into()),
            }
        }
        Err(last)
    }

    /// ClickHouse's version, as its error bodies give it (read once; the daemon's own until
    /// ClickHouse answers).
    pub(crate) async fn version(&self) -> String {
        if let Some(v) = self.version.lock().unwrap().clone() {
            return v;
        }
        match self
            .on_any(|c| async move { c.query("SELECT version()").fetch_one::<String>().await })
            .await
        {
            Ok(v) => {
                *self.version.lock().unwrap() = Some(v.clone());
                v
            }
            Err(_) => format!("chasyncd {}", env!("CARGO_PKG_VERSION")),
        }
    }

    /// Whether a check (of credentials, grants, table, columns, format and settings) passed
    /// within [`CHECKED_FOR`], or within [`CHECKED_FOR_IN_OUTAGE`] while ClickHouse cannot be
    /// reached.
    pub(crate) fn checked_recently(&self, key: &str, outage: bool) -> bool {
        let within = if outage {
            CHECKED_FOR_IN_OUTAGE
        } else {
            CHECKED_FOR
        };
        let checked = self.checked.lock().unwrap();
        checked.get(key).is_some_and(|t| t.elapsed() < within)
    }

    /// The lock of the check `key`: concurrent requests that need the same check wait for
    /// one probe instead of each sending their own.
    pub(crate) fn check_lock(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.check_locks.lock().unwrap();
        if locks.len() > 10_000 {
            locks.retain(|_, l| Arc::strong_count(l) > 1);
        }
        locks.entry(key.to_string()).or_default().clone()
    }

    /// Remembers a check that passed.
    pub(crate) fn check_passed(&self, key: String) {
        let mut checked = self.checked.lock().unwrap();
        if checked.len() > 10_000 {
            checked.retain(|_, t| t.elapsed() < CHECKED_FOR_IN_OUTAGE);
        }
        checked.insert(key, Instant::now());
    }

    /// The running stream of `shape`, started (and its spool created) on first use.
    pub(crate) async fn stream(
        &self,
        shape: Shape,
        password: &str,
        insert_id: Option<String>,
    ) -> Result<Arc<Stream>, ChError> {
        if let Some(s) = self.streams.read().unwrap().get(&shape) {
            s.set_password(password);
            return Ok(s.clone());
        }
        let _guard = self.creating.lock().await;
        if let Some(s) = self.streams.read().unwrap().get(&shape) {
            return Ok(s.clone());
        }
        let config = self
            .settings
            .config_for(&shape.database, &shape.table)
            .map_err(|e| ChError::new(36, e))?;
        let meta = StreamMeta {
            shape: shape.clone(),
            stream_id: Uuid::new_v4(),
            password: password.to_string(),
            insert_id,
        };
        let dir = shape.dir(self.settings.spool_dir());
        let stream = Stream::open(dir, Some(meta), config, self.shared()).map_err(|e| {
            ChError::new(
                1002,
                format!(
                    "chasyncd cannot open the spool of {}.{}: {e}",
                    shape.database, shape.table
                ),
            )
        })?;
        tracing::info!(
            table = %format!("{}.{}", shape.database, shape.table),
            format = %shape.format,
            user = %shape.user,
            stream_id = %stream.meta().stream_id,
            "stream opened"
        );
        self.streams.write().unwrap().insert(shape, stream.clone());
        Ok(stream)
    }

    async fn ready(&self) -> Response<Body> {
        match crate::corrupt::unacknowledged(self.settings.spool_dir()) {
            Ok(open) if open.is_empty() => {}
            Ok(open) => {
                let mut text = format!(
                    "write-ahead log damage not acknowledged (see {}; acknowledge with `chasyncd --ack-corruption`):",
                    self.settings
                        .spool_dir()
                        .join(crate::corrupt::DIR)
                        .display()
                );
                for r in &open {
                    text.push('\n');
                    text.push_str(&r.summary());
                }
                return reply::text(StatusCode::SERVICE_UNAVAILABLE, text);
            }
            Err(e) => {
                return reply::text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("cannot read the write-ahead log damage reports: {e}"),
                );
            }
        }
        let delay = self.settings.ready.max_replica_delay_s;
        // Every endpoint's health, for /metrics.
        let timeout = Duration::from_millis(self.settings.ready.timeout_ms);
        let mut up = Vec::with_capacity(self.clients.len());
        for c in &self.clients {
            let ok = tokio::time::timeout(timeout, c.query("SELECT 1").fetch_one::<u8>())
                .await
                .is_ok_and(|r| r.is_ok());
            up.push(Some(ok));
        }
        *self.endpoint_up.lock().unwrap() = up;
        let result = self
            .on_any(|c| async move {
                c.query("SELECT 1").fetch_one::<u8>().await?;
                c.query(
                    "SELECT count() FROM system.replicas WHERE is_readonly OR absolute_delay > ?",
                )
                .bind(delay)
                .fetch_one::<u64>()
                .await
            })
            .await;
        // Tables whose inserts may land twice: ready all the same (nothing an orchestrator
        // can fix by waiting), and said in every answer.
        let mut detail = String::new();
        for g in self.dispatcher.guarantees() {
            if g.guarantee == chasync_core::Guarantee::AtLeastOnce {
                detail.push('\n');
                detail.push_str(&g.describe());
            }
        }
        match result {
            Ok(0) => reply::text(StatusCode::OK, format!("ready{detail}")),
            Ok(n) => reply::text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("{n} replica(s) read-only or more than {delay} s behind{detail}"),
            ),
            Err(e) => reply::text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("ClickHouse not reachable: {}{detail}", e.report()),
            ),
        }
    }

    fn metrics(&self) -> Response<Body> {
        let streams = self.streams.read().unwrap();
        let mut tables: std::collections::BTreeMap<String, [u64; 6]> = Default::default();
        for s in streams.values() {
            let e = tables
                .entry(format!("{}.{}", s.shape.database, s.shape.table))
                .or_default();
            let c = &s.counters;
            for (slot, v) in e.iter_mut().zip([
                &c.rows,
                &c.bytes,
                &c.committed_rows,
                &c.committed_bytes,
                &c.dead_rows,
                &c.dead_bytes,
            ]) {
                *slot += v.load(Relaxed);
            }
        }
        let text = metrics::render(
            &self.metrics,
            &Sample {
                engine: self.dispatcher.stats(),
                queue_bytes: self.queue_bytes.load(Relaxed),
                spool_bytes: self.wal.spool_bytes.load(Relaxed),
                fsyncs: self.wal.fsyncs.load(Relaxed),
                wal_records: self.wal.data_records.load(Relaxed),
                tables: tables
                    .iter()
                    .map(|(n, v)| metrics::TableSample {
                        name: n.as_str(),
                        accepted: (v[0], v[1]),
                        committed: (v[2], v[3]),
                        dead_lettered: (v[4], v[5]),
                    })
                    .collect(),
                endpoints: self
                    .settings
                    .engine
                    .clickhouse
                    .url
                    .iter()
                    .map(|u| chasync_core::redact_url(u).to_string())
                    .zip(
                        self.endpoint_up
                            .lock()
                            .unwrap()
                            .iter()
                            .copied()
                            .chain(std::iter::repeat(None)),
                    )
                    .collect(),
                damage_unacknowledged: crate::corrupt::unacknowledged(self.settings.spool_dir())
                    .map_or(0, |r| r.len() as u64),
                body_bytes_in_flight: self.bodies.used(),
                body_bytes_in_flight_max: self.bodies.limit(),
                header_read_timeout_s: self.settings.limits.header_read_timeout_s,
                body_read_timeout_s: self.settings.limits.body_read_timeout_s,
            },
        );
        let mut r = reply::text(StatusCode::OK, text);
        r.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static("text/plain; version=0.0.4"),
        );
        r
    }

    /// Answers one request.
    pub async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
    ) -> Result<Response<Body>, Infallible> {
        let started = Instant::now();
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let response = match (&method, path.as_str()) {
            (&Method::GET | &Method::HEAD, "/health") => reply::text(StatusCode::OK, "ok"),
            (&Method::GET | &Method::HEAD, "/ready") => self.ready().await,
            (&Method::GET | &Method::HEAD, "/metrics") => self.metrics(),
            (&Method::POST, p) if p.starts_with("/v1/tables/") => {
                let r = gateway::v1(&self, req).await;
                self.metrics.request(r.status().as_u16());
                r
            }
            (_, "/") => {
                let r = gateway::handle(&self, req).await;
                self.metrics.request(r.status().as_u16());
                r
            }
            // Everything else (`/ping`, `/replicas_status`, the play UI ...) is ClickHouse's.
            _ => gateway::pass_through(&self, req).await,
        };
        let status = response.status();
        if status.is_client_error() || status.is_server_error() {
            tracing::debug!(%method, %path, status = status.as_u16(), elapsed = ?started.elapsed(), "request refused");
        }
        Ok(response)
    }
}

/// The run marker in the spool: the start time (ms since the Unix epoch) of the oldest run of
/// chasyncd on this spool since the last one that stopped with everything drained.
const RUNNING: &str = "running";

/// The earliest time a batch recovered at this start can have been sent: a batch is sealed,
/// and sent, by a run; every run since the last clean stop started no earlier than the run
/// marker says. Without a marker (the spool is new, or the last run drained everything) there
/// is no batch to recover from an earlier run, and the marker is made for this one; a spool
/// of a version that kept no marker gives `None` (not known).
fn running_since(spool: &std::path::Path) -> Result<Option<std::time::SystemTime>, String> {
    let path = spool.join(RUNNING);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let ms: u64 = text
                .trim()
                .parse()
                .map_err(|e| format!("{}: not a run marker ({e}): remove it", path.display()))?;
            Ok(Some(std::time::UNIX_EPOCH + Duration::from_millis(ms)))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let now = std::time::SystemTime::now();
            let ms = now
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            let tmp = spool.join("running.tmp");
            let write = || -> std::io::Result<()> {
                let mut f = std::fs::File::create(&tmp)?;
                std::io::Write::write_all(&mut f, ms.to_string().as_bytes())?;
                f.sync_all()?;
                std::fs::rename(&tmp, &path)?;
                crate::wal::sync_dir(spool)
            };
            write().map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            // A spool that has tables but no marker was last run by a version that kept none.
            let tables = std::fs::read_dir(spool.join("tables"))
                .map(|mut d| d.next().is_some())
                .unwrap_or(false);
            Ok(if tables { None } else { Some(now) })
        }
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

/// A request's body, read whole, within the limits: at most `limits.max_body_bytes` (413
/// above, by `Content-Length` before reading or while reading), within
/// `limits.body_read_timeout_s` (408 after), its bytes taken from the budget of bodies in
/// flight first (503 with `Retry-After` when they do not fit: by `Content-Length` before any
/// byte is read). The budget is held until the returned [`Held`] is dropped.
pub(crate) async fn read_body(app: &App, body: Incoming) -> Result<(Bytes, Held), ChError> {
    use hyper::body::Body as _;
    let limits = &app.settings.limits;
    let limit = limits.max_body_bytes;
    let over = || {
        ChError::new(
            229,
            format!(
                "The request body is over chasyncd's limit of {limit} bytes (limits.max_body_bytes)"
            ),
        )
        .with_status(413)
    };
    let announced = body.size_hint().exact();
    if announced.is_some_and(|n| n > limit as u64) {
        return Err(over());
    }
    let mut held = app
        .bodies
        .take(announced.unwrap_or(0))
        .ok_or_else(|| app.bodies_full())?;
    // With a length, one buffer of that size, filled as the frames come. Without, the frames
    // as they come (no copy), joined once at the end: twice the bytes are taken from the
    // budget meanwhile, so that the join always fits.
    let mut whole = announced.map(|n| BytesMut::with_capacity(n as usize));
    let mut frames: Vec<Bytes> = Vec::new();
    let mut len = 0usize;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(limits.body_read_timeout_s);
    let mut body = body;
    loop {
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_) => {
                app.metrics.body_timeouts.fetch_add(1, Relaxed);
                return Err(ChError::new(
                    209,
                    format!(
                        "The request body did not arrive within {} s (limits.body_read_timeout_s)",
                        limits.body_read_timeout_s
                    ),
                )
                .with_status(408));
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                return Err(
                    ChError::new(1000, format!("Cannot read the request body: {e}"))
                        .with_status(400),
                );
            }
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        len += data.len();
        if len > limit {
            return Err(over());
        }
        match &mut whole {
            // More than announced is the framing's error (hyper stops at the length).
            Some(buf) if len <= buf.capacity() => buf.extend_from_slice(&data),
            Some(_) => return Err(over()),
            None => {
                if !held.grow_to(2 * len as u64) {
                    return Err(app.bodies_full());
                }
                frames.push(data);
            }
        }
    }
    if let Some(buf) = whole {
        return Ok((buf.freeze(), held));
    }
    let body = match frames.len() {
        0 => Bytes::new(),
        1 => frames.pop().expect("one frame"),
        _ => {
            let mut joined = BytesMut::with_capacity(len);
            for f in frames.drain(..) {
                joined.extend_from_slice(&f);
            }
            joined.freeze()
        }
    };
    held.shrink_to(len as u64);
    Ok((body, held))
}
