//! What terminus tells about each request: the `x-terminus-decision` header (route, pool,
//! algorithm, sticky verdict, backends passed over, what was compared, retries, the choice)
//! and the access log (one line per request and per L4 connection, JSON or text).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::time::Duration;

use support::*;
use terminus::config::BackendState;

const TOKEN: &str = "explain-token-0123456789";

/// `one_pool_config` with `explain = true` on the listener (when asked), plus `extra` tables.
fn config(cert: &TestCert, pool_body: &str, explain: bool, extra: &str) -> String {
    let mut text = one_pool_config(cert, pool_body);
    if explain {
        text = text.replacen(
            "bind = \"127.0.0.1:0\"\n",
            "bind = \"127.0.0.1:0\"\nexplain = true\n",
            1,
        );
    }
    format!("{text}\n{extra}\n")
}

fn decision(a: &Answer) -> String {
    a.headers
        .get("x-terminus-decision")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

/// The `key=value` part of a decision named `key`.
fn part<'a>(decision: &'a str, key: &str) -> &'a str {
    decision
        .split("; ")
        .find_map(|p| p.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key}= in {decision}"))
}

#[tokio::test]
async fn decisions_name_the_sticky_verdict_the_skipped_backends_and_the_choice() {
    let backends = demo_backends(&["a", "b", "c"]).await;
    let dir = tempfile::tempdir().unwrap();
    let cert = write_cert(dir.path(), "test", &["localhost"]);
    let body = format!(
        "balancer = \"performance\"\n[pool.sticky]\ncookie = \"tb\"\n{}",
        backend_lines(&backends)
    );
    let t = start(dir.path(), &config(&cert, &body, true, "")).await;
    let tls = client_tls(&cert.cert_pem, &["http/1.1"]);
    let mut conn = connect(t.addr("https"), "localhost", tls.clone()).await;

    let first = conn.get("localhost", "/").await;
    assert_eq!(first.status, 200);
    let d = decision(&first);
    assert_eq!(part(&d, "listener"), "https");
    assert_eq!(part(&d, "route"), "*/");
    assert_eq!(part(&d, "pool"), "app");
    assert_eq!(part(&d, "algorithm"), "performance");
    assert_eq!(part(&d, "sticky"), "miss(no cookie)");
    assert_eq!(part(&d, "skipped"), "none");
    assert!(
        part(&d, "why").starts_with("two random choices: "),
        "the two sampled backends and their scores: {d}"
    );
    assert_eq!(part(&d, "chosen"), first.backend(), "{d}");

    // The cookie brings the client back, and the decision says so.
    let cookie = first.headers["set-cookie"].to_str().unwrap();
    let cookie = cookie.split(';').next().unwrap().to_owned();
    let again = conn
        .get_with("localhost", "/", &[("cookie", &cookie)])
        .await;
    let d = decision(&again);
    assert_eq!(part(&d, "sticky"), format!("hit({})", first.backend()));
    assert_eq!(part(&d, "chosen"), first.backend());

    // Disabled and draining backends are listed with why; a disabled one loses its session.
    let pool = &t.server.pools()[0];
    let chosen = first.backend().to_owned();
    let others: Vec<&str> = ["a", "b", "c"]
        .into_iter()
        .filter(|n| *n != chosen)
        .collect();
    let by_name = |n: &str| pool.backends.iter().find(|b| b.name == n).unwrap().clone();
    by_name(&chosen).set_state(BackendState::Disabled);
    by_name(others[0]).set_state(BackendState::Draining);
    let moved = conn
        .get_with("localhost", "/", &[("cookie", &cookie)])
        .await;
    let d = decision(&moved);
    assert_eq!(
        part(&d, "sticky"),
        format!("moved(cookie names {chosen}, which is disabled)")
    );
    let skipped = part(&d, "skipped");
    assert!(skipped.contains(&format!("{chosen}:disabled")), "{d}");
    assert!(skipped.contains(&format!("{}:draining", others[0])), "{d}");
    assert_eq!(part(&d, "chosen"), others[1]);
    assert_eq!(moved.backend(), others[1]);
}

#[tokio::test]
async fn decisions_list_retries_and_what_least_connections_compared() {
    let good = demo_backend("good", Duration::ZERO).await;
    let dead = closed_port().await;
    let dir = tempfile::tempdir().unwrap();
    let cert = write_cert(dir.path(), "test", &["localhost"]);
    let body = format!(
        "balancer = \"round-robin\"\n{}",
        backend_lines(&[("dead", dead), ("good", good)])
    );
    let t = start(dir.path(), &config(&cert, &body, true, "")).await;
    let tls = client_tls(&cert.cert_pem, &["http/1.1"]);
    let mut conn = connect(t.addr("https"), "localhost", tls).await;
    let mut saw_retry = false;
    for _ in 0..4 {
        let a = conn.get("localhost", "/").await;
        assert_eq!(a.status, 200);
        assert_eq!(a.backend(), "good");
        let d = decision(&a);
        assert_eq!(part(&d, "why"), "next in turn");
        assert_eq!(part(&d, "chosen"), "good");
        if d.contains("; retries=") {
            assert_eq!(part(&d, "retries"), "dead failed (upstream_refused)");
            saw_retry = true;
        }
    }
    assert!(
        saw_retry,
        "round-robin sent a request to the dead backend first"
    );
    drop(t);

    let (a, b) = (
        demo_backend("a", Duration::ZERO).await,
        demo_backend("b", Duration::ZERO).await,
    );
    let dir = tempfile::tempdir().unwrap();
    let cert = write_cert(dir.path(), "test", &["localhost"]);
    let body = format!(
        "balancer = \"least-connections\"\n{}",
        backend_lines(&[("a", a), ("b", b)])
    );
    let t = start(dir.path(), &config(&cert, &body, true, "")).await;
    let tls = client_tls(&cert.cert_pem, &["http/1.1"]);
    let answer = get_once(t.addr("https"), "localhost", tls, "/").await;
    let d = decision(&answer);
    assert_eq!(
        part(&d, "why"),
        "fewest in flight per weight among a=0/w1 b=0/w1"
    );
}

#[tokio::test]
async fn hashing_decisions_name_the_key_its_home_and_why_the_walk_went_on() {
    let backends = demo_backends(&["a", "b", "c"]).await;
    let dir = tempfile::tempdir().unwrap();
    let cert = write_cert(dir.path(), "test", &["localhost"]);
    let body = format!(
        "balancer = \"maglev\"\nhash_key = \"header:x-user\"\n{}",
        backend_lines(&backends)
    );
    let t = start(dir.path(), &config(&cert, &body, true, "")).await;
    let tls = client_tls(&cert.cert_pem, &["http/1.1"]);
    let mut conn = connect(t.addr("https"), "localhost", tls).await;
    let home = conn
        .get_with("localhost", "/", &[("x-user", "alice")])
        .await;
    let d = decision(&home);
    let hash = terminus::upstream::balancer::key_hash(b"alice");
    let why = part(&d, "why");
    assert!(
        why.starts_with(&format!("hash of header:x-user = {hash:016x} | slot ")),
        "{d}"
    );
    assert!(
        why.ends_with(&format!(" of 65537 belongs to {}", home.backend())),
        "{d}"
    );
    // The home backend disabled: the walk goes on, and the decision says why.
    let pool = &t.server.pools()[0];
    let owner = pool
        .backends
        .iter()
        .find(|b| b.name == home.backend())
        .unwrap();
    owner.set_state(BackendState::Disabled);
    let moved = conn
        .get_with("localhost", "/", &[("x-user", "alice")])
        .await;
    assert_ne!(moved.backend(), home.backend());
    let d = decision(&moved);
    assert!(
        part(&d, "why").ends_with(&format!(
            "belongs to {}, which cannot take new requests: walked on to {}",
            home.backend(),
            moved.backend()
        )),
        "{d}"
    );
    assert!(part(&d, "skipped").contains(&format!("{}:disabled", home.backend())));
    let none = conn.get("localhost", "/").await;
    assert!(
        part(&decision(&none), "why").starts_with("request has no header:x-user: picked at random"),
        "{}",
        decision(&none)
    );
}

#[tokio::test]
async fn the_admin_token_asks_for_a_decision_and_never_reaches_the_backend() {
    let backends = demo_backends(&["a"]).await;
    let dir = tempfile::tempdir().unwrap();
    let cert = write_cert(dir.path(), "test", &["localhost"]);
    let admin = format!("[admin]\nbind = \"127.0.0.1:0\"\ntoken = \"{TOKEN}\"\n");
    let body = backend_lines(&backends);
    let t = start(dir.path(), &config(&cert, &body, false, &admin)).await;
    let tls = client_tls(&cert.cert_pem, &["http/1.1", "h2"]);
    for alpn in BOTH_ALPN {
        let tls = client_tls(&cert.cert_pem, alpn);
        let mut conn = connect(t.addr("https"), "localhost", tls).await;
        let plain = conn.get("localhost", "/").await;
        assert!(plain.headers.get("x-terminus-decision").is_none());
        let wrong = conn
            .get_with("localhost", "/", &[("x-terminus-explain", "not-the-token")])
            .await;
        assert!(wrong.headers.get("x-terminus-decision").is_none());
        let right = conn
            .get_with("localhost", "/headers", &[("x-terminus-explain", TOKEN)])
            .await;
        assert_eq!(part(&decision(&right), "chosen"), "a");
        let seen = right.text().to_ascii_lowercase();
        assert!(seen.contains("host"), "the backend lists headers: {seen}");
        assert!(
            !seen.contains("x-terminus-explain") && !seen.contains(TOKEN),
            "the token reached the backend: {seen}"
        );
    }
    drop(tls);
}

/// Reads the access log at `path` until it has `n` lines (bounded).
async fn log_lines(path: &Path, n: usize) -> Vec<serde_json::Value> {
    let mut lines = Vec::new();
    for _ in 0..500 {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        lines = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        if lines.len() >= n {
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{} access log lines, expected {n}", lines.len());
}

#[tokio::test]
async fn the_access_log_has_one_json_line_per_request_with_tls_timing_and_outcome() {
    let backends = demo_backends(&["a", "b"]).await;
    let dir = tempfile::tempdir().unwrap();
    let cert = write_cert(dir.path(), "test", &["localhost"]);
    let log = dir.path().join("access.log");
    let extra = format!(
        "[access_log]\npath = \"{}\"\nformat = \"json\"\n",
        log.display()
    );
    let body = format!("balancer = \"round-robin\"\n{}", backend_lines(&backends));
    let mut text = config(&cert, &body, true, &extra);
    // A second route, so a request can miss every route.
    text = text.replacen(
        "  [[listener.route]]\n  pool = \"app\"\n",
        "  [[listener.route]]\n  host = \"localhost\"\n  pool = \"app\"\n",
        1,
    );
    let t = start(dir.path(), &text).await;
    let tls = client_tls(&cert.cert_pem, &["h2"]);
    let mut conn = connect(t.addr("https"), "localhost", tls.clone()).await;
    let big = conn.get("localhost", "/bytes/100000").await;
    assert_eq!(big.body.len(), 100_000);
    let missing = conn.get("elsewhere.test", "/nothing?q=1").await;
    assert_eq!(missing.status, 404);
    let lines = log_lines(&log, 2).await;
    assert_eq!(lines.len(), 2, "{lines:?}");
    let ok = &lines[0];
    assert_eq!(ok["kind"], "http");
    assert_eq!(ok["listener"], "https");
    assert_eq!(ok["method"], "GET");
    assert_eq!(ok["host"], "localhost");
    assert_eq!(ok["path"], "/bytes/100000");
    assert_eq!(ok["status"], 200);
    assert_eq!(ok["bytes_out"], 100_000);
    assert_eq!(ok["bytes_in"], 0);
    assert_eq!(ok["route"], "localhost/");
    assert_eq!(ok["pool"], "app");
    assert_eq!(ok["backend"], big.backend());
    assert_eq!(ok["retries"], 0);
    assert_eq!(ok["sni"], "localhost");
    assert_eq!(ok["tls_version"], "TLSv1.3");
    assert_eq!(ok["alpn"], "h2");
    assert_eq!(ok["resumed"], false);
    assert!(ok["cipher"].as_str().unwrap().starts_with("TLS13_"));
    assert!(ok["client"].as_str().unwrap().starts_with("127.0.0.1:"));
    for key in [
        "tls_handshake_ms",
        "ttfb_ms",
        "total_ms",
        "upstream_connect_ms",
    ] {
        assert!(ok[key].as_f64().unwrap() > 0.0, "{key} in {ok}");
    }
    assert!(ok.get("termination").is_none(), "{ok}");
    assert_eq!(
        ok["decision"].as_str().unwrap(),
        decision(&big),
        "the log carries the same decision"
    );
    let miss = &lines[1];
    assert_eq!(miss["status"], 404);
    assert_eq!(miss["path"], "/nothing?q=1");
    assert_eq!(miss["termination"], "no_route");
    assert!(miss.get("backend").is_none());

    // A client that leaves in the middle of a body is logged as such.
    let mut conn = connect(t.addr("https"), "localhost", tls).await;
    let req = request(
        &conn,
        "GET",
        "localhost",
        "/bytes/50000000",
        bytes::Bytes::new(),
    );
    let resp = match &mut conn {
        Conn::H2(s) => s.send_request(req).await.unwrap(),
        Conn::H1(s) => s.send_request(req).await.unwrap(),
    };
    assert_eq!(resp.status(), 200);
    drop(resp);
    drop(conn);
    let lines = log_lines(&log, 3).await;
    let cut = &lines[2];
    assert_eq!(cut["path"], "/bytes/50000000");
    assert_eq!(cut["termination"], "client_closed", "{cut}");
    assert!(cut["bytes_out"].as_u64().unwrap() < 50_000_000);
}

#[tokio::test]
async fn the_text_access_log_has_l4_lines_and_keeps_paths_as_sent() {
    let echo = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let echo_addr = echo.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = echo.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    let backends = demo_backends(&["a"]).await;
    let dir = tempfile::tempdir().unwrap();
    let cert = write_cert(dir.path(), "test", &["localhost"]);
    let log = dir.path().join("access.log");
    let text = format!(
        r#"
[[certificate]]
name = "test"
cert = "{cert}"
key = "{key}"

[[listener]]
name = "https"
bind = "127.0.0.1:0"
  [[listener.route]]
  pool = "app"

[[listener]]
name = "tcp"
bind = "127.0.0.1:0"
protocol = "tcp"
  [[listener.route]]
  pool = "echo"

[[pool]]
name = "app"
{app}
[[pool]]
name = "echo"
  [[pool.backend]]
  name = "echo-1"
  address = "{echo_addr}"

[access_log]
path = "{log}"
format = "text"
"#,
        cert = cert.cert_path.display(),
        key = cert.key_path.display(),
        app = backend_lines(&backends),
        log = log.display(),
    );
    let t = start(dir.path(), &text).await;
    // An L4 connection: 11 bytes each way through TLS.
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let tcp = tokio::net::TcpStream::connect(t.addr("tcp")).await.unwrap();
        let connector = tokio_rustls::TlsConnector::from(client_tls(&cert.cert_pem, &["http/1.1"]));
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut tls = connector.connect(name, tcp).await.unwrap();
        tls.write_all(b"hello there").await.unwrap();
        let mut back = [0u8; 11];
        tls.read_exact(&mut back).await.unwrap();
        assert_eq!(&back, b"hello there");
        tls.shutdown().await.unwrap();
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut rest)).await;
    }
    // A request whose path and header try to end the line and forge fields.
    let tls = client_tls(&cert.cert_pem, &["http/1.1"]);
    let mut conn = connect(t.addr("https"), "localhost", tls).await;
    let forged = "/x%0a%22%20status=999?a=%22b%22";
    let a = conn.get("localhost:443", forged).await;
    assert_eq!(a.status, 200);
    let mut lines: Vec<String> = Vec::new();
    for _ in 0..500 {
        lines = std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect();
        if lines.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(lines.len(), 2, "{lines:?}");
    let tcp = lines.iter().find(|l| l.contains(" tcp ")).unwrap();
    assert!(tcp.contains(" in=11 out=11 "), "{tcp}");
    assert!(tcp.contains("pool=echo backend=echo-1"), "{tcp}");
    assert!(tcp.contains("tls=TLSv1.3/"), "{tcp}");
    let http = lines.iter().find(|l| !l.contains(" tcp ")).unwrap();
    assert!(http.contains(" 200 "), "{http}");
    assert_eq!(http.matches(" in=").count(), 1, "{http}");
    assert!(http.contains(forged), "the path as sent: {http}");
    assert!(http.contains("backend=a"), "{http}");
}
