//! Retry policy: which errors are retried (see [`crate::ErrorKind`]) and how long to wait.

use std::time::Duration;

use rand::Rng;

use crate::config::Delivery;

/// How a batch is retried ([`crate::config::Delivery`]'s retry options).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RetryPolicy {
    /// Attempts in all, the first included (1 = never retry).
    pub max_attempts: u32,
    /// The wait before the second attempt.
    pub initial_backoff: Duration,
    /// The longest wait between two attempts.
    pub max_backoff: Duration,
    /// Growth of the wait per attempt.
    pub multiplier: f64,
}

impl RetryPolicy {
    /// The policy of a delivery configuration.
    pub(crate) fn of(delivery: &Delivery) -> Self {
        Self {
            max_attempts: delivery.max_attempts,
            initial_backoff: delivery.initial_backoff,
            max_backoff: delivery.max_backoff,
            multiplier: delivery.backoff_multiplier,
        }
    }

    /// The exponential wait after failed attempt number `attempt` (1-based), before jitter.
    pub(crate) fn base_backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .multiplier
            .max(1.0)
            .powi(attempt.saturating_sub(1).min(64) as i32);
        let secs = self.initial_backoff.as_secs_f64() * exp;
        Duration::from_secs_f64(secs.min(self.max_backoff.as_secs_f64()))
    }

    /// The wait after failed attempt number `attempt`: the exponential wait with "equal
    /// jitter", uniformly between half of it and all of it, so that many clients that failed
    /// together do not retry together.
    pub(crate) fn backoff(&self, attempt: u32) -> Duration {
        let base = self.base_backoff(attempt);
        if base.is_zero() {
            return base;
        }
        let half = base / 2;
        half + rand::rng().random_range(Duration::ZERO..=half)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exponential_with_cap_and_jitter() {
        let p = RetryPolicy {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(1000),
            multiplier: 2.0,
        };
        assert_eq!(p.base_backoff(1), Duration::from_millis(100));
        assert_eq!(p.base_backoff(2), Duration::from_millis(200));
        assert_eq!(p.base_backoff(4), Duration::from_millis(800));
        assert_eq!(p.base_backoff(5), Duration::from_millis(1000));
        assert_eq!(p.base_backoff(500), Duration::from_millis(1000));
        for attempt in 1..8 {
            let b = p.backoff(attempt);
            let base = p.base_backoff(attempt);
            assert!(b >= base / 2 && b <= base, "{b:?} vs {base:?}");
        }
    }
}
