//! What a backend has served, for metrics, the admin API and the dashboard: answers by
//! status class, upstream latency, sticky sessions, retries, and its last health checks.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use crate::metrics::Latency;

/// Status classes and failures, in the order of `BackendStats::responses`.
pub const CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "failed"];
/// Health checks kept per backend for the admin API.
const CHECKS_KEPT: usize = 10;

/// The index into `CLASSES` of an HTTP status code.
pub fn class_index(status: u16) -> usize {
    usize::from((status / 100).clamp(1, 5)) - 1
}

#[derive(Debug, Default)]
pub struct BackendStats {
    /// Answers by class (`CLASSES`); the last counts attempts that got no answer.
    responses: [AtomicU64; 6],
    /// Time from sending a request to the backend's response header.
    pub latency: Latency,
    /// Sticky sessions started here (a new cookie) and requests a cookie brought back.
    sessions_new: AtomicU64,
    sessions_hit: AtomicU64,
    /// Failed attempts here that were retried elsewhere, and those the retry budget refused.
    retried: AtomicU64,
    budget_refused: AtomicU64,
    checks: Mutex<VecDeque<CheckResult>>,
}

/// One active health check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckResult {
    pub at: SystemTime,
    pub passed: bool,
    pub took: Duration,
    /// Why it failed, or what passed (e.g. "HTTP 200").
    pub detail: String,
}

impl BackendStats {
    pub fn answered(&self, status: u16, took: Duration) {
        self.responses[class_index(status)].fetch_add(1, Ordering::Relaxed);
        self.latency.observe(took);
    }

    pub fn failed(&self) {
        self.responses[5].fetch_add(1, Ordering::Relaxed);
    }

    pub fn session_started(&self) {
        self.sessions_new.fetch_add(1, Ordering::Relaxed);
    }

    pub fn session_hit(&self) {
        self.sessions_hit.fetch_add(1, Ordering::Relaxed);
    }

    pub fn retried(&self) {
        self.retried.fetch_add(1, Ordering::Relaxed);
    }

    pub fn budget_refused(&self) {
        self.budget_refused.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts by `CLASSES`.
    pub fn responses(&self) -> [u64; 6] {
        std::array::from_fn(|i| self.responses[i].load(Ordering::Relaxed))
    }

    /// All attempts: answered or failed.
    pub fn requests(&self) -> u64 {
        self.responses().iter().sum()
    }

    /// (new, hits)
    pub fn sessions(&self) -> (u64, u64) {
        (
            self.sessions_new.load(Ordering::Relaxed),
            self.sessions_hit.load(Ordering::Relaxed),
        )
    }

    /// (retried elsewhere, refused by the retry budget)
    pub fn retries(&self) -> (u64, u64) {
        (
            self.retried.load(Ordering::Relaxed),
            self.budget_refused.load(Ordering::Relaxed),
        )
    }

    /// Keeps a health check's result (the last `CHECKS_KEPT`).
    pub fn checked(&self, result: CheckResult) {
        let mut checks = self.checks.lock().unwrap_or_else(|e| e.into_inner());
        if checks.len() == CHECKS_KEPT {
            checks.pop_front();
        }
        checks.push_back(result);
    }

    /// The last health checks, oldest first.
    pub fn checks(&self) -> Vec<CheckResult> {
        let checks = self.checks.lock().unwrap_or_else(|e| e.into_inner());
        checks.iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_and_check_history() {
        let s = BackendStats::default();
        s.answered(204, Duration::from_millis(1));
        s.answered(503, Duration::from_millis(1));
        s.answered(99, Duration::from_millis(1));
        s.failed();
        assert_eq!(s.responses(), [1, 1, 0, 0, 1, 1]);
        assert_eq!(s.requests(), 4);
        for i in 0..15 {
            s.checked(CheckResult {
                at: SystemTime::UNIX_EPOCH,
                passed: i % 2 == 0,
                took: Duration::ZERO,
                detail: i.to_string(),
            });
        }
        let checks = s.checks();
        assert_eq!(checks.len(), CHECKS_KEPT);
        assert_eq!(checks[0].detail, "5");
        assert_eq!(checks[9].detail, "14");
    }
}
