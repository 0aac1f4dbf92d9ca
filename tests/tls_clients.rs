//! TLS with real clients: curl and `openssl s_client` as a user would run them, and a rustls
//! client for the post-quantum key exchange, against terminus in process in front of a demo
//! backend. Certificates are made in each test; every external command runs under `timeout`
//! and talks to 127.0.0.1 only.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::crypto::aws_lc_rs;
use rustls::pki_types::ServerName;
use rustls::NamedGroup;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

type Out = ToolOut;

async fn run(program: &str, args: &[&str], stdin: Option<&str>) -> Out {
    run_tool(program, args, stdin).await
}

/// Runs an openssl subcommand that must succeed.
async fn openssl_ok(args: &[&str]) -> Out {
    let out = run("openssl", args, None).await;
    assert!(
        out.ok(),
        "openssl {} failed:\n{}",
        args.join(" "),
        out.all()
    );
    out
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// An RSA 2048 self-signed certificate made by `openssl req` (PKCS#8 key), with subject CN `cn`.
async fn rsa_cert(dir: &Path, stem: &str, cn: &str, names: &[&str]) -> TestCert {
    let cert_path = dir.join(format!("{stem}.pem"));
    let key_path = dir.join(format!("{stem}.key"));
    let subj = format!("/CN={cn}");
    let san = format!("subjectAltName=DNS:{}", names.join(",DNS:"));
    openssl_ok(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        &subj,
        "-addext",
        &san,
        "-keyout",
        p(&key_path),
        "-out",
        p(&cert_path),
    ])
    .await;
    let cert_pem = std::fs::read_to_string(&cert_path).unwrap();
    TestCert {
        cert_path,
        key_path,
        cert_pem,
    }
}

/// A self-signed certificate for the key in `key_path`, made by `openssl req -key`.
async fn cert_for_key(dir: &Path, stem: &str, key_path: PathBuf, name: &str) -> TestCert {
    let cert_path = dir.join(format!("{stem}.pem"));
    let subj = format!("/CN={stem}");
    let san = format!("subjectAltName=DNS:{name}");
    openssl_ok(&[
        "req",
        "-x509",
        "-new",
        "-key",
        p(&key_path),
        "-days",
        "2",
        "-subj",
        &subj,
        "-addext",
        &san,
        "-out",
        p(&cert_path),
    ])
    .await;
    let cert_pem = std::fs::read_to_string(&cert_path).unwrap();
    TestCert {
        cert_path,
        key_path,
        cert_pem,
    }
}

/// A config with `certs` (name, files), one listener per `(name, extra keys)` routing to a
/// pool with the one backend `backend`.
fn config(certs: &[(&str, &TestCert)], listeners: &[(&str, &str)], backend: SocketAddr) -> String {
    let mut s = String::new();
    for (name, c) in certs {
        s += &format!(
            "[[certificate]]\nname = \"{name}\"\ncert = \"{}\"\nkey = \"{}\"\n\n",
            c.cert_path.display(),
            c.key_path.display()
        );
    }
    for (name, extra) in listeners {
        s += &format!(
            "[[listener]]\nname = \"{name}\"\nbind = \"127.0.0.1:0\"\n{extra}\n  [[listener.route]]\n  pool = \"app\"\n\n"
        );
    }
    s + &format!("[[pool]]\nname = \"app\"\n  [[pool.backend]]\n  name = \"app\"\n  address = \"{backend}\"\n")
}

/// `curl` to `https://NAME:PORT/` resolved to 127.0.0.1, trusting `ca`; stdout ends with a
/// line `STATUS HTTP_VERSION`, stderr holds the verbose handshake.
/// Terminus with one certificate, for `app.test`, and one `https` listener in front of a demo
/// backend; the temp dir holds the certificate files.
async fn app_listener() -> (tempfile::TempDir, TestCert, InProcess) {
    let dir = tempfile::tempdir().unwrap();
    let cert = write_cert(dir.path(), "app", &["app.test"]);
    let backend = demo_backend("app", Duration::ZERO).await;
    let t = start(
        dir.path(),
        &config(&[("app", &cert)], &[("https", "")], backend),
    )
    .await;
    (dir, cert, t)
}

async fn curl(addr: SocketAddr, name: &str, ca: &Path, extra: &[&str]) -> Out {
    let mut args = vec!["-v", "-w", "\n%{http_code} %{http_version}"];
    args.extend_from_slice(extra);
    curl_https(addr, name, "/", ca, &args).await
}

/// `openssl s_client` to `addr` with stdin closed, so it ends after the handshake.
async fn s_client(addr: SocketAddr, extra: &[&str]) -> Out {
    let connect = addr.to_string();
    let mut args = vec!["s_client", "-connect", &connect];
    args.extend_from_slice(extra);
    run("openssl", &args, None).await
}

/// The server certificate `s_client` printed, as PEM.
fn served_pem(out: &Out) -> String {
    let s = &out.stdout;
    let start = s.find("-----BEGIN CERTIFICATE-----");
    let end = s.find("-----END CERTIFICATE-----");
    match (start, end) {
        (Some(a), Some(b)) => s[a..b + "-----END CERTIFICATE-----".len()].to_string(),
        _ => panic!("no server certificate in s_client output:\n{}", out.all()),
    }
}

fn same_cert(a: &str, b: &str) -> bool {
    let strip = |s: &str| s.split_whitespace().collect::<String>();
    strip(a) == strip(b)
}

/// The subjectAltName extension of a PEM certificate as `openssl x509` prints it.
async fn san_of(pem: &str) -> String {
    let out = run(
        "openssl",
        &["x509", "-noout", "-ext", "subjectAltName"],
        Some(pem),
    )
    .await;
    assert!(out.ok(), "openssl x509 failed:\n{}", out.all());
    out.stdout.lines().nth(1).unwrap_or("").trim().to_string()
}

fn ca_bundle(dir: &Path, certs: &[&TestCert]) -> PathBuf {
    let path = dir.join("ca-bundle.pem");
    let pems: Vec<&str> = certs.iter().map(|c| c.cert_pem.as_str()).collect();
    std::fs::write(&path, pems.join("\n")).unwrap();
    path
}

#[tokio::test]
async fn curl_speaks_tls12_and_tls13_over_http1_and_http2() {
    let (_dir, cert, t) = app_listener().await;
    let tls12: &[&str] = &["--tlsv1.2", "--tls-max", "1.2"];
    let tls13: &[&str] = &["--tlsv1.3"];
    for (tls, tls_name) in [(tls12, "TLSv1.2"), (tls13, "TLSv1.3")] {
        for (http, version, alpn) in [("--http1.1", "1.1", "http/1.1"), ("--http2", "2", "h2")] {
            let mut extra = tls.to_vec();
            extra.push(http);
            let out = curl(t.addr("https"), "app.test", &cert.cert_path, &extra).await;
            let case = format!("{tls_name} {http}:\n{}", out.all());
            assert!(out.ok(), "{case}");
            assert_eq!(
                out.stdout,
                format!("Hello from app\n\n200 {version}"),
                "{case}"
            );
            assert!(
                out.stderr
                    .contains(&format!("SSL connection using {tls_name} / ")),
                "{case}"
            );
            assert!(
                out.stderr
                    .contains(&format!("ALPN: server accepted {alpn}")),
                "{case}"
            );
        }
    }
}

#[tokio::test]
async fn sni_picks_the_certificate_by_name_wildcard_or_the_default() {
    let dir = tempfile::tempdir().unwrap();
    let a = write_cert(dir.path(), "a", &["a.test"]);
    let b = write_cert(dir.path(), "b", &["b.test"]);
    let w = write_cert(dir.path(), "w", &["*.w.test"]);
    let d = write_cert(dir.path(), "d", &["default.test"]);
    let backend = demo_backend("app", Duration::ZERO).await;
    let certs = [("a", &a), ("b", &b), ("w", &w), ("d", &d)];
    // The default is not the first certificate, so this checks the key is honoured.
    let listener = "default_certificate = \"d\"";
    let t = start(dir.path(), &config(&certs, &[("https", listener)], backend)).await;
    let cases: &[(&[&str], &TestCert, &str)] = &[
        (&["-servername", "a.test"], &a, "DNS:a.test"),
        (&["-servername", "b.test"], &b, "DNS:b.test"),
        (&["-servername", "B.Test"], &b, "DNS:b.test"),
        (&["-servername", "x.w.test"], &w, "DNS:*.w.test"),
        // A wildcard covers one label only: not deeper names, not the bare parent.
        (&["-servername", "y.x.w.test"], &d, "DNS:default.test"),
        (&["-servername", "w.test"], &d, "DNS:default.test"),
        (&["-servername", "unknown.test"], &d, "DNS:default.test"),
        (&["-noservername"], &d, "DNS:default.test"),
    ];
    for (args, want, san) in cases {
        let out = s_client(t.addr("https"), args).await;
        assert!(out.ok(), "{args:?}:\n{}", out.all());
        let pem = served_pem(&out);
        assert!(
            same_cert(&pem, &want.cert_pem),
            "{args:?} got another certificate"
        );
        assert_eq!(&san_of(&pem).await, san, "{args:?}");
    }
    // The certificate chosen by SNI verifies for that name with the client's own checks.
    // (One CA file each: the rcgen certificates share a subject, which confuses the lookup.)
    for (name, ca) in [("a.test", &a), ("x.w.test", &w)] {
        let args = [
            "-servername",
            name,
            "-CAfile",
            p(&ca.cert_path),
            "-verify_hostname",
            name,
            "-verify_return_error",
        ];
        let out = s_client(t.addr("https"), &args).await;
        assert!(
            out.ok() && out.stdout.contains("Verify return code: 0 (ok)"),
            "{name}:\n{}",
            out.all()
        );
    }
}

#[tokio::test]
async fn alpn_negotiates_h2_or_http11_in_the_listeners_order() {
    let dir = tempfile::tempdir().unwrap();
    let cert = write_cert(dir.path(), "app", &["app.test"]);
    let backend = demo_backend("app", Duration::ZERO).await;
    let listeners = [("both", ""), ("h1", "alpn = [\"http/1.1\"]")];
    let t = start(dir.path(), &config(&[("app", &cert)], &listeners, backend)).await;
    let cases = [
        ("both", "h2", "h2"),
        ("both", "http/1.1", "http/1.1"),
        ("both", "http/1.1,h2", "h2"),
        ("h1", "h2,http/1.1", "http/1.1"),
    ];
    for (listener, offer, want) in cases {
        let args = ["-servername", "app.test", "-alpn", offer];
        let out = s_client(t.addr(listener), &args).await;
        assert!(out.ok(), "{listener} {offer}:\n{}", out.all());
        assert!(
            out.stdout.contains(&format!("ALPN protocol: {want}\n")),
            "{listener} {offer}:\n{}",
            out.all()
        );
    }
}

#[tokio::test]
async fn tls10_and_tls11_are_refused() {
    let (_dir, _cert, t) = app_listener().await;
    // SECLEVEL=0 lets OpenSSL 3 offer the old versions at all; the refusal must be terminus's.
    let cipher = ["-cipher", "DEFAULT:@SECLEVEL=0", "-servername", "app.test"];
    for version in ["-tls1", "-tls1_1"] {
        let mut args = cipher.to_vec();
        args.push(version);
        let out = s_client(t.addr("https"), &args).await;
        assert!(!out.ok(), "{version} was accepted:\n{}", out.all());
        assert!(
            out.stdout.contains("Cipher is (NONE)"),
            "{version}:\n{}",
            out.all()
        );
        assert!(
            !out.stdout.contains("BEGIN CERTIFICATE"),
            "{version}:\n{}",
            out.all()
        );
        assert!(
            out.stderr.contains("alert"),
            "{version} not refused by an alert:\n{}",
            out.all()
        );
    }
    // The same client settings with TLS 1.2 succeed, so the version is what was refused.
    let mut args = cipher.to_vec();
    args.push("-tls1_2");
    let out = s_client(t.addr("https"), &args).await;
    assert!(
        out.ok() && out.stdout.contains("New, TLSv1.2, Cipher is ECDHE-"),
        "{}",
        out.all()
    );
}

#[tokio::test]
async fn modern_refuses_tls12_and_intermediate_accepts_it() {
    let dir = tempfile::tempdir().unwrap();
    let cert = write_cert(dir.path(), "app", &["app.test"]);
    let backend = demo_backend("app", Duration::ZERO).await;
    let listeners = [
        ("modern", "tls_policy = \"modern\""),
        ("intermediate", "tls_policy = \"intermediate\""),
    ];
    let t = start(dir.path(), &config(&[("app", &cert)], &listeners, backend)).await;
    let s = |l: &str, v: &'static str| {
        let addr = t.addr(l);
        async move { s_client(addr, &["-servername", "app.test", v]).await }
    };
    let out = s("modern", "-tls1_2").await;
    assert!(!out.ok(), "modern accepted TLS 1.2:\n{}", out.all());
    assert!(
        out.stderr.contains("alert protocol version"),
        "{}",
        out.all()
    );
    let out = s("intermediate", "-tls1_2").await;
    assert!(
        out.ok() && out.stdout.contains("New, TLSv1.2, Cipher is ECDHE-ECDSA-"),
        "{}",
        out.all()
    );
    for l in ["modern", "intermediate"] {
        let out = s(l, "-tls1_3").await;
        assert!(
            out.ok() && out.stdout.contains("New, TLSv1.3, Cipher is TLS_"),
            "{l}:\n{}",
            out.all()
        );
    }
    // curl agrees: TLS 1.2 only fails on modern and works on intermediate.
    let tls12 = ["--tlsv1.2", "--tls-max", "1.2"];
    let out = curl(t.addr("modern"), "app.test", &cert.cert_path, &tls12).await;
    assert!(!out.ok(), "{}", out.all());
    let out = curl(t.addr("intermediate"), "app.test", &cert.cert_path, &tls12).await;
    assert!(out.ok() && out.stdout.ends_with("200 2"), "{}", out.all());
}

#[tokio::test]
async fn rsa_only_clients_get_the_rsa_certificate_others_the_ecdsa_one() {
    let dir = tempfile::tempdir().unwrap();
    let rsa = rsa_cert(dir.path(), "rsa", "dual-rsa", &["dual.test"]).await;
    let ecdsa = write_cert(dir.path(), "ecdsa", &["dual.test"]);
    let backend = demo_backend("app", Duration::ZERO).await;
    // RSA is listed first and named the default, so ECDSA is chosen for the client's sake.
    let certs = [("rsa", &rsa), ("ecdsa", &ecdsa)];
    let listener = "default_certificate = \"rsa\"";
    let t = start(dir.path(), &config(&certs, &[("https", listener)], backend)).await;
    let addr = t.addr("https");
    let rsa_only = ["-sigalgs", "RSA-PSS+SHA256:RSA+SHA256"];
    let cases: &[(&[&str], &[&str], &TestCert, &str)] = &[
        (
            &["-servername", "dual.test", "-tls1_3"],
            &rsa_only,
            &rsa,
            "RSA-PSS",
        ),
        (
            &["-servername", "dual.test", "-tls1_2"],
            &rsa_only,
            &rsa,
            "RSA-PSS",
        ),
        (&["-noservername"], &rsa_only, &rsa, "RSA-PSS"),
        (
            &["-servername", "dual.test", "-tls1_3"],
            &[],
            &ecdsa,
            "ECDSA",
        ),
        (
            &["-servername", "dual.test", "-tls1_2"],
            &[],
            &ecdsa,
            "ECDSA",
        ),
        (&["-noservername"], &[], &ecdsa, "ECDSA"),
    ];
    for (base, sigalgs, want, sig) in cases {
        let args = [*base, *sigalgs].concat();
        let out = s_client(addr, &args).await;
        assert!(out.ok(), "{args:?}:\n{}", out.all());
        assert!(
            same_cert(&served_pem(&out), &want.cert_pem),
            "{args:?} got the other key type:\n{}",
            out.all()
        );
        assert!(
            out.stdout
                .contains(&format!("Peer signature type: {sig}\n")),
            "{args:?}:\n{}",
            out.all()
        );
    }
    // curl with only an RSA suite on TLS 1.2, then with its defaults.
    let ca = ca_bundle(dir.path(), &[&rsa, &ecdsa]);
    let rsa_suite = [
        "--tlsv1.2",
        "--tls-max",
        "1.2",
        "--ciphers",
        "ECDHE-RSA-AES128-GCM-SHA256",
    ];
    let out = curl(addr, "dual.test", &ca, &rsa_suite).await;
    assert!(
        out.ok() && out.stdout.starts_with("Hello from app\n"),
        "{}",
        out.all()
    );
    assert!(
        out.stderr
            .contains("SSL connection using TLSv1.2 / ECDHE-RSA-AES128-GCM-SHA256"),
        "{}",
        out.all()
    );
    assert!(out.stderr.contains("subject: CN=dual-rsa"), "{}", out.all());
    let out = curl(addr, "dual.test", &ca, &[]).await;
    assert!(
        out.ok() && out.stdout.starts_with("Hello from app\n"),
        "{}",
        out.all()
    );
    assert!(
        !out.stderr.contains("subject: CN=dual-rsa"),
        "{}",
        out.all()
    );
}

/// A rustls client offering `groups` in that order, trusting `ca_pem`, for TLS `versions`.
fn pq_client(
    ca_pem: &str,
    groups: Vec<&'static dyn rustls::crypto::SupportedKxGroup>,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut provider = aws_lc_rs::default_provider();
    provider.kx_groups = groups;
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

/// Handshakes, GETs `/` over HTTP/1.1 and returns the negotiated group and the response.
async fn pq_get(addr: SocketAddr, config: Arc<rustls::ClientConfig>) -> (NamedGroup, String) {
    let work = async {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let name = ServerName::try_from("app.test").unwrap();
        let mut tls = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .unwrap();
        let group = tls
            .get_ref()
            .1
            .negotiated_key_exchange_group()
            .unwrap()
            .name();
        let req = "GET / HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n";
        tls.write_all(req.as_bytes()).await.unwrap();
        let mut resp = Vec::new();
        let _ = tls.read_to_end(&mut resp).await;
        (group, String::from_utf8_lossy(&resp).into_owned())
    };
    tokio::time::timeout(WAIT, work)
        .await
        .expect("rustls client within the wait bound")
}

#[tokio::test]
async fn post_quantum_hybrid_is_negotiated_when_offered() {
    use aws_lc_rs::kx_group::{X25519, X25519MLKEM768};
    let (_dir, cert, t) = app_listener().await;
    let tls13 = &[&rustls::version::TLS13];
    let tls12 = &[&rustls::version::TLS12];
    let cases = [
        (
            vec![X25519MLKEM768, X25519],
            &tls13[..],
            NamedGroup::X25519MLKEM768,
        ),
        // Preferred by terminus even when the client lists it after X25519.
        (
            vec![X25519, X25519MLKEM768],
            &tls13[..],
            NamedGroup::X25519MLKEM768,
        ),
        (vec![X25519], &tls13[..], NamedGroup::X25519),
        // The hybrid is TLS 1.3 only: a TLS 1.2 client offering it still gets X25519.
        (vec![X25519MLKEM768, X25519], &tls12[..], NamedGroup::X25519),
    ];
    for (groups, versions, want) in cases {
        let case = format!(
            "{:?} {versions:?}",
            groups.iter().map(|g| g.name()).collect::<Vec<_>>()
        );
        let (group, resp) =
            pq_get(t.addr("https"), pq_client(&cert.cert_pem, groups, versions)).await;
        assert_eq!(group, want, "{case}");
        assert!(
            resp.starts_with("HTTP/1.1 200 ") && resp.ends_with("Hello from app\n"),
            "{case}: {resp}"
        );
    }
    // OpenSSL 3.0 has no ML-KEM: it gets plain X25519.
    let out = s_client(t.addr("https"), &["-servername", "app.test"]).await;
    assert!(
        out.stdout.contains("Server Temp Key: X25519,"),
        "{}",
        out.all()
    );
}

/// Writes key variants made with openssl: PKCS#8 and SEC1 ECDSA (also with the EC PARAMETERS
/// block `openssl ecparam -genkey` writes), PKCS#8 and PKCS#1 RSA. Returns (name, cert, header).
async fn key_variants(dir: &Path) -> Vec<(&'static str, TestCert, &'static str)> {
    let ec8 = dir.join("ec-pkcs8.key");
    openssl_ok(&[
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-out",
        p(&ec8),
    ])
    .await;
    let ec1 = dir.join("ec-sec1.key");
    openssl_ok(&["ec", "-in", p(&ec8), "-out", p(&ec1)]).await;
    let ecp = dir.join("ec-param.key");
    openssl_ok(&["ecparam", "-name", "prime256v1", "-genkey", "-out", p(&ecp)]).await;
    let rsa8 = rsa_cert(dir, "rsa-pkcs8", "rsa-pkcs8", &["rsa-pkcs8.test"]).await;
    let rsa1 = dir.join("rsa-pkcs1.key");
    openssl_ok(&[
        "rsa",
        "-traditional",
        "-in",
        p(&rsa8.key_path),
        "-out",
        p(&rsa1),
    ])
    .await;
    vec![
        (
            "ec-pkcs8",
            cert_for_key(dir, "ec-pkcs8", ec8, "ec-pkcs8.test").await,
            "-----BEGIN PRIVATE KEY-----",
        ),
        (
            "ec-sec1",
            cert_for_key(dir, "ec-sec1", ec1, "ec-sec1.test").await,
            "-----BEGIN EC PRIVATE KEY-----",
        ),
        (
            "ec-param",
            cert_for_key(dir, "ec-param", ecp, "ec-param.test").await,
            "-----BEGIN EC PARAMETERS-----",
        ),
        ("rsa-pkcs8", rsa8, "-----BEGIN PRIVATE KEY-----"),
        (
            "rsa-pkcs1",
            cert_for_key(dir, "rsa-pkcs1", rsa1, "rsa-pkcs1.test").await,
            "-----BEGIN RSA PRIVATE KEY-----",
        ),
    ]
}

#[tokio::test]
async fn pkcs8_sec1_and_pkcs1_keys_load_and_serve() {
    let dir = tempfile::tempdir().unwrap();
    let variants = key_variants(dir.path()).await;
    let backend = demo_backend("app", Duration::ZERO).await;
    let certs: Vec<(&str, &TestCert)> = variants.iter().map(|(n, c, _)| (*n, c)).collect();
    let t = start(dir.path(), &config(&certs, &[("https", "")], backend)).await;
    for (name, cert, header) in &variants {
        let key = std::fs::read_to_string(&cert.key_path).unwrap();
        assert!(
            key.starts_with(header),
            "{name}: openssl wrote another format:\n{key}"
        );
        let host = format!("{name}.test");
        let out = s_client(t.addr("https"), &["-servername", &host]).await;
        assert!(out.ok(), "{name}:\n{}", out.all());
        assert!(
            same_cert(&served_pem(&out), &cert.cert_pem),
            "{name}: another certificate was served"
        );
        let out = curl(t.addr("https"), &host, &cert.cert_path, &[]).await;
        assert!(
            out.ok() && out.stdout == "Hello from app\n\n200 2",
            "{name}:\n{}",
            out.all()
        );
    }
}

#[tokio::test]
async fn der_files_are_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let pem = write_cert(dir.path(), "app", &["app.test"]);
    let cert_der = dir.path().join("app.crt.der");
    let key_der = dir.path().join("app.key.der");
    openssl_ok(&[
        "x509",
        "-in",
        p(&pem.cert_path),
        "-outform",
        "der",
        "-out",
        p(&cert_der),
    ])
    .await;
    openssl_ok(&[
        "pkey",
        "-in",
        p(&pem.key_path),
        "-outform",
        "der",
        "-out",
        p(&key_der),
    ])
    .await;
    let backend = closed_port().await;
    let cases = [
        (
            cert_der.clone(),
            pem.key_path.clone(),
            "cert = ",
            "openssl x509 -inform der",
        ),
        (
            pem.cert_path.clone(),
            key_der.clone(),
            "key = ",
            "openssl pkey -inform der",
        ),
    ];
    for (cert_path, key_path, key_line, fix) in cases {
        let files = TestCert {
            cert_path,
            key_path,
            cert_pem: String::new(),
        };
        let text = config(&[("app", &files)], &[("https", "")], backend);
        let path = dir.path().join("der.toml");
        std::fs::write(&path, &text).unwrap();
        let line = text.lines().position(|l| l.starts_with(key_line)).unwrap() + 1;
        let bad = if key_line == "cert = " {
            &files.cert_path
        } else {
            &files.key_path
        };
        let err = terminus::config::load_file(&path).unwrap_err().to_string();
        let at = format!("{}:{line}:", path.display());
        assert!(err.starts_with(&at), "error not at {at}: {err}");
        assert!(
            err.contains(&format!("{} is not PEM", bad.display())),
            "{err}"
        );
        assert!(err.contains(fix), "no `{fix}` hint: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        // The real binary says the same and exits 1.
        let out = run(binary(), &["check", "--config", p(&path)], None).await;
        assert_eq!(out.code, Some(1), "{}", out.all());
        assert!(
            out.stderr
                .contains(&format!("{} is not PEM", bad.display())),
            "{}",
            out.all()
        );
    }
}

#[tokio::test]
async fn ocsp_response_is_stapled_for_clients_that_ask() {
    let dir = tempfile::tempdir().unwrap();
    let app = write_cert(dir.path(), "app", &["app.test"]);
    // The smallest OCSPResponse: responseStatus malformedRequest(1), no responseBytes.
    let der = dir.path().join("app.ocsp.der");
    std::fs::write(&der, [0x30, 0x03, 0x0a, 0x01, 0x01]).unwrap();
    let backend = demo_backend("app", Duration::ZERO).await;
    let text = config(&[("app", &app)], &[("https", "")], backend).replacen(
        "\n\n",
        &format!("\nocsp = \"{}\"\n\n", der.display()),
        1,
    );
    let t = start(dir.path(), &text).await;
    for version in ["-tls1_3", "-tls1_2"] {
        let args = ["-servername", "app.test", "-status", version];
        let out = s_client(t.addr("https"), &args).await;
        assert!(out.ok(), "{version}:\n{}", out.all());
        let all = out.all();
        assert!(!all.contains("no response sent"), "{version}:\n{all}");
        // openssl spells it `malformedrequest (0x1)`; the case differs between versions.
        assert!(
            all.to_ascii_lowercase()
                .contains("ocsp response status: malformedrequest"),
            "{version}:\n{all}"
        );
    }
    // A client that does not ask gets no staple.
    let out = s_client(t.addr("https"), &["-servername", "app.test"]).await;
    assert!(!out.all().contains("OCSP"), "{}", out.all());
}

#[tokio::test]
async fn a_client_with_nothing_in_common_gets_handshake_failure() {
    let (_dir, _cert, t) = app_listener().await;
    let addr = t.addr("https");
    // A TLS 1.3 suite terminus lacks, and TLS 1.2 RSA suites to an ECDSA-only listener.
    let cases: [&[&str]; 2] = [
        &["-tls1_3", "-ciphersuites", "TLS_AES_128_CCM_SHA256"],
        &["-tls1_2", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256"],
    ];
    for extra in cases {
        let mut args = vec!["-servername", "app.test"];
        args.extend_from_slice(extra);
        let out = s_client(addr, &args).await;
        assert!(!out.ok(), "{extra:?} must fail:\n{}", out.all());
        assert!(
            out.all().contains("handshake failure"),
            "{extra:?}: the alert should be handshake_failure:\n{}",
            out.all()
        );
        assert!(!out.all().contains("access denied"), "{}", out.all());
    }
}

/// The suite `s_client` says it negotiated ("Cipher is X" / "Cipher    : X").
fn negotiated_suite(out: &Out) -> String {
    let all = out.all();
    let line = all.lines().find_map(|l| {
        l.split_once("Cipher is ")
            .map(|(_, c)| c.trim().to_string())
    });
    line.unwrap_or_else(|| panic!("no negotiated cipher in:\n{all}"))
}

#[tokio::test]
async fn terminus_picks_the_suite_by_its_own_order_chacha_only_for_clients_that_list_it_first() {
    let (_dir, _cert, t) = app_listener().await;
    let addr = t.addr("https");
    // (what the client offers, in its order; what terminus must pick)
    let cases: [(&[&str], &str); 5] = [
        (
            &["-tls1_3", "-ciphersuites", "TLS_AES_256_GCM_SHA384:TLS_AES_128_GCM_SHA256"],
            "TLS_AES_128_GCM_SHA256",
        ),
        (
            &["-tls1_3", "-ciphersuites", "TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"],
            "TLS_AES_256_GCM_SHA384",
        ),
        (
            &["-tls1_3", "-ciphersuites", "TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256"],
            "TLS_CHACHA20_POLY1305_SHA256",
        ),
        (
            &[
                "-tls1_2",
                "-cipher",
                "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES128-GCM-SHA256",
            ],
            "ECDHE-ECDSA-AES128-GCM-SHA256",
        ),
        (
            &[
                "-tls1_2",
                "-cipher",
                "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES128-GCM-SHA256",
            ],
            "ECDHE-ECDSA-CHACHA20-POLY1305",
        ),
    ];
    for (offer, want) in cases {
        let mut args = vec!["-servername", "app.test"];
        args.extend_from_slice(offer);
        let out = s_client(addr, &args).await;
        assert!(out.ok(), "{offer:?}:\n{}", out.all());
        assert_eq!(negotiated_suite(&out), want, "{offer:?}");
    }
}
