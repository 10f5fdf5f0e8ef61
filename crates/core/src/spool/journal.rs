//! The journal of a re-runnable load: the ids of the batches of a stream that committed,
//! one per line, appended (and fsynced) as each batch commits.
//!
//! A load whose batch ids derive from its input (see [`crate::Rerun`]) forms the same batches
//! under the same ids when it runs again; a re-run that resumes skips the batches its journal
//! lists instead of sending them again. A line cut short by a crash is ignored (that batch is
//! sent again, under the same id: a deduplicating table keeps it once).

use std::collections::HashSet;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use uuid::Uuid;

use crate::error::{Error, Result};

/// The committed batches of one stream.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    committed: HashSet<Uuid>,
    file: Mutex<Option<std::fs::File>>,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Spool {
        path: path.to_path_buf(),
        source,
    }
}

impl Journal {
    /// The journal of stream `stream` in `dir` (`<dir>/<stream>.log`), with what it lists
    /// already; created on the first commit.
    pub fn open(dir: &Path, stream: Uuid) -> Result<Self> {
        let path = dir.join(format!("{stream}.log"));
        let mut committed = HashSet::new();
        match std::fs::File::open(&path) {
            Ok(f) => {
                for line in std::io::BufReader::new(f).lines() {
                    let line = line.map_err(io_err(&path))?;
                    if let Ok(id) = Uuid::parse_str(line.trim()) {
                        committed.insert(id);
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&path)(e)),
        }
        Ok(Self {
            path,
            committed,
            file: Mutex::new(None),
        })
    }

    /// The journal file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the journal listed batch `id` when it was opened.
    pub fn committed(&self, id: &Uuid) -> bool {
        self.committed.contains(id)
    }

    /// Batches listed when it was opened.
    pub fn len(&self) -> usize {
        self.committed.len()
    }

    /// Appends batch `id` and fsyncs (blocking I/O).
    pub fn record(&self, id: &Uuid) -> Result<()> {
        let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        if file.is_none() {
            if let Some(dir) = self.path.parent() {
                std::fs::create_dir_all(dir).map_err(io_err(dir))?;
            }
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
                .map_err(io_err(&self.path))?;
            *file = Some(f);
        }
        let f = file.as_mut().expect("opened above");
        // A line a crash cut short is ignored when read; start on a line of our own.
        f.write_all(format!("\n{id}\n").as_bytes())
            .and_then(|()| f.sync_data())
            .map_err(io_err(&self.path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_survive_and_torn_lines_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let stream = Uuid::new_v4();
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let j = Journal::open(dir.path(), stream).unwrap();
        assert_eq!(j.len(), 0);
        j.record(&a).unwrap();
        j.record(&b).unwrap();
        // A crash in the middle of a line.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(j.path())
            .unwrap();
        f.write_all(&Uuid::new_v4().to_string().as_bytes()[..10])
            .unwrap();
        let j = Journal::open(dir.path(), stream).unwrap();
        assert_eq!(j.len(), 2);
        assert!(j.committed(&a) && j.committed(&b));
        let c = Uuid::new_v4();
        j.record(&c).unwrap();
        let j = Journal::open(dir.path(), stream).unwrap();
        assert_eq!(j.len(), 3);
        assert!(j.committed(&c));
    }
}
