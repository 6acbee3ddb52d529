//! A node's traffic figures for `raftlb ctl top` and the status page: per
//! frontend and per backend, read from the same live counters `/metrics`
//! shows. Counters are cumulative since the node started; two samples
//! give rates and latency percentiles.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::config::Protocol;
use crate::routing::RoutingTable;

/// One node's figures now.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Traffic {
    /// By frontend name.
    pub frontends: Vec<FrontendTraffic>,
    /// By pool and backend address.
    pub backends: Vec<BackendTraffic>,
}

/// One frontend's figures.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FrontendTraffic {
    /// Frontend name.
    pub name: String,
    /// HTTP requests received, or TCP connections accepted.
    pub requests: u64,
    /// 5xx responses sent.
    pub errors: u64,
    /// Client connections open now.
    pub open: i64,
    /// Latency histogram: upper bounds in seconds (the last, unbounded,
    /// is `f64::MAX`) and cumulative counts per bound.
    pub latency_bounds: Vec<f64>,
    /// See `latency_bounds`.
    pub latency_counts: Vec<u64>,
}

/// One backend's figures.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BackendTraffic {
    /// Pool name.
    pub pool: String,
    /// Backend address.
    pub address: String,
    /// Requests (HTTP) or connections (TCP) sent.
    pub requests: u64,
    /// Failed connects or exchanges.
    pub failures: u64,
    /// In flight now.
    pub active: i64,
}

/// The figures now, read from the live counters of the current routing
/// table (so a frontend or backend removed from the configuration is gone
/// at once). Cheap at any size: no text is written or parsed but each
/// frontend's latency histogram.
pub fn from_table(table: &RoutingTable) -> Traffic {
    let frontends = table
        .frontends
        .iter()
        .map(|f| {
            let (latency_bounds, latency_counts) = histogram_buckets(&f.stats.duration);
            FrontendTraffic {
                name: f.spec.name.clone(),
                requests: match f.spec.protocol {
                    Protocol::Http => f.stats.requests.get(),
                    Protocol::Tcp => f.stats.connections.get(),
                },
                errors: f.stats.responses[4].get(),
                open: f.stats.active.get(),
                latency_bounds,
                latency_counts,
            }
        })
        .collect();
    let backends = table
        .pools
        .iter()
        .flat_map(|pool| {
            pool.backends.iter().map(|b| BackendTraffic {
                pool: pool.name.clone(),
                address: b.address.to_string(),
                requests: b.runtime.requests.get(),
                failures: b.runtime.failures.get(),
                active: b.runtime.active.get(),
            })
        })
        .collect();
    Traffic {
        frontends,
        backends,
    }
}

/// A histogram's upper bounds (the unbounded last one as `f64::MAX`:
/// JSON, the peer port's encoding, has no infinity) and cumulative counts.
/// prometheus-client shows its buckets only through its text encoder.
fn histogram_buckets(histogram: &Histogram) -> (Vec<f64>, Vec<u64>) {
    let mut registry = Registry::default();
    registry.register("h", "", histogram.clone());
    let mut text = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut text, &registry);
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("h_bucket{le=\"")?;
            let (bound, count) = rest.split_once("\"} ")?;
            let bound: f64 = bound.parse().unwrap_or(f64::MAX);
            Some((bound.min(f64::MAX), count.trim().parse::<u64>().ok()?))
        })
        .unzip()
}

/// A counter's rate between two samples `seconds` apart (a counter that
/// went back, a restarted node's, counts from zero).
pub fn per_second(before: u64, after: u64, seconds: f64) -> f64 {
    after.saturating_sub(before) as f64 / seconds.max(0.001)
}

/// The latency at quantile `q` (0–1) of what a histogram counted between
/// two cumulative samples, as the upper bound of the bucket it falls in
/// (in seconds); `None` when nothing was counted.
pub fn latency_quantile(bounds: &[f64], before: &[u64], after: &[u64], q: f64) -> Option<f64> {
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
    counted.iter().position(|c| *c >= rank).map(|i| bounds[i])
}

/// One frontend's figures over one interval.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rates {
    /// End of the interval, ms since the Unix epoch.
    pub at_ms: u64,
    /// Requests (or TCP connections) per second.
    pub requests_per_s: f64,
    /// 5xx responses per second.
    pub errors_per_s: f64,
    /// Median latency bucket, ms (none counted: absent).
    pub p50_ms: Option<f64>,
    /// 99th percentile latency bucket, ms.
    pub p99_ms: Option<f64>,
    /// Client connections open at the end.
    pub open: i64,
}

impl Rates {
    /// `after`'s figures since `before`, over `seconds`.
    pub fn between(
        before: &FrontendTraffic,
        after: &FrontendTraffic,
        seconds: f64,
        at_ms: u64,
    ) -> Rates {
        let quantile = |q| {
            latency_quantile(
                &after.latency_bounds,
                &before.latency_counts,
                &after.latency_counts,
                q,
            )
            .map(|s| if s >= f64::MAX { s } else { s * 1000.0 })
        };
        Rates {
            at_ms,
            requests_per_s: per_second(before.requests, after.requests, seconds),
            errors_per_s: per_second(before.errors, after.errors, seconds),
            p50_ms: quantile(0.5),
            p99_ms: quantile(0.99),
            open: after.open,
        }
    }
}

/// One backend's figures over the last interval.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BackendRates {
    /// Pool name.
    pub pool: String,
    /// Backend address.
    pub address: String,
    /// Requests (or TCP connections) per second.
    pub requests_per_s: f64,
    /// Failed connects or exchanges per second.
    pub failures_per_s: f64,
}

/// The last minutes of one node's traffic: a [`Rates`] point per frontend
/// per second, in a ring of fixed size, kept in memory for the status page;
/// for backends (there may be thousands) only the last second's.
#[derive(Default)]
pub struct TrafficHistory {
    inner: Mutex<HistoryInner>,
}

#[derive(Default)]
struct HistoryInner {
    last: Option<(Instant, Traffic)>,
    series: BTreeMap<String, VecDeque<Rates>>,
    backends: Vec<BackendRates>,
}

impl TrafficHistory {
    /// Points kept per frontend: five minutes at one a second.
    pub const POINTS: usize = 300;

    /// Adds the interval since the last sample; frontends no longer in
    /// `now` are dropped.
    pub fn record(&self, now: Traffic, at: Instant, at_ms: u64) {
        // Worked out without the lock (the page reads under it); only this
        // sampler writes.
        let previous = self
            .inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .last
            .take();
        let mut points = Vec::new();
        let mut backends = Vec::new();
        if let Some((then, before)) = &previous {
            let seconds = at.duration_since(*then).as_secs_f64().max(0.001);
            let earlier: HashMap<&str, &FrontendTraffic> = before
                .frontends
                .iter()
                .map(|f| (f.name.as_str(), f))
                .collect();
            // A frontend new since the last sample has no rate yet.
            points = now
                .frontends
                .iter()
                .filter_map(|f| {
                    let earlier = earlier.get(f.name.as_str())?;
                    Some((f.name.clone(), Rates::between(earlier, f, seconds, at_ms)))
                })
                .collect();
            let earlier: HashMap<(&str, &str), &BackendTraffic> = before
                .backends
                .iter()
                .map(|b| ((b.pool.as_str(), b.address.as_str()), b))
                .collect();
            backends = now
                .backends
                .iter()
                .filter_map(|b| {
                    let e = earlier.get(&(b.pool.as_str(), b.address.as_str()))?;
                    Some(BackendRates {
                        pool: b.pool.clone(),
                        address: b.address.clone(),
                        requests_per_s: per_second(e.requests, b.requests, seconds),
                        failures_per_s: per_second(e.failures, b.failures, seconds),
                    })
                })
                .collect();
        }
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.backends = backends;
        inner
            .series
            .retain(|name, _| now.frontends.iter().any(|f| &f.name == name));
        for (name, point) in points {
            let series = inner.series.entry(name).or_default();
            if series.len() == Self::POINTS {
                series.pop_front();
            }
            series.push_back(point);
        }
        inner.last = Some((at, now));
    }

    /// Every frontend's points, oldest first.
    pub fn series(&self) -> BTreeMap<String, Vec<Rates>> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner
            .series
            .iter()
            .map(|(name, points)| (name.clone(), points.iter().cloned().collect()))
            .collect()
    }

    /// Every backend's figures over the last second.
    pub fn backends(&self) -> Vec<BackendRates> {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .backends
            .clone()
    }

    /// Records `sample()` every second until `stop`.
    pub async fn run(self: Arc<Self>, sample: impl Fn() -> Traffic, stop: CancellationToken) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = stop.cancelled() => return,
            }
            self.record(sample(), Instant::now(), crate::control::unix_millis());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_read_with_an_unbounded_last_one() {
        let histogram = Histogram::new([0.001, 0.01]);
        histogram.observe(0.0005);
        histogram.observe(0.005);
        histogram.observe(5.0);
        let (bounds, counts) = histogram_buckets(&histogram);
        assert_eq!(bounds, vec![0.001, 0.01, f64::MAX]);
        assert_eq!(counts, vec![1, 2, 3]);
        // The peer port carries it as JSON, which has no infinity.
        let traffic = Traffic {
            frontends: vec![FrontendTraffic {
                latency_bounds: bounds,
                latency_counts: counts,
                ..FrontendTraffic::default()
            }],
            backends: Vec::new(),
        };
        let json = serde_json::to_string(&traffic).expect("json");
        assert_eq!(
            serde_json::from_str::<Traffic>(&json).expect("back"),
            traffic
        );
    }

    #[test]
    fn the_history_keeps_a_point_a_second_per_frontend_in_a_ring() {
        let history = TrafficHistory::default();
        let start = Instant::now();
        let frontend = |requests| Traffic {
            frontends: vec![FrontendTraffic {
                name: "web".into(),
                requests,
                ..FrontendTraffic::default()
            }],
            backends: Vec::new(),
        };
        for second in 0..=(TrafficHistory::POINTS as u64 + 5) {
            history.record(
                frontend(second * 10),
                start + Duration::from_secs(second),
                second,
            );
        }
        let series = history.series();
        let web = &series["web"];
        assert_eq!(web.len(), TrafficHistory::POINTS);
        assert!(web.iter().all(|p| (p.requests_per_s - 10.0).abs() < 1e-9));
        assert_eq!(
            web.last().map(|p| p.at_ms),
            Some(TrafficHistory::POINTS as u64 + 5)
        );
        // A frontend removed from the configuration leaves.
        history.record(Traffic::default(), start + Duration::from_secs(1000), 0);
        assert!(history.series().is_empty());
    }

    #[test]
    fn quantiles_come_from_what_was_counted_between_samples() {
        let bounds = [0.001, 0.01, f64::INFINITY];
        // Before: 100 fast; after: 10 more, all between 1 and 10 ms.
        let (before, after) = ([100, 100, 100], [100, 110, 110]);
        assert_eq!(latency_quantile(&bounds, &before, &after, 0.5), Some(0.01));
        assert_eq!(latency_quantile(&bounds, &after, &after, 0.5), None);
        assert_eq!(
            latency_quantile(&bounds, &[0, 0, 0], &[99, 100, 100], 0.5),
            Some(0.001)
        );
        assert_eq!(
            latency_quantile(&bounds, &[0, 0, 0], &[99, 100, 100], 0.999),
            Some(0.01)
        );
    }
}
