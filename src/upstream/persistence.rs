//! Cookie persistence: a cookie that names the backend a client was sent to, sealed with
//! AES-256-GCM so the client can neither read backend names or addresses nor forge a choice.
//! The pool's name is bound in as associated data, so one pool's cookie means nothing to another.

use std::sync::atomic::{AtomicU64, Ordering};

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use http::HeaderValue;

use crate::config::{SameSite, StickyCookieSpec};

/// Length of a cookie key in bytes.
pub const KEY_LEN: usize = 32;

/// The longest cookie value `open` looks at; longer ones are ignored unread.
const MAX_VALUE: usize = 512;

/// A pool's sticky cookie: its name, attributes and sealing key.
pub struct StickyCookie {
    pub name: String,
    key: LessSafeKey,
    pool: String,
    /// `; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=3600`, built once.
    attributes: String,
    /// Cookies that did not open (forged, corrupted, from another key or pool).
    rejected: AtomicU64,
}

impl std::fmt::Debug for StickyCookie {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StickyCookie")
            .field("name", &self.name)
            .field("attributes", &self.attributes)
            .finish_non_exhaustive()
    }
}

impl StickyCookie {
    /// `key` is the config's key, or `None` for a random one (sessions then last as long as
    /// this process and are not shared with other instances).
    pub fn new(pool: &str, spec: &StickyCookieSpec) -> Result<Self, String> {
        let mut key = [0u8; KEY_LEN];
        match &spec.key {
            Some(k) => key.copy_from_slice(k),
            None => {
                aws_lc_rs::rand::fill(&mut key).map_err(|_| "no randomness for a cookie key")?
            }
        }
        let unbound = UnboundKey::new(&AES_256_GCM, &key).map_err(|_| "invalid cookie key")?;
        let mut attributes = format!("; Path={}", spec.path);
        if spec.secure {
            attributes.push_str("; Secure");
        }
        if spec.http_only {
            attributes.push_str("; HttpOnly");
        }
        attributes.push_str(match spec.same_site {
            SameSite::Lax => "; SameSite=Lax",
            SameSite::Strict => "; SameSite=Strict",
            SameSite::None => "; SameSite=None",
        });
        if let Some(age) = spec.max_age {
            attributes.push_str(&format!("; Max-Age={}", age.as_secs()));
        }
        Ok(Self {
            name: spec.name.clone(),
            key: LessSafeKey::new(unbound),
            pool: pool.to_string(),
            attributes,
            rejected: AtomicU64::new(0),
        })
    }

    /// The cookie value naming `backend`: base64url(nonce ‖ ciphertext ‖ tag).
    pub fn seal(&self, backend: &str) -> Option<String> {
        let mut nonce = [0u8; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce).ok()?;
        let mut data = backend.as_bytes().to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(self.pool.as_bytes()),
                &mut data,
            )
            .ok()?;
        let mut raw = nonce.to_vec();
        raw.extend_from_slice(&data);
        Some(URL_SAFE_NO_PAD.encode(raw))
    }

    /// The backend name a cookie value carries, or `None` when it was not sealed by this key
    /// for this pool (tampered, foreign, truncated or garbage).
    pub fn open(&self, value: &[u8]) -> Option<String> {
        if value.len() > MAX_VALUE {
            return None;
        }
        let mut raw = URL_SAFE_NO_PAD.decode(value).ok()?;
        if raw.len() < NONCE_LEN {
            return None;
        }
        let mut sealed = raw.split_off(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(&raw).ok()?;
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(self.pool.as_bytes()), &mut sealed)
            .ok()?;
        String::from_utf8(plain.to_vec()).ok()
    }

    /// Opens a cookie a client sent; one that does not open is counted and treated as absent.
    pub fn open_counted(&self, value: &[u8]) -> Option<String> {
        let name = self.open(value);
        if name.is_none() {
            self.rejected.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(pool = %self.pool, "sticky cookie ignored: it does not open");
        }
        name
    }

    /// How many cookies clients sent that did not open.
    pub fn rejected(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }

    /// A `Set-Cookie` value sending the client to `backend`.
    pub fn set_cookie(&self, backend: &str) -> Option<HeaderValue> {
        let value = self.seal(backend)?;
        HeaderValue::try_from(format!("{}={value}{}", self.name, self.attributes)).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn spec(key: Option<[u8; 32]>) -> StickyCookieSpec {
        StickyCookieSpec {
            name: "tb".into(),
            key,
            path: "/".into(),
            secure: true,
            http_only: true,
            same_site: SameSite::Lax,
            max_age: Some(Duration::from_secs(3600)),
        }
    }

    #[test]
    fn sealed_names_open_and_hide_the_name() {
        let c = StickyCookie::new("web", &spec(None)).unwrap();
        let v = c.seal("backend-1").unwrap();
        assert!(!v.contains("backend"), "{v}");
        assert_eq!(c.open(v.as_bytes()).as_deref(), Some("backend-1"));
        // Fresh nonces: the same backend seals differently each time.
        assert_ne!(c.seal("backend-1").unwrap(), v);
    }

    #[test]
    fn forged_tampered_and_foreign_cookies_do_not_open() {
        let c = StickyCookie::new("web", &spec(Some([7; 32]))).unwrap();
        let v = c.seal("a").unwrap();
        let mut raw = URL_SAFE_NO_PAD.decode(&v).unwrap();
        let last = raw.len() - 1;
        raw[last] ^= 1;
        assert_eq!(
            c.open(URL_SAFE_NO_PAD.encode(&raw).as_bytes()),
            None,
            "tampered"
        );
        assert_eq!(c.open(b"a"), None, "plain name");
        assert_eq!(c.open(b"!!!"), None, "not base64");
        assert_eq!(c.open(&[b'A'; 600]), None, "too long");
        let other_pool = StickyCookie::new("api", &spec(Some([7; 32]))).unwrap();
        assert_eq!(other_pool.open(v.as_bytes()), None, "another pool");
        let other_key = StickyCookie::new("web", &spec(Some([8; 32]))).unwrap();
        assert_eq!(other_key.open(v.as_bytes()), None, "another key");
        let same_key = StickyCookie::new("web", &spec(Some([7; 32]))).unwrap();
        assert_eq!(
            same_key.open(v.as_bytes()).as_deref(),
            Some("a"),
            "shared key"
        );
    }

    #[test]
    fn set_cookie_carries_the_attributes() {
        let c = StickyCookie::new("web", &spec(None)).unwrap();
        let h = c.set_cookie("a").unwrap();
        let h = h.to_str().unwrap();
        assert!(h.starts_with("tb="), "{h}");
        assert!(
            h.ends_with("; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=3600"),
            "{h}"
        );
    }
}
