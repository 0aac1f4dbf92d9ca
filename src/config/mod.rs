//! Configuration: the TOML file (`file`), its validation (`validate`) into the runtime types
//! below, which cannot hold an invalid value, and the embedded default (`default`).

pub mod default;
mod error;
mod file;
pub mod summary;
#[cfg(test)]
mod tests;
mod validate;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use error::{ConfigError, ConfigErrors};
pub use validate::{load_file, parse, valid_name, NAME_HINT};

use crate::tls::{LoadedCert, TlsPolicy};

/// A whole, valid configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Worker threads of the runtime; `None` means one per core.
    pub workers: Option<usize>,
    /// How long in-flight requests may take to finish after SIGTERM/SIGINT.
    pub grace_period: Duration,
    /// `[global] watch`: how often to poll `watched_files` for a change that triggers a
    /// reload; `None` (the default) means reloads happen on SIGHUP only.
    pub watch: Option<Duration>,
    /// The config file and every file it references (certificates, keys, CA bundles, CRLs,
    /// OCSP responses, ticket and cookie key files), as the file watch polls them.
    pub watched_files: Vec<PathBuf>,
    pub timeouts: ClientTimeouts,
    pub limits: Limits,
    pub certificates: Vec<Certificate>,
    pub listeners: Vec<Listener>,
    pub pools: Vec<Pool>,
    /// `[admin]`: the admin listener; `None` when the config has no such table.
    pub admin: Option<AdminSpec>,
    /// `[access_log]`; `None`: no access log.
    pub access_log: Option<AccessLogSpec>,
}

/// The admin listener: where it binds and the bearer token it requires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminSpec {
    pub bind: SocketAddr,
    /// Required on every request when set; always set when `bind` is not loopback.
    pub token: Option<AdminToken>,
}

/// A secret that never shows in logs or debug output.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminToken(pub String);

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(..)")
    }
}

/// Where and how access log lines are written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLogSpec {
    pub target: LogTarget,
    pub format: LogFormat,
    /// Lines that may wait for the writer; more are dropped (and counted), never waited for.
    pub buffer: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogTarget {
    Stdout,
    File(PathBuf),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

/// Timeouts on the client side of a listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientTimeouts {
    pub tls_handshake: Duration,
    /// For a whole request header block; also how long an idle keep-alive connection stays open.
    pub client_header: Duration,
    /// Longest wait for the next piece of a request body (408 after it).
    pub client_body: Duration,
    /// Longest a write to the client may stay blocked (a client that stops reading); then the
    /// connection closes.
    pub client_send: Duration,
    /// How long a connection with no request in progress stays open (HTTP/1.1 and HTTP/2);
    /// at most `client_header`, whose deadline also covers HTTP/1.1's idle wait.
    pub keepalive: Duration,
}

/// `[limits]`: what one client may ask of terminus, and what a backend may answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// A request's header block, request line included (431 beyond).
    pub max_header_bytes: usize,
    /// Header fields in a request (431 beyond).
    pub max_headers: usize,
    /// The request target (414 beyond).
    pub max_uri_bytes: usize,
    /// A request body (413 beyond); `None`: no limit.
    pub max_body_bytes: Option<u64>,
    /// Open connections per listener; more wait in the kernel's accept queue.
    pub max_connections: usize,
    /// Open connections per client address and listener; more are closed at once.
    pub max_connections_per_client: Option<usize>,
    pub h2_max_concurrent_streams: u32,
    /// Decoded (HPACK) size of one header list, CONTINUATION frames included.
    pub h2_max_header_list_bytes: u32,
    /// Streams a client may reset before terminus has served them (rapid reset); beyond it,
    /// GOAWAY (ENHANCE_YOUR_CALM) and the connection closes.
    pub h2_max_pending_reset_streams: usize,
    /// Streams terminus may reset because of the client's protocol errors, per connection.
    pub h2_max_local_error_reset_streams: usize,
    /// A backend's response header block and field count (502 beyond).
    pub max_response_header_bytes: usize,
    pub max_response_headers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_header_bytes: 64 * 1024,
            max_headers: 100,
            max_uri_bytes: 8 * 1024,
            max_body_bytes: None,
            max_connections: 20_000,
            max_connections_per_client: None,
            h2_max_concurrent_streams: 100,
            h2_max_header_list_bytes: 64 * 1024,
            h2_max_pending_reset_streams: 20,
            h2_max_local_error_reset_streams: 1024,
            max_response_header_bytes: 64 * 1024,
            max_response_headers: 100,
        }
    }
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
    /// Terminates TLS, then copies the plain bytes to a backend of the listener's one pool.
    Tcp,
    /// Reads the ClientHello's SNI without decrypting and forwards the TLS stream as is.
    TlsPassthrough,
}

/// The PROXY protocol version a pool sends to its backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyProtocol {
    V1,
    V2,
}

/// An IP network such as `10.0.0.0/8`: the address with its host bits cleared, and the prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    pub addr: std::net::IpAddr,
    pub prefix: u8,
}

impl IpNet {
    /// Parses `a.b.c.d/n`, `x::y/n`, or a bare address (a /32 or /128).
    pub fn parse(s: &str) -> Option<Self> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a.parse().ok()?, Some(p.parse::<u8>().ok()?)),
            None => (s.parse().ok()?, None),
        };
        let max = if matches!(addr, std::net::IpAddr::V4(_)) {
            32
        } else {
            128
        };
        let prefix = prefix.unwrap_or(max);
        if prefix > max {
            return None;
        }
        Some(Self {
            addr: mask(addr, prefix),
            prefix,
        })
    }

    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        let ip = match ip {
            std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, std::net::IpAddr::V4),
            v4 => v4,
        };
        self.addr.is_ipv4() == ip.is_ipv4() && mask(ip, self.prefix) == self.addr
    }
}

fn mask(ip: std::net::IpAddr, prefix: u8) -> std::net::IpAddr {
    use std::net::IpAddr;
    match ip {
        IpAddr::V4(a) => {
            let m = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4((u32::from(a) & m).into())
        }
        IpAddr::V6(a) => {
            let m = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6((u128::from(a) & m).into())
        }
    }
}

#[derive(Debug, Clone)]
pub struct Listener {
    pub name: String,
    pub bind: SocketAddr,
    pub protocol: ListenerProtocol,
    /// Present exactly when `protocol` is `Https` or `Tcp`.
    pub tls: Option<ListenerTls>,
    pub routes: Vec<Route>,
    /// Source networks whose connections must start with a PROXY protocol header (v1 or v2);
    /// empty means no header is read. Connections from other sources are closed.
    pub accept_proxy_protocol: Vec<IpNet>,
    /// Whether every response carries `x-terminus-decision` (without it, only requests that
    /// carry the admin token get one).
    pub explain: bool,
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
    /// Session tickets, their keys and the session-ID cache (`[listener.resumption]`).
    pub resumption: crate::tls::Resumption,
    /// Client certificates (`[listener.client_auth]`).
    pub client_auth: crate::tls::ClientAuth,
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
    Maglev,
    RingHash,
}

impl BalancerKind {
    pub const ALL: [Self; 8] = [
        Self::RoundRobin,
        Self::WeightedRoundRobin,
        Self::LeastConnections,
        Self::LeastResponseTime,
        Self::Performance,
        Self::Random,
        Self::Maglev,
        Self::RingHash,
    ];
    pub const NAMES: &'static str = "\"round-robin\", \"weighted-round-robin\", \"least-connections\", \"least-response-time\", \"performance\", \"random\", \"maglev\" or \"ring-hash\"";

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "round-robin" => Self::RoundRobin,
            "weighted-round-robin" => Self::WeightedRoundRobin,
            "least-connections" => Self::LeastConnections,
            "least-response-time" => Self::LeastResponseTime,
            "performance" => Self::Performance,
            "random" => Self::Random,
            "maglev" => Self::Maglev,
            "ring-hash" => Self::RingHash,
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
            Self::Maglev => "maglev",
            Self::RingHash => "ring-hash",
        }
    }

    /// Whether the balancer picks by a hash of the request (and so takes `hash_key`).
    pub fn is_hashing(self) -> bool {
        matches!(self, Self::Maglev | Self::RingHash)
    }
}

/// What a hashing balancer (`maglev`, `ring-hash`) hashes, and how loaded a backend may get.
#[derive(Debug, Clone, PartialEq)]
pub struct HashPolicy {
    pub key: HashKey,
    /// Consistent hashing with bounded loads: a backend takes a request only while its
    /// requests in flight stay within this factor (> 1) of its weighted share.
    pub bounded_load: Option<f64>,
}

/// The part of a request whose hash picks the backend. A request without it (a missing or
/// empty header, cookie or query parameter) goes to a random backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashKey {
    /// The client's IP address (port excluded).
    SourceIp,
    /// The first value of a request header.
    Header(http::HeaderName),
    /// The value of a cookie, by its case-sensitive name.
    Cookie(String),
    /// The value of a query parameter, as written (not percent-decoded).
    Query(String),
    /// The request's path, without the query.
    Path,
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
    /// Requests (so HTTP/1 connections) a backend is given at once; more wait in its queue
    /// for up to `timeouts.queue`. `None`: no bound.
    pub max_connections_per_backend: Option<usize>,
    pub timeouts: UpstreamTimeouts,
    pub backends: Vec<Backend>,
    /// How requests are keyed: present exactly when the balancer hashes (`is_hashing`).
    pub hash: Option<HashPolicy>,
    /// Active health checks; `None` means every backend counts as healthy.
    pub health: Option<std::sync::Arc<HealthCheck>>,
    /// Passive health checks; `None` means answers never eject a backend.
    pub outlier: Option<OutlierDetection>,
    /// How long a backend that comes back takes to ramp up to its full share; `None`: at once.
    pub slow_start: Option<Duration>,
    /// Cookie persistence; `None` means every request is balanced afresh.
    pub sticky: Option<StickyCookieSpec>,
    pub retry: RetryPolicy,
    /// TLS to the backends (`[pool.tls]`); `None` means plain TCP.
    pub tls: Option<UpstreamTls>,
    /// A PROXY protocol header sent first on each connection (tcp and tls-passthrough
    /// listeners); `None`: none.
    pub proxy_protocol: Option<ProxyProtocol>,
    /// `[limits]`' bounds on a backend's response header block (502 beyond).
    pub max_response_header_bytes: usize,
    pub max_response_headers: usize,
}

/// How a pool speaks TLS to its backends.
#[derive(Debug, Clone)]
pub struct UpstreamTls {
    pub verify: UpstreamVerify,
    /// Sent as SNI and verified; `None` means each backend's IP address (checked against
    /// the certificate's IP SANs, and no SNI sent).
    pub server_name: Option<rustls_pki_types::ServerName<'static>>,
    /// Presented when the backend asks for a client certificate.
    pub client_cert: Option<LoadedCert>,
    /// ALPN protocol ids offered, agreeing with the pool's `protocol`.
    pub alpn: Vec<Vec<u8>>,
}

/// How a backend's certificate is checked.
#[derive(Clone)]
pub enum UpstreamVerify {
    /// Against these roots (a CA bundle, or the system's).
    Roots(std::sync::Arc<rustls::RootCertStore>),
    /// Not at all (`insecure_skip_verify = true`).
    InsecureSkipVerify,
}

impl std::fmt::Debug for UpstreamVerify {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Roots(r) => write!(f, "Roots({} certificates)", r.len()),
            Self::InsecureSkipVerify => f.write_str("InsecureSkipVerify"),
        }
    }
}

/// How a pool's backends are checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    pub probe: HealthProbe,
    pub interval: Duration,
    pub timeout: Duration,
    /// Each wait between checks is `interval` plus or minus up to this much.
    pub jitter: Duration,
    /// Consecutive passes that make an unhealthy backend healthy.
    pub rise: u32,
    /// Consecutive failures that make a healthy backend unhealthy.
    pub fall: u32,
    /// Whether backends count as healthy before their first check.
    pub initially_healthy: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthProbe {
    /// A TCP connection is accepted.
    Tcp,
    /// An HTTP/1.1 request (over TLS for `https`) passes.
    Http(HttpProbe),
    /// A TLS handshake completes (the certificate is not verified). Without a server name
    /// no SNI is sent.
    Tls { server_name: Option<String> },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpstreamTimeouts {
    /// To establish the TCP connection to a backend.
    pub connect: Duration,
    /// From sending the request to receiving the response headers.
    pub response: Duration,
    /// How long an idle pooled connection to a backend is kept.
    pub upstream_idle: Duration,
    /// How long a request waits for a backend at `max_connections_per_backend` (then 503).
    pub queue: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    pub name: String,
    pub address: SocketAddr,
    /// 0 takes no traffic (the backend stays configured); up to 1000.
    pub weight: u32,
    /// Takes requests only while no primary (non-backup) backend of the pool is usable.
    pub backup: bool,
    /// Enabled, draining (`drain = true`) or disabled (`disabled = true`).
    pub state: BackendState,
}

/// What an operator allows a backend to take (health and ejection are separate).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BackendState {
    /// Takes new requests and sessions.
    #[default]
    Enabled,
    /// Takes no new sessions: only requests whose sticky cookie names it; those in flight
    /// finish (HAProxy's `drain`).
    Draining,
    /// Takes nothing new at all; those in flight finish (HAProxy's `maint`).
    Disabled,
}

impl BackendState {
    pub fn name(self) -> &'static str {
        match self {
            Self::Enabled => "enabled",
            Self::Draining => "draining",
            Self::Disabled => "disabled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Enabled, Self::Draining, Self::Disabled]
            .into_iter()
            .find(|v| v.name() == s)
    }
}

/// Outlier detection: answers that eject a backend for a while.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutlierDetection {
    /// Consecutive failures (connect failures, resets, timeouts, 5xx) that eject a backend.
    pub consecutive_failures: u32,
    /// The n-th ejection in a row lasts n times this, up to `max_ejection`.
    pub base_ejection: Duration,
    /// The longest ejection; at least `base_ejection`.
    pub max_ejection: Duration,
    /// The most backends of the pool ejected at once, in percent (at least one may be).
    pub max_ejection_percent: u32,
}

/// A pool's sticky cookie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StickyCookieSpec {
    pub name: String,
    /// The AES-256-GCM key; `None` means one generated at start.
    pub key: Option<[u8; 32]>,
    pub path: String,
    pub secure: bool,
    pub http_only: bool,
    pub same_site: SameSite,
    /// `None` makes a session cookie.
    pub max_age: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SameSite {
    Lax,
    Strict,
    None,
}

/// When a failed request is sent to another backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries per request after the first attempt (0 turns retries off).
    pub attempts: u32,
    /// Retries may add this share (percent) of the pool's requests of the last 10 s ...
    pub budget_percent: u32,
    /// ... plus this many, whatever the traffic.
    pub budget_floor: u32,
}

/// An HTTP health check: the request sent and the answer that passes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpProbe {
    pub method: http::Method,
    pub path: String,
    pub host: Option<String>,
    /// Statuses that pass.
    pub status: std::ops::RangeInclusive<u16>,
    /// Text the first 64 KiB of the body must contain.
    pub body: Option<String>,
    /// Over TLS (`https`), sending `server_name` as SNI if set; the certificate is not verified.
    pub tls: bool,
    pub server_name: Option<String>,
}

/// Whether `given` is the admin token, compared in constant time so the answer's timing
/// tells nothing about how much of a guess was right.
pub fn token_matches(token: &AdminToken, given: &[u8]) -> bool {
    let expected = token.0.as_bytes();
    if expected.len() != given.len() {
        return false;
    }
    expected
        .iter()
        .zip(given)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
        == 0
}
