//! The daemon's state and its HTTP handlers.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chasync_core::{Catalog, Dispatcher, Error as CoreError};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use uuid::Uuid;

use crate::config::{AckMode, Settings};
use crate::metrics::{self, Metrics, Sample};
use crate::query;
use crate::table::{AppendError, Shared, Table, TableMeta, table_dir};
use crate::validate;
use crate::wal::WalStats;

/// An HTTP answer.
pub struct Reply {
    status: StatusCode,
    body: String,
    headers: Vec<(&'static str, String)>,
}

impl Reply {
    fn new(status: StatusCode, body: impl Into<String>) -> Self {
        let mut body = body.into();
        if !body.is_empty() && !body.ends_with('\n') {
            body.push('\n');
        }
        Self {
            status,
            body,
            headers: Vec::new(),
        }
    }

    fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    fn into_response(self) -> Response<Full<Bytes>> {
        let mut r = Response::new(Full::new(Bytes::from(self.body)));
        *r.status_mut() = self.status;
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=UTF-8"),
        );
        for (name, value) in self.headers {
            if let Ok(v) = HeaderValue::from_str(&value) {
                r.headers_mut().insert(name, v);
            }
        }
        r
    }
}

fn bad_request(msg: impl Into<String>) -> Reply {
    Reply::new(StatusCode::BAD_REQUEST, msg)
}

/// The running daemon.
pub struct App {
    /// Its configuration.
    pub settings: Settings,
    dispatcher: Arc<Dispatcher>,
    catalog: Arc<Catalog>,
    tables: RwLock<HashMap<(String, String), Arc<Table>>>,
    creating: tokio::sync::Mutex<()>,
    metrics: Arc<Metrics>,
    queue_bytes: Arc<AtomicU64>,
    wal: Arc<WalStats>,
    clients: Vec<clickhouse::Client>,
    /// Held (locked) while the daemon runs: one daemon per spool.
    _lock: std::fs::File,
}

impl App {
    /// Starts the engine and replays every table found in the spool.
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
            .collect();
        let app = Arc::new(Self {
            catalog: Arc::new(Catalog::new(&settings.engine)),
            settings,
            dispatcher: Arc::new(dispatcher),
            tables: RwLock::new(HashMap::new()),
            creating: tokio::sync::Mutex::new(()),
            metrics: Arc::new(Metrics::default()),
            queue_bytes: Arc::new(AtomicU64::new(0)),
            wal: Arc::new(WalStats::default()),
            clients,
            _lock: lock,
        });
        let mut dirs: Vec<_> = std::fs::read_dir(spool.join("tables"))
            .map_err(|e| e.to_string())?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.join("table.json").exists())
            .collect();
        dirs.sort();
        for dir in dirs {
            let meta = TableMeta::load(&dir)
                .map_err(|e| format!("{}: cannot read table.json: {e}", dir.display()))?;
            let config = app.settings.config_for(&meta.database, &meta.table)?;
            let table = Table::open(dir.clone(), None, config, app.shared())
                .map_err(|e| format!("{}: cannot open the write-ahead log: {e}", dir.display()))?;
            app.tables
                .write()
                .unwrap()
                .insert((meta.database, meta.table), table);
        }
        Ok(app)
    }

    fn shared(&self) -> Shared {
        Shared {
            dispatcher: self.dispatcher.clone(),
            catalog: self.catalog.clone(),
            metrics: self.metrics.clone(),
            queue_bytes: self.queue_bytes.clone(),
            wal: self.wal.clone(),
            segment_bytes: self.settings.limits.segment_bytes,
        }
    }

    /// Stops every table: seals what the batchers hold and waits for every batch, at most
    /// `limits.shutdown_timeout_s`. Returns whether everything ended.
    pub async fn shutdown(&self) -> bool {
        let tables: Vec<Arc<Table>> = self
            .tables
            .write()
            .unwrap()
            .drain()
            .map(|(_, t)| t)
            .collect();
        let timeout = Duration::from_secs(self.settings.limits.shutdown_timeout_s);
        let drained = tokio::time::timeout(timeout, async {
            for t in &tables {
                t.drain().await;
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
        for t in tables {
            let _ = tokio::task::spawn_blocking(move || t.stop_writer()).await;
        }
        true
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

    /// The table's schema (read again with `refresh`), or the reply that explains why there
    /// is none.
    async fn fetch_columns(
        &self,
        db: &str,
        t: &str,
        refresh: bool,
    ) -> Result<Arc<chasync_core::TableSchema>, Reply> {
        let read = if refresh {
            self.catalog.refresh(db, t).await
        } else {
            self.catalog.table(db, t).await
        };
        match read {
            Ok(schema) => return Ok(schema),
            Err(CoreError::UnknownTable { .. }) => {}
            Err(e) => return Err(unavailable(e)),
        }
        // Let the server say why (unknown table or database), in its own words.
        let sql = format!(
            "DESCRIBE TABLE {}.{}",
            chasync_core::quote_ident(db),
            chasync_core::quote_ident(t)
        );
        let err = self
            .on_any(|c| {
                let sql = sql.clone();
                async move { c.query(&sql).execute().await }
            })
            .await;
        Err(match err {
            Err(CoreError::Server {
                code,
                name,
                message,
            }) => Reply::new(
                StatusCode::NOT_FOUND,
                format!(
                    "Code: {code}. DB::Exception: {message}{}",
                    name.map(|n| format!(" ({n})")).unwrap_or_default()
                ),
            )
            .header("X-ClickHouse-Exception-Code", code.to_string()),
            Err(e) => unavailable(e),
            Ok(()) => Reply::new(
                StatusCode::NOT_FOUND,
                format!("table {db}.{t} has no columns the user can see"),
            ),
        })
    }

    /// The running table `db.t`, started (and its spool created) on first use.
    async fn table(&self, db: &str, t: &str) -> Result<Arc<Table>, Reply> {
        let key = (db.to_string(), t.to_string());
        if let Some(t) = self.tables.read().unwrap().get(&key) {
            return Ok(t.clone());
        }
        let _guard = self.creating.lock().await;
        if let Some(t) = self.tables.read().unwrap().get(&key) {
            return Ok(t.clone());
        }
        let schema = self.fetch_columns(db, t, false).await?;
        let insert_id = schema.insert_id().map(|_| {
            schema
                .column(chasync_core::INSERT_ID_COLUMN)
                .map(|c| c.type_name.clone())
                .unwrap_or_default()
        });
        let names: Vec<String> = schema.columns.iter().map(|c| c.name.clone()).collect();
        let meta = TableMeta {
            database: db.to_string(),
            table: t.to_string(),
            stream_id: Uuid::new_v4(),
            insert_id,
            columns: names.clone(),
        };
        let dir = table_dir(self.settings.spool_dir(), db, t);
        let config = self
            .settings
            .config_for(db, t)
            .map_err(|e| Reply::new(StatusCode::BAD_REQUEST, e))?;
        let table = Table::open(dir, Some(meta), config, self.shared()).map_err(|e| {
            Reply::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot open the spool of {db}.{t}: {e}"),
            )
        })?;
        table.set_columns(names);
        tracing::info!(table = %format!("{db}.{t}"), stream_id = %table.meta().stream_id, "table opened");
        self.tables.write().unwrap().insert(key, table.clone());
        Ok(table)
    }

    /// Refreshes the cached columns of a table (at most once a second).
    async fn refresh_columns(&self, table: &Table) -> Result<(), Reply> {
        let recent = table
            .schema
            .read()
            .unwrap()
            .fetched
            .is_some_and(|t| t.elapsed() < Duration::from_secs(1));
        if recent {
            return Ok(());
        }
        let schema = self
            .fetch_columns(&table.database, &table.table, true)
            .await?;
        table.set_columns(schema.columns.iter().map(|c| c.name.clone()).collect());
        Ok(())
    }

    fn authorized(&self, req: &Request<Incoming>) -> bool {
        let Some(token) = &self.settings.token else {
            return true;
        };
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        constant_time_eq(given.as_bytes(), token.expose().as_bytes())
    }

    async fn ingest(&self, req: Request<Incoming>, path_table: Option<String>) -> Reply {
        if !self.authorized(&req) {
            return Reply::new(StatusCode::UNAUTHORIZED, "missing or wrong bearer token")
                .header("WWW-Authenticate", "Bearer");
        }
        let max = self.settings.limits.max_body_bytes;
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > max as u64) {
            return Reply::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "body of {} bytes is over the limit of {max} bytes",
                    declared.unwrap()
                ),
            );
        }
        if let Some(enc) = req.headers().get(header::CONTENT_ENCODING)
            && enc.as_bytes() != b"identity"
        {
            return bad_request(format!(
                "Content-Encoding {} is not supported; send the body uncompressed",
                String::from_utf8_lossy(enc.as_bytes())
            ));
        }
        let params = query::query_params(req.uri().query().unwrap_or(""));
        let param = |name: &str| {
            params
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        let ack = match param("ack").map(str::parse::<AckMode>) {
            None => self.settings.ack,
            Some(Ok(a)) => a,
            Some(Err(e)) => return bad_request(e),
        };
        let default_db = param("database")
            .filter(|d| !d.is_empty())
            .unwrap_or("default")
            .to_string();
        let query_param = param("query").map(str::to_string);
        let body = match Limited::new(req.into_body(), max).collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => {
                return if e
                    .downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some()
                {
                    Reply::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        format!("body over the limit of {max} bytes"),
                    )
                } else {
                    bad_request(format!("cannot read the body: {e}"))
                };
            }
        };
        // Where the rows are, and which table they go to.
        let (db, t, data, first_line) = match (path_table, query_param) {
            (Some(name), _) => {
                let name = query::percent_decode(&name, false);
                let (db, t) = match name.split_once('.') {
                    Some((d, t)) => (d.to_string(), t.to_string()),
                    None => (default_db, name),
                };
                if db.is_empty() || t.is_empty() {
                    return bad_request("name the table as /v1/tables/{database}.{table}");
                }
                (db, t, body.clone(), 1)
            }
            (None, Some(q)) => {
                let ins = match query::parse_insert(&q) {
                    Ok(i) => i,
                    Err(e) => return bad_request(e),
                };
                if !q[ins.consumed..].trim().is_empty() {
                    return bad_request("put the rows in the body, not in the query parameter");
                }
                (
                    ins.database.unwrap_or(default_db),
                    ins.table,
                    body.clone(),
                    1,
                )
            }
            (None, None) => {
                // The query is the start of the body, as ClickHouse's HTTP interface allows.
                let head = &body[..body.len().min(64 * 1024)];
                let head = match std::str::from_utf8(head) {
                    Ok(s) => s,
                    Err(e) => std::str::from_utf8(&head[..e.valid_up_to()]).unwrap_or(""),
                };
                let ins = match query::parse_insert(head) {
                    Ok(i) => i,
                    Err(e) => return bad_request(e),
                };
                let first_line = 1 + head[..ins.consumed].matches('\n').count() as u64;
                (
                    ins.database.unwrap_or(default_db),
                    ins.table,
                    body.slice(ins.consumed..),
                    first_line,
                )
            }
        };
        let table = match self.table(&db, &t).await {
            Ok(t) => t,
            Err(r) => return r,
        };
        let rows = {
            let schema = table.schema.read().unwrap();
            validate::validate(
                &data,
                first_line,
                &schema.columns,
                table.insert_id.as_deref(),
            )
        };
        let mut rows = match rows {
            Ok(r) => r,
            Err(e) => return bad_request(format!("{e}")),
        };
        if !rows.unknown.is_empty() {
            // The table may have gained columns: look again, once.
            if let Err(r) = self.refresh_columns(&table).await {
                return r;
            }
            let schema = table.schema.read().unwrap();
            rows.unknown
                .retain(|k, _| !validate::Columns::has(&schema.columns, k));
        }
        if let Some((col, line)) = rows.unknown.iter().next() {
            return bad_request(format!(
                "line {line}: unknown column `{col}`: table {db}.{t} has no such column"
            ));
        }
        if let Some(line) = rows.insert_id_line {
            return bad_request(format!(
                "line {line}: rows must not carry `_insert_id`: chasyncd fills it with the batch id"
            ));
        }
        if rows.rows == 0 {
            return Reply::new(StatusCode::OK, "");
        }
        // Backpressure: bounded disk and memory.
        let len = rows.body.len() as u64;
        let limits = &self.settings.limits;
        let retry_after = limits.retry_after_s.to_string();
        if self.wal.spool_bytes.load(Relaxed) + len > limits.max_spool_bytes {
            return Reply::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the write-ahead log is full (ClickHouse is behind); retry later",
            )
            .header("Retry-After", retry_after);
        }
        if self.queue_bytes.fetch_add(len, Relaxed) + len > limits.max_queue_bytes {
            self.queue_bytes.fetch_sub(len, Relaxed);
            return Reply::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "too many rows waiting for the batchers; retry later",
            )
            .header("Retry-After", retry_after);
        }
        let range = match table.append(rows.body, rows.rows, len).await {
            Ok(r) => r,
            Err(e) => {
                self.queue_bytes.fetch_sub(len, Relaxed);
                return match e {
                    AppendError::Closed => {
                        Reply::new(StatusCode::SERVICE_UNAVAILABLE, "shutting down")
                            .header("Retry-After", retry_after)
                    }
                    AppendError::Io(e) => Reply::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!("cannot write the write-ahead log: {e}"),
                    ),
                };
            }
        };
        if ack == AckMode::Committed
            && let Err(e) = table.committed(range).await
        {
            return Reply::new(StatusCode::INTERNAL_SERVER_ERROR, e);
        }
        Reply::new(StatusCode::OK, "").header("X-Chasyncd-Rows", (range.1 - range.0).to_string())
    }

    async fn ready(&self) -> Reply {
        let delay = self.settings.ready.max_replica_delay_s;
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
        match result {
            Ok(0) => Reply::new(StatusCode::OK, "ready"),
            Ok(n) => Reply::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("{n} replica(s) read-only or more than {delay} s behind"),
            ),
            Err(e) => Reply::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("ClickHouse not reachable: {e}"),
            ),
        }
    }

    fn metrics(&self) -> Reply {
        let tables = self.tables.read().unwrap();
        let names: Vec<(String, u64, u64)> = tables
            .values()
            .map(|t| {
                (
                    format!("{}.{}", t.database, t.table),
                    t.counters.rows.load(Relaxed),
                    t.counters.bytes.load(Relaxed),
                )
            })
            .collect();
        let text = metrics::render(
            &self.metrics,
            &Sample {
                engine: self.dispatcher.stats(),
                queue_bytes: self.queue_bytes.load(Relaxed),
                spool_bytes: self.wal.spool_bytes.load(Relaxed),
                fsyncs: self.wal.fsyncs.load(Relaxed),
                wal_records: self.wal.data_records.load(Relaxed),
                tables: names.iter().map(|(n, r, b)| (n.as_str(), *r, *b)).collect(),
            },
        );
        Reply::new(StatusCode::OK, text).header("Content-Type", "text/plain; version=0.0.4")
    }

    /// Answers one request.
    pub async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
    ) -> Result<Response<Full<Bytes>>, Infallible> {
        let started = Instant::now();
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let reply = match (&method, path.as_str()) {
            (&Method::GET | &Method::HEAD, "/ping") => Reply::new(StatusCode::OK, "Ok."),
            (&Method::GET | &Method::HEAD, "/health") => Reply::new(StatusCode::OK, "ok"),
            (&Method::GET | &Method::HEAD, "/ready") => self.ready().await,
            (&Method::GET | &Method::HEAD, "/metrics") => self.metrics(),
            (&Method::GET | &Method::HEAD, "/") if req.uri().query().is_none() => {
                Reply::new(StatusCode::OK, "Ok.")
            }
            (&Method::POST, "/") => {
                let r = self.ingest(req, None).await;
                self.metrics.request(r.status.as_u16());
                r
            }
            (&Method::POST, p) if p.starts_with("/v1/tables/") => {
                let name = p["/v1/tables/".len()..].to_string();
                let r = self.ingest(req, Some(name)).await;
                self.metrics.request(r.status.as_u16());
                r
            }
            (_, "/" | "/ping" | "/health" | "/ready" | "/metrics") => {
                Reply::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
            }
            _ => Reply::new(StatusCode::NOT_FOUND, "not found"),
        };
        if reply.status.is_client_error() || reply.status.is_server_error() {
            tracing::debug!(%method, %path, status = reply.status.as_u16(), elapsed = ?started.elapsed(), error = %reply.body.trim_end(), "request refused");
        }
        Ok(reply.into_response())
    }
}

fn unavailable(e: CoreError) -> Reply {
    match e {
        CoreError::Server { .. } => Reply::new(StatusCode::BAD_GATEWAY, e.report()),
        e => Reply::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("ClickHouse not reachable: {}", e.report()),
        )
        .header("Retry-After", "1"),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
