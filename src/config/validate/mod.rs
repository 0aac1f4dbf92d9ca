//! Validation: turns the file structs into runtime types, collecting every error with its
//! position, so terminus never starts on a half-valid config. Pools and listeners are
//! validated in their own files.

mod ca;
mod certificate;
mod client_auth;
mod health;
mod l4;
mod listener;
mod operations;
mod outlier;
mod pool;
mod resumption;
mod sticky;
mod upstream_tls;

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use super::error::{toml_error, ConfigError, ConfigErrors, Locator};
use super::file::*;
use super::*;

const DURATION_HINT: &str = "expected a duration such as \"500ms\", \"5s\" or \"2m\"";
pub const NAME_HINT: &str = "expected 1 to 64 letters, digits, '-', '_' or '.'";

/// Reads and validates a config file.
pub fn load_file(path: &Path) -> Result<Config, ConfigErrors> {
    let source = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            file: path.to_path_buf(),
            line: 1,
            column: 1,
            message: format!("cannot read the config file: {e}"),
            hint: "expected a readable TOML file".into(),
        }])
    })?;
    parse(path, &source)
}

/// Validates config text; `path` names the file in errors and anchors relative paths.
pub fn parse(path: &Path, source: &str) -> Result<Config, ConfigErrors> {
    let loc = Locator::new(path, source);
    let file: FileConfig =
        toml::from_str(source).map_err(|e| ConfigErrors(vec![toml_error(&loc, &e)]))?;
    let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut v = Validator {
        loc,
        base_dir,
        errors: Vec::new(),
        watched: vec![path.to_path_buf()],
    };
    let config = v.config(&file);
    if v.errors.is_empty() {
        if let Some(config) = config {
            return Ok(config);
        }
    }
    v.errors.sort_by_key(|e| (e.line, e.column));
    v.errors.dedup();
    Err(ConfigErrors(v.errors))
}

/// Whether `s` may name a listener, pool, backend or certificate: 1 to 64 letters, digits,
/// '-', '_' or '.', so names are safe in logs, metrics labels and headers.
pub fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// The hint for a name that refers to nothing: the names there are, or the table to add.
fn one_of(names: &[&str], table: &str) -> String {
    if names.is_empty() {
        format!("expected the name of a {table} table, but none is defined")
    } else {
        format!("expected one of: {}", names.join(", "))
    }
}

struct Validator<'a> {
    loc: Locator<'a>,
    base_dir: PathBuf,
    errors: Vec<ConfigError>,
    /// Every file path the config names, for `Config::watched_files`.
    watched: Vec<PathBuf>,
}

impl Validator<'_> {
    fn err(&mut self, span: Range<usize>, message: impl Into<String>, hint: impl Into<String>) {
        let e = self.loc.error(span, message, hint);
        self.errors.push(e);
    }

    fn config(&mut self, f: &FileConfig) -> Option<Config> {
        let workers = f
            .global
            .workers
            .as_ref()
            .and_then(|w| self.int_in(w, 1, 1024, "workers"))
            .map(|w| w as usize);
        let grace_period = self.duration(&f.global.grace_period, Duration::from_secs(30));
        let watch = f
            .global
            .watch
            .is_some()
            .then(|| self.duration(&f.global.watch, Duration::from_secs(2)));
        let t = &f.timeouts;
        let timeouts = ClientTimeouts {
            tls_handshake: self.duration(&t.tls_handshake, Duration::from_secs(10)),
            client_header: self.duration(&t.client_header, Duration::from_secs(30)),
            client_body: self.duration(&t.client_body, Duration::from_secs(60)),
            client_send: self.duration(&t.client_send, Duration::from_secs(60)),
            keepalive: Duration::ZERO,
        };
        let mut timeouts = timeouts;
        timeouts.keepalive = self.duration(&t.keepalive, timeouts.client_header);
        if let Some(k) = t
            .keepalive
            .as_ref()
            .filter(|_| timeouts.keepalive > timeouts.client_header)
        {
            self.err(
                k.span(),
                format!(
                    "keepalive ({}) is longer than client_header ({})",
                    humantime::format_duration(timeouts.keepalive),
                    humantime::format_duration(timeouts.client_header)
                ),
                "expected at most client_header: its deadline also covers an HTTP/1.1 connection's wait for the next request",
            );
        }
        let limits = self.limits(&f.limits);
        let connect = self.duration(&t.connect, Duration::from_secs(5));
        let upstream = UpstreamTimeouts {
            connect,
            response: self.duration(&t.response, Duration::from_secs(60)),
            upstream_idle: self.duration(&t.upstream_idle, Duration::from_secs(90)),
            // As HAProxy's `timeout queue`: the connect timeout unless set.
            queue: self.duration(&t.queue, connect),
        };
        let certificates = self.certificates(&f.certificates);
        let mut pools = self.pools(&f.pools, upstream);
        for p in &mut pools {
            p.max_response_header_bytes = limits.max_response_header_bytes;
            p.max_response_headers = limits.max_response_headers;
        }
        let pool_names: Vec<&str> = f.pools.iter().map(|p| p.name.get_ref().as_str()).collect();
        let cert_names: Vec<&str> = f
            .certificates
            .iter()
            .map(|c| c.name.get_ref().as_str())
            .collect();
        let listeners = self.listeners(&f.listeners, &cert_names, &pool_names);
        self.proxy_protocol_users(f, &listeners, &pools);
        if f.listeners.is_empty() {
            self.err(
                0..0,
                "no listener is configured",
                "add a [[listener]] table with a name, a bind address and a route",
            );
        }
        let admin = f.admin.as_ref().map(|a| self.admin(a));
        let access_log = f.access_log.as_ref().map(|a| self.access_log(a));
        let mut watched_files = std::mem::take(&mut self.watched);
        watched_files.sort();
        watched_files.dedup();
        Some(Config {
            workers,
            grace_period,
            watch,
            watched_files,
            timeouts,
            limits,
            certificates: certificates.into_iter().collect::<Option<Vec<_>>>()?,
            listeners,
            pools,
            admin,
            access_log,
        })
    }

    fn duration(&mut self, value: &Option<Spanned<String>>, default: Duration) -> Duration {
        let Some(v) = value else { return default };
        match humantime::parse_duration(v.get_ref()) {
            Ok(d) if !d.is_zero() => d,
            Ok(_) => {
                self.err(v.span(), "a zero duration is not allowed", DURATION_HINT);
                default
            }
            Err(e) => {
                self.err(
                    v.span(),
                    format!("`{}` is not a duration ({e})", v.get_ref()),
                    DURATION_HINT,
                );
                default
            }
        }
    }

    /// An optional integer in `min..=max`, or `default` when absent (or out of range, which
    /// is reported).
    fn int_or(
        &mut self,
        v: &Option<Spanned<i64>>,
        min: i64,
        max: i64,
        key: &str,
        default: u32,
    ) -> u32 {
        v.as_ref()
            .and_then(|v| self.int_in(v, min, max, key))
            .map_or(default, |n| n as u32)
    }

    fn int_in(&mut self, v: &Spanned<i64>, min: i64, max: i64, key: &str) -> Option<i64> {
        let n = *v.get_ref();
        if (min..=max).contains(&n) {
            Some(n)
        } else {
            self.err(
                v.span(),
                format!("{key} = {n} is out of range"),
                format!("expected an integer from {min} to {max}"),
            );
            None
        }
    }

    fn name(&mut self, v: &Spanned<String>, kind: &str) {
        let s = v.get_ref();
        if !valid_name(s) {
            self.err(
                v.span(),
                format!("`{s}` is not a valid {kind} name"),
                NAME_HINT,
            );
        }
    }

    fn unique<'n>(&mut self, kind: &str, names: impl Iterator<Item = &'n Spanned<String>>) {
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for n in names {
            if let Some(first) = seen.get(n.get_ref().as_str()) {
                let (line, col) = self.loc.line_col(*first);
                self.err(
                    n.span(),
                    format!("duplicate {kind} name `{}`", n.get_ref()),
                    format!(
                        "expected a name not used before (first used at line {line}, column {col})"
                    ),
                );
            } else {
                seen.insert(n.get_ref(), n.span().start);
            }
        }
    }

    /// Resolves a path the config names (relative to the config file's directory) and
    /// records it for the file watch.
    fn path(&mut self, p: &str) -> PathBuf {
        let p = Path::new(p);
        let path = if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        };
        self.watched.push(path.clone());
        path
    }
}
