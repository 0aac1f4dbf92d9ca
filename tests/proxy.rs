//! HTTP proxying end to end: real demo backends, terminus in process, a rustls/hyper client.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use bytes::Bytes;
use support::*;

#[tokio::test]
async fn requests_rotate_over_backends_on_http1_and_http2() {
    let a = demo_backend("a", Duration::ZERO).await;
    let b = demo_backend("b", Duration::ZERO).await;
    let f = fixture(&backend_lines(&[("a", a), ("b", b)])).await;
    for alpn in BOTH_ALPN {
        let mut conn = f.conn(alpn).await;
        let mut seen = Vec::new();
        for _ in 0..4 {
            let ans = conn.get("localhost", "/").await;
            assert_eq!(ans.status, 200);
            assert_eq!(ans.text(), format!("Hello from {}\n", ans.backend()));
            seen.push(ans.backend().to_string());
        }
        seen.sort();
        assert_eq!(seen, vec!["a", "a", "b", "b"], "alpn {alpn:?}");
    }
}

#[tokio::test]
async fn forwarding_headers_are_set_and_host_kept() {
    let a = demo_backend("a", Duration::ZERO).await;
    let f = fixture(&backend_lines(&[("a", a)])).await;
    for alpn in BOTH_ALPN {
        let mut conn = f.conn(alpn).await;
        let mut req = request(&conn, "GET", "localhost:8443", "/headers?q=1", Bytes::new());
        req.headers_mut()
            .insert("x-forwarded-for", "203.0.113.9".parse().unwrap());
        req.headers_mut()
            .insert("connection", "x-drop-me".parse().unwrap());
        req.headers_mut().insert("x-drop-me", "1".parse().unwrap());
        req.headers_mut()
            .insert("keep-alive", "timeout=5".parse().unwrap());
        if matches!(conn, Conn::H2(_)) {
            // HTTP/2 forbids connection-specific headers; only HTTP/1.1 can name hop-by-hop ones.
            for h in ["connection", "keep-alive", "x-drop-me"] {
                req.headers_mut().remove(h);
            }
        }
        let ans = conn.send(req).await;
        let text = ans.text();
        assert!(text.starts_with("GET /headers?q=1 HTTP/1.1\n"), "{text}");
        assert!(text.contains("\nhost: localhost:8443\n"), "{text}");
        assert!(
            text.contains("\nx-forwarded-for: 203.0.113.9, 127.0.0.1\n"),
            "{text}"
        );
        assert!(text.contains("\nx-forwarded-proto: https\n"), "{text}");
        assert!(
            text.contains("\nx-forwarded-host: localhost:8443\n"),
            "{text}"
        );
        assert!(
            text.contains("\nforwarded: for=127.0.0.1;proto=https;host=\"localhost:8443\"\n"),
            "{text}"
        );
        assert!(!text.contains("x-drop-me"), "{text}");
        assert!(!text.contains("keep-alive"), "{text}");
    }
}

#[tokio::test]
async fn bodies_stream_both_ways() {
    let a = demo_backend("a", Duration::ZERO).await;
    let f = fixture(&backend_lines(&[("a", a)])).await;
    for alpn in BOTH_ALPN {
        let mut conn = f.conn(alpn).await;
        let upload: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let req = request(
            &conn,
            "POST",
            "localhost",
            "/echo",
            Bytes::from(upload.clone()),
        );
        let ans = conn.send(req).await;
        assert_eq!(ans.status, 200);
        assert_eq!(ans.body.len(), upload.len());
        assert!(ans.body == upload, "echoed body differs");
        let ans = conn.get("localhost", "/bytes/5000000").await;
        assert_eq!(ans.body.len(), 5_000_000);
    }
}

#[tokio::test]
async fn plain_http_listener_speaks_http1_only() {
    let dir = tempfile::tempdir().unwrap();
    let a = demo_backend("a", Duration::ZERO).await;
    let config = format!(
        "[[listener]]\nname = \"plain\"\nbind = \"127.0.0.1:0\"\nprotocol = \"http\"\n  [[listener.route]]\n  pool = \"app\"\n[[pool]]\nname = \"app\"\n{}",
        backend_lines(&[("a", a)])
    );
    let t = start(dir.path(), &config).await;
    let url = format!("http://{}/headers", t.addr("plain"));
    let curl = |extra: &'static str| {
        let url = url.clone();
        tokio::task::spawn_blocking(move || {
            std::process::Command::new("curl")
                .args([
                    "-s",
                    "--max-time",
                    "5",
                    "-w",
                    "\n%{http_version}",
                    extra,
                    &url,
                ])
                .output()
                .expect("curl runs")
        })
    };
    let out = curl("--http1.1").await.unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.ends_with("\n1.1"), "{text}");
    assert!(text.contains("x-forwarded-proto: http\n"), "{text}");
    // No sniffing: an HTTP/2 preface on a plain listener is not answered as HTTP/2.
    let out = curl("--http2-prior-knowledge").await.unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !text.ends_with("\n2"),
        "answered HTTP/2 on a plain listener: {text}"
    );
}
