//! Validation of a listener's `[listener.client_auth]`: the mode, the CA bundle client
//! certificates are verified against and the CRLs that revoke some. Files are read here, and
//! the verifier is built once, so a bad bundle or CRL stops the start.

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateRevocationListDer;
use toml::Spanned;

use super::Validator;
use crate::config::file::FileClientAuth;
use crate::tls::{ClientAuth, ClientRoots};

const CA_HINT: &str =
    "expected a PEM file of one or more CA certificates (-----BEGIN CERTIFICATE-----)";
const CRL_HINT: &str = "expected PEM files of CRLs (-----BEGIN X509 CRL-----)";

impl Validator<'_> {
    pub(super) fn client_auth(&mut self, c: &Spanned<FileClientAuth>) -> ClientAuth {
        let (at, c) = (c.span(), c.get_ref());
        let mode = c.mode.as_ref().map(|m| (m.get_ref().as_str(), m.span()));
        let required = match mode {
            None | Some(("none", _)) => {
                for (key, span) in [
                    ("ca", c.ca.as_ref().map(|s| s.span())),
                    ("crl", c.crl.as_ref().map(|s| s.span())),
                ] {
                    if let Some(span) = span {
                        self.err(
                            span,
                            format!("`{key}` is set but client_auth mode is \"none\""),
                            "expected mode = \"optional\" or \"required\", or remove the key",
                        );
                    }
                }
                return ClientAuth::None;
            }
            Some(("optional", _)) => false,
            Some(("required", _)) => true,
            Some((other, span)) => {
                self.err(
                    span,
                    format!("unknown client_auth mode `{other}`"),
                    format!("expected {}", ClientAuth::NAMES),
                );
                return ClientAuth::None;
            }
        };
        let Some(ca) = &c.ca else {
            self.err(
                at,
                "client_auth asks for client certificates but names no `ca`",
                "expected ca = \"path/to/client-ca.pem\"",
            );
            return ClientAuth::None;
        };
        let Some(roots) = self.ca_bundle(CA_HINT, ca) else {
            return ClientAuth::None;
        };
        let crls = match &c.crl {
            Some(files) => self.crls(files),
            None => Vec::new(),
        };
        let roots = ClientRoots { roots, crls };
        let auth = if required {
            ClientAuth::Required(roots)
        } else {
            ClientAuth::Optional(roots)
        };
        if let Err(e) = auth.verifier() {
            let span = c.crl.as_ref().map(|s| s.span()).unwrap_or(ca.span());
            self.err(
                span,
                format!("cannot verify client certificates: {e}"),
                CRL_HINT,
            );
        }
        auth
    }

    fn crls(&mut self, files: &Spanned<Vec<String>>) -> Vec<CertificateRevocationListDer<'static>> {
        let mut out = Vec::new();
        for file in files.get_ref() {
            let path = self.path(file);
            let shown = path.display();
            let crls: Result<Vec<_>, String> = std::fs::read(&path)
                .map_err(|e| format!("cannot read {shown}: {e}"))
                .and_then(|text| {
                    CertificateRevocationListDer::pem_slice_iter(&text)
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(|e| format!("{shown}: bad PEM: {e}"))
                });
            match crls {
                Ok(c) if !c.is_empty() => out.extend(c),
                Ok(_) => self.err(
                    files.span(),
                    format!("{shown} holds no X509 CRL block"),
                    CRL_HINT,
                ),
                Err(why) => self.err(files.span(), why, CRL_HINT),
            }
        }
        out
    }
}
