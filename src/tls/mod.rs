//! TLS termination: certificates, the SNI resolver, key exchange preference and the policy
//! presets that build a listener's rustls configuration, session resumption and its ticket keys,
//! client certificates, stapled OCSP responses.

pub mod certs;
pub mod client_auth;
pub mod client_cert;
pub mod kx;
pub mod ocsp;
pub mod policy;
pub mod resolver;
pub mod session;
pub mod stats;
pub mod ticket_keys;
pub mod tickets;

use rustls::crypto::CryptoProvider;

/// The provider used to load keys and, with its standard group list, to serve clients that do
/// not offer the post-quantum hybrid.
pub fn crypto_provider() -> CryptoProvider {
    kx::standard_provider()
}

pub use certs::{CertError, LoadedCert};
pub use client_auth::{AuthorityCheck, ClientAuth, ClientRoots};
pub use client_cert::ClientCert;
pub use policy::{ServerTls, TlsPolicy};
pub use session::SessionInfo;
pub use stats::HandshakeStats;
pub use ticket_keys::{KeyFile, Resumption};
