//! The declarative model of what a cluster serves, exactly as `cluster.toml`
//! spells it. The same types travel in commands, the Raft log and the control
//! API, so there is one vocabulary from file to wire.

use serde::{Deserialize, Serialize};

use super::route_rules::{FixedResponse, HeaderRewrite, Redirect};

/// Everything the cluster serves: frontends and the pools they route to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSpec {
    /// Listeners, in file order.
    #[serde(default, rename = "frontend")]
    pub frontends: Vec<FrontendSpec>,
    /// Backend pools, in file order.
    #[serde(default, rename = "pool")]
    pub pools: Vec<PoolSpec>,
    /// `[[certificate]]` entries: not part of the replicated configuration
    /// but of the certificate store; `ctl apply` and a seed add or replace
    /// each (see [`CertificateFile`]). Never written back out.
    #[serde(default, rename = "certificate", skip_serializing)]
    pub certificates: Vec<CertificateFile>,
}

/// A `[[certificate]]` of a `cluster.toml`: PEM files read by `ctl apply`
/// (or, in a seed, by the node), relative to the `cluster.toml`, and
/// committed to the certificate store like `ctl cert add` or `replace`.
/// An entry already in the store with the same content changes nothing;
/// a certificate not named in the file is left as it is (`ctl cert
/// remove` removes one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateFile {
    /// The entry's name (not a DNS name).
    pub name: String,
    /// The chain, leaf first (PEM file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert: Option<String>,
    /// The leaf's private key (PEM file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Served to clients whose SNI no certificate names.
    #[serde(default)]
    pub default: bool,
    /// Ordered by the leader from an ACME server instead of `cert`/`key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acme: Option<AcmeFile>,
}

/// `acme = { directory = "…", contact = "ops@example.com", names = […] }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcmeFile {
    /// The ACME server's directory URL.
    pub directory: String,
    /// An e-mail address (or `mailto:` URL) for the account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact: Option<String>,
    /// The DNS names to order.
    pub names: Vec<String>,
    /// A PEM file of the CA of the directory's own TLS certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub directory_ca: Option<String>,
}

/// A listener on every node's `serve_ip:port` (and on the VIP when held).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FrontendSpec {
    /// Unique name, used in metrics and logs.
    pub name: String,
    /// TCP port to listen on.
    pub port: u16,
    /// `http` (L7, routed per request) or `tcp` (L4, per connection).
    pub protocol: Protocol,
    /// Pool used when no route matches.
    pub pool: String,
    /// HTTP routes by host and path prefix; the first match wins.
    #[serde(default, rename = "route", skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<RouteSpec>,
    /// Most client connections open at once; further clients wait in the
    /// kernel's accept queue, as with HAProxy's `maxconn`.
    #[serde(default = "defaults::max_connections")]
    pub max_connections: u32,
    /// Time allowed to open a connection to a backend.
    #[serde(default = "defaults::connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// TCP: a connection with no traffic either way for this long is
    /// closed. HTTP: once a request or response body streams, a side that
    /// moves no data for this long is cut (the keep-alive wait for the next
    /// request is `header_timeout_ms`).
    #[serde(default = "defaults::idle_timeout_ms")]
    pub idle_timeout_ms: u64,
    /// HTTP: time allowed for a client to send a complete request head
    /// (the slowloris guard).
    #[serde(default = "defaults::header_timeout_ms")]
    pub header_timeout_ms: u64,
    /// HTTP: time allowed for a backend to start its response (504 after).
    #[serde(default = "defaults::response_timeout_ms")]
    pub response_timeout_ms: u64,
    /// HTTP: a tunnel (a WebSocket or other `Upgrade` after its `101`)
    /// with no data either way for this long is closed, as HAProxy's
    /// `timeout tunnel`.
    #[serde(default = "defaults::tunnel_timeout_ms")]
    pub tunnel_timeout_ms: u64,
    /// Extra backends tried when one fails, when retrying is safe.
    #[serde(default = "defaults::retries")]
    pub retries: u32,
    /// `http` only: answer every request with a redirect to the same host
    /// and path over HTTPS (port 443): 301 for GET and HEAD, 308 for the
    /// rest (their method and body kept).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub redirect_https: bool,
    /// `http` only: also accept HTTP/2 in clear text from clients that
    /// start with its preface (prior knowledge, `curl
    /// --http2-prior-knowledge`, gRPC clients without TLS). `https`
    /// frontends offer HTTP/2 by ALPN always.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub h2c: bool,
    /// `http` and `https`: requests no route takes are shared between
    /// pools by weight (a canary; `ctl traffic shift` sets it); `pool` must
    /// be one of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub split: Vec<SplitArm>,
    /// `http` and `https`: requests per client address, per node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
}

/// A token bucket per client address: `requests_per_second` refill it,
/// `burst` is its size. Each node keeps its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Sustained requests per second.
    pub requests_per_second: u32,
    /// Requests allowed at once above the rate.
    pub burst: u32,
}

/// Which layer a frontend balances at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// HTTP/1.1, routed and balanced per request.
    Http,
    /// HTTPS: TLS terminated with the cluster's certificates (`ctl cert`,
    /// chosen by SNI), then served as `http` with `X-Forwarded-Proto:
    /// https`.
    Https,
    /// Raw TCP, balanced per connection.
    Tcp,
    /// TLS terminated with the cluster's certificates, then the plain
    /// bytes relayed as `tcp` does.
    Tls,
}

/// One HTTP routing rule; a rule with both fields needs both to match.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSpec {
    /// Host to match, without port, compared case-insensitively.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Path prefix to match, starting with `/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_prefix: Option<String>,
    /// `tcp` frontends: the server name (SNI) of the client's TLS
    /// ClientHello, exact or `*.example.com`; the connection is passed
    /// through to the pool undecrypted (as HAProxy's `req.ssl_sni`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sni: Option<String>,
    /// A request header to match: present, equal to a value, or starting
    /// with a prefix (the name compared case-insensitively, the value as
    /// it is).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<HeaderMatch>,
    /// Pool that serves matching requests (empty with `split`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub pool: String,
    /// Instead of `pool`: matching requests shared between pools by
    /// weight (a canary).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub split: Vec<SplitArm>,
    /// A query parameter to match, as `header` (the value compared after
    /// percent-decoding).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<HeaderMatch>,
    /// Request methods to match (any of them), upper case.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    /// Client networks to match (any of them), as CIDR: `10.0.0.0/8`,
    /// `2001:db8::/32`, or one address.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub source: Vec<String>,
    /// Headers changed on matching requests before they are sent on.
    #[serde(default, skip_serializing_if = "HeaderRewrite::is_empty")]
    pub request_headers: HeaderRewrite,
    /// Headers changed on their responses before they reach the client.
    #[serde(default, skip_serializing_if = "HeaderRewrite::is_empty")]
    pub response_headers: HeaderRewrite,
    /// Instead of a pool: answer with this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub respond: Option<FixedResponse>,
    /// Instead of a pool: redirect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect: Option<Redirect>,
    /// A per-client rate limit for matching requests, besides the
    /// frontend's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
}

/// A route's header condition: one of `value`, `prefix`, `present`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderMatch {
    /// The header's name.
    pub name: String,
    /// The whole value must be this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// The value must start with this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// The header must be there (any value).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub present: bool,
}

/// One pool of a split and its share.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitArm {
    /// The pool.
    pub pool: String,
    /// Its weight; the shares are the weights over their sum.
    pub weight: u32,
}

/// A set of interchangeable backends and how to choose among them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolSpec {
    /// Unique name.
    pub name: String,
    /// Balancing algorithm.
    #[serde(default)]
    pub algorithm: Algorithm,
    /// Maglev only: `source_ip`, `header:NAME` or `cookie:NAME`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash_key: Option<String>,
    /// Active health-check settings.
    #[serde(default)]
    pub health: HealthSpec,
    /// The backends, in file order.
    #[serde(default, rename = "backend")]
    pub backends: Vec<BackendSpec>,
    /// `[pool.tls]`: the backends speak TLS (traffic and health checks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<PoolTlsSpec>,
    /// What HTTP frontends speak to the backends: `http1`, `h2` (HTTP/2
    /// over TLS, with `[pool.tls]`) or `h2c` (HTTP/2 in clear text). gRPC
    /// backends need `h2` or `h2c`.
    #[serde(default, skip_serializing_if = "PoolProtocol::is_default")]
    pub protocol: PoolProtocol,
    /// `[pool.sticky]`: HTTP frontends pin a client to the backend that
    /// first served it, by a cookie the balancer inserts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sticky: Option<StickySpec>,
    /// `[pool.discovery]`: more backends, taken from DNS by the leader.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discovery: Option<super::DiscoverySpec>,
}

/// `[pool.sticky]`: as HAProxy's `cookie NAME insert indirect httponly`.
/// The cookie names the backend by an opaque id (the same on every node),
/// is set on the answer that chose the backend, and is taken off requests
/// before they reach the backend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StickySpec {
    /// The cookie's name.
    pub cookie: String,
    /// Sign the cookie (with keys the cluster derives from its
    /// session-ticket keys), so a client cannot choose a backend by writing
    /// the cookie itself.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub signed: bool,
    /// `HttpOnly` on the cookie (default true).
    #[serde(default = "defaults::yes")]
    pub http_only: bool,
    /// `Secure` on the cookie: always (true), or only for clients that
    /// came over HTTPS (false, the default).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub secure: bool,
    /// `SameSite`: `Strict`, `Lax` or `None`; absent, not sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub same_site: Option<String>,
    /// `Max-Age` in seconds; absent, a session cookie.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age_s: Option<u64>,
    /// How long a draining backend keeps the clients pinned to it, in
    /// seconds from when the drain began (each node's clock); after it,
    /// they are sent elsewhere and pinned again, so the drain can end.
    #[serde(
        default = "defaults::sticky_drain_timeout_s",
        skip_serializing_if = "defaults::is_sticky_drain_timeout_s"
    )]
    pub drain_timeout_s: u64,
}

/// The HTTP version a pool's backends are spoken to in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PoolProtocol {
    /// HTTP/1.1, one request at a time per pooled connection.
    #[default]
    Http1,
    /// HTTP/2 over TLS (the pool needs `[pool.tls]`), many requests per
    /// connection.
    H2,
    /// HTTP/2 in clear text, by prior knowledge.
    H2c,
}

impl PoolProtocol {
    fn is_default(&self) -> bool {
        *self == PoolProtocol::Http1
    }

    /// Whether requests go as HTTP/2.
    pub fn is_h2(self) -> bool {
        self != PoolProtocol::Http1
    }
}

/// `[pool.tls]`: how the nodes speak TLS to a pool's backends, as HAProxy's
/// `ssl verify required ca-file … sni …` on a `server` line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolTlsSpec {
    /// How the backends' certificates are verified: `system` (the
    /// system's roots, the default), `none` (any certificate, as HAProxy's
    /// `verify none`: encrypted, not authenticated), or a PEM file of CA
    /// certificates. A file is read where the file that names it is read
    /// (`ctl apply`, the seed), relative to that file, into `ca_pem`: every
    /// node verifies against the same roots.
    #[serde(default = "defaults::verify")]
    pub verify: String,
    /// The CA certificates (PEM) read from the `verify` file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_pem: Option<String>,
    /// Name sent as SNI and verified in each backend's certificate; without
    /// it, the certificate must name the backend's IP address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sni: Option<String>,
    /// A client certificate for backends that ask for one: the name of a
    /// certificate in the cluster's store (`ctl cert add`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificate: Option<String>,
}

impl PoolTlsSpec {
    /// `verify` names a CA file (not `system` nor `none`).
    pub fn verifies_with_a_ca_file(&self) -> bool {
        !matches!(self.verify.as_str(), "system" | "none")
    }
}

/// Balancing algorithms, named as in `cluster.toml`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Algorithm {
    /// Each backend in turn.
    #[default]
    RoundRobin,
    /// Smooth weighted round robin, as nginx does it.
    WeightedRoundRobin,
    /// Fewest active connections relative to weight.
    LeastConnections,
    /// Power of two random choices on outstanding requests.
    P2c,
    /// Random, in proportion to weight.
    Random,
    /// Consistent hashing through a Maglev lookup table.
    Maglev,
}

/// How backends of a pool are probed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthSpec {
    /// Kind of probe.
    #[serde(default)]
    pub check: CheckKind,
    /// HTTP probe path.
    #[serde(default = "defaults::health_path")]
    pub path: String,
    /// Time between probes.
    #[serde(default = "defaults::interval_ms")]
    pub interval_ms: u64,
    /// Time a probe may take.
    #[serde(default = "defaults::probe_timeout_ms")]
    pub timeout_ms: u64,
    /// Consecutive successes that bring a backend up.
    #[serde(default = "defaults::rise")]
    pub rise: u32,
    /// Consecutive failures that take a backend down.
    #[serde(default = "defaults::fall")]
    pub fall: u32,
    /// HTTP probe: statuses that count as healthy, `LOW-HIGH` or one code.
    #[serde(default = "defaults::expect_status")]
    pub expect_status: String,
    /// HTTP probe: `Host` header to send (default: the backend address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// gRPC probe: the service whose health is asked ("" or absent: the
    /// server as a whole).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc_service: Option<String>,
    /// Passive: 5xx answers in a row that eject a backend from this node's
    /// traffic (a refused connect ejects at once).
    #[serde(default = "defaults::eject_5xx_after")]
    pub eject_5xx_after: u32,
    /// Passive: most of a pool that may be ejected at once, in percent.
    #[serde(default = "defaults::max_ejected_percent")]
    pub max_ejected_percent: u32,
    /// A backend that comes back ramps from a small share to its full
    /// weight over this time (weighted algorithms; 0 = at once).
    #[serde(default)]
    pub slow_start_ms: u64,
}

impl Default for HealthSpec {
    fn default() -> Self {
        HealthSpec {
            check: CheckKind::default(),
            path: defaults::health_path(),
            interval_ms: defaults::interval_ms(),
            timeout_ms: defaults::probe_timeout_ms(),
            rise: defaults::rise(),
            fall: defaults::fall(),
            expect_status: defaults::expect_status(),
            host: None,
            grpc_service: None,
            eject_5xx_after: defaults::eject_5xx_after(),
            max_ejected_percent: defaults::max_ejected_percent(),
            slow_start_ms: 0,
        }
    }
}

/// Kinds of active health check.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckKind {
    /// `GET path`, healthy on 2xx and 3xx (over HTTP/2 for `h2` and `h2c`
    /// pools).
    Http,
    /// A TCP connect.
    Tcp,
    /// gRPC's health protocol (`grpc.health.v1.Health/Check`) over HTTP/2,
    /// healthy when the backend answers `SERVING` for `grpc_service`
    /// (default "": the server as a whole).
    Grpc,
    /// No active checks; only passive ejection from real traffic.
    #[default]
    None,
}

/// One backend server of a pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendSpec {
    /// `IP:PORT`.
    pub address: String,
    /// Relative share of traffic for the weighted algorithms, 1 to 256.
    #[serde(default = "defaults::weight")]
    pub weight: u32,
    /// Whether the backend takes new traffic.
    #[serde(default)]
    pub admin_state: AdminState,
    /// The DNS name this backend was found under (`[pool.discovery]`);
    /// absent for a backend the operator wrote. Discovered backends belong
    /// to the discovery: a configuration applied keeps the current ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discovered: Option<String>,
}

/// An operator's decision about a backend, independent of its health.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdminState {
    /// Takes traffic.
    #[default]
    Active,
    /// Takes no new connections or requests; open ones finish.
    Draining,
    /// Takes no traffic at all.
    Disabled,
}

impl AdminState {
    /// The name used in files, the API and `/status`.
    pub fn as_str(self) -> &'static str {
        match self {
            AdminState::Active => "active",
            AdminState::Draining => "draining",
            AdminState::Disabled => "disabled",
        }
    }
}

impl Algorithm {
    /// The name used in files and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::RoundRobin => "round_robin",
            Algorithm::WeightedRoundRobin => "weighted_round_robin",
            Algorithm::LeastConnections => "least_connections",
            Algorithm::P2c => "p2c",
            Algorithm::Random => "random",
            Algorithm::Maglev => "maglev",
        }
    }
}

impl CheckKind {
    /// The name used in files and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckKind::Http => "http",
            CheckKind::Tcp => "tcp",
            CheckKind::Grpc => "grpc",
            CheckKind::None => "none",
        }
    }
}

impl PoolProtocol {
    /// The name used in files and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            PoolProtocol::Http1 => "http1",
            PoolProtocol::H2 => "h2",
            PoolProtocol::H2c => "h2c",
        }
    }
}

impl Protocol {
    /// The name used in files and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::Https => "https",
            Protocol::Tcp => "tcp",
            Protocol::Tls => "tls",
        }
    }

    /// Whether requests are routed and balanced one by one (HTTP, with or
    /// without TLS).
    pub fn is_http(self) -> bool {
        matches!(self, Protocol::Http | Protocol::Https)
    }
}

/// Defaults chosen to match what HAProxy and nginx operators expect: the
/// one place they are written, used by the file format (serde) and by the
/// API conversion alike.
pub mod defaults {
    pub fn verify() -> String {
        "system".into()
    }
    pub fn max_connections() -> u32 {
        10_000
    }
    pub fn connect_timeout_ms() -> u64 {
        3_000
    }
    pub fn idle_timeout_ms() -> u64 {
        60_000
    }
    pub fn header_timeout_ms() -> u64 {
        10_000
    }
    pub fn response_timeout_ms() -> u64 {
        30_000
    }
    pub fn tunnel_timeout_ms() -> u64 {
        3_600_000
    }
    pub fn yes() -> bool {
        true
    }
    /// Ten minutes: longer than most sessions' next click, short enough
    /// that a drain ends the same hour.
    pub fn sticky_drain_timeout_s() -> u64 {
        600
    }
    /// Left out when written (the Raft log, `ctl get`): nodes of earlier
    /// versions read the configuration as long as the field is not set.
    pub fn is_sticky_drain_timeout_s(value: &u64) -> bool {
        *value == sticky_drain_timeout_s()
    }
    pub fn retries() -> u32 {
        2
    }
    pub fn health_path() -> String {
        "/healthz".to_string()
    }
    pub fn interval_ms() -> u64 {
        1_000
    }
    pub fn probe_timeout_ms() -> u64 {
        500
    }
    pub fn rise() -> u32 {
        2
    }
    pub fn fall() -> u32 {
        3
    }
    pub fn weight() -> u32 {
        1
    }
    pub fn expect_status() -> String {
        "200-399".to_string()
    }
    pub fn eject_5xx_after() -> u32 {
        5
    }
    pub fn max_ejected_percent() -> u32 {
        50
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_interface_example() {
        let text = r#"
[[frontend]]
name     = "web"
port     = 8080
protocol = "http"
pool     = "web"
  [[frontend.route]]
  host        = "api.example.com"
  path_prefix = "/v1/"
  pool        = "api"

[[pool]]
name      = "web"
algorithm = "round_robin"
  [pool.health]
  check       = "http"
  path        = "/healthz"
  interval_ms = 1000
  timeout_ms  = 500
  rise        = 2
  fall        = 3
  [[pool.backend]]
  address = "127.0.0.1:9001"
  weight  = 1

[[pool]]
name      = "api"
algorithm = "maglev"
hash_key  = "source_ip"
  [[pool.backend]]
  address = "127.0.0.1:9101"
"#;
        let spec: ClusterSpec = toml::from_str(text).expect("example parses");
        assert_eq!(spec.frontends[0].routes[0].pool, "api");
        assert_eq!(spec.pools[0].health.check, CheckKind::Http);
        assert_eq!(spec.pools[1].algorithm, Algorithm::Maglev);
        assert_eq!(spec.pools[1].backends[0].weight, 1);
        assert_eq!(spec.frontends[0].retries, 2);
    }

    #[test]
    fn names_match_the_file_format() {
        use serde_json::Value;
        let name = |v: Value| v.as_str().map(str::to_string);
        for a in [
            Algorithm::RoundRobin,
            Algorithm::WeightedRoundRobin,
            Algorithm::LeastConnections,
            Algorithm::P2c,
            Algorithm::Random,
            Algorithm::Maglev,
        ] {
            assert_eq!(
                name(serde_json::to_value(a).expect("json")).as_deref(),
                Some(a.as_str())
            );
        }
        for c in [CheckKind::Http, CheckKind::Tcp, CheckKind::None] {
            assert_eq!(
                name(serde_json::to_value(c).expect("json")).as_deref(),
                Some(c.as_str())
            );
        }
        for s in [
            AdminState::Active,
            AdminState::Draining,
            AdminState::Disabled,
        ] {
            assert_eq!(
                name(serde_json::to_value(s).expect("json")).as_deref(),
                Some(s.as_str())
            );
        }
    }

    #[test]
    fn unknown_fields_are_refused() {
        let err = toml::from_str::<ClusterSpec>("[[pool]]\nname = \"a\"\nalgoritm = \"p2c\"\n")
            .expect_err("typo must be refused");
        assert!(err.to_string().contains("algoritm"), "{err}");
    }
}
