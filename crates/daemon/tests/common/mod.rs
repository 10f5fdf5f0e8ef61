//! Test support: the real ClickHouse (`CLICKHOUSE_URL`), a database per test, the built
//! `chasyncd` binary on a port of its own, a small HTTP client, and a TCP proxy that can
//! take ClickHouse "down" (refusing and cutting connections) and bring it back.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chasync_core::tls::Connector;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub use chasync_testkit::{TestDb, url};

/// Daemon-test tables and queries on a [`TestDb`].
pub trait DaemonDb {
    /// `CREATE TABLE name (id UInt64, name String, _insert_id UUID)` with a dedup window.
    async fn events(&self, table: &str);
    /// The ids in `table`, sorted.
    async fn ids(&self, table: &str) -> Vec<u64>;
}

impl DaemonDb for TestDb {
    async fn events(&self, table: &str) {
        self.exec(&format!(
            "CREATE TABLE {table} (id UInt64, name String, _insert_id UUID) \
             ENGINE = MergeTree ORDER BY id SETTINGS non_replicated_deduplication_window = 10000"
        ))
        .await;
    }

    async fn ids(&self, table: &str) -> Vec<u64> {
        self.client
            .query(&format!("SELECT id FROM {table} ORDER BY id"))
            .fetch_all::<u64>()
            .await
            .unwrap()
    }
}

/// A running `chasyncd`.
pub struct Daemon {
    pub child: Child,
    pub addr: String,
    pub log: Arc<Mutex<Vec<String>>>,
}

pub struct DaemonOpts<'a> {
    pub urls: Vec<String>,
    pub spool: &'a Path,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub config: Option<String>,
    /// Run the daemon with this limit of open files (soft and hard).
    pub fd_limit: Option<u64>,
}

impl<'a> DaemonOpts<'a> {
    pub fn new(spool: &'a Path) -> Self {
        Self {
            urls: vec![url()],
            spool,
            args: Vec::new(),
            env: Vec::new(),
            config: None,
            fd_limit: None,
        }
    }

    pub fn arg(mut self, a: &str) -> Self {
        self.args.push(a.to_string());
        self
    }

    /// A TOML file with this text (besides what the flags say).
    pub fn config(mut self, toml: &str) -> Self {
        self.config = Some(toml.to_string());
        self
    }
}

impl Daemon {
    pub fn start(opts: DaemonOpts) -> Self {
        let mut cmd = match opts.fd_limit {
            None => Command::new(env!("CARGO_BIN_EXE_chasyncd")),
            // The shell sets the limit and becomes the daemon (same process id).
            Some(n) => {
                let mut c = Command::new("sh");
                c.arg("-c")
                    .arg(format!("ulimit -n {n} && exec \"$0\" \"$@\""))
                    .arg(env!("CARGO_BIN_EXE_chasyncd"));
                c
            }
        };
        cmd.arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--spool-dir")
            .arg(opts.spool);
        for u in &opts.urls {
            cmd.arg("--url").arg(u);
        }
        if let Some(text) = &opts.config {
            let path = opts.spool.with_extension("toml");
            std::fs::write(&path, text).unwrap();
            cmd.arg("--config").arg(&path);
        }
        cmd.args(&opts.args);
        cmd.env_remove("CHASYNCD_TOKEN")
            .env_remove("CHASYNCD_URL")
            .env("RUST_LOG", "info");
        for (k, v) in &opts.env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn chasyncd");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let l = log.clone();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if line.contains("chasyncd listening")
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(addr_of(&line));
                }
                if std::env::var("CHASYNCD_TEST_LOG").is_ok() {
                    eprintln!("[chasyncd] {line}");
                }
                l.lock().unwrap().push(line);
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                panic!("chasyncd did not start: {:#?}", log.lock().unwrap());
            }
        };
        Self { child, addr, log }
    }

    pub fn url(&self, path_and_query: &str) -> String {
        format!("http://{}{path_and_query}", self.addr)
    }

    /// The URL of its HTTPS listener (by name: the test certificates name `localhost`).
    pub fn https_url(&self, path_and_query: &str) -> String {
        let port = self.addr.rsplit(':').next().unwrap();
        format!("https://localhost:{port}{path_and_query}")
    }

    /// Sends SIGHUP.
    pub fn hangup(&self) {
        let st = Command::new("kill")
            .arg("-HUP")
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(st.success());
    }

    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// SIGKILL: a crash.
    pub fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM, then wait for the exit.
    pub fn terminate(mut self, within: Duration) -> (ExitStatus, String) {
        let st = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(st.success());
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // Let the log reader catch up.
                std::thread::sleep(Duration::from_millis(50));
                return (status, self.log_text());
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("chasyncd did not exit after SIGTERM:\n{}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn addr_of(line: &str) -> String {
    // Text logs: `addr=127.0.0.1:1234`; JSON logs: `"addr":"127.0.0.1:1234"`.
    if let Some(i) = line.find("addr=") {
        return line[i + 5..].split_whitespace().next().unwrap().to_string();
    }
    let v: serde_json::Value = serde_json::from_str(line).expect("a JSON log line");
    v["fields"]["addr"].as_str().unwrap().to_string()
}

/// A tiny HTTP client (HTTPS too).
#[derive(Clone)]
pub struct Http {
    client: Client<Connector, Full<Bytes>>,
}

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub body: String,
    pub headers: hyper::HeaderMap,
}

impl Default for Http {
    fn default() -> Self {
        Self::new()
    }
}

impl Http {
    pub fn new() -> Self {
        Self::with_tls(&chasync_core::Tls::default())
    }

    /// A client whose `https://` requests trust the CA of `ca_file`.
    pub fn trusting(ca_file: &Path) -> Self {
        let mut tls = chasync_core::Tls::default();
        tls.ca_file = Some(ca_file.to_path_buf());
        Self::with_tls(&tls)
    }

    fn with_tls(tls: &chasync_core::Tls) -> Self {
        let connector = chasync_core::tls::connector(tls, Duration::from_secs(5)).unwrap();
        Self {
            client: Client::builder(TokioExecutor::new()).build(connector),
        }
    }

    pub async fn request(
        &self,
        method: &str,
        url: &str,
        body: impl Into<Bytes>,
        headers: &[(&str, &str)],
    ) -> Result<Resp, String> {
        let mut req = hyper::Request::builder().method(method).uri(url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Full::new(body.into())).unwrap();
        let resp = self.client.request(req).await.map_err(|e| {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                text.push_str(&format!(": {s}"));
                source = s.source();
            }
            text
        })?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok(Resp {
            status,
            body: String::from_utf8_lossy(&body).into_owned(),
            headers,
        })
    }

    pub async fn post(&self, url: &str, body: impl Into<Bytes>) -> Resp {
        self.request("POST", url, body, &[]).await.unwrap()
    }

    pub async fn get(&self, url: &str) -> Resp {
        self.request("GET", url, Bytes::new(), &[]).await.unwrap()
    }
}

/// NDJSON rows `{"id": i, "name": "n<i>"}` for ids in `ids`.
pub fn rows(ids: impl IntoIterator<Item = u64>) -> String {
    let mut s = String::new();
    for i in ids {
        s.push_str(&format!("{{\"id\":{i},\"name\":\"n{i}\"}}\n"));
    }
    s
}

/// The value of a metric line `name value` in a Prometheus text.
pub fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} not in\n{text}"))
}

/// Polls until `f` is true, at most `within`.
pub async fn eventually<F, Fut>(within: Duration, what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A TCP proxy in front of ClickHouse that can be taken down: while down it resets new
/// connections at once and cuts the ones it carries, as a dead server would.
pub struct Switch {
    pub addr: std::net::SocketAddr,
    down: watch::Sender<bool>,
    pub refused: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Switch {
    pub async fn start(upstream: &str) -> Self {
        let upstream: std::net::SocketAddr = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (down, down_rx) = watch::channel(false);
        let refused = Arc::new(AtomicU64::new(0));
        let r = refused.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                if *down_rx.borrow() {
                    r.fetch_add(1, Ordering::Relaxed);
                    #[allow(deprecated)]
                    let _ = client.set_linger(Some(Duration::ZERO));
                    drop(client);
                    continue;
                }
                let mut down_rx = down_rx.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let mut client = client;
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = down_rx.wait_for(|d| *d) => {
                            #[allow(deprecated)]
                            let _ = client.set_linger(Some(Duration::ZERO));
                        }
                    }
                    let _ = client.shutdown().await;
                });
            }
        });
        Self {
            addr,
            down,
            refused,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set_down(&self, down: bool) {
        self.down.send_replace(down);
    }
}

impl Drop for Switch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A fresh spool directory.
pub fn spool() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    (dir, spool)
}

/// A Python with aiohttp: a venv under `~/.cache/chasync/`, made (and aiohttp installed from
/// PyPI) on first use. `None` when that cannot be done.
pub fn python_with_aiohttp() -> Option<PathBuf> {
    let home = std::env::var("HOME").ok()?;
    let venv = PathBuf::from(home).join(".cache/chasync/daemon-test-venv");
    let python = venv.join("bin/python");
    let has = |p: &Path| {
        Command::new(p)
            .args(["-c", "import aiohttp"])
            .status()
            .is_ok_and(|s| s.success())
    };
    if has(&python) {
        return Some(python);
    }
    let ok = Command::new("python3")
        .arg("-m")
        .arg("venv")
        .arg(&venv)
        .status()
        .is_ok_and(|s| s.success())
        && Command::new(venv.join("bin/pip"))
            .args([
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "aiohttp",
            ])
            .status()
            .is_ok_and(|s| s.success());
    (ok && has(&python)).then_some(python)
}
