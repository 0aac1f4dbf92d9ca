//! `least-connections`: the backend with the fewest requests in flight per unit of weight;
//! ties go round-robin.

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use super::{next_usable, rotated, Balancer, PickContext};
use crate::upstream::backend::Backend;

#[derive(Debug, Default)]
pub struct LeastConnections {
    next: AtomicUsize,
}

impl Balancer for LeastConnections {
    fn pick(&self, backends: &[Arc<Backend>], _ctx: &PickContext) -> Option<usize> {
        if backends.is_empty() {
            return None;
        }
        // Ties go to the first usable backend in rotation.
        let start = next_usable(&self.next, backends)?;
        let mut best: Option<usize> = None;
        for i in rotated(backends.len(), start) {
            let b = &backends[i];
            if !b.is_usable() {
                continue;
            }
            // in_flight/weight compared by cross-multiplying, without division.
            let better = best.is_none_or(|j| {
                let o = &backends[j];
                (b.in_flight() as u64) * u64::from(o.weight())
                    < (o.in_flight() as u64) * u64::from(b.weight())
            });
            if better {
                best = Some(i);
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

    #[test]
    fn picks_the_least_loaded_per_weight() {
        let bs = backends(&[1, 1, 2]);
        let lc = LeastConnections::default();
        let _a = (0..2).map(|_| bs[0].start()).collect::<Vec<_>>();
        let _b = (0..1).map(|_| bs[1].start()).collect::<Vec<_>>();
        let _c = (0..3).map(|_| bs[2].start()).collect::<Vec<_>>();
        // Loads per weight: 2, 1, 1.5.
        for _ in 0..10 {
            assert_eq!(lc.pick(&bs, &PickContext::default()), Some(1));
        }
    }

    #[test]
    fn ties_rotate() {
        let bs = backends(&[1, 1, 1]);
        let c = counts(&LeastConnections::default(), &bs, 300);
        assert_eq!(c, vec![100, 100, 100]);
    }

    #[test]
    fn held_requests_spread_by_weight() {
        let bs = backends(&[3, 1]);
        let lc = LeastConnections::default();
        let guards: Vec<_> = (0..40)
            .map(|_| bs[lc.pick(&bs, &PickContext::default()).unwrap()].start())
            .collect();
        assert_eq!(bs[0].in_flight(), 30);
        assert_eq!(bs[1].in_flight(), 10);
        drop(guards);
    }
}
