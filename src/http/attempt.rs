//! Sending a request to its backend, and on a failure that is safe to retry, to other
//! backends: bounded per request and by the pool's retry budget.

use std::sync::Arc;
use std::time::Instant;

use http::request::Parts;
use http::{HeaderValue, Response, StatusCode};
use hyper::body::Incoming;
use tracing::warn;

use super::rewrite;
use crate::upstream::pool::Picked;
use crate::upstream::replay::ReplayBody;
use crate::upstream::{Backend, InFlight, Outcome, Pool};

/// A backend's answer, with what the client's response needs from the attempt that got it.
pub struct Sent {
    pub backend: Arc<Backend>,
    pub response: Response<Incoming>,
    pub in_flight: InFlight,
    /// A `Set-Cookie` for the response: a new sticky choice, or one moved by a retry.
    pub set_cookie: Option<HeaderValue>,
}

/// Identity of a backend within a pool, for the list of those already tried.
fn id(b: &Arc<Backend>) -> usize {
    Arc::as_ptr(b) as usize
}

/// Sends to `first`, then retries where safe. `Err` is the status the client gets; every
/// failure has been logged.
pub async fn send_with_retries(
    pool: &Pool,
    parts: &Parts,
    body: &ReplayBody,
    first: Picked<'_>,
) -> Result<Sent, StatusCode> {
    let (mut backend, mut client, mut set_cookie) = (first.backend, first.client, first.set_cookie);
    let mut tried = Vec::new();
    loop {
        // Never `None` on the first attempt; later ones were checked before retrying.
        let attempt_body = body.again().ok_or(StatusCode::BAD_GATEWAY)?;
        let req =
            rewrite::for_backend(parts, backend, pool.protocol, attempt_body).map_err(|why| {
                warn!(why, "400: cannot forward the request");
                StatusCode::BAD_REQUEST
            })?;
        let in_flight = backend.start();
        let started = Instant::now();
        let err = match client.send(req).await {
            Ok(response) => {
                backend.observe(started.elapsed());
                pool.report(backend, Outcome::of_status(response.status()));
                return Ok(Sent {
                    backend: backend.clone(),
                    response,
                    in_flight,
                    set_cookie,
                });
            }
            Err(e) => e,
        };
        drop(in_flight);
        // A failure counts as slow as the connect timeout, so latency-aware balancers do not
        // mistake a fast refusal for a fast backend.
        backend.observe(pool.timeouts.connect.max(started.elapsed()));
        if let Some(outcome) = Outcome::of_error(&err) {
            pool.report(backend, outcome);
        }
        tried.push(id(backend));
        let status = err.status();
        let retryable = tried.len() <= pool.retry.attempts as usize
            && err.safe_to_retry(&parts.method)
            && body.again().is_some();
        let next = if retryable {
            pool.pick_retry(&tried)
        } else {
            None
        };
        let Some((next_backend, next_client)) = next else {
            warn!(pool = %pool.name, backend = %backend.name, status = status.as_u16(), reason = %err, attempts = tried.len(), "upstream request failed");
            return Err(status);
        };
        if !pool.retry_budget.try_retry() {
            warn!(pool = %pool.name, backend = %backend.name, status = status.as_u16(), reason = %err, "upstream request failed; the pool's retry budget is spent");
            return Err(status);
        }
        warn!(pool = %pool.name, backend = %backend.name, reason = %err, next = %next_backend.name, "retrying on another backend");
        if let Some(sticky) = &pool.sticky {
            set_cookie = sticky.set_cookie(&next_backend.name);
        }
        (backend, client) = (next_backend, next_client);
    }
}
