//! Fault tolerance against the real server: network faults through a fault-injecting proxy,
//! overload, poison rows, and a dead endpoint.

use chasync_testkit as common;

use std::time::Duration;

use chasync_core::{Config, DeadLetterSpool, ErrorKind, Ingestor};
use common::TestDb;
use common::proxy::{Fault, FaultProxy};

#[derive(clickhouse::Row, serde::Serialize, Clone)]
struct Ev {
    id: u64,
    name: String,
    value: f64,
}

fn ev(id: u64) -> Ev {
    Ev {
        id,
        name: format!("n{id}"),
        value: id as f64 / 4.0,
    }
}

const HASH: &str = "SELECT sum(cityHash64(id, name, value)) FROM t";

fn expected_hash(where_: &str, n: u64) -> String {
    format!(
        "SELECT sum(cityHash64(number, concat('n', toString(number)), number / 4)) \
         FROM numbers({n}) {where_}"
    )
}

async fn table(db: &TestDb, settings: &str) {
    db.exec(&format!(
        "CREATE TABLE t (id UInt64, name String, value Float64, _insert_id UUID) \
         ENGINE = MergeTree ORDER BY id \
         SETTINGS non_replicated_deduplication_window = 100000{settings}"
    ))
    .await;
}

fn retry(c: &mut Config, attempts: u32) {
    c.delivery.max_attempts = attempts;
    c.delivery.initial_backoff = Duration::from_millis(50);
    c.delivery.max_backoff = Duration::from_millis(500);
}

#[tokio::test]
async fn network_faults_lose_nothing_and_double_nothing() {
    let db = TestDb::new("netfaults").await;
    table(&db, "").await;
    let proxy = FaultProxy::start(&common::url(), vec![]).await;
    let dlq = tempfile::tempdir().unwrap();
    let mut c = db.config("t", dlq.path());
    c.clickhouse.url = vec![proxy.url()];
    c.batching.max_rows = 1_000;
    c.delivery.max_concurrency = 2;
    retry(&mut c, 30);
    c.clickhouse.insert_timeout = Duration::from_secs(2);
    let ing = Ingestor::<Ev>::start(c).await.unwrap();
    let h = ing.handle();
    // A first batch, and the engine's background look at what the table guarantees (its
    // metadata queries share the pool): done before the faults, so that inserts meet them.
    for i in 0..1_000 {
        h.send(ev(i)).await.unwrap();
    }
    h.flush().await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while ing.dispatcher().guarantees().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the table was never probed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // New connections from now on meet these faults in turn, then pass.
    tokio::time::sleep(Duration::from_millis(2500)).await; // pooled connections expire
    for fault in [
        Fault::CutResponse,
        Fault::ResetOnAccept,
        Fault::Stall,
        Fault::Delay(Duration::from_millis(30)),
        Fault::CutResponse,
        Fault::ResetOnAccept,
        Fault::Stall,
        Fault::CutResponse,
    ] {
        proxy.push(fault);
    }
    for i in 1_000..100_000 {
        h.send(ev(i)).await.unwrap();
    }
    h.flush().await.unwrap();
    let stats = ing.shutdown().await.unwrap();
    // Every fault was met (pooled connections decide which attempt meets which).
    assert_eq!(proxy.remaining(), 0);
    assert!(stats.retries >= 5, "{stats:?}");
    assert_eq!(stats.rows_dead_lettered, 0);
    assert_eq!(db.u64("SELECT count() FROM t").await, 100_000);
    assert_eq!(db.u64("SELECT uniqExact(id) FROM t").await, 100_000);
    assert_eq!(
        db.u64(HASH).await,
        db.u64(&expected_hash("", 100_000)).await
    );
    // Cut answers were applied by the server; their retries were deduplicated.
    db.exec("SYSTEM FLUSH LOGS").await;
    let deduplicated = db
        .u64(&format!(
            "SELECT count() FROM system.query_log WHERE type = 'QueryFinish' \
             AND query_kind = 'Insert' AND has(databases, '{}') \
             AND ProfileEvents['DuplicatedInsertedBlocks'] > 0",
            db.name
        ))
        .await;
    assert!(deduplicated >= 1, "no retry was deduplicated");
}

#[tokio::test]
async fn a_stalled_server_times_out_and_the_retry_lands_once() {
    let db = TestDb::new("stall").await;
    table(&db, "").await;
    let proxy = FaultProxy::start(&common::url(), vec![]).await;
    let dlq = tempfile::tempdir().unwrap();
    let mut c = db.config("t", dlq.path());
    c.clickhouse.url = vec![proxy.url()];
    retry(&mut c, 5);
    c.clickhouse.insert_timeout = Duration::from_millis(800);
    let ing = Ingestor::<Ev>::start(c).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    proxy.push_insert(Fault::Stall);
    let h = ing.handle();
    for i in 0..1000 {
        h.send(ev(i)).await.unwrap();
    }
    h.flush().await.unwrap();
    let stats = ing.shutdown().await.unwrap();
    assert_eq!(stats.retries, 1, "{stats:?}");
    assert_eq!(db.u64("SELECT count() FROM t").await, 1000);
}

#[tokio::test]
async fn poison_rows_are_isolated_and_the_rest_lands() {
    let db = TestDb::new("poison").await;
    db.exec(
        "CREATE TABLE t (id UInt64, name String, value Float64, _insert_id UUID, \
         CONSTRAINT non_negative CHECK value >= 0) ENGINE = MergeTree ORDER BY id \
         SETTINGS non_replicated_deduplication_window = 100000",
    )
    .await;
    let poison = [7u64, 123_456, 500_000, 500_001, 999_999];
    let dlq = tempfile::tempdir().unwrap();
    let mut c = db.config("t", dlq.path());
    c.batching.max_rows = 100_000;
    retry(&mut c, 5);
    let ing = Ingestor::<Ev>::start(c).await.unwrap();
    let h = ing.handle();
    let n = 1_000_000u64;
    for i in 0..n {
        let mut e = ev(i);
        if poison.contains(&i) {
            e.value = -1.0;
        }
        h.send(e).await.unwrap();
    }
    let err = h.flush().await.unwrap_err();
    assert!(
        matches!(err, chasync_core::Error::DeadLettered { rows: 5, .. }),
        "{err}"
    );
    let stats = ing.shutdown().await.unwrap();
    assert_eq!(stats.rows_dead_lettered, 5, "{stats:?}");
    assert_eq!(stats.rows_committed, n - 5);
    // O(k log N): 5 bad rows in batches of 100k, about 2 inserts per level.
    assert!(stats.batches_split <= 5 * 17, "{stats:?}");
    assert_eq!(db.u64("SELECT count() FROM t").await, n - 5);
    let not_poison = format!(
        "WHERE number NOT IN ({})",
        poison.map(|p| p.to_string()).join(",")
    );
    assert_eq!(
        db.u64(HASH).await,
        db.u64(&expected_hash(&not_poison, n)).await
    );

    let entries = DeadLetterSpool::new(dlq.path()).list().unwrap();
    assert_eq!(entries.len(), 5);
    for e in &entries {
        assert_eq!(e.rows, 1);
        assert_eq!(e.error_kind, ErrorKind::Data);
        assert_eq!(e.code, Some(469), "{}", e.error); // VIOLATED_CONSTRAINT
        assert!(e.error.contains("non_negative"), "{}", e.error);
    }
    // Each entry holds exactly one poison row: decode its id (the first 8 bytes).
    let spool = DeadLetterSpool::new(dlq.path());
    let mut ids: Vec<u64> = entries
        .iter()
        .map(|e| {
            let bytes = spool.payload(e).unwrap();
            u64::from_le_bytes(bytes[..8].try_into().unwrap())
        })
        .collect();
    ids.sort();
    assert_eq!(ids, poison);
}

#[tokio::test]
async fn overload_shrinks_the_concurrency_limit_and_it_recovers() {
    let db = TestDb::new("overload").await;
    // Few parts allowed and merges stopped: once eight parts exist, the server throws
    // TOO_MANY_PARTS (252) on every insert. (Racing the merges instead was flaky: the
    // server's insert delay alone could shrink the limit enough for merges to keep up.)
    // Once the engine has seen refusals, the overload ends and everything lands.
    table(
        &db,
        ", parts_to_throw_insert = 8, parts_to_delay_insert = 4, max_delay_to_insert = 1",
    )
    .await;
    db.exec("SYSTEM STOP MERGES t").await;
    let dlq = tempfile::tempdir().unwrap();
    let mut c = db.config("t", dlq.path());
    c.batching.max_rows = 200;
    c.delivery.max_concurrency = 8;
    c.batching.queue_rows = 1000;
    c.delivery.max_attempts = 100;
    c.delivery.initial_backoff = Duration::from_millis(20);
    c.delivery.max_backoff = Duration::from_millis(300);
    let ing = Ingestor::<Ev>::start(c).await.unwrap();
    let h = ing.handle();
    let n = 20_000;
    let producer = tokio::spawn(async move {
        for i in 0..n {
            h.send(ev(i)).await.unwrap();
        }
        h.flush().await.unwrap();
    });
    // Wait for a few refusals (and the limit going down), then end the overload.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let s = ing.stats();
        if s.failed_attempts >= 5 && s.concurrency_decreases > 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the server never refused: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The overload ends: merges run and the part limits are lifted.
    db.exec(
        "ALTER TABLE t MODIFY SETTING parts_to_throw_insert = 10000, \
         parts_to_delay_insert = 10000",
    )
    .await;
    db.exec("SYSTEM START MERGES t").await;
    producer.await.unwrap();
    // As many rows again with the server healthy: the limit climbs back. (Sampled as it
    // goes: one slow insert on this busy machine may halve it again near the end.)
    let h = ing.handle();
    let mut highest = 0;
    for i in n..2 * n {
        h.send(ev(i)).await.unwrap();
        if i % 100 == 0 {
            highest = highest.max(ing.stats().concurrency_limit);
        }
    }
    h.flush().await.unwrap();
    let n = 2 * n;
    let stats = ing.shutdown().await.unwrap();
    assert_eq!(stats.rows_dead_lettered, 0, "{stats:?}");
    assert!(
        stats.failed_attempts > 0,
        "the server never refused: {stats:?}"
    );
    assert!(stats.concurrency_decreases > 0, "{stats:?}");
    assert!(stats.min_concurrency_limit < 8, "{stats:?}");
    let highest = highest.max(stats.concurrency_limit);
    assert!(
        highest > stats.min_concurrency_limit,
        "the limit did not recover (highest after the overload {highest}): {stats:?}"
    );
    assert_eq!(db.u64("SELECT count() FROM t").await, n);
    assert_eq!(db.u64(HASH).await, db.u64(&expected_hash("", n)).await);
    db.exec("SYSTEM FLUSH LOGS").await;
    let refused = db
        .u64(&format!(
            "SELECT count() FROM system.query_log WHERE exception_code = 252 \
             AND has(databases, '{}')",
            db.name
        ))
        .await;
    assert!(refused > 0, "no TOO_MANY_PARTS seen by the server");
}

#[tokio::test]
async fn a_dead_endpoint_is_taken_out_and_everything_lands_on_the_live_one() {
    let db = TestDb::new("endpoints").await;
    table(&db, "").await;
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let dlq = tempfile::tempdir().unwrap();
    let mut c = db.config("t", dlq.path());
    c.clickhouse.url = vec![common::url(), dead.clone()];
    c.batching.max_rows = 1_000;
    retry(&mut c, 10);
    let ing = Ingestor::<Ev>::start(c).await.unwrap();
    let h = ing.handle();
    for i in 0..50_000 {
        h.send(ev(i)).await.unwrap();
    }
    h.flush().await.unwrap();
    let stats = ing.shutdown().await.unwrap();
    assert_eq!(stats.rows_dead_lettered, 0);
    assert_eq!(stats.batches_committed, 50);
    // The dead endpoint was tried, then left out while it stayed down.
    assert!(stats.failed_attempts >= 1, "{stats:?}");
    assert!(stats.failed_attempts < 25, "{stats:?}");
    assert_eq!(db.u64("SELECT count() FROM t").await, 50_000);
    assert_eq!(db.u64(HASH).await, db.u64(&expected_hash("", 50_000)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starting_against_a_silent_server_fails_within_the_query_timeout() {
    // Accepts connections, never answers: the start (the schema query, as Python's
    // `Inserter.start()` and every frontend make it) ends with a timeout, not a hang.
    let proxy = FaultProxy::start(&common::url(), vec![]).await;
    proxy.set_default(Fault::Stall);
    let dlq = tempfile::tempdir().unwrap();
    let mut c = Config::new(proxy.url(), "t");
    c.spool.dir = dlq.path().to_path_buf();
    c.clickhouse.query_timeout = Duration::from_millis(700);
    let start = chasync_core::DynIngestor::start_dynamic(c.clone(), Default::default());
    let err = tokio::time::timeout(Duration::from_secs(60), start)
        .await
        .expect("the start ends")
        .err()
        .expect("the start fails");
    assert_eq!(err.kind(), ErrorKind::UnknownOutcome, "{err}");
    assert!(
        err.to_string().contains("no answer to the schema query"),
        "{err}"
    );
    let start = Ingestor::<Ev>::start(c);
    let err = tokio::time::timeout(Duration::from_secs(60), start)
        .await
        .expect("the start ends")
        .err()
        .expect("the start fails");
    assert!(err.to_string().contains("within 700ms"), "{err}");
}
