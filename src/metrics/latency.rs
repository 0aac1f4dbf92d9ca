//! A lock-free latency histogram: log-spaced buckets of atomics that the data path fills
//! with one atomic add, exported as a Prometheus histogram and read as percentiles.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};

/// Upper bounds of the buckets in seconds: 100 µs doubling to about 52 s (20 buckets), and
/// +Inf. Doubling keeps a percentile read from the buckets within a factor of two, which is
/// what a dashboard and an alert need; Prometheus interpolates within a bucket.
const BOUNDS: [f64; 20] = {
    let mut b = [0.0; 20];
    let mut i = 0;
    let mut v = 0.0001;
    while i < 20 {
        b[i] = v;
        v *= 2.0;
        i += 1;
    }
    b
};

/// Counts of observations per bucket, their sum and count. Clones share the counts.
#[derive(Debug, Clone, Default)]
pub struct Latency(Arc<Inner>);

#[derive(Debug, Default)]
struct Inner {
    /// Non-cumulative: `buckets[i]` counts observations in (BOUNDS[i-1], BOUNDS[i]]; the last
    /// one counts those above every bound.
    buckets: [AtomicU64; 21],
    sum_ns: AtomicU64,
    count: AtomicU64,
}

/// A point-in-time copy of a histogram, for differences between two reads.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LatencySnapshot {
    pub buckets: [u64; 21],
    pub sum_ns: u64,
    pub count: u64,
}

impl Latency {
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = BOUNDS.partition_point(|&b| b < secs);
        if let Some(bucket) = self.0.buckets.get(i) {
            bucket.fetch_add(1, Ordering::Relaxed);
        }
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.0.sum_ns.fetch_add(ns, Ordering::Relaxed);
        self.0.count.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> LatencySnapshot {
        let mut s = LatencySnapshot {
            sum_ns: self.0.sum_ns.load(Ordering::Relaxed),
            count: self.0.count.load(Ordering::Relaxed),
            ..Default::default()
        };
        for (out, b) in s.buckets.iter_mut().zip(&self.0.buckets) {
            *out = b.load(Ordering::Relaxed);
        }
        s
    }
}

impl LatencySnapshot {
    /// The observations since `earlier` (a snapshot of the same histogram).
    pub fn since(&self, earlier: &Self) -> Self {
        let mut d = Self {
            sum_ns: self.sum_ns.saturating_sub(earlier.sum_ns),
            count: self.count.saturating_sub(earlier.count),
            ..Default::default()
        };
        for ((out, now), then) in d
            .buckets
            .iter_mut()
            .zip(&self.buckets)
            .zip(&earlier.buckets)
        {
            *out = now.saturating_sub(*then);
        }
        d
    }

    /// The `q` quantile (0 to 1) in seconds, interpolated linearly within its bucket; `None`
    /// without observations. Above the last bound it answers the last bound.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total: u64 = self.buckets.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = (q.clamp(0.0, 1.0) * total as f64).max(1.0);
        let mut seen = 0u64;
        for (i, &n) in self.buckets.iter().enumerate() {
            if n == 0 {
                continue;
            }
            if (seen + n) as f64 >= rank {
                let Some(&hi) = BOUNDS.get(i) else {
                    return BOUNDS.last().copied();
                };
                let lo = if i == 0 { 0.0 } else { BOUNDS[i - 1] };
                let within = (rank - seen as f64) / n as f64;
                return Some(lo + (hi - lo) * within);
            }
            seen += n;
        }
        BOUNDS.last().copied()
    }

    /// `(upper bound, count in this bucket)` pairs, +Inf last: what prometheus-client's
    /// encoder takes (it writes them cumulated, as Prometheus wants).
    pub fn per_bucket(&self) -> Vec<(f64, u64)> {
        (self.buckets.iter().enumerate())
            .map(|(i, &n)| (BOUNDS.get(i).copied().unwrap_or(f64::INFINITY), n))
            .collect()
    }
}

impl TypedMetric for Latency {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Latency {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let s = self.snapshot();
        let sum = s.sum_ns as f64 / 1e9;
        encoder.encode_histogram::<NoLabelSet>(sum, s.count, &s.per_bucket(), None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_fall_in_the_right_buckets() {
        let h = Latency::default();
        for _ in 0..90 {
            h.observe(Duration::from_micros(300)); // (200 µs, 400 µs]
        }
        for _ in 0..10 {
            h.observe(Duration::from_millis(30)); // (25.6 ms, 51.2 ms]
        }
        let s = h.snapshot();
        assert_eq!(s.count, 100);
        let p50 = s.quantile(0.5).unwrap();
        assert!((0.0002..=0.0004).contains(&p50), "p50 {p50}");
        let p99 = s.quantile(0.99).unwrap();
        assert!((0.0256..=0.0512).contains(&p99), "p99 {p99}");
        assert_eq!(s.per_bucket().iter().map(|b| b.1).sum::<u64>(), 100);
        assert_eq!(s.per_bucket().last(), Some(&(f64::INFINITY, 0)));
    }

    #[test]
    fn differences_count_only_the_new_observations() {
        let h = Latency::default();
        h.observe(Duration::from_millis(1));
        let before = h.snapshot();
        assert_eq!(h.snapshot().since(&before).quantile(0.5), None);
        h.observe(Duration::from_secs(100));
        let d = h.snapshot().since(&before);
        assert_eq!(d.count, 1);
        assert_eq!(d.buckets[20], 1, "above every bound");
        assert_eq!(d.quantile(0.5), BOUNDS.last().copied());
    }
}
