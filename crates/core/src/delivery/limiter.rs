//! Adaptive concurrency: an AIMD limit on inserts in flight, and a circuit breaker.
//!
//! `max_concurrency` is the ceiling. Each insert attempt takes a permit and reports how it
//! ended:
//! * success: after `limit` successes in a row the limit grows by one (additive increase),
//!   unless the attempt took much longer than usual (rising latency), which counts as overload;
//! * overload (TOO_MANY_PARTS, MEMORY_LIMIT_EXCEEDED, TOO_MANY_SIMULTANEOUS_QUERIES ...,
//!   timeouts): the limit halves (multiplicative decrease), at most once per cool-down;
//! * failures of any retryable kind in a row open the circuit breaker: no new attempt starts
//!   for a cool-down that doubles while the server keeps refusing; then one probe is let
//!   through (half-open) and its success closes the breaker.

use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::error::ErrorKind;
use crate::stats::{LimiterStats, LimiterView};

/// Consecutive failed attempts that open the breaker.
const BREAKER_THRESHOLD: u32 = 5;
/// First open period of the breaker; doubles up to `BREAKER_MAX`.
const BREAKER_MIN: Duration = Duration::from_millis(500);
const BREAKER_MAX: Duration = Duration::from_secs(30);
/// A success slower than this many times the usual latency counts as overload.
const LATENCY_FACTOR: f64 = 4.0;
/// Weight of a new sample in the latency average.
const EWMA_ALPHA: f64 = 0.1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Breaker {
    Closed,
    Open { until: Instant },
    HalfOpen { probing: bool },
}

#[derive(Debug)]
struct State {
    limit: usize,
    in_flight: usize,
    successes: usize,
    last_decrease: Option<Instant>,
    latency_ewma: Option<f64>,
    failures_in_row: u32,
    breaker: Breaker,
    open_for: Duration,
    min_limit_seen: usize,
    decreases: u64,
    breaker_opens: u64,
}

/// The limiter shared by all insert attempts of a pipeline.
#[derive(Debug)]
pub(crate) struct Limiter {
    max: usize,
    state: Mutex<State>,
    notify: Notify,
}

/// The right to run one attempt; report its end with [`Permit::done`].
#[derive(Debug)]
pub(crate) struct Permit<'a> {
    limiter: &'a Limiter,
    started: Instant,
    probe: bool,
    reported: bool,
}

impl LimiterView for Limiter {
    fn limiter_stats(&self) -> LimiterStats {
        self.stats()
    }
}

impl Limiter {
    /// A limiter that starts at, and never exceeds, `max` attempts in flight.
    pub(crate) fn new(max: usize) -> Self {
        let max = max.max(1);
        Self {
            max,
            state: Mutex::new(State {
                limit: max,
                in_flight: 0,
                successes: 0,
                last_decrease: None,
                latency_ewma: None,
                failures_in_row: 0,
                breaker: Breaker::Closed,
                open_for: BREAKER_MIN,
                min_limit_seen: max,
                decreases: 0,
                breaker_opens: 0,
            }),
            notify: Notify::new(),
        }
    }

    /// Waits until an attempt may start.
    pub(crate) async fn acquire(&self) -> Permit<'_> {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let wait_until = {
                let mut s = self.state.lock().unwrap();
                let now = Instant::now();
                if let Breaker::Open { until } = s.breaker
                    && now >= until
                {
                    s.breaker = Breaker::HalfOpen { probing: false };
                }
                match s.breaker {
                    Breaker::Open { until } => Some(until),
                    Breaker::HalfOpen { probing: true } => None,
                    Breaker::HalfOpen { probing: false } => {
                        s.breaker = Breaker::HalfOpen { probing: true };
                        s.in_flight += 1;
                        return Permit {
                            limiter: self,
                            started: now,
                            probe: true,
                            reported: false,
                        };
                    }
                    Breaker::Closed if s.in_flight < s.limit => {
                        s.in_flight += 1;
                        return Permit {
                            limiter: self,
                            started: now,
                            probe: false,
                            reported: false,
                        };
                    }
                    Breaker::Closed => None,
                }
            };
            match wait_until {
                Some(until) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(until) => {}
                        _ = &mut notified => {}
                    }
                }
                None => notified.await,
            }
        }
    }

    /// The current state.
    pub(crate) fn stats(&self) -> LimiterStats {
        let s = self.state.lock().unwrap();
        LimiterStats {
            limit: s.limit,
            min_limit: s.min_limit_seen,
            decreases: s.decreases,
            breaker_opens: s.breaker_opens,
            breaker_open: matches!(s.breaker, Breaker::Open { .. }),
        }
    }

    fn decrease(&self, s: &mut State, now: Instant) {
        // At most one cut per "round trip": a burst of failures of the attempts that were
        // in flight together counts once.
        let cool = Duration::from_secs_f64(s.latency_ewma.unwrap_or(0.1).clamp(0.05, 5.0));
        if s.last_decrease
            .is_some_and(|t| now.duration_since(t) < cool)
        {
            return;
        }
        let new = (s.limit / 2).max(1);
        if new < s.limit {
            s.decreases += 1;
            tracing::info!(
                from = s.limit,
                to = new,
                "server overloaded: fewer inserts in flight"
            );
        }
        s.limit = new;
        s.min_limit_seen = s.min_limit_seen.min(new);
        s.successes = 0;
        s.last_decrease = Some(now);
    }

    fn finish(&self, started: Instant, probe: bool, outcome: Option<ErrorKind>) {
        let now = Instant::now();
        let latency = now.duration_since(started).as_secs_f64();
        let mut s = self.state.lock().unwrap();
        s.in_flight -= 1;
        match outcome {
            None => {
                s.failures_in_row = 0;
                if probe || s.breaker != Breaker::Closed {
                    s.breaker = Breaker::Closed;
                    s.open_for = BREAKER_MIN;
                    tracing::info!("circuit breaker closed");
                }
                let slow = s
                    .latency_ewma
                    .is_some_and(|avg| latency > avg * LATENCY_FACTOR);
                s.latency_ewma = Some(match s.latency_ewma {
                    None => latency,
                    Some(avg) => avg + EWMA_ALPHA * (latency - avg),
                });
                if slow {
                    self.decrease(&mut s, now);
                } else {
                    s.successes += 1;
                    if s.successes >= s.limit && s.limit < self.max {
                        s.limit += 1;
                        s.successes = 0;
                    }
                }
            }
            Some(kind) => {
                if matches!(kind, ErrorKind::Overload | ErrorKind::UnknownOutcome) {
                    self.decrease(&mut s, now);
                }
                if kind.is_retryable() {
                    s.failures_in_row += 1;
                    if probe || s.failures_in_row >= BREAKER_THRESHOLD {
                        let was_open = probe;
                        s.open_for = if was_open {
                            (s.open_for * 2).min(BREAKER_MAX)
                        } else {
                            BREAKER_MIN
                        };
                        s.breaker = Breaker::Open {
                            until: now + s.open_for,
                        };
                        s.breaker_opens += 1;
                        s.failures_in_row = 0;
                        tracing::warn!(pause = ?s.open_for, "circuit breaker open: the server keeps refusing");
                    }
                } else if probe {
                    // A data or permanent error still proves the server answers.
                    s.breaker = Breaker::Closed;
                    s.open_for = BREAKER_MIN;
                }
            }
        }
        drop(s);
        self.notify.notify_waiters();
    }
}

impl Permit<'_> {
    /// Reports how the attempt ended: `None` for success, or the error's kind.
    pub(crate) fn done(mut self, outcome: Option<ErrorKind>) {
        self.reported = true;
        self.limiter.finish(self.started, self.probe, outcome);
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if !self.reported {
            // Cancelled attempt: release the slot without judging the server.
            let mut s = self.limiter.state.lock().unwrap();
            s.in_flight -= 1;
            if self.probe {
                s.breaker = Breaker::HalfOpen { probing: false };
            }
            drop(s);
            self.limiter.notify.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn aimd_shrinks_on_overload_and_grows_back() {
        let l = Limiter::new(8);
        assert_eq!(l.stats().limit, 8);
        l.acquire().await.done(Some(ErrorKind::Overload));
        assert_eq!(l.stats().limit, 4);
        // A second overload within the cool-down does not cut again.
        l.acquire().await.done(Some(ErrorKind::Overload));
        assert_eq!(l.stats().limit, 4);
        tokio::time::advance(Duration::from_secs(1)).await;
        l.acquire().await.done(Some(ErrorKind::Overload));
        assert_eq!(l.stats().limit, 2);
        assert_eq!(l.stats().min_limit, 2);
        // Successes grow it back by one per `limit` successes, up to the ceiling.
        for _ in 0..100 {
            let p = l.acquire().await;
            tokio::time::advance(Duration::from_millis(10)).await;
            p.done(None);
        }
        assert_eq!(l.stats().limit, 8);
        assert_eq!(l.stats().decreases, 2);
        // Data errors do not change the limit.
        l.acquire().await.done(Some(ErrorKind::Data));
        assert_eq!(l.stats().limit, 8);
    }

    #[tokio::test(start_paused = true)]
    async fn the_limit_bounds_attempts_in_flight() {
        let l = std::sync::Arc::new(Limiter::new(2));
        let a = l.acquire().await;
        let _b = l.acquire().await;
        let l2 = l.clone();
        let third = tokio::spawn(async move {
            l2.acquire().await.done(None);
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!third.is_finished());
        a.done(None);
        third.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn breaker_opens_pauses_and_probes() {
        let l = Limiter::new(4);
        for _ in 0..BREAKER_THRESHOLD {
            l.acquire().await.done(Some(ErrorKind::Retryable));
        }
        assert!(l.stats().breaker_open);
        assert_eq!(l.stats().breaker_opens, 1);
        let t0 = Instant::now();
        // The probe waits for the cool-down, fails, and the pause doubles.
        l.acquire().await.done(Some(ErrorKind::Retryable));
        assert!(Instant::now() - t0 >= BREAKER_MIN);
        assert!(l.stats().breaker_open);
        let t1 = Instant::now();
        let probe = l.acquire().await;
        assert!(Instant::now() - t1 >= BREAKER_MIN * 2);
        probe.done(None);
        assert!(!l.stats().breaker_open);
        // Closed again: no waiting.
        let t2 = Instant::now();
        l.acquire().await.done(None);
        assert_eq!(Instant::now(), t2);
    }
}
