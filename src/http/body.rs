//! The response body terminus sends to clients: a backend's body streamed through (holding the
//! backend's in-flight count until it ends), or a short body terminus wrote itself.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use crate::upstream::InFlight;

#[derive(Debug)]
pub enum ProxyBody {
    Upstream {
        body: Incoming,
        /// Dropped when the body ends, so in-flight counts cover the whole response.
        in_flight: Option<InFlight>,
    },
    Local(Option<Bytes>),
}

impl ProxyBody {
    pub fn upstream(body: Incoming, in_flight: InFlight) -> Self {
        Self::Upstream {
            body,
            in_flight: Some(in_flight),
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
            Self::Upstream { body, in_flight } => {
                let polled = Pin::new(body).poll_frame(cx);
                if matches!(polled, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) {
                    in_flight.take();
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
