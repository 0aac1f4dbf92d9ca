//! Handshake counters of one listener, read by the library (and later exported as metrics).

use std::sync::atomic::{AtomicU64, Ordering};

use rustls::HandshakeKind;

/// Full and resumed TLS handshakes completed on a listener.
#[derive(Debug, Default)]
pub struct HandshakeStats {
    full: AtomicU64,
    resumed: AtomicU64,
}

impl HandshakeStats {
    /// Counts one completed handshake of `kind` (a missing kind counts as full).
    pub fn record(&self, kind: Option<HandshakeKind>) {
        let counter = match kind {
            Some(HandshakeKind::Resumed) => &self.resumed,
            _ => &self.full,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Handshakes that ran the whole key exchange and certificate authentication.
    pub fn full(&self) -> u64 {
        self.full.load(Ordering::Relaxed)
    }

    /// Handshakes that resumed an earlier session (a ticket or the session cache).
    pub fn resumed(&self) -> u64 {
        self.resumed.load(Ordering::Relaxed)
    }
}
