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

impl Admission {
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Waits until fewer than `max` connections are open.
    pub async fn room(&self, max: usize) {
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            // Registered before the check, so a connection closing in between still wakes us.
            freed.as_mut().enable();
            if self.open() < max {
                return;
            }
            freed.await;
        }
    }

    /// Counts a new connection from `client`; `None` when the client already has
    /// `per_client` connections open (the connection must be closed).
    pub fn admit(self: &Arc<Self>, client: IpAddr, per_client: Option<usize>) -> Option<Admitted> {
        let counted = match per_client {
            None => None,
            Some(max) => {
                let mut map = self.per_client.lock().unwrap_or_else(|e| e.into_inner());
                let n = map.entry(client).or_insert(0);
                if *n >= max {
                    return None;
                }
                *n += 1;
                Some(client)
            }
        };
        self.open.fetch_add(1, Ordering::Relaxed);
        Some(Admitted {
            admission: self.clone(),
            client: counted,
        })
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
        a.open.fetch_sub(1, Ordering::Relaxed);
        a.freed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn per_client_limits_and_waiting_for_room() {
        let a = Arc::new(Admission::default());
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        let first = a.admit(ip, Some(2)).unwrap();
        let second = a.admit(ip, Some(2)).unwrap();
        assert!(
            a.admit(ip, Some(2)).is_none(),
            "a third from the same address"
        );
        let third = a.admit(other, Some(2)).unwrap();
        assert_eq!(a.open(), 3);
        // No room for a fourth until one closes.
        let waiting = tokio::spawn({
            let a = a.clone();
            async move { a.room(3).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished());
        drop(first);
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .unwrap()
            .unwrap();
        assert!(a.admit(ip, Some(2)).is_some(), "the address has room again");
        drop((second, third));
        assert_eq!(
            a.per_client.lock().unwrap().len(),
            0,
            "empty entries are removed"
        );
    }
}
