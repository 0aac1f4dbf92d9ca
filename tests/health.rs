//! Active health checks with real backends: a stopped backend is taken out of rotation and
//! comes back when it returns; HTTP checks hold backends to a status and a body.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use support::*;
use terminus::demo::DemoBackend;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// A demo backend on `addr` (port 0 for any), with the task that serves it.
async fn stoppable_backend(name: &str, addr: SocketAddr) -> (SocketAddr, JoinHandle<()>) {
    let listener = TcpListener::bind(addr).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(
        DemoBackend {
            name: name.to_string(),
            delay: Duration::ZERO,
        }
        .serve(listener),
    );
    (addr, task)
}

fn health_pool(backends: &[(&str, SocketAddr)], health: &str) -> String {
    format!("[pool.health]\n{health}\n{}", backend_lines(backends))
}

/// Sends requests one by one (bounded by `WAIT`) until the last `window` answers all satisfy
/// `pred`; returns the answers' backends.
async fn until_window(conn: &mut Conn, window: usize, pred: impl Fn(&Answer) -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut run = 0;
    while run < window {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no run of {window} matching answers within {WAIT:?}"
        );
        let ans = conn.get("localhost", "/").await;
        run = if pred(&ans) { run + 1 } else { 0 };
        if run == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_backend_leaves_rotation_and_returns() {
    let (a, _a_task) = stoppable_backend("a", "127.0.0.1:0".parse().unwrap()).await;
    let (b, b_task) = stoppable_backend("b", "127.0.0.1:0".parse().unwrap()).await;
    let check = "check = \"http\"\npath = \"/health\"\ninterval = \"100ms\"\njitter = \"20ms\"\ntimeout = \"500ms\"\nrise = 2\nfall = 2";
    let f = fixture(&health_pool(&[("a", a), ("b", b)], check)).await;
    let mut conn = f.conn(&["http/1.1"]).await;
    // Both become healthy after their first passing check: answers alternate.
    until_window(&mut conn, 1, |ans| ans.backend() == "b").await;
    b_task.abort();
    // Once b's checks fail twice, every answer comes from a.
    until_window(&mut conn, 20, |ans| {
        ans.status == 200 && ans.backend() == "a"
    })
    .await;
    // b comes back on the same address: after two passing checks it is in rotation again.
    let (_, _b_again) = stoppable_backend("b", b).await;
    until_window(&mut conn, 1, |ans| {
        ans.status == 200 && ans.backend() == "b"
    })
    .await;
}

#[tokio::test]
async fn http_check_holds_backends_to_status_and_body() {
    let a = demo_backend("a", Duration::ZERO).await;
    let cases = [
        ("path = \"/status/500\"", 503),
        ("path = \"/\"\nexpect_body = \"Hello from a\"", 200),
        ("path = \"/\"\nexpect_body = \"not there\"", 503),
        ("path = \"/status/204\"\nexpect_status = \"204\"", 200),
        // Only the first 64 KiB of a long body are read, and the text is found there.
        ("path = \"/bytes/200000\"\nexpect_body = \"xxxx\"", 200),
    ];
    for (keys, want) in cases {
        let check = format!("check = \"http\"\ninterval = \"50ms\"\nrise = 1\nfall = 1\n{keys}");
        let f = fixture(&health_pool(&[("a", a)], &check)).await;
        let mut conn = f.conn(&["http/1.1"]).await;
        // Backends start unhealthy (503) until their first passing check.
        until_window(&mut conn, 5, |ans| ans.status == want).await;
    }
}

#[tokio::test]
async fn tcp_and_tls_checks_need_a_listener() {
    let a = demo_backend("a", Duration::ZERO).await;
    let dead = closed_port().await;
    let tcp = "check = \"tcp\"\ninterval = \"50ms\"";
    let f = fixture(&health_pool(&[("a", a), ("dead", dead)], tcp)).await;
    let mut conn = f.conn(&["http/1.1"]).await;
    until_window(&mut conn, 10, |ans| {
        ans.status == 200 && ans.backend() == "a"
    })
    .await;
    // A plain HTTP backend never completes a TLS handshake.
    let tls = "check = \"tls\"\ninterval = \"50ms\"";
    let f = fixture(&health_pool(&[("a", a)], tls)).await;
    let mut conn = f.conn(&["http/1.1"]).await;
    until_window(&mut conn, 5, |ans| ans.status == 503).await;
}

#[tokio::test]
async fn tls_and_https_checks_pass_on_a_tls_backend() {
    // Terminus itself is a TLS server: check it from a second terminus. Its answers come from
    // the demo backend behind it, so an https check sees the demo backend's statuses.
    let a = demo_backend("a", Duration::ZERO).await;
    let front = fixture(&backend_lines(&[("a", a)])).await;
    let tls_backend = front.terminus.addr("https");
    let checks = [
        "check = \"tls\"\nserver_name = \"localhost\"",
        "check = \"https\"\nserver_name = \"localhost\"\nhost = \"localhost\"\nexpect_body = \"Hello from a\"",
        "check = \"https\"\npath = \"/status/418\"\nexpect_status = \"418\"",
    ];
    for check in checks {
        let check = format!("{check}\ninterval = \"50ms\"");
        let f = fixture(&health_pool(&[("front", tls_backend)], &check)).await;
        let backend = f.terminus.pools[0].backends[0].clone();
        wait_until(|| backend.health().is_healthy()).await;
    }
}

#[tokio::test]
async fn each_backend_keeps_its_last_ten_checks_with_the_reason() {
    let good = demo_backend("good", Duration::ZERO).await;
    let check = "check = \"http\"\npath = \"/status/200\"\ninterval = \"20ms\"\nrise = 1\nfall = 1";
    let body = format!(
        "[pool.health]\n{check}\n{}",
        backend_lines(&[("good", good), ("bad", closed_port().await)])
    );
    let f = fixture(&body).await;
    let pool = f.terminus.server.pools()[0].clone();
    let (g, b) = (pool.backends[0].clone(), pool.backends[1].clone());
    wait_until(|| g.stats.checks().len() == 10 && b.stats.checks().len() == 10).await;
    let checks = g.stats.checks();
    assert!(
        checks.iter().all(|c| c.passed && c.detail == "passed"),
        "{checks:?}"
    );
    assert!(
        checks.windows(2).all(|w| w[0].at <= w[1].at),
        "oldest first: {checks:?}"
    );
    let failed = b.stats.checks();
    assert!(failed.iter().all(|c| !c.passed), "{failed:?}");
    assert!(
        failed[0].detail.to_lowercase().contains("refused"),
        "the reason is kept: {failed:?}"
    );
    assert!(g.health().is_healthy() && !b.health().is_healthy());
}
