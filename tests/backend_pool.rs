//! The keep-alive connection pool to HTTP/1.1 backends: reuse, `max_idle_per_backend` and
//! `[pool.timeouts] upstream_idle`, seen from a backend that counts its connections.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::watch;

use support::*;

/// What the backend saw: connections opened and closed, requests in progress.
#[derive(Default)]
struct Seen {
    opened: AtomicUsize,
    closed: AtomicUsize,
    waiting: AtomicUsize,
}

impl Seen {
    fn get(&self) -> (usize, usize) {
        (
            self.opened.load(Ordering::SeqCst),
            self.closed.load(Ordering::SeqCst),
        )
    }
}

/// A keep-alive HTTP/1.1 backend that answers "ok" to every request once `open` is true,
/// and counts its connections.
async fn counting_backend() -> (SocketAddr, Arc<Seen>, watch::Sender<bool>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let seen = Arc::new(Seen::default());
    let (gate, open) = watch::channel(true);
    let s2 = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            s2.opened.fetch_add(1, Ordering::SeqCst);
            let (seen, mut open) = (s2.clone(), open.clone());
            tokio::spawn(async move {
                while read_head(&mut s).await {
                    seen.waiting.fetch_add(1, Ordering::SeqCst);
                    let _ = open.wait_for(|o| *o).await;
                    seen.waiting.fetch_sub(1, Ordering::SeqCst);
                    let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                    if s.write_all(answer).await.is_err() {
                        break;
                    }
                }
                // `read_head` saw EOF (or an error): terminus closed the connection.
                seen.closed.fetch_add(1, Ordering::SeqCst);
            });
        }
    });
    (addr, seen, gate)
}

fn pool(backend: SocketAddr, extra: &str) -> String {
    format!(
        "balancer = \"round-robin\"\n{extra}\n{}",
        backend_lines(&[("b", backend)])
    )
}

#[tokio::test]
async fn sequential_requests_share_one_backend_connection() {
    let (backend, seen, _gate) = counting_backend().await;
    let f = fixture(&pool(backend, "")).await;
    // Three client connections, one after the other: the backend connection outlives each.
    for round in 0..3 {
        let mut conn = f.conn(&["http/1.1"]).await;
        for i in 0..10 {
            let ans = conn.get("localhost", "/").await;
            assert_eq!((ans.status, ans.text()), (200, "ok".into()), "{round}/{i}");
        }
    }
    assert_eq!(seen.get(), (1, 0), "one backend connection, still open");
}

#[tokio::test]
async fn idle_connections_beyond_max_idle_per_backend_are_closed() {
    let (backend, seen, gate) = counting_backend().await;
    let extra = "max_idle_per_backend = 2\n  [pool.timeouts]\n  upstream_idle = \"60s\"";
    let f = fixture(&pool(backend, extra)).await;
    // Six requests at once, held by the backend until all six are there: six connections.
    gate.send_replace(false);
    let mut conns = Vec::new();
    for _ in 0..6 {
        conns.push(f.conn(&["http/1.1"]).await);
    }
    let requests: Vec<_> = conns
        .into_iter()
        .map(|mut c| tokio::spawn(async move { c.get("localhost", "/").await.status }))
        .collect();
    wait_until(|| seen.waiting.load(Ordering::SeqCst) == 6).await;
    assert_eq!(seen.get(), (6, 0));
    gate.send_replace(true);
    for r in requests {
        assert_eq!(r.await.unwrap(), 200);
    }
    // Four of the six idle connections are closed; two are kept, and stay open.
    wait_until(|| seen.get().1 == 4).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(seen.get(), (6, 4), "two idle connections kept");
}

#[tokio::test]
async fn an_idle_backend_connection_is_closed_after_upstream_idle() {
    let (backend, seen, _gate) = counting_backend().await;
    let extra = "  [pool.timeouts]\n  upstream_idle = \"1s\"";
    let f = fixture(&pool(backend, extra)).await;
    let mut conn = f.conn(&["http/1.1"]).await;
    assert_eq!(conn.get("localhost", "/").await.status, 200);
    let idle_from = Instant::now();
    wait_until(|| seen.get().1 == 1).await;
    let idle = idle_from.elapsed();
    assert!(idle >= Duration::from_millis(900), "closed after {idle:?}");
    assert_eq!(seen.get(), (1, 1));
    // The next request opens a new connection and is answered.
    assert_eq!(conn.get("localhost", "/").await.status, 200);
    assert_eq!(seen.get().0, 2);
}
