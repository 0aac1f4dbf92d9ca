//! CA bundles: PEM files of CA certificates read into trust anchors, for client
//! authentication and for verifying backends.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::RootCertStore;
use toml::Spanned;

use super::Validator;

impl Validator<'_> {
    /// The CA certificates of a PEM bundle named by `ca`, as trust anchors; errors carry `hint`.
    pub(super) fn ca_bundle(
        &mut self,
        hint: &str,
        ca: &Spanned<String>,
    ) -> Option<Arc<RootCertStore>> {
        let path = self.path(ca.get_ref());
        let shown = path.display();
        let text = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) => {
                self.err(ca.span(), format!("cannot read {shown}: {e}"), hint);
                return None;
            }
        };
        let certs: Result<Vec<CertificateDer<'static>>, _> =
            CertificateDer::pem_slice_iter(&text).collect();
        let certs = match certs {
            Ok(c) if !c.is_empty() => c,
            Ok(_) => {
                self.err(
                    ca.span(),
                    format!("{shown} holds no CERTIFICATE block"),
                    hint,
                );
                return None;
            }
            Err(e) => {
                self.err(ca.span(), format!("{shown}: bad PEM: {e}"), hint);
                return None;
            }
        };
        let mut roots = RootCertStore::empty();
        for (i, cert) in certs.into_iter().enumerate() {
            if let Err(e) = roots.add(cert) {
                let n = i + 1;
                self.err(
                    ca.span(),
                    format!("certificate {n} of {shown} cannot be a trust anchor: {e}"),
                    hint,
                );
                return None;
            }
        }
        Some(Arc::new(roots))
    }
}
