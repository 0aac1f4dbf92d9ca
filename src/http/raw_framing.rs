//! A second reading of a client's HTTP/1 byte stream, for the two framing ambiguities hyper
//! resolves before a request reaches terminus: Content-Length next to Transfer-Encoding
//! (hyper drops the length) and a repeated Content-Length line (hyper merges equal values).
//! Both leave no trace in the request hyper hands over, so the raw heads are read here, as
//! hyper reads them, and the service refuses the request they belong to with 400.
//!
//! The reader follows the stream request by request: it parses each head with httparse (the
//! parser hyper uses, with the same settings), then skips the body by its framing exactly as
//! hyper's decoder does. Requests are numbered in the order they arrive; hyper serves the
//! requests of a connection one at a time in that order, so the service, counting the
//! requests it is handed, knows which one a verdict is for. Whenever the reader is not sure
//! it sees what hyper sees (an upgrade, a head httparse refuses, a body hyper would refuse),
//! it stops following: later requests then get no verdict and are served on hyper's reading
//! alone, which is unambiguous. It never makes hyper see different bytes.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::framing::Violation;
use super::proxy::ConnInfo;

/// Header fields parsed on the stack; hyper's own default bound.
const STACK_HEADERS: usize = 100;

/// The verdict on a connection's requests: which one (if any) had ambiguous framing, and
/// how many the service has been handed. Written by the reader, read by the service.
#[derive(Debug, Default)]
pub struct Verdicts {
    /// 1 + the index of the first ambiguous request; 0 while there is none.
    flagged: AtomicU64,
    violation: AtomicU8,
    /// Requests the service has been handed.
    served: AtomicU64,
}

impl Verdicts {
    fn flag(&self, index: u64, violation: Violation) {
        self.violation.store(violation as u8, Ordering::Relaxed);
        self.flagged.store(index + 1, Ordering::Release);
    }

    /// Called once for every HTTP/1 request the service is handed, in order: what is wrong
    /// with its raw framing, if anything.
    pub fn next_request(&self) -> Option<Violation> {
        let index = self.served.fetch_add(1, Ordering::Relaxed);
        if self.flagged.load(Ordering::Acquire) != index + 1 {
            return None;
        }
        Some(match self.violation.load(Ordering::Relaxed) {
            v if v == Violation::BadLength as u8 => Violation::BadLength,
            _ => Violation::LengthAndCoding,
        })
    }
}

/// Where the reader is in the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Between requests: the next bytes are a request head.
    Head,
    /// In a request body.
    Body(Body),
    /// No longer following the stream.
    Off,
}

/// A chunked body, step by step as hyper's decoder reads it (hyper `proto::h1::decode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Chunk {
    /// The first digit of a chunk size.
    Start,
    Size(u64),
    /// Blanks after the size.
    SizeBlank(u64),
    Extension(u64),
    /// The LF after the size line's CR.
    SizeLf(u64),
    Data(u64),
    DataCr,
    DataLf,
    /// After the last chunk: a CR (end) or a trailer field.
    EndCr,
    Trailer,
    TrailerLf,
    EndLf,
}

/// Follows one connection's request stream (see the module documentation).
#[derive(Debug)]
pub struct Reader {
    state: State,
    /// A head that arrived in pieces, kept until it is whole.
    partial: Vec<u8>,
    /// Index of the next request head.
    next: u64,
    /// Past this many bytes a head is hyper's 431, and the reader stops.
    max_head: usize,
    max_headers: usize,
}

impl Reader {
    pub fn new(max_head: usize, max_headers: usize) -> Self {
        Self {
            state: State::Head,
            partial: Vec::new(),
            next: 0,
            max_head,
            max_headers,
        }
    }

    /// Reads `data`, the next bytes of the stream; records what it finds in `verdicts`.
    pub fn feed(&mut self, mut data: &[u8], verdicts: &Verdicts) {
        while !data.is_empty() {
            match self.state {
                State::Off => return,
                State::Head if self.partial.is_empty() => match self.head(data, verdicts) {
                    Some(used) => data = &data[used..],
                    None => {
                        if self.state == State::Head {
                            self.keep_partial(data);
                        }
                        return;
                    }
                },
                State::Head => {
                    let seen = self.partial.len();
                    self.partial.extend_from_slice(data);
                    // A head ends with an empty line; reparse only when one may have come,
                    // so a head trickled byte by byte costs linear time, not quadratic.
                    if !may_end_head(&self.partial[seen.saturating_sub(2)..]) {
                        self.check_partial_size();
                        return;
                    }
                    let partial = std::mem::take(&mut self.partial);
                    match self.head(&partial, verdicts) {
                        Some(used) => {
                            // `partial` is empty again, so this goes no deeper.
                            self.feed(&partial[used..], verdicts);
                            return;
                        }
                        None => {
                            // Not whole yet; a head that did not parse stopped the reader.
                            if self.state == State::Head {
                                self.partial = partial;
                                self.check_partial_size();
                            }
                            return;
                        }
                    }
                }
                State::Body(body) => {
                    let (at, used) = follow_body(body, data);
                    self.state = match at {
                        BodyAt::In(body) => State::Body(body),
                        BodyAt::Ended => State::Head,
                        BodyAt::Broken => State::Off,
                    };
                    data = &data[used..];
                }
            }
        }
    }

    /// For the fuzz target (`crate::fuzzing::raw_framing`) only: whether the reader still
    /// follows the stream, whether it is at or inside a request head, how many bytes of an
    /// unfinished head it keeps, and how many heads it has read.
    pub(crate) fn observe(&self) -> (bool, bool, usize, u64) {
        let following = self.state != State::Off;
        (
            following,
            self.state == State::Head,
            self.partial.len(),
            self.next,
        )
    }

    fn keep_partial(&mut self, data: &[u8]) {
        self.partial.extend_from_slice(data);
        self.check_partial_size();
    }

    fn check_partial_size(&mut self) {
        if self.partial.len() > self.max_head {
            self.stop();
        }
    }

    fn stop(&mut self) {
        self.state = State::Off;
        self.partial = Vec::new();
    }

    /// Parses the head at the start of `data`: the bytes it took, or `None` when it is not
    /// whole yet (or the reader stopped).
    fn head(&mut self, data: &[u8], verdicts: &Verdicts) -> Option<usize> {
        let mut stack = [httparse::EMPTY_HEADER; STACK_HEADERS];
        let mut heap;
        let fields: &mut [httparse::Header<'_>] = if self.max_headers <= STACK_HEADERS {
            &mut stack
        } else {
            heap = vec![httparse::EMPTY_HEADER; self.max_headers];
            &mut heap
        };
        let mut req = httparse::Request::new(fields);
        let used = match req.parse(data) {
            Ok(httparse::Status::Complete(used)) => used,
            Ok(httparse::Status::Partial) => return None,
            // hyper refuses it too, and the connection ends.
            Err(_) => {
                self.stop();
                return None;
            }
        };
        let index = self.next;
        self.next += 1;
        let mut lengths = 0usize;
        let mut length = None;
        let mut codings = 0usize;
        let mut chunked = false;
        let mut upgrade = req.method == Some("CONNECT");
        for field in req.headers.iter() {
            if field.name.eq_ignore_ascii_case("content-length") {
                lengths += 1;
                length = digits(field.value);
            } else if field.name.eq_ignore_ascii_case("transfer-encoding") {
                codings += 1;
                chunked = trim(field.value).eq_ignore_ascii_case(b"chunked");
            } else if field.name.eq_ignore_ascii_case("upgrade") {
                upgrade = true;
            }
        }
        let violation = if lengths > 0 && codings > 0 {
            Some(Violation::LengthAndCoding)
        } else if lengths > 1 {
            Some(Violation::BadLength)
        } else {
            None
        };
        self.state = match (violation, upgrade) {
            (Some(violation), _) => {
                // The request is refused and its connection closed: nothing follows.
                verdicts.flag(index, violation);
                State::Off
            }
            // After a protocol switch the bytes are not HTTP/1.
            (None, true) => State::Off,
            (None, false) if codings > 0 => {
                // One `chunked` in HTTP/1.1 is the only coding terminus serves; for anything
                // else the request is refused and the connection closed.
                if codings == 1 && chunked && req.version == Some(1) {
                    State::Body(Body::Chunked(Chunk::Start))
                } else {
                    State::Off
                }
            }
            (None, false) => match (lengths, length) {
                (0, _) | (_, Some(0)) => State::Head,
                (_, Some(n)) => State::Body(Body::Fixed(n)),
                (_, None) => State::Off,
            },
        };
        if self.state == State::Off {
            self.partial = Vec::new();
        }
        Some(used)
    }
}

/// Whether `window` holds the empty line that ends a head (CRLF or a bare LF, as httparse
/// accepts both).
pub(crate) fn may_end_head(window: &[u8]) -> bool {
    window.windows(2).any(|w| w == b"\n\n") || window.windows(3).any(|w| w == b"\n\r\n")
}

/// The rest of a message body, as hyper's decoders read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Body {
    /// Framed by Content-Length: this many bytes left.
    Fixed(u64),
    Chunked(Chunk),
}

/// Where a body stands after some of its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyAt {
    In(Body),
    Ended,
    /// Bytes hyper's decoder refuses.
    Broken,
}

/// Follows `body` through `data`: where it stands after, and how many bytes of `data` it took
/// (fewer than all only when it ended or broke inside `data`). Both readers, of requests and of
/// responses, skip bodies with it.
pub(crate) fn follow_body(body: Body, data: &[u8]) -> (BodyAt, usize) {
    match body {
        Body::Fixed(left) => {
            let n = left.min(data.len() as u64);
            let at = if n == left {
                BodyAt::Ended
            } else {
                BodyAt::In(Body::Fixed(left - n))
            };
            (at, n as usize)
        }
        Body::Chunked(chunk) => {
            let (at, used) = follow_chunked(chunk, data);
            let at = match at {
                Chunked::In(chunk) => BodyAt::In(Body::Chunked(chunk)),
                Chunked::Ended => BodyAt::Ended,
                Chunked::Broken => BodyAt::Broken,
            };
            (at, used)
        }
    }
}

/// Where a chunked body stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunked {
    In(Chunk),
    /// Its last CRLF has been read.
    Ended,
    /// Bytes hyper's decoder refuses.
    Broken,
}

/// Follows a chunked body from `chunk` through `data` as hyper's decoder reads it: where the
/// body stands after, and how many bytes of `data` it took (fewer than all only when it ended
/// or broke inside `data`).
fn follow_chunked(mut chunk: Chunk, data: &[u8]) -> (Chunked, usize) {
    let mut used = 0;
    while used < data.len() {
        if let Chunk::Data(left) = chunk {
            let n = left.min((data.len() - used) as u64);
            chunk = if n == left {
                Chunk::DataCr
            } else {
                Chunk::Data(left - n)
            };
            used += n as usize;
            continue;
        }
        let step = chunk_step(chunk, data[used]);
        used += 1;
        match step {
            Chunked::In(next) => chunk = next,
            done => return (done, used),
        }
    }
    (Chunked::In(chunk), used)
}

/// One byte of a chunked body outside chunk data.
fn chunk_step(chunk: Chunk, byte: u8) -> Chunked {
    let hex = |b: u8| (b as char).to_digit(16).map(u64::from);
    let next = match (chunk, byte) {
        (Chunk::Start, b) => hex(b).map(Chunk::Size),
        (Chunk::Size(n), b) if hex(b).is_some() => n
            .checked_mul(16)
            .and_then(|n| n.checked_add(hex(b).unwrap_or(0)))
            .map(Chunk::Size),
        (Chunk::Size(n) | Chunk::SizeBlank(n), b'\t' | b' ') => Some(Chunk::SizeBlank(n)),
        (Chunk::Size(n) | Chunk::SizeBlank(n), b';') => Some(Chunk::Extension(n)),
        (Chunk::Size(n) | Chunk::SizeBlank(n) | Chunk::Extension(n), b'\r') => {
            Some(Chunk::SizeLf(n))
        }
        (Chunk::Extension(_), b'\n') => None,
        (Chunk::Extension(n), _) => Some(Chunk::Extension(n)),
        (Chunk::SizeLf(0), b'\n') => Some(Chunk::EndCr),
        (Chunk::SizeLf(n), b'\n') => Some(Chunk::Data(n)),
        (Chunk::DataCr, b'\r') => Some(Chunk::DataLf),
        (Chunk::DataLf, b'\n') => Some(Chunk::Start),
        (Chunk::EndCr, b'\r') => Some(Chunk::EndLf),
        (Chunk::EndCr | Chunk::Trailer, b'\n') => None,
        (Chunk::Trailer, b'\r') => Some(Chunk::TrailerLf),
        (Chunk::EndCr | Chunk::Trailer, _) => Some(Chunk::Trailer),
        (Chunk::TrailerLf, b'\n') => Some(Chunk::EndCr),
        (Chunk::EndLf, b'\n') => return Chunked::Ended,
        _ => None,
    };
    next.map_or(Chunked::Broken, Chunked::In)
}

/// A Content-Length value as hyper reads it: digits only, no overflow.
pub(crate) fn digits(value: &[u8]) -> Option<u64> {
    let value = trim(value);
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(value).ok()?.parse().ok()
}

fn trim(value: &[u8]) -> &[u8] {
    value.trim_ascii()
}

/// A client connection whose received bytes also go through a [`Reader`]; writes pass as
/// they are.
pub struct RawFraming<S> {
    inner: S,
    reader: Reader,
    conn: Arc<ConnInfo>,
}

impl<S> RawFraming<S> {
    pub fn new(inner: S, conn: Arc<ConnInfo>) -> Self {
        let reader = Reader::new(conn.limits.max_header_bytes, conn.limits.max_headers);
        Self {
            inner,
            reader,
            conn,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for RawFraming<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            let this = &mut *self;
            this.reader
                .feed(&buf.filled()[before..], &this.conn.raw_verdicts);
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for RawFraming<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `stream` in pieces of `step` bytes; the verdicts for `requests` requests.
    fn verdicts(stream: &[u8], step: usize, requests: usize) -> Vec<Option<Violation>> {
        let cell = Verdicts::default();
        let mut reader = Reader::new(64 * 1024, 100);
        for piece in stream.chunks(step) {
            reader.feed(piece, &cell);
        }
        (0..requests).map(|_| cell.next_request()).collect()
    }

    const CLTE: &[u8] =
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";

    #[test]
    fn length_with_coding_is_found_in_any_split() {
        for step in [1, 2, 7, 1000] {
            assert_eq!(verdicts(CLTE, step, 1), [Some(Violation::LengthAndCoding)]);
        }
    }

    #[test]
    fn the_verdict_lands_on_the_right_request_after_bodies_of_both_framings() {
        let mut stream = Vec::new();
        stream.extend_from_slice(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\n\r\n");
        // A body that looks like a head must not count as one.
        stream.extend_from_slice(b"GET / HTTP/1");
        stream.extend_from_slice(
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n\
              5;ext=1\r\nhello\r\n1A \r\nGET / HTTP/1.1\r\nX: 123\r\n\r\n\r\n0\r\nT: 1\r\n\r\n",
        );
        stream.extend_from_slice(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        stream.extend_from_slice(
            b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n",
        );
        for step in [1, 3, 64, 4096] {
            assert_eq!(
                verdicts(&stream, step, 5),
                [None, None, None, Some(Violation::BadLength), None],
                "step {step}"
            );
        }
    }

    #[test]
    fn an_upgrade_or_a_broken_body_stops_the_reader() {
        let mut stream = b"GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n".to_vec();
        stream.extend_from_slice(CLTE);
        assert_eq!(verdicts(&stream, 5, 2), [None, None]);
        let mut stream = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n".to_vec();
        stream.extend_from_slice(CLTE);
        assert_eq!(verdicts(&stream, 5, 2), [None, None]);
    }

    #[test]
    fn a_head_past_the_limit_stops_the_reader() {
        let cell = Verdicts::default();
        let mut reader = Reader::new(100, 100);
        reader.feed(b"GET / HTTP/1.1\r\nX: ", &cell);
        reader.feed(&[b'a'; 200], &cell);
        assert_eq!(reader.state, State::Off);
        assert!(reader.partial.is_empty());
    }
}
