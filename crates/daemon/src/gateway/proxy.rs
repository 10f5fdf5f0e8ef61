//! Pass-through: a request that is not an insert the gateway batches (a query, a schema probe,
//! `/ping`, a handshake) goes to ClickHouse as it came, with the client's own credentials, and
//! ClickHouse's answer (status, headers, body, streamed) goes back as it is.

use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::Relaxed;

use bytes::Bytes;
use chasync_core::Tls;
use chasync_core::tls::Connector;
use http_body_util::BodyExt;
use hyper::header::{self, HeaderName};
use hyper::{Request, Response, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::gateway::reply::{self, Body, ChError};

/// Headers of one hop only, never passed on.
const HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Whether a header is chasyncd's own bearer token (its gate, not ClickHouse's credentials).
fn is_gate_header(name: &HeaderName, value: &hyper::header::HeaderValue) -> bool {
    name.as_str() == "x-chasyncd-token"
        || (*name == header::AUTHORIZATION && value.as_bytes().starts_with(b"Bearer "))
}

/// The ClickHouse endpoints requests pass through to.
pub struct Upstream {
    client: Client<Connector, Body>,
    urls: Vec<String>,
    /// The endpoint that last took a request: a streamed request goes there.
    preferred: AtomicUsize,
}

impl Upstream {
    /// Pass-through to `urls` (the first that accepts a connection), `https://` ones with the
    /// engine's TLS options.
    pub fn new(
        urls: &[String],
        tls: &Tls,
        connect_timeout: std::time::Duration,
    ) -> chasync_core::Result<Self> {
        let connector = chasync_core::tls::connector(tls, connect_timeout)?;
        Ok(Self {
            client: Client::builder(TokioExecutor::new())
                .pool_idle_timeout(std::time::Duration::from_secs(30))
                .build(connector),
            urls: urls.to_vec(),
            preferred: AtomicUsize::new(0),
        })
    }

    /// Sends the request (`parts` as received, with `body`) to ClickHouse and returns its answer.
    pub async fn forward(
        &self,
        parts: &hyper::http::request::Parts,
        body: Bytes,
    ) -> Result<Response<Body>, ChError> {
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let resp = self
            .send(
                parts.method.clone(),
                path,
                passed_on(parts).into_iter(),
                body,
            )
            .await?;
        Ok(answer(resp))
    }

    /// Sends the request with its body streamed as it arrives (to the endpoint that last
    /// answered: a body read once cannot go to a second one) and streams the answer back.
    pub async fn forward_stream(
        &self,
        parts: &hyper::http::request::Parts,
        body: hyper::body::Incoming,
    ) -> Result<Response<Body>, ChError> {
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let i = self
            .preferred
            .load(Relaxed)
            .min(self.urls.len().saturating_sub(1));
        let base = self
            .urls
            .get(i)
            .ok_or_else(|| ChError::new(210, "no ClickHouse URL").with_status(503))?;
        let uri: Uri = format!("{}{path}", base.trim_end_matches('/'))
            .parse()
            .map_err(|e| ChError::new(36, format!("bad upstream URL: {e}")))?;
        let mut req = Request::builder().method(parts.method.clone()).uri(uri);
        for (name, value) in passed_on(parts) {
            req = req.header(name, value);
        }
        if let Some(len) = parts.headers.get(header::CONTENT_LENGTH) {
            req = req.header(header::CONTENT_LENGTH, len);
        } else if hyper::body::Body::is_end_stream(&body)
            && parts.method != hyper::Method::GET
            && parts.method != hyper::Method::HEAD
        {
            // An empty body goes unannounced otherwise, and ClickHouse wants a length on a POST.
            req = req.header(header::CONTENT_LENGTH, 0);
        }
        let req = req
            .body(body.boxed())
            .map_err(|e| ChError::new(36, e.to_string()))?;
        match self.client.request(req).await {
            Ok(resp) => Ok(answer(resp)),
            Err(e) if e.is_connect() => {
                // Another endpoint takes the next request.
                self.preferred.store((i + 1) % self.urls.len(), Relaxed);
                Err(ChError::new(
                    210,
                    format!(
                        "Connection to ClickHouse at {} failed: {}",
                        chasync_core::redact_url(base),
                        chain(&e)
                    ),
                )
                .with_status(503))
            }
            Err(e) => Err(ChError::new(
                210,
                format!(
                    "ClickHouse at {}: {}",
                    chasync_core::redact_url(base),
                    chain(&e)
                ),
            )
            .with_status(502)),
        }
    }

    /// Sends a request to the first endpoint that takes the connection.
    pub async fn send<'h>(
        &self,
        method: hyper::Method,
        path_and_query: &str,
        headers: impl Iterator<Item = (&'h HeaderName, &'h hyper::header::HeaderValue)> + Clone,
        body: Bytes,
    ) -> Result<Response<hyper::body::Incoming>, ChError> {
        let mut last = None;
        for (i, base) in self.urls.iter().enumerate() {
            let uri: Uri = match format!("{}{path_and_query}", base.trim_end_matches('/')).parse() {
                Ok(u) => u,
                Err(e) => {
                    last = Some(ChError::new(36, format!("bad upstream URL: {e}")));
                    continue;
                }
            };
            let mut req = Request::builder().method(method.clone()).uri(uri);
            for (name, value) in headers.clone() {
                req = req.header(name, value);
            }
            if method != hyper::Method::GET && method != hyper::Method::HEAD {
                // hyper leaves an empty body unannounced, and ClickHouse wants a length on a POST.
                req = req.header(header::CONTENT_LENGTH, body.len());
            }
            let req = req
                .body(reply::full(body.clone()))
                .map_err(|e| ChError::new(36, e.to_string()))?;
            match self.client.request(req).await {
                Ok(resp) => {
                    self.preferred.store(i, Relaxed);
                    return Ok(resp);
                }
                Err(e) if e.is_connect() => {
                    last = Some(ChError::new(
                        210,
                        format!(
                            "Connection to ClickHouse at {} failed: {}",
                            chasync_core::redact_url(base),
                            chain(&e)
                        ),
                    ));
                }
                Err(e) => {
                    return Err(ChError::new(
                        210,
                        format!(
                            "ClickHouse at {}: {}",
                            chasync_core::redact_url(base),
                            chain(&e)
                        ),
                    )
                    .with_status(502));
                }
            }
        }
        Err(last
            .unwrap_or_else(|| ChError::new(210, "no ClickHouse URL"))
            .with_status(503))
    }
}

/// The headers of a request that go on to ClickHouse: all but those of one hop, the host,
/// the length (set again for the body sent) and chasyncd's own token.
fn passed_on(
    parts: &hyper::http::request::Parts,
) -> Vec<(&HeaderName, &hyper::header::HeaderValue)> {
    parts
        .headers
        .iter()
        .filter(|(name, value)| {
            !HOP.contains(name)
                && *name != header::HOST
                && *name != header::CONTENT_LENGTH
                && !is_gate_header(name, value)
        })
        .collect()
}

/// ClickHouse's answer, streamed, without the headers of one hop.
fn answer(resp: Response<hyper::body::Incoming>) -> Response<Body> {
    let (mut head, incoming) = resp.into_parts();
    for name in &HOP {
        head.headers.remove(name);
    }
    Response::from_parts(head, incoming.boxed())
}

/// An error with its causes (`client error (Connect): invalid peer certificate: ...`), each
/// once, and what to do about a TLS failure.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    if let Some(hint) = chasync_core::tls::hint(&out) {
        out = format!("{out} ({hint})");
    }
    out
}
