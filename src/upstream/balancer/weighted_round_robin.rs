//! `weighted-round-robin`: nginx's smooth weighted round-robin. The interleaved sequence is
//! computed once when the pool is built, so a pick is one atomic increment and no lock.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::{spill, Balancer, PickContext};
use crate::upstream::backend::Backend;

#[derive(Debug)]
pub struct WeightedRoundRobin {
    /// One full period of nginx's smooth sequence, weights reduced by their gcd.
    sequence: Vec<u32>,
    next: AtomicUsize,
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

impl WeightedRoundRobin {
    pub fn new(backends: &[Arc<Backend>]) -> Self {
        let divisor = backends.iter().fold(0, |g, b| gcd(g, b.weight())).max(1);
        let weights: Vec<i64> = backends
            .iter()
            .map(|b| i64::from(b.weight() / divisor))
            .collect();
        let total: i64 = weights.iter().sum();
        let mut current = vec![0i64; weights.len()];
        let mut sequence = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
        for _ in 0..total {
            // Each step every backend gains its weight; the richest is picked and pays the total.
            for (c, w) in current.iter_mut().zip(&weights) {
                *c += w;
            }
            let mut best = 0;
            for (i, c) in current.iter().enumerate() {
                if *c > current[best] {
                    best = i;
                }
            }
            current[best] -= total;
            sequence.push(best as u32);
        }
        Self {
            sequence,
            next: AtomicUsize::new(0),
        }
    }
}

impl Balancer for WeightedRoundRobin {
    fn pick(&self, backends: &[Arc<Backend>], _ctx: &PickContext) -> Option<usize> {
        let len = self.sequence.len();
        if len == 0 {
            return None;
        }
        let usable = |slot: usize| {
            backends
                .get(self.sequence[slot] as usize)
                .is_some_and(|b| b.is_usable())
        };
        let turn = self.next.fetch_add(1, Ordering::Relaxed);
        // An unusable backend's slot goes to another usable slot of the sequence, a different
        // one each cycle, so the others share its turns in their weights' proportions.
        let slot = if usable(turn % len) {
            turn % len
        } else {
            spill(turn, len, usable)?
        };
        Some(self.sequence[slot] as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

    fn longest_run(seq: &[usize]) -> usize {
        let mut best = 0;
        let mut run = 0;
        for (i, x) in seq.iter().enumerate() {
            run = if i > 0 && seq[i - 1] == *x {
                run + 1
            } else {
                1
            };
            best = best.max(run);
        }
        best
    }

    #[test]
    fn weights_three_to_one_give_exact_shares_without_bursts() {
        let bs = backends(&[3, 1]);
        let wrr = WeightedRoundRobin::new(&bs);
        let seq: Vec<usize> = (0..400)
            .map(|_| wrr.pick(&bs, &PickContext::default()).unwrap())
            .collect();
        assert_eq!(seq.iter().filter(|&&i| i == 0).count(), 300);
        assert_eq!(seq.iter().filter(|&&i| i == 1).count(), 100);
        assert!(longest_run(&seq) <= 3, "run of {}", longest_run(&seq));
    }

    #[test]
    fn smooth_interleaving_matches_nginx() {
        // nginx's documented example: weights 5, 1, 1 give a a b a c a a.
        let bs = backends(&[5, 1, 1]);
        let wrr = WeightedRoundRobin::new(&bs);
        let seq: Vec<usize> = (0..7)
            .map(|_| wrr.pick(&bs, &PickContext::default()).unwrap())
            .collect();
        assert_eq!(seq, vec![0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn large_weights_are_reduced_by_their_gcd() {
        let bs = backends(&[300, 100]);
        let wrr = WeightedRoundRobin::new(&bs);
        assert_eq!(wrr.sequence.len(), 4);
    }
}
