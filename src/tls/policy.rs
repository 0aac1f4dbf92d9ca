//! Policy presets in the spirit of Mozilla's: `modern` (TLS 1.3 only) and `intermediate`
//! (TLS 1.3 and 1.2 with ECDHE and AEAD suites only), and the listener's rustls config built from one.

use std::sync::Arc;

use rustls::ServerConfig;

use super::certs::LoadedCert;
use super::crypto_provider;
use super::resolver::SniResolver;

/// Which protocol versions and suites a listener offers. TLS 1.1 and older are never offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsPolicy {
    /// TLS 1.3 only.
    Modern,
    /// TLS 1.3 and TLS 1.2 (ECDHE key exchange, AES-GCM and ChaCha20-Poly1305 only).
    Intermediate,
}

impl TlsPolicy {
    pub const NAMES: &'static str = "\"modern\" or \"intermediate\"";

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "modern" => Some(Self::Modern),
            "intermediate" => Some(Self::Intermediate),
            _ => None,
        }
    }
}

/// Builds a listener's server configuration.
pub fn server_config(
    policy: TlsPolicy,
    alpn: &[Vec<u8>],
    certs: &[LoadedCert],
    default_cert: usize,
) -> Result<Arc<ServerConfig>, rustls::Error> {
    let versions: &[&rustls::SupportedProtocolVersion] = match policy {
        TlsPolicy::Modern => &[&rustls::version::TLS13],
        TlsPolicy::Intermediate => &[&rustls::version::TLS13, &rustls::version::TLS12],
    };
    let mut config = ServerConfig::builder_with_provider(Arc::new(crypto_provider()))
        .with_protocol_versions(versions)?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(SniResolver::new(certs, default_cert)));
    config.alpn_protocols = alpn.to_vec();
    Ok(Arc::new(config))
}
