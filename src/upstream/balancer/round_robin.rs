//! `round-robin`: each usable backend in turn, ignoring weights.

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use super::{next_usable, Balancer, PickContext};
use crate::upstream::backend::Backend;

#[derive(Debug, Default)]
pub struct RoundRobin {
    next: AtomicUsize,
}

impl Balancer for RoundRobin {
    fn pick(&self, backends: &[Arc<Backend>], _ctx: &PickContext) -> Option<usize> {
        next_usable(&self.next, backends)
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

    #[test]
    fn visits_each_backend_in_turn() {
        let bs = backends(&[1, 5, 1]);
        let rr = RoundRobin::default();
        let seq: Vec<usize> = (0..6)
            .map(|_| rr.pick(&bs, &PickContext::default()).unwrap())
            .collect();
        assert_eq!(seq, vec![0, 1, 2, 0, 1, 2]);
    }
}
