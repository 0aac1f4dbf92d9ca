//! What `maglev` and `ring-hash` share: the walk from a key's place in the table or on the
//! ring to the first backend that may take the request, with consistent hashing with bounded
//! loads (Mirrokni, Thorup and Zadimoghaddam, 2018) when a factor is set.

use std::sync::Arc;

use crate::upstream::backend::Backend;

/// The first usable backend among `candidates` (backend indexes in table or ring order,
/// starting at the key's place, one full lap), or `None` when no backend is usable.
///
/// With a `bounded_load` factor c, a backend takes the request only if it then has at most
/// ceil(c × (requests in flight on usable backends + 1) × its weight ÷ usable weight) in
/// flight; otherwise the walk goes on. Since c > 1, some backend is always under its bound;
/// should counters move under our feet and none be found, the first usable candidate wins.
pub(super) fn first_acceptable(
    backends: &[Arc<Backend>],
    bounded_load: Option<f64>,
    candidates: impl Iterator<Item = usize>,
) -> Option<usize> {
    let mut usable = candidates.filter(|&i| backends.get(i).is_some_and(|b| b.is_usable()));
    let Some(c) = bounded_load else {
        // Without the pre-check a pool whose backends are all down would walk the whole
        // table on every request.
        return if backends.iter().any(|b| b.is_usable()) {
            usable.next()
        } else {
            None
        };
    };
    let (in_flight, weight) = backends
        .iter()
        .filter(|b| b.is_usable())
        .fold((0u64, 0u64), |(n, w), b| {
            (n + b.in_flight() as u64, w + u64::from(b.weight()))
        });
    if weight == 0 {
        return None;
    }
    let per_weight = c * (in_flight + 1) as f64 / weight as f64;
    let first = usable.next()?;
    std::iter::once(first)
        .chain(usable)
        .find(|&i| {
            let b = &backends[i];
            b.in_flight() as f64 + 1.0 <= (per_weight * f64::from(b.weight())).ceil()
        })
        .or(Some(first))
}

/// Says where a key landed (`place`), which backend owns that place (`home`) and, when the
/// walk went past it, why: for the decision header.
pub(super) fn describe(
    backends: &[Arc<Backend>],
    place: String,
    home: usize,
    chosen: Option<usize>,
) -> String {
    let name = |i: usize| backends.get(i).map_or("?", |b| b.name.as_str());
    match chosen {
        Some(c) if c == home => format!("{place} belongs to {}", name(home)),
        Some(c) => {
            let why = match backends.get(home) {
                Some(b) if !b.is_usable() => "cannot take new requests".to_owned(),
                Some(b) => format!("is over its bounded load ({} in flight)", b.in_flight()),
                None => "is unknown".to_owned(),
            };
            format!(
                "{place} belongs to {}, which {why}: walked on to {}",
                name(home),
                name(c)
            )
        }
        None => format!("{place} belongs to {}; no backend can take it", name(home)),
    }
}

/// The bound `first_acceptable` keeps, for tests: the most requests in flight `b` may have
/// when `total` are in flight on the usable backends.
#[cfg(test)]
pub(super) fn bound(backends: &[Arc<Backend>], b: &Backend, c: f64, total: usize) -> usize {
    let weight: u64 = backends
        .iter()
        .filter(|b| b.is_usable())
        .map(|b| u64::from(b.weight()))
        .sum();
    (c * total as f64 * f64::from(b.weight()) / weight as f64).ceil() as usize
}
