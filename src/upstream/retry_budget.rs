//! The retry budget: retries may add at most a share of a pool's recent requests (plus a
//! small floor), so that retries cannot multiply the load on a pool that is failing.
//! Counted over a sliding window of one-second buckets, in atomics.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Seconds of history the budget looks at.
const WINDOW_SECS: u64 = 10;

#[derive(Debug)]
struct Bucket {
    /// Which second (since `start`) the counts belong to.
    second: AtomicU64,
    requests: AtomicU64,
    retries: AtomicU64,
}

#[derive(Debug)]
pub struct RetryBudget {
    /// Retries allowed per 100 requests in the window.
    percent: u64,
    /// Retries allowed in the window whatever the traffic.
    floor: u64,
    start: Instant,
    buckets: [Bucket; WINDOW_SECS as usize],
}

impl RetryBudget {
    pub fn new(percent: u32, floor: u32) -> Self {
        Self {
            percent: u64::from(percent),
            floor: u64::from(floor),
            start: Instant::now(),
            buckets: std::array::from_fn(|_| Bucket {
                second: AtomicU64::new(u64::MAX),
                requests: AtomicU64::new(0),
                retries: AtomicU64::new(0),
            }),
        }
    }

    fn now_second(&self) -> u64 {
        self.start.elapsed().as_secs()
    }

    /// The bucket for this second, reset when it last held an older second. Two threads may
    /// race on the reset and lose a count; the budget stays approximately right.
    fn bucket(&self, second: u64) -> &Bucket {
        let b = &self.buckets[(second % WINDOW_SECS) as usize];
        if b.second.swap(second, Ordering::Relaxed) != second {
            b.requests.store(0, Ordering::Relaxed);
            b.retries.store(0, Ordering::Relaxed);
        }
        b
    }

    /// Counts a request (its first attempt).
    pub fn record_request(&self) {
        self.bucket(self.now_second())
            .requests
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Takes one retry from the budget; `false` when the budget is spent.
    pub fn try_retry(&self) -> bool {
        let now = self.now_second();
        let (mut requests, mut retries) = (0, 0);
        for b in &self.buckets {
            let second = b.second.load(Ordering::Relaxed);
            if second != u64::MAX && now.saturating_sub(second) < WINDOW_SECS {
                requests += b.requests.load(Ordering::Relaxed);
                retries += b.retries.load(Ordering::Relaxed);
            }
        }
        if retries >= self.floor + requests * self.percent / 100 {
            return false;
        }
        self.bucket(now).retries.fetch_add(1, Ordering::Relaxed);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_are_capped_by_share_and_floor() {
        let b = RetryBudget::new(20, 3);
        // No traffic: only the floor.
        assert_eq!((0..10).filter(|_| b.try_retry()).count(), 3);
        // 100 requests allow 20 more retries on top of the floor (3 already used).
        for _ in 0..100 {
            b.record_request();
        }
        assert_eq!((0..100).filter(|_| b.try_retry()).count(), 20);
    }
}
