//! Live counters and passive health of frontends and backends. They outlive
//! any one routing table: a table rebuilt after a change picks up the same
//! objects, so open connections, counts and ejections carry over.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use crate::events::{Event, Events};
use crate::latency::LatencyHistogram;
use crate::metrics::{
    BackendClassLabels, BackendLabels, BackendResultLabels, BackendViewLabels, CLASSES,
    FrontendClassLabels, FrontendLabels, Metrics, PoolLabels,
};

/// First ejection after failed traffic; each further one doubles it.
const FIRST_EJECTION: Duration = Duration::from_secs(1);
/// Longest ejection.
const MAX_EJECTION: Duration = Duration::from_secs(30);

/// Milliseconds since the process started, a cheap monotonic clock that fits
/// in an atomic.
pub fn now_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u64
}

/// Counters of one frontend.
#[derive(Debug)]
pub struct FrontendStats {
    /// Client connections open now.
    pub active: Gauge,
    /// Client connections accepted.
    pub connections: Counter,
    /// HTTP requests received.
    pub requests: Counter,
    /// Responses sent, by class.
    pub responses: [Counter; 5],
    /// Bytes from clients.
    pub bytes_in: Counter,
    /// Bytes to clients.
    pub bytes_out: Counter,
    /// Request latency or connection lifetime, in seconds.
    pub duration: LatencyHistogram,
    /// HTTP exchanges cut because the client moved no data for the idle
    /// timeout.
    pub client_timeouts: Counter,
    /// HTTP exchanges cut because the backend moved no data for the idle
    /// timeout.
    pub server_timeouts: Counter,
    /// Requests the client gave up on before their response began.
    pub cancelled: Counter,
    /// Upgraded connections (WebSocket) open now.
    pub tunnels: Gauge,
    /// Requests answered 429 by the rate limit.
    pub rate_limited: Counter,
    /// The clients' token buckets (`rate_limit`).
    pub limiter: super::RateLimiter,
    /// The buckets of each route's `rate_limit`, by the route's identity
    /// (a hash of its configuration).
    route_limiters: Mutex<HashMap<u64, Arc<super::RateLimiter>>>,
    /// The frontend's name, for the labels of `http2_errors`.
    name: String,
    /// HTTP/2 connections closed for misbehaving, by reason.
    http2_errors: Family<crate::metrics::FrontendReasonLabels, Counter>,
}

impl FrontendStats {
    /// Counts one response with this status.
    pub fn count_response(&self, status: u16) {
        self.responses[class_index(status)].inc();
    }

    /// The buckets of the route whose configuration hashes to `route`,
    /// kept across versions while the route is unchanged (wherever it
    /// moves in the list).
    pub fn route_limiter(&self, route: u64) -> Arc<super::RateLimiter> {
        let mut limiters = self
            .route_limiters
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        limiters.entry(route).or_default().clone()
    }

    /// Forgets the buckets of routes not in `routes` (changed or removed).
    pub fn keep_route_limiters(&self, routes: &[u64]) {
        let mut limiters = self
            .route_limiters
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        limiters.retain(|route, _| routes.contains(route));
    }

    /// Counts an HTTP/2 client connection closed for `reason`.
    pub fn count_http2_error(&self, reason: &str) {
        let labels = crate::metrics::FrontendReasonLabels {
            frontend: self.name.clone(),
            reason: reason.to_string(),
        };
        self.http2_errors.get_or_create(&labels).inc();
    }
}

/// A backend's health as one view sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// Not checked yet: gets no traffic unless the whole pool is down.
    Unknown,
    /// Passing its checks.
    Up,
    /// Failing its checks.
    Down,
}

impl Health {
    /// `unknown`, `up` or `down`.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Unknown => "unknown",
            Health::Up => "up",
            Health::Down => "down",
        }
    }

    fn to_u8(self) -> u8 {
        match self {
            Health::Unknown => 0,
            Health::Up => 1,
            Health::Down => 2,
        }
    }

    fn from_u8(value: u8) -> Health {
        match value {
            1 => Health::Up,
            2 => Health::Down,
            _ => Health::Unknown,
        }
    }

    /// The metric value: 1 up, 0 down, -1 unknown.
    fn gauge(self) -> i64 {
        match self {
            Health::Unknown => -1,
            Health::Up => 1,
            Health::Down => 0,
        }
    }
}

/// Share of its weight a backend gets at the start of a slow start.
const SLOW_START_FLOOR: f64 = 0.1;

/// Counters and health of one backend of one pool, on this node.
#[derive(Debug)]
pub struct BackendRuntime {
    /// The backend's address.
    pub address: SocketAddr,
    /// Connections (TCP) or requests (HTTP) in flight.
    pub active: Gauge,
    /// Requests or connections sent.
    pub requests: Counter,
    /// Responses received, by class.
    pub responses: [Counter; 5],
    /// Bytes sent to the backend.
    pub bytes_out: Counter,
    /// Bytes received from the backend.
    pub bytes_in: Counter,
    /// Failed connects and exchanges.
    pub failures: Counter,
    /// Ejections after failed traffic.
    pub ejections: Counter,
    /// Request to response head, in seconds.
    pub duration: LatencyHistogram,
    /// Health checks that passed.
    pub checks_passed: Counter,
    /// Health checks that failed.
    pub checks_failed: Counter,
    local_gauge: Gauge,
    committed_gauge: Gauge,
    health: AtomicU8,
    committed: AtomicU8,
    passes: AtomicU32,
    fails: AtomicU32,
    up_since_ms: AtomicU64,
    consecutive_5xx: AtomicU32,
    ejected_until_ms: AtomicU64,
    consecutive_ejections: AtomicU32,
    /// The last change of this node's view: what, when (Unix ms), why.
    last_change: std::sync::Mutex<Option<HealthChange>>,
    pool: String,
    events: Events,
}

/// A change of a backend's health as this node sees it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HealthChange {
    /// `up`, `down` or `ejected`.
    pub health: &'static str,
    /// When, in ms since the Unix epoch.
    pub at_ms: u64,
    /// Why (the check's or the failure's words).
    pub reason: String,
}

impl BackendRuntime {
    /// The last change of this node's view of it, if any.
    pub fn last_change(&self) -> Option<HealthChange> {
        self.last_change
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn note_change(&self, health: &'static str, reason: &str) {
        *self.last_change.lock().unwrap_or_else(|e| e.into_inner()) = Some(HealthChange {
            health,
            at_ms: crate::control::unix_millis(),
            reason: reason.to_string(),
        });
    }

    /// This node's view from its own active checks.
    pub fn health(&self) -> Health {
        Health::from_u8(self.health.load(Ordering::Relaxed))
    }

    /// The cluster's committed view (a majority of nodes agreeing).
    pub fn committed(&self) -> Health {
        Health::from_u8(self.committed.load(Ordering::Relaxed))
    }

    /// Whether this node sends it new traffic now: checked up and not
    /// ejected for failing real traffic.
    pub fn is_usable(&self, now_ms: u64) -> bool {
        self.health() == Health::Up && !self.is_ejected(now_ms)
    }

    /// Whether passive health has it ejected now.
    pub fn is_ejected(&self, now_ms: u64) -> bool {
        now_ms < self.ejected_until_ms.load(Ordering::Relaxed)
    }

    /// Share of its weight it gets now: ramps from 10 % to 100 % over
    /// `slow_start_ms` after it came up.
    pub fn slow_start_factor(&self, now_ms: u64, slow_start_ms: u64) -> f64 {
        let up_since = self.up_since_ms.load(Ordering::Relaxed);
        if slow_start_ms == 0 || up_since == 0 {
            return 1.0; // not coming back from down: no ramp
        }
        let since = now_ms.saturating_sub(up_since);
        if since >= slow_start_ms {
            return 1.0;
        }
        SLOW_START_FLOOR + (1.0 - SLOW_START_FLOOR) * since as f64 / slow_start_ms as f64
    }

    fn set_health(&self, health: Health, reason: &str) {
        let before = Health::from_u8(self.health.swap(health.to_u8(), Ordering::Relaxed));
        if before == health {
            return;
        }
        self.local_gauge.set(health.gauge());
        if health == Health::Up {
            // A backend that was down (not one merely unknown at start-up)
            // ramps up.
            let since = if before == Health::Down {
                now_ms().max(1)
            } else {
                0
            };
            self.up_since_ms.store(since, Ordering::Relaxed);
        }
        match health {
            Health::Down => tracing::warn!(
                "backend down: pool={} addr={} reason={reason}",
                self.pool,
                self.address
            ),
            Health::Up => tracing::info!(
                "backend up: pool={} addr={} reason={reason}",
                self.pool,
                self.address
            ),
            Health::Unknown => {}
        }
        self.note_change(health.as_str(), reason);
        self.events.publish(Event::Health {
            pool: self.pool.clone(),
            address: self.address.to_string(),
            health: health.as_str(),
            reason: reason.to_string(),
        });
    }

    /// Records one active check; returns the new health when it changed
    /// (after `rise` passes or `fall` failures in a row).
    pub fn record_check(&self, passed: Result<(), String>, rise: u32, fall: u32) -> Option<Health> {
        let before = self.health();
        let next = match &passed {
            Ok(()) => {
                self.checks_passed.inc();
                self.fails.store(0, Ordering::Relaxed);
                let passes = self.passes.fetch_add(1, Ordering::Relaxed) + 1;
                (before != Health::Up && passes >= rise).then_some(Health::Up)
            }
            Err(_) => {
                self.checks_failed.inc();
                self.passes.store(0, Ordering::Relaxed);
                let fails = self.fails.fetch_add(1, Ordering::Relaxed) + 1;
                (before != Health::Down && fails >= fall).then_some(Health::Down)
            }
        }?;
        let reason = match &passed {
            Ok(()) => format!("{rise} checks passed"),
            Err(error) => error.clone(),
        };
        self.set_health(next, &reason);
        Some(next)
    }

    /// For pools without active checks: always up.
    pub fn mark_unchecked(&self) {
        // Quietly: nothing happened to the backend worth a log line.
        self.health.store(Health::Up.to_u8(), Ordering::Relaxed);
        self.local_gauge.set(Health::Up.gauge());
    }

    /// Takes the cluster's committed view. A backend this node has not
    /// checked yet starts from it, so a restarted node serves warm.
    pub fn set_committed(&self, health: Health) {
        self.committed.store(health.to_u8(), Ordering::Relaxed);
        self.committed_gauge.set(health.gauge());
        if self.health() == Health::Unknown && health != Health::Unknown {
            self.set_health(health, "committed cluster view");
        }
    }

    /// Ejects the backend from this node's traffic for a back-off that
    /// doubles with each ejection in a row (1 s to 30 s).
    pub fn eject(&self, reason: &str) {
        let now = now_ms();
        if self.is_ejected(now) {
            return; // already ejected; the other failures were in flight
        }
        let streak = self
            .consecutive_ejections
            .fetch_add(1, Ordering::Relaxed)
            .min(5);
        let backoff = (FIRST_EJECTION * 2u32.pow(streak)).min(MAX_EJECTION);
        self.ejected_until_ms
            .store(now + backoff.as_millis() as u64, Ordering::Relaxed);
        self.ejections.inc();
        self.note_change("ejected", reason);
        self.events.publish(Event::Health {
            pool: self.pool.clone(),
            address: self.address.to_string(),
            health: "ejected",
            reason: reason.to_string(),
        });
        tracing::warn!(
            "backend ejected: pool={} addr={} reason={reason} for_ms={}",
            self.pool,
            self.address,
            backoff.as_millis()
        );
    }

    /// Counts a failed connect or exchange.
    pub fn record_failure(&self) {
        self.failures.inc();
    }

    /// Counts an answer; true when it makes `eject_after` 5xx in a row.
    pub fn record_answer(&self, status: u16, eject_after: u32) -> bool {
        self.count_response(status);
        if status >= 500 {
            self.consecutive_5xx.fetch_add(1, Ordering::Relaxed) + 1 >= eject_after
        } else {
            self.record_success();
            false
        }
    }

    /// Records a successful exchange, which ends failure streaks.
    pub fn record_success(&self) {
        if self.consecutive_5xx.load(Ordering::Relaxed) != 0 {
            self.consecutive_5xx.store(0, Ordering::Relaxed);
        }
        if self.consecutive_ejections.load(Ordering::Relaxed) != 0 {
            self.consecutive_ejections.store(0, Ordering::Relaxed);
        }
    }

    /// Counts one response with this status.
    pub fn count_response(&self, status: u16) {
        self.responses[class_index(status)].inc();
    }
}

/// Live state of one pool on this node.
#[derive(Debug)]
pub struct PoolRuntime {
    /// Picks made while every backend was down (fail open).
    pub panic_picks: Counter,
    panicking: std::sync::atomic::AtomicBool,
    name: String,
}

impl PoolRuntime {
    /// Whether its last pick had to fail open (every backend down).
    pub fn is_panicking(&self) -> bool {
        self.panicking.load(Ordering::Relaxed)
    }

    /// Notes whether the last pick had to fail open; logs each change.
    pub fn set_panic(&self, panic: bool) {
        if panic {
            self.panic_picks.inc();
        }
        if self.panicking.swap(panic, Ordering::Relaxed) != panic {
            if panic {
                tracing::warn!(
                    "pool panic: pool={} no healthy backend; failing open across all of them",
                    self.name
                );
            } else {
                tracing::info!(
                    "pool recovered: pool={} a healthy backend is back",
                    self.name
                );
            }
        }
    }
}

fn class_index(status: u16) -> usize {
    (usize::from(status / 100)).clamp(1, 5) - 1
}

/// Holds every frontend's and backend's live objects across table
/// rebuilds, and creates their metric handles.
pub struct Runtimes {
    metrics: Arc<Metrics>,
    events: Events,
    pools: Mutex<HashMap<String, Arc<PoolRuntime>>>,
    frontends: Mutex<HashMap<String, Arc<FrontendStats>>>,
    backends: Mutex<HashMap<(String, SocketAddr), Arc<BackendRuntime>>>,
}

impl Runtimes {
    /// An empty set reporting into `metrics`.
    pub fn new(metrics: Arc<Metrics>, events: Events) -> Self {
        Runtimes {
            metrics,
            events,
            pools: Mutex::default(),
            frontends: Mutex::default(),
            backends: Mutex::default(),
        }
    }

    /// The metrics these objects report into.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The stats of frontend `name`, created on first use.
    pub fn frontend(&self, name: &str) -> Arc<FrontendStats> {
        let mut frontends = self.frontends.lock().unwrap_or_else(|e| e.into_inner());
        frontends
            .entry(name.to_string())
            .or_insert_with(|| {
                let m = &self.metrics;
                let labels = FrontendLabels {
                    frontend: name.to_string(),
                };
                Arc::new(FrontendStats {
                    active: m.frontend_active.get_or_create(&labels).clone(),
                    connections: m.frontend_connections.get_or_create(&labels).clone(),
                    requests: m.frontend_requests.get_or_create(&labels).clone(),
                    responses: CLASSES.map(|class| {
                        let labels = FrontendClassLabels {
                            frontend: name.to_string(),
                            class: class.to_string(),
                        };
                        m.frontend_responses.get_or_create(&labels).clone()
                    }),
                    bytes_in: m.frontend_bytes_in.get_or_create(&labels).clone(),
                    bytes_out: m.frontend_bytes_out.get_or_create(&labels).clone(),
                    duration: m.frontend_duration.get_or_create(&labels).clone(),
                    client_timeouts: side_counter(m, name, "client"),
                    server_timeouts: side_counter(m, name, "server"),
                    cancelled: m.frontend_cancelled_requests.get_or_create(&labels).clone(),
                    tunnels: m.frontend_tunnels.get_or_create(&labels).clone(),
                    rate_limited: m.frontend_rate_limited.get_or_create(&labels).clone(),
                    limiter: super::RateLimiter::default(),
                    route_limiters: Default::default(),
                    name: name.to_string(),
                    http2_errors: m.frontend_http2_errors.clone(),
                })
            })
            .clone()
    }

    /// The runtime of backend `address` in pool `pool`, created on first use.
    pub fn backend(&self, pool: &str, address: SocketAddr) -> Arc<BackendRuntime> {
        let mut backends = self.backends.lock().unwrap_or_else(|e| e.into_inner());
        backends
            .entry((pool.to_string(), address))
            .or_insert_with(|| {
                let m = &self.metrics;
                let labels = BackendLabels {
                    pool: pool.to_string(),
                    backend: address.to_string(),
                };
                let check_labels = |passed: bool| BackendResultLabels {
                    pool: pool.to_string(),
                    backend: address.to_string(),
                    result: if passed { "passed" } else { "failed" }.to_string(),
                };
                let view_labels = |view: &str| BackendViewLabels {
                    pool: pool.to_string(),
                    backend: address.to_string(),
                    view: view.to_string(),
                };
                // One statement per handle: a family's read guard lives to the end
                // of its statement, and creating a second series of the same
                // family under it would deadlock.
                let checks_passed = m.health_checks.get_or_create(&check_labels(true)).clone();
                let checks_failed = m.health_checks.get_or_create(&check_labels(false)).clone();
                Arc::new(BackendRuntime {
                    address,
                    active: m.backend_active.get_or_create(&labels).clone(),
                    requests: m.backend_requests.get_or_create(&labels).clone(),
                    responses: CLASSES.map(|class| {
                        let labels = BackendClassLabels {
                            pool: pool.to_string(),
                            backend: address.to_string(),
                            class: class.to_string(),
                        };
                        m.backend_responses.get_or_create(&labels).clone()
                    }),
                    bytes_out: m.backend_bytes_out.get_or_create(&labels).clone(),
                    bytes_in: m.backend_bytes_in.get_or_create(&labels).clone(),
                    failures: m.backend_failures.get_or_create(&labels).clone(),
                    ejections: m.backend_ejections.get_or_create(&labels).clone(),
                    duration: m.backend_duration.get_or_create(&labels).clone(),
                    checks_passed,
                    checks_failed,
                    local_gauge: {
                        let gauge = m
                            .backend_health
                            .get_or_create(&view_labels("local"))
                            .clone();
                        gauge.set(-1);
                        gauge
                    },
                    committed_gauge: {
                        let gauge = m
                            .backend_health
                            .get_or_create(&view_labels("committed"))
                            .clone();
                        gauge.set(-1);
                        gauge
                    },
                    health: AtomicU8::new(0),
                    committed: AtomicU8::new(0),
                    passes: AtomicU32::new(0),
                    fails: AtomicU32::new(0),
                    up_since_ms: AtomicU64::new(0),
                    consecutive_5xx: AtomicU32::new(0),
                    ejected_until_ms: AtomicU64::new(0),
                    consecutive_ejections: AtomicU32::new(0),
                    last_change: Default::default(),
                    pool: pool.to_string(),
                    events: self.events.clone(),
                })
            })
            .clone()
    }

    /// The runtime of pool `name`, created on first use.
    pub fn pool(&self, name: &str) -> Arc<PoolRuntime> {
        let mut pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
        pools
            .entry(name.to_string())
            .or_insert_with(|| {
                let labels = PoolLabels {
                    pool: name.to_string(),
                };
                Arc::new(PoolRuntime {
                    panic_picks: self.metrics.pool_panic_picks.get_or_create(&labels).clone(),
                    panicking: false.into(),
                    name: name.to_string(),
                })
            })
            .clone()
    }

    /// The runtime of a backend if it exists (for the committed view).
    pub fn existing_backend(&self, pool: &str, address: SocketAddr) -> Option<Arc<BackendRuntime>> {
        let backends = self.backends.lock().unwrap_or_else(|e| e.into_inner());
        backends.get(&(pool.to_string(), address)).cloned()
    }

    /// Forgets backends that are no longer configured and have nothing in
    /// flight, so removed backends do not linger in memory or metrics.
    pub fn retain_backends(&self, keep: impl Fn(&str, SocketAddr) -> bool) {
        let mut backends = self.backends.lock().unwrap_or_else(|e| e.into_inner());
        backends.retain(|(pool, address), runtime| {
            let retained = keep(pool, *address) || runtime.active.get() > 0;
            if !retained {
                let labels = BackendLabels {
                    pool: pool.clone(),
                    backend: address.to_string(),
                };
                let m = &self.metrics;
                m.backend_active.remove(&labels);
                m.backend_requests.remove(&labels);
                m.backend_bytes_out.remove(&labels);
                m.backend_bytes_in.remove(&labels);
                m.backend_failures.remove(&labels);
                m.backend_ejections.remove(&labels);
                m.backend_duration.remove(&labels);
                for view in ["local", "committed"] {
                    m.backend_health.remove(&BackendViewLabels {
                        pool: pool.clone(),
                        backend: address.to_string(),
                        view: view.to_string(),
                    });
                }
                for result in ["passed", "failed"] {
                    m.health_checks.remove(&BackendResultLabels {
                        pool: pool.clone(),
                        backend: address.to_string(),
                        result: result.to_string(),
                    });
                }
                for class in CLASSES {
                    m.backend_responses.remove(&BackendClassLabels {
                        pool: pool.clone(),
                        backend: address.to_string(),
                        class: class.to_string(),
                    });
                }
            }
            retained
        });
    }

    /// Connections or requests in flight to a backend (0 if unknown).
    pub fn active(&self, pool: &str, address: SocketAddr) -> i64 {
        let backends = self.backends.lock().unwrap_or_else(|e| e.into_inner());
        backends
            .get(&(pool.to_string(), address))
            .map_or(0, |runtime| runtime.active.get())
    }

    /// Every backend runtime known, with its pool name, for `/status`.
    pub fn backends(&self) -> Vec<(String, Arc<BackendRuntime>)> {
        let backends = self.backends.lock().unwrap_or_else(|e| e.into_inner());
        backends
            .iter()
            .map(|((pool, _), runtime)| (pool.clone(), runtime.clone()))
            .collect()
    }
}

/// The idle-timeout counter of one side of a frontend. Its own function:
/// the family's lock guard must end before the other side's is taken (two
/// `get_or_create` on one family in one expression deadlock).
fn side_counter(metrics: &Metrics, frontend: &str, side: &str) -> Counter {
    let labels = crate::metrics::FrontendSideLabels {
        frontend: frontend.to_string(),
        side: side.to_string(),
    };
    metrics
        .frontend_idle_timeouts
        .get_or_create(&labels)
        .clone()
}
