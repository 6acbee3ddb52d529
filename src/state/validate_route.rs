//! Checks one `[[frontend.route]]`: a `tcp` frontend's routes choose a pool
//! by SNI only; an HTTP route has conditions (host, path, header, query,
//! method, source network) and one target (a pool, a split, a fixed answer
//! or a redirect), and may change headers and limit its clients' rate.

use std::collections::HashSet;

use http::{HeaderName, HeaderValue, Method};

use super::StateError;
use super::validate::{check_rate_limit, check_split};
use crate::config::{
    FrontendSpec, HeaderMatch, HeaderRewrite, MAX_FIXED_BODY, Protocol, RouteSpec,
};

/// Request headers the balancer writes itself, after a route's edits.
const BALANCER_WRITES: [&str; 4] = [
    "host",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
];

/// Checks route `i` of `frontend`.
pub(super) fn validate_route(
    frontend: &FrontendSpec,
    i: usize,
    route: &RouteSpec,
    pools: &HashSet<&str>,
) -> Result<(), StateError> {
    let field = |name: &str| format!("frontend[{}].route[{i}].{name}", frontend.name);
    if frontend.protocol == Protocol::Tcp {
        return tcp_route(route, &field, pools);
    }
    if let Some(sni) = &route.sni {
        return Err(StateError::invalid(
            field("sni"),
            sni,
            "sni routes pass TLS through on tcp frontends; an http or https frontend routes by host",
        ));
    }
    check_target(route, &field, pools)?;
    let conditions = [
        route.host.is_some(),
        route.path_prefix.is_some(),
        route.header.is_some(),
        route.query.is_some(),
        !route.methods.is_empty(),
        !route.source.is_empty(),
    ];
    if !conditions.contains(&true) {
        return Err(StateError::invalid(
            field("host"),
            "",
            "a route needs a condition: host, path_prefix, header, query, methods or source",
        ));
    }
    if let Some(host) = &route.host
        && (host.is_empty() || host.contains(['/', ' ', ':']))
    {
        return Err(StateError::invalid(
            field("host"),
            host,
            "expected a host name without port",
        ));
    }
    if let Some(prefix) = &route.path_prefix
        && !prefix.starts_with('/')
    {
        return Err(StateError::invalid(
            field("path_prefix"),
            prefix,
            "must start with '/'",
        ));
    }
    if let Some(header) = &route.header {
        check_match(&field("header"), header, true)?;
    }
    if let Some(query) = &route.query {
        check_match(&field("query"), query, false)?;
    }
    for method in &route.methods {
        let valid = Method::from_bytes(method.as_bytes()).is_ok()
            && !method.bytes().any(|b| b.is_ascii_lowercase());
        if !valid {
            return Err(StateError::invalid(
                field("methods"),
                method,
                "expected a method in upper case, as GET or POST",
            ));
        }
    }
    for network in &route.source {
        if network.parse::<ipnet::IpNet>().is_err() && network.parse::<std::net::IpAddr>().is_err()
        {
            return Err(StateError::invalid(
                field("source"),
                network,
                "expected a network as 10.0.0.0/8 or 2001:db8::/32, or one address",
            ));
        }
    }
    check_rewrite(&field("request_headers"), &route.request_headers)?;
    check_rewrite(&field("response_headers"), &route.response_headers)?;
    if let Some(name) = route
        .request_headers
        .set
        .keys()
        .chain(route.request_headers.add.keys())
        .chain(route.request_headers.remove.iter())
        .find(|name| BALANCER_WRITES.iter().any(|w| name.eq_ignore_ascii_case(w)))
    {
        return Err(StateError::invalid(
            field("request_headers"),
            name,
            "Host and the X-Forwarded headers are written by the balancer",
        ));
    }
    if !route.request_headers.is_empty() && (route.respond.is_some() || route.redirect.is_some()) {
        return Err(StateError::invalid(
            field("request_headers"),
            "",
            "a route that answers by itself sends no request on",
        ));
    }
    if let Some(limit) = route.rate_limit {
        check_rate_limit(&field("rate_limit"), limit)?;
    }
    Ok(())
}

/// A `tcp` frontend's route: an SNI and a pool, nothing else.
fn tcp_route(
    route: &RouteSpec,
    field: &dyn Fn(&str) -> String,
    pools: &HashSet<&str>,
) -> Result<(), StateError> {
    let http_only = route.header.is_some()
        || !route.split.is_empty()
        || route.query.is_some()
        || !route.methods.is_empty()
        || !route.source.is_empty()
        || !route.request_headers.is_empty()
        || !route.response_headers.is_empty()
        || route.respond.is_some()
        || route.redirect.is_some()
        || route.rate_limit.is_some();
    if http_only {
        return Err(StateError::invalid(
            field("header"),
            "",
            "a tcp frontend routes by sni only, to one pool",
        ));
    }
    check_target(route, field, pools)?;
    // Routed by the ClientHello's server name only.
    let valid = |sni: &str| {
        let name = sni.strip_prefix("*.").unwrap_or(sni);
        !name.is_empty()
            && name
                .split('.')
                .all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
    };
    match &route.sni {
        None => Err(StateError::invalid(
            field("sni"),
            "",
            "a tcp frontend routes by sni only (the server name of a TLS ClientHello)",
        )),
        Some(sni) if !valid(sni) => Err(StateError::invalid(
            field("sni"),
            sni,
            "expected a host name or *.domain",
        )),
        Some(_) if route.host.is_some() || route.path_prefix.is_some() => Err(StateError::invalid(
            field("host"),
            route.host.as_deref().unwrap_or_default(),
            "a tcp frontend sees no host or path: route by sni",
        )),
        Some(_) => Ok(()),
    }
}

/// Exactly one of pool, split, respond and redirect, and each valid.
fn check_target(
    route: &RouteSpec,
    field: &dyn Fn(&str) -> String,
    pools: &HashSet<&str>,
) -> Result<(), StateError> {
    let targets = [
        !route.pool.is_empty(),
        !route.split.is_empty(),
        route.respond.is_some(),
        route.redirect.is_some(),
    ];
    match targets.iter().filter(|t| **t).count() {
        0 => {
            return Err(StateError::invalid(
                field("pool"),
                "",
                "a route needs a pool, a split, respond or redirect",
            ));
        }
        1 => {}
        _ => {
            return Err(StateError::invalid(
                field("pool"),
                &route.pool,
                "a route has one of pool, split, respond and redirect",
            ));
        }
    }
    if !route.pool.is_empty() && !pools.contains(route.pool.as_str()) {
        return Err(StateError::invalid(
            field("pool"),
            &route.pool,
            "no pool has this name",
        ));
    }
    if !route.split.is_empty() {
        check_split(&field("split"), &route.split, pools)?;
    }
    if let Some(respond) = &route.respond {
        if !(200..=599).contains(&respond.status) {
            return Err(StateError::invalid(
                field("respond.status"),
                respond.status,
                "must be 200 to 599",
            ));
        }
        if respond.body.len() > MAX_FIXED_BODY {
            return Err(StateError::invalid(
                field("respond.body"),
                format!("{} bytes", respond.body.len()),
                "at most 4096 bytes",
            ));
        }
        if let Some(kind) = &respond.content_type
            && HeaderValue::from_str(kind).is_err()
        {
            return Err(StateError::invalid(
                field("respond.content_type"),
                kind,
                "not a valid header value",
            ));
        }
    }
    if let Some(redirect) = &route.redirect {
        if ![301, 302, 303, 307, 308].contains(&redirect.status) {
            return Err(StateError::invalid(
                field("redirect.status"),
                redirect.status,
                "expected 301, 302, 303, 307 or 308",
            ));
        }
        if redirect.location.is_empty() || HeaderValue::from_str(&redirect.location).is_err() {
            return Err(StateError::invalid(
                field("redirect.location"),
                &redirect.location,
                "expected a URL or a path",
            ));
        }
        if redirect.keep_path && redirect.location.contains(['?', '#']) {
            return Err(StateError::invalid(
                field("redirect.location"),
                &redirect.location,
                "with keep_path, the request's path and query are appended: no query or fragment here",
            ));
        }
    }
    Ok(())
}

/// A header or query condition: a name and one of value, prefix, present.
fn check_match(field: &str, condition: &HeaderMatch, header: bool) -> Result<(), StateError> {
    let conditions = usize::from(condition.value.is_some())
        + usize::from(condition.prefix.is_some())
        + usize::from(condition.present);
    let name_ok = if header {
        HeaderName::from_bytes(condition.name.as_bytes()).is_ok()
    } else {
        !condition.name.is_empty()
    };
    if !name_ok || conditions != 1 {
        let what = if header { "header" } else { "parameter" };
        return Err(StateError::invalid(
            field,
            &condition.name,
            format!("a {what} name and one of value, prefix or present = true"),
        ));
    }
    Ok(())
}

/// Header names and values that are valid, and none that frames the
/// message or belongs to one hop (those are the balancer's to write).
fn check_rewrite(field: &str, rewrite: &HeaderRewrite) -> Result<(), StateError> {
    const RESERVED: [&str; 7] = [
        "connection",
        "content-length",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "keep-alive",
    ];
    let names = rewrite
        .remove
        .iter()
        .chain(rewrite.set.keys())
        .chain(rewrite.add.keys());
    for name in names {
        let Ok(parsed) = HeaderName::from_bytes(name.as_bytes()) else {
            return Err(StateError::invalid(field, name, "not a valid header name"));
        };
        if RESERVED.contains(&parsed.as_str()) {
            return Err(StateError::invalid(
                field,
                name,
                "framing and hop-by-hop headers are the balancer's to write",
            ));
        }
    }
    for (name, value) in rewrite.set.iter().chain(rewrite.add.iter()) {
        if HeaderValue::from_str(value).is_err() {
            return Err(StateError::invalid(
                format!("{field}.{name}"),
                value,
                "not a valid header value",
            ));
        }
    }
    Ok(())
}
