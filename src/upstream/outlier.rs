//! Outlier detection (passive health checks): the answers of real requests eject a backend
//! after `consecutive_failures` failures in a row, for `base_ejection` × the number of times
//! it has been ejected (up to `max_ejection`), while at most `max_ejection_percent` of the
//! pool (at least one backend) is ejected at once.
//!
//! Returns are lazy: an ejected backend is usable again as soon as its time is up, because
//! `Ejection::is_ejected` compares the deadline with the clock; no task or timer is needed,
//! nothing has to be cancelled at shutdown, and a pool without traffic does no work. The
//! detector notices returns on the pool's next pick (one atomic load while nothing is due)
//! and only then logs them.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use http::StatusCode;
use tracing::{info, warn};

use super::backend::{now_ns, Backend};
use super::client::UpstreamError;
use crate::config::OutlierDetection;

/// What became of one request to a backend, as outlier detection counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// An answer below 500: the backend works (a 4xx is the client's business).
    Success,
    /// Refused, unreachable, or no connection within the connect timeout.
    ConnectFailure,
    /// Reset or closed before a whole response head, or an invalid response.
    Reset,
    /// An answer of 500 or above.
    ServerError,
    /// No response headers within the response timeout.
    Timeout,
}

impl Outcome {
    /// The outcome of an answer with `status`.
    pub fn of_status(status: StatusCode) -> Self {
        if status.is_server_error() {
            Self::ServerError
        } else {
            Self::Success
        }
    }

    /// The outcome of a failed request, or `None` when the failure need not be the backend's
    /// (`UpstreamError::Other`, e.g. the client's request body broke off): not counted.
    pub fn of_error(e: &UpstreamError) -> Option<Self> {
        Some(match e {
            UpstreamError::Refused
            | UpstreamError::ConnectTimeout
            | UpstreamError::Connect(_)
            | UpstreamError::Tls(_) => Self::ConnectFailure,
            UpstreamError::Reset | UpstreamError::Closed | UpstreamError::InvalidResponse(_) => {
                Self::Reset
            }
            UpstreamError::ResponseTimeout(_) => Self::Timeout,
            UpstreamError::Other(_)
            | UpstreamError::ClientBody(_)
            | UpstreamError::NoResources(_) => return None,
        })
    }

    pub fn is_failure(self) -> bool {
        self != Self::Success
    }

    fn reason(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::ConnectFailure => "connect failures",
            Self::Reset => "resets or early closes",
            Self::ServerError => "5xx answers",
            Self::Timeout => "response timeouts",
        }
    }
}

/// One backend's passive-health state.
#[derive(Debug, Default)]
pub struct Ejection {
    /// Failures since the last success or ejection.
    failures: AtomicU32,
    /// Ejections so far (the multiplier of `base_ejection`); starts over after a backend has
    /// served for `max_ejection` since its last return.
    ejections: AtomicU32,
    /// Set at an ejection, cleared when the detector notices (and logs) the return.
    ejected: AtomicBool,
    /// Nanoseconds since the epoch when the current (or last) ejection ends.
    until: AtomicU64,
}

impl Ejection {
    /// Whether the backend is ejected now.
    pub fn is_ejected(&self) -> bool {
        // The flag keeps the clock off the path of backends that are not ejected.
        self.ejected.load(Ordering::Acquire) && self.is_ejected_at(now_ns())
    }

    fn is_ejected_at(&self, now: u64) -> bool {
        self.ejected.load(Ordering::Acquire) && now < self.until.load(Ordering::Relaxed)
    }

    /// Failures in a row since the last success or ejection.
    pub fn consecutive_failures(&self) -> u32 {
        self.failures.load(Ordering::Relaxed)
    }

    /// How many times in a row the backend has been ejected.
    pub fn ejections(&self) -> u32 {
        self.ejections.load(Ordering::Relaxed)
    }
}

/// A pool's outlier detector.
#[derive(Debug)]
pub struct Detector {
    settings: OutlierDetection,
    /// Serialises ejections and returns, so that two failing backends cannot both slip
    /// under the cap. Only failures past the threshold and due returns take it.
    lock: Mutex<()>,
    /// The earliest end of a current ejection; `u64::MAX` when none is ejected.
    next_return: AtomicU64,
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl Detector {
    pub fn new(settings: OutlierDetection) -> Self {
        Self {
            settings,
            lock: Mutex::new(()),
            next_return: AtomicU64::new(u64::MAX),
        }
    }

    /// How long the `n`-th ejection in a row lasts.
    pub fn ejection_time(&self, n: u32) -> Duration {
        let s = &self.settings;
        s.base_ejection
            .saturating_mul(n.max(1))
            .min(s.max_ejection.max(s.base_ejection))
    }

    /// Counts `outcome` of a request to `backend`, one of the pool's `backends`; ejects the
    /// backend when it makes `consecutive_failures` in a row and the cap allows.
    pub fn report(
        &self,
        pool: &str,
        backends: &[Arc<Backend>],
        backend: &Backend,
        outcome: Outcome,
    ) {
        self.report_at(pool, backends, backend, outcome, now_ns());
    }

    pub(crate) fn report_at(
        &self,
        pool: &str,
        backends: &[Arc<Backend>],
        backend: &Backend,
        outcome: Outcome,
        now: u64,
    ) {
        let e = backend.ejection();
        // Answers of requests still in flight when the backend was ejected do not count.
        if e.is_ejected_at(now) {
            return;
        }
        if !outcome.is_failure() {
            e.failures.store(0, Ordering::Relaxed);
            return;
        }
        let failures = e.failures.fetch_add(1, Ordering::Relaxed).saturating_add(1);
        let threshold = self.settings.consecutive_failures;
        if failures < threshold {
            return;
        }
        let _guard = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        if e.is_ejected_at(now) {
            return;
        }
        let ejected = backends
            .iter()
            .filter(|b| b.ejection().is_ejected_at(now))
            .count();
        let allowed = (backends.len() * self.settings.max_ejection_percent as usize / 100).max(1);
        if ejected >= allowed {
            // Failures go on counting: the backend is ejected once another one returns.
            if failures == threshold {
                warn!(pool, backend = %backend.name, reason = outcome.reason(), failures, ejected, max_ejection_percent = self.settings.max_ejection_percent, "backend not ejected: too many of the pool are ejected already");
            }
            return;
        }
        let last_end = e.until.load(Ordering::Relaxed);
        let served_long =
            last_end != 0 && now.saturating_sub(last_end) >= nanos(self.settings.max_ejection);
        let n = if served_long {
            1
        } else {
            e.ejections.load(Ordering::Relaxed).saturating_add(1)
        };
        let time = self.ejection_time(n);
        let until = now.saturating_add(nanos(time)).max(1);
        e.ejections.store(n, Ordering::Relaxed);
        e.failures.store(0, Ordering::Relaxed);
        e.until.store(until, Ordering::Relaxed);
        e.ejected.store(true, Ordering::Release);
        backend.ramp_from(until);
        self.next_return.fetch_min(until, Ordering::Relaxed);
        warn!(pool, backend = %backend.name, reason = outcome.reason(), failures, ejection = ?time, ejections = n, "backend ejected");
    }

    /// Notices the backends whose ejection is over, logs their return, and clears their flag.
    /// Costs one atomic load while no return is due.
    pub fn sweep(&self, pool: &str, backends: &[Arc<Backend>]) {
        if self.next_return.load(Ordering::Relaxed) == u64::MAX {
            return;
        }
        self.sweep_at(pool, backends, now_ns());
    }

    pub(crate) fn sweep_at(&self, pool: &str, backends: &[Arc<Backend>], now: u64) {
        if now < self.next_return.load(Ordering::Relaxed) {
            return;
        }
        let _guard = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        let mut next = u64::MAX;
        for b in backends {
            let e = b.ejection();
            if !e.ejected.load(Ordering::Acquire) {
                continue;
            }
            let until = e.until.load(Ordering::Relaxed);
            if now < until {
                next = next.min(until);
                continue;
            }
            e.ejected.store(false, Ordering::Release);
            let time = self.ejection_time(e.ejections());
            info!(pool, backend = %b.name, ejection = ?time, ejections = e.ejections(), "backend returns from ejection");
        }
        self.next_return.store(next, Ordering::Relaxed);
    }
}

#[cfg(test)]
#[path = "outlier_tests.rs"]
mod tests;
