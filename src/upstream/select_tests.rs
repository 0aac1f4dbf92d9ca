//! Backups and slow start, measured over many picks. Run with
//! `cargo test select::tests -- --nocapture` to see the measured shares.

use super::*;
use crate::upstream::balancer::test_support::backends;

const S: u64 = 1_000_000_000;
const PICKS: usize = 20_000;
/// Slow start shares may differ from ratio × full share by this much (a binomial standard
/// deviation is at most 0.36% over 20,000 picks, so this is over 4 of them).
const TOLERANCE: f64 = 0.015;

fn backups(weights: &[u32], backup: &[bool]) -> Vec<Arc<Backend>> {
    backends(weights)
        .iter()
        .zip(backup)
        .map(|(b, &backup)| {
            Arc::new(Backend::new(b.name.clone(), b.address, b.weight()).with_backup(backup))
        })
        .collect()
}

/// Makes `b` unhealthy, then healthy again: its slow start begins now. Returns the time.
fn recover(b: &Backend) -> u64 {
    b.health().record(false, 1, 1);
    b.health().record(true, 1, 1);
    now_ns()
}

/// Share of `PICKS` picks at `now` that go to pool index `i`.
fn share(s: &Selector, window: Duration, now: u64, i: usize) -> f64 {
    let ctx = PickContext::default();
    let hits = (0..PICKS)
        .filter(|_| s.pick_at(&ctx, window, now, None) == Some(i))
        .count();
    hits as f64 / PICKS as f64
}

#[test]
fn slow_start_admits_a_returning_backend_in_proportion_to_elapsed_time() {
    let window = Duration::from_secs(1000);
    for kind in BalancerKind::ALL {
        let bs = backends(&[1, 1]);
        let s = Selector::new(&bs, kind, None, Some(window));
        let t = recover(&bs[1]);
        // Its share once the ramp is over: about a half (ring-hash's arcs are uneven).
        let full = share(&s, window, t + 1000 * S, 1);
        assert_eq!(share(&s, window, t, 1), 0.0, "{kind:?} at 0%");
        let mut measured = Vec::new();
        for r in [0.25, 0.5, 0.75] {
            let now = t + (r * 1000.0) as u64 * S;
            let got = share(&s, window, now, 1);
            measured.push(format!("{:.2}%", got * 100.0));
            assert!(
                (got - r * full).abs() <= TOLERANCE,
                "{kind:?} at {r}: {got}, full share {full}"
            );
        }
        eprintln!(
            "{kind:?}: full share {:.2}%; at 25/50/75% of slow start: {}",
            full * 100.0,
            measured.join(", ")
        );
    }
}

#[test]
fn a_lone_backend_in_slow_start_still_takes_every_request() {
    let window = Duration::from_secs(1000);
    for kind in BalancerKind::ALL {
        let bs = backends(&[1]);
        let s = Selector::new(&bs, kind, None, Some(window));
        let t = recover(&bs[0]);
        assert_eq!(share(&s, window, t, 0), 1.0, "{kind:?}");
    }
}

#[test]
fn backups_take_requests_only_when_no_primary_is_usable() {
    for kind in BalancerKind::ALL {
        let bs = backups(&[1, 1, 1], &[false, true, false]);
        let s = Selector::new(&bs, kind, None, None);
        let ctx = PickContext::default();
        let picks = |n| (0..n).map(|_| s.pick(&ctx)).collect::<Vec<_>>();
        assert!(picks(300).iter().all(|&i| i != Some(1)), "{kind:?}");
        // One primary down: the other takes everything, the backup nothing.
        bs[0].health().record(false, 1, 1);
        assert!(picks(100).iter().all(|&i| i == Some(2)), "{kind:?}");
        // Both down (one unhealthy, one draining): the backup.
        bs[2].set_draining(true);
        assert!(!s.primary_usable());
        assert!(picks(100).iter().all(|&i| i == Some(1)), "{kind:?}");
        // A primary back: the backup stops at once.
        bs[2].set_draining(false);
        assert!(picks(100).iter().all(|&i| i == Some(2)), "{kind:?}");
        // Nothing usable at all: none.
        bs[1].set_draining(true);
        bs[2].set_draining(true);
        assert_eq!(s.pick(&ctx), None, "{kind:?}");
    }
}

#[test]
fn a_backup_keeps_the_share_a_returning_primary_is_not_yet_admitted_for() {
    let window = Duration::from_secs(1000);
    let bs = backups(&[1, 1], &[false, true]);
    let s = Selector::new(&bs, BalancerKind::RoundRobin, None, Some(window));
    let t = recover(&bs[0]);
    let primary = share(&s, window, t + 250 * S, 0);
    eprintln!(
        "primary at 25% of slow start: {:.2}% (backup the rest)",
        primary * 100.0
    );
    assert!((primary - 0.25).abs() <= TOLERANCE, "{primary}");
    assert_eq!(share(&s, window, t + 1000 * S, 0), 1.0);
}

#[test]
fn draining_backends_are_never_picked_and_finish_what_they_have() {
    for kind in BalancerKind::ALL {
        let bs = backends(&[1, 1, 1]);
        let s = Selector::new(&bs, kind, None, None);
        let held = bs[1].start();
        assert!(bs[1].set_draining(true));
        assert!(!bs[1].set_draining(true), "no change");
        let ctx = PickContext { hash: Some(42) };
        for _ in 0..300 {
            assert_ne!(s.pick(&ctx), Some(1), "{kind:?}");
            assert_ne!(s.pick(&PickContext::default()), Some(1), "{kind:?}");
        }
        assert_eq!(bs[1].in_flight(), 1, "the request in flight goes on");
        drop(held);
        assert_eq!(bs[1].in_flight(), 0);
    }
}
