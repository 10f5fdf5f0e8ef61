//! The NATS JetStream source: one durable pull consumer per partition (a subject filter of a
//! stream); each partition is cut into sealed stream-sequence ranges, inserted once, then
//! acknowledged (`AckPolicy::All`: the ack of a range's last message acknowledges the range).
//!
//! JetStream (as of the 2.9 servers tested here) has no group membership that hands a
//! consumer to exactly one client, so partitions are given to processes by configuration:
//! each subject filter is consumed by one chasync at a time (split the subjects between
//! processes to scale out).
//!
//! At its start (and after any error: a server restart, a lost connection) a partition reads
//! its durable consumer's ack floor and its seal, and makes the consumer anew at the position
//! to go on from: the sealed range's first sequence when the range is not acknowledged yet (it
//! is formed again, exactly), else the sequence after the ack floor. Messages are never left
//! to the server's redelivery: ranges stay contiguous.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use chasync_core::{Config, Dispatcher};
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::SourceError;
use crate::partition::{Committer, Message, Partition, Sink, SourceCounters};
use crate::seal::{BoxFuture, ClickHouseSeals, PartitionKey, SEAL_TABLE, Seal};

/// A JetStream source: where to consume from and how.
#[derive(Debug, Clone)]
pub struct NatsOptions {
    /// The server URL(s), `nats://host:port[,nats://...]`.
    pub url: String,
    /// The stream.
    pub stream: String,
    /// The partitions: one subject filter each, one durable consumer each.
    pub subjects: Vec<String>,
    /// The durable consumers' name prefix (the consumer of subject `s` is
    /// `<durable>_<s with . * > as _>`); the seals are kept under it.
    pub durable: String,
    /// The ClickHouse format of the message payloads: `JSONEachRow` by default.
    pub format: String,
    /// The consumers' `ack_wait`: longer than an insert takes.
    pub ack_wait: Duration,
    /// The seal table (`db.table`, or a table of the configuration's database).
    pub seal_table: String,
}

impl NatsOptions {
    /// Options for `subjects` of `stream` at `url`, durable consumers named after `durable`.
    pub fn new(url: &str, stream: &str, subjects: Vec<String>, durable: &str) -> Self {
        Self {
            url: url.into(),
            stream: stream.into(),
            subjects,
            durable: durable.into(),
            format: "JSONEachRow".into(),
            ack_wait: Duration::from_secs(60),
            seal_table: SEAL_TABLE.into(),
        }
    }

    fn check(&self) -> Result<(), SourceError> {
        if self.stream.trim().is_empty() || self.durable.trim().is_empty() {
            return Err(SourceError::Config(
                "nats: stream and durable must not be empty".into(),
            ));
        }
        if self.subjects.is_empty() || self.subjects.iter().any(|s| s.trim().is_empty()) {
            return Err(SourceError::Config(
                "nats: name at least one subject".into(),
            ));
        }
        if self
            .durable
            .chars()
            .any(|c| matches!(c, '.' | '*' | '>' | '/' | '\\') || c.is_whitespace())
        {
            return Err(SourceError::Config(format!(
                "nats: durable {:?} must not hold '.', '*', '>', slashes or spaces",
                self.durable
            )));
        }
        Ok(())
    }

    /// The name of the durable consumer of `subject`.
    pub fn consumer_name(&self, subject: &str) -> String {
        let s: String = subject
            .chars()
            .map(|c| match c {
                '.' | '*' | '>' | '/' | '\\' => '_',
                c if c.is_whitespace() => '_',
                c => c,
            })
            .collect();
        format!("{}_{s}", self.durable)
    }
}

/// Consumes `opts` into `config`'s table through `dispatcher` until `shutdown` is cancelled;
/// then finishes every open range (insert and ack). Returns the counters.
pub async fn run(
    opts: NatsOptions,
    config: Config,
    dispatcher: Arc<Dispatcher>,
    shutdown: CancellationToken,
) -> Result<Arc<SourceCounters>, SourceError> {
    opts.check()?;
    let seals = Arc::new(ClickHouseSeals::new(&config, &opts.seal_table)?);
    // The target first (it must exist), then the seal table.
    let sink = Arc::new(Sink::new(config, &opts.format, dispatcher, seals.clone()).await?);
    seals.create().await?;
    let client = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connect(opts.url.as_str())
        .await
        .map_err(|e| SourceError::Broker(format!("cannot connect to {}: {e}", opts.url)))?;
    tracing::info!(stream = %opts.stream, subjects = ?opts.subjects, "nats: consuming");
    let mut tasks = tokio::task::JoinSet::new();
    for subject in &opts.subjects {
        let (opts, sink, client, shutdown) =
            (opts.clone(), sink.clone(), client.clone(), shutdown.clone());
        let subject = subject.clone();
        tasks.spawn(async move {
            let mut wait = Duration::from_millis(200);
            while !shutdown.is_cancelled() {
                match partition(&opts, &subject, &sink, &client, &shutdown).await {
                    Ok(()) => return,
                    Err(e) => {
                        tracing::warn!(subject = %subject, error = %e, "nats: partition failed; starting it again from its ack floor and seal");
                        tokio::select! {
                            _ = tokio::time::sleep(wait) => {}
                            _ = shutdown.cancelled() => return,
                        }
                        wait = (wait * 2).min(Duration::from_secs(5));
                    }
                }
            }
        });
    }
    tasks.join_all().await;
    let _ = client.flush().await;
    Ok(sink.counters().clone())
}

fn is_not_found(e: &impl std::fmt::Display) -> bool {
    let text = e.to_string();
    text.contains("10014") || text.to_lowercase().contains("consumer not found")
}

/// One run of a partition: from its ack floor and seal to an error or the shutdown.
async fn partition(
    opts: &NatsOptions,
    subject: &str,
    sink: &Arc<Sink>,
    client: &async_nats::Client,
    shutdown: &CancellationToken,
) -> Result<(), SourceError> {
    let broker = |e: &dyn std::fmt::Display| SourceError::Broker(e.to_string());
    let js = async_nats::jetstream::new(client.clone());
    let stream = js
        .get_stream(&opts.stream)
        .await
        .map_err(|e| SourceError::Broker(format!("stream {}: {e}", opts.stream)))?;
    let name = opts.consumer_name(subject);
    let key = PartitionKey {
        source: "nats",
        group: opts.durable.clone(),
        topic: opts.stream.clone(),
        partition: subject.into(),
    };
    let floor = match stream.consumer_info(&name).await {
        Ok(info) => Some(info.ack_floor.stream_sequence).filter(|&a| a > 0),
        Err(e) if is_not_found(&e) => None,
        Err(e) => return Err(broker(&e)),
    };
    let seal = sink.seals.read(&key).await?;
    let (start, pending) = match (seal, floor) {
        (Some(s), Some(a)) if a >= s.last => (Some(a + 1), None),
        (Some(s), _) => (Some(s.first), Some(s)),
        (None, Some(a)) => (Some(a + 1), None),
        (None, None) => (None, None),
    };
    if let Some(s) = &pending {
        tracing::info!(
            subject,
            first = s.first,
            last = s.last,
            "nats: forming a sealed range again"
        );
    }
    // The consumer anew, delivering from `start`: nothing is left to redelivery.
    match stream.delete_consumer(&name).await {
        Ok(_) => {}
        Err(e) if is_not_found(&e) => {}
        Err(e) => return Err(broker(&e)),
    }
    let consumer: async_nats::jetstream::consumer::PullConsumer = stream
        .create_consumer(pull::Config {
            durable_name: Some(name.clone()),
            filter_subject: subject.into(),
            ack_policy: AckPolicy::All,
            ack_wait: opts.ack_wait,
            deliver_policy: match start {
                Some(start_sequence) => DeliverPolicy::ByStartSequence { start_sequence },
                None => DeliverPolicy::All,
            },
            max_ack_pending: -1,
            ..Default::default()
        })
        .await
        .map_err(|e| broker(&e))?;
    let mut messages = consumer.messages().await.map_err(|e| broker(&e))?;
    let replies: Arc<Mutex<BTreeMap<u64, async_nats::Subject>>> = Arc::default();
    let backlog = Arc::new(AtomicU64::new(0));
    let (tx, rx) = mpsc::unbounded_channel();
    let stop = CancellationToken::new();
    let worker = Partition {
        key,
        sink: sink.clone(),
        committer: NatsCommit {
            client: client.clone(),
            replies: replies.clone(),
        },
        backlog: backlog.clone(),
        draining: false,
    };
    let mut worker = tokio::spawn(worker.run(rx, pending, stop.clone()));
    let high = (2 * sink.config.batching.max_bytes as u64).max(16 << 20);
    let mut seen = 0u64;
    let mut tx = Some(tx);
    let mut worker_done = false;
    let result = loop {
        while backlog.load(Relaxed) > high && !worker.is_finished() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::select! {
            done = &mut worker => {
                worker_done = true;
                break match done {
                    Ok(r) => r,
                    Err(e) => Err(SourceError::Broker(format!("partition task: {e}"))),
                };
            }
            _ = shutdown.cancelled(), if tx.is_some() => {
                // The worker's messages end: it finishes its open range, then ends.
                tx = None;
            }
            m = messages.next(), if tx.is_some() => {
                let m = match m {
                    Some(Ok(m)) => m,
                    Some(Err(e)) => { stop.cancel(); break Err(broker(&e)); }
                    None => { stop.cancel(); break Err(SourceError::Broker("the consumer's messages ended".into())); }
                };
                let seq = match m.info() {
                    Ok(i) => i.stream_sequence,
                    Err(e) => { stop.cancel(); break Err(broker(&e)); }
                };
                if seq <= seen {
                    continue; // a redelivery of a message already taken
                }
                seen = seq;
                if let Some(reply) = m.reply.clone() {
                    replies.lock().unwrap().insert(seq, reply);
                }
                let payload = m.payload.clone();
                backlog.fetch_add(payload.len() as u64, Relaxed);
                if let Some(tx) = &tx {
                    let _ = tx.send(Message { position: seq, payload: Some(payload) });
                }
            }
        }
    };
    // The worker finishes the range it is inserting (if any) before anyone reads the seal
    // again: a partition started anew must see that range's seal, not the one before it.
    if !worker_done {
        stop.cancel();
        let _ = worker.await;
    }
    if result.is_ok() && shutdown.is_cancelled() {
        return Ok(());
    }
    match result {
        Ok(()) => Err(SourceError::Broker("the partition ended".into())),
        Err(e) => Err(e),
    }
}

/// Acknowledges a range: the ack of its last message (`AckPolicy::All`), waiting for the
/// server's confirmation.
struct NatsCommit {
    client: async_nats::Client,
    replies: Arc<Mutex<BTreeMap<u64, async_nats::Subject>>>,
}

impl Committer for NatsCommit {
    fn commit<'a>(&'a mut self, seal: &'a Seal) -> BoxFuture<'a, Result<(), SourceError>> {
        Box::pin(async move {
            let reply = {
                let mut replies = self.replies.lock().unwrap();
                let reply = replies
                    .range(..=seal.last)
                    .next_back()
                    .map(|(_, r)| r.clone());
                let rest = replies.split_off(&(seal.last + 1));
                *replies = rest;
                reply
            };
            let Some(reply) = reply else { return Ok(()) };
            let answer = tokio::time::timeout(
                Duration::from_secs(10),
                self.client.request(reply, "+ACK".into()),
            )
            .await;
            match answer {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(SourceError::Broker(format!("ack of {}: {e}", seal.last))),
                Err(_) => Err(SourceError::Broker(format!(
                    "ack of {}: no answer in 10 s",
                    seal.last
                ))),
            }
        })
    }
}
