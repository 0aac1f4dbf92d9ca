//! Whether a client connection is idle: requests in progress (from their arrival to the end
//! of their response body), and since when none has been, so an idle keep-alive connection
//! (HTTP/1.1 or HTTP/2) can be closed after `[timeouts] keepalive`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

#[derive(Debug)]
pub struct Activity {
    active: AtomicUsize,
    idle_since: Mutex<Instant>,
    changed: Notify,
}

impl Default for Activity {
    fn default() -> Self {
        Self {
            active: AtomicUsize::new(0),
            idle_since: Mutex::new(Instant::now()),
            changed: Notify::new(),
        }
    }
}

impl Activity {
    /// A request began. No wake-up: a watcher that reaches its deadline checks again and
    /// finds the connection busy.
    pub fn begin(&self) {
        self.active.fetch_add(1, Ordering::AcqRel);
    }

    /// A request ended (its response body too); the last one restarts the idle clock. Only a
    /// watcher waiting for the connection to become idle is woken: one that sleeps towards a
    /// deadline finds the new clock when it wakes, so a busy connection costs no wake-up (and
    /// no new timer) per request.
    pub fn end(&self) {
        if self.active.fetch_sub(1, Ordering::AcqRel) == 1 {
            *self.idle_since.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
            self.changed.notify_waiters();
        }
    }

    /// Completes once the connection has had no request in progress for `limit`.
    pub async fn idle_for(&self, limit: Duration) {
        loop {
            if self.active.load(Ordering::Acquire) > 0 {
                let changed = self.changed.notified();
                tokio::pin!(changed);
                changed.as_mut().enable();
                // Checked again once registered, so an `end` in between is not missed.
                if self.active.load(Ordering::Acquire) > 0 {
                    changed.await;
                }
                continue;
            }
            let since = *self.idle_since.lock().unwrap_or_else(|e| e.into_inner());
            tokio::time::sleep_until(since + limit).await;
            let now_since = *self.idle_since.lock().unwrap_or_else(|e| e.into_inner());
            if self.active.load(Ordering::Acquire) == 0 && now_since == since {
                return;
            }
            // Requests came and went meanwhile: sleep on towards the new deadline.
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn idle_only_after_the_last_request_ended_for_the_limit() {
        let ms = Duration::from_millis;
        let a = std::sync::Arc::new(Activity::default());
        a.begin();
        let waiter = tokio::spawn({
            let a = a.clone();
            async move { a.idle_for(ms(200)).await }
        });
        tokio::time::sleep(ms(400)).await;
        assert!(!waiter.is_finished(), "a request is in progress");
        a.end();
        tokio::time::sleep(ms(100)).await;
        assert!(!waiter.is_finished());
        a.begin();
        a.end();
        tokio::time::sleep(ms(150)).await;
        assert!(!waiter.is_finished(), "the clock restarted at the last end");
        tokio::time::timeout(ms(2000), waiter)
            .await
            .expect("idle after the limit")
            .unwrap();
    }
}
