//! The per-request path: route, pick a backend, rewrite headers, forward, and stream the
//! answer back (or tunnel an upgraded connection).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use http::{header, HeaderValue, Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use tracing::{debug, warn};

use super::attempt;
use super::body::ProxyBody;
use super::error::error_response;
use super::exchange::{Exchange, Finish};
use super::framing;
use super::headers;
use super::request_key::{request_hash, request_host};
use super::rewrite;
use super::route::Router;
use super::upgrade;
use crate::access_log::AccessLog;
use crate::config::AdminToken;
use crate::metrics::Metrics;
use crate::tls::{AuthorityCheck, ClientCert, SessionInfo};
use crate::upstream::balancer::PickContext;
use crate::upstream::decision::Decision;
use crate::upstream::replay::ReplayBody;
use crate::upstream::{Backend, InFlight, Pool};

/// What requests of one client connection share.
#[derive(Debug)]
pub struct ConnInfo {
    pub client: SocketAddr,
    /// "https" or "http": what the client spoke to terminus.
    pub proto: &'static str,
    pub listener: Arc<str>,
    /// The listener's current router (see `ListenerState::routes`), read per request.
    pub routes: Arc<arc_swap::ArcSwap<Router>>,
    /// The client's verified certificate; `None` without one (and on plain connections).
    pub client_cert: Option<Arc<ClientCert>>,
    /// On listeners that ask for client certificates: the host a request may name.
    pub authority_check: Option<AuthorityCheck>,
    /// What the TLS handshake negotiated; `None` on plain connections.
    pub tls: Option<SessionInfo>,
    pub metrics: Metrics,
    pub access_log: Option<Arc<AccessLog>>,
    /// Every response carries `x-terminus-decision`.
    pub explain: bool,
    /// A request carrying it in `x-terminus-explain` gets `x-terminus-decision`.
    pub admin_token: Option<AdminToken>,
    pub limits: crate::config::Limits,
    /// Longest wait for the next piece of a request body (408 after it).
    pub client_body_timeout: std::time::Duration,
    /// Requests in progress, for the keep-alive idle timeout.
    pub activity: super::activity::Activity,
    /// What the raw HTTP/1 stream showed of each request's framing.
    pub raw_verdicts: super::raw_framing::Verdicts,
}

/// The request header that asks for an explanation (its value: the admin token).
const EXPLAIN: &str = "x-terminus-explain";
/// The response header that carries it.
const DECISION: &str = "x-terminus-decision";

/// hyper's service entry point: every outcome, failures included, is an HTTP answer.
pub async fn handle(
    req: Request<Incoming>,
    conn: Arc<ConnInfo>,
) -> Result<Response<ProxyBody>, Infallible> {
    let mut exchange = Exchange::start(&conn, &req);
    let explain = wants_explanation(&req, &conn).then(Decision::default);
    let (mut resp, decision) = forward(req, &conn, &mut exchange, explain).await;
    if let Some(decision) = decision {
        let text = decision.render(
            &conn.listener,
            exchange.route.as_deref().unwrap_or("none"),
            exchange.pool.as_deref().unwrap_or("none"),
        );
        if let Ok(v) = HeaderValue::from_str(&text) {
            resp.headers_mut().insert(DECISION, v);
        }
        exchange.decision = Some(text);
    }
    let finish = exchange.responded(resp.status().as_u16());
    Ok(attach(resp, finish))
}

/// Hands the access log's account to the body that ends the exchange.
fn attach(mut resp: Response<ProxyBody>, mut finish: Finish) -> Response<ProxyBody> {
    match resp.body_mut() {
        ProxyBody::Upstream {
            finish: slot @ None,
            in_flight: Some(_),
            ..
        } => *slot = Some(Box::new(finish)),
        ProxyBody::Upstream { .. } => drop(finish),
        ProxyBody::Local(bytes) => {
            // Written at once: terminus's own answers are a single short chunk.
            finish.bytes_out = bytes.as_ref().map_or(0, |b| b.len() as u64);
            finish.ended = true;
        }
    }
    resp
}

/// 414 for a request target longer than `max_uri_bytes`; 413 for a declared body longer than
/// `max_body_bytes` (a chunked body is counted as it streams).
fn over_limits(req: &Request<Incoming>, limits: &crate::config::Limits) -> Option<StatusCode> {
    let target = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if target > limits.max_uri_bytes {
        debug!(length = target, "414: request target too long");
        return Some(StatusCode::URI_TOO_LONG);
    }
    let max = limits.max_body_bytes?;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())?;
    (declared > max).then(|| {
        debug!(declared, max, "413: request body too large");
        StatusCode::PAYLOAD_TOO_LARGE
    })
}

/// Whether this request's response carries the decision header: the listener says so, or
/// the request carries the admin token (compared in constant time).
fn wants_explanation(req: &Request<Incoming>, conn: &ConnInfo) -> bool {
    if conn.explain {
        return true;
    }
    let (Some(token), Some(given)) = (&conn.admin_token, req.headers().get(EXPLAIN)) else {
        return false;
    };
    crate::config::token_matches(token, given.as_bytes())
}

/// 400 and close for a request whose framing could be read two ways.
fn refuse_framing(
    why: framing::Violation,
    x: &mut Exchange,
    version: Version,
) -> Response<ProxyBody> {
    warn!(%why, "400: ambiguous request framing");
    x.termination = Some("bad_framing");
    let mut resp = error_response(StatusCode::BAD_REQUEST);
    framing::close_after(&mut resp, version);
    resp
}

async fn forward(
    mut req: Request<Incoming>,
    conn: &ConnInfo,
    x: &mut Exchange,
    mut explain: Option<Decision>,
) -> (Response<ProxyBody>, Option<Decision>) {
    let version = req.version();
    // First of all, so that every HTTP/1 request is counted in order.
    let raw = (version < Version::HTTP_2)
        .then(|| conn.raw_verdicts.next_request())
        .flatten();
    if let Some(why) = raw {
        return (refuse_framing(why, x, version), explain);
    }
    if let Some(check) = &conn.authority_check {
        if !check.allows(request_host(&req)) {
            debug!(
                host = request_host(&req),
                "421: host not covered by this connection's SNI"
            );
            x.termination = Some("misdirected");
            return (error_response(StatusCode::MISDIRECTED_REQUEST), explain);
        }
    }
    if let Err(why) = framing::check_request(version, req.headers_mut()) {
        return (refuse_framing(why, x, version), explain);
    }
    if let Some(status) = over_limits(&req, &conn.limits) {
        x.termination = Some(if status == StatusCode::URI_TOO_LONG {
            "uri_too_long"
        } else {
            "body_too_large"
        });
        // The unread rest of the request could be taken for the next one: close.
        let mut resp = error_response(status);
        framing::close_after(&mut resp, version);
        return (resp, explain);
    }
    let router = conn.routes.load_full();
    let Some(route) = router.route(request_host(&req), req.uri().path()) else {
        debug!(path = req.uri().path(), "404: no route");
        x.termination = Some("no_route");
        return (error_response(StatusCode::NOT_FOUND), explain);
    };
    let pool = route.pool.clone();
    x.route = Some(route.label.clone());
    x.route_metrics = Some(route.metrics.clone());
    x.pool = Some(pool.label.clone());
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
    if let Some(d) = explain.as_mut() {
        *d = Decision::start(&pool);
    }
    let Some(picked) = pool.pick_for(&ctx, sticky_cookie, explain.as_mut()) else {
        warn!(pool = %pool.name, "503: no usable backend in pool");
        x.termination = Some("no_backend");
        return (error_response(StatusCode::SERVICE_UNAVAILABLE), explain);
    };
    if picked.sticky_hit {
        debug!(backend = %picked.backend.name, "sticky cookie hit");
    }
    // Only HTTP/1.1 can upgrade; the upgrade handle is taken only when one is asked for.
    let client_upgrade = (req.version() == Version::HTTP_11
        && req.headers().contains_key(header::UPGRADE))
    .then(|| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();
    parts.headers.remove(EXPLAIN);
    let upgrade = match rewrite::prepare(&mut parts, conn, pool.protocol) {
        Ok(upgrade) => upgrade,
        Err(why) => {
            warn!(why, "400: cannot forward the request");
            x.termination = Some("bad_request");
            return (error_response(StatusCode::BAD_REQUEST), explain);
        }
    };
    let client_upgrade = client_upgrade.filter(|_| upgrade);
    let body = ReplayBody::new(body, conn.limits.max_body_bytes, conn.client_body_timeout);
    x.body_in = Some(body.meter());
    pool.retry_budget.record_request();
    let sent =
        match attempt::send_with_retries(&pool, &parts, &body, picked, explain.as_mut()).await {
            Ok(sent) => sent,
            Err(failed) => {
                x.backend = Some(failed.backend.label.clone());
                x.backend_index = pool.index_of(&failed.backend);
                x.retries = failed.retries;
                x.termination = Some(failed.reason);
                let mut resp = error_response(failed.status);
                if matches!(failed.reason, "body_too_large" | "client_body_timeout") {
                    // The unread rest of the body could be taken for the next request.
                    framing::close_after(&mut resp, version);
                }
                return (resp, explain);
            }
        };
    x.backend = Some(sent.backend.label.clone());
    x.backend_index = pool.index_of(&sent.backend);
    x.retries = sent.retries;
    x.connect = sent.connect;
    x.ttfb = Some(sent.ttfb);
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
    (resp, explain)
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
    Response::from_parts(parts, ProxyBody::upstream(body, in_flight, None))
}
