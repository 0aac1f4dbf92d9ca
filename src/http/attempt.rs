//! Sending a request to its backend, and on a failure that is safe to retry, to other
//! backends: bounded per request and by the pool's retry budget.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::request::Parts;
use http::{HeaderValue, Response, StatusCode};
use hyper::body::Incoming;
use tracing::{debug, warn};

use super::framing;
use super::rewrite;
use crate::upstream::decision::Decision;
use crate::upstream::pool::Picked;
use crate::upstream::replay::ReplayBody;
use crate::upstream::{Backend, InFlight, Outcome, Pool, UpstreamError};

/// A backend's answer, with what the client's response needs from the attempt that got it.
pub struct Sent {
    pub backend: Arc<Backend>,
    pub response: Response<Incoming>,
    pub in_flight: InFlight,
    /// A `Set-Cookie` for the response: a new sticky choice, or one moved by a retry.
    pub set_cookie: Option<HeaderValue>,
    /// Attempts before the one that got the answer.
    pub retries: u32,
    /// How long opening the answering attempt's connection took; `None` on a pooled one.
    pub connect: Option<Duration>,
    /// From sending the answering attempt to its response header.
    pub ttfb: Duration,
}

/// Why no backend answered: the status for the client and a label for the log.
pub struct Failed {
    pub status: StatusCode,
    pub reason: &'static str,
    pub backend: Arc<Backend>,
    pub retries: u32,
}

/// Identity of a backend within a pool, for the list of those already tried.
fn id(b: &Arc<Backend>) -> usize {
    Arc::as_ptr(b) as usize
}

/// Sends to `first`, then retries where safe. `Err` says what the client gets; every
/// failure has been logged. `trace`, when given, records each failed attempt.
pub async fn send_with_retries(
    pool: &Pool,
    parts: &Parts,
    body: &ReplayBody,
    first: Picked<'_>,
    mut trace: Option<&mut Decision>,
) -> Result<Sent, Failed> {
    let (mut backend, mut client, mut set_cookie) = (first.backend, first.client, first.set_cookie);
    let mut tried = Vec::new();
    // Whether this request already went again on a fresh connection after a reused one was
    // found closed (see below): once per request.
    let mut stale_retried = false;
    loop {
        let failed = |status, reason, backend: &Arc<Backend>, tried: &Vec<usize>| Failed {
            status,
            reason,
            backend: backend.clone(),
            retries: tried.len().saturating_sub(1) as u32,
        };
        // Never `None` on the first attempt; later ones were checked before retrying.
        let Some(attempt_body) = body.again() else {
            return Err(failed(
                StatusCode::BAD_GATEWAY,
                "body_not_replayable",
                backend,
                &tried,
            ));
        };
        let req = match rewrite::for_backend(parts, backend, pool.protocol, attempt_body) {
            Ok(req) => req,
            Err(why) => {
                warn!(why, "400: cannot forward the request");
                return Err(failed(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    backend,
                    &tried,
                ));
            }
        };
        let wait = pool.timeouts.queue;
        let Some(in_flight) = backend
            .start_within(pool.max_connections_per_backend, wait)
            .await
        else {
            // As HAProxy's `timeout queue`: 503, and not the backend's failure.
            warn!(pool = %pool.name, backend = %backend.name, timeout = ?wait, "503: no connection slot on the backend in time");
            return Err(failed(
                StatusCode::SERVICE_UNAVAILABLE,
                "queue_timeout",
                backend,
                &tried,
            ));
        };
        let started = Instant::now();
        let (mut sent, connect) = client.send_timed(req).await;
        if let Some(broken) = framing::check_attempt(&mut sent) {
            // Dropping the unread response closes its connection: nothing after it is read.
            drop((sent, in_flight));
            if broken.by_backend {
                backend.stats.failed();
                pool.report(backend, Outcome::Reset);
            }
            tried.push(id(backend));
            let status = broken.status();
            warn!(pool = %pool.name, backend = %backend.name, why = %broken.violation, status = status.as_u16(), "ambiguous framing");
            return Err(failed(status, broken.reason(), backend, &tried));
        }
        let err = match sent {
            Ok(response) => {
                let ttfb = started.elapsed();
                backend.observe(ttfb);
                backend.stats.answered(response.status().as_u16(), ttfb);
                pool.report(backend, Outcome::of_status(response.status()));
                return Ok(Sent {
                    backend: backend.clone(),
                    response,
                    in_flight,
                    set_cookie,
                    retries: tried.len() as u32,
                    connect,
                    ttfb,
                });
            }
            Err(e) => e,
        };
        drop(in_flight);
        match &err {
            UpstreamError::ClientBody(why) => {
                // The client's fault, not the backend's: no failure counted, no retry.
                debug!(pool = %pool.name, reason = %why, "request body refused");
                return Err(failed(why.status(), why.reason(), backend, &tried));
            }
            UpstreamError::NoResources(why) => {
                // Terminus's own limits: another backend would fail the same way.
                warn!(pool = %pool.name, backend = %backend.name, reason = %why, "503: out of local resources");
                return Err(failed(err.status(), err.reason(), backend, &tried));
            }
            // A reused keep-alive connection the backend had closed just before the request
            // went out (its FIN was still on the way): the backend never saw the request. As
            // HAProxy does for idle connections, send it again once to the same backend (the pool has
            // dropped that connection); not the backend's failure, not a retry from the budget.
            UpstreamError::Closed
                if connect.is_none()
                    && !stale_retried
                    && err.safe_to_retry(&parts.method)
                    && body.again().is_some() =>
            {
                stale_retried = true;
                debug!(pool = %pool.name, backend = %backend.name, "a reused connection was closed by the backend; sending again on a new one");
                if let Some(d) = trace.as_deref_mut() {
                    d.attempts.push(format!(
                        "{} closed a reused connection; sent again",
                        backend.name
                    ));
                }
                continue;
            }
            _ => {}
        }
        backend.stats.failed();
        if let Some(d) = trace.as_deref_mut() {
            d.attempts
                .push(format!("{} failed ({})", backend.name, err.reason()));
        }
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
            return Err(failed(status, err.reason(), backend, &tried));
        };
        if !pool.retry_budget.try_retry() {
            backend.stats.budget_refused();
            if let Some(d) = trace.as_deref_mut() {
                d.attempts.push("retry budget spent".to_owned());
            }
            warn!(pool = %pool.name, backend = %backend.name, status = status.as_u16(), reason = %err, "upstream request failed; the pool's retry budget is spent");
            return Err(failed(status, err.reason(), backend, &tried));
        }
        backend.stats.retried();
        if let Some(d) = trace.as_deref_mut() {
            d.chosen = Some(next_backend.name.clone());
        }
        warn!(pool = %pool.name, backend = %backend.name, reason = %err, next = %next_backend.name, "retrying on another backend");
        if let Some(sticky) = &pool.sticky {
            set_cookie = sticky.set_cookie(&next_backend.name);
        }
        (backend, client) = (next_backend, next_client);
    }
}
