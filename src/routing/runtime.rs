//! Live counters and passive health of frontends and backends. They outlive
//! any one routing table: a table rebuilt after a change picks up the same
//! objects, so open connections, counts and ejections carry over.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;

use crate::events::{Event, Events};
use crate::metrics::{
    BackendClassLabels, BackendLabels, CLASSES, FrontendClassLabels, FrontendLabels, Metrics,
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
    pub duration: Histogram,
}

impl FrontendStats {
    /// Counts one response with this status.
    pub fn count_response(&self, status: u16) {
        self.responses[class_index(status)].inc();
    }
}

/// Counters and passive health of one backend of one pool.
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
    pub duration: Histogram,
    ejected_until_ms: AtomicU64,
    consecutive_ejections: AtomicU32,
    pool: String,
    events: Events,
}

impl BackendRuntime {
    /// Whether passive health lets the backend take traffic now.
    pub fn is_healthy(&self, now_ms: u64) -> bool {
        now_ms >= self.ejected_until_ms.load(Ordering::Relaxed)
    }

    /// Records a failed connect or exchange: the backend is ejected on this
    /// node for a back-off that doubles with each ejection in a row.
    pub fn record_failure(&self, reason: &str) {
        self.failures.inc();
        let now = now_ms();
        if !self.is_healthy(now) {
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
        self.events.publish(Event::Health {
            pool: self.pool.clone(),
            address: self.address.to_string(),
            health: "ejected",
            reason: reason.to_string(),
        });
        tracing::warn!(
            pool = %self.pool,
            backend = %self.address,
            reason,
            ejected_for_ms = backoff.as_millis() as u64,
            "backend ejected"
        );
    }

    /// Records a successful exchange, which ends an ejection streak.
    pub fn record_success(&self) {
        if self.consecutive_ejections.load(Ordering::Relaxed) != 0 {
            self.consecutive_ejections.store(0, Ordering::Relaxed);
        }
    }

    /// Counts one response with this status.
    pub fn count_response(&self, status: u16) {
        self.responses[class_index(status)].inc();
    }

    /// `up` or `ejected`, for `/status`.
    pub fn health_label(&self) -> &'static str {
        if self.is_healthy(now_ms()) {
            "up"
        } else {
            "ejected"
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
    frontends: Mutex<HashMap<String, Arc<FrontendStats>>>,
    backends: Mutex<HashMap<(String, SocketAddr), Arc<BackendRuntime>>>,
}

impl Runtimes {
    /// An empty set reporting into `metrics`.
    pub fn new(metrics: Arc<Metrics>, events: Events) -> Self {
        Runtimes {
            metrics,
            events,
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
                    ejected_until_ms: AtomicU64::new(0),
                    consecutive_ejections: AtomicU32::new(0),
                    pool: pool.to_string(),
                    events: self.events.clone(),
                })
            })
            .clone()
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
