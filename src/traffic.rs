//! A node's traffic figures for `raftlb ctl top`: per frontend and per
//! backend, read from the node's own Prometheus metrics (one source of
//! truth with `/metrics`). Counters are cumulative since the node started;
//! `ctl top` turns two samples into rates and latency percentiles.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

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

/// The figures in a Prometheus text exposition of raftlb's metrics.
pub fn from_metrics_text(text: &str) -> Traffic {
    let mut frontends: BTreeMap<String, FrontendTraffic> = BTreeMap::new();
    let mut connections: BTreeMap<String, u64> = BTreeMap::new();
    let mut backends: BTreeMap<(String, String), BackendTraffic> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => (name, labels_of(rest.trim_end_matches('}'))),
            None => (series, BTreeMap::new()),
        };
        let label = |key: &str| labels.get(key).cloned().unwrap_or_default();
        if let Some(field) = name.strip_prefix("raftlb_frontend_") {
            let frontend = frontends.entry(label("frontend")).or_default();
            match field {
                "requests_total" => frontend.requests = value as u64,
                "responses_total" if label("class") == "5xx" => frontend.errors = value as u64,
                "connections_active" => frontend.open = value as i64,
                "connections_total" => {
                    connections.insert(label("frontend"), value as u64);
                }
                "duration_seconds_bucket" => {
                    // +Inf as the largest double: JSON (the peer port's
                    // encoding) has no infinity.
                    let bound: f64 = label("le").parse().unwrap_or(f64::MAX);
                    frontend.latency_bounds.push(bound.min(f64::MAX));
                    frontend.latency_counts.push(value as u64);
                }
                _ => {}
            }
        } else if let Some(field) = name.strip_prefix("raftlb_backend_") {
            let (pool, address) = (label("pool"), label("backend"));
            let backend = backends
                .entry((pool.clone(), address.clone()))
                .or_insert_with(|| BackendTraffic {
                    pool,
                    address,
                    ..BackendTraffic::default()
                });
            match field {
                "requests_total" => backend.requests = value as u64,
                "failures_total" => backend.failures = value as u64,
                "active" => backend.active = value as i64,
                _ => {}
            }
        }
    }
    Traffic {
        frontends: frontends
            .into_iter()
            .map(|(name, mut f)| {
                // A TCP frontend counts connections, not requests.
                if f.requests == 0 {
                    f.requests = connections.get(&name).copied().unwrap_or(0);
                }
                FrontendTraffic { name, ..f }
            })
            .collect(),
        backends: backends.into_values().collect(),
    }
}

/// `a="x",b="y"` as a map (values are raftlb's names and addresses: no
/// escaped quotes or commas in them).
fn labels_of(text: &str) -> BTreeMap<String, String> {
    text.split(',')
        .filter_map(|pair| {
            let (key, value) = pair.split_once('=')?;
            Some((key.trim().to_string(), value.trim_matches('"').to_string()))
        })
        .collect()
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
    /// `after`'s figures since `before` (absent: since the start), over
    /// `seconds`.
    pub fn between(
        before: Option<&FrontendTraffic>,
        after: &FrontendTraffic,
        seconds: f64,
        at_ms: u64,
    ) -> Rates {
        let seconds = seconds.max(0.001);
        let (requests, errors, counts) = before.map_or((0, 0, &[][..]), |b| {
            (b.requests, b.errors, b.latency_counts.as_slice())
        });
        let quantile = |q| {
            latency_quantile(&after.latency_bounds, counts, &after.latency_counts, q)
                .map(|s| if s >= f64::MAX { s } else { s * 1000.0 })
        };
        Rates {
            at_ms,
            requests_per_s: after.requests.saturating_sub(requests) as f64 / seconds,
            errors_per_s: after.errors.saturating_sub(errors) as f64 / seconds,
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
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((then, before)) = &inner.last {
            let seconds = at.duration_since(*then).as_secs_f64();
            let points: Vec<(String, Rates)> = now
                .frontends
                .iter()
                .map(|f| {
                    let earlier = before.frontends.iter().find(|b| b.name == f.name);
                    (f.name.clone(), Rates::between(earlier, f, seconds, at_ms))
                })
                .collect();
            let seconds = seconds.max(0.001);
            inner.backends = now
                .backends
                .iter()
                .map(|b| {
                    let (requests, failures) = before
                        .backends
                        .iter()
                        .find(|e| e.pool == b.pool && e.address == b.address)
                        .map_or((0, 0), |e| (e.requests, e.failures));
                    BackendRates {
                        pool: b.pool.clone(),
                        address: b.address.clone(),
                        requests_per_s: b.requests.saturating_sub(requests) as f64 / seconds,
                        failures_per_s: b.failures.saturating_sub(failures) as f64 / seconds,
                    }
                })
                .collect();
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

    const TEXT: &str = r#"# HELP raftlb_frontend_requests HTTP requests received.
# TYPE raftlb_frontend_requests counter
raftlb_frontend_requests_total{frontend="web"} 120
raftlb_frontend_responses_total{frontend="web",class="2xx"} 110
raftlb_frontend_responses_total{frontend="web",class="5xx"} 10
raftlb_frontend_connections_active{frontend="web"} 3
raftlb_frontend_connections_total{frontend="db"} 7
raftlb_frontend_duration_seconds_bucket{le="0.001",frontend="web"} 100
raftlb_frontend_duration_seconds_bucket{le="0.01",frontend="web"} 118
raftlb_frontend_duration_seconds_bucket{le="+Inf",frontend="web"} 120
raftlb_backend_requests_total{pool="web",backend="127.0.0.1:9001"} 60
raftlb_backend_failures_total{pool="web",backend="127.0.0.1:9001"} 2
raftlb_backend_active{pool="web",backend="127.0.0.1:9001"} 1
"#;

    #[test]
    fn the_figures_come_from_the_metrics_text() {
        let traffic = from_metrics_text(TEXT);
        let web = traffic
            .frontends
            .iter()
            .find(|f| f.name == "web")
            .expect("web");
        assert_eq!((web.requests, web.errors, web.open), (120, 10, 3));
        assert_eq!(web.latency_counts, vec![100, 118, 120]);
        assert_eq!(web.latency_bounds, vec![0.001, 0.01, f64::MAX]);
        // The peer port carries it as JSON, which has no infinity.
        let json = serde_json::to_string(&traffic).expect("json");
        assert_eq!(
            serde_json::from_str::<Traffic>(&json).expect("back"),
            traffic
        );
        let db = traffic
            .frontends
            .iter()
            .find(|f| f.name == "db")
            .expect("db");
        assert_eq!(db.requests, 7, "a TCP frontend counts connections");
        assert_eq!(
            traffic.backends,
            vec![BackendTraffic {
                pool: "web".into(),
                address: "127.0.0.1:9001".into(),
                requests: 60,
                failures: 2,
                active: 1,
            }]
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
