//! Listeners: bind, accept, the TLS handshake under a deadline, and one span per connection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tokio_rustls::LazyConfigAcceptor;
use tracing::{debug, info_span, warn, Instrument};

use crate::http::{self, ConnInfo, Router};
use crate::shutdown::Watch;
use crate::tls::ServerTls;

/// What a listener needs to serve its connections.
pub struct ListenerState {
    pub name: String,
    pub tls: Option<ServerTls>,
    pub router: Arc<Router>,
    pub tls_handshake_timeout: Duration,
    pub client_header_timeout: Duration,
}

/// Accepts until shutdown begins; each connection holds a copy of the watch, so draining
/// waits for the accept loop and every connection.
pub async fn accept_loop(listener: TcpListener, state: Arc<ListenerState>, mut shutdown: Watch) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.signalled() => break,
        };
        match accepted {
            Ok((stream, client)) => {
                let span = info_span!("conn", listener = %state.name, client = %client);
                let state = state.clone();
                let watch = shutdown.clone();
                tokio::spawn(handle(stream, client, state, watch).instrument(span));
            }
            Err(e) => {
                // Out of file descriptors and the like: wait a little instead of spinning.
                warn!(listener = %state.name, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn handle(stream: TcpStream, client: SocketAddr, state: Arc<ListenerState>, watch: Watch) {
    let _ = stream.set_nodelay(true);
    let Some(server_tls) = &state.tls else {
        let conn = Arc::new(ConnInfo {
            client,
            proto: "http",
            router: state.router.clone(),
        });
        http::serve_connection(stream, false, conn, state.client_header_timeout, watch).await;
        return;
    };
    let tls = match tokio::time::timeout(state.tls_handshake_timeout, handshake(server_tls, stream))
        .await
    {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            // A peer that connects and closes (a port check, a TCP health check) is no news.
            use std::io::ErrorKind::{ConnectionReset, UnexpectedEof};
            if matches!(e.kind(), UnexpectedEof | ConnectionReset) {
                debug!(error = %e, "connection closed during the TLS handshake");
            } else {
                warn!(error = %e, "TLS handshake failed");
            }
            return;
        }
        Err(_) => {
            warn!(timeout = ?state.tls_handshake_timeout, "TLS handshake timed out");
            return;
        }
    };
    let (_, session) = tls.get_ref();
    let h2 = session.alpn_protocol() == Some(b"h2");
    let kind = session.handshake_kind();
    server_tls.stats().record(kind);
    debug!(sni = session.server_name().unwrap_or("-"), version = ?session.protocol_version(), h2, ?kind, "TLS established");
    let conn = Arc::new(ConnInfo {
        client,
        proto: "https",
        router: state.router.clone(),
    });
    http::serve_connection(tls, h2, conn, state.client_header_timeout, watch).await;
}

/// Reads the ClientHello, picks the configuration for this client, and completes the handshake.
async fn handshake(tls: &ServerTls, stream: TcpStream) -> std::io::Result<TlsStream<TcpStream>> {
    let start = LazyConfigAcceptor::new(rustls::server::Acceptor::default(), stream).await?;
    let config = tls.config_for(&start.client_hello());
    start.into_stream(config).await
}
