//! Prometheus metrics. Families are registered once at start-up; the
//! engine holds clones of per-frontend and per-backend handles (resolved
//! when a routing table is compiled), so counting on the hot path is an
//! atomic add, never a label lookup.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::latency::LatencyHistogram;

/// Labels of per-frontend series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FrontendLabels {
    /// Frontend name.
    pub frontend: String,
}

/// Labels of per-frontend series split by response class.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FrontendClassLabels {
    /// Frontend name.
    pub frontend: String,
    /// `1xx` … `5xx`.
    pub class: String,
}

/// Labels of per-frontend series split by the side of the connection.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FrontendSideLabels {
    /// Frontend name.
    pub frontend: String,
    /// `client` or `server` (the backend).
    pub side: String,
}

/// Labels of per-frontend series split by a reason.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FrontendReasonLabels {
    /// Frontend name.
    pub frontend: String,
    /// Why, in a word or two (`rapid_reset`, `protocol_error`, …).
    pub reason: String,
}

/// Labels of per-backend series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BackendLabels {
    /// Pool name.
    pub pool: String,
    /// Backend address.
    pub backend: String,
}

/// Labels of per-backend series split by response class.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BackendClassLabels {
    /// Pool name.
    pub pool: String,
    /// Backend address.
    pub backend: String,
    /// `1xx` … `5xx`.
    pub class: String,
}

/// Labels of per-backend series split by the view of health.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BackendViewLabels {
    /// Pool name.
    pub pool: String,
    /// Backend address.
    pub backend: String,
    /// `local` (this node's checks) or `committed` (the cluster's majority).
    pub view: String,
}

/// Labels of per-backend series split by check result.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BackendResultLabels {
    /// Pool name.
    pub pool: String,
    /// Backend address.
    pub backend: String,
    /// `passed` or `failed`.
    pub result: String,
}

/// Labels of per-certificate series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CertificateLabels {
    /// The certificate entry's name.
    pub certificate: String,
}

/// Labels of per-pool series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolLabels {
    /// Pool name.
    pub pool: String,
}

/// Labels of DNS lookups by result.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LookupLabels {
    /// Pool name.
    pub pool: String,
    /// `ok`, or why it failed: `timeout`, `SERVFAIL`, `NXDOMAIN`, …
    pub result: String,
}

type HistogramFamily<L> = Family<L, LatencyHistogram>;

/// Response classes, indexed by the first digit of the status minus one.
pub const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Every metric family of a node.
pub struct Metrics {
    registry: Registry,
    /// Client connections open now, per frontend.
    pub frontend_active: Family<FrontendLabels, Gauge>,
    /// Client connections accepted, per frontend.
    pub frontend_connections: Family<FrontendLabels, Counter>,
    /// HTTP requests received, per frontend.
    pub frontend_requests: Family<FrontendLabels, Counter>,
    /// Responses sent, per frontend and class.
    pub frontend_responses: Family<FrontendClassLabels, Counter>,
    /// Bytes from clients, per frontend.
    pub frontend_bytes_in: Family<FrontendLabels, Counter>,
    /// Bytes to clients, per frontend.
    pub frontend_bytes_out: Family<FrontendLabels, Counter>,
    /// Time from request to response head (HTTP) or connection length (TCP).
    pub frontend_duration: HistogramFamily<FrontendLabels>,
    /// HTTP exchanges cut because one side moved no data for
    /// `idle_timeout_ms`, by side.
    pub frontend_idle_timeouts: Family<FrontendSideLabels, Counter>,
    /// Requests the client gave up on (HTTP/2 reset, or connection
    /// closed) before their response began, per frontend.
    pub frontend_cancelled_requests: Family<FrontendLabels, Counter>,
    /// Upgraded connections (WebSocket and others) open now, per frontend.
    pub frontend_tunnels: Family<FrontendLabels, Gauge>,
    /// Requests answered 429 by the frontend's rate limit.
    pub frontend_rate_limited: Family<FrontendLabels, Counter>,
    /// HTTP/2 client connections closed for breaking the protocol or its
    /// limits, per frontend and reason.
    pub frontend_http2_errors: Family<FrontendReasonLabels, Counter>,
    /// Connections or requests in flight to a backend.
    pub backend_active: Family<BackendLabels, Gauge>,
    /// Requests (HTTP) or connections (TCP) sent to a backend.
    pub backend_requests: Family<BackendLabels, Counter>,
    /// Responses from a backend, per class.
    pub backend_responses: Family<BackendClassLabels, Counter>,
    /// Bytes sent to a backend.
    pub backend_bytes_out: Family<BackendLabels, Counter>,
    /// Bytes received from a backend.
    pub backend_bytes_in: Family<BackendLabels, Counter>,
    /// Failed connects and failed exchanges with a backend.
    pub backend_failures: Family<BackendLabels, Counter>,
    /// Times a backend was ejected after failing real traffic.
    pub backend_ejections: Family<BackendLabels, Counter>,
    /// Time from request to response head, per backend.
    pub backend_duration: HistogramFamily<BackendLabels>,
    /// Health: 1 up, 0 down, -1 unknown; per view.
    pub backend_health: Family<BackendViewLabels, Gauge>,
    /// Active health checks by result.
    pub health_checks: Family<BackendResultLabels, Counter>,
    /// Picks made while every backend of the pool was down (fail open).
    pub pool_panic_picks: Family<PoolLabels, Counter>,
    /// `[pool.discovery]` lookups this node made (the leader), by result.
    pub discovery_lookups: Family<LookupLabels, Counter>,
    /// 1 while a discovered pool's lookups fail and its last good set is
    /// kept (the cluster state's record, the same on every node).
    pub discovery_stale: Family<PoolLabels, Gauge>,
    /// Discovered backends in each pool.
    pub discovery_backends: Family<PoolLabels, Gauge>,
    /// 1 while this node leads within a lease confirmed by a quorum.
    pub leader_confirmed: Gauge,
    /// 1 while this node holds the VIP.
    pub vip_held: Gauge,
    /// `[vip] mode = "bgp"`: 1 while this node announces the VIP (eligible,
    /// BIRD's session established).
    pub bgp_announcing: Gauge,
    /// `[vip] mode = "bgp"`: 1 while BIRD's session to the router is
    /// established (read every second).
    pub bgp_session_established: Gauge,
    /// When this node's TLS certificate expires, Unix seconds (0: no TLS).
    pub tls_cert_expiry: Gauge,
    /// When each certificate `https` frontends serve expires, Unix seconds.
    pub certificate_expiry: Family<CertificateLabels, Gauge>,
    /// Times this node acquired the VIP.
    pub vip_acquisitions: Counter,
    /// Times this node released the VIP.
    pub vip_releases: Counter,
    /// Unix ms of the last acquisition (0: never).
    pub vip_last_acquire: Gauge,
    /// Unix ms of the last release (0: never).
    pub vip_last_release: Gauge,
    /// While held: what was left of the lease at the last confirmation.
    pub vip_fence_margin: Gauge,
    /// Bytes the state machine wrote to sled (values, by apply batch).
    pub state_written_bytes: Counter,
    /// Apply batches the state machine persisted.
    pub state_writes: Counter,
    /// Size of the last snapshot built or installed, in bytes.
    pub snapshot_bytes: Gauge,
    /// Routing tables compiled.
    pub table_compiles: Counter,
    /// Time the last routing table took to compile, in microseconds.
    pub table_compile_us: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every family.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("raftlb");
        let m = Metrics {
            frontend_active: Family::default(),
            frontend_connections: Family::default(),
            frontend_requests: Family::default(),
            frontend_responses: Family::default(),
            frontend_bytes_in: Family::default(),
            frontend_bytes_out: Family::default(),
            frontend_duration: Family::default(),
            frontend_idle_timeouts: Family::default(),
            frontend_cancelled_requests: Family::default(),
            frontend_tunnels: Family::default(),
            frontend_rate_limited: Family::default(),
            frontend_http2_errors: Family::default(),
            backend_active: Family::default(),
            backend_requests: Family::default(),
            backend_responses: Family::default(),
            backend_bytes_out: Family::default(),
            backend_bytes_in: Family::default(),
            backend_failures: Family::default(),
            backend_ejections: Family::default(),
            backend_duration: Family::default(),
            backend_health: Family::default(),
            health_checks: Family::default(),
            pool_panic_picks: Family::default(),
            discovery_lookups: Family::default(),
            discovery_stale: Family::default(),
            discovery_backends: Family::default(),
            leader_confirmed: Gauge::default(),
            tls_cert_expiry: Gauge::default(),
            certificate_expiry: Family::default(),
            vip_held: Gauge::default(),
            bgp_announcing: Gauge::default(),
            bgp_session_established: Gauge::default(),
            vip_acquisitions: Counter::default(),
            vip_releases: Counter::default(),
            vip_last_acquire: Gauge::default(),
            vip_last_release: Gauge::default(),
            vip_fence_margin: Gauge::default(),
            state_written_bytes: Counter::default(),
            state_writes: Counter::default(),
            snapshot_bytes: Gauge::default(),
            table_compiles: Counter::default(),
            table_compile_us: Gauge::default(),
            registry: Registry::default(),
        };
        let r = &mut registry;
        r.register(
            "frontend_connections_active",
            "Client connections open now",
            m.frontend_active.clone(),
        );
        r.register(
            "frontend_connections",
            "Client connections accepted",
            m.frontend_connections.clone(),
        );
        r.register(
            "frontend_requests",
            "HTTP requests received",
            m.frontend_requests.clone(),
        );
        r.register(
            "frontend_responses",
            "Responses sent to clients by class",
            m.frontend_responses.clone(),
        );
        r.register(
            "frontend_received_bytes",
            "Bytes received from clients",
            m.frontend_bytes_in.clone(),
        );
        r.register(
            "frontend_sent_bytes",
            "Bytes sent to clients",
            m.frontend_bytes_out.clone(),
        );
        r.register(
            "frontend_idle_timeouts",
            "HTTP exchanges cut after idle_timeout_ms without data from one side, by side",
            m.frontend_idle_timeouts.clone(),
        );
        r.register(
            "frontend_cancelled_requests",
            "Requests the client reset or left before their response began",
            m.frontend_cancelled_requests.clone(),
        );
        r.register(
            "frontend_rate_limited",
            "Requests answered 429 by the frontend's per-client rate limit (this node's count)",
            m.frontend_rate_limited.clone(),
        );
        r.register(
            "frontend_tunnels",
            "WebSocket and other upgraded connections open now",
            m.frontend_tunnels.clone(),
        );
        r.register(
            "frontend_http2_errors",
            "HTTP/2 client connections closed for breaking the protocol or its limits, by reason",
            m.frontend_http2_errors.clone(),
        );
        r.register(
            "frontend_duration_seconds",
            "HTTP: request to response head; TCP: connection lifetime",
            m.frontend_duration.clone(),
        );
        r.register(
            "backend_active",
            "Connections (TCP) or requests (HTTP) in flight",
            m.backend_active.clone(),
        );
        r.register(
            "backend_requests",
            "Requests or connections sent to the backend",
            m.backend_requests.clone(),
        );
        r.register(
            "backend_responses",
            "Responses from the backend by class",
            m.backend_responses.clone(),
        );
        r.register(
            "backend_sent_bytes",
            "Bytes sent to the backend",
            m.backend_bytes_out.clone(),
        );
        r.register(
            "backend_received_bytes",
            "Bytes received from the backend",
            m.backend_bytes_in.clone(),
        );
        r.register(
            "backend_failures",
            "Failed connects or exchanges",
            m.backend_failures.clone(),
        );
        r.register(
            "backend_ejections",
            "Ejections after failed real traffic",
            m.backend_ejections.clone(),
        );
        r.register(
            "backend_response_seconds",
            "Request to response head from the backend",
            m.backend_duration.clone(),
        );
        r.register(
            "backend_health",
            "Backend health: 1 up, 0 down, -1 unknown; view=local (this node) or committed (majority)",
            m.backend_health.clone(),
        );
        r.register(
            "health_checks",
            "Active health checks by result",
            m.health_checks.clone(),
        );
        r.register(
            "pool_panic_picks",
            "Backends picked while every backend of the pool was down (fail open)",
            m.pool_panic_picks.clone(),
        );
        r.register(
            "discovery_lookups",
            "DNS lookups of [pool.discovery] names made by this node (the leader), by result",
            m.discovery_lookups.clone(),
        );
        r.register(
            "discovery_stale",
            "1 while a discovered pool's lookups fail and its last good set is kept",
            m.discovery_stale.clone(),
        );
        r.register(
            "discovery_backends",
            "Backends of the pool taken from DNS",
            m.discovery_backends.clone(),
        );
        r.register(
            "state_written_bytes",
            "Bytes of applied state written to sled",
            m.state_written_bytes.clone(),
        );
        r.register(
            "state_writes",
            "Apply batches persisted to sled",
            m.state_writes.clone(),
        );
        r.register(
            "snapshot_bytes",
            "Size of the last Raft snapshot built or installed",
            m.snapshot_bytes.clone(),
        );
        r.register(
            "routing_table_compiles",
            "Routing tables compiled from applied configurations",
            m.table_compiles.clone(),
        );
        r.register(
            "routing_table_compile_microseconds",
            "Time the last routing table took to compile",
            m.table_compile_us.clone(),
        );
        r.register(
            "leader_confirmed",
            "1 while this node leads within a lease confirmed by a quorum",
            m.leader_confirmed.clone(),
        );
        r.register(
            "certificate_expiry_timestamp_seconds",
            "When each certificate that https frontends serve (ctl cert) expires",
            m.certificate_expiry.clone(),
        );
        r.register(
            "tls_certificate_expiry_timestamp_seconds",
            "When this node's TLS certificate (peer port and control API) expires; 0 without TLS",
            m.tls_cert_expiry.clone(),
        );
        r.register(
            "vip_held",
            "1 while this node holds the virtual IP",
            m.vip_held.clone(),
        );
        r.register(
            "bgp_announcing",
            "1 while this node announces the virtual IP through BIRD (vip.mode = bgp)",
            m.bgp_announcing.clone(),
        );
        r.register(
            "bgp_session_established",
            "1 while BIRD's BGP session to the router is established (vip.mode = bgp)",
            m.bgp_session_established.clone(),
        );
        r.register(
            "vip_acquisitions",
            "Times this node acquired the virtual IP",
            m.vip_acquisitions.clone(),
        );
        r.register(
            "vip_releases",
            "Times this node released the virtual IP",
            m.vip_releases.clone(),
        );
        r.register(
            "vip_last_acquire_timestamp_ms",
            "Unix time in ms of this node's last acquisition of the virtual IP",
            m.vip_last_acquire.clone(),
        );
        r.register(
            "vip_last_release_timestamp_ms",
            "Unix time in ms of this node's last release of the virtual IP",
            m.vip_last_release.clone(),
        );
        r.register(
            "vip_fence_margin_ms",
            "While holding: lease left at the last leadership confirmation, in ms",
            m.vip_fence_margin.clone(),
        );
        Metrics { registry, ..m }
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
