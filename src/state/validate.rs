//! Checks a whole `ClusterSpec` before it is accepted. Every error names the
//! field by its path and quotes the value, so an operator can find it.

use std::collections::HashSet;
use std::net::SocketAddr;

use http::HeaderName;

use super::StateError;
use crate::config::{
    Algorithm, BackendSpec, CheckKind, ClusterSpec, FrontendSpec, PoolProtocol, PoolSpec, Protocol,
};

/// Highest backend weight, as in HAProxy.
pub const MAX_WEIGHT: u32 = 256;
/// Most backends in one pool. A pool's balancer is rebuilt whole when its
/// backends change, so this bounds that work (and Maglev's table).
pub const MAX_POOL_BACKENDS: usize = 10_000;

/// What a Maglev pool hashes to keep a client on one backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashKey {
    /// The client's IP address.
    SourceIp,
    /// The value of a request header (HTTP only; falls back to the source IP).
    Header(HeaderName),
    /// The value of a cookie (HTTP only; falls back to the source IP).
    Cookie(String),
}

/// Parses a `hash_key` value of `cluster.toml`.
pub fn parse_hash_key(field: &str, value: &str) -> Result<HashKey, StateError> {
    if value == "source_ip" {
        return Ok(HashKey::SourceIp);
    }
    if let Some(name) = value.strip_prefix("header:") {
        return HeaderName::from_bytes(name.as_bytes())
            .map(HashKey::Header)
            .map_err(|_| StateError::invalid(field, value, "not a valid header name"));
    }
    if let Some(name) = value.strip_prefix("cookie:") {
        if !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b'=' && b != b';')
        {
            return Ok(HashKey::Cookie(name.to_string()));
        }
        return Err(StateError::invalid(field, value, "not a valid cookie name"));
    }
    Err(StateError::invalid(
        field,
        value,
        "expected source_ip, header:NAME or cookie:NAME",
    ))
}

/// Parses a backend address; only `IP:PORT` is accepted so that every node
/// resolves a backend to the same place.
pub fn parse_backend_address(field: &str, value: &str) -> Result<SocketAddr, StateError> {
    match value.parse::<SocketAddr>() {
        Ok(addr) if addr.port() != 0 => Ok(addr),
        Ok(_) => Err(StateError::invalid(
            field,
            value,
            "port 0 is not a backend port",
        )),
        Err(_) => Err(StateError::invalid(
            field,
            value,
            "expected IP:PORT, e.g. 127.0.0.1:9001",
        )),
    }
}

/// Parses `expect_status`: `LOW-HIGH` or a single status, within 100–599.
pub fn parse_status_range(value: &str) -> Option<(u16, u16)> {
    let (low, high) = match value.split_once('-') {
        Some((low, high)) => (low.trim().parse().ok()?, high.trim().parse().ok()?),
        None => {
            let code = value.trim().parse().ok()?;
            (code, code)
        }
    };
    ((100..=599).contains(&low) && (low..=599).contains(&high)).then_some((low, high))
}

/// Field path of a backend, e.g. `pool[web].backend[127.0.0.1:9001]`.
pub fn backend_field(pool: &str, address: &str) -> String {
    format!("pool[{pool}].backend[{address}]")
}

/// Checks a whole configuration.
pub fn validate(spec: &ClusterSpec) -> Result<(), StateError> {
    let mut pool_names = HashSet::new();
    for (i, pool) in spec.pools.iter().enumerate() {
        check_name(&format!("pool[{i}].name"), &pool.name)?;
        if !pool_names.insert(pool.name.as_str()) {
            return Err(StateError::AlreadyExists {
                what: format!("pool {:?}", pool.name),
            });
        }
        validate_pool(pool)?;
    }
    let mut frontend_names = HashSet::new();
    let mut ports = HashSet::new();
    for (i, frontend) in spec.frontends.iter().enumerate() {
        check_name(&format!("frontend[{i}].name"), &frontend.name)?;
        if !frontend_names.insert(frontend.name.as_str()) {
            return Err(StateError::AlreadyExists {
                what: format!("frontend {:?}", frontend.name),
            });
        }
        if !ports.insert(frontend.port) {
            return Err(StateError::invalid(
                format!("frontend[{}].port", frontend.name),
                frontend.port,
                "another frontend already listens on this port",
            ));
        }
        validate_frontend(frontend, &pool_names)?;
    }
    Ok(())
}

fn check_name(field: &str, name: &str) -> Result<(), StateError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(StateError::invalid(
            field,
            name,
            "names are 1 to 64 characters of letters, digits, '-', '_' and '.'",
        ))
    }
}

fn validate_frontend(frontend: &FrontendSpec, pools: &HashSet<&str>) -> Result<(), StateError> {
    let at = |field: &str| format!("frontend[{}].{field}", frontend.name);
    if frontend.port == 0 {
        return Err(StateError::invalid(
            at("port"),
            0,
            "port 0 cannot be listened on",
        ));
    }
    if !pools.contains(frontend.pool.as_str()) {
        return Err(StateError::invalid(
            at("pool"),
            &frontend.pool,
            "no pool has this name",
        ));
    }
    if frontend.protocol == Protocol::Tls && !frontend.routes.is_empty() {
        return Err(StateError::invalid(
            at("route"),
            format!("{} routes", frontend.routes.len()),
            "a tls frontend relays to its pool; route by sni on a tcp frontend",
        ));
    }
    if frontend.redirect_https && frontend.protocol != Protocol::Http {
        return Err(StateError::invalid(
            at("redirect_https"),
            "true",
            "only an http frontend redirects to https",
        ));
    }
    if frontend.h2c && frontend.protocol != Protocol::Http {
        return Err(StateError::invalid(
            at("h2c"),
            "true",
            "only an http frontend takes h2c (https frontends offer HTTP/2 by ALPN)",
        ));
    }
    if !frontend.split.is_empty() {
        if !matches!(frontend.protocol, Protocol::Http | Protocol::Https) {
            return Err(StateError::invalid(
                at("split"),
                format!("{} arms", frontend.split.len()),
                "only http and https frontends split requests",
            ));
        }
        check_split(&at("split"), &frontend.split, pools)?;
        if !frontend.split.iter().any(|arm| arm.pool == frontend.pool) {
            return Err(StateError::invalid(
                at("pool"),
                &frontend.pool,
                "with a split, the frontend's pool must be one of its arms",
            ));
        }
    }
    if let Some(limit) = frontend.rate_limit {
        if !matches!(frontend.protocol, Protocol::Http | Protocol::Https) {
            return Err(StateError::invalid(
                at("rate_limit"),
                limit.requests_per_second,
                "only http and https frontends limit requests",
            ));
        }
        check_rate_limit(&at("rate_limit"), limit)?;
    }
    for (i, route) in frontend.routes.iter().enumerate() {
        super::validate_route::validate_route(frontend, i, route, pools)?;
    }
    if frontend.max_connections == 0 {
        return Err(StateError::invalid(
            at("max_connections"),
            0,
            "must be at least 1",
        ));
    }
    for (name, value) in [
        ("connect_timeout_ms", frontend.connect_timeout_ms),
        ("idle_timeout_ms", frontend.idle_timeout_ms),
        ("header_timeout_ms", frontend.header_timeout_ms),
        ("response_timeout_ms", frontend.response_timeout_ms),
        ("tunnel_timeout_ms", frontend.tunnel_timeout_ms),
    ] {
        if value == 0 || value > 86_400_000 {
            return Err(StateError::invalid(at(name), value, "must be 1 ms to 24 h"));
        }
    }
    if frontend.retries > 8 {
        return Err(StateError::invalid(
            at("retries"),
            frontend.retries,
            "must be 0 to 8",
        ));
    }
    Ok(())
}

/// A rate limit's rate and burst are at least 1.
pub(super) fn check_rate_limit(
    field: &str,
    limit: crate::config::RateLimit,
) -> Result<(), StateError> {
    if limit.requests_per_second == 0 || limit.burst == 0 {
        return Err(StateError::invalid(
            field,
            format!("{} / {}", limit.requests_per_second, limit.burst),
            "requests_per_second and burst must be at least 1",
        ));
    }
    Ok(())
}

/// Checks a split: known pools, each once, weights 0 to 10,000 with a
/// positive sum.
pub(super) fn check_split(
    field: &str,
    split: &[crate::config::SplitArm],
    pools: &HashSet<&str>,
) -> Result<(), StateError> {
    let mut seen = HashSet::new();
    for arm in split {
        if !pools.contains(arm.pool.as_str()) {
            return Err(StateError::invalid(
                field,
                &arm.pool,
                "no pool has this name",
            ));
        }
        if !seen.insert(arm.pool.as_str()) {
            return Err(StateError::invalid(
                field,
                &arm.pool,
                "a pool appears twice",
            ));
        }
        if arm.weight > 10_000 {
            return Err(StateError::invalid(
                field,
                arm.weight,
                "weights are 0 to 10000",
            ));
        }
    }
    if split.iter().all(|arm| arm.weight == 0) {
        return Err(StateError::invalid(field, 0, "the weights sum to 0"));
    }
    Ok(())
}

fn validate_pool(pool: &PoolSpec) -> Result<(), StateError> {
    let at = |field: &str| format!("pool[{}].{field}", pool.name);
    match (&pool.hash_key, pool.algorithm) {
        (None, Algorithm::Maglev) => {
            return Err(StateError::invalid(
                at("hash_key"),
                "",
                "a maglev pool needs a hash_key: source_ip, header:NAME or cookie:NAME",
            ));
        }
        (Some(key), Algorithm::Maglev) => {
            parse_hash_key(&at("hash_key"), key)?;
        }
        (Some(key), _) => {
            return Err(StateError::invalid(
                at("hash_key"),
                key,
                "hash_key applies to maglev pools only",
            ));
        }
        (None, _) => {}
    }
    let health = &pool.health;
    if !health.path.starts_with('/') {
        return Err(StateError::invalid(
            at("health.path"),
            &health.path,
            "must start with '/'",
        ));
    }
    if !(10..=3_600_000).contains(&health.interval_ms) {
        return Err(StateError::invalid(
            at("health.interval_ms"),
            health.interval_ms,
            "must be 10 ms to 1 h",
        ));
    }
    if health.timeout_ms == 0 || health.timeout_ms > health.interval_ms {
        return Err(StateError::invalid(
            at("health.timeout_ms"),
            health.timeout_ms,
            "must be at least 1 ms and at most interval_ms",
        ));
    }
    if parse_status_range(&health.expect_status).is_none() {
        return Err(StateError::invalid(
            at("health.expect_status"),
            &health.expect_status,
            "expected a status or a range such as 200-399",
        ));
    }
    if health.max_ejected_percent > 100 {
        return Err(StateError::invalid(
            at("health.max_ejected_percent"),
            health.max_ejected_percent,
            "must be 0 to 100",
        ));
    }
    if health.slow_start_ms > 3_600_000 {
        return Err(StateError::invalid(
            at("health.slow_start_ms"),
            health.slow_start_ms,
            "must be at most 1 h",
        ));
    }
    if let Some(host) = &health.host
        && http::HeaderValue::from_str(host).is_err()
    {
        return Err(StateError::invalid(
            at("health.host"),
            host,
            "not a valid Host header value",
        ));
    }
    for (name, value) in [
        ("health.rise", health.rise),
        ("health.fall", health.fall),
        ("health.eject_5xx_after", health.eject_5xx_after),
    ] {
        if !(1..=100).contains(&value) {
            return Err(StateError::invalid(at(name), value, "must be 1 to 100"));
        }
    }
    if pool.backends.len() > MAX_POOL_BACKENDS {
        return Err(StateError::invalid(
            at("backend"),
            format!("{} backends", pool.backends.len()),
            format!(
                "a pool holds at most {MAX_POOL_BACKENDS} backends; split it into several pools"
            ),
        ));
    }
    match (pool.protocol, &pool.tls) {
        (PoolProtocol::H2, None) => {
            return Err(StateError::invalid(
                at("protocol"),
                "h2",
                "h2 is HTTP/2 over TLS: add [pool.tls], or use h2c for clear text",
            ));
        }
        (PoolProtocol::Http1, _) if pool.health.check == CheckKind::Grpc => {
            return Err(StateError::invalid(
                at("health.check"),
                "grpc",
                "gRPC health checks speak HTTP/2: set the pool's protocol to h2c or h2",
            ));
        }
        (PoolProtocol::H2c, Some(_)) => {
            return Err(StateError::invalid(
                at("protocol"),
                "h2c",
                "h2c is HTTP/2 in clear text, but the pool has [pool.tls]: use h2",
            ));
        }
        _ => {}
    }
    if let Some(sticky) = &pool.sticky {
        let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
        if sticky.cookie.is_empty() || !sticky.cookie.chars().all(token) {
            return Err(StateError::invalid(
                at("sticky.cookie"),
                &sticky.cookie,
                "a cookie name: letters, digits and !#$%&'*+-.^_`|~",
            ));
        }
        match sticky.same_site.as_deref() {
            None | Some("Strict" | "Lax") => {}
            Some("None") if sticky.secure => {}
            Some("None") => {
                return Err(StateError::invalid(
                    at("sticky.same_site"),
                    "None",
                    "browsers take SameSite=None only with secure = true",
                ));
            }
            Some(other) => {
                return Err(StateError::invalid(
                    at("sticky.same_site"),
                    other,
                    "expected Strict, Lax or None",
                ));
            }
        }
        if sticky.drain_timeout_s > 86_400 {
            return Err(StateError::invalid(
                at("sticky.drain_timeout_s"),
                sticky.drain_timeout_s,
                "must be 0 to 86400 (24 h)",
            ));
        }
    }
    if let Some(tls) = &pool.tls {
        crate::tls::backend::check(tls)
            .map_err(|(field, why)| StateError::invalid(at(field), "", why))?;
    }
    super::validate_discovery::validate_discovery(pool)?;
    let mut seen = HashSet::new();
    for backend in &pool.backends {
        validate_backend(&pool.name, backend)?;
        if !seen.insert(backend.address.as_str()) {
            return Err(StateError::AlreadyExists {
                what: format!("backend {} in pool {:?}", backend.address, pool.name),
            });
        }
    }
    Ok(())
}

/// Checks one backend of pool `pool`.
pub fn validate_backend(pool: &str, backend: &BackendSpec) -> Result<(), StateError> {
    let at = backend_field(pool, &backend.address);
    parse_backend_address(&format!("{at}.address"), &backend.address)?;
    check_weight(&format!("{at}.weight"), backend.weight)
}

/// Checks a weight value.
pub fn check_weight(field: &str, weight: u32) -> Result<(), StateError> {
    if (1..=MAX_WEIGHT).contains(&weight) {
        Ok(())
    } else {
        Err(StateError::invalid(
            field,
            weight,
            format!("weight must be 1 to {MAX_WEIGHT}"),
        ))
    }
}
