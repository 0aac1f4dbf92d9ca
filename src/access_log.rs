//! The access log: one line per HTTP request or L4 connection, in JSON or compact text, written by
//! a dedicated thread behind a bounded queue so that the data path never waits for a disk.
//!
//! `log` only ever `try_send`s: when `buffer` records are already waiting, the new one is dropped
//! and counted, which is the right trade for a proxy (a full disk must not stall traffic).

use std::fmt::{self, Write as _};
use std::fs::OpenOptions;
use std::io::{self, BufWriter, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serializer;
use tokio::sync::mpsc::{self, error::TrySendError};

use crate::config::{AccessLogSpec, LogFormat, LogTarget};

/// What a record describes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    #[default]
    Http,
    Tcp,
}

/// One finished request or L4 connection. `Default` has `time` at the Unix epoch: always set it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Record {
    /// When the request (or connection) started.
    #[serde(serialize_with = "ser_time")]
    pub time: SystemTime,
    pub kind: Kind,
    pub listener: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sni: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_version: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cipher: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resumed: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alpn: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Path and query as received.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// `None` for L4.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Body bytes from the client (L4: all bytes).
    pub bytes_in: u64,
    /// Body bytes to the client (L4: all bytes).
    pub bytes_out: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    pub retries: u32,
    #[serde(rename = "tls_handshake_ms", serialize_with = "ser_opt_ms")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_handshake: Option<Duration>,
    /// `None` when a pooled connection was reused.
    #[serde(rename = "upstream_connect_ms", serialize_with = "ser_opt_ms")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_connect: Option<Duration>,
    /// Until the first response byte from the backend.
    #[serde(rename = "ttfb_ms", serialize_with = "ser_opt_ms")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttfb: Option<Duration>,
    #[serde(rename = "total_ms", serialize_with = "ser_ms")]
    pub total: Duration,
    /// `None` = ended normally; else a short reason like `client_closed`, `upstream_reset`,
    /// `no_backend`, `timeout`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub termination: Option<String>,
    /// The explainable-decision text, when recorded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision: Option<String>,
}

// Not derived: `SystemTime` has no `Default`.
impl Default for Record {
    fn default() -> Self {
        Record {
            time: UNIX_EPOCH,
            kind: Kind::Http,
            listener: String::new(),
            client: None,
            sni: None,
            tls_version: None,
            cipher: None,
            resumed: None,
            alpn: None,
            method: None,
            host: None,
            path: None,
            status: None,
            bytes_in: 0,
            bytes_out: 0,
            route: None,
            pool: None,
            backend: None,
            retries: 0,
            tls_handshake: None,
            upstream_connect: None,
            ttfb: None,
            total: Duration::ZERO,
            termination: None,
            decision: None,
        }
    }
}

/// RFC 3339 UTC with millis. humantime panics before 1970 and fails after 9999, so a wall clock
/// set wrong is clamped into that range instead of taking the writer down.
fn rfc3339(t: SystemTime) -> humantime::Rfc3339Timestamp {
    let last = UNIX_EPOCH
        .checked_add(Duration::from_millis(253_402_300_799_999))
        .unwrap_or(UNIX_EPOCH);
    humantime::format_rfc3339_millis(t.clamp(UNIX_EPOCH, last))
}

/// Milliseconds rounded to the microsecond, so JSON shows at most 3 decimals.
fn millis(d: Duration) -> f64 {
    ((d.as_nanos() + 500) / 1000) as f64 / 1000.0
}

fn ser_time<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&rfc3339(*t))
}

fn ser_ms<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(millis(*d))
}

fn ser_opt_ms<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_f64(millis(*d)),
        None => s.serialize_none(),
    }
}

/// One JSON object on one line (no newline at the end); `None` fields are left out.
pub fn format_json(r: &Record) -> String {
    serde_json::to_string(r)
        .unwrap_or_else(|_| String::from(r#"{"error":"access log record not serializable"}"#))
}

/// One compact text line in a fixed field order, `-` for a missing value.
pub fn format_text(r: &Record) -> String {
    let mut out = String::with_capacity(256);
    push_text(&mut out, r);
    out
}

/// Writing into a `String` fails only when a `Display` impl does, and ours are clamped not to.
fn push_fmt(out: &mut String, args: fmt::Arguments<'_>) {
    let _ = out.write_fmt(args);
}

fn push_text(out: &mut String, r: &Record) {
    push_fmt(out, format_args!("{} ", rfc3339(r.time)));
    push_token(out, Some(&r.listener));
    match r.client {
        Some(addr) => push_fmt(out, format_args!(" {addr} ")),
        None => out.push_str(" - "),
    }
    match r.kind {
        Kind::Http => push_request(out, r),
        Kind::Tcp => out.push_str("tcp"),
    }
    match r.status {
        Some(status) => push_fmt(out, format_args!(" {status}")),
        None => out.push_str(" -"),
    }
    push_fmt(out, format_args!(" in={} out={}", r.bytes_in, r.bytes_out));
    push_field(out, "route", r.route.as_deref());
    push_field(out, "pool", r.pool.as_deref());
    push_field(out, "backend", r.backend.as_deref());
    push_fmt(out, format_args!(" retries={} tls=", r.retries));
    push_tls(out, r);
    push_field(out, "sni", r.sni.as_deref());
    push_field(out, "alpn", r.alpn.as_deref());
    push_duration(out, "hs", r.tls_handshake);
    push_duration(out, "connect", r.upstream_connect);
    push_duration(out, "ttfb", r.ttfb);
    push_duration(out, "total", Some(r.total));
    push_field(out, "end", r.termination.as_deref());
    if let Some(decision) = &r.decision {
        out.push_str(" decision=\"");
        push_escaped(out, decision, false);
        out.push('"');
    }
}

/// `"METHOD HOST PATH"`: spaces inside a part are escaped too, so the three parts stay apart.
fn push_request(out: &mut String, r: &Record) {
    out.push('"');
    for (i, part) in [&r.method, &r.host, &r.path].into_iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        match part {
            Some(part) => push_escaped(out, part, true),
            None => out.push('-'),
        }
    }
    out.push('"');
}

fn push_tls(out: &mut String, r: &Record) {
    if r.tls_version.is_none() && r.cipher.is_none() {
        out.push('-');
        return;
    }
    push_token(out, r.tls_version);
    out.push('/');
    push_token(out, r.cipher);
    out.push_str(match r.resumed {
        Some(true) => "/resumed",
        Some(false) => "/full",
        None => "/-",
    });
}

fn push_field(out: &mut String, key: &str, value: Option<&str>) {
    push_fmt(out, format_args!(" {key}="));
    push_token(out, value);
}

fn push_duration(out: &mut String, key: &str, d: Option<Duration>) {
    match d {
        Some(d) => push_fmt(
            out,
            format_args!(" {key}={:.3}ms", d.as_secs_f64() * 1000.0),
        ),
        None => push_fmt(out, format_args!(" {key}=-")),
    }
}

/// A bare word when it is plain printable ASCII; otherwise quoted and escaped (spaces too), so a
/// value from a client (SNI, ALPN) can neither split the line nor hold a ` key=` lookalike.
fn push_token(out: &mut String, value: Option<&str>) {
    let Some(value) = value else {
        out.push('-');
        return;
    };
    let bare = !value.is_empty()
        && value != "-"
        && value
            .chars()
            .all(|c| c.is_ascii_graphic() && c != '"' && c != '\\');
    if bare {
        out.push_str(value);
    } else {
        out.push('"');
        push_escaped(out, value, true);
        out.push('"');
    }
}

/// Escapes quotes, backslashes and everything outside printable ASCII (and spaces if asked), so
/// the output is one line of ASCII whatever the input.
fn push_escaped(out: &mut String, value: &str, escape_space: bool) {
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            ' ' if escape_space => out.push_str("\\x20"),
            ' '..='~' => out.push(c),
            c if u32::from(c) < 0x100 => push_fmt(out, format_args!("\\x{:02x}", u32::from(c))),
            c => push_fmt(out, format_args!("\\u{{{:x}}}", u32::from(c))),
        }
    }
}

#[derive(Debug, Default)]
struct Stats {
    /// Records queued for the writer, and those it has finished with (written or failed).
    accepted: AtomicU64,
    settled: AtomicU64,
    dropped: AtomicU64,
    written: AtomicU64,
    write_errors: AtomicU64,
}

/// The handle the data path logs through; the writer thread ends when the last handle is dropped.
#[derive(Debug)]
pub struct AccessLog {
    tx: mpsc::Sender<Record>,
    stats: Arc<Stats>,
}

impl AccessLog {
    /// Starts the writer (a dedicated std thread, so slow disks never stall tokio workers) and
    /// returns the handle. A file is opened for append and created if missing.
    pub fn start(spec: &AccessLogSpec) -> io::Result<Arc<AccessLog>> {
        let out: Box<dyn Write + Send> = match &spec.target {
            // Not `stdout().lock()`: holding the lock for the writer's life would hang any other
            // print to stdout. `Stdout` locks per write, i.e. per flushed batch here.
            LogTarget::Stdout => Box::new(io::stdout()),
            LogTarget::File(path) => {
                let file = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| {
                        io::Error::new(e.kind(), format!("access log {}: {e}", path.display()))
                    })?;
                Box::new(file)
            }
        };
        Self::spawn(out, spec.format, spec.buffer)
    }

    fn spawn(
        out: Box<dyn Write + Send>,
        format: LogFormat,
        buffer: usize,
    ) -> io::Result<Arc<AccessLog>> {
        // tokio panics on a capacity of 0 or beyond its semaphore's limit; config allows 16..=1e6.
        let (tx, rx) = mpsc::channel(buffer.clamp(1, 1 << 24));
        let stats = Arc::new(Stats::default());
        let writer = Writer {
            out: BufWriter::with_capacity(64 * 1024, out),
            format,
            stats: Arc::clone(&stats),
            line: Vec::with_capacity(512),
            text: String::with_capacity(512),
            pending: 0,
            warned: Vec::new(),
        };
        thread::Builder::new()
            .name("access-log".into())
            .spawn(move || writer.run(rx))?;
        Ok(Arc::new(AccessLog { tx, stats }))
    }

    /// Queues a record; never blocks: when `buffer` records are already waiting (or the writer
    /// is gone), the record is dropped and counted.
    pub fn log(&self, record: Record) {
        match self.tx.try_send(record) {
            Ok(()) => {
                self.stats.accepted.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Full(_) | TrySendError::Closed(_)) => {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Waits (at most `max`) until the writer has finished with every queued record, so a
    /// shutdown loses no line.
    pub async fn drain(&self, max: Duration) {
        let deadline = tokio::time::Instant::now() + max;
        while self.stats.settled.load(Ordering::Relaxed)
            < self.stats.accepted.load(Ordering::Relaxed)
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Records dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.stats.dropped.load(Ordering::Relaxed)
    }

    /// Lines handed to the target (flushed to the file or stdout).
    pub fn written(&self) -> u64 {
        self.stats.written.load(Ordering::Relaxed)
    }

    /// Failed writes and flushes; each kind of error is also logged once as a warning.
    pub fn write_errors(&self) -> u64 {
        self.stats.write_errors.load(Ordering::Relaxed)
    }
}

struct Writer {
    out: BufWriter<Box<dyn Write + Send>>,
    format: LogFormat,
    stats: Arc<Stats>,
    line: Vec<u8>,
    text: String,
    /// Lines in `out` not yet flushed.
    pending: u64,
    warned: Vec<io::ErrorKind>,
}

impl Writer {
    /// Drains the queue, flushing whenever it is momentarily empty so lines show up promptly
    /// under light load and are batched under heavy load. Ends when every sender is gone.
    fn run(mut self, mut rx: mpsc::Receiver<Record>) {
        while let Some(record) = rx.blocking_recv() {
            self.write(&record);
            let mut batch = 1;
            while let Ok(record) = rx.try_recv() {
                self.write(&record);
                batch += 1;
            }
            self.flush();
            self.stats.settled.fetch_add(batch, Ordering::Relaxed);
        }
    }

    fn write(&mut self, r: &Record) {
        self.line.clear();
        match self.format {
            LogFormat::Json => {
                if let Err(e) = serde_json::to_writer(&mut self.line, r) {
                    self.failed(e.into());
                    return;
                }
            }
            LogFormat::Text => {
                self.text.clear();
                push_text(&mut self.text, r);
                self.line.extend_from_slice(self.text.as_bytes());
            }
        }
        self.line.push(b'\n');
        match self.out.write_all(&self.line) {
            Ok(()) => self.pending += 1,
            Err(e) => self.failed(e),
        }
    }

    fn flush(&mut self) {
        match self.out.flush() {
            Ok(()) => {
                self.stats
                    .written
                    .fetch_add(self.pending, Ordering::Relaxed);
                self.pending = 0;
            }
            // The unflushed lines stay in the buffer and go out with a later flush, if any.
            Err(e) => self.failed(e),
        }
    }

    fn failed(&mut self, e: io::Error) {
        self.stats.write_errors.fetch_add(1, Ordering::Relaxed);
        if !self.warned.contains(&e.kind()) {
            self.warned.push(e.kind());
            tracing::warn!(error = %e, "access log write failed; further errors of this kind are only counted");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::sync::{mpsc as std_mpsc, Mutex};
    use std::time::Instant;

    fn sample() -> Record {
        Record {
            time: UNIX_EPOCH + Duration::from_millis(1_796_424_601_123),
            listener: "https".into(),
            client: Some("127.0.0.1:51234".parse().unwrap()),
            sni: Some("example.com".into()),
            tls_version: Some("TLSv1.3"),
            cipher: Some("TLS13_AES_128_GCM_SHA256"),
            resumed: Some(true),
            alpn: Some("h2".into()),
            method: Some("GET".into()),
            host: Some("example.com".into()),
            path: Some("/path?q=1".into()),
            status: Some(200),
            bytes_out: 12,
            route: Some("api".into()),
            pool: Some("demo".into()),
            backend: Some("demo-1".into()),
            tls_handshake: Some(Duration::from_micros(1234)),
            upstream_connect: None,
            ttfb: Some(Duration::from_nanos(2_100_400)),
            total: Duration::from_micros(2500),
            ..Record::default()
        }
    }

    /// Polls `done` for up to 5 s; the only kind of waiting these tests do.
    fn wait_for(mut done: impl FnMut() -> bool) -> bool {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if done() {
                return true;
            }
            thread::sleep(Duration::from_millis(5));
        }
        done()
    }

    #[test]
    fn json_has_the_fields_and_leaves_out_none() {
        let line = format_json(&sample());
        assert!(!line.contains('\n'));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["time"], "2026-12-04T22:50:01.123Z");
        assert_eq!(v["kind"], "http");
        assert_eq!(v["client"], "127.0.0.1:51234");
        assert_eq!(v["status"], 200);
        assert_eq!(v["bytes_in"], 0);
        assert_eq!(v["bytes_out"], 12);
        assert_eq!(v["resumed"], true);
        assert_eq!(v["tls_handshake_ms"], 1.234);
        assert_eq!(v["ttfb_ms"], 2.1);
        assert_eq!(v["total_ms"], 2.5);
        for absent in [
            "upstream_connect_ms",
            "termination",
            "decision",
            "tls_handshake",
        ] {
            assert!(v.get(absent).is_none(), "{absent} in {line}");
        }
        let tcp = Record {
            kind: Kind::Tcp,
            ..Record::default()
        };
        let v: serde_json::Value = serde_json::from_str(&format_json(&tcp)).unwrap();
        assert_eq!(v["kind"], "tcp");
        assert_eq!(v["time"], "1970-01-01T00:00:00.000Z");
        assert!(v.get("status").is_none() && v.get("client").is_none());
    }

    #[test]
    fn text_line_has_a_fixed_shape() {
        assert_eq!(
            format_text(&sample()),
            "2026-12-04T22:50:01.123Z https 127.0.0.1:51234 \"GET example.com /path?q=1\" 200 \
             in=0 out=12 route=api pool=demo backend=demo-1 retries=0 \
             tls=TLSv1.3/TLS13_AES_128_GCM_SHA256/resumed sni=example.com alpn=h2 \
             hs=1.234ms connect=- ttfb=2.100ms total=2.500ms end=-"
        );
        let tcp = Record {
            kind: Kind::Tcp,
            listener: "db".into(),
            bytes_in: 7,
            termination: Some("upstream_reset".into()),
            decision: Some("least-conn: \"b\" had 0".into()),
            ..Record::default()
        };
        assert_eq!(
            format_text(&tcp),
            "1970-01-01T00:00:00.000Z db - tcp - in=7 out=0 route=- pool=- backend=- retries=0 \
             tls=- sni=- alpn=- hs=- connect=- ttfb=- total=0.000ms end=upstream_reset \
             decision=\"least-conn: \\\"b\\\" had 0\""
        );
    }

    #[test]
    fn client_input_cannot_break_the_line_or_forge_fields() {
        let forged = "\" 200 in=0 out=0 route=admin end=-\n2026-01-01T00:00:00.000Z x";
        let r = Record {
            method: Some("GET\r\n".into()),
            host: Some("a b\u{2028}".into()),
            path: Some(format!("/x?{forged}")),
            sni: Some("evil sni=x".into()),
            alpn: Some("\\\"".into()),
            decision: Some(forged.into()),
            ..sample()
        };
        let line = format_text(&r);
        assert!(line.is_ascii() && !line.contains(['\n', '\r']), "{line}");
        // The decision is free text in quotes and comes last; before it, each field is there once.
        let (fields, decision) = line.split_once(" decision=\"").unwrap();
        for field in [" in=", " route=", " sni=", " end="] {
            assert_eq!(fields.matches(field).count(), 1, "{field} in {line}");
        }
        assert!(decision.ends_with('"') && !decision.contains(" decision="));
        // Outside escapes, quotes come in pairs: request, sni, alpn, decision.
        let unescaped = line.replace("\\\\", "").replace("\\\"", "");
        assert_eq!(unescaped.matches('"').count(), 8, "{line}");
        assert!(line.contains("\"GET\\r\\n a\\x20b\\u{2028} /x?\\\"\\x20200\\x20in=0"));
        assert!(line.contains(" sni=\"evil\\x20sni=x\" alpn=\"\\\\\\\"\" "));
    }

    #[test]
    fn odd_clocks_and_empty_tokens_do_not_panic() {
        let r = Record {
            time: UNIX_EPOCH - Duration::from_secs(10),
            listener: String::new(),
            route: Some("-".into()),
            ..Record::default()
        };
        let line = format_text(&r);
        assert!(
            line.starts_with("1970-01-01T00:00:00.000Z \"\" - "),
            "{line}"
        );
        assert!(line.contains(" route=\"-\" "), "{line}");
        let far = UNIX_EPOCH + Duration::from_secs(400_000_000_000);
        let v: serde_json::Value =
            serde_json::from_str(&format_json(&Record { time: far, ..r })).unwrap();
        assert_eq!(v["time"], "9999-12-31T23:59:59.999Z");
    }

    #[test]
    fn a_file_receives_one_line_per_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        std::fs::write(&path, "earlier line\n").unwrap();
        let spec = AccessLogSpec {
            target: LogTarget::File(path.clone()),
            format: LogFormat::Json,
            buffer: 1024,
        };
        let log = AccessLog::start(&spec).unwrap();
        for i in 0..200u16 {
            log.log(Record {
                status: Some(i),
                ..sample()
            });
        }
        assert!(wait_for(|| log.written() == 200), "{}", log.written());
        assert_eq!(log.dropped(), 0);
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 201);
        assert_eq!(lines[0], "earlier line");
        let last: serde_json::Value = serde_json::from_str(lines[200]).unwrap();
        assert_eq!(last["status"], 199);
    }

    #[test]
    fn an_unopenable_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let spec = AccessLogSpec {
            target: LogTarget::File(dir.path().join("missing/dir/access.log")),
            format: LogFormat::Text,
            buffer: 16,
        };
        let err = AccessLog::start(&spec).unwrap_err();
        assert!(err.to_string().contains("missing/dir/access.log"), "{err}");
    }

    /// An output that blocks its first write until released, and says when it was dropped.
    struct Gate {
        entered: Arc<AtomicBool>,
        release: Option<std_mpsc::Receiver<()>>,
        lines: Arc<Mutex<Vec<u8>>>,
        dropped: Arc<AtomicBool>,
    }

    impl Write for Gate {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.entered.store(true, Ordering::SeqCst);
            if let Some(release) = self.release.take() {
                let _ = release.recv();
            }
            self.lines.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Drop for Gate {
        fn drop(&mut self) {
            self.dropped.store(true, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_stalled_writer_drops_and_counts_instead_of_blocking() {
        let (release, gate_rx) = std_mpsc::channel();
        let (entered, dropped) = (Arc::new(AtomicBool::new(false)), Arc::default());
        let lines = Arc::new(Mutex::new(Vec::new()));
        let gate = Gate {
            entered: Arc::clone(&entered),
            release: Some(gate_rx),
            lines: Arc::clone(&lines),
            dropped: Arc::clone(&dropped),
        };
        let log = AccessLog::spawn(Box::new(gate), LogFormat::Text, 16).unwrap();
        log.log(sample());
        assert!(wait_for(|| entered.load(Ordering::SeqCst)));
        // The writer is stuck in its first write: 16 more fit in the queue, the rest are dropped.
        for _ in 0..100 {
            log.log(sample());
        }
        assert_eq!(log.dropped(), 84);
        release.send(()).unwrap();
        assert!(wait_for(|| log.written() == 17), "{}", log.written());
        drop(log);
        // The writer ends (and drops its output) once the last handle is gone.
        assert!(wait_for(|| dropped.load(Ordering::SeqCst)));
        let text = String::from_utf8(lines.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 17);
    }

    #[test]
    fn a_flood_is_fully_accounted_for() {
        let dir = tempfile::tempdir().unwrap();
        let spec = AccessLogSpec {
            target: LogTarget::File(dir.path().join("access.log")),
            format: LogFormat::Text,
            buffer: 16,
        };
        let log = AccessLog::start(&spec).unwrap();
        let logged = 100_000;
        for _ in 0..logged {
            log.log(sample());
        }
        assert!(wait_for(|| log.dropped() + log.written() == logged));
        assert_eq!(log.write_errors(), 0);
        let text = std::fs::read_to_string(dir.path().join("access.log")).unwrap();
        assert_eq!(text.lines().count() as u64, log.written());
    }
}
