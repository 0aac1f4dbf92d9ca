//! Admission of client connections: at most `max_connections` open per listener (the rest
//! wait in the kernel's accept queue, as HAProxy's and nginx's do) and, when set, at most
//! `max_connections_per_client` per client address (the rest are closed at once).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

/// One listener's open connections; kept across reloads with the listener's socket.
#[derive(Debug, Default)]
pub struct Admission {
    open: AtomicUsize,
    per_client: Mutex<HashMap<IpAddr, usize>>,
    freed: Notify,
}

/// A connection counted open until dropped.
#[derive(Debug)]
pub struct Admitted {
    admission: Arc<Admission>,
    /// The client address, when it is counted against a per-client limit.
    client: Option<IpAddr>,
}

/// A connection slot taken before accepting: accept loops on several workers share one
/// listener's `Admission`, and a slot taken first is what keeps them, between them, within
/// `max_connections`. Released when dropped without admitting anyone.
#[derive(Debug)]
pub struct Reserved {
    admission: Option<Arc<Admission>>,
}

impl Admission {
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Waits until fewer than `max` connections are open (slots reserved included), and takes
    /// a slot.
    pub async fn reserve(self: &Arc<Self>, max: usize) -> Reserved {
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            // Registered before the check, so a connection closing in between still wakes us.
            freed.as_mut().enable();
            let taken = self
                .open
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                    (n < max).then_some(n + 1)
                })
                .is_ok();
            if taken {
                return Reserved {
                    admission: Some(self.clone()),
                };
            }
            freed.await;
        }
    }

    /// Gives a slot back and wakes one accept loop waiting for one.
    fn release(&self) {
        self.open.fetch_sub(1, Ordering::AcqRel);
        self.freed.notify_one();
    }
}

impl Reserved {
    /// Counts the accepted connection from `client` in the reserved slot; `None` when the
    /// client already has `per_client` connections open (the connection must be closed, and
    /// the slot is given back).
    pub fn admit(mut self, client: IpAddr, per_client: Option<usize>) -> Option<Admitted> {
        let admission = self.admission.take()?;
        let counted = match per_client {
            None => None,
            Some(max) => {
                let mut map = admission
                    .per_client
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                let n = map.entry(client).or_insert(0);
                if *n >= max {
                    drop(map);
                    admission.release();
                    return None;
                }
                *n += 1;
                Some(client)
            }
        };
        Some(Admitted {
            admission,
            client: counted,
        })
    }
}

impl Drop for Reserved {
    fn drop(&mut self) {
        if let Some(a) = self.admission.take() {
            a.release();
        }
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let a = &self.admission;
        if let Some(ip) = self.client {
            let mut map = a.per_client.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(n) = map.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    map.remove(&ip);
                }
            }
        }
        a.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A slot at once (the tests never wait for one here).
    async fn admit(a: &Arc<Admission>, ip: IpAddr, per_client: Option<usize>) -> Option<Admitted> {
        let slot = tokio::time::timeout(Duration::from_secs(5), a.reserve(100))
            .await
            .unwrap();
        slot.admit(ip, per_client)
    }

    #[tokio::test]
    async fn per_client_limits_and_waiting_for_room() {
        let a = Arc::new(Admission::default());
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        let first = admit(&a, ip, Some(2)).await.unwrap();
        let second = admit(&a, ip, Some(2)).await.unwrap();
        assert!(
            admit(&a, ip, Some(2)).await.is_none(),
            "a third from the same address"
        );
        let third = admit(&a, other, Some(2)).await.unwrap();
        assert_eq!(a.open(), 3, "the refused one gave its slot back");
        // No room for a fourth until one closes.
        let waiting = tokio::spawn({
            let a = a.clone();
            async move { a.reserve(3).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished());
        drop(first);
        let slot = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .unwrap()
            .unwrap();
        assert!(
            slot.admit(ip, Some(2)).is_some(),
            "the address has room again"
        );
        drop((second, third));
        assert_eq!(
            a.per_client.lock().unwrap().len(),
            0,
            "empty entries are removed"
        );
    }

    #[tokio::test]
    async fn accept_loops_sharing_a_listener_never_take_more_than_max_between_them() {
        let a = Arc::new(Admission::default());
        // Two accept loops (workers) at a limit of 3 with 2 open: one gets the last slot,
        // the other waits, and an unused slot goes back when dropped.
        let open = [
            admit(&a, "10.0.0.1".parse().unwrap(), None).await,
            admit(&a, "10.0.0.2".parse().unwrap(), None).await,
        ];
        let last = tokio::time::timeout(Duration::from_secs(5), a.reserve(3))
            .await
            .unwrap();
        let other = tokio::spawn({
            let a = a.clone();
            async move { a.reserve(3).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!other.is_finished(), "the other loop waits: 3 are taken");
        assert_eq!(a.open(), 3);
        drop(last);
        let slot = tokio::time::timeout(Duration::from_secs(5), other)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(a.open(), 3, "the released slot went to the waiting loop");
        drop((slot, open));
        assert_eq!(a.open(), 0);
    }
}
