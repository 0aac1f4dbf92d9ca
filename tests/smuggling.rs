//! Request smuggling and framing, end to end: raw bytes from a client socket (plain and TLS
//! HTTP/1.1, hand-written HTTP/2 frames) go through terminus to a backend that records exactly
//! what reached it. Each vector says what the client gets, whether its connection is closed
//! afterwards, and how many requests the backend read. The hidden request of every attack asks
//! for `/smuggled`: the backend must never read it as a request.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use rustls::pki_types::ServerName;
use support::*;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

// ---------------------------------------------------------------------------------------------
// The vectors
// ---------------------------------------------------------------------------------------------

/// One HTTP/1 vector: the bytes a client writes on a new connection, and what must follow.
struct Vector {
    name: &'static str,
    send: &'static str,
    /// The statuses the client reads, in order.
    answers: &'static [u16],
    /// Whether terminus closes the connection after them (else a follow-up request on it must
    /// get its own answer).
    closes: bool,
    /// Requests the backend reads because of this vector.
    backend: usize,
}

const CLOSES: bool = true;
const OPEN: bool = false;

const fn v(
    name: &'static str,
    answers: &'static [u16],
    closes: bool,
    backend: usize,
    send: &'static str,
) -> Vector {
    Vector {
        name,
        send,
        answers,
        closes,
        backend,
    }
}

/// The request an attack hides in what the front end takes for a body.
macro_rules! smuggled {
    () => {
        "GET /smuggled HTTP/1.1\r\nHost: localhost\r\n\r\n"
    };
}

/// Writes a request head: the request line, `Host`, then the given lines.
macro_rules! post {
    ($($line:literal),* ; $body:expr) => {
        concat!("POST / HTTP/1.1\r\nHost: localhost\r\n", $($line, "\r\n",)* "\r\n", $body)
    };
}

#[rustfmt::skip]
const H1_VECTORS: &[Vector] = &[
    // CL.TE and TE.CL: one hop frames by Content-Length, the other by Transfer-Encoding, so
    // what one takes for the body the other takes for the next request. hyper would let
    // Transfer-Encoding win and drop the length; terminus reads the raw head beside hyper
    // and refuses the request (400, close), in either order and whatever the length says.
    v("CL.TE",               &[400], CLOSES, 0, post!("Content-Length: 50", "Transfer-Encoding: chunked"; concat!("0\r\n\r\n", smuggled!()))),
    v("TE.CL",               &[400], CLOSES, 0, post!("Transfer-Encoding: chunked", "Content-Length: 4"; concat!("2b\r\n", smuggled!(), "\r\n0\r\n\r\n"))),
    v("TE.CL, CL: 0",        &[400], CLOSES, 0, post!("Transfer-Encoding: chunked", "Content-Length: 0"; concat!("0\r\n\r\n", smuggled!()))),
    v("TE.CL, CL: abc",      &[400], CLOSES, 0, post!("Transfer-Encoding: chunked", "Content-Length: abc"; concat!("0\r\n\r\n", smuggled!()))),
    // The same behind requests with bodies of both framings on one connection: the raw
    // reading keeps step with hyper's, so the verdict lands on the third request.
    v("CL.TE third on a connection", &[200, 200, 400], CLOSES, 2, concat!(
        "POST /a HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n\r\nhello",
        "POST /b HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        "POST /c HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", smuggled!())),
    // TE.TE: Transfer-Encoding written so that one hop does not recognise it and falls back to
    // Content-Length. Only one `chunked` is accepted; anything else is refused (400, close).
    v("TE xchunked",         &[400], CLOSES, 0, post!("Transfer-Encoding: xchunked", "Content-Length: 5"; concat!("0\r\n\r\n", smuggled!()))),
    v("TE chunked, identity",&[400], CLOSES, 0, post!("Transfer-Encoding: chunked, identity"; concat!("0\r\n\r\n", smuggled!()))),
    v("TE identity, chunked",&[400], CLOSES, 0, post!("Transfer-Encoding: identity, chunked"; concat!("0\r\n\r\n", smuggled!()))),
    v("TE gzip, chunked",    &[400], CLOSES, 0, post!("Transfer-Encoding: gzip, chunked"; concat!("0\r\n\r\n", smuggled!()))),
    v("TE twice: chunked, identity", &[400], CLOSES, 0, post!("Transfer-Encoding: chunked", "Transfer-Encoding: identity"; concat!("0\r\n\r\n", smuggled!()))),
    v("TE twice: identity, chunked", &[400], CLOSES, 0, post!("Transfer-Encoding: identity", "Transfer-Encoding: chunked"; concat!("0\r\n\r\n", smuggled!()))),
    v("TE twice: chunked, chunked",  &[400], CLOSES, 0, post!("Transfer-Encoding: chunked", "Transfer-Encoding: chunked"; concat!("0\r\n\r\n", smuggled!()))),
    v("TE quoted \"chunked\"", &[400], CLOSES, 0, post!("Transfer-Encoding: \"chunked\""; concat!("0\r\n\r\n", smuggled!()))),
    v("TE space before colon", &[400], CLOSES, 0, post!("Transfer-Encoding : chunked"; concat!("0\r\n\r\n", smuggled!()))),
    v("TE obs-fold",         &[400], CLOSES, 0, post!("Transfer-Encoding:", " chunked"; concat!("0\r\n\r\n", smuggled!()))),
    v("TE behind bare CR",   &[400], CLOSES, 0, post!("X-Pad: a\rTransfer-Encoding: chunked"; concat!("0\r\n\r\n", smuggled!()))),
    // Optional whitespace around a value and the case of a coding name carry no meaning
    // (RFC 9110 5.5, 7.8): these are `chunked`, read as such, and re-framed for the backend.
    v("TE leading space (control)", &[200], OPEN, 1, post!("Transfer-Encoding:   chunked"; "0\r\n\r\n")),
    v("TE trailing tab (control)",  &[200], OPEN, 1, post!("Transfer-Encoding: chunked\t"; "0\r\n\r\n")),
    v("TE tab after colon (control)", &[200], OPEN, 1, post!("Transfer-Encoding:\tchunked"; "0\r\n\r\n")),
    v("TE ChUnKeD (control)",       &[200], OPEN, 1, post!("Transfer-Encoding: ChUnKeD"; "5\r\nhello\r\n0\r\n\r\n")),
    // HTTP/1.0 has no chunked coding: a 1.0 hop would frame by Content-Length.
    v("TE in HTTP/1.0", &[400], CLOSES, 0, concat!("POST / HTTP/1.0\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n", smuggled!())),
    // CL.CL: two lengths, or one that parsers read differently (sign, hex, list, overflow).
    v("CL twice, differing", &[400], CLOSES, 0, post!("Content-Length: 0", "Content-Length: 41"; smuggled!())),
    v("CL list 0, 41",       &[400], CLOSES, 0, post!("Content-Length: 0, 41"; smuggled!())),
    v("CL +41",              &[400], CLOSES, 0, post!("Content-Length: +41"; smuggled!())),
    v("CL -1",               &[400], CLOSES, 0, post!("Content-Length: -1"; smuggled!())),
    v("CL 0x29",             &[400], CLOSES, 0, post!("Content-Length: 0x29"; smuggled!())),
    v("CL 4 1 (inner space)", &[400], CLOSES, 0, post!("Content-Length: 4 1"; smuggled!())),
    v("CL overflow",         &[400], CLOSES, 0, post!("Content-Length: 18446744073709551657"; smuggled!())),
    v("CL empty",            &[400], CLOSES, 0, post!("Content-Length:"; smuggled!())),
    // Identical repeats: hyper would merge them (RFC 9112 6.3 allows it); terminus refuses
    // every repeated Content-Length line, as the raw head shows it.
    v("CL twice, same",      &[400], CLOSES, 0, post!("Content-Length: 5", "Content-Length: 5"; "hello")),
    v("CL twice, same, after a request", &[200, 400], CLOSES, 1, concat!(
        "GET /a HTTP/1.1\r\nHost: localhost\r\n\r\n",
        "POST /b HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\ncontent-length: 5\r\n\r\nhello")),
    v("CL 005 (control)",         &[200], OPEN, 1, post!("Content-Length: 005"; "hello")),
    // Field-line tricks: a field only some parsers see, or a line only some parsers end.
    v("NUL in a value",      &[400], CLOSES, 0, post!("X-Pad: a\0b", "Content-Length: 5"; "hello")),
    v("empty field name",    &[400], CLOSES, 0, post!(": chunked", "Content-Length: 5"; "hello")),
    v("line without colon",  &[400], CLOSES, 0, post!("Transfer-Encoding chunked", "Content-Length: 5"; "hello")),
    // A bare LF ends a line for hyper (RFC 9112 2.2 allows it), so the Transfer-Encoding
    // behind it counts, next to a Content-Length: CL.TE as above. The backend gets a head
    // written anew with CRLF.
    v("bare LF ends a line (control)", &[200], OPEN, 1, "POST / HTTP/1.1\nHost: localhost\nContent-Length: 5\n\nhello"),
    v("TE behind bare LF, with CL", &[400], CLOSES, 0, post!("X-Pad: a\nTransfer-Encoding: chunked", "Content-Length: 48"; concat!("0\r\n\r\n", smuggled!()))),
    // Chunk sizes that parsers read differently: the body breaks off, the backend never gets a
    // whole request, and the connection closes.
    v("chunk size 0x5",      &[400], CLOSES, 0, post!("Transfer-Encoding: chunked"; concat!("0x5\r\nhello\r\n0\r\n\r\n", smuggled!()))),
    v("chunk size -1",       &[400], CLOSES, 0, post!("Transfer-Encoding: chunked"; concat!("-1\r\nhello\r\n0\r\n\r\n", smuggled!()))),
    v("chunk size overflow", &[400], CLOSES, 0, post!("Transfer-Encoding: chunked"; concat!("10000000000000005\r\nhello\r\n0\r\n\r\n", smuggled!()))),
    v("chunk without CRLF",  &[400], CLOSES, 0, post!("Transfer-Encoding: chunked"; concat!("5\r\nhelloXX0\r\n\r\n", smuggled!()))),
    v("chunk extension (control)", &[200], OPEN, 1, post!("Transfer-Encoding: chunked"; "5;name=value\r\nhello\r\n0\r\n\r\n")),
    // Controls: bodies and pipelining that must pass untouched, in order.
    v("GET with a body (control)", &[200], OPEN, 1, "GET / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n\r\nhello"),
    v("Connection names Content-Length (control)", &[200], OPEN, 1, post!("Connection: content-length", "Content-Length: 5"; "hello")),
    v("pipelined pair (control)", &[200, 200], OPEN, 2, "GET /one HTTP/1.1\r\nHost: localhost\r\n\r\nGET /two HTTP/1.1\r\nHost: localhost\r\n\r\n"),
    v("Connection: close, then a request", &[200], CLOSES, 1, concat!("GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n", smuggled!())),
];

/// The request sent after a vector on a connection that stays open: its answer must come
/// next, and the backend must read it as it was written.
const FOLLOW_UP: &str = "GET /after HTTP/1.1\r\nHost: localhost\r\n\r\n";

// ---------------------------------------------------------------------------------------------
// The backend that records what reaches it
// ---------------------------------------------------------------------------------------------

/// One request as the backend read it.
#[derive(Debug, Clone)]
struct Seen {
    line: String,
    head: String,
    body: Vec<u8>,
}

#[derive(Debug, Default)]
struct Log {
    requests: Vec<Seen>,
    /// Framing the backend could read more than one way, or not at all.
    anomalies: Vec<String>,
    /// Every byte received, on every connection.
    raw: Vec<u8>,
}

/// A backend on 127.0.0.1:0 that reads requests strictly (CRLF lines, one Content-Length or
/// one `chunked`), records them, and answers each with the next scripted answer, or else `200
/// ok` naming the request's path in `x-path`.
struct Recorder {
    addr: SocketAddr,
    log: Arc<Mutex<Log>>,
    script: Arc<Mutex<Vec<Vec<u8>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Recorder {
    async fn start() -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (log, script) = (
            Arc::<Mutex<Log>>::default(),
            Arc::<Mutex<Vec<_>>>::default(),
        );
        let (l, s) = (log.clone(), script.clone());
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                while conns.try_join_next().is_some() {}
                conns.spawn(serve_recorded(stream, l.clone(), s.clone()));
            }
        });
        Recorder {
            addr,
            log,
            script,
            task,
        }
    }

    /// The requests read since the last call.
    fn take(&self) -> Vec<Seen> {
        std::mem::take(&mut self.log.lock().unwrap().requests)
    }

    /// Answers the next requests with these bytes, in order.
    fn script(&self, answers: &[&[u8]]) {
        *self.script.lock().unwrap() = answers.iter().rev().map(|a| a.to_vec()).collect();
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve_recorded(mut s: TcpStream, log: Arc<Mutex<Log>>, script: Arc<Mutex<Vec<Vec<u8>>>>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match parse_request(&buf) {
            Ok(Some((seen, used))) => {
                buf.drain(..used);
                log.lock().unwrap().requests.push(seen.clone());
                let path = seen.line.split(' ').nth(1).unwrap_or_default();
                let ok =
                    format!("HTTP/1.1 200 OK\r\nx-path: {path}\r\ncontent-length: 2\r\n\r\nok");
                let answer = script.lock().unwrap().pop().unwrap_or(ok.into_bytes());
                if s.write_all(&answer).await.is_err() {
                    return;
                }
                continue;
            }
            Ok(None) => {}
            Err(why) => {
                log.lock().unwrap().anomalies.push(why);
                return;
            }
        }
        // A connection that ends here with bytes in `buf` ended inside a request: terminus
        // gave up on it, and it is not one the backend read.
        let n = match tokio::time::timeout(WAIT, s.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => n,
            _ => return,
        };
        log.lock().unwrap().raw.extend_from_slice(&chunk[..n]);
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A head and what follows it: `Ok(None)` until the message is whole.
type Parsed<T> = Result<Option<(T, usize)>, String>;

/// One request the strict way; any doubt about its framing is an anomaly.
fn parse_request(buf: &[u8]) -> Parsed<Seen> {
    let Some(end) = find(buf, b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = std::str::from_utf8(&buf[..end]).map_err(|_| "head not UTF-8".to_string())?;
    let (line, fields) = head_fields(head)?;
    let (body, used) = match read_body(&fields, &buf[end + 4..])? {
        Some(b) => b,
        None => return Ok(None),
    };
    let seen = Seen {
        line: line.to_string(),
        head: head.to_string(),
        body,
    };
    Ok(Some((seen, end + 4 + used)))
}

/// A field: its name in lower case, and its value trimmed.
type Field = (String, String);

/// The start line and the fields of a head made of CRLF lines.
fn head_fields(head: &str) -> Result<(&str, Vec<Field>), String> {
    let mut lines = head.split("\r\n");
    let line = lines.next().unwrap_or_default();
    let mut fields = Vec::new();
    for l in lines {
        let bad = l.contains(['\r', '\n', '\0']);
        let Some((name, value)) = l.split_once(':').filter(|_| !bad) else {
            return Err(format!("bad field line {l:?}"));
        };
        if name.is_empty() || name.contains([' ', '\t']) {
            return Err(format!("bad field name {name:?}"));
        }
        fields.push((name.to_ascii_lowercase(), value.trim().to_string()));
    }
    Ok((line, fields))
}

/// The body by the one framing the fields allow.
fn read_body(fields: &[Field], rest: &[u8]) -> Parsed<Vec<u8>> {
    let named = |n: &str| -> Vec<&str> {
        fields
            .iter()
            .filter(|(k, _)| k == n)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    let (cl, te) = (named("content-length"), named("transfer-encoding"));
    match (&cl[..], &te[..]) {
        ([], []) => Ok(Some((Vec::new(), 0))),
        ([len], []) if !len.is_empty() && len.bytes().all(|b| b.is_ascii_digit()) => {
            let len: usize = len.parse().map_err(|_| format!("length {len}"))?;
            Ok((rest.len() >= len).then(|| (rest[..len].to_vec(), len)))
        }
        ([], ["chunked"]) => dechunk(rest),
        _ => Err(format!("ambiguous framing: length {cl:?}, coding {te:?}")),
    }
}

/// A chunked body, strictly: hex sizes without extensions, CRLF after each chunk.
fn dechunk(b: &[u8]) -> Parsed<Vec<u8>> {
    let mut body = Vec::new();
    let mut pos = 0;
    // Each round consumes at least a size line, so the loop ends with the buffer.
    loop {
        let Some(eol) = find(&b[pos..], b"\r\n") else {
            return Ok(None);
        };
        let size = std::str::from_utf8(&b[pos..pos + eol])
            .ok()
            .filter(|s| !s.is_empty() && s.bytes().all(|c| c.is_ascii_hexdigit()))
            .and_then(|s| usize::from_str_radix(s, 16).ok())
            .ok_or_else(|| format!("chunk size {:?}", &b[pos..pos + eol]))?;
        pos += eol + 2;
        if size == 0 {
            // Trailer lines, then an empty line.
            loop {
                let Some(eol) = find(&b[pos..], b"\r\n") else {
                    return Ok(None);
                };
                pos += eol + 2;
                if eol == 0 {
                    return Ok(Some((body, pos)));
                }
            }
        }
        if b.len() < pos + size + 2 {
            return Ok(None);
        }
        if &b[pos + size..pos + size + 2] != b"\r\n" {
            return Err("no CRLF after a chunk".to_string());
        }
        body.extend_from_slice(&b[pos..pos + size]);
        pos += size + 2;
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP/1 clients
// ---------------------------------------------------------------------------------------------

/// One answer as the client read it.
#[derive(Debug)]
struct Reply {
    status: u16,
    head: String,
    body: Vec<u8>,
}

/// What a client got for one vector.
#[derive(Debug, PartialEq, Eq)]
struct Got {
    answers: Vec<u16>,
    closes: bool,
    /// On a connection left open, the follow-up got the next answer, and it was its own.
    in_step: bool,
}

/// Reads answers until `want` are whole or the connection ends; each read bounded by `WAIT`.
async fn read_replies<S: AsyncRead + Unpin>(
    s: &mut S,
    buf: &mut Vec<u8>,
    want: usize,
) -> (Vec<Reply>, bool) {
    let mut replies = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        // Each round takes one whole answer off `buf`.
        loop {
            match parse_reply(buf) {
                Ok(Some((reply, used))) => {
                    buf.drain(..used);
                    replies.push(reply);
                }
                Ok(None) => break,
                Err(why) => panic!("terminus answered with broken framing: {why}"),
            }
        }
        if replies.len() >= want {
            return (replies, false);
        }
        match tokio::time::timeout(WAIT, s.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            Ok(_) => return (replies, true),
            Err(_) => panic!("no answer within {WAIT:?} (have {replies:?})"),
        }
    }
}

fn parse_reply(buf: &[u8]) -> Parsed<Reply> {
    let Some(end) = find(buf, b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = std::str::from_utf8(&buf[..end]).map_err(|_| "head not UTF-8".to_string())?;
    let (line, fields) = head_fields(head)?;
    let status = line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("status line {line:?}"))?;
    let Some((body, used)) = read_body(&fields, &buf[end + 4..])? else {
        return Ok(None);
    };
    let reply = Reply {
        status,
        head: head.to_string(),
        body,
    };
    Ok(Some((reply, end + 4 + used)))
}

/// Writes `send`, reads `want` answers, then tells whether the connection was closed: if it
/// was not, a follow-up request must be answered next with 200.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, send: &[u8], want: usize) -> Got {
    let _ = s.write_all(send).await;
    let mut buf = Vec::new();
    let (replies, mut closes) = read_replies(&mut s, &mut buf, want).await;
    let mut in_step = true;
    if !closes {
        let _ = s.write_all(FOLLOW_UP.as_bytes()).await;
        let (after, ended) = read_replies(&mut s, &mut buf, 1).await;
        closes = ended && after.is_empty();
        in_step = after
            .first()
            .is_none_or(|a| a.status == 200 && a.head.contains("x-path: /after\r\n"));
    }
    Got {
        answers: replies.iter().map(|r| r.status).collect(),
        closes,
        in_step,
    }
}

async fn tcp(addr: SocketAddr) -> TcpStream {
    tokio::time::timeout(WAIT, TcpStream::connect(addr))
        .await
        .unwrap()
        .unwrap()
}

async fn tls(addr: SocketAddr, ca: &str, alpn: &str) -> tokio_rustls::client::TlsStream<TcpStream> {
    let connector = tokio_rustls::TlsConnector::from(client_tls(ca, &[alpn]));
    let name = ServerName::try_from("localhost").unwrap();
    let stream = tokio::time::timeout(WAIT, connector.connect(name, tcp(addr).await))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(alpn.as_bytes()));
    stream
}

// ---------------------------------------------------------------------------------------------
// Terminus in front of the recorder
// ---------------------------------------------------------------------------------------------

struct Setup {
    backend: Recorder,
    cert: TestCert,
    terminus: InProcess,
    _dir: tempfile::TempDir,
}

/// Terminus with a plain listener "http" and a TLS listener "https" (HTTP/1.1 and h2), both
/// routing to the recorder.
async fn setup() -> Setup {
    let backend = Recorder::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cert = write_cert(dir.path(), "test", &["localhost"]);
    let config = format!(
        r#"
[global]
grace_period = "1s"

[timeouts]
connect = "1s"
response = "5s"

[[certificate]]
name = "test"
cert = "{}"
key = "{}"

[[listener]]
name = "http"
bind = "127.0.0.1:0"
protocol = "http"

  [[listener.route]]
  pool = "app"

[[listener]]
name = "https"
bind = "127.0.0.1:0"

  [[listener.route]]
  pool = "app"

[[pool]]
name = "app"
{}
"#,
        cert.cert_path.display(),
        cert.key_path.display(),
        backend_lines(&[("rec", backend.addr)]),
    );
    let terminus = start(dir.path(), &config).await;
    Setup {
        backend,
        cert,
        terminus,
        _dir: dir,
    }
}

/// Checks what the backend read for one vector: `want` requests besides the follow-up, never
/// the smuggled one, and the smuggled bytes at most inside a body framed as such.
fn backend_saw(s: &Setup, name: &str, got: &Got, want: usize) -> Vec<String> {
    let mut problems = Vec::new();
    let mut seen = s.backend.take();
    let raw = std::mem::take(&mut s.backend.log.lock().unwrap().raw);
    if !got.closes && seen.last().is_some_and(|r| r.line == "GET /after HTTP/1.1") {
        seen.pop();
    } else if !got.closes {
        problems.push(format!(
            "{name}: the follow-up did not reach the backend: {seen:?}"
        ));
    }
    if seen.len() != want {
        problems.push(format!(
            "{name}: backend read {} requests, want {want}: {seen:?}",
            seen.len()
        ));
    }
    if seen
        .iter()
        .any(|r| r.line.contains("smuggled") || r.head.contains("smuggled"))
    {
        problems.push(format!(
            "{name}: the smuggled request reached the backend: {seen:?}"
        ));
    }
    // The hidden request may reach the backend only inside a body framed as such.
    let as_body = seen.iter().any(|r| find(&r.body, b"smuggled").is_some());
    if find(&raw, b"smuggled").is_some() && !as_body {
        let raw = String::from_utf8_lossy(&raw);
        problems.push(format!(
            "{name}: smuggled bytes reached the backend: {raw:?}"
        ));
    }
    problems
}

/// After a pause, what reached the backend late: nothing may.
async fn late(s: &Setup) -> Vec<String> {
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let got = Got {
        answers: Vec::new(),
        closes: true,
        in_step: true,
    };
    let mut problems = backend_saw(s, "after the last vector", &got, 0);
    let log = s.backend.log.lock().unwrap();
    if !log.anomalies.is_empty() {
        problems.push(format!(
            "the backend read ambiguous framing: {:?}",
            log.anomalies
        ));
    }
    problems
}

/// Runs every HTTP/1 vector over plain TCP and over TLS, and lists every difference.
#[tokio::test]
async fn http1_vectors_are_refused_or_reframed() {
    assert!(H1_VECTORS.len() >= 30);
    let s = setup().await;
    let mut problems = Vec::new();
    for over_tls in [false, true] {
        for v in H1_VECTORS {
            let name = format!("{}{}", v.name, if over_tls { " (TLS)" } else { "" });
            let got = if over_tls {
                let conn = tls(s.terminus.addr("https"), &s.cert.cert_pem, "http/1.1").await;
                exchange(conn, v.send.as_bytes(), v.answers.len()).await
            } else {
                exchange(
                    tcp(s.terminus.addr("http")).await,
                    v.send.as_bytes(),
                    v.answers.len(),
                )
                .await
            };
            let want = Got {
                answers: v.answers.to_vec(),
                closes: v.closes,
                in_step: true,
            };
            if got != want {
                problems.push(format!("{name}: got {got:?}, want {want:?}"));
            }
            problems.extend(backend_saw(&s, &name, &got, v.backend));
        }
    }
    problems.extend(late(&s).await);
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// HTTP/2, frame by frame
// ---------------------------------------------------------------------------------------------

/// How terminus answered one HTTP/2 stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum H2Answer {
    /// A response head with this status (0: one this test does not decode).
    Status(u16),
    /// RST_STREAM: the stream was refused.
    Reset,
    /// GOAWAY, or the connection closed.
    GoAway,
}

/// One HTTP/2 vector: fields after the pseudo-fields of `POST https://localhost/` (a field
/// given here replaces the pseudo-field of its name), then DATA frames, the last ending the
/// stream.
struct H2Vector {
    name: &'static str,
    fields: &'static [(&'static str, &'static str)],
    data: &'static [&'static str],
    answer: H2Answer,
    backend: usize,
}

const fn h2(
    name: &'static str,
    answer: H2Answer,
    backend: usize,
    fields: &'static [(&'static str, &'static str)],
    data: &'static [&'static str],
) -> H2Vector {
    H2Vector {
        name,
        fields,
        data,
        answer,
        backend,
    }
}

use H2Answer::{GoAway, Reset, Status};

#[rustfmt::skip]
const H2_VECTORS: &[H2Vector] = &[
    // Controls: a length that matches the data, and `te: trailers`, the one te HTTP/2 allows.
    h2("content-length matches (control)", Status(200), 1, &[("content-length", "5")], &["hello"]),
    h2("te: trailers (control)",           Status(200), 1, &[("te", "trailers")], &["hello"]),
    // H2.TE: HTTP/2 frames bodies itself; a Transfer-Encoding passed on to an HTTP/1.1 backend
    // would frame the body anew there, and what follows `0` would be the next request.
    h2("transfer-encoding: chunked", Reset, 0, &[("transfer-encoding", "chunked")], &[concat!("0\r\n\r\n", smuggled!())]),
    // Connection-specific fields (RFC 9113 8.2.2): they describe an HTTP/1.1 connection.
    h2("connection: keep-alive",      Reset, 0, &[("connection", "keep-alive")], &["hello"]),
    h2("keep-alive: timeout=5",       Reset, 0, &[("keep-alive", "timeout=5")], &["hello"]),
    h2("proxy-connection: keep-alive", Reset, 0, &[("proxy-connection", "keep-alive")], &["hello"]),
    h2("upgrade: h2c",                Reset, 0, &[("upgrade", "h2c")], &["hello"]),
    h2("te: gzip",                    Reset, 0, &[("te", "gzip")], &["hello"]),
    // H2.CL: a content-length the DATA frames disagree with. Passed on, the backend would cut
    // the body at the length and read the rest as the next request, or wait for bytes that
    // never come and take the next request as body.
    h2("content-length smaller than data", Reset, 0, &[("content-length", "3")], &[concat!("abc", smuggled!())]),
    h2("content-length larger than data",  Reset, 0, &[("content-length", "50")], &["hello"]),
    h2("content-length twice, differing",  Reset, 0, &[("content-length", "5"), ("content-length", "0")], &["hello"]),
    h2("content-length twice, same",       Status(400), 0, &[("content-length", "5"), ("content-length", "5")], &["hello"]),
    h2("content-length +5",                Reset, 0, &[("content-length", "+5")], &["hello"]),
    // CRLF injection: HPACK carries any byte, so a field can hold a whole HTTP/1.1 head that a
    // downgrading proxy would write out verbatim. The h2 crate cannot decode such a field into
    // a header and ends the whole connection (GOAWAY, PROTOCOL_ERROR); a :path that is no URI
    // resets the stream.
    h2("content-length carries a request", GoAway, 0, &[("content-length", concat!("0\r\n\r\n", smuggled!()))], &[]),
    h2("CRLF in a field value",           GoAway, 0, &[("x-pad", "a\r\nTransfer-Encoding: chunked")], &[concat!("0\r\n\r\n", smuggled!())]),
    h2("CRLF in :path",                   Reset, 0, &[(":path", concat!("/ HTTP/1.1\r\nHost: localhost\r\n\r\n", "GET /smuggled"))], &[]),
    h2("space in a field name",           GoAway, 0, &[("transfer-encoding chunked", "x")], &["hello"]),
];

/// A client that writes HTTP/2 frames by hand, to send what no client library would.
struct H2 {
    io: tokio_rustls::client::TlsStream<TcpStream>,
    buf: Vec<u8>,
    next_stream: u32,
}

const HEADERS: u8 = 1;
const DATA: u8 = 0;
const RST_STREAM: u8 = 3;
const SETTINGS: u8 = 4;
const PING: u8 = 6;
const GOAWAY: u8 = 7;
const END_STREAM: u8 = 1;
const END_HEADERS: u8 = 4;
const ACK: u8 = 1;

/// One header field as an HPACK literal without indexing, name and value as plain octets.
fn literal(block: &mut Vec<u8>, name: &str, value: &str) {
    assert!(
        name.len() < 127 && value.len() < 127,
        "one-byte lengths only"
    );
    block.push(0);
    block.push(name.len() as u8);
    block.extend_from_slice(name.as_bytes());
    block.push(value.len() as u8);
    block.extend_from_slice(value.as_bytes());
}

/// The status of a response head as hyper's h2 encodes the common ones: an indexed field,
/// or `:status` by index with a plain value.
fn status_of(block: &[u8]) -> u16 {
    let b = match block.iter().position(|&b| b & 0xe0 != 0x20) {
        Some(i) => &block[i..], // past dynamic table size updates
        None => return 0,
    };
    match b {
        [0x88, ..] => 200,
        [0x8c, ..] => 400,
        [0x8d, ..] => 404,
        [0x8e, ..] => 500,
        [first, len, rest @ ..] if first & 0x0f == 8 && len & 0x80 == 0 => {
            let len = usize::from(*len).min(rest.len());
            std::str::from_utf8(&rest[..len])
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0)
        }
        _ => 0,
    }
}

impl H2 {
    async fn open(addr: SocketAddr, ca: &str) -> H2 {
        let mut h2 = H2 {
            io: tls(addr, ca, "h2").await,
            buf: Vec::new(),
            next_stream: 1,
        };
        h2.io
            .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            .await
            .unwrap();
        h2.frame(SETTINGS, 0, 0, &[]).await;
        h2
    }

    async fn frame(&mut self, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
        let len = (payload.len() as u32).to_be_bytes();
        let mut f = vec![len[1], len[2], len[3], kind, flags];
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        // A write after terminus closed fails; the answer tells what happened.
        let _ = self.io.write_all(&f).await;
    }

    /// Sends one request; returns its stream id.
    async fn send(&mut self, method: &str, fields: &[(&str, &str)], data: &[&str]) -> u32 {
        let id = self.next_stream;
        self.next_stream += 2;
        let mut block = Vec::new();
        let pseudo = [
            (":method", method),
            (":scheme", "https"),
            (":path", "/"),
            (":authority", "localhost"),
        ];
        for (name, value) in pseudo {
            if !fields.iter().any(|(n, _)| *n == name) {
                literal(&mut block, name, value);
            }
        }
        for (name, value) in fields {
            literal(&mut block, name, value);
        }
        let end = if data.is_empty() { END_STREAM } else { 0 };
        self.frame(HEADERS, END_HEADERS | end, id, &block).await;
        for (i, d) in data.iter().enumerate() {
            let end = if i + 1 == data.len() { END_STREAM } else { 0 };
            self.frame(DATA, end, id, d.as_bytes()).await;
        }
        id
    }

    /// Reads frames until stream `id` gets a response head or a reset, or the connection ends
    /// (bounded by `WAIT`). SETTINGS and PING are acknowledged on the way.
    async fn answer(&mut self, id: u32) -> H2Answer {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            while self.buf.len() >= 9 {
                let len = u32::from_be_bytes([0, self.buf[0], self.buf[1], self.buf[2]]) as usize;
                if self.buf.len() < 9 + len {
                    break;
                }
                let frame: Vec<u8> = self.buf.drain(..9 + len).collect();
                let (kind, flags) = (frame[3], frame[4]);
                let stream =
                    u32::from_be_bytes([frame[5], frame[6], frame[7], frame[8]]) & !(1 << 31);
                let payload = &frame[9..];
                match kind {
                    SETTINGS if flags & ACK == 0 => self.frame(SETTINGS, ACK, 0, &[]).await,
                    PING if flags & ACK == 0 => self.frame(PING, ACK, 0, payload).await,
                    HEADERS if stream == id => return Status(status_of(payload)),
                    RST_STREAM if stream == id => return Reset,
                    GOAWAY => return GoAway,
                    _ => {}
                }
            }
            let mut chunk = [0u8; 4096];
            match tokio::time::timeout_at(deadline, self.io.read(&mut chunk)).await {
                Ok(Ok(n)) if n > 0 => self.buf.extend_from_slice(&chunk[..n]),
                Ok(_) => return GoAway,
                Err(_) => panic!("no answer on stream {id} within {WAIT:?}"),
            }
        }
    }
}

/// Runs every HTTP/2 vector on its own connection, then a GET on the same connection, which
/// must be answered unless the connection went away.
#[tokio::test]
async fn http2_vectors_are_refused() {
    let s = setup().await;
    let mut problems = Vec::new();
    for v in H2_VECTORS {
        let mut conn = H2::open(s.terminus.addr("https"), &s.cert.cert_pem).await;
        let id = conn.send("POST", v.fields, v.data).await;
        let answer = conn.answer(id).await;
        if answer != v.answer {
            problems.push(format!("{}: got {answer:?}, want {:?}", v.name, v.answer));
        }
        let after = if answer == GoAway {
            GoAway
        } else {
            let id = conn.send("GET", &[(":path", "/after")], &[]).await;
            conn.answer(id).await
        };
        let got = Got {
            answers: Vec::new(),
            closes: after != Status(200),
            in_step: true,
        };
        problems.extend(backend_saw(&s, v.name, &got, v.backend));
    }
    problems.extend(late(&s).await);
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// Responses
// ---------------------------------------------------------------------------------------------

/// One answer the backend writes, and the status the client must get for it.
struct ResponseVector {
    name: &'static str,
    answer: &'static str,
    status: u16,
}

const fn r(name: &'static str, status: u16, answer: &'static str) -> ResponseVector {
    ResponseVector {
        name,
        answer,
        status,
    }
}

/// A response an attack hides where a confused hop would read the next answer.
macro_rules! poison {
    () => {
        "HTTP/1.1 200 OK\r\nContent-Length: 8\r\nX-Poison: 1\r\n\r\nsmuggled"
    };
}

#[rustfmt::skip]
const RESPONSE_VECTORS: &[ResponseVector] = &[
    // Response splitting: a length the backend and terminus read differently leaves bytes on
    // the backend connection that would answer the next request. Refused with 502.
    r("CL twice, differing", 502, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok"),
    r("CL list 2, 3",        502, "HTTP/1.1 200 OK\r\nContent-Length: 2, 3\r\n\r\nok"),
    r("CL abc",              502, "HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\nok"),
    r("CL +2",               502, "HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\nok"),
    r("TE xchunked",         502, concat!("HTTP/1.1 200 OK\r\nTransfer-Encoding: xchunked\r\nContent-Length: 2\r\n\r\nok", poison!())),
    r("TE gzip, chunked",    502, "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"),
    r("TE twice",            502, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"),
    r("TE in HTTP/1.0",      502, "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"),
    // Content-Length next to Transfer-Encoding: hyper would drop the length and read the
    // coding; terminus reads the raw head beside it and refuses the response, in either order
    // and behind an interim 100 (the connection is not reused; `/next` checks).
    r("CL and TE",           502, concat!("HTTP/1.1 200 OK\r\nContent-Length: 77\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", poison!())),
    r("TE and CL",           502, concat!("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n2\r\nok\r\n0\r\n\r\n", poison!())),
    r("CL and TE after 100", 502, concat!("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", poison!())),
    // Controls: lengths that agree, and plain chunked; the client gets one Content-Length.
    r("CL twice, same (control)", 200, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok"),
    r("CL list 2, 2 (control)",   200, "HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\nok"),
    r("chunked (control)",        200, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"),
];

/// One GET on a new plain connection; its answer.
async fn get(s: &Setup, path: &str) -> Reply {
    let mut conn = tcp(s.terminus.addr("http")).await;
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n");
    conn.write_all(req.as_bytes()).await.unwrap();
    let (mut replies, _) = read_replies(&mut conn, &mut Vec::new(), 1).await;
    assert_eq!(replies.len(), 1, "GET {path}: no answer");
    replies.remove(0)
}

/// Every ambiguous answer is a 502 counted against the backend; every good one reaches the
/// client with a single length; and the request after each gets the backend's own answer.
#[tokio::test]
async fn ambiguous_responses_are_refused_and_counted() {
    let s = setup().await;
    let stats = &s.terminus.pools[0].backends[0].stats;
    let mut problems = Vec::new();
    for v in RESPONSE_VECTORS {
        // Index 5: attempts counted as "failed" (terminus_backend_responses_total).
        let failed_before = stats.responses()[5];
        s.backend.script(&[v.answer.as_bytes()]);
        let reply = get(&s, "/").await;
        let counted = stats.responses()[5] - failed_before;
        if reply.status != v.status || counted != u64::from(v.status == 502) {
            problems.push(format!(
                "{}: got {} (counted as failed: {counted}), want {}",
                v.name, reply.status, v.status
            ));
        }
        let lengths = reply
            .head
            .to_ascii_lowercase()
            .matches("content-length")
            .count();
        if v.status == 200 && (reply.body != b"ok" || lengths > 1) {
            problems.push(format!("{}: forwarded as {reply:?}", v.name));
        }
        let next = get(&s, "/next").await;
        if !next.head.contains("x-path: /next\r\n") || next.body != b"ok" {
            problems.push(format!("{}: the next request got {next:?}", v.name));
        }
        s.backend.take();
    }
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
}
