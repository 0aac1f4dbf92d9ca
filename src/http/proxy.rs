//! The per-request path: route, pick a backend, rewrite headers, forward, and stream the
//! answer back (or tunnel an upgraded connection).

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use http::request::Parts;
use http::uri::{Authority, PathAndQuery, Scheme, Uri};
use http::{header, HeaderValue, Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use tracing::{debug, warn};

use super::body::ProxyBody;
use super::error::error_response;
use super::headers::{self, ForwardedFor};
use super::route::Router;
use super::upgrade;
use crate::config::{HashKey, UpstreamProtocol};
use crate::upstream::balancer::{key_hash, PickContext};
use crate::upstream::{Backend, Outcome, Pool};

/// What requests of one client connection share.
#[derive(Debug)]
pub struct ConnInfo {
    pub client: SocketAddr,
    /// "https" or "http": what the client spoke to terminus.
    pub proto: &'static str,
    pub router: Arc<Router>,
}

/// hyper's service entry point: every outcome, failures included, is an HTTP answer.
pub async fn handle(
    req: Request<Incoming>,
    conn: Arc<ConnInfo>,
) -> Result<Response<ProxyBody>, Infallible> {
    Ok(forward(req, &conn).await)
}

/// The host the client asked for: the URI's authority (HTTP/2, absolute-form), else `Host`.
fn request_host<B>(req: &Request<B>) -> Option<&str> {
    req.uri().authority().map(|a| a.as_str()).or_else(|| {
        req.headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
    })
}

async fn forward(mut req: Request<Incoming>, conn: &ConnInfo) -> Response<ProxyBody> {
    let Some(pool) = conn
        .router
        .find(request_host(&req), req.uri().path())
        .cloned()
    else {
        debug!(path = req.uri().path(), "404: no route");
        return error_response(StatusCode::NOT_FOUND);
    };
    let ctx = PickContext {
        hash: pool
            .hash_key
            .as_ref()
            .and_then(|key| request_hash(&req, conn.client, key)),
    };
    let sticky_cookie = pool
        .sticky
        .as_ref()
        .and_then(|c| headers::cookie(req.headers(), &c.name));
    let Some(picked) = pool.pick_for(&ctx, sticky_cookie) else {
        warn!(pool = %pool.name, "503: no usable backend in pool");
        return error_response(StatusCode::SERVICE_UNAVAILABLE);
    };
    let (backend, client, set_cookie) = (picked.backend, picked.client, picked.set_cookie);
    if picked.sticky_hit {
        debug!(backend = %backend.name, "sticky cookie hit");
    }
    // Only HTTP/1.1 can upgrade; the upgrade handle is taken only when one is asked for.
    let client_upgrade = (req.version() == Version::HTTP_11
        && req.headers().contains_key(header::UPGRADE))
    .then(|| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();
    let upgrade = match rewrite_request(&mut parts, conn, backend, pool.protocol) {
        Ok(upgrade) => upgrade,
        Err(why) => {
            warn!(why, "400: cannot forward the request");
            return error_response(StatusCode::BAD_REQUEST);
        }
    };
    let client_upgrade = client_upgrade.filter(|_| upgrade);
    let in_flight = backend.start();
    let started = Instant::now();
    match client.send(Request::from_parts(parts, body)).await {
        Ok(resp) => {
            backend.observe(started.elapsed());
            pool.report(backend, Outcome::of_status(resp.status()));
            let mut resp = respond(resp, client_upgrade, in_flight, &pool, backend);
            if let Some(cookie) = set_cookie {
                resp.headers_mut().append(header::SET_COOKIE, cookie);
            }
            resp
        }
        Err(e) => {
            // A failure counts as slow as the connect timeout, so latency-aware balancers
            // do not mistake a fast refusal for a fast backend.
            backend.observe(pool.timeouts.connect.max(started.elapsed()));
            if let Some(outcome) = Outcome::of_error(&e) {
                pool.report(backend, outcome);
            }
            let status = e.status();
            warn!(pool = %pool.name, backend = %backend.name, status = status.as_u16(), reason = %e, "upstream request failed");
            error_response(status)
        }
    }
}

/// The hash of the request's `hash_key`, or `None` when the request lacks it or it is empty
/// (the hashing balancers then pick at random). Reads the request in place, allocating nothing.
fn request_hash<B>(req: &Request<B>, client: SocketAddr, key: &HashKey) -> Option<u64> {
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

/// Turns the client's request head into the backend's. Returns whether the request asks for
/// an upgrade that will be passed on.
fn rewrite_request(
    parts: &mut Parts,
    conn: &ConnInfo,
    backend: &Backend,
    protocol: UpstreamProtocol,
) -> Result<bool, &'static str> {
    // HTTP/2 clients name the host in :authority; HTTP/1.1 backends need it in Host.
    if !parts.headers.contains_key(header::HOST) {
        if let Some(v) = parts
            .uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        {
            parts.headers.insert(header::HOST, v);
        }
    }
    let upgrade = headers::remove_hop_by_hop(&mut parts.headers);
    // hyper answers `Expect: 100-continue` itself when the body is first read.
    parts.headers.remove(header::EXPECT);
    let host = parts.headers.get(header::HOST).cloned();
    let host_str = host.as_ref().and_then(|h| h.to_str().ok());
    let forwarded = ForwardedFor {
        client: conn.client,
        proto: conn.proto,
        host: host_str,
    };
    headers::add_forwarded(&mut parts.headers, &forwarded);
    // The connector dials the backend whatever the URI names; the URI's authority keys the
    // idle-connection pool and is HTTP/2's :authority. HTTP/1.1 uses the backend's address so
    // every request shares one pool (the client's host travels in Host); HTTP/2 carries the
    // client's host, so each distinct host gets its own multiplexed connection.
    let authority = match protocol {
        UpstreamProtocol::Http1 => None,
        UpstreamProtocol::Http2 => host_str.and_then(|h| Authority::try_from(h).ok()),
    }
    .unwrap_or_else(|| backend.authority.clone());
    let path = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    parts.uri = Uri::builder()
        .scheme(Scheme::HTTP)
        .authority(authority)
        .path_and_query(path)
        .build()
        .map_err(|_| "the request target cannot be forwarded")?;
    match protocol {
        UpstreamProtocol::Http1 => {
            parts.version = Version::HTTP_11;
            headers::join_cookies(&mut parts.headers);
            if let Some(proto) = &upgrade {
                parts
                    .headers
                    .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
                parts.headers.insert(header::UPGRADE, proto.clone());
            }
            Ok(upgrade.is_some())
        }
        UpstreamProtocol::Http2 => {
            parts.version = Version::HTTP_2;
            parts.headers.remove(header::HOST);
            Ok(false)
        }
    }
}

/// The client's answer from the backend's: streamed through, or a tunnel after 101.
fn respond(
    mut resp: Response<Incoming>,
    client_upgrade: Option<OnUpgrade>,
    in_flight: crate::upstream::InFlight,
    pool: &Pool,
    backend: &Backend,
) -> Response<ProxyBody> {
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        let Some(client_upgrade) = client_upgrade else {
            warn!(pool = %pool.name, backend = %backend.name, "502: backend switched protocols unasked");
            return error_response(StatusCode::BAD_GATEWAY);
        };
        upgrade::spawn_tunnel(client_upgrade, &mut resp, in_flight);
        let (parts, _) = resp.into_parts();
        return Response::from_parts(parts, ProxyBody::local(bytes::Bytes::new()));
    }
    let (mut parts, body) = resp.into_parts();
    headers::remove_hop_by_hop(&mut parts.headers);
    Response::from_parts(parts, ProxyBody::upstream(body, in_flight))
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
