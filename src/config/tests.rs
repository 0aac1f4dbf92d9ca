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
