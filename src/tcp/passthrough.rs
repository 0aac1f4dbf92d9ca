//! `tls-passthrough` listeners: the pool is chosen by the ClientHello's SNI (routes' `host`
//! as in HTTP; a route without host is the default) and the TLS stream, ClientHello first,
//! goes to a backend undecrypted, so backends that hold their own keys are still balanced.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpStream;
use tracing::{debug, warn};

use super::client_hello;
use super::proxy::{self, Client};
use super::proxy_protocol::TlsInfo;
use crate::http::Router;

/// Serves one passthrough connection; `client` is the client's address (from a PROXY header
/// when the listener trusts one), `hello_timeout` bounds reading the ClientHello.
pub async fn serve(
    mut stream: TcpStream,
    client: SocketAddr,
    router: &Router,
    hello_timeout: Duration,
) {
    let hello = match client_hello::read(&mut stream, hello_timeout).await {
        Ok(hello) => hello,
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            debug!("connection closed before a ClientHello");
            return;
        }
        Err(e) => {
            warn!(error = %e, "no valid ClientHello; closing");
            return;
        }
    };
    let sni = hello.sni.as_deref();
    let Some(pool) = router.find(sni, "/") else {
        warn!(sni = sni.unwrap_or("-"), "no route for this SNI; closing");
        return;
    };
    debug!(sni = sni.unwrap_or("-"), pool = %pool.name, "passthrough");
    let Ok(local) = stream.local_addr() else {
        return;
    };
    let client = Client {
        addr: client,
        local,
        tls: TlsInfo {
            sni: hello.sni.clone(),
            version: None,
        },
    };
    proxy::forward(stream, &client, pool, &hello.bytes).await;
}
