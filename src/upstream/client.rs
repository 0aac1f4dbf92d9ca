//! The connection pool to one backend (HTTP/1.1 keep-alive or HTTP/2), and upstream errors
//! classified by what the client should be told.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::{Request, Response, StatusCode, Uri};
use hyper::body::Incoming;

use super::h1_pool::{Dialer, H1Pool};
use super::replay::ReplayBody;
use super::response_heads::AmbiguousResponse;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::config::{self, UpstreamProtocol};

use super::upstream_tls;
pub use super::upstream_tls::{BackendTls, TlsHandshakeError, UpstreamStream};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Connections to one backend. A pool per worker (`crate::workers`): a request reuses only
/// connections of the worker it runs on, whose tasks run there too, so no request waits on
/// another thread.
#[derive(Clone, Debug)]
pub struct UpstreamClient {
    pools: Pools,
    response_timeout: Duration,
}

#[derive(Clone, Debug)]
enum Pools {
    /// HTTP/1.1: terminus's own pool on hyper's client connection (`h1_pool`).
    Http1(Arc<[H1Pool]>),
    /// HTTP/2: hyper-util's pool, which multiplexes requests over a connection per client
    /// host. Requests keep the client's host in their URI (the backend gets it as
    /// `:authority`); the connector ignores it and dials the backend.
    Http2(Box<[Client<BackendConnector, ReplayBody>]>),
}

/// hyper's TCP connector for HTTP/2 pools (prior knowledge), always dialling one backend
/// whatever the request's URI names, and wrapping the connection in TLS when the pool has
/// `[pool.tls]`.
#[derive(Clone, Debug)]
struct BackendConnector {
    inner: HttpConnector,
    target: Uri,
    tls: Option<(BackendTls, rustls::pki_types::ServerName<'static>)>,
    /// Bounds the TLS handshake, as `inner`'s own timeout bounds the TCP connect.
    handshake_timeout: Duration,
    /// The largest response head hyper accepts, and its most fields.
    max_head: usize,
    max_headers: usize,
}

impl tower_service::Service<Uri> for BackendConnector {
    type Response = UpstreamStream;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<UpstreamStream, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, _requested: Uri) -> Self::Future {
        // hyper calls the connector while polling the request that needs the connection, so
        // the request's slot is in scope here.
        let slot = CONNECT_TIME.try_with(Arc::clone).ok();
        let started = Instant::now();
        let tcp = self.inner.call(self.target.clone());
        let tls = self.tls.clone();
        let timeout = self.handshake_timeout;
        let (max_head, max_headers) = (self.max_head, self.max_headers);
        Box::pin(async move {
            let tcp = tcp.await?.into_inner();
            let stream = match tls {
                None => UpstreamStream::plain(tcp, true, max_head, max_headers),
                Some((tls, name)) => {
                    let stream = tls.handshake(tcp, name, timeout).await?;
                    UpstreamStream::tls(stream, true, max_head, max_headers)
                }
            };
            if let Some(slot) = slot {
                let ns = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
                slot.store(ns.max(1), Ordering::Relaxed);
            }
            Ok(stream)
        })
    }
}

tokio::task_local! {
    /// Where the connector notes how long the connection for the current request took to
    /// open (nanoseconds, 0: no new connection was opened).
    static CONNECT_TIME: Arc<AtomicU64>;
}

/// Why a request to a backend failed, and so what the client gets.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("connection refused by the backend")]
    Refused,
    #[error("connecting to the backend timed out")]
    ConnectTimeout,
    #[error("no response headers from the backend within {0:?}")]
    ResponseTimeout(Duration),
    #[error("the backend reset the connection")]
    Reset,
    #[error("the backend closed the connection before answering")]
    Closed,
    #[error("the backend sent an invalid response: {0}")]
    InvalidResponse(String),
    #[error("cannot connect to the backend: {0}")]
    Connect(String),
    /// The TLS handshake failed: verification, an alert from the backend, or ALPN.
    #[error("TLS to the backend failed: {0}")]
    Tls(String),
    #[error("request to the backend failed: {0}")]
    Other(String),
    /// Terminus itself is out of file descriptors (or memory for sockets): not the
    /// backend's fault, and another backend would fail the same way.
    #[error("terminus cannot open a connection: {0}")]
    NoResources(String),
    /// The client's body broke the rules (too large, too slow): the client's fault.
    #[error("{0}")]
    ClientBody(super::replay::ClientBodyError),
}

impl UpstreamError {
    /// A short label for logs: why the request ended without the backend's answer.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Refused => "upstream_refused",
            Self::ConnectTimeout => "upstream_connect_timeout",
            Self::ResponseTimeout(_) => "upstream_timeout",
            Self::Reset => "upstream_reset",
            Self::Closed => "upstream_closed",
            Self::InvalidResponse(_) => "upstream_invalid_response",
            Self::Connect(_) => "upstream_connect_error",
            Self::Tls(_) => "upstream_tls",
            Self::Other(_) => "upstream_error",
            Self::ClientBody(e) => e.reason(),
            Self::NoResources(_) => "local_resources",
        }
    }

    /// The status the client gets: 504 for timeouts, 502 for everything else.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::ConnectTimeout | Self::ResponseTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            Self::ClientBody(e) => e.status(),
            Self::NoResources(_) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_GATEWAY,
        }
    }

    /// Whether the request may go to another backend: always when nothing was sent (the
    /// connection failed), and for idempotent methods when the connection broke before any
    /// response byte. Never after a timeout or an invalid answer. A failed TLS handshake
    /// sent no request the backend could act on, and another backend may hold a good
    /// certificate, so it is retried like a refused connection.
    pub fn safe_to_retry(&self, method: &http::Method) -> bool {
        use http::Method;
        match self {
            Self::Refused | Self::ConnectTimeout | Self::Connect(_) | Self::Tls(_) => true,
            Self::Reset | Self::Closed => matches!(
                *method,
                Method::GET
                    | Method::HEAD
                    | Method::OPTIONS
                    | Method::PUT
                    | Method::DELETE
                    | Method::TRACE
            ),
            _ => false,
        }
    }

    /// What `err` (with its sources) means for the client; `connect`: it happened while
    /// opening the connection.
    pub(super) fn classify(err: &(dyn std::error::Error + 'static), connect: bool) -> Self {
        let mut source = Some(err);
        while let Some(s) = source {
            if let Some(e) = s.downcast_ref::<super::replay::ClientBodyError>() {
                return Self::ClientBody(*e);
            }
            if let Some(tls) = s.downcast_ref::<TlsHandshakeError>() {
                return Self::Tls(tls.0.clone());
            }
            if let Some(io) = s.downcast_ref::<std::io::Error>() {
                if let Some(e) = io
                    .get_ref()
                    .and_then(|e| e.downcast_ref::<AmbiguousResponse>())
                {
                    return Self::InvalidResponse(e.to_string());
                }
                // EMFILE, ENFILE, ENOBUFS, ENOMEM: terminus's own limits, not the backend.
                if matches!(io.raw_os_error(), Some(24 | 23 | 105 | 12)) {
                    return Self::NoResources(io.to_string());
                }
                // TLS 1.3 ends the client's handshake before the backend has checked the
                // client certificate: its refusal arrives as an alert on the first read. Only
                // alerts a backend sends during a handshake count, so the backend never acted
                // on the request and a retry is safe.
                if let Some(e) = upstream_tls::rustls_error(io) {
                    if upstream_tls::is_handshake_refusal(e) {
                        return Self::Tls(upstream_tls::describe(e));
                    }
                }
                use std::io::ErrorKind::*;
                match io.kind() {
                    ConnectionRefused => return Self::Refused,
                    TimedOut => return Self::ConnectTimeout,
                    ConnectionReset | BrokenPipe | ConnectionAborted => return Self::Reset,
                    _ => {}
                }
            }
            if let Some(h) = s.downcast_ref::<hyper::Error>() {
                // Canceled: the connection closed before the request went out.
                if h.is_incomplete_message() || h.is_canceled() {
                    return Self::Closed;
                }
                if h.is_parse() || h.is_parse_status() {
                    return Self::InvalidResponse(h.to_string());
                }
            }
            source = s.source();
        }
        let detail = chain(err);
        if connect {
            Self::Connect(detail)
        } else {
            Self::Other(detail)
        }
    }
}

fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

impl UpstreamClient {
    /// The connection pool to `backend`, over TLS when `tls` is given (built once per pool).
    pub fn new(pool: &config::Pool, backend: SocketAddr, tls: Option<&BackendTls>) -> Self {
        // A response head must fit the read buffer: a larger one is an error (502). hyper's
        // smallest buffer is 8 KiB.
        let max_head = pool.max_response_header_bytes.max(8192);
        let tls = tls.map(|t| (t.clone(), t.server_name_for(backend)));
        let workers = crate::workers::count();
        let pools = if pool.protocol == UpstreamProtocol::Http1 {
            let dialer = Dialer {
                address: backend,
                tls,
                connect_timeout: pool.timeouts.connect,
                max_head,
                max_headers: pool.max_response_headers,
            };
            let idle = pool.timeouts.upstream_idle;
            Pools::Http1(
                (0..workers)
                    .map(|_| H1Pool::new(dialer.clone(), pool.max_idle_per_backend, idle))
                    .collect(),
            )
        } else {
            let mut connector = HttpConnector::new();
            connector.set_nodelay(true);
            connector.set_connect_timeout(Some(pool.timeouts.connect));
            connector.enforce_http(true);
            let mut builder = Client::builder(TokioExecutor::new());
            builder
                .pool_timer(TokioTimer::new())
                .timer(TokioTimer::new())
                .pool_idle_timeout(pool.timeouts.upstream_idle)
                .pool_max_idle_per_host(pool.max_idle_per_backend)
                // The client's Host header is forwarded as it came; never make one up.
                .set_host(false)
                .http2_only(true)
                .http2_max_header_list_size(
                    u32::try_from(pool.max_response_header_bytes).unwrap_or(u32::MAX),
                );
            let connector = BackendConnector {
                inner: connector,
                target: Uri::try_from(format!("http://{backend}/")).unwrap_or_default(),
                tls,
                handshake_timeout: pool.timeouts.connect,
                max_head,
                max_headers: pool.max_response_headers,
            };
            Pools::Http2(
                (0..workers)
                    .map(|_| builder.build(connector.clone()))
                    .collect(),
            )
        };
        Self {
            pools,
            response_timeout: pool.timeouts.response,
        }
    }

    /// Sends a request and waits for the response headers.
    pub async fn send(
        &self,
        req: Request<ReplayBody>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        self.send_timed(req).await.0
    }

    /// `send`, also telling how long opening a new connection for it took (TCP and TLS);
    /// `None` when it went on a pooled connection.
    pub async fn send_timed(
        &self,
        req: Request<ReplayBody>,
    ) -> (Result<Response<Incoming>, UpstreamError>, Option<Duration>) {
        let timeout = self.response_timeout;
        // Never empty: `new` builds one per worker, at least one.
        let worker = crate::workers::index();
        match &self.pools {
            Pools::Http1(pools) => {
                let pool = &pools[worker % pools.len()];
                match tokio::time::timeout(timeout, pool.send(req)).await {
                    Err(_) => (Err(UpstreamError::ResponseTimeout(timeout)), None),
                    Ok(sent) => sent,
                }
            }
            Pools::Http2(clients) => {
                let client = &clients[worker % clients.len()];
                let slot = Arc::new(AtomicU64::new(0));
                // Boxed, so that the futures of HTTP/1.1 requests do not carry its size.
                let request = Box::pin(CONNECT_TIME.scope(slot.clone(), client.request(req)));
                let result = match tokio::time::timeout(timeout, request).await {
                    Err(_) => Err(UpstreamError::ResponseTimeout(timeout)),
                    Ok(Err(e)) => Err(UpstreamError::classify(&e, e.is_connect())),
                    Ok(Ok(resp)) => Ok(resp),
                };
                let ns = slot.load(Ordering::Relaxed);
                (result, (ns > 0).then(|| Duration::from_nanos(ns)))
            }
        }
    }
}
