//! Fuzz targets: one function per input terminus parses itself, each asserting what must hold
//! of any input. `fuzz/` runs them under libFuzzer; `tests/fuzz_corpus.rs` replays the saved
//! corpus and regressions on stable Rust. A panic here is a finding (docs/fuzzing.md).

use std::fmt::Debug;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, LazyLock};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use futures_util::FutureExt;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Uri, Version};

use crate::config::{self, ProxyProtocol, SameSite, StickyCookieSpec, UpstreamProtocol};
use crate::http::raw_framing::{Reader, Verdicts};
use crate::http::{headers, rewrite, ConnInfo, Router};
use crate::tcp::client_hello::{HelloReader, MAX_HELLO};
use crate::tcp::proxy_protocol::{self, TlsInfo};
use crate::tls::ClientCert;
use crate::upstream::persistence::StickyCookie;
use crate::upstream::response_heads::ResponseHeads;

/// `config::parse`: errors point inside the text; a valid config keeps its indexes in range
/// and its names valid; parsing is deterministic.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return; // config files are read as UTF-8 text
    };
    // Special files (an endless /dev/zero, a blocking /dev/stdin) are the operator's choice,
    // not a parser bug; relative paths resolve under a directory that does not exist.
    if ["/dev/", "/proc/", "/sys/"]
        .iter()
        .any(|p| text.contains(p))
    {
        return;
    }
    // A backend address naming a host is resolved while validating: no DNS from the fuzzer.
    if text
        .parse::<toml::Table>()
        .is_ok_and(|t| t.values().any(names_a_host))
    {
        return;
    }
    let path = Path::new("/nonexistent-terminus-fuzz/terminus.toml");
    let first = config::parse(path, text);
    let shown = |r: &Result<config::Config, config::ConfigErrors>| match r {
        Ok(c) => config::summary::summary(c),
        Err(e) => e.to_string(),
    };
    match &first {
        Ok(c) => check_config(c),
        Err(errors) => {
            assert!(!errors.0.is_empty(), "an Err without errors");
            let lines = text.matches('\n').count() + 1;
            for e in &errors.0 {
                assert_eq!(e.file, path);
                assert!(e.line >= 1 && e.line <= lines && e.column >= 1, "{e}");
                assert!(!e.message.is_empty() && !e.hint.is_empty(), "{e:?}");
            }
        }
    }
    assert_eq!(
        shown(&first),
        shown(&config::parse(path, text)),
        "not deterministic"
    );
}

/// Whether a TOML value holds a string that `backend_address` would look up in the DNS.
fn names_a_host(v: &toml::Value) -> bool {
    match v {
        toml::Value::String(s) => {
            let Some((host, port)) = s.rsplit_once(':') else {
                return false;
            };
            s.parse::<SocketAddr>().is_err()
                && port.parse::<u16>().is_ok()
                && host.bytes().any(|b| b.is_ascii_alphabetic())
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.".contains(&b))
        }
        toml::Value::Array(a) => a.iter().any(names_a_host),
        toml::Value::Table(t) => t.values().any(names_a_host),
        _ => false,
    }
}

fn check_config(c: &config::Config) {
    assert!(!config::summary::summary(c).is_empty());
    let unique = |names: Vec<&str>| {
        let mut sorted = names.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), names.len(), "duplicate names: {names:?}");
    };
    let valid = |names: Vec<&str>| {
        assert!(names.iter().all(|n| config::valid_name(n)), "{names:?}");
        unique(names);
    };
    valid(c.listeners.iter().map(|l| l.name.as_str()).collect());
    valid(c.pools.iter().map(|p| p.name.as_str()).collect());
    valid(c.certificates.iter().map(|x| x.name.as_str()).collect());
    for p in &c.pools {
        // A backend's name defaults to its address, which `valid_name` does not take.
        unique(p.backends.iter().map(|b| b.name.as_str()).collect());
    }
    for l in &c.listeners {
        assert!(l.routes.iter().all(|r| r.pool < c.pools.len()), "{l:?}");
        if let Some(tls) = &l.tls {
            assert!(tls.certificates.iter().all(|&i| i < c.certificates.len()));
            assert!(tls.default_certificate < tls.certificates.len(), "{l:?}");
        }
    }
}

/// The PROXY protocol reader: `read_header` frames one header from the bytes, `source_of`
/// reads it; a source address is the one the header spells, and survives being written
/// again by `proxy_protocol::header`.
pub fn proxy_header(data: &[u8]) {
    let _ = proxy_protocol::source_of(data);
    // A byte slice is always ready, so one poll finishes the read.
    let Some(Ok(frame)) = proxy_protocol::read_header(&mut &data[..]).now_or_never() else {
        return;
    };
    assert!(data.starts_with(&frame), "read past what it returned");
    let v2 = frame.starts_with(b"\r\n\r\n\0\r\nQUIT\n");
    if v2 {
        assert_eq!(
            frame.len(),
            16 + usize::from(u16::from_be_bytes([frame[14], frame[15]]))
        );
    } else {
        assert!(frame.starts_with(b"PROXY ") && frame.ends_with(b"\r\n"));
        assert!(frame.len() <= 107, "v1 header of {} bytes", frame.len());
    }
    let Ok(Some(source)) = proxy_protocol::source_of(&frame) else {
        return;
    };
    let spelled = if v2 {
        v2_source(&frame)
    } else {
        v1_source(&frame)
    };
    assert_eq!(Some(source), spelled, "{frame:?}");
    let canon = |s: SocketAddr| SocketAddr::new(s.ip().to_canonical(), s.port());
    let to = SocketAddr::new(source.ip(), 443);
    for version in [ProxyProtocol::V1, ProxyProtocol::V2] {
        let written = proxy_protocol::header(version, source, to, &TlsInfo::default());
        let again = written.and_then(|h| proxy_protocol::source_of(&h));
        let again = again.ok().flatten().map(canon);
        assert_eq!(again, Some(canon(source)), "{version:?} {source}");
    }
}

/// `PROXY TCP4 <src> <dst> <sport> <dport>\r\n`, read with the standard library.
fn v1_source(frame: &[u8]) -> Option<SocketAddr> {
    let line = std::str::from_utf8(frame).ok()?.strip_suffix("\r\n")?;
    let words: Vec<&str> = line.split(' ').collect();
    let ip: IpAddr = words.get(2)?.parse().ok()?;
    match *words.get(1)? {
        "TCP4" => assert!(ip.is_ipv4(), "{line}"),
        "TCP6" => assert!(ip.is_ipv6(), "{line}"),
        other => panic!("a source address from protocol {other:?}"),
    }
    Some(SocketAddr::new(ip, words.get(4)?.parse().ok()?))
}

/// The source address at its fixed offset in a v2 header of family INET or INET6.
fn v2_source(frame: &[u8]) -> Option<SocketAddr> {
    let port = |at: usize| Some(u16::from_be_bytes(frame.get(at..at + 2)?.try_into().ok()?));
    match frame.get(13)? >> 4 {
        1 => {
            let ip: [u8; 4] = frame.get(16..20)?.try_into().ok()?;
            Some(SocketAddr::new(ip.into(), port(24)?))
        }
        2 => {
            let ip: [u8; 16] = frame.get(16..32)?.try_into().ok()?;
            Some(SocketAddr::new(ip.into(), port(48)?))
        }
        family => panic!("a source address from address family {family}"),
    }
}

/// The ClientHello peek. The first byte sets the size of the pieces the rest arrives in.
/// A completed hello keeps exactly the bytes fed, names a printable SNI, and reads the same
/// when the same bytes arrive at once.
pub fn client_hello(data: &[u8]) {
    let Some((&step, rest)) = data.split_first() else {
        return;
    };
    let step = 1 + usize::from(step) * 8;
    let mut reader = HelloReader::default();
    let mut fed = 0;
    let mut sni = None;
    for piece in rest.chunks(step) {
        fed += piece.len();
        match reader.feed(piece) {
            Ok(None) => continue,
            Ok(Some(name)) => sni = Some(name),
            Err(_) => return,
        }
        break;
    }
    let Some(sni) = sni else { return };
    assert!(fed <= MAX_HELLO);
    assert_eq!(
        reader.into_bytes(),
        &rest[..fed],
        "the bytes to forward changed"
    );
    if let Some(name) = &sni {
        assert!(
            !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic()),
            "{name:?}"
        );
    }
    let whole = HelloReader::default().feed(&rest[..fed]).ok().flatten();
    assert_eq!(whole, Some(sni), "pieces and the whole read differently");
}

static STICKY: LazyLock<StickyCookie> = LazyLock::new(|| {
    let spec = StickyCookieSpec {
        name: "tb".into(),
        key: Some([0x42; 32]),
        path: "/".into(),
        secure: true,
        http_only: true,
        same_site: SameSite::Lax,
        max_age: None,
    };
    match StickyCookie::new("web", &spec) {
        Ok(c) => c,
        Err(e) => panic!("the fuzz cookie: {e}"),
    }
});

/// The sticky cookie: the bytes as a cookie value and as a `Cookie` header never panic; what
/// opens re-seals; a backend name seals to a `Set-Cookie` that opens to the same name; a
/// tampered cookie never opens.
pub fn sticky_cookie(data: &[u8]) {
    let c = &*STICKY;
    if let Some(name) = c.open(data) {
        let resealed = c.seal(&name).unwrap_or_default();
        assert_eq!(c.open(resealed.as_bytes()), Some(name));
    }
    if let Ok(v) = HeaderValue::from_bytes(data) {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, v);
        if let Some(value) = headers::cookie(&h, &c.name) {
            assert!(!value.contains(&b';'));
            let _ = c.open_counted(value);
        }
    }
    let name = std::str::from_utf8(data).unwrap_or("backend-1");
    if !config::valid_name(name) {
        return;
    }
    let Some(set) = c.set_cookie(name) else {
        panic!("no Set-Cookie for {name:?}");
    };
    let mut h = HeaderMap::new();
    h.append(header::COOKIE, set);
    let Some(value) = headers::cookie(&h, &c.name) else {
        panic!("the Set-Cookie value does not parse as a cookie: {h:?}");
    };
    assert_eq!(c.open(value).as_deref(), Some(name));
    let mut raw = URL_SAFE_NO_PAD.decode(value).unwrap_or_default();
    let at = usize::from(data[0]) % raw.len().max(1);
    if let Some(b) = raw.get_mut(at) {
        *b ^= data[data.len() - 1] | 1;
        assert_eq!(c.open(URL_SAFE_NO_PAD.encode(&raw).as_bytes()), None);
    }
}

/// Headers that describe one connection (`headers::HOP_BY_HOP`).
const HOP_BY_HOP: [&str; 7] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];
/// Headers only terminus writes: whatever the client sent under these names is replaced.
const OWN: [&str; 9] = [
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "forwarded",
    "x-client-cert-verified",
    "x-client-cert-subject",
    "x-client-cert-san",
    "x-client-cert-fingerprint",
    "x-forwarded-client-cert",
];

/// Header rewriting (`rewrite::prepare`). The first byte picks the backend protocol (bit 0:
/// HTTP/2), the client's scheme (bit 1: https), a client certificate (bit 2) and an IPv6
/// client (bit 3); the rest is lines: a request target, then `name: value` headers.
pub fn rewrite(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let protocol = match flags & 1 {
        0 => UpstreamProtocol::Http1,
        _ => UpstreamProtocol::Http2,
    };
    let conn = conn_info(flags);
    let (mut parts, ()) = Request::new(()).into_parts();
    let mut lines = rest
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    parts.uri = lines
        .next()
        .and_then(|t| Uri::try_from(t).ok())
        .unwrap_or_default();
    for line in lines {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = HeaderName::from_bytes(&line[..colon]);
        let value = HeaderValue::from_bytes(line[colon + 1..].trim_ascii_start());
        if let (Ok(name), Ok(value)) = (name, value) {
            parts.headers.append(name, value);
        }
    }
    let named = connection_tokens(&parts.headers);
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let Ok(upgrade) = rewrite::prepare(&mut parts, &conn, protocol) else {
        return;
    };
    let h = &parts.headers;
    let count = |name: &str| h.get_all(name).iter().count();
    let upgraded = upgrade && protocol == UpstreamProtocol::Http1;
    assert_eq!(upgrade, upgraded, "an upgrade passed to an HTTP/2 backend");
    for name in HOP_BY_HOP {
        let expected = usize::from(upgraded && (name == "connection" || name == "upgrade"));
        assert_eq!(count(name), expected, "{name} in {h:?}");
    }
    for name in named.iter().map(HeaderName::as_str) {
        let rewritten = OWN.contains(&name) || HOP_BY_HOP.contains(&name);
        assert!(
            rewritten || !h.contains_key(name),
            "{name} was named by Connection"
        );
    }
    assert_eq!(count("expect"), 0);
    check_forwarding(h, &conn);
    check_client_cert(h, conn.client_cert.as_deref());
    assert_eq!(
        parts.uri.path_and_query().map(|p| p.as_str()),
        Some(path.as_str())
    );
    match protocol {
        UpstreamProtocol::Http1 => {
            assert_eq!(parts.version, Version::HTTP_11);
            assert!(count("cookie") <= 1, "cookies not joined: {h:?}");
        }
        UpstreamProtocol::Http2 => {
            assert_eq!(parts.version, Version::HTTP_2);
            assert_eq!(count("host"), 0);
        }
    }
}

/// A connection over https or http, from an IPv4 or IPv6 client, with or without a verified
/// client certificate, per `flags`.
fn conn_info(flags: u8) -> ConnInfo {
    let value = HeaderValue::from_static;
    let cert = ClientCert {
        subject: value("CN=fuzz"),
        san: value("DNS:fuzz.test"),
        fingerprint: value("00ff"),
        xfcc: value("Hash=00ff;Subject=\"CN=fuzz\""),
    };
    let metrics = crate::metrics::Metrics::default();
    let listener: Arc<str> = "fuzz".into();
    ConnInfo {
        client: match flags & 8 {
            0 => SocketAddr::from(([203, 0, 113, 7], 40000)),
            _ => SocketAddr::from(([0x2001, 0xdb8, 0, 0, 0, 0, 0, 7], 40000)),
        },
        proto: if flags & 2 == 0 { "http" } else { "https" },
        routes: Arc::new(arc_swap::ArcSwap::from_pointee(Router::new(
            &[],
            &[],
            &listener,
            &metrics,
        ))),
        listener,
        client_cert: (flags & 4 != 0).then(|| Arc::new(cert)),
        authority_check: None,
        tls: None,
        metrics,
        access_log: None,
        explain: false,
        admin_token: None,
        limits: crate::config::Limits::default(),
        client_body_timeout: std::time::Duration::from_secs(60),
        activity: Default::default(),
        raw_verdicts: Default::default(),
    }
}

/// The header names the `Connection` fields list, read as `remove_hop_by_hop` reads them.
fn connection_tokens(h: &HeaderMap) -> Vec<HeaderName> {
    h.get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect()
}

/// One X-Forwarded-For and one Forwarded field, each ending with this hop; one
/// X-Forwarded-Proto naming the client's scheme; at most one X-Forwarded-Host.
fn check_forwarding(h: &HeaderMap, conn: &ConnInfo) {
    let only = |name: &str| {
        let all: Vec<&HeaderValue> = h.get_all(name).iter().collect();
        assert_eq!(all.len(), 1, "{name} in {h:?}");
        all[0].to_str().unwrap_or_default().to_owned()
    };
    let ip = conn.client.ip();
    let xff = only("x-forwarded-for");
    assert_eq!(
        xff.rsplit(", ").next(),
        Some(ip.to_string().as_str()),
        "{xff}"
    );
    assert_eq!(only("x-forwarded-proto"), conn.proto);
    let node = match ip {
        IpAddr::V4(_) => ip.to_string(),
        IpAddr::V6(_) => format!("\"[{ip}]\""),
    };
    let forwarded = only("forwarded");
    let last = forwarded.rsplit(", ").next().unwrap_or_default();
    assert!(
        last.starts_with(&format!("for={node};proto={}", conn.proto)),
        "{forwarded}"
    );
    assert!(h.get_all("x-forwarded-host").iter().count() <= 1);
}

/// The client-certificate headers are terminus's own, once each.
fn check_client_cert(h: &HeaderMap, cert: Option<&ClientCert>) {
    let values = |name: &str| h.get_all(name).iter().cloned().collect::<Vec<_>>();
    let verified = if cert.is_some() { "SUCCESS" } else { "NONE" };
    assert_eq!(
        values("x-client-cert-verified"),
        [HeaderValue::from_static(verified)]
    );
    let expected = |v: Option<&HeaderValue>| v.cloned().into_iter().collect::<Vec<_>>();
    assert_eq!(
        values("x-client-cert-subject"),
        expected(cert.map(|c| &c.subject))
    );
    assert_eq!(values("x-client-cert-san"), expected(cert.map(|c| &c.san)));
    assert_eq!(
        values("x-client-cert-fingerprint"),
        expected(cert.map(|c| &c.fingerprint))
    );
    assert_eq!(
        values("x-forwarded-client-cert"),
        expected(cert.map(|c| &c.xfcc))
    );
}

/// Header-field limits for the request reader (byte 1, low two bits): below, at and above the
/// fields it parses on the stack (100), and the configuration's floor (8) and less.
const MAX_HEADERS: [usize; 4] = [2, 8, 100, 150];

/// Streams longer than this are not also fed byte by byte.
const BYTEWISE: usize = 1024;

/// The second reading of HTTP/1 framing, of a client's request stream
/// (`raw_framing::Reader`) and of a backend's response heads (`ResponseHeads`), both over the
/// bytes after the first two. Byte 0 shapes the pieces the stream arrives in (low four bits:
/// pieces of 1 to 2^n bytes, n at most 11; high four: their sequence); byte 1 sets a small head
/// limit (bits 2-7: 1 to 2017 bytes) and the field limit (bits 0-1, `MAX_HEADERS`).
///
/// Requests: fed at once, in those pieces, and byte by byte (short streams), a reader whose
/// head limit is never reached reads as many heads and gives the same verdicts on each; a
/// reader with the small limit keeps at most that many bytes of a head, stops once a head
/// outgrows it, and flags nothing the first did not. Responses: the stream is a backend
/// connection's exchanges, split at NUL bytes (which no head holds); the exchange whose read
/// fails, if any, is the same however each exchange arrives.
pub fn raw_framing(data: &[u8]) {
    let [shape, limits, ref stream @ ..] = *data else {
        return;
    };
    let max_headers = MAX_HEADERS[usize::from(limits & 3)];
    let max_head = 1 + usize::from(limits >> 2) * 32;
    let mut splits = vec![Splitter::shaped(shape)];
    if stream.len() <= BYTEWISE {
        splits.push(Splitter::bytewise());
    }

    // (a) The verdicts do not depend on how the stream is cut.
    let (whole, whole_cell) = read_requests(&Splitter::whole().split(stream), max_headers);
    let (.., heads) = whole.observe();
    let expected = first_verdicts(&whole_cell, heads + 1);
    for split in &mut splits {
        let (reader, cell) = read_requests(&split.split(stream), max_headers);
        let (.., read) = reader.observe();
        assert_eq!(read, heads, "heads read in pieces of {split:?}");
        let verdicts = first_verdicts(&cell, heads + 1);
        assert_eq!(verdicts, expected, "verdicts in pieces of {split:?}");
    }

    // (b) A head past the limit stops the reader, which never keeps more than the limit.
    let mut split = Splitter::shaped(shape);
    let cell = Verdicts::default();
    let mut bounded = Reader::new(max_head, max_headers);
    let kept_at_most = |reader: &Reader| {
        let (following, _, kept, _) = reader.observe();
        assert!(
            kept <= max_head,
            "kept {kept} bytes (following: {following}) > {max_head}"
        );
        reader.observe()
    };
    for piece in split.split(stream) {
        bounded.feed(piece, &cell);
        kept_at_most(&bounded);
    }
    let (_, at_head, _, read) = bounded.observe();
    assert!(
        read <= heads,
        "the bounded reader read {read} heads of {heads}"
    );
    let verdicts = first_verdicts(&cell, heads + 1);
    for (bounded, whole) in verdicts.iter().zip(&expected) {
        assert!(
            bounded.is_none() || bounded == whole,
            "the bounded reader flagged {verdicts:?}, the whole {expected:?}"
        );
    }
    if at_head {
        // An unfinished head (or none yet): max_head + 1 more bytes of it, with no line end.
        for piece in split.split(&vec![b'a'; max_head + 1]) {
            bounded.feed(piece, &cell);
            kept_at_most(&bounded);
        }
        let (following, ..) = bounded.observe();
        assert!(
            !following,
            "still following past a head of {max_head} bytes"
        );
    }

    // (c) The response reader fails the same exchange however the bytes arrive.
    let exchanges: Vec<&[u8]> = stream.split(|&b| b == 0).collect();
    let expected = failed_exchange(&exchanges, &mut Splitter::whole());
    for split in &mut splits {
        let failed = failed_exchange(&exchanges, split);
        assert_eq!(failed, expected, "responses in pieces of {split:?}");
    }
}

/// Cuts a stream into pieces: whole, or of 1 to `bound` bytes each, their sizes drawn from a
/// xorshift sequence.
#[derive(Debug)]
struct Splitter {
    bound: Option<usize>,
    seed: u32,
}

impl Splitter {
    fn whole() -> Self {
        Self {
            bound: None,
            seed: 1,
        }
    }

    fn bytewise() -> Self {
        Self {
            bound: Some(1),
            seed: 1,
        }
    }

    /// Low four bits: the log2 of the bound (at most 2048); high four: the sequence.
    fn shaped(shape: u8) -> Self {
        Self {
            bound: Some(1 << (shape & 15).min(11)),
            seed: (u32::from(shape >> 4) + 1).wrapping_mul(0x9E37_79B9),
        }
    }

    fn split<'a>(&mut self, mut data: &'a [u8]) -> Vec<&'a [u8]> {
        let mut pieces = Vec::new();
        while !data.is_empty() {
            let size = match self.bound {
                None => data.len(),
                Some(bound) => {
                    self.seed ^= self.seed << 13;
                    self.seed ^= self.seed >> 17;
                    self.seed ^= self.seed << 5;
                    1 + self.seed as usize % bound
                }
            };
            let (piece, rest) = data.split_at(size.min(data.len()));
            pieces.push(piece);
            data = rest;
        }
        pieces
    }
}

/// A request reader whose head limit no head reaches, after `pieces`.
fn read_requests(pieces: &[&[u8]], max_headers: usize) -> (Reader, Verdicts) {
    let cell = Verdicts::default();
    let mut reader = Reader::new(usize::MAX, max_headers);
    for piece in pieces {
        reader.feed(piece, &cell);
    }
    (reader, cell)
}

/// What the service is told about each of the first `n` requests.
fn first_verdicts(cell: &Verdicts, n: u64) -> Vec<Option<impl Debug + PartialEq>> {
    (0..n).map(|_| cell.next_request()).collect()
}

/// The response reader over `exchanges`, each cut by `split`, with no head limit: the exchange
/// whose read fails, if any. A request goes out before each exchange; the next one only if
/// hyper would go on with the connection, having read this exchange's final head whole.
fn failed_exchange(exchanges: &[&[u8]], split: &mut Splitter) -> Option<usize> {
    let mut reader = ResponseHeads::new((), true, usize::MAX, 128);
    for (i, exchange) in exchanges.iter().enumerate() {
        reader.wrote(b"GET / HTTP/1.1\r\n");
        if split
            .split(exchange)
            .iter()
            .any(|p| reader.feed(p).is_err())
        {
            return Some(i);
        }
        if !final_head_whole(exchange) {
            return None;
        }
    }
    None
}

/// Whether `exchange` starts with 1xx heads and a final response head httparse takes whole (a
/// 101 ends HTTP/1 on the connection).
fn final_head_whole(mut exchange: &[u8]) -> bool {
    loop {
        let mut fields = [httparse::EMPTY_HEADER; 128];
        let mut response = httparse::Response::new(&mut fields);
        let Ok(httparse::Status::Complete(used)) = response.parse(exchange) else {
            return false;
        };
        match response.code {
            Some(101) => return false,
            Some(100..=199) => exchange = &exchange[used..],
            _ => return true,
        }
    }
}
