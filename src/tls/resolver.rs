//! The SNI resolver: picks a certificate by server name (exact, then wildcard, then the
//! listener's default), and among certificates for that name the one whose key type the client
//! can verify, ECDSA first.

use std::collections::HashMap;
use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::SignatureAlgorithm;

use super::certs::LoadedCert;

/// Certificates of one listener, indexed by the names they are valid for.
#[derive(Debug)]
pub struct SniResolver {
    exact: HashMap<String, Vec<Arc<CertifiedKey>>>,
    /// Keyed by the part after `*.`: `*.example.com` is stored under `example.com`.
    wildcard: HashMap<String, Vec<Arc<CertifiedKey>>>,
    default: Vec<Arc<CertifiedKey>>,
}

/// Lower is preferred: ECDSA signs fastest, then Ed25519, then RSA.
fn preference(key: &CertifiedKey) -> u8 {
    match key.key.algorithm() {
        SignatureAlgorithm::ECDSA => 0,
        SignatureAlgorithm::ED25519 => 1,
        SignatureAlgorithm::RSA => 2,
        _ => 3,
    }
}

fn push_sorted(list: &mut Vec<Arc<CertifiedKey>>, key: &Arc<CertifiedKey>) {
    list.push(key.clone());
    list.sort_by_key(|k| preference(k));
}

impl SniResolver {
    /// `certs` are the listener's certificates; `default` indexes the one served when the
    /// client sends no SNI or a name none of them holds.
    pub fn new(certs: &[LoadedCert], default: usize) -> Self {
        let mut exact: HashMap<String, Vec<Arc<CertifiedKey>>> = HashMap::new();
        let mut wildcard: HashMap<String, Vec<Arc<CertifiedKey>>> = HashMap::new();
        for cert in certs {
            for name in &cert.dns_names {
                match name.strip_prefix("*.") {
                    Some(suffix) => {
                        push_sorted(wildcard.entry(suffix.to_string()).or_default(), &cert.key)
                    }
                    None => push_sorted(exact.entry(name.clone()).or_default(), &cert.key),
                }
            }
        }
        let mut default_list = Vec::new();
        if let Some(def) = certs.get(default) {
            default_list.push(def.key.clone());
            // A twin of the default with another key type (same names) serves clients that
            // cannot verify the default's key.
            for other in certs {
                if !Arc::ptr_eq(&other.key, &def.key) && other.dns_names == def.dns_names {
                    default_list.push(other.key.clone());
                }
            }
            // Same preference as for a named certificate: a client that can verify the twin's
            // ECDSA key gets it even when the RSA one is named the default.
            default_list.sort_by_key(|k| preference(k));
        }
        Self {
            exact,
            wildcard,
            default: default_list,
        }
    }

    /// The candidates for a server name, best first.
    pub fn candidates(&self, server_name: Option<&str>) -> &[Arc<CertifiedKey>] {
        let Some(name) = server_name else {
            return &self.default;
        };
        let lower;
        let name = if name.bytes().any(|b| b.is_ascii_uppercase()) {
            lower = name.to_ascii_lowercase();
            lower.as_str()
        } else {
            name
        };
        if let Some(list) = self.exact.get(name) {
            return list;
        }
        // A wildcard covers exactly one label: `*.example.com` matches `a.example.com` only.
        if let Some((_, parent)) = name.split_once('.') {
            if let Some(list) = self.wildcard.get(parent) {
                return list;
            }
        }
        &self.default
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let schemes = hello.signature_schemes();
        let candidates = self.candidates(hello.server_name());
        // None of the candidates' keys fits the client (e.g. it offered only suites or
        // signature schemes we lack): serve the best one anyway, so rustls refuses the
        // handshake with handshake_failure rather than access_denied.
        candidates
            .iter()
            .find(|k| k.key.choose_scheme(schemes).is_some())
            .or_else(|| candidates.first())
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::certs::self_signed;

    fn names(n: &[&str]) -> Vec<String> {
        n.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn exact_then_wildcard_then_default() {
        let a = self_signed(&names(&["a.test"])).unwrap();
        let w = self_signed(&names(&["*.b.test"])).unwrap();
        let r = SniResolver::new(&[a.clone(), w.clone()], 0);
        assert!(Arc::ptr_eq(&r.candidates(Some("a.test"))[0], &a.key));
        assert!(Arc::ptr_eq(&r.candidates(Some("X.B.test"))[0], &w.key));
        // A wildcard does not cover deeper names nor the bare parent.
        assert!(Arc::ptr_eq(&r.candidates(Some("x.y.b.test"))[0], &a.key));
        assert!(Arc::ptr_eq(&r.candidates(Some("b.test"))[0], &a.key));
        assert!(Arc::ptr_eq(&r.candidates(None)[0], &a.key));
    }
}
