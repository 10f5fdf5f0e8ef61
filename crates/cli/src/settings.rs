//! The engine's options from the config file (`--config`, `CHASYNC_CONFIG`, or the user's
//! `$XDG_CONFIG_HOME/chasync/config.toml` / `~/.config/chasync/config.toml`), the environment
//! and the flags, layered into the engine's one [`ConfigBuilder`] (flags win over the
//! environment, which wins over the file): the same names, meanings and defaults as the
//! daemon's TOML and Python's keyword arguments.

use chasync_core::{Config, ConfigBuilder};
use std::path::{Path, PathBuf};

use crate::cli::{CompressionArg, GlobalOpts, IngestOpts};
use crate::error::CliError;

pub use chasync_core::{parse_bytes, parse_duration};

/// Everything resolved: flags, then environment, then file, then defaults.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The engine's options as layered.
    layers: ConfigBuilder,
    /// The options with a placeholder table, for what every command needs.
    base: Config,
    /// Whether the URL was given (flag, environment or file) rather than the default.
    pub url_given: bool,
    /// Output as JSON.
    pub json: bool,
    /// No chatter on stderr.
    pub quiet: bool,
    /// Log lines go to stderr beyond warnings (`-v`, `--log-level`, `RUST_LOG`): no progress
    /// bars then.
    pub verbose_logs: bool,
    /// The config file read, if any.
    pub config_file: Option<PathBuf>,
}

/// A placeholder table name, for commands that name none.
const NO_TABLE: &str = "-";

impl Settings {
    /// Merges the config file, the process's environment and the flags.
    pub fn resolve(global: &GlobalOpts, ingest: &IngestOpts) -> Result<Self, CliError> {
        Self::resolve_with(global, ingest, |name| std::env::var(name).ok())
    }

    /// [`resolve`](Self::resolve) with the environment variables of `env`.
    pub fn resolve_with(
        global: &GlobalOpts,
        ingest: &IngestOpts,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, CliError> {
        let mut layers = ConfigBuilder::new();
        // `--config`, or CHASYNC_CONFIG, or the user's file where convention puts it.
        let config_file = global
            .config
            .clone()
            .or_else(|| {
                env("CHASYNC_CONFIG")
                    .filter(|p| !p.is_empty())
                    .map(PathBuf::from)
            })
            .or_else(|| chasync_core::user_config_file(&env));
        if let Some(path) = &config_file {
            layers = layers.merge_toml(&read(path)?);
            if let Err(e) = layers.clone().set("table", NO_TABLE).build() {
                return Err(CliError::error(format!(
                    "invalid config file {}: {}",
                    path.display(),
                    e.to_string().trim_start_matches("invalid configuration: ")
                )));
            }
        }
        layers = layers.merge_vars(&env);
        layers = flags(layers, global, ingest);
        let url_given = layers.is_set("url");
        let base = layers
            .clone()
            .set("table", NO_TABLE)
            .build()
            .map_err(|e| CliError::usage(e.to_string()))?;
        if base.tls.insecure_skip_verify
            && base
                .clickhouse
                .url
                .iter()
                .any(|u| u.starts_with("https://"))
        {
            // Loud on purpose, --quiet or not: the server is not authenticated.
            eprintln!(
                "chasync: WARNING: tls_insecure_skip_verify is set: the server's TLS certificate \
                 is NOT verified; anyone on the path can read and change the data"
            );
        }
        Ok(Self {
            layers,
            base,
            url_given,
            json: global.json,
            quiet: global.quiet,
            verbose_logs: global.verbose > 0
                || global.log_level.is_some()
                || env("RUST_LOG").is_some_and(|v| !v.is_empty()),
            config_file,
        })
    }

    /// The first ClickHouse URL.
    pub fn url(&self) -> &str {
        &self.base.clickhouse.url[0]
    }

    /// The database of tables named without one.
    pub fn database(&self) -> &str {
        &self.base.clickhouse.database
    }

    /// The resolved options without a table (for commands that name none).
    pub fn base(&self) -> &Config {
        &self.base
    }

    /// The engine configuration for `database.table`.
    pub fn config(&self, database: &str, table: &str) -> Result<Config, CliError> {
        let mut c = self
            .layers
            .clone()
            .set("table", table)
            .build()
            .map_err(|e| CliError::usage(e.to_string()))?;
        c.clickhouse.database = database.to_string();
        c.table = table.to_string();
        Ok(c)
    }

    /// The dead-letter spool directory.
    pub fn dlq_dir(&self) -> PathBuf {
        self.base.spool.dir.clone()
    }

    /// A client for metadata queries and DDL.
    pub fn client(&self) -> Result<clickhouse::Client, CliError> {
        self.base
            .client()
            .map_err(|e| CliError::error(e.to_string()))
    }

    /// The `(name, type)` columns of `database.table`, read by the engine's catalog.
    pub async fn columns(
        &self,
        database: &str,
        table: &str,
    ) -> Result<Vec<(String, String)>, chasync_core::Error> {
        let schema = chasync_core::Catalog::new(&self.base)?
            .table(database, table)
            .await?;
        Ok(schema
            .columns
            .iter()
            .map(|c| (c.name.clone(), c.type_name.clone()))
            .collect())
    }

    /// Splits `db.table` (or `table`, in the default database).
    pub fn table_ref(&self, name: &str) -> Result<(String, String), CliError> {
        split_table(name, self.database())
    }
}

fn read(path: &Path) -> Result<String, CliError> {
    std::fs::read_to_string(path)
        .map_err(|e| CliError::error(format!("cannot read {}: {e}", path.display())))
}

/// The flags that were given, over the layers below them.
fn flags(mut b: ConfigBuilder, global: &GlobalOpts, o: &IngestOpts) -> ConfigBuilder {
    if let Some(url) = &global.url {
        b = b.set_text("url", url);
    }
    if let Some(user) = &global.user {
        b = b.set("user", user.as_str());
    }
    if let Some(password) = &global.password {
        b = b.set("password", password.as_str());
    }
    if let Some(db) = &global.database {
        b = b.set("database", db.as_str());
    }
    let path = |p: &Path| p.to_string_lossy().into_owned();
    if let Some(f) = &global.tls.tls_ca_file {
        b = b.set("tls_ca_file", path(f));
    }
    if let Some(f) = &global.tls.tls_cert_file {
        b = b.set("tls_cert_file", path(f));
    }
    if let Some(f) = &global.tls.tls_key_file {
        b = b.set("tls_key_file", path(f));
    }
    if global.tls.tls_insecure_skip_verify {
        b = b.set("tls_insecure_skip_verify", true);
    }
    if let Some(n) = o.max_rows {
        b = b.set("max_rows", n as u64);
    }
    if let Some(n) = o.max_bytes {
        b = b.set("max_bytes", n);
    }
    if let Some(d) = o.linger {
        b = b.set("linger", d.as_secs_f64());
    }
    if let Some(n) = o.max_concurrency {
        b = b.set("max_concurrency", n as u64);
    }
    if let Some(n) = o.max_attempts {
        b = b.set("max_attempts", n);
    }
    if let Some(n) = o.retries {
        b = b.set("retries", n);
    }
    if let Some(d) = &o.spool_dir {
        b = b.spool_dir(d);
    }
    if let Some(c) = o.compression {
        b = b.set(
            "compression",
            match c {
                CompressionArg::Lz4 => "lz4",
                CompressionArg::None => "none",
            },
        );
    }
    if let Some(c) = &o.cluster {
        b = b.set("cluster", c.as_str());
    }
    if !o.cluster_urls.is_empty() {
        b = b.set_text("cluster_urls", &o.cluster_urls.join(","));
    }
    for kv in &o.settings {
        let (k, v) = kv.split_once('=').unwrap_or((kv, "1"));
        b = b.setting(k.trim(), v.trim());
    }
    for kv in &o.set {
        match kv.split_once('=') {
            Some((k, v)) => b = b.set_text(k.trim(), v.trim()),
            None => b = b.set_text(kv.trim(), "true"),
        }
    }
    b
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

#[cfg(test)]
mod tests {
    use super::*;
    use chasync_core::Compression;
    use std::time::Duration;

    fn no_env(_: &str) -> Option<String> {
        None
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

    fn global(config: Option<PathBuf>) -> GlobalOpts {
        GlobalOpts {
            url: None,
            user: None,
            password: None,
            database: Some("db".into()),
            tls: crate::cli::TlsOpts::default(),
            config,
            quiet: false,
            json: false,
            verbose: 0,
            log_level: None,
            log_format: crate::cli::LogFormat::Human,
        }
    }

    #[test]
    fn file_then_environment_then_flags() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        // The flat layout of older files and the grouped one both read.
        std::fs::write(
            &path,
            "url = \"http://h:1\"\nbatch_rows = 7\nbatch_bytes = \"1KiB\"\nlinger = \"250ms\"\n\
             retries = 0\ncompression = \"none\"\npassword = \"pw-in-file\"\n\
             [spool]\ndir = \"/tmp/s\"\n",
        )
        .unwrap();
        let flags = IngestOpts {
            max_rows: Some(9),
            ..IngestOpts::default()
        };
        let env = |name: &str| (name == "CHASYNC_MAX_CONCURRENCY").then(|| "3".to_string());
        let s = Settings::resolve_with(&global(Some(path.clone())), &flags, env).unwrap();
        assert!(s.url_given);
        let c = s.config("db", "t").unwrap();
        assert_eq!(c.clickhouse.url, vec!["http://h:1".to_string()]);
        assert_eq!(c.batching.max_rows, 9, "the flag wins over the file");
        assert_eq!(c.batching.max_bytes, 1024);
        assert_eq!(c.batching.linger, Duration::from_millis(250));
        assert_eq!(c.delivery.max_attempts, 1);
        assert_eq!(c.delivery.max_concurrency, 3, "from the environment");
        assert_eq!(c.clickhouse.compression, Compression::None);
        assert_eq!(s.dlq_dir(), PathBuf::from("/tmp/s"));
        assert!(!format!("{s:?}").contains("pw-in-file"));

        std::fs::write(&path, "bogus = 1\n").unwrap();
        let err = Settings::resolve_with(&global(Some(path)), &flags, no_env).unwrap_err();
        assert!(
            err.message.contains("unknown option \"bogus\""),
            "{}",
            err.message
        );

        let s = Settings::resolve_with(&global(None), &IngestOpts::default(), no_env).unwrap();
        assert!(!s.url_given);
        assert_eq!(s.url(), "http://127.0.0.1:8123");
    }
}
