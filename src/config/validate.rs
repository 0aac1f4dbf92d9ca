//! Validation: turns the file structs into runtime types, collecting every error with its
//! position, so terminus never starts on a half-valid config.

use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use super::error::{toml_error, ConfigError, ConfigErrors, Locator};
use super::file::*;
use super::*;
use crate::tls;

const DURATION_HINT: &str = "expected a duration such as \"500ms\", \"5s\" or \"2m\"";
const NAME_HINT: &str = "expected 1 to 64 letters, digits, '-', '_' or '.'";

/// Reads and validates a config file.
pub fn load_file(path: &Path) -> Result<Config, ConfigErrors> {
    let source = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            file: path.to_path_buf(),
            line: 1,
            column: 1,
            message: format!("cannot read the config file: {e}"),
            hint: "expected a readable TOML file".into(),
        }])
    })?;
    parse(path, &source)
}

/// Validates config text; `path` names the file in errors and anchors relative paths.
pub fn parse(path: &Path, source: &str) -> Result<Config, ConfigErrors> {
    let loc = Locator::new(path, source);
    let file: FileConfig =
        toml::from_str(source).map_err(|e| ConfigErrors(vec![toml_error(&loc, &e)]))?;
    let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut v = Validator {
        loc,
        base_dir,
        errors: Vec::new(),
    };
    let config = v.config(&file);
    if v.errors.is_empty() {
        if let Some(config) = config {
            return Ok(config);
        }
    }
    v.errors.sort_by_key(|e| (e.line, e.column));
    v.errors.dedup();
    Err(ConfigErrors(v.errors))
}

/// The hint for a name that refers to nothing: the names there are, or the table to add.
fn one_of(names: &[&str], table: &str) -> String {
    if names.is_empty() {
        format!("expected the name of a {table} table, but none is defined")
    } else {
        format!("expected one of: {}", names.join(", "))
    }
}

struct Validator<'a> {
    loc: Locator<'a>,
    base_dir: PathBuf,
    errors: Vec<ConfigError>,
}

impl Validator<'_> {
    fn err(&mut self, span: Range<usize>, message: impl Into<String>, hint: impl Into<String>) {
        let e = self.loc.error(span, message, hint);
        self.errors.push(e);
    }

    fn config(&mut self, f: &FileConfig) -> Option<Config> {
        let workers = f
            .global
            .workers
            .as_ref()
            .and_then(|w| self.int_in(w, 1, 1024, "workers"))
            .map(|w| w as usize);
        let grace_period = self.duration(&f.global.grace_period, Duration::from_secs(30));
        let t = &f.timeouts;
        let timeouts = ClientTimeouts {
            tls_handshake: self.duration(&t.tls_handshake, Duration::from_secs(10)),
            client_header: self.duration(&t.client_header, Duration::from_secs(30)),
        };
        let upstream = UpstreamTimeouts {
            connect: self.duration(&t.connect, Duration::from_secs(5)),
            response: self.duration(&t.response, Duration::from_secs(60)),
            upstream_idle: self.duration(&t.upstream_idle, Duration::from_secs(90)),
        };
        let certificates = self.certificates(&f.certificates);
        let pools = self.pools(&f.pools, upstream);
        let pool_names: Vec<&str> = f.pools.iter().map(|p| p.name.get_ref().as_str()).collect();
        let cert_names: Vec<&str> = f
            .certificates
            .iter()
            .map(|c| c.name.get_ref().as_str())
            .collect();
        let listeners = self.listeners(&f.listeners, &cert_names, &pool_names);
        if f.listeners.is_empty() {
            self.err(
                0..0,
                "no listener is configured",
                "add a [[listener]] table with a name, a bind address and a route",
            );
        }
        Some(Config {
            workers,
            grace_period,
            timeouts,
            certificates: certificates.into_iter().collect::<Option<Vec<_>>>()?,
            listeners,
            pools,
        })
    }

    fn duration(&mut self, value: &Option<Spanned<String>>, default: Duration) -> Duration {
        let Some(v) = value else { return default };
        match humantime::parse_duration(v.get_ref()) {
            Ok(d) if !d.is_zero() => d,
            Ok(_) => {
                self.err(v.span(), "a zero duration is not allowed", DURATION_HINT);
                default
            }
            Err(e) => {
                self.err(
                    v.span(),
                    format!("`{}` is not a duration ({e})", v.get_ref()),
                    DURATION_HINT,
                );
                default
            }
        }
    }

    fn int_in(&mut self, v: &Spanned<i64>, min: i64, max: i64, key: &str) -> Option<i64> {
        let n = *v.get_ref();
        if (min..=max).contains(&n) {
            Some(n)
        } else {
            self.err(
                v.span(),
                format!("{key} = {n} is out of range"),
                format!("expected an integer from {min} to {max}"),
            );
            None
        }
    }

    fn name(&mut self, v: &Spanned<String>, kind: &str) {
        let s = v.get_ref();
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !ok {
            self.err(
                v.span(),
                format!("`{s}` is not a valid {kind} name"),
                NAME_HINT,
            );
        }
    }

    fn unique<'n>(&mut self, kind: &str, names: impl Iterator<Item = &'n Spanned<String>>) {
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for n in names {
            if let Some(first) = seen.get(n.get_ref().as_str()) {
                let (line, col) = self.loc.line_col(*first);
                self.err(
                    n.span(),
                    format!("duplicate {kind} name `{}`", n.get_ref()),
                    format!(
                        "expected a name not used before (first used at line {line}, column {col})"
                    ),
                );
            } else {
                seen.insert(n.get_ref(), n.span().start);
            }
        }
    }

    fn path(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }

    fn certificates(&mut self, certs: &[FileCertificate]) -> Vec<Option<Certificate>> {
        self.unique("certificate", certs.iter().map(|c| &c.name));
        certs.iter().map(|c| self.certificate(c)).collect()
    }

    fn certificate(&mut self, c: &FileCertificate) -> Option<Certificate> {
        self.name(&c.name, "certificate");
        let loaded = match (&c.cert, &c.key, &c.self_signed) {
            (Some(cert), Some(key), None) => {
                match tls::certs::load_pem_files(
                    &self.path(cert.get_ref()),
                    &self.path(key.get_ref()),
                ) {
                    Ok(l) => l,
                    Err(e) => {
                        let span = match e {
                            tls::CertError::EncryptedKey { .. }
                            | tls::CertError::NoKey { .. }
                            | tls::CertError::UnsupportedKey { .. }
                            | tls::CertError::KeyMismatch { .. } => key.span(),
                            tls::CertError::Read { ref path, .. }
                            | tls::CertError::NotPem { ref path }
                            | tls::CertError::BadPem { ref path, .. }
                                if *path != self.path(cert.get_ref()).display().to_string() =>
                            {
                                key.span()
                            }
                            _ => cert.span(),
                        };
                        let text = e.to_string();
                        let (what, hint) = text.split_once("; ").unwrap_or((
                            &text,
                            "expected a PEM certificate chain and its private key",
                        ));
                        self.err(span, what.to_string(), hint.to_string());
                        return None;
                    }
                }
            }
            (None, None, Some(names)) if !names.get_ref().is_empty() => {
                match tls::certs::self_signed(names.get_ref()) {
                    Ok(l) => l,
                    Err(e) => {
                        self.err(
                            names.span(),
                            e.to_string(),
                            "expected DNS names or IP addresses",
                        );
                        return None;
                    }
                }
            }
            (cert, key, Some(names)) if cert.is_some() || key.is_some() => {
                self.err(
                    names.span(),
                    format!(
                        "certificate `{}` sets both `self_signed` and `cert`/`key`",
                        c.name.get_ref()
                    ),
                    "expected either cert and key files, or self_signed names",
                );
                return None;
            }
            _ => {
                self.err(c.name.span(), format!("certificate `{}` needs `cert` and `key` files, or `self_signed` names", c.name.get_ref()), "expected cert = \"chain.pem\" and key = \"key.pem\", or self_signed = [\"localhost\"]");
                return None;
            }
        };
        Some(Certificate {
            name: c.name.get_ref().clone(),
            loaded,
        })
    }

    fn pools(&mut self, pools: &[FilePool], defaults: UpstreamTimeouts) -> Vec<Pool> {
        self.unique("pool", pools.iter().map(|p| &p.name));
        pools.iter().map(|p| self.pool(p, defaults)).collect()
    }

    fn pool(&mut self, p: &FilePool, defaults: UpstreamTimeouts) -> Pool {
        self.name(&p.name, "pool");
        let balancer = match &p.balancer {
            None => BalancerKind::RoundRobin,
            Some(b) => BalancerKind::parse(b.get_ref()).unwrap_or_else(|| {
                self.err(
                    b.span(),
                    format!("unknown balancer `{}`", b.get_ref()),
                    format!("expected {}", BalancerKind::NAMES),
                );
                BalancerKind::RoundRobin
            }),
        };
        let protocol = match p
            .protocol
            .as_ref()
            .map(|s| (s.get_ref().as_str(), s.span()))
        {
            None | Some(("http1", _)) => UpstreamProtocol::Http1,
            Some(("h2", _)) => UpstreamProtocol::Http2,
            Some((other, span)) => {
                self.err(
                    span,
                    format!("unknown pool protocol `{other}`"),
                    "expected \"http1\" or \"h2\"",
                );
                UpstreamProtocol::Http1
            }
        };
        let max_idle = p
            .max_idle_per_backend
            .as_ref()
            .and_then(|m| self.int_in(m, 0, 100_000, "max_idle_per_backend"))
            .unwrap_or(128) as usize;
        let timeouts = UpstreamTimeouts {
            connect: self.duration(&p.timeouts.connect, defaults.connect),
            response: self.duration(&p.timeouts.response, defaults.response),
            upstream_idle: self.duration(&p.timeouts.upstream_idle, defaults.upstream_idle),
        };
        if p.backends.is_empty() {
            self.err(
                p.name.span(),
                format!("pool `{}` has no backends", p.name.get_ref()),
                "add a [[pool.backend]] table with an address",
            );
        }
        let backends: Vec<Backend> = p.backends.iter().map(|b| self.backend(b)).collect();
        let mut seen: HashMap<String, ()> = HashMap::new();
        for (b, file_b) in backends.iter().zip(&p.backends) {
            if seen.insert(b.name.clone(), ()).is_some() {
                let span = file_b
                    .name
                    .as_ref()
                    .map_or(file_b.address.span(), |n| n.span());
                self.err(span, format!("duplicate backend name `{}` in pool `{}`", b.name, p.name.get_ref()), "expected each backend of a pool to have its own name (it defaults to the address)");
            }
        }
        Pool {
            name: p.name.get_ref().clone(),
            balancer,
            protocol,
            max_idle_per_backend: max_idle,
            timeouts,
            backends,
        }
    }

    fn backend(&mut self, b: &FileBackend) -> Backend {
        if let Some(n) = &b.name {
            self.name(n, "backend");
        }
        let address = self
            .backend_address(&b.address)
            .unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0)));
        let weight = b
            .weight
            .as_ref()
            .and_then(|w| self.int_in(w, 0, 1000, "weight"))
            .unwrap_or(1) as u32;
        let name = b
            .name
            .as_ref()
            .map_or_else(|| b.address.get_ref().clone(), |n| n.get_ref().clone());
        Backend {
            name,
            address,
            weight,
        }
    }

    /// An IP:port, or a host name and port resolved once now. Only text that looks like a host
    /// name is looked up, so a mistyped IP address is an error rather than a DNS query.
    fn backend_address(&mut self, a: &Spanned<String>) -> Option<SocketAddr> {
        const HINT: &str = "expected an address and port such as 127.0.0.1:8080, [::1]:8080 or backend.internal:8080";
        let s = a.get_ref();
        if let Ok(addr) = s.parse::<SocketAddr>() {
            return self.nonzero_port(a, addr, HINT);
        }
        let Some((host, port)) = s.rsplit_once(':') else {
            self.err(a.span(), format!("`{s}` has no port"), HINT);
            return None;
        };
        let host_like = !host.is_empty()
            && host.bytes().any(|b| b.is_ascii_alphabetic())
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.".contains(&b));
        if !host_like || port.parse::<u16>().is_err() {
            self.err(a.span(), format!("`{s}` is not a valid address"), HINT);
            return None;
        }
        match s.to_socket_addrs().map(|mut it| it.next()) {
            Ok(Some(addr)) => self.nonzero_port(a, addr, HINT),
            Ok(None) | Err(_) => {
                self.err(a.span(), format!("cannot resolve `{host}`"), HINT);
                None
            }
        }
    }

    fn nonzero_port(
        &mut self,
        a: &Spanned<String>,
        addr: SocketAddr,
        hint: &str,
    ) -> Option<SocketAddr> {
        if addr.port() == 0 {
            self.err(a.span(), format!("`{}` has port 0", a.get_ref()), hint);
            return None;
        }
        Some(addr)
    }

    fn listeners(
        &mut self,
        listeners: &[FileListener],
        certs: &[&str],
        pools: &[&str],
    ) -> Vec<Listener> {
        self.unique("listener", listeners.iter().map(|l| &l.name));
        let mut binds: HashMap<SocketAddr, ()> = HashMap::new();
        let mut out = Vec::new();
        for l in listeners {
            let listener = self.listener(l, certs, pools);
            if listener.bind.port() != 0 && binds.insert(listener.bind, ()).is_some() {
                self.err(
                    l.bind.span(),
                    format!("two listeners bind {}", listener.bind),
                    "expected each listener to bind its own address and port",
                );
            }
            out.push(listener);
        }
        out
    }

    fn listener(&mut self, l: &FileListener, certs: &[&str], pools: &[&str]) -> Listener {
        self.name(&l.name, "listener");
        let bind = l.bind.get_ref().parse::<SocketAddr>().unwrap_or_else(|_| {
            self.err(
                l.bind.span(),
                format!("`{}` is not a bind address", l.bind.get_ref()),
                "expected an IP address and port such as 0.0.0.0:443, [::]:443 or 127.0.0.1:8443",
            );
            SocketAddr::from(([0, 0, 0, 0], 0))
        });
        let protocol = match l
            .protocol
            .as_ref()
            .map(|s| (s.get_ref().as_str(), s.span()))
        {
            None | Some(("https", _)) => ListenerProtocol::Https,
            Some(("http", _)) => ListenerProtocol::Http,
            Some((other, span)) => {
                self.err(
                    span,
                    format!("unknown listener protocol `{other}`"),
                    "expected \"https\" or \"http\"",
                );
                ListenerProtocol::Https
            }
        };
        let tls = match protocol {
            ListenerProtocol::Https => self.listener_tls(l, certs),
            ListenerProtocol::Http => {
                for (key, span) in [
                    ("tls_policy", l.tls_policy.as_ref().map(|s| s.span())),
                    ("alpn", l.alpn.as_ref().map(|s| s.span())),
                    (
                        "default_certificate",
                        l.default_certificate.as_ref().map(|s| s.span()),
                    ),
                    (
                        "certificates",
                        l.certificates.as_ref().map(|c| match c.first() {
                            Some(first) => first.span(),
                            None => l.name.span(),
                        }),
                    ),
                ] {
                    if let Some(span) = span {
                        self.err(
                            span,
                            format!("`{key}` is set on a plain http listener"),
                            "expected protocol = \"https\" for TLS settings, or remove the key",
                        );
                    }
                }
                None
            }
        };
        if l.routes.is_empty() {
            self.err(
                l.name.span(),
                format!("listener `{}` has no routes", l.name.get_ref()),
                "add a [[listener.route]] table naming a pool",
            );
        }
        let routes = l
            .routes
            .iter()
            .map(|r| self.route(r, pools))
            .collect::<Vec<_>>();
        for (i, r) in routes.iter().enumerate() {
            if routes[..i]
                .iter()
                .any(|o| o.host == r.host && o.path_prefix == r.path_prefix)
            {
                self.err(
                    l.routes[i].pool.span(),
                    "a route with the same host and path_prefix comes earlier in this listener",
                    "expected each route of a listener to differ in host or path_prefix",
                );
            }
        }
        Listener {
            name: l.name.get_ref().clone(),
            bind,
            protocol,
            tls,
            routes,
        }
    }

    fn listener_tls(&mut self, l: &FileListener, certs: &[&str]) -> Option<ListenerTls> {
        let policy = match &l.tls_policy {
            None => TlsPolicy::Intermediate,
            Some(p) => TlsPolicy::parse(p.get_ref()).unwrap_or_else(|| {
                self.err(
                    p.span(),
                    format!("unknown tls_policy `{}`", p.get_ref()),
                    format!("expected {}", TlsPolicy::NAMES),
                );
                TlsPolicy::Intermediate
            }),
        };
        let alpn = match &l.alpn {
            None => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
            Some(list) => {
                let ok = !list.get_ref().is_empty()
                    && list.get_ref().iter().all(|p| p == "h2" || p == "http/1.1");
                if !ok {
                    self.err(
                        list.span(),
                        "alpn must list \"h2\" and/or \"http/1.1\"",
                        "expected alpn = [\"h2\", \"http/1.1\"]",
                    );
                }
                list.get_ref()
                    .iter()
                    .map(|p| p.as_bytes().to_vec())
                    .collect()
            }
        };
        let mut indexes = Vec::new();
        match &l.certificates {
            None => indexes.extend(0..certs.len()),
            Some(names) => {
                for n in names {
                    match certs.iter().position(|c| c == n.get_ref()) {
                        Some(i) => indexes.push(i),
                        None => self.err(
                            n.span(),
                            format!("no certificate is named `{}`", n.get_ref()),
                            one_of(certs, "[[certificate]]"),
                        ),
                    }
                }
            }
        }
        if indexes.is_empty() {
            self.err(
                l.name.span(),
                format!("https listener `{}` has no certificate", l.name.get_ref()),
                "add a [[certificate]] table (cert and key files, or self_signed names)",
            );
        }
        let default_certificate = match &l.default_certificate {
            None => 0,
            Some(d) => {
                match indexes
                    .iter()
                    .position(|&i| certs.get(i) == Some(&d.get_ref().as_str()))
                {
                    Some(pos) => pos,
                    None => {
                        self.err(d.span(), format!("default_certificate `{}` is not one of this listener's certificates", d.get_ref()), "expected the name of a certificate the listener serves");
                        0
                    }
                }
            }
        };
        Some(ListenerTls {
            policy,
            alpn,
            certificates: indexes,
            default_certificate,
        })
    }

    fn route(&mut self, r: &FileRoute, pools: &[&str]) -> Route {
        let pool = pools
            .iter()
            .position(|p| p == r.pool.get_ref())
            .unwrap_or_else(|| {
                self.err(
                    r.pool.span(),
                    format!("route to pool `{}`, which does not exist", r.pool.get_ref()),
                    one_of(pools, "[[pool]]"),
                );
                0
            });
        let host = r.host.as_ref().and_then(|h| self.host_pattern(h));
        let path_prefix = match &r.path_prefix {
            None => "/".to_string(),
            Some(p) if p.get_ref().starts_with('/') && !p.get_ref().contains(['?', '#', ' ']) => {
                p.get_ref().clone()
            }
            Some(p) => {
                self.err(
                    p.span(),
                    format!("`{}` is not a path prefix", p.get_ref()),
                    "expected a path starting with '/', such as \"/api/\"",
                );
                "/".to_string()
            }
        };
        Route {
            host,
            path_prefix,
            pool,
        }
    }

    fn host_pattern(&mut self, h: &Spanned<String>) -> Option<HostPattern> {
        let s = h.get_ref().to_ascii_lowercase();
        let (wild, rest) = match s.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, s.as_str()),
        };
        let ok = !rest.is_empty()
            && rest.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if !ok {
            self.err(
                h.span(),
                format!("`{}` is not a host name", h.get_ref()),
                "expected a host such as \"api.example.com\" or \"*.example.com\" (no port)",
            );
            return None;
        }
        Some(if wild {
            HostPattern::Wildcard(format!(".{rest}"))
        } else {
            HostPattern::Exact(rest.to_string())
        })
    }
}
