//! Balancers: one small trait, one file per algorithm.

mod bounded;
mod least_connections;
mod least_response_time;
mod maglev;
mod performance;
mod random;
mod ring_hash;
mod round_robin;
mod weighted_round_robin;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::backend::Backend;
use crate::config::BalancerKind;

pub use least_connections::LeastConnections;
pub use least_response_time::LeastResponseTime;
pub use maglev::Maglev;
pub use performance::Performance;
pub use random::Random;
pub use ring_hash::RingHash;
pub use round_robin::RoundRobin;
pub use weighted_round_robin::WeightedRoundRobin;

/// What a balancer may know of the request it picks for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PickContext {
    /// The hash (`key_hash`) of the request's `hash_key`, for the hashing balancers; `None`
    /// when the pool hashes nothing or the request lacks the key.
    pub hash: Option<u64>,
}

/// The hash of a request's key. xxh3 is fast, and specified, so its values do not change
/// with the version or the platform: every terminus maps a key to the same backend.
pub fn key_hash(key: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(key)
}

/// Picks a backend for the next request.
pub trait Balancer: Send + Sync + std::fmt::Debug {
    /// The index of a usable backend in `backends`, or `None` when none is usable.
    /// `backends` is the same slice (same order) the balancer was built for. Only the hashing
    /// balancers read `ctx`.
    fn pick(&self, backends: &[Arc<Backend>], ctx: &PickContext) -> Option<usize>;

    /// `pick`, also noting in `trace` what it compared when that is not visible from the
    /// backends' state afterwards (the random pair of `performance`). Called only for
    /// requests that asked for an explanation.
    fn pick_traced(
        &self,
        backends: &[Arc<Backend>],
        ctx: &PickContext,
        trace: &mut Vec<String>,
    ) -> Option<usize> {
        let _ = trace;
        self.pick(backends, ctx)
    }
}

/// The balancer of `kind` for `backends`; `bounded_load` is the hashing balancers' factor of
/// consistent hashing with bounded loads (the others ignore it).
pub fn build(
    kind: BalancerKind,
    backends: &[Arc<Backend>],
    bounded_load: Option<f64>,
) -> Box<dyn Balancer> {
    match kind {
        BalancerKind::RoundRobin => Box::new(RoundRobin::default()),
        BalancerKind::WeightedRoundRobin => Box::new(WeightedRoundRobin::new(backends)),
        BalancerKind::LeastConnections => Box::new(LeastConnections::default()),
        BalancerKind::LeastResponseTime => Box::new(LeastResponseTime::default()),
        BalancerKind::Performance => Box::new(Performance),
        BalancerKind::Random => Box::new(Random),
        BalancerKind::Maglev => Box::new(Maglev::new(backends, bounded_load)),
        BalancerKind::RingHash => Box::new(RingHash::new(backends, bounded_load)),
    }
}

/// Indexes of `backends` starting at `start` and wrapping around, so that scans for the best
/// backend break ties in rotation instead of always favouring the first.
fn rotated(len: usize, start: usize) -> impl Iterator<Item = usize> {
    (0..len).map(move |i| (start + i) % len)
}

/// The next usable backend in rotation: one turn of the counter per pick. When the turn's
/// backend is unusable, its turn goes to another (see `spill`), so its share spreads evenly
/// over the others instead of all going to the next one in order.
fn next_usable(counter: &AtomicUsize, backends: &[Arc<Backend>]) -> Option<usize> {
    let len = backends.len();
    if len == 0 {
        return None;
    }
    let turn = counter.fetch_add(1, Ordering::Relaxed);
    let usable = |i: usize| backends[i].is_usable();
    if usable(turn % len) {
        return Some(turn % len);
    }
    spill(turn, len, usable)
}

/// For `turn` of a rotation over `len` slots whose slot is unusable: the k-th usable slot,
/// with k moving on each cycle (`turn / len`), so over the cycles an unusable slot's turns
/// visit every usable slot alike. `None` when no slot is usable.
fn spill(turn: usize, len: usize, usable: impl Fn(usize) -> bool) -> Option<usize> {
    let count = (0..len).filter(|&i| usable(i)).count();
    if count == 0 {
        return None;
    }
    (0..len).filter(|&i| usable(i)).nth((turn / len) % count)
}

#[cfg(test)]
mod hashing_tests;

#[cfg(test)]
pub(crate) mod test_support {
    use super::*;

    pub fn backends(weights: &[u32]) -> Vec<Arc<Backend>> {
        weights
            .iter()
            .enumerate()
            .map(|(i, &w)| {
                let addr = format!("127.0.0.1:{}", 10000 + i).parse().unwrap();
                Arc::new(Backend::new(format!("b{i}"), addr, w))
            })
            .collect()
    }

    pub fn counts(b: &dyn Balancer, backends: &[Arc<Backend>], picks: usize) -> Vec<usize> {
        let mut counts = vec![0; backends.len()];
        for _ in 0..picks {
            counts[b.pick(backends, &PickContext::default()).unwrap()] += 1;
        }
        counts
    }

    #[test]
    fn every_balancer_returns_none_without_usable_backends() {
        let bs = backends(&[0, 0]);
        for kind in BalancerKind::ALL {
            let none = PickContext::default();
            let keyed = PickContext { hash: Some(7) };
            for ctx in [none, keyed] {
                assert_eq!(build(kind, &bs, None).pick(&bs, &ctx), None, "{kind:?}");
                let empty = build(kind, &[], Some(1.25));
                assert_eq!(empty.pick(&[], &ctx), None, "{kind:?} empty");
            }
        }
    }

    #[test]
    fn an_unusable_backends_share_spreads_evenly() {
        // The middle one of three equal backends fails its health check: the other two split
        // its share.
        let bs = backends(&[1, 1, 1]);
        assert_eq!(bs[1].health().record(false, 1, 1), Some(false));
        for kind in [
            BalancerKind::RoundRobin,
            BalancerKind::WeightedRoundRobin,
            BalancerKind::LeastConnections,
            BalancerKind::LeastResponseTime,
        ] {
            let c = counts(build(kind, &bs, None).as_ref(), &bs, 3000);
            assert_eq!(c, vec![1500, 0, 1500], "{kind:?}");
        }
        for kind in [BalancerKind::Performance, BalancerKind::Random] {
            let c = counts(build(kind, &bs, None).as_ref(), &bs, 3000);
            // Binomial(3000, 1/2): six standard deviations are about 164.
            assert!(c[0].abs_diff(1500) < 164 && c[1] == 0, "{kind:?}: {c:?}");
        }
    }

    #[test]
    fn every_balancer_skips_unusable_backends() {
        let bs = backends(&[1, 0, 1]);
        for kind in BalancerKind::ALL {
            let b = build(kind, &bs, None);
            let c = counts(b.as_ref(), &bs, 300);
            assert_eq!(c[1], 0, "{kind:?} picked a weight-0 backend");
            assert!(
                c[0] > 0 && c[2] > 0,
                "{kind:?} never picked a usable backend: {c:?}"
            );
        }
    }
}
