//! Test support: the real ClickHouse of `scripts/clickhouse.sh`, a database per test, and a
//! fault-injecting TCP proxy.
#![allow(dead_code)]

pub mod proxy;
pub mod server;

use std::sync::atomic::{AtomicU64, Ordering};

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

/// A database of its own for one test, dropped when the value is dropped.
pub struct TestDb {
    pub name: String,
    pub client: clickhouse::Client,
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

impl TestDb {
    pub async fn new(tag: &str) -> Self {
        let name = format!(
            "chasync_test_{tag}_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ) + &format!("_{:08x}", rand::random::<u32>());
        let client = client();
        client
            .query(&format!("CREATE DATABASE {name}"))
            .execute()
            .await
            .expect(
                "cannot create the test database: is ClickHouse running? (just clickhouse-start)",
            );
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

    /// A config for `table` in this database.
    pub fn config(&self, table: &str, dlq: &std::path::Path) -> chasync_core::Config {
        let mut c = chasync_core::Config::new(url(), table);
        c.database = self.name.clone();
        c.dead_letter_dir = dlq.to_path_buf();
        c
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop runs inside the test's runtime: use a thread with a runtime of its own.
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
