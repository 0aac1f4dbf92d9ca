//! The per-request path: route, pick a backend, rewrite headers, forward, and stream the
//! answer back (or tunnel an upgraded connection).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use http::{header, Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use tracing::{debug, warn};

use super::attempt;
use super::body::ProxyBody;
use super::error::error_response;
use super::headers;
use super::request_key::{request_hash, request_host};
use super::rewrite;
use super::route::Router;
use super::upgrade;
use crate::tls::{AuthorityCheck, ClientCert};
use crate::upstream::balancer::PickContext;
use crate::upstream::replay::ReplayBody;
use crate::upstream::{Backend, InFlight, Pool};

/// What requests of one client connection share.
#[derive(Debug)]
pub struct ConnInfo {
    pub client: SocketAddr,
    /// "https" or "http": what the client spoke to terminus.
    pub proto: &'static str,
    pub router: Arc<Router>,
    /// The client's verified certificate; `None` without one (and on plain connections).
    pub client_cert: Option<Arc<ClientCert>>,
    /// On listeners that ask for client certificates: the host a request may name.
    pub authority_check: Option<AuthorityCheck>,
}

/// hyper's service entry point: every outcome, failures included, is an HTTP answer.
pub async fn handle(
    req: Request<Incoming>,
    conn: Arc<ConnInfo>,
) -> Result<Response<ProxyBody>, Infallible> {
    Ok(forward(req, &conn).await)
}

async fn forward(mut req: Request<Incoming>, conn: &ConnInfo) -> Response<ProxyBody> {
    if let Some(check) = &conn.authority_check {
        if !check.allows(request_host(&req)) {
            debug!(
                host = request_host(&req),
                "421: host not covered by this connection's SNI"
            );
            return error_response(StatusCode::MISDIRECTED_REQUEST);
        }
    }
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
    if picked.sticky_hit {
        debug!(backend = %picked.backend.name, "sticky cookie hit");
    }
    // Only HTTP/1.1 can upgrade; the upgrade handle is taken only when one is asked for.
    let client_upgrade = (req.version() == Version::HTTP_11
        && req.headers().contains_key(header::UPGRADE))
    .then(|| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();
    let upgrade = match rewrite::prepare(&mut parts, conn, pool.protocol) {
        Ok(upgrade) => upgrade,
        Err(why) => {
            warn!(why, "400: cannot forward the request");
            return error_response(StatusCode::BAD_REQUEST);
        }
    };
    let client_upgrade = client_upgrade.filter(|_| upgrade);
    let body = ReplayBody::new(body);
    pool.retry_budget.record_request();
    let sent = match attempt::send_with_retries(&pool, &parts, &body, picked).await {
        Ok(sent) => sent,
        Err(status) => return error_response(status),
    };
    let mut resp = respond(
        sent.response,
        client_upgrade,
        sent.in_flight,
        &pool,
        &sent.backend,
    );
    if let Some(cookie) = sent.set_cookie {
        resp.headers_mut().append(header::SET_COOKIE, cookie);
    }
    resp
}
/// The client's answer from the backend's: streamed through, or a tunnel after 101.
fn respond(
    mut resp: Response<Incoming>,
    client_upgrade: Option<OnUpgrade>,
    in_flight: InFlight,
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
