//! What the relay does with a request whose head it has read, decided in
//! one synchronous step while the head is borrowed from the read buffer:
//! answer it alone (a refusal, a rate limit, a route's own answer), hand
//! the connection to hyper (what the relay does not take), or forward it,
//! with the backend's head already written. Routing, splits, sticky pins
//! and header rules are the hyper path's own functions.

use std::borrow::Cow;
use std::time::Duration;

use http::uri::PathAndQuery;
use http::{Method, Response, StatusCode};

use super::connection::Connection;
use super::framing::BodyLength;
use super::head::{self, HeadError};
use super::request_head;
use crate::proxy::http::request::{affinity_key, is_idempotent, over_limit};
use crate::proxy::http::{MAX_HEADERS, ResponseBody, headers, local_response, split_arm, sticky};
use crate::routing::{Frontend, HeaderView, Pool, Route, RoutingTable, StickyKeys, path};

/// What a request comes to.
pub enum Plan<'t> {
    /// Forward it; the backend's head is in the output buffer.
    Forward(Forward<'t>),
    /// Answer it alone; `close`: then close the connection; `head`: the
    /// request was a HEAD (no body in the answer).
    Answer {
        response: Response<ResponseBody>,
        close: bool,
        head: bool,
    },
    /// Hand the connection, this request included, to hyper.
    HandOff,
}

/// A request to forward: where, and how.
pub struct Forward<'t> {
    pub route: Option<&'t Route>,
    pub pool: &'t Pool,
    /// The bytes a Maglev pool hashes (`None`: the client's address).
    pub key: Option<Vec<u8>>,
    /// The backend a sticky cookie names.
    pub pinned: Option<usize>,
    /// The method may be sent again after a failure.
    pub idempotent: bool,
    pub head_request: bool,
    /// Where the request's body ends.
    pub body: BodyLength,
    /// The client asked to close after this exchange.
    pub close: bool,
    pub response_timeout: Duration,
}

/// A head read from the front of `buf`, and what comes of it; `Ok(None)`
/// until the head is complete; `Err` for a head refused outright.
pub fn plan<'t>(
    buf: &[u8],
    table: &'t RoutingTable,
    frontend: &'t Frontend,
    keys: &StickyKeys,
    conn: &Connection<'_>,
    out: &mut Vec<u8>,
) -> Result<Option<(usize, Plan<'t>)>, HeadError> {
    let mut lines = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let Some(head) = head::parse_request(buf, &mut lines)? else {
        return Ok(None);
    };
    Ok(Some((
        head.length,
        decide(&head, table, frontend, keys, conn, out),
    )))
}

fn decide<'t>(
    head: &head::RequestHead<'_, '_>,
    table: &'t RoutingTable,
    frontend: &'t Frontend,
    keys: &StickyKeys,
    conn: &Connection<'_>,
    out: &mut Vec<u8>,
) -> Plan<'t> {
    let lines = HeaderView::Lines(head.headers);
    // hyper serves: HTTP/1.0, CONNECT and targets not in origin form,
    // upgrades, `Expect`, gRPC, ACME challenges and HTTPS redirects.
    let handed_off = head.version == 0
        || head.method == "CONNECT"
        || !head.target.starts_with('/')
        || head.target.contains('#')
        || head.target.starts_with("/.well-known/acme-challenge/")
        || frontend.spec.redirect_https
        || head.headers.iter().any(|h| {
            h.name.eq_ignore_ascii_case("upgrade")
                || h.name.eq_ignore_ascii_case("expect")
                || (h.name.eq_ignore_ascii_case("content-type")
                    && h.value.starts_with(b"application/grpc"))
        });
    if handed_off {
        return Plan::HandOff;
    }
    let Ok(method) = Method::from_bytes(head.method.as_bytes()) else {
        return refuse(StatusCode::BAD_REQUEST, "malformed method");
    };
    let close = lines.has_token("connection", b"close");
    // A local answer: the connection closes after it when the client asked,
    // or when the request's body was not read (what follows the head is not
    // known to be a request).
    let answer = |response: Response<ResponseBody>| Plan::Answer {
        close: close || head.body != BodyLength::Empty || super::local::asks_close(&response),
        head: method == Method::HEAD,
        response,
    };
    let (path, query) = match head.target.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (head.target, None),
    };
    // Routes match the path in one spelling, and the backend gets it.
    let normal = match path::normalize(path) {
        Cow::Borrowed(_) => None,
        Cow::Owned(normal) => {
            let target = match query {
                Some(query) => format!("{normal}?{query}"),
                None => normal.clone(),
            };
            if PathAndQuery::try_from(target.as_str()).is_err() {
                return refuse(StatusCode::BAD_REQUEST, "malformed path");
            }
            Some((normal, target))
        }
    };
    let target = normal.as_ref().map_or(head.target, |(_, target)| target);
    let host = lines
        .first("host")
        .and_then(|h| std::str::from_utf8(h).ok())
        .map(headers::strip_port);
    let facts = crate::routing::RequestFacts {
        host,
        path: normal.as_ref().map_or(path, |(normal, _)| normal),
        query,
        method: &method,
        headers: lines,
        client: conn.client.ip(),
    };
    let routed = frontend.route(&facts);
    let pool = table.pool(match routed.split {
        Some(split) => split_arm::choose(split, table, lines, keys, conn.client.ip()),
        None => routed.pool,
    });
    if pool.protocol.is_h2() {
        return Plan::HandOff;
    }
    if let Some(limit) = frontend.spec.rate_limit
        && let Some(response) =
            over_limit(frontend, limit, &frontend.stats.limiter, conn.client.ip())
    {
        return answer(response);
    }
    let route = routed.route;
    if let Some(route) = route {
        let refused = route
            .rate_limit
            .as_ref()
            .and_then(|(limit, limiter)| over_limit(frontend, *limit, limiter, conn.client.ip()));
        let answered = || Some(local_response::route_answer(route.answer.as_ref()?, target));
        if let Some(mut response) = refused.or_else(answered) {
            if let Some(edits) = &route.response_edits {
                edits.apply(response.headers_mut());
            }
            return answer(response);
        }
    }
    request_head::write(
        out,
        head.method,
        target,
        head.headers,
        head.body,
        &request_head::Rules {
            client: &conn.client_value,
            https: conn.https,
            sticky_cookie: pool.sticky.as_ref().map(|s| s.cookie.as_str()),
            edits: route.and_then(|r| r.request_edits.as_ref()),
        },
    );
    Plan::Forward(Forward {
        route,
        pool,
        key: affinity_key(pool, lines).map(<[u8]>::to_vec),
        pinned: sticky::pinned(pool, lines, keys),
        idempotent: is_idempotent(&method),
        head_request: method == Method::HEAD,
        body: head.body,
        close,
        response_timeout: Duration::from_millis(frontend.spec.response_timeout_ms),
    })
}

fn refuse<'t>(status: StatusCode, why: &str) -> Plan<'t> {
    Plan::Answer {
        response: local_response::error(status, why, true),
        close: true,
        head: false,
    }
}
