//! Serving one client connection with hyper: HTTP/2 when ALPN chose `h2`, else HTTP/1.1 with
//! keep-alive and upgrades; watched so graceful shutdown can let it finish.

use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::Watcher;
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::debug;

use super::proxy::{self, ConnInfo};

/// Serves HTTP on `io` until the client closes or graceful shutdown ends the connection.
/// The protocol is fixed up front (no sniffing): `h2` when ALPN negotiated it.
pub async fn serve_connection<IO>(
    io: IO,
    h2: bool,
    conn: Arc<ConnInfo>,
    header_timeout: Duration,
    watcher: Watcher,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req| proxy::handle(req, conn.clone()));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder = if h2 {
        builder.http2_only()
    } else {
        builder.http1_only()
    };
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .keep_alive(true);
    builder.http2().timer(TokioTimer::new());
    let result = watcher
        .watch(builder.serve_connection_with_upgrades(TokioIo::new(io), service))
        .await;
    if let Err(e) = result {
        debug!(error = %e, "connection ended with an error");
    }
}
