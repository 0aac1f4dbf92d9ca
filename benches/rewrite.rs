//! Micro-benchmarks of header rewriting: the client's request head made the backends'
//! (`rewrite::prepare`, once per request), each attempt's copy aimed at its backend
//! (`rewrite::for_backend`), over HTTP/1.1 and HTTP/2 pools, and the backend's response head
//! cleaned for the client (`headers::remove_hop_by_hop`).
//!
//! ```sh
//! cargo bench --bench rewrite -- --warm-up-time 1 --measurement-time 2
//! ```
//!
//! Each time is the call alone: making its input (a clone of the head) and dropping its output
//! happen outside the timing. See bench/README.md.

use std::convert::Infallible;
use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion};
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::request::Parts;
use http::{Request, Response, Version};
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use terminus::bench_api::{for_backend, prepare};
use terminus::config::{Limits, UpstreamProtocol};
use terminus::http::{headers, ConnInfo, Router};
use terminus::upstream::replay::ReplayBody;
use terminus::upstream::Backend;
use tokio::io::AsyncWriteExt;

/// What Chrome sends for a page: 15 fields, a session cookie among them.
const BROWSER: &[(&str, &str)] = &[
    ("host", "shop.example.com"),
    ("connection", "keep-alive"),
    ("sec-ch-ua", "\"Chromium\";v=\"131\", \"Not_A Brand\";v=\"24\""),
    ("sec-ch-ua-mobile", "?0"),
    ("sec-ch-ua-platform", "\"Linux\""),
    ("upgrade-insecure-requests", "1"),
    ("user-agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"),
    ("accept", "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,*/*;q=0.8"),
    ("sec-fetch-site", "same-origin"),
    ("sec-fetch-mode", "navigate"),
    ("sec-fetch-dest", "document"),
    ("referer", "https://shop.example.com/"),
    ("accept-encoding", "gzip, deflate, br, zstd"),
    ("accept-language", "en-GB,en;q=0.9"),
    ("cookie", "session=8f14e45fceea167a5a36dedd4bea2543; theme=dark; _ga=GA1.2.1234567890.1700000000"),
];

/// What curl sends.
const MINIMAL: &[(&str, &str)] = &[
    ("host", "shop.example.com"),
    ("user-agent", "curl/8.5.0"),
    ("accept", "*/*"),
];

/// An application's answer behind a keep-alive HTTP/1.1 connection: 11 fields, two of them
/// hop-by-hop.
const RESPONSE: &[(&str, &str)] = &[
    ("server", "nginx"),
    ("date", "Sat, 05 Dec 2026 01:40:00 GMT"),
    ("content-type", "text/html; charset=utf-8"),
    ("content-length", "18734"),
    ("connection", "keep-alive"),
    ("keep-alive", "timeout=5"),
    ("cache-control", "private, max-age=0"),
    ("etag", "W/\"492e-18c3f0\""),
    ("vary", "Accept-Encoding"),
    (
        "set-cookie",
        "session=8f14e45fceea167a5a36dedd4bea2543; Path=/; Secure; HttpOnly",
    ),
    ("strict-transport-security", "max-age=63072000"),
];

/// The smallest: 3 fields.
const RESPONSE_MINIMAL: &[(&str, &str)] = &[
    ("date", "Sat, 05 Dec 2026 01:40:00 GMT"),
    ("content-type", "text/plain"),
    ("content-length", "5"),
];

const PROTOCOLS: [(UpstreamProtocol, &str); 2] = [
    (UpstreamProtocol::Http1, "http1-pool"),
    (UpstreamProtocol::Http2, "http2-pool"),
];

fn fields(list: &[(&'static str, &'static str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for &(name, value) in list {
        map.append(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    map
}

/// A GET as hyper's server hands it over from an HTTP/1.1 client.
fn head(list: &[(&'static str, &'static str)]) -> Parts {
    let (mut parts, ()) = Request::new(()).into_parts();
    parts.uri = http::Uri::from_static("/products/42?color=blue&ref=home");
    parts.version = Version::HTTP_11;
    parts.headers = fields(list);
    parts
}

/// A TLS connection from an IPv4 client, without a client certificate.
fn conn() -> ConnInfo {
    let metrics = terminus::metrics::Metrics::default();
    let listener: Arc<str> = "web".into();
    ConnInfo {
        client: SocketAddr::from(([203, 0, 113, 7], 40000)),
        proto: "https",
        routes: Arc::new(arc_swap::ArcSwap::from_pointee(Router::new(
            &[],
            &[],
            &listener,
            &metrics,
        ))),
        listener,
        client_cert: None,
        authority_check: None,
        tls: None,
        metrics,
        access_log: None,
        explain: false,
        admin_token: None,
        limits: Limits::default(),
        client_body_timeout: Duration::from_secs(60),
        activity: Default::default(),
        raw_verdicts: Default::default(),
    }
}

/// The body of a GET without one, as hyper's server makes it: `ReplayBody` holds the
/// client's `Incoming`, which only hyper can make, so one request goes through hyper's
/// HTTP/1.1 server over an in-memory pipe.
fn empty_client_body() -> Incoming {
    let runtime = match tokio::runtime::Builder::new_current_thread().build() {
        Ok(r) => r,
        Err(e) => panic!("a runtime: {e}"),
    };
    let body = runtime.block_on(async {
        let (mut client, server) = tokio::io::duplex(4096);
        let (tx, rx) = tokio::sync::oneshot::channel();
        let tx = Mutex::new(Some(tx));
        let service = hyper::service::service_fn(move |req: Request<Incoming>| {
            if let Some(tx) = tx.lock().ok().and_then(|mut t| t.take()) {
                let _ = tx.send(req.into_body());
            }
            async { Ok::<_, Infallible>(Response::new(Empty::<Bytes>::new())) }
        });
        let serve = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(server), service);
        tokio::spawn(serve);
        client
            .write_all(b"GET / HTTP/1.1\r\nhost: bench\r\n\r\n")
            .await
            .ok()?;
        rx.await.ok()
    });
    match body {
        Some(b) => b,
        None => panic!("hyper did not hand over the request"),
    }
}

fn requests(c: &mut Criterion) {
    let conn = conn();
    let backend = Backend::new("b0".into(), SocketAddr::from(([10, 0, 0, 1], 8080)), 1);
    let body = ReplayBody::new(empty_client_body(), None, Duration::from_secs(60));
    let again = || match body.again() {
        Some(b) => b,
        None => panic!("an untouched body is always replayable"),
    };
    let requests = [("browser", head(BROWSER)), ("minimal", head(MINIMAL))];

    let mut group = c.benchmark_group("prepare");
    for (name, client_head) in &requests {
        for (protocol, pool) in PROTOCOLS {
            group.bench_function(BenchmarkId::new(*name, pool), |b| {
                b.iter_batched(
                    || client_head.clone(),
                    |mut parts| {
                        let upgrade = prepare(black_box(&mut parts), &conn, protocol);
                        (parts, upgrade)
                    },
                    BatchSize::SmallInput,
                )
            });
        }
    }
    group.finish();

    let mut group = c.benchmark_group("for_backend");
    for (name, client_head) in &requests {
        for (protocol, pool) in PROTOCOLS {
            let mut prepared = client_head.clone();
            if let Err(e) = prepare(&mut prepared, &conn, protocol) {
                panic!("the {name} request: {e}");
            }
            group.bench_function(BenchmarkId::new(*name, pool), |b| {
                b.iter_batched(
                    again,
                    |body| for_backend(black_box(&prepared), &backend, protocol, body),
                    BatchSize::SmallInput,
                )
            });
        }
    }
    group.finish();
}

fn responses(c: &mut Criterion) {
    let mut group = c.benchmark_group("response");
    for (name, list) in [("app", RESPONSE), ("minimal", RESPONSE_MINIMAL)] {
        let map = fields(list);
        group.bench_function(BenchmarkId::new("remove_hop_by_hop", name), |b| {
            b.iter_batched(
                || map.clone(),
                |mut h| {
                    let upgrade = headers::remove_hop_by_hop(black_box(&mut h));
                    (h, upgrade)
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    // Short by default, as the command line in the header would make them.
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .nresamples(20_000);
    targets = requests, responses
}
criterion_main!(benches);
