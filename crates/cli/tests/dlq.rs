//! `chasync dlq` over a spool the engine really wrote against the real server.

mod common;

use std::path::Path;

use chasync_core::{Config, DeadLetterSpool, Ingestor, StreamId};
use common::{TestDb, run};

/// Has a column (`extra`) the table lacks at first: every batch is dead-lettered (16).
#[derive(clickhouse::Row, serde::Serialize)]
struct Row {
    id: u64,
    name: String,
    extra: u32,
}

const HASH: &str = "SELECT sum(cityHash64(id, name, extra)) FROM t";
const EXPECTED: &str = "SELECT sum(cityHash64(number, concat('n', toString(number)), toUInt32(number * 3))) \
     FROM numbers(10)";

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

async fn dead_letter_ten_rows(db: &TestDb, spool: &Path) -> Vec<String> {
    let mut c = Config::new(common::url(), "t");
    c.clickhouse.database = db.name.clone();
    c.spool.dir = spool.to_path_buf();
    c.batching.max_rows = 5;
    c.delivery.max_attempts = 1;
    c.delivery.stream_id = Some(StreamId::random());
    let ing = Ingestor::<Row>::start(c.clone()).await.unwrap();
    for id in 0..10u64 {
        ing.handle()
            .send(Row {
                id,
                name: format!("n{id}"),
                extra: id as u32 * 3,
            })
            .await
            .unwrap();
    }
    let stats = ing.shutdown().await.unwrap();
    assert_eq!(stats.rows_dead_lettered, 10);
    assert_eq!(stats.batches_dead_lettered, 2);
    (0..2)
        .map(|s| c.delivery.stream_id.unwrap().batch_id(s).to_string())
        .collect()
}

#[tokio::test]
async fn list_show_replay_once_and_purge() {
    let db = TestDb::new("dlq").await;
    db.exec(
        "CREATE TABLE t (id UInt64, name String) ENGINE = MergeTree ORDER BY id \
         SETTINGS non_replicated_deduplication_window = 100",
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    let ids = dead_letter_ten_rows(&db, &spool).await;
    let d = dir.path();

    // list
    let r = run(d, &["dlq", "list", "--dlq-dir", "spool"]);
    assert_eq!(r.code, 0, "{r:?}");
    let table = db.t("t");
    for id in &ids {
        let line = r
            .stdout
            .lines()
            .find(|l| l.starts_with(id.as_str()))
            .unwrap_or_else(|| panic!("{id} in {r:?}"));
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(
            &cols[1..8],
            [
                table.as_str(),
                "batch",
                "5",
                cols[4],
                "permanent",
                "16",
                "1"
            ],
            "{line}"
        );
    }
    assert!(r.stderr.contains("2 entries, 10 row(s)"), "{r:?}");
    let r = run(d, &["--json", "dlq", "list", "--dlq-dir", "spool"]);
    let v = r.json();
    let entries = v["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(
        entries
            .iter()
            .map(|e| e["rows"].as_u64().unwrap())
            .sum::<u64>(),
        10
    );
    assert_eq!(entries[0]["error_kind"], "permanent");
    assert_eq!(entries[0]["code"], 16);
    let bytes0 = entries[0]["bytes"].as_u64().unwrap();
    let first = entries[0]["id"].as_str().unwrap().to_string();

    // show, by a prefix of the id
    let r = run(d, &["dlq", "show", &first[..8], "--dlq-dir", "spool"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains(&format!("id:          {first}")), "{r:?}");
    assert!(r.stdout.contains("format:      RowBinary"), "{r:?}");
    assert!(r.stdout.contains(&format!("({bytes0} bytes,")), "{r:?}");
    assert!(r.stdout.contains("NO_SUCH_COLUMN_IN_TABLE"), "{r:?}");
    assert!(r.stdout.contains("columns:     id, name, extra"), "{r:?}");
    let payload = std::fs::metadata(spool.join(format!("{first}.bin")))
        .unwrap()
        .len();
    assert_eq!(payload, bytes0);
    let r = run(d, &["dlq", "show", "ffffffff-0000", "--dlq-dir", "spool"]);
    assert_eq!(r.code, 1, "{r:?}");

    // replay before the fix: fails again, exit 3, entries stay
    let r = run(
        d,
        &["dlq", "replay", "--dlq-dir", "spool", "--retries", "0"],
    );
    assert_eq!(r.code, 3, "{r:?}");
    assert!(r.stdout.contains("replayed 0 batch(es), 0 row(s)"), "{r:?}");
    assert_eq!(r.stdout.matches("failed again:").count(), 2, "{r:?}");
    assert_eq!(DeadLetterSpool::new(&spool).list().unwrap().len(), 2);

    // fix the table; keep copies of the spool
    copy_dir(&spool, &d.join("saved"));
    copy_dir(&spool, &d.join("purge-me"));
    db.exec("ALTER TABLE t ADD COLUMN extra UInt32").await;
    let r = run(d, &["--json", "dlq", "replay", "--dlq-dir", "spool"]);
    assert_eq!(r.code, 0, "{r:?}");
    let v = r.json();
    assert_eq!(v["batches_committed"], 2);
    assert_eq!(v["rows_committed"], 10);
    assert_eq!(v["failed"].as_array().unwrap().len(), 0);
    assert_eq!(db.u64("SELECT count() FROM t").await, 10);
    assert_eq!(db.u64(HASH).await, db.u64(EXPECTED).await);
    assert_eq!(DeadLetterSpool::new(&spool).list().unwrap().len(), 0);
    let r = run(d, &["dlq", "list", "--dlq-dir", "spool"]);
    assert!(r.stdout.contains("no entries"), "{r:?}");

    // replaying the saved copy lands nothing more: same batch ids, deduplicated
    let r = run(d, &["dlq", "replay", "--dlq-dir", "saved"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(db.u64("SELECT count() FROM t").await, 10);
    assert_eq!(db.u64(HASH).await, db.u64(EXPECTED).await);

    // purge: needs --yes; one by id, then all
    let r = run(d, &["dlq", "purge", "--dlq-dir", "purge-me"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stderr
            .contains("refusing to delete 2 entries (10 row(s))"),
        "{r:?}"
    );
    assert_eq!(
        DeadLetterSpool::new(d.join("purge-me"))
            .list()
            .unwrap()
            .len(),
        2
    );
    let r = run(
        d,
        &[
            "dlq",
            "purge",
            "--dlq-dir",
            "purge-me",
            "--id",
            &ids[1],
            "--yes",
        ],
    );
    assert_eq!(r.code, 0, "{r:?}");
    let left = DeadLetterSpool::new(d.join("purge-me")).list().unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].id.to_string(), ids[0]);
    assert!(!d.join("purge-me").join(format!("{}.bin", ids[1])).exists());
    let r = run(
        d,
        &["--json", "dlq", "purge", "--dlq-dir", "purge-me", "--yes"],
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.json()["rows"], 5);
    assert_eq!(
        DeadLetterSpool::new(d.join("purge-me"))
            .list()
            .unwrap()
            .len(),
        0
    );
}

/// A row the engine's encoder refuses when `id` is odd.
#[derive(clickhouse::Row, serde::Serialize)]
struct Picky {
    #[serde(serialize_with = "even_only")]
    id: u64,
    name: String,
}

fn even_only<S: serde::Serializer>(id: &u64, s: S) -> Result<S::Ok, S::Error> {
    if id % 2 == 1 {
        return Err(serde::ser::Error::custom(format!("odd id {id}")));
    }
    s.serialize_u64(*id)
}

#[tokio::test]
async fn rejected_rows_show_as_json_lines_and_are_not_replayed() {
    let db = TestDb::new("rejected").await;
    db.exec("CREATE TABLE t (id UInt64, name String) ENGINE = MergeTree ORDER BY id")
        .await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut c = Config::new(common::url(), "t");
    c.clickhouse.database = db.name.clone();
    c.spool.dir = d.join("spool");
    let ing = Ingestor::<Picky>::start(c).await.unwrap();
    for id in 0..4u64 {
        ing.handle()
            .send(Picky {
                id,
                name: format!("n{id}"),
            })
            .await
            .unwrap();
    }
    let stats = ing.shutdown().await.unwrap();
    assert_eq!(stats.rows_committed, 2);
    assert_eq!(stats.rows_rejected, 2);
    let spool = DeadLetterSpool::new(d.join("spool"));
    let entries = spool.list().unwrap();
    assert_eq!(entries.len(), 1, "{entries:?}");
    let id = entries[0].id.to_string();

    let r = run(d, &["dlq", "list", "--dlq-dir", "spool"]);
    assert!(
        r.stdout
            .lines()
            .any(|l| l.starts_with(&id) && l.contains(" rejected ") && l.contains(" data ")),
        "{r:?}"
    );
    let r = run(d, &["dlq", "show", &id, "--dlq-dir", "spool"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("kind:        rejected"), "{r:?}");
    assert!(r.stdout.contains("format:      JSONEachRow"), "{r:?}");
    let rows_part = r.stdout.split("rejected rows:\n").nth(1).unwrap();
    let lines: Vec<serde_json::Value> = rows_part
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{r:?}");
    assert!(
        lines[0]["reason"].as_str().unwrap().contains("odd id 1"),
        "{r:?}"
    );
    assert!(
        lines[1]["reason"].as_str().unwrap().contains("odd id 3"),
        "{r:?}"
    );
    let r = run(d, &["--json", "dlq", "show", &id, "--dlq-dir", "spool"]);
    let v = r.json();
    assert_eq!(v["rejected_rows"].as_array().unwrap().len(), 2);
    assert_eq!(v["record"]["kind"], "rejected");
    // replay leaves them (nothing it can send), exit 0, and says so
    let r = run(d, &["dlq", "replay", "--dlq-dir", "spool"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout.contains("skipped 1 entry of rejected rows"),
        "{r:?}"
    );
    assert_eq!(spool.list().unwrap().len(), 1);
    assert_eq!(db.u64("SELECT count() FROM t").await, 2);
}
