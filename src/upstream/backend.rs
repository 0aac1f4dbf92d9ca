//! A backend's live state: requests in flight, moving averages of its response time, health
//! (active checks), ejection (outlier detection), drain and slow start, kept in atomics so that
//! balancers read them without locks.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use http::uri::Authority;

use super::backend_stats::BackendStats;
use super::outlier::Ejection;
use crate::config::BackendState;

/// How fast old latency samples fade: after this long without samples, an average counts about
/// a third (1/e) as much, so a backend that was slow is tried again eventually.
const DECAY: Duration = Duration::from_secs(10);
/// Weight of a new sample in the plain moving average.
const EWMA_ALPHA: f64 = 0.3;

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Nanoseconds since the process epoch: the clock of samples, ejections and slow start.
pub(crate) fn now_ns() -> u64 {
    u64::try_from(epoch().elapsed().as_nanos()).unwrap_or(u64::MAX)
}

#[derive(Debug)]
pub struct Backend {
    pub name: String,
    /// The name, shared cheaply with logs and metrics.
    pub label: Arc<str>,
    pub address: SocketAddr,
    /// Changed only by a reload (the balancers are rebuilt with it).
    weight: AtomicU32,
    /// The address as a URI authority, built once so requests do not format it.
    pub authority: Authority,
    in_flight: AtomicUsize,
    /// Requests waiting for a slot under the pool's `max_connections_per_backend`.
    queued: AtomicUsize,
    /// Woken when a request ends while others wait for a slot.
    slot_freed: tokio::sync::Notify,
    /// Requests that waited `timeouts.queue` without getting a slot.
    queue_timeouts: AtomicU64,
    /// f64 bits, nanoseconds: plain exponentially weighted moving average.
    ewma_ns: AtomicU64,
    /// f64 bits, nanoseconds: peak-sensitive moving average (jumps up at once, decays slowly).
    peak_ns: AtomicU64,
    /// Nanoseconds since the process epoch of the last sample; 0 means none yet.
    last_sample: AtomicU64,
    health: Health,
    /// A backup takes requests only while no primary backend of its pool is usable.
    pub backup: bool,
    /// `BackendState` as a number: what an operator allows it to take.
    state: AtomicU8,
    pub stats: BackendStats,
    ejection: Ejection,
    /// Nanoseconds since the epoch from which slow start ramps after an ejection or a drain
    /// (health recoveries are in `Health::recovered_at`); 0 means never.
    ramp_from: AtomicU64,
}

/// Health as active checks see it. Only the backend's checking task writes it.
#[derive(Debug)]
pub struct Health {
    healthy: AtomicBool,
    /// No check has run yet: the first pass makes an unhealthy backend healthy at once.
    unchecked: AtomicBool,
    passes: AtomicU32,
    failures: AtomicU32,
    /// When (nanoseconds since the epoch) checks last made the backend healthy again after it
    /// had been found unhealthy; 0 when they never did (the first pass does not count).
    recovered_at: AtomicU64,
}

impl Health {
    fn new(healthy: bool) -> Self {
        Self {
            healthy: AtomicBool::new(healthy),
            unchecked: AtomicBool::new(true),
            passes: AtomicU32::new(0),
            failures: AtomicU32::new(0),
            recovered_at: AtomicU64::new(0),
        }
    }

    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Records one check. Returns the new state when it changed: healthy after `rise`
    /// consecutive passes (or the very first one), unhealthy after `fall` consecutive failures.
    pub fn record(&self, passed: bool, rise: u32, fall: u32) -> Option<bool> {
        let first = self.unchecked.swap(false, Ordering::Relaxed);
        let healthy = self.is_healthy();
        if passed {
            self.failures.store(0, Ordering::Relaxed);
            let passes = self
                .passes
                .fetch_add(1, Ordering::Relaxed)
                .saturating_add(1);
            if !healthy && (first || passes >= rise) {
                if !first {
                    self.recovered_at.store(now_ns().max(1), Ordering::Relaxed);
                }
                self.healthy.store(true, Ordering::Relaxed);
                return Some(true);
            }
        } else {
            self.passes.store(0, Ordering::Relaxed);
            let failures = self
                .failures
                .fetch_add(1, Ordering::Relaxed)
                .saturating_add(1);
            if healthy && failures >= fall {
                self.healthy.store(false, Ordering::Relaxed);
                return Some(false);
            }
        }
        None
    }
}

impl Backend {
    /// A backend that is healthy until a health check says otherwise.
    pub fn new(name: String, address: SocketAddr, weight: u32) -> Self {
        Self::with_health(name, address, weight, true)
    }

    /// A backend starting `healthy` or not (checked pools start unhealthy by default, until
    /// their first passing check).
    pub fn with_health(name: String, address: SocketAddr, weight: u32, healthy: bool) -> Self {
        let authority = Authority::try_from(address.to_string().as_str())
            .unwrap_or_else(|_| Authority::from_static("invalid"));
        Self {
            label: name.as_str().into(),
            name,
            address,
            weight: AtomicU32::new(weight),
            authority,
            in_flight: AtomicUsize::new(0),
            queued: AtomicUsize::new(0),
            slot_freed: tokio::sync::Notify::new(),
            queue_timeouts: AtomicU64::new(0),
            ewma_ns: AtomicU64::new(0f64.to_bits()),
            peak_ns: AtomicU64::new(0f64.to_bits()),
            last_sample: AtomicU64::new(0),
            health: Health::new(healthy),
            backup: false,
            state: AtomicU8::new(0),
            stats: BackendStats::default(),
            ejection: Ejection::default(),
            ramp_from: AtomicU64::new(0),
        }
    }

    /// The same backend, made a backup (or a primary).
    pub fn with_backup(mut self, backup: bool) -> Self {
        self.backup = backup;
        self
    }

    pub fn health(&self) -> &Health {
        &self.health
    }

    pub fn ejection(&self) -> &Ejection {
        &self.ejection
    }

    pub fn weight(&self) -> u32 {
        self.weight.load(Ordering::Relaxed)
    }

    /// Sets the weight; only a reload calls it, as it rebuilds the balancers that read it.
    pub(crate) fn set_weight(&self, weight: u32) {
        self.weight.store(weight, Ordering::Relaxed);
    }

    /// Whether new requests and sessions may go here: a weight above 0, healthy, not ejected
    /// and enabled. Sticky sessions should ask `Pool::can_take`, which adds the rules for
    /// backups and draining.
    pub fn is_usable(&self) -> bool {
        self.weight() > 0
            && self.health.is_healthy()
            && self.state() == BackendState::Enabled
            && !self.ejection.is_ejected()
    }

    /// Whether requests of sessions already here may still come: healthy, not ejected, and
    /// enabled or draining.
    pub fn keeps_sessions(&self) -> bool {
        self.health.is_healthy()
            && self.state() != BackendState::Disabled
            && !self.ejection.is_ejected()
    }

    pub fn state(&self) -> BackendState {
        match self.state.load(Ordering::Relaxed) {
            0 => BackendState::Enabled,
            1 => BackendState::Draining,
            _ => BackendState::Disabled,
        }
    }

    pub fn is_draining(&self) -> bool {
        self.state() == BackendState::Draining
    }

    /// Sets what the backend may take. Returning to `Enabled` starts slow start. Returns
    /// whether the state changed.
    pub fn set_state(&self, state: BackendState) -> bool {
        let n = match state {
            BackendState::Enabled => 0,
            BackendState::Draining => 1,
            BackendState::Disabled => 2,
        };
        let was = self.state.swap(n, Ordering::Relaxed);
        if was != 0 && n == 0 {
            self.ramp_from(now_ns());
        }
        was != n
    }

    /// Starts or ends draining: a draining backend gets no new sessions, while those in
    /// flight finish. Ending a drain starts slow start. Returns whether the state changed.
    pub fn set_draining(&self, on: bool) -> bool {
        self.set_state(if on {
            BackendState::Draining
        } else {
            BackendState::Enabled
        })
    }

    /// Slow start ramps from `at` (nanoseconds since the epoch) unless a later start is known.
    pub(crate) fn ramp_from(&self, at: u64) {
        self.ramp_from.fetch_max(at.max(1), Ordering::Relaxed);
    }

    /// The share of its traffic the backend may take at `now` (nanoseconds since the epoch)
    /// with a slow start of `window`: rising linearly from 0 when it last came back into
    /// service to 1 after `window`; 1 when it never came back (it has served since the start).
    pub fn slow_start_ratio(&self, window: Duration, now: u64) -> f64 {
        let from = (self.ramp_from.load(Ordering::Relaxed))
            .max(self.health.recovered_at.load(Ordering::Relaxed));
        if from == 0 || window.is_zero() {
            return 1.0;
        }
        let window = window.as_nanos() as f64;
        (now.saturating_sub(from) as f64 / window).min(1.0)
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Counts a request in flight until the returned guard is dropped.
    pub fn start(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight {
            backend: self.clone(),
        }
    }

    /// `start` once fewer than `max` requests are in flight here (HAProxy's server `maxconn`):
    /// a request beyond waits in the backend's queue for at most `wait`, and gets `None` if
    /// no slot came. With HTTP/1 each request in flight holds one connection, so this also
    /// bounds the connections (and descriptors) a slow backend can take.
    pub async fn start_within(
        self: &Arc<Self>,
        max: Option<usize>,
        wait: Duration,
    ) -> Option<InFlight> {
        let Some(max) = max else {
            return Some(self.start());
        };
        if self.try_start(max) {
            return Some(self.guard());
        }
        // SeqCst here and in `InFlight::drop` (decrement, then look for waiters): either the
        // ending request sees this waiter and wakes it, or the waiter's next try sees the
        // slot it freed.
        self.queued.fetch_add(1, Ordering::SeqCst);
        let _left = Queued(&self.queued);
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let freed = self.slot_freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if self.try_start(max) {
                return Some(self.guard());
            }
            if tokio::time::timeout_at(deadline, freed).await.is_err() {
                self.queue_timeouts.fetch_add(1, Ordering::Relaxed);
                return None;
            }
        }
    }

    fn try_start(&self, max: usize) -> bool {
        self.in_flight
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok()
    }

    /// The guard for a request already counted in flight.
    fn guard(self: &Arc<Self>) -> InFlight {
        InFlight {
            backend: self.clone(),
        }
    }

    /// Requests waiting for a slot now.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// Requests that waited for a slot until `timeouts.queue` ran out.
    pub fn queue_timeouts(&self) -> u64 {
        self.queue_timeouts.load(Ordering::Relaxed)
    }

    /// Records one response time. Concurrent updates may lose a sample; the averages stay sound.
    pub fn observe(&self, rtt: Duration) {
        let now = now_ns();
        let rtt = rtt.as_nanos() as f64;
        let last = self.last_sample.swap(now.max(1), Ordering::Relaxed);
        let ewma = f64::from_bits(self.ewma_ns.load(Ordering::Relaxed));
        let peak = f64::from_bits(self.peak_ns.load(Ordering::Relaxed));
        let (ewma, peak) = if last == 0 {
            (rtt, rtt)
        } else {
            let w = (-(now.saturating_sub(last) as f64) / DECAY.as_nanos() as f64).exp();
            let peak = if rtt > peak {
                rtt
            } else {
                peak * w + rtt * (1.0 - w)
            };
            (ewma + EWMA_ALPHA * (rtt - ewma), peak)
        };
        self.ewma_ns.store(ewma.to_bits(), Ordering::Relaxed);
        self.peak_ns.store(peak.to_bits(), Ordering::Relaxed);
    }

    /// How much the averages still count, fading with time since the last sample.
    fn staleness_factor(&self) -> f64 {
        let last = self.last_sample.load(Ordering::Relaxed);
        if last == 0 {
            return 0.0;
        }
        let idle = now_ns().saturating_sub(last) as f64;
        (-idle / DECAY.as_nanos() as f64).exp()
    }

    /// Moving average of response time in nanoseconds (0 before the first sample).
    pub fn ewma_ns(&self) -> f64 {
        f64::from_bits(self.ewma_ns.load(Ordering::Relaxed)) * self.staleness_factor()
    }

    /// Peak-EWMA of response time in nanoseconds (0 before the first sample).
    pub fn peak_ewma_ns(&self) -> f64 {
        f64::from_bits(self.peak_ns.load(Ordering::Relaxed)) * self.staleness_factor()
    }
}

/// A request in flight on a backend; dropping it ends the count.
#[derive(Debug)]
pub struct InFlight {
    backend: Arc<Backend>,
}

impl InFlight {
    pub fn backend(&self) -> &Arc<Backend> {
        &self.backend
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.backend.in_flight.fetch_sub(1, Ordering::SeqCst);
        if self.backend.queued.load(Ordering::SeqCst) > 0 {
            self.backend.slot_freed.notify_one();
        }
    }
}

/// Counts a request in its backend's queue while it waits.
struct Queued<'a>(&'a AtomicUsize);

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_flight_counts_guards() {
        let b = Arc::new(Backend::new("b".into(), "127.0.0.1:1".parse().unwrap(), 1));
        let g1 = b.start();
        let g2 = b.start();
        assert_eq!(b.in_flight(), 2);
        drop(g1);
        assert_eq!(b.in_flight(), 1);
        drop(g2);
        assert_eq!(b.in_flight(), 0);
    }

    #[test]
    fn health_rises_and_falls_after_consecutive_checks() {
        let h = Health::new(false);
        // The first pass counts as enough to start.
        assert_eq!(h.record(true, 3, 2), Some(true));
        assert_eq!(h.record(false, 3, 2), None);
        assert_eq!(h.record(true, 3, 2), None, "a pass resets the failures");
        assert_eq!(h.record(false, 3, 2), None);
        assert_eq!(h.record(false, 3, 2), Some(false));
        assert_eq!(h.record(true, 3, 2), None);
        assert_eq!(h.record(true, 3, 2), None);
        assert_eq!(
            h.record(true, 3, 2),
            Some(true),
            "healthy after rise = 3 passes"
        );
    }

    #[test]
    fn averages_follow_samples_and_peak_jumps() {
        let b = Backend::new("b".into(), "127.0.0.1:1".parse().unwrap(), 1);
        assert_eq!(b.ewma_ns(), 0.0);
        b.observe(Duration::from_millis(10));
        b.observe(Duration::from_millis(50));
        let ms = 1e6;
        assert!(
            b.peak_ewma_ns() > 49.0 * ms,
            "peak jumps to the slow sample"
        );
        let e = b.ewma_ns();
        assert!(
            e > 20.0 * ms && e < 30.0 * ms,
            "ewma moved 30% of the way: {e}"
        );
    }

    #[test]
    fn slow_start_begins_on_recovery_and_end_of_drain_not_at_the_first_check() {
        let window = Duration::from_secs(100);
        let far = now_ns() + 1_000_000_000_000;
        let b = Backend::with_health("b".into(), "127.0.0.1:1".parse().unwrap(), 1, false);
        assert_eq!(b.health().record(true, 2, 2), Some(true), "first pass");
        assert_eq!(b.slow_start_ratio(window, 0), 1.0, "no ramp at the start");
        b.health().record(false, 2, 1);
        b.health().record(true, 1, 1);
        let now = now_ns();
        assert!(
            b.slow_start_ratio(window, now) < 0.01,
            "ramp from the recovery"
        );
        assert_eq!(b.slow_start_ratio(window, far), 1.0);
        let d = Backend::new("d".into(), "127.0.0.1:1".parse().unwrap(), 1);
        assert!(d.set_draining(true));
        assert!(!d.is_usable() && d.is_draining());
        assert_eq!(
            d.slow_start_ratio(window, now_ns()),
            1.0,
            "draining is no ramp"
        );
        assert!(d.set_draining(false));
        assert!(d.is_usable());
        assert!(
            d.slow_start_ratio(window, now_ns()) < 0.01,
            "ramp from the end of the drain"
        );
    }
}
