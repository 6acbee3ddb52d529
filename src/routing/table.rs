//! `RoutingTable`: a `ClusterState` compiled for the hot path. Names are
//! resolved to indices, addresses are parsed, balancers are built; nothing
//! in it changes after it is built.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use super::pool::{Pool, client_certificate};
use super::route_match::{Conditions, HeaderEdits, LocalAnswer, RequestFacts};
use super::{FrontendStats, RateLimiter, Runtimes, Split};
use crate::config::{FrontendSpec, RateLimit};
use crate::state::{ClusterState, StateError};

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
                _ => pools.push(Arc::new(Pool::compile(pool, runtimes, state, certificate)?)),
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
            let stats = runtimes.frontend(&frontend.name);
            let mut routes = Vec::with_capacity(frontend.routes.len());
            let mut limited = Vec::new();
            for (i, route) in frontend.routes.iter().enumerate() {
                let field = |name: &str| format!("frontend[{}].route[{i}].{name}", frontend.name);
                let split = Split::compile(&field("split"), &route.split, &pool_index)?;
                let answer = LocalAnswer::compile(route);
                let first = match route.split.first() {
                    Some(arm) => &arm.pool,
                    None if answer.is_some() => &frontend.pool,
                    None => &route.pool,
                };
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
                    rate_limit: route.rate_limit.map(|limit| {
                        let identity = route_identity(route);
                        limited.push(identity);
                        (limit, stats.route_limiter(identity))
                    }),
                });
            }
            stats.keep_route_limiters(&limited);
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
                stats,
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

/// A route's identity for its rate limit's buckets: a hash of its
/// configuration.
fn route_identity(route: &crate::config::RouteSpec) -> u64 {
    crate::balance::hash_bytes(&serde_json::to_vec(route).unwrap_or_default())
}

#[cfg(test)]
impl RoutingTable {
    /// The table of a `cluster.toml` text, compiled as a node would (with
    /// fresh counters), for unit tests here and elsewhere.
    pub(crate) fn compiled_for_tests(text: &str) -> RoutingTable {
        let mut state = ClusterState::default();
        state
            .dispatch(crate::state::Command::ApplyConfig {
                spec: toml::from_str(text).expect("parses"),
                if_version: None,
                note: None,
            })
            .expect("valid");
        RoutingTable::compile(
            &state,
            &Runtimes::new(Arc::new(crate::metrics::Metrics::new()), Default::default()),
            None,
        )
        .expect("compiles")
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;
    use crate::config::AdminState;
    use crate::metrics::Metrics;
    use crate::routing::now_ms;
    use crate::state::Command;

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
        let table = RoutingTable::compiled_for_tests(TEXT);
        let web = table.frontend("web").expect("frontend");
        let none = http::HeaderMap::new();
        let pool = |host, path| {
            let facts = RequestFacts {
                host,
                path,
                query: None,
                method: &http::Method::GET,
                headers: crate::routing::HeaderView::Map(&none),
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
        let table = RoutingTable::compiled_for_tests(TEXT);
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
        let table = RoutingTable::compiled_for_tests(&text);
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
        let table = RoutingTable::compiled_for_tests(&text);
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
        let table = RoutingTable::compiled_for_tests(&text);
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
        let table = RoutingTable::compiled_for_tests(&text);
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
