//! Consistent hashing end to end, with terminus in process and real demo backends: a hash key
//! (header, cookie, query parameter, source IP) keeps reaching the same backend over many
//! requests and connections, HTTP/1.1 and HTTP/2; different keys spread; a request without its
//! key goes anywhere. And the config refuses hash keys it cannot use, with file:line:col.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::{HashMap, HashSet};
use std::path::Path;

use support::*;

const BACKENDS: [&str; 4] = ["a", "b", "c", "d"];

async fn hashing_fixture(balancer: &str, keys: &str) -> Fixture {
    let backends = demo_backends(&BACKENDS).await;
    let body = format!(
        "balancer = \"{balancer}\"\n{keys}\n{}",
        backend_lines(&backends)
    );
    fixture(&body).await
}

/// Sends `rounds` requests per user on each of `conns` connections (alternating HTTP/1.1
/// and HTTP/2), the user's key set by `with_key`; returns the backends each user reached.
async fn backends_per_user(
    f: &Fixture,
    users: &[String],
    conns: usize,
    rounds: usize,
    with_key: impl Fn(&str) -> (String, Vec<(String, String)>),
) -> HashMap<String, Vec<String>> {
    let mut seen: HashMap<String, Vec<String>> = HashMap::new();
    for c in 0..conns {
        let mut conn = f.conn(BOTH_ALPN[c % 2]).await;
        for _ in 0..rounds {
            for user in users {
                let (path, fields) = with_key(user);
                let fields: Vec<(&str, &str)> = fields
                    .iter()
                    .map(|(n, v)| (n.as_str(), v.as_str()))
                    .collect();
                let ans = conn.get_with("localhost", &path, &fields).await;
                assert_eq!(ans.status, 200, "{}", ans.text());
                seen.entry(user.clone())
                    .or_default()
                    .push(ans.backend().to_string());
            }
        }
    }
    seen
}

fn users(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("user-{i}")).collect()
}

/// Every user always reached one backend, and the users together reached every backend.
fn assert_sticky_and_spread(seen: &HashMap<String, Vec<String>>, requests_per_user: usize) {
    for (user, backends) in seen {
        assert_eq!(backends.len(), requests_per_user);
        let distinct: HashSet<&String> = backends.iter().collect();
        assert_eq!(distinct.len(), 1, "{user} moved: {backends:?}");
    }
    let used: HashSet<&String> = seen.values().map(|b| &b[0]).collect();
    assert_eq!(used.len(), BACKENDS.len(), "keys did not spread: {used:?}");
}

fn header_key(user: &str) -> (String, Vec<(String, String)>) {
    ("/".into(), vec![("x-user".into(), user.into())])
}

#[tokio::test]
async fn the_same_header_value_always_reaches_the_same_backend() {
    for balancer in ["maglev", "ring-hash"] {
        let f = hashing_fixture(balancer, "hash_key = \"header:X-User\"").await;
        // Eight users, 50 requests each over five connections.
        let sticky = backends_per_user(&f, &users(8), 5, 10, header_key).await;
        for (user, backends) in &sticky {
            assert_eq!(backends.len(), 50);
            assert!(
                backends.iter().all(|b| *b == backends[0]),
                "{balancer}: {user} moved"
            );
        }
        // Forty users, one request each, reach every backend.
        let spread = backends_per_user(&f, &users(40), 1, 1, header_key).await;
        assert_sticky_and_spread(&spread, 1);
    }
}

#[tokio::test]
async fn a_cookie_or_a_query_parameter_can_be_the_key() {
    let f = hashing_fixture("ring-hash", "hash_key = \"cookie:sid\"").await;
    let seen = backends_per_user(&f, &users(40), 2, 2, |u| {
        (
            "/".into(),
            vec![("cookie".into(), format!("theme=dark; sid={u}"))],
        )
    })
    .await;
    assert_sticky_and_spread(&seen, 4);

    let f = hashing_fixture("maglev", "hash_key = \"query:u\"\nhash_bounded_load = 1.25").await;
    let seen = backends_per_user(&f, &users(40), 2, 2, |u| (format!("/x?a=1&u={u}"), vec![])).await;
    assert_sticky_and_spread(&seen, 4);
}

#[tokio::test]
async fn without_its_key_a_request_goes_anywhere() {
    let f = hashing_fixture("maglev", "hash_key = \"header:x-user\"").await;
    let mut conn = f.conn(&["h2"]).await;
    let mut used = HashSet::new();
    for _ in 0..40 {
        let ans = conn.get("localhost", "/").await;
        assert_eq!(ans.status, 200);
        used.insert(ans.backend().to_string());
    }
    assert!(used.len() >= 2, "40 keyless requests all went to {used:?}");
}

#[tokio::test]
async fn the_default_key_is_the_client_address() {
    let f = hashing_fixture("ring-hash", "").await;
    let mut used = HashSet::new();
    for c in 0..4 {
        let mut conn = f.conn(BOTH_ALPN[c % 2]).await;
        for _ in 0..5 {
            used.insert(conn.get("localhost", "/").await.backend().to_string());
        }
    }
    assert_eq!(used.len(), 1, "one client address, one backend: {used:?}");
}

/// The errors of a config whose pool uses `balancer` and has `line` as its line 12.
fn errors(balancer: &str, line: &str) -> Vec<String> {
    let text = format!(
        "[[certificate]]\nname = \"c\"\nself_signed = [\"localhost\"]\n\
         [[listener]]\nname = \"l\"\nbind = \"127.0.0.1:0\"\n  [[listener.route]]\n  pool = \"app\"\n\
         [[pool]]\nname = \"app\"\nbalancer = \"{balancer}\"\n{line}\n\
           [[pool.backend]]\n  address = \"127.0.0.1:9001\"\n"
    );
    match terminus::config::parse(Path::new("t.toml"), &text) {
        Ok(_) => Vec::new(),
        Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
    }
}

#[test]
fn hash_keys_are_validated_with_their_position() {
    for ok in [
        "source-ip",
        "path",
        "header:X-User",
        "cookie:sid",
        "query:user_id",
    ] {
        let line = format!("hash_key = \"{ok}\"");
        assert_eq!(errors("maglev", &line), Vec::<String>::new(), "{ok}");
    }
    assert!(errors("ring-hash", "hash_bounded_load = 2").is_empty());
    let cases = [
        ("maglev", "hash_key = \"ip\"", "t.toml:12:12: unknown hash_key `ip`; expected \"source-ip\", \"path\", \"header:NAME\", \"cookie:NAME\" or \"query:NAME\""),
        ("maglev", "hash_key = \"header:bad name\"", "t.toml:12:12: `header:bad name` does not name a valid header; expected"),
        ("ring-hash", "hash_key = \"cookie:\"", "t.toml:12:12: `cookie:` does not name a valid cookie"),
        ("ring-hash", "hash_key = \"query:a&b\"", "t.toml:12:12: `query:a&b` does not name a valid query"),
        ("round-robin", "hash_key = \"path\"", "t.toml:12:12: `hash_key` needs a hashing balancer, but pool `app` uses \"round-robin\"; expected balancer = \"maglev\" or \"ring-hash\", or no `hash_key`"),
        ("random", "hash_bounded_load = 1.5", "t.toml:12:21: `hash_bounded_load` needs a hashing balancer, but pool `app` uses \"random\""),
        ("maglev", "hash_bounded_load = 1.0", "t.toml:12:21: hash_bounded_load = 1 is out of range; expected a number greater than 1"),
        ("maglev", "hash_bounded_load = nan", "t.toml:12:21: hash_bounded_load = NaN is out of range"),
        // An unknown balancer is the one error, not also its hash_key.
        ("magelv", "hash_key = \"path\"", "t.toml:11:12: unknown balancer `magelv`; expected \"round-robin\""),
    ];
    for (balancer, line, want) in cases {
        let got = errors(balancer, line);
        assert_eq!(got.len(), 1, "{line}: {got:?}");
        assert!(
            got[0].starts_with(want),
            "{line}:\n got {}\nwant {want}",
            got[0]
        );
    }
}
