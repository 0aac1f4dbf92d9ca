//! Request keys for the hashing balancers: the hash of a request's source IP, header, cookie,
//! query parameter or path.

use std::net::{IpAddr, SocketAddr};

use http::{header, Request};

use super::headers;
use crate::config::HashKey;
use crate::upstream::balancer::key_hash;

/// The host the client asked for: the URI's authority (HTTP/2, absolute-form), else `Host`.
pub fn request_host<B>(req: &Request<B>) -> Option<&str> {
    req.uri().authority().map(|a| a.as_str()).or_else(|| {
        req.headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
    })
}

/// The hash of the request's `hash_key`, or `None` when the request lacks it or it is empty
/// (the hashing balancers then pick at random). Reads the request in place, allocating nothing.
pub fn request_hash<B>(req: &Request<B>, client: SocketAddr, key: &HashKey) -> Option<u64> {
    let bytes: &[u8] = match key {
        HashKey::SourceIp => {
            // An IPv4 client seen on an IPv6 socket (::ffff:a.b.c.d) hashes as IPv4.
            return Some(match client.ip().to_canonical() {
                IpAddr::V4(ip) => key_hash(&ip.octets()),
                IpAddr::V6(ip) => key_hash(&ip.octets()),
            });
        }
        HashKey::Path => req.uri().path().as_bytes(),
        // HTTP/2 clients name the host in :authority, not in a Host field.
        HashKey::Header(name) if name == header::HOST => request_host(req)?.as_bytes(),
        HashKey::Header(name) => req.headers().get(name)?.as_bytes(),
        HashKey::Cookie(name) => headers::cookie(req.headers(), name)?,
        HashKey::Query(name) => query_param(req.uri().query()?, name)?.as_bytes(),
    };
    (!bytes.is_empty()).then(|| key_hash(bytes))
}

/// The value of the first query parameter called `name`, as written (not percent-decoded).
fn query_param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query.split('&').find_map(|pair| {
        let (n, v) = pair.split_once('=').unwrap_or((pair, ""));
        (n == name).then_some(v)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(key: &HashKey, req: http::request::Builder) -> Option<u64> {
        let client: SocketAddr = "192.0.2.7:40000".parse().unwrap();
        request_hash(&req.body(()).unwrap(), client, key)
    }

    fn get(uri: &str) -> http::request::Builder {
        Request::builder().uri(uri)
    }

    #[test]
    fn source_ip_ignores_the_port_and_the_ipv6_mapping() {
        let at = |addr: &str| {
            request_hash(
                &get("/").body(()).unwrap(),
                addr.parse().unwrap(),
                &HashKey::SourceIp,
            )
        };
        assert_eq!(at("192.0.2.7:1"), at("192.0.2.7:2"));
        assert_eq!(at("192.0.2.7:1"), at("[::ffff:192.0.2.7]:1"));
        assert_ne!(at("192.0.2.7:1"), at("192.0.2.8:1"));
        assert_eq!(at("192.0.2.7:1"), Some(key_hash(&[192, 0, 2, 7])));
    }

    #[test]
    fn a_header_keys_by_its_first_value() {
        let key = HashKey::Header(http::HeaderName::from_static("x-user"));
        let alice = hash(&key, get("/").header("x-user", "alice"));
        assert_eq!(alice, Some(key_hash(b"alice")));
        assert_eq!(
            hash(
                &key,
                get("/a").header("x-user", "alice").header("x-user", "bob")
            ),
            alice
        );
        assert_eq!(hash(&key, get("/")), None, "missing");
        assert_eq!(hash(&key, get("/").header("x-user", "")), None, "empty");
    }

    #[test]
    fn host_comes_from_the_authority_for_http2() {
        let key = HashKey::Header(header::HOST);
        let h1 = hash(&key, get("/").header("host", "a.test"));
        assert_eq!(h1, Some(key_hash(b"a.test")));
        assert_eq!(hash(&key, get("https://a.test/")), h1);
    }

    #[test]
    fn a_cookie_keys_by_its_value_in_any_cookie_field() {
        let key = HashKey::Cookie("sid".into());
        let want = Some(key_hash(b"s1"));
        assert_eq!(
            hash(&key, get("/").header("cookie", "a=1; sid=s1; b=2")),
            want
        );
        assert_eq!(
            hash(
                &key,
                get("/").header("cookie", "a=1").header("cookie", "sid=s1")
            ),
            want
        );
        assert_eq!(
            hash(&key, get("/").header("cookie", "xsid=s1; SID=s1")),
            None
        );
        assert_eq!(hash(&key, get("/").header("cookie", "sid=")), None);
    }

    #[test]
    fn a_query_parameter_keys_as_written() {
        let key = HashKey::Query("u".into());
        assert_eq!(
            hash(&key, get("/p?a=1&u=bob%20b")),
            Some(key_hash(b"bob%20b"))
        );
        assert_eq!(
            hash(&key, get("/p?uu=1&u")),
            None,
            "present without a value"
        );
        assert_eq!(hash(&key, get("/p")), None);
    }

    #[test]
    fn the_path_keys_without_the_query() {
        let a = hash(&HashKey::Path, get("/items/1?x=1"));
        assert_eq!(a, Some(key_hash(b"/items/1")));
        assert_eq!(hash(&HashKey::Path, get("/items/1?x=2")), a);
    }
}
