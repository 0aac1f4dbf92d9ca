//! Limits and slow or abusive clients, with real sockets: oversized heads and bodies get
//! 431/414/413, a backend's oversized head a 502; a slowloris client is cut at the header
//! deadline, a stalled body at the body timeout and a client that stops reading at the send
//! timeout, while a normal client keeps being served; per-listener and per-address connection
//! limits hold without affecting others.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

/// A plain-HTTP listener "http" in front of `backends`, with `[limits]`/`[timeouts]` lines.
fn plain_config(backends: &[(&str, SocketAddr)], limits: &str, timeouts: &str) -> String {
    format!(
        r#"
[global]
grace_period = "1s"

[timeouts]
connect = "1s"
response = "5s"
{timeouts}

[limits]
{limits}

[[listener]]
name = "http"
bind = "127.0.0.1:0"
protocol = "http"
  [[listener.route]]
  pool = "app"

[[pool]]
name = "app"
{}
"#,
        backend_lines(backends)
    )
}

/// Sends `request` on a new connection and reads until the server closes it or `wait`
/// passes; returns what came back.
async fn exchange(addr: SocketAddr, request: &[u8], wait: Duration) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(wait, s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

fn status_of(answer: &str) -> u16 {
    answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {answer:?}"))
}

/// A backend that counts the requests that reach it and answers each with `Hello`.
async fn counting_backend() -> (SocketAddr, Arc<AtomicUsize>) {
    let seen = Arc::new(AtomicUsize::new(0));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let count = seen.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            let count = count.clone();
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        count.fetch_add(1, Ordering::SeqCst);
                        async move {
                            use http_body_util::BodyExt;
                            let _ = req.into_body().collect().await;
                            Ok::<_, std::convert::Infallible>(http::Response::new(
                                http_body_util::Full::new(bytes::Bytes::from_static(b"Hello")),
                            ))
                        }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(s), service)
                    .await;
            });
        }
    });
    (addr, seen)
}

#[tokio::test]
async fn oversized_heads_and_bodies_are_refused_before_the_backend() {
    let (backend, seen) = counting_backend().await;
    let dir = tempfile::tempdir().unwrap();
    let limits =
        "max_header_bytes = 4096\nmax_headers = 20\nmax_uri_bytes = 256\nmax_body_bytes = 1000";
    let t = start(dir.path(), &plain_config(&[("b", backend)], limits, "")).await;
    let addr = t.addr("http");
    let wait = Duration::from_secs(5);
    let big_header = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(5000)
    );
    let many: String = (0..25).map(|i| format!("X-H{i}: v\r\n")).collect();
    let many = format!("GET / HTTP/1.1\r\nHost: x\r\n{many}\r\n");
    let long_uri = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "u".repeat(300));
    let big_body = format!(
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1001\r\n\r\n{}",
        "b".repeat(1001)
    );
    let cases: [(&str, &str, u16); 4] = [
        ("a 5000-byte header", &big_header, 431),
        ("25 header fields", &many, 431),
        ("a 301-byte target", &long_uri, 414),
        ("a declared 1001-byte body", &big_body, 413),
    ];
    for (what, request, want) in cases {
        let answer = exchange(addr, request.as_bytes(), wait).await;
        assert_eq!(status_of(&answer), want, "{what}: {answer}");
    }
    assert_eq!(seen.load(Ordering::SeqCst), 0, "none reached the backend");

    // A chunked body is counted as it streams: over the limit, 413.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        .await
        .unwrap();
    for _ in 0..3 {
        s.write_all(format!("190\r\n{}\r\n", "c".repeat(400)).as_bytes())
            .await
            .unwrap();
    }
    s.write_all(b"0\r\n\r\n").await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(wait, s.read_to_end(&mut out)).await;
    let answer = String::from_utf8_lossy(&out);
    assert_eq!(status_of(&answer), 413, "{answer}");

    // Within the limits, requests pass.
    let body = "d".repeat(1000);
    let answer = exchange(
        addr,
        format!(
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\nConnection: close\r\n\r\n{body}"
        )
        .as_bytes(),
        wait,
    )
    .await;
    assert_eq!(status_of(&answer), 200, "{answer}");
}

#[tokio::test]
async fn a_backends_oversized_head_is_a_502() {
    // A backend whose response head is 20 000 bytes of headers.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let head = format!(
                    "HTTP/1.1 200 OK\r\nX-Big: {}\r\nContent-Length: 2\r\n\r\nok",
                    "z".repeat(20_000)
                );
                let _ = s.write_all(head.as_bytes()).await;
            });
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let t = start(
        dir.path(),
        &plain_config(&[("b", backend)], "max_response_header_bytes = 8192", ""),
    )
    .await;
    let answer = exchange(
        t.addr("http"),
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(status_of(&answer), 502, "{answer}");
}

/// Sends GETs one after another on one keep-alive connection for `during`; how many were
/// answered 200, and the slowest.
async fn steady_client(addr: SocketAddr, during: Duration) -> (usize, Duration) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let (mut ok, mut slowest) = (0, Duration::ZERO);
    let end = Instant::now() + during;
    let mut buf = vec![0u8; 4096];
    while Instant::now() < end {
        let started = Instant::now();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut got = Vec::new();
        while !got.windows(5).any(|w| w == b"Hello") {
            let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
                .await
                .unwrap()
                .unwrap();
            assert!(n > 0, "terminus closed a well-behaved client");
            got.extend_from_slice(&buf[..n]);
        }
        assert!(got.starts_with(b"HTTP/1.1 200"), "{got:?}");
        ok += 1;
        slowest = slowest.max(started.elapsed());
    }
    (ok, slowest)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_is_cut_at_the_header_deadline_while_others_are_served() {
    let backend = demo_backend("a", Duration::ZERO).await;
    let dir = tempfile::tempdir().unwrap();
    let t = start(
        dir.path(),
        &plain_config(&[("a", backend)], "", "client_header = \"600ms\""),
    )
    .await;
    let addr = t.addr("http");
    let normal = tokio::spawn(steady_client(addr, Duration::from_millis(1500)));
    // Ten slowloris clients, each trickling a byte every 50 ms: active, never finished.
    let mut slow = Vec::new();
    for _ in 0..10 {
        slow.push(tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            let started = Instant::now();
            let head = b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
            for byte in head.iter().cycle().take(200) {
                if s.write_all(&[*byte]).await.is_err() {
                    return started.elapsed();
                }
                // A closed connection shows as a read of 0 (or an error) while we trickle.
                let mut probe = [0u8; 64];
                if let Ok(Ok(n)) =
                    tokio::time::timeout(Duration::from_millis(50), s.read(&mut probe)).await
                {
                    let _ = n;
                    return started.elapsed();
                }
            }
            panic!("a slowloris client was never cut off");
        }));
    }
    for c in slow {
        let lived = c.await.unwrap();
        assert!(
            lived >= Duration::from_millis(550) && lived < Duration::from_millis(3000),
            "cut after {lived:?}, expected about 600 ms"
        );
    }
    let (served, slowest) = normal.await.unwrap();
    assert!(served > 20, "the normal client got only {served} answers");
    assert!(
        slowest < Duration::from_millis(500),
        "slowest answer {slowest:?}"
    );
}

#[tokio::test]
async fn a_stalled_request_body_gets_408() {
    let (backend, _) = counting_backend().await;
    let dir = tempfile::tempdir().unwrap();
    let t = start(
        dir.path(),
        &plain_config(&[("b", backend)], "", "client_body = \"300ms\""),
    )
    .await;
    let mut s = TcpStream::connect(t.addr("http")).await.unwrap();
    let started = Instant::now();
    s.write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nhalf")
        .await
        .unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    let answer = String::from_utf8_lossy(&out);
    assert_eq!(status_of(&answer), 408, "{answer}");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(3),
        "{took:?}"
    );
    let pool = &t.server.pools()[0];
    assert_eq!(
        pool.backends[0].stats.responses()[5],
        0,
        "the client's stall is not counted against the backend"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_cut_at_the_send_timeout() {
    let backend = demo_backend("a", Duration::ZERO).await;
    let dir = tempfile::tempdir().unwrap();
    let t = start(
        dir.path(),
        &plain_config(&[("a", backend)], "", "client_send = \"500ms\""),
    )
    .await;
    let addr = t.addr("http");
    let normal = tokio::spawn(steady_client(addr, Duration::from_millis(1200)));
    // Asks for 200 MB and reads nothing: buffers fill, writes block.
    let sock = TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let mut s = sock.connect(addr).await.unwrap();
    s.write_all(b"GET /bytes/200000000 HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let pool = t.server.pools()[0].clone();
    let backend_state = pool.backends[0].clone();
    wait_until(|| backend_state.in_flight() >= 1).await;
    // Once the send timeout fires terminus drops the response: the backend's request ends.
    let started = Instant::now();
    wait_until(|| backend_state.in_flight() == 0).await;
    assert!(started.elapsed() < Duration::from_secs(4));
    // Reading now finds the connection closed before 200 MB arrived.
    let mut total = 0usize;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => total += n,
            Err(_) => panic!("the stalled connection was not closed"),
        }
    }
    assert!(total < 200_000_000, "read {total} bytes");
    let (served, _) = normal.await.unwrap();
    assert!(served > 20, "the normal client got only {served} answers");
}

/// A connection to `addr` from the loopback address `from`.
async fn connect_from(from: &str, addr: SocketAddr) -> TcpStream {
    let sock = TcpSocket::new_v4().unwrap();
    sock.bind(format!("{from}:0").parse().unwrap()).unwrap();
    sock.connect(addr).await.unwrap()
}

/// Whether a GET on `s` is answered 200 (false when the connection was closed).
async fn answered(s: &mut TcpStream) -> bool {
    if s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .is_err()
    {
        return false;
    }
    let mut buf = vec![0u8; 4096];
    match tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await {
        Ok(Ok(n)) if n > 0 => buf.starts_with(b"HTTP/1.1 200"),
        _ => false,
    }
}

#[tokio::test]
async fn one_address_past_its_limit_is_refused_and_others_are_not() {
    let backend = demo_backend("a", Duration::ZERO).await;
    let dir = tempfile::tempdir().unwrap();
    let t = start(
        dir.path(),
        &plain_config(&[("a", backend)], "max_connections_per_client = 3", ""),
    )
    .await;
    let addr = t.addr("http");
    let mut mine = Vec::new();
    for _ in 0..3 {
        let mut s = connect_from("127.0.0.1", addr).await;
        assert!(answered(&mut s).await);
        mine.push(s);
    }
    let mut fourth = connect_from("127.0.0.1", addr).await;
    assert!(
        !answered(&mut fourth).await,
        "a fourth from 127.0.0.1 is closed"
    );
    // Another address is unaffected.
    for _ in 0..3 {
        let mut s = connect_from("127.0.0.2", addr).await;
        assert!(answered(&mut s).await, "127.0.0.2 is served");
        mine.push(s);
    }
    // The refusal is counted; a closed connection frees a place.
    let refused = terminus::metrics::FailureLabels {
        listener: "http".into(),
        reason: "per_client_limit",
    };
    let metrics = t.server.metrics();
    assert_eq!(metrics.connections_refused.get_or_create(&refused).get(), 1);
    drop(mine.remove(0));
    let mut again = None;
    for _ in 0..100 {
        let mut s = connect_from("127.0.0.1", addr).await;
        if answered(&mut s).await {
            again = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(again.is_some(), "a place freed up for 127.0.0.1");
}

#[tokio::test]
async fn at_the_listener_limit_new_clients_wait_until_a_place_frees() {
    let backend = demo_backend("a", Duration::ZERO).await;
    let dir = tempfile::tempdir().unwrap();
    let t = start(
        dir.path(),
        &plain_config(&[("a", backend)], "max_connections = 2", ""),
    )
    .await;
    let addr = t.addr("http");
    let mut first = TcpStream::connect(addr).await.unwrap();
    let mut second = TcpStream::connect(addr).await.unwrap();
    assert!(answered(&mut first).await && answered(&mut second).await);
    // The third is accepted by the kernel but not served while two are open.
    let third = tokio::spawn(async move {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let started = Instant::now();
        assert!(answered(&mut s).await);
        started.elapsed()
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!third.is_finished(), "served past the limit");
    drop(first);
    let waited = tokio::time::timeout(Duration::from_secs(5), third)
        .await
        .unwrap()
        .unwrap();
    assert!(waited >= Duration::from_millis(250), "{waited:?}");
    assert!(answered(&mut second).await);
}

#[tokio::test]
async fn accept_loops_on_several_workers_admit_no_more_than_max_connections_between_them() {
    let backend = demo_backend("a", Duration::ZERO).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("terminus.toml");
    let text = plain_config(&[("a", backend)], "max_connections = 2", "")
        .replace("[global]\n", "[global]\nworkers = 4\n");
    std::fs::write(&path, text).unwrap();
    let t = Process::spawn(&["--config", path.to_str().unwrap(), "--log", "warn"], 1);
    let addr = t.addrs["http"];
    let mut first = TcpStream::connect(addr).await.unwrap();
    assert!(answered(&mut first).await);
    // One place is left, and four accept loops wait on the socket: four clients at once get
    // exactly one place between them.
    let clients: Vec<_> = (0..4)
        .map(|_| {
            tokio::spawn(async move {
                let mut s = TcpStream::connect(addr).await.unwrap();
                let ok = answered(&mut s).await;
                (ok, s)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let served = clients.iter().filter(|c| c.is_finished()).count();
    assert_eq!(served, 1, "clients served past max_connections = 2");
    for c in clients {
        if c.is_finished() {
            assert!(c.await.unwrap().0, "the one admitted is answered");
        } else {
            c.abort();
        }
    }
    drop(first);
}

/// Opens an HTTP/2 connection over TLS to the fixture's "https" listener.
async fn h2_client(
    f: &Fixture,
) -> (
    h2::client::SendRequest<bytes::Bytes>,
    tokio::task::JoinHandle<Result<(), h2::Error>>,
) {
    let tcp = TcpStream::connect(f.terminus.addr("https")).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(client_tls(&f.cert.cert_pem, &["h2"]));
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = connector.connect(name, tcp).await.unwrap();
    let (send, conn) = h2::client::handshake(tls).await.unwrap();
    (send, tokio::spawn(conn))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2_client_resetting_streams_in_a_loop_gets_goaway_and_others_do_not() {
    let backend = demo_backend("a", Duration::from_millis(20)).await;
    let f = fixture(&backend_lines(&[("a", backend)])).await;
    let (mut abuser, conn) = h2_client(&f).await;
    let mut sent = 0;
    for _ in 0..10_000 {
        let req = http::Request::get("https://localhost/").body(()).unwrap();
        match tokio::time::timeout(WAIT, abuser.ready()).await.unwrap() {
            Ok(ready) => abuser = ready,
            Err(_) => break,
        }
        let Ok((_, mut stream)) = abuser.send_request(req, true) else {
            break;
        };
        stream.send_reset(h2::Reason::CANCEL);
        sent += 1;
    }
    let ended = tokio::time::timeout(WAIT, conn)
        .await
        .expect("the connection ended");
    let err = ended.unwrap().expect_err("closed with an error");
    // The client sees the GOAWAY, or, when it was still writing as terminus closed the
    // connection after it, the broken pipe of that write. Without the bound the connection
    // never ends at all (the timeout above fires).
    let goaway =
        err.is_go_away() && err.is_remote() && err.reason() == Some(h2::Reason::ENHANCE_YOUR_CALM);
    let cut = err.get_io().is_some_and(|e| {
        matches!(
            e.kind(),
            std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
        )
    });
    assert!(goaway || cut, "after {sent} resets: {err:?}");
    assert!(
        sent < 10_000,
        "cut off before the loop ended ({sent} streams)"
    );

    // A well-behaved HTTP/2 client on another connection is served.
    let (mut good, _conn) = h2_client(&f).await;
    for _ in 0..10 {
        good = good.ready().await.unwrap();
        let req = http::Request::get("https://localhost/").body(()).unwrap();
        let (resp, _) = good.send_request(req, true).unwrap();
        let resp = tokio::time::timeout(WAIT, resp).await.unwrap().unwrap();
        assert_eq!(resp.status(), 200);
    }
}

#[tokio::test]
async fn a_tls_handshake_that_never_ends_is_cut_at_its_deadline() {
    let backend = demo_backend("a", Duration::ZERO).await;
    let dir = tempfile::tempdir().unwrap();
    let cert = write_cert(dir.path(), "test", &["localhost"]);
    let config = one_pool_config(&cert, &backend_lines(&[("a", backend)])).replacen(
        "[timeouts]\n",
        "[timeouts]\ntls_handshake = \"500ms\"\n",
        1,
    );
    let t = start(dir.path(), &config).await;
    // Half a ClientHello record header, then silence.
    let mut s = TcpStream::connect(t.addr("https")).await.unwrap();
    s.write_all(&[0x16, 0x03, 0x01]).await.unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "closed, not answered: {read:?}"
    );
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(450) && took < Duration::from_secs(3),
        "{took:?}"
    );
    let labels = terminus::metrics::FailureLabels {
        listener: "https".into(),
        reason: "timeout",
    };
    let failures = t
        .server
        .metrics()
        .handshake_failures
        .get_or_create(&labels)
        .get();
    assert_eq!(failures, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_connections_close_after_keepalive_but_busy_ones_do_not() {
    let backend = demo_backend("a", Duration::ZERO).await;
    let dir = tempfile::tempdir().unwrap();
    let cert = write_cert(dir.path(), "test", &["localhost"]);
    let config = one_pool_config(&cert, &backend_lines(&[("a", backend)])).replacen(
        "[timeouts]\n",
        "[timeouts]\nkeepalive = \"400ms\"\n",
        1,
    );
    let t = start(dir.path(), &config).await;
    let f_cert = &cert;
    // HTTP/1.1: a request slower than keepalive is answered; then the idle connection closes.
    let tls = client_tls(&f_cert.cert_pem, &["http/1.1"]);
    let mut conn = connect(t.addr("https"), "localhost", tls).await;
    let slow = conn.get("localhost", "/delay/700").await;
    assert_eq!(slow.status, 200, "a request in progress is never idle");
    let idle_from = Instant::now();
    let Conn::H1(mut send) = conn else {
        panic!("HTTP/1.1 asked")
    };
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        while send.ready().await.is_ok() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(closed.is_ok(), "the idle connection was not closed");
    let idle = idle_from.elapsed();
    assert!(
        idle >= Duration::from_millis(350) && idle < Duration::from_secs(3),
        "closed after {idle:?} idle"
    );
    // HTTP/2: GOAWAY once idle.
    let tcp = TcpStream::connect(t.addr("https")).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(client_tls(&f_cert.cert_pem, &["h2"]));
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let stream = connector.connect(name, tcp).await.unwrap();
    let (mut h2, conn) = h2::client::handshake(stream).await.unwrap();
    let conn = tokio::spawn(conn);
    h2 = h2.ready().await.unwrap();
    let req = http::Request::get("https://localhost/").body(()).unwrap();
    let (resp, _) = h2.send_request(req, true).unwrap();
    assert_eq!(resp.await.unwrap().status(), 200);
    let started = Instant::now();
    let ended = tokio::time::timeout(Duration::from_secs(5), conn)
        .await
        .expect("the idle HTTP/2 connection ended");
    assert!(ended.unwrap().is_ok(), "a graceful GOAWAY, not an error");
    assert!(started.elapsed() >= Duration::from_millis(350));
}

/// The next request to reach a gated backend (its release), waiting at most 5 s.
async fn arrival(
    rx: &mut tokio::sync::mpsc::Receiver<tokio::sync::oneshot::Sender<()>>,
) -> tokio::sync::oneshot::Sender<()> {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("a request reached the backend")
        .unwrap()
}

/// Opens a connection and sends one `Connection: close` GET; the task returns the status and
/// how long the answer took.
fn spawn_get(addr: SocketAddr, path: &'static str) -> tokio::task::JoinHandle<(u16, Duration)> {
    tokio::spawn(async move {
        let started = Instant::now();
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        let answer = exchange(addr, request.as_bytes(), Duration::from_secs(10)).await;
        (status_of(&answer), started.elapsed())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_backend_queues_requests_and_a_queue_timeout_is_a_503() {
    let (backend, mut arrivals) = gated_backend().await;
    let dir = tempfile::tempdir().unwrap();
    // Held requests wait for the test's release: the response timeout is far away.
    let config = plain_config(&[("gate", backend)], "", "")
        .replace("response = \"5s\"", "response = \"30s\"")
        .replace(
            "name = \"app\"\n",
            "name = \"app\"\nmax_connections_per_backend = 2\n[pool.timeouts]\nqueue = \"2s\"\n",
        );
    let t = start(dir.path(), &config).await;
    let addr = t.addr("http");
    let gate = t.pools[0].backends[0].clone();

    // Two requests take the two slots; the third waits in the backend's queue.
    // One after the other, so that each release belongs to the request it is named for.
    let first = spawn_get(addr, "/1");
    let release_1 = arrival(&mut arrivals).await;
    let second = spawn_get(addr, "/2");
    let release_2 = arrival(&mut arrivals).await;
    let third = spawn_get(addr, "/3");
    wait_until(|| gate.queued() == 1).await;
    let early = tokio::time::timeout(Duration::from_millis(200), arrivals.recv()).await;
    assert!(
        early.is_err(),
        "a third request reached a backend capped at 2"
    );
    assert_eq!(gate.in_flight(), 2);
    // A slot frees: the queued request goes on, within its queue timeout (2 s: ample even
    // on a loaded CI machine, where the release takes a while to reach terminus).
    release_1.send(()).unwrap();
    let release_3 = arrival(&mut arrivals).await;
    assert_eq!(gate.queued(), 0);
    release_3.send(()).unwrap();
    assert_eq!(first.await.unwrap().0, 200);
    assert_eq!(third.await.unwrap().0, 200);

    // Both slots taken again (the second request still holds one): a request that waits
    // past `queue` gets 503, never reaches the backend, and is not the backend's failure.
    let fourth = spawn_get(addr, "/4");
    let release_4 = arrival(&mut arrivals).await;
    let fifth = spawn_get(addr, "/5");
    let (status, took) = tokio::time::timeout(Duration::from_secs(5), fifth)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status, 503);
    assert!(took >= Duration::from_millis(1950), "{took:?}");
    assert_eq!(gate.queue_timeouts(), 1);
    assert!(
        arrivals.try_recv().is_err(),
        "the 503'd request reached the backend"
    );
    release_2.send(()).unwrap();
    release_4.send(()).unwrap();
    assert_eq!(second.await.unwrap().0, 200);
    assert_eq!(fourth.await.unwrap().0, 200);
    assert_eq!(gate.stats.responses()[5], 0, "no attempt counted as failed");
    assert_eq!(gate.in_flight(), 0);
}

/// Terminus out of file descriptors (here: `ulimit -n 40`) cannot open a backend connection:
/// that is its own 503 (`local_resources`), never the backend's failure, never retried, and
/// it serves again as soon as descriptors free up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_descriptors_is_terminus_own_503_and_not_the_backends_failure() {
    const STREAMS: usize = 60;
    let (backend, mut arrivals) = gated_backend().await;
    let dir = tempfile::tempdir().unwrap();
    let cert = write_cert(dir.path(), "test", &["localhost"]);
    // Idle backend connections are closed at once, so released requests give their
    // descriptors back.
    let pool = format!(
        "max_idle_per_backend = 0\n{}",
        backend_lines(&[("gate", backend)])
    );
    let config = one_pool_config(&cert, &pool).replace("response = \"1s\"", "response = \"30s\"")
        + "\n[admin]\nbind = \"127.0.0.1:0\"\n";
    let path = dir.path().join("terminus.toml");
    std::fs::write(&path, config).unwrap();
    let mut command = std::process::Command::new("sh");
    command.args(["-c", "ulimit -n 40 && exec \"$0\" \"$@\"", binary()]);
    command.args(["--config", path.to_str().unwrap(), "--log", "warn"]);
    let mut t = Process::spawn_command(command, 2);

    // One HTTP/2 connection; each stream needs a backend connection of its own.
    let tcp = TcpStream::connect(t.addrs["https"]).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(client_tls(&cert.cert_pem, &["h2"]));
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = connector.connect(name, tcp).await.unwrap();
    let (send, conn) = h2::client::handshake(tls).await.unwrap();
    tokio::spawn(conn);
    let mut streams = Vec::new();
    for i in 0..STREAMS {
        let mut send = send.clone().ready().await.unwrap();
        let req = http::Request::get(format!("https://localhost/{i}"))
            .body(())
            .unwrap();
        let (resp, _) = send.send_request(req, true).unwrap();
        streams.push(tokio::spawn(async move {
            let resp = resp.await.unwrap();
            let status = resp.status().as_u16();
            let mut body = resp.into_body();
            while let Some(chunk) = body.data().await {
                let n = chunk.unwrap().len();
                let _ = body.flow_control().release_capacity(n);
            }
            status
        }));
    }
    // Every stream either reaches the backend (and is held there) or is answered at once.
    let mut releases = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while releases.len() + streams.iter().filter(|s| s.is_finished()).count() < STREAMS {
        assert!(
            Instant::now() < deadline,
            "streams neither held nor answered"
        );
        if let Ok(Some(release)) =
            tokio::time::timeout(Duration::from_millis(50), arrivals.recv()).await
        {
            releases.push(release);
        }
    }
    let held = releases.len();
    assert!(
        held > 0 && held < STREAMS,
        "{held} of {STREAMS} reached the backend"
    );
    for release in releases {
        let _ = release.send(());
    }
    let mut statuses = Vec::new();
    for s in streams {
        statuses.push(
            tokio::time::timeout(Duration::from_secs(10), s)
                .await
                .unwrap()
                .unwrap(),
        );
    }
    let ok = statuses.iter().filter(|&&s| s == 200).count();
    let refused = statuses.iter().filter(|&&s| s == 503).count();
    assert_eq!((ok, refused), (held, STREAMS - held), "{statuses:?}");

    // Descriptors are back: a new request is served, and the backend was never blamed.
    let mut send = send.ready().await.unwrap();
    let req = http::Request::get("https://localhost/after")
        .body(())
        .unwrap();
    let (resp, _) = send.send_request(req, true).unwrap();
    let release = arrival(&mut arrivals).await;
    release.send(()).unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(5), resp)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resp.status(), 200);
    let view = exchange(
        t.addrs["admin"],
        b"GET /api/v1/pools/app/backends/gate HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    let json: serde_json::Value =
        serde_json::from_str(view.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(json["responses"]["failed"], 0, "{json}");
    assert_eq!(json["responses"]["2xx"], held as u64 + 1, "{json}");
    assert_eq!(json["retries"]["retried_elsewhere"], 0, "{json}");
    assert_eq!(json["health"], "healthy", "{json}");
    t.signal("TERM");
    t.wait_exit();
    let mut log = String::new();
    std::io::Read::read_to_string(&mut t.child.stderr.take().unwrap(), &mut log).unwrap();
    assert!(log.contains("503: out of local resources"), "{log}");
}
