//! Test support shared by the integration tests: certificates, demo backends, terminus in
//! process or as the real binary, and a rustls/hyper client. Every wait is bounded.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use rustls::pki_types::{CertificateDer, ServerName};
use terminus::demo::DemoBackend;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

/// Upper bound for any single wait in a test.
pub const WAIT: Duration = Duration::from_secs(10);

/// A self-signed certificate written to files, with its PEM kept for client trust.
pub struct TestCert {
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    pub cert_pem: String,
}

/// Generates an ECDSA P-256 self-signed certificate for `names` into `dir/<file_stem>.pem|.key`.
pub fn write_cert(dir: &Path, file_stem: &str, names: &[&str]) -> TestCert {
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let pem = terminus::tls::certs::generate_self_signed(&names).unwrap();
    let cert_path = dir.join(format!("{file_stem}.pem"));
    let key_path = dir.join(format!("{file_stem}.key"));
    std::fs::write(&cert_path, &pem.cert_pem).unwrap();
    std::fs::write(&key_path, &pem.key_pem).unwrap();
    TestCert {
        cert_path,
        key_path,
        cert_pem: pem.cert_pem,
    }
}

/// Starts an in-process demo backend on 127.0.0.1:0.
pub async fn demo_backend(name: &str, delay: Duration) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        DemoBackend {
            name: name.to_string(),
            delay,
        }
        .serve(listener),
    );
    addr
}

/// An address on which nothing listens (bound, then released).
pub async fn closed_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    addr
}

/// Terminus running in this process.
pub struct InProcess {
    pub addrs: HashMap<String, SocketAddr>,
    /// The running server's pools, to read or change backend state as an operator would.
    pub pools: Vec<Arc<terminus::upstream::Pool>>,
    /// The running server, to reload it.
    pub server: terminus::Server,
    stop: Option<oneshot::Sender<()>>,
    pub done: Option<tokio::task::JoinHandle<()>>,
}

impl InProcess {
    pub fn addr(&self, listener: &str) -> SocketAddr {
        self.addrs[listener]
    }

    /// Starts graceful shutdown; `done` completes when terminus has finished.
    pub fn shutdown(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Writes `config` to `dir/terminus.toml`, validates it and serves it in this process.
pub async fn start(dir: &Path, config: &str) -> InProcess {
    // Terminus's logs show with RUST_LOG=... (e.g. `RUST_LOG=terminus=debug cargo test`).
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let path = dir.join("terminus.toml");
    std::fs::write(&path, config).unwrap();
    let config =
        terminus::config::load_file(&path).unwrap_or_else(|e| panic!("config invalid:\n{e}"));
    let server = terminus::Server::bind(&config).await.unwrap();
    let addrs = server.local_addrs().into_iter().collect();
    let pools = server.pools().to_vec();
    let (tx, rx) = oneshot::channel();
    let handle = server.clone();
    let done = tokio::spawn(server.run(async {
        let _ = rx.await;
    }));
    InProcess {
        addrs,
        pools,
        server: handle,
        stop: Some(tx),
        done: Some(done),
    }
}

/// The real `terminus` binary, killed when dropped.
pub struct Process {
    pub child: Child,
    pub addrs: HashMap<String, SocketAddr>,
    pub stdout_rest: Option<std::thread::JoinHandle<Vec<String>>>,
}

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_terminus")
}

impl Process {
    /// Runs `terminus` with `args` and waits (bounded) until it prints `expect_listeners`
    /// "listening" lines.
    pub fn spawn(args: &[&str], expect_listeners: usize) -> Process {
        let mut command = Command::new(binary());
        command.args(args);
        Self::spawn_command(command, expect_listeners)
    }

    /// `spawn` with a command of the caller's (one that ends by running terminus, e.g.
    /// through `sh -c 'ulimit ...; exec ...'`).
    pub fn spawn_command(mut command: Command, expect_listeners: usize) -> Process {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut rest = Vec::new();
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(kv) = line.strip_prefix("listening ") {
                    let mut name = None;
                    let mut addr = None;
                    for part in kv.split_whitespace() {
                        if let Some(v) = part.strip_prefix("name=") {
                            name = Some(v.to_string());
                        }
                        if let Some(v) = part.strip_prefix("addr=") {
                            addr = v.parse::<SocketAddr>().ok();
                        }
                    }
                    let _ = tx.send((name.unwrap(), addr.unwrap()));
                } else {
                    rest.push(line);
                }
            }
            rest
        });
        let mut addrs = HashMap::new();
        while addrs.len() < expect_listeners {
            match rx.recv_timeout(WAIT) {
                Ok((n, a)) => {
                    addrs.insert(n, a);
                }
                Err(_) => {
                    let _ = child.kill();
                    let out = child.wait_with_output().unwrap();
                    panic!(
                        "terminus did not start: {}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                }
            }
        }
        Process {
            child,
            addrs,
            stdout_rest: Some(reader),
        }
    }

    /// Sends a signal (e.g. "TERM") with kill(1).
    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits (bounded) for the process to exit and returns its exit code.
    pub fn wait_exit(&mut self) -> Option<i32> {
        let deadline = std::time::Instant::now() + WAIT;
        while std::time::Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("terminus did not exit within {WAIT:?}");
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A client TLS config trusting `ca_pem`, offering `alpn`.
pub fn client_tls(ca_pem: &str, alpn: &[&str]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile_certs(ca_pem) {
        roots.add(cert).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    Arc::new(config)
}

fn rustls_pemfile_certs(pem: &str) -> Vec<CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .map(|c| c.unwrap())
        .collect()
}

/// A response read whole.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
    pub version: http::Version,
}

impl Answer {
    pub fn backend(&self) -> &str {
        self.headers
            .get("x-backend")
            .map(|v| v.to_str().unwrap())
            .unwrap_or("")
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// An HTTP connection to terminus over TLS, HTTP/1.1 or HTTP/2 as ALPN decides.
pub enum Conn {
    H1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

/// Connects with TLS to `addr`, sending `sni`, trusting `tls`'s roots.
pub async fn connect(addr: SocketAddr, sni: &str, tls: Arc<rustls::ClientConfig>) -> Conn {
    let tcp = tokio::time::timeout(WAIT, TcpStream::connect(addr))
        .await
        .unwrap()
        .unwrap();
    let connector = tokio_rustls::TlsConnector::from(tls);
    let name = ServerName::try_from(sni.to_string()).unwrap();
    let stream = tokio::time::timeout(WAIT, connector.connect(name, tcp))
        .await
        .unwrap()
        .unwrap();
    let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
    let io = hyper_util::rt::TokioIo::new(stream);
    if h2 {
        let (send, conn) =
            hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
                .await
                .unwrap();
        tokio::spawn(conn);
        Conn::H2(send)
    } else {
        let (send, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
        tokio::spawn(conn.with_upgrades());
        Conn::H1(send)
    }
}

impl Conn {
    /// Sends one request and reads the whole answer (bounded by `WAIT`).
    pub async fn send(&mut self, req: http::Request<Full<Bytes>>) -> Answer {
        let fut = async {
            let resp = match self {
                Conn::H1(s) => {
                    s.ready().await.unwrap();
                    s.send_request(req).await.unwrap()
                }
                Conn::H2(s) => {
                    s.ready().await.unwrap();
                    s.send_request(req).await.unwrap()
                }
            };
            let (parts, body) = resp.into_parts();
            let body = body.collect().await.unwrap().to_bytes();
            Answer {
                status: parts.status.as_u16(),
                headers: parts.headers,
                body,
                version: parts.version,
            }
        };
        tokio::time::timeout(WAIT, fut)
            .await
            .expect("answer within the wait bound")
    }

    /// GET `path` with `host` as Host (HTTP/1.1) or :authority (HTTP/2).
    pub async fn get(&mut self, host: &str, path: &str) -> Answer {
        let req = request(self, "GET", host, path, Bytes::new());
        self.send(req).await
    }
}

/// Builds a request suited to the connection's HTTP version.
pub fn request(
    conn: &Conn,
    method: &str,
    host: &str,
    path: &str,
    body: Bytes,
) -> http::Request<Full<Bytes>> {
    let builder = http::Request::builder().method(method);
    let builder = match conn {
        Conn::H1(_) => builder.uri(path).header("host", host),
        Conn::H2(_) => builder
            .uri(format!("https://{host}{path}"))
            .version(http::Version::HTTP_2),
    };
    builder.body(Full::new(body)).unwrap()
}

/// One GET on a fresh connection.
pub async fn get_once(
    addr: SocketAddr,
    sni: &str,
    tls: Arc<rustls::ClientConfig>,
    path: &str,
) -> Answer {
    let mut conn = connect(addr, sni, tls).await;
    conn.get(sni, path).await
}

/// Waits (bounded) until `cond` holds, polling every 10 ms.
pub async fn wait_until(mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not met within {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A config with one HTTPS listener on 127.0.0.1:0 named "https", certificate `cert`, a
/// catch-all route to pool "app", 1 s connect/response timeouts and a 2 s grace period.
/// `pool_body` is the rest of the [[pool]] table (balancer, backends).
pub fn one_pool_config(cert: &TestCert, pool_body: &str) -> String {
    format!(
        r#"
[global]
grace_period = "2s"

[timeouts]
connect = "1s"
response = "1s"

[[certificate]]
name = "test"
cert = "{}"
key = "{}"

[[listener]]
name = "https"
bind = "127.0.0.1:0"

  [[listener.route]]
  pool = "app"

[[pool]]
name = "app"
{pool_body}
"#,
        cert.cert_path.display(),
        cert.key_path.display()
    )
}

/// `[[pool.backend]]` tables for (name, address) pairs.
pub fn backend_lines(addrs: &[(&str, SocketAddr)]) -> String {
    addrs
        .iter()
        .map(|(n, a)| format!("  [[pool.backend]]\n  name = \"{n}\"\n  address = \"{a}\"\n"))
        .collect()
}

/// The two ALPN offers a client can make: HTTP/1.1 only, and HTTP/2 only.
pub const BOTH_ALPN: [&[&str]; 2] = [&["http/1.1"], &["h2"]];

/// Terminus in process with a `localhost` certificate and one pool (see `one_pool_config`).
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub cert: TestCert,
    pub terminus: InProcess,
}

/// Starts terminus with `one_pool_config(cert, pool_body)`.
pub async fn fixture(pool_body: &str) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let cert = write_cert(dir.path(), "test", &["localhost"]);
    let terminus = start(dir.path(), &one_pool_config(&cert, pool_body)).await;
    Fixture {
        dir,
        cert,
        terminus,
    }
}

impl Fixture {
    /// A new TLS connection to the "https" listener with SNI `localhost`, offering `alpn`.
    pub async fn conn(&self, alpn: &[&str]) -> Conn {
        connect(
            self.terminus.addr("https"),
            "localhost",
            client_tls(&self.cert.cert_pem, alpn),
        )
        .await
    }
}

impl Conn {
    /// GET `path` with `host` and the extra header fields `fields` (name, value).
    pub async fn get_with(&mut self, host: &str, path: &str, fields: &[(&str, &str)]) -> Answer {
        let mut req = request(self, "GET", host, path, Bytes::new());
        for (name, value) in fields {
            req.headers_mut().append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                http::HeaderValue::from_str(value).unwrap(),
            );
        }
        self.send(req).await
    }
}

/// Starts one in-process demo backend per name (no delay), as `backend_lines` takes them.
pub async fn demo_backends<'a>(names: &[&'a str]) -> Vec<(&'a str, SocketAddr)> {
    let mut out = Vec::new();
    for &name in names {
        out.push((name, demo_backend(name, Duration::ZERO).await));
    }
    out
}

/// A backend with injectable faults: it answers every request with its current status (500
/// plays a broken backend) and `x-backend: NAME`, counts the requests it answers, and can be
/// stopped (listener and every open connection closed) and started again on its address.
pub struct FaultyBackend {
    pub name: String,
    pub addr: SocketAddr,
    hits: Arc<std::sync::atomic::AtomicUsize>,
    status: Arc<std::sync::atomic::AtomicU16>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl FaultyBackend {
    /// Starts answering `status` on 127.0.0.1:0.
    pub async fn start(name: &str, status: u16) -> FaultyBackend {
        let mut b = FaultyBackend {
            name: name.to_string(),
            addr: "127.0.0.1:0".parse().unwrap(),
            hits: Arc::default(),
            status: Arc::new(std::sync::atomic::AtomicU16::new(status)),
            task: None,
        };
        b.resume().await;
        b
    }

    /// Requests answered so far.
    pub fn hits(&self) -> usize {
        self.hits.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The status of every answer from now on.
    pub fn set_status(&self, status: u16) {
        self.status
            .store(status, std::sync::atomic::Ordering::SeqCst);
    }

    /// Closes the listener and every open connection: new connections are refused.
    pub fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }

    /// Listens again on the same address.
    pub async fn resume(&mut self) {
        let listener = TcpListener::bind(self.addr).await.unwrap();
        self.addr = listener.local_addr().unwrap();
        let (name, hits, status) = (self.name.clone(), self.hits.clone(), self.status.clone());
        self.task = Some(tokio::spawn(async move {
            // Connections live in the set, so aborting this task closes them all.
            let mut conns = tokio::task::JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                while conns.try_join_next().is_some() {}
                let (name, hits, status) = (name.clone(), hits.clone(), status.clone());
                let service = hyper::service::service_fn(move |_req| {
                    hits.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let code = status.load(std::sync::atomic::Ordering::SeqCst);
                    let resp = http::Response::builder()
                        .status(code)
                        .header("x-backend", name.as_str())
                        .body(Full::new(Bytes::from(format!("{code} from {name}\n"))));
                    async move { resp }
                });
                conns.spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
                );
            }
        }));
    }
}

impl Drop for FaultyBackend {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Sends GETs for `/` one by one (bounded by `WAIT`, pausing 10 ms after an answer that does
/// not match) until `run` answers in a row satisfy `pred`; returns every answer.
pub async fn until_run(conn: &mut Conn, run: usize, pred: impl Fn(&Answer) -> bool) -> Vec<Answer> {
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut answers = Vec::new();
    let mut matched = 0;
    while matched < run {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no run of {run} matching answers within {WAIT:?}"
        );
        let ans = conn.get("localhost", "/").await;
        matched = if pred(&ans) { matched + 1 } else { 0 };
        answers.push(ans);
        if matched == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    answers
}

/// Reads from `s` until a whole request head (up to its empty line) has arrived; `false` when
/// the peer closed or failed first. For the hand-written test backends.
pub async fn read_head(s: &mut tokio::net::TcpStream) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    true
}

/// A backend that reports each request's arrival and answers "done" only when released, then
/// closes the connection (and says so, so that it is never reused).
pub async fn gated_backend() -> (
    std::net::SocketAddr,
    tokio::sync::mpsc::Receiver<oneshot::Sender<()>>,
) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    use tokio::io::AsyncWriteExt;
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                if !read_head(&mut s).await {
                    return;
                }
                let (release_tx, release_rx) = oneshot::channel();
                let _ = tx.send(release_tx).await;
                let _ = release_rx.await;
                let _ = s
                    .write_all(
                        b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 4\r\n\r\ndone",
                    )
                    .await;
            });
        }
    });
    (addr, rx)
}

/// A backend that speaks TLS with `cert` (HTTP/2 when ALPN says h2, else HTTP/1.1), requires
/// a client certificate signed by `client_ca` (PEM) when given, answers every request with
/// "tls NAME VERSION" and counts the requests it answers.
pub struct TlsBackend {
    pub addr: SocketAddr,
    hits: Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl TlsBackend {
    pub async fn start(name: &str, cert: &TestCert, client_ca: Option<&str>) -> TlsBackend {
        use rustls::pki_types::pem::PemObject;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap();
        let builder = match client_ca {
            Some(pem) => {
                let mut roots = rustls::RootCertStore::empty();
                for c in rustls_pemfile_certs(pem) {
                    roots.add(c).unwrap();
                }
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider,
                )
                .build()
                .unwrap();
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let key = rustls::pki_types::PrivateKeyDer::from_pem_file(&cert.key_path).unwrap();
        let mut config = builder
            .with_single_cert(rustls_pemfile_certs(&cert.cert_pem), key)
            .unwrap();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits: Arc<std::sync::atomic::AtomicUsize> = Arc::default();
        let (name, counter) = (name.to_string(), hits.clone());
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            while let Ok((tcp, _)) = listener.accept().await {
                while conns.try_join_next().is_some() {}
                let (acceptor, name, hits) = (acceptor.clone(), name.clone(), counter.clone());
                conns.spawn(async move {
                    let Ok(Ok(tls)) = tokio::time::timeout(WAIT, acceptor.accept(tcp)).await else {
                        return;
                    };
                    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
                    let service = hyper::service::service_fn(move |req: http::Request<_>| {
                        hits.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        let body = format!("tls {name} {:?}", req.version());
                        async move {
                            Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                                Bytes::from(body),
                            )))
                        }
                    });
                    let io = hyper_util::rt::TokioIo::new(tls);
                    if h2 {
                        let _ = hyper::server::conn::http2::Builder::new(
                            hyper_util::rt::TokioExecutor::new(),
                        )
                        .serve_connection(io, service)
                        .await;
                    } else {
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(io, service)
                            .await;
                    }
                });
            }
        });
        TlsBackend { addr, hits, task }
    }

    /// Requests answered so far.
    pub fn hits(&self) -> usize {
        self.hits.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for TlsBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Like `start`, and also returns each TLS listener's handshake counters.
pub async fn start_with_stats(
    dir: &Path,
    config: &str,
) -> (
    InProcess,
    HashMap<String, Arc<terminus::tls::HandshakeStats>>,
) {
    let path = dir.join("terminus.toml");
    std::fs::write(&path, config).unwrap();
    let config =
        terminus::config::load_file(&path).unwrap_or_else(|e| panic!("config invalid:\n{e}"));
    let server = terminus::Server::bind(&config).await.unwrap();
    let stats = server.tls_stats().into_iter().collect();
    let addrs = server.local_addrs().into_iter().collect();
    let pools = server.pools().to_vec();
    let (tx, rx) = oneshot::channel();
    let handle = server.clone();
    let done = tokio::spawn(server.run(async {
        let _ = rx.await;
    }));
    let t = InProcess {
        addrs,
        pools,
        server: handle,
        stop: Some(tx),
        done: Some(done),
    };
    (t, stats)
}

/// What an external command printed, and how it ended.
#[derive(Debug)]
pub struct ToolOut {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl ToolOut {
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }

    /// Both outputs, for assertion messages.
    pub fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

/// Seconds an external command may run before `timeout` stops it.
const TOOL_SECONDS: &str = "15";

/// Runs `program args` under `timeout` (off the runtime's threads, so terminus keeps serving),
/// with proxies ignored and `stdin` (or nothing) as input. A tool that is missing or does not
/// finish in time fails the test with a message saying so.
pub async fn run_tool(program: &str, args: &[&str], stdin: Option<&str>) -> ToolOut {
    let program = program.to_string();
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let input = stdin.map(str::to_string);
    tokio::task::spawn_blocking(move || {
        let mut cmd = Command::new("timeout");
        cmd.args(["--kill-after=2", TOOL_SECONDS, &program])
            .args(&args)
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for var in [
            "http_proxy",
            "https_proxy",
            "HTTPS_PROXY",
            "all_proxy",
            "ALL_PROXY",
        ] {
            cmd.env_remove(var);
        }
        let mut child = cmd.spawn().expect("cannot run `timeout` (coreutils)");
        if let Some(text) = input {
            use std::io::Write;
            let mut stdin = child.stdin.take().unwrap();
            let _ = stdin.write_all(text.as_bytes());
        }
        let out = child.wait_with_output().unwrap();
        let res = ToolOut {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        match res.code {
            Some(126) | Some(127) => panic!(
                "`{program}` is not installed or cannot run; these tests need curl and openssl \
                 (apt-get install curl openssl): {}",
                res.stderr
            ),
            Some(124) | Some(137) => panic!(
                "`{program} {}` did not finish within {TOOL_SECONDS}s:\n{}",
                args.join(" "),
                res.all()
            ),
            _ => res,
        }
    })
    .await
    .unwrap()
}

/// `curl` to `https://NAME:PORT/PATH` resolved to 127.0.0.1 (so NAME is the SNI), trusting
/// `ca`, ignoring proxies, within 10 s; `extra` comes before the URL (`-w`, `--cert`, ...).
pub async fn curl_https(
    addr: SocketAddr,
    name: &str,
    path: &str,
    ca: &Path,
    extra: &[&str],
) -> ToolOut {
    let resolve = format!("{name}:{}:127.0.0.1", addr.port());
    let url = format!("https://{name}:{}{path}", addr.port());
    let ca = ca.to_str().expect("a UTF-8 path");
    let mut args = vec![
        "-q",
        "-sS",
        "--noproxy",
        "*",
        "--max-time",
        "10",
        "--cacert",
        ca,
        "--resolve",
        &resolve,
    ];
    args.extend_from_slice(extra);
    args.push(&url);
    run_tool("curl", &args, None).await
}

/// One plain HTTP/1.1 request to the admin listener at `addr` on a new connection (bounded by
/// `WAIT`): `Authorization: Bearer TOKEN` when `token` is given, and `body` as JSON when it is
/// not empty.
pub async fn admin_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> Answer {
    let tcp = tokio::time::timeout(WAIT, TcpStream::connect(addr))
        .await
        .unwrap()
        .unwrap();
    let io = hyper_util::rt::TokioIo::new(tcp);
    let (send, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
    tokio::spawn(conn);
    let mut req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string());
    if let Some(token) = token {
        req = req.header("authorization", format!("Bearer {token}"));
    }
    if !body.is_empty() {
        req = req.header("content-type", "application/json");
    }
    let req = req.body(Full::new(Bytes::from(body.to_owned()))).unwrap();
    Conn::H1(send).send(req).await
}
