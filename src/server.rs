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
use tracing::{error, info, warn};

use crate::access_log::AccessLog;
use crate::config::{self, AccessLogSpec, Config};
use crate::listener::{self, ListenerState};
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;
use crate::tls;
use crate::upstream::{health, Pool};

mod build;
use build::{build, Built, Shared};

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
    #[error("access log {path}: {source}")]
    AccessLog {
        path: String,
        source: std::io::Error,
    },
    #[error("admin listener: cannot bind {addr}: {source}")]
    AdminBind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Why a change through `Server::apply` did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The change itself is invalid (an unknown backend, a weight out of range...).
    #[error("{0}")]
    Invalid(String),
    /// The changed config could not be built.
    #[error("{0}")]
    Refused(ServerError),
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
    metrics: Metrics,
    /// The admin listener's socket until `run` serves it, and its address.
    admin: Mutex<Option<TcpListener>>,
    admin_addr: Option<SocketAddr>,
    /// The admin token in force: the latest config's that has one. A reload may change the
    /// token, never remove it.
    admin_token: Mutex<Option<config::AdminToken>>,
    /// The config file reloads read (`None`: the embedded default).
    source: Mutex<Option<PathBuf>>,
    started: std::time::SystemTime,
    /// The workers' runtimes: every listener has an accept loop on each. Empty: only the
    /// runtime `run` is called on.
    workers: Mutex<Vec<tokio::runtime::Handle>>,
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
    /// The config now serving, which admin API changes start from.
    config: Arc<Config>,
    access_log: Option<(AccessLogSpec, Arc<AccessLog>)>,
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
    /// Its open connections, counted across reloads.
    admission: Arc<crate::admission::Admission>,
}

impl Server {
    /// Builds pools, routers and TLS configs, then binds every listener. Nothing is served
    /// until `run`, and any failure here leaves nothing bound.
    pub async fn bind(config: &Config) -> Result<Self, ServerError> {
        let metrics = Metrics::default();
        let access_log = start_access_log(config.access_log.as_ref(), None)?;
        let shared = Shared {
            metrics: &metrics,
            access_log: access_log.as_ref().map(|(_, l)| l.clone()),
        };
        let built = build(config, &[], &HashMap::new(), &HashMap::new(), &shared)?;
        for (_, state) in &built.listeners {
            state.routes.store(state.router.clone());
        }
        let mut listeners = Vec::new();
        for (bind, state) in built.listeners {
            listeners.push(bind_one(bind, state).await?);
        }
        let (admin, admin_addr) = match &config.admin {
            Some(spec) => {
                let admin_err = |source| ServerError::AdminBind {
                    addr: spec.bind,
                    source,
                };
                let tcp = TcpListener::bind(spec.bind).await.map_err(admin_err)?;
                let addr = tcp.local_addr().map_err(admin_err)?;
                (Some(tcp), Some(addr))
            }
            None => (None, None),
        };
        let live = Live {
            listeners,
            pools: built.pools,
            health_stop: Shutdown::new(),
            grace_period: config.grace_period,
            watch: config.watch,
            watched_files: config.watched_files.clone(),
            running: false,
            config: Arc::new(config.clone()),
            access_log,
        };
        Ok(Self {
            inner: Arc::new(Inner {
                live: Mutex::new(live),
                reloading: tokio::sync::Mutex::new(()),
                shutdown: Shutdown::new(),
                generation: AtomicU64::new(1),
                reloads_ok: AtomicU64::new(0),
                reloads_failed: AtomicU64::new(0),
                metrics,
                admin: Mutex::new(admin),
                admin_addr,
                admin_token: Mutex::new(config.admin.as_ref().and_then(|a| a.token.clone())),
                source: Mutex::new(None),
                started: std::time::SystemTime::now(),
                workers: Mutex::default(),
            }),
        })
    }

    /// The metric families the data path counts into.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The config now serving (the file's, with any admin API changes applied).
    pub fn config(&self) -> Arc<Config> {
        self.live().config.clone()
    }

    /// The access log, when the config has one.
    pub fn access_log(&self) -> Option<Arc<AccessLog>> {
        self.live().access_log.as_ref().map(|(_, l)| l.clone())
    }

    /// Where the admin listener is bound, when the config has one.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.inner.admin_addr
    }

    /// The token the admin listener requires: the latest one a config set, so a reload that
    /// drops `[admin]` or its token never opens the listener.
    pub fn admin_token(&self) -> Option<config::AdminToken> {
        self.inner
            .admin_token
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// When the server was bound.
    pub fn started(&self) -> std::time::SystemTime {
        self.inner.started
    }

    /// Names the config file that the admin API's reload reads.
    pub fn set_source(&self, path: Option<PathBuf>) {
        *self.inner.source.lock().unwrap_or_else(|e| e.into_inner()) = path;
    }

    /// The config file reloads read; `None` for a config that came from no file.
    pub fn source(&self) -> Option<PathBuf> {
        self.inner
            .source
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
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
    /// state for new connections (established ones keep their TLS and limits, and route
    /// their next requests by the new routes and pools),
    /// stops the listeners that left the config, and restarts health checks. Any failure
    /// changes nothing. Backends kept by name, address and backup flag keep their live state
    /// (with the new weight and state).
    pub async fn reload(&self, new: &Config) -> Result<ReloadSummary, ServerError> {
        let _serial = self.inner.reloading.lock().await;
        self.reload_serialized(new).await
    }

    /// Applies `change` to the config now serving and reloads the result, as one step no
    /// other reload can come between. `change` refuses with its reason (nothing changes);
    /// the reload itself refuses like any reload.
    pub async fn apply(
        &self,
        change: impl FnOnce(&mut Config) -> Result<(), String>,
    ) -> Result<ReloadSummary, ApplyError> {
        let _serial = self.inner.reloading.lock().await;
        let mut config = (*self.config()).clone();
        change(&mut config).map_err(ApplyError::Invalid)?;
        self.reload_serialized(&config)
            .await
            .map_err(ApplyError::Refused)
    }

    async fn reload_serialized(&self, new: &Config) -> Result<ReloadSummary, ServerError> {
        let (old_pools, old_tls, old_routes, present, old_log) = {
            let live = self.live();
            let old_tls: HashMap<String, tls::ServerTls> = live
                .listeners
                .iter()
                .filter_map(|b| Some((b.name.clone(), b.state.load().tls.clone()?)))
                .collect();
            let present: Vec<(String, SocketAddr)> = live
                .listeners
                .iter()
                .map(|b| (b.name.clone(), b.bind))
                .collect();
            let old_routes: HashMap<String, Arc<ArcSwap<crate::http::Router>>> = live
                .listeners
                .iter()
                .map(|b| (b.name.clone(), b.state.load().routes.clone()))
                .collect();
            (
                live.pools.clone(),
                old_tls,
                old_routes,
                present,
                live.access_log.clone(),
            )
        };
        if new.admin.as_ref().map(|a| a.bind) != self.config().admin.as_ref().map(|a| a.bind) {
            warn!("reload: a change of [admin] bind applies at the next start (tokens apply now)");
        }
        let access_log = start_access_log(new.access_log.as_ref(), old_log.as_ref())
            .map_err(|e| self.refused(e))?;
        let shared = Shared {
            metrics: &self.inner.metrics,
            access_log: access_log.as_ref().map(|(_, l)| l.clone()),
        };
        let built =
            build(new, &old_pools, &old_tls, &old_routes, &shared).map_err(|e| self.refused(e))?;
        let mut fresh = Vec::new();
        for (bind, state) in &built.listeners {
            if !present.contains(&(state.name.to_string(), *bind)) {
                let bound = bind_one(*bind, state.clone()).await;
                fresh.push(bound.map_err(|e| self.refused(e))?);
            }
        }
        let summary = self.swap(new, built, fresh, access_log);
        info!(
            generation = summary.generation,
            kept = summary.kept,
            bound = summary.bound,
            stopped = summary.stopped,
            "config reloaded: new connections use it; established ones route their next requests by it"
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
    fn swap(
        &self,
        new: &Config,
        built: Built,
        fresh: Vec<Bound>,
        access_log: Option<(AccessLogSpec, Arc<AccessLog>)>,
    ) -> ReloadSummary {
        let mut live = self.live();
        let wanted: Vec<(String, SocketAddr)> = built
            .listeners
            .iter()
            .map(|(bind, s)| (s.name.to_string(), *bind))
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
                .find(|b| *b.name == *state.name && b.bind == *bind)
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
        // Every connection, also those opened before, routes its next request by the new
        // routes and pools.
        for (_, state) in &built.listeners {
            state.routes.store(state.router.clone());
        }
        live.pools = built.pools;
        live.config = Arc::new(new.clone());
        if let Some(token) = new.admin.as_ref().and_then(|a| a.token.clone()) {
            *self
                .inner
                .admin_token
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = Some(token);
        }
        live.access_log = access_log;
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

    /// Serves new connections on these runtimes (`terminus::workers`), before `run`.
    pub fn set_workers(&self, workers: Vec<tokio::runtime::Handle>) {
        *self.inner.workers.lock().unwrap_or_else(|e| e.into_inner()) = workers;
    }

    /// Starts the listener's accept loops: one per worker, each on its own copy of the socket
    /// (the kernel hands each new connection to one of them), so a connection is served on
    /// the worker that accepted it.
    fn spawn_accept(&self, b: &mut Bound) {
        let Some(tcp) = b.tcp.take() else { return };
        let workers = self
            .inner
            .workers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        // What each accept loop needs; the socket comes last, made on its own worker.
        let parts = || {
            (
                b.state.clone(),
                b.admission.clone(),
                self.inner.shutdown.watch(),
                b.stop.watch(),
            )
        };
        if workers.len() < 2 {
            let (state, admission, shutdown, stop) = parts();
            tokio::spawn(listener::accept_loop(tcp, state, admission, shutdown, stop));
            return;
        }
        let copies = tcp.into_std().and_then(|std| {
            std.set_nonblocking(true)?;
            (0..workers.len())
                .map(|_| std.try_clone())
                .collect::<std::io::Result<Vec<_>>>()
        });
        let copies = match copies {
            Ok(copies) => copies,
            Err(e) => {
                error!(listener = %b.name, error = %e, "cannot share the listening socket with the workers; not accepting");
                return;
            }
        };
        for (worker, copy) in workers.iter().zip(copies) {
            let (state, admission, shutdown, stop) = parts();
            let name = b.name.clone();
            worker.spawn(async move {
                // Registered with this worker's reactor, so its connections run here.
                match TcpListener::from_std(copy) {
                    Ok(tcp) => listener::accept_loop(tcp, state, admission, shutdown, stop).await,
                    Err(e) => error!(listener = %name, error = %e, "a worker cannot accept"),
                }
            });
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
        let admin = self
            .inner
            .admin
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(tcp) = admin {
            let watch = self.inner.shutdown.watch();
            crate::admin::spawn(tcp, self.clone(), watch);
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

/// The access log `spec` asks for: `current` when it is the same, else a new one.
fn start_access_log(
    spec: Option<&AccessLogSpec>,
    current: Option<&(AccessLogSpec, Arc<AccessLog>)>,
) -> Result<Option<(AccessLogSpec, Arc<AccessLog>)>, ServerError> {
    let Some(spec) = spec else { return Ok(None) };
    if let Some((s, log)) = current.filter(|(s, _)| s == spec) {
        return Ok(Some((s.clone(), log.clone())));
    }
    let log = AccessLog::start(spec).map_err(|source| ServerError::AccessLog {
        path: match &spec.target {
            config::LogTarget::Stdout => "stdout".into(),
            config::LogTarget::File(p) => p.display().to_string(),
        },
        source,
    })?;
    Ok(Some((spec.clone(), log)))
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
            name: state.name.to_string(),
            addr: bind,
            source,
        })?;
    let local = tcp.local_addr().map_err(|source| ServerError::Bind {
        name: state.name.to_string(),
        addr: bind,
        source,
    })?;
    Ok(Bound {
        name: state.name.to_string(),
        bind,
        local,
        state: Arc::new(ArcSwap::new(state)),
        tcp: Some(tcp),
        stop: Shutdown::new(),
        admission: Arc::default(),
    })
}
