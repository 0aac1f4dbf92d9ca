//! Validation of the operations tables: `[admin]` and `[access_log]`.

use std::net::SocketAddr;

use super::Validator;
use crate::config::file::*;
use crate::config::*;

impl Validator<'_> {
    pub(super) fn admin(&mut self, a: &FileAdmin) -> AdminSpec {
        let bind = match &a.bind {
            None => SocketAddr::from(([127, 0, 0, 1], 9090)),
            Some(b) => b.get_ref().parse::<SocketAddr>().unwrap_or_else(|_| {
                self.err(
                    b.span(),
                    format!("`{}` is not a bind address", b.get_ref()),
                    "expected an IP address and port such as 127.0.0.1:9090",
                );
                SocketAddr::from(([127, 0, 0, 1], 0))
            }),
        };
        let token = match (&a.token, &a.token_file) {
            (Some(t), Some(_)) => {
                self.err(
                    t.span(),
                    "both `token` and `token_file` are set",
                    "expected one of them",
                );
                None
            }
            (Some(t), None) => self.token(t.get_ref(), t.span()),
            (None, Some(f)) => {
                let path = self.path(f.get_ref());
                match std::fs::read_to_string(&path) {
                    Ok(text) => self.token(text.trim(), f.span()),
                    Err(e) => {
                        self.err(
                            f.span(),
                            format!("cannot read the token file {}: {e}", path.display()),
                            "expected a readable file holding the admin token",
                        );
                        None
                    }
                }
            }
            (None, None) => None,
        };
        let no_token = a.token.is_none() && a.token_file.is_none();
        if no_token && !bind.ip().is_loopback() {
            let span = a.bind.as_ref().map_or(0..0, |b| b.span());
            self.err(
                span,
                format!("the admin listener binds {bind}, which is not loopback, without a token"),
                "expected `token` or `token_file` in [admin], or a loopback bind such as 127.0.0.1:9090",
            );
        }
        AdminSpec { bind, token }
    }

    fn token(&mut self, t: &str, span: std::ops::Range<usize>) -> Option<AdminToken> {
        let ok = t.len() >= 16 && t.bytes().all(|b| b.is_ascii_graphic());
        if !ok {
            self.err(
                span,
                "the admin token is too short or holds spaces or control characters",
                "expected at least 16 printable ASCII characters without spaces",
            );
            return None;
        }
        Some(AdminToken(t.to_owned()))
    }

    pub(super) fn access_log(&mut self, a: &FileAccessLog) -> AccessLogSpec {
        let target = match a.path.as_ref() {
            None => LogTarget::Stdout,
            Some(p) if p.get_ref() == "stdout" || p.get_ref() == "-" => LogTarget::Stdout,
            Some(p) => {
                let path = self.path(p.get_ref());
                // The watch must not reload on every line written, so the log is not watched.
                self.watched.retain(|w| w != &path);
                let dir_ok = path
                    .parent()
                    .is_none_or(|d| d.as_os_str().is_empty() || d.is_dir());
                if !dir_ok || path.is_dir() {
                    self.err(
                        p.span(),
                        format!("cannot write the access log {}", path.display()),
                        "expected \"stdout\" or a file path in an existing directory",
                    );
                }
                LogTarget::File(path)
            }
        };
        let format = match a.format.as_ref().map(|f| (f.get_ref().as_str(), f.span())) {
            None | Some(("text", _)) => LogFormat::Text,
            Some(("json", _)) => LogFormat::Json,
            Some((other, span)) => {
                self.err(
                    span,
                    format!("unknown access log format `{other}`"),
                    "expected \"text\" or \"json\"",
                );
                LogFormat::Text
            }
        };
        let buffer = a
            .buffer
            .as_ref()
            .and_then(|b| self.int_in(b, 16, 1_000_000, "buffer"))
            .map_or(8192, |n| n as usize);
        AccessLogSpec {
            target,
            format,
            buffer,
        }
    }
}

impl Validator<'_> {
    /// `[limits]`, each key within a range that keeps terminus safe and useful.
    pub(super) fn limits(&mut self, f: &FileLimits) -> Limits {
        let d = Limits::default();
        let mut n =
            |v: &Option<toml::Spanned<i64>>, min: i64, max: i64, key: &str, default: u64| {
                v.as_ref()
                    .and_then(|v| self.int_in(v, min, max, key))
                    .map_or(default, |n| n as u64)
            };
        const MIB: i64 = 1024 * 1024;
        let max_body_bytes = f
            .max_body_bytes
            .is_some()
            .then(|| n(&f.max_body_bytes, 1, i64::MAX, "max_body_bytes", 0));
        let per_client = f.max_connections_per_client.is_some().then(|| {
            n(
                &f.max_connections_per_client,
                1,
                1_000_000,
                "max_connections_per_client",
                0,
            ) as usize
        });
        Limits {
            max_header_bytes: n(
                &f.max_header_bytes,
                1024,
                16 * MIB,
                "max_header_bytes",
                d.max_header_bytes as u64,
            ) as usize,
            max_headers: n(
                &f.max_headers,
                8,
                10_000,
                "max_headers",
                d.max_headers as u64,
            ) as usize,
            max_uri_bytes: n(
                &f.max_uri_bytes,
                64,
                MIB,
                "max_uri_bytes",
                d.max_uri_bytes as u64,
            ) as usize,
            max_body_bytes,
            max_connections: n(
                &f.max_connections,
                1,
                10_000_000,
                "max_connections",
                d.max_connections as u64,
            ) as usize,
            max_connections_per_client: per_client,
            h2_max_concurrent_streams: n(
                &f.h2_max_concurrent_streams,
                1,
                10_000,
                "h2_max_concurrent_streams",
                u64::from(d.h2_max_concurrent_streams),
            ) as u32,
            h2_max_header_list_bytes: n(
                &f.h2_max_header_list_bytes,
                1024,
                16 * MIB,
                "h2_max_header_list_bytes",
                u64::from(d.h2_max_header_list_bytes),
            ) as u32,
            h2_max_pending_reset_streams: n(
                &f.h2_max_pending_reset_streams,
                1,
                100_000,
                "h2_max_pending_reset_streams",
                d.h2_max_pending_reset_streams as u64,
            ) as usize,
            h2_max_local_error_reset_streams: n(
                &f.h2_max_local_error_reset_streams,
                1,
                1_000_000,
                "h2_max_local_error_reset_streams",
                d.h2_max_local_error_reset_streams as u64,
            ) as usize,
            max_response_header_bytes: n(
                &f.max_response_header_bytes,
                8192,
                16 * MIB,
                "max_response_header_bytes",
                d.max_response_header_bytes as u64,
            ) as usize,
            max_response_headers: n(
                &f.max_response_headers,
                8,
                10_000,
                "max_response_headers",
                d.max_response_headers as u64,
            ) as usize,
        }
    }
}
