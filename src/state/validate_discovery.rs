//! Checks of `[pool.discovery]` (see [`super::discovery`]).

use std::net::{IpAddr, SocketAddr};

use super::StateError;
use crate::config::{PoolSpec, RecordType};

/// Checks a pool's `[pool.discovery]` and its discovered backends.
pub(super) fn validate_discovery(pool: &PoolSpec) -> Result<(), StateError> {
    let at = |field: &str| format!("pool[{}].discovery.{field}", pool.name);
    for backend in pool.backends.iter().filter(|b| b.discovered.is_some()) {
        let name = backend.discovered.as_deref().unwrap_or_default();
        if pool.discovery.as_ref().is_none_or(|d| d.name != name) {
            return Err(StateError::invalid(
                format!(
                    "pool[{}].backend[{}].discovered",
                    pool.name, backend.address
                ),
                name,
                "the pool discovers no such name",
            ));
        }
    }
    let Some(discovery) = &pool.discovery else {
        return Ok(());
    };
    check_name(&at("name"), &discovery.name)?;
    match (discovery.record_type, discovery.port) {
        (RecordType::Srv, Some(port)) => {
            return Err(StateError::invalid(
                at("port"),
                port,
                "SRV records carry their own ports: leave port out",
            ));
        }
        (RecordType::A | RecordType::Aaaa, None | Some(0)) => {
            return Err(StateError::invalid(
                at("port"),
                discovery.port.unwrap_or(0),
                "A and AAAA records need the backends' port (1 to 65535)",
            ));
        }
        _ => {}
    }
    match (discovery.record_type, discovery.weight) {
        (RecordType::Srv, Some(weight)) => {
            return Err(StateError::invalid(
                at("weight"),
                weight,
                "SRV records carry their own weights: leave weight out",
            ));
        }
        (_, Some(weight)) => super::validate::check_weight(&at("weight"), weight)?,
        (_, None) => {}
    }
    if discovery.resolvers.len() > MAX_RESOLVERS {
        return Err(StateError::invalid(
            at("resolvers"),
            discovery.resolvers.len(),
            format!("at most {MAX_RESOLVERS} name servers"),
        ));
    }
    for resolver in &discovery.resolvers {
        if resolver_address(resolver).is_none() {
            return Err(StateError::invalid(
                at("resolvers"),
                resolver,
                "expected IP or IP:PORT, such as 10.96.0.10 or [fd00::a]:53",
            ));
        }
    }
    if !(MIN_INTERVAL_MS..=3_600_000).contains(&discovery.interval_ms) {
        return Err(StateError::invalid(
            at("interval_ms"),
            discovery.interval_ms,
            format!("must be {MIN_INTERVAL_MS} ms to 1 h"),
        ));
    }
    if !(1..=100).contains(&discovery.remove_after) {
        return Err(StateError::invalid(
            at("remove_after"),
            discovery.remove_after,
            "must be 1 to 100",
        ));
    }
    Ok(())
}

/// The shortest `interval_ms`.
pub const MIN_INTERVAL_MS: u64 = 100;
/// Most name servers one pool may name.
pub const MAX_RESOLVERS: usize = 8;

/// A `resolvers` entry as a socket address (port 53 when left out).
pub fn resolver_address(text: &str) -> Option<SocketAddr> {
    text.parse::<SocketAddr>().ok().or_else(|| {
        text.parse::<IpAddr>()
            .ok()
            .map(|ip| SocketAddr::new(ip, 53))
    })
}

/// A DNS name: dot-separated labels of letters, digits, `-` and `_`
/// (SRV's `_http._tcp`), each 1 to 63 bytes, 253 in all; a final dot
/// allowed. Looser than [`crate::config::is_host_name`] (a host to
/// connect to): DNS holds names that are no host's.
fn check_name(field: &str, name: &str) -> Result<(), StateError> {
    let bare = name.strip_suffix('.').unwrap_or(name);
    let label_ok = |label: &str| {
        (1..=63).contains(&label.len())
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if bare.is_empty() || bare.len() > 253 || !bare.split('.').all(label_ok) {
        return Err(StateError::invalid(
            field,
            name,
            "not a DNS name (labels of letters, digits, '-' and '_', joined by dots)",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ClusterSpec;

    #[test]
    fn bad_settings_are_refused_naming_the_field() {
        let check = |extra: &str| {
            let text = format!(
                "[[pool]]\nname = \"web\"\n  [pool.discovery]\n  name = \"web.test\"\n{extra}"
            );
            let spec: ClusterSpec = toml::from_str(&text).expect("parses");
            crate::state::validate(&spec).map_err(|e| e.to_string())
        };
        assert!(check("type = \"A\"\nport = 80\n").is_ok());
        assert!(check("type = \"SRV\"\n").is_ok());
        for (extra, field) in [
            ("type = \"A\"\n", "discovery.port"),
            ("type = \"SRV\"\nport = 80\n", "discovery.port"),
            ("type = \"SRV\"\nweight = 3\n", "discovery.weight"),
            ("type = \"A\"\nport = 80\nweight = 0\n", "discovery.weight"),
            (
                "type = \"A\"\nport = 80\nresolvers = [\"dns\"]\n",
                "discovery.resolvers",
            ),
            (
                "type = \"A\"\nport = 80\ninterval_ms = 5\n",
                "discovery.interval_ms",
            ),
            (
                "type = \"A\"\nport = 80\nremove_after = 0\n",
                "discovery.remove_after",
            ),
        ] {
            let error = check(extra).expect_err(extra);
            assert!(error.contains(field), "{extra}: {error}");
        }
        let bad_name: ClusterSpec = toml::from_str(
            "[[pool]]\nname = \"web\"\n  [pool.discovery]\n  name = \"web..test\"\n  type = \"A\"\n  port = 80\n",
        )
        .expect("parses");
        assert!(crate::state::validate(&bad_name).is_err());
    }

    #[test]
    fn resolvers_default_to_port_53() {
        assert_eq!(
            resolver_address("10.96.0.10"),
            Some("10.96.0.10:53".parse().expect("address"))
        );
        assert_eq!(
            resolver_address("[fd00::a]:5353"),
            Some("[fd00::a]:5353".parse().expect("address"))
        );
        assert_eq!(resolver_address("dns.example"), None);
    }
}
