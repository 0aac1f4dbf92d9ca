//! Validation of a pool's `[pool.sticky]` table (cookie persistence).

use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use toml::Spanned;

use super::Validator;
use crate::config::file::FileSticky;
use crate::config::{SameSite, StickyCookieSpec};

const KEY_HINT: &str = "expected 32 random bytes in base64, e.g. from `openssl rand -base64 32`";

impl Validator<'_> {
    pub(super) fn sticky(&mut self, c: &FileSticky) -> Option<StickyCookieSpec> {
        let name = match &c.cookie {
            None => "terminus_backend".to_string(),
            Some(n) if is_cookie_token(n.get_ref()) => n.get_ref().clone(),
            Some(n) => {
                self.err(
                    n.span(),
                    format!("`{}` is not a cookie name", n.get_ref()),
                    "expected letters, digits and !#$%&'*+-.^_`|~ only",
                );
                return None;
            }
        };
        let key = match (&c.key, &c.key_file) {
            (Some(_), Some(f)) => {
                self.err(
                    f.span(),
                    "both `key` and `key_file` are set",
                    "expected one of them",
                );
                return None;
            }
            (Some(k), None) => Some(self.cookie_key(k, k.get_ref())?),
            (None, Some(f)) => {
                let text = match std::fs::read_to_string(self.path(f.get_ref())) {
                    Ok(t) => t,
                    Err(e) => {
                        self.err(
                            f.span(),
                            format!("cannot read {}: {e}", f.get_ref()),
                            KEY_HINT,
                        );
                        return None;
                    }
                };
                Some(self.cookie_key(f, text.trim())?)
            }
            (None, None) => None,
        };
        let path = match &c.path {
            None => "/".to_string(),
            Some(p)
                if p.get_ref().starts_with('/')
                    && p.get_ref()
                        .bytes()
                        .all(|b| b.is_ascii_graphic() && b != b';') =>
            {
                p.get_ref().clone()
            }
            Some(p) => {
                self.err(
                    p.span(),
                    format!("`{}` is not a cookie path", p.get_ref()),
                    "expected a path starting with '/', without ';'",
                );
                return None;
            }
        };
        let same_site = match c
            .same_site
            .as_ref()
            .map(|s| (s.get_ref().as_str(), s.span()))
        {
            None | Some(("lax", _)) => SameSite::Lax,
            Some(("strict", _)) => SameSite::Strict,
            Some(("none", _)) => SameSite::None,
            Some((other, span)) => {
                self.err(
                    span,
                    format!("unknown same_site `{other}`"),
                    "expected \"lax\", \"strict\" or \"none\"",
                );
                return None;
            }
        };
        let max_age = c
            .max_age
            .as_ref()
            .map(|_| self.duration(&c.max_age, Duration::ZERO));
        Some(StickyCookieSpec {
            name,
            key,
            path,
            secure: c.secure.unwrap_or(true),
            http_only: c.http_only.unwrap_or(true),
            same_site,
            max_age,
        })
    }

    fn cookie_key(&mut self, at: &Spanned<String>, text: &str) -> Option<[u8; 32]> {
        match STANDARD
            .decode(text)
            .ok()
            .and_then(|k| <[u8; 32]>::try_from(k).ok())
        {
            Some(key) => Some(key),
            None => {
                self.err(
                    at.span(),
                    "the cookie key is not 32 bytes of base64",
                    KEY_HINT,
                );
                None
            }
        }
    }
}

/// RFC 6265 cookie-name: an HTTP token.
fn is_cookie_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}
