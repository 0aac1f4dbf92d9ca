//! `random`: a usable backend drawn at random in proportion to its weight.

use std::sync::Arc;

use super::{Balancer, PickContext};
use crate::upstream::backend::Backend;

#[derive(Debug, Default)]
pub struct Random;

impl Balancer for Random {
    fn pick(&self, backends: &[Arc<Backend>], _ctx: &PickContext) -> Option<usize> {
        let total: u64 = backends
            .iter()
            .filter(|b| b.is_usable())
            .map(|b| u64::from(b.weight()))
            .sum();
        if total == 0 {
            return None;
        }
        let mut ticket = fastrand::u64(..total);
        for (i, b) in backends.iter().enumerate() {
            if !b.is_usable() {
                continue;
            }
            let w = u64::from(b.weight());
            if ticket < w {
                return Some(i);
            }
            ticket -= w;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

    #[test]
    fn shares_follow_weights() {
        fastrand::seed(7);
        let bs = backends(&[3, 1]);
        let c = counts(&Random, &bs, 40_000);
        // Expected 30,000 : 10,000; six standard deviations (~520) of slack.
        assert!((29_400..=30_600).contains(&c[0]), "{c:?}");
    }
}
