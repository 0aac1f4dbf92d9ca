//! One request's account, from its arrival to the last byte of its answer: counted in the
//! metrics when the response header leaves, and written to the access log when the response
//! ends (or is cut short).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::proxy::ConnInfo;
use crate::access_log::{Kind, Record};
use crate::metrics::{status_class, RequestLabels, RouteMetrics};
use crate::upstream::replay::BodyMeter;

/// What is known of a request so far.
pub struct Exchange {
    conn: Arc<ConnInfo>,
    started: Instant,
    time: SystemTime,
    /// Method, host and path: taken only when an access log is written.
    request: Option<(String, Option<String>, String)>,
    pub route: Option<Arc<str>>,
    pub route_metrics: Option<Arc<RouteMetrics>>,
    pub pool: Option<Arc<str>>,
    pub backend: Option<Arc<str>>,
    /// The backend's index in its pool, for the route's counters.
    pub backend_index: Option<usize>,
    pub retries: u32,
    pub connect: Option<Duration>,
    pub ttfb: Option<Duration>,
    pub decision: Option<String>,
    /// Why the request ended without a backend's full answer, if it did.
    pub termination: Option<&'static str>,
    pub body_in: Option<BodyMeter>,
}

impl Exchange {
    pub fn start(
        conn: &Arc<ConnInfo>,
        parts: &http::request::Request<hyper::body::Incoming>,
    ) -> Self {
        let request = conn.access_log.is_some().then(|| {
            let path = parts
                .uri()
                .path_and_query()
                .map_or_else(|| parts.uri().path().to_owned(), |p| p.as_str().to_owned());
            let host = super::request_key::request_host(parts).map(str::to_owned);
            (parts.method().as_str().to_owned(), host, path)
        });
        conn.activity.begin();
        Self {
            conn: conn.clone(),
            started: Instant::now(),
            time: SystemTime::now(),
            request,
            route: None,
            route_metrics: None,
            pool: None,
            backend: None,
            backend_index: None,
            retries: 0,
            connect: None,
            ttfb: None,
            decision: None,
            termination: None,
            body_in: None,
        }
    }

    /// Counts the response header of `status` in the metrics; the returned account is
    /// finished by the response body (writing the access log line, when there is a log).
    pub fn responded(self, status: u16) -> Finish {
        match &self.route_metrics {
            Some(m) => {
                m.count(self.backend_index, status);
                m.duration.observe(self.started.elapsed());
            }
            None => {
                // No route: counted under empty route, pool and backend labels.
                let empty: Arc<str> = Arc::from("");
                let labels = RequestLabels {
                    listener: self.conn.listener.clone(),
                    route: empty.clone(),
                    pool: empty.clone(),
                    backend: empty,
                    code: status_class(status),
                };
                self.conn.metrics.requests.get_or_create(&labels).inc();
            }
        }
        // Always made, even without an access log: it carries the exchange (and so the
        // connection's count of requests in progress) to the end of the response body.
        Finish {
            exchange: self,
            status,
            bytes_out: 0,
            ended: false,
            body_error: false,
        }
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        self.conn.activity.end();
    }
}

/// The access log's half of an exchange, carried by the response body; it writes the line
/// when the body ends or is dropped.
pub struct Finish {
    exchange: Exchange,
    status: u16,
    pub bytes_out: u64,
    /// The body reached its end.
    pub ended: bool,
    /// Reading the backend's body failed midway.
    pub body_error: bool,
}

impl std::fmt::Debug for Finish {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Finish")
            .field("status", &self.status)
            .finish()
    }
}

impl Drop for Finish {
    fn drop(&mut self) {
        let x = &mut self.exchange;
        let Some(log) = x.conn.access_log.clone() else {
            return;
        };
        let termination = x.termination.or(if self.body_error {
            Some("upstream_body_error")
        } else if !self.ended {
            Some("client_closed")
        } else {
            None
        });
        let tls = x.conn.tls.as_ref();
        let (method, host, path) = x.request.take().unwrap_or_default();
        log.log(Record {
            time: x.time,
            kind: Kind::Http,
            listener: x.conn.listener.to_string(),
            client: Some(x.conn.client),
            sni: tls.and_then(|t| t.sni.clone()),
            tls_version: tls.and_then(|t| t.version),
            cipher: tls.and_then(|t| t.cipher),
            resumed: tls.map(|t| t.resumed),
            alpn: tls.and_then(|t| t.alpn.clone()),
            method: Some(method),
            host,
            path: Some(path),
            status: Some(self.status),
            bytes_in: x.body_in.as_ref().map_or(0, BodyMeter::bytes),
            bytes_out: self.bytes_out,
            route: x.route.as_deref().map(str::to_owned),
            pool: x.pool.as_deref().map(str::to_owned),
            backend: x.backend.as_deref().map(str::to_owned),
            retries: x.retries,
            tls_handshake: tls.map(|t| t.handshake),
            upstream_connect: x.connect,
            ttfb: x.ttfb,
            total: x.started.elapsed(),
            termination: termination.map(str::to_owned),
            decision: x.decision.take(),
        });
    }
}
