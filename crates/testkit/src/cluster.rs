//! Two private servers as the two shards of a cluster, for tests of sharded inserts.
//!
//! Both servers know two clusters: `two` (shard 1 = server A, weight 1; shard 2 = server B,
//! weight 2) and `two_failover` (the same, with a first replica of shard 2 where nothing
//! listens), and their default profile has `distributed_foreground_insert = 1` (the embedded
//! server never flushes a Distributed table's background queue).

use crate::server::{PrivateServer, unused_port};

/// Two shards of a cluster, stopped when dropped.
pub struct TwoShards {
    /// Shard 1 (weight 1), also the entry server.
    pub a: PrivateServer,
    /// Shard 2 (weight 2).
    pub b: PrivateServer,
    /// The native port of `two_failover`'s replica of shard 2 that is down.
    pub dead_tcp: u16,
    /// Its HTTP port (nothing listens there either).
    pub dead_http: u16,
}

impl TwoShards {
    /// Starts both servers.
    pub fn start() -> Self {
        let (a, b) = (PrivateServer::unstarted(), PrivateServer::unstarted());
        let (dead_tcp, dead_http) = (unused_port(), unused_port());
        let replica =
            |port: u16| format!("<replica><host>127.0.0.1</host><port>{port}</port></replica>");
        let config = format!(
            "<remote_servers>\
               <two>\
                 <shard><weight>1</weight>{ra}</shard>\
                 <shard><weight>2</weight>{rb}</shard>\
               </two>\
               <two_failover>\
                 <shard><weight>1</weight>{ra}</shard>\
                 <shard><weight>2</weight>{rd}{rb}</shard>\
               </two_failover>\
             </remote_servers>",
            ra = replica(a.tcp_port),
            rb = replica(b.tcp_port),
            rd = replica(dead_tcp),
        );
        let profile = "<distributed_foreground_insert>1</distributed_foreground_insert>";
        a.start_with(&config, profile);
        b.start_with(&config, profile);
        Self {
            a,
            b,
            dead_tcp,
            dead_http,
        }
    }

    /// A client of one of them.
    pub fn client(server: &PrivateServer) -> clickhouse::Client {
        clickhouse::Client::default()
            .with_url(server.url())
            .with_setting("async_insert", "0")
    }

    /// Runs a statement on one server; panics with the statement on error.
    pub async fn exec(server: &PrivateServer, sql: &str) {
        Self::client(server)
            .query(sql)
            .execute()
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// Runs a statement on both servers.
    pub async fn on_both(&self, sql: &str) {
        Self::exec(&self.a, sql).await;
        Self::exec(&self.b, sql).await;
    }

    /// `(count(), sum(cityHash64(columns)))` of a table on each shard.
    pub async fn per_shard(&self, table: &str, columns: &str) -> [(u64, u64); 2] {
        let sql = format!("SELECT count(), sum(cityHash64({columns})) FROM {table}");
        let mut out = [(0, 0); 2];
        for (i, server) in [&self.a, &self.b].into_iter().enumerate() {
            out[i] = Self::client(server)
                .query(&sql)
                .fetch_one::<(u64, u64)>()
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
        out
    }

    /// The `cluster_urls` option (text form) that maps every replica's native `host:port`
    /// to its HTTP URL.
    pub fn cluster_urls(&self) -> String {
        format!(
            "127.0.0.1:{}={},127.0.0.1:{}={},127.0.0.1:{}=http://127.0.0.1:{}",
            self.a.tcp_port,
            self.a.url(),
            self.b.tcp_port,
            self.b.url(),
            self.dead_tcp,
            self.dead_http,
        )
    }
}
