//! Options from flags, the environment and the `--config` file, merged into the engine's
//! [`Config`], and the parsers of durations and sizes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chasync_core::{Compression, Config, Secret};
use serde::Deserialize;

use crate::cli::{CompressionArg, GlobalOpts, IngestOpts};
use crate::error::CliError;

/// The URL used when none is given.
pub const DEFAULT_URL: &str = "http://127.0.0.1:8123";

/// The `--config` file: the same options as the flags, in TOML.
///
/// ```toml
/// url = "http://127.0.0.1:8123"
/// user = "loader"
/// password = "..."
/// database = "analytics"
/// batch_rows = 250000
/// batch_bytes = "32MiB"
/// linger = "1s"
/// max_concurrency = 4
/// retries = 9
/// dlq_dir = "/var/lib/chasync/dlq"
/// compression = "lz4"
/// ```
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// See `--url`.
    pub url: Option<String>,
    /// See `--user`.
    pub user: Option<String>,
    /// See `--password`.
    pub password: Option<String>,
    /// See `--database`.
    pub database: Option<String>,
    /// See `--batch-rows`.
    pub batch_rows: Option<usize>,
    /// See `--batch-bytes`: a number or a string such as `"32MiB"`.
    pub batch_bytes: Option<SizeValue>,
    /// See `--linger`, e.g. `"500ms"`.
    pub linger: Option<String>,
    /// See `--max-concurrency`.
    pub max_concurrency: Option<usize>,
    /// See `--retries`.
    pub retries: Option<u32>,
    /// See `--dlq-dir`.
    pub dlq_dir: Option<PathBuf>,
    /// See `--compression`.
    pub compression: Option<CompressionArg>,
}

/// A size in the config file: bytes, or a string with a unit.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum SizeValue {
    /// Bytes.
    Bytes(u64),
    /// `"32MiB"` and the like.
    Text(String),
}

impl FileConfig {
    /// Reads and parses a config file.
    pub fn load(path: &Path) -> Result<Self, CliError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| CliError::error(format!("cannot read {}: {e}", path.display())))?;
        toml::from_str(&text)
            .map_err(|e| CliError::error(format!("invalid config file {}: {e}", path.display())))
    }
}

/// Everything resolved: flags, then environment, then file, then defaults.
#[derive(Debug, Clone)]
pub struct Settings {
    /// ClickHouse URL.
    pub url: String,
    /// Whether the URL was given (flag, environment or file) rather than the default.
    pub url_given: bool,
    /// User.
    pub user: Option<String>,
    /// Password.
    pub password: Option<Secret>,
    /// Default database.
    pub database: String,
    /// Engine options that were set (the engine's defaults apply to the rest).
    pub ingest: IngestOpts,
    /// Output as JSON.
    pub json: bool,
    /// No chatter on stderr.
    pub quiet: bool,
}

impl Settings {
    /// Merges the global options, the command's engine options and the config file.
    pub fn resolve(global: &GlobalOpts, ingest: &IngestOpts) -> Result<Self, CliError> {
        let file = match &global.config {
            Some(path) => FileConfig::load(path)?,
            None => FileConfig::default(),
        };
        let file_bytes = match file.batch_bytes {
            None => None,
            Some(SizeValue::Bytes(n)) => Some(n),
            Some(SizeValue::Text(t)) => Some(
                parse_bytes(&t)
                    .map_err(|e| CliError::error(format!("config file: batch_bytes: {e}")))?,
            ),
        };
        let file_linger = match file.linger {
            None => None,
            Some(t) => Some(
                parse_duration(&t)
                    .map_err(|e| CliError::error(format!("config file: linger: {e}")))?,
            ),
        };
        let url = global.url.clone().or(file.url);
        Ok(Self {
            url_given: url.is_some(),
            url: url.unwrap_or_else(|| DEFAULT_URL.to_string()),
            user: global.user.clone().or(file.user),
            password: global.password.clone().or(file.password).map(Secret::new),
            database: global
                .database
                .clone()
                .or(file.database)
                .unwrap_or_else(|| "default".into()),
            ingest: IngestOpts {
                batch_rows: ingest.batch_rows.or(file.batch_rows),
                batch_bytes: ingest.batch_bytes.or(file_bytes),
                linger: ingest.linger.or(file_linger),
                max_concurrency: ingest.max_concurrency.or(file.max_concurrency),
                retries: ingest.retries.or(file.retries),
                dlq_dir: ingest.dlq_dir.clone().or(file.dlq_dir),
                compression: ingest.compression.or(file.compression),
            },
            json: global.json,
            quiet: global.quiet,
        })
    }

    /// The engine configuration for `database.table`.
    pub fn config(&self, database: &str, table: &str) -> Result<Config, CliError> {
        let mut c = Config::new(self.url.clone(), table);
        c.database = database.to_string();
        c.user = self.user.clone();
        c.password = self.password.clone();
        let o = &self.ingest;
        if let Some(n) = o.batch_rows {
            c.max_rows = n;
        }
        if let Some(n) = o.batch_bytes {
            c.max_bytes = usize::try_from(n)
                .map_err(|_| CliError::usage(format!("--batch-bytes {n} is too large")))?;
        }
        if let Some(d) = o.linger {
            c.linger = d;
        }
        if let Some(n) = o.max_concurrency {
            c.max_concurrency = n;
        }
        if let Some(n) = o.retries {
            c.retry.max_attempts = n.saturating_add(1);
        }
        if let Some(d) = &o.dlq_dir {
            c.dead_letter_dir = d.clone();
        }
        if let Some(comp) = o.compression {
            c.compression = match comp {
                CompressionArg::Lz4 => Compression::Lz4,
                CompressionArg::None => Compression::None,
            };
        }
        c.validate().map_err(|e| CliError::usage(e.to_string()))?;
        Ok(c)
    }

    /// The dead-letter spool directory.
    pub fn dlq_dir(&self) -> PathBuf {
        self.ingest
            .dlq_dir
            .clone()
            .unwrap_or_else(|| Config::new(DEFAULT_URL, "t").dead_letter_dir)
    }

    /// A client for metadata queries and DDL.
    pub fn client(&self) -> Result<clickhouse::Client, CliError> {
        let config = self.config(&self.database, "-")?;
        Ok(chasync_core::sink::client_for(&config, &self.url))
    }

    /// Splits `db.table` (or `table`, in the default database).
    pub fn table_ref(&self, name: &str) -> Result<(String, String), CliError> {
        split_table(name, &self.database)
    }
}

/// Splits `db.table` at the first dot; a bare name is in `default_db`.
pub fn split_table(name: &str, default_db: &str) -> Result<(String, String), CliError> {
    let (db, table) = match name.split_once('.') {
        Some((db, t)) => (db, t),
        None => (default_db, name),
    };
    let unquote = |s: &str| s.trim_matches('`').to_string();
    let (db, table) = (unquote(db), unquote(table));
    if db.is_empty() || table.is_empty() {
        return Err(CliError::usage(format!(
            "invalid table name {name:?}: expected db.table or table"
        )));
    }
    Ok((db, table))
}

/// Parses a duration: `500ms`, `2s`, `1.5s`, `1m30s`, `2h`, `250us`, or `0`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total = 0f64;
    let mut rest = text;
    if rest.is_empty() {
        return Err("empty duration".into());
    }
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("{text:?}: missing unit (ms, s, m, h), e.g. 500ms or 2s"))?;
        let (num, after) = rest.split_at(num_end);
        let value: f64 = num
            .parse()
            .map_err(|_| format!("{text:?}: invalid number {num:?}"))?;
        let unit_end = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_end);
        let scale = match unit.trim() {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" | "sec" | "secs" => 1.0,
            "m" | "min" | "mins" => 60.0,
            "h" | "hr" | "hours" => 3600.0,
            other => {
                return Err(format!(
                    "{text:?}: unknown unit {other:?} (use ns, us, ms, s, m, h)"
                ));
            }
        };
        total += value * scale;
        rest = next;
    }
    Duration::try_from_secs_f64(total).map_err(|e| format!("{text:?}: {e}"))
}

/// Parses a size in bytes: `1000`, `64KiB`, `32MiB`, `1GiB` (binary), `10KB`, `10MB`, `1GB`
/// (decimal); `K`, `M`, `G` alone are binary.
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (num, unit) = text.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("{text:?}: expected a size such as 1000, 64KiB or 32MiB"))?;
    let scale: u64 = match unit.trim() {
        "" | "B" | "b" => 1,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "K" | "k" | "KiB" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        other => return Err(format!("{text:?}: unknown unit {other:?}")),
    };
    let bytes = value * scale as f64;
    if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
        return Err(format!("{text:?}: out of range"));
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(parse_duration("250us").unwrap(), Duration::from_micros(250));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert!(parse_duration("5").unwrap_err().contains("missing unit"));
        assert!(
            parse_duration("5 parsecs")
                .unwrap_err()
                .contains("unknown unit")
        );
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("1000").unwrap(), 1000);
        assert_eq!(parse_bytes("32MiB").unwrap(), 32 << 20);
        assert_eq!(parse_bytes("10MB").unwrap(), 10_000_000);
        assert_eq!(parse_bytes("64K").unwrap(), 65536);
        assert_eq!(parse_bytes("1.5KiB").unwrap(), 1536);
        assert!(parse_bytes("12 parsecs").is_err());
        assert!(parse_bytes("MiB").is_err());
    }

    #[test]
    fn table_names() {
        assert_eq!(
            split_table("db.t", "default").unwrap(),
            ("db".to_string(), "t".to_string())
        );
        assert_eq!(
            split_table("t", "x").unwrap(),
            ("x".to_string(), "t".to_string())
        );
        assert_eq!(
            split_table("`d`.`t`", "x").unwrap(),
            ("d".to_string(), "t".to_string())
        );
        assert!(split_table("db.", "x").is_err());
    }

    #[test]
    fn file_then_flags() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "url = \"http://h:1\"\nbatch_rows = 7\nbatch_bytes = \"1KiB\"\nlinger = \"250ms\"\n\
             retries = 0\ncompression = \"none\"\npassword = \"pw-in-file\"\n",
        )
        .unwrap();
        let global = GlobalOpts {
            url: None,
            user: None,
            password: None,
            database: Some("db".into()),
            config: Some(path.clone()),
            quiet: false,
            json: false,
        };
        let flags = IngestOpts {
            batch_rows: Some(9),
            ..IngestOpts::default()
        };
        let s = Settings::resolve(&global, &flags).unwrap();
        assert!(s.url_given);
        let c = s.config("db", "t").unwrap();
        assert_eq!(c.urls, vec!["http://h:1".to_string()]);
        assert_eq!(c.max_rows, 9, "the flag wins over the file");
        assert_eq!(c.max_bytes, 1024);
        assert_eq!(c.linger, Duration::from_millis(250));
        assert_eq!(c.retry.max_attempts, 1);
        assert_eq!(c.compression, Compression::None);
        assert!(!format!("{s:?}").contains("pw-in-file"));

        std::fs::write(&path, "bogus = 1\n").unwrap();
        let err = Settings::resolve(&global, &flags).unwrap_err();
        assert!(err.message.contains("unknown field"), "{}", err.message);

        let global = GlobalOpts {
            config: None,
            ..global
        };
        let s = Settings::resolve(&global, &IngestOpts::default()).unwrap();
        assert!(!s.url_given);
        assert_eq!(s.url, DEFAULT_URL);
    }
}
