//! The session ticketer: seals resumption state with AES-256-GCM under a key that rotates
//! every `rotate_every`, keeps older keys for the ticket lifetime, and binds each ticket to its
//! listener. A ticket is `key id (4) | nonce (12) | sealed(issued-at (8) | state) | tag (16)`;
//! the associated data names the listener, so another listener's key holder cannot replay it.

use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::aead::{Aad, Nonce, NONCE_LEN};
use rustls::server::ProducesTickets;
use tracing::{info, warn};

use super::ticket_keys::{read_key_file, Resumption, Secret, TicketKey, KEY_ID_LEN};

/// How often a key file is re-read.
pub const KEY_FILE_POLL: Duration = Duration::from_secs(1);
/// How far in the future an issue time may lie (clocks of instances sharing a key file).
const CLOCK_SKEW_SECS: u64 = 60;
const TAG_LEN: usize = 16;
const AAD_LABEL: &[u8] = b"terminus ticket v1\0";

/// The keys in use: `keys[0]` issues tickets of `period`; all are accepted.
struct Ring {
    period: u64,
    /// From the key file, newest first; `None` means random keys made here.
    secrets: Option<Vec<Secret>>,
    keys: Vec<TicketKey>,
}

/// A listener's ticketer (a rustls `ProducesTickets`).
pub struct Ticketer {
    scope: Vec<u8>,
    lifetime: u64,
    rotate_every: u64,
    ring: RwLock<Ring>,
}

impl std::fmt::Debug for Ticketer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ticketer")
            .field("lifetime", &self.lifetime)
            .field("rotate_every", &self.rotate_every)
            .finish()
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Ticketer {
    /// A ticketer for the listener `scope`, with keys from `r.key_file` or random ones; when a
    /// key file is set and a tokio runtime runs, the file is re-read every `KEY_FILE_POLL`.
    pub fn new(scope: &str, r: &Resumption) -> Result<Arc<Self>, rustls::Error> {
        let t = Arc::new(Self::at(scope, r, unix_now())?);
        if let Some(file) = &r.key_file {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(poll_key_file(Arc::downgrade(&t), file.path.clone()));
            }
        }
        Ok(t)
    }

    fn at(scope: &str, r: &Resumption, now: u64) -> Result<Self, rustls::Error> {
        let mut t = Self {
            scope: scope.as_bytes().to_vec(),
            lifetime: r.ticket_lifetime.as_secs().max(1),
            rotate_every: r.rotate_every.as_secs().max(1),
            ring: RwLock::new(Ring {
                period: 0,
                secrets: r.key_file.as_ref().map(|f| f.secrets.clone()),
                keys: Vec::new(),
            }),
        };
        let ring = t.ring.get_mut().unwrap_or_else(|e| e.into_inner());
        ring.keys = build(ring, t.rotate_every, t.lifetime, now / t.rotate_every)
            .ok_or(rustls::Error::FailedToGetRandomBytes)?;
        ring.period = now / t.rotate_every;
        Ok(t)
    }

    /// Replaces the key file's secrets (a changed file); tickets of removed secrets stop
    /// being accepted at once.
    pub fn set_secrets(&self, secrets: Vec<Secret>) -> bool {
        let mut ring = self.ring.write().unwrap_or_else(|e| e.into_inner());
        if ring.secrets.as_ref() == Some(&secrets) {
            return false;
        }
        ring.secrets = Some(secrets);
        if let Some(keys) = build(&ring, self.rotate_every, self.lifetime, ring.period) {
            ring.keys = keys;
        }
        true
    }

    /// Runs `f` on the ring of the period `now` falls in, rotating first if it is stale.
    fn with_ring<R>(&self, now: u64, f: impl FnOnce(&Ring) -> R) -> R {
        let period = now / self.rotate_every;
        {
            let ring = self.ring.read().unwrap_or_else(|e| e.into_inner());
            if ring.period >= period {
                return f(&ring);
            }
        }
        let mut ring = self.ring.write().unwrap_or_else(|e| e.into_inner());
        if ring.period < period {
            if let Some(keys) = build(&ring, self.rotate_every, self.lifetime, period) {
                ring.keys = keys;
                ring.period = period;
            }
        }
        f(&ring)
    }

    fn aad(&self, id: &[u8]) -> Vec<u8> {
        [AAD_LABEL, &self.scope, b"\0", id].concat()
    }

    fn seal(&self, plain: &[u8], now: u64) -> Option<Vec<u8>> {
        let mut nonce = [0u8; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce).ok()?;
        self.with_ring(now, |ring| {
            let key = ring.keys.first()?;
            let mut body = Vec::with_capacity(8 + plain.len() + TAG_LEN);
            body.extend_from_slice(&now.to_be_bytes());
            body.extend_from_slice(plain);
            let aad = self.aad(&key.id);
            key.key
                .seal_in_place_append_tag(
                    Nonce::assume_unique_for_key(nonce),
                    Aad::from(&aad),
                    &mut body,
                )
                .ok()?;
            Some([&key.id[..], &nonce, &body].concat())
        })
    }

    fn open(&self, ticket: &[u8], now: u64) -> Option<Vec<u8>> {
        let (id, rest) = ticket.split_at_checked(KEY_ID_LEN)?;
        let (nonce, sealed) = rest.split_at_checked(NONCE_LEN)?;
        if sealed.len() < 8 + TAG_LEN {
            return None;
        }
        let aad = self.aad(id);
        let plain = self.with_ring(now, |ring| {
            ring.keys.iter().filter(|k| k.id == id).find_map(|k| {
                let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
                let mut buf = sealed.to_vec();
                let len = k
                    .key
                    .open_in_place(nonce, Aad::from(&aad), &mut buf)
                    .ok()?
                    .len();
                buf.truncate(len);
                Some(buf)
            })
        })?;
        let (issued, state) = plain.split_at_checked(8)?;
        let issued = u64::from_be_bytes(issued.try_into().ok()?);
        let fresh = issued <= now + CLOCK_SKEW_SECS && now.saturating_sub(issued) <= self.lifetime;
        fresh.then(|| state.to_vec())
    }
}

/// The keys of `period`: the issuing key first, then the older (and, from a shared file, the
/// next period's, for clock skew) keys still accepted. `None` if randomness failed.
fn build(ring: &Ring, rotate_every: u64, lifetime: u64, period: u64) -> Option<Vec<TicketKey>> {
    let oldest = period.saturating_sub(lifetime.div_ceil(rotate_every));
    match &ring.secrets {
        Some(secrets) => {
            let mut keys = Vec::new();
            // The newest secret's key of this period issues, so it goes first.
            if let Some(newest) = secrets.first() {
                keys.push(TicketKey::derive(newest, period)?);
            }
            for (i, secret) in secrets.iter().enumerate() {
                for p in (oldest..=period + 1).rev() {
                    if i > 0 || p != period {
                        keys.push(TicketKey::derive(secret, p)?);
                    }
                }
            }
            Some(keys)
        }
        None => {
            let current = match ring.keys.iter().position(|k| k.period == period) {
                Some(_) => None,
                None => Some(TicketKey::random(period)?),
            };
            let mut keys: Vec<TicketKey> = current.into_iter().collect();
            let kept = ring.keys.iter().filter(|k| k.period >= oldest);
            keys.extend(kept.cloned());
            keys.sort_by_key(|k| std::cmp::Reverse(k.period));
            Some(keys)
        }
    }
}

impl ProducesTickets for Ticketer {
    fn enabled(&self) -> bool {
        true
    }

    fn lifetime(&self) -> u32 {
        u32::try_from(self.lifetime).unwrap_or(u32::MAX)
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        self.seal(plain, unix_now())
    }

    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        self.open(cipher, unix_now())
    }
}

/// Re-reads the key file every `KEY_FILE_POLL` until the ticketer is gone. Polling (not a
/// filesystem watch) is one small read a second, needs no extra dependency, and sees every way
/// a file gets replaced (rename over it, a Kubernetes secret's symlink swap, NFS). A file that
/// cannot be read or parsed keeps the last good keys and is reported once per change.
async fn poll_key_file(ticketer: Weak<Ticketer>, path: std::path::PathBuf) {
    let mut last: Option<Result<Vec<u8>, String>> = None;
    loop {
        tokio::time::sleep(KEY_FILE_POLL).await;
        let Some(t) = ticketer.upgrade() else { return };
        let p = path.clone();
        let read =
            tokio::task::spawn_blocking(move || std::fs::read(&p).map_err(|e| e.to_string()))
                .await
                .unwrap_or_else(|e| Err(e.to_string()));
        if last.as_ref() == Some(&read) {
            continue;
        }
        last = Some(read);
        let shown = path.display();
        match read_key_file(&path) {
            Ok(secrets) => {
                if t.set_secrets(secrets) {
                    info!(file = %shown, "ticket key file changed; new keys in use");
                }
            }
            Err(e) => warn!(error = %e, "ticket key file not usable; keeping the last good keys"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::ticket_keys::{parse_key_file, KeyFile};
    use base64::Engine;

    fn resumption(file: Option<&str>) -> Resumption {
        let key_file = file.map(|text| KeyFile {
            path: "k".into(),
            secrets: parse_key_file("k", text).unwrap(),
        });
        Resumption {
            key_file,
            ..Resumption::default()
        }
    }

    fn line(b: u8) -> String {
        base64::engine::general_purpose::STANDARD.encode([b; 32]) + "\n"
    }

    const T0: u64 = 1_700_000_000;
    const HOUR: u64 = 3600;

    #[test]
    fn random_keys_rotate_and_old_tickets_live_for_the_lifetime() {
        let t = Ticketer::at("l", &resumption(None), T0).unwrap();
        let ticket = t.seal(b"state", T0).unwrap();
        assert_eq!(t.open(&ticket, T0 + 1).unwrap(), b"state");
        // Three rotations later a new key issues, and the old ticket is still accepted.
        let later = t.seal(b"new", T0 + 3 * HOUR).unwrap();
        assert_ne!(later[..KEY_ID_LEN], ticket[..KEY_ID_LEN]);
        assert_eq!(t.open(&ticket, T0 + 3 * HOUR).unwrap(), b"state");
        // Past the 12 h lifetime it is not, nor once its key is dropped.
        assert!(t.open(&ticket, T0 + 12 * HOUR + 1).is_none());
        assert!(t.open(&ticket, T0 + 14 * HOUR).is_none());
        assert_eq!(t.open(&later, T0 + 14 * HOUR).unwrap(), b"new");
    }

    #[test]
    fn a_shared_file_makes_tickets_portable_within_one_listener_name() {
        let a = Ticketer::at("web", &resumption(Some(&line(1))), T0).unwrap();
        let b = Ticketer::at("web", &resumption(Some(&line(1))), T0 + 5 * HOUR).unwrap();
        let other_listener = Ticketer::at("admin", &resumption(Some(&line(1))), T0).unwrap();
        let other_file = Ticketer::at("web", &resumption(Some(&line(2))), T0).unwrap();
        let ticket = a.seal(b"s", T0).unwrap();
        assert_eq!(b.open(&ticket, T0 + 5 * HOUR).unwrap(), b"s");
        assert!(other_listener.open(&ticket, T0).is_none());
        assert!(other_file.open(&ticket, T0).is_none());
    }

    #[test]
    fn a_new_first_line_issues_and_the_old_line_still_opens() {
        let t = Ticketer::at("web", &resumption(Some(&line(1))), T0).unwrap();
        let old = t.seal(b"old", T0).unwrap();
        assert!(t.set_secrets(parse_key_file("k", &(line(2) + &line(1))).unwrap()));
        let new = t.seal(b"new", T0).unwrap();
        let only_new = Ticketer::at("web", &resumption(Some(&line(2))), T0).unwrap();
        assert_eq!(only_new.open(&new, T0).unwrap(), b"new");
        assert_eq!(t.open(&old, T0).unwrap(), b"old");
        // Removing the old line stops its tickets at once.
        assert!(t.set_secrets(parse_key_file("k", &line(2)).unwrap()));
        assert!(t.open(&old, T0).is_none());
    }

    #[test]
    fn garbage_is_refused_without_panic() {
        let t = Ticketer::at("l", &resumption(None), T0).unwrap();
        for len in 0..64 {
            assert!(t.open(&vec![0xa5; len], T0).is_none());
        }
        let mut ticket = t.seal(b"s", T0).unwrap();
        let last = ticket.len() - 1;
        ticket[last] ^= 1;
        assert!(t.open(&ticket, T0).is_none());
    }
}
