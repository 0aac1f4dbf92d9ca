//! Validation of the L4 settings: `tcp` and `tls-passthrough` listeners' routes, PROXY
//! protocol in (`accept_proxy_protocol` on a listener) and out (`proxy_protocol` on a pool).

use super::Validator;
use crate::config::file::*;
use crate::config::*;

impl Validator<'_> {
    /// A pool's `proxy_protocol`.
    pub(super) fn proxy_protocol_out(&mut self, p: &FilePool) -> Option<ProxyProtocol> {
        let v = p.proxy_protocol.as_ref()?;
        match v.get_ref().as_str() {
            "v1" => Some(ProxyProtocol::V1),
            "v2" => Some(ProxyProtocol::V2),
            other => {
                self.err(
                    v.span(),
                    format!("unknown proxy_protocol `{other}`"),
                    "expected \"v1\" or \"v2\"",
                );
                None
            }
        }
    }

    /// A listener's `accept_proxy_protocol` networks.
    pub(super) fn accept_proxy(&mut self, l: &FileListener) -> Vec<IpNet> {
        let Some(list) = &l.accept_proxy_protocol else {
            return Vec::new();
        };
        if list.get_ref().is_empty() {
            self.err(
                list.span(),
                "accept_proxy_protocol is empty",
                "expected networks such as [\"10.0.0.0/8\", \"127.0.0.1/32\"], or remove the key",
            );
        }
        let mut nets = Vec::new();
        for s in list.get_ref() {
            match IpNet::parse(s) {
                Some(n) => nets.push(n),
                None => self.err(
                    list.span(),
                    format!("`{s}` is not an IP network"),
                    "expected an address with a prefix length, such as \"10.0.0.0/8\" or \"::1/128\"",
                ),
            }
        }
        nets
    }

    /// Routes of L4 listeners: a `tcp` listener has one route without host or path_prefix; a
    /// `tls-passthrough` listener's routes choose by host (SNI) only.
    pub(super) fn l4_routes(&mut self, l: &FileListener, protocol: ListenerProtocol) {
        match protocol {
            ListenerProtocol::Tcp => {
                if l.routes.len() > 1 {
                    self.err(
                        l.name.span(),
                        format!(
                            "tcp listener `{}` has {} routes",
                            l.name.get_ref(),
                            l.routes.len()
                        ),
                        "expected exactly one [[listener.route]] naming the pool",
                    );
                }
                for r in &l.routes {
                    for (key, span) in [
                        ("host", r.host.as_ref().map(|h| h.span())),
                        ("path_prefix", r.path_prefix.as_ref().map(|p| p.span())),
                    ] {
                        if let Some(span) = span {
                            self.err(
                                span,
                                format!("`{key}` is set on a route of a tcp listener"),
                                "expected a route with only `pool`: a tcp listener forwards every connection to its pool",
                            );
                        }
                    }
                }
            }
            ListenerProtocol::TlsPassthrough => {
                for r in &l.routes {
                    if let Some(p) = &r.path_prefix {
                        self.err(
                            p.span(),
                            "`path_prefix` is set on a route of a tls-passthrough listener",
                            "expected only `host` (matched against the SNI) and `pool`: the stream is not decrypted",
                        );
                    }
                }
            }
            ListenerProtocol::Https | ListenerProtocol::Http => {}
        }
    }

    /// A pool that sends a PROXY header serves only L4 listeners: its HTTP connections are
    /// pooled and shared by many clients, so no single client address could be announced.
    /// And an L4 listener's pool has no `[pool.tls]`: its bytes go in plain TCP.
    pub(super) fn proxy_protocol_users(
        &mut self,
        f: &FileConfig,
        listeners: &[Listener],
        pools: &[Pool],
    ) {
        for (l, fl) in listeners.iter().zip(&f.listeners) {
            if matches!(
                l.protocol,
                ListenerProtocol::Tcp | ListenerProtocol::TlsPassthrough
            ) {
                // Bytes go to these pools' backends in plain TCP; re-encryption is not built.
                for (r, fr) in l.routes.iter().zip(&fl.routes) {
                    if pools.get(r.pool).is_some_and(|p| p.tls.is_some()) {
                        self.err(
                            fr.pool.span(),
                            format!("pool `{}` has [pool.tls], which L4 listeners do not use", fr.pool.get_ref()),
                            "expected a pool without [pool.tls] for tcp and tls-passthrough listeners",
                        );
                    }
                }
                continue;
            }
            for (r, fr) in l.routes.iter().zip(&fl.routes) {
                if pools
                    .get(r.pool)
                    .is_some_and(|p| p.proxy_protocol.is_some())
                {
                    self.err(
                        fr.pool.span(),
                        format!("pool `{}` sends a PROXY protocol header, but this {} listener speaks HTTP to it", fr.pool.get_ref(), if l.tls.is_some() { "https" } else { "http" }),
                        "expected proxy_protocol only on pools of tcp and tls-passthrough listeners",
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::path::Path;

    use crate::config::{parse, IpNet, ListenerProtocol, ProxyProtocol};

    const POOLS: &str = r#"
[[pool]]
name = "app"
proxy_protocol = "v2"
  [[pool.backend]]
  address = "127.0.0.1:9001"
[[pool]]
name = "other"
  [[pool.backend]]
  address = "127.0.0.1:9002"
"#;

    fn errors(listener: &str) -> String {
        let text = format!(
            "[[certificate]]\nname = \"c\"\nself_signed = [\"localhost\"]\n{listener}{POOLS}"
        );
        match parse(Path::new("t.toml"), &text) {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn l4_listeners_and_keys_are_accepted() {
        let l = "[[listener]]\nname = \"t\"\nbind = \"127.0.0.1:0\"\nprotocol = \"tcp\"\naccept_proxy_protocol = [\"10.0.0.0/8\", \"::1\"]\n[[listener.route]]\npool = \"app\"\n[[listener]]\nname = \"p\"\nbind = \"127.0.0.1:0\"\nprotocol = \"tls-passthrough\"\n[[listener.route]]\nhost = \"a.test\"\npool = \"app\"\n[[listener.route]]\npool = \"other\"\n";
        let text =
            format!("[[certificate]]\nname = \"c\"\nself_signed = [\"localhost\"]\n{l}{POOLS}");
        let c = parse(Path::new("t.toml"), &text).unwrap();
        assert_eq!(c.listeners[0].protocol, ListenerProtocol::Tcp);
        assert!(c.listeners[0].tls.as_ref().unwrap().alpn.is_empty());
        assert_eq!(c.listeners[0].accept_proxy_protocol.len(), 2);
        assert_eq!(c.listeners[1].protocol, ListenerProtocol::TlsPassthrough);
        assert!(c.listeners[1].tls.is_none());
        assert_eq!(c.pools[0].proxy_protocol, Some(ProxyProtocol::V2));
    }

    #[test]
    fn l4_mistakes_are_named() {
        let tcp = "[[listener]]\nname = \"t\"\nbind = \"127.0.0.1:0\"\nprotocol = \"tcp\"\n[[listener.route]]\nhost = \"a.test\"\npool = \"app\"\n[[listener.route]]\npool = \"other\"\n";
        let e = errors(tcp);
        assert!(e.contains("tcp listener `t` has 2 routes"), "{e}");
        assert!(
            e.contains("`host` is set on a route of a tcp listener"),
            "{e}"
        );
        let pt = "[[listener]]\nname = \"p\"\nbind = \"127.0.0.1:0\"\nprotocol = \"tls-passthrough\"\ncertificates = [\"c\"]\n[[listener.route]]\npath_prefix = \"/x\"\npool = \"other\"\n";
        let e = errors(pt);
        assert!(
            e.contains("`certificates` is set on a tls-passthrough listener"),
            "{e}"
        );
        assert!(
            e.contains("`path_prefix` is set on a route of a tls-passthrough"),
            "{e}"
        );
        let https = "[[listener]]\nname = \"h\"\nbind = \"127.0.0.1:0\"\naccept_proxy_protocol = [\"10.0.0.0/33\"]\n[[listener.route]]\npool = \"app\"\n";
        let e = errors(https);
        assert!(e.contains("`10.0.0.0/33` is not an IP network"), "{e}");
        assert!(
            e.contains("pool `app` sends a PROXY protocol header"),
            "{e}"
        );
        let bad = errors("[[listener]]\nname = \"t\"\nbind = \"127.0.0.1:0\"\nprotocol = \"udp\"\n[[listener.route]]\npool = \"other\"\n");
        assert!(bad.contains("\"tcp\" or \"tls-passthrough\""), "{bad}");
    }

    #[test]
    fn networks_contain_their_addresses() {
        let n = IpNet::parse("10.1.2.3/8").unwrap();
        assert!(n.contains("10.200.0.1".parse().unwrap()));
        assert!(n.contains("::ffff:10.0.0.1".parse().unwrap()));
        assert!(!n.contains("11.0.0.1".parse().unwrap()));
        assert!(IpNet::parse("0.0.0.0/0")
            .unwrap()
            .contains("8.8.8.8".parse().unwrap()));
        assert!(IpNet::parse("::1")
            .unwrap()
            .contains("::1".parse().unwrap()));
        assert!(IpNet::parse("::1/129").is_none());
        assert!(IpNet::parse("nope").is_none());
    }
}
