//! Why a request went to its backend: the sticky cookie's verdict, the backends passed over
//! and why, what the balancer compared, and the retries. Built only for requests that asked
//! for an explanation, so the common path pays nothing.

use std::fmt::Write;

use super::backend::Backend;
use super::pool::Pool;
use crate::config::{BackendState, BalancerKind, HashKey};

#[derive(Debug, Default, Clone)]
pub struct Decision {
    pub algorithm: &'static str,
    /// The sticky cookie's verdict; `None` without `[pool.sticky]`.
    pub sticky: Option<String>,
    /// `name:reason` for every backend that could not take a new request.
    pub skipped: Vec<String>,
    /// What the balancer and its surroundings did, in order.
    pub steps: Vec<String>,
    pub chosen: Option<String>,
    /// One entry per failed attempt that moved the request (or ended it).
    pub attempts: Vec<String>,
}

/// Why `b` cannot take a new request now, or `None` when it can.
pub fn unusable_reason(pool: &Pool, b: &Backend) -> Option<&'static str> {
    if b.weight() == 0 {
        return Some("weight-0");
    }
    if !b.health().is_healthy() {
        return Some("unhealthy");
    }
    if b.ejection().is_ejected() {
        return Some("ejected");
    }
    match b.state() {
        BackendState::Draining => return Some("draining"),
        BackendState::Disabled => return Some("disabled"),
        BackendState::Enabled => {}
    }
    (b.backup && !pool.can_take(b)).then_some("backup-standby")
}

impl Decision {
    /// A decision for `pool`, with the backends that cannot take new requests listed.
    pub fn start(pool: &Pool) -> Self {
        let skipped = pool
            .backends
            .iter()
            .filter_map(|b| Some(format!("{}:{}", b.name, unusable_reason(pool, b)?)))
            .collect();
        Self {
            algorithm: pool.balancer_kind.name(),
            skipped,
            ..Self::default()
        }
    }

    /// Notes what the balancer compared that the backends' state shows: the loads of
    /// `least-connections`, the averages of `least-response-time`, the hash of the hashing
    /// balancers. `hash` is the request's key hash, if any.
    pub fn compared(&mut self, pool: &Pool, hash: Option<u64>) {
        let usable = || pool.backends.iter().filter(|b| b.is_usable());
        let step = match pool.balancer_kind {
            BalancerKind::LeastConnections => {
                let loads: Vec<String> = usable()
                    .map(|b| format!("{}={}/w{}", b.name, b.in_flight(), b.weight()))
                    .collect();
                format!("fewest in flight per weight among {}", loads.join(" "))
            }
            BalancerKind::LeastResponseTime => {
                let avgs: Vec<String> = usable()
                    .map(|b| format!("{}={:.3}ms/{}", b.name, b.ewma_ns() / 1e6, b.in_flight()))
                    .collect();
                format!("lowest EWMA (ms/in flight) among {}", avgs.join(" "))
            }
            BalancerKind::Maglev | BalancerKind::RingHash => match (hash, &pool.hash_key) {
                (Some(h), Some(key)) => format!("hash of {} = {h:016x}", key_name(key)),
                (None, Some(key)) => format!("request has no {}: picked at random", key_name(key)),
                _ => return,
            },
            BalancerKind::RoundRobin | BalancerKind::WeightedRoundRobin => {
                "next in turn".to_owned()
            }
            BalancerKind::Random => "weighted random draw".to_owned(),
            BalancerKind::Performance => return,
        };
        self.steps.push(step);
    }

    /// The header value: `key=value` pairs separated by `; `. Backend and pool names are
    /// plain tokens (the config allows nothing else), and every free-text part is built here.
    pub fn render(&self, listener: &str, route: &str, pool: &str) -> String {
        let mut s = String::with_capacity(256);
        let _ = write!(
            s,
            "listener={listener}; route={route}; pool={pool}; algorithm={}",
            if self.algorithm.is_empty() {
                "none"
            } else {
                self.algorithm
            }
        );
        if let Some(sticky) = &self.sticky {
            let _ = write!(s, "; sticky={sticky}");
        }
        let skipped = if self.skipped.is_empty() {
            "none".to_owned()
        } else {
            self.skipped.join(",")
        };
        let _ = write!(s, "; skipped={skipped}");
        if !self.steps.is_empty() {
            let _ = write!(s, "; why={}", self.steps.join(" | "));
        }
        if !self.attempts.is_empty() {
            let _ = write!(s, "; retries={}", self.attempts.join(" | "));
        }
        let _ = write!(s, "; chosen={}", self.chosen.as_deref().unwrap_or("none"));
        // Header values must be visible ASCII; anything else becomes '?'.
        s.chars()
            .map(|c| {
                if c == ' ' || c.is_ascii_graphic() {
                    c
                } else {
                    '?'
                }
            })
            .collect()
    }
}

/// How logs, the API and decisions name a hash key (`header:x-user`, `source-ip`).
pub fn key_name(key: &HashKey) -> String {
    match key {
        HashKey::SourceIp => "source-ip".to_owned(),
        HashKey::Header(h) => format!("header:{h}"),
        HashKey::Cookie(c) => format!("cookie:{c}"),
        HashKey::Query(q) => format!("query:{q}"),
        HashKey::Path => "path".to_owned(),
    }
}
