//! One worker's keep-alive connections to one HTTP/1.1 backend, on hyper's client connection:
//! a request takes the most recently used idle connection, or dials a new one. No channel hop
//! to a pool task, no pool key to hash, no connector to clone: a request's whole way to the
//! backend is a lock of this worker's list and the connection's own task.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tracing::debug;

use super::client::{BackendTls, UpstreamError, UpstreamStream};
use super::replay::ReplayBody;

/// How a connection to the backend is opened.
#[derive(Clone, Debug)]
pub(super) struct Dialer {
    pub address: SocketAddr,
    pub tls: Option<(BackendTls, ServerName<'static>)>,
    /// Bounds the TCP connect, and the TLS handshake on its own.
    pub connect_timeout: Duration,
    /// The largest response head, and its most fields.
    pub max_head: usize,
    pub max_headers: usize,
}

/// The connections: shared by the requests of one worker (see `crate::workers`).
#[derive(Debug)]
pub(super) struct H1Pool {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    dialer: Dialer,
    /// Connections that answered their last request's head: idle ones, and ones whose
    /// response body is still on its way (not ready, so not taken). Newest last.
    conns: Mutex<Vec<Pooled>>,
    max_idle: usize,
    idle_timeout: Duration,
    /// Whether the task that closes connections idle for `idle_timeout` runs.
    reaping: std::sync::atomic::AtomicBool,
}

#[derive(Debug)]
struct Pooled {
    send: SendRequest<ReplayBody>,
    /// When it last came back to the list.
    since: Instant,
}

impl H1Pool {
    pub fn new(dialer: Dialer, max_idle: usize, idle_timeout: Duration) -> Self {
        Self {
            shared: Arc::new(Shared {
                dialer,
                conns: Mutex::new(Vec::new()),
                max_idle,
                idle_timeout,
                reaping: Default::default(),
            }),
        }
    }

    /// Sends `req` and waits for the response head; also says how long opening a new
    /// connection took (`None`: it went on a pooled one).
    pub async fn send(
        &self,
        req: Request<ReplayBody>,
    ) -> (Result<Response<Incoming>, UpstreamError>, Option<Duration>) {
        let mut req = req;
        // A pooled connection that closed before the request went out hands the request back;
        // it then goes on a new connection (the second pass always dials).
        for pass in 0..2 {
            let pooled = if pass == 0 { self.checkout() } else { None };
            let (mut send, connect) = match pooled {
                Some(send) => (send, None),
                None => {
                    let started = Instant::now();
                    // Boxed: the connect and TLS handshake futures are large, and every
                    // request's future (boxed per request) would carry them unboxed.
                    match Box::pin(self.shared.dial()).await {
                        Ok(send) => (send, Some(started.elapsed())),
                        Err(e) => return (Err(e), None),
                    }
                }
            };
            match send.try_send_request(req).await {
                Ok(response) => {
                    self.checkin(send);
                    return (Ok(response), connect);
                }
                Err(mut e) => match e.take_message() {
                    Some(back) if connect.is_none() => {
                        debug!(backend = %self.shared.dialer.address, "a pooled connection closed before the request went out; sending on a new one");
                        req = back;
                    }
                    _ => return (Err(UpstreamError::classify(e.error(), false)), connect),
                },
            }
        }
        // Unreachable: the second pass dialled, and so returned.
        (
            Err(UpstreamError::Other("no connection to the backend".into())),
            None,
        )
    }

    /// The newest ready connection; closed ones found on the way are dropped.
    fn checkout(&self) -> Option<SendRequest<ReplayBody>> {
        let mut conns = self.shared.lock();
        let mut i = conns.len();
        while i > 0 {
            i -= 1;
            // `remove`, not `swap_remove`: the list stays oldest first, which `trim` relies on.
            let c = &conns[i];
            if c.send.is_ready() {
                return Some(conns.remove(i).send);
            }
            if c.send.is_closed() {
                conns.remove(i);
            }
        }
        None
    }

    /// Back to the list once the response head is in: the connection becomes ready (and can
    /// be taken) when its body has been read. Beyond `max_idle`, the oldest idle connections
    /// are closed, here and by the reaper; connections still sending a body are never cut.
    fn checkin(&self, send: SendRequest<ReplayBody>) {
        let mut conns = self.shared.lock();
        conns.push(Pooled {
            send,
            since: Instant::now(),
        });
        trim(&mut conns, self.shared.max_idle);
        drop(conns);
        if !self
            .shared
            .reaping
            .swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            tokio::spawn(reap(Arc::downgrade(&self.shared)));
        }
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Pooled>> {
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Opens a connection (TCP, then TLS when the pool has `[pool.tls]`) and starts the task
    /// that drives it.
    async fn dial(&self) -> Result<SendRequest<ReplayBody>, UpstreamError> {
        let d = &self.dialer;
        let tcp = match tokio::time::timeout(d.connect_timeout, TcpStream::connect(d.address)).await
        {
            Err(_) => return Err(UpstreamError::ConnectTimeout),
            Ok(Err(e)) => return Err(UpstreamError::classify(&e, true)),
            Ok(Ok(tcp)) => tcp,
        };
        // Requests and answers are small writes: never hold one back for Nagle.
        let _ = tcp.set_nodelay(true);
        let stream = match &d.tls {
            None => UpstreamStream::plain(tcp, false, d.max_head, d.max_headers),
            Some((tls, name)) => match tls.handshake(tcp, name.clone(), d.connect_timeout).await {
                Ok(s) => UpstreamStream::tls(s, false, d.max_head, d.max_headers),
                Err(e) => return Err(UpstreamError::classify(e.as_ref(), true)),
            },
        };
        let mut builder = http1::Builder::new();
        builder.max_buf_size(d.max_head).max_headers(d.max_headers);
        let (send, conn) = builder
            .handshake(stream)
            .await
            .map_err(|e| UpstreamError::classify(&e, true))?;
        let address = d.address;
        tokio::spawn(async move {
            // With upgrades: after a 101 the connection is handed to the tunnel.
            if let Err(e) = conn.with_upgrades().await {
                debug!(backend = %address, error = %e, "backend connection ended with an error");
            }
        });
        Ok(send)
    }
}

/// Closes connections idle for longer than `idle_timeout`, and the oldest idle ones beyond
/// `max_idle` (connections whose body was still on its way at `checkin`), until the pool is
/// gone (a reload replaces it).
async fn reap(shared: Weak<Shared>) {
    let period = match shared.upgrade() {
        Some(s) => (s.idle_timeout / 2).clamp(Duration::from_millis(100), Duration::from_secs(1)),
        None => return,
    };
    loop {
        tokio::time::sleep(period).await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let timeout = shared.idle_timeout;
        let mut conns = shared.lock();
        conns.retain(|c| {
            let expired = c.send.is_ready() && c.since.elapsed() >= timeout;
            !(c.send.is_closed() || expired)
        });
        trim(&mut conns, shared.max_idle);
    }
}

/// Closes the oldest idle connections beyond `max_idle`; never one still sending a body.
fn trim(conns: &mut Vec<Pooled>, max_idle: usize) {
    let Some(mut excess) = conns.len().checked_sub(max_idle).filter(|&n| n > 0) else {
        return;
    };
    conns.retain(|c| {
        let drop = excess > 0 && (c.send.is_ready() || c.send.is_closed());
        excess -= usize::from(drop);
        !drop
    });
}
