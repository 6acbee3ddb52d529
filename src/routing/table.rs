//! `RoutingTable`: a `ClusterState` compiled for the hot path. Names are
//! resolved to indices, addresses are parsed, balancers are built; nothing
//! in it changes after it is built.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use http::uri::Authority;

use super::route_match::{Conditions, HeaderEdits, LocalAnswer, RequestFacts};
use super::runtime::PoolRuntime;
use super::{BackendRuntime, FrontendStats, RateLimiter, Runtimes, Split, now_ms};
use crate::balance::{self, Balancer, PickContext, hash_bytes};
use crate::config::CheckKind;
use crate::config::{AdminState, Algorithm, FrontendSpec, HealthSpec, RateLimit};
use crate::state::certificates::{Certificates, StoredCertificate};
use crate::state::{ClusterState, HashKey, StateError, parse_backend_address, parse_hash_key};
use crate::tls::backend::BackendTls;

/// Everything the engine needs to route, compiled from one state version.
#[derive(Debug)]
pub struct RoutingTable {
    /// The configuration version this table was compiled from.
    pub version: u64,
    /// Frontends in configuration order.
    pub frontends: Vec<Frontend>,
    /// Pools in configuration order; a pool whose configuration did not
    /// change is shared with the previous table, balancer position and all.
    pub pools: Vec<Arc<Pool>>,
    /// The certificates `https` frontends serve, by SNI.
    pub certificates: Arc<crate::tls::frontend::CertificateSet>,
    by_name: HashMap<String, usize>,
}

/// A compiled frontend.
#[derive(Debug)]
pub struct Frontend {
    /// The frontend as configured.
    pub spec: FrontendSpec,
    /// Index of the default pool.
    pub default_pool: usize,
    /// `split`: requests no route takes go by these weights instead.
    pub default_split: Option<Split>,
    /// Routes in match order.
    pub routes: Vec<Route>,
    /// Live counters.
    pub stats: Arc<FrontendStats>,
}

/// A compiled HTTP route.
#[derive(Debug)]
pub struct Route {
    /// Lower-cased host to match.
    pub host: Option<String>,
    /// Path prefix to match.
    pub path_prefix: Option<String>,
    /// Lower-cased server name to match (`tcp`: SNI passthrough); a
    /// wildcard as `*.example.com`.
    pub sni: Option<String>,
    /// Header, query, method and source conditions.
    pub conditions: Conditions,
    /// Index of the pool (with `split`: its first arm's; with an answer of
    /// its own: the frontend's).
    pub pool: usize,
    /// Matching requests shared between pools by weight.
    pub split: Option<Split>,
    /// `respond` or `redirect`: answered without a backend.
    pub answer: Option<LocalAnswer>,
    /// `request_headers`.
    pub request_edits: Option<HeaderEdits>,
    /// `response_headers`.
    pub response_edits: Option<HeaderEdits>,
    /// `rate_limit`, and the buckets of its clients on this node.
    pub rate_limit: Option<(RateLimit, Arc<RateLimiter>)>,
}

/// Where a request goes: the route it matched, if any, and the pool or
/// split that serves it.
#[derive(Debug, Clone, Copy)]
pub struct Routed<'a> {
    /// The matching route (`None`: the frontend's own pool or split).
    pub route: Option<&'a Route>,
    /// The pool, if no split decides.
    pub pool: usize,
    /// The split that decides, if any.
    pub split: Option<&'a Split>,
}

/// A compiled pool with its balancer.
#[derive(Debug)]
pub struct Pool {
    /// Pool name.
    pub name: String,
    /// Balancing algorithm.
    pub algorithm: Algorithm,
    /// Maglev affinity key.
    pub hash_key: Option<HashKey>,
    /// Health-check settings.
    pub health: HealthSpec,
    /// Backends in configuration order; balancer indices point here.
    pub backends: Vec<Backend>,
    /// Live state of the pool (panic mode).
    pub runtime: Arc<PoolRuntime>,
    /// `[pool.tls]`: how its backends are spoken to over TLS.
    pub tls: Option<Arc<BackendTls>>,
    /// The HTTP version spoken to its backends.
    pub protocol: crate::config::PoolProtocol,
    /// `[pool.sticky]`: the cookie that pins clients to backends.
    pub sticky: Option<crate::config::StickySpec>,
    /// Backend indices by sticky id (`[pool.sticky]` only).
    by_sticky_id: HashMap<String, usize>,
    /// The configuration this pool was compiled from.
    source: crate::config::PoolSpec,
    /// The client certificate it was compiled with (`[pool.tls]`), as
    /// committed: a replaced one makes the pool compile again.
    client_certificate: Option<StoredCertificate>,
    balancer: Box<dyn Balancer>,
}

/// A compiled backend.
#[derive(Debug)]
pub struct Backend {
    /// Where to connect.
    pub address: SocketAddr,
    /// Its id in sticky cookies: the same on every node, and no address
    /// shown to clients.
    pub sticky_id: String,
    /// `address` as an HTTP authority, built once.
    pub authority: Authority,
    /// Relative weight.
    pub weight: u32,
    /// The operator's admin state.
    pub admin_state: AdminState,
    /// Live counters and passive health, shared across tables.
    pub runtime: Arc<BackendRuntime>,
}

impl RoutingTable {
    /// An empty table (before any configuration is known).
    pub fn empty() -> Self {
        RoutingTable {
            version: 0,
            frontends: Vec::new(),
            pools: Vec::new(),
            certificates: Arc::default(),
            by_name: HashMap::new(),
        }
    }

    /// Compiles a state; `runtimes` supplies the live objects that persist
    /// across tables. Pools whose configuration is the same as in
    /// `previous` are taken over from it as they are, so a change to one
    /// pool costs that pool's compile and keeps every other pool's
    /// balancer. The state is valid, so errors here mean a bug, but they
    /// are reported rather than panicking.
    pub fn compile(
        state: &ClusterState,
        runtimes: &Runtimes,
        previous: Option<&RoutingTable>,
    ) -> Result<Self, StateError> {
        let spec = &state.spec;
        let reusable: HashMap<&str, &Arc<Pool>> = previous
            .map(|t| t.pools.iter().map(|p| (p.name.as_str(), p)).collect())
            .unwrap_or_default();
        let mut pools = Vec::with_capacity(spec.pools.len());
        for pool in &spec.pools {
            let certificate = client_certificate(pool, &state.certificates);
            match reusable.get(pool.name.as_str()) {
                Some(same) if same.source == *pool && same.client_certificate == certificate => {
                    pools.push(Arc::clone(same))
                }
                _ => pools.push(Arc::new(Pool::compile(
                    pool,
                    runtimes,
                    &state.certificates,
                    certificate,
                )?)),
            }
        }
        let pool_index = |field: String, name: &str| {
            pools
                .iter()
                .position(|p| p.name == name)
                .ok_or_else(|| StateError::invalid(field, name, "no pool has this name"))
        };
        let mut frontends = Vec::with_capacity(spec.frontends.len());
        for frontend in &spec.frontends {
            let mut routes = Vec::with_capacity(frontend.routes.len());
            for (i, route) in frontend.routes.iter().enumerate() {
                let field = |name: &str| format!("frontend[{}].route[{i}].{name}", frontend.name);
                let split = Split::compile(&field("split"), &route.split, &pool_index)?;
                let answer = LocalAnswer::compile(route);
                let first = match route.split.first() {
                    Some(arm) => &arm.pool,
                    None if answer.is_some() => &frontend.pool,
                    None => &route.pool,
                };
                let stats = runtimes.frontend(&frontend.name);
                routes.push(Route {
                    host: route.host.as_ref().map(|h| h.to_ascii_lowercase()),
                    path_prefix: route.path_prefix.clone(),
                    sni: route.sni.as_ref().map(|s| s.to_ascii_lowercase()),
                    conditions: Conditions::compile(route),
                    pool: pool_index(field("pool"), first)?,
                    split,
                    answer,
                    request_edits: HeaderEdits::compile(&route.request_headers),
                    response_edits: HeaderEdits::compile(&route.response_headers),
                    rate_limit: route
                        .rate_limit
                        .map(|limit| (limit, stats.route_limiter(i))),
                });
            }
            frontends.push(Frontend {
                default_pool: pool_index(
                    format!("frontend[{}].pool", frontend.name),
                    &frontend.pool,
                )?,
                default_split: Split::compile(
                    &format!("frontend[{}].split", frontend.name),
                    &frontend.split,
                    &pool_index,
                )?,
                spec: frontend.clone(),
                routes,
                stats: runtimes.frontend(&frontend.name),
            });
        }
        let by_name = frontends
            .iter()
            .enumerate()
            .map(|(i, f)| (f.spec.name.clone(), i))
            .collect();
        let configured: std::collections::HashSet<(&str, SocketAddr)> = pools
            .iter()
            .flat_map(|p| p.backends.iter().map(move |b| (p.name.as_str(), b.address)))
            .collect();
        runtimes.retain_backends(|pool, address| configured.contains(&(pool, address)));
        Ok(RoutingTable {
            version: state.version,
            frontends,
            pools,
            certificates: crate::tls::frontend::CertificateSet::compile(
                &state.certificates,
                previous.map(|p| &p.certificates),
            ),
            by_name,
        })
    }

    /// The frontend called `name`, if it is still configured.
    pub fn frontend(&self, name: &str) -> Option<&Frontend> {
        self.by_name.get(name).map(|&i| &self.frontends[i])
    }

    /// The pool at `index`.
    pub fn pool(&self, index: usize) -> &Pool {
        &self.pools[index]
    }
}

impl Frontend {
    /// Where a request goes: the first route whose conditions all hold
    /// (host, path prefix, header, query, method, source network), else
    /// the frontend's own pool or split.
    pub fn route(&self, facts: &RequestFacts<'_>) -> Routed<'_> {
        let matched = self.routes.iter().find(|route| {
            let host_ok = match (&route.host, facts.host) {
                (None, _) => true,
                (Some(want), Some(got)) => want.eq_ignore_ascii_case(got),
                (Some(_), None) => false,
            };
            host_ok
                && route
                    .path_prefix
                    .as_deref()
                    .is_none_or(|p| facts.path.starts_with(p))
                && route.conditions.hold(facts)
        });
        match matched {
            Some(route) => Routed {
                route: Some(route),
                pool: route.pool,
                split: route.split.as_ref(),
            },
            None => Routed {
                route: None,
                pool: self.default_pool,
                split: self.default_split.as_ref(),
            },
        }
    }

    /// The pool for a TLS ClientHello naming `sni` (a `tcp` frontend's SNI
    /// routes): an exact name, then a wildcard, else the default pool.
    pub fn pool_for_sni(&self, sni: Option<&str>) -> usize {
        let Some(sni) = sni.map(|s| s.trim_end_matches('.').to_ascii_lowercase()) else {
            return self.default_pool;
        };
        let parent = sni.split_once('.').map(|(_, parent)| parent);
        let exact = self
            .routes
            .iter()
            .find(|r| r.sni.as_deref() == Some(sni.as_str()));
        let wildcard = || {
            self.routes.iter().find(|r| {
                r.sni
                    .as_deref()
                    .and_then(|s| s.strip_prefix("*."))
                    .is_some_and(|w| Some(w) == parent)
            })
        };
        exact
            .or_else(wildcard)
            .map_or(self.default_pool, |r| r.pool)
    }

    /// Whether the frontend balances HTTP.
    pub fn is_http(&self) -> bool {
        self.spec.protocol.is_http()
    }
}

/// The certificate `pool`'s `[pool.tls]` presents to its backends, if any.
fn client_certificate(
    pool: &crate::config::PoolSpec,
    certificates: &Certificates,
) -> Option<StoredCertificate> {
    let name = pool.tls.as_ref()?.client_certificate.as_ref()?;
    certificates.get(name).cloned()
}

/// A backend's id in sticky cookies: 16 hex digits of a SHA-256 of its
/// pool and address.
fn sticky_id(pool: &str, address: SocketAddr) -> String {
    let digest = ring::digest::digest(
        &ring::digest::SHA256,
        format!("raftlb sticky {pool} {address}").as_bytes(),
    );
    digest.as_ref()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Pool {
    /// The backend a sticky cookie names, if it is still one to send the
    /// client to: active or draining (a draining backend keeps the
    /// clients it has), and usable by this node's view.
    pub fn pinned(&self, id: &[u8]) -> Option<usize> {
        let index = *self.by_sticky_id.get(std::str::from_utf8(id).ok()?)?;
        let backend = &self.backends[index];
        let now = now_ms();
        let kept = match backend.admin_state {
            AdminState::Active => true,
            AdminState::Disabled => false,
            // Until the drain's deadline, by this node's clock.
            AdminState::Draining => {
                let deadline = self
                    .sticky
                    .as_ref()
                    .map_or(0, |s| s.drain_timeout_s.saturating_mul(1000));
                backend
                    .runtime
                    .draining_for_ms(now)
                    .is_none_or(|ms| ms < deadline)
            }
        };
        (kept && backend.runtime.is_usable(now)).then_some(index)
    }

    /// Whether a sticky cookie's id names one of its backends, whatever
    /// that backend's state (a split keeps such a client on this pool).
    pub fn has_sticky_id(&self, id: &[u8]) -> bool {
        std::str::from_utf8(id).is_ok_and(|id| self.by_sticky_id.contains_key(id))
    }

    /// Builds a pool and its balancer from its configuration.
    fn compile(
        pool: &crate::config::PoolSpec,
        runtimes: &Runtimes,
        certificates: &Certificates,
        client_certificate: Option<StoredCertificate>,
    ) -> Result<Pool, StateError> {
        let tls = match &pool.tls {
            None => None,
            Some(tls) => {
                let h2 = pool.protocol == crate::config::PoolProtocol::H2;
                Some(Arc::new(
                    BackendTls::compile(tls, certificates, h2).map_err(|why| {
                        StateError::invalid(format!("pool[{}].tls", pool.name), "", why)
                    })?,
                ))
            }
        };
        let mut backends = Vec::with_capacity(pool.backends.len());
        for backend in &pool.backends {
            let field = format!("pool[{}].backend[{}].address", pool.name, backend.address);
            let address = parse_backend_address(&field, &backend.address)?;
            let authority = Authority::try_from(address.to_string())
                .map_err(|_| StateError::invalid(field, &backend.address, "not an authority"))?;
            let runtime = runtimes.backend(&pool.name, address);
            runtime.note_draining(backend.admin_state == AdminState::Draining, now_ms());
            backends.push(Backend {
                address,
                sticky_id: sticky_id(&pool.name, address),
                authority,
                weight: backend.weight,
                admin_state: backend.admin_state,
                runtime,
            });
        }
        let names: Vec<String> = pool.backends.iter().map(|b| b.address.clone()).collect();
        let weights: Vec<u32> = backends.iter().map(|b| b.weight).collect();
        let hash_key = match &pool.hash_key {
            Some(key) => Some(parse_hash_key(
                &format!("pool[{}].hash_key", pool.name),
                key,
            )?),
            None => None,
        };
        if pool.health.check == CheckKind::None {
            for backend in &backends {
                backend.runtime.mark_unchecked();
            }
        }
        let by_sticky_id = if pool.sticky.is_some() {
            backends
                .iter()
                .enumerate()
                .map(|(i, b)| (b.sticky_id.clone(), i))
                .collect()
        } else {
            HashMap::new()
        };
        Ok(Pool {
            name: pool.name.clone(),
            algorithm: pool.algorithm,
            hash_key,
            health: pool.health.clone(),
            runtime: runtimes.pool(&pool.name),
            balancer: balance::build(pool.algorithm, &names, &weights),
            backends,
            tls,
            protocol: pool.protocol,
            sticky: pool.sticky.clone(),
            by_sticky_id,
            source: pool.clone(),
            client_certificate,
        })
    }

    /// Chooses a backend for a new connection or request, skipping those in
    /// `tried`. Only active backends are chosen, and of those the ones this
    /// node sees up and not ejected; a backend in slow start is taken with
    /// the share its ramp allows. If no backend is usable, the pool fails
    /// open across every active one (panic mode) rather than answering 503
    /// to everyone.
    pub fn pick(&self, key: Option<&[u8]>, client: IpAddr, tried: &[usize]) -> Option<usize> {
        let now = now_ms();
        let key = match key {
            Some(bytes) => hash_bytes(bytes),
            None => match client {
                IpAddr::V4(ip) => hash_bytes(&ip.octets()),
                IpAddr::V6(ip) => hash_bytes(&ip.octets()),
            },
        };
        let slow_start = self.health.slow_start_ms;
        let outstanding = |i: usize| self.backends[i].runtime.active.get().max(0) as u64;
        let eligible =
            |i: usize| self.backends[i].admin_state == AdminState::Active && !tried.contains(&i);
        let usable = |i: usize| {
            let runtime = &self.backends[i].runtime;
            eligible(i)
                && runtime.is_usable(now)
                && (slow_start == 0 || {
                    let share = runtime.slow_start_factor(now, slow_start);
                    share >= 1.0 || fastrand::f64() < share
                })
        };
        let ctx = PickContext {
            available: &usable,
            outstanding: &outstanding,
            key,
        };
        if let Some(index) = self.balancer.pick(&ctx) {
            self.runtime.set_panic(false);
            return Some(index);
        }
        // Slow start may have turned every usable backend down this time.
        let up = |i: usize| eligible(i) && self.backends[i].runtime.is_usable(now);
        let ctx = PickContext {
            available: &up,
            outstanding: &outstanding,
            key,
        };
        if let Some(index) = self.balancer.pick(&ctx) {
            return Some(index);
        }
        let ctx = PickContext {
            available: &eligible,
            outstanding: &outstanding,
            key,
        };
        let index = self.balancer.pick(&ctx)?;
        self.runtime.set_panic(true);
        Some(index)
    }

    /// Records a failed connect (`refused`: ejects at once) or a failed
    /// exchange, ejecting the backend from this node's traffic unless that
    /// would take out more than `max_ejected_percent` of the pool.
    pub fn record_failure(&self, index: usize, reason: &str) {
        let runtime = &self.backends[index].runtime;
        runtime.record_failure();
        self.eject(index, reason);
    }

    /// Records an answer; enough 5xx in a row eject the backend.
    pub fn record_answer(&self, index: usize, status: u16) {
        let runtime = &self.backends[index].runtime;
        if runtime.record_answer(status, self.health.eject_5xx_after) {
            self.eject(
                index,
                &format!("{} answers of 5xx in a row", self.health.eject_5xx_after),
            );
        }
    }

    fn eject(&self, index: usize, reason: &str) {
        let now = now_ms();
        let runtime = &self.backends[index].runtime;
        if runtime.is_ejected(now) {
            return;
        }
        let ejected = self
            .backends
            .iter()
            .filter(|b| b.runtime.is_ejected(now))
            .count();
        let allowed = self.backends.len() * self.health.max_ejected_percent as usize / 100;
        if ejected + 1 > allowed {
            tracing::debug!(pool = %self.name, backend = %runtime.address, ejected, allowed, "ejection cap reached");
            return;
        }
        runtime.eject(reason);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;
    use crate::state::Command;

    fn compiled(text: &str) -> RoutingTable {
        let mut state = ClusterState::default();
        state
            .dispatch(Command::ApplyConfig {
                spec: toml::from_str(text).expect("parses"),
                if_version: None,
                note: None,
            })
            .expect("valid");
        RoutingTable::compile(
            &state,
            &Runtimes::new(Arc::new(Metrics::new()), Default::default()),
            None,
        )
        .expect("compiles")
    }

    const TEXT: &str = r#"
[[frontend]]
name = "web"
port = 8080
protocol = "http"
pool = "web"
  [[frontend.route]]
  host = "API.example.com"
  path_prefix = "/v1/"
  pool = "api"
  [[frontend.route]]
  path_prefix = "/static/"
  pool = "static"

[[pool]]
name = "web"
  [[pool.backend]]
  address = "127.0.0.1:9001"
  [[pool.backend]]
  address = "127.0.0.1:9002"
  admin_state = "draining"
  [[pool.backend]]
  address = "127.0.0.1:9003"
  admin_state = "disabled"
[[pool]]
name = "api"
  [[pool.backend]]
  address = "127.0.0.1:9101"
[[pool]]
name = "static"
  [[pool.backend]]
  address = "127.0.0.1:9201"
"#;

    #[test]
    fn routes_by_host_and_prefix_first_match_wins() {
        let table = compiled(TEXT);
        let web = table.frontend("web").expect("frontend");
        let none = http::HeaderMap::new();
        let pool = |host, path| {
            let facts = RequestFacts {
                host,
                path,
                query: None,
                method: &http::Method::GET,
                headers: &none,
                client: IpAddr::from([127, 0, 0, 1]),
            };
            table.pool(web.route(&facts).pool).name.as_str()
        };
        assert_eq!(pool(Some("api.example.com"), "/v1/users"), "api");
        assert_eq!(pool(Some("api.example.com"), "/v2/users"), "web");
        assert_eq!(pool(Some("other"), "/v1/users"), "web");
        assert_eq!(pool(None, "/static/app.js"), "static");
        assert_eq!(pool(Some("api.example.com"), "/static/x"), "static");
    }

    #[test]
    fn only_active_backends_are_picked() {
        let table = compiled(TEXT);
        let web = &table.pools[0];
        let client = IpAddr::from([127, 0, 0, 1]);
        for _ in 0..10 {
            assert_eq!(web.pick(None, client, &[]), Some(0));
        }
        assert_eq!(web.pick(None, client, &[0]), None);
    }

    #[test]
    fn ejection_is_capped_and_a_pool_with_no_healthy_backend_fails_open() {
        let text = TEXT
            .replace("  admin_state = \"draining\"\n", "")
            .replace("  admin_state = \"disabled\"\n", "");
        let table = compiled(&text);
        let web = &table.pools[0];
        let client = IpAddr::from([127, 0, 0, 1]);
        web.record_failure(0, "test");
        for _ in 0..10 {
            assert_ne!(
                web.pick(None, client, &[]),
                Some(0),
                "an ejected backend was picked"
            );
        }
        // At most half of the three may be ejected: the second stays in.
        web.record_failure(1, "test");
        assert!(!web.backends[1].runtime.is_ejected(now_ms()));
        // Every backend down by its checks: fail open, and count it.
        for backend in &web.backends {
            backend.runtime.record_check(Err("test".into()), 1, 1);
        }
        assert!(web.pick(None, client, &[]).is_some());
        assert_eq!(web.runtime.panic_picks.get(), 1);
    }

    #[test]
    fn an_unchecked_backend_gets_traffic_only_after_passing() {
        let text = TEXT.replace("  admin_state = \"draining\"\n", "").replace(
            "[[pool]]\nname = \"web\"\n",
            "[[pool]]\nname = \"web\"\n  [pool.health]\n  check = \"tcp\"\n  rise = 2\n",
        );
        let table = compiled(&text);
        let web = &table.pools[0];
        let client = IpAddr::from([127, 0, 0, 1]);
        web.backends[0].runtime.record_check(Ok(()), 2, 3);
        web.backends[0].runtime.record_check(Ok(()), 2, 3);
        web.backends[1].runtime.record_check(Ok(()), 2, 3);
        for _ in 0..10 {
            assert_eq!(
                web.pick(None, client, &[]),
                Some(0),
                "only the backend that passed twice"
            );
        }
    }

    #[test]
    fn slow_start_ramps_a_returning_backend_up() {
        let text = TEXT
            .replace("  admin_state = \"draining\"\n", "")
            .replace("  admin_state = \"disabled\"\n", "")
            .replace(
                "[[pool]]\nname = \"web\"\n",
                "[[pool]]\nname = \"web\"\n  [pool.health]\n  check = \"tcp\"\n  rise = 1\n  fall = 1\n  slow_start_ms = 60000\n",
            );
        let table = compiled(&text);
        let web = &table.pools[0];
        for backend in &web.backends {
            backend.runtime.record_check(Ok(()), 1, 1);
        }
        // Backend 0 goes down and comes back: it starts at a tenth of its share.
        web.backends[0]
            .runtime
            .record_check(Err("test".into()), 1, 1);
        web.backends[0].runtime.record_check(Ok(()), 1, 1);
        let factor = web.backends[0].runtime.slow_start_factor(now_ms(), 60_000);
        assert!((0.1..0.2).contains(&factor), "{factor}");
        let client = IpAddr::from([127, 0, 0, 1]);
        let picks = 30_000;
        let zero = (0..picks)
            .filter(|_| web.pick(None, client, &[]) == Some(0))
            .count();
        let share = zero as f64 / picks as f64;
        // Full share would be a third; at about 10 % of its weight it gets
        // roughly a thirtieth.
        assert!(share < 0.1, "returning backend got {share:.3} of picks");
        assert!(share > 0.01, "returning backend got no traffic: {share:.3}");
    }

    #[test]
    fn runtimes_survive_a_recompile() {
        let runtimes = Runtimes::new(Arc::new(Metrics::new()), Default::default());
        let mut state = ClusterState::default();
        state
            .dispatch(Command::ApplyConfig {
                spec: toml::from_str(TEXT).expect("parses"),
                if_version: None,
                note: None,
            })
            .expect("valid");
        let first = RoutingTable::compile(&state, &runtimes, None).expect("compiles");
        first.pools[0].backends[0].runtime.active.inc();
        let second = RoutingTable::compile(&state, &runtimes, None).expect("compiles");
        assert_eq!(second.pools[0].backends[0].runtime.active.get(), 1);
    }

    #[test]
    fn round_robin_around_a_draining_backend_stays_even() {
        let text = TEXT.replace("admin_state = \"disabled\"", "admin_state = \"active\"");
        let table = compiled(&text);
        let web = &table.pools[0];
        assert_eq!(web.backends[1].admin_state, AdminState::Draining);
        let client = IpAddr::from([127, 0, 0, 1]);
        let mut counts = [0usize; 3];
        for _ in 0..1000 {
            counts[web.pick(None, client, &[]).expect("a backend")] += 1;
        }
        assert_eq!(counts[1], 0, "{counts:?}");
        assert!(
            counts[0].abs_diff(500) <= 20 && counts[2].abs_diff(500) <= 20,
            "{counts:?}"
        );
    }

    #[test]
    fn an_unchanged_pool_keeps_its_balancer_and_position() {
        let runtimes = Runtimes::new(Arc::new(Metrics::new()), Default::default());
        let text = TEXT
            .replace("  admin_state = \"draining\"\n", "")
            .replace("  admin_state = \"disabled\"\n", "");
        let mut state = ClusterState::default();
        state
            .dispatch(Command::ApplyConfig {
                spec: toml::from_str(&text).expect("parses"),
                if_version: None,
                note: None,
            })
            .expect("valid");
        let first = RoutingTable::compile(&state, &runtimes, None).expect("compiles");
        let client = IpAddr::from([127, 0, 0, 1]);
        let web = &first.pools[0];
        for backend in &web.backends {
            backend.runtime.record_check(Ok(()), 1, 1);
        }
        assert_eq!(web.pick(None, client, &[]), Some(0));
        state
            .dispatch(Command::SetWeight {
                pool: "api".into(),
                address: "127.0.0.1:9101".into(),
                weight: 7,
            })
            .expect("valid");
        let second = RoutingTable::compile(&state, &runtimes, Some(&first)).expect("compiles");
        assert!(Arc::ptr_eq(&first.pools[0], &second.pools[0]), "web kept");
        assert!(
            !Arc::ptr_eq(&first.pools[1], &second.pools[1]),
            "api rebuilt"
        );
        assert_eq!(second.pools[1].backends[0].weight, 7);
        // The rotation goes on where it was, not from the first backend.
        assert_eq!(second.pools[0].pick(None, client, &[]), Some(1));
    }
}
