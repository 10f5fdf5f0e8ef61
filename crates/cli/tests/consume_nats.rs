//! `chasync consume nats` against a real nats-server with JetStream and the real ClickHouse:
//! two consumers share four partitions (subject filters); one is killed (SIGKILL, at a crash
//! point) before an insert and between ClickHouse's ack and the JetStream ack, then started
//! again; the server is killed and restarted under running consumers; every message lands
//! exactly once.
//!
//! Needs the `crash-points` feature and nats-server: `scripts/test-sources.sh`.
#![cfg(feature = "crash-points")]

#[path = "common/brokers.rs"]
mod brokers;
mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use brokers::{Consumer, Nats};
use common::TestDb;

async fn table(db: &TestDb) {
    db.exec(
        "CREATE TABLE t (id UInt64, v String, _insert_id UUID) ENGINE = MergeTree ORDER BY id \
         SETTINGS non_replicated_deduplication_window = 10000",
    )
    .await;
}

async fn jetstream(url: &str) -> async_nats::jetstream::Context {
    let client = async_nats::connect(url).await.expect("connect");
    async_nats::jetstream::new(client)
}

async fn create_stream(url: &str) {
    jetstream(url)
        .await
        .create_stream(async_nats::jetstream::stream::Config {
            name: "EV".into(),
            subjects: vec!["ev.>".into()],
            ..Default::default()
        })
        .await
        .expect("the stream");
}

/// Publishes messages `from..to` (`{"id":i,...}`), message `i` to `ev.<i % 4>`, each
/// acknowledged by the server.
async fn publish(url: &str, from: u64, to: u64) {
    let js = jetstream(url).await;
    let mut acks = Vec::new();
    for i in from..to {
        let value = format!(r#"{{"id":{i},"v":"value {i}"}}"#);
        acks.push(
            js.publish(format!("ev.{}", i % 4), value.into())
                .await
                .expect("publish"),
        );
        if acks.len() >= 200 {
            for a in acks.drain(..) {
                a.await.expect("stored");
            }
        }
    }
    for a in acks {
        a.await.expect("stored");
    }
}

fn args(nats: &Nats, db: &TestDb, subjects: &[&str], dir: &Path) -> Vec<String> {
    let mut a: Vec<String> = [
        "consume",
        "nats",
        "--server",
        &nats.url(),
        "--stream",
        "EV",
        "--durable",
        "ch",
        "--table",
        &db.t("t"),
        "--max-rows",
        "50",
        "--linger",
        "100ms",
        "--seal-table",
        &db.t("seals"),
        "--spool-dir",
        &dir.join("spool").to_string_lossy(),
    ]
    .map(String::from)
    .to_vec();
    for s in subjects {
        a.push("--subject".into());
        a.push((*s).into());
    }
    a
}

async fn settle(db: &TestDb, n: u64, timeout: Duration) -> u64 {
    let deadline = Instant::now() + timeout;
    loop {
        let count = db.u64("SELECT count() FROM t").await;
        if count >= n || Instant::now() > deadline {
            return count;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// (count(), uniqExact(id)) once the count reached `n` and held a moment.
async fn steady(db: &TestDb, n: u64) -> (u64, u64) {
    settle(db, n, Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    (
        db.u64("SELECT count() FROM t").await,
        db.u64("SELECT uniqExact(id) FROM t").await,
    )
}

/// A consumer of ev.0 and ev.1 killed at `point`, then started again; another consumer has
/// ev.2 and ev.3 all along.
async fn kill_and_restart(point: &str) {
    let dir = tempfile::tempdir().unwrap();
    let nats = Nats::start(dir.path());
    create_stream(&nats.url()).await;
    let db = TestDb::new("nats").await;
    table(&db).await;
    let n = 2000;
    publish(&nats.url(), 0, n).await;
    let mine = args(&nats, &db, &["ev.0", "ev.1"], dir.path());
    let mut victim = Consumer::start(
        dir.path(),
        "victim",
        &mine,
        &[
            ("CHASYNC_TEST_CRASH_AT", point.into()),
            ("CHASYNC_TEST_CRASH_AFTER", "3".into()),
        ],
    );
    let mut other = Consumer::start(
        dir.path(),
        "other",
        &args(&nats, &db, &["ev.2", "ev.3"], dir.path()),
        &[],
    );
    assert!(
        victim.wait_killed(Duration::from_secs(40)),
        "not killed at {point}:\n{}",
        victim.log()
    );
    let mut again = Consumer::start(dir.path(), "again", &mine, &[]);
    let (count, uniq) = steady(&db, n).await;
    again.stop(Duration::from_secs(20));
    other.stop(Duration::from_secs(20));
    assert_eq!(
        (count, uniq),
        (n, n),
        "after a kill at {point}\n--- victim\n{}\n--- again\n{}",
        victim.log(),
        again.log()
    );
    assert!(
        again.log().contains("forming a sealed range again"),
        "the restarted consumer formed no sealed range again:\n{}",
        again.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_kill_before_an_insert() {
    kill_and_restart("before_insert").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_kill_between_the_clickhouse_ack_and_the_jetstream_ack() {
    kill_and_restart("after_insert").await;
}

/// The server is killed (SIGKILL) and restarted on its store twice while two consumers run
/// and messages keep coming; the consumers go on from their ack floors and seals.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_server_restart_under_running_consumers() {
    let dir = tempfile::tempdir().unwrap();
    let mut nats = Nats::start(dir.path());
    create_stream(&nats.url()).await;
    let db = TestDb::new("nats").await;
    table(&db).await;
    publish(&nats.url(), 0, 1000).await;
    let mut a = Consumer::start(
        dir.path(),
        "a",
        &args(&nats, &db, &["ev.0", "ev.1"], dir.path()),
        &[],
    );
    let mut b = Consumer::start(
        dir.path(),
        "b",
        &args(&nats, &db, &["ev.2", "ev.3"], dir.path()),
        &[],
    );
    settle(&db, 200, Duration::from_secs(30)).await;
    nats.restart();
    publish(&nats.url(), 1000, 2000).await;
    settle(&db, 1200, Duration::from_secs(30)).await;
    nats.restart();
    publish(&nats.url(), 2000, 3000).await;
    let (count, uniq) = steady(&db, 3000).await;
    a.stop(Duration::from_secs(20));
    b.stop(Duration::from_secs(20));
    assert_eq!(
        (count, uniq),
        (3000, 3000),
        "--- a\n{}\n--- b\n{}",
        a.log(),
        b.log()
    );
}

/// JetStream has no rebalance: subjects move from one process to another by configuration.
/// The handover is the same moment: the process that gives its subjects up is stopped
/// (SIGTERM) while messages keep coming, seals the range it holds and is killed (SIGKILL)
/// before that range's insert; the process that takes the subjects over forms that range
/// again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_kill_during_a_handover_of_the_subjects() {
    let dir = tempfile::tempdir().unwrap();
    let nats = Nats::start(dir.path());
    create_stream(&nats.url()).await;
    let db = TestDb::new("nats").await;
    table(&db).await;
    let all = ["ev.0", "ev.1", "ev.2", "ev.3"];
    let mut a = args(&nats, &db, &all, dir.path());
    // Long linger and large batches: at the SIGTERM every partition holds an open range.
    for (flag, value) in [("--max-rows", "100000"), ("--linger", "1h")] {
        let i = a.iter().position(|x| x == flag).unwrap();
        a[i + 1] = value.into();
    }
    publish(&nats.url(), 0, 1000).await;
    let mut leaving = Consumer::start(
        dir.path(),
        "leaving",
        &a,
        &[("CHASYNC_TEST_CRASH_AT", "drain_before_insert".into())],
    );
    // Wait until it has taken the messages (its consumers' ack floors do not move: nothing
    // is committed before the linger).
    let js = jetstream(&nats.url()).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut delivered = 0;
        for s in all {
            let name = format!("ch_{}", s.replace('.', "_"));
            if let Ok(mut c) = js
                .get_consumer_from_stream::<async_nats::jetstream::consumer::pull::Config, _, _>(
                    &name, "EV",
                )
                .await
                && let Ok(info) = c.info().await
            {
                delivered += info.delivered.stream_sequence.min(1);
            }
        }
        if delivered == 4 {
            break;
        }
        assert!(Instant::now() < deadline, "{}", leaving.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(db.u64("SELECT count() FROM t").await, 0);
    leaving.signal_term();
    assert!(
        leaving.wait_killed(Duration::from_secs(30)),
        "not killed in the handover:\n{}",
        leaving.log()
    );
    publish(&nats.url(), 1000, 2000).await;
    let taking = args(&nats, &db, &all, dir.path());
    let mut taking = Consumer::start(dir.path(), "taking", &taking, &[]);
    let (count, uniq) = steady(&db, 2000).await;
    taking.stop(Duration::from_secs(20));
    assert_eq!(
        (count, uniq),
        (2000, 2000),
        "--- leaving\n{}\n--- taking\n{}",
        leaving.log(),
        taking.log()
    );
    assert!(
        taking.log().contains("forming a sealed range again"),
        "{}",
        taking.log()
    );
}

/// A target table that does not exist is a clear error at start, before any message is
/// taken and before the seal table is made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_table_is_a_clear_error_and_nothing_is_taken() {
    let dir = tempfile::tempdir().unwrap();
    let nats = Nats::start(dir.path());
    create_stream(&nats.url()).await;
    publish(&nats.url(), 0, 10).await;
    let db = TestDb::new("nats").await;
    let mut c = Consumer::start(
        dir.path(),
        "c",
        &args(&nats, &db, &["ev.0"], dir.path()),
        &[],
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = c.child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "{}", c.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status.code(), Some(1), "{}", c.log());
    assert!(c.log().contains(".t does not exist"), "{}", c.log());
    assert_eq!(
        db.u64("SELECT count() FROM system.tables WHERE database = currentDatabase()")
            .await,
        0
    );
    // No durable consumer was made: nothing was taken off the stream.
    let js = jetstream(&nats.url()).await;
    let mut stream = js.get_stream("EV").await.unwrap();
    assert_eq!(stream.info().await.unwrap().state.consumer_count, 0);
}
