//! `[[certificate]]`: cert and key files (with an optional stapled OCSP response) or
//! self-signed names, loaded and checked here so a bad file is an error at its key.

use toml::Spanned;

use super::Validator;
use crate::config::file::FileCertificate;
use crate::config::Certificate;
use crate::tls;

impl Validator<'_> {
    pub(super) fn certificates(&mut self, certs: &[FileCertificate]) -> Vec<Option<Certificate>> {
        self.unique("certificate", certs.iter().map(|c| &c.name));
        certs.iter().map(|c| self.certificate(c)).collect()
    }

    fn certificate(&mut self, c: &FileCertificate) -> Option<Certificate> {
        self.name(&c.name, "certificate");
        let loaded = match (&c.cert, &c.key, &c.self_signed) {
            (Some(cert), Some(key), None) => {
                let loaded = self.cert_files(cert, key);
                let ocsp = c.ocsp.as_ref().map(|o| self.ocsp(o));
                match ocsp {
                    Some(Some(der)) => loaded?.with_ocsp(der),
                    Some(None) => return None,
                    None => loaded?,
                }
            }
            (None, None, Some(names)) if !names.get_ref().is_empty() => {
                if let Some(o) = &c.ocsp {
                    self.err(
                        o.span(),
                        format!(
                            "certificate `{}` staples `ocsp` on a self-signed certificate",
                            c.name.get_ref()
                        ),
                        "expected `ocsp` only with `cert` and `key` files: no CA answers OCSP for a generated certificate",
                    );
                }
                match tls::certs::self_signed(names.get_ref()) {
                    Ok(l) => l,
                    Err(e) => {
                        self.err(
                            names.span(),
                            e.to_string(),
                            "expected DNS names or IP addresses",
                        );
                        return None;
                    }
                }
            }
            (cert, key, Some(names)) if cert.is_some() || key.is_some() => {
                self.err(
                    names.span(),
                    format!(
                        "certificate `{}` sets both `self_signed` and `cert`/`key`",
                        c.name.get_ref()
                    ),
                    "expected either cert and key files, or self_signed names",
                );
                return None;
            }
            _ => {
                self.err(c.name.span(), format!("certificate `{}` needs `cert` and `key` files, or `self_signed` names", c.name.get_ref()), "expected cert = \"chain.pem\" and key = \"key.pem\", or self_signed = [\"localhost\"]");
                return None;
            }
        };
        Some(Certificate {
            name: c.name.get_ref().clone(),
            loaded,
        })
    }

    /// Loads a PEM chain and its key; an error points at the key (`cert` or `key`) whose file
    /// is at fault.
    fn cert_files(
        &mut self,
        cert: &Spanned<String>,
        key: &Spanned<String>,
    ) -> Option<tls::LoadedCert> {
        let cert_path = self.path(cert.get_ref());
        match tls::certs::load_pem_files(&cert_path, &self.path(key.get_ref())) {
            Ok(l) => Some(l),
            Err(e) => {
                let span = match e {
                    tls::CertError::EncryptedKey { .. }
                    | tls::CertError::NoKey { .. }
                    | tls::CertError::UnsupportedKey { .. }
                    | tls::CertError::KeyMismatch { .. } => key.span(),
                    tls::CertError::Read { ref path, .. }
                    | tls::CertError::NotPem { ref path }
                    | tls::CertError::BadPem { ref path, .. }
                        if *path != cert_path.display().to_string() =>
                    {
                        key.span()
                    }
                    _ => cert.span(),
                };
                let text = e.to_string();
                let (what, hint) = text.split_once("; ").unwrap_or((
                    &text,
                    "expected a PEM certificate chain and its private key",
                ));
                self.err(span, what.to_string(), hint.to_string());
                None
            }
        }
    }

    /// Reads the DER OCSP response to staple.
    fn ocsp(&mut self, ocsp: &Spanned<String>) -> Option<Vec<u8>> {
        match tls::ocsp::read_response(&self.path(ocsp.get_ref())) {
            Ok(der) => Some(der),
            Err(e) => {
                let text = e.to_string();
                let (what, hint) = text
                    .split_once("; ")
                    .unwrap_or((&text, "expected a DER OCSP response file"));
                self.err(ocsp.span(), what.to_string(), hint.to_string());
                None
            }
        }
    }
}
