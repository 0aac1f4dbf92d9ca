//! A pool: its backends, its balancer and its connection pool to the backends.

use std::sync::Arc;

use super::backend::Backend;
use super::balancer::{self, Balancer, PickContext};
use super::client::UpstreamClient;
use crate::config::{self, BalancerKind, HashKey, UpstreamProtocol, UpstreamTimeouts};

#[derive(Debug)]
pub struct Pool {
    pub name: String,
    pub balancer_kind: BalancerKind,
    pub protocol: UpstreamProtocol,
    pub timeouts: UpstreamTimeouts,
    pub backends: Vec<Arc<Backend>>,
    /// Active health checks, run by tasks the server starts.
    pub health: Option<Arc<config::HealthCheck>>,
    /// What the hashing balancers hash; `None` for the others.
    pub hash_key: Option<HashKey>,
    balancer: Box<dyn Balancer>,
    /// One connection pool per backend, in the order of `backends`.
    clients: Vec<UpstreamClient>,
}

impl Pool {
    pub fn new(spec: &config::Pool) -> Self {
        let backends: Vec<Arc<Backend>> = spec
            .backends
            .iter()
            .map(|b| {
                Arc::new(Backend::with_health(
                    b.name.clone(),
                    b.address,
                    b.weight,
                    spec.health.as_ref().is_none_or(|h| h.initially_healthy),
                ))
            })
            .collect();
        Self {
            name: spec.name.clone(),
            balancer_kind: spec.balancer,
            protocol: spec.protocol,
            timeouts: spec.timeouts,
            hash_key: spec.hash.as_ref().map(|h| h.key.clone()),
            balancer: balancer::build(
                spec.balancer,
                &backends,
                spec.hash.as_ref().and_then(|h| h.bounded_load),
            ),
            clients: spec
                .backends
                .iter()
                .map(|b| UpstreamClient::new(spec, b.address))
                .collect(),
            health: spec.health.clone(),
            backends,
        }
    }

    /// The backend for the next request and its connections, or `None` when no backend is
    /// usable. `ctx` carries the request's hash for the hashing balancers.
    pub fn pick(&self, ctx: &PickContext) -> Option<(&Arc<Backend>, &UpstreamClient)> {
        let i = self.balancer.pick(&self.backends, ctx)?;
        Some((self.backends.get(i)?, self.clients.get(i)?))
    }
}
