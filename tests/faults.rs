//! Issue-level fault scenarios with real backends and clients, counting every request sent
//! against every answer: a backend killed under a steady stream, all backends down and back,
//! sticky sessions across a failure, and draining with a request in flight.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use support::*;

fn lines(backends: &[&FaultyBackend]) -> String {
    let pairs: Vec<(&str, std::net::SocketAddr)> =
        backends.iter().map(|b| (b.name.as_str(), b.addr)).collect();
    backend_lines(&pairs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_killed_under_steady_gets_costs_no_request() {
    let a = FaultyBackend::start("a", 200).await;
    let mut b = FaultyBackend::start("b", 200).await;
    let (fall, interval) = (2u32, Duration::from_millis(100));
    let body = format!(
        "[pool.health]\ncheck = \"tcp\"\ninterval = \"100ms\"\njitter = \"10ms\"\nfall = {fall}\ninitial = \"healthy\"\n[pool.retry]\nbudget_floor = 1000\n{}",
        lines(&[&a, &b])
    );
    let f = fixture(&body).await;
    let b_state = f.terminus.pools[0]
        .backends
        .iter()
        .find(|x| x.name == "b")
        .unwrap()
        .clone();
    let mut clients = Vec::new();
    for _ in 0..2 {
        let mut conn = f.conn(&["http/1.1"]).await;
        clients.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            for _ in 0..150 {
                statuses.push(conn.get("localhost", "/").await.status);
            }
            statuses
        }));
    }
    // Kill b once the stream is flowing.
    wait_until(|| a.hits() + b.hits() >= 60).await;
    b.stop();
    let killed = Instant::now();
    wait_until(|| !b_state.health().is_healthy()).await;
    let out_after = killed.elapsed();
    let mut sent = 0;
    for c in clients {
        let statuses = c.await.unwrap();
        sent += statuses.len();
        assert!(
            statuses.iter().all(|&s| s == 200),
            "a GET failed: {statuses:?}"
        );
    }
    assert_eq!(sent, 300);
    assert_eq!(
        a.hits() + b.hits(),
        300,
        "every request answered exactly once"
    );
    // fall × interval, plus the jitter and the scheduling of a busy test machine.
    let bound = interval * fall + Duration::from_millis(20) + Duration::from_millis(400);
    assert!(
        out_after <= bound,
        "out of rotation after {out_after:?}, bound {bound:?}"
    );
    eprintln!(
        "b out of rotation {out_after:?} after it was killed (fall x interval = {:?})",
        interval * fall
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_down_is_503_at_once_and_traffic_returns_with_slow_start() {
    let mut a = FaultyBackend::start("a", 200).await;
    let mut b = FaultyBackend::start("b", 200).await;
    let body = format!(
        "slow_start = \"1s\"\n[pool.health]\ncheck = \"tcp\"\ninterval = \"50ms\"\njitter = \"5ms\"\nrise = 1\nfall = 1\n{}",
        lines(&[&a, &b])
    );
    let f = fixture(&body).await;
    let mut conn = f.conn(&["http/1.1"]).await;
    until_run(&mut conn, 10, |ans| ans.status == 200).await;
    a.stop();
    b.stop();
    until_run(&mut conn, 1, |ans| ans.status == 503).await;
    // 503 at once: no connect attempt, no timeout.
    for _ in 0..20 {
        let started = Instant::now();
        let ans = conn.get("localhost", "/").await;
        assert_eq!(ans.status, 503);
        assert!(
            started.elapsed() < Duration::from_millis(200),
            "{:?}",
            started.elapsed()
        );
    }
    // a comes back first and takes everything; then b ramps up over its slow start.
    a.resume().await;
    until_run(&mut conn, 5, |ans| {
        ans.status == 200 && ans.backend() == "a"
    })
    .await;
    // a ramps up too; with b still down it takes everything anyway. Let a's ramp (the
    // configured 1 s) run out so that b's ramp alone shows in the split.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    b.resume().await;
    let back = f.terminus.pools[0]
        .backends
        .iter()
        .find(|x| x.name == "b")
        .unwrap()
        .clone();
    wait_until(|| back.health().is_healthy()).await;
    let ramp_start = Instant::now();
    let mut windows = [(0usize, 0usize); 4];
    while ramp_start.elapsed() < Duration::from_millis(1400) {
        let ans = conn.get("localhost", "/").await;
        assert_eq!(ans.status, 200);
        let w = ((ramp_start.elapsed().as_millis() / 350) as usize).min(3);
        windows[w].0 += usize::from(ans.backend() == "b");
        windows[w].1 += 1;
    }
    let shares: Vec<f64> = windows
        .iter()
        .map(|(b, n)| *b as f64 / (*n).max(1) as f64)
        .collect();
    eprintln!("b's share per 350 ms window during and after its 1 s slow start: {shares:?}");
    assert!(shares[0] < 0.3, "slow start not visible: {shares:?}");
    assert!(shares[0] < shares[2], "no ramp: {shares:?}");
    assert!(shares[3] > 0.35, "b never reached its share: {shares:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sticky_sessions_hold_for_50_clients_and_move_only_off_a_dead_backend() {
    let a = FaultyBackend::start("a", 200).await;
    let mut b = FaultyBackend::start("b", 200).await;
    let c = FaultyBackend::start("c", 200).await;
    let body = format!(
        "[pool.sticky]\ncookie = \"tb\"\n[pool.retry]\nbudget_floor = 1000\n{}",
        lines(&[&a, &b, &c])
    );
    let f = fixture(&body).await;
    // 50 clients, each with its own cookie, 20 requests each: 1,000 requests on 10 connections.
    let run = |cookies: HashMap<usize, String>| {
        let f = &f;
        async move {
            let mut tasks = Vec::new();
            for group in 0..10 {
                let mut conn = f.conn(&["http/1.1"]).await;
                let mut cookies: HashMap<usize, String> = cookies
                    .iter()
                    .filter(|(k, _)| *k % 10 == group)
                    .map(|(k, v)| (*k, v.clone()))
                    .collect();
                tasks.push(tokio::spawn(async move {
                    let mut seen: Vec<(usize, String)> = Vec::new();
                    for round in 0..20 {
                        for client in (group..50).step_by(10) {
                            let ans = match cookies.get(&client) {
                                Some(c) => conn.get_with("localhost", "/", &[("cookie", c)]).await,
                                None => conn.get("localhost", "/").await,
                            };
                            assert_eq!(ans.status, 200, "client {client} round {round}");
                            if let Some(v) = ans.headers.get("set-cookie") {
                                let v = v.to_str().unwrap().split(';').next().unwrap().to_string();
                                cookies.insert(client, v);
                            }
                            seen.push((client, ans.backend().to_string()));
                        }
                    }
                    (seen, cookies)
                }));
            }
            let mut seen = Vec::new();
            let mut cookies = HashMap::new();
            for t in tasks {
                let (s, c) = t.await.unwrap();
                seen.extend(s);
                cookies.extend(c);
            }
            (seen, cookies)
        }
    };
    let moves = |seen: &[(usize, String)]| {
        let mut last: HashMap<usize, &str> = HashMap::new();
        let mut moves: HashMap<usize, usize> = HashMap::new();
        for (client, backend) in seen {
            if let Some(prev) = last.insert(*client, backend) {
                if prev != backend {
                    *moves.entry(*client).or_default() += 1;
                }
            }
        }
        (
            last.into_iter()
                .map(|(k, v)| (k, v.to_string()))
                .collect::<HashMap<_, _>>(),
            moves,
        )
    };
    let (seen, cookies) = run(HashMap::new()).await;
    assert_eq!(seen.len(), 1000);
    let (home, moved) = moves(&seen);
    assert!(
        moved.is_empty(),
        "sessions moved while all backends were up: {moved:?}"
    );
    assert_eq!(a.hits() + b.hits() + c.hits(), 1000);
    let on_b: Vec<usize> = home
        .iter()
        .filter(|(_, v)| *v == "b")
        .map(|(k, _)| *k)
        .collect();
    assert!(!on_b.is_empty());
    b.stop();
    let (seen, _) = run(cookies).await;
    assert_eq!(seen.len(), 1000);
    let mut all = seen.clone();
    // Compare each client's first backend after the failure with its home before it.
    let mut moved_clients = Vec::new();
    for client in 0..50 {
        let after: Vec<&String> = all
            .iter()
            .filter(|(c, _)| *c == client)
            .map(|(_, b)| b)
            .collect();
        assert!(
            after.windows(2).all(|w| w[0] == w[1]),
            "client {client} moved more than once: {after:?}"
        );
        if after[0] != &home[&client] {
            moved_clients.push(client);
        }
    }
    all.clear();
    moved_clients.sort();
    let mut expected = on_b.clone();
    expected.sort();
    assert_eq!(moved_clients, expected, "only the sessions of b moved");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_lets_in_flight_finish_and_takes_no_new_requests() {
    let (gate, mut arrivals) = gated_backend().await;
    let other = FaultyBackend::start("other", 200).await;
    let f = fixture(&backend_lines(&[("gate", gate), ("other", other.addr)])).await;
    let gate_state = f.terminus.pools[0]
        .backends
        .iter()
        .find(|x| x.name == "gate")
        .unwrap()
        .clone();
    let tls = client_tls(&f.cert.cert_pem, &["http/1.1"]);
    // Round-robin: the first request goes to gate and waits there.
    let in_flight = tokio::spawn(get_once(f.terminus.addr("https"), "localhost", tls, "/"));
    let release = tokio::time::timeout(WAIT, arrivals.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(gate_state.in_flight(), 1);
    gate_state.set_draining(true);
    let mut conn = f.conn(&["http/1.1"]).await;
    for _ in 0..20 {
        let ans = conn.get("localhost", "/").await;
        assert_eq!((ans.status, ans.backend()), (200, "other"));
    }
    assert!(
        arrivals.try_recv().is_err(),
        "a new request reached the draining backend"
    );
    release.send(()).unwrap();
    let ans = tokio::time::timeout(WAIT, in_flight)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((ans.status, ans.text().as_str()), (200, "done"));
    wait_until(|| gate_state.in_flight() == 0).await;
}
