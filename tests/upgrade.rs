//! WebSocket upgrades pass through terminus (real tungstenite client and server), and pools
//! may speak HTTP/2 to their backends.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rustls::pki_types::ServerName;
use support::*;
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;

/// A WebSocket server that echoes every message with a prefix.
async fn websocket_echo() -> std::net::SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut ws = tokio_tungstenite::accept_async(s).await.unwrap();
                while let Some(Ok(msg)) = ws.next().await {
                    if let Message::Text(t) = msg {
                        ws.send(Message::Text(format!("echo: {t}"))).await.unwrap();
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn websocket_upgrade_passes_through() {
    let ws = websocket_echo().await;
    let f = fixture(&backend_lines(&[("ws", ws)])).await;
    let tcp = TcpStream::connect(f.terminus.addr("https")).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(client_tls(&f.cert.cert_pem, &["http/1.1"]));
    let stream = tls
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let (mut client, resp) = tokio::time::timeout(
        WAIT,
        tokio_tungstenite::client_async("wss://localhost/chat", stream),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(resp.status(), 101);
    for i in 0..3 {
        client
            .send(Message::Text(format!("hello {i}")))
            .await
            .unwrap();
        let got = tokio::time::timeout(WAIT, client.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(got, Message::Text(format!("echo: hello {i}")));
    }
    client.close(None).await.unwrap();
}

#[tokio::test]
async fn h2_pool_speaks_http2_to_backends() {
    let a = demo_backend("a", Duration::ZERO).await;
    let body = format!("protocol = \"h2\"\n{}", backend_lines(&[("a", a)]));
    let f = fixture(&body).await;
    for alpn in BOTH_ALPN {
        let mut conn = f.conn(alpn).await;
        for _ in 0..3 {
            let ans = conn.get("localhost", "/headers").await;
            assert_eq!(ans.status, 200);
            let text = ans.text();
            // The backend sees HTTP/2 with the client's host as :authority (no Host field).
            assert_eq!(
                text.lines().next(),
                Some("GET http://localhost/headers HTTP/2.0"),
                "{text}"
            );
            assert!(!text.contains("\nhost:"), "{text}");
            assert!(text.contains("\nx-forwarded-host: localhost\n"), "{text}");
        }
        let ans = conn.get("localhost", "/bytes/1000000").await;
        assert_eq!(ans.body.len(), 1_000_000);
    }
}
