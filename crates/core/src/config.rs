//! The one configuration vocabulary of the engine and every frontend.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::dedup::StreamId;
use crate::error::{Error, Result};

/// Compression of the insert body on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// No compression.
    None,
    /// ClickHouse's native LZ4 block compression (the default).
    #[default]
    Lz4,
}

/// A password that never shows in `Debug` output, logs, errors or serialised configurations.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself; only for handing to the client.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str("***")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

/// A ClickHouse user and password.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {
    /// The user.
    pub user: String,
    /// The password.
    pub password: Secret,
}

/// Where the engine inserts, as whom, and how long it waits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct ClickHouse {
    /// ClickHouse HTTP endpoints; attempts go to the least loaded healthy one. One URL or a
    /// list.
    #[serde(deserialize_with = "one_or_many")]
    pub url: Vec<String>,
    /// The user (`default` when `None`).
    pub user: Option<String>,
    /// The user's password.
    pub password: Option<Secret>,
    /// The database of tables named without one.
    pub database: String,
    /// Wire compression of insert bodies.
    pub compression: Compression,
    /// Establishing a TCP connection.
    #[serde(with = "duration")]
    pub connect_timeout: Duration,
    /// Handing one chunk of an insert body to the connection (a stalled server or network).
    #[serde(with = "duration")]
    pub send_timeout: Duration,
    /// Waiting for the server's answer to an insert once its body was sent (the insert
    /// itself, materialized views included).
    #[serde(with = "duration")]
    pub insert_timeout: Duration,
    /// A metadata query (a table's schema), connection included.
    #[serde(with = "duration")]
    pub query_timeout: Duration,
    /// ClickHouse settings sent with every insert.
    #[serde(deserialize_with = "settings")]
    pub settings: BTreeMap<String, String>,
    /// Insert straight into the shards of this cluster (a name in the server's
    /// `system.clusters`): rows are routed to their shard on the client and inserted into
    /// each shard's local table. A `Distributed` target table is routed the same way without
    /// it (its own cluster, which this must then name).
    pub cluster: Option<String>,
    /// The HTTP endpoints of a cluster's replicas: `host:port` as `system.clusters` lists the
    /// replica (its native port) to the replica's HTTP URL. A replica not listed is reached at
    /// its host on the port of the first `url`, with its scheme.
    #[serde(deserialize_with = "settings")]
    pub cluster_urls: BTreeMap<String, String>,
}

impl Default for ClickHouse {
    fn default() -> Self {
        Self {
            url: vec!["http://127.0.0.1:8123".into()],
            user: None,
            password: None,
            database: "default".into(),
            compression: Compression::Lz4,
            connect_timeout: Duration::from_secs(5),
            send_timeout: Duration::from_secs(30),
            insert_timeout: Duration::from_secs(120),
            query_timeout: Duration::from_secs(10),
            settings: BTreeMap::new(),
            cluster: None,
            cluster_urls: BTreeMap::new(),
        }
    }
}

/// TLS of `https://` endpoints: whom to trust, and the client certificate to show.
///
/// Without options the server's certificate is verified against the system's trust store
/// (`SSL_CERT_FILE` / `SSL_CERT_DIR` replace it, as for other programs). The flat option names
/// are `tls_ca_file`, `tls_cert_file`, `tls_key_file` and `tls_insecure_skip_verify`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct Tls {
    /// A PEM file of the CA certificates to trust, instead of the system's trust store.
    pub ca_file: Option<PathBuf>,
    /// A PEM file with the client certificate (and its chain) for servers that require one
    /// (mutual TLS); with `key_file`.
    pub cert_file: Option<PathBuf>,
    /// The PEM file of the client certificate's private key.
    pub key_file: Option<PathBuf>,
    /// Accepts any server certificate, unverified: the connection is encrypted but the server
    /// is not authenticated. Only for tests; a warning is logged when a client is built.
    pub insecure_skip_verify: bool,
}

/// When a batch is sealed, and how much may wait before producers are held back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct Batching {
    /// A batch is sealed when it holds this many rows ...
    pub max_rows: usize,
    /// ... or this many encoded bytes ...
    #[serde(with = "size")]
    pub max_bytes: usize,
    /// ... or when this much time has passed since its first row, whichever comes first.
    #[serde(with = "duration")]
    pub linger: Duration,
    /// Rows that may wait in the queue before producers wait (backpressure).
    pub queue_rows: usize,
}

impl Default for Batching {
    fn default() -> Self {
        Self {
            // Fewer, larger inserts: each insert is a part (and later merges) for the server;
            // `max_bytes` bounds wide rows first.
            max_rows: 250_000,
            max_bytes: 32 << 20,
            linger: Duration::from_secs(1),
            queue_rows: 200_000,
        }
    }
}

/// How sealed batches are sent: concurrency, retries, and the ids that make them idempotent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct Delivery {
    /// Inserts in flight at most (the adaptive limit's ceiling).
    pub max_concurrency: usize,
    /// Attempts of an insert in all, the first included (1 = never retry). Only errors whose
    /// kind is retryable are retried.
    pub max_attempts: u32,
    /// The wait before the second attempt.
    #[serde(with = "duration")]
    pub initial_backoff: Duration,
    /// The longest wait between two attempts.
    #[serde(with = "duration")]
    pub max_backoff: Duration,
    /// Growth of the wait per attempt.
    pub backoff_multiplier: f64,
    /// Fill the table's `_insert_id` column with the batch id when it has one.
    pub fill_insert_id: bool,
    /// The stream whose batch ids this pipeline issues: a name (the same name gives the same
    /// ids) or a UUID. Random when not set.
    pub stream_id: Option<StreamId>,
    /// The sequence number of the first batch (with `stream_id`, to reproduce the ids of an
    /// earlier run).
    pub first_sequence: u64,
}

impl Default for Delivery {
    fn default() -> Self {
        Self {
            max_concurrency: 4,
            max_attempts: 20_000,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
            backoff_multiplier: 2.0,
            fill_insert_id: true,
            stream_id: None,
            first_sequence: 0,
        }
    }
}

/// Where batches that cannot be committed go.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct Spool {
    /// The dead-letter spool directory (flat option name: `spool_dir`).
    pub dir: PathBuf,
}

impl Default for Spool {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("chasync-spool"),
        }
    }
}

/// Everything an ingestion pipeline needs to know.
///
/// The one configuration vocabulary of the engine and every frontend.
///
/// A [`Config`] has five groups: [`ClickHouse`] (endpoints, credentials, timeouts, settings),
/// [`Tls`], [`Batching`], [`Delivery`] (concurrency, retries, batch ids) and [`Spool`], plus the
/// target `table`. It deserialises from TOML (the CLI's config file and the daemon's, one
/// `[group]` section each) and is built from flat `key = value` options by
/// [`ConfigBuilder`], which the CLI's flags, the daemon's flags and Python's keyword arguments
/// all go through: every frontend has the same names, meanings and defaults
/// (`docs/configuration.md` lists them).
///
/// ```
/// use chasync_core::Config;
/// use std::time::Duration;
///
/// let config = Config::builder("http://127.0.0.1:8123", "events")
///     .database("analytics")
///     .max_rows(50_000)
///     .linger(Duration::from_millis(500))
///     .set("max_concurrency", 8) // any option by its flat name
///     .build()
///     .unwrap();
/// assert_eq!(config.batching.linger, Duration::from_millis(500));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct Config {
    /// Endpoints, credentials, timeouts, settings.
    pub clickhouse: ClickHouse,
    /// TLS of `https://` endpoints.
    pub tls: Tls,
    /// The target table (`db.table`, or a table of `clickhouse.database`).
    pub table: String,
    /// Batching.
    pub batching: Batching,
    /// Delivery.
    pub delivery: Delivery,
    /// The dead-letter spool.
    pub spool: Spool,
}

impl Config {
    /// A configuration with defaults for the given endpoint and table (in database `default`,
    /// unless the table is given as `db.table`).
    pub fn new(url: impl Into<String>, table: impl Into<String>) -> Self {
        let mut c = Self::default();
        c.clickhouse.url = vec![url.into()];
        c.set_table(&table.into());
        c
    }

    /// A builder starting from the defaults with the given endpoint and table.
    pub fn builder(url: impl Into<String>, table: impl Into<String>) -> ConfigBuilder {
        ConfigBuilder::new()
            .set("url", url.into())
            .set("table", table.into())
    }

    /// Sets the target table: `db.table` (backquotes allowed) sets the database too.
    pub fn set_table(&mut self, name: &str) {
        match split_table(name) {
            (Some(db), t) => {
                self.clickhouse.database = db;
                self.table = t;
            }
            (None, t) => self.table = t,
        }
    }

    /// The database of the target table.
    pub fn database(&self) -> &str {
        &self.clickhouse.database
    }

    /// Checks that the configuration can work.
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: &str| Err(Error::Config(msg.to_string()));
        if self.clickhouse.url.is_empty() {
            return bad("at least one ClickHouse URL is needed");
        }
        self.url_credentials().map_err(Error::Config)?;
        for url in &self.clickhouse.url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(Error::Config(format!(
                    "URL {:?} must start with http:// or https:// (the ClickHouse HTTP interface)",
                    redact_url(url)
                )));
            }
        }
        if self.tls.cert_file.is_some() != self.tls.key_file.is_some() {
            return bad("tls_cert_file and tls_key_file go together: set both or neither");
        }
        if self.table.is_empty() {
            return bad("the table name is empty");
        }
        let b = &self.batching;
        if b.max_rows == 0 || b.max_bytes == 0 {
            return bad("max_rows and max_bytes must be at least 1");
        }
        if b.max_bytes > 1 << 30 {
            return bad("max_bytes must be at most 1 GiB (ClickHouse prefers far smaller inserts)");
        }
        if b.queue_rows == 0 {
            return bad("queue_rows must be at least 1");
        }
        let d = &self.delivery;
        if d.max_concurrency == 0 {
            return bad("max_concurrency must be at least 1");
        }
        if d.max_attempts == 0 {
            return bad("max_attempts must be at least 1");
        }
        if !(d.backoff_multiplier >= 1.0 && d.backoff_multiplier.is_finite()) {
            return bad("backoff_multiplier must be a number of at least 1");
        }
        Ok(())
    }

    /// The user and password of the endpoints, as the client sends them: the `user` and
    /// `password` options, or those of the URLs' `user:password@` part (the builder moves
    /// those to the options; a [`Config`] filled in by hand may still have them in its URLs).
    /// Fails when URLs carry different credentials, or credentials other than the options'.
    pub(crate) fn url_credentials(
        &self,
    ) -> std::result::Result<(Option<String>, Option<Secret>), String> {
        let c = &self.clickhouse;
        let mut found: Option<UserInfo> = None;
        for url in &c.url {
            match (split_userinfo(url)?.1, &found) {
                (None, _) => {}
                (Some(i), None) => found = Some(i),
                (Some(i), Some(f)) if i == *f => {}
                (Some(_), Some(_)) => {
                    return Err(
                        "the URLs carry different credentials (user:password@): one \
                                user for all of them"
                            .into(),
                    );
                }
            }
        }
        let Some(info) = found else {
            return Ok((c.user.clone(), c.password.clone()));
        };
        if let (Some(a), Some(b)) = (&info.user, &c.user)
            && a != b
        {
            return Err(format!(
                "the URL names user {a:?} and user {b:?} is given too: give the user once"
            ));
        }
        if let (Some(a), Some(b)) = (&info.password, &c.password)
            && a != b.expose()
        {
            return Err(
                "the URL carries a password and a different password is given too: \
                        give the password once"
                    .into(),
            );
        }
        Ok((
            c.user.clone().or(info.user),
            c.password.clone().or(info.password.map(Secret::new)),
        ))
    }

    /// `db.table`, quoted for SQL.
    pub fn qualified_table(&self) -> String {
        format!(
            "{}.{}",
            quote_ident(&self.clickhouse.database),
            quote_ident(&self.table)
        )
    }

    /// Every option's flat name with its group (`None`: a top-level option) and its default,
    /// in the order of the groups: the vocabulary the frontends share.
    pub fn options() -> Vec<(Option<&'static str>, String, Value)> {
        let defaults = serde_json::to_value(Config::default()).expect("configs serialise");
        let mut out = Vec::new();
        for (group, value) in defaults.as_object().expect("an object") {
            let group: &'static str = GROUPS.iter().copied().find(|g| g == group).unwrap_or("");
            match value {
                Value::Object(fields) if !group.is_empty() => {
                    for (field, default) in fields {
                        out.push((Some(group), flat_name(group, field), default.clone()));
                    }
                }
                other => out.push((None, group.to_string(), other.clone())),
            }
        }
        out
    }
}

/// The groups of [`Config`], as TOML sections.
const GROUPS: [&str; 6] = [
    "clickhouse",
    "tls",
    "table",
    "batching",
    "delivery",
    "spool",
];

/// The flat option name of a field: its own name, but `spool_dir` for the spool's `dir` and
/// `tls_<field>` for the fields of `[tls]`.
fn flat_name(group: &str, field: &str) -> String {
    match (group, field) {
        ("spool", "dir") => "spool_dir".into(),
        ("tls", f) => format!("tls_{f}"),
        _ => field.into(),
    }
}

/// Older or frontend-specific names of options, and the option each stands for.
const ALIASES: [(&str, &str); 9] = [
    ("urls", "url"),
    ("endpoints", "url"),
    ("batch_rows", "max_rows"),
    ("batch_bytes", "max_bytes"),
    ("queue_capacity", "queue_rows"),
    ("timeout", "insert_timeout"),
    ("dlq_dir", "spool_dir"),
    ("dead_letter_dir", "spool_dir"),
    ("compress", "compression"),
];

/// Environment variables named after an alias of an option, and the option.
const ENV_ALIASES: [(&str, &str); 1] = [("CHASYNC_DLQ_DIR", "spool_dir")];

/// Checks one option's value by reading it into a [`Config`] alone: a mistake is named at
/// once, with its option.
fn check_field(group: &str, field: &str, value: &Value) -> std::result::Result<(), String> {
    let mut section = Map::new();
    section.insert(field.to_string(), value.clone());
    let mut top = Map::new();
    top.insert(group.to_string(), Value::Object(section));
    serde_json::from_value::<Config>(Value::Object(top))
        .map(drop)
        .map_err(|e| format!("{}: {e}", flat_name(group, field)))
}

/// The credentials of a URL's `user:password@` part, percent-decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UserInfo {
    user: Option<String>,
    password: Option<String>,
}

/// Splits a URL's `user:password@` part off: the URL without it, and the credentials
/// (percent-decoded). Messages never quote the password.
pub(crate) fn split_userinfo(url: &str) -> std::result::Result<(String, Option<UserInfo>), String> {
    let Some(scheme_end) = url.find("://") else {
        return Ok((url.to_string(), None));
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return Ok((url.to_string(), None));
    };
    let (info, host) = (&rest[..at], &rest[at + 1..]);
    let clean = format!("{}{host}", &url[..scheme_end + 3]);
    let (user, password) = match info.split_once(':') {
        Some((u, p)) => (u, Some(p)),
        None => (info, None),
    };
    let user =
        percent_decode(user).map_err(|e| format!("the user in URL {}: {e}", redact_url(url)))?;
    let password = password
        .map(percent_decode)
        .transpose()
        .map_err(|e| format!("the password in URL {}: {e}", redact_url(url)))?;
    let info = UserInfo {
        user: (!user.is_empty()).then_some(user),
        password,
    };
    Ok((clean, Some(info)))
}

/// Decodes `%XX` escapes (the text must then be UTF-8).
fn percent_decode(text: &str) -> std::result::Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or("a % that is not followed by two hexadecimal digits")?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "percent-escapes that do not decode to UTF-8".to_string())
}

/// The user's configuration file of the command line: the first that exists of
/// `$XDG_CONFIG_HOME/chasync/config.toml` (when `XDG_CONFIG_HOME` is an absolute path) and
/// `$HOME/.config/chasync/config.toml`; `var` reads the environment.
pub fn user_config_file(var: impl Fn(&str) -> Option<String>) -> Option<PathBuf> {
    user_config_candidates(var)
        .into_iter()
        .find(|p| p.is_file())
}

/// Where [`user_config_file`] looks, in order.
pub fn user_config_candidates(var: impl Fn(&str) -> Option<String>) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(xdg) = var("XDG_CONFIG_HOME").map(PathBuf::from)
        && xdg.is_absolute()
    {
        out.push(xdg.join("chasync").join("config.toml"));
    }
    if let Some(home) = var("HOME").filter(|h| !h.is_empty()) {
        let p = PathBuf::from(home)
            .join(".config")
            .join("chasync")
            .join("config.toml");
        if !out.contains(&p) {
            out.push(p);
        }
    }
    out
}

/// Layers options into a [`Config`]: a TOML file, the environment, flags or keyword
/// arguments, each [`set`](Self::set) or [`merge_toml`](Self::merge_toml) overriding what
/// came before; [`build`](Self::build) fills in the defaults and validates.
///
/// Options have flat names (`max_rows`, `linger`, `spool_dir`, ...; [`Config::options`] lists
/// them, and the aliases `batch_rows`, `batch_bytes`, `urls`, `dlq_dir`, `queue_capacity`,
/// `timeout` are accepted). `retries` is `max_attempts - 1`. Durations are seconds (a number)
/// or text with a unit (`500ms`, `2s`, `1m`); sizes are bytes or text with a unit (`32MiB`,
/// `10MB`).
///
/// A URL may carry the credentials, `http://user:password@host:8123` (percent-encoded, as in
/// any URL): they are taken out of the URL and become the `user` and `password` options of
/// the layer that set the URL. A layer (a file, the environment, the flags, one
/// [`merge`](Self::merge)) that gives a URL with credentials and a different `user` or
/// `password` is refused; a later layer overrides an earlier one as for any option.
#[derive(Clone, Default)]
pub struct ConfigBuilder {
    tree: Map<String, Value>,
    error: Option<String>,
    /// The layer now being set: each merge is one, and the flat options set after it another.
    layer: u32,
    /// Where `user` and `password` were last set: the layer, and whether from a URL.
    user_origin: Option<(u32, bool)>,
    password_origin: Option<(u32, bool)>,
}

impl fmt::Debug for ConfigBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut tree = self.tree.clone();
        if let Some(Value::Object(c)) = tree.get_mut("clickhouse")
            && let Some(p) = c.get_mut("password")
        {
            *p = Value::from("***");
        }
        f.debug_struct("ConfigBuilder")
            .field("options", &tree)
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

impl ConfigBuilder {
    /// An empty builder: every option at its default.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets option `key` (a flat name, see [`Config::options`]). An unknown key or a value of
    /// the wrong kind makes [`build`](Self::build) fail with a message naming it.
    pub fn set(mut self, key: &str, value: impl Into<Value>) -> Self {
        if let Err(e) = self.try_set(key, value.into()) {
            self.error.get_or_insert(e);
        }
        self
    }

    /// Sets the database of tables named without one.
    pub fn database(self, name: &str) -> Self {
        self.set("database", name)
    }

    /// Sets the user and password.
    pub fn credentials(self, user: &str, password: &str) -> Self {
        self.set("user", user).set("password", password)
    }

    /// Seals a batch at this many rows.
    pub fn max_rows(self, rows: usize) -> Self {
        self.set("max_rows", rows as u64)
    }

    /// Seals a batch at this many encoded bytes.
    pub fn max_bytes(self, bytes: usize) -> Self {
        self.set("max_bytes", bytes as u64)
    }

    /// Seals a batch this long after its first row.
    pub fn linger(self, linger: Duration) -> Self {
        self.set("linger", linger.as_secs_f64())
    }

    /// Keeps at most this many inserts in flight.
    pub fn max_concurrency(self, n: usize) -> Self {
        self.set("max_concurrency", n as u64)
    }

    /// Makes at most this many attempts of an insert.
    pub fn max_attempts(self, n: u32) -> Self {
        self.set("max_attempts", n)
    }

    /// Issues the batch ids of this stream (a name, or a UUID).
    pub fn stream_id(self, stream: &str) -> Self {
        self.set("stream_id", stream)
    }

    /// Writes dead letters to this directory.
    pub fn spool_dir(self, dir: impl Into<PathBuf>) -> Self {
        self.set("spool_dir", dir.into().to_string_lossy().into_owned())
    }

    /// Sends a ClickHouse setting with every insert.
    pub fn setting(self, name: &str, value: impl Into<Value>) -> Self {
        let mut one = Map::new();
        one.insert(name.to_string(), value.into());
        self.set("settings", Value::Object(one))
    }

    /// Sets option `key` now, or says why not.
    pub fn try_set(&mut self, key: &str, value: Value) -> std::result::Result<(), String> {
        let key = ALIASES
            .iter()
            .find(|(alias, _)| *alias == key)
            .map_or(key, |(_, k)| *k);
        let (key, value) = match key {
            "retries" => {
                let n = value
                    .as_u64()
                    .or_else(|| value.as_str().and_then(|s| s.trim().parse().ok()))
                    .ok_or_else(|| "retries: expected a whole number".to_string())?;
                ("max_attempts", Value::from(n + 1))
            }
            "table" => {
                let name = value
                    .as_str()
                    .ok_or_else(|| "table: expected a name".to_string())?;
                if let (Some(db), _) = split_table(name) {
                    self.put("clickhouse", "database", Value::from(db));
                }
                self.tree
                    .insert("table".into(), Value::from(split_table(name).1));
                return Ok(());
            }
            _ => (key, value),
        };
        let (group, field) = locate(key).ok_or_else(|| {
            let names: Vec<String> = Config::options().into_iter().map(|(_, k, _)| k).collect();
            format!(
                "unknown option {key:?}; the options are: {}, retries",
                names.join(", ")
            )
        })?;
        match group {
            Some(g) => self.put(g, field, value),
            None => {
                self.tree.insert(field.into(), value);
            }
        }
        Ok(())
    }

    fn put(&mut self, group: &str, field: &str, value: Value) {
        let value = if group == "clickhouse" {
            match self.take_credentials(field, value) {
                Ok(v) => v,
                Err(e) => {
                    self.error.get_or_insert(e);
                    return;
                }
            }
        } else {
            value
        };
        if let Err(e) = check_field(group, field, &value) {
            self.error.get_or_insert(e);
            return;
        }
        self.put_checked(group, field, value);
    }

    fn put_checked(&mut self, group: &str, field: &str, value: Value) {
        let section = self
            .tree
            .entry(group.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(m) = section {
            // Settings given one by one add to those set before.
            if field == "settings"
                && let (Some(Value::Object(old)), Value::Object(new)) = (m.get_mut(field), &value)
            {
                old.extend(new.clone());
                return;
            }
            m.insert(field.to_string(), value);
        }
    }

    /// The value to store for `clickhouse.<field>`: URLs without their `user:password@`
    /// part (which sets `user` and `password` here, in this layer), and the user or
    /// password checked against the credentials of a URL of the same layer.
    fn take_credentials(
        &mut self,
        field: &str,
        value: Value,
    ) -> std::result::Result<Value, String> {
        let current = |tree: &Map<String, Value>, f: &str| {
            tree.get("clickhouse")
                .and_then(|c| c.get(f))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        match field {
            "url" => {
                let (urls, userinfo) = match value {
                    Value::String(u) => {
                        let (clean, info) = split_userinfo(&u)?;
                        (Value::from(clean), info)
                    }
                    Value::Array(list) => {
                        let mut clean = Vec::with_capacity(list.len());
                        let mut found: Option<UserInfo> = None;
                        for u in list {
                            let Value::String(u) = u else {
                                clean.push(u);
                                continue;
                            };
                            let (c, info) = split_userinfo(&u)?;
                            clean.push(Value::from(c));
                            match (&found, info) {
                                (_, None) => {}
                                (None, Some(i)) => found = Some(i),
                                (Some(f), Some(i)) if *f == i => {}
                                (Some(_), Some(_)) => {
                                    return Err("the URLs carry different credentials \
                                                (user:password@): one user for all of them"
                                        .into());
                                }
                            }
                        }
                        (Value::Array(clean), found)
                    }
                    other => (other, None),
                };
                let Some(info) = userinfo else {
                    return Ok(urls);
                };
                let layer = self.layer;
                if let Some(user) = info.user {
                    if self.user_origin == Some((layer, false))
                        && let Some(given) = current(&self.tree, "user")
                        && given != user
                    {
                        return Err(format!(
                            "the URL names user {user:?} and user {given:?} is given too: \
                             give the user once, in the URL or as the user option"
                        ));
                    }
                    self.put_checked("clickhouse", "user", Value::from(user));
                    self.user_origin = Some((layer, true));
                }
                if let Some(password) = info.password {
                    if self.password_origin == Some((layer, false))
                        && current(&self.tree, "password").is_some_and(|p| p != password)
                    {
                        return Err("the URL carries a password and a different password is \
                                    given too: give the password once, in the URL or as the \
                                    password option"
                            .into());
                    }
                    self.put_checked("clickhouse", "password", Value::from(password));
                    self.password_origin = Some((layer, true));
                }
                Ok(urls)
            }
            "user" | "password" => {
                let origin = if field == "user" {
                    &mut self.user_origin
                } else {
                    &mut self.password_origin
                };
                let from_url_here = *origin == Some((self.layer, true));
                *origin = Some((self.layer, false));
                if from_url_here
                    && let (Some(old), Some(new)) = (current(&self.tree, field), value.as_str())
                    && old != new
                {
                    return Err(if field == "user" {
                        format!(
                            "the URL names user {old:?} and user {new:?} is given too: give \
                             the user once, in the URL or as the user option"
                        )
                    } else {
                        "the URL carries a password and a different password is given too: \
                         give the password once, in the URL or as the password option"
                            .into()
                    });
                }
                Ok(value)
            }
            _ => Ok(value),
        }
    }

    /// Starts a new layer: what is set from here on overrides what came before, and a URL's
    /// credentials conflict only with a user or password of the same layer.
    pub fn next_layer(mut self) -> Self {
        self.layer += 1;
        self
    }

    /// Merges a TOML document with `[clickhouse]`, `[tls]`, `[batching]`, `[delivery]` and `[spool]`
    /// sections (and `table`) over what was set before. Sections a frontend keeps for itself
    /// (the daemon's `[listen]`, say) are left to it: pass only the engine's.
    pub fn merge_toml(mut self, text: &str) -> Self {
        match toml::from_str::<toml::Table>(text) {
            Ok(table) => {
                let value = serde_json::to_value(table).expect("TOML converts to JSON");
                self = self.merge(value);
            }
            Err(e) => {
                self.error.get_or_insert(e.to_string());
            }
        }
        self
    }

    /// Merges a grouped tree (as [`Config`] serialises) over what was set before.
    pub fn merge(mut self, value: Value) -> Self {
        self.layer += 1;
        let Value::Object(top) = value else {
            self.error
                .get_or_insert("a configuration must be a table of options".into());
            return self;
        };
        for (key, value) in top {
            match (GROUPS.contains(&key.as_str()), value) {
                (true, Value::Object(fields)) if key != "table" => {
                    for (field, v) in fields {
                        self.put(&key, &field, v);
                    }
                }
                (_, v) => {
                    let flat = key.clone();
                    if let Err(e) = self.try_set(&flat, v) {
                        self.error.get_or_insert(e);
                    }
                }
            }
        }
        self.layer += 1;
        self
    }

    /// Applies the environment, as one layer over what came before: ClickHouse's usual
    /// `CLICKHOUSE_URL`, `CLICKHOUSE_USER`, `CLICKHOUSE_PASSWORD` and `CLICKHOUSE_DATABASE`,
    /// then `CHASYNC_<OPTION>` for every option (`CHASYNC_URL`, `CHASYNC_DATABASE`,
    /// `CHASYNC_MAX_ROWS`, `CHASYNC_SPOOL_DIR` or its alias `CHASYNC_DLQ_DIR`, ...) over them:
    /// a `CHASYNC_` variable wins over the `CLICKHOUSE_` one (`CHASYNC_USER` over the user in
    /// `CLICKHOUSE_URL`, too). Empty variables are ignored; a bad value is an error naming its
    /// variable.
    pub fn merge_env(self) -> Self {
        self.merge_vars(|name| std::env::var(name).ok())
    }

    /// [`merge_env`](Self::merge_env) with variables from `var` (tests, or an environment of
    /// the caller's).
    pub fn merge_vars(mut self, var: impl Fn(&str) -> Option<String>) -> Self {
        self.layer += 1;
        for key in ["url", "user", "password", "database"] {
            let name = format!("CLICKHOUSE_{}", key.to_uppercase());
            self = self.set_var(&name, key, var(&name));
        }
        self.layer += 1;
        for (name, key) in ENV_ALIASES {
            if var(&format!("CHASYNC_{}", key.to_uppercase())).is_none_or(|v| v.is_empty()) {
                self = self.set_var(name, key, var(name));
            }
        }
        for (_, key, _) in Config::options() {
            let name = format!("CHASYNC_{}", key.to_uppercase());
            self = self.set_var(&name, &key, var(&name));
        }
        self.layer += 1;
        self
    }

    /// Sets `key` from environment variable `name`, if it has a value; an error names it.
    fn set_var(self, name: &str, key: &str, value: Option<String>) -> Self {
        let Some(text) = value.filter(|v| !v.is_empty()) else {
            return self;
        };
        let had_error = self.error.is_some();
        let mut b = self.set_text(key, &text);
        if !had_error && let Some(e) = b.error.take() {
            b.error = Some(format!("environment variable {name}: {e}"));
        }
        b
    }

    /// Sets option `key` from text, as an environment variable or a command-line flag gives
    /// it: numbers and booleans are parsed, `url` may list several URLs separated by commas,
    /// and `settings` is `name=value` pairs separated by commas.
    pub fn set_text(self, key: &str, text: &str) -> Self {
        let canonical = ALIASES
            .iter()
            .find(|(alias, _)| *alias == key)
            .map_or(key, |(_, k)| *k);
        let default = Config::options()
            .into_iter()
            .find(|(_, k, _)| k == canonical)
            .map(|(_, _, d)| d);
        let value = match (canonical, default) {
            ("url", _) => Value::from(
                text.split(',')
                    .map(|u| u.trim().to_string())
                    .filter(|u| !u.is_empty())
                    .collect::<Vec<_>>(),
            ),
            ("settings" | "cluster_urls", _) => Value::Object(
                text.split(',')
                    .filter(|kv| !kv.trim().is_empty())
                    .map(|kv| match kv.split_once('=') {
                        Some((k, v)) => (k.trim().to_string(), Value::from(v.trim())),
                        None => (kv.trim().to_string(), Value::from("1")),
                    })
                    .collect(),
            ),
            (_, Some(Value::Number(_))) | ("retries", _) => match text.trim().parse::<u64>() {
                Ok(n) => Value::from(n),
                Err(_) => match text.trim().parse::<f64>() {
                    Ok(f) => Value::from(f),
                    Err(_) => Value::from(text),
                },
            },
            (_, Some(Value::Bool(_))) => match text.trim() {
                "1" | "true" | "yes" | "on" => Value::Bool(true),
                "0" | "false" | "no" | "off" => Value::Bool(false),
                _ => Value::from(text),
            },
            _ => Value::from(text),
        };
        self.set(key, value)
    }

    /// Whether option `key` was set (by any layer).
    pub fn is_set(&self, key: &str) -> bool {
        match locate(key) {
            Some((Some(g), f)) => self
                .tree
                .get(g)
                .and_then(Value::as_object)
                .is_some_and(|m| m.contains_key(f)),
            Some((None, f)) => self.tree.contains_key(f),
            None => false,
        }
    }

    /// The configuration: the options set, defaults for the rest, validated.
    pub fn build(self) -> Result<Config> {
        if let Some(e) = self.error {
            return Err(Error::Config(e));
        }
        let config: Config = serde_json::from_value(Value::Object(self.tree))
            .map_err(|e| Error::Config(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }
}

/// The group and field of a flat option name.
fn locate(key: &str) -> Option<(Option<&'static str>, &'static str)> {
    static INDEX: std::sync::OnceLock<Vec<(Option<&'static str>, &'static str, String)>> =
        std::sync::OnceLock::new();
    let index = INDEX.get_or_init(|| {
        Config::options()
            .into_iter()
            .map(|(group, flat, _)| {
                let field = match (group, flat.as_str()) {
                    (Some("spool"), "spool_dir") => "dir",
                    (Some("tls"), f) => {
                        Box::leak(f.trim_start_matches("tls_").to_string().into_boxed_str())
                    }
                    _ => Box::leak(flat.clone().into_boxed_str()),
                };
                (group, field, flat)
            })
            .collect()
    });
    index
        .iter()
        .find(|(_, _, flat)| flat == key)
        .map(|(g, f, _)| (*g, *f))
}

/// Splits `db.table` at the first dot outside backquotes; backquotes are removed.
pub(crate) fn split_table(name: &str) -> (Option<String>, String) {
    let unquote = |s: &str| s.trim().trim_matches('`').to_string();
    let mut quoted = false;
    for (i, c) in name.char_indices() {
        match c {
            '`' => quoted = !quoted,
            '.' if !quoted => return (Some(unquote(&name[..i])), unquote(&name[i + 1..])),
            _ => {}
        }
    }
    (None, unquote(name))
}

/// Quotes a ClickHouse identifier with backticks.
pub fn quote_ident(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 2);
    crate::types::schema::quote_ident(name, &mut out);
    out
}

/// A URL with any `user:password@` part replaced, for messages.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_string(),
    }
}

/// Parses a duration: `500ms`, `2s`, `1.5s`, `1m30s`, `2h`, `250us`, or `0`.
pub fn parse_duration(text: &str) -> std::result::Result<Duration, String> {
    let text = text.trim();
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total = 0f64;
    let mut rest = text;
    if rest.is_empty() {
        return Err("empty duration".into());
    }
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("{text:?}: missing unit (ms, s, m, h), e.g. 500ms or 2s"))?;
        let (num, after) = rest.split_at(num_end);
        let value: f64 = num
            .parse()
            .map_err(|_| format!("{text:?}: invalid number {num:?}"))?;
        let unit_end = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_end);
        let scale = match unit.trim() {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" | "sec" | "secs" => 1.0,
            "m" | "min" | "mins" => 60.0,
            "h" | "hr" | "hours" => 3600.0,
            other => {
                return Err(format!(
                    "{text:?}: unknown unit {other:?} (use ns, us, ms, s, m, h)"
                ));
            }
        };
        total += value * scale;
        rest = next;
    }
    Duration::try_from_secs_f64(total).map_err(|e| format!("{text:?}: {e}"))
}

/// Parses a size in bytes: `1000`, `64KiB`, `32MiB`, `1GiB` (binary), `10KB`, `10MB`, `1GB`
/// (decimal); `K`, `M`, `G` alone are binary.
pub fn parse_bytes(text: &str) -> std::result::Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (num, unit) = text.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("{text:?}: expected a size such as 1000, 64KiB or 32MiB"))?;
    let scale: u64 = match unit.trim() {
        "" | "B" | "b" => 1,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "K" | "k" | "KiB" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        other => return Err(format!("{text:?}: unknown unit {other:?}")),
    };
    let bytes = value * scale as f64;
    if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
        return Err(format!("{text:?}: out of range"));
    }
    Ok(bytes as u64)
}

/// A number, or text to parse.
#[derive(Deserialize)]
#[serde(untagged)]
enum NumberOrText {
    Int(u64),
    Float(f64),
    Text(String),
}

/// Durations: seconds as a number, or text with a unit; serialised as text.
mod duration {
    use super::*;

    pub(super) fn serialize<S: Serializer>(
        d: &Duration,
        s: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&text(*d))
    }

    /// `2s`, `500ms`, `250us`: the largest unit that states it exactly.
    pub(super) fn text(d: Duration) -> String {
        let us = d.as_micros();
        if us.is_multiple_of(1_000_000) {
            format!("{}s", us / 1_000_000)
        } else if us.is_multiple_of(1_000) {
            format!("{}ms", us / 1_000)
        } else {
            format!("{us}us")
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> std::result::Result<Duration, D::Error> {
        let v = NumberOrText::deserialize(d)?;
        let secs = match v {
            NumberOrText::Int(n) => n as f64,
            NumberOrText::Float(f) => f,
            NumberOrText::Text(t) => {
                return match t.trim().parse::<f64>() {
                    Ok(secs) => Duration::try_from_secs_f64(secs)
                        .map_err(|e| serde::de::Error::custom(format!("{t:?}: {e}"))),
                    Err(_) => parse_duration(&t).map_err(serde::de::Error::custom),
                };
            }
        };
        Duration::try_from_secs_f64(secs).map_err(|e| {
            serde::de::Error::custom(format!(
                "{secs}: {e} (a duration is seconds, or e.g. \"500ms\")"
            ))
        })
    }
}

/// Sizes: bytes as a number, or text with a unit; serialised as a number.
mod size {
    use super::*;

    pub(super) fn serialize<S: Serializer>(
        n: &usize,
        s: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_u64(*n as u64)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> std::result::Result<usize, D::Error> {
        let bytes = match NumberOrText::deserialize(d)? {
            NumberOrText::Int(n) => n,
            NumberOrText::Float(f) if f >= 0.0 && f.fract() == 0.0 => f as u64,
            NumberOrText::Float(f) => {
                return Err(serde::de::Error::custom(format!(
                    "{f}: a size is a whole number of bytes"
                )));
            }
            NumberOrText::Text(t) => parse_bytes(&t).map_err(serde::de::Error::custom)?,
        };
        usize::try_from(bytes).map_err(|_| serde::de::Error::custom(format!("{bytes}: too large")))
    }
}

/// One URL or a list of them.
fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    let urls = match OneOrMany::deserialize(d)? {
        OneOrMany::One(u) => vec![u],
        OneOrMany::Many(v) => v,
    };
    Ok(urls
        .into_iter()
        .map(|u| u.trim().trim_end_matches('/').to_string())
        .filter(|u| !u.is_empty())
        .collect())
}

/// Settings: a table of names to text, numbers or booleans, kept as text.
fn settings<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<BTreeMap<String, String>, D::Error> {
    let raw = BTreeMap::<String, Value>::deserialize(d)?;
    raw.into_iter()
        .map(|(k, v)| {
            let text = match v {
                Value::String(s) => s,
                Value::Bool(b) => (b as u8).to_string(),
                Value::Number(n) => n.to_string(),
                other => {
                    return Err(serde::de::Error::custom(format!(
                        "setting {k}: {other} is not a text, number or boolean"
                    )));
                }
            };
            Ok((k, text))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_and_helpers() {
        let c = Config::new("http://127.0.0.1:8123", "t");
        c.validate().unwrap();
        let mut bad = c.clone();
        bad.delivery.max_concurrency = 0;
        assert!(bad.validate().is_err());
        let mut bad = c.clone();
        bad.clickhouse.url = vec!["127.0.0.1:8123".into()];
        assert!(bad.validate().unwrap_err().to_string().contains("http://"));
        assert_eq!(quote_ident("a`b"), "`a\\`b`");
        assert_eq!(redact_url("http://u:pw@h:1/"), "http://***@h:1/");
        let mut c = c;
        c.clickhouse.password = Some(Secret::new("hunter2"));
        assert!(!format!("{c:?}").contains("hunter2"));
        assert!(!serde_json::to_string(&c).unwrap().contains("hunter2"));
        let c = Config::new("http://h:1", "`my.db`.`t`");
        assert_eq!((c.database(), c.table.as_str()), ("my.db", "t"));
    }

    #[test]
    fn flat_options_toml_and_layers_agree() {
        let from_toml = ConfigBuilder::new()
            .merge_toml(
                r#"
                table = "db.t"
                [clickhouse]
                url = ["http://a:8123", "http://b:8123/"]
                user = "loader"
                password = "pw"
                compression = "none"
                insert_timeout = "90s"
                settings = { async_insert = 0, input_format_skip_unknown_fields = true }
                [batching]
                max_rows = 1000
                max_bytes = "1MiB"
                linger = 0.25
                [delivery]
                max_attempts = 3
                stream_id = "loader"
                [spool]
                dir = "/tmp/spool"
                "#,
            )
            .build()
            .unwrap();
        let from_flat = ConfigBuilder::new()
            .set("url", vec!["http://a:8123", "http://b:8123"])
            .set("table", "db.t")
            .set("user", "loader")
            .set("password", "pw")
            .set("compression", "none")
            .set("insert_timeout", 90)
            .set("settings", serde_json::json!({"async_insert": 0}))
            .set(
                "settings",
                serde_json::json!({"input_format_skip_unknown_fields": true}),
            )
            .set("batch_rows", 1000)
            .set("max_bytes", 1 << 20)
            .set("linger", "250ms")
            .set("retries", 2)
            .set("stream_id", "loader")
            .set("spool_dir", "/tmp/spool")
            .build()
            .unwrap();
        assert_eq!(from_toml, from_flat);
        assert_eq!(from_toml.clickhouse.database, "db");
        assert_eq!(from_toml.clickhouse.url.len(), 2);
        assert_eq!(
            from_toml.clickhouse.password.as_ref().unwrap().expose(),
            "pw"
        );
        assert_eq!(from_toml.clickhouse.settings["async_insert"], "0");
        assert_eq!(
            from_toml.clickhouse.settings["input_format_skip_unknown_fields"],
            "1"
        );
        assert_eq!(
            from_toml.delivery.stream_id,
            Some(StreamId::named("loader"))
        );
        // A later layer wins.
        let c = ConfigBuilder::new()
            .merge_toml("table = \"t\"\n[batching]\nmax_rows = 5\n")
            .set("max_rows", 7)
            .build()
            .unwrap();
        assert_eq!(c.batching.max_rows, 7);
    }

    #[test]
    fn tls_options_have_flat_names() {
        let from_toml = ConfigBuilder::new()
            .merge_toml(
                r#"
                table = "t"
                [clickhouse]
                url = "https://ch:8443"
                [tls]
                ca_file = "/etc/ca.pem"
                cert_file = "/etc/client.pem"
                key_file = "/etc/client.key"
                insecure_skip_verify = true
                "#,
            )
            .build()
            .unwrap();
        let from_flat = ConfigBuilder::new()
            .set("table", "t")
            .set("url", "https://ch:8443")
            .set("tls_ca_file", "/etc/ca.pem")
            .set("tls_cert_file", "/etc/client.pem")
            .set("tls_key_file", "/etc/client.key")
            .set("tls_insecure_skip_verify", true)
            .build()
            .unwrap();
        let from_env = ConfigBuilder::new()
            .set("table", "t")
            .merge_vars(|name| {
                match name {
                    "CHASYNC_URL" => Some("https://ch:8443"),
                    "CHASYNC_TLS_CA_FILE" => Some("/etc/ca.pem"),
                    "CHASYNC_TLS_CERT_FILE" => Some("/etc/client.pem"),
                    "CHASYNC_TLS_KEY_FILE" => Some("/etc/client.key"),
                    "CHASYNC_TLS_INSECURE_SKIP_VERIFY" => Some("1"),
                    _ => None,
                }
                .map(str::to_string)
            })
            .build()
            .unwrap();
        assert_eq!(from_toml, from_flat);
        assert_eq!(from_toml, from_env);
        assert_eq!(
            from_toml.tls.ca_file.as_deref(),
            Some(std::path::Path::new("/etc/ca.pem"))
        );
        assert!(from_toml.tls.insecure_skip_verify);
        let e = ConfigBuilder::new()
            .set("table", "t")
            .set("tls_cert_file", "/etc/client.pem")
            .build()
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("tls_cert_file and tls_key_file go together"),
            "{e}"
        );
        let e = ConfigBuilder::new()
            .merge_toml("table = \"t\"\n[tls]\nca = \"x\"")
            .build()
            .unwrap_err()
            .to_string();
        assert!(e.contains("ca"), "{e}");
    }

    #[test]
    fn mistakes_are_named() {
        let err = |b: ConfigBuilder| b.build().unwrap_err().to_string();
        let e = err(ConfigBuilder::new().set("table", "t").set("max_rowz", 1));
        assert!(e.contains("unknown option \"max_rowz\""), "{e}");
        assert!(e.contains("max_rows"), "{e}");
        let e = err(ConfigBuilder::new()
            .set("table", "t")
            .set("linger", "5 parsecs"));
        assert!(e.contains("unknown unit"), "{e}");
        let e = err(ConfigBuilder::new().merge_toml("table = \"t\"\n[batching]\nmax_rowz = 1"));
        assert!(e.contains("max_rowz"), "{e}");
        let e = err(ConfigBuilder::new()
            .set("table", "t")
            .set("max_concurrency", 0));
        assert!(e.contains("max_concurrency"), "{e}");
    }

    #[test]
    fn environment_with_clickhouse_fallbacks() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                vars.iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        let c = ConfigBuilder::new()
            .set("table", "t")
            .merge_vars(env(&[
                ("CLICKHOUSE_URL", "http://ch:8123"),
                ("CLICKHOUSE_USER", "u"),
                ("CHASYNC_USER", "v"),
                ("CHASYNC_MAX_ROWS", "12"),
            ]))
            .build()
            .unwrap();
        assert_eq!(c.clickhouse.url, vec!["http://ch:8123"]);
        assert_eq!(c.clickhouse.user.as_deref(), Some("v"), "CHASYNC_ wins");
        assert_eq!(c.batching.max_rows, 12);
    }

    #[test]
    fn credentials_in_urls_are_taken_out_and_decoded() {
        let c = ConfigBuilder::new()
            .set("table", "t")
            .set("url", "http://lo%40der:p%3Aw%2Fd@ch:8123/")
            .build()
            .unwrap();
        assert_eq!(c.clickhouse.url, vec!["http://ch:8123"]);
        assert_eq!(c.clickhouse.user.as_deref(), Some("lo@der"));
        assert_eq!(c.clickhouse.password.as_ref().unwrap().expose(), "p:w/d");
        let json = serde_json::to_string(&c).unwrap();
        assert!(!json.contains("p:w/d") && !json.contains("p%3Aw"), "{json}");
        // A user alone; several URLs with the same credentials; text with commas.
        let c = ConfigBuilder::new()
            .set("table", "t")
            .set_text("url", "http://u@a:1, http://u@b:1")
            .build()
            .unwrap();
        assert_eq!(c.clickhouse.url, vec!["http://a:1", "http://b:1"]);
        assert_eq!(c.clickhouse.user.as_deref(), Some("u"));
        assert!(c.clickhouse.password.is_none());
        // In a file too, and the same user given twice is no conflict.
        let c = ConfigBuilder::new()
            .merge_toml("table = \"t\"\n[clickhouse]\nurl = \"http://u:pw@h:1\"\nuser = \"u\"\n")
            .build()
            .unwrap();
        assert_eq!(
            (c.clickhouse.url[0].as_str(), c.clickhouse.user.as_deref()),
            ("http://h:1", Some("u"))
        );
        assert_eq!(c.clickhouse.password.unwrap().expose(), "pw");
    }

    #[test]
    fn credentials_that_conflict_are_refused_without_the_password() {
        let err = |b: ConfigBuilder| b.set("table", "t").build().unwrap_err().to_string();
        // A different user or password of the same layer, in either order.
        let e = err(ConfigBuilder::new()
            .set("url", "http://a:secret1@h:1")
            .set("user", "b"));
        assert!(e.contains("\"a\"") && e.contains("\"b\""), "{e}");
        let e = err(ConfigBuilder::new()
            .set("user", "b")
            .set("url", "http://a:secret1@h:1"));
        assert!(e.contains("user"), "{e}");
        let e = err(ConfigBuilder::new()
            .set("url", "http://a:secret1@h:1")
            .set("password", "secret2"));
        assert!(e.contains("password"), "{e}");
        assert!(!e.contains("secret1") && !e.contains("secret2"), "{e}");
        let e = err(ConfigBuilder::new()
            .set("password", "secret2")
            .set("url", "http://a:secret1@h:1"));
        assert!(!e.contains("secret1") && !e.contains("secret2"), "{e}");
        let e = err(ConfigBuilder::new()
            .merge_toml("[clickhouse]\nurl = \"http://a:secret1@h:1\"\npassword = \"secret2\"\n"));
        assert!(e.contains("password") && !e.contains("secret"), "{e}");
        // URLs with different credentials.
        let e = err(ConfigBuilder::new().set("url", vec!["http://a:x@h:1", "http://b:x@h:2"]));
        assert!(e.contains("different credentials"), "{e}");
        // A bad escape, named without the password.
        let e = err(ConfigBuilder::new().set("url", "http://a:sec%zzret@h:1"));
        assert!(
            e.contains("two hexadecimal digits") && !e.contains("sec"),
            "{e}"
        );
        // A later layer overrides an earlier one's URL credentials, and the other way round.
        let c = ConfigBuilder::new()
            .set("url", "http://a:secret1@h:1")
            .next_layer()
            .set("user", "b")
            .set("password", "secret2")
            .set("table", "t")
            .build()
            .unwrap();
        assert_eq!(c.clickhouse.user.as_deref(), Some("b"));
        assert_eq!(c.clickhouse.password.unwrap().expose(), "secret2");
        let c = ConfigBuilder::new()
            .set("user", "b")
            .next_layer()
            .set("url", "http://a:secret1@h:1")
            .set("table", "t")
            .build()
            .unwrap();
        assert_eq!(c.clickhouse.user.as_deref(), Some("a"));
        // A configuration filled in by hand: checked at validation, used by the client.
        let mut c = Config::new("http://a:secret1@h:1", "t");
        assert_eq!(
            c.url_credentials().unwrap().0.as_deref(),
            Some("a"),
            "the URL's user"
        );
        c.clickhouse.user = Some("b".into());
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("user") && !e.contains("secret1"), "{e}");
    }

    #[test]
    fn environment_layers_and_their_errors() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                vars.iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        let build = |vars| {
            ConfigBuilder::new()
                .set("table", "t")
                .merge_vars(env(vars))
                .build()
        };
        // CHASYNC_USER wins over the user of CLICKHOUSE_URL; CLICKHOUSE_URL's password stays.
        let c = build(&[
            ("CLICKHOUSE_URL", "http://a:pw@ch:8123"),
            ("CHASYNC_USER", "b"),
            ("CHASYNC_DATABASE", "db1"),
            ("CLICKHOUSE_DATABASE", "db2"),
            ("CHASYNC_DLQ_DIR", "/tmp/dlq"),
        ])
        .unwrap();
        assert_eq!(c.clickhouse.url, vec!["http://ch:8123"]);
        assert_eq!(c.clickhouse.user.as_deref(), Some("b"));
        assert_eq!(c.clickhouse.password.unwrap().expose(), "pw");
        assert_eq!(c.clickhouse.database, "db1");
        assert_eq!(c.spool.dir, PathBuf::from("/tmp/dlq"));
        // CHASYNC_SPOOL_DIR wins over its alias; CLICKHOUSE_DATABASE alone counts.
        let c = build(&[
            ("CHASYNC_DLQ_DIR", "/tmp/dlq"),
            ("CHASYNC_SPOOL_DIR", "/tmp/spool"),
            ("CLICKHOUSE_DATABASE", "db2"),
            ("CLICKHOUSE_USER", "u"),
            ("CLICKHOUSE_PASSWORD", "p"),
        ])
        .unwrap();
        assert_eq!(c.spool.dir, PathBuf::from("/tmp/spool"));
        assert_eq!(c.clickhouse.database, "db2");
        assert_eq!(c.clickhouse.user.as_deref(), Some("u"));
        // Conflicts inside one family of variables are refused.
        let e = build(&[
            ("CLICKHOUSE_URL", "http://a:secret@ch:8123"),
            ("CLICKHOUSE_USER", "b"),
        ])
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("CLICKHOUSE_USER") && !e.contains("secret"),
            "{e}"
        );
        // A bad value names its variable and option.
        let e = build(&[("CHASYNC_MAX_ROWS", "many")])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("environment variable CHASYNC_MAX_ROWS: max_rows:"),
            "{e}"
        );
        // The environment is a layer: flags set after it win, URL credentials included.
        let c = ConfigBuilder::new()
            .set("table", "t")
            .merge_vars(env(&[("CLICKHOUSE_USER", "env-user")]))
            .set("url", "http://flag-user:x@h:1")
            .build()
            .unwrap();
        assert_eq!(c.clickhouse.user.as_deref(), Some("flag-user"));
    }

    #[test]
    fn the_user_config_file_is_found_where_convention_says() {
        let dir = tempfile::tempdir().unwrap();
        let (xdg, home) = (dir.path().join("xdg"), dir.path().join("home"));
        let vars = |x: Option<&std::path::Path>| {
            let (x, h) = (
                x.map(|p| p.display().to_string()),
                home.display().to_string(),
            );
            move |name: &str| match name {
                "XDG_CONFIG_HOME" => x.clone(),
                "HOME" => Some(h.clone()),
                _ => None,
            }
        };
        assert_eq!(user_config_file(vars(Some(&xdg))), None);
        let in_home = home.join(".config/chasync/config.toml");
        std::fs::create_dir_all(in_home.parent().unwrap()).unwrap();
        std::fs::write(&in_home, "").unwrap();
        assert_eq!(user_config_file(vars(Some(&xdg))), Some(in_home.clone()));
        let in_xdg = xdg.join("chasync/config.toml");
        std::fs::create_dir_all(in_xdg.parent().unwrap()).unwrap();
        std::fs::write(&in_xdg, "").unwrap();
        assert_eq!(user_config_file(vars(Some(&xdg))), Some(in_xdg));
        assert_eq!(user_config_file(vars(None)), Some(in_home.clone()));
        // A relative XDG_CONFIG_HOME is ignored, as the XDG convention says.
        assert_eq!(
            user_config_file(vars(Some(std::path::Path::new("rel")))),
            Some(in_home)
        );
    }

    #[test]
    fn durations_and_sizes() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("250us").unwrap(), Duration::from_micros(250));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert!(parse_duration("5").unwrap_err().contains("missing unit"));
        assert!(parse_duration("").is_err());
        assert_eq!(parse_bytes("32MiB").unwrap(), 32 << 20);
        assert_eq!(parse_bytes("10MB").unwrap(), 10_000_000);
        assert_eq!(parse_bytes("1.5KiB").unwrap(), 1536);
        assert!(parse_bytes("12 parsecs").is_err());
        // A serialised configuration reads back as itself.
        let mut c = Config::new("http://h:1", "t");
        c.batching.linger = Duration::from_micros(1500);
        let back: Config = serde_json::from_value(serde_json::to_value(&c).unwrap()).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn the_table_of_options_in_the_docs_is_this_vocabulary() {
        let doc = include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../docs/configuration.md"
        ));
        let table = &doc[doc.find("## Options").expect("an options section")..];
        let rows: Vec<(String, String)> = table
            .lines()
            .filter_map(|l| {
                let cells: Vec<&str> = l.split('|').map(str::trim).collect();
                let name = cells.get(1)?.strip_prefix('`')?.strip_suffix('`')?;
                Some((name.to_string(), cells.get(3)?.to_string()))
            })
            .collect();
        let options = Config::options();
        let documented: Vec<&str> = rows.iter().map(|(n, _)| n.as_str()).collect();
        let names: Vec<&str> = options.iter().map(|(_, n, _)| n.as_str()).collect();
        for n in &names {
            assert!(
                documented.contains(n),
                "{n} is not in docs/configuration.md"
            );
        }
        for n in &documented {
            assert!(
                names.contains(n),
                "docs/configuration.md lists {n}, no option"
            );
        }
        for (_, name, default) in &options {
            let cell = &rows.iter().find(|(n, _)| n == name).expect("documented").1;
            let expected = match default {
                Value::Null => None,
                Value::String(s) => Some(s.clone()),
                Value::Bool(b) => Some(b.to_string()),
                Value::Number(n) => Some(n.to_string()),
                Value::Array(a) => a.first().and_then(Value::as_str).map(str::to_string),
                Value::Object(m) if m.is_empty() => None,
                other => panic!("{name}: a default of an unexpected kind: {other}"),
            };
            match expected {
                Some(text) => assert!(
                    cell.contains(&text),
                    "{name}: default {text}, the docs say {cell}"
                ),
                None => assert!(
                    cell.starts_with('('),
                    "{name}: no default, the docs say {cell}"
                ),
            }
        }
    }

    #[test]
    fn every_option_has_a_flat_name() {
        let names: Vec<String> = Config::options().into_iter().map(|(_, k, _)| k).collect();
        for n in &names {
            assert!(locate(n).is_some(), "{n}");
        }
        let unique: std::collections::HashSet<_> = names.iter().collect();
        assert_eq!(unique.len(), names.len(), "{names:?}");
        assert!(names.contains(&"spool_dir".to_string()));
        assert!(names.contains(&"table".to_string()));
    }
}
