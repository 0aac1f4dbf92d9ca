//! L4 modes end to end on real sockets: `tcp` listeners (TLS ended, bytes forwarded, half-close
//! kept), `tls-passthrough` by SNI to backends holding their own certificates, and the PROXY
//! protocol out to backends and in from trusted sources.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use rustls::pki_types::ServerName;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::client::TlsStream;

/// A plain TCP backend: echoes what it reads; at EOF it sends "final\n" and closes.
async fn echo_backend() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => s.write_all(&buf[..n]).await.unwrap(),
                    }
                }
                let _ = s.write_all(b"final\n").await;
                let _ = s.shutdown().await;
            });
        }
    });
    addr
}

/// A backend that reads one PROXY protocol header and answers with what it said: the
/// source address, then the SNI TLV and whether an SSL TLV came, one per line.
async fn proxy_aware_backend() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 512];
                loop {
                    let n = s.read(&mut chunk).await.unwrap();
                    assert!(n > 0, "EOF before a complete PROXY header");
                    buf.extend_from_slice(&chunk[..n]);
                    let ppp::HeaderResult::V2(parsed) = ppp::HeaderResult::parse(&buf) else {
                        panic!("not a v2 header");
                    };
                    let Ok(h) = parsed else { continue };
                    let ppp::v2::Addresses::IPv4(a) = h.addresses else {
                        panic!("not IPv4");
                    };
                    let mut out = format!("{}:{}\n", a.source_address, a.source_port);
                    for tlv in h.tlvs() {
                        let tlv = tlv.unwrap();
                        if tlv.kind == u8::from(ppp::v2::Type::Authority) {
                            out.push_str(&format!("sni={}\n", String::from_utf8_lossy(&tlv.value)));
                        }
                        if tlv.kind == u8::from(ppp::v2::Type::SSL) {
                            out.push_str(&format!(
                                "ssl={}\n",
                                String::from_utf8_lossy(&tlv.value[8..])
                            ));
                        }
                    }
                    s.write_all(out.as_bytes()).await.unwrap();
                    let _ = s.shutdown().await;
                    return;
                }
            });
        }
    });
    addr
}

/// A config with a `tcp` listener named "tcp" (certificate `cert`) in front of pool "app".
fn tcp_config(cert: &TestCert, pool_body: &str) -> String {
    format!(
        r#"
[global]
grace_period = "1s"

[timeouts]
connect = "1s"

[[certificate]]
name = "test"
cert = "{}"
key = "{}"

[[listener]]
name = "tcp"
bind = "127.0.0.1:0"
protocol = "tcp"

  [[listener.route]]
  pool = "app"

[[pool]]
name = "app"
{pool_body}
"#,
        cert.cert_path.display(),
        cert.key_path.display()
    )
}

async fn tls_connect(addr: SocketAddr, sni: &str, ca_pem: &str) -> TlsStream<TcpStream> {
    let tcp = tokio::time::timeout(WAIT, TcpStream::connect(addr))
        .await
        .unwrap()
        .unwrap();
    let connector = tokio_rustls::TlsConnector::from(client_tls(ca_pem, &[]));
    let name = ServerName::try_from(sni.to_string()).unwrap();
    tokio::time::timeout(WAIT, connector.connect(name, tcp))
        .await
        .unwrap()
        .unwrap()
}

async fn read_to_end(s: &mut (impl AsyncReadExt + Unpin)) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(WAIT, s.read_to_end(&mut out))
        .await
        .expect("read timed out");
    out
}

#[tokio::test]
async fn tcp_listener_forwards_bytes_and_keeps_a_half_closed_direction_open() {
    let dir = tempfile::tempdir().unwrap();
    let cert = write_cert(dir.path(), "test", &["localhost"]);
    let echo = echo_backend().await;
    let t = start(
        dir.path(),
        &tcp_config(&cert, &backend_lines(&[("echo", echo)])),
    )
    .await;
    let mut s = tls_connect(t.addr("tcp"), "localhost", &cert.cert_pem).await;
    s.write_all(b"hello").await.unwrap();
    let mut got = [0u8; 5];
    tokio::time::timeout(WAIT, s.read_exact(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&got, b"hello");
    // Our write half ends; the backend sees EOF and still answers on the open direction.
    s.shutdown().await.unwrap();
    assert_eq!(read_to_end(&mut s).await, b"final\n");
}

#[tokio::test]
async fn tcp_listener_retries_a_failed_connect_on_another_backend() {
    let dir = tempfile::tempdir().unwrap();
    let cert = write_cert(dir.path(), "test", &["localhost"]);
    let echo = echo_backend().await;
    let dead = closed_port().await;
    let backends = backend_lines(&[("dead", dead), ("echo", echo)]);
    let t = start(dir.path(), &tcp_config(&cert, &backends)).await;
    for _ in 0..4 {
        let mut s = tls_connect(t.addr("tcp"), "localhost", &cert.cert_pem).await;
        s.write_all(b"x").await.unwrap();
        s.shutdown().await.unwrap();
        assert_eq!(read_to_end(&mut s).await, b"xfinal\n");
    }
}

#[tokio::test]
async fn proxy_protocol_v2_tells_the_backend_the_client_address_sni_and_tls_version() {
    let dir = tempfile::tempdir().unwrap();
    let cert = write_cert(dir.path(), "test", &["localhost"]);
    let backend = proxy_aware_backend().await;
    let body = format!(
        "proxy_protocol = \"v2\"\n{}",
        backend_lines(&[("b", backend)])
    );
    let t = start(dir.path(), &tcp_config(&cert, &body)).await;
    let mut s = tls_connect(t.addr("tcp"), "localhost", &cert.cert_pem).await;
    let me = s.get_ref().0.local_addr().unwrap();
    let text = String::from_utf8(read_to_end(&mut s).await).unwrap();
    assert_eq!(text, format!("{me}\nsni=localhost\nssl=TLSv1.3\n"));
}

/// Backend terminus instances holding a.test's and b.test's certificates, and a front
/// terminus with only a tls-passthrough listener ("pt") routing by SNI to them.
struct Passthrough {
    _dirs: Vec<tempfile::TempDir>,
    backends: Vec<(TestCert, InProcess)>,
    front: InProcess,
}

async fn passthrough() -> Passthrough {
    let mut dirs = Vec::new();
    let mut backends = Vec::new();
    for name in ["a", "b"] {
        let dir = tempfile::tempdir().unwrap();
        let cert = write_cert(dir.path(), "test", &[&format!("{name}.test")]);
        let demo = demo_backend(name, Duration::ZERO).await;
        let config = one_pool_config(&cert, &backend_lines(&[(name, demo)]));
        let t = start(dir.path(), &config).await;
        backends.push((cert, t));
        dirs.push(dir);
    }
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        r#"
[global]
grace_period = "1s"

[timeouts]
tls_handshake = "1s"

[[listener]]
name = "pt"
bind = "127.0.0.1:0"
protocol = "tls-passthrough"

  [[listener.route]]
  host = "a.test"
  pool = "a"

  [[listener.route]]
  host = "b.test"
  pool = "b"

[[pool]]
name = "a"
{}
[[pool]]
name = "b"
{}
"#,
        backend_lines(&[("a", backends[0].1.addr("https"))]),
        backend_lines(&[("b", backends[1].1.addr("https"))]),
    );
    let front = start(dir.path(), &config).await;
    dirs.push(dir);
    Passthrough {
        _dirs: dirs,
        backends,
        front,
    }
}

#[tokio::test]
async fn tls_passthrough_forwards_by_sni_without_decrypting() {
    let p = passthrough().await;
    for (i, name) in ["a", "b"].into_iter().enumerate() {
        let host = format!("{name}.test");
        // The client trusts only that backend's own certificate: terminus holds none.
        let tls = client_tls(&p.backends[i].0.cert_pem, &["http/1.1"]);
        let mut conn = connect(p.front.addr("pt"), &host, tls).await;
        let ans = conn.get(&host, "/").await;
        assert_eq!(ans.status, 200);
        assert_eq!(ans.backend(), name);
    }
}

#[tokio::test]
async fn tls_passthrough_closes_on_garbage_and_keeps_serving() {
    let p = passthrough().await;
    let mut s = TcpStream::connect(p.front.addr("pt")).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
        .await
        .unwrap();
    assert!(read_to_end(&mut s).await.is_empty());
    // A silent client is closed after tls_handshake (1 s).
    let mut s = TcpStream::connect(p.front.addr("pt")).await.unwrap();
    assert!(read_to_end(&mut s).await.is_empty());
    let tls = client_tls(&p.backends[0].0.cert_pem, &["http/1.1"]);
    let mut conn = connect(p.front.addr("pt"), "a.test", tls).await;
    assert_eq!(conn.get("a.test", "/").await.status, 200);
}

/// An http listener "http" with `accept_proxy_protocol = [trusted]` in front of a demo backend.
async fn proxy_in(trusted: &str) -> (tempfile::TempDir, InProcess) {
    let dir = tempfile::tempdir().unwrap();
    let demo = demo_backend("d", Duration::ZERO).await;
    let config = format!(
        r#"
[global]
grace_period = "1s"

[[listener]]
name = "http"
bind = "127.0.0.1:0"
protocol = "http"
accept_proxy_protocol = ["{trusted}"]

  [[listener.route]]
  pool = "app"

[[pool]]
name = "app"
{}
"#,
        backend_lines(&[("d", demo)])
    );
    let t = start(dir.path(), &config).await;
    (dir, t)
}

fn proxy_headers() -> Vec<Vec<u8>> {
    let from: SocketAddr = "203.0.113.9:5000".parse().unwrap();
    let to: SocketAddr = "127.0.0.1:80".parse().unwrap();
    let v1 = ppp::v1::Addresses::from((from, to))
        .to_string()
        .into_bytes();
    let v2 = ppp::v2::Builder::with_addresses(
        ppp::v2::Version::Two | ppp::v2::Command::Proxy,
        ppp::v2::Protocol::Stream,
        (from, to),
    )
    .build()
    .unwrap();
    vec![v1, v2]
}

async fn send_with_header(addr: SocketAddr, header: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(header).await.unwrap();
    s.write_all(b"GET /headers HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    String::from_utf8_lossy(&read_to_end(&mut s).await).into_owned()
}

#[tokio::test]
async fn proxy_protocol_from_a_trusted_source_sets_the_client_address() {
    let (_dir, t) = proxy_in("127.0.0.1/32").await;
    for header in proxy_headers() {
        let text = send_with_header(t.addr("http"), &header).await;
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        assert!(
            text.to_ascii_lowercase()
                .contains("x-forwarded-for: 203.0.113.9"),
            "{text}"
        );
    }
}

#[tokio::test]
async fn proxy_protocol_from_an_untrusted_source_is_refused() {
    let (_dir, t) = proxy_in("10.0.0.0/8").await;
    for header in proxy_headers() {
        assert_eq!(send_with_header(t.addr("http"), &header).await, "");
    }
}
