//! Outlier detection with a clock the tests hold: times are nanoseconds since the epoch.

use std::time::Duration;

use super::*;
use crate::upstream::balancer::test_support::backends;

const S: u64 = 1_000_000_000;
/// A start far enough from the epoch that "served for `max_ejection`" can be before it.
const T0: u64 = 1_000 * S;

fn detector(consecutive_failures: u32, max_ejection_percent: u32) -> Detector {
    Detector::new(OutlierDetection {
        consecutive_failures,
        base_ejection: Duration::from_secs(30),
        max_ejection: Duration::from_secs(300),
        max_ejection_percent,
    })
}

/// Reports `n` failures (5xx) of `bs[i]` at `now`.
fn fail(d: &Detector, bs: &[Arc<Backend>], i: usize, n: u32, now: u64) {
    for _ in 0..n {
        d.report_at("p", bs, &bs[i], Outcome::ServerError, now);
    }
}

fn ejected(bs: &[Arc<Backend>], i: usize, now: u64) -> bool {
    bs[i].ejection().is_ejected_at(now)
}

#[test]
fn ejects_after_consecutive_failures_of_every_kind() {
    let kinds = [
        Outcome::ConnectFailure,
        Outcome::Reset,
        Outcome::ServerError,
        Outcome::Timeout,
    ];
    for kind in kinds {
        let bs = backends(&[1, 1]);
        let d = detector(3, 50);
        d.report_at("p", &bs, &bs[0], kind, T0);
        d.report_at("p", &bs, &bs[0], kind, T0);
        assert!(!ejected(&bs, 0, T0), "{kind:?}: 2 of 3");
        d.report_at("p", &bs, &bs[0], kind, T0);
        assert!(ejected(&bs, 0, T0), "{kind:?}: 3 of 3");
        assert!(!bs[0].is_usable(), "an ejected backend is not usable");
        assert_eq!(bs[0].ejection().consecutive_failures(), 0);
    }
}

#[test]
fn a_success_resets_the_count() {
    let bs = backends(&[1, 1]);
    let d = detector(3, 50);
    fail(&d, &bs, 0, 2, T0);
    d.report_at("p", &bs, &bs[0], Outcome::Success, T0);
    fail(&d, &bs, 0, 2, T0);
    assert!(!ejected(&bs, 0, T0));
    assert_eq!(bs[0].ejection().consecutive_failures(), 2);
    fail(&d, &bs, 0, 1, T0);
    assert!(ejected(&bs, 0, T0));
}

#[test]
fn returns_when_the_time_is_up_and_the_sweep_notices() {
    let bs = backends(&[1, 1]);
    let d = detector(1, 50);
    // Ejected now, by the real clock, for 30 s.
    fail(&d, &bs, 0, 1, now_ns());
    assert!(!bs[0].is_usable());
    let until = bs[0].ejection().until.load(Ordering::Relaxed);
    assert!(ejected(&bs, 0, until - 1));
    assert!(!ejected(&bs, 0, until), "back exactly at the deadline");
    // Before the deadline a sweep changes nothing; after it, it clears the flag, so the
    // backend is usable by the real clock too.
    d.sweep_at("p", &bs, until - 1);
    assert!(!bs[0].is_usable());
    d.sweep_at("p", &bs, until);
    assert!(bs[0].is_usable());
    assert_eq!(d.next_return.load(Ordering::Relaxed), u64::MAX);
}

#[test]
fn ejection_time_grows_with_each_ejection_up_to_the_cap() {
    let bs = backends(&[1, 1]);
    let d = detector(2, 50);
    let mut now = T0;
    let mut times = Vec::new();
    for _ in 0..12 {
        fail(&d, &bs, 0, 2, now);
        let until = bs[0].ejection().until.load(Ordering::Relaxed);
        times.push((until - now) / S);
        // Back at the deadline, and failing again at once.
        now = until;
    }
    assert_eq!(
        times,
        vec![30, 60, 90, 120, 150, 180, 210, 240, 270, 300, 300, 300]
    );
    assert_eq!(bs[0].ejection().ejections(), 12);
}

#[test]
fn the_count_starts_over_after_serving_for_max_ejection() {
    let bs = backends(&[1, 1]);
    let d = detector(1, 50);
    fail(&d, &bs, 0, 1, T0);
    let back = T0 + 30 * S;
    fail(&d, &bs, 0, 1, back + 299 * S);
    assert_eq!(bs[0].ejection().ejections(), 2, "299 s in service: grows");
    let back = back + 299 * S + 60 * S;
    fail(&d, &bs, 0, 1, back + 300 * S);
    assert_eq!(
        bs[0].ejection().ejections(),
        1,
        "300 s in service: starts over"
    );
}

#[test]
fn failures_of_requests_in_flight_while_ejected_do_not_count() {
    let bs = backends(&[1, 1]);
    let d = detector(2, 50);
    fail(&d, &bs, 0, 2, T0);
    fail(&d, &bs, 0, 5, T0 + S);
    assert_eq!(bs[0].ejection().consecutive_failures(), 0);
    assert_eq!(bs[0].ejection().ejections(), 1);
}

#[test]
fn max_ejection_percent_caps_how_many_are_ejected_at_once() {
    let bs = backends(&[1, 1, 1, 1]);
    let d = detector(1, 50);
    fail(&d, &bs, 0, 1, T0);
    fail(&d, &bs, 1, 1, T0 + S);
    fail(&d, &bs, 2, 3, T0 + 2 * S);
    assert!(ejected(&bs, 0, T0 + 2 * S) && ejected(&bs, 1, T0 + 2 * S));
    assert!(!ejected(&bs, 2, T0 + 2 * S), "50% of 4 is 2");
    assert_eq!(bs[2].ejection().consecutive_failures(), 3, "still counting");
    // Once b0 is back, b2's next failure ejects it.
    let back = T0 + 30 * S;
    fail(&d, &bs, 2, 1, back);
    assert!(ejected(&bs, 2, back) && !ejected(&bs, 0, back));
}

#[test]
fn at_least_one_backend_may_always_be_ejected() {
    let bs = backends(&[1, 1]);
    let d = detector(1, 10);
    fail(&d, &bs, 0, 1, T0);
    fail(&d, &bs, 1, 1, T0);
    assert!(
        ejected(&bs, 0, T0),
        "10% of 2 rounds down to 0, but one may go"
    );
    assert!(!ejected(&bs, 1, T0));
}

#[test]
fn slow_start_ramps_from_the_end_of_the_ejection() {
    let bs = backends(&[1, 1]);
    let d = detector(1, 50);
    fail(&d, &bs, 0, 1, T0);
    let until = T0 + 30 * S;
    let window = Duration::from_secs(10);
    assert_eq!(bs[0].slow_start_ratio(window, until - S), 0.0);
    assert_eq!(bs[0].slow_start_ratio(window, until + 5 * S), 0.5);
    assert_eq!(bs[0].slow_start_ratio(window, until + 10 * S), 1.0);
    assert_eq!(bs[1].slow_start_ratio(window, T0), 1.0, "never out");
}

#[test]
fn outcomes_classify_statuses_and_errors() {
    assert_eq!(Outcome::of_status(StatusCode::OK), Outcome::Success);
    assert_eq!(Outcome::of_status(StatusCode::NOT_FOUND), Outcome::Success);
    assert_eq!(
        Outcome::of_status(StatusCode::INTERNAL_SERVER_ERROR),
        Outcome::ServerError
    );
    assert_eq!(
        Outcome::of_status(StatusCode::SERVICE_UNAVAILABLE),
        Outcome::ServerError
    );
    let cases = [
        (UpstreamError::Refused, Some(Outcome::ConnectFailure)),
        (UpstreamError::ConnectTimeout, Some(Outcome::ConnectFailure)),
        (
            UpstreamError::Connect("x".into()),
            Some(Outcome::ConnectFailure),
        ),
        (UpstreamError::Reset, Some(Outcome::Reset)),
        (UpstreamError::Closed, Some(Outcome::Reset)),
        (
            UpstreamError::InvalidResponse("x".into()),
            Some(Outcome::Reset),
        ),
        (
            UpstreamError::ResponseTimeout(Duration::from_secs(1)),
            Some(Outcome::Timeout),
        ),
        (UpstreamError::Other("x".into()), None),
    ];
    for (e, want) in cases {
        assert_eq!(Outcome::of_error(&e), want, "{e:?}");
    }
}
