//! The Kafka source: a consumer group (rdkafka, librdkafka built from source) whose members
//! share a topic's partitions through Kafka's own rebalancing; each assigned partition is cut
//! into sealed offset ranges, inserted once, then committed.
//!
//! On assignment of a partition the member reads its committed offset and its seal. A seal
//! whose range is not committed yet (`first <= committed <= last`) is formed again from
//! exactly that range first (consumption starts at `first`); otherwise consumption starts at
//! the committed offset (or `auto.offset.reset`, `earliest` by default, when there is none).
//! On revocation the member stops taking new ranges and finishes the one it sealed (insert
//! and commit) before it lets the rebalance go on, within `revoke_timeout`.

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use chasync_core::{Config, Dispatcher};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaResult;
use rdkafka::message::Message as _;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::{ClientContext, types::RDKafkaRespErr};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::SourceError;
use crate::partition::{Committer, Message, Partition, Sink, SourceCounters, crash_point};
use crate::seal::{BoxFuture, ClickHouseSeals, PartitionKey, SEAL_TABLE, Seal};

/// A Kafka source: where to consume from and how.
#[derive(Debug, Clone)]
pub struct KafkaOptions {
    /// `bootstrap.servers`: `host:port[,host:port...]`.
    pub brokers: String,
    /// The consumer group (`group.id`): members of one group share the partitions.
    pub group: String,
    /// The topics; every one goes to the table.
    pub topics: Vec<String>,
    /// The ClickHouse format of the message values (one or more rows each, no header):
    /// `JSONEachRow` by default.
    pub format: String,
    /// `session.timeout.ms`: how long the group waits for a member that stopped answering
    /// before it gives its partitions to the others.
    pub session_timeout: Duration,
    /// The longest wait, at a revocation, for the range in progress to be committed.
    pub revoke_timeout: Duration,
    /// The seal table (`db.table`, or a table of the configuration's database).
    pub seal_table: String,
    /// Other librdkafka properties (`fetch.max.bytes`, `max.poll.interval.ms`, ...; this build
    /// of librdkafka has no TLS or SASL).
    pub properties: Vec<(String, String)>,
}

impl KafkaOptions {
    /// Options for `group` consuming `topics` from `brokers`, with the defaults.
    pub fn new(brokers: &str, group: &str, topics: Vec<String>) -> Self {
        Self {
            brokers: brokers.into(),
            group: group.into(),
            topics,
            format: "JSONEachRow".into(),
            session_timeout: Duration::from_secs(45),
            revoke_timeout: Duration::from_secs(60),
            seal_table: SEAL_TABLE.into(),
            properties: Vec::new(),
        }
    }

    fn check(&self) -> Result<(), SourceError> {
        if self.brokers.trim().is_empty() {
            return Err(SourceError::Config(
                "kafka: brokers must not be empty".into(),
            ));
        }
        if self.group.trim().is_empty() {
            return Err(SourceError::Config("kafka: group must not be empty".into()));
        }
        if self.topics.is_empty() || self.topics.iter().any(|t| t.trim().is_empty()) {
            return Err(SourceError::Config("kafka: name at least one topic".into()));
        }
        Ok(())
    }
}

/// Consumes `opts` into `config`'s table through `dispatcher` until `shutdown` is cancelled;
/// then finishes every open range (insert and commit) and leaves the group. Returns the
/// counters.
pub async fn run(
    opts: KafkaOptions,
    config: Config,
    dispatcher: Arc<Dispatcher>,
    shutdown: CancellationToken,
) -> Result<Arc<SourceCounters>, SourceError> {
    opts.check()?;
    let seals = Arc::new(ClickHouseSeals::new(&config, &opts.seal_table)?);
    // The target first (it must exist), then the seal table.
    let sink = Arc::new(Sink::new(config, &opts.format, dispatcher, seals.clone()).await?);
    seals.create().await?;
    let counters = sink.counters().clone();
    let shared = Arc::new(Shared {
        opts: opts.clone(),
        sink,
        runtime: tokio::runtime::Handle::current(),
        consumer: OnceLock::new(),
        workers: Mutex::new(HashMap::new()),
        failed: Mutex::new(Vec::new()),
    });
    let session_ms = opts.session_timeout.as_millis().max(1000);
    let mut cc = ClientConfig::new();
    cc.set("bootstrap.servers", &opts.brokers)
        .set("group.id", &opts.group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", session_ms.to_string())
        .set(
            "heartbeat.interval.ms",
            (session_ms / 4).max(100).to_string(),
        )
        .set("partition.assignment.strategy", "range,roundrobin");
    for (k, v) in &opts.properties {
        cc.set(k, v);
    }
    let consumer: BaseConsumer<Ctx> = cc
        .create_with_context(Ctx {
            shared: shared.clone(),
        })
        .map_err(|e| SourceError::Broker(e.to_string()))?;
    let consumer = Arc::new(consumer);
    let _ = shared.consumer.set(Arc::downgrade(&consumer));
    let topics: Vec<&str> = opts.topics.iter().map(String::as_str).collect();
    consumer
        .subscribe(&topics)
        .map_err(|e| SourceError::Broker(format!("cannot subscribe: {e}")))?;
    tracing::info!(group = %opts.group, topics = ?opts.topics, brokers = %opts.brokers, "kafka: consuming");
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let thread_shared = shared.clone();
    std::thread::Builder::new()
        .name("chasync-kafka".into())
        .spawn(move || {
            poll_loop(&consumer, &thread_shared, &shutdown);
            // Close with a bound: a consumer's close waits for the group, which a broker may
            // not answer.
            let (closed_tx, closed_rx) = std::sync::mpsc::channel();
            let _ = std::thread::Builder::new()
                .name("chasync-kafka-close".into())
                .spawn(move || {
                    drop(consumer);
                    let _ = closed_tx.send(());
                });
            if closed_rx.recv_timeout(Duration::from_secs(5)).is_err() {
                tracing::warn!("kafka: the consumer did not close within 5 s; leaving it");
            }
            let _ = done_tx.send(());
        })
        .map_err(|e| SourceError::Config(format!("cannot start the kafka thread: {e}")))?;
    let _ = done_rx.await;
    Ok(counters)
}

struct Worker {
    tx: mpsc::UnboundedSender<Message>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    backlog: Arc<AtomicU64>,
    paused: bool,
    /// Set once the partition is revoked: no commit after that.
    stopped: Arc<AtomicBool>,
}

struct Shared {
    opts: KafkaOptions,
    sink: Arc<Sink>,
    runtime: tokio::runtime::Handle,
    consumer: OnceLock<Weak<BaseConsumer<Ctx>>>,
    workers: Mutex<HashMap<(String, i32), Worker>>,
    /// Partitions whose worker failed (or could not start): started again from their
    /// committed offset and seal.
    failed: Mutex<Vec<(String, i32)>>,
}

impl Shared {
    fn key(&self, topic: &str, partition: i32) -> PartitionKey {
        PartitionKey {
            source: "kafka",
            group: self.opts.group.clone(),
            topic: topic.into(),
            partition: partition.to_string(),
        }
    }

    /// Where partition `topic[partition]` starts, and the seal to form again first.
    fn plan(
        &self,
        consumer: &BaseConsumer<Ctx>,
        topic: &str,
        partition: i32,
        committed: Option<i64>,
    ) -> Result<(Offset, Option<Seal>), SourceError> {
        let key = self.key(topic, partition);
        let seal = self.runtime.block_on(async {
            let mut wait = Duration::from_millis(100);
            let deadline = tokio::time::Instant::now() + self.opts.revoke_timeout;
            loop {
                match self.sink.seals.read(&key).await {
                    Ok(s) => return Ok(s),
                    Err(e) if tokio::time::Instant::now() + wait < deadline => {
                        tracing::warn!(partition = %key, error = %e, "cannot read the seal; trying again");
                        tokio::time::sleep(wait).await;
                        wait = (wait * 2).min(Duration::from_secs(5));
                    }
                    Err(e) => return Err(e),
                }
            }
        })?;
        let Some(seal) = seal else {
            return Ok((committed.map_or(Offset::Stored, Offset::Offset), None));
        };
        let (first, last) = (seal.first as i64, seal.last as i64);
        match committed {
            Some(c) if first <= c && c <= last => Ok((Offset::Offset(first), Some(seal))),
            Some(c) if c > last => Ok((Offset::Offset(c), None)),
            Some(c) => {
                tracing::warn!(partition = %key, committed = c, first, last, "the committed offset is before the sealed range: the broker lost commits; starting at the committed offset");
                Ok((Offset::Offset(c), None))
            }
            None => {
                let (low, high) = consumer
                    .fetch_watermarks(topic, partition, Duration::from_secs(10))
                    .map_err(|e| SourceError::Broker(e.to_string()))?;
                if low <= first && last < high {
                    Ok((Offset::Offset(first), Some(seal)))
                } else {
                    tracing::warn!(partition = %key, first, last, low, high, "a seal outside the partition (a topic made anew?): ignored");
                    Ok((Offset::Stored, None))
                }
            }
        }
    }

    /// Starts the worker of `topic[partition]`.
    fn spawn(self: &Arc<Self>, topic: &str, partition: i32, pending: Option<Seal>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let stop = CancellationToken::new();
        let backlog = Arc::new(AtomicU64::new(0));
        let stopped = Arc::new(AtomicBool::new(false));
        let p = Partition {
            key: self.key(topic, partition),
            sink: self.sink.clone(),
            committer: KafkaCommit {
                consumer: self.consumer.get().cloned().unwrap_or_default(),
                topic: topic.into(),
                partition,
                stopped: stopped.clone(),
            },
            backlog: backlog.clone(),
            draining: false,
        };
        let key = p.key.clone();
        let shared = self.clone();
        let (t, s) = (topic.to_string(), stop.clone());
        let task = self.runtime.spawn(async move {
            if let Err(e) = p.run(rx, pending, s.clone()).await
                && !s.is_cancelled()
            {
                tracing::warn!(partition = %key, error = %e, "partition failed; starting it again from its commit and seal");
                shared.failed.lock().unwrap().push((t, partition));
            }
        });
        if let Some(old) = self.workers.lock().unwrap().insert(
            (topic.to_string(), partition),
            Worker {
                tx,
                stop,
                task,
                backlog,
                paused: false,
                stopped,
            },
        ) {
            old.stop.cancel();
        }
    }

    /// Stops the workers of `partitions`, each after the range it sealed is committed.
    fn stop(&self, partitions: &[(String, i32)]) {
        let workers: Vec<Worker> = {
            let mut w = self.workers.lock().unwrap();
            partitions.iter().filter_map(|k| w.remove(k)).collect()
        };
        for w in &workers {
            w.stop.cancel();
        }
        let timeout = self.opts.revoke_timeout;
        self.runtime.block_on(async {
            for w in workers {
                if tokio::time::timeout(timeout, w.task).await.is_err() {
                    tracing::warn!("a revoked partition did not finish its range in time");
                }
                w.stopped.store(true, Relaxed);
            }
        });
    }
}

struct Ctx {
    shared: Arc<Shared>,
}

impl ClientContext for Ctx {}

impl ConsumerContext for Ctx {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let shared = &self.shared;
        let parts: Vec<(String, i32)> = tpl
            .elements()
            .iter()
            .map(|e| (e.topic().to_string(), e.partition()))
            .collect();
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                crash_point("in_assign");
                tracing::info!(partitions = ?parts, "kafka: assigned");
                let committed = consumer
                    .committed_offsets(tpl.clone(), Duration::from_secs(10))
                    .ok();
                let mut assign = TopicPartitionList::new();
                let mut start = Vec::new();
                for (topic, partition) in &parts {
                    let c = committed.as_ref().and_then(|c| {
                        c.find_partition(topic, *partition)
                            .and_then(|e| match e.offset() {
                                Offset::Offset(n) => Some(n),
                                _ => None,
                            })
                    });
                    match shared.plan(consumer, topic, *partition, c) {
                        Ok((offset, pending)) => {
                            if let Some(s) = &pending {
                                tracing::info!(topic = %topic, partition, first = s.first, last = s.last, "kafka: forming a sealed range again");
                            }
                            let _ = assign.add_partition_offset(topic, *partition, offset);
                            start.push((topic.clone(), *partition, pending));
                        }
                        Err(e) => {
                            tracing::warn!(topic = %topic, partition, error = %e, "kafka: cannot plan the partition yet");
                            let _ = assign.add_partition_offset(topic, *partition, Offset::Stored);
                            shared
                                .failed
                                .lock()
                                .unwrap()
                                .push((topic.clone(), *partition));
                        }
                    }
                }
                for (topic, partition, pending) in start {
                    shared.spawn(&topic, partition, pending);
                }
                if let Err(e) = consumer.assign(&assign) {
                    tracing::error!(error = %e, "kafka: cannot assign");
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                crash_point("in_revoke");
                tracing::info!(partitions = ?parts, lost = consumer.assignment_lost(), "kafka: revoked");
                shared.failed.lock().unwrap().retain(|p| !parts.contains(p));
                shared.stop(&parts);
                if let Err(e) = consumer.unassign() {
                    tracing::warn!(error = %e, "kafka: cannot unassign");
                }
            }
            other => {
                tracing::error!(error = ?other, "kafka: rebalance failed");
                let _ = consumer.unassign();
            }
        }
    }

    fn pre_rebalance(&self, _: &BaseConsumer<Self>, _: &Rebalance<'_>) {}
}

/// Commits a partition's offsets.
struct KafkaCommit {
    consumer: Weak<BaseConsumer<Ctx>>,
    topic: String,
    partition: i32,
    stopped: Arc<AtomicBool>,
}

impl Committer for KafkaCommit {
    fn commit<'a>(&'a mut self, seal: &'a Seal) -> BoxFuture<'a, Result<(), SourceError>> {
        Box::pin(async move {
            let (consumer, topic, partition) =
                (self.consumer.clone(), self.topic.clone(), self.partition);
            let next = seal.last as i64 + 1;
            let stopped = self.stopped.clone();
            let result = tokio::task::spawn_blocking(move || -> KafkaResult<()> {
                let Some(consumer) = consumer.upgrade() else {
                    return Ok(());
                };
                if stopped.load(Relaxed) {
                    return Ok(());
                }
                let mut tpl = TopicPartitionList::new();
                tpl.add_partition_offset(&topic, partition, Offset::Offset(next))?;
                consumer.commit(&tpl, CommitMode::Sync)
            })
            .await
            .map_err(|e| SourceError::Broker(e.to_string()))?;
            result.map_err(|e| SourceError::Broker(format!("commit of offset {next}: {e}")))
        })
    }
}

/// Takes messages off the consumer and hands them to their partitions' workers, pausing a
/// partition whose worker falls behind; restarts failed partitions; at shutdown lets every
/// worker finish its open range.
fn poll_loop(
    consumer: &Arc<BaseConsumer<Ctx>>,
    shared: &Arc<Shared>,
    shutdown: &CancellationToken,
) {
    let limits = &shared.sink.config.batching;
    let high = (2 * limits.max_bytes as u64).max(16 << 20);
    let low = high / 2;
    let mut last_error = None::<String>;
    while !shutdown.is_cancelled() {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                let key = (m.topic().to_string(), m.partition());
                let msg = Message {
                    position: m.offset() as u64,
                    payload: m.payload().map(bytes::Bytes::copy_from_slice),
                };
                let size = msg.payload.as_ref().map_or(0, |p| p.len() as u64);
                let mut workers = shared.workers.lock().unwrap();
                if let Some(w) = workers.get_mut(&key) {
                    w.backlog.fetch_add(size, Relaxed);
                    let _ = w.tx.send(msg);
                    if !w.paused && w.backlog.load(Relaxed) > high {
                        let mut tpl = TopicPartitionList::new();
                        tpl.add_partition(&key.0, key.1);
                        if consumer.pause(&tpl).is_ok() {
                            w.paused = true;
                        }
                    }
                }
                last_error = None;
            }
            Some(Err(e)) => {
                let text = e.to_string();
                if last_error.as_deref() != Some(&text) {
                    tracing::warn!(error = %text, "kafka: consumer error");
                    last_error = Some(text);
                }
            }
            None => {}
        }
        // Resume partitions that caught up.
        {
            let mut workers = shared.workers.lock().unwrap();
            for ((topic, partition), w) in workers.iter_mut() {
                if w.paused && w.backlog.load(Relaxed) < low {
                    let mut tpl = TopicPartitionList::new();
                    tpl.add_partition(topic, *partition);
                    if consumer.resume(&tpl).is_ok() {
                        w.paused = false;
                    }
                }
            }
        }
        // Start failed partitions again, from their commit and seal.
        let failed = std::mem::take(&mut *shared.failed.lock().unwrap());
        for (topic, partition) in failed {
            if let Err(e) = restart(consumer, shared, &topic, partition) {
                tracing::warn!(topic = %topic, partition, error = %e, "kafka: cannot start the partition again yet");
                shared.failed.lock().unwrap().push((topic, partition));
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    }
    // Shutdown: every worker's messages end, it finishes its open range.
    let workers: Vec<Worker> = shared
        .workers
        .lock()
        .unwrap()
        .drain()
        .map(|(_, w)| w)
        .collect();
    shared.runtime.block_on(async {
        for w in workers {
            drop(w.tx);
            let _ = w.task.await;
        }
    });
}

fn restart(
    consumer: &Arc<BaseConsumer<Ctx>>,
    shared: &Arc<Shared>,
    topic: &str,
    partition: i32,
) -> Result<(), SourceError> {
    if let Some(w) = shared
        .workers
        .lock()
        .unwrap()
        .remove(&(topic.to_string(), partition))
    {
        w.stop.cancel();
    }
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, partition);
    let committed = consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .map_err(|e| SourceError::Broker(e.to_string()))?;
    let c = committed
        .find_partition(topic, partition)
        .and_then(|e| match e.offset() {
            Offset::Offset(n) => Some(n),
            _ => None,
        });
    let (offset, pending) = shared.plan(consumer, topic, partition, c)?;
    let offset = match offset {
        Offset::Stored => Offset::Beginning,
        o => o,
    };
    consumer
        .seek(topic, partition, offset, Duration::from_secs(10))
        .map_err(|e| SourceError::Broker(format!("seek: {e}")))?;
    shared.spawn(topic, partition, pending);
    Ok(())
}
