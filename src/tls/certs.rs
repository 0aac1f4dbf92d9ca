//! Loading certificates and keys (PEM chains; PKCS#8, SEC1 and PKCS#1 keys) and generating
//! self-signed ones, with the DNS names each certificate is valid for.

use std::path::Path;
use std::sync::Arc;

use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::crypto_provider;

/// Why a certificate or key could not be loaded. Each message says what was expected.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not PEM (no `-----BEGIN` line); if it is DER, convert it with `openssl x509 -inform der -in {path} -out cert.pem` (a certificate) or `openssl pkey -inform der -in {path} -out key.pem` (a key)")]
    NotPem { path: String },
    #[error("{path} holds no CERTIFICATE block; expected a PEM chain, leaf first")]
    NoCertificate { path: String },
    #[error("{path}: bad PEM: {detail}")]
    BadPem { path: String, detail: String },
    #[error(
        "{path} holds an encrypted key; decrypt it with `openssl pkey -in {path} -out key.pem`"
    )]
    EncryptedKey { path: String },
    #[error("{path} holds no private key; expected a PEM PRIVATE KEY (PKCS#8), EC PRIVATE KEY (SEC1) or RSA PRIVATE KEY (PKCS#1) block")]
    NoKey { path: String },
    #[error("{path}: unsupported private key: {detail}; expected an ECDSA (P-256/P-384), RSA (2048+ bits) or Ed25519 key")]
    UnsupportedKey { path: String, detail: String },
    #[error("the key {key} does not match the certificate {cert}; expected the private key of the leaf certificate")]
    KeyMismatch { cert: String, key: String },
    #[error("{path}: the leaf certificate cannot be parsed: {detail}")]
    BadCertificate { path: String, detail: String },
    #[error("cannot generate a self-signed certificate: {0}")]
    Generate(String),
}

/// A certificate chain with its key, ready for the SNI resolver.
#[derive(Clone)]
pub struct LoadedCert {
    pub key: Arc<CertifiedKey>,
    /// Lower-case DNS names from the leaf's SANs (or its CN when it has no DNS SAN); `*.x` for wildcards.
    pub dns_names: Vec<String>,
}

impl std::fmt::Debug for LoadedCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedCert")
            .field("dns_names", &self.dns_names)
            .finish()
    }
}

fn read_pem_text(path: &Path) -> Result<String, CertError> {
    let shown = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| CertError::Read {
        path: shown.clone(),
        source,
    })?;
    match String::from_utf8(bytes) {
        Ok(text) if text.contains("-----BEGIN ") => Ok(text),
        _ => Err(CertError::NotPem { path: shown }),
    }
}

/// Loads a PEM chain and its key from files and checks that they belong together.
pub fn load_pem_files(cert_path: &Path, key_path: &Path) -> Result<LoadedCert, CertError> {
    let cert_text = read_pem_text(cert_path)?;
    let key_text = read_pem_text(key_path)?;
    warn_if_readable_by_others(key_path);
    load_pem(
        &cert_text,
        &cert_path.display().to_string(),
        &key_text,
        &key_path.display().to_string(),
    )
}

/// A private key that group or others may read is a leak waiting to happen, but not a reason
/// to refuse to start: say so, with the command that fixes it.
fn warn_if_readable_by_others(key_path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(key_path) {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                tracing::warn!(
                    key = %key_path.display(),
                    mode = format_args!("{mode:o}"),
                    "private key file is readable by others than its owner; fix with `chmod 600 {}`",
                    key_path.display()
                );
            }
        }
    }
}

/// Loads a PEM chain and key from text; the names are used in error messages.
pub fn load_pem(
    cert_text: &str,
    cert_name: &str,
    key_text: &str,
    key_name: &str,
) -> Result<LoadedCert, CertError> {
    let bad_pem = |path: &str, e: rustls_pki_types::pem::Error| CertError::BadPem {
        path: path.to_string(),
        detail: e.to_string(),
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_text.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| bad_pem(cert_name, e))?;
    let Some(leaf) = chain.first() else {
        return Err(CertError::NoCertificate {
            path: cert_name.to_string(),
        });
    };
    if key_text.contains("ENCRYPTED") {
        return Err(CertError::EncryptedKey {
            path: key_name.to_string(),
        });
    }
    let key_der = match PrivateKeyDer::from_pem_slice(key_text.as_bytes()) {
        Ok(k) => k,
        Err(rustls_pki_types::pem::Error::NoItemsFound) => {
            return Err(CertError::NoKey {
                path: key_name.to_string(),
            })
        }
        Err(e) => return Err(bad_pem(key_name, e)),
    };
    let dns_names = leaf_dns_names(leaf).map_err(|detail| CertError::BadCertificate {
        path: cert_name.to_string(),
        detail,
    })?;
    let signing_key = crypto_provider()
        .key_provider
        .load_private_key(key_der)
        .map_err(|e| CertError::UnsupportedKey {
            path: key_name.to_string(),
            detail: e.to_string(),
        })?;
    let key = CertifiedKey::new(chain, signing_key);
    if let Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) =
        key.keys_match()
    {
        return Err(CertError::KeyMismatch {
            cert: cert_name.to_string(),
            key: key_name.to_string(),
        });
    }
    Ok(LoadedCert {
        key: Arc::new(key),
        dns_names,
    })
}

/// The DNS names a leaf certificate is valid for: its DNS SANs, or its CN when it has none.
fn leaf_dns_names(leaf: &CertificateDer<'_>) -> Result<Vec<String>, String> {
    let (_, cert) = X509Certificate::from_der(leaf.as_ref()).map_err(|e| e.to_string())?;
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for general in &san.value.general_names {
            if let GeneralName::DNSName(name) = general {
                names.push(name.to_ascii_lowercase());
            }
        }
    }
    if names.is_empty() {
        for cn in cert.subject().iter_common_name() {
            if let Ok(s) = cn.as_str() {
                names.push(s.to_ascii_lowercase());
            }
        }
    }
    Ok(names)
}

/// PEM text of a freshly generated self-signed certificate and its key.
pub struct GeneratedPem {
    pub cert_pem: String,
    pub key_pem: String,
}

/// Generates an ECDSA P-256 self-signed certificate for `names` (DNS names or IP addresses).
pub fn generate_self_signed(names: &[String]) -> Result<GeneratedPem, CertError> {
    let certified = rcgen::generate_simple_self_signed(names.to_vec())
        .map_err(|e| CertError::Generate(e.to_string()))?;
    Ok(GeneratedPem {
        cert_pem: certified.cert.pem(),
        key_pem: certified.key_pair.serialize_pem(),
    })
}

/// Generates and loads a self-signed certificate for `names`.
pub fn self_signed(names: &[String]) -> Result<LoadedCert, CertError> {
    let pem = generate_self_signed(names)?;
    load_pem(&pem.cert_pem, "self-signed", &pem.key_pem, "self-signed")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_certificate_has_its_names() {
        let cert = self_signed(&["localhost".into(), "*.example.com".into()]).unwrap();
        assert_eq!(cert.dns_names, vec!["localhost", "*.example.com"]);
    }

    #[test]
    fn mismatched_key_is_refused() {
        let a = generate_self_signed(&["a.test".into()]).unwrap();
        let b = generate_self_signed(&["b.test".into()]).unwrap();
        let err = load_pem(&a.cert_pem, "a.pem", &b.key_pem, "b.key").unwrap_err();
        assert!(matches!(err, CertError::KeyMismatch { .. }), "{err}");
    }

    #[test]
    fn encrypted_and_missing_keys_are_named() {
        let a = generate_self_signed(&["a.test".into()]).unwrap();
        let enc =
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n";
        let err = load_pem(&a.cert_pem, "a.pem", enc, "k.pem").unwrap_err();
        assert!(matches!(err, CertError::EncryptedKey { .. }), "{err}");
        let err = load_pem(&a.cert_pem, "a.pem", &a.cert_pem, "k.pem").unwrap_err();
        assert!(matches!(err, CertError::NoKey { .. }), "{err}");
        let err = load_pem(&a.key_pem, "a.pem", &a.key_pem, "k.pem").unwrap_err();
        assert!(matches!(err, CertError::NoCertificate { .. }), "{err}");
    }
}
