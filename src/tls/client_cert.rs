//! What a verified client certificate tells backends: subject, SANs, SHA-256 fingerprint and
//! an Envoy-style `x-forwarded-client-cert` element, computed once per connection.

use std::fmt::Write;

use base64::Engine;
use http::HeaderValue;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// The header values describing a client's leaf certificate.
#[derive(Debug, Clone)]
pub struct ClientCert {
    pub subject: HeaderValue,
    /// `DNS:a.example, URI:spiffe://x, IP:10.0.0.1, email:a@b`.
    pub san: HeaderValue,
    /// Lower-case hex SHA-256 of the leaf's DER.
    pub fingerprint: HeaderValue,
    /// `Hash=..;Subject="..";URI=..;DNS=..;Cert="<url-encoded PEM>"`.
    pub xfcc: HeaderValue,
}

impl ClientCert {
    /// From the leaf's DER. rustls has already verified it; should x509-parser still fail to
    /// read it, subject and SANs are empty and the hash and PEM are still given.
    pub fn from_der(der: &[u8]) -> Self {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der);
        let hash = hex(digest.as_ref());
        let (subject, sans) = match X509Certificate::from_der(der) {
            Ok((_, cert)) => (escape_dn(&cert.subject().to_string()), sans(&cert)),
            Err(_) => (String::new(), Vec::new()),
        };
        let mut xfcc = format!("Hash={hash};Subject=\"{}\"", subject.replace('"', "\\\""));
        for (kind, value) in &sans {
            if matches!(*kind, "URI" | "DNS") {
                let _ = write!(xfcc, ";{kind}={}", url_encode(value));
            }
        }
        let _ = write!(xfcc, ";Cert=\"{}\"", url_encode(&pem(der)));
        let san = sans
            .iter()
            .map(|(kind, value)| format!("{kind}:{value}"))
            .collect::<Vec<_>>()
            .join(", ");
        Self {
            subject: value(subject),
            san: value(escape_dn(&san)),
            fingerprint: value(hash),
            xfcc: value(xfcc),
        }
    }
}

fn sans(cert: &X509Certificate<'_>) -> Vec<(&'static str, String)> {
    let Ok(Some(ext)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    ext.value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::DNSName(d) => Some(("DNS", d.to_string())),
            GeneralName::URI(u) => Some(("URI", u.to_string())),
            GeneralName::RFC822Name(e) => Some(("email", e.to_string())),
            GeneralName::IPAddress(ip) => ip_text(ip).map(|t| ("IP", t)),
            _ => None,
        })
        .collect()
}

fn ip_text(bytes: &[u8]) -> Option<String> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes)
            .ok()
            .map(|b| std::net::Ipv4Addr::from(b).to_string()),
        16 => <[u8; 16]>::try_from(bytes)
            .ok()
            .map(|b| std::net::Ipv6Addr::from(b).to_string()),
        _ => None,
    }
}

/// Header values take visible ASCII: other bytes become RFC 4514's `\XX`.
fn escape_dn(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if (0x20..0x7f).contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "\\{b:02X}");
        }
    }
    out
}

/// Percent-encodes all but RFC 3986's unreserved characters.
fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3 / 2);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

fn pem(der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Every string given is visible ASCII (escaped above), so this never fails in practice; an
/// empty value stands in should it.
fn value(s: String) -> HeaderValue {
    HeaderValue::try_from(s).unwrap_or_else(|_| HeaderValue::from_static(""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts_of_a_generated_certificate() {
        let mut params = rcgen::CertificateParams::new(vec!["client.test".to_string()]).unwrap();
        params
            .subject_alt_names
            .push(rcgen::SanType::URI("spiffe://t/c".try_into().unwrap()));
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Client \"Ü\"");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let c = ClientCert::from_der(cert.der());
        assert_eq!(c.subject, "CN=Client \"\\C3\\9C\"");
        assert_eq!(c.san, "DNS:client.test, URI:spiffe://t/c");
        assert_eq!(c.fingerprint.len(), 64);
        let xfcc = c.xfcc.to_str().unwrap();
        let hash = c.fingerprint.to_str().unwrap();
        assert!(xfcc.starts_with(&format!("Hash={hash};Subject=\"CN=Client \\\"\\C3\\9C\\\"\";DNS=client.test;URI=spiffe%3A%2F%2Ft%2Fc;Cert=\"-----BEGIN%20CERTIFICATE-----%0A")), "{xfcc}");
    }
}
