//! Helpers of the Native integration tests: a throwaway database on the real server named by
//! `CLICKHOUSE_URL` (default `http://127.0.0.1:8123`).

#![allow(dead_code)]

use std::sync::Arc;

use chasync_core::DynRow;
use chasync_core::TableSchema;
use chasync_core::{EncodedNative, NativeBatch, NativeOptions};
use clickhouse::Client;

/// The server URL.
pub fn url() -> String {
    std::env::var("CLICKHOUSE_URL").unwrap_or_else(|_| "http://127.0.0.1:8123".to_owned())
}

/// A database created for one test and dropped when this is dropped.
pub struct TestDb {
    pub client: Client,
    pub name: String,
}

impl TestDb {
    pub async fn new() -> TestDb {
        let client = Client::default()
            .with_url(url())
            .with_setting("allow_suspicious_low_cardinality_types", "1");
        let name = format!("chasync_test_{:016x}", rand::random::<u64>());
        client
            .query_raw(&format!("CREATE DATABASE `{name}`"))
            .execute()
            .await
            .unwrap_or_else(|e| panic!("cannot create a database on {}: {e}", url()));
        TestDb { client, name }
    }

    /// Runs one statement; `{db}` is replaced with the database name.
    pub async fn exec(&self, sql: &str) {
        let sql = sql.replace("{db}", &self.name);
        self.client
            .query_raw(&sql)
            .execute()
            .await
            .unwrap_or_else(|e| panic!("{e}\nSQL: {sql}"));
    }

    /// The raw output of a query in `format`.
    pub async fn fetch_text(&self, sql: &str, format: &str) -> String {
        let sql = sql.replace("{db}", &self.name);
        let bytes = self
            .client
            .query_raw(&sql)
            .fetch_bytes(format)
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .collect()
            .await
            .unwrap_or_else(|e| panic!("{e}\nSQL: {sql}"));
        String::from_utf8(bytes.to_vec()).expect("UTF-8 output")
    }

    /// The rows of a query as JSONEachRow, parsed into dynamic rows.
    pub async fn fetch_rows(&self, sql: &str) -> Vec<DynRow> {
        self.fetch_text(sql, "JSONEachRow")
            .await
            .lines()
            .map(|l| DynRow::from_json_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }

    /// One value of a query, as text.
    pub async fn scalar(&self, sql: &str) -> String {
        self.fetch_text(sql, "TSVRaw").await.trim_end().to_owned()
    }

    pub async fn schema(&self, table: &str) -> Arc<TableSchema> {
        chasync_core::Catalog::with_client(self.client.clone(), std::time::Duration::from_secs(30))
            .table(&self.name, table)
            .await
            .expect("schema")
    }

    /// Sends the encoded batch with the statement the engine uses.
    pub async fn insert(
        &self,
        schema: &TableSchema,
        encoded: EncodedNative,
    ) -> Result<(), clickhouse::error::Error> {
        let mut insert = self
            .client
            .insert_formatted_with(encoded.insert_sql(schema));
        insert.send(encoded.bytes).await?;
        insert.end().await
    }

    /// Encodes `rows` for `table` and inserts them; panics on any error.
    pub async fn insert_rows(&self, table: &str, rows: &[DynRow]) {
        self.insert_rows_with(table, rows, NativeOptions::default(), None)
            .await
    }

    pub async fn insert_rows_with(
        &self,
        table: &str,
        rows: &[DynRow],
        opts: NativeOptions,
        insert_id: Option<uuid::Uuid>,
    ) {
        let schema = self.schema(table).await;
        let mut batch = NativeBatch::new(schema.clone(), opts);
        for (i, r) in rows.iter().enumerate() {
            batch
                .push_row(r)
                .unwrap_or_else(|e| panic!("row {i} {r:?}: {e}"));
        }
        let encoded = batch.finish(insert_id);
        self.insert(&schema, encoded)
            .await
            .unwrap_or_else(|e| panic!("insert into {table}: {e}"));
    }

    /// `(sum(cityHash64(tuple(*))), count())` of a table.
    pub async fn hash(&self, table: &str) -> (u64, u64) {
        self.client
            .query_raw(&format!(
                "SELECT sum(cityHash64(tuple(*))), count() FROM `{}`.`{table}`",
                self.name
            ))
            .fetch_one::<(u64, u64)>()
            .await
            .expect("hash")
    }
}

impl TestDb {
    /// Asserts that each column hashes the same in both tables (names the first mismatch
    /// and shows a differing row).
    pub async fn assert_same_columns(&self, a: &str, b: &str, columns: &[&str]) {
        for c in columns {
            let q =
                |t: &str| format!("SELECT sum(cityHash64(tuple(`{c}`))), count() FROM {{db}}.{t}");
            let (x, y) = (self.scalar(&q(a)).await, self.scalar(&q(b)).await);
            if x != y {
                let diff = self
                    .fetch_text(
                        &format!(
                            "SELECT `{c}` FROM {{db}}.{a} EXCEPT SELECT `{c}` FROM {{db}}.{b} LIMIT 3"
                        ),
                        "JSONEachRow",
                    )
                    .await;
                let diff2 = self
                    .fetch_text(
                        &format!(
                            "SELECT `{c}` FROM {{db}}.{b} EXCEPT SELECT `{c}` FROM {{db}}.{a} LIMIT 3"
                        ),
                        "JSONEachRow",
                    )
                    .await;
                panic!(
                    "column {c} differs between {a} and {b}:\n{a} only: {diff}\n{b} only: {diff2}"
                );
            }
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // A new client: the test's one may hold pooled connections of a runtime that is
        // blocked right now (current-thread runtime), which would deadlock.
        let client = Client::default().with_url(url());
        let sql = format!("DROP DATABASE IF EXISTS `{}` SYNC", self.name);
        // A fresh runtime on another thread, so this works inside and outside of tokio.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async { client.query_raw(&sql).execute().await })
        })
        .join();
    }
}
