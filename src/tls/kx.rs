//! Key exchange preference. rustls follows the client's order of groups; terminus wants the
//! post-quantum hybrid X25519MLKEM768 whenever a TLS 1.3 client offers it, wherever the client
//! listed it. So each listener keeps two providers: the standard one, and one for clients that
//! offer the hybrid, in which the classic groups serve TLS 1.2 only.

use std::sync::OnceLock;

use rustls::crypto::{
    aws_lc_rs, ActiveKeyExchange, CompletedKeyExchange, CryptoProvider, SupportedKxGroup,
};
use rustls::{Error, NamedGroup, ProtocolVersion};

/// The classic groups, in terminus's order.
fn classic() -> [&'static dyn SupportedKxGroup; 3] {
    [
        aws_lc_rs::kx_group::X25519,
        aws_lc_rs::kx_group::SECP256R1,
        aws_lc_rs::kx_group::SECP384R1,
    ]
}

/// The aws-lc-rs provider with X25519MLKEM768, X25519, P-256 and P-384.
pub fn standard_provider() -> CryptoProvider {
    let mut provider = aws_lc_rs::default_provider();
    provider.kx_groups = vec![aws_lc_rs::kx_group::X25519MLKEM768];
    provider.kx_groups.extend(classic());
    provider
}

/// The provider for clients that offer X25519MLKEM768: in TLS 1.3 it is the only group, so it
/// is chosen whatever the client's order; TLS 1.2 keeps the classic groups.
pub fn post_quantum_provider() -> CryptoProvider {
    static TLS12_ONLY: OnceLock<Vec<&'static dyn SupportedKxGroup>> = OnceLock::new();
    let tls12_only = TLS12_ONLY.get_or_init(|| {
        classic()
            .into_iter()
            .map(|g| -> &'static dyn SupportedKxGroup { Box::leak(Box::new(Tls12Only(g))) })
            .collect()
    });
    let mut provider = aws_lc_rs::default_provider();
    provider.kx_groups = vec![aws_lc_rs::kx_group::X25519MLKEM768];
    provider.kx_groups.extend(tls12_only.iter().copied());
    provider
}

/// Whether a client's supported groups include the hybrid.
pub fn offers_post_quantum(groups: Option<&[NamedGroup]>) -> bool {
    groups.is_some_and(|g| g.contains(&NamedGroup::X25519MLKEM768))
}

/// A group usable in TLS 1.2 only; otherwise the same group.
#[derive(Debug)]
struct Tls12Only(&'static dyn SupportedKxGroup);

impl SupportedKxGroup for Tls12Only {
    fn start(&self) -> Result<Box<dyn ActiveKeyExchange>, Error> {
        self.0.start()
    }

    fn start_and_complete(&self, peer_pub_key: &[u8]) -> Result<CompletedKeyExchange, Error> {
        self.0.start_and_complete(peer_pub_key)
    }

    fn name(&self) -> NamedGroup {
        self.0.name()
    }

    fn fips(&self) -> bool {
        self.0.fips()
    }

    fn usable_for_version(&self, version: ProtocolVersion) -> bool {
        version == ProtocolVersion::TLSv1_2 && self.0.usable_for_version(version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn post_quantum_provider_offers_only_the_hybrid_in_tls13() {
        let p = post_quantum_provider();
        let tls13: Vec<NamedGroup> = p
            .kx_groups
            .iter()
            .filter(|g| g.usable_for_version(ProtocolVersion::TLSv1_3))
            .map(|g| g.name())
            .collect();
        assert_eq!(tls13, vec![NamedGroup::X25519MLKEM768]);
        let tls12 = p
            .kx_groups
            .iter()
            .filter(|g| g.usable_for_version(ProtocolVersion::TLSv1_2))
            .count();
        assert_eq!(tls12, 3);
    }
}
