//! `performance`: power of two random choices, scored by peak-EWMA latency times requests in
//! flight (per unit of weight), as linkerd and Finagle balance.

use std::sync::Arc;

use super::{Balancer, PickContext};
use crate::upstream::backend::Backend;

#[derive(Debug, Default)]
pub struct Performance;

/// A usable backend at random (other than `skip`).
///
/// Random draws first, so every usable backend is equally likely (a scan from a random start
/// would favour the backend after an unusable one); a scan only when the draws all miss.
fn random_usable(backends: &[Arc<Backend>], skip: Option<usize>) -> Option<usize> {
    let len = backends.len();
    let fits = |i: usize| Some(i) != skip && backends[i].is_usable();
    if let Some(i) = (0..2 * len)
        .map(|_| fastrand::usize(..len))
        .find(|&i| fits(i))
    {
        return Some(i);
    }
    let start = fastrand::usize(..len);
    (0..len).map(|i| (start + i) % len).find(|&i| fits(i))
}

/// Lower is better. Unsampled backends score by load alone, so they are tried.
pub fn score(b: &Backend) -> f64 {
    let latency = b.peak_ewma_ns().max(1.0);
    latency * (b.in_flight() as f64 + 1.0) / f64::from(b.weight().max(1))
}

impl Performance {
    fn choose(backends: &[Arc<Backend>], trace: Option<&mut Vec<String>>) -> Option<usize> {
        if backends.is_empty() {
            return None;
        }
        let a = random_usable(backends, None)?;
        let Some(b) = random_usable(backends, Some(a)) else {
            if let Some(trace) = trace {
                trace.push(format!("only {} usable", backends[a].name));
            }
            return Some(a);
        };
        let (sa, sb) = (score(&backends[a]), score(&backends[b]));
        if let Some(trace) = trace {
            let describe = |x: &Backend, s: f64| {
                format!(
                    "{} peak_ewma={:.3}ms in_flight={} weight={} score={:.3}",
                    x.name,
                    x.peak_ewma_ns() / 1e6,
                    x.in_flight(),
                    x.weight(),
                    s / 1e6
                )
            };
            trace.push(format!(
                "two random choices: {} vs {}; lower score wins",
                describe(&backends[a], sa),
                describe(&backends[b], sb)
            ));
        }
        Some(if sb < sa { b } else { a })
    }
}

impl Balancer for Performance {
    fn pick(&self, backends: &[Arc<Backend>], _ctx: &PickContext) -> Option<usize> {
        Self::choose(backends, None)
    }

    fn pick_traced(
        &self,
        backends: &[Arc<Backend>],
        _ctx: &PickContext,
        trace: &mut Vec<String>,
    ) -> Option<usize> {
        Self::choose(backends, Some(trace))
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;
    use std::time::Duration;

    #[test]
    fn two_backends_always_compare_both() {
        let bs = backends(&[1, 1]);
        bs[0].observe(Duration::from_millis(20));
        bs[1].observe(Duration::from_millis(2));
        let c = counts(&Performance, &bs, 100);
        assert_eq!(c, vec![0, 100]);
    }

    #[test]
    fn load_outweighs_latency() {
        let bs = backends(&[1, 1]);
        bs[0].observe(Duration::from_millis(2));
        bs[1].observe(Duration::from_millis(4));
        let _held: Vec<_> = (0..5).map(|_| bs[0].start()).collect();
        // 2ms x 6 = 12 > 4ms x 1.
        assert_eq!(Performance.pick(&bs, &PickContext::default()), Some(1));
    }

    #[test]
    fn the_worst_of_many_is_never_picked() {
        let bs = backends(&[1, 1, 1, 1]);
        for (i, b) in bs.iter().enumerate() {
            b.observe(Duration::from_millis(1 + 10 * i as u64));
        }
        let c = counts(&Performance, &bs, 2000);
        assert_eq!(c[3], 0, "{c:?}");
        assert!(c[0] > c[1] && c[1] > c[2], "{c:?}");
    }
}
