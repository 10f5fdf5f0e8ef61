//! Re-running a load of files after `kill -9`: the same batches under the same ids (each row
//! lands once on a deduplicating table), and with `--resume` only what is left is sent.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use chasync_testkit::proxy::{Fault, FaultProxy};
use common::{Run, TestDb, chasync, run_cmd};

/// Rows in the file: 200k, or `CHASYNC_SOAK_rows()` for a longer run.
fn rows() -> u64 {
    std::env::var("CHASYNC_SOAK_rows()")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000)
}
const BATCH: &str = "5000";

/// NDJSON rows `0..rows()`; every 997th sends `name` as a number (not converted on the client:
/// it goes through the second, JSONEachRow pipeline).
fn write_file(path: &Path) {
    let mut text = String::with_capacity(rows() as usize * 40);
    for id in 0..rows() {
        if id % 997 == 0 {
            text.push_str(&format!("{{\"id\":{id},\"name\":{id}}}\n"));
        } else {
            text.push_str(&format!("{{\"id\":{id},\"name\":\"n{id}\"}}\n"));
        }
    }
    std::fs::write(path, text).unwrap();
}

async fn table(db: &TestDb) {
    db.exec(
        "CREATE TABLE t (id UInt64, name String) ENGINE = MergeTree ORDER BY id \
         SETTINGS non_replicated_deduplication_window = 1000",
    )
    .await;
}

fn args(db: &TestDb, url: &str, file: &Path, extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = [
        "--url",
        url,
        "--json",
        "insert",
        "--table",
        &db.t("t"),
        "--max-rows",
        BATCH,
        "--max-concurrency",
        "1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    a.extend(extra.iter().map(|s| s.to_string()));
    a.push(file.to_string_lossy().into_owned());
    a
}

/// Starts the load, waits until some batches have committed, and kills it (SIGKILL).
async fn start_and_kill(db: &TestDb, dir: &Path, args: &[String]) -> u64 {
    let mut child: Child = std::process::Command::new(assert_cmd::cargo::cargo_bin("chasync"))
        .args(args)
        .env_remove("CHASYNC_USER")
        .env_remove("CHASYNC_PASSWORD")
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    loop {
        let landed = db.u64("SELECT count() FROM t").await;
        if landed >= 20_000 {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the load ended before it was killed"
        );
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "nothing landed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let landed = db.u64("SELECT count() FROM t").await;
    assert!(landed < rows(), "killed too late: {landed}");
    landed
}

async fn run_off(dir: &Path, args: Vec<String>) -> Run {
    let dir: PathBuf = dir.to_path_buf();
    tokio::task::spawn_blocking(move || run_cmd(chasync(&dir).args(&args)))
        .await
        .unwrap()
}

async fn each_row_once(db: &TestDb) {
    assert_eq!(db.u64("SELECT count() FROM t").await, rows());
    assert_eq!(db.u64("SELECT uniqExact(id) FROM t").await, rows());
    assert_eq!(
        db.u64("SELECT sum(cityHash64(id, name)) FROM t").await,
        db.u64(&format!(
            "SELECT sum(cityHash64(number, if(number % 997 = 0, toString(number), \
             concat('n', toString(number))))) FROM numbers({})",
            rows()
        ))
        .await
    );
}

/// Inserts into `t` that finished with query ids not in `before`.
async fn inserts(db: &TestDb) -> Vec<String> {
    db.exec("SYSTEM FLUSH LOGS").await;
    db.strings(&format!(
        "SELECT query_id FROM system.query_log WHERE type = 'QueryFinish' \
         AND query_kind = 'Insert' AND has(tables, '{}.t') ORDER BY event_time_microseconds",
        db.name
    ))
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_load_run_again_lands_each_row_once() {
    let db = TestDb::new("rerun").await;
    table(&db).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.ndjson");
    write_file(&file);
    // Slow answers, so that the load is killed in the middle.
    let proxy = FaultProxy::start(&common::url(), vec![]).await;
    proxy.set_default(Fault::Delay(Duration::from_millis(60)));
    let a = args(&db, &proxy.url(), &file, &[]);
    let landed = start_and_kill(&db, dir.path(), &a).await;
    let first_run = inserts(&db).await.len();

    // The same command again, straight to the server.
    let r = run_off(dir.path(), args(&db, &common::url(), &file, &[])).await;
    assert_eq!(r.code, 0, "{r:?}");
    each_row_once(&db).await;
    let v = r.json();
    assert_eq!(v["rerunnable"], true);
    assert_eq!(
        v["rows_landed"],
        rows(),
        "every batch sent again, {landed} deduplicated"
    );
    // The batches the first run committed were deduplicated: the same ids.
    let all = inserts(&db).await;
    let again = &all[first_run..];
    assert!(
        all[..first_run].iter().all(|id| again.contains(id)),
        "the re-run sent each committed batch under its id"
    );
    // The pass-through pipeline's lines landed too (they are in the hash above).
    assert!(v["pass_through_stats"]["rows_committed"].as_u64().unwrap() > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_load_sends_only_what_is_left() {
    let db = TestDb::new("resume").await;
    table(&db).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.ndjson");
    write_file(&file);
    let proxy = FaultProxy::start(&common::url(), vec![]).await;
    proxy.set_default(Fault::Delay(Duration::from_millis(60)));
    let a = args(&db, &proxy.url(), &file, &["--resume"]);
    let landed = start_and_kill(&db, dir.path(), &a).await;
    let first_run = inserts(&db).await;

    let r = run_off(dir.path(), args(&db, &common::url(), &file, &["--resume"])).await;
    assert_eq!(r.code, 0, "{r:?}");
    let v = r.json();
    let skipped = v["rows_skipped"].as_u64().unwrap();
    let sent = v["rows_landed"].as_u64().unwrap();
    // At most the one batch in flight at the kill committed without its journal line.
    assert!(skipped <= landed, "{skipped} skipped, {landed} had landed");
    assert!(
        skipped + 5000 + 997 >= landed,
        "{skipped} skipped, {landed} had landed"
    );
    // Every batch not skipped is sent (and deduplicated when it had landed).
    assert_eq!(skipped + sent, rows(), "{v}");
    each_row_once(&db).await;
    // The re-run sent none of the journaled batches again.
    let all = inserts(&db).await;
    let again: Vec<&String> = all[first_run.len()..].iter().collect();
    let resent = first_run.iter().filter(|id| again.contains(id)).count();
    assert!(resent <= 1, "{resent} committed batches sent again");

    // Once more: everything is in the journal, nothing is sent.
    let r = run_off(dir.path(), args(&db, &common::url(), &file, &["--resume"])).await;
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.json()["rows_skipped"], rows());
    assert_eq!(r.json()["rows_landed"], 0);
    assert_eq!(inserts(&db).await.len(), all.len());
    each_row_once(&db).await;

    // A changed file is another input: its identity, and so its ids, differ.
    std::fs::write(&file, "{\"id\":0,\"name\":\"changed\"}\n").unwrap();
    let r = run_off(dir.path(), args(&db, &common::url(), &file, &["--resume"])).await;
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.json()["rows_skipped"], 0);
    assert_eq!(r.json()["rows_landed"], 1);
}

#[test]
fn resume_needs_files_and_one_thread() {
    let dir = tempfile::tempdir().unwrap();
    let r = run_cmd(chasync(dir.path()).args([
        "insert", "--table", "t", "--format", "ndjson", "--resume", "-",
    ]));
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("--resume needs files"), "{r:?}");
    std::fs::write(dir.path().join("x.ndjson"), "{}\n").unwrap();
    let r = run_cmd(chasync(dir.path()).args([
        "insert",
        "--table",
        "t",
        "--resume",
        "--threads",
        "2",
        "x.ndjson",
    ]));
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("--resume needs one thread"), "{r:?}");
}
