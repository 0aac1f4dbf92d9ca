//! A request body that can be sent again: it streams the client's body to the backend as it
//! arrives, keeping a copy of the first bytes, so a retry can replay what an earlier attempt
//! sent. Past the copy limit the body is streamed only and a retry that would need it is refused.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

/// Most bytes of a request body kept for replay.
pub const REPLAY_LIMIT: usize = 64 * 1024;

#[derive(Debug)]
struct Shared {
    incoming: Option<Incoming>,
    /// Frames read so far, while they fit in `REPLAY_LIMIT`.
    recorded: Vec<Frame<Bytes>>,
    recorded_bytes: usize,
    /// False once a frame was passed on without being kept.
    complete_copy: bool,
    /// Any frame was read from the client.
    started: bool,
    ended: bool,
    /// Body bytes read from the client.
    read_bytes: u64,
    /// The most body bytes the client may send; `None`: no limit.
    max_bytes: Option<u64>,
    /// Longest wait for the client's next piece of body.
    idle: Duration,
    /// Why the client's body was cut off, if it was.
    failure: Option<ClientBodyError>,
}

/// The client's part in a failed request body: terminus answers these itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ClientBodyError {
    #[error("the request body exceeds the limit of {0} bytes")]
    TooLarge(u64),
    #[error("the client sent no body data for {0:?}")]
    Timeout(Duration),
}

impl ClientBodyError {
    /// The status the client gets: 413 or 408.
    pub fn status(self) -> http::StatusCode {
        match self {
            Self::TooLarge(_) => http::StatusCode::PAYLOAD_TOO_LARGE,
            Self::Timeout(_) => http::StatusCode::REQUEST_TIMEOUT,
        }
    }

    /// The access log's termination reason.
    pub fn reason(self) -> &'static str {
        match self {
            Self::TooLarge(_) => "body_too_large",
            Self::Timeout(_) => "client_body_timeout",
        }
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Counts the body bytes read from the client (for the access log).
#[derive(Debug)]
pub struct BodyMeter(Arc<Mutex<Shared>>);

impl BodyMeter {
    pub fn bytes(&self) -> u64 {
        self.0.lock().map(|s| s.read_bytes).unwrap_or(0)
    }

    /// Why the client's body was cut off, if it was.
    pub fn failure(&self) -> Option<ClientBodyError> {
        self.0.lock().ok().and_then(|s| s.failure)
    }
}

/// One attempt's view of the shared request body.
#[derive(Debug)]
pub struct ReplayBody {
    shared: Arc<Mutex<Shared>>,
    /// Index of the next recorded frame this attempt replays.
    cursor: usize,
    /// Runs while this attempt waits for the client's body.
    waiting: Option<Pin<Box<tokio::time::Sleep>>>,
}

fn copy_frame(f: &Frame<Bytes>) -> Option<Frame<Bytes>> {
    if let Some(d) = f.data_ref() {
        return Some(Frame::data(d.clone()));
    }
    f.trailers_ref().map(|t| Frame::trailers(t.clone()))
}

impl ReplayBody {
    /// The client's body, at most `max_bytes` long (`None`: unbounded), with at most `idle`
    /// between its pieces.
    pub fn new(incoming: Incoming, max_bytes: Option<u64>, idle: Duration) -> Self {
        let ended = incoming.is_end_stream();
        Self {
            shared: Arc::new(Mutex::new(Shared {
                incoming: Some(incoming),
                recorded: Vec::new(),
                recorded_bytes: 0,
                complete_copy: true,
                started: false,
                ended,
                read_bytes: 0,
                max_bytes,
                idle,
                failure: None,
            })),
            cursor: 0,
            waiting: None,
        }
    }

    /// A body for another attempt, replaying from the start; `None` when what an earlier
    /// attempt read can no longer be replayed.
    pub fn again(&self) -> Option<Self> {
        let shared = self.shared.lock().ok()?;
        shared.complete_copy.then(|| Self {
            shared: self.shared.clone(),
            cursor: 0,
            waiting: None,
        })
    }

    /// Reads how many body bytes came from the client, also after every attempt is gone.
    pub fn meter(&self) -> BodyMeter {
        BodyMeter(self.shared.clone())
    }

    /// Whether no byte of the body has been read from the client yet.
    pub fn untouched(&self) -> bool {
        self.shared.lock().map(|s| !s.started).unwrap_or(false)
    }
}

/// Ends the body for every attempt because of the client, and says why.
fn cut_off(shared: &mut Shared, why: ClientBodyError) -> BoxError {
    shared.ended = true;
    shared.complete_copy = false;
    shared.recorded.clear();
    shared.failure = Some(why);
    Box::new(why)
}

impl Body for ReplayBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        // A poisoned lock means another attempt panicked; end this body rather than panic.
        let Ok(mut shared) = this.shared.lock() else {
            return Poll::Ready(None);
        };
        if let Some(frame) = shared.recorded.get(this.cursor).and_then(copy_frame) {
            this.cursor += 1;
            return Poll::Ready(Some(Ok(frame)));
        }
        if shared.ended {
            return Poll::Ready(None);
        }
        let Some(incoming) = shared.incoming.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = Pin::new(incoming).poll_frame(cx);
        if polled.is_pending() {
            let idle = shared.idle;
            let timer = this
                .waiting
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
            if timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            return Poll::Ready(Some(Err(cut_off(
                &mut shared,
                ClientBodyError::Timeout(idle),
            ))));
        }
        this.waiting = None;
        match polled {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => {
                shared.ended = true;
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => {
                shared.ended = true;
                shared.complete_copy = false;
                Poll::Ready(Some(Err(e.into())))
            }
            Poll::Ready(Some(Ok(frame))) => {
                shared.started = true;
                let len = frame.data_ref().map_or(0, Bytes::len);
                shared.read_bytes += len as u64;
                if let Some(max) = shared.max_bytes.filter(|&m| shared.read_bytes > m) {
                    return Poll::Ready(Some(Err(cut_off(
                        &mut shared,
                        ClientBodyError::TooLarge(max),
                    ))));
                }
                if shared.complete_copy && shared.recorded_bytes + len <= REPLAY_LIMIT {
                    if let Some(copy) = copy_frame(&frame) {
                        shared.recorded.push(copy);
                        shared.recorded_bytes += len;
                        this.cursor = shared.recorded.len();
                    }
                } else {
                    shared.complete_copy = false;
                    shared.recorded.clear();
                }
                Poll::Ready(Some(Ok(frame)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.shared
            .lock()
            .map(|s| s.ended && self.cursor >= s.recorded.len())
            .unwrap_or(true)
    }

    fn size_hint(&self) -> SizeHint {
        match self.shared.lock() {
            Ok(s) if s.ended && s.complete_copy => {
                let left: usize = s.recorded[self.cursor.min(s.recorded.len())..]
                    .iter()
                    .map(|f| f.data_ref().map_or(0, Bytes::len))
                    .sum();
                SizeHint::with_exact(left as u64)
            }
            Ok(s) => s.incoming.as_ref().map(Body::size_hint).unwrap_or_default(),
            Err(_) => SizeHint::default(),
        }
    }
}
