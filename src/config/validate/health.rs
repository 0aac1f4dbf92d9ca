//! Validation of a pool's `[pool.health]` table.

use std::time::Duration;

use toml::Spanned;

use super::Validator;
use crate::config::file::FileHealth;
use crate::config::{HealthCheck, HealthProbe, HttpProbe};

const CHECKS: &str = "expected check = \"tcp\", \"http\", \"https\" or \"tls\"";

impl Validator<'_> {
    pub(super) fn health(&mut self, h: &FileHealth) -> Option<HealthCheck> {
        let interval = self.duration(&h.interval, Duration::from_secs(5));
        let timeout = self.duration(&h.timeout, Duration::from_secs(2));
        let jitter = self.duration(&h.jitter, interval / 10);
        let rise = self.int_or(&h.rise, 1, 100, "rise", 2);
        let fall = self.int_or(&h.fall, 1, 100, "fall", 3);
        let initially_healthy = match h.initial.as_ref().map(|s| (s.get_ref().as_str(), s.span())) {
            None | Some(("unhealthy", _)) => false,
            Some(("healthy", _)) => true,
            Some((other, span)) => {
                self.err(
                    span,
                    format!("unknown initial state `{other}`"),
                    "expected \"unhealthy\" (healthy after the first passing check) or \"healthy\"",
                );
                false
            }
        };
        let probe = match h.check.get_ref().as_str() {
            "tcp" => {
                self.refuse_http_keys(h, "tcp");
                self.refuse(&h.server_name, "server_name", "tcp");
                HealthProbe::Tcp
            }
            "tls" => {
                self.refuse_http_keys(h, "tls");
                HealthProbe::Tls {
                    server_name: h.server_name.as_ref().map(|s| s.get_ref().clone()),
                }
            }
            "http" => {
                self.refuse(&h.server_name, "server_name", "http");
                self.http_probe(h, false)?
            }
            "https" => self.http_probe(h, true)?,
            other => {
                self.err(
                    h.check.span(),
                    format!("unknown health check `{other}`"),
                    CHECKS,
                );
                return None;
            }
        };
        Some(HealthCheck {
            probe,
            interval,
            timeout,
            jitter,
            rise,
            fall,
            initially_healthy,
        })
    }

    fn refuse(&mut self, key: &Option<Spanned<String>>, name: &str, check: &str) {
        if let Some(k) = key {
            self.err(
                k.span(),
                format!("`{name}` does not apply to a {check} check"),
                "remove it, or use a check that takes it",
            );
        }
    }

    fn refuse_http_keys(&mut self, h: &FileHealth, check: &str) {
        for (key, name) in [
            (&h.method, "method"),
            (&h.path, "path"),
            (&h.host, "host"),
            (&h.expect_status, "expect_status"),
            (&h.expect_body, "expect_body"),
        ] {
            self.refuse(key, name, check);
        }
    }

    fn http_probe(&mut self, h: &FileHealth, tls: bool) -> Option<HealthProbe> {
        let method = match &h.method {
            None => http::Method::GET,
            Some(m) => match http::Method::from_bytes(m.get_ref().as_bytes()) {
                Ok(method) => method,
                Err(_) => {
                    self.err(
                        m.span(),
                        format!("`{}` is not an HTTP method", m.get_ref()),
                        "expected a method such as \"GET\" or \"HEAD\"",
                    );
                    return None;
                }
            },
        };
        let path = match &h.path {
            None => "/".to_string(),
            Some(p)
                if p.get_ref().starts_with('/')
                    && http::uri::PathAndQuery::try_from(p.get_ref().as_str()).is_ok() =>
            {
                p.get_ref().clone()
            }
            Some(p) => {
                self.err(
                    p.span(),
                    format!("`{}` is not a request path", p.get_ref()),
                    "expected a path starting with '/', such as \"/healthz\"",
                );
                return None;
            }
        };
        let status = match &h.expect_status {
            None => 200..=399,
            Some(s) => self.status_range(s)?,
        };
        Some(HealthProbe::Http(HttpProbe {
            method,
            path,
            host: h.host.as_ref().map(|s| s.get_ref().clone()),
            status,
            body: h.expect_body.as_ref().map(|s| s.get_ref().clone()),
            tls,
            server_name: h.server_name.as_ref().map(|s| s.get_ref().clone()),
        }))
    }

    fn status_range(&mut self, s: &Spanned<String>) -> Option<std::ops::RangeInclusive<u16>> {
        let text = s.get_ref();
        let (lo, hi) = text.split_once('-').unwrap_or((text, text));
        match (lo.trim().parse::<u16>(), hi.trim().parse::<u16>()) {
            (Ok(lo), Ok(hi)) if (100..=599).contains(&lo) && (lo..=599).contains(&hi) => {
                Some(lo..=hi)
            }
            _ => {
                self.err(
                    s.span(),
                    format!("`{text}` is not a status or status range"),
                    "expected a status such as \"200\" or a range such as \"200-399\"",
                );
                None
            }
        }
    }
}
