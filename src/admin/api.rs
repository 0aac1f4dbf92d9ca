//! The admin API's read side: JSON views of the pools, their backends and the server, built
//! from read-only snapshots of the live state.

use std::time::{SystemTime, UNIX_EPOCH};

use http::StatusCode;
use serde::Serialize;

use super::history::History;
use super::{error, json, Reply};
use crate::upstream::backend_stats::CLASSES;
use crate::upstream::{Backend, Pool};
use crate::Server;

#[derive(Serialize)]
struct PoolsView {
    generation: u64,
    version: &'static str,
    pools: Vec<PoolView>,
}

#[derive(Serialize)]
struct PoolView {
    name: String,
    balancer: &'static str,
    protocol: &'static str,
    sticky: bool,
    hash_key: Option<String>,
    sticky_rejected: u64,
    backends: Vec<BackendView>,
}

#[derive(Serialize)]
pub(super) struct BackendView {
    name: String,
    address: String,
    weight: u32,
    backup: bool,
    state: &'static str,
    health: &'static str,
    ejected: bool,
    ejections: u32,
    usable: bool,
    in_flight: usize,
    queued: usize,
    queue_timeouts: u64,
    ewma_ms: f64,
    peak_ewma_ms: f64,
    requests: u64,
    responses: serde_json::Map<String, serde_json::Value>,
    sessions: SessionsView,
    retries: RetriesView,
    health_checks: Vec<CheckView>,
}

#[derive(Serialize)]
struct SessionsView {
    new: u64,
    hits: u64,
}

#[derive(Serialize)]
struct RetriesView {
    retried_elsewhere: u64,
    budget_refused: u64,
}

#[derive(Serialize)]
struct CheckView {
    at_ms: u64,
    passed: bool,
    took_ms: f64,
    detail: String,
}

pub(super) fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

pub(super) fn backend_view(pool: &Pool, b: &Backend) -> BackendView {
    let responses = CLASSES
        .iter()
        .zip(b.stats.responses())
        .map(|(c, n)| ((*c).to_owned(), serde_json::Value::from(n)))
        .collect();
    let (new, hits) = b.stats.sessions();
    let (retried_elsewhere, budget_refused) = b.stats.retries();
    BackendView {
        name: b.name.clone(),
        address: b.address.to_string(),
        weight: b.weight(),
        backup: b.backup,
        state: b.state().name(),
        health: if b.health().is_healthy() {
            "healthy"
        } else {
            "unhealthy"
        },
        ejected: b.ejection().is_ejected(),
        ejections: b.ejection().ejections(),
        usable: pool.can_take(b),
        in_flight: b.in_flight(),
        queued: b.queued(),
        queue_timeouts: b.queue_timeouts(),
        ewma_ms: round3(b.ewma_ns() / 1e6),
        peak_ewma_ms: round3(b.peak_ewma_ns() / 1e6),
        requests: b.stats.requests(),
        responses,
        sessions: SessionsView { new, hits },
        retries: RetriesView {
            retried_elsewhere,
            budget_refused,
        },
        health_checks: b
            .stats
            .checks()
            .into_iter()
            .map(|c| CheckView {
                at_ms: unix_ms(c.at),
                passed: c.passed,
                took_ms: round3(c.took.as_secs_f64() * 1e3),
                detail: c.detail,
            })
            .collect(),
    }
}

fn pool_view(p: &Pool) -> PoolView {
    PoolView {
        name: p.name.clone(),
        balancer: p.balancer_kind.name(),
        protocol: match p.protocol {
            crate::config::UpstreamProtocol::Http1 => "http1",
            crate::config::UpstreamProtocol::Http2 => "h2",
        },
        sticky: p.sticky.is_some(),
        hash_key: p.hash_key.as_ref().map(crate::upstream::decision::key_name),
        sticky_rejected: p.sticky.as_ref().map_or(0, |s| s.rejected()),
        backends: p.backends.iter().map(|b| backend_view(p, b)).collect(),
    }
}

#[derive(Serialize)]
struct StatusView {
    version: &'static str,
    generation: u64,
    started_ms: u64,
    uptime_s: u64,
    reloads_ok: u64,
    reloads_failed: u64,
    config_file: Option<String>,
    listeners: Vec<ListenerView>,
    access_log: Option<AccessLogView>,
}

#[derive(Serialize)]
struct ListenerView {
    name: String,
    address: String,
}

#[derive(Serialize)]
struct AccessLogView {
    written: u64,
    dropped: u64,
}

/// `GET /api/v1/...` with `rest` the path after `v1`.
pub(super) fn get(server: &Server, history: &History, rest: &[&str]) -> Reply {
    let pools = server.pools();
    let find = |name: &str| pools.iter().find(|p| p.name == name);
    match rest {
        ["pools"] => json(
            StatusCode::OK,
            &PoolsView {
                generation: server.generation(),
                version: env!("CARGO_PKG_VERSION"),
                pools: pools.iter().map(|p| pool_view(p)).collect(),
            },
        ),
        ["pools", name] => match find(name) {
            Some(p) => json(StatusCode::OK, &pool_view(p)),
            None => error(StatusCode::NOT_FOUND, &format!("no pool `{name}`")),
        },
        ["pools", name, "backends"] => match find(name) {
            Some(p) => json(StatusCode::OK, &pool_view(p).backends),
            None => error(StatusCode::NOT_FOUND, &format!("no pool `{name}`")),
        },
        ["pools", name, "backends", backend] => {
            let Some(p) = find(name) else {
                return error(StatusCode::NOT_FOUND, &format!("no pool `{name}`"));
            };
            match p.backends.iter().find(|b| b.name == *backend) {
                Some(b) => json(StatusCode::OK, &backend_view(p, b)),
                None => error(
                    StatusCode::NOT_FOUND,
                    &format!("pool `{name}` has no backend `{backend}`"),
                ),
            }
        }
        ["history"] => json(StatusCode::OK, &history.view()),
        ["status"] => {
            let (reloads_ok, reloads_failed) = server.reload_counts();
            let started = server.started();
            json(
                StatusCode::OK,
                &StatusView {
                    version: env!("CARGO_PKG_VERSION"),
                    generation: server.generation(),
                    started_ms: unix_ms(started),
                    uptime_s: started.elapsed().map_or(0, |d| d.as_secs()),
                    reloads_ok,
                    reloads_failed,
                    config_file: server.source().map(|p| p.display().to_string()),
                    listeners: server
                        .local_addrs()
                        .into_iter()
                        .map(|(name, a)| ListenerView {
                            name,
                            address: a.to_string(),
                        })
                        .collect(),
                    access_log: server.access_log().map(|l| AccessLogView {
                        written: l.written(),
                        dropped: l.dropped(),
                    }),
                },
            )
        }
        _ => error(StatusCode::NOT_FOUND, "no such API path"),
    }
}
