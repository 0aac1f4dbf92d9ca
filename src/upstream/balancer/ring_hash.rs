//! `ring-hash`: Ketama-style consistent hashing. Each backend puts points on a ring of 2^64
//! hash values, 160 per unit of weight (weights reduced by their gcd), once, when the pool is
//! built; a key goes to the owner of the first point at or after its hash (a binary search),
//! walking on clockwise past backends that are unusable or, with bounded loads, too busy.

use std::sync::Arc;

use xxhash_rust::xxh3::xxh3_64_with_seed;

use super::{bounded, Balancer, PickContext};
use crate::upstream::backend::Backend;

/// Points per unit of weight, as libketama (40 MD5 hashes of 4 points each).
const POINTS_PER_WEIGHT: u64 = 160;
/// Fewer points per unit of weight are used past this many points (12 bytes each), so that
/// large coprime weights cannot make the ring huge.
const MAX_POINTS: u64 = 1 << 18;

#[derive(Debug)]
pub struct RingHash {
    /// Point hashes, ascending.
    points: Vec<u64>,
    /// The backend index of each point.
    owners: Vec<u32>,
    bounded_load: Option<f64>,
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

impl RingHash {
    pub fn new(backends: &[Arc<Backend>], bounded_load: Option<f64>) -> Self {
        let weights = backends.iter().map(|b| u64::from(b.weight()));
        let divisor = weights.clone().fold(0, gcd).max(1);
        let units: u64 = weights.map(|w| w / divisor).sum();
        let per_unit = (MAX_POINTS / units.max(1)).clamp(1, POINTS_PER_WEIGHT);
        // A point is the hash of the backend's name seeded with the point's number, so a
        // backend's points do not depend on the other backends or the order of the file.
        let mut ring: Vec<(u64, u32)> = backends
            .iter()
            .enumerate()
            .flat_map(|(i, b)| {
                let name = b.name.as_bytes();
                let count = u64::from(b.weight()) / divisor * per_unit;
                (0..count).map(move |n| (xxh3_64_with_seed(name, n), i as u32))
            })
            .collect();
        // Ties between backends (2^-64 per pair of points) go by name, for the same reason.
        ring.sort_unstable_by(|a, b| {
            let name = |p: &(u64, u32)| &backends[p.1 as usize].name;
            a.0.cmp(&b.0).then_with(|| name(a).cmp(name(b)))
        });
        Self {
            points: ring.iter().map(|p| p.0).collect(),
            owners: ring.iter().map(|p| p.1).collect(),
            bounded_load,
        }
    }
}

impl Balancer for RingHash {
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
        let home = self.owners.get(start).map_or(0, |&i| i as usize);
        let place = format!("ring point {start} of {}", self.points.len());
        trace.push(bounded::describe(backends, place, home, chosen));
        chosen
    }
}

impl RingHash {
    /// The key's place on the ring: the first point at or after its hash, wrapping past the
    /// last (a random point for a request without the key).
    fn start(&self, ctx: &PickContext) -> Option<usize> {
        let len = self.points.len();
        if len == 0 {
            return None;
        }
        Some(match ctx.hash {
            Some(h) => self.points.partition_point(|&p| p < h) % len,
            None => fastrand::usize(..len),
        })
    }

    /// The first backend clockwise from point `start` that may take the request.
    fn walk(&self, backends: &[Arc<Backend>], start: usize) -> Option<usize> {
        let (before, after) = self.owners.split_at(start);
        let clockwise = after.iter().chain(before).map(|&i| i as usize);
        bounded::first_acceptable(backends, self.bounded_load, clockwise)
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

    #[test]
    fn points_follow_reduced_weights() {
        let r = RingHash::new(&backends(&[300, 0, 100]), None);
        let count = |b: u32| r.owners.iter().filter(|&&o| o == b).count();
        assert_eq!((count(0), count(1), count(2)), (480, 0, 160));
        assert!(r.points.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn large_coprime_weights_are_capped() {
        let r = RingHash::new(&backends(&[1000, 999, 998]), None);
        assert!(r.points.len() as u64 <= MAX_POINTS, "{}", r.points.len());
        assert!(r.points.len() > 200_000, "{}", r.points.len());
    }

    #[test]
    fn a_key_goes_to_the_next_point_clockwise() {
        let bs = backends(&[1, 1]);
        let r = RingHash::new(&bs, None);
        let at = |h| r.pick(&bs, &PickContext { hash: Some(h) });
        assert_eq!(at(r.points[5]), Some(r.owners[5] as usize));
        assert_eq!(at(r.points[5] + 1), Some(r.owners[6] as usize));
        assert_eq!(at(u64::MAX), Some(r.owners[0] as usize), "wraps around");
    }
}
