//! Conversions between the configuration model and its protobuf messages.
//! Enum-like fields travel as the same strings `cluster.toml` uses, and are
//! checked here with errors that name the field. A field left out of a
//! message takes the default of `config::defaults`, the same function the
//! file format uses, so both roads give the same configuration; validation
//! is `state::validate`'s alone.

use crate::config::{
    AdminState, Algorithm, BackendSpec, CheckKind, ClusterSpec, DiscoverySpec, FixedResponse,
    FrontendSpec, HeaderMatch, HeaderRewrite, HealthSpec, PoolProtocol, PoolSpec, PoolTlsSpec,
    Protocol, RateLimit, RecordType, Redirect, RouteSpec, SplitArm, StickySpec, defaults,
    discovery_defaults,
};
use crate::proto::v1 as pb;
use crate::state::StateError;

/// Parses a `snake_case` name the way `cluster.toml` does.
fn parse_name<T: serde::de::DeserializeOwned>(field: &str, value: &str) -> Result<T, StateError> {
    T::deserialize(serde::de::value::StrDeserializer::<serde::de::value::Error>::new(value))
        .map_err(|e| StateError::invalid(field, value, e.to_string()))
}

/// An optional enum-like field: its default when absent.
fn parse_or<T: serde::de::DeserializeOwned + Default>(
    field: &str,
    value: Option<&str>,
) -> Result<T, StateError> {
    value.map_or(Ok(T::default()), |v| parse_name(field, v))
}

/// The model as a message; every field is set.
pub fn to_proto(spec: &ClusterSpec) -> pb::ClusterConfig {
    pb::ClusterConfig {
        frontends: spec.frontends.iter().map(frontend_to_proto).collect(),
        pools: spec.pools.iter().map(pool_to_proto).collect(),
    }
}

fn frontend_to_proto(f: &FrontendSpec) -> pb::Frontend {
    pb::Frontend {
        name: f.name.clone(),
        port: u32::from(f.port),
        protocol: f.protocol.as_str().to_string(),
        pool: f.pool.clone(),
        routes: f
            .routes
            .iter()
            .map(|r| pb::Route {
                host: r.host.clone(),
                path_prefix: r.path_prefix.clone(),
                pool: r.pool.clone(),
                sni: r.sni.clone(),
                header: r.header.as_ref().map(header_match_to_proto),
                split: split_to_proto(&r.split),
                query: r.query.as_ref().map(header_match_to_proto),
                methods: r.methods.clone(),
                source: r.source.clone(),
                request_headers: rewrite_to_proto(&r.request_headers),
                response_headers: rewrite_to_proto(&r.response_headers),
                respond: r.respond.as_ref().map(|x| pb::FixedResponse {
                    status: u32::from(x.status),
                    body: x.body.clone(),
                    content_type: x.content_type.clone(),
                }),
                redirect: r.redirect.as_ref().map(|x| pb::Redirect {
                    location: x.location.clone(),
                    status: Some(u32::from(x.status)),
                    keep_path: x.keep_path,
                }),
                rate_limit: r.rate_limit.map(rate_limit_to_proto),
            })
            .collect(),
        split: split_to_proto(&f.split),
        rate_limit: f.rate_limit.map(rate_limit_to_proto),
        max_connections: Some(f.max_connections),
        connect_timeout_ms: Some(f.connect_timeout_ms),
        idle_timeout_ms: Some(f.idle_timeout_ms),
        header_timeout_ms: Some(f.header_timeout_ms),
        response_timeout_ms: Some(f.response_timeout_ms),
        tunnel_timeout_ms: Some(f.tunnel_timeout_ms),
        retries: Some(f.retries),
        redirect_https: f.redirect_https,
        h2c: f.h2c,
    }
}

fn header_match_to_proto(h: &HeaderMatch) -> pb::HeaderMatch {
    pb::HeaderMatch {
        name: h.name.clone(),
        value: h.value.clone(),
        prefix: h.prefix.clone(),
        present: h.present,
    }
}

fn header_match_from_proto(h: pb::HeaderMatch) -> HeaderMatch {
    HeaderMatch {
        name: h.name,
        value: h.value,
        prefix: h.prefix,
        present: h.present,
    }
}

fn rate_limit_to_proto(r: RateLimit) -> pb::RateLimit {
    pb::RateLimit {
        requests_per_second: r.requests_per_second,
        burst: r.burst,
    }
}

fn rate_limit_from_proto(r: pb::RateLimit) -> RateLimit {
    RateLimit {
        requests_per_second: r.requests_per_second,
        burst: r.burst,
    }
}

/// An empty rewrite is left out.
fn rewrite_to_proto(r: &HeaderRewrite) -> Option<pb::HeaderRewrite> {
    (!r.is_empty()).then(|| pb::HeaderRewrite {
        remove: r.remove.clone(),
        set: r.set.clone().into_iter().collect(),
        add: r.add.clone().into_iter().collect(),
    })
}

fn rewrite_from_proto(r: Option<pb::HeaderRewrite>) -> HeaderRewrite {
    r.map(|r| HeaderRewrite {
        remove: r.remove,
        set: r.set.into_iter().collect(),
        add: r.add.into_iter().collect(),
    })
    .unwrap_or_default()
}

fn split_to_proto(split: &[SplitArm]) -> Vec<pb::SplitArm> {
    split
        .iter()
        .map(|a| pb::SplitArm {
            pool: a.pool.clone(),
            weight: a.weight,
        })
        .collect()
}

fn split_from_proto(split: Vec<pb::SplitArm>) -> Vec<SplitArm> {
    split
        .into_iter()
        .map(|a| SplitArm {
            pool: a.pool,
            weight: a.weight,
        })
        .collect()
}

fn pool_to_proto(p: &PoolSpec) -> pb::Pool {
    let h = &p.health;
    pb::Pool {
        name: p.name.clone(),
        algorithm: Some(p.algorithm.as_str().to_string()),
        hash_key: p.hash_key.clone(),
        health: Some(pb::Health {
            check: Some(h.check.as_str().to_string()),
            path: Some(h.path.clone()),
            interval_ms: Some(h.interval_ms),
            timeout_ms: Some(h.timeout_ms),
            rise: Some(h.rise),
            fall: Some(h.fall),
            expect_status: Some(h.expect_status.clone()),
            host: h.host.clone(),
            grpc_service: h.grpc_service.clone(),
            eject_5xx_after: Some(h.eject_5xx_after),
            max_ejected_percent: Some(h.max_ejected_percent),
            slow_start_ms: Some(h.slow_start_ms),
        }),
        backends: p
            .backends
            .iter()
            .map(|b| pb::Backend {
                address: b.address.clone(),
                weight: Some(b.weight),
                admin_state: Some(b.admin_state.as_str().to_string()),
                discovered: b.discovered.clone(),
            })
            .collect(),
        tls: p.tls.as_ref().map(|t| pb::PoolTls {
            sni: t.sni.clone(),
            ca_pem: t.ca_pem.clone(),
            client_certificate: t.client_certificate.clone(),
            verify: Some(t.verify.clone()),
        }),
        protocol: Some(p.protocol.as_str().to_string()),
        sticky: p.sticky.as_ref().map(|s| pb::Sticky {
            cookie: s.cookie.clone(),
            http_only: Some(s.http_only),
            secure: s.secure,
            same_site: s.same_site.clone(),
            max_age_s: s.max_age_s,
            signed: s.signed,
            drain_timeout_s: Some(s.drain_timeout_s),
        }),
        discovery: p.discovery.as_ref().map(|d| pb::Discovery {
            name: d.name.clone(),
            r#type: d.record_type.as_str().to_string(),
            port: d.port.map(u32::from),
            resolvers: d.resolvers.clone(),
            interval_ms: Some(d.interval_ms),
            weight: d.weight,
            remove_after: Some(d.remove_after),
        }),
    }
}

/// A message as the model; fields left out take the `cluster.toml`
/// defaults.
pub fn from_proto(config: pb::ClusterConfig) -> Result<ClusterSpec, StateError> {
    let mut spec = ClusterSpec::default();
    for f in config.frontends {
        spec.frontends.push(frontend_from_proto(f)?);
    }
    for p in config.pools {
        spec.pools.push(pool_from_proto(p)?);
    }
    Ok(spec)
}

fn frontend_from_proto(f: pb::Frontend) -> Result<FrontendSpec, StateError> {
    let at = |field: &str| format!("frontend[{}].{field}", f.name);
    let port = u16::try_from(f.port)
        .map_err(|_| StateError::invalid(at("port"), f.port, "must be 1 to 65535"))?;
    Ok(FrontendSpec {
        protocol: parse_name::<Protocol>(&at("protocol"), &f.protocol)?,
        port,
        routes: f
            .routes
            .into_iter()
            .map(|r| RouteSpec {
                host: r.host,
                path_prefix: r.path_prefix,
                pool: r.pool,
                sni: r.sni,
                header: r.header.map(header_match_from_proto),
                split: split_from_proto(r.split),
                query: r.query.map(header_match_from_proto),
                methods: r.methods,
                source: r.source,
                request_headers: rewrite_from_proto(r.request_headers),
                response_headers: rewrite_from_proto(r.response_headers),
                respond: r.respond.map(|x| FixedResponse {
                    status: u16::try_from(x.status).unwrap_or(0),
                    body: x.body,
                    content_type: x.content_type,
                }),
                redirect: r.redirect.map(|x| Redirect {
                    location: x.location,
                    status: x.status.map_or(302, |s| u16::try_from(s).unwrap_or(0)),
                    keep_path: x.keep_path,
                }),
                rate_limit: r.rate_limit.map(rate_limit_from_proto),
            })
            .collect(),
        split: split_from_proto(f.split),
        rate_limit: f.rate_limit.map(rate_limit_from_proto),
        max_connections: f.max_connections.unwrap_or_else(defaults::max_connections),
        connect_timeout_ms: f
            .connect_timeout_ms
            .unwrap_or_else(defaults::connect_timeout_ms),
        idle_timeout_ms: f.idle_timeout_ms.unwrap_or_else(defaults::idle_timeout_ms),
        header_timeout_ms: f
            .header_timeout_ms
            .unwrap_or_else(defaults::header_timeout_ms),
        response_timeout_ms: f
            .response_timeout_ms
            .unwrap_or_else(defaults::response_timeout_ms),
        tunnel_timeout_ms: f
            .tunnel_timeout_ms
            .unwrap_or_else(defaults::tunnel_timeout_ms),
        retries: f.retries.unwrap_or_else(defaults::retries),
        redirect_https: f.redirect_https,
        h2c: f.h2c,
        name: f.name,
        pool: f.pool,
    })
}

fn pool_from_proto(p: pb::Pool) -> Result<PoolSpec, StateError> {
    let at = |field: &str| format!("pool[{}].{field}", p.name);
    let algorithm = parse_or::<Algorithm>(&at("algorithm"), p.algorithm.as_deref())?;
    let protocol = parse_or::<PoolProtocol>(&at("protocol"), p.protocol.as_deref())?;
    let health = match p.health {
        None => HealthSpec::default(),
        Some(h) => HealthSpec {
            check: parse_or::<CheckKind>(&at("health.check"), h.check.as_deref())?,
            path: h.path.unwrap_or_else(defaults::health_path),
            interval_ms: h.interval_ms.unwrap_or_else(defaults::interval_ms),
            timeout_ms: h.timeout_ms.unwrap_or_else(defaults::probe_timeout_ms),
            rise: h.rise.unwrap_or_else(defaults::rise),
            fall: h.fall.unwrap_or_else(defaults::fall),
            expect_status: h.expect_status.unwrap_or_else(defaults::expect_status),
            host: h.host,
            grpc_service: h.grpc_service,
            eject_5xx_after: h.eject_5xx_after.unwrap_or_else(defaults::eject_5xx_after),
            max_ejected_percent: h
                .max_ejected_percent
                .unwrap_or_else(defaults::max_ejected_percent),
            slow_start_ms: h.slow_start_ms.unwrap_or_default(),
        },
    };
    let mut backends = Vec::with_capacity(p.backends.len());
    for b in p.backends {
        let field = format!("pool[{}].backend[{}].admin_state", p.name, b.address);
        backends.push(BackendSpec {
            admin_state: parse_or::<AdminState>(&field, b.admin_state.as_deref())?,
            weight: b.weight.unwrap_or_else(defaults::weight),
            address: b.address,
            discovered: b.discovered,
        });
    }
    let discovery = p
        .discovery
        .map(|d| discovery_from_proto(&p.name, d))
        .transpose()?;
    Ok(PoolSpec {
        name: p.name,
        algorithm,
        hash_key: p.hash_key,
        health,
        backends,
        tls: p.tls.map(|t| PoolTlsSpec {
            verify: t.verify.unwrap_or_else(defaults::verify),
            ca_pem: t.ca_pem,
            sni: t.sni,
            client_certificate: t.client_certificate,
        }),
        protocol,
        sticky: p.sticky.map(|s| StickySpec {
            cookie: s.cookie,
            http_only: s.http_only.unwrap_or(true),
            secure: s.secure,
            same_site: s.same_site,
            max_age_s: s.max_age_s,
            signed: s.signed,
            drain_timeout_s: s
                .drain_timeout_s
                .unwrap_or_else(defaults::sticky_drain_timeout_s),
        }),
        discovery,
    })
}

fn discovery_from_proto(pool: &str, d: pb::Discovery) -> Result<DiscoverySpec, StateError> {
    let at = |field: &str| format!("pool[{pool}].discovery.{field}");
    let record_type = parse_name::<RecordType>(&at("type"), &d.r#type)?;
    let port = d
        .port
        .map(|port| {
            u16::try_from(port)
                .map_err(|_| StateError::invalid(at("port"), port, "must be 1 to 65535"))
        })
        .transpose()?;
    Ok(DiscoverySpec {
        name: d.name,
        record_type,
        port,
        resolvers: d.resolvers,
        interval_ms: d
            .interval_ms
            .unwrap_or_else(discovery_defaults::interval_ms),
        weight: d.weight,
        remove_after: d
            .remove_after
            .unwrap_or_else(discovery_defaults::remove_after),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_a_configuration() {
        let spec: ClusterSpec = toml::from_str(
            r#"
[[frontend]]
name = "web"
port = 8080
protocol = "http"
pool = "web"
retries = 1
  [[frontend.route]]
  host = "a.example"
  pool = "web"
[[pool]]
name = "web"
algorithm = "maglev"
hash_key = "cookie:sid"
  [pool.health]
  check = "http"
  [[pool.backend]]
  address = "127.0.0.1:9001"
  weight = 3
  admin_state = "draining"
"#,
        )
        .expect("spec");
        assert_eq!(from_proto(to_proto(&spec)), Ok(spec));
    }

    /// Every field of cluster.toml set to something other than its
    /// default, so a field the conversion drops or defaults shows.
    const EVERY_FIELD: &str = r#"
[[frontend]]
name = "web"
port = 8080
protocol = "http"
pool = "web"
max_connections = 77
connect_timeout_ms = 1234
idle_timeout_ms = 4321
header_timeout_ms = 999
response_timeout_ms = 5555
tunnel_timeout_ms = 7777
retries = 0
h2c = true
split = [{ pool = "web", weight = 90 }, { pool = "api", weight = 10 }]
rate_limit = { requests_per_second = 50, burst = 100 }
  [[frontend.route]]
  host = "a.example"
  path_prefix = "/v1/"
  pool = "api"
  [[frontend.route]]
  header = { name = "X-Canary", value = "green" }
  split = [{ pool = "api", weight = 1 }]
[[pool]]
name = "web"
algorithm = "least_connections"
protocol = "h2c"
  [pool.sticky]
  cookie = "SRV"
  signed = true
  http_only = false
  secure = true
  same_site = "Lax"
  max_age_s = 3600
  [pool.health]
  check = "http"
  path = "/ping"
  interval_ms = 2000
  timeout_ms = 700
  rise = 4
  fall = 5
  expect_status = "204"
  host = "health.example"
  grpc_service = "shop.Cart"
  eject_5xx_after = 9
  max_ejected_percent = 0
  slow_start_ms = 15000
  [[pool.backend]]
  address = "127.0.0.1:9001"
  weight = 3
  admin_state = "draining"
  [[pool.backend]]
  address = "127.0.0.7:8080"
  discovered = "web.shop.svc.cluster.local"
  [pool.discovery]
  name = "web.shop.svc.cluster.local"
  type = "AAAA"
  port = 8080
  resolvers = ["10.96.0.10:53", "10.96.0.11"]
  interval_ms = 2500
  weight = 7
  remove_after = 5
[[pool]]
name = "api"
algorithm = "maglev"
hash_key = "cookie:sid"
  [[pool.backend]]
  address = "[::1]:9101"
  admin_state = "disabled"
"#;

    #[test]
    fn every_field_round_trips_toml_api_toml() {
        let spec: ClusterSpec = toml::from_str(EVERY_FIELD).expect("spec");
        crate::state::validate(&spec).expect("valid");
        let back = from_proto(to_proto(&spec)).expect("converts");
        assert_eq!(back, spec);
        let text = toml::to_string(&back).expect("toml");
        assert_eq!(
            toml::from_str::<ClusterSpec>(&text).expect("reparses"),
            spec
        );
    }

    #[test]
    fn a_field_left_out_gets_the_same_default_by_either_road() {
        let from_file: ClusterSpec = toml::from_str(
            "[[frontend]]\nname = \"web\"\nport = 80\nprotocol = \"tcp\"\npool = \"web\"\n\
             [[pool]]\nname = \"web\"\n  [pool.health]\n  check = \"tcp\"\n\
             [[pool.backend]]\naddress = \"127.0.0.1:1\"\n",
        )
        .expect("spec");
        let from_api = from_proto(pb::ClusterConfig {
            frontends: vec![pb::Frontend {
                name: "web".into(),
                port: 80,
                protocol: "tcp".into(),
                pool: "web".into(),
                ..Default::default()
            }],
            pools: vec![pb::Pool {
                name: "web".into(),
                health: Some(pb::Health {
                    check: Some("tcp".into()),
                    ..Default::default()
                }),
                backends: vec![pb::Backend {
                    address: "127.0.0.1:1".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
        })
        .expect("converts");
        assert_eq!(from_api, from_file);
        assert_eq!(from_api.frontends[0].retries, 2);
        // A pool with no health section at all, by either road.
        let bare_file: ClusterSpec = toml::from_str("[[pool]]\nname = \"p\"\n").expect("spec");
        let bare_api = from_proto(pb::ClusterConfig {
            pools: vec![pb::Pool {
                name: "p".into(),
                ..Default::default()
            }],
            ..Default::default()
        })
        .expect("converts");
        assert_eq!(bare_api, bare_file);
    }

    #[test]
    fn a_bad_enum_names_its_field() {
        let mut config = pb::ClusterConfig::default();
        config.pools.push(pb::Pool {
            name: "web".into(),
            algorithm: Some("fastest".into()),
            ..Default::default()
        });
        match from_proto(config) {
            Err(StateError::Invalid { field, value, .. }) => {
                assert_eq!(
                    (field.as_str(), value.as_str()),
                    ("pool[web].algorithm", "fastest")
                );
            }
            other => panic!("{other:?}"),
        }
    }
}
