//! Building a config's complete runtime state (pools, routers, TLS configs) before anything
//! is bound or swapped, at start and on every reload.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;

use super::ServerError;
use crate::access_log::AccessLog;
use crate::config::{Config, ListenerProtocol};
use crate::http::Router;
use crate::listener::ListenerState;
use crate::metrics::Metrics;
use crate::tls;
use crate::upstream::Pool;

/// The complete state a config asks for, built before anything is bound or swapped.
pub(super) struct Built {
    pub pools: Vec<Arc<Pool>>,
    pub listeners: Vec<(SocketAddr, Arc<ListenerState>)>,
}

/// What every generation shares: the metric families and the access log.
pub(super) struct Shared<'a> {
    pub metrics: &'a Metrics,
    pub access_log: Option<Arc<AccessLog>>,
}

/// Pools (carrying over backends from `old_pools` by pool name), routers and TLS configs
/// (carrying over handshake counters, session caches and ticket keys by listener name from
/// `old_tls`) for `config`.
pub(super) fn build(
    config: &Config,
    old_pools: &[Arc<Pool>],
    old_tls: &HashMap<String, tls::ServerTls>,
    old_routes: &HashMap<String, Arc<ArcSwap<Router>>>,
    shared: &Shared<'_>,
) -> Result<Built, ServerError> {
    for c in &config.certificates {
        c.loaded.log_expiry(&c.name);
    }
    let mut pools = Vec::new();
    for p in &config.pools {
        let previous = old_pools.iter().find(|o| o.name == p.name);
        let pool =
            Pool::reloaded(p, previous.map(|o| &**o)).map_err(|reason| ServerError::Pool {
                name: p.name.clone(),
                reason,
            })?;
        pools.push(Arc::new(pool));
    }
    let mut listeners = Vec::new();
    for l in &config.listeners {
        let server_tls = match (&l.protocol, &l.tls) {
            (ListenerProtocol::Https | ListenerProtocol::Tcp, Some(t)) => {
                let certs: Vec<tls::LoadedCert> = t
                    .certificates
                    .iter()
                    .filter_map(|&i| config.certificates.get(i))
                    .map(|c| c.loaded.clone())
                    .collect();
                let server_tls = tls::ServerTls::with_resumption(
                    t.policy,
                    &t.alpn,
                    &certs,
                    t.default_certificate,
                    &l.name,
                    &t.resumption,
                    &t.client_auth,
                    old_tls.get(&l.name),
                )
                .map_err(|source| ServerError::Tls {
                    name: l.name.clone(),
                    source,
                })?;
                Some(server_tls)
            }
            _ => None,
        };
        let name: Arc<str> = l.name.as_str().into();
        let router = Router::new(&l.routes, &pools, &name, shared.metrics);
        let state = Arc::new(ListenerState {
            name,
            tls: server_tls,
            router: Arc::new(router),
            // The same cell across reloads; `Server::swap` stores the new router in it.
            routes: old_routes
                .get(&l.name)
                .cloned()
                .unwrap_or_else(|| Arc::new(ArcSwap::from_pointee(Router::default()))),
            tls_handshake_timeout: config.timeouts.tls_handshake,
            http: crate::http::ConnSettings {
                header_timeout: config.timeouts.client_header,
                send_timeout: config.timeouts.client_send,
                keepalive: config.timeouts.keepalive,
                limits: config.limits,
            },
            client_body_timeout: config.timeouts.client_body,
            protocol: l.protocol,
            accept_proxy_protocol: l.accept_proxy_protocol.clone(),
            metrics: shared.metrics.clone(),
            access_log: shared.access_log.clone(),
            explain: l.explain,
            admin_token: config.admin.as_ref().and_then(|a| a.token.clone()),
        });
        listeners.push((l.bind, state));
    }
    Ok(Built { pools, listeners })
}
