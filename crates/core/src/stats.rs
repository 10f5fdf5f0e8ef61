//! Counters of an ingestor and a snapshot of them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// A snapshot of the limiter, for stats and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LimiterStats {
    /// The current limit of inserts in flight.
    pub limit: usize,
    /// The lowest limit so far.
    pub min_limit: usize,
    /// How often the limit was cut.
    pub decreases: u64,
    /// How often the breaker opened.
    pub breaker_opens: u64,
    /// Whether the breaker holds new attempts back now.
    pub breaker_open: bool,
}

/// What the counters read of the adaptive limiter (delivery's), for [`Stats`].
pub(crate) trait LimiterView: Send + Sync + std::fmt::Debug {
    /// The limiter now.
    fn limiter_stats(&self) -> LimiterStats;
}

/// The counters of one pipeline's queue (those of delivery may be shared by pipelines).
#[derive(Debug, Default)]
pub(crate) struct QueueCounters {
    /// Rows producers handed over.
    pub rows_accepted: AtomicU64,
    /// Rows the batcher took off the queue.
    pub rows_queued_out: AtomicU64,
}

/// Live counters of delivery, shared by the stages of the engine.
#[derive(Debug)]
pub(crate) struct Counters {
    pub limiter: Arc<dyn LimiterView>,
    pub rows_committed: AtomicU64,
    pub bytes_committed: AtomicU64,
    pub batches_committed: AtomicU64,
    pub batches_sealed: AtomicU64,
    pub retries: AtomicU64,
    pub failed_attempts: AtomicU64,
    pub batches_dead_lettered: AtomicU64,
    pub rows_dead_lettered: AtomicU64,
    pub rows_rejected: AtomicU64,
    pub batches_split: AtomicU64,
    pub in_flight: AtomicU64,
    pub max_in_flight: AtomicU64,
    pub latency: Histogram,
    /// The last failed attempt's error, for a frontend that reports that it is waiting.
    pub last_failure: std::sync::Mutex<Option<String>>,
    pub outcomes_landed: AtomicU64,
    pub outcomes_not_landed: AtomicU64,
    pub outcomes_unresolved: AtomicU64,
    pub unchecked_resends: AtomicU64,
    pub at_least_once_tables: AtomicU64,
}

impl Counters {
    pub(crate) fn new(limiter: Arc<dyn LimiterView>) -> Self {
        Self {
            limiter,
            rows_committed: AtomicU64::new(0),
            bytes_committed: AtomicU64::new(0),
            batches_committed: AtomicU64::new(0),
            batches_sealed: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            failed_attempts: AtomicU64::new(0),
            batches_dead_lettered: AtomicU64::new(0),
            rows_dead_lettered: AtomicU64::new(0),
            rows_rejected: AtomicU64::new(0),
            batches_split: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            max_in_flight: AtomicU64::new(0),
            latency: Histogram::default(),
            last_failure: std::sync::Mutex::new(None),
            outcomes_landed: AtomicU64::new(0),
            outcomes_not_landed: AtomicU64::new(0),
            outcomes_unresolved: AtomicU64::new(0),
            unchecked_resends: AtomicU64::new(0),
            at_least_once_tables: AtomicU64::new(0),
        }
    }

    /// Keeps `error` as the last failure.
    pub(crate) fn note_failure(&self, error: &crate::error::Error) {
        *self.last_failure.lock().unwrap_or_else(|e| e.into_inner()) = Some(error.report());
    }

    /// The last failed attempt's error, if any failed.
    pub(crate) fn last_failure(&self) -> Option<String> {
        self.last_failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The delivery counters, with nothing accepted (a dispatcher's own).
    pub(crate) fn snapshot(&self) -> Stats {
        self.snapshot_of(&QueueCounters::default())
    }

    /// The delivery counters with the queue counters of one pipeline.
    pub(crate) fn snapshot_of(&self, queue: &QueueCounters) -> Stats {
        let limiter = self.limiter.limiter_stats();
        let accepted = queue.rows_accepted.load(Relaxed);
        let out = queue.rows_queued_out.load(Relaxed);
        Stats {
            rows_accepted: accepted,
            rows_committed: self.rows_committed.load(Relaxed),
            bytes_committed: self.bytes_committed.load(Relaxed),
            batches_committed: self.batches_committed.load(Relaxed),
            batches_sealed: self.batches_sealed.load(Relaxed),
            retries: self.retries.load(Relaxed),
            failed_attempts: self.failed_attempts.load(Relaxed),
            batches_dead_lettered: self.batches_dead_lettered.load(Relaxed),
            rows_dead_lettered: self.rows_dead_lettered.load(Relaxed),
            rows_rejected: self.rows_rejected.load(Relaxed),
            batches_split: self.batches_split.load(Relaxed),
            concurrency_limit: limiter.limit as u64,
            min_concurrency_limit: limiter.min_limit as u64,
            concurrency_decreases: limiter.decreases,
            breaker_opens: limiter.breaker_opens,
            breaker_open: limiter.breaker_open,
            queue_depth: accepted.saturating_sub(out),
            in_flight: self.in_flight.load(Relaxed),
            max_in_flight: self.max_in_flight.load(Relaxed),
            latency_ms_p50: self.latency.quantile_ms(0.50),
            latency_ms_p95: self.latency.quantile_ms(0.95),
            latency_ms_p99: self.latency.quantile_ms(0.99),
            outcomes_landed: self.outcomes_landed.load(Relaxed),
            outcomes_not_landed: self.outcomes_not_landed.load(Relaxed),
            outcomes_unresolved: self.outcomes_unresolved.load(Relaxed),
            unchecked_resends: self.unchecked_resends.load(Relaxed),
            at_least_once_tables: self.at_least_once_tables.load(Relaxed),
        }
    }

    pub(crate) fn enter_flight(&self) {
        let now = self.in_flight.fetch_add(1, Relaxed) + 1;
        self.max_in_flight.fetch_max(now, Relaxed);
    }

    pub(crate) fn leave_flight(&self) {
        self.in_flight.fetch_sub(1, Relaxed);
    }
}

/// A snapshot of an ingestor's counters.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Stats {
    /// Rows producers handed to the engine.
    pub rows_accepted: u64,
    /// Rows ClickHouse committed.
    pub rows_committed: u64,
    /// Encoded (uncompressed) bytes ClickHouse committed.
    pub bytes_committed: u64,
    /// Batches ClickHouse committed.
    pub batches_committed: u64,
    /// Batches sealed by the batcher.
    pub batches_sealed: u64,
    /// Attempts after the first (re-sends of the same batch).
    pub retries: u64,
    /// Attempts that failed, retried or not.
    pub failed_attempts: u64,
    /// Batches written to the dead-letter spool.
    pub batches_dead_lettered: u64,
    /// Rows written to the dead-letter spool, in batches or one by one.
    pub rows_dead_lettered: u64,
    /// Rows the encoder refused (they are among the dead-lettered rows).
    pub rows_rejected: u64,
    /// Batches split to isolate rows the server rejected.
    pub batches_split: u64,
    /// The adaptive limit of inserts in flight now (at most `max_concurrency`).
    pub concurrency_limit: u64,
    /// The lowest that limit has been.
    pub min_concurrency_limit: u64,
    /// How often overload cut the limit.
    pub concurrency_decreases: u64,
    /// How often the circuit breaker opened.
    pub breaker_opens: u64,
    /// Whether the breaker holds inserts back now.
    pub breaker_open: bool,
    /// Rows waiting in the queue for the batcher.
    pub queue_depth: u64,
    /// Inserts in flight now.
    pub in_flight: u64,
    /// The most inserts that were in flight at once.
    pub max_in_flight: u64,
    /// Median latency of committed batches (first attempt to commit), milliseconds.
    pub latency_ms_p50: f64,
    /// 95th percentile batch latency, milliseconds.
    pub latency_ms_p95: f64,
    /// 99th percentile batch latency, milliseconds.
    pub latency_ms_p99: f64,
    /// Batches an attempt of which had an unknown outcome (or that may have been sent by a
    /// process that died) found to have landed: committed without another attempt.
    #[serde(default)]
    pub outcomes_landed: u64,
    /// Such batches found not to have landed, and sent.
    #[serde(default)]
    pub outcomes_not_landed: u64,
    /// Such batches whose outcome the checks could not tell: not sent again, dead-lettered
    /// ([`crate::Error::UnresolvedOutcome`]).
    #[serde(default)]
    pub outcomes_unresolved: u64,
    /// Batches sent again after an unknown outcome without any check (tables that get
    /// at-least-once delivery): each may have landed twice.
    #[serde(default)]
    pub unchecked_resends: u64,
    /// Tables (per user) found to get at-least-once delivery: neither deduplicated by
    /// ClickHouse nor checkable (see [`crate::Guarantee`]).
    #[serde(default)]
    pub at_least_once_tables: u64,
}

/// A latency histogram with buckets growing by 2^(1/4) from 1 µs to ~70 min.
#[derive(Debug)]
pub(crate) struct Histogram {
    buckets: [AtomicU64; BUCKETS],
}

const BUCKETS: usize = 128;

impl Default for Histogram {
    fn default() -> Self {
        Self {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl Histogram {
    fn bucket_of(d: Duration) -> usize {
        let us = d.as_micros().max(1) as f64;
        ((us.log2() * 4.0) as usize).min(BUCKETS - 1)
    }

    fn upper_bound_ms(bucket: usize) -> f64 {
        2f64.powf((bucket + 1) as f64 / 4.0) / 1000.0
    }

    pub(crate) fn record(&self, d: Duration) {
        self.buckets[Self::bucket_of(d)].fetch_add(1, Relaxed);
    }

    /// The upper bound of the bucket holding quantile `q` (0 when empty).
    pub(crate) fn quantile_ms(&self, q: f64) -> f64 {
        let counts: Vec<u64> = self.buckets.iter().map(|b| b.load(Relaxed)).collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return 0.0;
        }
        let rank = ((total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return (Self::upper_bound_ms(i) * 1000.0).round() / 1000.0;
            }
        }
        Self::upper_bound_ms(BUCKETS - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_quantiles_bracket_the_values() {
        let h = Histogram::default();
        assert_eq!(h.quantile_ms(0.5), 0.0);
        for _ in 0..90 {
            h.record(Duration::from_millis(10));
        }
        for _ in 0..10 {
            h.record(Duration::from_millis(500));
        }
        let p50 = h.quantile_ms(0.5);
        assert!((10.0..=12.0).contains(&p50), "{p50}");
        let p99 = h.quantile_ms(0.99);
        assert!((500.0..=600.0).contains(&p99), "{p99}");
    }
}
