//! Header rewriting between client and backend: hop-by-hop headers removed, `X-Forwarded-For`,
//! `X-Forwarded-Proto`, `X-Forwarded-Host` and `Forwarded` set, the client's `Host` kept.
//! Client-certificate headers are always terminus's own.

use std::net::SocketAddr;

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::tls::ClientCert;

/// Headers that describe one connection, never forwarded (RFC 9110 section 7.6.1).
const HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_CLIENT_CERT_VERIFIED: HeaderName = HeaderName::from_static("x-client-cert-verified");
static X_CLIENT_CERT_SUBJECT: HeaderName = HeaderName::from_static("x-client-cert-subject");
static X_CLIENT_CERT_SAN: HeaderName = HeaderName::from_static("x-client-cert-san");
static X_CLIENT_CERT_FINGERPRINT: HeaderName = HeaderName::from_static("x-client-cert-fingerprint");
static X_FORWARDED_CLIENT_CERT: HeaderName = HeaderName::from_static("x-forwarded-client-cert");

/// Removes hop-by-hop headers, and those the `Connection` header names. Returns the
/// `Upgrade` value when the message asked for a protocol upgrade, so it can be passed on.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) -> Option<HeaderValue> {
    let mut upgrade_requested = false;
    let upgrade = headers.get(header::UPGRADE).cloned();
    if headers.contains_key(header::CONNECTION) {
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|token| {
                let token = token.trim();
                if token.eq_ignore_ascii_case("upgrade") {
                    upgrade_requested = true;
                }
                HeaderName::from_bytes(token.as_bytes()).ok()
            })
            .collect();
        for name in named {
            headers.remove(name);
        }
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
    upgrade.filter(|_| upgrade_requested)
}

/// What the backend is told about the client.
pub struct ForwardedFor<'a> {
    pub client: SocketAddr,
    pub proto: &'static str,
    /// The request's `Host`, as it came.
    pub host: Option<&'a HeaderValue>,
}

/// Sets the forwarding headers: X-Forwarded-For and Forwarded get this hop appended to what
/// earlier proxies wrote; X-Forwarded-Proto and X-Forwarded-Host describe this hop only.
/// Each value is written once into a buffer of its final size: two allocations a request
/// (this runs on every request; `benches/rewrite.rs` measures it).
pub fn add_forwarded(headers: &mut HeaderMap, f: &ForwardedFor<'_>) {
    use std::fmt::Write;
    let ip = f.client.ip();
    // The longest IPv6 text is 45 bytes.
    let prev = appendable(headers.get(&X_FORWARDED_FOR));
    let mut xff = BytesMut::with_capacity(prev.map_or(0, |p| p.len() + 2) + 45);
    if let Some(prev) = prev {
        xff.extend_from_slice(prev);
        xff.extend_from_slice(b", ");
    }
    let _ = write!(xff, "{ip}");
    set(headers, &X_FORWARDED_FOR, xff);
    headers.insert(&X_FORWARDED_PROTO, HeaderValue::from_static(f.proto));
    let visible = f.host.filter(|h| h.to_str().is_ok());
    // The host goes in Forwarded only as a quoted-string that needs no escapes.
    let host = visible.filter(|h| {
        h.as_bytes()
            .iter()
            .all(|&b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
    });
    match visible {
        Some(h) => {
            headers.insert(&X_FORWARDED_HOST, h.clone());
        }
        None => {
            headers.remove(&X_FORWARDED_HOST);
        }
    }
    let prev = appendable(headers.get(header::FORWARDED));
    let mut forwarded = BytesMut::with_capacity(
        prev.map_or(0, |p| p.len() + 2) + 64 + host.map_or(0, |h| h.len() + 8),
    );
    if let Some(prev) = prev {
        forwarded.extend_from_slice(prev);
        forwarded.extend_from_slice(b", ");
    }
    let _ = if ip.is_ipv6() {
        write!(forwarded, "for=\"[{ip}]\";proto={}", f.proto)
    } else {
        write!(forwarded, "for={ip};proto={}", f.proto)
    };
    if let Some(host) = host {
        forwarded.extend_from_slice(b";host=\"");
        forwarded.extend_from_slice(host.as_bytes());
        forwarded.extend_from_slice(b"\"");
    }
    set(headers, &header::FORWARDED, forwarded);
}

/// An earlier proxy's value to append this hop to; `None` when there is none worth keeping.
fn appendable(value: Option<&HeaderValue>) -> Option<&[u8]> {
    value
        .and_then(|v| v.to_str().ok())
        .map(str::as_bytes)
        .filter(|v| !v.trim_ascii().is_empty())
}

fn set(headers: &mut HeaderMap, name: &HeaderName, value: impl Into<Bytes>) {
    if let Ok(v) = HeaderValue::from_maybe_shared(value.into()) {
        headers.insert(name, v);
    }
}

/// Replaces whatever client-certificate headers the client sent with terminus's own:
/// `x-client-cert-verified` is always set (`SUCCESS` or `NONE`), the others only with a
/// certificate.
pub fn set_client_cert(headers: &mut HeaderMap, cert: Option<&ClientCert>) {
    headers.remove(&X_FORWARDED_CLIENT_CERT);
    // Every `x-client-cert-*` name is terminus's to write: a backend must never mistake one a
    // client made up (an issuer, a serial) for terminus's word.
    let forged: Vec<HeaderName> = headers
        .keys()
        .filter(|n| n.as_str().starts_with("x-client-cert-"))
        .cloned()
        .collect();
    for name in forged {
        headers.remove(name);
    }
    let Some(cert) = cert else {
        headers.insert(&X_CLIENT_CERT_VERIFIED, HeaderValue::from_static("NONE"));
        return;
    };
    headers.insert(&X_CLIENT_CERT_VERIFIED, HeaderValue::from_static("SUCCESS"));
    headers.insert(&X_CLIENT_CERT_SUBJECT, cert.subject.clone());
    headers.insert(&X_CLIENT_CERT_SAN, cert.san.clone());
    headers.insert(&X_CLIENT_CERT_FINGERPRINT, cert.fingerprint.clone());
    headers.insert(&X_FORWARDED_CLIENT_CERT, cert.xfcc.clone());
}

/// HTTP/2 lets a client split `Cookie` into several fields; HTTP/1.1 backends need one
/// (RFC 9113 section 8.2.3).
pub fn join_cookies(headers: &mut HeaderMap) {
    if headers.get_all(header::COOKIE).iter().nth(1).is_none() {
        return;
    }
    let joined = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join("; ");
    set(headers, &header::COOKIE, joined);
}

/// The value of cookie `name` in the `Cookie` fields (HTTP/2 clients may send several).
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a [u8]> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b';'))
        .find_map(|pair| {
            let pair = pair.trim_ascii();
            let eq = pair.iter().position(|&b| b == b'=')?;
            (&pair[..eq] == name.as_bytes()).then(|| &pair[eq + 1..])
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_and_connection_named_headers_go() {
        let mut h = HeaderMap::new();
        h.insert("connection", "keep-alive, x-secret".parse().unwrap());
        h.insert("x-secret", "1".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert("transfer-encoding", "chunked".parse().unwrap());
        h.insert("te", "trailers".parse().unwrap());
        h.insert("x-kept", "1".parse().unwrap());
        assert_eq!(remove_hop_by_hop(&mut h), None);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-kept"));
    }

    #[test]
    fn upgrade_is_reported_only_when_connection_asks() {
        let mut h = HeaderMap::new();
        h.insert("connection", "Upgrade".parse().unwrap());
        h.insert("upgrade", "websocket".parse().unwrap());
        assert_eq!(remove_hop_by_hop(&mut h).unwrap(), "websocket");
        let mut h = HeaderMap::new();
        h.insert("upgrade", "websocket".parse().unwrap());
        assert_eq!(remove_hop_by_hop(&mut h), None);
    }

    #[test]
    fn forwarded_headers_append_this_hop() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "203.0.113.7".parse().unwrap());
        h.insert("x-forwarded-host", "spoofed".parse().unwrap());
        let f = ForwardedFor {
            client: "[::1]:5000".parse().unwrap(),
            proto: "https",
            host: Some(&HeaderValue::from_static("a.test:8443")),
        };
        add_forwarded(&mut h, &f);
        assert_eq!(h["x-forwarded-for"], "203.0.113.7, ::1");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "a.test:8443");
        assert_eq!(
            h["forwarded"],
            "for=\"[::1]\";proto=https;host=\"a.test:8443\""
        );
    }

    #[test]
    fn client_cert_headers_are_never_the_clients() {
        let mut h = HeaderMap::new();
        h.insert("x-client-cert-verified", "SUCCESS".parse().unwrap());
        h.append("x-client-cert-subject", "CN=admin".parse().unwrap());
        h.append("x-client-cert-subject", "CN=root".parse().unwrap());
        h.insert("x-forwarded-client-cert", "Hash=00".parse().unwrap());
        h.insert("x-client-cert-issuer", "CN=Trusted CA".parse().unwrap());
        h.insert("x-client-cert-serial", "01".parse().unwrap());
        set_client_cert(&mut h, None);
        assert_eq!(h.len(), 1, "{h:?}");
        assert_eq!(h["x-client-cert-verified"], "NONE");
    }

    #[test]
    fn cookies_are_joined() {
        let mut h = HeaderMap::new();
        h.append("cookie", "a=1".parse().unwrap());
        h.append("cookie", "b=2".parse().unwrap());
        join_cookies(&mut h);
        assert_eq!(h.get_all("cookie").iter().count(), 1);
        assert_eq!(h["cookie"], "a=1; b=2");
    }
}
