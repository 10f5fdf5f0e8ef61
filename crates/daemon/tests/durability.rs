//! Durability of `chasyncd` against the real server: `kill -9` under load, ClickHouse down,
//! backpressure, and the SIGTERM drain.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Daemon, DaemonDb, DaemonOpts, Http, Switch, TestDb, eventually, metric, rows, spool};

/// Loaders that send 20-row requests with fresh ids until stopped, remembering which ids
/// were acknowledged (200).
struct Load {
    acked: Arc<Mutex<BTreeSet<u64>>>,
    sent: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(url: String, loaders: u64) -> Self {
        let acked = Arc::new(Mutex::new(BTreeSet::new()));
        let sent = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = (0..loaders)
            .map(|_| {
                let (url, acked, sent, stop) =
                    (url.clone(), acked.clone(), sent.clone(), stop.clone());
                tokio::spawn(async move {
                    let http = Http::new();
                    while !stop.load(Ordering::Relaxed) {
                        let first = sent.fetch_add(20, Ordering::Relaxed);
                        match http
                            .request("POST", &url, rows(first..first + 20), &[])
                            .await
                        {
                            Ok(r) if r.status == 200 => {
                                acked.lock().unwrap().extend(first..first + 20)
                            }
                            Ok(r) => panic!("unexpected {}: {}", r.status, r.body),
                            // The daemon died under us.
                            Err(_) => break,
                        }
                    }
                })
            })
            .collect();
        Self {
            acked,
            sent,
            stop,
            tasks,
        }
    }

    async fn stop(self) -> (BTreeSet<u64>, u64) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await.unwrap();
        }
        let acked = self.acked.lock().unwrap().clone();
        (acked, self.sent.load(Ordering::Relaxed))
    }
}

/// `kill -9` of the daemon under load on table `t` (made by `create`), then a restart on the
/// same spool: every acknowledged row lands once. Returns the restarted daemon's metrics, read
/// once the batches recovered from the write-ahead log have ended (`checked`: each was looked
/// up before it was sent), and how many batches were recovered.
async fn kill_9_under_load(db: &TestDb, create: &str, checked: bool) -> (String, u64) {
    db.exec(create).await;
    // Slow inserts (a view that sleeps 3 ms a row), so batches are in flight at the kill.
    db.exec("CREATE TABLE slow (x UInt8) ENGINE = Null").await;
    db.exec("CREATE MATERIALIZED VIEW mv TO slow AS SELECT sleepEachRow(0.003) AS x FROM t")
        .await;
    let (_tmp, spool) = spool();
    let config = "[batching]\nmax_rows = 50\nlinger = \"20ms\"\n";
    let d = Daemon::start(DaemonOpts::new(&spool).config(config));
    let url = d.url(&format!("/v1/tables/{}.t", db.name));
    let load = Load::start(url, 8);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    d.kill9();
    let (acked, sent) = load.stop().await;
    assert!(acked.len() > 500, "only {} rows acknowledged", acked.len());
    let landed_before = db.u64("SELECT count() FROM t").await;
    // The durable acks ran far ahead of the slow inserts: let the backlog go fast now.
    db.exec("DROP VIEW mv").await;

    // Restart on the same spool (with larger batches: the sealed ones are re-formed from
    // their recorded row ranges whatever the limits): sealed batches go again under their
    // ids, the rest anew.
    let d = Daemon::start(
        DaemonOpts::new(&spool).config("[batching]\nmax_rows = 5000\nlinger = \"20ms\"\n"),
    );
    let replay = d.log_text();
    let batches: u64 = replay
        .lines()
        .find(|l| l.contains("replaying the write-ahead log"))
        .and_then(|l| l.split("batches=").nth(1))
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no replay in\n{replay}"));
    assert!(batches >= 1, "{replay}");
    let http = Http::new();
    let metrics_url = d.url("/metrics");
    eventually(Duration::from_secs(60), "the recovered batches", || {
        let (http, url) = (http.clone(), metrics_url.clone());
        async move {
            let m = http.get(&url).await.body;
            let ended = if checked {
                metric(&m, "chasyncd_outcomes_landed_total")
                    + metric(&m, "chasyncd_outcomes_not_landed_total")
                    + metric(&m, "chasyncd_outcomes_unresolved_total")
            } else {
                metric(&m, "chasyncd_batches_committed_total")
            };
            ended >= batches as f64
        }
    })
    .await;
    let metrics = http.get(&metrics_url).await.body;
    let (status, log) = d.terminate(Duration::from_secs(60));
    assert!(status.success(), "{log}");
    assert!(log.contains("drained=true"), "{log}");

    let ids = db.ids("t").await;
    let landed: BTreeSet<u64> = ids.iter().copied().collect();
    eprintln!(
        "sent {sent} rows, {} acknowledged, {landed_before} landed before the restart, \
         {} after; {batches} batches replayed",
        acked.len(),
        ids.len()
    );
    assert_eq!(ids.len(), landed.len(), "duplicates landed");
    assert!(
        acked.is_subset(&landed),
        "{} acknowledged rows lost",
        acked.difference(&landed).count()
    );
    assert!(landed.iter().all(|id| *id < sent));
    assert_eq!(
        db.u64("SELECT uniqExact(id) FROM t").await,
        db.u64("SELECT count() FROM t").await
    );
    assert_eq!(metric(&metrics, "chasyncd_rows_dead_lettered_total"), 0.0);
    (metrics, batches)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_then_restart_lands_every_acknowledged_row_exactly_once() {
    let db = TestDb::new("kill9").await;
    let (m, _) = kill_9_under_load(
        &db,
        "CREATE TABLE t (id UInt64, name String, _insert_id UUID) ENGINE = MergeTree \
         ORDER BY id SETTINGS non_replicated_deduplication_window = 10000",
        false,
    )
    .await;
    // ClickHouse deduplicated the batches sent again: nothing was looked up.
    assert_eq!(
        metric(&m, "chasyncd_outcomes_landed_total")
            + metric(&m, "chasyncd_outcomes_not_landed_total"),
        0.0,
        "{m}"
    );
}

/// The same on a plain MergeTree, which stores every insert it is given: each recovered batch
/// is looked up in the server's query log before it is sent again.
async fn kill_9_on_a_plain_merge_tree(tag: &str, columns: &str) {
    let db = TestDb::new(tag).await;
    let (m, batches) = kill_9_under_load(
        &db,
        &format!("CREATE TABLE t ({columns}) ENGINE = MergeTree ORDER BY id"),
        true,
    )
    .await;
    // Each recovered batch was looked up once, and sent only if it had not landed.
    let checked = metric(&m, "chasyncd_outcomes_landed_total")
        + metric(&m, "chasyncd_outcomes_not_landed_total");
    eprintln!(
        "recovered batches: {} had landed, {} had not",
        metric(&m, "chasyncd_outcomes_landed_total"),
        metric(&m, "chasyncd_outcomes_not_landed_total")
    );
    assert_eq!(checked, batches as f64, "{m}");
    assert_eq!(metric(&m, "chasyncd_outcomes_unresolved_total"), 0.0, "{m}");
    assert_eq!(metric(&m, "chasyncd_unchecked_resends_total"), 0.0, "{m}");
    assert_eq!(metric(&m, "chasyncd_at_least_once_tables"), 0.0, "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_on_a_plain_merge_tree_lands_every_acknowledged_row_exactly_once() {
    kill_9_on_a_plain_merge_tree("kill9plain", "id UInt64, name String").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_on_a_plain_merge_tree_with_insert_id_lands_every_acknowledged_row_exactly_once() {
    kill_9_on_a_plain_merge_tree("kill9iid", "id UInt64, name String, _insert_id UUID").await;
}

/// A batch recovered after a crash whose sending time is not known (a spool without its run
/// marker, as an earlier version left it) on a plain MergeTree: the query log cannot prove
/// that it never landed, so it is not sent again but dead-lettered, and nothing is doubled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recovered_batch_whose_outcome_cannot_be_told_is_dead_lettered_not_sent_twice() {
    let db = TestDb::new("unres").await;
    db.exec("CREATE TABLE t (id UInt64, name String) ENGINE = MergeTree ORDER BY id")
        .await;
    let sw = Switch::start(&common::url()).await;
    let (_tmp, spool) = spool();
    let config = "[batching]\nlinger = \"20ms\"\n[delivery]\nmax_backoff = \"200ms\"\n";
    let mut opts = DaemonOpts::new(&spool).config(config);
    opts.urls = vec![sw.url()];
    let d = Daemon::start(opts);
    let http = Http::new();
    let v1 = d.url(&format!("/v1/tables/{}.t", db.name));
    let r = http.post(&format!("{v1}?ack=committed"), rows(0..10)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    // ClickHouse out of reach: the next batches are sealed and never reach it.
    sw.set_down(true);
    for k in 1..=5u64 {
        let r = http.post(&v1, rows(k * 10..k * 10 + 10)).await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    eventually(Duration::from_secs(20), "a failed attempt", || {
        let (http, url) = (http.clone(), d.url("/metrics"));
        async move { metric(&http.get(&url).await.body, "chasyncd_failed_attempts_total") >= 1.0 }
    })
    .await;
    d.kill9();
    std::fs::remove_file(spool.join("running")).expect("the run marker");
    let d = Daemon::start(DaemonOpts::new(&spool).config(config));
    let replay = d.log_text();
    let batches: u64 = replay
        .lines()
        .find(|l| l.contains("replaying the write-ahead log"))
        .and_then(|l| l.split("batches=").nth(1))
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no replay in\n{replay}"));
    assert!(batches >= 1, "{replay}");
    let metrics_url = d.url("/metrics");
    eventually(Duration::from_secs(30), "the recovered batches", || {
        let (http, url) = (http.clone(), metrics_url.clone());
        async move {
            // Counted when settled, then written to the spool.
            let m = http.get(&url).await.body;
            metric(&m, "chasyncd_outcomes_unresolved_total") >= batches as f64
                && metric(&m, "chasyncd_batches_dead_lettered_total") >= batches as f64
        }
    })
    .await;
    let m = http.get(&metrics_url).await.body;
    assert_eq!(metric(&m, "chasyncd_outcomes_landed_total"), 0.0, "{m}");
    assert_eq!(metric(&m, "chasyncd_outcomes_not_landed_total"), 0.0, "{m}");
    assert_eq!(
        metric(&m, "chasyncd_batches_dead_lettered_total"),
        batches as f64,
        "{m}"
    );
    let (status, log) = d.terminate(Duration::from_secs(30));
    assert!(status.success(), "{log}");
    assert!(
        log.contains("it is not known when an attempt may have been sent"),
        "{log}"
    );
    // Only the rows committed before the crash, and those sent anew after it, once each.
    let ids = db.ids("t").await;
    let unique: BTreeSet<u64> = ids.iter().copied().collect();
    assert_eq!(ids.len(), unique.len(), "duplicates landed");
    assert!((0..10).all(|i| unique.contains(&i)), "{ids:?}");
    let dead = m
        .lines()
        .find(|l| l.starts_with("chasyncd_rows_dead_lettered_total "))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap();
    assert_eq!(ids.len() as u64 + dead, 60, "{m}");
}

/// A table where nothing can tell whether a lost answer landed (here: the inserts ask not to
/// be logged, and it has no `_insert_id`) is named in `/ready`, counted in `/metrics` and
/// warned about once in the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_with_at_least_once_delivery_is_reported_in_ready_metrics_and_the_log() {
    let db = TestDb::new("alo").await;
    db.exec("CREATE TABLE t (id UInt64, name String) ENGINE = MergeTree ORDER BY id")
        .await;
    db.exec("CREATE TABLE checked (id UInt64, name String) ENGINE = MergeTree ORDER BY id")
        .await;
    let (_tmp, spool) = spool();
    let d = Daemon::start(DaemonOpts::new(&spool).config("[batching]\nlinger = \"20ms\"\n"));
    let http = Http::new();
    let r = http.get(&d.url("/ready")).await;
    assert_eq!((r.status, r.body.trim()), (200, "ready"));
    for k in 0..3u64 {
        let r = http
            .post(
                &d.url(&format!(
                    "/?query=INSERT+INTO+{}.t+FORMAT+JSONEachRow&log_queries=0&ack=committed",
                    db.name
                )),
                rows(k * 10..k * 10 + 10),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        let r = http
            .post(
                &d.url(&format!("/v1/tables/{}.checked?ack=committed", db.name)),
                rows(k * 10..k * 10 + 10),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let expect = format!(
        "{}.t (MergeTree, no dedup window) for user default: AT LEAST ONCE",
        db.name
    );
    eventually(Duration::from_secs(10), "the guarantee in /ready", || {
        let (http, url, expect) = (http.clone(), d.url("/ready"), expect.clone());
        async move { http.get(&url).await.body.contains(&expect) }
    })
    .await;
    let r = http.get(&d.url("/ready")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.starts_with("ready\n"), "{}", r.body);
    assert!(r.body.contains("log_queries = 0"), "{}", r.body);
    assert!(!r.body.contains(".checked"), "{}", r.body);
    let m = http.get(&d.url("/metrics")).await.body;
    assert_eq!(metric(&m, "chasyncd_at_least_once_tables"), 1.0, "{m}");
    let (status, log) = d.terminate(Duration::from_secs(30));
    assert!(status.success(), "{log}");
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("AT LEAST ONCE"))
        .collect();
    assert_eq!(warnings.len(), 1, "{log}");
    assert!(warnings[0].contains(&expect), "{log}");
    assert_eq!(db.u64("SELECT count() FROM t").await, 30);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_clickhouse_down_it_acks_durably_is_not_ready_and_catches_up() {
    let db = TestDb::new("down").await;
    db.events("t").await;
    db.events("other").await;
    let sw = Switch::start(&common::url()).await;
    let (_tmp, spool) = spool();
    let mut opts = DaemonOpts::new(&spool)
        .config("[batching]\nlinger = \"50ms\"\n[delivery]\nmax_backoff = \"200ms\"\n");
    opts.urls = vec![sw.url()];
    let d = Daemon::start(opts);
    let http = Http::new();
    let v1 = d.url(&format!("/v1/tables/{}.t", db.name));
    let r = http.post(&format!("{v1}?ack=committed"), rows(0..10)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(http.get(&d.url("/ready")).await.status, 200);

    sw.set_down(true);
    let r = http.get(&d.url("/ready")).await;
    assert_eq!(r.status, 503);
    assert!(r.body.contains("not reachable"), "{}", r.body);
    for k in 1..=20u64 {
        let r = http.post(&v1, rows(k * 10..k * 10 + 10)).await;
        assert_eq!(
            r.status, 200,
            "durable ack while ClickHouse is down: {}",
            r.body
        );
    }
    // A table the daemon has never seen cannot be checked: 503, retry later.
    let r = http
        .post(&d.url(&format!("/v1/tables/{}.other", db.name)), rows(0..1))
        .await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.headers["retry-after"], "1");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(db.u64("SELECT count() FROM t").await, 10);
    let m = http.get(&d.url("/metrics")).await.body;
    assert!(metric(&m, "chasyncd_failed_attempts_total") >= 1.0, "{m}");
    assert!(sw.refused.load(Ordering::Relaxed) >= 1);

    sw.set_down(false);
    eventually(Duration::from_secs(20), "/ready", || {
        let http = http.clone();
        let url = d.url("/ready");
        async move { http.get(&url).await.status == 200 }
    })
    .await;
    // It catches up by itself, without a restart or a drain.
    eventually(Duration::from_secs(20), "catch-up", || async {
        db.u64("SELECT count() FROM t").await == 210
    })
    .await;
    let (status, log) = d.terminate(Duration::from_secs(30));
    assert!(status.success(), "{log}");
    assert_eq!(db.ids("t").await, (0..210).collect::<Vec<_>>());
}

/// Over the memory or the disk limit: 503 with Retry-After, and nothing accepted is lost.
async fn backpressure(limits: &str, expect: &str) {
    let db = TestDb::new("press").await;
    db.events("t").await;
    let sw = Switch::start(&common::url()).await;
    let (_tmp, spool) = spool();
    let mut opts = DaemonOpts::new(&spool).config(&format!(
        "[batching]\nmax_rows = 5\nlinger = \"10ms\"\n[delivery]\nmax_backoff = \"100ms\"\n\
         max_concurrency = 1\n[limits]\nsegment_bytes = 1024\n{limits}"
    ));
    opts.urls = vec![sw.url()];
    let d = Daemon::start(opts);
    let http = Http::new();
    let v1 = d.url(&format!("/v1/tables/{}.t", db.name));
    assert_eq!(http.post(&v1, rows(0..5)).await.status, 200);
    sw.set_down(true);
    let mut acked: Vec<u64> = (0..5).collect();
    let mut refused = None;
    for k in 1..400u64 {
        let r = http.post(&v1, rows(k * 5..k * 5 + 5)).await;
        match r.status {
            200 => acked.extend(k * 5..k * 5 + 5),
            503 => {
                refused = Some(r);
                break;
            }
            s => panic!("unexpected {s}: {}", r.body),
        }
    }
    let r = refused.expect("no 503 within 400 requests");
    assert_eq!(r.headers["retry-after"], "1");
    assert!(r.body.contains(expect), "{}", r.body);
    let m = http.get(&d.url("/metrics")).await.body;
    assert_eq!(metric(&m, "chasyncd_requests_total{code=\"503\"}"), 1.0);
    let spool_at_limit = metric(&m, "chasyncd_spool_bytes");
    sw.set_down(false);
    // It catches up, and the segments of committed batches are deleted.
    eventually(Duration::from_secs(30), "catch-up", || async {
        db.u64("SELECT count() FROM t").await == acked.len() as u64
    })
    .await;
    eventually(Duration::from_secs(10), "segment deletion", || {
        let http = http.clone();
        let url = d.url("/metrics");
        async move {
            let m = http.get(&url).await.body;
            metric(&m, "chasyncd_spool_bytes") <= 2048.0
        }
    })
    .await;
    eprintln!("spool: {spool_at_limit} bytes at the 503, 2 KiB at most after the catch-up");
    let (status, log) = d.terminate(Duration::from_secs(60));
    assert!(status.success(), "{log}");
    assert_eq!(db.ids("t").await, acked);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_queue_limit_it_answers_503_and_loses_nothing() {
    backpressure("max_queue_bytes = 2000\n", "too many rows waiting").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_spool_limit_it_answers_503_and_loses_nothing() {
    backpressure("max_spool_bytes = 6000\n", "write-ahead log is full").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_everything_acknowledged_and_exits_zero() {
    let db = TestDb::new("drain").await;
    db.events("t").await;
    let (_tmp, spool) = spool();
    // Batches would only seal after a minute: everything goes at the drain.
    let d = Daemon::start(
        DaemonOpts::new(&spool).config("[batching]\nlinger = \"60000ms\"\nmax_rows = 1000000\n"),
    );
    let http = Http::new();
    let v1 = d.url(&format!("/v1/tables/{}.t", db.name));
    for k in 0..30u64 {
        assert_eq!(http.post(&v1, rows(k * 10..k * 10 + 10)).await.status, 200);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(db.u64("SELECT count() FROM t").await, 0);
    let (status, log) = d.terminate(Duration::from_secs(30));
    assert!(status.success(), "{log}");
    assert!(log.contains("drained=true"), "{log}");
    assert_eq!(db.ids("t").await, (0..300).collect::<Vec<_>>());
    assert_eq!(db.u64("SELECT uniqExact(_insert_id) FROM t").await, 1);

    // A restart finds nothing left to send.
    let d = Daemon::start(DaemonOpts::new(&spool));
    assert!(!d.log_text().contains("replaying"), "{}", d.log_text());
    let (status, _) = d.terminate(Duration::from_secs(30));
    assert!(status.success());
    assert_eq!(db.u64("SELECT count() FROM t").await, 300);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_daemon_refuses_a_spool_in_use() {
    let (_tmp, spool) = spool();
    let d = Daemon::start(DaemonOpts::new(&spool));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_chasyncd"))
        .arg("--listen")
        .arg("127.0.0.1:0")
        .arg("--url")
        .arg(common::url())
        .arg("--spool-dir")
        .arg(&spool)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("in use by another chasyncd"), "{stderr}");
    let (status, _) = d.terminate(Duration::from_secs(30));
    assert!(status.success());
}

/// A client that retries an insert with the same `insert_deduplication_token` gets the first
/// insert's answer and the rows land once, on a table that does not deduplicate: while the
/// first is pending, once it is committed, once it failed on a bad value, and across restarts
/// (the first insert still in the WAL after a `kill -9`, or committed before a restart).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_with_the_same_token_lands_once_and_hears_the_first_answer() {
    let db = TestDb::new("retry").await;
    // No dedup window: ClickHouse would store a second insert of the same rows.
    db.exec(
        "CREATE TABLE t (id UInt64, name String, _insert_id UUID) ENGINE = MergeTree ORDER BY id",
    )
    .await;
    let sw = Switch::start(&common::url()).await;
    let (_tmp, spool) = spool();
    let config = "[batching]\nlinger = \"50ms\"\n[delivery]\nmax_backoff = \"200ms\"\n";
    let opts = || {
        let mut o = DaemonOpts::new(&spool).config(config);
        o.urls = vec![sw.url()];
        o
    };
    let http = Http::new();
    let d = Daemon::start(opts());
    let url = |d: &Daemon, token: &str, ack: &str| {
        d.url(&format!(
            "/?query=INSERT+INTO+{}.t+FORMAT+JSONEachRow&insert_deduplication_token={token}&ack={ack}",
            db.name
        ))
    };
    // 1. Committed, then retried twice: one copy, the same answer.
    for _ in 0..3 {
        let r = http.post(&url(&d, "tok-1", "committed"), rows(0..10)).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.headers["x-chasyncd-rows"], "10");
    }
    // The token in a SETTINGS clause is the same key.
    let r = http
        .post(
            &d.url("/"),
            format!(
                "INSERT INTO {}.t SETTINGS insert_deduplication_token = 'tok-1' FORMAT JSONEachRow\n{}",
                db.name,
                rows(0..10)
            ),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    // Another token is another insert.
    let r = http
        .post(&url(&d, "tok-2", "committed"), rows(10..20))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    // 2. A bad value: the retry hears the same error, and the spool holds one copy.
    let mut bad = rows(20..25);
    bad.push_str("{\"id\":\"x\",\"name\":\"bad\"}\n");
    let first = http
        .post(&url(&d, "tok-bad", "committed"), bad.clone())
        .await;
    assert_eq!(first.status, 400, "{}", first.body);
    let again = http.post(&url(&d, "tok-bad", "durable"), bad).await;
    assert_eq!(
        (again.status, &again.headers["x-clickhouse-exception-code"]),
        (400, &first.headers["x-clickhouse-exception-code"])
    );
    // 3. ClickHouse down: a durable ack, then the daemon is killed before it could send.
    sw.set_down(true);
    let r = http.post(&url(&d, "tok-3", "durable"), rows(30..40)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let m = http.get(&d.url("/metrics")).await.body;
    assert_eq!(metric(&m, "chasyncd_retried_requests_total"), 4.0);
    d.kill9();
    sw.set_down(false);
    // After the restart the retry waits for the replayed first insert and hears it landed.
    let d = Daemon::start(opts());
    let r = http
        .post(&url(&d, "tok-3", "committed"), rows(30..40))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.headers["x-chasyncd-rows"], "10");
    let (status, log) = d.terminate(Duration::from_secs(30));
    assert!(status.success(), "{log}");
    // 4. After a clean restart the keys of committed inserts are still known.
    let d = Daemon::start(opts());
    for (token, ids) in [("tok-1", 0..10), ("tok-2", 10..20), ("tok-3", 30..40)] {
        let r = http.post(&url(&d, token, "committed"), rows(ids)).await;
        assert_eq!(r.status, 200, "{token}: {}", r.body);
    }
    let r = http
        .post(&url(&d, "tok-bad", "committed"), rows(20..21))
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    let m = http.get(&d.url("/metrics")).await.body;
    assert_eq!(metric(&m, "chasyncd_retried_requests_total"), 4.0);
    let (status, log) = d.terminate(Duration::from_secs(30));
    assert!(status.success(), "{log}");
    let mut want: Vec<u64> = (0..20).collect();
    want.extend(30..40);
    assert_eq!(db.ids("t").await, want);
    let entries = chasync_core::DeadLetterSpool::new(spool.to_path_buf())
        .list()
        .unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].rows, 6);
}
