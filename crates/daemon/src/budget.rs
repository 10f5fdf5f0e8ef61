//! The budget of request bodies in flight (`limits.max_body_bytes_in_flight`): every byte of a
//! request body the daemon holds in memory before the body is in the write-ahead log (read,
//! decoded) is taken from it first, so that many large or slow requests at once cannot take
//! the daemon's memory. A request that does not fit is answered 503 with `Retry-After`.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;

/// A budget of bytes shared by all requests.
#[derive(Debug)]
pub struct Budget {
    limit: u64,
    used: AtomicU64,
}

impl Budget {
    /// A budget of `limit` bytes.
    pub fn new(limit: u64) -> Arc<Self> {
        Arc::new(Self {
            limit,
            used: AtomicU64::new(0),
        })
    }

    /// Bytes taken now.
    pub fn used(&self) -> u64 {
        self.used.load(Relaxed)
    }

    /// The limit.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Takes up to `want` bytes (exactly `want` when `all`); returns how many it took.
    fn take_raw(&self, want: u64, all: bool) -> u64 {
        let mut got = 0;
        let _ = self.used.fetch_update(Relaxed, Relaxed, |used| {
            let room = self.limit.saturating_sub(used);
            got = if all {
                if want > room {
                    return None;
                }
                want
            } else {
                want.min(room)
            };
            Some(used + got)
        });
        got
    }

    /// Takes `bytes`, if they fit.
    pub fn take(self: &Arc<Self>, bytes: u64) -> Option<Held> {
        (bytes == 0 || self.take_raw(bytes, true) == bytes).then(|| Held {
            budget: self.clone(),
            bytes,
        })
    }
}

/// Bytes taken from a [`Budget`], given back when dropped.
#[derive(Debug)]
pub struct Held {
    budget: Arc<Budget>,
    bytes: u64,
}

impl Held {
    /// Bytes held.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Grows to `total` bytes, if the budget allows (true when it already holds as many).
    pub fn grow_to(&mut self, total: u64) -> bool {
        if total <= self.bytes {
            return true;
        }
        let more = total - self.bytes;
        if self.budget.take_raw(more, true) == more {
            self.bytes = total;
            true
        } else {
            false
        }
    }

    /// Takes up to `more` bytes more; returns how many it got.
    pub fn take_up_to(&mut self, more: u64) -> u64 {
        let got = self.budget.take_raw(more, false);
        self.bytes += got;
        got
    }

    /// Gives back everything above `total` bytes.
    pub fn shrink_to(&mut self, total: u64) {
        if total < self.bytes {
            self.budget.used.fetch_sub(self.bytes - total, Relaxed);
            self.bytes = total;
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.bytes, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_what_fits_and_gives_everything_back() {
        let b = Budget::new(100);
        let mut a = b.take(60).unwrap();
        assert!(b.take(41).is_none());
        assert!(!a.grow_to(101));
        assert!(a.grow_to(70));
        assert_eq!(b.used(), 70);
        let mut c = b.take(0).unwrap();
        assert_eq!(c.take_up_to(50), 30);
        assert_eq!(b.used(), 100);
        c.shrink_to(10);
        assert_eq!(b.used(), 80);
        drop(a);
        drop(c);
        assert_eq!(b.used(), 0);
    }
}
