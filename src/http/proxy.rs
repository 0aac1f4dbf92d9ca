//! The per-request path: route, pick a backend, rewrite headers, forward, and stream the
//! answer back (or tunnel an upgraded connection).

use std::convert::Infallible;
use std::net::SocketAddr;
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
use crate::config::UpstreamProtocol;
use crate::upstream::{Backend, Pool};

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
fn request_host(req: &Request<Incoming>) -> Option<&str> {
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
    let Some((backend, client)) = pool.pick() else {
        warn!(pool = %pool.name, "503: no usable backend in pool");
        return error_response(StatusCode::SERVICE_UNAVAILABLE);
    };
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
            respond(resp, client_upgrade, in_flight, &pool, backend)
        }
        Err(e) => {
            // A failure counts as slow as the connect timeout, so latency-aware balancers
            // do not mistake a fast refusal for a fast backend.
            backend.observe(pool.timeouts.connect.max(started.elapsed()));
            let status = e.status();
            warn!(pool = %pool.name, backend = %backend.name, status = status.as_u16(), reason = %e, "upstream request failed");
            error_response(status)
        }
    }
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
