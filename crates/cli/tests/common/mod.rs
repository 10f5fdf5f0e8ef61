//! Test support: the real ClickHouse (`CLICKHOUSE_URL`), a database per test, and the binary.
#![allow(dead_code)]

use std::path::Path;

use assert_cmd::Command;

/// The server under test (`CLICKHOUSE_URL`, default `http://127.0.0.1:8123`).
pub fn url() -> String {
    std::env::var("CLICKHOUSE_URL").unwrap_or_else(|_| "http://127.0.0.1:8123".into())
}

/// A client of the server under test.
pub fn client() -> clickhouse::Client {
    clickhouse::Client::default()
        .with_url(url())
        .with_setting("async_insert", "0")
}

/// The `chasync` binary, pointed at the server under test, with no credentials from the
/// environment, run in `dir` (so a default spool directory lands there).
pub fn chasync(dir: &Path) -> Command {
    let mut cmd = Command::cargo_bin("chasync").expect("the chasync binary");
    cmd.env("CHASYNC_URL", url())
        .env_remove("CHASYNC_USER")
        .env_remove("CHASYNC_PASSWORD")
        .current_dir(dir);
    cmd
}

/// What a run of the binary gave.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The stdout as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.stdout))
    }
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Runs `chasync args...` in `dir`.
pub fn run(dir: &Path, args: &[&str]) -> Run {
    run_cmd(chasync(dir).args(args))
}

/// Runs a prepared command.
pub fn run_cmd(cmd: &mut Command) -> Run {
    let out = cmd.output().expect("run chasync");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A database of its own for one test, dropped when the value is dropped.
pub struct TestDb {
    pub name: String,
    pub client: clickhouse::Client,
}

impl TestDb {
    pub async fn new(tag: &str) -> Self {
        let name = format!(
            "chasync_cli_{tag}_{}",
            uuid::Uuid::new_v4().simple().to_string().get(..12).unwrap()
        );
        let client = client();
        client
            .query(&format!("CREATE DATABASE {name}"))
            .execute()
            .await
            .expect("cannot create the test database: is ClickHouse running at CLICKHOUSE_URL?");
        let client = client.with_database(name.clone());
        Self { name, client }
    }

    pub async fn exec(&self, sql: &str) {
        self.client
            .query(sql)
            .execute()
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    pub async fn u64(&self, sql: &str) -> u64 {
        self.client
            .query(sql)
            .fetch_one::<u64>()
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    pub async fn strings(&self, sql: &str) -> Vec<String> {
        self.client
            .query(sql)
            .fetch_all::<String>()
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// `db.table`.
    pub fn t(&self, table: &str) -> String {
        format!("{}.{table}", self.name)
    }

    /// The (name, type) columns of a table, in order.
    pub async fn columns(&self, table: &str) -> Vec<(String, String)> {
        self.client
            .query(
                "SELECT name, type FROM system.columns WHERE database = ? AND table = ? \
                 ORDER BY position",
            )
            .bind(&self.name)
            .bind(table)
            .fetch_all()
            .await
            .unwrap()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let _ = client()
                    .query(&format!("DROP DATABASE IF EXISTS {name} SYNC"))
                    .execute()
                    .await;
            });
        })
        .join();
    }
}

/// A loopback port where nothing listens.
pub fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}
