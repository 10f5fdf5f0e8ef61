//! `chasync consume kafka` against a real Kafka-protocol broker (tansu, memory only) and the
//! real ClickHouse: several consumers of one group on a 4-partition topic, one of them
//! killed (SIGKILL, at a crash point) before an insert, between ClickHouse's ack and the
//! offset commit, and in the middle of a rebalance; every message lands exactly once.
//!
//! Needs the `crash-points` feature and `TANSU_BIN`: `scripts/test-sources.sh`.
#![cfg(feature = "crash-points")]

#[path = "common/brokers.rs"]
mod brokers;
mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use brokers::{Consumer, Tansu};
use common::TestDb;
use rdkafka::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

const PARTITIONS: u32 = 4;

async fn table(db: &TestDb) {
    db.exec(
        "CREATE TABLE t (id UInt64, v String, _insert_id UUID) ENGINE = MergeTree ORDER BY id \
         SETTINGS non_replicated_deduplication_window = 10000",
    )
    .await;
}

/// Produces messages `from..to` (`{"id":i,"v":"..."}`), message `i` to partition `i % 4`.
fn produce(brokers: &str, topic: &str, from: u64, to: u64) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "5")
        .create()
        .expect("a producer");
    for i in from..to {
        let value = format!(r#"{{"id":{i},"v":"value {i}"}}"#);
        let mut record = BaseRecord::<(), str>::to(topic)
            .payload(&value)
            .partition((i % u64::from(PARTITIONS)) as i32);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, r)) => {
                    producer.poll(Duration::from_millis(10));
                    record = r;
                }
            }
        }
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(30)).expect("produced");
}

fn args(t: &Tansu, db: &TestDb, group: &str, dir: &Path) -> Vec<String> {
    [
        "consume",
        "kafka",
        "--brokers",
        &t.brokers(),
        "--group",
        group,
        "--topic",
        "events",
        "--table",
        &db.t("t"),
        "--session-timeout",
        "6s",
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
    .to_vec()
}

/// Waits until the table holds `n` rows (or `timeout` passes); returns (count, uniqExact(id)).
async fn settle(db: &TestDb, n: u64, timeout: Duration) -> (u64, u64) {
    let deadline = Instant::now() + timeout;
    loop {
        let count = db.u64("SELECT count() FROM t").await;
        if count >= n || Instant::now() > deadline {
            let uniq = db.u64("SELECT uniqExact(id) FROM t").await;
            return (count, uniq);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until `seals` names every partition whose last seal ends at the last message of the
/// partition (i.e. all committed)... simpler: until `count()` stays at `n` for a while.
async fn steady(db: &TestDb, n: u64) -> (u64, u64) {
    let (count, uniq) = settle(db, n, Duration::from_secs(60)).await;
    // Anything still on its way (a duplicate would show now).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let count = count.max(db.u64("SELECT count() FROM t").await);
    (count, uniq)
}

/// Two members; one killed at `point` on its `after`-th pass; the other takes its partitions
/// over after the session timeout and forms the sealed range again.
async fn crash_one_of_two(point: &str, after: u32) {
    let dir = tempfile::tempdir().unwrap();
    let tansu = Tansu::start(&dir.path().join("tansu.log"));
    tansu.create_topic("events", PARTITIONS);
    let db = TestDb::new("kafka").await;
    table(&db).await;
    let n = 2000;
    produce(&tansu.brokers(), "events", 0, n);
    let a = args(&tansu, &db, "g", dir.path());
    let mut victim = Consumer::start(
        dir.path(),
        "victim",
        &a,
        &[
            ("CHASYNC_TEST_CRASH_AT", point.into()),
            ("CHASYNC_TEST_CRASH_AFTER", after.to_string()),
        ],
    );
    let mut other = Consumer::start(dir.path(), "other", &a, &[]);
    assert!(
        victim.wait_killed(Duration::from_secs(40)),
        "the victim was not killed at {point}:\n{}",
        victim.log()
    );
    let (count, uniq) = steady(&db, n).await;
    other.stop(Duration::from_secs(20));
    let count = count.max(db.u64("SELECT count() FROM t").await);
    assert_eq!(
        (count, uniq),
        (n, n),
        "count, uniqExact(id) after a kill at {point}\n--- victim\n{}\n--- other\n{}",
        victim.log(),
        other.log()
    );
    // The survivor took the victim's sealed range over and formed it again.
    assert!(
        other.log().contains("forming a sealed range again"),
        "the survivor formed no sealed range again:\n{}",
        other.log()
    );
    // Every row carries its batch id; ids are those of sealed ranges.
    let ids = db.u64("SELECT uniqExact(_insert_id) FROM t").await;
    assert!(ids >= 2 * u64::from(PARTITIONS), "batch ids: {ids}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_kill_before_an_insert() {
    crash_one_of_two("before_insert", 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_kill_between_the_clickhouse_ack_and_the_offset_commit() {
    crash_one_of_two("after_insert", 3).await;
}

/// Three members join one after the other while messages are produced; the first, alone
/// with the four partitions and ranges in flight, is killed inside the rebalance that the
/// second one's arrival starts (in its revocation callback); the third joins while the
/// group is still taking the first one's partitions over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_kill_during_a_rebalance() {
    let dir = tempfile::tempdir().unwrap();
    let tansu = Tansu::start(&dir.path().join("tansu.log"));
    tansu.create_topic("events", PARTITIONS);
    let db = TestDb::new("kafka").await;
    table(&db).await;
    let a = args(&tansu, &db, "g", dir.path());
    produce(&tansu.brokers(), "events", 0, 1000);
    let mut first = Consumer::start(
        dir.path(),
        "first",
        &a,
        &[("CHASYNC_TEST_CRASH_AT", "in_revoke".into())],
    );
    // It has the four partitions and is inserting.
    let deadline = Instant::now() + Duration::from_secs(30);
    while db.u64("SELECT count() FROM t").await == 0 {
        assert!(Instant::now() < deadline, "{}", first.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut second = Consumer::start(dir.path(), "second", &a, &[]);
    let brokers = tansu.brokers();
    let producer = std::thread::spawn(move || {
        for k in 0..10 {
            produce(&brokers, "events", 1000 + k * 200, 1200 + k * 200);
            std::thread::sleep(Duration::from_millis(300));
        }
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut third = Consumer::start(dir.path(), "third", &a, &[]);
    assert!(
        first.wait_killed(Duration::from_secs(40)),
        "the first member was not killed in a rebalance:\n{}",
        first.log()
    );
    producer.join().unwrap();
    let n = 3000;
    let (count, uniq) = steady(&db, n).await;
    second.stop(Duration::from_secs(20));
    third.stop(Duration::from_secs(20));
    let count = count.max(db.u64("SELECT count() FROM t").await);
    assert_eq!(
        (count, uniq),
        (n, n),
        "count, uniqExact(id)\n--- first\n{}\n--- second\n{}\n--- third\n{}",
        first.log(),
        second.log(),
        third.log()
    );
}

/// Messages that are not rows of the format go to the dead-letter spool with their place;
/// the rest of their range lands, and the offsets go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_bad_messages_are_dead_lettered_and_the_rest_lands() {
    let dir = tempfile::tempdir().unwrap();
    let tansu = Tansu::start(&dir.path().join("tansu.log"));
    tansu.create_topic("events", 1);
    let db = TestDb::new("kafka").await;
    table(&db).await;
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", tansu.brokers())
        .create()
        .unwrap();
    for v in [
        r#"{"id":1,"v":"a"}"#,
        r#"{"id":2,"v":"#,
        r#"{"id":3,"nope":1}"#,
        r#"{"id":4,"v":"d"}"#,
    ] {
        producer
            .send(BaseRecord::<(), str>::to("events").payload(v))
            .unwrap();
    }
    producer.flush(Duration::from_secs(10)).unwrap();
    let a = args(&tansu, &db, "g", dir.path());
    let mut c = Consumer::start(dir.path(), "c", &a, &[]);
    let (count, _) = settle(&db, 2, Duration::from_secs(40)).await;
    c.stop(Duration::from_secs(20));
    assert_eq!(count, 2, "{}", c.log());
    assert_eq!(
        db.strings("SELECT toString(id) FROM t ORDER BY id").await,
        ["1", "4"]
    );
    // Each refused message is in the spool with its partition and offset (the record names
    // the first, the rejected rows file every one).
    let spooled: Vec<String> = std::fs::read_dir(dir.path().join("spool"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.path().is_file())
                .filter_map(|e| std::fs::read_to_string(e.path()).ok())
                .collect()
        })
        .unwrap_or_default();
    let all = spooled.join("\n");
    assert!(all.contains("position 1"), "{all}");
    assert!(all.contains("position 2"), "{all}");
}

/// One sample of a benchmark run: seconds since the start, messages produced, rows in the
/// table.
type Sample = (f64, u64, u64);

/// Runs `members` consumers of one group on a 4-partition topic while a producer sends
/// `total` messages at `rate` per second; samples the lag (messages produced and not yet in
/// the table) every 250 ms. Returns the samples and the seconds until every message was in.
async fn bench_run(members: usize, total: u64, rate: u64) -> (Vec<Sample>, f64) {
    let dir = tempfile::tempdir().unwrap();
    let tansu = Tansu::start(&dir.path().join("tansu.log"));
    tansu.create_topic("events", PARTITIONS);
    let db = TestDb::new("kbench").await;
    table(&db).await;
    let mut a = args(&tansu, &db, &format!("bench{members}"), dir.path());
    for (flag, value) in [("--max-rows", "20000"), ("--linger", "200ms")] {
        let i = a.iter().position(|x| x == flag).unwrap();
        a[i + 1] = value.into();
    }
    let mut consumers: Vec<Consumer> = (0..members)
        .map(|i| Consumer::start(dir.path(), &format!("m{i}"), &a, &[]))
        .collect();
    // Every member in the group before the clock starts.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let produced = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let start = Instant::now();
    let (brokers, p) = (tansu.brokers(), produced.clone());
    let producer = std::thread::spawn(move || {
        // Rate 0: as fast as the producer goes.
        let chunk = if rate == 0 { total } else { (rate / 10).max(1) };
        let mut from = 0;
        while from < total {
            let to = (from + chunk).min(total);
            produce(&brokers, "events", from, to);
            p.store(to, std::sync::atomic::Ordering::Relaxed);
            from = to;
            if rate > 0 {
                let due = Duration::from_secs_f64(from as f64 / rate as f64);
                if let Some(wait) = due.checked_sub(start.elapsed()) {
                    std::thread::sleep(wait);
                }
            }
        }
    });
    let mut samples = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(300);
    let done = loop {
        let rows = db.u64("SELECT count() FROM t").await;
        let t = start.elapsed().as_secs_f64();
        samples.push((t, produced.load(std::sync::atomic::Ordering::Relaxed), rows));
        if rows >= total || Instant::now() > deadline {
            break t;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    producer.join().unwrap();
    for c in &mut consumers {
        c.stop(Duration::from_secs(20));
    }
    let (count, uniq) = (
        db.u64("SELECT count() FROM t").await,
        db.u64("SELECT uniqExact(id) FROM t").await,
    );
    assert_eq!((count, uniq), (total, total), "members {members}");
    (samples, done)
}

/// N consumers against one (`CHASYNC_BENCH_MEMBERS`, default `1,3`), `CHASYNC_BENCH_MESSAGES`
/// messages (default 200000) produced at each of `CHASYNC_BENCH_RATES` per second (default
/// `0,20000`; 0: as fast as the producer goes): rows/s and lag. Run with `scripts/with-clickhouse.sh scripts/test-sources.sh bench_
/// --ignored --nocapture` (docs/benchmarks.md).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: run it on purpose"]
async fn bench_consumers_n_against_one() {
    let env = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.into());
    let total: u64 = env("CHASYNC_BENCH_MESSAGES", "200000").parse().unwrap();
    let rates: Vec<u64> = env("CHASYNC_BENCH_RATES", "0,20000")
        .split(',')
        .map(|r| r.trim().parse().unwrap())
        .collect();
    let members: Vec<usize> = env("CHASYNC_BENCH_MEMBERS", "1,3")
        .split(',')
        .map(|m| m.trim().parse().unwrap())
        .collect();
    println!(
        "| produced at | members | rows/s (first produced to last in) | seconds until all in | lag when the last was produced | catch-up after it | max lag | mean lag |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for rate in rates {
        for &m in &members {
            let (samples, done) = bench_run(m, total, rate).await;
            let lags: Vec<u64> = samples
                .iter()
                .map(|(_, p, r)| p.saturating_sub(*r))
                .collect();
            let produce_end = samples
                .iter()
                .find(|(_, p, _)| *p >= total)
                .map(|(t, p, r)| (*t, p.saturating_sub(*r)))
                .unwrap_or((done, 0));
            let at = if rate == 0 {
                "at once".to_string()
            } else {
                format!("{rate}/s")
            };
            println!(
                "| {total} {at} | {m} | {:.0} | {done:.1} | {} rows | {:.1} s | {} rows | {:.0} rows |",
                total as f64 / done,
                produce_end.1,
                done - produce_end.0,
                lags.iter().max().unwrap_or(&0),
                lags.iter().sum::<u64>() as f64 / lags.len().max(1) as f64,
            );
        }
    }
}
