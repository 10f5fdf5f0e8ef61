//! Damage in `chasyncd`'s write-ahead log, against the real server: a byte flipped in the
//! middle of a segment of acknowledged rows costs only the record it hit; the records after it
//! land; the damage is reported in the log, the metrics and `/ready` until an operator
//! acknowledges it; the segment is kept.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use chasync_daemon::wal::Record;
use common::{Daemon, DaemonDb, DaemonOpts, Http, Switch, TestDb, eventually, metric, rows, spool};

/// The segment files of every stream in the spool.
fn segments(spool: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for table in std::fs::read_dir(spool.join("tables")).unwrap() {
        for stream in std::fs::read_dir(table.unwrap().path()).unwrap() {
            let stream = stream.unwrap().path();
            if !stream.is_dir() {
                continue;
            }
            for f in std::fs::read_dir(&stream).unwrap() {
                let f = f.unwrap().path();
                if f.file_name().unwrap().to_string_lossy().starts_with("wal-") {
                    out.push(f);
                }
            }
        }
    }
    out.sort();
    out
}

/// Flips a byte in the payload of the data record nearest the middle of the largest segment
/// (of those in a sealed batch, when `sealed`); returns the segment, the byte range of the
/// record hit and the ids of its rows.
fn flip_a_middle_byte(spool: &Path, sealed: bool) -> (PathBuf, std::ops::Range<usize>, Vec<u64>) {
    let seg = segments(spool)
        .into_iter()
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    let mut bytes = std::fs::read(&seg).unwrap();
    let data = Bytes::from(bytes.clone());
    let mut records = Vec::new();
    let mut pos = 0;
    while pos < data.len() {
        let (rec, len) = Record::decode(&data.slice(pos..)).expect("a sound segment");
        records.push((pos..pos + len, rec));
        pos += len;
    }
    let seals: Vec<(u64, u64)> = records
        .iter()
        .filter_map(|(_, r)| match r {
            Record::Seal { start, end, .. } => Some((*start, *end)),
            _ => None,
        })
        .collect();
    let mid = bytes.len() / 2;
    let (span, body) = records
        .iter()
        .filter_map(|(span, r)| match r {
            Record::Data { first, body, .. }
                if !sealed || seals.iter().any(|(s, e)| s <= first && first < e) =>
            {
                Some((span.clone(), body.clone()))
            }
            _ => None,
        })
        .min_by_key(|(span, _)| span.start.abs_diff(mid))
        .expect("a data record to damage");
    let ids = String::from_utf8_lossy(&body)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["id"].as_u64().unwrap()
        })
        .collect();
    bytes[span.start + 9 + (span.len() - 9) / 2] ^= 0x10;
    std::fs::write(&seg, &bytes).unwrap();
    (seg, span, ids)
}

/// Acknowledged rows in the WAL (all unsent, or sealed into batches ClickHouse never got when
/// `sealed`), a flipped byte, a restart.
async fn flipped_byte_then_restart(sealed: bool) {
    let db = TestDb::new(if sealed { "waldmg_sealed" } else { "waldmg" }).await;
    db.events("t").await;
    let sw = Switch::start(&common::url()).await;
    let (_tmp, spool) = spool();
    let batching = if sealed {
        // Batches of one request each, sealed and sent while ClickHouse is down: they stay
        // open, and the damaged request is the whole of its batch.
        "[batching]\nmax_rows = 20\nlinger = \"20ms\"\n[delivery]\nmax_backoff = \"100ms\"\n"
    } else {
        // Nothing is sealed before the kill.
        "[batching]\nmax_rows = 1000000\nlinger = \"600s\"\n"
    };
    let mut opts = DaemonOpts::new(&spool).config(batching);
    opts.urls = vec![sw.url()];
    let d = Daemon::start(opts);
    let http = Http::new();
    let v1 = d.url(&format!("/v1/tables/{}.t", db.name));
    let mut acked = BTreeSet::new();
    for k in 0..100u64 {
        if k == 1 && sealed {
            // The insert was checked while ClickHouse was up: it is taken while it is down.
            sw.set_down(true);
        }
        let r = http.post(&v1, rows(k * 20..k * 20 + 20)).await;
        assert_eq!(r.status, 200, "{}", r.body);
        acked.extend(k * 20..k * 20 + 20);
    }
    if sealed {
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    d.kill9();
    // Nothing (or at most the first request, sent before ClickHouse went down) landed.
    assert!(db.u64("SELECT count() FROM t").await <= 20);

    let (seg, span, lost) = flip_a_middle_byte(&spool, sealed);
    let damaged = std::fs::read(&seg).unwrap();
    sw.set_down(false);
    let d = Daemon::start(DaemonOpts::new(&spool).config("[batching]\nlinger = \"20ms\"\n"));
    let expected: BTreeSet<u64> = acked
        .iter()
        .copied()
        .filter(|i| !lost.contains(i))
        .collect();
    eventually(
        Duration::from_secs(30),
        "the rows after the damage",
        || async { db.u64("SELECT count() FROM t").await >= expected.len() as u64 },
    )
    .await;
    let ids = db.ids("t").await;
    let landed: BTreeSet<u64> = ids.iter().copied().collect();
    eprintln!(
        "{} rows acknowledged, the flip hit bytes {span:?} ({} rows), {} landed",
        acked.len(),
        lost.len(),
        ids.len()
    );
    assert_eq!(ids.len(), landed.len(), "duplicates landed");
    assert_eq!(landed, expected);

    // Reported: the log names the segment and the bytes ...
    let log = d.log_text();
    let line = log
        .lines()
        .find(|l| l.contains("write-ahead log damaged"))
        .unwrap_or_else(|| panic!("no damage in the log:\n{log}"));
    assert!(line.contains("ERROR"), "{line}");
    assert!(line.contains(&seg.display().to_string()), "{line}");
    assert!(
        line.contains(&format!("bytes={}..{}", span.start, span.end)),
        "{line}"
    );
    // ... the metrics count it ...
    let http = Http::new();
    let m = http.get(&d.url("/metrics")).await.body;
    assert_eq!(metric(&m, "chasyncd_wal_corruptions_total"), 1.0, "{m}");
    assert_eq!(
        metric(&m, "chasyncd_wal_corrupt_bytes_total"),
        span.len() as f64
    );
    assert_eq!(metric(&m, "chasyncd_wal_damage_unacknowledged"), 1.0);
    // ... and the daemon is not ready until an operator says so.
    let r = http.get(&d.url("/ready")).await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(r.body.contains("damage"), "{}", r.body);
    assert!(
        r.body.contains(&format!("{}..{}", span.start, span.end)),
        "{}",
        r.body
    );
    // The damaged segment is never deleted: once done with, it is kept as it was found.
    let kept = spool.join("corrupt").join(format!(
        "{}-{}",
        seg.parent().unwrap().file_name().unwrap().to_string_lossy(),
        seg.file_name().unwrap().to_string_lossy()
    ));
    eventually(
        Duration::from_secs(20),
        "the damaged segment kept",
        || async { kept.exists() },
    )
    .await;
    assert!(!seg.exists());
    assert_eq!(std::fs::read(&kept).unwrap(), damaged);

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_chasyncd"))
        .arg("--ack-corruption")
        .arg("--spool-dir")
        .arg(&spool)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("acknowledged:"), "{stdout}");
    assert!(stdout.contains(&seg.display().to_string()), "{stdout}");
    assert_eq!(http.get(&d.url("/ready")).await.status, 200);
    let m = http.get(&d.url("/metrics")).await.body;
    assert_eq!(metric(&m, "chasyncd_wal_damage_unacknowledged"), 0.0);
    let (status, log) = d.terminate(Duration::from_secs(30));
    assert!(status.success(), "{log}");

    // A restart finds nothing more to report or send.
    let d = Daemon::start(DaemonOpts::new(&spool));
    assert_eq!(http.get(&d.url("/ready")).await.status, 200);
    assert!(!d.log_text().contains("damaged"), "{}", d.log_text());
    let (status, _) = d.terminate(Duration::from_secs(30));
    assert!(status.success());
    assert_eq!(db.u64("SELECT count() FROM t").await, expected.len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_byte_mid_segment_costs_one_record_and_is_reported_until_acknowledged() {
    flipped_byte_then_restart(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_byte_among_open_batches_costs_one_record() {
    flipped_byte_then_restart(true).await;
}
