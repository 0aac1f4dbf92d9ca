//! The real binary's config checking: `terminus --version`, `terminus check` on valid and
//! invalid files (each error with its exact `FILE:LINE:COL: what; hint`), the shipped examples,
//! and a bad config that must not bind anything.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;

use support::{binary, write_cert, WAIT};

/// A valid config, one key per line, so a test can swap one line and know its position.
const BASE: &str = r#"[[certificate]]
name = "site"
self_signed = ["localhost"]

[[listener]]
name = "https"
bind = "127.0.0.1:0"

  [[listener.route]]
  pool = "app"

[[pool]]
name = "app"
balancer = "round-robin"

  [[pool.backend]]
  address = "127.0.0.1:9001"
  weight = 1
"#;

/// An encrypted PKCS#8 key (a throwaway P-256 key; passphrase "x"), as `openssl pkey -aes256`
/// writes it.
const ENCRYPTED_KEY: &str = "-----BEGIN ENCRYPTED PRIVATE KEY-----
MIHsMFcGCSqGSIb3DQEFDTBKMCkGCSqGSIb3DQEFDDAcBAijTcmN07OcLAICCAAw
DAYIKoZIhvcNAgkFADAdBglghkgBZQMEASoEEBu5Qw2byR6SzfkmkGza140EgZAn
CBuBvZKyr2jM/eAuTcVRd6subZhw+mL8sL33TX94W2vmSX6P50A+stTZAMQEQmzE
zzSBAOWUnLwf/PkYehH9kUvXleP3PDWL5Ibh4NhnqAVDVMI+/AnZFXeEQ8xFAra+
JrloDACbnQuY8PRqxAupVafxGueEVZlI4F4f7cA29Uu1TXMmG502Y52g1UfjeqU=
-----END ENCRYPTED PRIVATE KEY-----
";

/// `BASE` with the given 1-based lines replaced.
fn base_with(lines: &[(usize, &str)]) -> String {
    let mut out: Vec<&str> = BASE.lines().collect();
    for &(n, text) in lines {
        out[n - 1] = text;
    }
    out.join("\n") + "\n"
}

/// Runs the binary with `args` in `cwd` and returns its output, killing it after `WAIT`.
fn run_in(cwd: &Path, args: &[&str]) -> Output {
    let child = Command::new(binary())
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(WAIT) {
        Ok(output) => output.unwrap(),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            panic!("terminus {args:?} did not exit within {WAIT:?}");
        }
    }
}

fn run(args: &[&str]) -> Output {
    run_in(Path::new(env!("CARGO_MANIFEST_DIR")), args)
}

/// Writes `text` as `dir/terminus.toml` and runs `terminus check --config` on it.
fn check(dir: &Path, text: &str) -> (PathBuf, Output) {
    let path = dir.join("terminus.toml");
    std::fs::write(&path, text).unwrap();
    let out = run(&["check", "--config", path.to_str().unwrap()]);
    (path, out)
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts that `out` failed with exit code 1 and printed `FILE:LINE:COL: what; hint` with
/// `what` containing `message` and `hint` containing `hint`.
fn assert_error(out: &Output, file: &Path, line: usize, col: usize, message: &str, hint: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(1), "stderr:\n{err}");
    assert!(!stdout(out).contains("valid"), "stdout: {}", stdout(out));
    let prefix = format!("{}:{line}:{col}: ", file.display());
    let Some(found) = err.lines().find_map(|l| l.strip_prefix(&prefix)) else {
        panic!("no line starting with `{prefix}` in stderr:\n{err}");
    };
    let (what, why) = found
        .split_once("; ")
        .unwrap_or_else(|| panic!("no `; hint` in `{found}`"));
    assert!(what.contains(message), "`{what}` lacks `{message}`");
    assert!(why.contains(hint), "hint `{why}` lacks `{hint}`");
}

/// Checks `text` and asserts exactly one error, at `line:col`.
fn assert_only_error(text: &str, line: usize, col: usize, message: &str, hint: &str) {
    let dir = tempfile::tempdir().unwrap();
    let (path, out) = check(dir.path(), text);
    assert_error(&out, &path, line, col, message, hint);
    assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
}

#[test]
fn version_prints_the_package_version() {
    let out = run(&["--version"]);
    assert!(out.status.success());
    assert_eq!(
        stdout(&out).trim(),
        format!("terminus {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn a_valid_file_passes() {
    let dir = tempfile::tempdir().unwrap();
    let (path, out) = check(dir.path(), BASE);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert_eq!(
        text.lines().next(),
        Some(
            format!(
                "{}: valid (1 listeners, 1 pools, 1 certificates)",
                path.display()
            )
            .as_str()
        )
    );
    assert!(
        text.contains("\nlistener https 127.0.0.1:0 (https, "),
        "{text}"
    );
}

/// Two listeners, routes by host and path, a sticky maglev pool with a health check and a
/// backup, a pool no listener routes to, and the operations tables (with secrets).
const SUMMARY: &str = r#"[[certificate]]
name = "site"
self_signed = ["shop.test", "*.shop.test"]

[[listener]]
name = "public"
bind = "127.0.0.1:0"
alpn = ["http/1.1"]

  [[listener.route]]
  pool = "web"

  [[listener.route]]
  host = "api.shop.test"
  path_prefix = "/v1/"
  pool = "api"

[[listener]]
name = "plain"
bind = "127.0.0.1:0"
protocol = "http"

  [[listener.route]]
  pool = "web"

[[pool]]
name = "api"
balancer = "maglev"
hash_key = "header:x-user"
hash_bounded_load = 1.25

  [pool.sticky]
  cookie = "api_backend"
  key = "c2VjcmV0LXN0aWNreS1rZXktMzItYnl0ZXMtbG9uZyE="
  max_age = "1h"

  [pool.health]
  check = "http"
  path = "/healthz"
  interval = "2s"
  rise = 2
  fall = 3

  [[pool.backend]]
  name = "api-1"
  address = "127.0.0.1:9101"
  weight = 2

  [[pool.backend]]
  name = "api-spare"
  address = "127.0.0.1:9109"
  backup = true

[[pool]]
name = "web"
balancer = "least-connections"

  [[pool.backend]]
  address = "127.0.0.1:9001"

[[pool]]
name = "unused"

  [[pool.backend]]
  address = "127.0.0.1:9201"

[admin]
bind = "127.0.0.1:0"
token = "s3cret-admin-token-0123456789"

[access_log]
format = "json"
"#;

/// The summary `check` prints after its `valid` line, each line's inner runs of spaces
/// squashed to one (its indentation kept), so tests do not depend on column widths.
fn summary_lines(out: &Output) -> Vec<String> {
    assert_eq!(out.status.code(), Some(0), "{}", stderr(out));
    stdout(out)
        .lines()
        .skip(1)
        .map(|l| {
            let body = l.trim_start();
            let indent = &l[..l.len() - body.len()];
            indent.to_string() + &body.split_whitespace().collect::<Vec<_>>().join(" ")
        })
        .collect()
}

/// Asserts that `expected` appear in `lines` in this order, each as a whole line.
fn assert_in_order(lines: &[String], expected: &[&str]) {
    let mut at = 0;
    for want in expected {
        match lines[at..].iter().position(|l| l == want) {
            Some(i) => at += i + 1,
            None => panic!("no line `{want}` after line {at} in:\n{}", lines.join("\n")),
        }
    }
}

#[test]
fn check_prints_listeners_routes_pools_and_backends() {
    let dir = tempfile::tempdir().unwrap();
    let (_, out) = check(dir.path(), SUMMARY);
    let lines = summary_lines(&out);
    assert_in_order(
        &lines,
        &[
            "listener public 127.0.0.1:0 (https, TLS intermediate, ALPN http/1.1)",
            "  certificate site (default): shop.test, *.shop.test",
            "  client auth none",
            // Most specific first, as they are tried, whatever the file's order.
            "  route api.shop.test /v1/ → pool api",
            "  route * / → pool web",
            "listener plain 127.0.0.1:0 (http)",
            "  route * / → pool web",
            "pool api: maglev, http1, 2 backends (routed by public)",
            "  hash key header:x-user, bounded load 1.25",
            "  sticky cookie api_backend; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=3600 (1h), key configured",
            "  health http GET /healthz expects 200-399, every 2s ±200ms, timeout 2s, rise 2, fall 3, starts unhealthy",
            "  retry up to 2 retries per request, budget 20% of requests + 10 per 10s",
            "  backend api-1 127.0.0.1:9101 weight=2",
            "  backend api-spare 127.0.0.1:9109 weight=1 backup",
            "pool web: least-connections, http1, 1 backend (routed by public, plain)",
            "  backend 127.0.0.1:9001 weight=1",
            "pool unused: round-robin, http1, 1 backend (not routed by any listener)",
            "  backend 127.0.0.1:9201 weight=1",
            "[admin] 127.0.0.1:0 (token: required)",
            "[access_log] stdout, json, buffer 8192 lines",
        ],
    );
}

#[test]
fn check_never_prints_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let (_, out) = check(dir.path(), SUMMARY);
    let text = stdout(&out);
    assert!(text.contains("token: required"), "{text}");
    for secret in ["c2VjcmV0LXN0aWNreS1rZXk", "s3cret-admin-token"] {
        assert!(!text.contains(secret), "`{secret}` printed:\n{text}");
    }
}

#[test]
fn check_prints_the_pools_of_the_examples() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let run_example = |name: &str| {
        let path = dir.join(name);
        summary_lines(&run(&["check", "--config", path.to_str().unwrap()]))
    };
    assert_in_order(
        &run_example("pools-and-routes.toml"),
        &[
            "listener https 127.0.0.1:8443 (https, TLS intermediate, ALPN h2,http/1.1)",
            "  route api.example.com /v2/ → pool api-v2",
            "  route api.example.com / → pool api",
            "  route *.example.com /static/ → pool static",
            "  route * / → pool web",
            "pool web: weighted-round-robin, http1, 3 backends (routed by https, http)",
            "  backend web-1 127.0.0.1:9001 weight=3",
            "  backend web-3 127.0.0.1:9003 weight=0 (no new requests)",
            "pool api-v2: performance, h2, 2 backends (routed by https)",
            "  backend [::1]:9202 weight=1",
        ],
    );
    assert_in_order(
        &run_example("failover-and-persistence.toml"),
        &[
            "pool shop: least-connections, http1, 3 backends (routed by https)",
            "  outlier 5 consecutive failures eject for 30s × n (at most 5m), at most 50% of backends",
            "  slow start 30s",
            "  backend shop-standby 127.0.0.1:9009 weight=1 backup",
            "pool catalog: maglev, http1, 3 backends (routed by https)",
            "  hash key path, bounded load 1.25",
            "  health tcp, every 5s ±500ms, timeout 2s, rise 2, fall 3, starts unhealthy",
        ],
    );
}

#[test]
fn check_needs_a_config_file() {
    let out = run(&["check"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("`check` needs --config FILE"));
}

#[test]
fn every_example_passes_check() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let out = run(&["check", "--config", path.to_str().unwrap()]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}:\n{}",
            path.display(),
            stderr(&out)
        );
        assert!(stdout(&out).contains(": valid ("), "{}", stdout(&out));
        checked += 1;
    }
    assert!(checked >= 3, "only {checked} examples in {}", dir.display());
}

#[test]
fn relative_cert_paths_are_relative_to_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("certs")).unwrap();
    write_cert(&dir.path().join("certs"), "site", &["localhost"]);
    let text = base_with(&[
        (3, "cert = \"certs/site.pem\""),
        (4, "key = \"certs/site.key\""),
    ]);
    let path = dir.path().join("terminus.toml");
    std::fs::write(&path, text).unwrap();
    // Run from elsewhere: the paths must not depend on the working directory.
    let elsewhere = tempfile::tempdir().unwrap();
    let out = run_in(
        elsewhere.path(),
        &["check", "--config", path.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn unknown_key_is_an_error() {
    assert_only_error(
        &base_with(&[(14, "balancr = \"round-robin\"")]),
        14,
        1,
        "unknown key `balancr`",
        "`balancer`",
    );
}

#[test]
fn bad_bind_address_is_an_error() {
    assert_only_error(
        &base_with(&[(7, "bind = \"127.0.0.1\"")]),
        7,
        8,
        "`127.0.0.1` is not a bind address",
        "0.0.0.0:443",
    );
}

#[test]
fn bad_backend_addresses_are_errors() {
    for (address, message) in [
        ("not an address", "`not an address` has no port"),
        ("127.0.0.1", "`127.0.0.1` has no port"),
        ("127.0.0.1:0", "`127.0.0.1:0` has port 0"),
        ("300.1.2.3:80", "`300.1.2.3:80` is not a valid address"),
    ] {
        let line = format!("  address = \"{address}\"");
        assert_only_error(
            &base_with(&[(17, &line)]),
            17,
            13,
            message,
            "127.0.0.1:8080",
        );
    }
}

#[test]
fn missing_cert_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let text = base_with(&[(3, "cert = \"missing.pem\""), (4, "key = \"missing.key\"")]);
    let (path, out) = check(dir.path(), &text);
    let missing = dir.path().join("missing.pem");
    let message = format!("cannot read {}", missing.display());
    assert_error(&out, &path, 3, 8, &message, "PEM certificate chain");
}

#[test]
fn key_of_another_certificate_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    write_cert(dir.path(), "a", &["a.test"]);
    write_cert(dir.path(), "b", &["b.test"]);
    let text = base_with(&[(3, "cert = \"a.pem\""), (4, "key = \"b.key\"")]);
    let (path, out) = check(dir.path(), &text);
    assert_error(
        &out,
        &path,
        4,
        7,
        "does not match the certificate",
        "the private key of the leaf certificate",
    );
}

#[test]
fn encrypted_key_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    write_cert(dir.path(), "a", &["a.test"]);
    std::fs::write(dir.path().join("enc.key"), ENCRYPTED_KEY).unwrap();
    let text = base_with(&[(3, "cert = \"a.pem\""), (4, "key = \"enc.key\"")]);
    let (path, out) = check(dir.path(), &text);
    assert_error(&out, &path, 4, 7, "holds an encrypted key", "openssl pkey");
}

#[test]
fn missing_or_non_der_ocsp_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    write_cert(dir.path(), "a", &["a.test"]);
    std::fs::write(dir.path().join("pem.der"), "MAMKAQE=\n").unwrap();
    std::fs::write(dir.path().join("cut.der"), [0x30, 0x10, 0x0a, 0x01]).unwrap();
    for (file, message) in [
        ("missing.der", "cannot read".to_string()),
        (
            "pem.der",
            format!(
                "{} is not a DER OCSP response",
                dir.path().join("pem.der").display()
            ),
        ),
        (
            "cut.der",
            "the SEQUENCE says 16 bytes but 2 follow".to_string(),
        ),
    ] {
        let keys = format!("key = \"a.key\"\nocsp = \"{file}\"");
        let text = base_with(&[(3, "cert = \"a.pem\""), (4, &keys)]);
        let (path, out) = check(dir.path(), &text);
        assert_error(&out, &path, 5, 8, &message, "DER OCSP response");
        // One error; the other line is the warning about the key file's mode.
        let at = format!("{}:", path.display());
        let errors = stderr(&out).lines().filter(|l| l.starts_with(&at)).count();
        assert_eq!(errors, 1, "{}", stderr(&out));
    }
    // A self-signed certificate has no CA to answer OCSP.
    std::fs::write(dir.path().join("ok.der"), [0x30, 0x03, 0x0a, 0x01, 0x01]).unwrap();
    let text = base_with(&[(4, "ocsp = \"ok.der\"")]);
    let (path, out) = check(dir.path(), &text);
    assert_error(
        &out,
        &path,
        4,
        8,
        "staples `ocsp` on a self-signed",
        "`cert` and `key` files",
    );
    let text = base_with(&[
        (3, "cert = \"a.pem\""),
        (4, "key = \"a.key\"\nocsp = \"ok.der\""),
    ]);
    let (_, out) = check(dir.path(), &text);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn route_to_a_missing_pool_is_an_error() {
    assert_only_error(
        &base_with(&[(10, "  pool = \"nope\"")]),
        10,
        10,
        "route to pool `nope`, which does not exist",
        "expected one of: app",
    );
}

#[test]
fn duplicate_names_are_errors_each_at_its_place() {
    let text = format!(
        r#"{BASE}
[[certificate]]
name = "site"
self_signed = ["localhost"]

[[listener]]
name = "https"
bind = "127.0.0.1:0"
  [[listener.route]]
  pool = "app"

[[pool]]
name = "app"
  [[pool.backend]]
  address = "127.0.0.1:9002"
"#
    );
    let dir = tempfile::tempdir().unwrap();
    let (path, out) = check(dir.path(), &text);
    assert_error(
        &out,
        &path,
        21,
        8,
        "duplicate certificate name `site`",
        "line 2, column 8",
    );
    assert_error(
        &out,
        &path,
        25,
        8,
        "duplicate listener name `https`",
        "line 6, column 8",
    );
    assert_error(
        &out,
        &path,
        31,
        8,
        "duplicate pool name `app`",
        "line 13, column 8",
    );
    // All three, in the order of their position.
    let lines: Vec<String> = stderr(&out).lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(lines[0].contains(":21:8:") && lines[2].contains(":31:8:"));
}

#[test]
fn unknown_balancer_is_an_error() {
    assert_only_error(
        &base_with(&[(14, "balancer = \"fastest\"")]),
        14,
        12,
        "unknown balancer `fastest`",
        "\"least-response-time\"",
    );
}

#[test]
fn bad_durations_are_errors() {
    let bad_unit = format!("{BASE}\n[timeouts]\nconnect = \"5 parsecs\"\n");
    assert_only_error(
        &bad_unit,
        21,
        11,
        "`5 parsecs` is not a duration",
        "\"500ms\"",
    );
    let zero = base_with(&[(15, "timeouts.response = \"0s\"")]);
    assert_only_error(&zero, 15, 21, "a zero duration is not allowed", "\"5s\"");
    let not_a_string = format!("{BASE}\n[global]\ngrace_period = 5\n");
    assert_only_error(
        &not_a_string,
        21,
        16,
        "invalid type: integer `5`",
        "a string",
    );
}

#[test]
fn weight_out_of_range_is_an_error() {
    for weight in ["1001", "-1"] {
        let line = format!("  weight = {weight}");
        assert_only_error(
            &base_with(&[(18, &line)]),
            18,
            12,
            &format!("weight = {weight} is out of range"),
            "an integer from 0 to 1000",
        );
    }
}

#[test]
fn syntax_error_is_one_line_with_a_hint() {
    assert_only_error(
        &base_with(&[(13, "name = app")]),
        13,
        8,
        "invalid string",
        "expected",
    );
}

#[test]
fn a_bad_config_starts_nothing() {
    let port = {
        let reserved = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        reserved.local_addr().unwrap().port()
    };
    let bind = format!("bind = \"127.0.0.1:{port}\"");
    let text = base_with(&[(7, &bind), (18, "  weight = 1001")]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("terminus.toml");
    std::fs::write(&path, text).unwrap();
    let out = run(&["--config", path.to_str().unwrap()]);
    assert_error(
        &out,
        &path,
        18,
        12,
        "weight = 1001 is out of range",
        "0 to 1000",
    );
    assert!(stderr(&out).contains("is not valid; nothing was started"));
    assert!(
        !stdout(&out).lines().any(|l| l.starts_with("listening")),
        "{}",
        stdout(&out)
    );
    TcpListener::bind((Ipv4Addr::LOCALHOST, port)).expect("the listener's port is free");
}

/// `BASE` with `block` inserted after its 1-based line `after`.
fn base_inserting(after: usize, block: &str) -> String {
    let mut out: Vec<&str> = BASE.lines().collect();
    for (i, l) in block.lines().enumerate() {
        out.insert(after + i, l);
    }
    out.join("\n") + "\n"
}

/// The errors of the failover, persistence and TLS tables, each at its key's position.
#[test]
fn failover_persistence_and_tls_errors_point_at_their_keys() {
    // (insert after line, block, line, column, message, hint)
    let cases: [(usize, &str, usize, usize, &str, &str); 11] = [
        (
            15,
            "  [pool.health]\n  check = \"ping\"",
            17,
            11,
            "unknown health check `ping`",
            "\"tcp\", \"http\", \"https\" or \"tls\"",
        ),
        (
            15,
            "  [pool.sticky]\n  key = \"c2hvcnQ=\"",
            17,
            9,
            "the cookie key is not 32 bytes of base64",
            "openssl rand -base64 32",
        ),
        (
            15,
            "hash_key = \"path\"",
            16,
            12,
            "`hash_key` needs a hashing balancer",
            "balancer = \"maglev\" or \"ring-hash\"",
        ),
        (
            15,
            "  [pool.outlier]\n  max_ejection_percent = 0",
            17,
            26,
            "max_ejection_percent = 0 is out of range",
            "from 1 to 100",
        ),
        (
            15,
            "  [pool.tls]\n  alpn = [\"spdy\"]",
            17,
            10,
            "unknown ALPN protocol `spdy`",
            "alpn = [\"h2\"] with protocol = \"h2\"",
        ),
        (
            15,
            "  [pool.tls]\n  ca = \"missing.pem\"",
            17,
            8,
            "missing.pem: No such file",
            "a PEM file of one or more CA certificates",
        ),
        (
            7,
            "  [listener.client_auth]\n  mode = \"sometimes\"",
            9,
            10,
            "unknown client_auth mode `sometimes`",
            "\"none\", \"optional\" or \"required\"",
        ),
        (
            7,
            "  [listener.client_auth]\n  mode = \"required\"",
            8,
            3,
            "names no `ca`",
            "ca = \"path/to/client-ca.pem\"",
        ),
        (
            7,
            "  [listener.resumption]\n  ticket_lifetime = \"8d\"",
            9,
            21,
            "longer than 7 days",
            "at most \"7d\"",
        ),
        (
            7,
            "accept_proxy_protocol = [\"not-a-net\"]",
            8,
            25,
            "`not-a-net` is not an IP network",
            "such as \"10.0.0.0/8\"",
        ),
        (
            7,
            "protocol = \"tcp\"\n  [[listener.route]]\n  host = \"a.test\"\n  pool = \"app\"",
            10,
            10,
            "`host` is set on a route of a tcp listener",
            "a route with only `pool`",
        ),
    ];
    for (after, block, line, col, message, hint) in cases {
        let dir = tempfile::tempdir().unwrap();
        let mut text = base_inserting(after, block);
        if block.contains("listener.route") {
            // The inserted route replaces the listener's own.
            text = text.replacen("\n  [[listener.route]]\n  pool = \"app\"\n", "\n", 1);
        }
        let (path, out) = check(dir.path(), &text);
        assert_error(&out, &path, line, col, message, hint);
    }
}

/// The errors of resumption keys, CRLs, `[pool.tls]`, PROXY protocol and passthrough
/// listeners, each at its key's position. Files are named relative to the config file.
#[test]
fn key_file_crl_upstream_tls_and_l4_errors_point_at_their_keys() {
    let dir = tempfile::tempdir().unwrap();
    write_cert(dir.path(), "a", &["a.test"]);
    write_cert(dir.path(), "b", &["b.test"]);
    std::fs::write(dir.path().join("bad.key"), "not base64!\n").unwrap();
    // (insert after line, block, line, column, message, hint)
    let cases: [(usize, &str, usize, usize, &str, &str); 9] = [
        (
            7,
            "  [listener.resumption]\n  ticket_key_file = \"missing.key\"",
            9,
            21,
            "cannot read",
            "openssl rand -base64 48",
        ),
        (
            7,
            "  [listener.resumption]\n  ticket_key_file = \"bad.key\"",
            9,
            21,
            "bad.key line 1: not base64",
            "base64 of 32+ random bytes",
        ),
        (
            7,
            "  [listener.resumption]\n  ticket_lifetime = \"7d\"\n  rotate_every = \"1m\"",
            10,
            18,
            "rotate_every `1m` is too short",
            "at least ticket_lifetime / 168",
        ),
        (
            7,
            "  [listener.client_auth]\n  mode = \"required\"\n  ca = \"a.pem\"\n  crl = [\"a.pem\"]",
            11,
            9,
            "a.pem holds no X509 CRL block",
            "-----BEGIN X509 CRL-----",
        ),
        (
            15,
            "  [pool.tls]\n  certificate = \"a.pem\"",
            17,
            17,
            "needs both `certificate` and `key`",
            "or neither",
        ),
        (
            15,
            "  [pool.tls]\n  certificate = \"a.pem\"\n  key = \"b.key\"",
            18,
            9,
            "b.key does not match the certificate",
            "the private key of the leaf certificate",
        ),
        (
            15,
            "  [pool.tls]\n  ca = \"a.pem\"\n  insecure_skip_verify = true",
            17,
            8,
            "`ca` and `insecure_skip_verify = true` contradict each other",
            "insecure_skip_verify = true alone",
        ),
        (
            15,
            "proxy_protocol = \"v3\"",
            16,
            18,
            "unknown proxy_protocol `v3`",
            "\"v1\" or \"v2\"",
        ),
        (
            7,
            "protocol = \"tls-passthrough\"\ntls_policy = \"modern\"",
            9,
            14,
            "`tls_policy` is set on a tls-passthrough listener",
            "or remove the key",
        ),
    ];
    for (after, block, line, col, message, hint) in cases {
        let (path, out) = check(dir.path(), &base_inserting(after, block));
        assert_error(&out, &path, line, col, message, hint);
    }
}
