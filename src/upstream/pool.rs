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
    pub client: UpstreamClient,
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
            backends,
            client: UpstreamClient::new(spec),
        }
    }

    /// The backend for the next request, or `None` when no backend is usable.
    pub fn pick(&self) -> Option<&Arc<Backend>> {
        self.balancer
            .pick(&self.backends)
            .and_then(|i| self.backends.get(i))
    }
}
