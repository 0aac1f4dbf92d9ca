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
            "terminus_tls_handshake_failures",
            "TLS handshakes that failed, by listener and reason",
            self.handshake_failures.clone(),
        );
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
