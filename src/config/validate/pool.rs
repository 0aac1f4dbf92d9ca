//! Validation of pools and their backends.

use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};

use toml::Spanned;

use super::Validator;
use crate::config::file::*;
use crate::config::*;

/// A backend's bound on concurrent requests unless the pool sets one: Envoy's circuit-breaker
/// default. It holds terminus's descriptors and the backend's load in check when the backend
/// slows down; HAProxy and nginx leave it unbounded.
const DEFAULT_MAX_CONNECTIONS_PER_BACKEND: i64 = 1024;

impl Validator<'_> {
    pub(super) fn pools(&mut self, pools: &[FilePool], defaults: UpstreamTimeouts) -> Vec<Pool> {
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
            queue: self.duration(&p.timeouts.queue, defaults.queue),
        };
        let max_conns = p
            .max_connections_per_backend
            .as_ref()
            .and_then(|m| self.int_in(m, 0, 1_000_000, "max_connections_per_backend"))
            .unwrap_or(DEFAULT_MAX_CONNECTIONS_PER_BACKEND);
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
        self.some_primary(p, &backends);
        Pool {
            proxy_protocol: self.proxy_protocol_out(p),
            name: p.name.get_ref().clone(),
            balancer,
            protocol,
            max_idle_per_backend: max_idle,
            max_connections_per_backend: (max_conns > 0).then_some(max_conns as usize),
            timeouts,
            backends,
            hash: self.hash_policy(p, balancer),
            health: p
                .health
                .as_ref()
                .and_then(|h| self.health(h))
                .map(std::sync::Arc::new),
            outlier: p.outlier.as_ref().map(|o| self.outlier(o)),
            slow_start: self.slow_start(p),
            sticky: p.sticky.as_ref().and_then(|c| self.sticky(c)),
            retry: RetryPolicy {
                attempts: self.int_or(&p.retry.attempts, 0, 10, "attempts", 2),
                budget_percent: self.int_or(&p.retry.budget_percent, 0, 100, "budget_percent", 20),
                budget_floor: self.int_or(&p.retry.budget_floor, 0, 10_000, "budget_floor", 10),
            },
            tls: (p.tls.as_ref()).and_then(|t| self.upstream_tls(t, protocol, p.name.span())),
            // Set from `[limits]` once it is read.
            max_response_header_bytes: Limits::default().max_response_header_bytes,
            max_response_headers: Limits::default().max_response_headers,
        }
    }

    fn backend(&mut self, b: &FileBackend) -> Backend {
        if let Some(n) = &b.name {
            self.name(n, "backend");
        }
        let address = self
            .backend_address(&b.address)
            .unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0)));
        let weight = self.int_or(&b.weight, 0, 1000, "weight", 1);
        let name = b
            .name
            .as_ref()
            .map_or_else(|| b.address.get_ref().clone(), |n| n.get_ref().clone());
        let on = |v: &Option<Spanned<bool>>| v.as_ref().is_some_and(|v| *v.get_ref());
        let state = match (on(&b.drain), on(&b.disabled)) {
            (_, true) if on(&b.drain) => {
                let span = b.disabled.as_ref().map_or(0..0, |d| d.span());
                self.err(
                    span,
                    "a backend cannot both drain and be disabled",
                    "expected at most one of `drain = true` and `disabled = true`",
                );
                BackendState::Disabled
            }
            (_, true) => BackendState::Disabled,
            (true, false) => BackendState::Draining,
            (false, false) => BackendState::Enabled,
        };
        Backend {
            name,
            address,
            weight,
            backup: b.backup.as_ref().is_some_and(|v| *v.get_ref()),
            state,
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
}

const HASH_KEY_HINT: &str =
    "expected \"source-ip\", \"path\", \"header:NAME\", \"cookie:NAME\" or \"query:NAME\"";

/// `hash_key` and `hash_bounded_load`, which only the hashing balancers take.
impl Validator<'_> {
    fn hash_policy(&mut self, p: &FilePool, balancer: BalancerKind) -> Option<HashPolicy> {
        let unknown =
            (p.balancer.as_ref()).is_some_and(|b| BalancerKind::parse(b.get_ref()).is_none());
        if !balancer.is_hashing() && !unknown {
            let keys = [
                ("hash_key", p.hash_key.as_ref().map(|k| k.span())),
                (
                    "hash_bounded_load",
                    p.hash_bounded_load.as_ref().map(|c| c.span()),
                ),
            ];
            for (key, span) in keys {
                if let Some(span) = span {
                    self.err(
                        span,
                        format!(
                            "`{key}` needs a hashing balancer, but pool `{}` uses \"{}\"",
                            p.name.get_ref(),
                            balancer.name()
                        ),
                        format!("expected balancer = \"maglev\" or \"ring-hash\", or no `{key}`"),
                    );
                }
            }
        }
        if !balancer.is_hashing() {
            return None;
        }
        let key = match &p.hash_key {
            None => HashKey::SourceIp,
            Some(k) => self.hash_key(k).unwrap_or(HashKey::SourceIp),
        };
        let bounded_load = p.hash_bounded_load.as_ref().and_then(|c| {
            let v = *c.get_ref();
            if v.is_finite() && v > 1.0 {
                return Some(v);
            }
            self.err(
                c.span(),
                format!("hash_bounded_load = {v} is out of range"),
                "expected a number greater than 1, such as 1.25 (a backend takes new requests while it has at most 125% of its share of the requests in flight)",
            );
            None
        });
        Some(HashPolicy { key, bounded_load })
    }

    fn hash_key(&mut self, k: &Spanned<String>) -> Option<HashKey> {
        let s = k.get_ref().as_str();
        let (kind, name) = s.split_once(':').unwrap_or((s, ""));
        let key = match (kind, name) {
            ("source-ip", "") => Some(HashKey::SourceIp),
            ("path", "") => Some(HashKey::Path),
            ("header", n) => http::HeaderName::from_bytes(n.as_bytes())
                .ok()
                .map(HashKey::Header),
            ("cookie", n) if is_token(n) => Some(HashKey::Cookie(n.to_string())),
            ("query", n) if is_query_name(n) => Some(HashKey::Query(n.to_string())),
            _ => None,
        };
        if key.is_none() {
            let message = match kind {
                "header" | "cookie" | "query" => {
                    format!("`{s}` does not name a valid {kind}")
                }
                _ => format!("unknown hash_key `{s}`"),
            };
            self.err(k.span(), message, HASH_KEY_HINT);
        }
        key
    }
}

/// An HTTP token (RFC 9110), which is what a cookie name is.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// A query parameter name as written in the URI: visible ASCII but `&`, `=` and `#`.
fn is_query_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_graphic() && !b"&=#".contains(&b))
}
