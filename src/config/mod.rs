//! Configuration: the TOML file (`file`), its validation (`validate`) into the runtime types
//! below, which cannot hold an invalid value, and the embedded default (`default`).

pub mod default;
mod error;
mod file;
#[cfg(test)]
mod tests;
mod validate;

use std::net::SocketAddr;
use std::time::Duration;

pub use error::{ConfigError, ConfigErrors};
pub use validate::{load_file, parse};

use crate::tls::{LoadedCert, TlsPolicy};

/// A whole, valid configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Worker threads of the runtime; `None` means one per core.
    pub workers: Option<usize>,
    /// How long in-flight requests may take to finish after SIGTERM/SIGINT.
    pub grace_period: Duration,
    pub timeouts: ClientTimeouts,
    pub certificates: Vec<Certificate>,
    pub listeners: Vec<Listener>,
    pub pools: Vec<Pool>,
}

/// Timeouts on the client side of a listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientTimeouts {
    pub tls_handshake: Duration,
    /// For a whole request header block; also how long an idle keep-alive connection stays open.
    pub client_header: Duration,
}

#[derive(Debug, Clone)]
pub struct Certificate {
    pub name: String,
    pub loaded: LoadedCert,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerProtocol {
    Https,
    Http,
}

#[derive(Debug, Clone)]
pub struct Listener {
    pub name: String,
    pub bind: SocketAddr,
    pub protocol: ListenerProtocol,
    /// Present exactly when `protocol` is `Https`.
    pub tls: Option<ListenerTls>,
    pub routes: Vec<Route>,
}

#[derive(Debug, Clone)]
pub struct ListenerTls {
    pub policy: TlsPolicy,
    /// ALPN protocol ids in preference order (`h2`, `http/1.1`).
    pub alpn: Vec<Vec<u8>>,
    /// Indexes into `Config::certificates`.
    pub certificates: Vec<usize>,
    /// Index into `certificates` above: served when SNI is missing or unknown.
    pub default_certificate: usize,
}

/// Which requests a route takes: a host (exact or `*.suffix`) and a path prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub host: Option<HostPattern>,
    pub path_prefix: String,
    /// Index into `Config::pools`.
    pub pool: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    /// A lower-case host name.
    Exact(String),
    /// `*.example.com`, stored as `.example.com`; matches one or more labels before it.
    Wildcard(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BalancerKind {
    RoundRobin,
    WeightedRoundRobin,
    LeastConnections,
    LeastResponseTime,
    Performance,
    Random,
}

impl BalancerKind {
    pub const ALL: [Self; 6] = [
        Self::RoundRobin,
        Self::WeightedRoundRobin,
        Self::LeastConnections,
        Self::LeastResponseTime,
        Self::Performance,
        Self::Random,
    ];
    pub const NAMES: &'static str = "\"round-robin\", \"weighted-round-robin\", \"least-connections\", \"least-response-time\", \"performance\" or \"random\"";

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "round-robin" => Self::RoundRobin,
            "weighted-round-robin" => Self::WeightedRoundRobin,
            "least-connections" => Self::LeastConnections,
            "least-response-time" => Self::LeastResponseTime,
            "performance" => Self::Performance,
            "random" => Self::Random,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::RoundRobin => "round-robin",
            Self::WeightedRoundRobin => "weighted-round-robin",
            Self::LeastConnections => "least-connections",
            Self::LeastResponseTime => "least-response-time",
            Self::Performance => "performance",
            Self::Random => "random",
        }
    }
}

/// The HTTP version spoken to a pool's backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamProtocol {
    Http1,
    Http2,
}

#[derive(Debug, Clone)]
pub struct Pool {
    pub name: String,
    pub balancer: BalancerKind,
    pub protocol: UpstreamProtocol,
    pub max_idle_per_backend: usize,
    pub timeouts: UpstreamTimeouts,
    pub backends: Vec<Backend>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpstreamTimeouts {
    /// To establish the TCP connection to a backend.
    pub connect: Duration,
    /// From sending the request to receiving the response headers.
    pub response: Duration,
    /// How long an idle pooled connection to a backend is kept.
    pub upstream_idle: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    pub name: String,
    pub address: SocketAddr,
    /// 0 takes no traffic (the backend stays configured); up to 1000.
    pub weight: u32,
}
