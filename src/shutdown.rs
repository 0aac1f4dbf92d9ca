//! Graceful shutdown: one signal every open connection watches, and a wait until all of them
//! have finished.

use tokio::sync::watch;

/// Owned by the server; connections hold a [`Watch`] each.
#[derive(Debug)]
pub struct Shutdown {
    tx: watch::Sender<bool>,
}

/// A connection's view of the shutdown signal. The server waits until every `Watch` is dropped.
#[derive(Debug, Clone)]
pub struct Watch {
    rx: watch::Receiver<bool>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl Shutdown {
    pub fn new() -> Self {
        Self {
            tx: watch::channel(false).0,
        }
    }

    pub fn watch(&self) -> Watch {
        Watch {
            rx: self.tx.subscribe(),
        }
    }

    /// Tells every holder of a `Watch` to finish, without waiting. (Dropping the `Shutdown`
    /// signals too: `Watch::signalled` completes once its sender is gone.)
    pub fn signal(&self) {
        let _ = self.tx.send(true);
    }

    /// Tells every connection to finish, then waits until all have dropped their `Watch`.
    pub async fn drain(&self) {
        self.signal();
        self.tx.closed().await;
    }

    /// Connections still open.
    pub fn open(&self) -> usize {
        self.tx.receiver_count()
    }
}

impl Watch {
    /// Completes once shutdown has begun (at once if it already has, or if the `Shutdown`
    /// was dropped).
    pub async fn signalled(&mut self) {
        let _ = self.rx.wait_for(|stop| *stop).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn drain_waits_for_every_watch() {
        let s = Shutdown::new();
        let mut w1 = s.watch();
        let w2 = s.watch();
        assert_eq!(s.open(), 2);
        let task = tokio::spawn(async move {
            w1.signalled().await;
            drop(w1);
        });
        let drained = tokio::spawn(async move { s.drain().await });
        task.await.unwrap();
        assert!(!drained.is_finished());
        drop(w2);
        drained.await.unwrap();
    }
}
