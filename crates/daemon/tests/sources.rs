//! `chasyncd` runs the brokers of its configuration (`[[sources.kafka]]`, `[[sources.nats]]`)
//! into their tables: a tansu broker and a nats-server with JetStream on loopback, the real
//! ClickHouse; every message lands exactly once, and SIGTERM stops the sources with the
//! daemon.
//!
//! Needs the `broker-tests` feature and the brokers: `scripts/test-sources.sh`.
#![cfg(feature = "broker-tests")]

mod common;

use std::time::{Duration, Instant};

use chasync_testkit::brokers::{Nats, Tansu};
use common::{Daemon, DaemonDb, DaemonOpts, TestDb, spool};
use rdkafka::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

fn produce_kafka(brokers: &str, topic: &str, n: u64) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("a producer");
    for i in 0..n {
        let value = format!(r#"{{"id":{i},"name":"k{i}"}}"#);
        let mut record = BaseRecord::<(), str>::to(topic)
            .payload(&value)
            .partition((i % 2) as i32);
        while let Err((_, r)) = producer.send(record) {
            producer.poll(Duration::from_millis(10));
            record = r;
        }
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(30)).expect("produced");
}

async fn publish_nats(url: &str, n: u64) {
    let js = async_nats::jetstream::new(async_nats::connect(url).await.expect("connect"));
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "EV".into(),
        subjects: vec!["ev.>".into()],
        ..Default::default()
    })
    .await
    .expect("the stream");
    for i in 0..n {
        let value = format!(r#"{{"id":{i},"name":"n{i}"}}"#);
        js.publish(format!("ev.{}", i % 2), value.into())
            .await
            .expect("publish")
            .await
            .expect("stored");
    }
}

async fn wait_count(db: &TestDb, table: &str, n: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let c = db.u64(&format!("SELECT count() FROM {table}")).await;
        if c >= n || Instant::now() > deadline {
            return c;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_consumes_its_configured_kafka_and_nats_sources_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let tansu = Tansu::start(&dir.path().join("tansu.log"));
    tansu.create_topic("events", 2);
    let nats = Nats::start(dir.path());
    let db = TestDb::new("dsources").await;
    db.events("k").await;
    db.events("n").await;
    let n = 600;
    produce_kafka(&tansu.brokers(), "events", n);
    publish_nats(&nats.url(), n).await;
    let (_tmp, spool) = spool();
    let d = Daemon::start(DaemonOpts::new(&spool).config(&format!(
        "[batching]\nmax_rows = 100\nlinger = \"100ms\"\n\n\
         [[sources.kafka]]\nbrokers = \"{brokers}\"\ngroup = \"g\"\ntopics = [\"events\"]\n\
         table = \"{db}.k\"\nsession_timeout = \"6s\"\nseal_table = \"{db}.seals\"\n\n\
         [[sources.nats]]\nurl = \"{url}\"\nstream = \"EV\"\nsubjects = [\"ev.0\", \"ev.1\"]\n\
         table = \"{db}.n\"\nseal_table = \"{db}.seals\"\n",
        brokers = tansu.brokers(),
        url = nats.url(),
        db = db.name,
    )));
    let (k, m) = (wait_count(&db, "k", n).await, wait_count(&db, "n", n).await);
    let (status, log) = d.terminate(Duration::from_secs(60));
    assert!(status.success(), "{log}");
    assert_eq!((k, m), (n, n), "{log}");
    for t in ["k", "n"] {
        assert_eq!(db.ids(t).await, (0..n).collect::<Vec<_>>(), "{t}: {log}");
        // Batches of at most 100 rows, each with its own id.
        let ids = db
            .u64(&format!("SELECT uniqExact(_insert_id) FROM {t}"))
            .await;
        assert!(ids >= n / 100, "{t}: {ids} batch ids");
    }
    // Both partitions of each source sealed their ranges.
    let seals = db
        .u64("SELECT count() FROM (SELECT DISTINCT source, partition FROM seals)")
        .await;
    assert_eq!(seals, 4, "{log}");
}
