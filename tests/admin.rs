//! The admin listener on real sockets: Prometheus metrics after real traffic and a failed
//! handshake, the JSON views, changes that the next connections follow, bad changes that change
//! nothing, reloads and the token through the real binary, and the dashboard's history.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{json, Value};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The `[admin]` table: loopback, a port the system chooses.
const ADMIN: &str = "\n[admin]\nbind = \"127.0.0.1:0\"\n";
/// The token of the auth test (16 printable characters or more).
const TOKEN: &str = "0123456789abcdef-test";
/// What `GET /metrics` answers as Content-Type.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

fn round_robin(backends: &[(&str, SocketAddr)]) -> String {
    format!("balancer = \"round-robin\"\n{}", backend_lines(backends))
}

/// Terminus in process with the admin listener and one pool (see `one_pool_config`), and the
/// admin listener's address.
async fn admin_fixture(pool_body: &str) -> (Fixture, SocketAddr) {
    let dir = tempfile::tempdir().unwrap();
    let cert = write_cert(dir.path(), "test", &["localhost"]);
    let config = one_pool_config(&cert, pool_body) + ADMIN;
    let terminus = start(dir.path(), &config).await;
    let admin = terminus.server.admin_addr().expect("an admin listener");
    let fx = Fixture {
        dir,
        cert,
        terminus,
    };
    (fx, admin)
}

/// `n` GETs on one new HTTP/1.1 connection to `addr`, each answered 200: how many each backend
/// answered.
async fn spread(addr: SocketAddr, cert: &TestCert, n: usize) -> BTreeMap<String, usize> {
    let tls = client_tls(&cert.cert_pem, &["http/1.1"]);
    let mut conn = connect(addr, "localhost", tls).await;
    let mut seen = BTreeMap::new();
    for _ in 0..n {
        let ans = conn.get("localhost", "/").await;
        assert_eq!(ans.status, 200, "{ans:?}");
        *seen.entry(ans.backend().to_owned()).or_insert(0) += 1;
    }
    seen
}

fn counts(pairs: &[(&str, usize)]) -> BTreeMap<String, usize> {
    pairs.iter().map(|(n, c)| ((*n).to_owned(), *c)).collect()
}

/// The JSON body of `ans`, after checking its status and content type.
fn body_json(ans: &Answer, status: u16) -> Value {
    assert_eq!(ans.status, status, "{}", ans.text());
    assert_eq!(ans.headers["content-type"], "application/json", "{ans:?}");
    serde_json::from_slice(&ans.body).unwrap()
}

async fn get_json(admin: SocketAddr, path: &str) -> Value {
    body_json(&admin_request(admin, "GET", path, None, "").await, 200)
}

/// `view` without the latency averages, which decay with time alone.
fn steady(mut view: Value) -> Value {
    match &mut view {
        Value::Object(map) => {
            map.remove("ewma_ms");
            map.remove("peak_ewma_ms");
            for v in map.values_mut() {
                *v = steady(v.take());
            }
        }
        Value::Array(list) => {
            for v in list.iter_mut() {
                *v = steady(v.take());
            }
        }
        _ => {}
    }
    view
}

/// `GET /api/v1/pools` once (polling, bounded by `WAIT`) no backend has a request in flight.
async fn settled_pools(admin: SocketAddr) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let view = get_json(admin, "/api/v1/pools").await;
        let backends = view["pools"].as_array().unwrap().iter();
        let mut in_flight = backends.flat_map(|p| p["backends"].as_array().unwrap());
        if in_flight.all(|b| b["in_flight"] == 0) {
            return view;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "requests stay in flight: {view:#}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A change that must succeed; its JSON answer.
async fn change(admin: SocketAddr, method: &str, path: &str, body: &str) -> Value {
    body_json(&admin_request(admin, method, path, None, body).await, 200)
}

/// The backend names of pool `app`, in order.
async fn backend_names(admin: SocketAddr) -> Vec<String> {
    let list = get_json(admin, "/api/v1/pools/app/backends").await;
    let list = list.as_array().unwrap();
    list.iter()
        .map(|b| b["name"].as_str().unwrap().to_owned())
        .collect()
}

/// One sample line of the Prometheus text format.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

fn parse_sample(line: &str) -> Sample {
    let bad = format!("not a sample line: `{line}`");
    let name_end = line.find(['{', ' ']).expect(&bad);
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(mut s) = rest.strip_prefix('{') {
        while let Some(after_key) = s.find("=\"") {
            let key = s[..after_key].to_owned();
            let mut value = String::new();
            let mut chars = s[after_key + 2..].char_indices();
            let close = loop {
                match chars.next().expect(&bad) {
                    (i, '"') => break after_key + 2 + i,
                    (_, '\\') => value.push(match chars.next().expect(&bad).1 {
                        'n' => '\n',
                        c => c,
                    }),
                    (_, c) => value.push(c),
                }
            };
            labels.insert(key, value);
            s = &s[close + 1..];
            s = s.strip_prefix(',').unwrap_or(s);
        }
        rest = s.strip_prefix('}').expect(&bad);
    }
    let value = rest.split_whitespace().next().expect(&bad);
    Sample {
        name: line[..name_end].to_owned(),
        labels,
        value: value.parse().expect(&bad),
    }
}

/// One scrape of `/metrics`, parsed.
struct Scrape(Vec<Sample>);

impl Scrape {
    /// The samples of `name` that carry every label of `labels`, in the order written.
    fn all(&self, name: &str, labels: &[(&str, &str)]) -> Vec<&Sample> {
        let has = |s: &Sample| {
            labels
                .iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        };
        self.0.iter().filter(|s| s.name == name && has(s)).collect()
    }

    fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.all(name, labels).iter().map(|s| s.value).sum()
    }

    /// The value of the one sample of `name` with `labels`.
    fn one(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let found = self.all(name, labels);
        assert_eq!(found.len(), 1, "one {name} with {labels:?}: {found:?}");
        found[0].value
    }

    /// Checks that histogram `name` with `labels` has buckets in rising order, cumulative
    /// counts that never fall, and a last `+Inf` bucket equal to `_count`, which is `count`.
    fn histogram(&self, name: &str, labels: &[(&str, &str)], count: f64) {
        let buckets = self.all(&format!("{name}_bucket"), labels);
        assert!(buckets.len() > 2, "{name} {labels:?}: buckets {buckets:?}");
        let bounds: Vec<f64> = buckets
            .iter()
            .map(|b| b.labels["le"].parse().unwrap())
            .collect();
        assert!(bounds.windows(2).all(|w| w[0] < w[1]), "{bounds:?}");
        assert_eq!(buckets.last().unwrap().labels["le"], "+Inf");
        let values: Vec<f64> = buckets.iter().map(|b| b.value).collect();
        assert!(
            values.windows(2).all(|w| w[0] <= w[1]),
            "{name}: {values:?}"
        );
        assert_eq!(*values.last().unwrap(), count, "{name} {labels:?} +Inf");
        assert_eq!(self.one(&format!("{name}_count"), labels), count);
        assert!(self.one(&format!("{name}_sum"), labels) > 0.0);
    }
}

async fn scrape_with(admin: SocketAddr, token: Option<&str>) -> Scrape {
    let ans = admin_request(admin, "GET", "/metrics", token, "").await;
    assert_eq!(ans.status, 200, "{}", ans.text());
    assert_eq!(ans.headers["content-type"], PROMETHEUS_TEXT);
    let text = ans.text();
    let lines = text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'));
    Scrape(lines.map(parse_sample).collect())
}

async fn scrape(admin: SocketAddr) -> Scrape {
    scrape_with(admin, None).await
}

/// Scrapes (bounded by `WAIT`) until `cond` holds.
async fn scrape_until(admin: SocketAddr, what: &str, cond: impl Fn(&Scrape) -> bool) -> Scrape {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let m = scrape(admin).await;
        if cond(&m) {
            return m;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "metrics never showed {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sends a plain HTTP request to a TLS port and reads until terminus closes; what came back.
async fn plain_http_to(addr: SocketAddr) -> Vec<u8> {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    let read = tokio::time::timeout(WAIT, tcp.read_to_end(&mut got)).await;
    // A reset instead of a close is as good: only that the connection ends matters.
    let _ = read.expect("terminus closes a connection that does not speak TLS");
    got
}

#[tokio::test]
async fn metrics_count_requests_per_backend_handshakes_and_failures() {
    let backends = demo_backends(&["a", "b"]).await;
    let (fx, admin) = admin_fixture(&round_robin(&backends)).await;
    const N: usize = 10;
    let https = fx.terminus.addr("https");
    assert_eq!(
        spread(https, &fx.cert, N).await,
        counts(&[("a", 5), ("b", 5)])
    );
    // A request stays in flight until its body is dropped, just after the client read it.
    let m = scrape_until(admin, "no request in flight", |m| {
        m.sum("terminus_backend_in_flight", &[]) == 0.0
    })
    .await;
    let n = N as f64;
    assert_eq!(m.sum("terminus_requests_total", &[]), n);
    assert_eq!(m.sum("terminus_requests_total", &[("code", "2xx")]), n);
    for b in ["a", "b"] {
        let of = [("pool", "app"), ("backend", b)];
        let req = [("listener", "https"), ("pool", "app"), ("backend", b)];
        assert_eq!(m.sum("terminus_requests_total", &req), 5.0, "{b}");
        let ok = [req[0], req[1], req[2], ("code", "2xx")];
        assert_eq!(m.one("terminus_requests_total", &ok), 5.0, "{b}");
        for (code, want) in [("2xx", 5.0), ("4xx", 0.0), ("5xx", 0.0), ("failed", 0.0)] {
            let labels = [of[0], of[1], ("code", code)];
            assert_eq!(m.one("terminus_backend_responses_total", &labels), want);
        }
        m.histogram("terminus_upstream_duration_seconds", &of, 5.0);
        assert_eq!(m.one("terminus_backend_up", &of), 1.0);
        assert_eq!(m.one("terminus_backend_usable", &of), 1.0);
        assert_eq!(m.one("terminus_backend_weight", &of), 1.0);
        assert_eq!(m.one("terminus_backend_in_flight", &of), 0.0);
        let state = m.all("terminus_backend_state", &of);
        assert_eq!(state.len(), 1, "{state:?}");
        assert_eq!(
            (state[0].labels["state"].as_str(), state[0].value),
            ("enabled", 1.0)
        );
    }
    let listener = [("listener", "https")];
    m.histogram("terminus_request_duration_seconds", &listener, n);
    assert_eq!(m.one("terminus_connections_total", &listener), 1.0);
    let handshakes = m.all("terminus_tls_handshakes_total", &listener);
    assert_eq!(
        handshakes.len(),
        1,
        "one full TLS 1.3 handshake: {handshakes:?}"
    );
    let h = &handshakes[0];
    assert_eq!((h.labels["kind"].as_str(), h.value), ("full", 1.0));
    assert_eq!(h.labels["version"], "TLSv1.3");
    assert!(h.labels["cipher"].starts_with("TLS13_"), "{h:?}");
    let version = [("version", env!("CARGO_PKG_VERSION"))];
    assert_eq!(m.one("terminus_config_generation", &version), 1.0);
    let days = m.one(
        "terminus_certificate_expiry_days",
        &[("certificate", "test")],
    );
    // Test certificates are made like `self_signed` ones: valid for 89 days.
    assert!(
        (88.0..=89.0).contains(&days),
        "a fresh certificate: {days} days left"
    );
    assert_eq!(
        m.one("terminus_config_reloads_total", &[("result", "ok")]),
        0.0
    );
    assert_eq!(
        m.one("terminus_config_reloads_total", &[("result", "failed")]),
        0.0
    );
    assert!(m
        .all("terminus_tls_handshake_failures_total", &[])
        .is_empty());

    // Plain HTTP on the TLS port is a failed handshake of reason "protocol", and nothing else.
    let answer = plain_http_to(https).await;
    assert!(!answer.starts_with(b"HTTP/"), "{answer:?}");
    let protocol = [("listener", "https"), ("reason", "protocol")];
    let m = scrape_until(admin, "a protocol failure", |m| {
        m.sum("terminus_tls_handshake_failures_total", &protocol) >= 1.0
    })
    .await;
    assert_eq!(
        m.one("terminus_tls_handshake_failures_total", &protocol),
        1.0
    );
    assert_eq!(m.all("terminus_tls_handshake_failures_total", &[]).len(), 1);
    assert_eq!(m.one("terminus_connections_total", &listener), 2.0);
    assert_eq!(m.sum("terminus_tls_handshakes_total", &[]), 1.0);
    assert_eq!(m.sum("terminus_requests_total", &[]), n);
}

#[tokio::test]
async fn api_views_show_pools_and_backends_and_404_unknown_ones() {
    let backends = demo_backends(&["a", "b"]).await;
    let (fx, admin) = admin_fixture(&round_robin(&backends)).await;
    let https = fx.terminus.addr("https");
    assert_eq!(
        spread(https, &fx.cert, 2).await,
        counts(&[("a", 1), ("b", 1)])
    );

    let view = settled_pools(admin).await;
    assert_eq!(view["generation"], 1);
    assert_eq!(view["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(view["pools"].as_array().unwrap().len(), 1, "{view:#}");
    let app = &view["pools"][0];
    assert_eq!(app["name"], "app");
    assert_eq!(app["balancer"], "round-robin");
    assert_eq!(app["protocol"], "http1");
    assert_eq!(app["sticky"], false);
    assert_eq!(app["backends"].as_array().unwrap().len(), 2, "{app:#}");
    for (i, (name, addr)) in backends.iter().enumerate() {
        let b = &app["backends"][i];
        assert_eq!(b["name"], *name);
        assert_eq!(b["address"], addr.to_string());
        assert_eq!(b["weight"], 1);
        assert_eq!(b["backup"], false);
        assert_eq!(b["state"], "enabled");
        assert_eq!(b["health"], "healthy");
        assert_eq!(b["ejected"], false);
        assert_eq!(b["usable"], true);
        assert_eq!(b["in_flight"], 0);
        assert_eq!(b["requests"], 1);
        let responses = json!({"1xx": 0, "2xx": 1, "3xx": 0, "4xx": 0, "5xx": 0, "failed": 0});
        assert_eq!(b["responses"], responses, "{name}");
        assert_eq!(b["health_checks"], json!([]));
    }
    // The narrower views show the same objects.
    let app = steady(app.clone());
    let narrower = get_json(admin, "/api/v1/pools/app").await;
    assert_eq!(steady(narrower), app);
    let list = get_json(admin, "/api/v1/pools/app/backends").await;
    assert_eq!(steady(list), app["backends"]);
    let b = get_json(admin, "/api/v1/pools/app/backends/b").await;
    assert_eq!(steady(b), app["backends"][1]);

    let status = get_json(admin, "/api/v1/status").await;
    assert_eq!(status["generation"], 1);
    assert_eq!(status["reloads_ok"], 0);
    assert_eq!(status["reloads_failed"], 0);
    let listeners = json!([{"name": "https", "address": https.to_string()}]);
    assert_eq!(status["listeners"], listeners);

    for (path, message) in [
        ("/api/v1/pools/nope", "no pool `nope`"),
        ("/api/v1/pools/nope/backends", "no pool `nope`"),
        ("/api/v1/pools/nope/backends/a", "no pool `nope`"),
        (
            "/api/v1/pools/app/backends/zz",
            "pool `app` has no backend `zz`",
        ),
        ("/api/v1/pool", "no such API path"),
    ] {
        let ans = admin_request(admin, "GET", path, None, "").await;
        assert_eq!(body_json(&ans, 404), json!({ "error": message }), "{path}");
    }
    let ans = admin_request(admin, "GET", "/elsewhere", None, "").await;
    assert_eq!((ans.status, ans.text().as_str()), (404, "404 Not Found\n"));
    let ans = admin_request(admin, "POST", "/metrics", None, "").await;
    assert_eq!(ans.status, 405, "{ans:?}");
}

#[tokio::test]
async fn state_changes_additions_and_removals_apply_to_the_next_connections() {
    let backends = demo_backends(&["a", "b"]).await;
    let c = demo_backend("c", Duration::ZERO).await;
    let (fx, admin) = admin_fixture(&round_robin(&backends)).await;
    let https = fx.terminus.addr("https");
    assert_eq!(
        spread(https, &fx.cert, 4).await,
        counts(&[("a", 2), ("b", 2)])
    );

    let a = "/api/v1/pools/app/backends/a";
    let done = change(admin, "PATCH", a, r#"{"state":"disabled"}"#).await;
    assert_eq!(done["generation"], 2, "{done}");
    assert_eq!(done["applied"], "pool app backend a: state=disabled");
    assert_eq!(spread(https, &fx.cert, 10).await, counts(&[("b", 10)]));
    let view = get_json(admin, a).await;
    assert_eq!(
        (view["state"].as_str(), view["usable"].as_bool()),
        (Some("disabled"), Some(false))
    );
    let m = scrape(admin).await;
    let of_a = [("pool", "app"), ("backend", "a")];
    assert_eq!(m.one("terminus_backend_usable", &of_a), 0.0);
    let state = [of_a[0], of_a[1], ("state", "disabled")];
    assert_eq!(m.one("terminus_backend_state", &state), 1.0);
    assert_eq!(m.one("terminus_config_generation", &[]), 2.0);

    let new = json!({"name": "c", "address": c.to_string()}).to_string();
    let done = change(admin, "POST", "/api/v1/pools/app/backends", &new).await;
    assert_eq!(done["generation"], 3, "{done}");
    assert_eq!(done["applied"], format!("pool app: add backend c at {c}"));
    // A rotation over a (disabled), b, c: a's turns go to b and c alike.
    assert_eq!(
        spread(https, &fx.cert, 6).await,
        counts(&[("b", 3), ("c", 3)])
    );
    let view = get_json(admin, "/api/v1/pools/app/backends/c").await;
    assert_eq!(view["address"], c.to_string());
    assert_eq!(
        (view["weight"].clone(), view["state"].clone()),
        (json!(1), json!("enabled"))
    );
    assert_eq!(view["requests"], 3);
    assert_eq!(backend_names(admin).await, ["a", "b", "c"]);

    let done = change(admin, "DELETE", "/api/v1/pools/app/backends/c", "").await;
    assert_eq!(done["generation"], 4, "{done}");
    assert_eq!(spread(https, &fx.cert, 10).await, counts(&[("b", 10)]));
    assert_eq!(backend_names(admin).await, ["a", "b"]);
    let gone = admin_request(admin, "GET", "/api/v1/pools/app/backends/c", None, "").await;
    assert_eq!(gone.status, 404, "{}", gone.text());
    assert!(scrape(admin)
        .await
        .all("terminus_backend_up", &[("backend", "c")])
        .is_empty());

    let done = change(admin, "PATCH", a, r#"{"state":"enabled"}"#).await;
    assert_eq!(done["generation"], 5, "{done}");
    assert_eq!(
        spread(https, &fx.cert, 10).await,
        counts(&[("a", 5), ("b", 5)])
    );
    assert_eq!(get_json(admin, a).await["state"], "enabled");
    assert_eq!(get_json(admin, "/api/v1/pools").await["generation"], 5);
}

#[tokio::test]
async fn a_weight_change_changes_the_weighted_split() {
    let backends = demo_backends(&["a", "b"]).await;
    let body = format!(
        "balancer = \"weighted-round-robin\"\n{}",
        backend_lines(&backends)
    );
    let (fx, admin) = admin_fixture(&body).await;
    let https = fx.terminus.addr("https");
    assert_eq!(
        spread(https, &fx.cert, 40).await,
        counts(&[("a", 20), ("b", 20)])
    );

    let a = "/api/v1/pools/app/backends/a";
    let done = change(admin, "PATCH", a, r#"{"weight":3}"#).await;
    assert_eq!(done["generation"], 2, "{done}");
    assert_eq!(done["applied"], "pool app backend a: weight=3");
    assert_eq!(
        spread(https, &fx.cert, 40).await,
        counts(&[("a", 30), ("b", 10)])
    );
    let view = get_json(admin, a).await;
    assert_eq!(view["weight"], 3);
    // The backend was kept across the change: its counts go on.
    assert_eq!(view["requests"], 50);
    let m = scrape(admin).await;
    let weight = |b| {
        m.one(
            "terminus_backend_weight",
            &[("pool", "app"), ("backend", b)],
        )
    };
    assert_eq!((weight("a"), weight("b")), (3.0, 1.0));
}

/// A change request that must be refused with `status` and an error naming `wanted`.
struct Refused {
    method: &'static str,
    path: &'static str,
    body: String,
    status: u16,
    wanted: &'static str,
}

fn refused(method: &'static str, path: &'static str, body: &str, wanted: &'static str) -> Refused {
    Refused {
        method,
        path,
        body: body.to_owned(),
        status: 400,
        wanted,
    }
}

fn bad_changes() -> Vec<Refused> {
    const A: &str = "/api/v1/pools/app/backends/a";
    const ADD: &str = "/api/v1/pools/app/backends";
    let add = |v: Value| v.to_string();
    vec![
        refused(
            "PATCH",
            A,
            r#"{"weight":5000}"#,
            "weight = 5000 is out of range; expected an integer from 0 to 1000",
        ),
        refused(
            "PATCH",
            A,
            r#"{"weight":-1}"#,
            "weight = -1 is out of range",
        ),
        refused(
            "PATCH",
            A,
            r#"{"state":"sleeping"}"#,
            "unknown state `sleeping`; expected \"enabled\", \"draining\" or \"disabled\"",
        ),
        refused(
            "PATCH",
            A,
            r#"{"weight":2,"state":"sleeping"}"#,
            "unknown state `sleeping`",
        ),
        refused("PATCH", A, r#"{"colour":"red"}"#, "unknown field `colour`"),
        refused("PATCH", A, r#"{"weight":"#, "invalid JSON body"),
        refused(
            "PATCH",
            A,
            "{}",
            "nothing to change; expected `weight` and/or `state`",
        ),
        Refused {
            status: 404,
            ..refused(
                "PATCH",
                "/api/v1/pools/app/backends/zz",
                r#"{"weight":2}"#,
                "pool `app` has no backend `zz`",
            )
        },
        Refused {
            status: 404,
            ..refused(
                "PATCH",
                "/api/v1/pools/nope/backends/a",
                r#"{"weight":2}"#,
                "no pool `nope`",
            )
        },
        refused(
            "POST",
            ADD,
            &add(json!({"name": "c", "address": "not-an-address"})),
            "`not-an-address` is not an IP address and port",
        ),
        refused(
            "POST",
            ADD,
            &add(json!({"name": "c", "address": "127.0.0.1:0"})),
            "port 0 cannot be connected to",
        ),
        refused(
            "POST",
            ADD,
            &add(json!({"name": "a", "address": "127.0.0.1:9"})),
            "pool `app` already has a backend named `a`",
        ),
        refused(
            "POST",
            ADD,
            &add(json!({"name": "no good", "address": "127.0.0.1:9"})),
            "`no good` is not a valid backend name",
        ),
        refused(
            "POST",
            ADD,
            &add(json!({"name": "c", "address": "127.0.0.1:9", "weight": 1001})),
            "weight = 1001 is out of range",
        ),
        refused(
            "POST",
            ADD,
            &add(json!({"name": "c", "address": "127.0.0.1:9", "state": "off"})),
            "unknown state `off`",
        ),
        refused(
            "POST",
            ADD,
            &add(json!({"address": "127.0.0.1:9"})),
            "missing field `name`",
        ),
        Refused {
            status: 404,
            ..refused(
                "DELETE",
                "/api/v1/pools/app/backends/zz",
                "",
                "pool `app` has no backend `zz`",
            )
        },
        Refused {
            status: 404,
            ..refused("POST", A, "{}", "no such change")
        },
    ]
}

/// Sends `r` and checks its refusal and that the pools look as `before`.
async fn assert_refused(admin: SocketAddr, r: &Refused, before: &Value) {
    let what = format!("{} {} {}", r.method, r.path, r.body);
    let ans = admin_request(admin, r.method, r.path, None, &r.body).await;
    let answer = body_json(&ans, r.status);
    let error = answer["error"]
        .as_str()
        .unwrap_or_else(|| panic!("{what}: {answer}"));
    assert!(
        error.contains(r.wanted),
        "{what}: `{error}` should say `{}`",
        r.wanted
    );
    assert_eq!(answer.as_object().unwrap().len(), 1, "{what}: {answer}");
    assert_eq!(
        steady(get_json(admin, "/api/v1/pools").await),
        steady(before.clone()),
        "{what} changed the pools"
    );
}

#[tokio::test]
async fn bad_changes_are_refused_with_the_reason_and_change_nothing() {
    let backends = demo_backends(&["a", "b"]).await;
    let (fx, admin) = admin_fixture(&round_robin(&backends)).await;
    let before = get_json(admin, "/api/v1/pools").await;
    assert_eq!(before["generation"], 1);
    for r in bad_changes() {
        assert_refused(admin, &r, &before).await;
    }
    let https = fx.terminus.addr("https");
    assert_eq!(
        spread(https, &fx.cert, 4).await,
        counts(&[("a", 2), ("b", 2)])
    );

    // The last backend of a pool cannot go.
    let done = change(admin, "DELETE", "/api/v1/pools/app/backends/b", "").await;
    assert_eq!(done["generation"], 2, "{done}");
    let before = get_json(admin, "/api/v1/pools").await;
    let last = refused(
        "DELETE",
        "/api/v1/pools/app/backends/a",
        "",
        "`a` is the last backend of pool `app`; a pool needs at least one",
    );
    assert_refused(admin, &last, &before).await;
    assert_eq!(before["generation"], 2);
    assert_eq!(spread(https, &fx.cert, 3).await, counts(&[("a", 3)]));

    // Nor the last primary: backups alone would never take requests by design.
    let add = r#"{"name":"spare","address":"127.0.0.1:9","backup":true}"#;
    let done = change(admin, "POST", "/api/v1/pools/app/backends", add).await;
    assert_eq!(done["generation"], 3, "{done}");
    let before = get_json(admin, "/api/v1/pools").await;
    let last_primary = refused(
        "DELETE",
        "/api/v1/pools/app/backends/a",
        "",
        "`a` is the last primary backend of pool `app`",
    );
    assert_refused(admin, &last_primary, &before).await;
}

/// 1-based line and column (in bytes: the configs here are ASCII) of `needle` in `text`.
fn position(text: &str, needle: &str) -> (usize, usize) {
    let at = text
        .find(needle)
        .unwrap_or_else(|| panic!("no `{needle}` in:\n{text}"));
    let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    (
        text[..at].lines().count() + usize::from(line_start == at),
        at - line_start + 1,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_through_the_api_reads_the_file_and_keeps_the_last_good_config() {
    let backends = demo_backends(&["a", "b", "c"]).await;
    let dir = tempfile::tempdir().unwrap();
    let cert = write_cert(dir.path(), "test", &["localhost"]);
    let path = dir.path().join("terminus.toml");
    let config = |n: usize| one_pool_config(&cert, &round_robin(&backends[..n])) + ADMIN;
    std::fs::write(&path, config(2)).unwrap();
    let file = path.to_str().unwrap();
    let t = Process::spawn(&["--config", file, "--log", "warn"], 2);
    let (https, admin) = (t.addrs["https"], t.addrs["admin"]);
    assert_eq!(backend_names(admin).await, ["a", "b"]);
    assert_eq!(get_json(admin, "/api/v1/status").await["config_file"], file);

    std::fs::write(&path, config(3)).unwrap();
    let done = change(admin, "POST", "/api/v1/reload", "").await;
    let summary = json!({"reloaded": file, "generation": 2, "listeners_kept": 1,
        "listeners_bound": 0, "listeners_stopped": 0});
    assert_eq!(done, summary);
    assert_eq!(backend_names(admin).await, ["a", "b", "c"]);
    let all = counts(&[("a", 1), ("b", 1), ("c", 1)]);
    assert_eq!(spread(https, &cert, 3).await, all);

    // An invalid file is refused with its position and changes nothing.
    let bad = config(3).replacen("balancer = \"round-robin\"", "balancer = \"fastest\"", 1);
    std::fs::write(&path, &bad).unwrap();
    let (line, col) = position(&bad, "\"fastest\"");
    let ans = admin_request(admin, "POST", "/api/v1/reload", None, "").await;
    let error = body_json(&ans, 400)["error"].as_str().unwrap().to_owned();
    let at = format!("{file}:{line}:{col}: ");
    assert!(error.starts_with(&at), "`{error}` should start with `{at}`");
    assert!(error.contains("fastest"), "{error}");
    let status = get_json(admin, "/api/v1/status").await;
    assert_eq!(status["generation"], 2);
    assert_eq!(status["reloads_ok"], 1);
    assert_eq!(status["reloads_failed"], 1);
    let m = scrape(admin).await;
    assert_eq!(
        m.one("terminus_config_reloads_total", &[("result", "failed")]),
        1.0
    );
    assert_eq!(
        m.one("terminus_config_reloads_total", &[("result", "ok")]),
        1.0
    );
    assert_eq!(m.one("terminus_config_generation", &[]), 2.0);
    assert_eq!(backend_names(admin).await, ["a", "b", "c"]);
    assert_eq!(spread(https, &cert, 3).await, all);
}

/// What `admin_request` answers with `token`, checked to be a 401 asking for a bearer token.
async fn assert_unauthorized(admin: SocketAddr, method: &str, path: &str, token: Option<&str>) {
    let ans = admin_request(admin, method, path, token, "").await;
    let what = format!("{method} {path} with {token:?}");
    assert_eq!(ans.status, 401, "{what}: {ans:?}");
    assert_eq!(
        ans.headers["www-authenticate"], "Bearer realm=\"terminus\"",
        "{what}"
    );
    assert_eq!(
        ans.text(),
        "401 Unauthorized: bearer token required\n",
        "{what}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_guards_the_admin_listener_and_the_query_token_opens_only_the_page() {
    let backends = demo_backends(&["a"]).await;
    let dir = tempfile::tempdir().unwrap();
    let cert = write_cert(dir.path(), "test", &["localhost"]);
    let path = dir.path().join("terminus.toml");
    let admin_table = format!("\n[admin]\nbind = \"127.0.0.1:0\"\ntoken = \"{TOKEN}\"\n");
    std::fs::write(
        &path,
        one_pool_config(&cert, &round_robin(&backends)) + &admin_table,
    )
    .unwrap();
    let mut t = Process::spawn(&["--config", path.to_str().unwrap(), "--log", "warn"], 2);
    let admin = t.addrs["admin"];

    let wrong = "0123456789abcdef-nope";
    let mut refusals = 0;
    for path in [
        "/",
        "/metrics",
        "/api/v1/pools",
        "/api/v1/status",
        "/api/v1/history",
    ] {
        for token in [None, Some(wrong), Some("")] {
            assert_unauthorized(admin, "GET", path, token).await;
            refusals += 1;
        }
    }
    let query = format!("?token={TOKEN}");
    for path in ["/api/v1/pools", "/metrics", "/?token=nope"] {
        let path = if path.contains('?') {
            path.to_owned()
        } else {
            format!("{path}{query}")
        };
        assert_unauthorized(admin, "GET", &path, None).await;
        refusals += 1;
    }
    assert_unauthorized(admin, "PATCH", "/api/v1/pools/app/backends/a", None).await;
    assert_unauthorized(admin, "POST", "/api/v1/reload", Some(wrong)).await;
    refusals += 2;

    let m = scrape_with(admin, Some(TOKEN)).await;
    assert_eq!(m.one("terminus_config_generation", &[]), 1.0);
    let pools = admin_request(admin, "GET", "/api/v1/pools", Some(TOKEN), "").await;
    let pools = body_json(&pools, 200);
    assert_eq!(pools["generation"], 1, "the refused PATCH changed nothing");
    assert_eq!(pools["pools"][0]["backends"][0]["state"], "enabled");
    let page = admin_request(admin, "GET", &format!("/{query}"), None, "").await;
    assert_eq!(page.status, 200, "{}", page.text());
    assert_eq!(page.headers["content-type"], "text/html; charset=utf-8");
    assert_eq!(page.body, include_str!("../src/admin/dashboard.html"));
    let page = admin_request(admin, "GET", "/", Some(TOKEN), "").await;
    assert_eq!(page.status, 200);

    t.signal("TERM");
    assert_eq!(t.wait_exit(), Some(0));
    let mut log = String::new();
    use std::io::Read;
    t.child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    let warned = log
        .lines()
        .filter(|l| l.contains("admin: 401, no valid bearer token"))
        .count();
    assert_eq!(warned, refusals, "one warn line per refusal:\n{log}");
    assert!(
        log.lines()
            .filter(|l| l.contains("401"))
            .all(|l| l.contains("WARN")),
        "{log}"
    );
    assert!(
        !log.contains(TOKEN) && !log.contains(wrong),
        "tokens must not be logged:\n{log}"
    );
}

#[tokio::test]
async fn a_reload_may_change_the_token_but_never_remove_it() {
    let backends = demo_backends(&["a"]).await;
    let dir = tempfile::tempdir().unwrap();
    let cert = write_cert(dir.path(), "test", &["localhost"]);
    let path = dir.path().join("terminus.toml");
    let base = one_pool_config(&cert, &round_robin(&backends));
    let with_token =
        |t: &str| format!("{base}\n[admin]\nbind = \"127.0.0.1:0\"\ntoken = \"{t}\"\n");
    std::fs::write(&path, with_token(TOKEN)).unwrap();
    let t = Process::spawn(&["--config", path.to_str().unwrap(), "--log", "warn"], 2);
    let admin = t.addrs["admin"];
    let reload = |token: &'static str| async move {
        let r = admin_request(admin, "POST", "/api/v1/reload", Some(token), "").await;
        assert_eq!(r.status, 200, "{}", r.text());
    };
    // A new token replaces the old one.
    let newer = "fedcba9876543210-newer";
    std::fs::write(&path, with_token(newer)).unwrap();
    reload(TOKEN).await;
    assert_unauthorized(admin, "GET", "/api/v1/pools", Some(TOKEN)).await;
    let ok = admin_request(admin, "GET", "/api/v1/pools", Some(newer), "").await;
    assert_eq!(ok.status, 200);
    // A config without [admin] (or without a token) leaves the last token in force.
    std::fs::write(&path, &base).unwrap();
    reload(newer).await;
    assert_unauthorized(admin, "GET", "/api/v1/pools", None).await;
    std::fs::write(&path, format!("{base}\n[admin]\nbind = \"127.0.0.1:0\"\n")).unwrap();
    reload(newer).await;
    assert_unauthorized(admin, "GET", "/metrics", None).await;
    let ok = admin_request(admin, "GET", "/metrics", Some(newer), "").await;
    assert_eq!(ok.status, 200);
}

#[tokio::test]
async fn check_refuses_an_admin_bind_beyond_loopback_without_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let cert = write_cert(dir.path(), "test", &["localhost"]);
    let path = dir.path().join("terminus.toml");
    let file = path.to_str().unwrap();
    let backend: SocketAddr = "127.0.0.1:9001".parse().unwrap();
    let base = one_pool_config(&cert, &round_robin(&[("a", backend)]));
    let open = base + "\n[admin]\nbind = \"0.0.0.0:9090\"\n";
    std::fs::write(&path, &open).unwrap();
    let out = run_tool(binary(), &["check", "--config", file], None).await;
    assert_eq!(out.code, Some(1), "{}", out.all());
    let (line, col) = position(&open, "\"0.0.0.0:9090\"");
    let error = format!(
        "{file}:{line}:{col}: the admin listener binds 0.0.0.0:9090, which is not loopback, without a token; \
         expected `token` or `token_file` in [admin], or a loopback bind such as 127.0.0.1:9090"
    );
    let errors: Vec<&str> = out.stderr.lines().filter(|l| l.starts_with(file)).collect();
    assert_eq!(errors, [error.as_str()], "{}", out.all());

    // With a token the same bind is accepted.
    let guarded = open + &format!("token = \"{TOKEN}\"\n");
    std::fs::write(&path, &guarded).unwrap();
    let out = run_tool(binary(), &["check", "--config", file], None).await;
    assert_eq!(out.code, Some(0), "{}", out.all());
}

/// Polls the history (bounded by `WAIT`) while sending GETs on `conn`, until it holds two
/// samples or more and one in which `busy` served requests.
async fn history_with_traffic(admin: SocketAddr, conn: &mut Conn, busy: &str) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        for _ in 0..5 {
            let ans = conn.get("localhost", "/").await;
            assert_eq!((ans.status, ans.backend()), (200, busy));
        }
        let h = get_json(admin, "/api/v1/history").await;
        let samples = h["times_ms"].as_array().map_or(0, Vec::len);
        let series = h["backends"].as_array().unwrap();
        let of_busy = series.iter().find(|s| s["backend"] == busy);
        let served = of_busy.is_some_and(|s| {
            let rps = s["rps"].as_array().unwrap();
            rps.iter().any(|r| r.as_f64().is_some_and(|r| r > 0.0))
        });
        if samples >= 2 && served {
            return h;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no busy sample in:\n{h:#}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn history_samples_every_backend_each_second() {
    let backends = demo_backends(&["a", "b"]).await;
    let body = round_robin(&backends) + "  disabled = true\n";
    let (fx, admin) = admin_fixture(&body).await;
    let mut conn = fx.conn(&["http/1.1"]).await;
    let h = history_with_traffic(admin, &mut conn, "a").await;

    assert_eq!(h["interval_ms"], 1000);
    let times: Vec<u64> = h["times_ms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_u64().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] < w[1]), "{times:?}");
    let series = h["backends"].as_array().unwrap();
    let mut names: Vec<&str> = series
        .iter()
        .map(|s| s["backend"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["a", "b"]);
    for s in series {
        assert_eq!(s["pool"], "app");
        for key in ["rps", "p50_ms", "p99_ms", "healthy", "weight", "in_flight"] {
            let len = s[key].as_array().map(Vec::len);
            assert_eq!(len, Some(times.len()), "{} {key}: {s}", s["backend"]);
        }
        assert!(
            s["weight"].as_array().unwrap().iter().all(|w| *w == 1),
            "{s}"
        );
        assert!(
            s["healthy"]
                .as_array()
                .unwrap()
                .iter()
                .all(|w| w.as_bool() == Some(true)),
            "{s}"
        );
    }
    let of = |name: &str| series.iter().find(|s| s["backend"] == name).unwrap();
    let (a, b) = (of("a"), of("b"));
    let busy = a["rps"]
        .as_array()
        .unwrap()
        .iter()
        .position(|r| r.as_f64().is_some_and(|r| r > 0.0));
    let busy = busy.expect("a sample in which a served requests");
    let p50 = a["p50_ms"][busy]
        .as_f64()
        .expect("a latency where a served");
    assert!(
        p50 > 0.0 && p50 <= a["p99_ms"][busy].as_f64().unwrap(),
        "{a}"
    );
    let sent: f64 = a["rps"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r.as_f64())
        .sum();
    let served = get_json(admin, "/api/v1/pools/app/backends/a").await["requests"]
        .as_f64()
        .unwrap();
    assert!(
        sent <= served,
        "rates {sent} over 1 s samples exceed the {served} requests served"
    );
    // A backend's first sample has no rate (nothing to compare with); the others are 0.
    let b_rps = b["rps"].as_array().unwrap();
    assert!(b_rps[0].is_null(), "{b}");
    assert!(b_rps[1..].iter().all(|r| r.as_f64() == Some(0.0)), "{b}");
    assert!(
        b["p50_ms"].as_array().unwrap().iter().all(Value::is_null),
        "{b}"
    );

    let listeners = h["listeners"].as_array().unwrap();
    assert_eq!(listeners.len(), 1, "{listeners:?}");
    let l = &listeners[0];
    assert_eq!(
        (l["listener"].as_str(), l["full_total"].as_u64()),
        (Some("https"), Some(1))
    );
    assert_eq!(l["resumed_total"], 0);
    assert_eq!(l["full_per_s"].as_array().map(Vec::len), Some(times.len()));
}

#[tokio::test]
async fn every_exported_metric_is_documented() {
    let backends = demo_backends(&["a", "b"]).await;
    let body = format!(
        "{}\n[pool.sticky]\ncookie = \"tb\"\n",
        round_robin(&backends)
    );
    let dir = tempfile::tempdir().unwrap();
    let cert = write_cert(dir.path(), "test", &["localhost"]);
    let log = dir.path().join("access.log");
    let config = format!(
        "{}{ADMIN}\n[access_log]\npath = \"{}\"\n[limits]\nmax_connections_per_client = 2\n",
        one_pool_config(&cert, &body),
        log.display()
    );
    let t = start(dir.path(), &config).await;
    let admin = t.server.admin_addr().unwrap();
    spread(t.addr("https"), &cert, 2).await;
    // A failed handshake, so that family has a sample too.
    {
        use tokio::io::AsyncWriteExt;
        let mut s = tokio::net::TcpStream::connect(t.addr("https"))
            .await
            .unwrap();
        s.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        let mut buf = [0u8; 64];
        let _ = tokio::time::timeout(WAIT, tokio::io::AsyncReadExt::read(&mut s, &mut buf)).await;
    }
    // Two connections held open from 127.0.0.1: a third is refused (and counted).
    let held: Vec<tokio::net::TcpStream> = {
        let mut v = Vec::new();
        for _ in 0..2 {
            v.push(
                tokio::net::TcpStream::connect(t.addr("https"))
                    .await
                    .unwrap(),
            );
        }
        v
    };
    let refused = terminus::metrics::FailureLabels {
        listener: "https".into(),
        reason: "per_client_limit",
    };
    let metrics = t.server.metrics().clone();
    for _ in 0..100 {
        let _third = tokio::net::TcpStream::connect(t.addr("https"))
            .await
            .unwrap();
        if metrics.connections_refused.get_or_create(&refused).get() > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let m = scrape_with(admin, None).await;
    drop(held);
    let docs = include_str!("../docs/operations.md");
    let mut names: Vec<&str> =
        m.0.iter()
            .map(|s| s.name.as_str())
            .map(|n| {
                ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|suffix| n.strip_suffix(suffix))
                    .unwrap_or(n)
            })
            .collect();
    names.sort_unstable();
    names.dedup();
    assert!(names.len() >= 24, "every family has a sample: {names:?}");
    let undocumented: Vec<&&str> = names
        .iter()
        .filter(|n| !docs.contains(&format!("`{n}`")))
        .collect();
    assert!(
        undocumented.is_empty(),
        "metrics missing from docs/operations.md: {undocumented:?}"
    );
}
