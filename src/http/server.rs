//! Serving one client connection with hyper: HTTP/2 when ALPN chose `h2`, else HTTP/1.1 with
//! keep-alive and upgrades. On shutdown the connection finishes its in-flight requests and closes.

use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::debug;

use super::proxy::{self, ConnInfo};
use super::stall::StallGuard;
use crate::config::Limits;
use crate::shutdown::Watch;

/// hyper's built-in bound on request header fields.
const HYPER_MAX_HEADERS: usize = 100;

/// What bounds one client connection.
#[derive(Debug, Clone, Copy)]
pub struct ConnSettings {
    /// For a whole request header block, and for an idle keep-alive connection.
    pub header_timeout: Duration,
    /// Longest a write to the client may stay blocked.
    pub send_timeout: Duration,
    /// How long a connection with no request in progress stays open.
    pub keepalive: Duration,
    pub limits: Limits,
}

/// Serves HTTP on `io` until the client closes or shutdown ends the connection. The protocol
/// is fixed up front, never sniffed from the bytes: HTTP/2 only when `h2` is true. Every
/// limit is set explicitly here rather than left to hyper's defaults.
pub async fn serve_connection<IO>(
    io: IO,
    h2: bool,
    conn: Arc<ConnInfo>,
    settings: &ConnSettings,
    mut shutdown: Watch,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let idle = conn.clone();
    let raw = conn.clone();
    let keepalive = settings.keepalive;
    // Boxed per request: hyper's HTTP/1 dispatcher keeps a slot the size of the service's
    // future for the whole life of a connection, idle or not, and `handle`'s future is about
    // 2.7 KiB. A box costs one allocation per request and keeps idle connections small.
    let service = service_fn(move |req| Box::pin(proxy::handle(req, conn.clone())));
    let io = TokioIo::new(StallGuard::new(io, settings.send_timeout));
    let limits = &settings.limits;
    // Both arms run the same select: serve until done, or start a graceful close on shutdown
    // and keep polling until the connection has finished.
    macro_rules! serve {
        ($conn:expr) => {{
            let conn = $conn;
            tokio::pin!(conn);
            tokio::select! {
                res = conn.as_mut() => res,
                _ = shutdown.signalled() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
                // Idle for `keepalive`: close (HTTP/2: GOAWAY) as a shutdown would.
                _ = idle.activity.idle_for(keepalive) => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            }
        }};
    }
    let result = if h2 {
        let mut builder = http2::Builder::new(TokioExecutor::new());
        builder
            .timer(TokioTimer::new())
            .max_concurrent_streams(limits.h2_max_concurrent_streams)
            // HPACK-decoded size of a header list; also bounds CONTINUATION floods.
            .max_header_list_size(limits.h2_max_header_list_bytes)
            // Rapid reset (CVE-2023-44487) and reset floods: GOAWAY beyond these.
            .max_pending_accept_reset_streams(limits.h2_max_pending_reset_streams)
            .max_local_error_reset_streams(limits.h2_max_local_error_reset_streams)
            // Bounds what a stream may buffer for a client that does not read.
            .max_send_buf_size(1024 * 1024);
        serve!(builder.serve_connection(io, service))
    } else {
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(settings.header_timeout)
            .max_header_size(limits.max_header_bytes)
            // The read buffer must hold a whole header block; the default 400 KiB is plenty
            // unless `max_header_bytes` asks for more.
            .max_buf_size(limits.max_header_bytes.max(400 * 1024) + 8192)
            .keep_alive(true);
        // hyper's own limit is 100 fields, parsed on the stack; another value moves the
        // parse to the heap (about 5% slower, says hyper), so it is set only when it differs.
        if limits.max_headers != HYPER_MAX_HEADERS {
            builder.max_headers(limits.max_headers);
        }
        // hyper reads the stream as it is; the raw reader beside it sees the same bytes.
        let io = TokioIo::new(super::raw_framing::RawFraming::new(io.into_inner(), raw));
        serve!(builder.serve_connection(io, service).with_upgrades())
    };
    if let Err(e) = result {
        debug!(error = %e, "connection ended with an error");
    }
}
