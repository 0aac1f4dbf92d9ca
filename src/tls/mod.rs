//! TLS termination: certificates, the SNI resolver and the policy presets that build a
//! listener's rustls configuration.

pub mod certs;
pub mod policy;
pub mod resolver;

use rustls::crypto::{aws_lc_rs, CryptoProvider};

/// The aws-lc-rs provider with the post-quantum hybrid X25519MLKEM768 and the classic
/// X25519, P-256 and P-384 key exchange groups. rustls takes the first group in the client's
/// order that is also listed here, so a client offering X25519MLKEM768 first (as browsers do)
/// gets it; X25519MLKEM768 is TLS 1.3 only, a TLS 1.2 client gets a classic group.
pub fn crypto_provider() -> CryptoProvider {
    let mut provider = aws_lc_rs::default_provider();
    provider.kx_groups = vec![
        aws_lc_rs::kx_group::X25519MLKEM768,
        aws_lc_rs::kx_group::X25519,
        aws_lc_rs::kx_group::SECP256R1,
        aws_lc_rs::kx_group::SECP384R1,
    ];
    provider
}

pub use certs::{CertError, LoadedCert};
pub use policy::TlsPolicy;
