//! A pool: its backends, its balancer and its connection pool to the backends.

use std::sync::Arc;

use super::backend::Backend;
use super::balancer::{self, Balancer};
use super::client::UpstreamClient;
use crate::config::{self, BalancerKind, UpstreamProtocol, UpstreamTimeouts};

#[derive(Debug)]
pub struct Pool {
    pub name: String,
    pub balancer_kind: BalancerKind,
    pub protocol: UpstreamProtocol,
    pub timeouts: UpstreamTimeouts,
    pub backends: Vec<Arc<Backend>>,
    balancer: Box<dyn Balancer>,
    /// One connection pool per backend, in the order of `backends`.
    clients: Vec<UpstreamClient>,
}

impl Pool {
    pub fn new(spec: &config::Pool) -> Self {
        let backends: Vec<Arc<Backend>> = spec
            .backends
            .iter()
            .map(|b| Arc::new(Backend::new(b.name.clone(), b.address, b.weight)))
            .collect();
        Self {
            name: spec.name.clone(),
            balancer_kind: spec.balancer,
            protocol: spec.protocol,
            timeouts: spec.timeouts,
            balancer: balancer::build(spec.balancer, &backends),
            clients: spec
                .backends
                .iter()
                .map(|b| UpstreamClient::new(spec, b.address))
                .collect(),
            backends,
        }
    }

    /// The backend for the next request and its connections, or `None` when no backend is
    /// usable.
    pub fn pick(&self) -> Option<(&Arc<Backend>, &UpstreamClient)> {
        let i = self.balancer.pick(&self.backends)?;
        Some((self.backends.get(i)?, self.clients.get(i)?))
    }
}
