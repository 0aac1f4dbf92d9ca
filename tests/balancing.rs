//! Balancers with real backends: latency-aware algorithms move traffic off a backend made
//! 20 ms slower; weights hold end to end.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashMap;
use std::time::Duration;

use support::*;

/// Sends `total` requests over `conns` concurrent keep-alive connections and counts answers
/// per backend.
/// Latency-aware tests measure time; running them one at a time keeps the other tests of this
/// file from adding their load to the measurement.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn spread(
    balancer: &str,
    fast_delay: Duration,
    slow_delay: Duration,
    total: usize,
    conns: usize,
) -> HashMap<String, usize> {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let cert = write_cert(dir.path(), "test", &["localhost"]);
    let fast = demo_backend("fast", fast_delay).await;
    let slow = demo_backend("slow", slow_delay).await;
    let body = format!(
        "balancer = \"{balancer}\"\n{}",
        backend_lines(&[("fast", fast), ("slow", slow)])
    );
    let t = start(dir.path(), &one_pool_config(&cert, &body)).await;
    let tls = client_tls(&cert.cert_pem, &["http/1.1"]);
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let tls = tls.clone();
        let addr = t.addr("https");
        tasks.push(tokio::spawn(async move {
            let mut conn = connect(addr, "localhost", tls).await;
            let mut names = Vec::new();
            for _ in 0..total / conns {
                let ans = conn.get("localhost", "/").await;
                assert_eq!(ans.status, 200);
                names.push(ans.backend().to_string());
            }
            names
        }));
    }
    let mut counts = HashMap::new();
    for t in tasks {
        for name in t.await.unwrap() {
            *counts.entry(name).or_insert(0) += 1;
        }
    }
    assert_eq!(
        counts.values().sum::<usize>(),
        total / conns * conns,
        "every request answered"
    );
    counts
}

/// Of 200 requests over 4 connections to a 1 ms and a 21 ms backend, how many the slow one got.
async fn slow_share(balancer: &str) -> usize {
    let counts = spread(
        balancer,
        Duration::from_millis(1),
        Duration::from_millis(21),
        200,
        4,
    )
    .await;
    eprintln!("{balancer}: {counts:?}");
    counts.get("slow").copied().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_response_time_moves_traffic_off_a_slower_backend() {
    // Round-robin would send 100 of 200 to the slow backend.
    let slow = slow_share("least-response-time").await;
    assert!(slow <= 20, "slow backend got {slow} of 200");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn performance_moves_traffic_off_a_slower_backend() {
    let slow = slow_share("performance").await;
    assert!(slow <= 30, "slow backend got {slow} of 200");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_ignores_latency() {
    let counts = spread(
        "round-robin",
        Duration::from_millis(1),
        Duration::from_millis(21),
        40,
        1,
    )
    .await;
    assert_eq!(counts.get("slow"), Some(&20), "{counts:?}");
    assert_eq!(counts.get("fast"), Some(&20), "{counts:?}");
}

#[tokio::test]
async fn weighted_round_robin_holds_weights_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let cert = write_cert(dir.path(), "test", &["localhost"]);
    let a = demo_backend("a", Duration::ZERO).await;
    let b = demo_backend("b", Duration::ZERO).await;
    let body = format!(
        "balancer = \"weighted-round-robin\"\n  [[pool.backend]]\n  name = \"a\"\n  address = \"{a}\"\n  weight = 3\n  [[pool.backend]]\n  name = \"b\"\n  address = \"{b}\"\n  weight = 1\n"
    );
    let t = start(dir.path(), &one_pool_config(&cert, &body)).await;
    let mut conn = connect(
        t.addr("https"),
        "localhost",
        client_tls(&cert.cert_pem, &["h2"]),
    )
    .await;
    let mut seq = String::new();
    for _ in 0..40 {
        let ans = conn.get("localhost", "/").await;
        seq.push_str(ans.backend());
    }
    assert_eq!(seq.matches('a').count(), 30, "{seq}");
    assert_eq!(seq.matches('b').count(), 10, "{seq}");
    assert!(!seq.contains("aaaa"), "burst in {seq}");
}
