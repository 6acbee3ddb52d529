//! A latency histogram that the status page and `ctl top` can read back,
//! exported to Prometheus like prometheus-client's own. prometheus-client's
//! `Histogram` shows its buckets only through a text encoder and takes a
//! mutex per observation; this one is a fixed array of atomic counters, so
//! reading ten thousand backends' buckets a second costs no formatting, and
//! observing takes no lock.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};

/// Upper bounds of the buckets, in seconds: 100 µs doubling to about 13 s,
/// then the unbounded last one.
pub const BOUNDS: [f64; 19] = {
    let mut bounds = [f64::INFINITY; 19];
    let mut i = 0;
    let mut bound = 0.0001;
    while i < 18 {
        bounds[i] = bound;
        bound *= 2.0;
        i += 1;
    }
    bounds
};

/// Request latency or connection lifetime, in seconds. Clones share the
/// counts.
#[derive(Debug, Clone, Default)]
pub struct LatencyHistogram {
    inner: Arc<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    buckets: [AtomicU64; BOUNDS.len()],
    /// Sum of observations in nanoseconds (about 584 years fit).
    sum_nanos: AtomicU64,
}

impl LatencyHistogram {
    /// Counts one observation of `seconds`.
    pub fn observe(&self, seconds: f64) {
        let bucket = BOUNDS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(BOUNDS.len() - 1);
        self.inner.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        let nanos = (seconds.max(0.0) * 1e9) as u64;
        self.inner.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Cumulative counts per bound of [`BOUNDS`], as Prometheus reports
    /// them.
    pub fn cumulative(&self) -> Vec<u64> {
        let mut total = 0;
        self.inner
            .buckets
            .iter()
            .map(|b| {
                total += b.load(Ordering::Relaxed);
                total
            })
            .collect()
    }
}

impl TypedMetric for LatencyHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for LatencyHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let buckets: Vec<(f64, u64)> = BOUNDS
            .iter()
            .zip(&self.inner.buckets)
            .map(|(bound, count)| (*bound, count.load(Ordering::Relaxed)))
            .collect();
        let count = buckets.iter().map(|(_, c)| c).sum();
        let sum = self.inner.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

/// The latency at quantile `q` (0–1) of what was counted between two
/// cumulative samples, as the upper bound of the bucket it falls in, in
/// milliseconds (`f64::MAX` for the unbounded bucket); `None` when nothing
/// was counted.
pub fn quantile_ms(before: &[u64], after: &[u64], q: f64) -> Option<f64> {
    let counted: Vec<u64> = after
        .iter()
        .enumerate()
        .map(|(i, a)| a.saturating_sub(before.get(i).copied().unwrap_or(0)))
        .collect();
    let total = *counted.last()?;
    if total == 0 {
        return None;
    }
    let rank = (q * total as f64).ceil().max(1.0) as u64;
    let bucket = counted.iter().position(|c| *c >= rank)?;
    let bound = BOUNDS.get(bucket).copied().unwrap_or(f64::INFINITY);
    Some(if bound.is_finite() {
        bound * 1000.0
    } else {
        f64::MAX
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::registry::Registry;

    #[test]
    fn observations_land_in_the_first_bucket_that_holds_them() {
        let histogram = LatencyHistogram::default();
        histogram.observe(0.00005); // ≤ 0.1 ms
        histogram.observe(0.0003); // ≤ 0.4 ms
        histogram.observe(100.0); // beyond 13 s
        let counts = histogram.cumulative();
        assert_eq!(counts[0], 1);
        assert_eq!(counts[1], 1);
        assert_eq!(counts[2], 2);
        assert_eq!(counts[17], 2);
        assert_eq!(counts[18], 3);
    }

    #[test]
    fn prometheus_sees_the_same_buckets_as_prometheus_clients_histogram() {
        let ours = LatencyHistogram::default();
        let theirs = prometheus_client::metrics::histogram::Histogram::new(
            prometheus_client::metrics::histogram::exponential_buckets(0.0001, 2.0, 18),
        );
        for seconds in [0.00001, 0.0001, 0.00015, 0.003, 0.5, 2.0, 40.0] {
            ours.observe(seconds);
            theirs.observe(seconds);
        }
        let text = |name: &str, metric: Box<dyn FnOnce(&mut Registry)>| {
            let mut registry = Registry::default();
            metric(&mut registry);
            let mut out = String::new();
            prometheus_client::encoding::text::encode(&mut out, &registry).expect("encode");
            out.lines()
                .filter(|l| l.contains("_bucket") || l.contains("_count"))
                .map(|l| l.replace(name, "h"))
                .collect::<Vec<_>>()
        };
        let a = text("ours", Box::new(move |r| r.register("ours", "", ours)));
        let b = text(
            "theirs",
            Box::new(move |r| r.register("theirs", "", theirs)),
        );
        assert_eq!(a, b);
        assert_eq!(a.len(), 20, "{a:?}");
    }

    #[test]
    fn quantiles_come_from_what_was_counted_between_samples() {
        let histogram = LatencyHistogram::default();
        for _ in 0..100 {
            histogram.observe(0.00005);
        }
        let before = histogram.cumulative();
        for _ in 0..10 {
            histogram.observe(0.003); // ≤ 3.2 ms
        }
        let after = histogram.cumulative();
        let near = |v: Option<f64>, ms: f64| v.is_some_and(|v| (v - ms).abs() < 1e-9);
        assert!(near(quantile_ms(&before, &after, 0.5), 3.2));
        assert_eq!(quantile_ms(&after, &after, 0.5), None);
        assert!(near(quantile_ms(&[], &after, 0.5), 0.1));
        histogram.observe(60.0);
        assert_eq!(
            quantile_ms(&after, &histogram.cumulative(), 0.99),
            Some(f64::MAX)
        );
    }
}
