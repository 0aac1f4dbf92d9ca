//! A second reading of the response heads an HTTP/1 backend sends, for the one framing
//! ambiguity hyper's client resolves silently: Content-Length next to Transfer-Encoding
//! (hyper drops the length and reads the body as chunked). Such a response is refused (502,
//! counted against the backend) rather than passed on with a reading the backend may not
//! have meant.
//!
//! The reader sits under hyper on the backend connection. A write while it is idle means a
//! new request went out, so the bytes that come back next start a response head; it parses
//! heads with httparse (hyper's parser) until the final (non-1xx) one. If that head carries
//! both fields, the read that completed it fails with [`AmbiguousResponse`] before hyper has
//! seen the whole head, so hyper never acts on it and the connection is dropped.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::http::raw_framing::{digits, follow_body, Body, BodyAt, Chunk};

/// Response header fields parsed on the stack; past this the head is left to hyper, whose
/// own limit (`max_response_headers`) decides.
const STACK_HEADERS: usize = 128;

/// The error a read fails with when the response head in it frames its body both ways.
#[derive(Debug, thiserror::Error)]
#[error("{}", AmbiguousResponse::TEXT)]
pub struct AmbiguousResponse;

impl AmbiguousResponse {
    pub const TEXT: &'static str = "response with both content-length and transfer-encoding";
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// No request is waiting for its response.
    Idle,
    /// A request went out: the next bytes start its response head. `head_request`: it was a
    /// HEAD, whose response has no body whatever its head says.
    Awaiting { head_request: bool },
    /// In a response body.
    Body(Body),
    /// The connection switched protocols (101), speaks HTTP/2, or has a body that ends with
    /// the connection: never reads heads again.
    Off,
}

/// A backend connection whose response heads are read a second time (see the module
/// documentation).
#[derive(Debug)]
pub struct ResponseHeads<S> {
    inner: S,
    state: State,
    /// A head that arrived in pieces, kept until it is whole.
    partial: Vec<u8>,
    /// Past this many bytes a head is hyper's error, and is left to it.
    max_head: usize,
    /// hyper's bound on response header fields (`max_response_headers`).
    max_headers: usize,
}

impl<S> ResponseHeads<S> {
    /// `inner`, read as HTTP/1 when `http1` (else passed through untouched).
    pub fn new(inner: S, http1: bool, max_head: usize, max_headers: usize) -> Self {
        Self {
            inner,
            state: if http1 { State::Idle } else { State::Off },
            partial: Vec::new(),
            max_head,
            max_headers,
        }
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Bytes went out. On an idle connection they start a request (hyper writes the next
    /// request only once the last response has ended), so its response head comes next; the
    /// request line says whether it is a HEAD. Writes during a response (a request body still
    /// going out after an early answer) change nothing. `pub(crate)` for the fuzz target.
    pub(crate) fn wrote(&mut self, first: &[u8]) {
        if self.state == State::Idle {
            self.state = State::Awaiting {
                head_request: first.starts_with(b"HEAD "),
            };
        }
    }

    /// Reads the next bytes from the backend; `Err` when they complete an ambiguous head.
    /// `pub(crate)` for the fuzz target (`crate::fuzzing::raw_framing`).
    pub(crate) fn feed(&mut self, mut data: &[u8]) -> Result<(), AmbiguousResponse> {
        while !data.is_empty() {
            match self.state {
                State::Idle | State::Off => return Ok(()),
                State::Awaiting { head_request } => {
                    if self.partial.is_empty() {
                        let used = self.heads(data, head_request)?;
                        data = &data[used..];
                        continue;
                    }
                    let seen = self.partial.len();
                    self.partial.extend_from_slice(data);
                    if !crate::http::may_end_head(&self.partial[seen.saturating_sub(2)..]) {
                        self.bound_partial();
                        return Ok(());
                    }
                    let partial = std::mem::take(&mut self.partial);
                    let used = self.heads(&partial, head_request)?;
                    // `partial` is empty again, so this goes no deeper.
                    return self.feed(&partial[used.min(partial.len())..]);
                }
                State::Body(body) => {
                    let (at, used) = follow_body(body, data);
                    self.state = match at {
                        BodyAt::In(body) => State::Body(body),
                        BodyAt::Ended => State::Idle,
                        BodyAt::Broken => State::Off,
                    };
                    data = &data[used..];
                }
            }
        }
        Ok(())
    }

    /// Parses the heads at the start of `data`: 1xx heads are passed over, the final one is
    /// judged and sets how its body is framed. Returns the bytes taken (all of `data` when the
    /// head is not whole yet, kept in `partial`).
    fn heads(&mut self, mut data: &[u8], head_request: bool) -> Result<usize, AmbiguousResponse> {
        let mut taken = 0;
        loop {
            let mut stack = [httparse::EMPTY_HEADER; STACK_HEADERS];
            let mut heap;
            let fields: &mut [httparse::Header<'_>] = if self.max_headers <= STACK_HEADERS {
                &mut stack
            } else {
                heap = vec![httparse::EMPTY_HEADER; self.max_headers];
                &mut heap
            };
            let mut resp = httparse::Response::new(fields);
            let used = match resp.parse(data) {
                Ok(httparse::Status::Complete(used)) => used,
                Ok(httparse::Status::Partial) => {
                    self.partial.extend_from_slice(data);
                    self.bound_partial();
                    return Ok(taken + data.len());
                }
                // hyper refuses it as well, and drops the connection.
                Err(_) => {
                    self.stop();
                    return Ok(taken + data.len());
                }
            };
            taken += used;
            let code = resp.code.unwrap_or(0);
            match code {
                101 => {
                    self.stop();
                    return Ok(taken);
                }
                100..=199 => {
                    data = &data[used..];
                    continue;
                }
                _ => {}
            }
            let mut lengths = resp
                .headers
                .iter()
                .filter(|h| h.name.eq_ignore_ascii_case("content-length"));
            let mut codings = resp
                .headers
                .iter()
                .filter(|h| h.name.eq_ignore_ascii_case("transfer-encoding"));
            let (length, coding) = (lengths.next(), codings.next_back());
            if length.is_some() && coding.is_some() {
                self.stop();
                return Err(AmbiguousResponse);
            }
            // The body, framed as hyper's client reads it (RFC 9112 section 6.3).
            self.state = if head_request || code == 204 || code == 304 {
                State::Idle
            } else if let Some(coding) = coding {
                let last = coding.value.rsplit(|&b| b == b',').next().unwrap_or(b"");
                if last.trim_ascii().eq_ignore_ascii_case(b"chunked") {
                    State::Body(Body::Chunked(Chunk::Start))
                } else {
                    // Read until the backend closes (or refused): nothing follows.
                    State::Off
                }
            } else if let Some(length) = length {
                match digits(length.value) {
                    Some(0) => State::Idle,
                    Some(n) => State::Body(Body::Fixed(n)),
                    None => State::Off,
                }
            } else {
                // Delimited by the end of the connection.
                State::Off
            };
            return Ok(taken);
        }
    }

    fn stop(&mut self) {
        self.state = State::Off;
        self.partial = Vec::new();
    }

    fn bound_partial(&mut self) {
        if self.partial.len() > self.max_head {
            self.stop();
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ResponseHeads<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            if let Err(e) = self.feed(&buf.filled()[before..]) {
                return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, e)));
            }
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ResponseHeads<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = polled {
            if n > 0 {
                self.wrote(buf);
            }
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = polled {
            if n > 0 {
                let first = bufs
                    .iter()
                    .find(|b| !b.is_empty())
                    .map_or(&[][..], |b| &b[..]);
                self.wrote(first);
            }
        }
        polled
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

    const GET: &[u8] = b"GET / HTTP/1.1\r\n";
    /// 66 bytes that would be an ambiguous head if read as one.
    const AMBIGUOUS: &[u8] =
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n";

    /// A reader whose connection has just sent a request.
    fn reader() -> ResponseHeads<()> {
        let mut r = ResponseHeads::new((), true, 8192, 100);
        r.wrote(GET);
        r
    }

    #[test]
    fn length_with_coding_fails_in_any_split() {
        let head = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n";
        for step in [1, 5, 1000] {
            let mut r = reader();
            let failed = head.chunks(step).any(|piece| r.feed(piece).is_err());
            assert!(failed, "step {step}");
        }
    }

    #[test]
    fn bodies_and_writes_during_them_are_never_read_as_heads() {
        assert_eq!(AMBIGUOUS.len(), 66);
        let mut r = reader();
        assert!(r
            .feed(b"HTTP/1.1 200 OK\r\nContent-Length: 132\r\n\r\n")
            .is_ok());
        assert!(r.feed(AMBIGUOUS).is_ok(), "body bytes are not a head");
        // A request body still going out after an early answer is not a new request.
        r.wrote(GET);
        assert!(r.feed(AMBIGUOUS).is_ok(), "the rest of the body");
        // A chunked body, then a HEAD whose answer declares a body it does not carry.
        r.wrote(GET);
        assert!(r
            .feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n42\r\n")
            .is_ok());
        r.wrote(GET);
        assert!(r.feed(AMBIGUOUS).is_ok());
        assert!(r.feed(b"\r\n0\r\n\r\n").is_ok());
        r.wrote(b"HEAD / HTTP/1.1\r\n");
        assert!(r
            .feed(b"HTTP/1.1 200 OK\r\nContent-Length: 66\r\n\r\n")
            .is_ok());
        r.wrote(GET);
        assert!(
            r.feed(AMBIGUOUS).is_err(),
            "after a new request it is a head"
        );
    }

    #[test]
    fn many_fields_are_read_up_to_the_configured_bound() {
        let mut head = b"HTTP/1.1 200 OK\r\n".to_vec();
        for i in 0..200 {
            head.extend_from_slice(format!("x-{i}: 1\r\n").as_bytes());
        }
        head.extend_from_slice(b"Content-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n");
        let mut r = ResponseHeads::new((), true, 1 << 20, 300);
        r.wrote(GET);
        assert!(r.feed(&head).is_err());
    }

    #[test]
    fn http2_and_switched_connections_are_passed_through() {
        let mut r = ResponseHeads::new((), false, 8192, 100);
        r.wrote(GET);
        assert!(r.feed(AMBIGUOUS).is_ok());
        let mut r = reader();
        assert!(r
            .feed(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n")
            .is_ok());
        r.wrote(GET);
        assert!(r.feed(AMBIGUOUS).is_ok());
    }
}
