//! The counters the data path records that are not a backend's own (those live in
//! `BackendStats`): requests by listener, route, pool, backend and status class, request
//! durations, connections and TLS handshakes, as prometheus-client families that live as long
//! as the server, so reloads never reset them.

mod latency;

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

pub use latency::{Latency, LatencySnapshot};

/// A response's status class as a label value ("2xx").
pub fn status_class(status: u16) -> &'static str {
    crate::upstream::backend_stats::CLASSES[crate::upstream::backend_stats::class_index(status)]
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub listener: Arc<str>,
    pub route: Arc<str>,
    pub pool: Arc<str>,
    /// Empty when no backend was chosen (no route, no usable backend).
    pub backend: Arc<str>,
    pub code: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub listener: Arc<str>,
    pub route: Arc<str>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerLabels {
    pub listener: Arc<str>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HandshakeLabels {
    pub listener: Arc<str>,
    pub version: &'static str,
    pub cipher: &'static str,
    /// "full" or "resumed".
    pub kind: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    pub listener: Arc<str>,
    pub reason: &'static str,
}

/// The server's metric families. Clones share the counts.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    pub requests: Family<RequestLabels, Counter>,
    pub request_duration: Family<RouteLabels, Latency>,
    pub connections_active: Family<ListenerLabels, Gauge>,
    pub connections: Family<ListenerLabels, Counter>,
    pub handshakes: Family<HandshakeLabels, Counter>,
    pub handshake_failures: Family<FailureLabels, Counter>,
    /// Connections closed at accept, by listener and reason.
    pub connections_refused: Family<FailureLabels, Counter>,
}

impl Metrics {
    /// Adds the families to `registry` under their documented names (docs/operations.md).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "terminus_requests",
            "HTTP requests answered, by listener, route, pool, backend and status class",
            self.requests.clone(),
        );
        registry.register_with_unit(
            "terminus_request_duration",
            "Time from a request's arrival to its response header, by listener and route",
            prometheus_client::registry::Unit::Seconds,
            self.request_duration.clone(),
        );
        registry.register(
            "terminus_connections_active",
            "Client connections open now, by listener",
            self.connections_active.clone(),
        );
        registry.register(
            "terminus_connections",
            "Client connections accepted, by listener",
            self.connections.clone(),
        );
        registry.register(
            "terminus_tls_handshakes",
            "TLS handshakes completed, by listener, version, cipher suite and full or resumed",
            self.handshakes.clone(),
        );
        registry.register(
            "terminus_connections_refused",
            "Client connections closed as soon as they were accepted, by listener and reason",
            self.connections_refused.clone(),
        );
        registry.register(
            "terminus_tls_handshake_failures",
            "TLS handshakes that failed, by listener and reason",
            self.handshake_failures.clone(),
        );
    }
}

/// One route's handles into the families, resolved when the route is built so a request
/// counts with plain atomic adds (no label hashing, no lock).
#[derive(Debug)]
pub struct RouteMetrics {
    pub duration: Latency,
    /// By backend of the route's pool (pool order), then one row for "no backend"; each
    /// row by status class 1xx to 5xx.
    requests: Vec<[Counter; 5]>,
}

impl RouteMetrics {
    /// The handles of route `route` of `listener`, to `pool` with `backends` (names).
    pub fn new(
        metrics: &Metrics,
        listener: &Arc<str>,
        route: &Arc<str>,
        pool: &str,
        backends: &[&str],
    ) -> Self {
        let pool: Arc<str> = Arc::from(pool);
        let row = |backend: Arc<str>| {
            let classes = ["1xx", "2xx", "3xx", "4xx", "5xx"];
            classes.map(|code| {
                let labels = RequestLabels {
                    listener: listener.clone(),
                    route: route.clone(),
                    pool: pool.clone(),
                    backend: backend.clone(),
                    code,
                };
                metrics.requests.get_or_create(&labels).clone()
            })
        };
        let mut requests: Vec<[Counter; 5]> = backends.iter().map(|b| row(Arc::from(*b))).collect();
        requests.push(row(Arc::from("")));
        let labels = RouteLabels {
            listener: listener.clone(),
            route: route.clone(),
        };
        Self {
            duration: metrics.request_duration.get_or_create(&labels).clone(),
            requests,
        }
    }

    /// Counts a response of `status` from the backend at `backend` (its index in the pool),
    /// or from terminus itself (`None`).
    pub fn count(&self, backend: Option<usize>, status: u16) {
        let row = backend
            .and_then(|i| self.requests.get(i))
            .or_else(|| self.requests.last());
        let class = crate::upstream::backend_stats::class_index(status).min(4);
        if let Some(counter) = row.and_then(|r| r.get(class)) {
            counter.inc();
        }
    }
}

/// Counts a connection open while it lives.
pub struct ConnectionGauge(Gauge);

impl ConnectionGauge {
    pub fn open(metrics: &Metrics, listener: &Arc<str>) -> Self {
        let labels = ListenerLabels {
            listener: listener.clone(),
        };
        metrics.connections.get_or_create(&labels).inc();
        let gauge = metrics.connections_active.get_or_create(&labels).clone();
        gauge.inc();
        Self(gauge)
    }
}

impl Drop for ConnectionGauge {
    fn drop(&mut self) {
        self.0.dec();
    }
}
