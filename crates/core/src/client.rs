//! The HTTP client of one ClickHouse endpoint, as every part of the engine builds it: the
//! `clickhouse` crate's client over a hyper connection pool, with the configuration's
//! credentials, database, compression and connect timeout.

use std::time::Duration;

use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::config::{Compression, Config};

/// Builds a `clickhouse::Client` for one endpoint of the configuration.
pub(crate) fn client_for(config: &Config, url: &str) -> clickhouse::Client {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(config.clickhouse.connect_timeout));
    connector.set_keepalive(Some(Duration::from_secs(60)));
    connector.set_nodelay(true);
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
    client
}

impl Config {
    /// A client of the first endpoint with this configuration's credentials, database and
    /// compression: for queries of an application's own next to the engine's inserts.
    pub fn client(&self) -> clickhouse::Client {
        client_for(self, &self.clickhouse.url[0])
    }
}
