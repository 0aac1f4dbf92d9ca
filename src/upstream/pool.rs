//! A pool: its backends, its balancers (primaries and backups, with slow start), outlier
//! detection, sticky cookies and its connection pool to the backends.

use std::collections::HashMap;
use std::sync::Arc;

use http::HeaderValue;

use super::backend::Backend;
use super::balancer::PickContext;
use super::client::{BackendTls, UpstreamClient};
use super::decision::{self, Decision};
use super::outlier::{Detector, Outcome};
use super::persistence::StickyCookie;
use super::retry_budget::RetryBudget;
use super::select::Selector;
use crate::config::{self, BalancerKind, HashKey, UpstreamProtocol, UpstreamTimeouts};

#[derive(Debug)]
pub struct Pool {
    pub name: String,
    /// The name, shared cheaply with logs and metrics.
    pub label: Arc<str>,
    pub balancer_kind: BalancerKind,
    pub protocol: UpstreamProtocol,
    pub timeouts: UpstreamTimeouts,
    /// Requests (L4: connections) each backend is given at once; more wait in its queue.
    pub max_connections_per_backend: Option<usize>,
    pub backends: Vec<Arc<Backend>>,
    /// Active health checks, run by tasks the server starts.
    pub health: Option<Arc<config::HealthCheck>>,
    /// What the hashing balancers hash; `None` for the others.
    pub hash_key: Option<HashKey>,
    /// The balancer of the primaries and that of the backups, with slow start.
    selector: Selector,
    /// Passive health checks, when the pool has `[pool.outlier]`.
    outlier: Option<Detector>,
    /// One connection pool per backend, in the order of `backends`.
    clients: Vec<UpstreamClient>,
    /// Cookie persistence, when the pool has `[pool.sticky]`, with the settings that made
    /// it (a reload with the same settings keeps it, and so its key).
    pub sticky: Option<Arc<StickyCookie>>,
    sticky_spec: Option<config::StickyCookieSpec>,
    /// Backend indexes by name, for sticky cookies.
    by_name: HashMap<String, usize>,
    pub retry: config::RetryPolicy,
    pub retry_budget: RetryBudget,
    /// The PROXY protocol header sent first to a backend by the L4 listeners.
    pub proxy_protocol: Option<config::ProxyProtocol>,
}

/// The backend chosen for a request.
pub struct Picked<'a> {
    pub backend: &'a Arc<Backend>,
    pub client: &'a UpstreamClient,
    /// A `Set-Cookie` value for the response when the sticky choice is new or moved.
    pub set_cookie: Option<HeaderValue>,
    /// Whether a sticky cookie chose the backend.
    pub sticky_hit: bool,
}

impl Pool {
    /// Builds the pool; fails only when a sticky cookie key or the TLS client cannot be made.
    pub fn new(spec: &config::Pool) -> Result<Self, String> {
        Self::reloaded(spec, None)
    }

    /// Builds the pool, keeping from `previous` (the pool of the same name before a reload)
    /// every backend whose name, address and backup flag are unchanged: the same
    /// `Arc<Backend>` (with the new weight and state), so requests in flight, health,
    /// ejection, latency averages and counters carry over.
    pub fn reloaded(spec: &config::Pool, previous: Option<&Pool>) -> Result<Self, String> {
        let kept = |b: &config::Backend| {
            let old = previous?.backends.iter().find(|o| o.name == b.name)?;
            (old.address == b.address && old.backup == b.backup).then(|| old.clone())
        };
        let backends: Vec<Arc<Backend>> = spec
            .backends
            .iter()
            .map(|b| {
                if let Some(old) = kept(b) {
                    old.set_weight(b.weight);
                    old.set_state(b.state);
                    return old;
                }
                let backend = Backend::with_health(
                    b.name.clone(),
                    b.address,
                    b.weight,
                    spec.health.as_ref().is_none_or(|h| h.initially_healthy),
                )
                .with_backup(b.backup);
                backend.set_state(b.state);
                Arc::new(backend)
            })
            .collect();
        // Unchanged settings keep the cookie, so a generated key survives reloads and admin
        // API changes and sessions stay where they are.
        let kept_sticky = previous
            .filter(|p| p.sticky_spec.is_some() && p.sticky_spec == spec.sticky)
            .and_then(|p| p.sticky.clone());
        let sticky = match (&spec.sticky, kept_sticky) {
            (Some(_), Some(kept)) => Some(kept),
            (Some(c), None) => Some(Arc::new(StickyCookie::new(&spec.name, c)?)),
            (None, _) => None,
        };
        let tls = backend_tls(spec)?;
        let by_name = spec
            .backends
            .iter()
            .enumerate()
            .map(|(i, b)| (b.name.clone(), i))
            .collect();
        Ok(Self {
            name: spec.name.clone(),
            label: spec.name.as_str().into(),
            balancer_kind: spec.balancer,
            protocol: spec.protocol,
            timeouts: spec.timeouts,
            max_connections_per_backend: spec.max_connections_per_backend,
            hash_key: spec.hash.as_ref().map(|h| h.key.clone()),
            selector: Selector::new(
                &backends,
                spec.balancer,
                spec.hash.as_ref().and_then(|h| h.bounded_load),
                spec.slow_start,
            ),
            outlier: spec.outlier.map(Detector::new),
            clients: spec
                .backends
                .iter()
                .map(|b| UpstreamClient::new(spec, b.address, tls.as_ref()))
                .collect(),
            health: spec.health.clone(),
            backends,
            sticky,
            sticky_spec: spec.sticky.clone(),
            by_name,
            retry: spec.retry,
            proxy_protocol: spec.proxy_protocol,
            retry_budget: RetryBudget::new(spec.retry.budget_percent, spec.retry.budget_floor),
        })
    }

    /// The backend for the next request and its connections, or `None` when no backend is
    /// usable. `ctx` carries the request's hash for the hashing balancers.
    pub fn pick(&self, ctx: &PickContext) -> Option<(&Arc<Backend>, &UpstreamClient)> {
        self.pick_traced(ctx, None)
    }

    fn pick_traced(
        &self,
        ctx: &PickContext,
        trace: Option<&mut Decision>,
    ) -> Option<(&Arc<Backend>, &UpstreamClient)> {
        if let Some(outlier) = &self.outlier {
            outlier.sweep(&self.name, &self.backends);
        }
        let i = match trace {
            None => self.selector.pick(ctx)?,
            Some(d) => {
                d.compared(self, ctx.hash);
                self.selector.pick_traced(ctx, Some(&mut d.steps))?
            }
        };
        Some((self.backends.get(i)?, self.clients.get(i)?))
    }

    /// A backend for a retry: one the balancer picks (without the request's hash, so a
    /// hashing pool does not pick the same one again) that is not in `tried`, else any that
    /// can take the request. `tried` holds `Arc::as_ptr` addresses of backends.
    pub fn pick_retry(&self, tried: &[usize]) -> Option<(&Arc<Backend>, &UpstreamClient)> {
        let untried = |b: &Arc<Backend>| !tried.contains(&(Arc::as_ptr(b) as usize));
        let ctx = PickContext::default();
        for _ in 0..=self.backends.len() {
            match self.pick(&ctx) {
                Some((b, c)) if untried(b) => return Some((b, c)),
                Some(_) => continue,
                None => return None,
            }
        }
        let i = (0..self.backends.len())
            .find(|&i| untried(&self.backends[i]) && self.can_take(&self.backends[i]))?;
        Some((self.backends.get(i)?, self.clients.get(i)?))
    }

    /// Where `backend` is in `backends`.
    pub fn index_of(&self, backend: &Arc<Backend>) -> Option<usize> {
        self.backends.iter().position(|b| Arc::ptr_eq(b, backend))
    }

    /// Whether `backend` may take a new request or session now: usable (weight above 0,
    /// healthy, not ejected, enabled) and, for a backup, no primary usable.
    pub fn can_take(&self, backend: &Backend) -> bool {
        backend.is_usable() && (!backend.backup || !self.selector.primary_usable())
    }

    /// Whether a request of a sticky session on `backend` may go there: as `can_take`, but
    /// a draining backend keeps its sessions (only a disabled one loses them).
    pub fn keeps_session(&self, backend: &Backend) -> bool {
        backend.keeps_sessions() && (!backend.backup || !self.selector.primary_usable())
    }

    /// Counts the outcome of a request to `backend` for outlier detection (a no-op without
    /// `[pool.outlier]`).
    pub fn report(&self, backend: &Arc<Backend>, outcome: Outcome) {
        if let Some(outlier) = &self.outlier {
            outlier.report(&self.name, &self.backends, backend, outcome);
        }
    }

    /// The backend for a request that carried sticky cookie value `cookie`: the backend the
    /// cookie names while it keeps sessions (`keeps_session`); otherwise the balancer's
    /// choice, with a new cookie. `trace`, when given, records why.
    pub fn pick_for(
        &self,
        ctx: &PickContext,
        cookie: Option<&[u8]>,
        mut trace: Option<&mut Decision>,
    ) -> Option<Picked<'_>> {
        let Some(sticky) = &self.sticky else {
            let (backend, client) = self.pick_traced(ctx, trace.as_deref_mut())?;
            if let Some(d) = trace {
                d.chosen = Some(backend.name.clone());
            }
            return Some(Picked {
                backend,
                client,
                set_cookie: None,
                sticky_hit: false,
            });
        };
        let opened = cookie.map(|v| sticky.open_counted(v));
        let named = opened
            .clone()
            .flatten()
            .and_then(|name| self.by_name.get(&name).copied());
        let kept = named.filter(|&i| self.backends.get(i).is_some_and(|b| self.keeps_session(b)));
        if let Some(d) = trace.as_deref_mut() {
            d.sticky = Some(match (&opened, named, kept) {
                (None, _, _) => "miss(no cookie)".to_owned(),
                (Some(None), _, _) => "miss(cookie did not open)".to_owned(),
                (Some(Some(name)), None, _) => format!("miss(cookie names {name}, not in pool)"),
                (Some(Some(name)), Some(i), None) => {
                    let why = self
                        .backends
                        .get(i)
                        .and_then(|b| decision::unusable_reason(self, b))
                        .unwrap_or("unusable");
                    format!("moved(cookie names {name}, which is {why})")
                }
                (Some(Some(name)), Some(_), Some(_)) => format!("hit({name})"),
            });
        }
        if let Some(i) = kept {
            let (backend, client) = (self.backends.get(i)?, self.clients.get(i)?);
            backend.stats.session_hit();
            if let Some(d) = trace {
                d.chosen = Some(backend.name.clone());
            }
            return Some(Picked {
                backend,
                client,
                set_cookie: None,
                sticky_hit: true,
            });
        }
        let (backend, client) = self.pick_traced(ctx, trace.as_deref_mut())?;
        backend.stats.session_started();
        if let Some(d) = trace {
            d.chosen = Some(backend.name.clone());
        }
        let set_cookie = sticky.set_cookie(&backend.name);
        Some(Picked {
            backend,
            client,
            set_cookie,
            sticky_hit: false,
        })
    }
}

/// The pool's TLS client, when it has `[pool.tls]`; skipping verification is said loudly.
fn backend_tls(spec: &config::Pool) -> Result<Option<BackendTls>, String> {
    let Some(tls) = &spec.tls else {
        return Ok(None);
    };
    if matches!(tls.verify, config::UpstreamVerify::InsecureSkipVerify) {
        tracing::warn!(pool = %spec.name, "insecure_skip_verify = true: the certificates of this pool's backends are NOT verified; anyone on the path can read and change its traffic");
    }
    BackendTls::new(tls)
        .map(Some)
        .map_err(|e| format!("cannot build the TLS client of pool `{}`: {e}", spec.name))
}

#[cfg(test)]
#[path = "pool_tests.rs"]
mod tests;
