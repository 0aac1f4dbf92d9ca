//! The running server: builds the runtime state from a valid config, binds every listener
//! before serving any, and shuts down gracefully.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tracing::{info, warn};

use crate::config::{Config, ListenerProtocol};
use crate::http::Router;
use crate::listener::{self, ListenerState};
use crate::shutdown::Shutdown;
use crate::tls;
use crate::upstream::{health, Pool};

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("listener `{name}`: cannot bind {addr}: {source}")]
    Bind {
        name: String,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("pool `{name}`: {reason}")]
    Pool { name: String, reason: String },
    #[error("listener `{name}`: TLS setup failed: {source}")]
    Tls { name: String, source: rustls::Error },
}

/// Listeners bound and ready to serve.
pub struct Server {
    listeners: Vec<(TcpListener, Arc<ListenerState>)>,
    pools: Vec<Arc<Pool>>,
    grace_period: Duration,
}

impl Server {
    /// Builds pools, routers and TLS configs, then binds every listener. Nothing is served
    /// until `run`, and any failure here leaves nothing bound.
    pub async fn bind(config: &Config) -> Result<Self, ServerError> {
        for c in &config.certificates {
            c.loaded.log_expiry(&c.name);
        }
        let mut pools = Vec::new();
        for p in &config.pools {
            let pool = Pool::new(p).map_err(|reason| ServerError::Pool {
                name: p.name.clone(),
                reason,
            })?;
            pools.push(Arc::new(pool));
        }
        let mut states = Vec::new();
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
                    )
                    .map_err(|source| ServerError::Tls {
                        name: l.name.clone(),
                        source,
                    })?;
                    Some(server_tls)
                }
                _ => None,
            };
            states.push(Arc::new(ListenerState {
                name: l.name.clone(),
                tls: server_tls,
                router: Arc::new(Router::new(&l.routes, &pools)),
                tls_handshake_timeout: config.timeouts.tls_handshake,
                client_header_timeout: config.timeouts.client_header,
                protocol: l.protocol,
                accept_proxy_protocol: l.accept_proxy_protocol.clone(),
            }));
        }
        let mut listeners = Vec::new();
        for (l, state) in config.listeners.iter().zip(states) {
            let tcp = TcpListener::bind(l.bind)
                .await
                .map_err(|source| ServerError::Bind {
                    name: l.name.clone(),
                    addr: l.bind,
                    source,
                })?;
            listeners.push((tcp, state));
        }
        Ok(Self {
            listeners,
            pools,
            grace_period: config.grace_period,
        })
    }

    /// The pools, with their backends' live state (shared with the running server).
    pub fn pools(&self) -> &[Arc<Pool>] {
        &self.pools
    }

    /// Each TLS listener's name and its handshake counters (shared with the running server).
    pub fn tls_stats(&self) -> Vec<(String, Arc<tls::HandshakeStats>)> {
        self.listeners
            .iter()
            .filter_map(|(_, s)| Some((s.name.clone(), s.tls.as_ref()?.stats().clone())))
            .collect()
    }

    /// Each listener's name and the address it is bound to (useful with port 0).
    pub fn local_addrs(&self) -> Vec<(String, SocketAddr)> {
        self.listeners
            .iter()
            .filter_map(|(tcp, s)| Some((s.name.clone(), tcp.local_addr().ok()?)))
            .collect()
    }

    /// Serves until `shutdown` completes, then stops accepting, asks open connections to
    /// finish their in-flight requests, and returns when they have or the grace period ends.
    pub async fn run(self, signal: impl Future<Output = ()>) {
        let shutdown = Shutdown::new();
        for pool in &self.pools {
            if let Some(check) = &pool.health {
                health::spawn(&pool.name, &pool.backends, check, &shutdown.watch());
            }
        }
        for (tcp, state) in self.listeners {
            tokio::spawn(listener::accept_loop(tcp, state, shutdown.watch()));
        }
        signal.await;
        info!(grace_period = ?self.grace_period, open = shutdown.open(), "shutting down: no new connections; letting in-flight requests finish");
        // Accept loops stop at the signal; connections finish their requests and close.
        match tokio::time::timeout(self.grace_period, shutdown.drain()).await {
            Ok(()) => info!("all connections finished"),
            Err(_) => {
                warn!(grace_period = ?self.grace_period, "grace period over; closing remaining connections")
            }
        }
    }
}
