//! The official Rust client (`clickhouse` crate) pointed at `chasyncd` unchanged: its schema
//! validation (a `DESCRIBE` passed through), `RowBinaryWithNamesAndTypes` (or `RowBinary`)
//! inserts with lz4 (`decompress=1`), queries, and ClickHouse's own answer to a wrong password.
//! Every insert lands the same rows as the same client inserting into ClickHouse directly.

mod common;

use std::time::Duration;

use clickhouse::{Compression, Row};
use common::{Daemon, DaemonOpts, TestDb, spool};
use serde::{Deserialize, Serialize};

#[derive(Row, Serialize, Deserialize, Clone, Debug, PartialEq)]
struct Event {
    id: u64,
    name: String,
    ts: u32,
    score: f64,
    tags: Vec<String>,
    maybe: Option<i32>,
}

fn events(range: std::ops::Range<u64>) -> Vec<Event> {
    range
        .map(|i| Event {
            id: i,
            name: format!("name \"{i}\"\t\n"),
            ts: 1_700_000_000 + i as u32,
            score: i as f64 / 7.0,
            tags: (0..i % 4).map(|k| format!("t{k}")).collect(),
            maybe: (i % 3 != 0).then_some(-(i as i32)),
        })
        .collect()
}

const SCHEMA: &str = "(id UInt64, name String, ts DateTime('UTC'), score Float64, \
                      tags Array(String), maybe Nullable(Int32)) ENGINE = MergeTree ORDER BY id \
                      SETTINGS non_replicated_deduplication_window = 1000";

async fn insert_all(client: &clickhouse::Client, table: &str, rows: &[Event]) {
    for chunk in rows.chunks(700) {
        let mut insert = client.insert::<Event>(table).await.expect("insert");
        for row in chunk {
            insert.write(row).await.expect("write");
        }
        insert.end().await.expect("end");
    }
}

/// `count()` and an order-independent checksum of every column.
async fn fingerprint(db: &TestDb, table: &str) -> (u64, u64) {
    let count = db.u64(&format!("SELECT count() FROM {table}")).await;
    let sum = db
        .u64(&format!(
            "SELECT sum(cityHash64(id, name, ts, score, tags, ifNull(toString(maybe), 'null'))) FROM {table}"
        ))
        .await;
    (count, sum)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_clickhouse_crate_inserts_and_queries_through_the_daemon() {
    let db = TestDb::new("crate").await;
    db.exec(&format!("CREATE TABLE direct {SCHEMA}")).await;
    db.exec(&format!("CREATE TABLE via {SCHEMA}")).await;
    db.exec(&format!("CREATE TABLE plain {SCHEMA}")).await;
    let (_tmp, spool) = spool();
    let d = Daemon::start(
        DaemonOpts::new(&spool).config("[batching]\nlinger = \"50ms\"\nmax_rows = 100000\n"),
    );
    let rows = events(0..3000);

    let direct = common::url();
    let direct = clickhouse::Client::default()
        .with_url(direct)
        .with_database(&db.name)
        .with_setting("async_insert", "0")
        .with_compression(Compression::Lz4);
    insert_all(&direct, "direct", &rows).await;

    // Validation on (the default): DESCRIBE, then RowBinaryWithNamesAndTypes, lz4-framed.
    let via = clickhouse::Client::default()
        .with_url(d.url(""))
        .with_database(&db.name)
        .with_compression(Compression::Lz4);
    insert_all(&via, "via", &rows).await;
    // Validation off: plain RowBinary.
    let plain = via.clone().with_validation(false);
    insert_all(&plain, "plain", &rows).await;

    // A query through the daemon is ClickHouse's answer.
    let mut back = via
        .query("SELECT ?fields FROM direct WHERE id < 5 ORDER BY id")
        .fetch_all::<Event>()
        .await
        .expect("a query through the daemon");
    back.sort_by_key(|e| e.id);
    assert_eq!(back, rows[..5].to_vec());

    let (status, log) = d.terminate(Duration::from_secs(30));
    assert!(status.success(), "{log}");
    let want = fingerprint(&db, "direct").await;
    assert_eq!(want.0, 3000);
    assert_eq!(fingerprint(&db, "via").await, want);
    assert_eq!(fingerprint(&db, "plain").await, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_clickhouse_crate_hears_clickhouse_s_answer_to_a_wrong_password() {
    let db = TestDb::new("cratepw").await;
    db.exec(&format!("CREATE TABLE t {SCHEMA}")).await;
    let (_tmp, spool) = spool();
    let d = Daemon::start(DaemonOpts::new(&spool));
    let user = std::env::var("CH_TEST_USER").unwrap_or_else(|_| "chasync_test".into());
    let password = std::env::var("CH_TEST_PASSWORD").unwrap_or_else(|_| "chasync-secret".into());
    let client = |password: &str| {
        clickhouse::Client::default()
            .with_url(d.url(""))
            .with_database(&db.name)
            .with_user(&user)
            .with_password(password)
            .with_compression(Compression::Lz4)
            .with_validation(false)
    };
    let rows = events(0..10);
    let wrong = client("not the password");
    let mut insert = wrong.insert::<Event>("t").await.unwrap();
    for row in &rows {
        insert.write(row).await.unwrap();
    }
    let err = insert
        .end()
        .await
        .expect_err("a wrong password must be refused");
    let text = err.to_string();
    assert!(
        text.contains("Code: 516") && text.contains("AUTHENTICATION_FAILED"),
        "{text}"
    );
    assert!(!text.contains("not the password"), "{text}");
    // The right one lands, as that user.
    insert_all(&client(&password), "t", &rows).await;
    let (status, log) = d.terminate(Duration::from_secs(30));
    assert!(status.success(), "{log}");
    assert_eq!(db.u64("SELECT count() FROM t").await, 10);
    db.exec("SYSTEM FLUSH LOGS").await;
    let users = db
        .strings(&format!(
            "SELECT DISTINCT user FROM system.query_log WHERE type = 'QueryFinish' \
             AND query_kind = 'Insert' AND has(tables, '{}.t')",
            db.name
        ))
        .await;
    assert_eq!(users, vec![user]);
}
