//! The per-request path: route, pick a backend, rewrite headers, forward, and stream the
//! answer back (or tunnel an upgraded connection).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use http::uri::{PathAndQuery, Scheme, Uri};
use http::{header, Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use tracing::{debug, warn};

use super::body::ProxyBody;
use super::error::error_response;
use super::headers::{self, ForwardedFor};
use super::route::Router;
use super::upgrade;
use crate::config::UpstreamProtocol;

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
        debug!(path = req.uri().path(), "no route");
        return error_response(StatusCode::NOT_FOUND);
    };
    let Some(backend) = pool.pick().cloned() else {
        warn!(pool = %pool.name, "503: no usable backend in pool");
        return error_response(StatusCode::SERVICE_UNAVAILABLE);
    };
    // Only HTTP/1.1 can upgrade; taking the upgrade handle is skipped for other requests.
    let client_upgrade = (req.version() == Version::HTTP_11
        && req.headers().contains_key(header::UPGRADE))
    .then(|| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();
    let host = parts.uri.authority().map(|a| a.to_string());
    if let Some(host) = &host {
        // HTTP/2 clients name the host in :authority; HTTP/1.1 backends need it in Host.
        if !parts.headers.contains_key(header::HOST) {
            if let Ok(v) = host.parse() {
                parts.headers.insert(header::HOST, v);
            }
        }
    }
    let upgrade = headers::remove_hop_by_hop(&mut parts.headers);
    parts.headers.remove(header::EXPECT);
    let shown_host = parts
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned);
    headers::add_forwarded(
        &mut parts.headers,
        &ForwardedFor {
            client: conn.client,
            proto: conn.proto,
            host: shown_host.as_deref(),
        },
    );
    let path = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    parts.version = match pool.protocol {
        UpstreamProtocol::Http1 => {
            headers::join_cookies(&mut parts.headers);
            Version::HTTP_11
        }
        UpstreamProtocol::Http2 => Version::HTTP_2,
    };
    let client_upgrade = match (&upgrade, pool.protocol) {
        (Some(proto), UpstreamProtocol::Http1) => {
            parts.headers.insert(
                header::CONNECTION,
                http::HeaderValue::from_static("upgrade"),
            );
            parts.headers.insert(header::UPGRADE, proto.clone());
            client_upgrade
        }
        _ => None,
    };
    let uri = Uri::builder()
        .scheme(Scheme::HTTP)
        .authority(backend.authority.clone())
        .path_and_query(path);
    parts.uri = match uri.build() {
        Ok(u) => u,
        Err(e) => {
            warn!(error = %e, "400: cannot build the upstream URI");
            return error_response(StatusCode::BAD_REQUEST);
        }
    };
    let in_flight = backend.start();
    let started = Instant::now();
    match pool.client.send(Request::from_parts(parts, body)).await {
        Ok(mut resp) => {
            backend.observe(started.elapsed());
            if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
                if let Some(client_upgrade) = client_upgrade {
                    upgrade::spawn_tunnel(client_upgrade, &mut resp, in_flight);
                    let (parts, _) = resp.into_parts();
                    return Response::from_parts(parts, ProxyBody::local(bytes::Bytes::new()));
                }
                warn!(pool = %pool.name, backend = %backend.name, "502: backend switched protocols unasked");
                return error_response(StatusCode::BAD_GATEWAY);
            }
            let (mut parts, body) = resp.into_parts();
            headers::remove_hop_by_hop(&mut parts.headers);
            Response::from_parts(parts, ProxyBody::upstream(body, in_flight))
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
