//! Retries with injected faults: connect failures are retried for every method; resets before
//! any response byte only for idempotent methods (bodies replayed); retries are bounded per
//! request and by the pool's budget; a body that fails midway never ends cleanly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A backend that reads a request head, counts it, and resets the connection.
async fn resetting_backend() -> (SocketAddr, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                if !read_head(&mut s).await {
                    return;
                }
                seen.fetch_add(1, Ordering::SeqCst);
                s.set_zero_linger().unwrap();
            });
        }
    });
    (addr, count)
}

fn pool(retry: &str, backends: &[(&str, SocketAddr)]) -> String {
    format!(
        "balancer = \"round-robin\"\n[pool.retry]\n{retry}\n{}",
        backend_lines(backends)
    )
}

async fn send(conn: &mut Conn, method: &str, path: &str, body: &'static [u8]) -> Answer {
    let req = request(conn, method, "localhost", path, Bytes::from_static(body));
    conn.send(req).await
}

#[tokio::test]
async fn connect_failures_are_retried_for_every_method() {
    let dead = closed_port().await;
    let a = demo_backend("a", Duration::ZERO).await;
    // Round-robin sends every first attempt to `dead` (the retry's pick moves the rotation on),
    // so the budget's floor is raised to let every request retry.
    let f = fixture(&pool("budget_floor = 1000", &[("dead", dead), ("a", a)])).await;
    let mut conn = f.conn(&["http/1.1"]).await;
    for _ in 0..10 {
        let ans = send(&mut conn, "GET", "/", b"").await;
        assert_eq!((ans.status, ans.backend()), (200, "a"));
        // Nothing reached the dead backend, so even a POST is safe to send elsewhere.
        let ans = send(&mut conn, "POST", "/echo", b"order #1").await;
        assert_eq!((ans.status, ans.backend()), (200, "a"));
        assert_eq!(&ans.body[..], b"order #1");
    }
}

#[tokio::test]
async fn resets_are_retried_only_for_idempotent_methods() {
    let (rst, resets) = resetting_backend().await;
    let a = demo_backend("a", Duration::ZERO).await;
    let f = fixture(&pool("budget_floor = 1000", &[("rst", rst), ("a", a)])).await;
    let mut conn = f.conn(&["http/1.1"]).await;
    for method in ["GET", "HEAD", "OPTIONS", "DELETE", "TRACE"] {
        for _ in 0..4 {
            let ans = send(&mut conn, method, "/", b"").await;
            assert_eq!((ans.status, ans.backend()), (200, "a"), "{method}");
        }
    }
    // A PUT's body is replayed on the retry. (After a retry the rotation points at rst
    // again, so every first attempt here goes to rst.)
    let before_put = resets.load(Ordering::SeqCst);
    for _ in 0..4 {
        let ans = send(&mut conn, "PUT", "/echo", b"put body").await;
        assert_eq!((ans.status, ans.backend()), (200, "a"));
        assert_eq!(&ans.body[..], b"put body");
    }
    let before = resets.load(Ordering::SeqCst);
    assert_eq!(
        before - before_put,
        4,
        "each PUT reached rst first, then was replayed"
    );
    let mut failed = 0;
    for method in ["POST", "PATCH"] {
        for _ in 0..4 {
            let ans = send(&mut conn, method, "/echo", b"pay once").await;
            if ans.status == 502 {
                failed += 1;
            } else {
                assert_eq!((ans.status, ans.backend()), (200, "a"));
            }
        }
    }
    // Round-robin sends every other request to rst: those POST/PATCH fail, never retried.
    assert_eq!(failed, 4);
    assert_eq!(
        resets.load(Ordering::SeqCst) - before,
        4,
        "each reached rst exactly once"
    );
}

#[tokio::test]
async fn retries_are_bounded_per_request() {
    let mut backends = Vec::new();
    let mut counts = Vec::new();
    for name in ["r1", "r2", "r3", "r4"] {
        let (addr, count) = resetting_backend().await;
        backends.push((name, addr));
        counts.push(count);
    }
    let f = fixture(&pool("attempts = 2\nbudget_floor = 100", &backends)).await;
    let mut conn = f.conn(&["http/1.1"]).await;
    for i in 1..=3 {
        let ans = send(&mut conn, "GET", "/", b"").await;
        assert_eq!(ans.status, 502);
        let total: usize = counts.iter().map(|c| c.load(Ordering::SeqCst)).sum();
        assert_eq!(total, 3 * i, "one attempt and two retries per request");
    }
    // Each attempt of a request went to a different backend.
    assert!(counts.iter().all(|c| c.load(Ordering::SeqCst) <= 3));
}

#[tokio::test]
async fn the_retry_budget_caps_retries_across_requests() {
    let (r1, c1) = resetting_backend().await;
    let (r2, c2) = resetting_backend().await;
    let f = fixture(&pool(
        "attempts = 1\nbudget_percent = 0\nbudget_floor = 3",
        &[("r1", r1), ("r2", r2)],
    ))
    .await;
    let mut conn = f.conn(&["http/1.1"]).await;
    for _ in 0..10 {
        assert_eq!(send(&mut conn, "GET", "/", b"").await.status, 502);
    }
    // Ten first attempts and only the three retries the floor allows.
    assert_eq!(c1.load(Ordering::SeqCst) + c2.load(Ordering::SeqCst), 13);
}

/// A backend that sends a chunked response's first chunk, then resets.
async fn breaking_backend() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let head = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nfirst\r\n";
                let _ = s.write_all(head).await;
                let _ = s.flush().await;
                tokio::time::sleep(Duration::from_millis(50)).await;
                s.set_zero_linger().unwrap();
            });
        }
    });
    addr
}

#[tokio::test]
async fn a_body_failing_midway_never_ends_cleanly() {
    use http_body_util::BodyExt;
    let broken = breaking_backend().await;
    let f = fixture(&pool("", &[("broken", broken)])).await;
    for alpn in BOTH_ALPN {
        let conn = f.conn(alpn).await;
        let req = request(&conn, "GET", "localhost", "/", Bytes::new());
        let resp = match conn {
            Conn::H1(mut s) => s.send_request(req).await.unwrap(),
            Conn::H2(mut s) => s.send_request(req).await.unwrap(),
        };
        assert_eq!(resp.status(), 200);
        let collected = tokio::time::timeout(WAIT, resp.into_body().collect())
            .await
            .unwrap();
        // HTTP/1.1: the connection closes without the final chunk; HTTP/2: the stream is reset.
        assert!(
            collected.is_err(),
            "{alpn:?}: a broken body must not end cleanly"
        );
    }
}

/// A backend that answers the first request on each connection, keeps the connection open as
/// if for keep-alive, and closes it without answering when the next request arrives: a
/// keep-alive timeout that fires just as a request goes out. Counts (answered, dropped).
async fn closing_keep_alive_backend() -> (SocketAddr, Arc<(AtomicUsize, AtomicUsize)>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let counts = Arc::new((AtomicUsize::new(0), AtomicUsize::new(0)));
    let seen = counts.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                if !read_head(&mut s).await {
                    return;
                }
                let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nfresh";
                if s.write_all(answer).await.is_err() {
                    return;
                }
                seen.0.fetch_add(1, Ordering::SeqCst);
                // The next request's first bytes: close without a word.
                if let Ok(n) = s.read(&mut [0u8; 4096]).await {
                    if n > 0 {
                        seen.1.fetch_add(1, Ordering::SeqCst);
                    }
                }
            });
        }
    });
    (addr, counts)
}

#[tokio::test]
async fn a_reused_connection_the_backend_closed_is_sent_again_once_for_idempotent_requests() {
    let (backend, counts) = closing_keep_alive_backend().await;
    // One backend only: there is no other backend to retry on.
    let f = fixture(&pool("attempts = 2", &[("b", backend)])).await;
    let mut conn = f.conn(&["http/1.1"]).await;
    for i in 0..6 {
        let ans = send(&mut conn, "GET", "/", b"").await;
        assert_eq!((ans.status, &ans.body[..]), (200, &b"fresh"[..]), "GET {i}");
    }
    // Every GET after the first found its pooled connection closed, and went again on a new
    // one: none failed, and the backend is not blamed.
    assert_eq!(counts.0.load(Ordering::SeqCst), 6);
    assert_eq!(counts.1.load(Ordering::SeqCst), 5);
    let b = &f.terminus.pools[0].backends[0];
    assert_eq!(b.stats.responses()[5], 0, "no failed attempt counted");
    // A POST may have been acted on: it is never sent twice.
    let ans = send(&mut conn, "POST", "/", b"order #1").await;
    assert_eq!(ans.status, 502);
    assert_eq!(counts.0.load(Ordering::SeqCst), 6);
    assert_eq!(counts.1.load(Ordering::SeqCst), 6);
}
