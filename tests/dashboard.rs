//! The dashboard page: it is self-contained (nothing fetched beyond the admin listener), and in
//! a real headless Chromium, served by the real binary while traffic flows, it lists every
//! backend and draws its charts. The screenshot is kept as the test's artifact.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::*;

/// The page exactly as the binary embeds it.
const PAGE: &str = include_str!("../src/admin/dashboard.html");

/// Where the screenshot is kept after the test.
const SCREENSHOT: &str = concat!(env!("CARGO_TARGET_TMPDIR"), "/dashboard.png");

/// The SVG namespace name: an identifier for createElementNS, never fetched.
const SVG_NS: &str = "http://www.w3.org/2000/svg";

#[test]
fn page_is_self_contained_and_builds_the_dom_without_html_parsing() {
    let without_ns = PAGE.replace(SVG_NS, "");
    for scheme in ["http://", "https://", "//cdn", "@import", "url("] {
        assert!(
            !without_ns.contains(scheme),
            "the dashboard must not reference anything outside the admin listener: found `{scheme}`"
        );
    }
    for sink in [
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "eval(",
    ] {
        assert!(
            !PAGE.contains(sink),
            "API strings must reach the DOM through textContent/setAttribute only: found `{sink}`"
        );
    }
    // The browser enforces the same: only same-origin fetches, no other loads.
    assert!(PAGE.contains("Content-Security-Policy"), "CSP meta missing");
    assert!(PAGE.contains("default-src 'none'") && PAGE.contains("connect-src 'self'"));
    for id in [
        "id=\"backends\"",
        "id=\"chart-rps\"",
        "id=\"chart-latency\"",
        "id=\"chart-health\"",
        "id=\"chart-handshakes\"",
    ] {
        assert!(PAGE.contains(id), "the page lacks {id}");
    }
    for api in ["\"api/v1/pools\"", "\"api/v1/history\""] {
        assert!(
            PAGE.contains(api),
            "the page must fetch the relative URL {api}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_lists_every_backend_and_draws_charts_in_headless_chromium() {
    require_chromium();
    let names = ["demo-1", "demo-2", "demo-3"];
    let dir = tempfile::tempdir().unwrap();
    let cert = write_cert(dir.path(), "test", &["localhost"]);
    let backends = demo_backends(&names).await;
    let config = format!(
        "{}\n[admin]\nbind = \"127.0.0.1:0\"\n",
        one_pool_config(&cert, &backend_lines(&backends))
    );
    let path = dir.path().join("terminus.toml");
    std::fs::write(&path, config).unwrap();
    let terminus = Process::spawn(&["--config", path.to_str().unwrap()], 2);
    let (https, admin) = (terminus.addrs["https"], terminus.addrs["admin"]);

    let stop = Arc::new(AtomicBool::new(false));
    let tls = client_tls(&cert.cert_pem, &["http/1.1"]);
    let traffic = tokio::spawn(keep_traffic(https, tls, stop.clone()));

    let page = admin_get(admin, "/").await;
    assert_eq!(page.status, 200, "GET / on the admin listener: {page:?}");
    assert!(page.content_type.starts_with("text/html"), "{page:?}");
    assert!(
        page.body == PAGE,
        "GET / must serve src/admin/dashboard.html as is"
    );
    wait_for_history(admin, 3).await;

    let url = format!("http://{admin}/");
    let dom = chromium(&["--virtual-time-budget=15000", "--dump-dom", &url]).await;
    for name in names {
        let row = format!("data-backend=\"app/{name}\"");
        assert!(dom.contains(&row), "no row {row} in the dumped DOM:\n{dom}");
    }
    assert!(
        dom.contains("<body data-status=\"ok\""),
        "the page reports a failed fetch: {}",
        error_banner(&dom)
    );
    let rendered = ["rps", "latency", "health", "handshakes"]
        .into_iter()
        .filter(|c| dom.contains(&format!("id=\"chart-{c}\" data-rendered=\"1\"")))
        .collect::<Vec<_>>();
    assert!(
        dom.contains("data-rendered=\"1\""),
        "no chart drew a series of two points or more:\n{dom}"
    );

    let _ = std::fs::remove_file(SCREENSHOT);
    let shot = format!("--screenshot={SCREENSHOT}");
    chromium(&[
        "--virtual-time-budget=15000",
        &shot,
        "--window-size=1280,1000",
        &url,
    ])
    .await;
    let size = std::fs::metadata(SCREENSHOT)
        .unwrap_or_else(|e| panic!("no screenshot at {SCREENSHOT}: {e}"))
        .len();
    assert!(
        size > 30_000,
        "the screenshot is {size} bytes: a blank page?"
    );
    println!("dashboard screenshot ({size} bytes, charts drawn: {rendered:?}): {SCREENSHOT}");

    stop.store(true, Ordering::SeqCst);
    let sent = tokio::time::timeout(WAIT, traffic).await.unwrap().unwrap();
    assert!(sent > 0, "no request went through the https listener");
}

/// Fails with a clear message when the browser the test drives is missing.
fn require_chromium() {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path).any(|dir| dir.join("chromium").is_file());
    assert!(
        found,
        "`chromium` is not installed: this test drives a headless Chromium; \
         .ci/run installs it (or: apt-get install chromium)"
    );
}

/// Runs headless Chromium on a fresh profile with `args`; returns its stdout. Name lookups
/// other than 127.0.0.1 fail, so the browser's own background requests stay off the network.
async fn chromium(args: &[&str]) -> String {
    let profile = tempfile::tempdir().unwrap();
    let user_data = format!("--user-data-dir={}", profile.path().display());
    let mut all = vec![
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--no-first-run",
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        &user_data,
    ];
    all.extend_from_slice(args);
    let out = run_tool("chromium", &all, None).await;
    assert!(out.ok(), "chromium failed:\n{}", out.all());
    out.stdout
}

/// Sends GETs through `addr` until `stop` (or a 2-minute bound), opening a new TLS connection
/// every 20 requests so both full and resumed handshakes happen; returns the requests sent.
async fn keep_traffic(
    addr: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
    stop: Arc<AtomicBool>,
) -> usize {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let mut sent = 0;
    while !stop.load(Ordering::SeqCst) && tokio::time::Instant::now() < deadline {
        let mut conn = connect(addr, "localhost", tls.clone()).await;
        for _ in 0..20 {
            let ans = conn.get("localhost", "/").await;
            assert_eq!(ans.status, 200, "{}", ans.text());
            assert!(ans.text().starts_with("Hello from demo-"), "{}", ans.text());
            sent += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    sent
}

/// One plain-HTTP answer from the admin listener.
#[derive(Debug)]
struct AdminAnswer {
    status: u16,
    content_type: String,
    body: String,
}

async fn admin_get(admin: SocketAddr, path: &str) -> AdminAnswer {
    let url = format!("http://{admin}{path}");
    let args = [
        "-sS",
        "--noproxy",
        "*",
        "--max-time",
        "5",
        "-w",
        "\n%{http_code} %{content_type}",
        &url,
    ];
    let out = run_tool("curl", &args, None).await;
    assert!(out.ok(), "curl {url} failed:\n{}", out.all());
    let (body, trailer) = out.stdout.rsplit_once('\n').unwrap();
    let (status, content_type) = trailer.split_once(' ').unwrap_or((trailer, ""));
    AdminAnswer {
        status: status.parse().unwrap(),
        content_type: content_type.to_string(),
        body: body.to_string(),
    }
}

/// Waits (bounded) until `GET /api/v1/history` holds at least `want` samples.
async fn wait_for_history(admin: SocketAddr, want: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let ans = admin_get(admin, "/api/v1/history").await;
        assert_eq!(ans.status, 200, "GET /api/v1/history: {ans:?}");
        if sample_count(&ans.body) >= want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "history still has fewer than {want} samples after 30 s: {}",
            ans.body
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The length of the `times_ms` array of a history answer (0 when absent).
fn sample_count(json: &str) -> usize {
    let Some(at) = json.find("\"times_ms\"") else {
        return 0;
    };
    let rest = &json[at..];
    let (Some(open), Some(close)) = (rest.find('['), rest.find(']')) else {
        return 0;
    };
    rest[open + 1..close]
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .count()
}

/// The text of the page's error banner, for failure messages.
fn error_banner(dom: &str) -> &str {
    let Some(at) = dom.find("id=\"error\"") else {
        return "(no error banner in the DOM)";
    };
    let rest = &dom[at..];
    let start = rest.find('>').map_or(0, |i| i + 1);
    let end = rest.find("</div>").unwrap_or(rest.len());
    &rest[start..end.max(start)]
}

#[test]
fn sample_count_reads_the_times_array() {
    assert_eq!(sample_count(r#"{"interval_ms":1000,"times_ms":[]}"#), 0);
    assert_eq!(
        sample_count(r#"{"times_ms": [1, 2 ,3], "backends": [{"rps": [1]}]}"#),
        3
    );
    assert_eq!(sample_count("{}"), 0);
}
