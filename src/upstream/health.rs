//! Active health checks: one task per backend probes it (TCP connect, an HTTP request, or a
//! TLS handshake) every interval with jitter, and moves it between healthy and unhealthy after
//! `rise` passes or `fall` failures, logging each change with its reason.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tracing::{info, warn};

use super::backend::Backend;
use super::backend_stats::CheckResult;
use crate::config::{HealthCheck, HealthProbe, HttpProbe};
use crate::shutdown::Watch;

/// Most of a check response's body that is read to look for `expect_body`.
const BODY_LIMIT: usize = 64 * 1024;

/// Starts one checking task per backend; each stops when shutdown begins.
pub fn spawn(pool: &str, backends: &[Arc<Backend>], check: &Arc<HealthCheck>, shutdown: &Watch) {
    for backend in backends {
        let (pool, backend, check, shutdown) = (
            pool.to_string(),
            backend.clone(),
            check.clone(),
            shutdown.clone(),
        );
        tokio::spawn(run(pool, backend, check, shutdown));
    }
}

/// The wait before the next check: the interval plus or minus up to `jitter`, so that the
/// checks of many backends spread out instead of firing together.
fn next_wait(check: &HealthCheck) -> Duration {
    let jitter = check.jitter.as_secs_f64();
    let offset = (fastrand::f64() * 2.0 - 1.0) * jitter;
    Duration::from_secs_f64((check.interval.as_secs_f64() + offset).max(0.001))
}

async fn run(pool: String, backend: Arc<Backend>, check: Arc<HealthCheck>, mut shutdown: Watch) {
    // The first check runs soon (within the jitter), so backends become usable quickly.
    let mut wait = Duration::from_secs_f64(fastrand::f64() * check.jitter.as_secs_f64());
    loop {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.signalled() => return,
        }
        let (at, started) = (std::time::SystemTime::now(), std::time::Instant::now());
        let outcome = match tokio::time::timeout(check.timeout, probe(&backend, &check.probe)).await
        {
            Ok(result) => result,
            Err(_) => Err(format!("no answer within {:?}", check.timeout)),
        };
        let passed = outcome.is_ok();
        backend.stats.checked(CheckResult {
            at,
            passed,
            took: started.elapsed(),
            detail: match &outcome {
                Ok(()) => "passed".to_owned(),
                Err(why) => why.clone(),
            },
        });
        if let Some(healthy) = backend.health().record(passed, check.rise, check.fall) {
            let reason = outcome.err().unwrap_or_else(|| "check passed".to_string());
            if healthy {
                info!(pool, backend = %backend.name, reason, "backend is healthy");
            } else {
                warn!(pool, backend = %backend.name, reason, "backend is unhealthy");
            }
        }
        wait = next_wait(&check);
    }
}

/// One probe: `Ok` when the backend passed, else why not.
async fn probe(backend: &Backend, probe: &HealthProbe) -> Result<(), String> {
    let tcp = TcpStream::connect(backend.address)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    match probe {
        HealthProbe::Tcp => Ok(()),
        HealthProbe::Tls { server_name } => {
            tls_handshake(backend, tcp, server_name).await.map(|_| ())
        }
        HealthProbe::Http(http) if http.tls => {
            let tls = tls_handshake(backend, tcp, &http.server_name).await?;
            http_check(backend, http, tls).await
        }
        HealthProbe::Http(http) => http_check(backend, http, tcp).await,
    }
}

async fn tls_handshake(
    backend: &Backend,
    tcp: TcpStream,
    server_name: &Option<String>,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, String> {
    let name = match server_name {
        Some(n) => ServerName::try_from(n.clone()).map_err(|e| format!("server name: {e}"))?,
        None => ServerName::IpAddress(backend.address.ip().into()),
    };
    let connector = tls_connector().map_err(|e| format!("TLS client: {e}"))?;
    connector
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS handshake: {e}"))
}

/// An HTTP/1.1 request on `io`; passes on an expected status (and body text).
async fn http_check<IO>(backend: &Backend, probe: &HttpProbe, io: IO) -> Result<(), String>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let HttpProbe {
        method,
        path,
        host,
        status,
        body,
        ..
    } = probe;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| format!("HTTP: {e}"))?;
    tokio::spawn(conn);
    let req = http::Request::builder()
        .method(method.clone())
        .uri(path.as_str())
        .header(
            http::header::HOST,
            host.as_deref().unwrap_or(backend.authority.as_str()),
        )
        .header(http::header::USER_AGENT, "terminus-health-check")
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("request: {e}"))?;
    let resp = send
        .send_request(req)
        .await
        .map_err(|e| format!("HTTP: {e}"))?;
    let code = resp.status().as_u16();
    if !status.contains(&code) {
        return Err(format!(
            "status {code}, expected {}-{}",
            status.start(),
            status.end()
        ));
    }
    let Some(expected) = body else { return Ok(()) };
    let head = body_head(resp.into_body()).await?;
    if head
        .windows(expected.len().max(1))
        .any(|w| w == expected.as_bytes())
    {
        Ok(())
    } else {
        Err(format!("body does not contain {expected:?}"))
    }
}

/// The first `BODY_LIMIT` bytes of a check's answer; the rest is not read.
async fn body_head(mut body: hyper::body::Incoming) -> Result<Vec<u8>, String> {
    let mut head = Vec::new();
    while head.len() < BODY_LIMIT {
        let Some(frame) = body.frame().await else {
            break;
        };
        let frame = frame.map_err(|e| format!("body: {e}"))?;
        if let Some(data) = frame.data_ref() {
            let room = BODY_LIMIT - head.len();
            head.extend_from_slice(&data[..data.len().min(room)]);
        }
    }
    Ok(head)
}

/// A TLS client for handshake checks, built once. The check proves the backend completes a
/// handshake; it does not verify the backend's certificate (that belongs to a pool's TLS
/// settings, not to its health).
fn tls_connector() -> Result<tokio_rustls::TlsConnector, String> {
    use std::sync::OnceLock;
    static CONNECTOR: OnceLock<Result<tokio_rustls::TlsConnector, String>> = OnceLock::new();
    CONNECTOR.get_or_init(build_tls_connector).clone()
}

fn build_tls_connector() -> Result<tokio_rustls::TlsConnector, String> {
    use super::upstream_tls::NoVerification;

    let provider = Arc::new(crate::tls::crypto_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}
