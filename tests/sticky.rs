//! Cookie persistence end to end: a client keeps landing on the backend its cookie names,
//! with every balancer; forged cookies are ignored; a dead backend's clients move and get a
//! new cookie; instances sharing a key honour each other's cookies.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use support::*;
use terminus::demo::DemoBackend;
use tokio::net::TcpListener;

/// The `name=value` part of a response's Set-Cookie, if any.
fn set_cookie(ans: &Answer) -> Option<String> {
    let v = ans.headers.get("set-cookie")?.to_str().unwrap();
    Some(v.split(';').next().unwrap().to_string())
}

fn sticky_pool(balancer: &str, backends: &[(&str, SocketAddr)], sticky: &str) -> String {
    format!(
        "balancer = \"{balancer}\"\n[pool.sticky]\n{sticky}\n{}",
        backend_lines(backends)
    )
}

#[tokio::test]
async fn a_client_sticks_to_its_backend_with_every_balancer() {
    let backends = demo_backends(&["alpha", "bravo", "charlie"]).await;
    for balancer in [
        "round-robin",
        "weighted-round-robin",
        "least-connections",
        "least-response-time",
        "performance",
        "random",
        "maglev",
        "ring-hash",
    ] {
        let f = fixture(&sticky_pool(balancer, &backends, "cookie = \"tb\"")).await;
        for alpn in BOTH_ALPN {
            let mut conn = f.conn(alpn).await;
            let first = conn.get("localhost", "/").await;
            assert_eq!(first.status, 200);
            let cookie = set_cookie(&first).expect("first answer sets the cookie");
            assert!(cookie.starts_with("tb="), "{cookie}");
            let port = backends
                .iter()
                .find(|(n, _)| *n == first.backend())
                .unwrap()
                .1
                .port();
            for secret in [first.backend().to_string(), port.to_string()] {
                assert!(
                    !cookie.contains(&secret),
                    "the cookie shows {secret}: {cookie}"
                );
            }
            for _ in 0..15 {
                let ans = conn
                    .get_with("localhost", "/", &[("cookie", &cookie)])
                    .await;
                assert_eq!(ans.backend(), first.backend(), "{balancer} {alpn:?}");
                assert_eq!(set_cookie(&ans), None, "a sticky hit sets no new cookie");
            }
        }
    }
}

#[tokio::test]
async fn cookie_attributes_follow_the_config() {
    let backends = demo_backends(&["a"]).await;
    let f = fixture(&sticky_pool(
        "round-robin",
        &backends,
        "max_age = \"1h\"\nsame_site = \"strict\"",
    ))
    .await;
    let ans = f.conn(&["http/1.1"]).await.get("localhost", "/").await;
    let header = ans.headers["set-cookie"].to_str().unwrap();
    assert!(header.starts_with("terminus_backend="), "{header}");
    assert!(
        header.ends_with("; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=3600"),
        "{header}"
    );
}

#[tokio::test]
async fn forged_cookies_are_ignored() {
    let backends = demo_backends(&["a", "b"]).await;
    let f = fixture(&sticky_pool("round-robin", &backends, "cookie = \"tb\"")).await;
    let mut conn = f.conn(&["http/1.1"]).await;
    let mut seen = Vec::new();
    for forged in ["tb=a", "tb=b", "tb=YWJj", "tb="] {
        for _ in 0..2 {
            let ans = conn.get_with("localhost", "/", &[("cookie", forged)]).await;
            assert!(
                set_cookie(&ans).is_some(),
                "{forged}: a forged cookie is replaced"
            );
            seen.push(ans.backend().to_string());
        }
    }
    // Forged names did not steer: round-robin alternated regardless.
    assert_eq!(seen, ["a", "b", "a", "b", "a", "b", "a", "b"]);
    // Each was counted as rejected, never an error page.
    let sticky = f.terminus.pools[0].sticky.as_ref().unwrap();
    assert_eq!(sticky.rejected(), 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_backends_clients_move_and_get_a_new_cookie() {
    let mut backends = Vec::new();
    let mut tasks = Vec::new();
    for name in ["a", "b"] {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        backends.push((name, l.local_addr().unwrap()));
        tasks.push(tokio::spawn(
            DemoBackend {
                name: name.into(),
                delay: Duration::ZERO,
            }
            .serve(l),
        ));
    }
    let body = format!(
        "[pool.sticky]\ncookie = \"tb\"\n[pool.health]\ncheck = \"tcp\"\ninterval = \"50ms\"\nfall = 1\n{}",
        backend_lines(&backends)
    );
    let f = fixture(&body).await;
    let mut conn = f.conn(&["http/1.1"]).await;
    // Wait (bounded) until both are healthy and a cookie for "a" is issued.
    let deadline = tokio::time::Instant::now() + WAIT;
    let cookie = loop {
        assert!(tokio::time::Instant::now() < deadline, "no cookie for a");
        let ans = conn.get("localhost", "/").await;
        if ans.status == 200 && ans.backend() == "a" {
            break set_cookie(&ans).unwrap();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    tasks[0].abort();
    // Once a is unhealthy, the cookie for a lands on b and is rewritten.
    let deadline = tokio::time::Instant::now() + WAIT;
    let moved = loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the client never moved off a"
        );
        let ans = conn
            .get_with("localhost", "/", &[("cookie", &cookie)])
            .await;
        if ans.backend() == "b" {
            break ans;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let new_cookie = set_cookie(&moved).expect("the moved client gets a new cookie");
    assert_ne!(new_cookie, cookie);
    for _ in 0..10 {
        let ans = conn
            .get_with("localhost", "/", &[("cookie", &new_cookie)])
            .await;
        assert_eq!((ans.status, ans.backend()), (200, "b"));
    }
}

#[tokio::test]
async fn instances_sharing_a_key_honour_each_others_cookies() {
    let backends = demo_backends(&["a", "b", "c"]).await;
    let key = "cookie = \"tb\"\nkey = \"MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\"";
    let one = fixture(&sticky_pool("round-robin", &backends, key)).await;
    let two = fixture(&sticky_pool("round-robin", &backends, key)).await;
    let other_key = fixture(&sticky_pool("round-robin", &backends, "cookie = \"tb\"")).await;
    let mut c1 = one.conn(&["http/1.1"]).await;
    let mut c2 = two.conn(&["http/1.1"]).await;
    let mut c3 = other_key.conn(&["http/1.1"]).await;
    for _ in 0..3 {
        let first = c1.get("localhost", "/").await;
        let cookie = set_cookie(&first).unwrap();
        for _ in 0..5 {
            let ans = c2.get_with("localhost", "/", &[("cookie", &cookie)]).await;
            assert_eq!(ans.backend(), first.backend());
            assert_eq!(set_cookie(&ans), None);
        }
        // Another key cannot read it: a new cookie comes back.
        let ans = c3.get_with("localhost", "/", &[("cookie", &cookie)]).await;
        assert!(set_cookie(&ans).is_some());
    }
}

#[tokio::test]
async fn a_generated_key_outlives_reloads_and_admin_changes_while_the_settings_stay() {
    let backends = demo_backends(&["alpha", "bravo"]).await;
    let f = fixture(&sticky_pool("round-robin", &backends, "cookie = \"tb\"")).await;
    let mut conn = f.conn(&["http/1.1"]).await;
    let first = conn.get("localhost", "/").await;
    let cookie = set_cookie(&first).unwrap();
    let server = &f.terminus.server;
    let sticky_before = server.pools()[0].sticky.clone().unwrap();
    // An admin API change (a weight) reloads the config: the session holds.
    server
        .apply(|c| {
            c.pools[0].backends[1].weight = 3;
            Ok(())
        })
        .await
        .unwrap();
    assert_eq!(server.generation(), 2);
    let mut conn = f.conn(&["http/1.1"]).await;
    for _ in 0..5 {
        let ans = conn
            .get_with("localhost", "/", &[("cookie", &cookie)])
            .await;
        assert_eq!(ans.backend(), first.backend());
        assert_eq!(set_cookie(&ans), None, "the old cookie still opens");
    }
    let sticky_after = server.pools()[0].sticky.clone().unwrap();
    assert!(std::sync::Arc::ptr_eq(&sticky_before, &sticky_after));
    // Changed sticky settings make a new cookie (and key): old cookies stop opening.
    server
        .apply(|c| {
            let spec = c.pools[0].sticky.as_mut().unwrap();
            spec.name = "tb2".into();
            Ok(())
        })
        .await
        .unwrap();
    let mut conn = f.conn(&["http/1.1"]).await;
    let ans = conn
        .get_with(
            "localhost",
            "/",
            &[("cookie", &cookie.replace("tb=", "tb2="))],
        )
        .await;
    assert!(
        set_cookie(&ans).unwrap().starts_with("tb2="),
        "a new key does not open the old value"
    );
    assert_eq!(server.pools()[0].sticky.as_ref().unwrap().rejected(), 1);
}
