//! Ticket key material: the settings of a listener's resumption, the key file format (base64
//! lines, newest first) and the per-period keys derived from it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::aead::{LessSafeKey, UnboundKey, AES_256_GCM};
use aws_lc_rs::hmac;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;

/// RFC 8446 §4.6.1: a ticket lifetime is at most seven days.
pub const MAX_TICKET_LIFETIME: Duration = Duration::from_secs(7 * 24 * 60 * 60);
/// The most keys a rotation keeps accepted: `ticket_lifetime / rotate_every` may not exceed it.
pub const MAX_PERIODS: u64 = 168;
/// The least bytes of a secret in a key file.
pub const MIN_SECRET_LEN: usize = 32;
/// The most secrets a key file may hold.
pub const MAX_SECRETS: usize = 16;
/// Bytes of the key id that starts every ticket.
pub const KEY_ID_LEN: usize = 4;

/// A listener's session resumption settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resumption {
    /// Session tickets (TLS 1.3 and 1.2); off, TLS 1.3 resumes from the session cache.
    pub tickets: bool,
    pub ticket_lifetime: Duration,
    /// How often a new ticket key starts issuing tickets.
    pub rotate_every: Duration,
    /// Entries of the session-ID cache (TLS 1.2 without tickets); 0 disables it.
    pub session_cache_size: usize,
    /// Secrets shared by several instances; `None` means random keys made in this process.
    pub key_file: Option<KeyFile>,
}

impl Default for Resumption {
    fn default() -> Self {
        Self {
            tickets: true,
            ticket_lifetime: Duration::from_secs(12 * 60 * 60),
            rotate_every: Duration::from_secs(60 * 60),
            session_cache_size: 20480,
            key_file: None,
        }
    }
}

/// A ticket key file and the secrets read from it at load, newest first.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyFile {
    pub path: PathBuf,
    pub secrets: Vec<Secret>,
}

impl std::fmt::Debug for KeyFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyFile")
            .field("path", &self.path)
            .field("secrets", &self.secrets.len())
            .finish()
    }
}

/// A secret from a key file; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// Why a key file was refused; `line` counts from 1.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} holds no key; expected one or more lines of base64, each {MIN_SECRET_LEN}+ random bytes, newest first (make one with `openssl rand -base64 48`)")]
    Empty { path: String },
    #[error("{path} line {line}: {detail}; expected base64 of {MIN_SECRET_LEN}+ random bytes (make one with `openssl rand -base64 48`)")]
    BadLine {
        path: String,
        line: usize,
        detail: String,
    },
    #[error("{path} holds more than {MAX_SECRETS} keys; expected the newest first and only those still needed")]
    TooMany { path: String },
}

/// Parses a key file: one base64 secret per line, newest first; blank lines and `#` comments
/// are skipped.
pub fn parse_key_file(path: &str, text: &str) -> Result<Vec<Secret>, KeyFileError> {
    let mut secrets = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line_text = line.trim();
        if line_text.is_empty() || line_text.starts_with('#') {
            continue;
        }
        let bad = |detail: String| KeyFileError::BadLine {
            path: path.to_string(),
            line: i + 1,
            detail,
        };
        let bytes = STANDARD
            .decode(line_text)
            .map_err(|e| bad(format!("not base64 ({e})")))?;
        if bytes.len() < MIN_SECRET_LEN {
            return Err(bad(format!("{} bytes is too short", bytes.len())));
        }
        secrets.push(Secret(bytes));
    }
    if secrets.is_empty() {
        return Err(KeyFileError::Empty {
            path: path.to_string(),
        });
    }
    if secrets.len() > MAX_SECRETS {
        return Err(KeyFileError::TooMany {
            path: path.to_string(),
        });
    }
    Ok(secrets)
}

/// Reads and parses a key file.
pub fn read_key_file(path: &Path) -> Result<Vec<Secret>, KeyFileError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| KeyFileError::Read {
        path: shown.clone(),
        source,
    })?;
    parse_key_file(&shown, &text)
}

/// One ticket key: the id written in front of its tickets, and the AEAD key.
#[derive(Clone)]
pub struct TicketKey {
    pub id: [u8; KEY_ID_LEN],
    pub period: u64,
    pub key: Arc<LessSafeKey>,
}

impl TicketKey {
    /// The key of `period` derived from a shared secret: every instance holding the secret
    /// derives the same key, so they rotate together without talking to each other.
    pub fn derive(secret: &Secret, period: u64) -> Option<Self> {
        let prf = hmac::Key::new(hmac::HMAC_SHA256, &secret.0);
        let block = |label: u8| {
            let mut input = b"terminus ticket key v1\0".to_vec();
            input.extend_from_slice(&period.to_be_bytes());
            input.push(label);
            hmac::sign(&prf, &input)
        };
        let key_bytes = block(1);
        let id_bytes = block(2);
        let mut id = [0u8; KEY_ID_LEN];
        id.copy_from_slice(id_bytes.as_ref().get(..KEY_ID_LEN)?);
        Self::new(id, period, key_bytes.as_ref())
    }

    /// A key of random bytes (for listeners without a key file).
    pub fn random(period: u64) -> Option<Self> {
        let mut bytes = [0u8; 32 + KEY_ID_LEN];
        aws_lc_rs::rand::fill(&mut bytes).ok()?;
        let mut id = [0u8; KEY_ID_LEN];
        id.copy_from_slice(&bytes[32..]);
        Self::new(id, period, &bytes[..32])
    }

    fn new(id: [u8; KEY_ID_LEN], period: u64, key: &[u8]) -> Option<Self> {
        let key = Arc::new(LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).ok()?));
        Some(Self { id, period, key })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_lines_are_checked() {
        let good = STANDARD.encode([7u8; 48]);
        let text = format!("# newest first\n\n{good}\n{good}\n");
        assert_eq!(parse_key_file("k", &text).unwrap().len(), 2);
        let short = STANDARD.encode([7u8; 16]);
        let err = parse_key_file("k", &format!("{good}\n{short}\n")).unwrap_err();
        assert!(err.to_string().contains("k line 2: 16 bytes"), "{err}");
        let err = parse_key_file("k", "not base64!\n").unwrap_err();
        assert!(
            matches!(err, KeyFileError::BadLine { line: 1, .. }),
            "{err}"
        );
        let err = parse_key_file("k", "# only a comment\n").unwrap_err();
        assert!(matches!(err, KeyFileError::Empty { .. }), "{err}");
    }

    #[test]
    fn derived_keys_depend_on_secret_and_period() {
        let a = Secret(vec![1; 32]);
        let b = Secret(vec![2; 32]);
        let id = |s: &Secret, p| TicketKey::derive(s, p).unwrap().id;
        assert_eq!(id(&a, 5), id(&a, 5));
        assert_ne!(id(&a, 5), id(&a, 6));
        assert_ne!(id(&a, 5), id(&b, 5));
    }
}
