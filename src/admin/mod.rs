//! The admin listener: Prometheus metrics, the JSON API (read and change pools and backends,
//! reload), and the live dashboard page. Plain HTTP/1.1, loopback by default; a bearer token
//! guards it when the config sets one (always when it binds beyond loopback).

mod api;
mod changes;
pub mod history;
mod metrics;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tracing::{debug, warn};

use crate::config::token_matches;
use crate::shutdown::Watch;
use crate::Server;
use history::History;

/// The page served at `/`, embedded in the binary (no CDN, no other file).
const DASHBOARD: &str = include_str!("dashboard.html");
/// Largest request body the API reads.
const BODY_LIMIT: usize = 64 * 1024;

type Reply = Response<Full<Bytes>>;

/// Starts serving the admin listener and sampling the dashboard's history, both until
/// shutdown.
pub fn spawn(tcp: TcpListener, server: Server, shutdown: Watch) {
    let history = Arc::new(History::default());
    tokio::spawn(history::sample(
        history.clone(),
        server.clone(),
        shutdown.clone(),
    ));
    tokio::spawn(serve(tcp, server, history, shutdown));
}

async fn serve(tcp: TcpListener, server: Server, history: Arc<History>, mut shutdown: Watch) {
    loop {
        let (stream, client) = tokio::select! {
            a = tcp.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    warn!(error = %e, "admin: accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.signalled() => return,
        };
        let (server, history, mut watch) = (server.clone(), history.clone(), shutdown.clone());
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let (server, history) = (server.clone(), history.clone());
                async move { Ok::<_, Infallible>(route(req, client, &server, &history).await) }
            });
            let mut builder = http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(std::time::Duration::from_secs(10));
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            let result = tokio::select! {
                r = conn.as_mut() => r,
                _ = watch.signalled() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = result {
                debug!(error = %e, "admin connection ended with an error");
            }
        });
    }
}

async fn route(
    req: Request<Incoming>,
    client: SocketAddr,
    server: &Server,
    history: &History,
) -> Reply {
    let path = req.uri().path().to_owned();
    if !authorized(&req, server) {
        warn!(%client, method = %req.method(), path, "admin: 401, no valid bearer token");
        let mut r = text(
            StatusCode::UNAUTHORIZED,
            "401 Unauthorized: bearer token required\n",
        );
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"terminus\""),
        );
        return r;
    }
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let method = req.method().clone();
    match (&method, segments.as_slice()) {
        (&Method::GET, [""]) => page(),
        (&Method::GET, ["metrics"]) => metrics::scrape(server),
        (&Method::GET, ["api", "v1", rest @ ..]) => api::get(server, history, rest),
        (&Method::POST | &Method::PATCH | &Method::PUT | &Method::DELETE, ["api", "v1", ..]) => {
            let rest: Vec<String> = segments[2..].iter().map(|s| (*s).to_owned()).collect();
            let body = match read_body(req).await {
                Ok(b) => b,
                Err(reply) => return reply,
            };
            changes::handle(server, &method, &rest, &body, client).await
        }
        (_, ["api", ..] | ["metrics"] | [""]) => {
            text(StatusCode::METHOD_NOT_ALLOWED, "405 Method Not Allowed\n")
        }
        _ => text(StatusCode::NOT_FOUND, "404 Not Found\n"),
    }
}

/// Whether the request may use the admin listener: always without a token in the config;
/// else with `Authorization: Bearer TOKEN`, or, for the dashboard page only, `?token=`.
fn authorized(req: &Request<Incoming>, server: &Server) -> bool {
    let Some(token) = server.admin_token() else {
        return true;
    };
    let token = &token;
    // The scheme is case-insensitive (RFC 9110).
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes())
        .filter(|v| v.len() > 7 && v[..7].eq_ignore_ascii_case(b"bearer "))
        .map(|v| &v[7..]);
    if let Some(given) = bearer {
        return token_matches(token, given);
    }
    if req.method() == Method::GET && req.uri().path() == "/" {
        let query = req.uri().query().unwrap_or("");
        return query
            .split('&')
            .filter_map(|kv| kv.strip_prefix("token="))
            .any(|given| token_matches(token, given.as_bytes()));
    }
    false
}

async fn read_body(req: Request<Incoming>) -> Result<Bytes, Reply> {
    match Limited::new(req.into_body(), BODY_LIMIT).collect().await {
        Ok(b) => Ok(b.to_bytes()),
        Err(e) => Err(error(
            StatusCode::BAD_REQUEST,
            &format!("cannot read the request body: {e} (at most {BODY_LIMIT} bytes)"),
        )),
    }
}

fn page() -> Reply {
    let mut r = Response::new(Full::new(Bytes::from_static(DASHBOARD.as_bytes())));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    // The page loads nothing from elsewhere; say so to the browser too.
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:",
        ),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn text(status: StatusCode, body: &'static str) -> Reply {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// A JSON answer.
fn json(status: StatusCode, value: &impl serde::Serialize) -> Reply {
    match serde_json::to_vec_pretty(value) {
        Ok(body) => {
            let mut r = Response::new(Full::new(Bytes::from(body)));
            *r.status_mut() = status;
            let h = r.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            h.insert(
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            );
            r
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

/// A JSON error: `{"error": "..."}`.
fn error(status: StatusCode, message: &str) -> Reply {
    json(status, &serde_json::json!({ "error": message }))
}
