//! Exactly once on tables that do not deduplicate inserts by token: an attempt whose answer
//! was lost is looked up (`system.processes`, `system.query_log`, the `_insert_id` column)
//! before the batch is sent again; a table where none of that is possible is reported, loudly.

use chasync_testkit as common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chasync_core::{Config, Guarantee, Ingestor, Stats};
use common::TestDb;
use common::proxy::{Fault, FaultProxy};
use tracing_subscriber::util::SubscriberInitExt;

#[derive(clickhouse::Row, serde::Serialize, Clone)]
struct Ev {
    id: u64,
    name: String,
}

fn ev(id: u64) -> Ev {
    Ev {
        id,
        name: format!("n{id}"),
    }
}

/// A plain MergeTree without a dedup window: ClickHouse stores every insert it is given.
async fn plain(db: &TestDb, insert_id: bool) {
    let extra = if insert_id { ", _insert_id UUID" } else { "" };
    db.exec(&format!(
        "CREATE TABLE t (id UInt64, name String{extra}) ENGINE = MergeTree ORDER BY id"
    ))
    .await;
}

fn fast_retry(c: &mut Config) {
    c.delivery.max_attempts = 10;
    c.delivery.initial_backoff = Duration::from_millis(50);
    c.delivery.max_backoff = Duration::from_millis(400);
}

/// An ingestor of one `n`-row batch through a proxy whose next insert connection meets
/// `fault`, rows `0..n` sent; with the proxy and the spool directory.
async fn send_through(
    db: &TestDb,
    fault: Fault,
    n: u64,
    tune: impl FnOnce(&mut Config),
) -> (Ingestor<Ev>, FaultProxy, tempfile::TempDir) {
    let proxy = FaultProxy::start(&common::url(), vec![]).await;
    let dlq = tempfile::tempdir().unwrap();
    let mut c = db.config("t", dlq.path());
    c.clickhouse.url = vec![proxy.url()];
    c.batching.max_rows = n as usize;
    c.batching.linger = Duration::from_secs(3600);
    fast_retry(&mut c);
    tune(&mut c);
    let ing = Ingestor::<Ev>::start(c).await.unwrap();
    // The insert's connection (a fresh one: pooled connections idle out after 2 s) meets
    // the fault; the engine's metadata queries pass.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    proxy.push_insert(fault);
    let h = ing.handle();
    for i in 0..n {
        h.send(ev(i)).await.unwrap();
    }
    (ing, proxy, dlq)
}

/// Sends rows `0..n` through the proxy, whose next insert connection meets `fault`; returns
/// the final stats and what the dispatcher says the table gets.
async fn load_through(
    db: &TestDb,
    fault: Fault,
    n: u64,
    tune: impl FnOnce(&mut Config),
) -> (Stats, Vec<chasync_core::TableGuarantee>) {
    let (ing, proxy, _dlq) = send_through(db, fault, n, tune).await;
    ing.handle().flush().await.unwrap();
    let guarantees = ing.dispatcher().guarantees();
    let stats = ing.shutdown().await.unwrap();
    assert_eq!(proxy.remaining(), 0, "the fault was never met");
    (stats, guarantees)
}

async fn assert_once(db: &TestDb, n: u64) {
    assert_eq!(db.u64("SELECT count() FROM t").await, n);
    assert_eq!(db.u64("SELECT uniqExact(id) FROM t").await, n);
}

#[tokio::test]
async fn a_lost_answer_on_a_plain_merge_tree_lands_once_through_the_query_log() {
    let db = TestDb::new("once_qlog").await;
    plain(&db, false).await;
    let (stats, guarantees) = load_through(&db, Fault::CutResponse, 1000, |_| {}).await;
    // The server applied the cut attempt; the query log said so and nothing was sent again.
    assert_eq!(stats.outcomes_landed, 1, "{stats:?}");
    assert_eq!(stats.retries, 0, "{stats:?}");
    assert_eq!(stats.failed_attempts, 1, "{stats:?}");
    assert_eq!(stats.rows_committed, 1000, "{stats:?}");
    assert_eq!(stats.at_least_once_tables, 0, "{stats:?}");
    assert_once(&db, 1000).await;
    assert_eq!(db.inserts("t").await, 1);
    assert_eq!(guarantees.len(), 1, "{guarantees:?}");
    let g = &guarantees[0];
    assert_eq!(g.guarantee, Guarantee::Checked, "{g:?}");
    assert!(g.query_log && !g.insert_id, "{g:?}");
    assert_eq!(g.engine, "MergeTree, no dedup window");
    assert!(
        g.limits
            .iter()
            .any(|l| l == "the table has no _insert_id column"),
        "{g:?}"
    );
}

#[tokio::test]
async fn a_lost_answer_with_an_insert_id_column_lands_once() {
    let db = TestDb::new("once_iid").await;
    plain(&db, true).await;
    let (stats, guarantees) = load_through(&db, Fault::CutResponse, 1000, |_| {}).await;
    assert_eq!(stats.outcomes_landed, 1, "{stats:?}");
    assert_eq!(stats.retries, 0, "{stats:?}");
    assert_once(&db, 1000).await;
    assert_eq!(db.u64("SELECT uniqExact(_insert_id) FROM t").await, 1);
    let g = &guarantees[0];
    assert_eq!(g.guarantee, Guarantee::Checked, "{g:?}");
    assert!(g.query_log && g.insert_id, "{g:?}");
}

#[tokio::test]
async fn without_the_query_log_the_insert_id_column_tells_a_lost_answer_that_landed() {
    let db = TestDb::new("once_iid_only").await;
    plain(&db, true).await;
    // These inserts are not logged: only the rows themselves can tell.
    let (stats, guarantees) = load_through(&db, Fault::CutResponse, 1000, |c| {
        c.clickhouse
            .settings
            .insert("log_queries".into(), "0".into());
    })
    .await;
    assert_eq!(stats.outcomes_landed, 1, "{stats:?}");
    assert_eq!(stats.retries, 0, "{stats:?}");
    assert_once(&db, 1000).await;
    let g = &guarantees[0];
    assert_eq!(g.guarantee, Guarantee::Checked, "{g:?}");
    assert!(!g.query_log && g.insert_id, "{g:?}");
    assert!(
        g.limits
            .iter()
            .any(|l| l.contains("not logged (log_queries = 0)")),
        "{g:?}"
    );
}

#[tokio::test]
async fn an_attempt_that_never_reached_the_server_is_sent_again_once() {
    let db = TestDb::new("once_stall").await;
    plain(&db, false).await;
    // The proxy takes the request and never passes it on: the attempt times out, its
    // outcome unknown; the server never saw it, and has been up all along.
    let (stats, _) = load_through(&db, Fault::Stall, 500, |c| {
        c.clickhouse.insert_timeout = Duration::from_millis(800);
    })
    .await;
    assert_eq!(stats.outcomes_not_landed, 1, "{stats:?}");
    assert_eq!(stats.outcomes_landed, 0, "{stats:?}");
    assert_eq!(stats.retries, 1, "{stats:?}");
    assert_once(&db, 500).await;
}

#[tokio::test]
async fn without_the_query_log_the_insert_id_column_tells_an_attempt_that_did_not_land() {
    let db = TestDb::new("once_stall_iid").await;
    plain(&db, true).await;
    let (stats, _) = load_through(&db, Fault::Stall, 500, |c| {
        c.clickhouse.insert_timeout = Duration::from_millis(800);
        c.clickhouse
            .settings
            .insert("log_queries".into(), "0".into());
    })
    .await;
    assert_eq!(stats.outcomes_not_landed, 1, "{stats:?}");
    assert_eq!(stats.retries, 1, "{stats:?}");
    assert_once(&db, 500).await;
}

#[tokio::test]
async fn an_attempt_still_running_when_its_client_gave_up_is_waited_for_and_not_sent_again() {
    let db = TestDb::new("once_running").await;
    plain(&db, false).await;
    // Each insert runs for about two seconds (a view that sleeps on every row); the client
    // gives up after one.
    db.exec("CREATE TABLE slow (x UInt8) ENGINE = Null").await;
    db.exec("CREATE MATERIALIZED VIEW mv TO slow AS SELECT sleepEachRow(0.004) AS x FROM t")
        .await;
    let (stats, _) = load_through(&db, Fault::Forward, 500, |c| {
        c.clickhouse.insert_timeout = Duration::from_millis(1000);
    })
    .await;
    assert_eq!(stats.failed_attempts, 1, "{stats:?}");
    assert_eq!(stats.outcomes_landed, 1, "{stats:?}");
    assert_eq!(stats.retries, 0, "{stats:?}");
    assert_once(&db, 500).await;
}

/// Log lines written while a test runs, for the assertions.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[tokio::test]
async fn a_table_that_can_only_get_at_least_once_is_reported_loudly() {
    let log = Captured::default();
    let writer = log.clone();
    let _guard = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .set_default();
    let db = TestDb::new("once_alo").await;
    plain(&db, false).await;
    // Not logged, and no _insert_id: nothing can tell whether a lost answer landed.
    let (stats, guarantees) = load_through(&db, Fault::CutResponse, 1000, |c| {
        c.clickhouse
            .settings
            .insert("log_queries".into(), "0".into());
    })
    .await;
    assert_eq!(stats.at_least_once_tables, 1, "{stats:?}");
    assert_eq!(stats.unchecked_resends, 1, "{stats:?}");
    // What the warning says happens: the cut attempt had landed, and so did the resend.
    assert_eq!(db.u64("SELECT count() FROM t").await, 2000);
    let g = &guarantees[0];
    assert_eq!(g.guarantee, Guarantee::AtLeastOnce, "{g:?}");
    let text = log.text();
    let warnings: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("AT LEAST ONCE"))
        .collect();
    assert_eq!(warnings.len(), 1, "once:\n{text}");
    let w = warnings[0];
    assert!(
        w.contains(&format!(
            "{}.t (MergeTree, no dedup window) for user default",
            db.name
        )),
        "{w}"
    );
    assert!(w.contains("log_queries = 0"), "{w}");
    assert!(w.contains("the table has no _insert_id column"), "{w}");
    assert!(w.contains("guarantee=\"at-least-once\""), "{w}");
}

#[tokio::test]
async fn a_deduplicating_table_is_sent_again_without_checks() {
    let db = TestDb::new("once_dedup").await;
    db.exec(
        "CREATE TABLE t (id UInt64, name String) ENGINE = MergeTree ORDER BY id \
         SETTINGS non_replicated_deduplication_window = 100",
    )
    .await;
    let (stats, guarantees) = load_through(&db, Fault::CutResponse, 1000, |_| {}).await;
    // The fast path: the same token again, and ClickHouse drops the copy.
    assert_eq!(stats.retries, 1, "{stats:?}");
    assert_eq!(
        stats.outcomes_landed + stats.outcomes_not_landed,
        0,
        "{stats:?}"
    );
    assert_once(&db, 1000).await;
    assert_eq!(guarantees[0].guarantee, Guarantee::Deduplicated);
    assert_eq!(guarantees[0].engine, "MergeTree, dedup window 100");
}

/// A user who may insert into the table but not flush or read the server's query log (the
/// test server's `chasync_restricted`, on a server of the test's own): the checks cannot be
/// made, and the table is reported once, loudly, with the missing grant; what the engine
/// says matches what `chasync_core::guarantee` (for `chasync doctor`) says.
#[tokio::test]
async fn a_user_without_access_to_the_query_log_is_warned_once_that_the_table_gets_at_least_once() {
    let log = Captured::default();
    let writer = log.clone();
    let _guard = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .set_default();
    let server = common::server::PrivateServer::start();
    let admin = clickhouse::Client::default().with_url(server.url());
    for sql in [
        "CREATE DATABASE chasync_restricted",
        "CREATE TABLE chasync_restricted.t (id UInt64, name String) ENGINE = MergeTree ORDER BY id",
        "CREATE TABLE chasync_restricted.u (id UInt64, name String, _insert_id UUID) \
         ENGINE = MergeTree ORDER BY id",
    ] {
        admin.query(sql).execute().await.unwrap();
    }
    let dlq = tempfile::tempdir().unwrap();
    let mut c = Config::new(server.url(), "t");
    c.clickhouse.database = "chasync_restricted".into();
    c.clickhouse.user = Some("chasync_restricted".into());
    c.clickhouse.password = Some(chasync_core::Secret::new("restricted-secret"));
    c.spool.dir = dlq.path().to_path_buf();
    let ing = Ingestor::<Ev>::start(c.clone()).await.unwrap();
    let h = ing.handle();
    for i in 0..100 {
        h.send(ev(i)).await.unwrap();
    }
    h.flush().await.unwrap();
    // The table is probed in the background when its first batch comes.
    let mut guarantees = ing.dispatcher().guarantees();
    for _ in 0..100 {
        if !guarantees.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        guarantees = ing.dispatcher().guarantees();
    }
    let stats = ing.shutdown().await.unwrap();
    assert_eq!(stats.rows_committed, 100, "{stats:?}");
    assert_eq!(stats.at_least_once_tables, 1, "{stats:?}");
    assert_eq!(guarantees.len(), 1, "{guarantees:?}");
    let g = &guarantees[0];
    assert_eq!(g.guarantee, Guarantee::AtLeastOnce, "{g:?}");
    assert_eq!(g.user, "chasync_restricted");
    assert!(
        g.limits
            .iter()
            .any(|l| l.contains("user chasync_restricted may not flush the query log")),
        "{g:?}"
    );
    let text = log.text();
    let warnings: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("AT LEAST ONCE"))
        .collect();
    assert_eq!(warnings.len(), 1, "once:\n{text}");
    assert!(
        warnings[0].contains("GRANT SYSTEM FLUSH LOGS ON *.* TO chasync_restricted"),
        "{}",
        warnings[0]
    );
    // The report for `chasync doctor` says the same.
    let report = chasync_core::guarantee(&c, "chasync_restricted", "t")
        .await
        .unwrap();
    assert_eq!(&report, g);
    // An _insert_id column alone does not help: without system.processes an attempt still
    // running cannot be told from one that never started, and the grant is named.
    let u = chasync_core::guarantee(&c, "chasync_restricted", "u")
        .await
        .unwrap();
    assert_eq!(u.guarantee, Guarantee::AtLeastOnce, "{u:?}");
    assert!(
        u.limits
            .iter()
            .any(|l| l.contains("GRANT SELECT ON system.processes TO chasync_restricted")),
        "{u:?}"
    );
    assert!(
        !u.limits.iter().any(|l| l.contains("no _insert_id")),
        "{u:?}"
    );
}

/// Rows `0..n` through the proxy, one attempt per batch, the insert's connection meeting
/// `fault`: the batch is dead-lettered as maybe sent. Returns the spool directory.
async fn dead_letter_through(db: &TestDb, fault: Fault, n: u64) -> tempfile::TempDir {
    let (ing, proxy, dlq) = send_through(db, fault, n, |c| c.delivery.max_attempts = 1).await;
    assert!(
        ing.handle().flush().await.is_err(),
        "the batch is dead-lettered"
    );
    let stats = ing.shutdown().await.unwrap();
    assert_eq!(proxy.remaining(), 0, "the fault was never met");
    assert_eq!(stats.rows_dead_lettered, n, "{stats:?}");
    let records = chasync_core::DeadLetterSpool::new(dlq.path())
        .list()
        .unwrap();
    assert_eq!(records.len(), 1, "{records:?}");
    assert!(records[0].is_maybe_sent(), "{records:?}");
    dlq
}

/// `replay` of a spooled batch whose answer was lost: on a table that does not deduplicate,
/// the entry is looked up before it is sent. One that had landed is removed unsent; one that
/// had not is sent, once.
#[tokio::test]
async fn replay_of_a_batch_whose_answer_was_lost_looks_it_up_before_sending() {
    let db = TestDb::new("once_replay").await;
    plain(&db, false).await;
    let replay_config = |dlq: &std::path::Path| {
        let mut c = db.config("t", dlq);
        fast_retry(&mut c);
        c
    };

    // The insert landed; the client never heard.
    let dlq = dead_letter_through(&db, Fault::CutResponse, 1000).await;
    assert_once(&db, 1000).await;
    let spool = chasync_core::DeadLetterSpool::new(dlq.path());
    let report = chasync_core::replay(&replay_config(dlq.path()), &spool)
        .await
        .unwrap();
    assert!(report.failed.is_empty(), "{report:?}");
    assert_eq!((report.batches, report.rows), (1, 1000), "{report:?}");
    assert!(spool.list().unwrap().is_empty());
    assert_once(&db, 1000).await;
    assert_eq!(db.inserts("t").await, 1, "the replay sent nothing");

    // The insert never reached the server: the replay sends it, once.
    db.exec("TRUNCATE TABLE t").await;
    let dlq = dead_letter_through(&db, Fault::ResetInserts, 500).await;
    assert_eq!(db.u64("SELECT count() FROM t").await, 0);
    let spool = chasync_core::DeadLetterSpool::new(dlq.path());
    let report = chasync_core::replay(&replay_config(dlq.path()), &spool)
        .await
        .unwrap();
    assert!(report.failed.is_empty(), "{report:?}");
    assert_eq!((report.batches, report.rows), (1, 500), "{report:?}");
    assert_once(&db, 500).await;
    assert_eq!(db.inserts("t").await, 2);
}
