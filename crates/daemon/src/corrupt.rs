//! Damage found in write-ahead logs: reported loudly and kept until an operator acknowledges
//! it.
//!
//! When recovery ([`crate::wal::recover`]) finds byte ranges of a segment that do not read as
//! records, the daemon logs an ERROR per range (segment and bytes), counts them in
//! `chasyncd_wal_corruptions_total` / `chasyncd_wal_corrupt_bytes_total`, and writes a report
//! per damaged segment in the spool's `corrupt/` directory,
//! `corrupt/<stream>-wal-<n>.json`. The segment itself is never deleted: once its batches
//! have ended it is moved to `corrupt/<stream>-wal-<n>.log`, as it was found. `/ready`
//! answers 503, naming the damage, while a report is not acknowledged; `chasyncd
//! --ack-corruption` (with the same spool) acknowledges every report, whether the daemon runs
//! or not.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::wal::{self, Recovered};

/// The directory of reports and kept segments in the spool.
pub const DIR: &str = "corrupt";

/// The report of a damaged segment (`corrupt/<stream>-wal-<n>.json`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Report {
    /// `database.table`.
    pub table: String,
    /// The stream's spool directory.
    pub stream: PathBuf,
    /// The segment, where it was found.
    pub segment: PathBuf,
    /// Where the segment is moved once its batches have ended.
    pub kept_as: PathBuf,
    /// The byte ranges that could not be read, `[start, end)`.
    pub damaged: Vec<[u64; 2]>,
    /// Bytes lost in all.
    pub bytes: u64,
    /// Records read after the first damaged range, in this segment.
    pub records_after: u64,
    /// Records are missing after the end of the segment (the next segment's checkpoint
    /// counts more), or the segment itself is missing: how many bytes is not known.
    pub ends_short: bool,
    /// The stream's inputs (request bodies, by number) lost with their data records whose
    /// batch is not known to have ended, `[start, end)`.
    pub lost_inputs: Vec<[u64; 2]>,
    /// The stream's inputs sent again under new batch numbers because their batch record may
    /// have been lost (at least once: they may be stored twice), `[start, end)`.
    pub resent_inputs: Vec<[u64; 2]>,
    /// When the damage was found, Unix seconds.
    pub found_at: u64,
    /// When an operator acknowledged it, Unix seconds.
    pub acknowledged_at: Option<u64>,
}

impl Report {
    /// One line for `/ready` and the acknowledging command.
    pub fn summary(&self) -> String {
        let ranges: Vec<String> = self
            .damaged
            .iter()
            .map(|[s, e]| format!("{s}..{e}"))
            .collect();
        let short = if self.ends_short {
            ", records missing after its end"
        } else {
            ""
        };
        format!(
            "{}: segment {} damaged at bytes {}{short} ({} bytes lost, {} records read after; {} inputs lost, {} sent again)",
            self.table,
            self.segment.display(),
            ranges.join(", "),
            self.bytes,
            self.records_after,
            count(&self.lost_inputs),
            count(&self.resent_inputs),
        )
    }
}

fn count(ranges: &[[u64; 2]]) -> u64 {
    ranges.iter().map(|[s, e]| e - s).sum()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn pairs<'a>(ranges: impl IntoIterator<Item = &'a std::ops::Range<u64>>) -> Vec<[u64; 2]> {
    ranges.into_iter().map(|r| [r.start, r.end]).collect()
}

/// Writes `path` atomically (temporary file, fsync, rename, fsync of the directory).
fn save(path: &Path, report: &Report) -> io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    let mut f = std::fs::File::create(&tmp)?;
    io::Write::write_all(&mut f, &serde_json::to_vec_pretty(report)?)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    wal::sync_dir(path.parent().expect("a report is in a directory"))
}

/// Reports the damage `recovered` found in the stream at `stream_dir` of `table`: an ERROR
/// log line per damaged range and per consequence, and a report per damaged segment (kept as
/// it is when the same damage was reported before, so that an acknowledgement holds across
/// restarts). Returns, by segment index, where each damaged segment goes once done with.
pub fn report(
    spool: &Path,
    stream_dir: &Path,
    table: &str,
    recovered: &Recovered,
) -> io::Result<BTreeMap<u64, PathBuf>> {
    let dir = spool.join(DIR);
    std::fs::create_dir_all(&dir)?;
    let stream = stream_dir
        .file_name()
        .map_or_else(|| "stream".into(), |n| n.to_string_lossy().into_owned());
    let mut by_segment: BTreeMap<u64, Vec<&wal::Damage>> = BTreeMap::new();
    for d in &recovered.damage {
        tracing::error!(
            table,
            segment = %d.path.display(),
            bytes = %format!("{}..{}", d.bytes.start, d.bytes.end),
            lost_bytes = d.bytes.end - d.bytes.start,
            records_after = d.records_after,
            ends_short = d.ends_short,
            "write-ahead log damaged: these bytes do not read as records and are lost; the records after them are recovered"
        );
        by_segment.entry(d.index).or_default().push(d);
    }
    if !recovered.lost.is_empty() {
        tracing::error!(table, inputs = ?recovered.lost, "requests acknowledged earlier are lost with the damaged bytes (unless ClickHouse has them)");
    }
    if !recovered.orphans.is_empty() {
        tracing::error!(table, inputs = ?recovered.orphans, "the batch records of these requests may have been lost with the damaged bytes: they are sent again, and may be stored twice");
    }
    let mut kept = BTreeMap::new();
    for (index, damage) in by_segment {
        let name = format!("{stream}-wal-{index:012}");
        let path = dir.join(format!("{name}.json"));
        let kept_as = dir.join(format!("{name}.log"));
        let report = Report {
            table: table.to_string(),
            stream: stream_dir.to_path_buf(),
            segment: damage[0].path.clone(),
            kept_as: kept_as.clone(),
            damaged: pairs(damage.iter().map(|d| &d.bytes)),
            bytes: damage.iter().map(|d| d.bytes.end - d.bytes.start).sum(),
            records_after: damage[0].records_after,
            ends_short: damage.iter().any(|d| d.ends_short),
            lost_inputs: pairs(&recovered.lost),
            resent_inputs: pairs(&recovered.orphans),
            found_at: now(),
            acknowledged_at: None,
        };
        let known = load(&path)
            .ok()
            .is_some_and(|old| old.damaged == report.damaged && old.segment == report.segment);
        if !known {
            save(&path, &report)?;
        }
        kept.insert(index, kept_as);
    }
    Ok(kept)
}

fn load(path: &Path) -> io::Result<Report> {
    serde_json::from_slice(&std::fs::read(path)?).map_err(io::Error::other)
}

/// Every report in the spool, oldest first, with its file.
pub fn reports(spool: &Path) -> io::Result<Vec<(PathBuf, Report)>> {
    let dir = spool.join(DIR);
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for entry in entries {
        let path = entry?.path();
        if path.extension().is_some_and(|x| x == "json") {
            out.push((path.clone(), load(&path)?));
        }
    }
    out.sort_by(|a, b| (a.1.found_at, &a.0).cmp(&(b.1.found_at, &b.0)));
    Ok(out)
}

/// The reports no operator has acknowledged yet.
pub fn unacknowledged(spool: &Path) -> io::Result<Vec<Report>> {
    Ok(reports(spool)?
        .into_iter()
        .filter(|(_, r)| r.acknowledged_at.is_none())
        .map(|(_, r)| r)
        .collect())
}

/// Acknowledges every report not acknowledged yet; returns them.
pub fn acknowledge(spool: &Path) -> io::Result<Vec<Report>> {
    let mut done = Vec::new();
    for (path, mut report) in reports(spool)? {
        if report.acknowledged_at.is_none() {
            report.acknowledged_at = Some(now());
            save(&path, &report)?;
            done.push(report);
        }
    }
    Ok(done)
}

#[cfg(test)]
#[allow(clippy::single_range_in_vec_init)]
mod tests {
    use super::*;

    #[test]
    fn reports_hold_until_acknowledged_and_the_same_damage_is_not_reported_twice() {
        let tmp = tempfile::tempdir().unwrap();
        let spool = tmp.path();
        let stream = spool.join("tables/db.t/abc");
        let damage = |start| wal::Damage {
            index: 3,
            path: stream.join("wal-000000000003.log"),
            bytes: start..start + 10,
            records_after: 7,
            ends_short: false,
        };
        let mut r = Recovered {
            damage: vec![damage(100)],
            lost: vec![4..5],
            ..Recovered::default()
        };
        let kept = report(spool, &stream, "db.t", &r).unwrap();
        assert_eq!(kept[&3], spool.join("corrupt/abc-wal-000000000003.log"));
        let open = unacknowledged(spool).unwrap();
        assert_eq!(open.len(), 1);
        assert_eq!(open[0].damaged, vec![[100, 110]]);
        assert!(
            open[0].summary().contains("100..110"),
            "{}",
            open[0].summary()
        );
        assert_eq!(acknowledge(spool).unwrap().len(), 1);
        assert!(unacknowledged(spool).unwrap().is_empty());
        // Found again at the next start: still acknowledged.
        report(spool, &stream, "db.t", &r).unwrap();
        assert!(unacknowledged(spool).unwrap().is_empty());
        // New damage in the same segment: reported anew.
        r.damage.push(damage(500));
        report(spool, &stream, "db.t", &r).unwrap();
        assert_eq!(unacknowledged(spool).unwrap()[0].bytes, 20);
        assert_eq!(reports(spool).unwrap().len(), 1);
    }
}
