//! `GET /metrics`: the data path's metric families plus the live state read at each scrape
//! (backends, pools, reloads, certificates, the access log), in the Prometheus text format.

use std::time::SystemTime;

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::Full;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use super::{error, Reply};
use crate::upstream::backend_stats::CLASSES;
use crate::Server;

pub(super) fn scrape(server: &Server) -> Reply {
    let mut registry = Registry::default();
    server.metrics().register(&mut registry);
    registry.register_collector(Box::new(Live(server.clone())));
    let mut text = String::new();
    if let Err(e) = prometheus_client::encoding::prometheus_text::encode(&mut text, &registry) {
        return error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string());
    }
    let mut r = Response::new(Full::new(Bytes::from(text)));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(prometheus_client::encoding::prometheus_text::CONTENT_TYPE),
    );
    r
}

/// The state read at scrape time.
struct Live(Server);

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Live")
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BackendLabels {
    pool: String,
    backend: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BackendCodeLabels {
    pool: String,
    backend: String,
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BackendKindLabels {
    pool: String,
    backend: String,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BackendStateLabels {
    pool: String,
    backend: String,
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    pool: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CertLabels {
    certificate: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabels {
    version: &'static str,
}

/// Writes one metric family of `kind` with one sample per `(labels, value)`.
fn family<L: EncodeLabelSet, V>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    kind: MetricType,
    samples: impl IntoIterator<Item = (L, V)>,
) -> Result<(), std::fmt::Error>
where
    V: Into<f64>,
{
    let mut metric = encoder.encode_descriptor(name, help, unit, kind)?;
    for (labels, value) in samples {
        let value: f64 = value.into();
        let encoder = metric.encode_family(&labels)?;
        match kind {
            MetricType::Counter => ConstCounter::new(value).encode(encoder)?,
            _ => ConstGauge::new(value).encode(encoder)?,
        }
    }
    Ok(())
}

impl Collector for Live {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let server = &self.0;
        let pools = server.pools();
        let backends: Vec<_> = pools
            .iter()
            .flat_map(|p| p.backends.iter().map(move |b| (p, b)))
            .collect();
        let labels = |p: &crate::upstream::Pool, b: &crate::upstream::Backend| BackendLabels {
            pool: p.name.clone(),
            backend: b.name.clone(),
        };
        use MetricType::{Counter, Gauge, Histogram};
        family(
            &mut e,
            "terminus_backend_up",
            "1 when active health checks (or their absence) find the backend healthy",
            None,
            Gauge,
            backends
                .iter()
                .map(|(p, b)| (labels(p, b), f64::from(u8::from(b.health().is_healthy())))),
        )?;
        family(
            &mut e,
            "terminus_backend_usable",
            "1 when the backend may take new requests now (healthy, not ejected, enabled, weight above 0)",
            None,
            Gauge,
            backends
                .iter()
                .map(|(p, b)| (labels(p, b), f64::from(u8::from(p.can_take(b))))),
        )?;
        family(
            &mut e,
            "terminus_backend_ejected",
            "1 while outlier detection keeps the backend out",
            None,
            Gauge,
            backends
                .iter()
                .map(|(p, b)| (labels(p, b), f64::from(u8::from(b.ejection().is_ejected())))),
        )?;
        family(
            &mut e,
            "terminus_backend_ejections",
            "Times outlier detection ejected the backend",
            None,
            Counter,
            backends
                .iter()
                .map(|(p, b)| (labels(p, b), f64::from(b.ejection().ejections()))),
        )?;
        family(
            &mut e,
            "terminus_backend_in_flight",
            "Requests sent to the backend whose response has not ended",
            None,
            Gauge,
            backends
                .iter()
                .map(|(p, b)| (labels(p, b), b.in_flight() as f64)),
        )?;
        family(
            &mut e,
            "terminus_backend_queued",
            "Requests waiting for a slot on the backend (max_connections_per_backend)",
            None,
            Gauge,
            backends
                .iter()
                .map(|(p, b)| (labels(p, b), b.queued() as f64)),
        )?;
        family(
            &mut e,
            "terminus_backend_queue_timeouts",
            "Requests that waited timeouts.queue for a slot on the backend and got 503",
            None,
            Counter,
            backends
                .iter()
                .map(|(p, b)| (labels(p, b), b.queue_timeouts() as f64)),
        )?;
        family(
            &mut e,
            "terminus_backend_weight",
            "The backend's weight",
            None,
            Gauge,
            backends
                .iter()
                .map(|(p, b)| (labels(p, b), f64::from(b.weight()))),
        )?;
        family(
            &mut e,
            "terminus_backend_state",
            "1 for the backend's operator state (enabled, draining or disabled)",
            None,
            Gauge,
            backends.iter().map(|(p, b)| {
                (
                    BackendStateLabels {
                        pool: p.name.clone(),
                        backend: b.name.clone(),
                        state: b.state().name(),
                    },
                    1.0,
                )
            }),
        )?;
        family(
            &mut e,
            "terminus_backend_responses",
            "Attempts sent to the backend, by the class of its answer (failed: no answer)",
            None,
            Counter,
            backends.iter().flat_map(|(p, b)| {
                let counts = b.stats.responses();
                CLASSES.iter().zip(counts).map(move |(code, v)| {
                    (
                        BackendCodeLabels {
                            pool: p.name.clone(),
                            backend: b.name.clone(),
                            code,
                        },
                        v as f64,
                    )
                })
            }),
        )?;
        {
            let mut metric = e.encode_descriptor(
                "terminus_upstream_duration",
                "Time from sending a request to the backend to its response header",
                Some(&Unit::Seconds),
                Histogram,
            )?;
            for (p, b) in &backends {
                let l = labels(p, b);
                b.stats.latency.encode(metric.encode_family(&l)?)?;
            }
        }
        family(
            &mut e,
            "terminus_backend_retries",
            "Failed attempts on the backend that were retried on another",
            None,
            Counter,
            backends
                .iter()
                .map(|(p, b)| (labels(p, b), b.stats.retries().0 as f64)),
        )?;
        family(
            &mut e,
            "terminus_backend_retry_budget_refusals",
            "Failed attempts on the backend not retried because the pool's retry budget was spent",
            None,
            Counter,
            backends
                .iter()
                .map(|(p, b)| (labels(p, b), b.stats.retries().1 as f64)),
        )?;
        family(
            &mut e,
            "terminus_backend_sessions",
            "Sticky sessions started on the backend (new) and requests a cookie brought back (hit)",
            None,
            Counter,
            backends.iter().flat_map(|(p, b)| {
                let (new, hits) = b.stats.sessions();
                [("new", new), ("hit", hits)]
                    .into_iter()
                    .map(move |(kind, v)| {
                        (
                            BackendKindLabels {
                                pool: p.name.clone(),
                                backend: b.name.clone(),
                                kind,
                            },
                            v as f64,
                        )
                    })
            }),
        )?;
        family(
            &mut e,
            "terminus_sticky_cookies_rejected",
            "Sticky cookies that did not open (forged, from another key or pool, corrupted)",
            None,
            Counter,
            pools.iter().filter_map(|p| {
                let s = p.sticky.as_ref()?;
                Some((
                    PoolLabels {
                        pool: p.name.clone(),
                    },
                    s.rejected() as f64,
                ))
            }),
        )?;
        let (ok, failed) = server.reload_counts();
        family(
            &mut e,
            "terminus_config_reloads",
            "Config reloads (SIGHUP, file watch, admin API), by result",
            None,
            Counter,
            [("ok", ok), ("failed", failed)]
                .into_iter()
                .map(|(result, v)| (ResultLabels { result }, v as f64)),
        )?;
        family(
            &mut e,
            "terminus_config_generation",
            "The config generation serving new connections (1 at start, +1 per applied reload or change)",
            None,
            Gauge,
            [(
                VersionLabels {
                    version: env!("CARGO_PKG_VERSION"),
                },
                server.generation() as f64,
            )],
        )?;
        let now = SystemTime::now();
        let config = server.config();
        family(
            &mut e,
            "terminus_certificate_expiry_days",
            "Whole days until the certificate's notAfter (negative once expired)",
            None,
            Gauge,
            config.certificates.iter().map(|c| {
                (
                    CertLabels {
                        certificate: c.name.clone(),
                    },
                    crate::tls::certs::days_left(c.loaded.not_after, now) as f64,
                )
            }),
        )?;
        if let Some(log) = server.access_log() {
            family(
                &mut e,
                "terminus_access_log_lines",
                "Access log lines, by result (written, or dropped because the writer fell behind)",
                None,
                Counter,
                [("written", log.written()), ("dropped", log.dropped())]
                    .into_iter()
                    .map(|(result, v)| (ResultLabels { result }, v as f64)),
            )?;
        }
        Ok(())
    }
}
