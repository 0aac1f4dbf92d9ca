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
    /// No request is waiting for its response head.
    Idle,
    /// A request went out: the next bytes start its response head.
    Awaiting,
    /// The connection switched protocols (101), or speaks HTTP/2: never reads heads again.
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
}

impl<S> ResponseHeads<S> {
    /// `inner`, read as HTTP/1 when `http1` (else passed through untouched).
    pub fn new(inner: S, http1: bool, max_head: usize) -> Self {
        Self {
            inner,
            state: if http1 { State::Idle } else { State::Off },
            partial: Vec::new(),
            max_head,
        }
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    fn wrote(&mut self) {
        if self.state == State::Idle {
            self.state = State::Awaiting;
        }
    }

    /// Reads the next bytes from the backend; `Err` when they complete an ambiguous head.
    fn feed(&mut self, data: &[u8]) -> Result<(), AmbiguousResponse> {
        if self.state != State::Awaiting || data.is_empty() {
            return Ok(());
        }
        if self.partial.is_empty() {
            return self.heads(data);
        }
        let seen = self.partial.len();
        self.partial.extend_from_slice(data);
        if !crate::http::may_end_head(&self.partial[seen.saturating_sub(2)..]) {
            self.bound_partial();
            return Ok(());
        }
        let partial = std::mem::take(&mut self.partial);
        self.heads(&partial)
    }

    /// Parses the heads at the start of `data`: 1xx heads are passed over, the final one is
    /// judged.
    fn heads(&mut self, mut data: &[u8]) -> Result<(), AmbiguousResponse> {
        loop {
            let mut fields = [httparse::EMPTY_HEADER; STACK_HEADERS];
            let mut resp = httparse::Response::new(&mut fields);
            let used = match resp.parse(data) {
                Ok(httparse::Status::Complete(used)) => used,
                Ok(httparse::Status::Partial) => {
                    self.partial.extend_from_slice(data);
                    self.bound_partial();
                    return Ok(());
                }
                // hyper refuses it as well, or (too many fields) applies its own limit.
                Err(_) => {
                    self.state = State::Idle;
                    return Ok(());
                }
            };
            match resp.code {
                Some(101) => {
                    self.state = State::Off;
                    return Ok(());
                }
                Some(100..=199) => data = &data[used..],
                _ => {
                    self.state = State::Idle;
                    let named =
                        |n: &str| resp.headers.iter().any(|h| h.name.eq_ignore_ascii_case(n));
                    if named("content-length") && named("transfer-encoding") {
                        return Err(AmbiguousResponse);
                    }
                    return Ok(());
                }
            }
        }
    }

    fn bound_partial(&mut self) {
        if self.partial.len() > self.max_head {
            self.partial = Vec::new();
            self.state = State::Idle;
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
                self.wrote();
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
                self.wrote();
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

    /// A reader whose connection has just sent a request.
    fn reader() -> ResponseHeads<()> {
        let mut r = ResponseHeads::new((), true, 8192);
        r.wrote();
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
    fn a_body_is_not_read_as_a_head_until_the_next_request() {
        let mut r = reader();
        assert!(r
            .feed(b"HTTP/1.1 200 OK\r\nContent-Length: 80\r\n\r\n")
            .is_ok());
        let inner = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert!(r.feed(inner).is_ok(), "body bytes are not a head");
        r.wrote();
        assert!(r.feed(inner).is_err(), "after a new request they are");
    }

    #[test]
    fn http2_and_switched_connections_are_passed_through() {
        let ambiguous =
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n";
        let mut r = ResponseHeads::new((), false, 8192);
        r.wrote();
        assert!(r.feed(ambiguous).is_ok());
        let mut r = reader();
        assert!(r
            .feed(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n")
            .is_ok());
        r.wrote();
        assert!(r.feed(ambiguous).is_ok());
    }
}
