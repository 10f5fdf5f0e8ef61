//! Bounded waits: a server that accepts connections and never answers, a server that refuses
//! every insert, and an input that cannot be read to its end.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chasync_core::DeadLetterSpool;
use chasync_testkit::proxy::{Fault, FaultProxy};
use common::{Run, TestDb, chasync, run_cmd};

/// Runs the binary off the runtime (the proxy runs on it), with a generous liveness bound.
async fn run_off(dir: &Path, args: Vec<String>, env: Vec<(&'static str, &'static str)>) -> Run {
    let dir: PathBuf = dir.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let mut cmd = chasync(&dir);
        cmd.args(&args).timeout(Duration::from_secs(120));
        for (k, v) in env {
            cmd.env(k, v);
        }
        run_cmd(&mut cmd)
    })
    .await
    .unwrap()
}

fn strings(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_server_fails_doctor_and_insert_within_the_query_timeout() {
    let proxy = FaultProxy::start(&common::url(), vec![]).await;
    proxy.set_default(Fault::Stall);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("x.ndjson"), "{\"id\":1}\n").unwrap();
    let url = proxy.url();
    let env = vec![("CHASYNC_QUERY_TIMEOUT", "1s")];

    let r = run_off(dir.path(), strings(&["--url", &url, "doctor"]), env.clone()).await;
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains("did not answer a query within 1s"),
        "{r:?}"
    );

    let r = run_off(
        dir.path(),
        strings(&["--url", &url, "doctor", "--table", "default.t"]),
        env.clone(),
    )
    .await;
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("within 1s"), "{r:?}");

    let r = run_off(
        dir.path(),
        strings(&["--url", &url, "insert", "--table", "default.t", "x.ndjson"]),
        env,
    )
    .await;
    assert_eq!(r.code, 1, "{r:?}");
    // The first query of a load (the check of its settings, then the schema) times out.
    assert!(
        r.stderr.contains("no answer to the") && r.stderr.contains("within 1s"),
        "{r:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_against_a_server_refusing_inserts_waits_says_so_and_ends_by_the_deadline() {
    let db = TestDb::new("deadline").await;
    db.exec(
        "CREATE TABLE t (id UInt64, name String) ENGINE = MergeTree ORDER BY id \
         SETTINGS non_replicated_deduplication_window = 1000",
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut text = String::new();
    for id in 0..200_000 {
        text.push_str(&format!("{{\"id\":{id},\"name\":\"n{id}\"}}\n"));
    }
    std::fs::write(d.join("x.ndjson"), text).unwrap();
    let proxy = FaultProxy::start(&common::url(), vec![]).await;
    proxy.set_default(Fault::ResetInserts);
    let (url, t) = (proxy.url(), db.t("t"));
    // Small batches and a short queue: reading waits for delivery, which never commits; the
    // default retries would go on for days.
    let r = run_off(
        d,
        strings(&[
            "--url",
            &url,
            "insert",
            "--table",
            &t,
            "--max-rows",
            "1000",
            "--set",
            "queue_rows=2000",
            "--set",
            "max_backoff=1s",
            "--deadline",
            "8s",
            "x.ndjson",
        ]),
        vec![],
    )
    .await;
    assert_eq!(r.code, 5, "{r:?}");
    assert!(
        r.stderr
            .contains("waiting for ClickHouse: nothing committed for"),
        "{r:?}"
    );
    assert!(r.stderr.contains("the deadline passed"), "{r:?}");
    assert!(
        r.stdout
            .contains("deadline:       passed; reading stopped after"),
        "{r:?}"
    );
    let summary = |key: &str| -> u64 {
        let line = r
            .stdout
            .lines()
            .find(|l| l.starts_with(key))
            .unwrap_or_else(|| panic!("{key} in {r:?}"));
        line[key.len()..]
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let read = summary("rows read:");
    assert!(read > 0 && read < 200_000, "{r:?}");
    assert_eq!(summary("rows landed:"), 0);
    assert_eq!(
        summary("dead-lettered:"),
        read,
        "every row read is in the spool"
    );
    assert_eq!(db.u64("SELECT count() FROM t").await, 0);
    let spooled: u64 = DeadLetterSpool::new(d.join("chasync-spool"))
        .list()
        .unwrap()
        .iter()
        .map(|e| e.rows)
        .sum();
    assert_eq!(spooled, read);
    // Replayed once the server takes inserts: exactly the rows read.
    let r = run_off(d, strings(&["dlq", "replay"]), vec![]).await;
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(db.u64("SELECT count() FROM t").await, read);
    assert_eq!(db.u64("SELECT uniqExact(id) FROM t").await, read);
    assert_eq!(db.u64("SELECT max(id) FROM t").await, read - 1);
}

fn gz(path: &Path, ids: std::ops::Range<u64>, cut: bool) {
    let mut text = String::new();
    for id in ids {
        text.push_str(&format!(
            "{{\"id\":{id},\"name\":\"n{id}-{}\"}}\n",
            id * 7919
        ));
    }
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(text.as_bytes()).unwrap();
    let bytes = enc.finish().unwrap();
    let bytes = if cut {
        &bytes[..bytes.len() / 2]
    } else {
        &bytes[..]
    };
    std::fs::write(path, bytes).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_gzip_is_named_and_the_files_after_it_still_load() {
    let db = TestDb::new("badgz").await;
    db.exec("CREATE TABLE t (id UInt64, name String) ENGINE = MergeTree ORDER BY id")
        .await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    gz(&d.join("a.ndjson.gz"), 0..10_000, false);
    gz(&d.join("b.ndjson.gz"), 10_000..60_000, true);
    gz(&d.join("c.ndjson.gz"), 60_000..70_000, false);
    let t = db.t("t");
    let r = run_off(
        d,
        strings(&[
            "insert",
            "--table",
            &t,
            "a.ndjson.gz",
            "b.ndjson.gz",
            "c.ndjson.gz",
        ]),
        vec![],
    )
    .await;
    assert_eq!(r.code, 5, "{r:?}");
    // Named, with the place it reached; the rows before it and the next file are loaded.
    let from_b = db
        .u64("SELECT count() FROM t WHERE id >= 10000 AND id < 60000")
        .await;
    assert!(from_b > 0 && from_b < 50_000, "{from_b}");
    assert_eq!(
        db.u64("SELECT max(id) FROM t WHERE id < 60000").await,
        10_000 + from_b - 1
    );
    assert!(
        r.stderr.contains(&format!(
            "b.ndjson.gz: cannot be read past line {from_b} (byte "
        )),
        "{r:?}"
    );
    assert!(r.stderr.contains("going on with the next input"), "{r:?}");
    assert!(
        r.stderr.contains("1 input(s) could not be read to the end"),
        "{r:?}"
    );
    assert!(
        r.stderr
            .contains(&format!("{} row(s) landed", 20_000 + from_b)),
        "{r:?}"
    );
    assert_eq!(
        db.u64("SELECT count() FROM t").await,
        20_000 + from_b,
        "a and c whole"
    );

    // --stop-on-bad-input: the load stops there.
    db.exec("TRUNCATE TABLE t").await;
    let r = run_off(
        d,
        strings(&[
            "insert",
            "--table",
            &t,
            "--stop-on-bad-input",
            "a.ndjson.gz",
            "b.ndjson.gz",
            "c.ndjson.gz",
        ]),
        vec![],
    )
    .await;
    assert_eq!(r.code, 5, "{r:?}");
    assert!(r.stderr.contains("--stop-on-bad-input"), "{r:?}");
    assert_eq!(db.u64("SELECT count() FROM t").await, 10_000 + from_b);
    assert_eq!(db.u64("SELECT count() FROM t WHERE id >= 60000").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inserts_hanging_in_flight_are_given_up_at_the_deadline() {
    let db = TestDb::new("deadline_stall").await;
    db.exec(
        "CREATE TABLE t (id UInt64, name String) ENGINE = MergeTree ORDER BY id \
         SETTINGS non_replicated_deduplication_window = 1000",
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("x.csv"), "id,name\n1,a\n2,b\n3,c\n").unwrap();
    // The server takes the insert and never answers: without the deadline the attempt waits
    // for insert_timeout (120 s), then retries for days.
    let proxy = FaultProxy::start(&common::url(), vec![]).await;
    proxy.set_default(Fault::StallInserts);
    let (url, t) = (proxy.url(), db.t("t"));
    let r = run_off(
        d,
        strings(&[
            "--url",
            &url,
            "--json",
            "insert",
            "--table",
            &t,
            "--deadline",
            "3s",
            "x.csv",
        ]),
        vec![],
    )
    .await;
    // Everything was read: the rows are dead-lettered, not lost.
    assert_eq!(r.code, 3, "{r:?}");
    let v = r.json();
    assert_eq!(v["rows_read"], 3);
    assert_eq!(v["rows_dead_lettered"], 3);
    assert_eq!(v["deadline_passed_at"], serde_json::Value::Null);
    let records = DeadLetterSpool::new(d.join("chasync-spool"))
        .list()
        .unwrap();
    assert_eq!(records.len(), 1);
    assert!(
        records[0].error.contains("gave up (deadline)"),
        "{:?}",
        records[0]
    );
    assert!(
        records[0].error.contains("outcome is unknown"),
        "{:?}",
        records[0]
    );
    let r = run_off(d, strings(&["dlq", "replay"]), vec![]).await;
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(db.u64("SELECT count() FROM t").await, 3);
}
