//! Forwarding a client's bytes to a backend of a pool: the backend picked as for HTTP
//! (balancer, health, persistence by source IP), connect failures retried on another
//! backend and reported to outlier detection, then bytes copied both ways with half-close.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::{debug, warn};

use super::proxy_protocol::{self, TlsInfo};
use crate::upstream::backend::InFlight;
use crate::upstream::balancer::{key_hash, PickContext};
use crate::upstream::outlier::Outcome;
use crate::upstream::Pool;

/// What the backend connection needs to know about the client.
pub struct Client {
    /// The client's address (from a PROXY header when the listener trusts one).
    pub addr: SocketAddr,
    /// The listener's address the client connected to.
    pub local: SocketAddr,
    pub tls: TlsInfo,
}

/// What became of one L4 connection, for the access log.
#[derive(Debug, Default)]
pub struct Forwarded {
    pub pool: Option<String>,
    pub backend: Option<String>,
    /// Bytes from the client to the backend, and back.
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// How long finding and connecting to a backend took.
    pub connect: Option<Duration>,
    /// Why the connection ended abnormally; `None` when both sides closed.
    pub termination: Option<&'static str>,
}

/// Connects to a backend of `pool` for `client`, sends the PROXY header the pool asks for
/// and `first` (bytes already read from the client), then copies both ways until both sides
/// have closed. When one side ends its writes, the other's write half is shut down and the
/// other direction stays open (`copy_bidirectional`).
pub async fn forward<S>(
    mut downstream: S,
    client: &Client,
    pool: &Arc<Pool>,
    first: &[u8],
) -> Forwarded
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut done = Forwarded {
        pool: Some(pool.name.clone()),
        ..Forwarded::default()
    };
    let started = Instant::now();
    let Some((mut upstream, in_flight)) = connect(pool, client.addr).await else {
        warn!(pool = %pool.name, "no backend could be reached; closing");
        let _ = downstream.shutdown().await;
        done.termination = Some("no_backend");
        return done;
    };
    done.connect = Some(started.elapsed());
    done.backend = Some(in_flight.backend().name.clone());
    if let Err(e) = preamble(&mut upstream, client, pool, first).await {
        warn!(error = %e, "cannot write to the backend");
        done.termination = Some("upstream_write_error");
        return done;
    }
    done.bytes_in = first.len() as u64;
    match tokio::io::copy_bidirectional(&mut downstream, &mut upstream).await {
        Ok((up, down)) => {
            debug!(bytes_up = up, bytes_down = down, "connection closed");
            done.bytes_in += up;
            done.bytes_out = down;
        }
        Err(e) => {
            debug!(error = %e, "connection ended with an error");
            done.termination = Some("io_error");
        }
    }
    done
}

async fn preamble(
    upstream: &mut TcpStream,
    client: &Client,
    pool: &Pool,
    first: &[u8],
) -> std::io::Result<()> {
    if let Some(version) = pool.proxy_protocol {
        let header = proxy_protocol::header(version, client.addr, client.local, &client.tls)?;
        upstream.write_all(&header).await?;
    }
    if !first.is_empty() {
        upstream.write_all(first).await?;
    }
    Ok(())
}

/// A connection to a backend: the balancer's pick (hashing pools hash the client's IP),
/// then, after each failed connect, another backend not tried yet, up to the pool's retries.
pub async fn connect(pool: &Pool, client: SocketAddr) -> Option<(TcpStream, InFlight)> {
    let ctx = PickContext {
        hash: pool
            .balancer_kind
            .is_hashing()
            .then(|| source_hash(client.ip())),
    };
    let mut next = pool.pick(&ctx).map(|(b, _)| b.clone());
    let mut tried = Vec::new();
    for _ in 0..=pool.retry.attempts {
        let backend = next.take()?;
        tried.push(Arc::as_ptr(&backend) as usize);
        let wait = pool.timeouts.queue;
        let Some(in_flight) = backend
            .start_within(pool.max_connections_per_backend, wait)
            .await
        else {
            warn!(backend = %backend.name, timeout = ?wait, "no connection slot on the backend in time (queue timeout)");
            return None;
        };
        let attempt =
            tokio::time::timeout(pool.timeouts.connect, TcpStream::connect(backend.address)).await;
        match attempt {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                pool.report(&backend, Outcome::Success);
                debug!(backend = %backend.name, "connected to backend");
                return Some((stream, in_flight));
            }
            Ok(Err(e)) => {
                warn!(backend = %backend.name, error = %e, "connect to backend failed");
                pool.report(&backend, Outcome::ConnectFailure);
            }
            Err(_) => {
                warn!(backend = %backend.name, timeout = ?pool.timeouts.connect, "connect to backend timed out");
                pool.report(&backend, Outcome::Timeout);
            }
        }
        next = pool.pick_retry(&tried).map(|(b, _)| b.clone());
    }
    None
}

/// The hash of a client's IP, as HTTP's `hash_key = "source-ip"` computes it.
fn source_hash(ip: IpAddr) -> u64 {
    match ip.to_canonical() {
        IpAddr::V4(ip) => key_hash(&ip.octets()),
        IpAddr::V6(ip) => key_hash(&ip.octets()),
    }
}
