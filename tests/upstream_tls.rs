//! TLS to backends (`[pool.tls]`), end to end on 127.0.0.1: verification against a CA
//! bundle and a server name, its failures as 502s that never reach the backend, skipping
//! verification, client certificates, HTTP/2 by ALPN, and the config errors.

mod support;

use support::*;

/// Terminus with one pool of one TLS backend; `pool_keys` go before the tables, `tls` into
/// `[pool.tls]`.
async fn terminus_to(backend: &TlsBackend, pool_keys: &str, tls: &str) -> Fixture {
    let lines = backend_lines(&[("b1", backend.addr)]);
    fixture(&format!("{pool_keys}\n{lines}\n  [pool.tls]\n{tls}\n")).await
}

fn path(cert_or_key: &std::path::Path) -> String {
    cert_or_key.display().to_string()
}

#[tokio::test]
async fn verified_backend_answers_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let cert = write_cert(dir.path(), "backend", &["backend.test"]);
    let backend = TlsBackend::start("b1", &cert, None).await;
    let tls = format!(
        "ca = \"{}\"\nserver_name = \"backend.test\"",
        path(&cert.cert_path)
    );
    let f = terminus_to(&backend, "", &tls).await;
    let ans = f.conn(&["http/1.1"]).await.get("localhost", "/").await;
    assert_eq!(ans.status, 200, "{}", ans.text());
    assert_eq!(ans.text(), "tls b1 HTTP/1.1");
    assert_eq!(backend.hits(), 1);
}

#[tokio::test]
async fn wrong_name_or_foreign_ca_is_502_and_never_reaches_the_backend() {
    let dir = tempfile::tempdir().unwrap();
    let cert = write_cert(dir.path(), "backend", &["backend.test"]);
    let other = write_cert(dir.path(), "other", &["backend.test"]);
    let backend = TlsBackend::start("b1", &cert, None).await;
    let wrong_name = format!(
        "ca = \"{}\"\nserver_name = \"elsewhere.test\"",
        path(&cert.cert_path)
    );
    let foreign_ca = format!(
        "ca = \"{}\"\nserver_name = \"backend.test\"",
        path(&other.cert_path)
    );
    // No server_name: the backend's IP address is verified, which the certificate lacks.
    let by_ip = format!("ca = \"{}\"", path(&cert.cert_path));
    for tls in [wrong_name, foreign_ca, by_ip] {
        let f = terminus_to(&backend, "", &tls).await;
        for alpn in BOTH_ALPN {
            let ans = f.conn(alpn).await.get("localhost", "/").await;
            assert_eq!(ans.status, 502, "{tls}: {}", ans.text());
        }
    }
    assert_eq!(backend.hits(), 0);
}

#[tokio::test]
async fn insecure_skip_verify_accepts_any_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let cert = write_cert(dir.path(), "backend", &["backend.test"]);
    let backend = TlsBackend::start("b1", &cert, None).await;
    let f = terminus_to(&backend, "", "insecure_skip_verify = true").await;
    let ans = f.conn(&["h2"]).await.get("localhost", "/").await;
    assert_eq!(ans.status, 200, "{}", ans.text());
    assert_eq!(ans.text(), "tls b1 HTTP/1.1");
}

#[tokio::test]
async fn client_certificate_is_presented_when_configured() {
    let dir = tempfile::tempdir().unwrap();
    let cert = write_cert(dir.path(), "backend", &["backend.test"]);
    let client = write_cert(dir.path(), "client", &["terminus.test"]);
    let backend = TlsBackend::start("b1", &cert, Some(&client.cert_pem)).await;
    let verify = format!(
        "ca = \"{}\"\nserver_name = \"backend.test\"",
        path(&cert.cert_path)
    );
    let with_cert = format!(
        "{verify}\ncertificate = \"{}\"\nkey = \"{}\"",
        path(&client.cert_path),
        path(&client.key_path)
    );
    let f = terminus_to(&backend, "", &with_cert).await;
    let ans = f.conn(&["http/1.1"]).await.get("localhost", "/").await;
    assert_eq!(ans.status, 200, "{}", ans.text());
    assert_eq!(backend.hits(), 1);

    let f = terminus_to(&backend, "", &verify).await;
    let ans = f.conn(&["http/1.1"]).await.get("localhost", "/").await;
    assert_eq!(ans.status, 502, "{}", ans.text());
    assert_eq!(backend.hits(), 1);
}

#[tokio::test]
async fn h2_pool_speaks_http2_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let cert = write_cert(dir.path(), "backend", &["backend.test"]);
    let backend = TlsBackend::start("b1", &cert, None).await;
    let tls = format!(
        "ca = \"{}\"\nserver_name = \"backend.test\"\nalpn = [\"h2\"]",
        path(&cert.cert_path)
    );
    let f = terminus_to(&backend, "protocol = \"h2\"", &tls).await;
    for alpn in BOTH_ALPN {
        let ans = f.conn(alpn).await.get("localhost", "/").await;
        assert_eq!(ans.status, 200, "{}", ans.text());
        assert_eq!(ans.text(), "tls b1 HTTP/2.0");
    }
}

/// curl, a real client, through a listener whose pool re-encrypts to a verified TLS backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_gets_the_tls_backends_answer() {
    let dir = tempfile::tempdir().unwrap();
    let cert = write_cert(dir.path(), "backend", &["backend.test"]);
    let backend = TlsBackend::start("b1", &cert, None).await;
    let tls = format!(
        "ca = \"{}\"\nserver_name = \"backend.test\"",
        path(&cert.cert_path)
    );
    let f = terminus_to(&backend, "", &tls).await;
    let out = curl_https(
        f.terminus.addr("https"),
        "localhost",
        "/",
        &f.cert.cert_path,
        &["-w", "\nSTATUS %{http_code}"],
    )
    .await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert_eq!(out.stdout, "tls b1 HTTP/1.1\nSTATUS 200", "{}", out.stderr);
    assert_eq!(backend.hits(), 1);
}

/// The errors of `[pool.tls]` keys, each at its key's line and column.
#[test]
fn config_errors_point_at_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cert = write_cert(dir.path(), "backend", &["backend.test"]);
    let other = write_cert(dir.path(), "other", &["other.test"]);
    let not_pem = dir.path().join("not.pem");
    std::fs::write(&not_pem, "hello").unwrap();
    let cases = [
        (
            format!("ca = \"{}\"", path(&dir.path().join("missing.pem"))),
            "cannot read",
        ),
        (
            format!("ca = \"{}\"", path(&not_pem)),
            "holds no CERTIFICATE",
        ),
        (
            format!(
                "certificate = \"{}\"\nkey = \"{}\"",
                path(&cert.cert_path),
                path(&other.key_path)
            ),
            "does not match the certificate",
        ),
        (
            format!("certificate = \"{}\"", path(&cert.cert_path)),
            "needs both `certificate` and `key`",
        ),
        ("alpn = [\"spdy/3\"]".to_string(), "unknown ALPN protocol"),
        (
            "alpn = [\"h2\"]".to_string(),
            "does not match the pool's protocol",
        ),
        (
            "server_name = \"not a name!\"".to_string(),
            "not a DNS name or an IP address",
        ),
        (
            format!(
                "ca = \"{}\"\ninsecure_skip_verify = true",
                path(&cert.cert_path)
            ),
            "contradict",
        ),
    ];
    for (tls, want) in cases {
        let pool =
            format!("  [[pool.backend]]\n  address = \"127.0.0.1:9\"\n  [pool.tls]\n{tls}\n");
        let source = one_pool_config(&cert, &pool);
        let file = dir.path().join("terminus.toml");
        let err = terminus::config::parse(&file, &source)
            .unwrap_err()
            .to_string();
        assert!(err.contains(want), "{tls}: {err}");
        // The error names the last line of the [pool.tls] table's keys or the one before.
        let key_line = source
            .lines()
            .position(|l| l.starts_with(tls.lines().last().unwrap()));
        let first_line = source
            .lines()
            .position(|l| l == tls.lines().next().unwrap());
        let at = |line: Option<usize>| format!("terminus.toml:{}:", line.unwrap() + 1);
        assert!(
            err.contains(&at(key_line)) || err.contains(&at(first_line)),
            "{tls}: {err}"
        );
    }
}
