//! The TOML file format: serde structs that mirror the file, with spans kept for error messages.

use serde::Deserialize;
use toml::Spanned;

/// The whole file as written. Every table rejects keys it does not know.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub global: FileGlobal,
    #[serde(default)]
    pub timeouts: FileTimeouts,
    #[serde(default, rename = "certificate")]
    pub certificates: Vec<FileCertificate>,
    #[serde(default, rename = "listener")]
    pub listeners: Vec<FileListener>,
    #[serde(default, rename = "pool")]
    pub pools: Vec<FilePool>,
    pub admin: Option<FileAdmin>,
    pub access_log: Option<FileAccessLog>,
    #[serde(default)]
    pub limits: FileLimits,
}

/// `[limits]`: what one client may ask of terminus.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileLimits {
    pub max_header_bytes: Option<Spanned<i64>>,
    pub max_headers: Option<Spanned<i64>>,
    pub max_uri_bytes: Option<Spanned<i64>>,
    pub max_body_bytes: Option<Spanned<i64>>,
    pub max_connections: Option<Spanned<i64>>,
    pub max_connections_per_client: Option<Spanned<i64>>,
    pub h2_max_concurrent_streams: Option<Spanned<i64>>,
    pub h2_max_header_list_bytes: Option<Spanned<i64>>,
    pub h2_max_pending_reset_streams: Option<Spanned<i64>>,
    pub h2_max_local_error_reset_streams: Option<Spanned<i64>>,
    pub max_response_header_bytes: Option<Spanned<i64>>,
    pub max_response_headers: Option<Spanned<i64>>,
}

/// `[admin]`: the admin listener (metrics, API, dashboard).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileAdmin {
    pub bind: Option<Spanned<String>>,
    pub token: Option<Spanned<String>>,
    pub token_file: Option<Spanned<String>>,
}

/// `[access_log]`: one line per request and per L4 connection.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileAccessLog {
    pub path: Option<Spanned<String>>,
    pub format: Option<Spanned<String>>,
    pub buffer: Option<Spanned<i64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileGlobal {
    pub workers: Option<Spanned<i64>>,
    pub grace_period: Option<Spanned<String>>,
    pub watch: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileTimeouts {
    pub tls_handshake: Option<Spanned<String>>,
    pub client_header: Option<Spanned<String>>,
    pub client_body: Option<Spanned<String>>,
    pub client_send: Option<Spanned<String>>,
    pub keepalive: Option<Spanned<String>>,
    pub connect: Option<Spanned<String>>,
    pub response: Option<Spanned<String>>,
    pub upstream_idle: Option<Spanned<String>>,
    pub queue: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileCertificate {
    pub name: Spanned<String>,
    pub cert: Option<Spanned<String>>,
    pub key: Option<Spanned<String>>,
    pub self_signed: Option<Spanned<Vec<String>>>,
    pub ocsp: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileListener {
    pub name: Spanned<String>,
    pub bind: Spanned<String>,
    pub protocol: Option<Spanned<String>>,
    pub tls_policy: Option<Spanned<String>>,
    pub alpn: Option<Spanned<Vec<String>>>,
    pub certificates: Option<Vec<Spanned<String>>>,
    pub default_certificate: Option<Spanned<String>>,
    pub resumption: Option<Spanned<FileResumption>>,
    pub client_auth: Option<Spanned<FileClientAuth>>,
    pub accept_proxy_protocol: Option<Spanned<Vec<String>>>,
    pub explain: Option<bool>,
    #[serde(default, rename = "route")]
    pub routes: Vec<FileRoute>,
}

/// `[listener.resumption]`: session tickets, their keys, and the session-ID cache.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileResumption {
    pub tickets: Option<bool>,
    pub ticket_lifetime: Option<Spanned<String>>,
    pub rotate_every: Option<Spanned<String>>,
    pub ticket_key_file: Option<Spanned<String>>,
    pub session_cache_size: Option<Spanned<i64>>,
}

/// `[listener.client_auth]`: client certificates, verified against a CA bundle and CRLs.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileClientAuth {
    pub mode: Option<Spanned<String>>,
    pub ca: Option<Spanned<String>>,
    pub crl: Option<Spanned<Vec<String>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRoute {
    pub host: Option<Spanned<String>>,
    pub path_prefix: Option<Spanned<String>>,
    pub pool: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilePool {
    pub name: Spanned<String>,
    pub balancer: Option<Spanned<String>>,
    pub protocol: Option<Spanned<String>>,
    pub max_idle_per_backend: Option<Spanned<i64>>,
    pub max_connections_per_backend: Option<Spanned<i64>>,
    pub hash_key: Option<Spanned<String>>,
    pub hash_bounded_load: Option<Spanned<f64>>,
    #[serde(default)]
    pub timeouts: FilePoolTimeouts,
    pub health: Option<FileHealth>,
    pub outlier: Option<FileOutlier>,
    pub slow_start: Option<Spanned<String>>,
    pub sticky: Option<FileSticky>,
    pub tls: Option<FileUpstreamTls>,
    pub proxy_protocol: Option<Spanned<String>>,
    #[serde(default)]
    pub retry: FileRetry,
    #[serde(default, rename = "backend")]
    pub backends: Vec<FileBackend>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileHealth {
    pub check: Spanned<String>,
    pub interval: Option<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
    pub jitter: Option<Spanned<String>>,
    pub rise: Option<Spanned<i64>>,
    pub fall: Option<Spanned<i64>>,
    pub initial: Option<Spanned<String>>,
    pub method: Option<Spanned<String>>,
    pub path: Option<Spanned<String>>,
    pub host: Option<Spanned<String>>,
    pub expect_status: Option<Spanned<String>>,
    pub expect_body: Option<Spanned<String>>,
    pub server_name: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilePoolTimeouts {
    pub connect: Option<Spanned<String>>,
    pub response: Option<Spanned<String>>,
    pub upstream_idle: Option<Spanned<String>>,
    pub queue: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileBackend {
    pub name: Option<Spanned<String>>,
    pub address: Spanned<String>,
    pub weight: Option<Spanned<i64>>,
    pub backup: Option<Spanned<bool>>,
    pub drain: Option<Spanned<bool>>,
    pub disabled: Option<Spanned<bool>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileOutlier {
    pub consecutive_failures: Option<Spanned<i64>>,
    pub base_ejection: Option<Spanned<String>>,
    pub max_ejection: Option<Spanned<String>>,
    pub max_ejection_percent: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSticky {
    pub cookie: Option<Spanned<String>>,
    pub key: Option<Spanned<String>>,
    pub key_file: Option<Spanned<String>>,
    pub path: Option<Spanned<String>>,
    pub secure: Option<bool>,
    pub http_only: Option<bool>,
    pub same_site: Option<Spanned<String>>,
    pub max_age: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRetry {
    pub attempts: Option<Spanned<i64>>,
    pub budget_percent: Option<Spanned<i64>>,
    pub budget_floor: Option<Spanned<i64>>,
}

/// `[pool.tls]`: TLS to the pool's backends.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileUpstreamTls {
    pub ca: Option<Spanned<String>>,
    pub server_name: Option<Spanned<String>>,
    pub certificate: Option<Spanned<String>>,
    pub key: Option<Spanned<String>>,
    pub alpn: Option<Spanned<Vec<String>>>,
    pub insecure_skip_verify: Option<Spanned<bool>>,
}
