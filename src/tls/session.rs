//! What a finished TLS handshake negotiated, read once per connection for access logs,
//! metrics and the decision header.

use std::time::Duration;

use rustls::{HandshakeKind, ProtocolVersion, ServerConnection};

#[derive(Debug, Clone, Default)]
pub struct SessionInfo {
    pub sni: Option<String>,
    pub version: Option<&'static str>,
    pub cipher: Option<&'static str>,
    pub resumed: bool,
    pub alpn: Option<String>,
    /// From the first byte of the ClientHello to the end of the handshake.
    pub handshake: Duration,
}

impl SessionInfo {
    pub fn of(session: &ServerConnection, handshake: Duration) -> Self {
        Self {
            sni: session.server_name().map(str::to_owned),
            version: session.protocol_version().map(version_name),
            cipher: session
                .negotiated_cipher_suite()
                .and_then(|s| s.suite().as_str()),
            resumed: session.handshake_kind() == Some(HandshakeKind::Resumed),
            alpn: session
                .alpn_protocol()
                .map(|p| String::from_utf8_lossy(p).into_owned()),
            handshake,
        }
    }
}

/// "TLSv1.3" and the like, as OpenSSL and nginx write them.
pub fn version_name(v: ProtocolVersion) -> &'static str {
    match v {
        ProtocolVersion::TLSv1_3 => "TLSv1.3",
        ProtocolVersion::TLSv1_2 => "TLSv1.2",
        ProtocolVersion::TLSv1_1 => "TLSv1.1",
        ProtocolVersion::TLSv1_0 => "TLSv1.0",
        _ => "unknown",
    }
}

/// A short, bounded label for why a handshake failed (the metric's `reason`).
pub fn failure_reason(e: &std::io::Error) -> &'static str {
    use std::io::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset | ErrorKind::BrokenPipe
    ) {
        return "closed";
    }
    let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) else {
        return "io";
    };
    match tls {
        rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => "protocol",
        rustls::Error::InappropriateHandshakeMessage { .. } => "protocol",
        rustls::Error::PeerIncompatible(_) => "incompatible",
        rustls::Error::NoCertificatesPresented => "no_client_certificate",
        rustls::Error::InvalidCertificate(_) | rustls::Error::InvalidCertRevocationList(_) => {
            "bad_client_certificate"
        }
        rustls::Error::AlertReceived(_) => "alert_received",
        rustls::Error::PeerMisbehaved(_) => "misbehaved",
        _ => "other",
    }
}
