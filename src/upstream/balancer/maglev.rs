//! `maglev`: Google's Maglev consistent hashing (Eisenbud et al., NSDI 2016). A lookup table
//! of prime size is filled once, when the pool is built, by letting each backend claim slots
//! along its own permutation, in turns proportional to its weight (as Envoy does); a pick is
//! one table read. A key whose backend is unusable or, with bounded loads, too busy, walks on
//! to the next slots of the table.

use std::sync::Arc;

use xxhash_rust::xxh3::xxh3_64_with_seed;

use super::{bounded, Balancer, PickContext};
use crate::upstream::backend::Backend;

/// Table sizes, all prime: the first at least 100 times the number of backends is used, so
/// that shares stay within about 1% of the weights (the paper's advice; Envoy's default size
/// is 65537).
const SIZES: [usize; 5] = [65_537, 131_071, 262_139, 524_287, 1_048_573];

/// Seeds of the two hashes of a backend's name that make its permutation.
const OFFSET_SEED: u64 = 0x6d61_676c_6576_6f66;
const SKIP_SEED: u64 = 0x6d61_676c_6576_736b;

#[derive(Debug)]
pub struct Maglev {
    /// Backend index per slot; empty when no backend has a weight.
    table: Vec<u32>,
    bounded_load: Option<f64>,
}

/// One backend's progress while the table is filled.
struct Filler {
    backend: u32,
    skip: usize,
    /// The next slot of its permutation: offset, offset + skip, offset + 2 × skip, ...
    slot: usize,
    weight: u64,
    /// The backend takes a turn in round r when r × weight reaches this.
    threshold: u64,
}

impl Maglev {
    pub fn new(backends: &[Arc<Backend>], bounded_load: Option<f64>) -> Self {
        Self {
            table: table(backends),
            bounded_load,
        }
    }
}

fn table(backends: &[Arc<Backend>]) -> Vec<u32> {
    // Sorted by name so the table does not depend on the order of the config file.
    let mut order: Vec<usize> = (0..backends.len())
        .filter(|&i| backends[i].weight() > 0)
        .collect();
    order.sort_by(|&a, &b| backends[a].name.cmp(&backends[b].name));
    let Some(max_weight) = order.iter().map(|&i| u64::from(backends[i].weight())).max() else {
        return Vec::new();
    };
    let size = SIZES
        .into_iter()
        .find(|&s| s >= 100 * order.len())
        .unwrap_or(SIZES[SIZES.len() - 1]);
    let mut fillers: Vec<Filler> = order
        .iter()
        .map(|&i| {
            let name = backends[i].name.as_bytes();
            Filler {
                backend: i as u32,
                slot: (xxh3_64_with_seed(name, OFFSET_SEED) % size as u64) as usize,
                skip: (xxh3_64_with_seed(name, SKIP_SEED) % (size as u64 - 1)) as usize + 1,
                weight: u64::from(backends[i].weight()),
                threshold: 0,
            }
        })
        .collect();
    const EMPTY: u32 = u32::MAX;
    let mut table = vec![EMPTY; size];
    let mut filled = 0;
    let mut round = 1u64;
    while filled < size {
        for f in &mut fillers {
            if filled == size {
                break;
            }
            // The heaviest backend takes a slot every round, one half as heavy every other.
            if round * f.weight < f.threshold {
                continue;
            }
            f.threshold += max_weight;
            // `skip` is below the prime `size`, so the permutation visits every slot and
            // reaches an empty one.
            loop {
                let slot = f.slot;
                f.slot = (f.slot + f.skip) % size;
                if table[slot] == EMPTY {
                    table[slot] = f.backend;
                    filled += 1;
                    break;
                }
            }
        }
        round += 1;
    }
    table
}

impl Balancer for Maglev {
    fn pick(&self, backends: &[Arc<Backend>], ctx: &PickContext) -> Option<usize> {
        let start = self.start(ctx)?;
        self.walk(backends, start)
    }

    fn pick_traced(
        &self,
        backends: &[Arc<Backend>],
        ctx: &PickContext,
        trace: &mut Vec<String>,
    ) -> Option<usize> {
        let start = self.start(ctx)?;
        let chosen = self.walk(backends, start);
        let home = self.table.get(start).map_or(0, |&i| i as usize);
        let place = format!("slot {start} of {}", self.table.len());
        trace.push(bounded::describe(backends, place, home, chosen));
        chosen
    }
}

impl Maglev {
    /// The key's slot (a random one for a request without the key).
    fn start(&self, ctx: &PickContext) -> Option<usize> {
        let size = self.table.len();
        if size == 0 {
            return None;
        }
        Some(match ctx.hash {
            Some(h) => (h % size as u64) as usize,
            None => fastrand::usize(..size),
        })
    }

    /// The first backend from slot `start` on that may take the request.
    fn walk(&self, backends: &[Arc<Backend>], start: usize) -> Option<usize> {
        let (head, tail) = self.table.split_at(start);
        let lap = tail.iter().chain(head).map(|&i| i as usize);
        bounded::first_acceptable(backends, self.bounded_load, lap)
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

    #[test]
    fn the_table_has_a_prime_size_and_only_weighted_backends() {
        let bs = backends(&[1, 0, 2]);
        let t = table(&bs);
        assert_eq!(t.len(), 65_537);
        let count = |b: u32| t.iter().filter(|&&i| i == b).count();
        assert_eq!(count(1), 0);
        // Envoy-style turns give the weights' shares to within a slot or two.
        assert!(
            count(2).abs_diff(2 * count(0)) <= 2,
            "{} {}",
            count(0),
            count(2)
        );
        let many = backends(&[1; 700]);
        assert_eq!(
            table(&many).len(),
            131_071,
            "at least 100 slots per backend"
        );
    }

    #[test]
    fn the_table_does_not_depend_on_the_order_of_backends() {
        let bs = backends(&[1, 2, 3]);
        let reversed: Vec<_> = bs.iter().rev().cloned().collect();
        let a = table(&bs);
        let b = table(&reversed);
        let name = |bs: &[Arc<Backend>], i: u32| bs[i as usize].name.clone();
        assert!(a
            .iter()
            .zip(&b)
            .all(|(&x, &y)| name(&bs, x) == name(&reversed, y)));
    }
}
