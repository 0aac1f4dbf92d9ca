//! Validation of listeners: TLS settings, certificates served, routes.

use std::collections::HashMap;
use std::net::SocketAddr;

use toml::Spanned;

use super::{one_of, Validator};
use crate::config::file::*;
use crate::config::*;

impl Validator<'_> {
    pub(super) fn listeners(
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
            Some(("tcp", _)) => ListenerProtocol::Tcp,
            Some(("tls-passthrough", _)) => ListenerProtocol::TlsPassthrough,
            Some((other, span)) => {
                self.err(
                    span,
                    format!("unknown listener protocol `{other}`"),
                    "expected \"https\", \"http\", \"tcp\" or \"tls-passthrough\"",
                );
                ListenerProtocol::Https
            }
        };
        let tls = match protocol {
            ListenerProtocol::Https | ListenerProtocol::Tcp => {
                self.listener_tls(l, certs, protocol)
            }
            ListenerProtocol::Http | ListenerProtocol::TlsPassthrough => {
                let kind = if protocol == ListenerProtocol::Http {
                    "a plain http"
                } else {
                    "a tls-passthrough"
                };
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
                    ("resumption", l.resumption.as_ref().map(|s| s.span())),
                    ("client_auth", l.client_auth.as_ref().map(|s| s.span())),
                ] {
                    if let Some(span) = span {
                        self.err(
                            span,
                            format!("`{key}` is set on {kind} listener"),
                            "expected protocol = \"https\" or \"tcp\" for TLS settings, or remove the key",
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
        self.l4_routes(l, protocol);
        let accept_proxy_protocol = self.accept_proxy(l);
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
            accept_proxy_protocol,
            explain: l.explain.unwrap_or(false),
        }
    }

    fn listener_tls(
        &mut self,
        l: &FileListener,
        certs: &[&str],
        protocol: ListenerProtocol,
    ) -> Option<ListenerTls> {
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
            // A tcp listener forwards any protocol: it offers what the operator lists, if any.
            None if protocol == ListenerProtocol::Tcp => Vec::new(),
            Some(list) if protocol == ListenerProtocol::Tcp => {
                if list.get_ref().iter().any(|p| p.is_empty() || p.len() > 255) {
                    self.err(
                        list.span(),
                        "an ALPN protocol id is empty or longer than 255 bytes",
                        "expected ids such as [\"imap\"] or [\"postgresql\"]",
                    );
                }
                list.get_ref()
                    .iter()
                    .map(|p| p.as_bytes().to_vec())
                    .collect()
            }
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
                format!(
                    "{} listener `{}` has no certificate",
                    if protocol == ListenerProtocol::Tcp {
                        "tcp"
                    } else {
                        "https"
                    },
                    l.name.get_ref()
                ),
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
        let resumption = match &l.resumption {
            Some(r) => self.resumption(r.get_ref()),
            None => crate::tls::Resumption::default(),
        };
        let client_auth = match &l.client_auth {
            Some(c) => self.client_auth(c),
            None => crate::tls::ClientAuth::None,
        };
        Some(ListenerTls {
            policy,
            alpn,
            certificates: indexes,
            default_certificate,
            resumption,
            client_auth,
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
