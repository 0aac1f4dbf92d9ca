//! Failover with real backends and injected faults: outlier detection ejects a backend that
//! answers 500 or refuses connections and lets it back when its time is up, backups take
//! over only while every primary is down, draining backends get no new requests, and slow
//! start ramps a returning backend up.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use support::*;

/// `[[pool.backend]]` tables for (name, address, extra keys).
fn backends(list: &[(&str, std::net::SocketAddr, &str)]) -> String {
    list.iter()
        .map(|(n, a, keys)| {
            format!("  [[pool.backend]]\n  name = \"{n}\"\n  address = \"{a}\"\n  {keys}\n")
        })
        .collect()
}

/// `n` GETs one after the other: (status, backend) of each.
async fn gets(conn: &mut Conn, n: usize) -> Vec<(u16, String)> {
    let mut out = Vec::new();
    for _ in 0..n {
        let ans = conn.get("localhost", "/").await;
        out.push((ans.status, ans.backend().to_string()));
    }
    out
}

fn count(answers: &[(u16, String)], status: u16, backend: &str) -> usize {
    (answers.iter())
        .filter(|(s, b)| *s == status && b == backend)
        .count()
}

#[tokio::test]
async fn a_backend_answering_500_is_ejected_and_traffic_moves_to_the_healthy_one() {
    let bad = FaultyBackend::start("bad", 500).await;
    let good = FaultyBackend::start("good", 200).await;
    let pool = format!(
        "[pool.outlier]\nconsecutive_failures = 3\n{}",
        backends(&[("bad", bad.addr, ""), ("good", good.addr, "")])
    );
    let f = fixture(&pool).await;
    let mut conn = f.conn(&["http/1.1"]).await;
    let answers = gets(&mut conn, 20).await;
    // Round-robin alternates bad, good, ... until bad's third 500 ejects it; every later
    // request goes to good. Answers are not retried, so the client saw the three 500s.
    let statuses: Vec<u16> = answers.iter().map(|a| a.0).collect();
    assert_eq!(&statuses[..5], &[500, 200, 500, 200, 500]);
    assert!(answers[5..].iter().all(|(s, b)| *s == 200 && b == "good"));
    assert_eq!((bad.hits(), good.hits()), (3, 17));
}

#[tokio::test]
async fn a_backend_on_a_closed_port_is_ejected_after_its_connect_failures() {
    let dead = closed_port().await;
    let good = FaultyBackend::start("good", 200).await;
    // Retries off, so the client sees each refused connect that counts toward the ejection.
    let pool = format!(
        "[pool.outlier]\nconsecutive_failures = 2\n[pool.retry]\nattempts = 0\n{}",
        backends(&[("dead", dead, ""), ("good", good.addr, "")])
    );
    let f = fixture(&pool).await;
    let mut conn = f.conn(&["http/1.1"]).await;
    let answers = gets(&mut conn, 20).await;
    let statuses: Vec<u16> = answers.iter().map(|a| a.0).collect();
    assert_eq!(
        &statuses[..4],
        &[502, 200, 502, 200],
        "two refused connects"
    );
    assert_eq!(count(&answers, 502, ""), 2);
    assert_eq!(count(&answers, 200, "good"), 18);
    assert_eq!(good.hits(), 18);
}

#[tokio::test]
async fn with_retries_a_dead_backend_costs_clients_nothing() {
    let dead = closed_port().await;
    let good = FaultyBackend::start("good", 200).await;
    // Default retries: each refused connect is retried on `good`, and after two of them
    // `dead` is ejected, so later requests go straight to `good`.
    let pool = format!(
        "[pool.outlier]\nconsecutive_failures = 2\n{}",
        backends(&[("dead", dead, ""), ("good", good.addr, "")])
    );
    let f = fixture(&pool).await;
    let mut conn = f.conn(&["http/1.1"]).await;
    let answers = gets(&mut conn, 20).await;
    assert_eq!(count(&answers, 200, "good"), 20, "{answers:?}");
    assert_eq!(good.hits(), 20);
}

/// Makes `flaky` answer 500 until it is ejected (2 failures in a row) and 200 after; returns
/// when the request whose answer ejected it was sent, and how long until it answered again.
async fn eject_and_wait_for_return(conn: &mut Conn, flaky: &FaultyBackend) -> Duration {
    flaky.set_status(500);
    let mut failures = 0;
    let mut last_send = Instant::now();
    while failures < 2 {
        last_send = Instant::now();
        let ans = conn.get("localhost", "/").await;
        if ans.backend() == "flaky" {
            assert_eq!(ans.status, 500);
            failures += 1;
        }
    }
    flaky.set_status(200);
    until_run(conn, 1, |a| a.backend() == "flaky").await;
    last_send.elapsed()
}

#[tokio::test]
async fn an_ejected_backend_returns_when_its_time_is_up_and_stays_out_longer_the_next_time() {
    let flaky = FaultyBackend::start("flaky", 200).await;
    let good = FaultyBackend::start("good", 200).await;
    let pool = format!(
        "[pool.outlier]\nconsecutive_failures = 2\nbase_ejection = \"300ms\"\n{}",
        backends(&[("flaky", flaky.addr, ""), ("good", good.addr, "")])
    );
    let f = fixture(&pool).await;
    let mut conn = f.conn(&["http/1.1"]).await;
    let first = eject_and_wait_for_return(&mut conn, &flaky).await;
    let second = eject_and_wait_for_return(&mut conn, &flaky).await;
    eprintln!("out of rotation: {first:?}, then {second:?}");
    // Back after base_ejection, then after twice that (polled every 10 ms).
    assert!(first >= Duration::from_millis(300), "{first:?}");
    assert!(first < Duration::from_millis(600), "{first:?}");
    assert!(second >= Duration::from_millis(600), "{second:?}");
    assert!(second < Duration::from_millis(1200), "{second:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_takes_traffic_only_while_the_primaries_are_down() {
    let mut p1 = FaultyBackend::start("p1", 200).await;
    let mut p2 = FaultyBackend::start("p2", 200).await;
    let backup = FaultyBackend::start("backup", 200).await;
    // TCP checks send no requests, so the backends' counts are the proxied requests only.
    let check = "[pool.health]\ncheck = \"tcp\"\ninterval = \"50ms\"\njitter = \"10ms\"\nrise = 1\nfall = 1\ninitial = \"healthy\"\n";
    let pool = format!(
        "{check}{}",
        backends(&[
            ("p1", p1.addr, ""),
            ("backup", backup.addr, "backup = true"),
            ("p2", p2.addr, ""),
        ])
    );
    let f = fixture(&pool).await;
    let mut conn = f.conn(&["http/1.1"]).await;
    let answers = gets(&mut conn, 20).await;
    assert_eq!(count(&answers, 200, "p1"), 10);
    assert_eq!(count(&answers, 200, "p2"), 10);
    // One primary down: the other takes everything, the backup still nothing.
    p1.stop();
    until_run(&mut conn, 20, |a| a.status == 200 && a.backend() == "p2").await;
    assert_eq!(backup.hits(), 0);
    // Both down: the backup.
    p2.stop();
    until_run(&mut conn, 20, |a| {
        a.status == 200 && a.backend() == "backup"
    })
    .await;
    // A primary back: from its first answer on, the backup gets nothing.
    p1.resume().await;
    until_run(&mut conn, 1, |a| a.backend() == "p1").await;
    let hits = backup.hits();
    let answers = gets(&mut conn, 20).await;
    assert_eq!(count(&answers, 200, "p1"), 20);
    assert_eq!(backup.hits(), hits);
}

#[tokio::test]
async fn a_draining_backend_gets_no_new_requests() {
    let a = FaultyBackend::start("a", 200).await;
    let b = FaultyBackend::start("b", 200).await;
    let pool = backends(&[("a", a.addr, "drain = true"), ("b", b.addr, "")]);
    let f = fixture(&pool).await;
    let mut conn = f.conn(&["http/1.1"]).await;
    let answers = gets(&mut conn, 20).await;
    assert_eq!(count(&answers, 200, "b"), 20);
    assert_eq!((a.hits(), b.hits()), (0, 20));
    // A pool whose every backend drains has nothing to offer.
    let pool = backends(&[("a", a.addr, "drain = true"), ("b", b.addr, "drain = true")]);
    let f = fixture(&pool).await;
    let mut conn = f.conn(&["http/1.1"]).await;
    let answers = gets(&mut conn, 5).await;
    assert!(answers.iter().all(|(s, _)| *s == 503), "{answers:?}");
    assert_eq!((a.hits(), b.hits()), (0, 20));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_start_ramps_a_returning_backend_up() {
    let flaky = FaultyBackend::start("flaky", 500).await;
    let steady = FaultyBackend::start("steady", 200).await;
    let pool = format!(
        "slow_start = \"2s\"\n[pool.outlier]\nconsecutive_failures = 1\nbase_ejection = \"200ms\"\n{}",
        backends(&[("flaky", flaky.addr, ""), ("steady", steady.addr, "")])
    );
    let f = fixture(&pool).await;
    let mut conn = f.conn(&["http/1.1"]).await;
    // The first request goes to flaky (round-robin starts there) and ejects it.
    assert_eq!(gets(&mut conn, 1).await[0].0, 500);
    flaky.set_status(200);
    // Its ramp starts when the ejection ends, 200 ms after (at most) now.
    let ramp = Instant::now() + Duration::from_millis(200);
    let mut quarters = [(0usize, 0usize); 4];
    while Instant::now() < ramp + Duration::from_millis(2200) {
        let ans = conn.get("localhost", "/").await;
        assert_eq!(ans.status, 200);
        let t = Instant::now().saturating_duration_since(ramp);
        if let Some(q) = quarters.get_mut((t.as_millis() / 500) as usize) {
            q.0 += usize::from(ans.backend() == "flaky");
            q.1 += 1;
        }
    }
    let shares: Vec<f64> = (quarters.iter())
        .map(|(f, n)| *f as f64 / (*n).max(1) as f64)
        .collect();
    eprintln!("flaky's share per 500 ms of its 2 s slow start: {shares:.3?} of {quarters:?}");
    // Expected 6.25%, 18.75%, 31.25% and 43.75% (half of 12.5%, 37.5%, 62.5%, 87.5%).
    let first_half =
        (quarters[0].0 + quarters[1].0) as f64 / (quarters[0].1 + quarters[1].1) as f64;
    assert!((0.03..=0.25).contains(&first_half), "{first_half}");
    assert!(shares[0] < shares[3], "{shares:?}");
    // After the ramp, round-robin alternates exactly again.
    let answers = gets(&mut conn, 200).await;
    assert_eq!(count(&answers, 200, "flaky"), 100);
}
