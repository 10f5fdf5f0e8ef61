//! Test support of the chasync workspace, shared by the integration tests of every crate:
//! the real ClickHouse under test ([`url`], [`client`]), a database of its own per test
//! ([`TestDb`]), a fault-injecting TCP proxy ([`proxy::FaultProxy`]), private servers that
//! tests kill and restart ([`server::PrivateServer`]), two of them as the shards of a cluster
//! ([`cluster::TwoShards`]), a TLS terminator in front of the server with a certificate
//! authority made per run ([`tls::TlsTerminator`], [`tls::TestCa`]), and message brokers on
//! loopback ([`brokers::Tansu`], [`brokers::Nats`]).

pub mod brokers;
pub mod cluster;
pub mod proxy;
pub mod server;
pub mod tls;

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

/// A database of its own for one test (random name), dropped when the value is dropped.
pub struct TestDb {
    /// The database name.
    pub name: String,
    /// A client whose default database is this one.
    pub client: clickhouse::Client,
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

impl TestDb {
    /// Creates `chasync_test_<tag>_<pid>_<n>_<random>`.
    pub async fn new(tag: &str) -> Self {
        let name = format!(
            "chasync_test_{tag}_{}_{}_{:08x}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            rand::random::<u32>()
        );
        client()
            .query(&format!("CREATE DATABASE {name}"))
            .execute()
            .await
            .expect("cannot create the test database: is ClickHouse running at CLICKHOUSE_URL? (./run clickhouse-start)");
        let client = client().with_database(name.clone());
        Self { name, client }
    }

    /// Runs a statement; panics with the statement on error.
    pub async fn exec(&self, sql: &str) {
        self.client
            .query(sql)
            .execute()
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// A query returning one `UInt64`.
    pub async fn u64(&self, sql: &str) -> u64 {
        self.client
            .query(sql)
            .fetch_one::<u64>()
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// A query returning `String`s.
    pub async fn strings(&self, sql: &str) -> Vec<String> {
        self.client
            .query(sql)
            .fetch_all::<String>()
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// The schema of a table of this database, read by the engine's catalog.
    pub async fn schema(&self, table: &str) -> std::sync::Arc<chasync_core::TableSchema> {
        chasync_core::Catalog::new(&self.config(table, std::path::Path::new("unused")))
            .expect("a catalog")
            .table(&self.name, table)
            .await
            .unwrap_or_else(|e| panic!("schema of {table}: {e}"))
    }

    /// The (name, type) columns of a table of this database, in order.
    pub async fn columns(&self, table: &str) -> Vec<(String, String)> {
        self.schema(table)
            .await
            .columns
            .iter()
            .map(|c| (c.name.clone(), c.type_name.clone()))
            .collect()
    }

    /// `db.table` of a table in this database.
    pub fn t(&self, table: &str) -> String {
        format!("{}.{table}", self.name)
    }

    /// An engine configuration for `table` in this database, spooling to `dlq`.
    pub fn config(&self, table: &str, dlq: &std::path::Path) -> chasync_core::Config {
        let mut c = chasync_core::Config::new(url(), table);
        c.clickhouse.database = self.name.clone();
        c.spool.dir = dlq.to_path_buf();
        c
    }

    /// Inserts into `table` that ClickHouse finished, from `system.query_log`.
    pub async fn inserts(&self, table: &str) -> u64 {
        self.exec("SYSTEM FLUSH LOGS").await;
        self.u64(&format!(
            "SELECT count() FROM system.query_log WHERE type = 'QueryFinish' \
             AND query_kind = 'Insert' AND has(tables, '{}.{table}')",
            self.name
        ))
        .await
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
                .expect("runtime");
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
