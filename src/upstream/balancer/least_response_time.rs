//! `least-response-time`: the backend with the lowest moving average of response time; ties go
//! to fewer requests in flight, then round-robin.

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use super::{next_usable, rotated, Balancer, PickContext};
use crate::upstream::backend::Backend;

#[derive(Debug, Default)]
pub struct LeastResponseTime {
    next: AtomicUsize,
}

impl Balancer for LeastResponseTime {
    fn pick(&self, backends: &[Arc<Backend>], _ctx: &PickContext) -> Option<usize> {
        if backends.is_empty() {
            return None;
        }
        // Ties go to the first usable backend in rotation.
        let start = next_usable(&self.next, backends)?;
        let mut best: Option<(usize, f64, usize)> = None;
        for i in rotated(backends.len(), start) {
            let b = &backends[i];
            if !b.is_usable() {
                continue;
            }
            let (ewma, in_flight) = (b.ewma_ns(), b.in_flight());
            let better = best.is_none_or(|(_, e, f)| ewma < e || (ewma == e && in_flight < f));
            if better {
                best = Some((i, ewma, in_flight));
            }
        }
        best.map(|(i, _, _)| i)
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;
    use std::time::Duration;

    #[test]
    fn prefers_the_fastest_average() {
        let bs = backends(&[1, 1, 1]);
        bs[0].observe(Duration::from_millis(30));
        bs[1].observe(Duration::from_millis(5));
        bs[2].observe(Duration::from_millis(10));
        let c = counts(&LeastResponseTime::default(), &bs, 50);
        assert_eq!(c, vec![0, 50, 0]);
    }

    #[test]
    fn ties_go_to_fewer_in_flight() {
        let bs = backends(&[1, 1]);
        let _busy = bs[0].start();
        let c = counts(&LeastResponseTime::default(), &bs, 10);
        assert_eq!(c, vec![0, 10]);
    }
}
