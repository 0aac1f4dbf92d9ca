//! Every error answer terminus writes itself: 404, 502 (refused, reset, closed), 503, 504.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use support::*;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

async fn one_answer(pool_body: &str, path: &str) -> Answer {
    let f = fixture(pool_body).await;
    f.conn(&["http/1.1"]).await.get("localhost", path).await
}

#[tokio::test]
async fn refused_connection_is_502() {
    let dead = closed_port().await;
    let ans = one_answer(&backend_lines(&[("dead", dead)]), "/").await;
    assert_eq!(ans.status, 502);
    assert_eq!(ans.text(), "502 Bad Gateway\n");
}

/// A backend that reads the request, then resets the connection (SO_LINGER 0).
async fn resetting_backend() -> std::net::SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            s.set_zero_linger().unwrap();
            drop(s);
        }
    });
    addr
}

#[tokio::test]
async fn reset_by_backend_is_502() {
    let rst = resetting_backend().await;
    let ans = one_answer(&backend_lines(&[("rst", rst)]), "/").await;
    assert_eq!(ans.status, 502);
}

#[tokio::test]
async fn backend_closing_without_answer_is_502() {
    let a = demo_backend("a", Duration::ZERO).await;
    let ans = one_answer(&backend_lines(&[("a", a)]), "/close").await;
    assert_eq!(ans.status, 502);
}

#[tokio::test]
async fn pool_without_usable_backend_is_503() {
    let a = demo_backend("a", Duration::ZERO).await;
    let body = format!("  [[pool.backend]]\n  address = \"{a}\"\n  weight = 0\n");
    let ans = one_answer(&body, "/").await;
    assert_eq!(ans.status, 503);
    assert!(
        ans.text().starts_with("503 Service Unavailable"),
        "{}",
        ans.text()
    );
}

#[tokio::test]
async fn slow_backend_is_504_after_the_response_timeout() {
    let a = demo_backend("slow", Duration::ZERO).await;
    let started = Instant::now();
    // The config's response timeout is 1 s; the backend would answer after 5 s.
    let ans = one_answer(&backend_lines(&[("slow", a)]), "/delay/5000").await;
    assert_eq!(ans.status, 504);
    assert_eq!(ans.text(), "504 Gateway Timeout\n");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(4),
        "{took:?}"
    );
}

#[tokio::test]
async fn request_without_matching_route_is_404() {
    let dir = tempfile::tempdir().unwrap();
    let cert = write_cert(dir.path(), "test", &["localhost", "other.test"]);
    let a = demo_backend("a", Duration::ZERO).await;
    let config = one_pool_config(&cert, &backend_lines(&[("a", a)]))
        .replace("  [[listener.route]]\n  pool = \"app\"", "  [[listener.route]]\n  host = \"other.test\"\n  path_prefix = \"/api/\"\n  pool = \"app\"");
    let t = start(dir.path(), &config).await;
    let tls = client_tls(&cert.cert_pem, &["http/1.1"]);
    let mut conn = connect(t.addr("https"), "localhost", tls).await;
    let ans = conn.get("localhost", "/api/x").await;
    assert_eq!(ans.status, 404);
    let ans = conn.get("other.test", "/web").await;
    assert_eq!(ans.status, 404);
    let ans = conn.get("other.test", "/api/x").await;
    assert_eq!(ans.status, 200);
    assert_eq!(ans.backend(), "a");
}
