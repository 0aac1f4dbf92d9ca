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

/// A backend that sends its response head and a first chunk, then waits to be released before
/// the last chunk; it also reports the first bytes of a request body as they arrive.
async fn streaming_backend() -> (
    std::net::SocketAddr,
    tokio::sync::mpsc::Receiver<tokio::sync::oneshot::Sender<()>>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = s.read(&mut buf).await.unwrap();
                    assert!(n > 0, "request head incomplete");
                    seen.extend_from_slice(&buf[..n]);
                }
                let head = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nfirst\r\n";
                s.write_all(head).await.unwrap();
                let (release_tx, release_rx) = tokio::sync::oneshot::channel();
                tx.send(release_tx).await.unwrap();
                let _ = release_rx.await;
                s.write_all(b"4\r\nlast\r\n0\r\n\r\n").await.unwrap();
            });
        }
    });
    (addr, rx)
}

#[tokio::test]
async fn responses_stream_before_the_backend_finishes() {
    use http_body_util::BodyExt;
    let (backend, mut gates) = streaming_backend().await;
    let f = fixture(&backend_lines(&[("stream", backend)])).await;
    for alpn in BOTH_ALPN {
        let conn = f.conn(alpn).await;
        let req = request(&conn, "GET", "localhost", "/", Bytes::new());
        let resp = match conn {
            Conn::H1(mut s) => s.send_request(req).await.unwrap(),
            Conn::H2(mut s) => s.send_request(req).await.unwrap(),
        };
        assert_eq!(resp.status(), 200);
        let mut body = resp.into_body();
        let first = tokio::time::timeout(WAIT, body.frame()).await.unwrap();
        let first = first.unwrap().unwrap().into_data().unwrap();
        // The first chunk arrived while the backend is still holding the rest.
        assert_eq!(&first[..], b"first");
        let release = tokio::time::timeout(WAIT, gates.recv())
            .await
            .unwrap()
            .unwrap();
        release.send(()).unwrap();
        let rest = tokio::time::timeout(WAIT, body.collect()).await.unwrap();
        assert_eq!(&rest.unwrap().to_bytes()[..], b"last");
    }
}

#[tokio::test]
async fn request_bodies_stream_before_the_client_finishes() {
    use futures_channel::mpsc;
    use futures_util::SinkExt;
    use http_body_util::{BodyExt, StreamBody};
    use hyper::body::Frame;
    let a = demo_backend("a", Duration::ZERO).await;
    let f = fixture(&backend_lines(&[("a", a)])).await;
    let tls = client_tls(&f.cert.cert_pem, &["http/1.1"]);
    let tcp = tokio::net::TcpStream::connect(f.terminus.addr("https"))
        .await
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let stream = tokio_rustls::TlsConnector::from(tls)
        .connect(name, tcp)
        .await
        .unwrap();
    let (mut send, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let (mut body_tx, body_rx) = mpsc::channel::<Result<Frame<Bytes>, std::convert::Infallible>>(1);
    let req = http::Request::post("/echo")
        .header("host", "localhost")
        .body(StreamBody::new(body_rx))
        .unwrap();
    body_tx
        .send(Ok(Frame::data(Bytes::from_static(b"ping"))))
        .await
        .unwrap();
    let resp = tokio::time::timeout(WAIT, send.send_request(req))
        .await
        .unwrap()
        .unwrap();
    let mut body = resp.into_body();
    // The echo of the first piece comes back while the request body is still open.
    let echoed = tokio::time::timeout(WAIT, body.frame()).await.unwrap();
    assert_eq!(&echoed.unwrap().unwrap().into_data().unwrap()[..], b"ping");
    body_tx
        .send(Ok(Frame::data(Bytes::from_static(b"pong"))))
        .await
        .unwrap();
    let echoed = tokio::time::timeout(WAIT, body.frame()).await.unwrap();
    assert_eq!(&echoed.unwrap().unwrap().into_data().unwrap()[..], b"pong");
    drop(body_tx);
    let rest = tokio::time::timeout(WAIT, body.collect())
        .await
        .unwrap()
        .unwrap();
    assert!(rest.to_bytes().is_empty());
}
