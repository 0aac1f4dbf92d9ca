//! Hot reload: a new certificate and a changed pool under steady traffic with zero failed
//! requests, a refused reload that changes nothing, and SIGHUP and the file watch on the
//! real binary.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use support::*;

fn pool_body(backends: &[(&str, SocketAddr)]) -> String {
    format!("balancer = \"round-robin\"\n{}", backend_lines(backends))
}

fn der(cert: &TestCert) -> Vec<u8> {
    CertificateDer::from_pem_slice(cert.cert_pem.as_bytes())
        .unwrap()
        .to_vec()
}

/// The leaf certificate a fresh TLS connection to `addr` is shown.
async fn leaf(addr: SocketAddr, tls: Arc<rustls::ClientConfig>) -> Vec<u8> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let stream = tokio::time::timeout(
        WAIT,
        tokio_rustls::TlsConnector::from(tls).connect(name, tcp),
    )
    .await
    .unwrap()
    .unwrap();
    stream.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

/// Sends GETs until `stop`, on one keep-alive connection or a new connection each time;
/// returns (sent, answered 200).
async fn steady(
    addr: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
    keep_alive: bool,
    stop: Arc<AtomicBool>,
) -> (usize, usize) {
    let (mut sent, mut ok) = (0, 0);
    let mut conn = connect(addr, "localhost", tls.clone()).await;
    while !stop.load(Ordering::Relaxed) {
        if !keep_alive {
            conn = connect(addr, "localhost", tls.clone()).await;
        }
        sent += 1;
        if conn.get("localhost", "/").await.status == 200 {
            ok += 1;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    (sent, ok)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reload_under_load_swaps_certificate_and_backends_without_failures() {
    let dir = tempfile::tempdir().unwrap();
    let old = write_cert(dir.path(), "old", &["localhost"]);
    let new = write_cert(dir.path(), "new", &["localhost", "reloaded.test"]);
    let backends = demo_backends(&["a", "b", "c"]).await;
    let (a, b, c) = (backends[0], backends[1], backends[2]);
    let t = start(dir.path(), &one_pool_config(&old, &pool_body(&[a, b]))).await;
    let addr = t.addr("https");
    let both = client_tls(&format!("{}{}", old.cert_pem, new.cert_pem), &["http/1.1"]);
    assert_eq!(leaf(addr, both.clone()).await, der(&old));

    let stop = Arc::new(AtomicBool::new(false));
    let clients =
        [true, false].map(|keep| tokio::spawn(steady(addr, both.clone(), keep, stop.clone())));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let a_before = t.server.pools()[0].backends[0].clone();

    let path = dir.path().join("terminus.toml");
    std::fs::write(&path, one_pool_config(&new, &pool_body(&[a, c]))).unwrap();
    let summary = t.server.reload_file(&path).await.unwrap();
    assert_eq!((summary.generation, summary.kept, summary.bound), (2, 1, 0));
    assert_eq!(t.server.generation(), 2);
    assert_eq!(t.server.reload_counts(), (1, 0));
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        let (sent, ok) = tokio::time::timeout(WAIT, client).await.unwrap().unwrap();
        assert!(sent > 10, "too few requests: {sent}");
        assert_eq!(sent, ok, "every request answered 200");
    }

    // New full handshakes show the new certificate, on the socket bound at start (a fresh
    // client: `both` holds sessions, which resume across the reload with the old one).
    let fresh = client_tls(&format!("{}{}", old.cert_pem, new.cert_pem), &["http/1.1"]);
    assert_eq!(leaf(addr, fresh).await, der(&new));
    // Backend `a` kept its live state (the same Arc); `b` is gone, `c` takes traffic.
    let pool = &t.server.pools()[0];
    assert!(Arc::ptr_eq(&a_before, &pool.backends[0]));
    let mut seen = Vec::new();
    for _ in 0..10 {
        seen.push(
            get_once(addr, "localhost", both.clone(), "/")
                .await
                .backend()
                .to_string(),
        );
    }
    assert!(seen.iter().any(|s| s == "c"), "{seen:?}");
    assert!(seen.iter().all(|s| s != "b"), "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_reload_changes_nothing_and_is_counted() {
    let dir = tempfile::tempdir().unwrap();
    let cert = write_cert(dir.path(), "test", &["localhost"]);
    let backends = demo_backends(&["a"]).await;
    let good = one_pool_config(&cert, &pool_body(&backends));
    let t = start(dir.path(), &good).await;
    let addr = t.addr("https");
    let tls = client_tls(&cert.cert_pem, &["http/1.1"]);
    let mut conn = connect(addr, "localhost", tls.clone()).await;
    assert_eq!(conn.get("localhost", "/").await.status, 200);

    let path = dir.path().join("terminus.toml");
    std::fs::write(&path, good.replace("pool = \"app\"", "pool = \"missing\"")).unwrap();
    assert!(t.server.reload_file(&path).await.is_err());
    assert_eq!(t.server.reload_counts(), (0, 1));
    assert_eq!(t.server.generation(), 1);

    let missing = cert.cert_path.display().to_string();
    std::fs::write(&path, good.replace(&missing, "/nonexistent/cert.pem")).unwrap();
    assert!(t.server.reload_file(&path).await.is_err());
    assert_eq!(t.server.reload_counts(), (0, 2));
    assert_eq!(t.server.generation(), 1);

    // Both the established connection and new ones keep working with the old certificate.
    assert_eq!(conn.get("localhost", "/").await.backend(), "a");
    assert_eq!(
        get_once(addr, "localhost", tls.clone(), "/")
            .await
            .backend(),
        "a"
    );
    assert_eq!(leaf(addr, tls).await, der(&cert));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_config_file_of_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let cert = write_cert(dir.path(), "test", &["localhost"]);
    let backends = demo_backends(&["x", "y"]).await;
    let path = dir.path().join("terminus.toml");
    let config = |b: &[(&str, SocketAddr)]| one_pool_config(&cert, &pool_body(b));
    std::fs::write(&path, config(&backends[..1])).unwrap();
    let p = Process::spawn(&["--config", path.to_str().unwrap()], 1);
    let addr = p.addrs["https"];
    let tls = client_tls(&cert.cert_pem, &["http/1.1"]);
    assert_eq!(
        get_once(addr, "localhost", tls.clone(), "/")
            .await
            .backend(),
        "x"
    );

    std::fs::write(&path, config(&backends[1..])).unwrap();
    p.signal("HUP");
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let ans = get_once(addr, "localhost", tls.clone(), "/").await;
        assert_eq!(ans.status, 200);
        if ans.backend() == "y" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still on x after SIGHUP"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_binds_new_listeners_and_stops_removed_ones() {
    let dir = tempfile::tempdir().unwrap();
    let cert = write_cert(dir.path(), "test", &["localhost"]);
    let backends = demo_backends(&["a"]).await;
    let good = one_pool_config(&cert, &pool_body(&backends));
    let t = start(dir.path(), &good).await;
    let first = t.addr("https");
    let tls = client_tls(&cert.cert_pem, &["http/1.1"]);
    let second = |bind: &str| {
        format!("{good}\n[[listener]]\nname = \"second\"\nbind = \"{bind}\"\n\n  [[listener.route]]\n  pool = \"app\"\n")
    };
    let path = dir.path().join("terminus.toml");

    // A bind that fails (the address is taken) changes nothing.
    std::fs::write(&path, second(&first.to_string())).unwrap();
    let err = t.server.reload_file(&path).await.unwrap_err();
    assert!(err.to_string().contains("cannot bind"), "{err}");
    assert_eq!(
        (t.server.generation(), t.server.reload_counts()),
        (1, (0, 1))
    );
    assert_eq!(t.server.local_addrs().len(), 1);

    std::fs::write(&path, second("127.0.0.1:0")).unwrap();
    let summary = t.server.reload_file(&path).await.unwrap();
    assert_eq!((summary.kept, summary.bound, summary.stopped), (1, 1, 0));
    let added = t.server.local_addrs()[1].1;
    assert_eq!(
        get_once(added, "localhost", tls.clone(), "/").await.status,
        200
    );
    assert_eq!(
        get_once(first, "localhost", tls.clone(), "/").await.status,
        200
    );

    // Removing it again: the socket stops accepting, the other listener keeps serving.
    let mut open = connect(added, "localhost", tls.clone()).await;
    std::fs::write(&path, &good).unwrap();
    let summary = t.server.reload_file(&path).await.unwrap();
    assert_eq!((summary.kept, summary.stopped), (1, 1));
    let deadline = tokio::time::Instant::now() + WAIT;
    while tokio::net::TcpStream::connect(added).await.is_ok() {
        assert!(tokio::time::Instant::now() < deadline, "still accepting");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        open.get("localhost", "/").await.status,
        200,
        "established connection finishes"
    );
    assert_eq!(get_once(first, "localhost", tls, "/").await.status, 200);
}

/// GETs through `addr` until `backend` answers, every answer a 200; fails after `WAIT`.
async fn until_backend(addr: SocketAddr, tls: Arc<rustls::ClientConfig>, backend: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let ans = get_once(addr, "localhost", tls.clone(), "/").await;
        assert_eq!(ans.status, 200);
        if ans.backend() == backend {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{backend} never answered"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_watch_reloads_a_changed_config_without_a_signal() {
    let dir = tempfile::tempdir().unwrap();
    let cert = write_cert(dir.path(), "test", &["localhost"]);
    let backends = demo_backends(&["x", "y"]).await;
    let path = dir.path().join("terminus.toml");
    let config = |b: &[(&str, SocketAddr)]| {
        one_pool_config(&cert, &pool_body(b)).replace("[global]\n", "[global]\nwatch = \"100ms\"\n")
    };
    std::fs::write(&path, config(&backends[..1])).unwrap();
    let p = Process::spawn(&["--config", path.to_str().unwrap()], 1);
    let addr = p.addrs["https"];
    let tls = client_tls(&cert.cert_pem, &["http/1.1"]);
    until_backend(addr, tls.clone(), "x").await;

    // An invalid rewrite (a route to no pool) is refused: x keeps answering.
    let invalid = config(&backends[1..]).replace("pool = \"app\"", "pool = \"missing\"");
    std::fs::write(&path, invalid).unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    for _ in 0..5 {
        let ans = get_once(addr, "localhost", tls.clone(), "/").await;
        assert_eq!((ans.status, ans.backend()), (200, "x"));
    }

    // A valid rewrite switches the route's backend, without any signal.
    std::fs::write(&path, config(&backends[1..])).unwrap();
    until_backend(addr, tls.clone(), "y").await;
    for _ in 0..5 {
        let ans = get_once(addr, "localhost", tls.clone(), "/").await;
        assert_eq!(ans.backend(), "y");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keep_alive_connection_routes_its_next_request_by_the_new_pools() {
    let dir = tempfile::tempdir().unwrap();
    let cert = write_cert(dir.path(), "test", &["localhost"]);
    let backends = demo_backends(&["old", "new"]).await;
    let config = |b: &[(&str, SocketAddr)]| one_pool_config(&cert, &pool_body(b));
    let t = start(dir.path(), &config(&backends[..1])).await;
    let addr = t.addr("https");
    for alpn in BOTH_ALPN {
        let mut conn = connect(addr, "localhost", client_tls(&cert.cert_pem, alpn)).await;
        assert_eq!(conn.get("localhost", "/").await.backend(), "old");
        let path = dir.path().join("terminus.toml");
        std::fs::write(&path, config(&backends[1..])).unwrap();
        t.server.reload_file(&path).await.unwrap();
        for _ in 0..3 {
            let ans = conn.get("localhost", "/").await;
            assert_eq!(ans.status, 200);
            assert_eq!(
                ans.backend(),
                "new",
                "{alpn:?}: the same connection, the new pool"
            );
        }
        std::fs::write(&path, config(&backends[..1])).unwrap();
        t.server.reload_file(&path).await.unwrap();
        assert_eq!(conn.get("localhost", "/").await.backend(), "old");
    }
}
