//! Turning the client's request into the backend's: the head is rewritten once (hop-by-hop
//! headers, forwarding headers, version), then each attempt gets a copy aimed at its backend.

use http::request::Parts;
use http::uri::{Authority, PathAndQuery, Scheme, Uri};
use http::{header, HeaderValue, Request, Version};

use super::headers::{self, ForwardedFor};
use super::proxy::ConnInfo;
use crate::config::UpstreamProtocol;
use crate::upstream::replay::ReplayBody;
use crate::upstream::Backend;

/// Rewrites the client's request head for the pool's backends. Returns whether the request
/// asks for an upgrade that will be passed on.
pub fn prepare(
    parts: &mut Parts,
    conn: &ConnInfo,
    protocol: UpstreamProtocol,
) -> Result<bool, &'static str> {
    // Room for the fields added below (Host, the four forwarding fields, the certificate
    // verdict), so the map grows once rather than field by field.
    parts.headers.reserve(6);
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
        host: host.as_ref(),
    };
    headers::add_forwarded(&mut parts.headers, &forwarded);
    headers::set_client_cert(&mut parts.headers, conn.client_cert.as_deref());
    let path = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    // HTTP/2 backends get the client's host as :authority. HTTP/1.1 attempts replace the
    // authority with their backend's (see `for_backend`).
    let uri = match host_str.and_then(|h| Authority::try_from(h).ok()) {
        Some(a) => Uri::builder().scheme(Scheme::HTTP).authority(a),
        None => Uri::builder(),
    };
    parts.uri = uri
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

/// One attempt's request: the prepared head aimed at `backend`, with `body`.
///
/// HTTP/1.1 requests go out in origin form (`GET /path`): the connection already leads to the
/// backend, and the client's host travels in Host. HTTP/2 carries the client's host as
/// :authority, and hyper-util's pool keys its connections by it, so each distinct host gets
/// its own multiplexed connection (its connector dials the backend whatever the URI names).
pub fn for_backend(
    parts: &Parts,
    backend: &Backend,
    protocol: UpstreamProtocol,
    body: ReplayBody,
) -> Result<Request<ReplayBody>, &'static str> {
    let path = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    let uri = match (protocol, parts.uri.authority()) {
        (UpstreamProtocol::Http1, _) => Uri::from(path),
        (UpstreamProtocol::Http2, authority) => Uri::builder()
            .scheme(Scheme::HTTP)
            .authority(
                authority
                    .cloned()
                    .unwrap_or_else(|| backend.authority.clone()),
            )
            .path_and_query(path)
            .build()
            .map_err(|_| "the request target cannot be forwarded")?,
    };
    let mut req = Request::new(body);
    *req.method_mut() = parts.method.clone();
    *req.uri_mut() = uri;
    *req.version_mut() = parts.version;
    *req.headers_mut() = parts.headers.clone();
    Ok(req)
}
