//! Client certificates on a listener: the policy (`none`, `optional`, `required`), the rustls
//! verifier built from its CA bundle and CRLs, and the check that answers 421 when a request
//! names a host the handshake's SNI would not have been served for.

use std::sync::Arc;

use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
use rustls_pki_types::CertificateRevocationListDer;

use super::resolver::SniResolver;

/// Whether a listener asks for client certificates, and what it verifies them against.
#[derive(Debug, Clone, Default)]
pub enum ClientAuth {
    /// No certificate is asked for.
    #[default]
    None,
    /// A certificate is asked for; a client without one is served, one with a bad one is not.
    Optional(ClientRoots),
    /// A handshake without a valid certificate fails.
    Required(ClientRoots),
}

/// The CA bundle and CRLs client certificates are verified against.
#[derive(Clone)]
pub struct ClientRoots {
    pub roots: Arc<RootCertStore>,
    pub crls: Vec<CertificateRevocationListDer<'static>>,
}

impl std::fmt::Debug for ClientRoots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ClientRoots({} CAs, {} CRLs)",
            self.roots.len(),
            self.crls.len()
        )
    }
}

impl ClientAuth {
    pub const NAMES: &'static str = "\"none\", \"optional\" or \"required\"";

    pub fn is_none(&self) -> bool {
        matches!(self, Self::None)
    }

    /// The rustls verifier; `None` for `ClientAuth::None`. Fails on a CRL webpki cannot use.
    pub fn verifier(&self) -> Result<Option<Arc<dyn ClientCertVerifier>>, String> {
        let (roots, optional) = match self {
            Self::None => return Ok(None),
            Self::Optional(r) => (r, true),
            Self::Required(r) => (r, false),
        };
        let provider = Arc::new(super::kx::standard_provider());
        let mut builder =
            WebPkiClientVerifier::builder_with_provider(roots.roots.clone(), provider)
                .with_crls(roots.crls.iter().cloned());
        if optional {
            builder = builder.allow_unauthenticated();
        }
        builder.build().map(Some).map_err(|e| e.to_string())
    }
}

/// On a listener with client certificates: whether a request's host is one the handshake's
/// SNI covers. Both must resolve to the same certificate of the listener (the same name, a
/// name of the same certificate, or both to the default); otherwise the answer is 421.
#[derive(Debug, Clone)]
pub struct AuthorityCheck {
    pub(super) sni: Option<String>,
    pub(super) resolver: Arc<SniResolver>,
}

impl AuthorityCheck {
    /// `host` as the request names it (Host or :authority), port included or not. A request
    /// without a host is allowed: it can only reach routes without a host.
    pub fn allows(&self, host: Option<&str>) -> bool {
        let Some(host) = host.map(strip_port) else {
            return true;
        };
        let host = host.strip_suffix('.').unwrap_or(host);
        if let Some(sni) = &self.sni {
            if sni.eq_ignore_ascii_case(host) {
                return true;
            }
        }
        let by_sni = self.resolver.candidates(self.sni.as_deref());
        let by_host = self.resolver.candidates(Some(host));
        by_sni.len() == by_host.len() && by_sni.iter().zip(by_host).all(|(a, b)| Arc::ptr_eq(a, b))
    }
}

/// `host:port` → `host`; `[v6]:port` → `[v6]`.
fn strip_port(authority: &str) -> &str {
    if authority.starts_with('[') {
        return match authority.find(']') {
            Some(end) => &authority[..=end],
            None => authority,
        };
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => authority,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::certs::self_signed;

    fn check(sni: Option<&str>) -> AuthorityCheck {
        let a = self_signed(&["a.test".to_string(), "a2.test".to_string()]).unwrap();
        let b = self_signed(&["b.test".to_string()]).unwrap();
        let w = self_signed(&["*.w.test".to_string()]).unwrap();
        AuthorityCheck {
            sni: sni.map(str::to_string),
            resolver: Arc::new(SniResolver::new(&[a, b, w], 0)),
        }
    }

    #[test]
    fn host_must_map_to_the_sni_certificate() {
        let c = check(Some("a.test"));
        assert!(c.allows(Some("A.test:8443")));
        assert!(c.allows(Some("a.test.")));
        assert!(c.allows(Some("a2.test")), "same certificate");
        assert!(c.allows(None));
        assert!(!c.allows(Some("b.test")));
        assert!(!c.allows(Some("x.w.test:443")));
        let w = check(Some("x.w.test"));
        assert!(w.allows(Some("y.w.test")));
        assert!(!w.allows(Some("a.test")));
    }

    #[test]
    fn without_sni_the_default_certificate_decides() {
        let c = check(None);
        assert!(c.allows(Some("127.0.0.1:8443")));
        assert!(c.allows(Some("[::1]:8443")));
        assert!(
            c.allows(Some("a.test")),
            "a.test holds the default certificate"
        );
        assert!(!c.allows(Some("b.test")));
    }
}
