//! Worker threads, one per core by default (`[global] workers`): each runs its own
//! single-threaded tokio runtime with its own accept loops, client connections and backend
//! connection pools, so a request is served start to end on one thread with no cross-thread
//! wake-ups or shared run queues (as nginx's worker processes and HAProxy's threads do).
//!
//! The main thread is worker 0: it also runs what is not per connection (the admin listener,
//! health checks, reloads, signals). Workers 1 to N-1 are started here.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;

use tokio::runtime::Handle;
use tokio::sync::oneshot;

thread_local! {
    /// This thread's worker: 0 on the main thread and on every thread that is not a worker.
    static INDEX: Cell<usize> = const { Cell::new(0) };
}

/// How many workers run (1 until `Workers::start`).
static COUNT: AtomicUsize = AtomicUsize::new(1);

/// The worker the calling thread is; always below `count()`.
pub fn index() -> usize {
    INDEX.with(Cell::get) % count()
}

/// How many workers run: per-worker state (backend connection pools) has this many slots.
pub fn count() -> usize {
    COUNT.load(Ordering::Relaxed).max(1)
}

/// The started workers: their runtimes' handles (the caller's first), and how to stop them.
pub struct Workers {
    handles: Vec<Handle>,
    stops: Vec<oneshot::Sender<()>>,
    threads: Vec<JoinHandle<()>>,
}

impl Workers {
    /// Starts workers 1 to `n - 1`, each a thread with a current-thread runtime; the calling
    /// thread's runtime (`main`) is worker 0.
    pub fn start(n: usize, main: Handle) -> std::io::Result<Self> {
        let n = n.max(1);
        let mut workers = Self {
            handles: vec![main],
            stops: Vec::new(),
            threads: Vec::new(),
        };
        for i in 1..n {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let (stop, stopped) = oneshot::channel::<()>();
            workers.handles.push(runtime.handle().clone());
            workers.stops.push(stop);
            let thread = std::thread::Builder::new()
                .name(format!("terminus-worker-{i}"))
                .spawn(move || {
                    INDEX.with(|c| c.set(i));
                    // Runs the tasks spawned onto it until told to stop; dropping the runtime
                    // then ends what is left (the grace period is over by then).
                    runtime.block_on(async {
                        let _ = stopped.await;
                    });
                })?;
            workers.threads.push(thread);
        }
        COUNT.store(n, Ordering::Relaxed);
        Ok(workers)
    }

    /// The runtimes to spread accept loops over, worker 0 first.
    pub fn handles(&self) -> Vec<Handle> {
        self.handles.clone()
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.stops.clear();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_worker_knows_its_index_and_runs_what_is_spawned_on_it() {
        let main = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let workers = Workers::start(3, main.handle().clone()).unwrap();
        assert_eq!(count(), 3);
        let handles = workers.handles();
        assert_eq!(handles.len(), 3);
        let seen: Vec<usize> = main.block_on(async {
            let mut seen = Vec::new();
            for h in &handles {
                seen.push(h.spawn(async { index() }).await.unwrap());
            }
            seen
        });
        assert_eq!(seen, vec![0, 1, 2]);
        drop(workers);
    }
}
