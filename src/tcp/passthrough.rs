//! `tls-passthrough` listeners: the pool is chosen by the ClientHello's SNI (routes' `host`
//! as in HTTP; a route without host is the default) and the TLS stream, ClientHello first,
//! goes to a backend undecrypted, so backends that hold their own keys are still balanced.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpStream;
use tracing::{debug, warn};

use super::client_hello;
use super::proxy::{self, Client, Forwarded};
use super::proxy_protocol::TlsInfo;
use crate::http::Router;

/// Serves one passthrough connection; `client` is the client's address (from a PROXY header
/// when the listener trusts one), `hello_timeout` bounds reading the ClientHello.
/// Returns what became of the connection and the SNI it asked for.
pub async fn serve(
    mut stream: TcpStream,
    client: SocketAddr,
    router: &Router,
    hello_timeout: Duration,
) -> (Forwarded, Option<String>) {
    let ended = |why| {
        (
            Forwarded {
                termination: Some(why),
                ..Forwarded::default()
            },
            None,
        )
    };
    let hello = match client_hello::read(&mut stream, hello_timeout).await {
        Ok(hello) => hello,
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            debug!("connection closed before a ClientHello");
            return ended("client_closed");
        }
        Err(e) => {
            warn!(error = %e, "no valid ClientHello; closing");
            return ended("no_client_hello");
        }
    };
    let sni = hello.sni.as_deref();
    let Some(pool) = router.find(sni, "/") else {
        warn!(sni = sni.unwrap_or("-"), "no route for this SNI; closing");
        let (done, _) = ended("no_route");
        return (done, hello.sni.clone());
    };
    debug!(sni = sni.unwrap_or("-"), pool = %pool.name, "passthrough");
    let Ok(local) = stream.local_addr() else {
        return ended("io_error");
    };
    let client = Client {
        addr: client,
        local,
        tls: TlsInfo {
            sni: hello.sni.clone(),
            version: None,
        },
    };
    let done = proxy::forward(stream, &client, pool, &hello.bytes).await;
    (done, hello.sni)
}
