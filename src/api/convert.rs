//! Conversions between the configuration model and its protobuf messages.
//! Enum-like fields travel as the same strings `cluster.toml` uses, and are
//! checked here with errors that name the field.

use crate::config::{
    AdminState, Algorithm, BackendSpec, CheckKind, ClusterSpec, FrontendSpec, HealthSpec, PoolSpec,
    Protocol, RouteSpec,
};
use crate::proto::v1 as pb;
use crate::state::StateError;

/// Parses a `snake_case` name the way `cluster.toml` does.
fn parse_name<T: serde::de::DeserializeOwned>(field: &str, value: &str) -> Result<T, StateError> {
    T::deserialize(serde::de::value::StrDeserializer::<serde::de::value::Error>::new(value))
        .map_err(|e| StateError::invalid(field, value, e.to_string()))
}

/// The model as a message.
pub fn to_proto(spec: &ClusterSpec) -> pb::ClusterConfig {
    pb::ClusterConfig {
        frontends: spec
            .frontends
            .iter()
            .map(|f| pb::Frontend {
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
                    })
                    .collect(),
                max_connections: f.max_connections,
                connect_timeout_ms: f.connect_timeout_ms,
                idle_timeout_ms: f.idle_timeout_ms,
                header_timeout_ms: f.header_timeout_ms,
                response_timeout_ms: f.response_timeout_ms,
                retries: f.retries,
            })
            .collect(),
        pools: spec
            .pools
            .iter()
            .map(|p| pb::Pool {
                name: p.name.clone(),
                algorithm: p.algorithm.as_str().to_string(),
                hash_key: p.hash_key.clone(),
                health: Some(pb::Health {
                    check: p.health.check.as_str().to_string(),
                    path: p.health.path.clone(),
                    interval_ms: p.health.interval_ms,
                    timeout_ms: p.health.timeout_ms,
                    rise: p.health.rise,
                    fall: p.health.fall,
                    expect_status: p.health.expect_status.clone(),
                    host: p.health.host.clone(),
                    eject_5xx_after: p.health.eject_5xx_after,
                    max_ejected_percent: Some(p.health.max_ejected_percent),
                    slow_start_ms: p.health.slow_start_ms,
                }),
                backends: p
                    .backends
                    .iter()
                    .map(|b| pb::Backend {
                        address: b.address.clone(),
                        weight: b.weight,
                        admin_state: b.admin_state.as_str().to_string(),
                    })
                    .collect(),
            })
            .collect(),
    }
}

/// A message as the model; unset numbers take the `cluster.toml` defaults.
pub fn from_proto(config: pb::ClusterConfig) -> Result<ClusterSpec, StateError> {
    let defaults_frontend: FrontendSpec =
        toml::from_str("name = \"\"\nport = 1\nprotocol = \"tcp\"\npool = \"\"")
            .map_err(|e| StateError::invalid("frontend", "", e.to_string()))?;
    let mut spec = ClusterSpec::default();
    for f in config.frontends {
        let at = |field: &str| format!("frontend[{}].{field}", f.name);
        let port = u16::try_from(f.port)
            .map_err(|_| StateError::invalid(at("port"), f.port, "must be 1 to 65535"))?;
        let or = |value: u64, default: u64| if value == 0 { default } else { value };
        spec.frontends.push(FrontendSpec {
            protocol: parse_name::<Protocol>(&at("protocol"), &f.protocol)?,
            port,
            routes: f
                .routes
                .into_iter()
                .map(|r| RouteSpec {
                    host: r.host,
                    path_prefix: r.path_prefix,
                    pool: r.pool,
                })
                .collect(),
            max_connections: if f.max_connections == 0 {
                defaults_frontend.max_connections
            } else {
                f.max_connections
            },
            connect_timeout_ms: or(f.connect_timeout_ms, defaults_frontend.connect_timeout_ms),
            idle_timeout_ms: or(f.idle_timeout_ms, defaults_frontend.idle_timeout_ms),
            header_timeout_ms: or(f.header_timeout_ms, defaults_frontend.header_timeout_ms),
            response_timeout_ms: or(f.response_timeout_ms, defaults_frontend.response_timeout_ms),
            retries: f.retries,
            name: f.name,
            pool: f.pool,
        });
    }
    for p in config.pools {
        let at = |field: &str| format!("pool[{}].{field}", p.name);
        let algorithm = if p.algorithm.is_empty() {
            Algorithm::default()
        } else {
            parse_name::<Algorithm>(&at("algorithm"), &p.algorithm)?
        };
        let health = match p.health {
            None => HealthSpec::default(),
            Some(h) => {
                let d = HealthSpec::default();
                HealthSpec {
                    check: if h.check.is_empty() {
                        CheckKind::default()
                    } else {
                        parse_name::<CheckKind>(&at("health.check"), &h.check)?
                    },
                    path: if h.path.is_empty() { d.path } else { h.path },
                    interval_ms: if h.interval_ms == 0 {
                        d.interval_ms
                    } else {
                        h.interval_ms
                    },
                    timeout_ms: if h.timeout_ms == 0 {
                        d.timeout_ms
                    } else {
                        h.timeout_ms
                    },
                    rise: if h.rise == 0 { d.rise } else { h.rise },
                    fall: if h.fall == 0 { d.fall } else { h.fall },
                    expect_status: if h.expect_status.is_empty() {
                        d.expect_status
                    } else {
                        h.expect_status
                    },
                    host: h.host,
                    eject_5xx_after: if h.eject_5xx_after == 0 {
                        d.eject_5xx_after
                    } else {
                        h.eject_5xx_after
                    },
                    max_ejected_percent: h.max_ejected_percent.unwrap_or(d.max_ejected_percent),
                    slow_start_ms: h.slow_start_ms,
                }
            }
        };
        let mut backends = Vec::new();
        for b in p.backends {
            let field = format!("pool[{}].backend[{}].admin_state", p.name, b.address);
            backends.push(BackendSpec {
                admin_state: if b.admin_state.is_empty() {
                    AdminState::default()
                } else {
                    parse_name::<AdminState>(&field, &b.admin_state)?
                },
                weight: if b.weight == 0 { 1 } else { b.weight },
                address: b.address,
            });
        }
        spec.pools.push(PoolSpec {
            name: p.name,
            algorithm,
            hash_key: p.hash_key,
            health,
            backends,
        });
    }
    Ok(spec)
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

    #[test]
    fn a_bad_enum_names_its_field() {
        let mut config = pb::ClusterConfig::default();
        config.pools.push(pb::Pool {
            name: "web".into(),
            algorithm: "fastest".into(),
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
