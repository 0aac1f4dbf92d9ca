//! Loading certificates and keys (PEM chains; PKCS#8, SEC1 and PKCS#1 keys) and generating
//! self-signed ones, with the DNS names each certificate is valid for and when it expires.

use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

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
    /// The leaf's notAfter, in seconds since the Unix epoch (kept for an expiry metric).
    pub not_after: i64,
}

/// Fewer days than this left before notAfter is warned about at load.
pub const EXPIRY_WARN_DAYS: i64 = 14;

const DAY_SECS: i64 = 86_400;

/// Whole days from `now` until `not_after` (Unix seconds), rounded down; negative once expired.
pub fn days_left(not_after: i64, now: SystemTime) -> i64 {
    let now = match now.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    };
    not_after.saturating_sub(now).div_euclid(DAY_SECS)
}

/// How a certificate's expiry is reported at load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    Fine,
    Soon,
    Expired,
}

impl LoadedCert {
    /// Classifies the expiry at `now`: expired, under `EXPIRY_WARN_DAYS` left, or fine.
    pub fn expiry(&self, now: SystemTime) -> (i64, Expiry) {
        let days = days_left(self.not_after, now);
        let kind = if days < 0 {
            Expiry::Expired
        } else if days < EXPIRY_WARN_DAYS {
            Expiry::Soon
        } else {
            Expiry::Fine
        };
        (days, kind)
    }

    /// Logs the days left before notAfter: `info` always, `warn` when under
    /// `EXPIRY_WARN_DAYS` or already expired. An expired certificate is still served.
    pub fn log_expiry(&self, name: &str) {
        let (days, kind) = self.expiry(SystemTime::now());
        match kind {
            Expiry::Fine => tracing::info!(certificate = name, days_left = days, "certificate loaded"),
            Expiry::Soon => tracing::warn!(
                certificate = name,
                days_left = days,
                "certificate expires in under {EXPIRY_WARN_DAYS} days; renew it"
            ),
            Expiry::Expired => tracing::warn!(
                certificate = name,
                days_left = days,
                "certificate has EXPIRED and is still served; clients that check dates will refuse it until it is renewed"
            ),
        }
    }

    /// The same certificate with `der` stapled as its OCSP response.
    pub fn with_ocsp(mut self, der: Vec<u8>) -> Self {
        let mut key = (*self.key).clone();
        key.ocsp = Some(der);
        self.key = Arc::new(key);
        self
    }
}

impl std::fmt::Debug for LoadedCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedCert")
            .field("dns_names", &self.dns_names)
            .field("not_after", &self.not_after)
            .field("ocsp", &self.key.ocsp.as_ref().map(Vec::len))
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
    let (dns_names, not_after) = leaf_facts(leaf).map_err(|detail| CertError::BadCertificate {
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
        not_after,
    })
}

/// The DNS names a leaf certificate is valid for (its DNS SANs, or its CN when it has none),
/// and its notAfter in Unix seconds.
fn leaf_facts(leaf: &CertificateDer<'_>) -> Result<(Vec<String>, i64), String> {
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
    Ok((names, cert.validity().not_after.timestamp()))
}

/// PEM text of a freshly generated self-signed certificate and its key.
pub struct GeneratedPem {
    pub cert_pem: String,
    pub key_pem: String,
}

/// Generates an ECDSA P-256 self-signed certificate for `names` (DNS names or IP addresses).
pub fn generate_self_signed(names: &[String]) -> Result<GeneratedPem, CertError> {
    let gen = |e: rcgen::Error| CertError::Generate(e.to_string());
    let mut params = rcgen::CertificateParams::new(names.to_vec()).map_err(gen)?;
    // Valid from an hour ago (clocks differ) for 89 days: within what Mozilla's modern profile
    // allows (90), so TLS scanners judge the policy, not a centuries-long test certificate. A
    // reload or restart makes a new one.
    let now = x509_parser::time::ASN1Time::now().to_datetime();
    params.not_before = now - std::time::Duration::from_secs(3600);
    params.not_after = now + std::time::Duration::from_secs(89 * 86_400);
    let key = rcgen::KeyPair::generate().map_err(gen)?;
    let cert = params.self_signed(&key).map_err(gen)?;
    Ok(GeneratedPem {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
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

    /// A self-signed certificate whose notAfter is `now + offset_days`.
    fn expiring_in(offset_days: i64) -> LoadedCert {
        let mut params = rcgen::CertificateParams::new(vec!["x.test".to_string()]).unwrap();
        let now = x509_parser::time::ASN1Time::now().to_datetime();
        params.not_before = now - std::time::Duration::from_secs(200 * 86_400);
        params.not_after = if offset_days >= 0 {
            now + std::time::Duration::from_secs(offset_days.unsigned_abs() * 86_400)
        } else {
            now - std::time::Duration::from_secs(offset_days.unsigned_abs() * 86_400)
        };
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        load_pem(&cert.pem(), "x.pem", &key.serialize_pem(), "x.key").unwrap()
    }

    #[test]
    fn days_left_rounds_down_and_goes_negative() {
        let at = |secs: u64| SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(secs);
        assert_eq!(days_left(10 * DAY_SECS, at(0)), 10);
        assert_eq!(days_left(10 * DAY_SECS, at(1)), 9);
        assert_eq!(days_left(10 * DAY_SECS, at(10 * 86_400)), 0);
        assert_eq!(days_left(10 * DAY_SECS, at(10 * 86_400 + 1)), -1);
    }

    #[test]
    fn expiry_is_read_from_the_leaf_and_classified() {
        let now = SystemTime::now();
        // Seconds pass between generating and checking, so 5 days become 4.99.
        let (days, kind) = expiring_in(5).expiry(now);
        assert!((4..=5).contains(&days), "{days}");
        assert_eq!(kind, Expiry::Soon);
        let (days, kind) = expiring_in(100).expiry(now);
        assert!((99..=100).contains(&days), "{days}");
        assert_eq!(kind, Expiry::Fine);
        let (days, kind) = expiring_in(-3).expiry(now);
        assert!((-4..=-3).contains(&days), "{days}");
        assert_eq!(kind, Expiry::Expired);
    }

    #[test]
    fn ocsp_is_stapled_on_the_key() {
        let cert = self_signed(&["a.test".into()]).unwrap();
        assert!(cert.key.ocsp.is_none());
        let stapled = cert.with_ocsp(vec![0x30, 0x03, 0x0a, 0x01, 0x01]);
        assert_eq!(
            stapled.key.ocsp.as_deref(),
            Some(&[0x30, 0x03, 0x0a, 0x01, 0x01][..])
        );
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
