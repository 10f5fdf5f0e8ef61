//! The HTTP client of one ClickHouse endpoint, as every part of the engine builds it: the
//! `clickhouse` crate's client over a hyper connection pool (TLS for `https://` URLs, see
//! [`crate::tls`]), with the configuration's credentials, database, compression and connect
//! timeout.

use std::time::Duration;

use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;

use crate::config::{Compression, Config};
use crate::error::Result;

/// Builds a `clickhouse::Client` for one endpoint of the configuration. Fails when the TLS
/// options name files that cannot be read.
pub(crate) fn client_for(config: &Config, url: &str) -> Result<clickhouse::Client> {
    let connector = crate::tls::connector(&config.tls, config.clickhouse.connect_timeout)?;
    crate::tls::warn_unverified(&config.tls, url);
    let http = HyperClient::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(2))
        .pool_max_idle_per_host(config.delivery.max_concurrency.max(1))
        .build(connector);
    // Credentials in the URL (`http://user:password@host`) are sent as the options are, never
    // as part of the URL (`validate` refused URLs whose credentials conflict).
    let (url, _) = crate::config::split_userinfo(url).unwrap_or_else(|_| (url.to_string(), None));
    let (user, password) = config.url_credentials().unwrap_or_else(|_| {
        (
            config.clickhouse.user.clone(),
            config.clickhouse.password.clone(),
        )
    });
    let mut client = clickhouse::Client::with_http_client(http)
        .with_url(url)
        .with_database(config.clickhouse.database.clone())
        .with_compression(match config.clickhouse.compression {
            Compression::None => clickhouse::Compression::None,
            Compression::Lz4 => clickhouse::Compression::Lz4,
        });
    if let Some(user) = user {
        client = client.with_user(user);
    }
    if let Some(password) = password {
        client = client.with_password(password.expose().to_string());
    }
    Ok(client)
}

impl Config {
    /// A client of the first endpoint with this configuration's credentials, database,
    /// compression and TLS options: for queries of an application's own next to the engine's
    /// inserts. Fails when the TLS options name files that cannot be read.
    pub fn client(&self) -> Result<clickhouse::Client> {
        client_for(self, &self.clickhouse.url[0])
    }
}
