//! How a pool chooses a backend around its balancer: primaries first and backups only when no
//! primary takes the request (each tier with its own balancer), and slow start.
//!
//! Slow start is an admission step in front of every balancer, so all of them honour it the
//! same way: before a pick, each usable backend still ramping up (ratio r = time since it came
//! back ÷ `slow_start`) is admitted with probability r; the others are masked by a stand-in
//! that is never usable, and the balancer picks once among the rest, moving on to the
//! candidate it would take if the masked backend were down (the next in turn, the next slot
//! of a hash table, a draw among the others). A backend thus gets r times the share its
//! balancer would give it. When every usable primary is masked the backups are tried, then
//! the primaries without admission, so a pool that came back whole is never refused.

use std::sync::Arc;
use std::time::Duration;

use super::backend::{now_ns, Backend};
use super::balancer::{self, Balancer, PickContext};
use crate::config::BalancerKind;

/// Primaries or backups: the backends, their indexes in the pool, and their balancer.
#[derive(Debug)]
struct Tier {
    backends: Vec<Arc<Backend>>,
    index: Vec<usize>,
    balancer: Box<dyn Balancer>,
}

#[derive(Debug)]
pub(super) struct Selector {
    primaries: Tier,
    backups: Tier,
    slow_start: Option<Duration>,
    /// Stands in for backends slow start holds back (weight 0, so never usable).
    stand_in: Arc<Backend>,
}

impl Tier {
    fn new(
        all: &[Arc<Backend>],
        backup: bool,
        kind: BalancerKind,
        bounded_load: Option<f64>,
    ) -> Self {
        let index: Vec<usize> = (0..all.len())
            .filter(|&i| all[i].backup == backup)
            .collect();
        let backends: Vec<Arc<Backend>> = index.iter().map(|&i| all[i].clone()).collect();
        let balancer = balancer::build(kind, &backends, bounded_load);
        Self {
            backends,
            index,
            balancer,
        }
    }

    /// A pick among this tier's backends, as an index into the pool.
    fn pick(
        &self,
        backends: &[Arc<Backend>],
        ctx: &PickContext,
        trace: &mut Option<&mut Vec<String>>,
    ) -> Option<usize> {
        let i = match trace {
            None => self.balancer.pick(backends, ctx)?,
            Some(t) => self.balancer.pick_traced(backends, ctx, t)?,
        };
        self.index.get(i).copied()
    }
}

impl Selector {
    pub(super) fn new(
        backends: &[Arc<Backend>],
        kind: BalancerKind,
        bounded_load: Option<f64>,
        slow_start: Option<Duration>,
    ) -> Self {
        let unspecified = std::net::SocketAddr::from(([0, 0, 0, 0], 0));
        Self {
            primaries: Tier::new(backends, false, kind, bounded_load),
            backups: Tier::new(backends, true, kind, bounded_load),
            slow_start,
            stand_in: Arc::new(Backend::new("slow-start".into(), unspecified, 0)),
        }
    }

    /// The index (in the pool) of the backend for the next request, or `None` when no backend
    /// is usable.
    pub(super) fn pick(&self, ctx: &PickContext) -> Option<usize> {
        self.pick_traced(ctx, None)
    }

    /// `pick`, noting in `trace` (when given) which tier and what slow start held back.
    pub(super) fn pick_traced(
        &self,
        ctx: &PickContext,
        mut trace: Option<&mut Vec<String>>,
    ) -> Option<usize> {
        let Some(window) = self.slow_start else {
            if let Some(i) = self
                .primaries
                .pick(&self.primaries.backends, ctx, &mut trace)
            {
                return Some(i);
            }
            note(&mut trace, "no primary usable: backups");
            return self.backups.pick(&self.backups.backends, ctx, &mut trace);
        };
        self.pick_at(ctx, window, now_ns(), trace)
    }

    pub(super) fn pick_at(
        &self,
        ctx: &PickContext,
        window: Duration,
        now: u64,
        mut trace: Option<&mut Vec<String>>,
    ) -> Option<usize> {
        let admitted = |t: &Tier, trace: &mut Option<&mut Vec<String>>| match self.admitted(
            &t.backends,
            window,
            now,
        ) {
            None => t.pick(&t.backends, ctx, trace),
            Some(masked) => {
                if let Some(tr) = trace {
                    let held: Vec<&str> = (t.backends.iter().zip(&masked))
                        .filter(|(b, m)| !Arc::ptr_eq(b, m))
                        .map(|(b, _)| b.name.as_str())
                        .collect();
                    tr.push(format!("slow start held back {}", held.join(",")));
                }
                t.pick(&masked, ctx, trace)
            }
        };
        if let Some(i) = admitted(&self.primaries, &mut trace) {
            return Some(i);
        }
        if let Some(i) = admitted(&self.backups, &mut trace) {
            note(&mut trace, "no primary admitted: backups");
            return Some(i);
        }
        note(
            &mut trace,
            "nothing admitted by slow start: picking without it",
        );
        (self
            .primaries
            .pick(&self.primaries.backends, ctx, &mut trace))
        .or_else(|| self.backups.pick(&self.backups.backends, ctx, &mut trace))
    }

    /// The tier's backends with those slow start holds back this time masked, or `None`
    /// when it holds none back (the common case: no allocation).
    fn admitted(
        &self,
        backends: &[Arc<Backend>],
        window: Duration,
        now: u64,
    ) -> Option<Vec<Arc<Backend>>> {
        let mut masked: Option<Vec<Arc<Backend>>> = None;
        for (i, b) in backends.iter().enumerate() {
            let r = b.slow_start_ratio(window, now);
            if r < 1.0 && b.is_usable() && fastrand::f64() >= r {
                masked.get_or_insert_with(|| backends.to_vec())[i] = self.stand_in.clone();
            }
        }
        masked
    }

    /// Whether any primary backend is usable (and so backups take no new requests).
    pub(super) fn primary_usable(&self) -> bool {
        self.primaries.backends.iter().any(|b| b.is_usable())
    }
}

fn note(trace: &mut Option<&mut Vec<String>>, what: &str) {
    if let Some(t) = trace {
        t.push(what.to_owned());
    }
}

#[cfg(test)]
#[path = "select_tests.rs"]
mod tests;
