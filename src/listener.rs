//! Listeners: bind, accept, the TLS handshake under a deadline, and one span per connection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tokio_rustls::LazyConfigAcceptor;
use tracing::{debug, info_span, warn, Instrument};

use crate::access_log::{AccessLog, Kind, Record};
use crate::admission::Admission;
use crate::config::{AdminToken, IpNet, ListenerProtocol};
use crate::http::{self, ConnInfo, Router};
use crate::metrics::{ConnectionGauge, FailureLabels, HandshakeLabels, Metrics};
use crate::shutdown::Watch;
use crate::tcp;
use crate::tls::{session, ClientCert, ServerTls, SessionInfo};

/// What a listener needs to serve its connections.
pub struct ListenerState {
    pub name: Arc<str>,
    pub tls: Option<ServerTls>,
    pub router: Arc<Router>,
    /// The listener's current router, one cell shared by every generation: a reload stores
    /// the new router here, so requests on connections opened before it route by the new
    /// routes and pools too.
    pub routes: Arc<ArcSwap<Router>>,
    pub tls_handshake_timeout: Duration,
    /// What bounds each HTTP connection (header deadline, send stall, `[limits]`).
    pub http: http::ConnSettings,
    /// Longest wait for the next piece of a request body.
    pub client_body_timeout: Duration,
    /// HTTP after TLS (`Https`, or `Http` without TLS), bytes (`Tcp`), or the TLS stream
    /// itself (`TlsPassthrough`).
    pub protocol: ListenerProtocol,
    /// Sources that must send a PROXY protocol header; empty: none is read.
    pub accept_proxy_protocol: Vec<IpNet>,
    pub metrics: Metrics,
    pub access_log: Option<Arc<AccessLog>>,
    /// Every response carries `x-terminus-decision`.
    pub explain: bool,
    /// Requests carrying it in `x-terminus-explain` get `x-terminus-decision` too.
    pub admin_token: Option<AdminToken>,
}

impl ListenerState {
    /// What every request on a connection shares, for a connection from `client`.
    fn conn_info(
        &self,
        client: SocketAddr,
        tls: Option<SessionInfo>,
        client_cert: Option<Arc<ClientCert>>,
        authority_check: Option<crate::tls::AuthorityCheck>,
    ) -> Arc<ConnInfo> {
        Arc::new(ConnInfo {
            client,
            proto: if tls.is_some() { "https" } else { "http" },
            listener: self.name.clone(),
            routes: self.routes.clone(),
            client_cert,
            authority_check,
            tls,
            metrics: self.metrics.clone(),
            access_log: self.access_log.clone(),
            explain: self.explain,
            admin_token: self.admin_token.clone(),
            limits: self.http.limits,
            client_body_timeout: self.client_body_timeout,
            activity: Default::default(),
            raw_verdicts: Default::default(),
        })
    }
}

/// Accepts until shutdown begins or `stop` fires (the listener left the config on a
/// reload); each connection holds a copy of the shutdown watch, so draining waits for the
/// accept loop and every connection. Each connection loads the listener's current state once
/// and keeps it, so a reload changes only what later connections see.
pub async fn accept_loop(
    listener: TcpListener,
    current: Arc<ArcSwap<ListenerState>>,
    admission: Arc<Admission>,
    mut shutdown: Watch,
    mut stop: Watch,
) {
    loop {
        // At the connection limit, stop accepting: new clients wait in the kernel's queue.
        let max = current.load().http.limits.max_connections;
        // The slot is taken before accepting: with an accept loop per worker on the same
        // listener, checking for room first and counting after could admit one too many.
        let (slot, accepted) = tokio::select! {
            a = async {
                let slot = admission.reserve(max).await;
                (slot, listener.accept().await)
            } => a,
            _ = shutdown.signalled() => break,
            _ = stop.signalled() => break,
        };
        let state = current.load_full();
        match accepted {
            Ok((stream, client)) => {
                let per_client = state.http.limits.max_connections_per_client;
                let Some(admitted) = slot.admit(client.ip(), per_client) else {
                    // Closed at once: one address may not take the listener for itself.
                    let labels = FailureLabels {
                        listener: state.name.clone(),
                        reason: "per_client_limit",
                    };
                    state
                        .metrics
                        .connections_refused
                        .get_or_create(&labels)
                        .inc();
                    debug!(listener = %state.name, %client, "connection refused: per-client limit");
                    drop(stream);
                    continue;
                };
                let span = info_span!("conn", listener = %state.name, client = %client);
                let watch = shutdown.clone();
                tokio::spawn(
                    async move {
                        handle(stream, client, state, watch).await;
                        drop(admitted);
                    }
                    .instrument(span),
                );
            }
            Err(e) => {
                drop(slot);
                // Out of file descriptors and the like: wait a little instead of spinning.
                warn!(listener = %state.name, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn handle(mut stream: TcpStream, peer: SocketAddr, state: Arc<ListenerState>, watch: Watch) {
    let _ = stream.set_nodelay(true);
    let _open = ConnectionGauge::open(&state.metrics, &state.name);
    let Some(client) = proxy_header(&mut stream, peer, &state).await else {
        return;
    };
    if state.protocol == ListenerProtocol::TlsPassthrough {
        let (time, started) = (std::time::SystemTime::now(), std::time::Instant::now());
        let router = &state.router;
        let (done, sni) =
            tcp::passthrough::serve(stream, client, router, state.tls_handshake_timeout).await;
        if let Some(log) = &state.access_log {
            let mut record = l4_record(&state, client, done, time, started);
            record.sni = sni;
            log.log(record);
        }
        return;
    }
    let Some(server_tls) = &state.tls else {
        let conn = state.conn_info(client, None, None, None);
        http::serve_connection(stream, false, conn, &state.http, watch).await;
        return;
    };
    let started = std::time::Instant::now();
    let handshaken =
        tokio::time::timeout(state.tls_handshake_timeout, handshake(server_tls, stream)).await;
    let failure = |reason| {
        let labels = FailureLabels {
            listener: state.name.clone(),
            reason,
        };
        state
            .metrics
            .handshake_failures
            .get_or_create(&labels)
            .inc();
    };
    let tls = match handshaken {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            failure(session::failure_reason(&e));
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
            failure("timeout");
            warn!(timeout = ?state.tls_handshake_timeout, "TLS handshake timed out");
            return;
        }
    };
    let (_, session) = tls.get_ref();
    let h2 = session.alpn_protocol() == Some(b"h2");
    let kind = session.handshake_kind();
    server_tls.stats().record(kind);
    let info = SessionInfo::of(session, started.elapsed());
    let labels = HandshakeLabels {
        listener: state.name.clone(),
        version: info.version.unwrap_or("unknown"),
        cipher: info.cipher.unwrap_or("unknown"),
        kind: if info.resumed { "resumed" } else { "full" },
    };
    state.metrics.handshakes.get_or_create(&labels).inc();
    debug!(sni = session.server_name().unwrap_or("-"), version = ?session.protocol_version(), h2, ?kind, "TLS established");
    if state.protocol == ListenerProtocol::Tcp {
        let time = std::time::SystemTime::now() - info.handshake;
        let done = serve_tcp(tls, client, &state).await;
        if let Some(log) = &state.access_log {
            let mut record = l4_record(&state, client, done, time, started);
            record.sni = info.sni;
            record.tls_version = info.version;
            record.cipher = info.cipher;
            record.resumed = Some(info.resumed);
            record.alpn = info.alpn;
            record.tls_handshake = Some(info.handshake);
            log.log(record);
        }
        return;
    }
    // The leaf rustls verified (also on a resumed session), read once for every request.
    let client_cert = session
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|leaf| Arc::new(ClientCert::from_der(leaf)));
    let authority_check = server_tls.authority_check(session.server_name());
    let conn = state.conn_info(client, Some(info), client_cert, authority_check);
    http::serve_connection(tls, h2, conn, &state.http, watch).await;
}

/// Reads the ClientHello, picks the configuration for this client, and completes the handshake.
async fn handshake(tls: &ServerTls, stream: TcpStream) -> std::io::Result<TlsStream<TcpStream>> {
    let start = LazyConfigAcceptor::new(rustls::server::Acceptor::default(), stream).await?;
    let config = tls.config_for(&start.client_hello());
    start.into_stream(config).await
}

/// The client's address: the peer's, or, on a listener with `accept_proxy_protocol`, the one
/// in the PROXY header a trusted peer sends (within the TLS handshake timeout). `None`
/// closes the connection: an untrusted peer, or a missing or invalid header.
async fn proxy_header(
    stream: &mut TcpStream,
    peer: SocketAddr,
    state: &ListenerState,
) -> Option<SocketAddr> {
    let trusted = &state.accept_proxy_protocol;
    let read = tcp::proxy_protocol::accept(stream, peer, trusted);
    match tokio::time::timeout(state.tls_handshake_timeout, read).await {
        Ok(Ok(client)) => {
            if client != peer {
                debug!(%client, "client address from the PROXY header");
            }
            Some(client)
        }
        Ok(Err(e)) => {
            warn!(error = %e, "PROXY protocol refused; closing");
            None
        }
        Err(_) => {
            warn!("PROXY protocol header timed out; closing");
            None
        }
    }
}

/// The access log line of an L4 connection that started at `time` (`started` on the
/// monotonic clock).
fn l4_record(
    state: &ListenerState,
    client: SocketAddr,
    done: tcp::proxy::Forwarded,
    time: std::time::SystemTime,
    started: std::time::Instant,
) -> Record {
    Record {
        time,
        kind: Kind::Tcp,
        listener: state.name.to_string(),
        client: Some(client),
        bytes_in: done.bytes_in,
        bytes_out: done.bytes_out,
        pool: done.pool,
        backend: done.backend,
        upstream_connect: done.connect,
        total: started.elapsed(),
        termination: done.termination.map(str::to_owned),
        ..Record::default()
    }
}

/// A `tcp` listener's connection after the handshake: bytes to the listener's one pool.
async fn serve_tcp(
    tls: TlsStream<TcpStream>,
    client: SocketAddr,
    state: &ListenerState,
) -> tcp::proxy::Forwarded {
    let Some(pool) = state.router.find(None, "/").cloned() else {
        warn!("tcp listener without a route; closing");
        return tcp::proxy::Forwarded {
            termination: Some("no_route"),
            ..Default::default()
        };
    };
    let (tcp, session) = tls.get_ref();
    let Ok(local) = tcp.local_addr() else {
        return tcp::proxy::Forwarded {
            termination: Some("io_error"),
            ..Default::default()
        };
    };
    let info = tcp::proxy_protocol::TlsInfo {
        sni: session.server_name().map(str::to_owned),
        version: session
            .protocol_version()
            .and_then(tcp::proxy_protocol::version_name),
    };
    let client = tcp::proxy::Client {
        addr: client,
        local,
        tls: info,
    };
    tcp::proxy::forward(tls, &client, &pool, &[]).await
}
