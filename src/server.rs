//! The running server: builds the runtime state from a valid config, binds every listener
//! before serving any, reloads a new config without dropping connections, and shuts down
//! gracefully.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tracing::{info, warn};

use crate::config::{self, Config};
use crate::listener::{self, ListenerState};
use crate::shutdown::Shutdown;
use crate::tls;
use crate::upstream::{health, Pool};

mod build;
use build::{build, Built};

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("listener `{name}`: cannot bind {addr}: {source}")]
    Bind {
        name: String,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("pool `{name}`: {reason}")]
    Pool { name: String, reason: String },
    #[error("listener `{name}`: TLS setup failed: {source}")]
    Tls { name: String, source: rustls::Error },
    #[error("{0}")]
    Config(config::ConfigErrors),
}

/// What a successful reload changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadSummary {
    /// The config generation now serving (1 is the config the server started with).
    pub generation: u64,
    /// Listeners whose socket was kept (their new state serves new connections).
    pub kept: usize,
    /// Listeners bound by this reload.
    pub bound: usize,
    /// Listeners that stopped accepting (their connections finish).
    pub stopped: usize,
}

/// Listeners bound and ready to serve. Clones share the same server, so one clone can
/// `run` while another `reload`s.
#[derive(Clone)]
pub struct Server {
    inner: Arc<Inner>,
}

struct Inner {
    live: Mutex<Live>,
    /// Serializes reloads (held across the binds of a reload).
    reloading: tokio::sync::Mutex<()>,
    /// Connections and accept loops watch it; `run` drains it.
    shutdown: Shutdown,
    generation: AtomicU64,
    reloads_ok: AtomicU64,
    reloads_failed: AtomicU64,
}

/// The state a reload replaces.
struct Live {
    listeners: Vec<Bound>,
    pools: Vec<Arc<Pool>>,
    /// Stops this generation's health checks when signalled or dropped.
    health_stop: Shutdown,
    grace_period: Duration,
    /// `[global] watch` and the files it polls, as the current config names them.
    watch: Option<Duration>,
    watched_files: Vec<PathBuf>,
    /// Whether `run` has started: accept loops and health checks are spawned from then on.
    running: bool,
}

/// One bound listener, keyed by name and configured bind address.
struct Bound {
    name: String,
    bind: SocketAddr,
    local: SocketAddr,
    state: Arc<ArcSwap<ListenerState>>,
    /// The socket until `run` hands it to the accept loop.
    tcp: Option<TcpListener>,
    /// Dropped when the listener leaves the config: its accept loop stops.
    stop: Shutdown,
}

impl Server {
    /// Builds pools, routers and TLS configs, then binds every listener. Nothing is served
    /// until `run`, and any failure here leaves nothing bound.
    pub async fn bind(config: &Config) -> Result<Self, ServerError> {
        let built = build(config, &[], &HashMap::new())?;
        let mut listeners = Vec::new();
        for (bind, state) in built.listeners {
            listeners.push(bind_one(bind, state).await?);
        }
        let live = Live {
            listeners,
            pools: built.pools,
            health_stop: Shutdown::new(),
            grace_period: config.grace_period,
            watch: config.watch,
            watched_files: config.watched_files.clone(),
            running: false,
        };
        Ok(Self {
            inner: Arc::new(Inner {
                live: Mutex::new(live),
                reloading: tokio::sync::Mutex::new(()),
                shutdown: Shutdown::new(),
                generation: AtomicU64::new(1),
                reloads_ok: AtomicU64::new(0),
                reloads_failed: AtomicU64::new(0),
            }),
        })
    }

    fn live(&self) -> MutexGuard<'_, Live> {
        // Nothing panics while holding the lock; a poisoned one still holds valid state.
        self.inner.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The current pools, with their backends' live state (shared with the running server).
    pub fn pools(&self) -> Vec<Arc<Pool>> {
        self.live().pools.clone()
    }

    /// Each TLS listener's name and its handshake counters (shared with the running server,
    /// and kept across reloads).
    pub fn tls_stats(&self) -> Vec<(String, Arc<tls::HandshakeStats>)> {
        tls_stats_of(&self.live())
    }

    /// Each listener's name and the address it is bound to (useful with port 0).
    pub fn local_addrs(&self) -> Vec<(String, SocketAddr)> {
        self.live()
            .listeners
            .iter()
            .map(|b| (b.name.clone(), b.local))
            .collect()
    }

    /// The config generation serving new connections: 1 at start, one more per successful
    /// reload.
    pub fn generation(&self) -> u64 {
        self.inner.generation.load(Ordering::Relaxed)
    }

    /// Reloads that succeeded and that were refused (the old state kept serving).
    pub fn reload_counts(&self) -> (u64, u64) {
        let i = &self.inner;
        (
            i.reloads_ok.load(Ordering::Relaxed),
            i.reloads_failed.load(Ordering::Relaxed),
        )
    }

    /// The current config's file-watch interval (`None`: off) and the files it polls.
    pub fn watched(&self) -> (Option<Duration>, Vec<PathBuf>) {
        let live = self.live();
        (live.watch, live.watched_files.clone())
    }

    /// Reads and validates `path`, then reloads it (see `reload`). An invalid file changes
    /// nothing: each error line is logged at warn and the failure is counted.
    pub async fn reload_file(&self, path: &Path) -> Result<ReloadSummary, ServerError> {
        match config::load_file(path) {
            Ok(config) => self.reload(&config).await,
            Err(errors) => Err(self.refused(ServerError::Config(errors))),
        }
    }

    /// Switches to `new`: builds every pool, router and TLS config first, binds the
    /// listeners whose name and bind address are new, and only then swaps each listener's
    /// state for new connections (established ones finish on the state they loaded),
    /// stops the listeners that left the config, and restarts health checks. Any failure
    /// changes nothing. Backends kept by name, address and weight keep their live state.
    pub async fn reload(&self, new: &Config) -> Result<ReloadSummary, ServerError> {
        let _serial = self.inner.reloading.lock().await;
        let (old_pools, stats, present) = {
            let live = self.live();
            let stats: HashMap<_, _> = tls_stats_of(&live).into_iter().collect();
            let present: Vec<(String, SocketAddr)> = live
                .listeners
                .iter()
                .map(|b| (b.name.clone(), b.bind))
                .collect();
            (live.pools.clone(), stats, present)
        };
        let built = build(new, &old_pools, &stats).map_err(|e| self.refused(e))?;
        let mut fresh = Vec::new();
        for (bind, state) in &built.listeners {
            if !present.contains(&(state.name.clone(), *bind)) {
                let bound = bind_one(*bind, state.clone()).await;
                fresh.push(bound.map_err(|e| self.refused(e))?);
            }
        }
        let summary = self.swap(new, built, fresh);
        info!(
            generation = summary.generation,
            kept = summary.kept,
            bound = summary.bound,
            stopped = summary.stopped,
            "config reloaded: new connections use it; established ones finish on the old one"
        );
        Ok(summary)
    }

    /// Logs a refused reload line by line, counts it, and hands the error back.
    fn refused(&self, e: ServerError) -> ServerError {
        let failed = self.inner.reloads_failed.fetch_add(1, Ordering::Relaxed) + 1;
        for line in e.to_string().lines() {
            warn!(
                failed,
                generation = self.generation(),
                "reload refused: {line}"
            );
        }
        warn!(
            failed,
            generation = self.generation(),
            "reload refused; the running config is unchanged"
        );
        e
    }

    /// The commit point of a reload: nothing here can fail.
    fn swap(&self, new: &Config, built: Built, fresh: Vec<Bound>) -> ReloadSummary {
        let mut live = self.live();
        let wanted: Vec<(String, SocketAddr)> = built
            .listeners
            .iter()
            .map(|(bind, s)| (s.name.clone(), *bind))
            .collect();
        let before = live.listeners.len();
        // Dropping a removed listener's `stop` ends its accept loop; its connections finish.
        live.listeners
            .retain(|b| wanted.contains(&(b.name.clone(), b.bind)));
        let stopped = before - live.listeners.len();
        let mut kept = 0;
        for (bind, state) in &built.listeners {
            if let Some(b) = live
                .listeners
                .iter()
                .find(|b| b.name == state.name && b.bind == *bind)
            {
                b.state.store(state.clone());
                kept += 1;
            }
        }
        let bound = fresh.len();
        for mut b in fresh {
            if live.running {
                self.spawn_accept(&mut b);
            }
            live.listeners.push(b);
        }
        // Replacing the health stop ends the old generation's checks.
        live.health_stop = Shutdown::new();
        live.pools = built.pools;
        live.grace_period = new.grace_period;
        live.watch = new.watch;
        live.watched_files = new.watched_files.clone();
        if live.running {
            spawn_health(&live);
        }
        drop(live);
        self.inner.reloads_ok.fetch_add(1, Ordering::Relaxed);
        let generation = self.inner.generation.fetch_add(1, Ordering::Relaxed) + 1;
        ReloadSummary {
            generation,
            kept,
            bound,
            stopped,
        }
    }

    fn spawn_accept(&self, b: &mut Bound) {
        if let Some(tcp) = b.tcp.take() {
            let watch = self.inner.shutdown.watch();
            tokio::spawn(listener::accept_loop(
                tcp,
                b.state.clone(),
                watch,
                b.stop.watch(),
            ));
        }
    }

    /// Serves until `shutdown` completes, then stops accepting, asks open connections to
    /// finish their in-flight requests, and returns when they have or the grace period ends.
    pub async fn run(self, signal: impl Future<Output = ()>) {
        {
            let mut live = self.live();
            live.running = true;
            spawn_health(&live);
            for b in &mut live.listeners {
                self.spawn_accept(b);
            }
        }
        signal.await;
        let grace_period = {
            let live = self.live();
            live.health_stop.signal();
            live.grace_period
        };
        let shutdown = &self.inner.shutdown;
        info!(
            ?grace_period,
            open = shutdown.open(),
            "shutting down: no new connections; letting in-flight requests finish"
        );
        // Accept loops stop at the signal; connections finish their requests and close.
        match tokio::time::timeout(grace_period, shutdown.drain()).await {
            Ok(()) => info!("all connections finished"),
            Err(_) => {
                warn!(
                    ?grace_period,
                    "grace period over; closing remaining connections"
                )
            }
        }
    }
}

fn tls_stats_of(live: &Live) -> Vec<(String, Arc<tls::HandshakeStats>)> {
    let stats = |b: &Bound| Some((b.name.clone(), b.state.load().tls.as_ref()?.stats().clone()));
    live.listeners.iter().filter_map(stats).collect()
}

/// Starts the health checks of the current generation's pools.
fn spawn_health(live: &Live) {
    for pool in &live.pools {
        if let Some(check) = &pool.health {
            health::spawn(&pool.name, &pool.backends, check, &live.health_stop.watch());
        }
    }
}

async fn bind_one(bind: SocketAddr, state: Arc<ListenerState>) -> Result<Bound, ServerError> {
    let tcp = TcpListener::bind(bind)
        .await
        .map_err(|source| ServerError::Bind {
            name: state.name.clone(),
            addr: bind,
            source,
        })?;
    let local = tcp.local_addr().map_err(|source| ServerError::Bind {
        name: state.name.clone(),
        addr: bind,
        source,
    })?;
    Ok(Bound {
        name: state.name.clone(),
        bind,
        local,
        state: Arc::new(ArcSwap::new(state)),
        tcp: Some(tcp),
        stop: Shutdown::new(),
    })
}
