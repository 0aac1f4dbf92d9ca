//! The real binary: the embedded default answers and rotates, and SIGTERM lets in-flight
//! requests finish before a clean exit.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use support::*;

#[test]
fn embedded_default_rotates_over_three_demo_backends() {
    let mut p = Process::spawn(
        &[
            "--default-listen",
            "127.0.0.1:0",
            "--default-admin",
            "127.0.0.1:0",
        ],
        1,
    );
    let addr = p.addrs["https"];
    let mut seen = Vec::new();
    for _ in 0..6 {
        let out = Command::new("curl")
            .args([
                "-sk",
                "--max-time",
                "10",
                "--resolve",
                &format!("localhost:{}:127.0.0.1", addr.port()),
            ])
            .arg(format!("https://localhost:{}/", addr.port()))
            .output()
            .expect("curl runs");
        assert!(out.status.success(), "curl failed: {out:?}");
        seen.push(String::from_utf8(out.stdout).unwrap());
    }
    assert_eq!(
        &seen[..3],
        &seen[3..],
        "rotation repeats every three: {seen:?}"
    );
    let mut first3 = seen[..3].to_vec();
    first3.sort();
    assert_eq!(
        first3,
        vec![
            "Hello from demo-1\n",
            "Hello from demo-2\n",
            "Hello from demo-3\n"
        ]
    );
    p.signal("TERM");
    assert_eq!(p.wait_exit(), Some(0));
    let rest = p.stdout_rest.take().unwrap().join().unwrap().join("\n");
    assert!(
        rest.contains(&format!("curl -k https://localhost:{}/", addr.port())),
        "{rest}"
    );
}

fn write_config(
    dir: &std::path::Path,
    cert: &TestCert,
    backend: std::net::SocketAddr,
    grace: &str,
) -> String {
    let text = one_pool_config(cert, &backend_lines(&[("gate", backend)]))
        .replace(
            "grace_period = \"2s\"",
            &format!("grace_period = \"{grace}\""),
        )
        .replace("response = \"1s\"", "response = \"30s\"");
    let path = dir.join("terminus.toml");
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_in_flight_requests_finish_then_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let cert = write_cert(dir.path(), "test", &["localhost"]);
    let (backend, mut arrivals) = gated_backend().await;
    let path = write_config(dir.path(), &cert, backend, "10s");
    let mut p = Process::spawn(&["--config", &path], 1);
    let addr = p.addrs["https"];
    let tls = client_tls(&cert.cert_pem, &["http/1.1"]);
    let in_flight = tokio::spawn(get_once(addr, "localhost", tls.clone(), "/slow"));
    let release = tokio::time::timeout(WAIT, arrivals.recv())
        .await
        .unwrap()
        .unwrap();
    p.signal("TERM");
    // New connections are refused once the listener has stopped accepting.
    let deadline = Instant::now() + WAIT;
    while tokio::net::TcpStream::connect(addr).await.is_ok() {
        assert!(Instant::now() < deadline, "still accepting after SIGTERM");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        !in_flight.is_finished(),
        "the in-flight request must not be cut"
    );
    release.send(()).unwrap();
    let ans = tokio::time::timeout(WAIT, in_flight)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ans.status, 200);
    assert_eq!(ans.text(), "done");
    assert_eq!(
        tokio::task::spawn_blocking(move || p.wait_exit())
            .await
            .unwrap(),
        Some(0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grace_period_bounds_the_wait_for_in_flight_requests() {
    let dir = tempfile::tempdir().unwrap();
    let cert = write_cert(dir.path(), "test", &["localhost"]);
    let (backend, mut arrivals) = gated_backend().await;
    let path = write_config(dir.path(), &cert, backend, "500ms");
    let mut p = Process::spawn(&["--config", &path], 1);
    let addr = p.addrs["https"];
    let tls = client_tls(&cert.cert_pem, &["http/1.1"]);
    let _in_flight = tokio::spawn(get_once(addr, "localhost", tls, "/never"));
    let _release = tokio::time::timeout(WAIT, arrivals.recv())
        .await
        .unwrap()
        .unwrap();
    let signalled = Instant::now();
    p.signal("INT");
    assert_eq!(
        tokio::task::spawn_blocking(move || p.wait_exit())
            .await
            .unwrap(),
        Some(0)
    );
    let took = signalled.elapsed();
    assert!(
        took >= Duration::from_millis(450) && took < Duration::from_secs(5),
        "exit after {took:?}"
    );
}
