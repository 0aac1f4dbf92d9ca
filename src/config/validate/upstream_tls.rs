//! Validation of `[pool.tls]`: the roots that verify a backend (a CA bundle, the system's, or
//! none when `insecure_skip_verify = true`), the name verified, the client certificate and ALPN.
//! Every file is read here, so a bad one stops the start.

use std::ops::Range;
use std::sync::{Arc, OnceLock};

use rustls::RootCertStore;
use rustls_pki_types::ServerName;
use toml::Spanned;

use crate::config::file::FileUpstreamTls;
use crate::config::validate::Validator;
use crate::config::{UpstreamProtocol, UpstreamTls, UpstreamVerify};
use crate::tls;
use crate::tls::LoadedCert;

const CA_HINT: &str =
    "expected a PEM file of one or more CA certificates (-----BEGIN CERTIFICATE-----)";
const ALPN_HINT: &str =
    "expected alpn = [\"h2\"] with protocol = \"h2\", or alpn = [\"http/1.1\"] with protocol = \"http1\"";

impl Validator<'_> {
    /// `[pool.tls]`; `at` (the pool's name) locates errors that belong to no key.
    pub(super) fn upstream_tls(
        &mut self,
        t: &FileUpstreamTls,
        protocol: UpstreamProtocol,
        at: Range<usize>,
    ) -> Option<UpstreamTls> {
        let verify = self.upstream_verify(t, at);
        let server_name = t.server_name.as_ref().and_then(|n| self.upstream_name(n));
        let client_cert = self.client_cert(t);
        let alpn = self.upstream_alpn(t, protocol);
        Some(UpstreamTls {
            verify: verify?,
            server_name,
            client_cert,
            alpn,
        })
    }

    fn upstream_verify(&mut self, t: &FileUpstreamTls, at: Range<usize>) -> Option<UpstreamVerify> {
        let skip = t.insecure_skip_verify.as_ref().filter(|s| *s.get_ref());
        match (&t.ca, skip) {
            (Some(ca), Some(_)) => {
                self.err(
                    ca.span(),
                    "`ca` and `insecure_skip_verify = true` contradict each other",
                    "expected a CA bundle to verify backends with, or insecure_skip_verify = true alone",
                );
                None
            }
            (None, Some(_)) => Some(UpstreamVerify::InsecureSkipVerify),
            (Some(ca), None) => self.ca_bundle(CA_HINT, ca).map(UpstreamVerify::Roots),
            (None, None) => match system_roots() {
                Ok(roots) => Some(UpstreamVerify::Roots(roots)),
                Err(why) => {
                    self.err(
                        at,
                        why,
                        "expected `ca` in [pool.tls] naming a PEM CA bundle",
                    );
                    None
                }
            },
        }
    }

    fn upstream_name(&mut self, n: &Spanned<String>) -> Option<ServerName<'static>> {
        let s = n.get_ref();
        match ServerName::try_from(s.to_ascii_lowercase()) {
            Ok(name) => Some(name),
            Err(_) => {
                self.err(
                    n.span(),
                    format!("server_name `{s}` is not a DNS name or an IP address"),
                    "expected a name such as \"backend.internal\" or an address such as \"10.0.0.5\"",
                );
                None
            }
        }
    }

    fn client_cert(&mut self, t: &FileUpstreamTls) -> Option<LoadedCert> {
        let (cert, key) = match (&t.certificate, &t.key) {
            (Some(c), Some(k)) => (c, k),
            (None, None) => return None,
            (Some(one), None) | (None, Some(one)) => {
                self.err(
                    one.span(),
                    "a client certificate needs both `certificate` and `key`",
                    "expected certificate = \"client.pem\" and key = \"client.key\", or neither",
                );
                return None;
            }
        };
        let (cert_path, key_path) = (self.path(cert.get_ref()), self.path(key.get_ref()));
        match tls::certs::load_pem_files(&cert_path, &key_path) {
            Ok(loaded) => Some(loaded),
            Err(e) => {
                let key_shown = key_path.display().to_string();
                let on_key = match &e {
                    tls::CertError::EncryptedKey { .. }
                    | tls::CertError::NoKey { .. }
                    | tls::CertError::UnsupportedKey { .. }
                    | tls::CertError::KeyMismatch { .. } => true,
                    tls::CertError::Read { path, .. }
                    | tls::CertError::NotPem { path }
                    | tls::CertError::BadPem { path, .. } => *path == key_shown,
                    _ => false,
                };
                let text = e.to_string();
                let (what, hint) = text.split_once("; ").unwrap_or((
                    &text,
                    "expected a PEM certificate chain and its private key",
                ));
                let span = if on_key { key.span() } else { cert.span() };
                self.err(span, what.to_string(), hint.to_string());
                None
            }
        }
    }

    fn upstream_alpn(&mut self, t: &FileUpstreamTls, protocol: UpstreamProtocol) -> Vec<Vec<u8>> {
        let wanted = match protocol {
            UpstreamProtocol::Http2 => "h2",
            UpstreamProtocol::Http1 => "http/1.1",
        };
        if let Some(alpn) = &t.alpn {
            let values = alpn.get_ref();
            if let Some(bad) = values
                .iter()
                .find(|v| !matches!(v.as_str(), "h2" | "http/1.1"))
            {
                self.err(
                    alpn.span(),
                    format!("unknown ALPN protocol `{bad}`"),
                    ALPN_HINT,
                );
            } else if values.as_slice() != [wanted] {
                self.err(
                    alpn.span(),
                    format!(
                        "alpn = {values:?} does not match the pool's protocol (\"{}\")",
                        if protocol == UpstreamProtocol::Http2 {
                            "h2"
                        } else {
                            "http1"
                        }
                    ),
                    ALPN_HINT,
                );
            }
        }
        vec![wanted.as_bytes().to_vec()]
    }
}

/// The system's CA certificates, read once.
fn system_roots() -> Result<Arc<RootCertStore>, String> {
    static ROOTS: OnceLock<Result<Arc<RootCertStore>, String>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let found = rustls_native_certs::load_native_certs();
            let mut roots = RootCertStore::empty();
            let (added, _ignored) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                let why: Vec<String> = found.errors.iter().map(|e| e.to_string()).collect();
                return Err(format!(
                    "[pool.tls] verifies with the system's CA certificates, but none were found{}",
                    if why.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", why.join("; "))
                    }
                ));
            }
            Ok(Arc::new(roots))
        })
        .clone()
}
