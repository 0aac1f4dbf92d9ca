//! Mutual TLS with real clients: curl and `openssl s_client` presenting certificates from a CA
//! generated here, from another CA, revoked by a CRL, or none; what backends are told; 421.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyIdMethod, KeyPair, KeyUsagePurpose, RevocationReason,
    RevokedCertParams, SerialNumber,
};
use support::{curl_https, run_tool, ToolOut};

type Out = ToolOut;

struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

fn ca(name: &str) -> Ca {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.distinguished_name.push(DnType::CommonName, name);
    let key = KeyPair::generate().unwrap();
    let cert = p.self_signed(&key).unwrap();
    Ca { cert, key }
}

/// A client certificate for `cn` with serial `serial`, signed by `ca`, written to
/// `dir/<stem>.pem|.key`. Returns (cert path, key path, SHA-256 hex of the DER).
fn client_cert(
    dir: &Path,
    stem: &str,
    ca: &Ca,
    cn: &str,
    serial: u8,
) -> (PathBuf, PathBuf, String) {
    let mut p = CertificateParams::new(vec![format!("{stem}.client.test")]).unwrap();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    p.serial_number = Some(SerialNumber::from(vec![0x11, serial]));
    let key = KeyPair::generate().unwrap();
    let cert = p.signed_by(&key, &ca.cert, &ca.key).unwrap();
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, cert.der());
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    let (c, k) = (
        dir.join(format!("{stem}.pem")),
        dir.join(format!("{stem}.key")),
    );
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    (c, k, hex)
}

fn crl(ca: &Ca, revoked_serial: u8) -> String {
    CertificateRevocationListParams {
        this_update: rcgen::date_time_ymd(2024, 1, 1),
        next_update: rcgen::date_time_ymd(2099, 1, 1),
        crl_number: SerialNumber::from(vec![1]),
        issuing_distribution_point: None,
        revoked_certs: vec![RevokedCertParams {
            serial_number: SerialNumber::from(vec![0x11, revoked_serial]),
            revocation_time: rcgen::date_time_ymd(2024, 1, 1),
            reason_code: Some(RevocationReason::KeyCompromise),
            invalidity_date: None,
        }],
        key_identifier_method: KeyIdMethod::Sha256,
    }
    .signed_by(&ca.cert, &ca.key)
    .unwrap()
    .pem()
    .unwrap()
}

struct Setup {
    _dir: tempfile::TempDir,
    terminus: support::InProcess,
    server_ca: PathBuf,
    good: (PathBuf, PathBuf, String),
    foreign: (PathBuf, PathBuf, String),
    revoked: (PathBuf, PathBuf, String),
}

/// Listeners `required` (with a CRL) and `optional`, both for a.test and b.test (two
/// certificates), in front of a demo backend.
async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let a = support::write_cert(d, "a", &["a.test"]);
    let b = support::write_cert(d, "b", &["b.test"]);
    let server_ca = d.join("server-ca.pem");
    std::fs::write(&server_ca, format!("{}{}", a.cert_pem, b.cert_pem)).unwrap();
    let (ca1, ca2) = (ca("Client CA"), ca("Other CA"));
    std::fs::write(d.join("client-ca.pem"), ca1.cert.pem()).unwrap();
    std::fs::write(d.join("client.crl"), crl(&ca1, 9)).unwrap();
    let good = client_cert(d, "good", &ca1, "client one", 1);
    let revoked = client_cert(d, "revoked", &ca1, "client revoked", 9);
    let foreign = client_cert(d, "foreign", &ca2, "client foreign", 1);
    let backend = support::demo_backend("app", Duration::ZERO).await;
    let certs = format!(
        "[[certificate]]\nname = \"a\"\ncert = \"{}\"\nkey = \"{}\"\n\n[[certificate]]\nname = \"b\"\ncert = \"{}\"\nkey = \"{}\"\n",
        a.cert_path.display(), a.key_path.display(), b.cert_path.display(), b.key_path.display()
    );
    let config = format!(
        r#"{certs}
[[listener]]
name = "required"
bind = "127.0.0.1:0"
  [listener.client_auth]
  mode = "required"
  ca = "client-ca.pem"
  crl = ["client.crl"]
  [[listener.route]]
  pool = "app"

[[listener]]
name = "optional"
bind = "127.0.0.1:0"
  [listener.client_auth]
  mode = "optional"
  ca = "client-ca.pem"
  [[listener.route]]
  pool = "app"

[[pool]]
name = "app"
  [[pool.backend]]
  address = "{backend}"
"#
    );
    let terminus = support::start(d, &config).await;
    Setup {
        _dir: dir,
        terminus,
        server_ca,
        good,
        foreign,
        revoked,
    }
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// curl to `https://a.test:PORT/headers`; stdout ends with a line holding the status.
async fn curl(
    addr: SocketAddr,
    ca: &Path,
    cert: Option<&(PathBuf, PathBuf, String)>,
    extra: &[&str],
) -> Out {
    let mut args = vec!["-w", "\nSTATUS %{http_code}"];
    if let Some((c, k, _)) = cert {
        args.extend_from_slice(&["--cert", p(c), "--key", p(k)]);
    }
    args.extend_from_slice(extra);
    curl_https(addr, "a.test", "/headers", ca, &args).await
}

fn status(out: &Out) -> &str {
    out.stdout
        .rsplit_once("STATUS ")
        .map(|(_, s)| s.trim())
        .unwrap_or("")
}

fn refused(out: &Out) -> bool {
    // curl -sS says why on stderr; no request reached the backend.
    out.code != Some(0) && !out.stderr.is_empty() && !out.stdout.contains("x-client-cert")
}

#[tokio::test]
async fn required_takes_only_valid_unrevoked_certificates() {
    let s = setup().await;
    let addr = s.terminus.addr("required");
    let none = curl(addr, &s.server_ca, None, &[]).await;
    assert!(refused(&none), "no certificate: {none:?}");
    let foreign = curl(addr, &s.server_ca, Some(&s.foreign), &[]).await;
    assert!(refused(&foreign), "another CA: {foreign:?}");
    let revoked = curl(addr, &s.server_ca, Some(&s.revoked), &[]).await;
    assert!(refused(&revoked), "revoked: {revoked:?}");
    let good = curl(addr, &s.server_ca, Some(&s.good), &[]).await;
    assert_eq!(status(&good), "200", "{good:?}");
    let h = good.stdout.to_ascii_lowercase();
    assert!(h.contains("x-client-cert-verified: success"), "{h}");
    assert!(h.contains("x-client-cert-subject: cn=client one"), "{h}");
    assert!(
        h.contains(&format!("x-client-cert-fingerprint: {}", s.good.2)),
        "{h}"
    );
    assert!(h.contains("x-client-cert-san: dns:good.client.test"), "{h}");
    assert!(h.contains(&format!("x-forwarded-client-cert: hash={};subject=\"cn=client one\";dns=good.client.test;cert=\"-----begin%20certificate-----%0a", s.good.2)), "{h}");
}

#[tokio::test]
async fn openssl_s_client_with_and_without_a_certificate() {
    let s = setup().await;
    let connect = s.terminus.addr("required").to_string();
    let request = "GET /headers HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n";
    let run = |cert: Option<(PathBuf, PathBuf)>| {
        let connect = connect.clone();
        async move {
            let mut args = vec![
                "s_client",
                "-connect",
                &connect,
                "-servername",
                "a.test",
                "-ign_eof",
            ];
            let (c, k);
            if let Some((cert, key)) = cert {
                (c, k) = (cert.display().to_string(), key.display().to_string());
                args.extend_from_slice(&["-cert", &c, "-key", &k]);
            }
            run_tool("openssl", &args, Some(request)).await
        }
    };
    let with = run(Some((s.good.0.clone(), s.good.1.clone()))).await;
    assert!(with.stdout.contains("HTTP/1.1 200"), "{with:?}");
    assert!(
        with.stdout.contains("x-client-cert-verified: SUCCESS"),
        "{with:?}"
    );
    let without = run(None).await;
    assert!(!without.stdout.contains("HTTP/1.1 200"), "{without:?}");
    let foreign = run(Some((s.foreign.0.clone(), s.foreign.1.clone()))).await;
    assert!(!foreign.stdout.contains("HTTP/1.1 200"), "{foreign:?}");
}

#[tokio::test]
async fn optional_serves_without_a_certificate_and_never_forwards_forged_headers() {
    let s = setup().await;
    let addr = s.terminus.addr("optional");
    let forged = [
        "-H",
        "x-client-cert-verified: SUCCESS",
        "-H",
        "x-client-cert-subject: CN=admin",
        "-H",
        "x-client-cert-san: DNS:admin.test",
        "-H",
        "x-client-cert-fingerprint: 00",
        "-H",
        "x-forwarded-client-cert: Hash=00;Subject=\"CN=admin\"",
    ];
    let none = curl(addr, &s.server_ca, None, &forged).await;
    assert_eq!(status(&none), "200", "{none:?}");
    let h = none.stdout.to_ascii_lowercase();
    assert!(h.contains("x-client-cert-verified: none"), "{h}");
    assert!(
        !h.contains("admin") && !h.contains("success") && !h.contains("hash=00"),
        "{h}"
    );
    let good = curl(addr, &s.server_ca, Some(&s.good), &forged).await;
    assert_eq!(status(&good), "200", "{good:?}");
    let h = good.stdout.to_ascii_lowercase();
    assert_eq!(h.matches("x-client-cert-subject:").count(), 1, "{h}");
    assert!(h.contains("x-client-cert-subject: cn=client one"), "{h}");
    assert!(!h.contains("admin") && !h.contains("hash=00"), "{h}");
    let foreign = curl(addr, &s.server_ca, Some(&s.foreign), &[]).await;
    assert!(
        refused(&foreign),
        "a certificate from another CA is refused even when optional: {foreign:?}"
    );
}

#[tokio::test]
async fn a_host_served_under_another_certificate_than_the_sni_is_421() {
    let s = setup().await;
    for listener in ["required", "optional"] {
        let addr = s.terminus.addr(listener);
        let other = curl(addr, &s.server_ca, Some(&s.good), &["-H", "Host: b.test"]).await;
        assert_eq!(status(&other), "421", "{listener}: {other:?}");
        let same = curl(
            addr,
            &s.server_ca,
            Some(&s.good),
            &["-H", "Host: A.TEST:443"],
        )
        .await;
        assert_eq!(status(&same), "200", "{listener}: {same:?}");
    }
}
