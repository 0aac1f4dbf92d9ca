//! The demo backend: a small HTTP/1.1 and h2c server that answers with its own name, for the
//! embedded default, tests, benchmarks and trying things out.
//!
//! Paths: `/` (and anything else) answers `Hello from NAME`; `/headers` lists the request
//! line and headers; `/echo` streams the request body back; `/delay/MS` answers after MS
//! milliseconds; `/bytes/N` streams N bytes; `/status/CODE` answers with that status;
//! `/close` drops the connection without answering.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Either, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tracing::debug;

type DemoBody = Either<
    Full<Bytes>,
    Either<Incoming, StreamBody<futures_channel::mpsc::Receiver<Result<Frame<Bytes>, Infallible>>>>,
>;

/// Settings of one demo backend.
#[derive(Debug, Clone)]
pub struct DemoBackend {
    pub name: String,
    /// Added before every answer, to play a slow backend.
    pub delay: Duration,
}

impl DemoBackend {
    /// Serves connections from `listener` until the task is dropped.
    pub async fn serve(self, listener: TcpListener) {
        let name: Arc<str> = Arc::from(self.name);
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            };
            let _ = stream.set_nodelay(true);
            let delay = self.delay;
            let name = name.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| answer(req, name.clone(), delay));
                let mut builder = auto::Builder::new(TokioExecutor::new());
                builder.http1().timer(TokioTimer::new());
                if let Err(e) = builder
                    .serve_connection_with_upgrades(TokioIo::new(stream), service)
                    .await
                {
                    debug!(error = %e, "demo backend connection ended");
                }
            });
        }
    }
}

fn text(name: &str, status: StatusCode, body: impl Into<Bytes>) -> Response<DemoBody> {
    let mut resp = Response::new(Either::Left(Full::new(body.into())));
    *resp.status_mut() = status;
    if let Ok(v) = HeaderValue::from_str(name) {
        resp.headers_mut().insert("x-backend", v);
    }
    resp
}

async fn answer(
    req: Request<Incoming>,
    name: Arc<str>,
    delay: Duration,
) -> Result<Response<DemoBody>, std::io::Error> {
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let path = req.uri().path().to_string();
    let mut segments = path.trim_start_matches('/').splitn(2, '/');
    let first = segments.next().unwrap_or("");
    let arg = segments.next().unwrap_or("");
    Ok(match first {
        "headers" => {
            let mut out = format!("{} {} {:?}\n", req.method(), req.uri(), req.version());
            for (k, v) in req.headers() {
                out.push_str(&format!(
                    "{}: {}\n",
                    k,
                    String::from_utf8_lossy(v.as_bytes())
                ));
            }
            text(&name, StatusCode::OK, out)
        }
        "echo" => {
            let mut resp = text(&name, StatusCode::OK, "");
            *resp.body_mut() = Either::Right(Either::Left(req.into_body()));
            resp
        }
        "delay" => {
            let ms = arg.parse::<u64>().unwrap_or(0);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            text(
                &name,
                StatusCode::OK,
                format!("Hello from {name} after {ms} ms\n"),
            )
        }
        "bytes" => {
            let n = arg.parse::<u64>().unwrap_or(0);
            let mut resp = text(&name, StatusCode::OK, "");
            *resp.body_mut() = Either::Right(Either::Right(StreamBody::new(stream_bytes(n))));
            resp.headers_mut()
                .insert(http::header::CONTENT_LENGTH, HeaderValue::from(n));
            resp
        }
        "status" => {
            let status = arg
                .parse::<u16>()
                .ok()
                .and_then(|c| StatusCode::from_u16(c).ok())
                .unwrap_or(StatusCode::BAD_REQUEST);
            text(&name, status, format!("{status} from {name}\n"))
        }
        "close" => return Err(std::io::Error::other("asked to close without answering")),
        _ => {
            // Drain the request body so keep-alive connections stay usable.
            let _ = req.into_body().collect().await;
            text(&name, StatusCode::OK, format!("Hello from {name}\n"))
        }
    })
}

/// `n` bytes of `x` in 16 KiB frames, produced as the client reads them.
fn stream_bytes(n: u64) -> futures_channel::mpsc::Receiver<Result<Frame<Bytes>, Infallible>> {
    use futures_util::SinkExt;
    let (mut tx, rx) = futures_channel::mpsc::channel(4);
    tokio::spawn(async move {
        const CHUNK: u64 = 16 * 1024;
        let block = Bytes::from(vec![b'x'; CHUNK as usize]);
        let mut left = n;
        while left > 0 {
            let take = left.min(CHUNK);
            if tx
                .send(Ok(Frame::data(block.slice(..take as usize))))
                .await
                .is_err()
            {
                return;
            }
            left -= take;
        }
    });
    rx
}
