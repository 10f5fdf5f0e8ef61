//! The ClickHouse HTTP interface, as chasyncd serves it: an `INSERT` it can batch is checked
//! against ClickHouse as the client's own user, framed, written to its stream's write-ahead log
//! and acknowledged; everything else passes through to ClickHouse unchanged.
//!
//! The flow of one request to `/`:
//!
//! 1. The body is read (bounded) and decoded: `Content-Encoding` (gzip, deflate, br, xz, zstd,
//!    lz4), then ClickHouse's own block framing (`decompress=1`).
//! 2. The statement is found as ClickHouse finds it: the `query` parameter, a newline, the
//!    body ([`sql::classify`]). Anything but an `INSERT ... FORMAT`/`VALUES` into a table (a
//!    query, `INSERT ... SELECT`, `INSERT INTO FUNCTION`) passes through.
//! 3. The insert is checked against ClickHouse as the client's user, credentials, grant, table,
//!    columns, format and settings at once: an insert of no rows (cached a few seconds). A
//!    refusal is ClickHouse's own answer.
//! 4. The body is framed ([`chasync_core::frame`]): header split off, rows counted, checked as
//!    far as cheap.
//! 5. It is appended to the stream of its shape (table, columns, format, header, settings,
//!    user) and acknowledged once durable, or once committed with `ack=committed`.

pub mod auth;
pub mod decode;
pub mod params;
pub mod proxy;
pub mod reply;
pub mod sql;

use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use chasync_core::{
    ColumnType, DefaultKind, FormatFamily, FormatInfo, FrameError, FrameTable, Framed, Joint,
    TableSchema,
};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};

use crate::app::{App, read_body};
use crate::budget::Held;
use crate::config::AckMode;
use crate::gateway::auth::ClientAuth;
use crate::gateway::params::Params;
use crate::gateway::reply::{Body, ChError};
use crate::gateway::sql::{Classified, InsertStatement};
use crate::stream::{AppendError, Claim, KeyEntry, KeyState, Shape, hex};

/// Whether the request passes the daemon's own bearer token, when it has one: in
/// `Authorization: Bearer`, or in `X-Chasyncd-Token` (for clients whose `Authorization` carries
/// their ClickHouse credentials).
fn gate(app: &App, headers: &hyper::HeaderMap) -> bool {
    let Some(token) = &app.settings.token else {
        return true;
    };
    let given = headers
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .or_else(|| {
            headers
                .get("X-Chasyncd-Token")
                .and_then(|v| v.to_str().ok())
        })
        .unwrap_or("");
    constant_time_eq(given.trim().as_bytes(), token.expose().as_bytes())
}

fn refused_by_gate() -> Response<Body> {
    let mut r = reply::text(StatusCode::UNAUTHORIZED, "missing or wrong bearer token");
    r.headers_mut()
        .insert("WWW-Authenticate", HeaderValue::from_static("Bearer"));
    r
}

/// A request for ClickHouse itself: passed through as it is.
pub async fn pass_through(app: &App, req: Request<Incoming>) -> Response<Body> {
    if req.uri().path() != "/ping" && !gate(app, req.headers()) {
        return refused_by_gate();
    }
    let (parts, body) = req.into_parts();
    match app.upstream.forward_stream(&parts, body).await {
        Ok(r) => r,
        Err(e) => e.response(&app.version().await, None),
    }
}

/// `POST /v1/tables/{db}.{table}`: a JSONEachRow body into a table, as
/// `INSERT INTO db.table FORMAT JSONEachRow` would.
pub async fn v1(app: &App, req: Request<Incoming>) -> Response<Body> {
    let (mut parts, body) = req.into_parts();
    let name = parts.uri.path()["/v1/tables/".len()..].to_string();
    let name = String::from_utf8_lossy(&params::percent_decode(&name)).into_owned();
    let params = Params::parse(parts.uri.query().unwrap_or(""));
    let (db, table) = match name.split_once('.') {
        Some((d, t)) => (d.to_string(), t.to_string()),
        None => (
            params.get("database").unwrap_or_else(|| "default".into()),
            name,
        ),
    };
    let version = app.version().await;
    if db.is_empty() || table.is_empty() {
        return ChError::new(62, "name the table as /v1/tables/{database}.{table}")
            .response(&version, None);
    }
    let statement = format!(
        "INSERT INTO {}.{} FORMAT JSONEachRow",
        sql::quote_identifier(&db),
        sql::quote_identifier(&table)
    );
    let mut query = parts.uri.query().unwrap_or("").to_string();
    if !query.is_empty() {
        query.push('&');
    }
    query.push_str("query=");
    query.push_str(&encode_component(&statement));
    parts.uri = match format!("/?{query}").parse() {
        Ok(u) => u,
        Err(e) => return ChError::new(36, e.to_string()).response(&version, None),
    };
    handle(app, Request::from_parts(parts, body)).await
}

/// A request to `/`: an insert the gateway batches, or a request passed through.
pub async fn handle(app: &App, req: Request<Incoming>) -> Response<Body> {
    let started = Instant::now();
    let (parts, body) = req.into_parts();
    let version = app.version().await;
    let params = Params::parse(parts.uri.query().unwrap_or(""));
    let query_id = params
        .get("query_id")
        .filter(|q| !q.is_empty())
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let fail = |e: ChError| e.response(&version, Some(&query_id));
    if !gate(app, &parts.headers) {
        return refused_by_gate();
    }
    let query = params.bytes("query").map(<[u8]>::to_vec);
    let pairs: Vec<(String, String)> = params
        .0
        .iter()
        .map(|(k, v)| (k.clone(), String::from_utf8_lossy(v).into_owned()))
        .collect();
    let lookup = sql::param_lookup(&pairs);
    // Most statements are decided by the query parameter alone: a query is passed through
    // with its body streamed, unread; the body is read only when the statement or an
    // insert's data is in it.
    let first = sql::classify(
        query.as_deref(),
        b"",
        hyper::body::Body::is_end_stream(&body),
        &lookup,
    );
    match first {
        Classified::NeedMore | Classified::Insert(_) => {}
        Classified::Error(e) => {
            return fail(ChError::new(e.code, e.message).with_status(e.http_status));
        }
        _ => {
            return match app.upstream.forward_stream(&parts, body).await {
                Ok(r) => r,
                Err(e) => fail(e),
            };
        }
    }
    let (raw, mut held) = match read_body(app, body).await {
        Ok(b) => b,
        Err(e) => return fail(e),
    };
    let encoding = parts
        .headers
        .get(hyper::header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok());
    let framed = params.get("decompress").is_some_and(|d| d == "1");
    // What decoding allocates comes out of the budget of bodies in flight too.
    let read = held.bytes();
    let limit = decode_budget(
        &mut held,
        encoding,
        framed,
        app.settings.limits.max_body_bytes,
    );
    let decoded = match decode::decode_body(encoding, framed, &raw, limit) {
        Ok(std::borrow::Cow::Borrowed(_)) => raw.clone(),
        Ok(std::borrow::Cow::Owned(d)) => {
            held.shrink_to(read + d.capacity() as u64);
            Bytes::from(d)
        }
        Err(e) if e.status == 413 && limit < app.settings.limits.max_body_bytes => {
            return fail(app.bodies_full());
        }
        Err(e) => {
            return fail(ChError::new(e.code, e.message).with_status(e.status));
        }
    };
    let classified = match first {
        Classified::NeedMore => sql::classify(query.as_deref(), &decoded, true, &lookup),
        other => other,
    };
    match classified {
        Classified::Insert(statement) => {
            let request = Insert {
                app,
                headers: &parts.headers,
                params: &params,
                query: query.as_deref().unwrap_or(b""),
                statement,
                query_id: &query_id,
                version: &version,
                started,
            };
            match request.run(decoded, held).await {
                Ok(r) => r,
                Err(e) => e,
            }
        }
        Classified::Error(e) => fail(ChError::new(e.code, e.message).with_status(e.http_status)),
        _ => match app.upstream.forward(&parts, raw).await {
            Ok(r) => r,
            Err(e) => fail(e),
        },
    }
}

/// Takes what decoding a body may allocate from the budget of bodies in flight (nothing when
/// the body is used as it is) and returns the decoded-size limit that fits: `max_body_bytes`,
/// or less when the budget is short (a body over it is then refused with 503, not 413).
fn decode_budget(
    held: &mut Held,
    encoding: Option<&str>,
    framed: bool,
    max_body_bytes: usize,
) -> usize {
    let encoded = encoding
        .is_some_and(|e| !e.trim().is_empty() && !e.trim().eq_ignore_ascii_case("identity"));
    if !encoded && !framed {
        return max_body_bytes;
    }
    // Both: the decoded encoding (up to `framed_limit`) and the blocks decoded from it.
    let cost = |limit: usize| {
        if encoded && framed {
            limit.saturating_add(decode::framed_limit(limit))
        } else {
            limit
        }
    };
    let got = held.take_up_to(cost(max_body_bytes) as u64) as usize;
    if got >= cost(max_body_bytes) {
        max_body_bytes
    } else if encoded && framed {
        got.saturating_sub(64 << 10) / 3
    } else {
        got
    }
}

/// The code of an insert refused for now because chasyncd is full (ClickHouse's
/// `TOO_MANY_SIMULTANEOUS_QUERIES`, which clients treat as "retry later").
const TOO_BUSY: u32 = 202;

/// One insert the gateway takes.
struct Insert<'a> {
    app: &'a App,
    headers: &'a hyper::HeaderMap,
    params: &'a Params,
    query: &'a [u8],
    statement: InsertStatement,
    query_id: &'a str,
    version: &'a str,
    started: Instant,
}

impl Insert<'_> {
    fn fail(&self, e: ChError) -> Response<Body> {
        e.response(self.version, Some(self.query_id))
    }

    async fn run(self, decoded: Bytes, held: Held) -> Result<Response<Body>, Response<Body>> {
        let st = &self.statement;
        let info = st
            .format
            .info()
            .map_err(|e| self.fail(ChError::new(e.code, e.message).with_status(e.http_status)))?;
        if info.family == FormatFamily::OutputOnly {
            return Err(self.fail(ChError::new(
                85,
                format!("Format {} is not suitable for input", info.name),
            )));
        }
        let database = st
            .database
            .clone()
            .or_else(|| {
                self.headers
                    .get("X-ClickHouse-Database")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
            })
            .or_else(|| self.params.get("database"))
            .filter(|d| !d.is_empty())
            .unwrap_or_else(|| "default".into());
        let ack = match self.params.get("ack") {
            None => self.app.settings.ack,
            Some(a) => a
                .parse::<AckMode>()
                .map_err(|e| self.fail(ChError::new(36, e)))?,
        };
        let auth = auth::credentials(
            self.headers,
            &|n| self.params.get(n),
            self.app.settings.token.as_ref().map(|t| t.expose()),
        )
        .map_err(|e| self.fail(e))?;
        let settings = self.settings();
        self.check(&auth, &database, info, &settings).await?;
        // The table as the daemon sees it, for checking the rows (not needed: the server checks
        // them at the insert).
        let schema = self.app.catalog.table(&database, &st.table).await.ok();
        let data = {
            let prefix = st.data.prefix(self.query);
            let rest = decoded.slice(st.data.body_offset().min(decoded.len())..);
            if prefix.is_empty() {
                rest
            } else {
                let mut b = BytesMut::with_capacity(prefix.len() + rest.len());
                b.extend_from_slice(&prefix);
                b.extend_from_slice(&rest);
                b.freeze()
            }
        };
        let fill_insert_id = self.app.settings.engine.delivery.fill_insert_id
            && info.name == "JSONEachRow"
            && st.columns.is_none();
        let insert_id = schema
            .as_ref()
            .filter(|_| fill_insert_id)
            .and_then(|s| s.insert_id())
            .and_then(|col| {
                schema
                    .as_ref()?
                    .column(&col.name)
                    .map(|c| c.type_name.clone())
            });
        let skip_unknown = settings
            .iter()
            .any(|(k, v)| k == "input_format_skip_unknown_fields" && v != "0");
        let reserved = insert_id.as_ref().map(|_| chasync_core::INSERT_ID_COLUMN);
        let framed = match frame_with(info, &data, schema.as_deref(), st, skip_unknown, reserved) {
            // A key the cached schema does not know: the table may have changed since.
            Err(e) if e.code == FrameError::UNKNOWN_FIELD && schema.is_some() => {
                let fresh = self.app.catalog.refresh(&database, &st.table).await.ok();
                frame_with(info, &data, fresh.as_deref(), st, skip_unknown, reserved)
            }
            other => other,
        }
        .map_err(|e| self.fail(e))?;
        if framed.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(reply::inserted(0, 0, self.query_id, self.elapsed()));
        }
        let shape = Shape {
            database,
            table: st.table.clone(),
            columns: st.columns.clone(),
            format: info.name.to_string(),
            header: hex(&framed.header),
            newline_joint: info.joint == Joint::Newline,
            whole: framed.whole,
            settings,
            user: auth.user.clone(),
        };
        let stream = self
            .app
            .stream(shape, &auth.password, insert_id)
            .await
            .map_err(|e| self.fail(e))?;
        let (rows, len) = (framed.rows, framed.body.len() as u64);
        // A retry of a request with the same insert_deduplication_token is answered with what
        // became of the first one, not appended again.
        let key = match self.retry_key() {
            None => None,
            Some(key) => match stream.claim(key, rows) {
                Claim::New(entry) => Some(entry),
                Claim::Seen(entry) => {
                    self.app.metrics.retries_answered.fetch_add(1, Relaxed);
                    return self.answer_retry(&entry, ack).await;
                }
            },
        };
        if let Err(why) = self.admit(len) {
            if let Some(entry) = &key {
                stream.unclaim(entry);
            }
            return Err(self.busy(TOO_BUSY, why));
        }
        let (outcome, waiter) = match ack {
            AckMode::Committed if key.is_none() => {
                let (tx, rx) = tokio::sync::oneshot::channel();
                (Some(tx), Some(rx))
            }
            _ => (None, None),
        };
        let appended = stream
            .append(framed.body, rows, len, outcome, key.as_ref())
            .await;
        // The body is in the WAL (and counted in the queue) or refused: out of the budget.
        drop(held);
        if let Err(e) = appended {
            self.app.queue_bytes.fetch_sub(len, Relaxed);
            if let Some(entry) = &key {
                stream.unclaim(entry);
            }
            return Err(self.fail(match e {
                AppendError::Closed => {
                    ChError::new(1002, "chasyncd is shutting down; retry").with_status(503)
                }
                AppendError::Io(e) => ChError::new(
                    1002,
                    format!("chasyncd cannot write its write-ahead log: {e}"),
                ),
            }));
        }
        if let (Some(entry), AckMode::Committed) = (&key, ack) {
            return self.answer_retry(entry, ack).await;
        }
        if let Some(waiter) = waiter {
            match waiter.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(self.fail(reply::committed_error(e))),
                Err(_) => {
                    return Err(self.fail(
                        ChError::new(
                            1002,
                            "chasyncd stopped before the rows were committed; they are in its \
                             write-ahead log and are sent at its next start",
                        )
                        .with_status(503),
                    ));
                }
            }
        }
        Ok(reply::inserted(
            u64::from(rows),
            len,
            self.query_id,
            self.elapsed(),
        ))
    }

    /// The request's retry key: its `insert_deduplication_token` (in the URL or the
    /// statement's `SETTINGS`, which wins).
    fn retry_key(&self) -> Option<Bytes> {
        let name = "insert_deduplication_token";
        self.statement
            .settings
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| Bytes::copy_from_slice(v.as_bytes()))
            .or_else(|| self.params.bytes(name).map(Bytes::copy_from_slice))
            .filter(|k| !k.is_empty())
    }

    /// The answer to a request whose key was seen (or to a keyed request that waits for its
    /// commit): its rows' fate, once known (`ack=committed`), or that they are durable.
    async fn answer_retry(
        &self,
        entry: &KeyEntry,
        ack: AckMode,
    ) -> Result<Response<Body>, Response<Body>> {
        let state = entry.state.borrow().clone();
        let outcome = match (state, ack) {
            (KeyState::Ended(o), _) => Some(o),
            (_, AckMode::Durable) => None,
            (_, AckMode::Committed) => match entry.ended().await {
                Some(o) => Some(o),
                None => {
                    return Err(self.fail(
                        ChError::new(
                            1002,
                            "chasyncd stopped before the rows were committed; they are in its \
                             write-ahead log and are sent at its next start",
                        )
                        .with_status(503),
                    ));
                }
            },
        };
        match outcome {
            Some(o) if o.code != 0 => Err(self.fail(ChError {
                code: o.code,
                message: o.message,
                status: o.status,
                retry_after: None,
            })),
            _ => Ok(reply::inserted(
                u64::from(entry.rows),
                0,
                self.query_id,
                self.elapsed(),
            )),
        }
    }

    fn elapsed(&self) -> u128 {
        self.started.elapsed().as_nanos()
    }

    /// The settings of the insert: the URL's and the statement's (which win), sorted, but the
    /// engine's own.
    fn settings(&self) -> Vec<(String, String)> {
        let mut settings = self.params.settings();
        for (k, v) in &self.statement.settings {
            if params::ENGINE_OWNED.contains(&k.as_str()) {
                continue;
            }
            match settings.iter_mut().find(|(name, _)| name == k) {
                Some(e) => e.1 = v.clone(),
                None => settings.push((k.clone(), v.clone())),
            }
        }
        settings.sort();
        settings
    }

    /// Backpressure: bounded disk and memory. `Err` is why the insert must wait.
    fn admit(&self, len: u64) -> Result<(), &'static str> {
        let limits = &self.app.settings.limits;
        if self.app.wal.spool_bytes.load(Relaxed) + len > limits.max_spool_bytes {
            return Err("the write-ahead log is full (ClickHouse is behind); retry later");
        }
        if self.app.queue_bytes.fetch_add(len, Relaxed) + len > limits.max_queue_bytes {
            self.app.queue_bytes.fetch_sub(len, Relaxed);
            return Err("too many rows waiting for the batchers; retry later");
        }
        Ok(())
    }

    /// The answer to an insert that must wait: 503 with `Retry-After`.
    fn busy(&self, code: u32, why: &str) -> Response<Body> {
        let mut r = self.fail(ChError::new(code, why).with_status(503));
        r.headers_mut().insert(
            "Retry-After",
            HeaderValue::from(self.app.settings.limits.retry_after_s),
        );
        r
    }

    /// Checks the insert against ClickHouse as the client's user: an insert of no rows with
    /// the same table, columns, format and settings (no part is written). A refusal is
    /// ClickHouse's own answer, passed on. A check that passed is trusted a few seconds; while
    /// ClickHouse cannot be reached, one that passed within the hour is (so that the daemon
    /// goes on taking what it can keep durably).
    async fn check(
        &self,
        auth: &ClientAuth,
        database: &str,
        info: &FormatInfo,
        settings: &[(String, String)],
    ) -> Result<(), Response<Body>> {
        let st = &self.statement;
        // An empty body in the insert's own format, where the format reads one as no rows
        // (formats with a header want the header: Native stands in for them).
        let probe_format = match info.family {
            FormatFamily::Rows | FormatFamily::Blocks => info.name,
            _ => "Native",
        };
        let mut statement = format!(
            "INSERT INTO {}.{}",
            sql::quote_identifier(database),
            sql::quote_identifier(&st.table)
        );
        if let Some(cols) = &st.columns {
            let cols: Vec<String> = cols.iter().map(|c| sql::quote_identifier(c)).collect();
            statement.push_str(&format!(" ({})", cols.join(", ")));
        }
        statement.push_str(" FORMAT ");
        statement.push_str(probe_format);
        let mut query = format!("/?query={}", encode_component(&statement));
        for (k, v) in settings {
            query.push_str(&format!("&{}={}", encode_component(k), encode_component(v)));
        }
        let key = format!("{}\0{:x}\0{query}", auth.user, {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            auth.password.hash(&mut h);
            h.finish()
        });
        if self.app.checked_recently(&key, false) {
            return Ok(());
        }
        let lock = self.app.check_lock(&key);
        let _one_probe = lock.lock().await;
        if self.app.checked_recently(&key, false) {
            return Ok(());
        }
        let headers = [
            (
                HeaderName::from_static("x-clickhouse-user"),
                HeaderValue::from_str(&auth.user).map_err(|_| {
                    self.fail(ChError::new(
                        516,
                        "Invalid authentication: a user name of bytes no header can hold",
                    ))
                })?,
            ),
            (
                HeaderName::from_static("x-clickhouse-key"),
                HeaderValue::from_str(&auth.password).map_err(|_| {
                    self.fail(ChError::new(
                        516,
                        "Invalid authentication: a password of bytes no header can hold",
                    ))
                })?,
            ),
        ];
        let sent = self
            .app
            .upstream
            .send(
                hyper::Method::POST,
                &query,
                headers.iter().map(|(k, v)| (k, v)),
                Bytes::new(),
            )
            .await;
        match sent {
            Ok(resp) if resp.status() == StatusCode::OK => {
                self.app.check_passed(key);
                Ok(())
            }
            Ok(resp) => {
                // ClickHouse's own refusal: status, exception code and body.
                let (head, body) = resp.into_parts();
                let body = body
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                Err(Response::from_parts(head, reply::full(body)))
            }
            Err(e) if self.app.checked_recently(&key, true) => {
                tracing::debug!(error = %e, "ClickHouse is not reachable: taking the insert on an earlier check");
                Ok(())
            }
            // The check wrote nothing: whatever failed, the client may retry.
            Err(e) => Err(self.busy(
                e.code,
                &format!(
                    "{} (chasyncd checks an insert with ClickHouse before taking it)",
                    e.message
                ),
            )),
        }
    }
}

/// Frames `data` against `schema` (the table as the daemon last read it, if it could).
fn frame_with(
    info: &FormatInfo,
    data: &Bytes,
    schema: Option<&TableSchema>,
    statement: &InsertStatement,
    skip_unknown: bool,
    reserved: Option<&str>,
) -> Result<Framed, ChError> {
    let columns = schema.and_then(|s| insert_columns(s, statement.columns.as_deref()));
    let has = |name: &str| schema.is_some_and(|s| s.column(name).is_some());
    chasync_core::frame(
        info,
        data.clone(),
        &FrameTable {
            columns,
            skip_unknown,
            reserved,
            has: &has,
        },
    )
    .map_err(|e| ChError::new(e.code, e.message))
}

/// The columns the rows give, with their types: the insert's column list, or the table's
/// insertable columns in order. `None` when a named column is not in the table (the server
/// refuses that, at the check).
fn insert_columns<'s>(
    schema: &'s TableSchema,
    columns: Option<&[String]>,
) -> Option<Vec<(&'s str, &'s ColumnType)>> {
    match columns {
        Some(names) => names
            .iter()
            .map(|n| schema.column(n).map(|c| (c.name.as_str(), &c.ty)))
            .collect(),
        None => Some(
            schema
                .columns
                .iter()
                .filter(|c| {
                    !matches!(
                        c.default_kind,
                        DefaultKind::Materialized | DefaultKind::Alias | DefaultKind::Ephemeral
                    )
                })
                .map(|c| (c.name.as_str(), &c.ty))
                .collect(),
        ),
    }
}

/// Percent-encodes a URL query component.
fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3 / 2);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
