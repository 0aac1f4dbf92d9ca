//! The response body terminus sends to clients: a backend's body streamed through (holding the
//! backend's in-flight count until it ends), or a short body terminus wrote itself.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use super::exchange::Finish;
use crate::upstream::InFlight;

#[derive(Debug)]
pub enum ProxyBody {
    Upstream {
        body: Incoming,
        /// Dropped when the body ends, so in-flight counts cover the whole response.
        in_flight: Option<InFlight>,
        /// The access log line, written when the body ends or is dropped.
        finish: Option<Box<Finish>>,
    },
    Local(Option<Bytes>),
}

impl ProxyBody {
    pub fn upstream(body: Incoming, in_flight: InFlight, finish: Option<Box<Finish>>) -> Self {
        Self::Upstream {
            body,
            in_flight: Some(in_flight),
            finish,
        }
    }

    pub fn local(bytes: Bytes) -> Self {
        Self::Local(Some(bytes))
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            Self::Upstream {
                body,
                in_flight,
                finish,
            } => {
                let polled = Pin::new(body).poll_frame(cx);
                match &polled {
                    Poll::Ready(Some(Ok(frame))) => {
                        if let (Some(f), Some(data)) = (finish.as_mut(), frame.data_ref()) {
                            f.bytes_out += data.len() as u64;
                        }
                    }
                    Poll::Ready(None) => {
                        in_flight.take();
                        if let Some(mut f) = finish.take() {
                            f.ended = true;
                        }
                    }
                    Poll::Ready(Some(Err(_))) => {
                        in_flight.take();
                        if let Some(mut f) = finish.take() {
                            f.body_error = true;
                        }
                    }
                    Poll::Pending => {}
                }
                polled
            }
            Self::Local(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Upstream { body, .. } => body.is_end_stream(),
            Self::Local(bytes) => bytes.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Upstream { body, .. } => body.size_hint(),
            Self::Local(Some(b)) => SizeHint::with_exact(b.len() as u64),
            Self::Local(None) => SizeHint::with_exact(0),
        }
    }
}

impl Drop for ProxyBody {
    fn drop(&mut self) {
        // hyper may drop a body it knows is empty (HEAD, 204, Content-Length: 0) unpolled.
        if let Self::Upstream {
            body,
            finish: Some(f),
            ..
        } = self
        {
            if body.is_end_stream() {
                f.ended = true;
            }
        }
    }
}
