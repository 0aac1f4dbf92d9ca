//! TLS to a pool's backends: the rustls client config built once per pool from `[pool.tls]`,
//! the handshake under the connect timeout, the stream handed to hyper's pooled client, and
//! the words a failed handshake is logged with.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::response_heads::ResponseHeads;
use crate::config::{UpstreamTls, UpstreamVerify};

/// A pool's TLS client, shared by the connection pools of all its backends (so they share
/// rustls's session cache too).
#[derive(Clone)]
pub struct BackendTls {
    connector: TlsConnector,
    server_name: Option<ServerName<'static>>,
}

impl std::fmt::Debug for BackendTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendTls")
            .field("server_name", &self.server_name)
            .finish()
    }
}

/// A TLS handshake with a backend failed; the text says why (e.g. "certificate verify failed:
/// UnknownIssuer").
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TlsHandshakeError(pub String);

impl BackendTls {
    pub fn new(spec: &UpstreamTls) -> Result<Self, rustls::Error> {
        let provider = Arc::new(crate::tls::crypto_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?;
        let builder = match &spec.verify {
            UpstreamVerify::Roots(roots) => builder.with_root_certificates(roots.clone()),
            UpstreamVerify::InsecureSkipVerify => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerification(provider))),
        };
        let mut config = match &spec.client_cert {
            Some(cert) => builder.with_client_cert_resolver(Arc::new(
                rustls::sign::SingleCertAndKey::from(cert.key.clone()),
            )),
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = spec.alpn.clone();
        Ok(Self {
            connector: TlsConnector::from(Arc::new(config)),
            server_name: spec.server_name.clone(),
        })
    }

    /// The name sent and verified for `backend`: `server_name`, else its IP address.
    pub fn server_name_for(&self, backend: SocketAddr) -> ServerName<'static> {
        self.server_name
            .clone()
            .unwrap_or_else(|| ServerName::IpAddress(backend.ip().into()))
    }

    /// Runs the handshake on `tcp` within `timeout`. A refusal by rustls (verification,
    /// alerts, ALPN) becomes a `TlsHandshakeError`; a socket error stays an `io::Error`.
    pub async fn handshake(
        &self,
        tcp: TcpStream,
        name: ServerName<'static>,
        timeout: Duration,
    ) -> Result<TlsStream<TcpStream>, Box<dyn std::error::Error + Send + Sync>> {
        match tokio::time::timeout(timeout, self.connector.connect(name, tcp)).await {
            Err(_) => Err(Box::new(io::Error::new(
                io::ErrorKind::TimedOut,
                "the TLS handshake with the backend timed out",
            ))),
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(e)) => match rustls_error(&e) {
                Some(r) => Err(Box::new(TlsHandshakeError(describe(r)))),
                None => Err(Box::new(e)),
            },
        }
    }
}

/// The rustls error inside an I/O error, if that is what it is.
pub fn rustls_error(e: &io::Error) -> Option<&rustls::Error> {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
}

/// Whether `e` is an alert that a backend sends only while it checks a handshake (its view
/// of terminus's client certificate), never about a request.
pub fn is_handshake_refusal(e: &rustls::Error) -> bool {
    use rustls::AlertDescription as A;
    matches!(
        e,
        rustls::Error::AlertReceived(
            A::CertificateRequired
                | A::BadCertificate
                | A::UnsupportedCertificate
                | A::CertificateRevoked
                | A::CertificateExpired
                | A::CertificateUnknown
                | A::UnknownCA
                | A::AccessDenied
                | A::HandshakeFailure
        )
    )
}

/// A rustls error in the words of a log line about a backend.
pub fn describe(e: &rustls::Error) -> String {
    use rustls::CertificateError as C;
    match e {
        rustls::Error::InvalidCertificate(
            c @ (C::NotValidForName | C::NotValidForNameContext { .. }),
        ) => {
            format!("certificate verify failed: NotValidForName ({c})")
        }
        rustls::Error::InvalidCertificate(c) => format!("certificate verify failed: {c:?}"),
        rustls::Error::AlertReceived(alert) => {
            format!("the backend refused the TLS handshake: alert {alert:?}")
        }
        rustls::Error::NoApplicationProtocol => {
            "the backend accepted none of the ALPN protocols offered".to_string()
        }
        other => format!("TLS handshake failed: {other}"),
    }
}

/// A connection to a backend, plain or TLS, as hyper's pooled client takes it. HTTP/1
/// response heads are read a second time on the way (see `response_heads`).
#[derive(Debug)]
pub enum UpstreamStream {
    Plain(TokioIo<ResponseHeads<TcpStream>>),
    /// Boxed: a TLS session is far larger than a socket.
    Tls(Box<TokioIo<ResponseHeads<TlsStream<TcpStream>>>>),
}

impl UpstreamStream {
    /// A plain connection; its responses are HTTP/1 unless `http2`.
    pub fn plain(tcp: TcpStream, http2: bool, max_head: usize, max_headers: usize) -> Self {
        Self::Plain(TokioIo::new(ResponseHeads::new(
            tcp,
            !http2,
            max_head,
            max_headers,
        )))
    }

    /// A TLS connection; ALPN (or `http2`, prior knowledge) says whether it speaks HTTP/2.
    pub fn tls(
        stream: TlsStream<TcpStream>,
        http2: bool,
        max_head: usize,
        max_headers: usize,
    ) -> Self {
        let h2 = http2 || stream.get_ref().1.alpn_protocol() == Some(b"h2");
        Self::Tls(Box::new(TokioIo::new(ResponseHeads::new(
            stream,
            !h2,
            max_head,
            max_headers,
        ))))
    }
}

impl Connection for UpstreamStream {
    // No `HttpInfo` extra: hyper would copy it into the extensions of every response, and
    // nothing reads it.
    fn connected(&self) -> Connected {
        match self {
            Self::Plain(_) => Connected::new(),
            Self::Tls(s) => {
                if s.inner().get_ref().get_ref().1.alpn_protocol() == Some(b"h2") {
                    Connected::new().negotiated_h2()
                } else {
                    Connected::new()
                }
            }
        }
    }
}

impl hyper::rt::Read for UpstreamStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl hyper::rt::Write for UpstreamStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Plain(s) => s.is_write_vectored(),
            Self::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }
}

/// Accepts any certificate (`insecure_skip_verify = true`) but still checks the handshake's
/// signatures, so the connection is at least encrypted to whoever holds the key presented.
#[derive(Debug)]
pub(crate) struct NoVerification(pub(crate) Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algs = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algs = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_named_for_the_log() {
        let unknown = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        assert_eq!(
            describe(&unknown),
            "certificate verify failed: UnknownIssuer"
        );
        let name = rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName);
        assert!(describe(&name).starts_with("certificate verify failed: NotValidForName"));
        let alert = rustls::Error::AlertReceived(rustls::AlertDescription::CertificateRequired);
        assert!(describe(&alert).contains("CertificateRequired"));
        let io = io::Error::new(io::ErrorKind::InvalidData, unknown);
        assert!(rustls_error(&io).is_some());
    }
}
