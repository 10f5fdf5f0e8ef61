//! The server crashes (SIGKILL) and comes back during a stream: nothing lost, nothing doubled.

use chasync_testkit as common;

use std::time::Duration;

use chasync_core::{Config, Ingestor};
use common::server::PrivateServer;

#[derive(clickhouse::Row, serde::Serialize)]
struct Ev {
    id: u64,
    name: String,
    value: f64,
}

/// Rows in the stream; `CHASYNC_SOAK_ROWS` makes it longer for a local soak run.
fn total_rows() -> u64 {
    std::env::var("CHASYNC_SOAK_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000_000)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_killed_and_restarted_three_times_loses_and_doubles_nothing() {
    let server = PrivateServer::start();
    let client = clickhouse::Client::default().with_url(server.url());
    client
        .query(
            "CREATE TABLE default.t (id UInt64, name String, value Float64, _insert_id UUID) \
             ENGINE = MergeTree ORDER BY id SETTINGS non_replicated_deduplication_window = 10000",
        )
        .execute()
        .await
        .unwrap();
    let dlq = tempfile::tempdir().unwrap();
    let mut c = Config::new(server.url(), "t");
    c.spool.dir = dlq.path().to_path_buf();
    c.batching.max_rows = 20_000;
    c.delivery.max_concurrency = 4;
    c.batching.queue_rows = 20_000;
    c.delivery.max_attempts = 100;
    c.delivery.initial_backoff = Duration::from_millis(100);
    c.delivery.max_backoff = Duration::from_millis(500);
    c.clickhouse.insert_timeout = Duration::from_secs(10);
    let ing = Ingestor::<Ev>::start(c).await.unwrap();
    let total = total_rows();
    let h = ing.handle();
    let producer = tokio::spawn(async move {
        for id in 0..total {
            h.send(Ev {
                id,
                name: format!("n{id}"),
                value: id as f64 / 8.0,
            })
            .await
            .unwrap();
        }
    });
    // Kill the server three times while rows stream, once a quarter of the stream has been
    // accepted since the last restart.
    let h = ing.handle();
    for k in 1..=3u64 {
        while h.stats().rows_accepted < total * k / 4 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        server.kill();
        tokio::time::sleep(Duration::from_millis(500)).await;
        server.restart();
    }
    producer.await.unwrap();
    let stats = ing.shutdown().await.unwrap();
    assert_eq!(stats.rows_dead_lettered, 0, "{stats:?}");
    assert_eq!(stats.rows_committed, total);
    assert!(
        stats.failed_attempts > 0,
        "the kills never hit an insert: {stats:?}"
    );
    let count: u64 = client
        .query("SELECT count() FROM default.t")
        .fetch_one()
        .await
        .unwrap();
    let distinct: u64 = client
        .query("SELECT uniqExact(id) FROM default.t")
        .fetch_one()
        .await
        .unwrap();
    let hash: u64 = client
        .query("SELECT sum(cityHash64(id, name, value)) FROM default.t")
        .fetch_one()
        .await
        .unwrap();
    let expected: u64 = client
        .query(&format!(
            "SELECT sum(cityHash64(number, concat('n', toString(number)), number / 8)) \
             FROM numbers({total})"
        ))
        .fetch_one()
        .await
        .unwrap();
    assert_eq!((count, distinct), (total, total), "{stats:?}");
    assert_eq!(hash, expected);
}
