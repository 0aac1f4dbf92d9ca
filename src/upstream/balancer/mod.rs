//! Balancers: one small trait, one file per algorithm.

mod least_connections;
mod least_response_time;
mod performance;
mod random;
mod round_robin;
mod weighted_round_robin;

use std::sync::Arc;

use super::backend::Backend;
use crate::config::BalancerKind;

pub use least_connections::LeastConnections;
pub use least_response_time::LeastResponseTime;
pub use performance::Performance;
pub use random::Random;
pub use round_robin::RoundRobin;
pub use weighted_round_robin::WeightedRoundRobin;

/// Picks a backend for the next request.
pub trait Balancer: Send + Sync + std::fmt::Debug {
    /// The index of a usable backend in `backends`, or `None` when none is usable.
    /// `backends` is the same slice (same order) the balancer was built for.
    fn pick(&self, backends: &[Arc<Backend>]) -> Option<usize>;
}

pub fn build(kind: BalancerKind, backends: &[Arc<Backend>]) -> Box<dyn Balancer> {
    match kind {
        BalancerKind::RoundRobin => Box::new(RoundRobin::default()),
        BalancerKind::WeightedRoundRobin => Box::new(WeightedRoundRobin::new(backends)),
        BalancerKind::LeastConnections => Box::new(LeastConnections::default()),
        BalancerKind::LeastResponseTime => Box::new(LeastResponseTime::default()),
        BalancerKind::Performance => Box::new(Performance),
        BalancerKind::Random => Box::new(Random),
    }
}

/// Indexes of `backends` starting at `start` and wrapping around, so that scans for the best
/// backend break ties in rotation instead of always favouring the first.
fn rotated(len: usize, start: usize) -> impl Iterator<Item = usize> {
    (0..len).map(move |i| (start + i) % len)
}

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
            counts[b.pick(backends).unwrap()] += 1;
        }
        counts
    }

    #[test]
    fn every_balancer_returns_none_without_usable_backends() {
        let bs = backends(&[0, 0]);
        for kind in BalancerKind::ALL {
            assert_eq!(build(kind, &bs).pick(&bs), None, "{kind:?}");
            assert_eq!(build(kind, &[]).pick(&[]), None, "{kind:?} empty");
        }
    }

    #[test]
    fn every_balancer_skips_unusable_backends() {
        let bs = backends(&[1, 0, 1]);
        for kind in BalancerKind::ALL {
            let b = build(kind, &bs);
            let c = counts(b.as_ref(), &bs, 300);
            assert_eq!(c[1], 0, "{kind:?} picked a weight-0 backend");
            assert!(
                c[0] > 0 && c[2] > 0,
                "{kind:?} never picked a usable backend: {c:?}"
            );
        }
    }
}
