//! The `terminus` binary: command line, logging, signals and wiring.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use terminus::config::{self, default::DEMO_BACKENDS, Config};
use terminus::demo::DemoBackend;
use terminus::watch::FileWatch;
use terminus::workers::Workers;
use terminus::Server;
use tokio::net::TcpListener;

/// A TLS-terminating load balancer.
#[derive(Parser, Debug)]
#[command(name = "terminus", version, about)]
struct Cli {
    /// The config file; without it terminus runs its embedded default (an HTTPS listener on
    /// 127.0.0.1:8443 in front of three demo backends).
    #[arg(long, short, global = true)]
    config: Option<PathBuf>,
    /// Log filter, e.g. `info`, `debug`, `terminus=debug` (RUST_LOG also works).
    #[arg(long, default_value = "info", global = true)]
    log: String,
    /// Where the embedded default listens (only without --config).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8443")]
    default_listen: SocketAddr,
    /// Where the embedded default's admin listener (metrics, API, dashboard) binds (only
    /// without --config).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9090")]
    default_admin: SocketAddr,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Validate the config file and exit: 0 when valid, 1 with `FILE:LINE:COL: ...` lines when not.
    Check,
    /// Run one demo backend that answers with its own name.
    DemoBackend {
        /// Address to listen on, e.g. 127.0.0.1:9001.
        #[arg(long)]
        listen: SocketAddr,
        /// The name it answers with (also in the `x-backend` header).
        #[arg(long)]
        name: String,
        /// Delay added to every answer, in milliseconds.
        #[arg(long, default_value_t = 0)]
        delay_ms: u64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.log);
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("terminus: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(filter))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
}

/// The `demo-backend` command's runtime: tokio's multi-threaded one, a thread per core.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let default_listen = cli.default_listen;
    match (cli.command, cli.config) {
        (Some(Command::Check), Some(path)) => Ok(check(&path)),
        (Some(Command::Check), None) => anyhow::bail!("`check` needs --config FILE"),
        (
            Some(Command::DemoBackend {
                listen,
                name,
                delay_ms,
            }),
            _,
        ) => runtime()?.block_on(async {
            let listener = TcpListener::bind(listen)
                .await
                .with_context(|| format!("cannot bind {listen}"))?;
            println!(
                "demo backend {name} listening on {}",
                listener.local_addr()?
            );
            let backend = DemoBackend {
                name,
                delay: Duration::from_millis(delay_ms),
            };
            tokio::select! {
                _ = backend.serve(listener) => {}
                _ = shutdown_signal() => {}
            }
            Ok(ExitCode::SUCCESS)
        }),
        (None, Some(path)) => match config::load_file(&path) {
            Ok(config) => serve(config, path),
            Err(errors) => {
                eprintln!("{errors}");
                eprintln!(
                    "terminus: {} is not valid; nothing was started",
                    path.display()
                );
                Ok(ExitCode::FAILURE)
            }
        },
        (None, None) => serve_default(default_listen, cli.default_admin),
    }
}

fn check(path: &std::path::Path) -> ExitCode {
    match config::load_file(path) {
        Ok(c) => {
            // Written, not printed: a reader that stops early (`| head`) is no error.
            use std::io::Write;
            let _ = write!(
                std::io::stdout().lock(),
                "{}: valid ({} listeners, {} pools, {} certificates)\n\n{}",
                path.display(),
                c.listeners.len(),
                c.pools.len(),
                c.certificates.len(),
                config::summary::summary(&c)
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprintln!("{errors}");
            ExitCode::FAILURE
        }
    }
}

/// The embedded default: three demo backends on loopback ports chosen by the system.
/// The main thread's runtime: worker 0 (see `terminus::workers`), single-threaded like the
/// others.
fn main_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")
}

fn serve_default(listen: SocketAddr, admin: SocketAddr) -> anyhow::Result<ExitCode> {
    let rt = main_runtime()?;
    let config = rt.block_on(async {
        let mut addrs = Vec::new();
        for name in DEMO_BACKENDS {
            let listener = TcpListener::bind("127.0.0.1:0")
                .await
                .context("cannot bind a demo backend")?;
            addrs.push(listener.local_addr()?);
            tokio::spawn(
                DemoBackend {
                    name: name.to_string(),
                    delay: Duration::ZERO,
                }
                .serve(listener),
            );
        }
        let addrs: [SocketAddr; 3] = addrs
            .try_into()
            .map_err(|_| anyhow::anyhow!("three demo backends expected"))?;
        let text = config::default::render(&addrs, listen, admin);
        config::parse(std::path::Path::new("<embedded default>"), &text)
            .map_err(|e| anyhow::anyhow!("{e}"))
    })?;
    serve_on(rt, config, None)
}

fn serve(config: Config, path: PathBuf) -> anyhow::Result<ExitCode> {
    let rt = main_runtime()?;
    serve_on(rt, config, Some(path))
}

/// Serves `config`; SIGHUP reloads `path` (the embedded default, without one, has nothing to
/// reload).
fn serve_on(
    rt: tokio::runtime::Runtime,
    config: Config,
    path: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let demo = path.is_none();
    raise_open_files_limit(&config);
    // `[global] workers` is read at start only: a reload keeps the running workers.
    let n = config.workers.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    let workers = Workers::start(n, rt.handle().clone()).context("cannot start the workers")?;
    let code = rt.block_on(async {
        let server = Server::bind(&config).await?;
        server.set_workers(workers.handles());
        server.set_source(path.clone());
        // Installed before `listening` is printed, so a SIGHUP sent then never kills terminus.
        let hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .context("cannot listen for SIGHUP")?;
        let addrs = server.local_addrs();
        for (name, addr) in &addrs {
            println!("listening name={name} addr={addr}");
        }
        if let Some(admin) = server.admin_addr() {
            println!("listening name=admin addr={admin}");
            println!("admin: dashboard http://{admin}/  metrics http://{admin}/metrics  API http://{admin}/api/v1/pools");
        }
        if let (true, Some((_, addr))) = (demo, addrs.first()) {
            let port = addr.port();
            println!("terminus is running its embedded default: three demo backends behind https://localhost:{port}/");
            println!("try:  curl -k https://localhost:{port}/   (repeat it: the answers rotate over demo-1, demo-2, demo-3)");
        }
        if let Some(path) = &path {
            tokio::spawn(reload_on_change(server.clone(), path.clone()));
        }
        tokio::spawn(reload_on_hangup(server.clone(), path, hangup));
        let after = server.clone();
        server.run(shutdown_signal()).await;
        // The last requests' lines reach the log before the process ends.
        if let Some(log) = after.access_log() {
            log.drain(Duration::from_secs(2)).await;
        }
        anyhow::Ok(ExitCode::SUCCESS)
    })?;
    // Connections still open on the other workers end with them.
    drop(workers);
    Ok(code)
}

/// Raises the soft limit on open files to the hard limit (as nginx's `worker_rlimit_nofile`
/// and HAProxy do): every client connection and every backend connection is a file. Warns when
/// even the hard limit is below what `[limits] max_connections` asks for.
fn raise_open_files_limit(config: &Config) {
    let limit = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read or raise the open-files limit");
            return;
        }
    };
    // A client connection and, while it waits for a backend, a backend connection each.
    let listeners = config.listeners.len() as u64;
    let wanted = 2 * config.limits.max_connections as u64 * listeners + 256;
    if limit < wanted {
        tracing::warn!(
            open_files = limit,
            wanted,
            "the open-files limit is below what [limits] max_connections allows (two files per \
             connection): at that load connections fail with 'Too many open files'; raise the \
             limit (systemd LimitNOFILE=, ulimit -n) or lower max_connections"
        );
    } else {
        tracing::info!(open_files = limit, "open-files limit");
    }
}

/// Reloads the config file on every SIGHUP.
async fn reload_on_hangup(
    server: Server,
    path: Option<PathBuf>,
    mut hup: tokio::signal::unix::Signal,
) {
    while hup.recv().await.is_some() {
        match &path {
            Some(path) => reload(&server, path, "SIGHUP").await,
            None => tracing::info!("SIGHUP: the embedded default has no config file to reload"),
        }
    }
}

/// Reloads the config file whenever the file watch (`[global] watch`) sees it or a file it
/// names change; idle while `watch` is not set.
async fn reload_on_change(server: Server, path: PathBuf) {
    let mut watch = FileWatch::new(server.clone());
    loop {
        watch.changed().await;
        reload(&server, &path, "file watch").await;
    }
}

/// One reload, whatever asked for it. A refused reload is logged (at warn, by the server)
/// and counted; the running config stays.
async fn reload(server: &Server, path: &std::path::Path, cause: &str) {
    tracing::info!(config = %path.display(), "{cause}: reloading");
    if server.reload_file(path).await.is_err() {
        let (ok, failed) = server.reload_counts();
        tracing::warn!(
            generation = server.generation(),
            ok,
            failed,
            "{cause}: reload refused"
        );
    }
}

/// Completes on SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    match (term, int) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
