//! The readable account of a valid config that `terminus check` prints: listeners and their
//! routes, pools with balancer, persistence and health, their backends, `[admin]` and
//! `[access_log]`. Secrets (sticky cookie keys, ticket keys, the admin token) are never shown.

use std::time::Duration;

use super::{
    AccessLogSpec, AdminSpec, Backend, BackendState, Config, HashKey, HashPolicy, HealthCheck,
    HealthProbe, HostPattern, Listener, ListenerProtocol, ListenerTls, LogFormat, LogTarget,
    OutlierDetection, Pool, ProxyProtocol, RetryPolicy, Route, SameSite, StickyCookieSpec,
    UpstreamProtocol, UpstreamTls, UpstreamVerify,
};
use crate::tls::{ClientAuth, ClientRoots, TlsPolicy};

/// Width of the label column of a listener's or pool's detail lines.
const LABEL: usize = 13;

/// The config as text, in config order (routes in the order they are tried), one block per
/// listener and per pool.
pub fn summary(config: &Config) -> String {
    let mut out = Out(String::new());
    global(&mut out, config);
    for l in &config.listeners {
        out.0.push('\n');
        listener(&mut out, config, l);
    }
    for (i, p) in config.pools.iter().enumerate() {
        out.0.push('\n');
        pool(&mut out, config, i, p);
    }
    if config.admin.is_some() || config.access_log.is_some() {
        out.0.push('\n');
    }
    if let Some(a) = &config.admin {
        out.line(&admin(a));
    }
    if let Some(a) = &config.access_log {
        out.line(&access_log(a));
    }
    out.0
}

struct Out(String);

impl Out {
    fn line(&mut self, text: &str) {
        self.0.push_str(text);
        self.0.push('\n');
    }

    /// An indented `label  value` line under a listener or pool.
    fn field(&mut self, label: &str, value: &str) {
        self.line(&format!("  {label:<LABEL$}{value}"));
    }
}

fn global(out: &mut Out, c: &Config) {
    let workers = c
        .workers
        .map_or("a worker per core".to_string(), |n| format!("{n} workers"));
    let reload = match c.watch {
        Some(every) => format!(
            "reload on SIGHUP or a file change (polled every {})",
            dur(every)
        ),
        None => "reload on SIGHUP".to_string(),
    };
    out.line(&format!(
        "global: {workers}, grace period {}, {reload}; client timeouts: TLS handshake {}, header {}",
        dur(c.grace_period),
        dur(c.timeouts.tls_handshake),
        dur(c.timeouts.client_header)
    ));
}

fn listener(out: &mut Out, c: &Config, l: &Listener) {
    let mut head = format!("listener {} {} ({}", l.name, l.bind, protocol(l.protocol));
    if let Some(tls) = &l.tls {
        let policy = match tls.policy {
            TlsPolicy::Modern => "modern",
            TlsPolicy::Intermediate => "intermediate",
        };
        head.push_str(&format!(", TLS {policy}, ALPN {}", alpn(&tls.alpn)));
    }
    out.line(&format!("{head})"));
    if let Some(tls) = &l.tls {
        listener_tls(out, c, tls);
    }
    if !l.accept_proxy_protocol.is_empty() {
        let nets: Vec<String> = l
            .accept_proxy_protocol
            .iter()
            .map(|n| format!("{}/{}", n.addr, n.prefix))
            .collect();
        out.field("PROXY in", &format!("required from {}", nets.join(", ")));
    }
    if l.explain {
        out.field("explain", "x-terminus-decision on every response");
    }
    routes(out, c, l);
}

fn listener_tls(out: &mut Out, c: &Config, tls: &ListenerTls) {
    for (i, &cert) in tls.certificates.iter().enumerate() {
        let Some(cert) = c.certificates.get(cert) else {
            continue;
        };
        let default = if i == tls.default_certificate {
            " (default)"
        } else {
            ""
        };
        let names = cert.loaded.dns_names.join(", ");
        out.field("certificate", &format!("{}{default}: {names}", cert.name));
    }
    let r = &tls.resumption;
    let mut resumption = if r.tickets {
        format!(
            "tickets for {}, new key every {}",
            dur(r.ticket_lifetime),
            dur(r.rotate_every)
        )
    } else {
        "no tickets".to_string()
    };
    if let Some(file) = &r.key_file {
        resumption.push_str(&format!(" (keys from {})", file.path.display()));
    }
    match r.session_cache_size {
        0 => resumption.push_str(", no session cache"),
        n => resumption.push_str(&format!(", session cache {n}")),
    }
    out.field("resumption", &resumption);
    let auth = match &tls.client_auth {
        ClientAuth::None => "none".to_string(),
        ClientAuth::Optional(r) => format!("optional ({})", roots(r)),
        ClientAuth::Required(r) => format!("required ({})", roots(r)),
    };
    out.field("client auth", &auth);
}

/// The routes of `l` in the order they are tried, columns aligned.
fn routes(out: &mut Out, c: &Config, l: &Listener) {
    let mut sorted: Vec<&Route> = l.routes.iter().collect();
    sorted.sort_by_key(|r| specificity(r));
    let host = |r: &Route| match &r.host {
        Some(HostPattern::Exact(h)) => h.clone(),
        Some(HostPattern::Wildcard(suffix)) => format!("*{suffix}"),
        None => "*".to_string(),
    };
    let with_path = matches!(l.protocol, ListenerProtocol::Https | ListenerProtocol::Http);
    let host_width = sorted.iter().map(|r| host(r).len()).max().unwrap_or(0);
    let path_width = sorted
        .iter()
        .map(|r| r.path_prefix.len())
        .max()
        .unwrap_or(0);
    for r in sorted {
        let pool = c.pools.get(r.pool).map_or("?", |p| p.name.as_str());
        let path = if with_path {
            format!(" {:<path_width$}", r.path_prefix)
        } else {
            String::new()
        };
        out.line(&format!(
            "  route {:<host_width$}{path} → pool {pool}",
            host(r)
        ));
    }
}

/// The order in which `http::route::Router` tries routes: exact hosts, then wildcards (longer
/// first), then any host; within a host, longer path prefixes first.
fn specificity(r: &Route) -> (u8, usize, usize) {
    let (class, len) = match &r.host {
        Some(HostPattern::Exact(h)) => (0, h.len()),
        Some(HostPattern::Wildcard(s)) => (1, s.len()),
        None => (2, 0),
    };
    (class, usize::MAX - len, usize::MAX - r.path_prefix.len())
}

fn pool(out: &mut Out, c: &Config, index: usize, p: &Pool) {
    let mut by: Vec<&Listener> = Vec::new();
    for l in &c.listeners {
        if l.routes.iter().any(|r| r.pool == index) {
            by.push(l);
        }
    }
    let routed = if by.is_empty() {
        "not routed by any listener".to_string()
    } else {
        let names: Vec<&str> = by.iter().map(|l| l.name.as_str()).collect();
        format!("routed by {}", names.join(", "))
    };
    // Pools of tcp and tls-passthrough listeners carry bytes, not HTTP requests.
    let l4 = !by.is_empty()
        && by.iter().all(|l| {
            matches!(
                l.protocol,
                ListenerProtocol::Tcp | ListenerProtocol::TlsPassthrough
            )
        });
    let protocol = match p.protocol {
        _ if l4 => "tcp",
        UpstreamProtocol::Http1 => "http1",
        UpstreamProtocol::Http2 => "h2",
    };
    out.line(&format!(
        "pool {}: {}, {protocol}, {} ({routed})",
        p.name,
        p.balancer.name(),
        count(p.backends.len(), "backend")
    ));
    pool_details(out, p, l4);
    backends(out, &p.backends);
}

fn pool_details(out: &mut Out, p: &Pool, l4: bool) {
    if let Some(h) = &p.hash {
        out.field("hash", &hash(h));
    }
    if let Some(s) = &p.sticky {
        out.field("sticky", &sticky(s));
    }
    if let Some(h) = &p.health {
        out.field("health", &health(h));
    }
    if let Some(o) = &p.outlier {
        out.field("outlier", &outlier(o));
    }
    out.field("retry", &retry(&p.retry, l4));
    if let Some(s) = p.slow_start {
        out.field("slow start", &dur(s));
    }
    if let Some(t) = &p.tls {
        out.field("tls", &upstream_tls(t));
    }
    if let Some(v) = p.proxy_protocol {
        let v = match v {
            ProxyProtocol::V1 => "v1",
            ProxyProtocol::V2 => "v2",
        };
        out.field(
            "PROXY out",
            &format!("{v} header on each backend connection"),
        );
    }
    let t = &p.timeouts;
    let timeouts = if l4 {
        format!("connect {}", dur(t.connect))
    } else {
        format!(
            "connect {}, response {}, upstream idle {}; {} idle connections per backend",
            dur(t.connect),
            dur(t.response),
            dur(t.upstream_idle),
            p.max_idle_per_backend
        )
    };
    out.field("timeouts", &timeouts);
    let cap = match p.max_connections_per_backend {
        Some(n) => format!(
            "{n} at once per backend, more wait up to {} (then 503)",
            dur(t.queue)
        ),
        None => "unbounded per backend".to_string(),
    };
    out.field(if l4 { "connections" } else { "requests" }, &cap);
}

fn hash(h: &HashPolicy) -> String {
    let key = match &h.key {
        HashKey::SourceIp => "source-ip".to_string(),
        HashKey::Header(name) => format!("header:{}", name.as_str()),
        HashKey::Cookie(name) => format!("cookie:{name}"),
        HashKey::Query(name) => format!("query:{name}"),
        HashKey::Path => "path".to_string(),
    };
    match h.bounded_load {
        Some(c) => format!("key {key}, bounded load {c}"),
        None => format!("key {key}, unbounded load"),
    }
}

/// The cookie as a `Set-Cookie` would show it; only whether a key is configured, never the key.
fn sticky(s: &StickyCookieSpec) -> String {
    let mut text = format!("cookie {}; Path={}", s.name, s.path);
    if s.secure {
        text.push_str("; Secure");
    }
    if s.http_only {
        text.push_str("; HttpOnly");
    }
    text.push_str(match s.same_site {
        SameSite::Lax => "; SameSite=Lax",
        SameSite::Strict => "; SameSite=Strict",
        SameSite::None => "; SameSite=None",
    });
    match s.max_age {
        Some(age) => text.push_str(&format!("; Max-Age={} ({})", age.as_secs(), dur(age))),
        None => text.push_str(" (session cookie)"),
    }
    text.push_str(match s.key {
        Some(_) => ", key configured",
        None => ", key generated at start",
    });
    text
}

fn health(h: &HealthCheck) -> String {
    let probe = match &h.probe {
        HealthProbe::Tcp => "tcp".to_string(),
        HealthProbe::Tls { server_name } => format!("tls{}", sni(server_name.as_deref())),
        HealthProbe::Http(p) => {
            let scheme = if p.tls { "https" } else { "http" };
            let (lo, hi) = (p.status.start(), p.status.end());
            let status = if lo == hi {
                lo.to_string()
            } else {
                format!("{lo}-{hi}")
            };
            let mut text = format!("{scheme} {} {} expects {status}", p.method, p.path);
            if let Some(body) = &p.body {
                text.push_str(&format!(" and {body:?}"));
            }
            if let Some(host) = &p.host {
                text.push_str(&format!(", Host {host}"));
            }
            text + &sni(p.server_name.as_deref())
        }
    };
    let start = if h.initially_healthy {
        "healthy"
    } else {
        "unhealthy"
    };
    format!(
        "{probe}, every {} ±{}, timeout {}, rise {}, fall {}, starts {start}",
        dur(h.interval),
        dur(h.jitter),
        dur(h.timeout),
        h.rise,
        h.fall
    )
}

fn sni(name: Option<&str>) -> String {
    name.map_or(String::new(), |n| format!(", SNI {n}"))
}

fn outlier(o: &OutlierDetection) -> String {
    format!(
        "{} consecutive failures eject for {} × n (at most {}), at most {}% of backends",
        o.consecutive_failures,
        dur(o.base_ejection),
        dur(o.max_ejection),
        o.max_ejection_percent
    )
}

fn retry(r: &RetryPolicy, l4: bool) -> String {
    if r.attempts == 0 {
        return "off".to_string();
    }
    let per = if l4 { "connection" } else { "request" };
    format!(
        "up to {} retries per {per}, budget {}% of {per}s + {} per 10s",
        r.attempts, r.budget_percent, r.budget_floor
    )
}

fn upstream_tls(t: &UpstreamTls) -> String {
    let verify = match &t.verify {
        UpstreamVerify::Roots(roots) => format!("verified against {}", count(roots.len(), "CA")),
        UpstreamVerify::InsecureSkipVerify => "NOT verified (insecure_skip_verify)".to_string(),
    };
    let name = match &t.server_name {
        Some(n) => format!("server name {}", n.to_str()),
        None => "server name: each backend's IP".to_string(),
    };
    let mut text = format!("{verify}, {name}, ALPN {}", alpn(&t.alpn));
    if t.client_cert.is_some() {
        text.push_str(", client certificate");
    }
    text
}

/// One line per backend, name and address columns aligned; the address column only where a
/// name differs from the address it was written as.
fn backends(out: &mut Out, backends: &[Backend]) {
    let named = backends.iter().any(|b| b.name != b.address.to_string());
    let name_width = backends.iter().map(|b| b.name.len()).max().unwrap_or(0);
    let addr_width = backends
        .iter()
        .map(|b| b.address.to_string().len())
        .max()
        .unwrap_or(0);
    for b in backends {
        let mut text = format!("  backend {:<name_width$}", b.name);
        if named {
            text.push_str(&format!("  {:<addr_width$}", b.address.to_string()));
        }
        text.push_str(&format!("  weight={}", b.weight));
        if b.weight == 0 {
            text.push_str(" (no new requests)");
        }
        if b.backup {
            text.push_str("  backup");
        }
        if b.state != BackendState::Enabled {
            text.push_str(&format!("  {}", b.state.name()));
        }
        out.line(&text);
    }
}

fn admin(a: &AdminSpec) -> String {
    let token = if a.token.is_some() {
        "required"
    } else {
        "none"
    };
    format!("[admin] {} (token: {token})", a.bind)
}

fn access_log(a: &AccessLogSpec) -> String {
    let target = match &a.target {
        LogTarget::Stdout => "stdout".to_string(),
        LogTarget::File(path) => path.display().to_string(),
    };
    let format = match a.format {
        LogFormat::Json => "json",
        LogFormat::Text => "text",
    };
    format!("[access_log] {target}, {format}, buffer {} lines", a.buffer)
}

fn protocol(p: ListenerProtocol) -> &'static str {
    match p {
        ListenerProtocol::Https => "https",
        ListenerProtocol::Http => "http",
        ListenerProtocol::Tcp => "tcp",
        ListenerProtocol::TlsPassthrough => "tls-passthrough",
    }
}

fn alpn(ids: &[Vec<u8>]) -> String {
    if ids.is_empty() {
        return "none".to_string();
    }
    let ids: Vec<String> = ids
        .iter()
        .map(|id| String::from_utf8_lossy(id).into_owned())
        .collect();
    ids.join(",")
}

fn roots(r: &ClientRoots) -> String {
    format!(
        "{}, {}",
        count(r.roots.len(), "CA"),
        count(r.crls.len(), "CRL")
    )
}

/// `1 backend`, `2 backends`.
fn count(n: usize, noun: &str) -> String {
    let s = if n == 1 { "" } else { "s" };
    format!("{n} {noun}{s}")
}

fn dur(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::summary;

    const TEXT: &str = r#"[[certificate]]
name = "site"
self_signed = ["site.test", "*.site.test"]

[[listener]]
name = "web"
bind = "127.0.0.1:0"

  [[listener.route]]
  pool = "app"

  [[listener.route]]
  host = "*.site.test"
  pool = "app"

  [[listener.route]]
  host = "api.site.test"
  path_prefix = "/v1/"
  pool = "app"

[[pool]]
name = "app"

  [pool.sticky]
  key = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="

  [[pool.backend]]
  address = "127.0.0.1:9001"

[[pool]]
name = "spare"

  [[pool.backend]]
  name = "spare-1"
  address = "127.0.0.1:9002"
  drain = true

[admin]
token = "an-admin-token-of-enough-length"
"#;

    fn text() -> String {
        let config = super::super::parse(Path::new("t.toml"), TEXT).unwrap();
        summary(&config)
    }

    #[test]
    fn routes_are_listed_in_the_order_they_are_tried() {
        let text = text();
        let routes: Vec<&str> = text.lines().filter(|l| l.starts_with("  route ")).collect();
        assert_eq!(
            routes,
            [
                "  route api.site.test /v1/ → pool app",
                "  route *.site.test   /    → pool app",
                "  route *             /    → pool app",
            ]
        );
    }

    #[test]
    fn unrouted_pools_are_flagged_and_backend_flags_shown() {
        let text = text();
        assert!(
            text.contains(
                "\npool spare: round-robin, http1, 1 backend (not routed by any listener)\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("\n  backend spare-1  127.0.0.1:9002  weight=1  draining\n"),
            "{text}"
        );
        assert!(
            text.contains("\n  backend 127.0.0.1:9001  weight=1\n"),
            "{text}"
        );
    }

    #[test]
    fn secrets_are_never_shown() {
        let text = text();
        assert!(text.contains("key configured"), "{text}");
        assert!(
            text.contains("[admin] 127.0.0.1:9090 (token: required)"),
            "{text}"
        );
        assert!(!text.contains("MDEyMzQ1"), "{text}");
        assert!(!text.contains("an-admin-token"), "{text}");
    }
}
