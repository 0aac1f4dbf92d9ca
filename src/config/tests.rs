//! Validation messages that the integration tests in tests/check.rs do not reach.

use std::path::Path;

use super::parse;

const BASE: &str = r#"[[certificate]]
name = "site"
self_signed = ["localhost"]

[[listener]]
name = "web"
bind = "127.0.0.1:0"

  [[listener.route]]
  pool = "app"

[[pool]]
name = "app"

  [[pool.backend]]
  address = "127.0.0.1:9001"
"#;

/// The errors of `text` as printed, one per line.
fn errors(text: &str) -> Vec<String> {
    match parse(Path::new("t.toml"), text) {
        Ok(_) => Vec::new(),
        Err(e) => e.to_string().lines().map(str::to_owned).collect(),
    }
}

#[test]
fn unknown_key_names_are_quoted_as_written() {
    let text = BASE.replace("name = \"app\"\n", "name = \"app\"\nmyfield = 1\n");
    let e = errors(&text);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].starts_with("t.toml:14:1: unknown key `myfield`; expected one of `name`"));
}

#[test]
fn type_errors_use_toml_words() {
    let text = BASE.replace("[\"localhost\"]", "\"localhost\"");
    assert_eq!(
        errors(&text),
        ["t.toml:3:15: invalid type: string \"localhost\"; expected an array"]
    );
    let text = format!("{BASE}[global]\nworkers = \"4\"\n");
    assert_eq!(
        errors(&text),
        ["t.toml:18:11: invalid type: string \"4\"; expected an integer"]
    );
}

#[test]
fn syntax_errors_are_one_line() {
    let e = errors(&format!("[global\n{BASE}"));
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].starts_with("t.toml:1:8: invalid table header; expected "));
}

#[test]
fn certificates_on_a_plain_http_listener_are_refused() {
    let text = BASE.replace(
        "bind = \"127.0.0.1:0\"\n",
        "bind = \"127.0.0.1:0\"\nprotocol = \"http\"\ncertificates = [\"site\"]\n",
    );
    let e = errors(&text);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].starts_with("t.toml:9:17: `certificates` is set on a plain http listener"));
}

#[test]
fn self_signed_and_files_together_are_refused() {
    let text = BASE.replace("name = \"site\"\n", "name = \"site\"\ncert = \"a.pem\"\n");
    let e = errors(&text);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].starts_with("t.toml:4:15: certificate `site` sets both `self_signed` and"));
}

#[test]
fn a_route_without_any_pool_says_so() {
    let text = BASE.split("[[pool]]").next().unwrap_or_default();
    assert_eq!(
        errors(text),
        ["t.toml:10:10: route to pool `app`, which does not exist; expected the name of a [[pool]] table, but none is defined"]
    );
}

fn with_health(keys: &str) -> String {
    BASE.replace(
        "name = \"app\"\n",
        &format!("name = \"app\"\n[pool.health]\n{keys}\n"),
    )
}

#[test]
fn health_table_is_validated() {
    let cases = [
        ("check = \"ping\"", "t.toml:15:9: unknown health check `ping`; expected check = \"tcp\", \"http\", \"https\" or \"tls\""),
        ("check = \"tcp\"\npath = \"/x\"", "t.toml:16:8: `path` does not apply to a tcp check"),
        ("check = \"http\"\nexpect_status = \"200-99\"", "t.toml:16:17: `200-99` is not a status or status range"),
        ("check = \"http\"\npath = \"healthz\"", "t.toml:16:8: `healthz` is not a request path"),
        ("check = \"http\"\nrise = 0", "t.toml:16:8: rise = 0 is out of range; expected an integer from 1 to 100"),
        ("check = \"tls\"\ninitial = \"maybe\"", "t.toml:16:11: unknown initial state `maybe`"),
    ];
    for (keys, want) in cases {
        let e = errors(&with_health(keys));
        assert_eq!(e.len(), 1, "{keys}: {e:?}");
        assert!(e[0].starts_with(want), "{keys}: {e:?}");
    }
}

#[test]
fn health_defaults() {
    let config = parse(Path::new("t.toml"), &with_health("check = \"http\"")).unwrap();
    let h = config.pools[0].health.as_ref().unwrap();
    assert_eq!(h.interval, std::time::Duration::from_secs(5));
    assert_eq!(h.jitter, std::time::Duration::from_millis(500));
    assert_eq!((h.rise, h.fall, h.initially_healthy), (2, 3, false));
    assert!(
        matches!(&h.probe, super::HealthProbe::Http(p) if p.path == "/" && p.status == (200..=399))
    );
}

fn with_pool_table(table: &str, keys: &str) -> String {
    BASE.replace(
        "name = \"app\"\n",
        &format!("name = \"app\"\n[pool.{table}]\n{keys}\n"),
    )
}

#[test]
fn sticky_and_retry_tables_are_validated() {
    let cases = [
        ("sticky", "key = \"c2hvcnQ=\"", "t.toml:15:7: the cookie key is not 32 bytes of base64; expected 32 random bytes in base64"),
        ("sticky", "cookie = \"a b\"", "t.toml:15:10: `a b` is not a cookie name"),
        ("sticky", "same_site = \"sometimes\"", "t.toml:15:13: unknown same_site `sometimes`; expected \"lax\", \"strict\" or \"none\""),
        ("sticky", "key = \"MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\"\nkey_file = \"k\"", "t.toml:16:12: both `key` and `key_file` are set"),
        ("sticky", "key_file = \"missing.key\"", "t.toml:15:12: cannot read missing.key"),
        ("sticky", "max_age = \"forever\"", "t.toml:15:11: `forever` is not a duration"),
        ("retry", "attempts = 11", "t.toml:15:12: attempts = 11 is out of range; expected an integer from 0 to 10"),
        ("retry", "budget_percent = 101", "t.toml:15:18: budget_percent = 101 is out of range"),
    ];
    for (table, keys, want) in cases {
        let e = errors(&with_pool_table(table, keys));
        assert_eq!(e.len(), 1, "{keys}: {e:?}");
        assert!(e[0].starts_with(want), "{keys}: {e:?}");
    }
}

#[test]
fn watch_is_off_by_default_and_collects_every_named_file() {
    let off = parse(Path::new("t.toml"), BASE).unwrap();
    assert_eq!(off.watch, None);
    assert_eq!(off.watched_files, [Path::new("t.toml")]);

    let dir = tempfile::tempdir().unwrap();
    let pem = crate::tls::certs::generate_self_signed(&["localhost".into()]).unwrap();
    std::fs::write(dir.path().join("c.pem"), &pem.cert_pem).unwrap();
    std::fs::write(dir.path().join("c.key"), &pem.key_pem).unwrap();
    let text = BASE.replace(
        "self_signed = [\"localhost\"]",
        "cert = \"c.pem\"\nkey = \"c.key\"",
    );
    let config = dir.path().join("t.toml");
    let on = parse(&config, &format!("[global]\nwatch = \"250ms\"\n{text}")).unwrap();
    assert_eq!(on.watch, Some(std::time::Duration::from_millis(250)));
    let mut want = vec![dir.path().join("c.key"), dir.path().join("c.pem"), config];
    want.sort();
    assert_eq!(on.watched_files, want);
}

#[test]
fn keepalive_may_not_outlast_the_header_deadline() {
    let text = |t: &str| {
        format!(
            "[timeouts]\n{t}\n[[listener]]\nname = \"l\"\nbind = \"127.0.0.1:0\"\nprotocol = \"http\"\n[[listener.route]]\npool = \"p\"\n[[pool]]\nname = \"p\"\n[[pool.backend]]\naddress = \"127.0.0.1:9\"\n"
        )
    };
    let path = std::path::Path::new("t.toml");
    let c = crate::config::parse(path, &text("client_header = \"20s\"")).unwrap();
    assert_eq!(c.timeouts.keepalive, std::time::Duration::from_secs(20));
    let c = crate::config::parse(path, &text("keepalive = \"5s\"")).unwrap();
    assert_eq!(c.timeouts.keepalive, std::time::Duration::from_secs(5));
    let e = crate::config::parse(path, &text("client_header = \"10s\"\nkeepalive = \"1m\""))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("t.toml:3:13: keepalive (1m) is longer than client_header (10s)"),
        "{e}"
    );
}
