//! The dashboard's memory: once a second, each backend's request rate, latency percentiles,
//! health, weight and load, and each TLS listener's handshake rates, kept for the last five
//! minutes.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use super::api::unix_ms;
use crate::metrics::LatencySnapshot;
use crate::shutdown::Watch;
use crate::Server;

const INTERVAL: Duration = Duration::from_secs(1);
const KEPT: usize = 300;

/// One backend at one sample.
#[derive(Debug, Clone)]
struct Point {
    /// `None` on a backend's first sample (no earlier count to compare with).
    rps: Option<f64>,
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
    healthy: bool,
    weight: u32,
    in_flight: usize,
}

#[derive(Debug, Clone)]
struct Sample {
    at_ms: u64,
    /// By (pool, backend).
    backends: HashMap<(String, String), Point>,
    /// By listener: full and resumed handshakes per second, and their totals.
    listeners: HashMap<String, (f64, f64, u64, u64)>,
}

/// What the previous sample read, to turn counters into rates.
#[derive(Debug, Default)]
struct Last {
    requests: HashMap<(String, String), (u64, LatencySnapshot)>,
    handshakes: HashMap<String, (u64, u64)>,
}

#[derive(Debug, Default)]
pub struct History {
    samples: Mutex<VecDeque<Sample>>,
    /// Order of first appearance, so the dashboard's colours stay put.
    order: Mutex<Order>,
}

/// Backends (pool, name) and listeners in the order they first appeared.
#[derive(Debug, Default)]
struct Order(Vec<(String, String)>, Vec<String>);

/// Samples every `INTERVAL` until shutdown.
pub async fn sample(history: std::sync::Arc<History>, server: Server, mut shutdown: Watch) {
    let mut last = Last::default();
    let mut tick = tokio::time::interval(INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.signalled() => return,
        }
        history.record(&server, &mut last);
    }
}

fn ms(seconds: Option<f64>) -> Option<f64> {
    seconds.map(|s| (s * 1e6).round() / 1e3)
}

impl History {
    fn record(&self, server: &Server, last: &mut Last) {
        let secs = INTERVAL.as_secs_f64();
        let mut sample = Sample {
            at_ms: unix_ms(SystemTime::now()),
            backends: HashMap::new(),
            listeners: HashMap::new(),
        };
        let mut seen = Vec::new();
        for pool in server.pools() {
            for b in &pool.backends {
                let key = (pool.name.clone(), b.name.clone());
                let requests = b.stats.requests();
                let latency = b.stats.latency.snapshot();
                let (rps, window) = match last.requests.get(&key) {
                    Some((before, lat)) => (
                        Some(requests.saturating_sub(*before) as f64 / secs),
                        latency.since(lat),
                    ),
                    None => (None, LatencySnapshot::default()),
                };
                sample.backends.insert(
                    key.clone(),
                    Point {
                        rps,
                        p50_ms: ms(window.quantile(0.5)),
                        p99_ms: ms(window.quantile(0.99)),
                        healthy: b.health().is_healthy() && !b.ejection().is_ejected(),
                        weight: b.weight(),
                        in_flight: b.in_flight(),
                    },
                );
                last.requests.insert(key.clone(), (requests, latency));
                seen.push(key);
            }
        }
        last.requests.retain(|k, _| seen.contains(k));
        for (name, stats) in server.tls_stats() {
            let (full, resumed) = (stats.full(), stats.resumed());
            let (f0, r0) = last
                .handshakes
                .insert(name.clone(), (full, resumed))
                .unwrap_or((full, resumed));
            let rates = (
                full.saturating_sub(f0) as f64 / secs,
                resumed.saturating_sub(r0) as f64 / secs,
                full,
                resumed,
            );
            sample.listeners.insert(name, rates);
        }
        {
            let mut order = self.order.lock().unwrap_or_else(|e| e.into_inner());
            for key in sample.backends.keys() {
                if !order.0.contains(key) {
                    order.0.push(key.clone());
                }
            }
            for key in sample.listeners.keys() {
                if !order.1.contains(key) {
                    order.1.push(key.clone());
                }
            }
        }
        let mut samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        if samples.len() == KEPT {
            samples.pop_front();
        }
        samples.push_back(sample);
    }

    /// The column-oriented view `GET /api/v1/history` answers.
    pub(super) fn view(&self) -> HistoryView {
        let samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        let order = self.order.lock().unwrap_or_else(|e| e.into_inner());
        let backends = order
            .0
            .iter()
            .filter(|key| samples.iter().any(|s| s.backends.contains_key(*key)))
            .map(|key| {
                let points: Vec<Option<&Point>> =
                    samples.iter().map(|s| s.backends.get(key)).collect();
                BackendSeries {
                    pool: key.0.clone(),
                    backend: key.1.clone(),
                    rps: points.iter().map(|p| p.and_then(|p| p.rps)).collect(),
                    p50_ms: points.iter().map(|p| p.and_then(|p| p.p50_ms)).collect(),
                    p99_ms: points.iter().map(|p| p.and_then(|p| p.p99_ms)).collect(),
                    healthy: points.iter().map(|p| p.map(|p| p.healthy)).collect(),
                    weight: points.iter().map(|p| p.map(|p| p.weight)).collect(),
                    in_flight: points.iter().map(|p| p.map(|p| p.in_flight)).collect(),
                }
            })
            .collect();
        let listeners = order
            .1
            .iter()
            .filter(|key| samples.iter().any(|s| s.listeners.contains_key(*key)))
            .map(|key| {
                let points: Vec<_> = samples.iter().map(|s| s.listeners.get(key)).collect();
                let last = points.iter().rev().flatten().next();
                ListenerSeries {
                    listener: key.clone(),
                    full_per_s: points.iter().map(|p| p.map(|p| p.0)).collect(),
                    resumed_per_s: points.iter().map(|p| p.map(|p| p.1)).collect(),
                    full_total: last.map_or(0, |p| p.2),
                    resumed_total: last.map_or(0, |p| p.3),
                }
            })
            .collect();
        HistoryView {
            interval_ms: INTERVAL.as_millis() as u64,
            times_ms: samples.iter().map(|s| s.at_ms).collect(),
            backends,
            listeners,
        }
    }
}

#[derive(Serialize)]
pub(super) struct HistoryView {
    interval_ms: u64,
    times_ms: Vec<u64>,
    backends: Vec<BackendSeries>,
    listeners: Vec<ListenerSeries>,
}

#[derive(Serialize)]
struct BackendSeries {
    pool: String,
    backend: String,
    rps: Vec<Option<f64>>,
    p50_ms: Vec<Option<f64>>,
    p99_ms: Vec<Option<f64>>,
    healthy: Vec<Option<bool>>,
    weight: Vec<Option<u32>>,
    in_flight: Vec<Option<usize>>,
}

#[derive(Serialize)]
struct ListenerSeries {
    listener: String,
    full_per_s: Vec<Option<f64>>,
    resumed_per_s: Vec<Option<f64>>,
    full_total: u64,
    resumed_total: u64,
}
