//! One insert of a batch through the `clickhouse` crate, and its retries.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::batch::Batch;
use crate::config::{Compression, Config, Timeouts, quote_ident};
use crate::error::{Error, Result};
use crate::retry::RetryPolicy;
use crate::stats::Counters;

/// Body chunk size: each chunk is compressed and written on its own, so the request streams.
const CHUNK: usize = 1 << 20;

/// Builds a `clickhouse::Client` for one endpoint of the configuration.
pub fn client_for(config: &Config, url: &str) -> clickhouse::Client {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(config.timeouts.connect));
    connector.set_keepalive(Some(Duration::from_secs(60)));
    connector.set_nodelay(true);
    let http = HyperClient::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(2))
        .pool_max_idle_per_host(config.max_concurrency.max(1))
        .build(connector);
    let mut client = clickhouse::Client::with_http_client(http)
        .with_url(url)
        .with_database(config.database.clone())
        .with_compression(match config.compression {
            Compression::None => clickhouse::Compression::None,
            Compression::Lz4 => clickhouse::Compression::Lz4,
        });
    if let Some(user) = &config.user {
        client = client.with_user(user.clone());
    }
    if let Some(password) = &config.password {
        client = client.with_password(password.expose().to_string());
    }
    client
}

/// Sends batches to the configured endpoints, retrying as the policy says.
pub struct Sink {
    clients: Vec<clickhouse::Client>,
    timeouts: Timeouts,
    retry: RetryPolicy,
    settings: Vec<(String, String)>,
    block_rows: String,
}

/// How a batch ended after all its attempts.
#[derive(Debug)]
pub enum Outcome {
    /// Committed after this many attempts.
    Committed {
        /// Attempts made.
        attempts: u32,
    },
    /// Not committed; the last error and the attempts made.
    Failed {
        /// The last error.
        error: Error,
        /// Attempts made.
        attempts: u32,
    },
}

impl Sink {
    /// A sink for the endpoints of `config`.
    pub fn new(config: &Config) -> Self {
        Self {
            clients: config.urls.iter().map(|u| client_for(config, u)).collect(),
            timeouts: config.timeouts.clone(),
            retry: config.retry.clone(),
            settings: config.settings.clone(),
            block_rows: config.max_rows.max(1_048_449).to_string(),
        }
    }

    /// The client of the first endpoint, for metadata queries.
    pub fn client(&self) -> &clickhouse::Client {
        &self.clients[0]
    }

    /// The INSERT statement of a batch.
    pub fn insert_sql(batch: &Batch) -> String {
        let mut sql = format!(
            "INSERT INTO {}.{}",
            quote_ident(&batch.database),
            quote_ident(&batch.table)
        );
        if !batch.columns.is_empty() {
            sql.push_str(" (");
            for (i, c) in batch.columns.iter().enumerate() {
                if i > 0 {
                    sql.push_str(", ");
                }
                sql.push_str(&quote_ident(c));
            }
            sql.push(')');
        }
        sql.push_str(" FORMAT ");
        sql.push_str(batch.format);
        sql
    }

    /// One attempt: the batch's bytes, its id as dedup token and query id, to one endpoint.
    pub async fn attempt(&self, batch: &Batch, attempt: u32) -> Result<()> {
        let n = self.clients.len();
        let client = &self.clients[(batch.sequence as usize + attempt as usize) % n];
        let id = batch.id.to_string();
        let mut insert = client
            .insert_formatted_with(Self::insert_sql(batch))
            .with_timeouts(Some(self.timeouts.send), Some(self.timeouts.end))
            .with_setting("async_insert", "0")
            .with_setting("insert_deduplicate", "1")
            .with_setting("insert_deduplication_token", id.clone())
            .with_setting("query_id", id)
            // One batch, one insert block: the insert is atomic, so a data error proves that
            // nothing of the batch landed.
            .with_setting("max_insert_block_size", self.block_rows.clone());
        for (name, value) in &self.settings {
            insert = insert.with_setting(name.clone(), value.clone());
        }
        let mut offset = 0;
        while offset < batch.bytes.len() {
            let end = (offset + CHUNK).min(batch.bytes.len());
            insert.send(batch.bytes.slice(offset..end)).await?;
            offset = end;
        }
        insert.end().await?;
        Ok(())
    }

    /// Attempts until the batch is committed, the error is not retryable, or the policy's
    /// attempts are used up.
    pub(crate) async fn send(&self, batch: &Batch, counters: &Counters) -> Outcome {
        let mut attempt = 1;
        loop {
            match self.attempt(batch, attempt).await {
                Ok(()) => return Outcome::Committed { attempts: attempt },
                Err(error) => {
                    counters.failed_attempts.fetch_add(1, Relaxed);
                    let kind = error.kind();
                    if !kind.is_retryable() || attempt >= self.retry.max_attempts {
                        tracing::warn!(batch = %batch.id, attempt, %kind, %error, "insert failed, not retrying");
                        return Outcome::Failed {
                            error,
                            attempts: attempt,
                        };
                    }
                    let wait = self.retry.backoff(attempt);
                    tracing::info!(batch = %batch.id, attempt, %kind, %error, ?wait, "insert failed, retrying");
                    tokio::time::sleep(wait).await;
                    counters.retries.fetch_add(1, Relaxed);
                    attempt += 1;
                }
            }
        }
    }
}

/// Shared by the dispatcher's tasks.
pub(crate) type SharedSink = Arc<Sink>;
