//! A node's traffic figures for `raftlb ctl top` and the status page: per
//! frontend and per backend, read from the same live counters `/metrics`
//! shows. Counters are cumulative since the node started; two samples
//! give rates and latency percentiles.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::config::Protocol;
use crate::latency::quantile_ms;
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
    /// Latency histogram: cumulative counts per bound of
    /// [`crate::latency::BOUNDS`].
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
    /// 5xx answers it gave (HTTP).
    #[serde(default)]
    pub errors: u64,
    /// In flight now.
    pub active: i64,
    /// Request to response head: cumulative counts per bound of
    /// [`crate::latency::BOUNDS`].
    #[serde(default)]
    pub latency_counts: Vec<u64>,
}

/// The figures now, read from the live counters of the current routing
/// table (so a frontend or backend removed from the configuration is gone
/// at once). Cheap at any size: atomic loads, no text written or parsed.
pub fn from_table(table: &RoutingTable) -> Traffic {
    let frontends = table
        .frontends
        .iter()
        .map(|f| FrontendTraffic {
            name: f.spec.name.clone(),
            requests: match f.spec.protocol {
                Protocol::Http | Protocol::Https => f.stats.requests.get(),
                Protocol::Tcp | Protocol::Tls => f.stats.connections.get(),
            },
            errors: f.stats.responses[4].get(),
            open: f.stats.active.get(),
            latency_counts: f.stats.duration.cumulative(),
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
                errors: b.runtime.responses[4].get(),
                active: b.runtime.active.get(),
                latency_counts: b.runtime.duration.cumulative(),
            })
        })
        .collect();
    Traffic {
        frontends,
        backends,
    }
}

/// A counter's rate between two samples `seconds` apart (a counter that
/// went back, a restarted node's, counts from zero).
pub fn per_second(before: u64, after: u64, seconds: f64) -> f64 {
    after.saturating_sub(before) as f64 / seconds.max(0.001)
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
        let quantile = |q| quantile_ms(&before.latency_counts, &after.latency_counts, q);
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
    /// Median latency bucket, ms (HTTP; none counted: absent).
    pub p50_ms: Option<f64>,
    /// 99th percentile latency bucket, ms.
    pub p99_ms: Option<f64>,
    /// In flight at the end.
    pub active: i64,
}

impl BackendRates {
    /// `after`'s figures since `before`, over `seconds`.
    pub fn between(before: &BackendTraffic, after: &BackendTraffic, seconds: f64) -> BackendRates {
        let quantile = |q| quantile_ms(&before.latency_counts, &after.latency_counts, q);
        BackendRates {
            pool: after.pool.clone(),
            address: after.address.clone(),
            requests_per_s: per_second(before.requests, after.requests, seconds),
            failures_per_s: per_second(before.failures, after.failures, seconds),
            p50_ms: quantile(0.5),
            p99_ms: quantile(0.99),
            active: after.active,
        }
    }
}

/// One backend's last minute, a point a second, oldest first (rounded to
/// a tenth: the status page draws them).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct BackendSeries {
    /// Requests (or TCP connections) per second.
    pub requests_per_s: VecDeque<f32>,
    /// Failed connects or exchanges per second.
    pub failures_per_s: VecDeque<f32>,
}

/// The last minutes of one node's traffic, kept in memory for the status
/// page in rings of fixed size: a [`Rates`] point per frontend per second,
/// a [`BackendSeries`] for the first [`TrafficHistory::CHARTED_BACKENDS`]
/// backends, and every backend's figures over the last second.
#[derive(Default)]
pub struct TrafficHistory {
    inner: Mutex<HistoryInner>,
}

#[derive(Default)]
struct HistoryInner {
    last: Option<(Instant, Traffic)>,
    series: BTreeMap<String, VecDeque<Rates>>,
    backends: Vec<BackendRates>,
    /// By "pool/address".
    backend_series: HashMap<String, BackendSeries>,
}

impl TrafficHistory {
    /// Points kept per frontend: five minutes at one a second.
    pub const POINTS: usize = 300;
    /// Points kept per charted backend: a minute.
    pub const BACKEND_POINTS: usize = 60;
    /// Backends charted, in the routing table's order (pools by name,
    /// backends as configured); a pool may hold ten thousand, and every
    /// backend's figures of the last second are kept anyway.
    pub const CHARTED_BACKENDS: usize = 200;

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
                    Some(BackendRates::between(e, b, seconds))
                })
                .collect();
        }
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let charted: HashMap<String, &BackendRates> = backends
            .iter()
            .take(Self::CHARTED_BACKENDS)
            .map(|b| (format!("{}/{}", b.pool, b.address), b))
            .collect();
        inner
            .backend_series
            .retain(|key, _| charted.contains_key(key));
        for (key, rates) in charted {
            let series = inner.backend_series.entry(key).or_default();
            if series.requests_per_s.len() == Self::BACKEND_POINTS {
                series.requests_per_s.pop_front();
                series.failures_per_s.pop_front();
            }
            let tenth = |v: f64| ((v * 10.0).round() / 10.0) as f32;
            series.requests_per_s.push_back(tenth(rates.requests_per_s));
            series.failures_per_s.push_back(tenth(rates.failures_per_s));
        }
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

    /// The charted backends' last minute, by "pool/address".
    pub fn backend_series(&self) -> HashMap<String, BackendSeries> {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .backend_series
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
    fn traffic_crosses_the_peer_port_as_json() {
        let histogram = crate::latency::LatencyHistogram::default();
        histogram.observe(0.003);
        let traffic = Traffic {
            frontends: vec![FrontendTraffic {
                name: "web".into(),
                latency_counts: histogram.cumulative(),
                ..FrontendTraffic::default()
            }],
            backends: vec![BackendTraffic {
                latency_counts: histogram.cumulative(),
                ..BackendTraffic::default()
            }],
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
    fn the_first_backends_get_a_minute_of_points_and_all_get_the_last_second() {
        let history = TrafficHistory::default();
        let start = Instant::now();
        let backends = |second: u64| Traffic {
            frontends: Vec::new(),
            backends: (0..TrafficHistory::CHARTED_BACKENDS + 10)
                .map(|i| BackendTraffic {
                    pool: "web".into(),
                    address: format!("127.0.0.1:{}", 1000 + i),
                    requests: second * 3,
                    failures: second / 2,
                    ..BackendTraffic::default()
                })
                .collect(),
        };
        for second in 0..=(TrafficHistory::BACKEND_POINTS as u64 + 5) {
            history.record(backends(second), start + Duration::from_secs(second), 0);
        }
        assert_eq!(
            history.backends().len(),
            TrafficHistory::CHARTED_BACKENDS + 10
        );
        let series = history.backend_series();
        assert_eq!(series.len(), TrafficHistory::CHARTED_BACKENDS);
        let first = &series["web/127.0.0.1:1000"];
        assert_eq!(first.requests_per_s.len(), TrafficHistory::BACKEND_POINTS);
        assert!(first.requests_per_s.iter().all(|r| *r == 3.0));
        assert!(first.failures_per_s.iter().any(|f| *f == 1.0));
        assert!(!series.contains_key(&format!(
            "web/127.0.0.1:{}",
            1000 + TrafficHistory::CHARTED_BACKENDS
        )));
    }
}
