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
use crate::shutdown::Watch;

/// Serves HTTP on `io` until the client closes or shutdown ends the connection. The protocol
/// is fixed up front, never sniffed from the bytes: HTTP/2 only when `h2` is true.
pub async fn serve_connection<IO>(
    io: IO,
    h2: bool,
    conn: Arc<ConnInfo>,
    header_timeout: Duration,
    mut shutdown: Watch,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req| proxy::handle(req, conn.clone()));
    let io = TokioIo::new(io);
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
            }
        }};
    }
    let result = if h2 {
        let mut builder = http2::Builder::new(TokioExecutor::new());
        builder.timer(TokioTimer::new());
        serve!(builder.serve_connection(io, service))
    } else {
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(header_timeout)
            .keep_alive(true);
        serve!(builder.serve_connection(io, service).with_upgrades())
    };
    if let Err(e) = result {
        debug!(error = %e, "connection ended with an error");
    }
}
