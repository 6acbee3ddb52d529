//! What a route matches on besides host and path (a header, a query
//! parameter, the method, the client's network), what it changes (request
//! and response headers), what it answers by itself (a fixed response or a
//! redirect), and how a split shares requests between pools: compiled from
//! `[[frontend.route]]` and `split`.

use std::net::IpAddr;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};

use crate::config::{HeaderMatch, HeaderRewrite, RouteSpec};
use crate::state::StateError;

/// What a request brings that routes can match on.
#[derive(Debug, Clone, Copy)]
pub struct RequestFacts<'a> {
    /// The host asked for, without port.
    pub host: Option<&'a str>,
    /// The path, without query.
    pub path: &'a str,
    /// The query, without `?`.
    pub query: Option<&'a str>,
    /// The method.
    pub method: &'a Method,
    /// The request's headers.
    pub headers: super::HeaderView<'a>,
    /// The client's address.
    pub client: IpAddr,
}

/// How a header or query value is tested.
#[derive(Debug)]
enum ValueTest {
    Present,
    Equals(String),
    Prefix(String),
}

impl ValueTest {
    fn compile(spec: &HeaderMatch) -> ValueTest {
        match (&spec.value, &spec.prefix) {
            (Some(value), _) => ValueTest::Equals(value.clone()),
            (None, Some(prefix)) => ValueTest::Prefix(prefix.clone()),
            (None, None) => ValueTest::Present,
        }
    }

    fn accepts(&self, value: &[u8]) -> bool {
        match self {
            ValueTest::Present => true,
            ValueTest::Equals(want) => value == want.as_bytes(),
            ValueTest::Prefix(want) => value.starts_with(want.as_bytes()),
        }
    }
}

/// A compiled route header condition.
#[derive(Debug)]
pub struct HeaderCondition {
    name: HeaderName,
    test: ValueTest,
}

impl HeaderCondition {
    pub(super) fn compile(spec: &HeaderMatch) -> Option<HeaderCondition> {
        let name = HeaderName::from_bytes(spec.name.as_bytes()).ok()?;
        Some(HeaderCondition {
            name,
            test: ValueTest::compile(spec),
        })
    }

    /// Whether a request with `headers` meets it (any of the header's
    /// values may).
    pub(super) fn matches(&self, headers: super::HeaderView<'_>) -> bool {
        headers.any(self.name.as_str(), |value| self.test.accepts(value))
    }
}

/// A compiled query parameter condition.
#[derive(Debug)]
pub struct QueryCondition {
    name: String,
    test: ValueTest,
}

impl QueryCondition {
    fn compile(spec: &HeaderMatch) -> QueryCondition {
        QueryCondition {
            name: spec.name.clone(),
            test: ValueTest::compile(spec),
        }
    }

    /// Whether `query` has the parameter, with a value that passes (any of
    /// its values may; names and values percent-decoded, `+` a space).
    fn matches(&self, query: Option<&str>) -> bool {
        let Some(query) = query else {
            return false;
        };
        form_urlencoded::parse(query.as_bytes())
            .any(|(name, value)| name == self.name.as_str() && self.test.accepts(value.as_bytes()))
    }
}

/// Everything a route checks besides host, path and SNI; all must hold.
#[derive(Debug, Default)]
pub struct Conditions {
    header: Option<HeaderCondition>,
    query: Option<QueryCondition>,
    methods: Vec<Method>,
    source: Vec<ipnet::IpNet>,
}

impl Conditions {
    pub(super) fn compile(route: &RouteSpec) -> Conditions {
        Conditions {
            header: route.header.as_ref().and_then(HeaderCondition::compile),
            query: route.query.as_ref().map(QueryCondition::compile),
            // Validation has checked each entry; one that still does not
            // parse matches nothing rather than everything.
            methods: route
                .methods
                .iter()
                .map(|m| Method::from_bytes(m.as_bytes()).unwrap_or(Method::CONNECT))
                .collect(),
            source: route
                .source
                .iter()
                .map(|s| {
                    s.parse()
                        .ok()
                        .or_else(|| s.parse::<IpAddr>().ok().map(ipnet::IpNet::from))
                        .unwrap_or(NOTHING)
                })
                .collect(),
        }
    }

    pub(super) fn hold(&self, facts: &RequestFacts<'_>) -> bool {
        self.header
            .as_ref()
            .is_none_or(|h| h.matches(facts.headers))
            && self.query.as_ref().is_none_or(|q| q.matches(facts.query))
            && (self.methods.is_empty() || self.methods.contains(facts.method))
            && (self.source.is_empty()
                || self
                    .source
                    .iter()
                    .any(|n| n.contains(&canonical(facts.client))))
    }
}

/// A network no client comes from (`0.0.0.0/32`): what an entry that
/// does not parse matches.
const NOTHING: ipnet::IpNet = ipnet::IpNet::V4(
    match ipnet::Ipv4Net::new(std::net::Ipv4Addr::UNSPECIFIED, 32) {
        Ok(net) => net,
        Err(_) => panic!("a valid prefix"),
    },
);

/// An IPv4 client seen through an IPv6 socket (`::ffff:a.b.c.d`) as the
/// IPv4 address it is.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Compiled header changes: remove, then set, then add.
#[derive(Debug)]
pub struct HeaderEdits {
    remove: Vec<HeaderName>,
    set: Vec<(HeaderName, HeaderValue)>,
    add: Vec<(HeaderName, HeaderValue)>,
}

impl HeaderEdits {
    /// `None` when it changes nothing.
    pub(super) fn compile(spec: &HeaderRewrite) -> Option<HeaderEdits> {
        if spec.is_empty() {
            return None;
        }
        let pairs = |map: &std::collections::BTreeMap<String, String>| {
            map.iter()
                .filter_map(|(name, value)| {
                    Some((
                        HeaderName::from_bytes(name.as_bytes()).ok()?,
                        HeaderValue::from_str(value).ok()?,
                    ))
                })
                .collect()
        };
        Some(HeaderEdits {
            remove: spec
                .remove
                .iter()
                .filter_map(|n| HeaderName::from_bytes(n.as_bytes()).ok())
                .collect(),
            set: pairs(&spec.set),
            add: pairs(&spec.add),
        })
    }

    /// `compile`, for tests elsewhere in the crate.
    #[cfg(test)]
    pub fn compile_for_tests(spec: &HeaderRewrite) -> HeaderEdits {
        HeaderEdits::compile(spec).expect("a rewrite that changes something")
    }

    /// Header names it removes.
    pub fn removes(&self) -> &[HeaderName] {
        &self.remove
    }

    /// Headers it sets, replacing any value.
    pub fn sets(&self) -> &[(HeaderName, HeaderValue)] {
        &self.set
    }

    /// Headers it appends.
    pub fn adds(&self) -> &[(HeaderName, HeaderValue)] {
        &self.add
    }

    /// Makes the changes on `headers`.
    pub fn apply(&self, headers: &mut HeaderMap) {
        for name in &self.remove {
            headers.remove(name);
        }
        for (name, value) in &self.set {
            headers.insert(name.clone(), value.clone());
        }
        for (name, value) in &self.add {
            headers.append(name.clone(), value.clone());
        }
    }
}

/// What a route answers by itself, without a backend.
#[derive(Debug)]
pub enum LocalAnswer {
    /// `respond`: a status and a short body.
    Fixed {
        /// The status.
        status: StatusCode,
        /// The body.
        body: Bytes,
        /// Its type.
        content_type: HeaderValue,
    },
    /// `redirect`.
    Redirect {
        /// 301, 302, 303, 307 or 308.
        status: StatusCode,
        /// Where to.
        location: String,
        /// With the request's path and query appended.
        keep_path: bool,
    },
}

impl LocalAnswer {
    pub(super) fn compile(route: &RouteSpec) -> Option<LocalAnswer> {
        if let Some(respond) = &route.respond {
            return Some(LocalAnswer::Fixed {
                status: StatusCode::from_u16(respond.status).ok()?,
                body: Bytes::from(respond.body.clone()),
                content_type: respond
                    .content_type
                    .as_deref()
                    .and_then(|t| HeaderValue::from_str(t).ok())
                    .unwrap_or(HeaderValue::from_static("text/plain; charset=utf-8")),
            });
        }
        let redirect = route.redirect.as_ref()?;
        Some(LocalAnswer::Redirect {
            status: StatusCode::from_u16(redirect.status).ok()?,
            location: redirect.location.clone(),
            keep_path: redirect.keep_path,
        })
    }
}

/// Pools sharing requests by weight: each arm's pool and the running sum
/// of the weights up to it.
#[derive(Debug)]
pub struct Split {
    arms: Vec<(usize, u32)>,
    total: u32,
}

impl Split {
    pub(super) fn compile(
        field: &str,
        arms: &[crate::config::SplitArm],
        pool_index: &dyn Fn(String, &str) -> Result<usize, StateError>,
    ) -> Result<Option<Split>, StateError> {
        if arms.is_empty() {
            return Ok(None);
        }
        let mut total = 0;
        let mut compiled = Vec::with_capacity(arms.len());
        for arm in arms {
            total += arm.weight;
            compiled.push((pool_index(field.to_string(), &arm.pool)?, total));
        }
        Ok(Some(Split {
            arms: compiled,
            total,
        }))
    }

    /// The pool for a draw in `0..u32::MAX`: each arm takes its share of
    /// the range, in order, so raising one arm's weight only moves draws
    /// from the arms after it.
    pub fn choose(&self, draw: u32) -> usize {
        let point = ((u64::from(draw) * u64::from(self.total.max(1))) >> 32) as u32;
        self.arms
            .iter()
            .find(|(_, upto)| point < *upto)
            .or(self.arms.last())
            .map_or(0, |(pool, _)| *pool)
    }

    /// The pools of its arms that take requests (weight above 0): a
    /// zeroed arm keeps no client, sticky or not.
    pub fn pools(&self) -> impl Iterator<Item = usize> + '_ {
        let mut below = 0;
        self.arms.iter().filter_map(move |(pool, upto)| {
            let weight = upto - below;
            below = *upto;
            (weight > 0).then_some(*pool)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts<'a>(
        method: &'a Method,
        query: Option<&'a str>,
        headers: &'a HeaderMap,
        client: &str,
    ) -> RequestFacts<'a> {
        RequestFacts {
            host: None,
            path: "/",
            query,
            method,
            headers: crate::routing::HeaderView::Map(headers),
            client: client.parse().expect("ip"),
        }
    }

    #[test]
    fn conditions_all_hold_or_the_route_is_passed() {
        let route: RouteSpec = toml::from_str(
            "pool = \"p\"\nquery = { name = \"v\", value = \"2 b\" }\nmethods = [\"GET\", \"HEAD\"]\nsource = [\"10.0.0.0/8\", \"192.0.2.7\"]\n",
        )
        .expect("route");
        let conditions = Conditions::compile(&route);
        let headers = HeaderMap::new();
        let get = Method::GET;
        let post = Method::POST;
        assert!(conditions.hold(&facts(&get, Some("a=1&v=2+b"), &headers, "10.1.2.3")));
        assert!(conditions.hold(&facts(&get, Some("v=2%20b"), &headers, "::ffff:192.0.2.7")));
        assert!(!conditions.hold(&facts(&get, Some("v=2"), &headers, "10.1.2.3")));
        assert!(!conditions.hold(&facts(&get, None, &headers, "10.1.2.3")));
        assert!(!conditions.hold(&facts(&post, Some("v=2+b"), &headers, "10.1.2.3")));
        assert!(!conditions.hold(&facts(&get, Some("v=2+b"), &headers, "11.0.0.1")));
    }

    #[test]
    fn edits_remove_then_set_then_add() {
        let spec: HeaderRewrite = toml::from_str(
            "remove = [\"x-debug\"]\nset = { x-env = \"green\" }\nadd = { via = \"raftlb\" }\n",
        )
        .expect("rewrite");
        let edits = HeaderEdits::compile(&spec).expect("edits");
        let mut headers = HeaderMap::new();
        headers.insert("x-debug", HeaderValue::from_static("1"));
        headers.append("x-env", HeaderValue::from_static("a"));
        headers.append("x-env", HeaderValue::from_static("b"));
        headers.insert("via", HeaderValue::from_static("1.1 proxy"));
        edits.apply(&mut headers);
        assert!(headers.get("x-debug").is_none());
        assert_eq!(
            headers.get_all("x-env").iter().collect::<Vec<_>>(),
            ["green"]
        );
        assert_eq!(
            headers.get_all("via").iter().collect::<Vec<_>>(),
            ["1.1 proxy", "raftlb"]
        );
    }

    #[test]
    fn a_split_gives_each_arm_its_share_and_grows_an_arm_in_place() {
        let index = |_: String, name: &str| Ok(if name == "green" { 1 } else { 0 });
        let arms = |green: u32| {
            vec![
                crate::config::SplitArm {
                    pool: "green".into(),
                    weight: green,
                },
                crate::config::SplitArm {
                    pool: "blue".into(),
                    weight: 100 - green,
                },
            ]
        };
        let ten = Split::compile("f", &arms(10), &index)
            .expect("split")
            .expect("some");
        let quarter = Split::compile("f", &arms(25), &index)
            .expect("split")
            .expect("some");
        let draws: Vec<u32> = (0..10_000u32)
            .map(|i| i.wrapping_mul(2_654_435_761))
            .collect();
        let green = draws.iter().filter(|d| ten.choose(**d) == 1).count();
        assert!((900..=1100).contains(&green), "{green}");
        // A zeroed arm keeps no client.
        let zero = Split::compile("f", &arms(0), &index)
            .expect("split")
            .expect("some");
        assert_eq!(zero.pools().collect::<Vec<_>>(), [0]);
        assert_eq!(ten.pools().collect::<Vec<_>>(), [1, 0]);
        // Every draw on green at 10 % stays on green at 25 %.
        assert!(
            draws
                .iter()
                .filter(|d| ten.choose(**d) == 1)
                .all(|d| quarter.choose(*d) == 1)
        );
    }
}
