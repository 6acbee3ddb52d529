//! One HTTP request: checked, routed, balanced, sent, retried when safe.

use std::borrow::Cow;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use http::header::{self, HeaderValue};
use http::uri::{Authority, PathAndQuery, Uri};
use http::{Method, Request, Response, StatusCode, Version};
use hyper::body::Incoming;

use super::body::{ClientBody, ResponseBody, UpstreamBody};
use super::framing_guard::AmbiguousRequests;
use super::grpc;
use super::h2_server::PREMATURE_RESETS;
use super::headers::{self, Refusal};
use super::split_arm;
use super::sticky;
use super::tunnel::{self, Tunnel};
use super::upstream::{SendError, UpstreamPool};
use super::{MAX_URI_BYTES, local_response};
use crate::config::RateLimit;
use crate::proxy::Engine;
use crate::routing::{Frontend, HeaderView, Pool, RateLimiter, RequestFacts, RoutingTable, path};
use crate::state::HashKey;

/// Most attempts a request can make (first try plus the largest `retries`).
pub(crate) const MAX_ATTEMPTS: usize = 9;

/// Serves the requests of one client connection.
pub struct RequestHandler {
    pub(super) engine: Arc<Engine>,
    pub(super) frontend: Arc<str>,
    pub(super) client: SocketAddr,
    /// The client's address as an `X-Forwarded-For` entry.
    pub(super) client_value: HeaderValue,
    pub(super) upstreams: UpstreamPool,
    pub(super) header_timeout: Duration,
    /// Requests of this connection seen to carry both framings.
    pub(super) ambiguous: Arc<AmbiguousRequests>,
    /// Requests handled on this connection so far.
    pub(super) requests: AtomicU64,
    /// Requests of this connection that the client gave up on before
    /// their response began.
    pub(super) cancelled: AtomicU64,
    /// Notified when the client cancels too many requests (HTTP/2 rapid
    /// reset): the connection is closed.
    pub(super) closing: Arc<tokio::sync::Notify>,
    /// Progress of this connection's bodies, for the idle timeout.
    pub(super) activity: Arc<super::idle::Activity>,
    /// The client came over TLS.
    pub(super) https: bool,
    /// A tunnel set up by the last request (its `101` on its way), for the
    /// connection's task to run once hyper hands the connection over.
    pub(super) tunnel: std::sync::Mutex<Option<Tunnel>>,
}

/// The parts of a request that every attempt reuses.
pub(super) struct Outgoing {
    pub(super) method: Method,
    pub(super) path: PathAndQuery,
    /// The host the client asked for (`Host`, or HTTP/2's `:authority`).
    pub(super) authority: Option<Authority>,
    pub(super) headers: http::HeaderMap,
    body: Option<ClientBody>,
    /// The client accepts trailers (`TE: trailers`, which gRPC needs);
    /// passed on to HTTP/2 backends.
    trailers: bool,
    /// How long the backend has to start its response: the frontend's
    /// `response_timeout_ms`, or a gRPC call's shorter `grpc-timeout`.
    response_timeout: Duration,
}

impl RequestHandler {
    /// hyper's entry point; never fails, since every error becomes a
    /// response.
    pub async fn handle(
        self: Arc<Self>,
        request: Request<Incoming>,
    ) -> Result<Response<ResponseBody>, Infallible> {
        let started = Instant::now();
        let table = self.engine.table.load_full();
        let Some(frontend) = table.frontend(&self.frontend) else {
            // The frontend was removed while this connection was open.
            return Ok(local_response::error(
                StatusCode::SERVICE_UNAVAILABLE,
                "frontend removed",
                true,
            ));
        };
        frontend.stats.requests.inc();
        let number = self.requests.fetch_add(1, Ordering::Relaxed) + 1;
        let mut in_flight = InFlight {
            handler: &self,
            stats: &frontend.stats,
            answered: false,
        };
        self.activity.request_began();
        let response = if self.ambiguous.is_ambiguous(number) {
            local_response::error(
                StatusCode::BAD_REQUEST,
                "both Content-Length and Transfer-Encoding",
                true,
            )
        } else if let Some(answer) = self.acme_challenge(&request) {
            answer
        } else if let Some(refusal) = self.rate_limited(frontend) {
            refusal
        } else if frontend.spec.redirect_https {
            local_response::to_https(&request)
        } else if grpc::is_call(request.headers()) {
            // The balancer's own errors in the form a gRPC client reads.
            let response = self.forward(&table, frontend, request).await;
            match response.body() {
                ResponseBody::Local(_) if response.status().as_u16() >= 400 => {
                    let status = response.status();
                    grpc::error(
                        grpc::code_for(status),
                        &format!("raftlb: {}", local_detail(status)),
                    )
                }
                _ => response,
            }
        } else {
            self.forward(&table, frontend, request).await
        };
        in_flight.answered = true;
        drop(in_flight);
        frontend.stats.count_response(response.status().as_u16());
        frontend
            .stats
            .duration
            .observe(started.elapsed().as_secs_f64());
        Ok(response)
    }

    /// `429 Too Many Requests` with `Retry-After`, when the client is over
    /// the frontend's rate limit.
    fn rate_limited(&self, frontend: &Frontend) -> Option<Response<ResponseBody>> {
        let limit = frontend.spec.rate_limit?;
        over_limit(frontend, limit, &frontend.stats.limiter, self.client.ip())
    }

    /// The answer to an ACME HTTP-01 validation request
    /// (`GET /.well-known/acme-challenge/TOKEN`) for an order under way,
    /// on every node and every HTTP frontend, before routing and redirects.
    fn acme_challenge(&self, request: &Request<Incoming>) -> Option<Response<ResponseBody>> {
        let token = request
            .uri()
            .path()
            .strip_prefix("/.well-known/acme-challenge/")?;
        let answer = self.engine.table.acme_challenge(token)?;
        Some(local_response::text(StatusCode::OK, answer))
    }

    async fn forward(
        &self,
        table: &RoutingTable,
        frontend: &Frontend,
        mut request: Request<Incoming>,
    ) -> Response<ResponseBody> {
        match headers::check_request(&request, MAX_URI_BYTES) {
            Ok(()) => {}
            Err(Refusal::BadRequest(why)) => {
                return local_response::error(StatusCode::BAD_REQUEST, why, true);
            }
            Err(Refusal::UriTooLong) => {
                return local_response::error(
                    StatusCode::URI_TOO_LONG,
                    "request target too long",
                    true,
                );
            }
        }
        // Routes match the path in one spelling, and the backend gets
        // that spelling (routing::path).
        let normal = match path::normalize(request.uri().path()) {
            Cow::Owned(normal) => Some(normal),
            Cow::Borrowed(_) => None,
        };
        let target = normal.as_ref().map(|normal| {
            let query = request.uri().query();
            PathAndQuery::try_from(match query {
                Some(query) => format!("{normal}?{query}"),
                None => normal.clone(),
            })
        });
        let target = match target {
            None => None,
            Some(Ok(target)) => Some(target),
            Some(Err(_)) => {
                return local_response::error(StatusCode::BAD_REQUEST, "malformed path", true);
            }
        };
        let facts = RequestFacts {
            host: headers::request_host(&request),
            path: normal.as_deref().unwrap_or(request.uri().path()),
            query: request.uri().query(),
            method: request.method(),
            headers: HeaderView::Map(request.headers()),
            client: self.client.ip(),
        };
        let routed = frontend.route(&facts);
        let route = routed.route;
        if let Some(route) = route {
            let refused = route.rate_limit.as_ref().and_then(|(limit, limiter)| {
                over_limit(frontend, *limit, limiter, self.client.ip())
            });
            let answered = || {
                let target = target
                    .as_ref()
                    .or(request.uri().path_and_query())
                    .map_or("/", PathAndQuery::as_str);
                Some(local_response::route_answer(route.answer.as_ref()?, target))
            };
            if let Some(mut response) = refused.or_else(answered) {
                if let Some(edits) = &route.response_edits {
                    edits.apply(response.headers_mut());
                }
                return response;
            }
        }
        let pool = table.pool(match routed.split {
            Some(split) => split_arm::choose(
                split,
                table,
                HeaderView::Map(request.headers()),
                &self.engine.table.sticky_keys(),
                self.client.ip(),
            ),
            None => routed.pool,
        });
        let key = affinity_key(pool, HeaderView::Map(request.headers())).map(<[u8]>::to_vec);
        let pinned = sticky::pinned(
            pool,
            HeaderView::Map(request.headers()),
            &self.engine.table.sticky_keys(),
        );
        let upgrade = tunnel::requested(&request)
            .map(|protocol| (protocol, hyper::upgrade::on(&mut request)));
        let (parts, body) = request.into_parts();
        let body = if http_body::Body::is_end_stream(&body) {
            None
        } else {
            match tokio::time::timeout(self.header_timeout, ClientBody::start(body)).await {
                Ok(Ok(body)) => body,
                Ok(Err(error)) => {
                    tracing::debug!(client = %self.client, %error, "malformed request body");
                    return local_response::error(
                        StatusCode::BAD_REQUEST,
                        "malformed request body",
                        true,
                    );
                }
                Err(_) => {
                    return local_response::error(
                        StatusCode::REQUEST_TIMEOUT,
                        "request body not received",
                        true,
                    );
                }
            }
        };
        let mut headers = parts.headers;
        let authority = match headers.get(header::HOST) {
            Some(host) => Authority::try_from(host.as_bytes()).ok(),
            None => parts.uri.authority().cloned(),
        };
        let host = authority
            .as_ref()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok());
        let trailers = headers
            .get_all(header::TE)
            .iter()
            .any(|te| te.as_bytes().eq_ignore_ascii_case(b"trailers"));
        headers::remove_hop_by_hop(&mut headers);
        headers.remove(header::EXPECT); // already answered by hyper
        if let Some(sticky) = &pool.sticky {
            sticky::strip(&mut headers, &sticky.cookie);
        }
        if let Some(edits) = route.and_then(|r| r.request_edits.as_ref()) {
            edits.apply(&mut headers);
        }
        headers::add_forwarding(&mut headers, &self.client_value, host.as_ref(), self.https);
        let response_timeout = Duration::from_millis(frontend.spec.response_timeout_ms);
        let outgoing = Outgoing {
            method: parts.method,
            path: target
                .or_else(|| parts.uri.path_and_query().cloned())
                .unwrap_or_else(|| PathAndQuery::from_static("/")),
            authority,
            response_timeout: grpc::timeout(&headers)
                .map_or(response_timeout, |t| t.min(response_timeout)),
            headers,
            body,
            trailers,
        };
        let mut response = match upgrade {
            Some(upgrade) => {
                self.upgrade(frontend, pool, (key.as_deref(), pinned), outgoing, upgrade)
                    .await
            }
            None => {
                self.send(frontend, pool, key.as_deref(), pinned, outgoing)
                    .await
            }
        };
        if let Some(edits) = route.and_then(|r| r.response_edits.as_ref()) {
            edits.apply(response.headers_mut());
        }
        response
    }

    /// Pins the client to backend `index` of a sticky pool with a cookie
    /// on the answer, unless its cookie already names it (a new client,
    /// or its backend gone: a redispatch).
    pub(super) fn pin(
        &self,
        pool: &Pool,
        pinned: Option<usize>,
        index: usize,
        headers: &mut http::HeaderMap,
    ) {
        let keys = self.engine.table.sticky_keys();
        if let Some(cookie) = sticky::pin(pool, pinned, index, &keys, self.https) {
            headers.append(header::SET_COOKIE, cookie);
        }
    }

    /// Leaves `tunnel` for the connection's task.
    pub(super) fn leave_tunnel(&self, tunnel: Tunnel) {
        *self.tunnel.lock().unwrap_or_else(|e| e.into_inner()) = Some(tunnel);
    }

    /// The tunnel the last request set up, if any.
    pub(super) fn take_tunnel(&self) -> Option<Tunnel> {
        self.tunnel.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    /// Tries backends until one answers or no retry is safe. A retry is safe
    /// when the failed attempt never connected (nothing reached the
    /// backend), or when the method is idempotent and the body can be sent
    /// again whole.
    async fn send(
        &self,
        frontend: &Frontend,
        pool: &Pool,
        key: Option<&[u8]>,
        pinned: Option<usize>,
        mut outgoing: Outgoing,
    ) -> Response<ResponseBody> {
        let connect_timeout = Duration::from_millis(frontend.spec.connect_timeout_ms);
        let response_timeout = outgoing.response_timeout;
        let h2 = pool.protocol.is_h2();
        let attempts = (frontend.spec.retries as usize + 1).min(MAX_ATTEMPTS);
        let mut tried = [usize::MAX; MAX_ATTEMPTS];
        let mut failure = None;
        for attempt in 0..attempts {
            // A sticky client's backend first, while it can take it.
            let chosen = match pinned {
                Some(index) if attempt == 0 => Some(index),
                _ => pool.pick(key, self.client.ip(), &tried[..attempt]),
            };
            let Some(index) = chosen else {
                break;
            };
            tried[attempt] = index;
            let backend = &pool.backends[index];
            let runtime = backend.runtime.clone();
            let (body, reclaim) = match outgoing.body.take() {
                Some(body) => {
                    let (body, rx) = UpstreamBody::attempt(
                        body,
                        frontend.stats.clone(),
                        runtime.clone(),
                        self.activity.clone(),
                    );
                    (body, Some(rx))
                }
                None => (UpstreamBody::empty(), None),
            };
            let mut request = Request::new(body);
            *request.method_mut() = outgoing.method.clone();
            // The last attempt takes the headers; earlier ones copy them.
            *request.headers_mut() = if attempt + 1 == attempts {
                std::mem::take(&mut outgoing.headers)
            } else {
                outgoing.headers.clone()
            };
            let authority = outgoing.authority.as_ref().unwrap_or(&backend.authority);
            if h2 {
                // The host goes as `:authority`; `TE: trailers` is the one
                // TE HTTP/2 allows.
                *request.version_mut() = Version::HTTP_2;
                let scheme = if pool.tls.is_some() { "https" } else { "http" };
                *request.uri_mut() = Uri::builder()
                    .scheme(scheme)
                    .authority(authority.clone())
                    .path_and_query(outgoing.path.clone())
                    .build()
                    .unwrap_or_else(|_| Uri::from(outgoing.path.clone()));
                request.headers_mut().remove(header::HOST);
                if outgoing.trailers {
                    request
                        .headers_mut()
                        .insert(header::TE, HeaderValue::from_static("trailers"));
                }
            } else {
                *request.version_mut() = Version::HTTP_11;
                *request.uri_mut() = Uri::from(outgoing.path.clone());
                if let Ok(host) = HeaderValue::from_str(authority.as_str()) {
                    request.headers_mut().insert(header::HOST, host);
                }
            }
            runtime.requests.inc();
            runtime.active.inc();
            let started = Instant::now();
            // Boxed, so the request's own future stays small: hyper and
            // tokio move it around by value.
            let exchange = Box::pin(self.upstreams.send(
                backend.address,
                pool.tls.as_deref(),
                h2,
                connect_timeout,
                request,
            ));
            let result = tokio::time::timeout(response_timeout, exchange).await;
            let error = match result {
                Ok(Ok((mut response, lease))) => {
                    runtime.duration.observe(started.elapsed().as_secs_f64());
                    pool.record_answer(index, response.status().as_u16());
                    headers::remove_hop_by_hop(response.headers_mut());
                    self.pin(pool, pinned, index, response.headers_mut());
                    let (parts, body) = response.into_parts();
                    let body = ResponseBody::upstream(
                        body,
                        frontend.stats.clone(),
                        runtime,
                        lease,
                        self.activity.clone(),
                        grpc::is_call(&parts.headers),
                    );
                    return Response::from_parts(parts, body);
                }
                Ok(Err(error)) => error,
                Err(_) => {
                    runtime.active.dec();
                    pool.record_failure(index, "response timed out");
                    return local_response::error(
                        StatusCode::GATEWAY_TIMEOUT,
                        "backend did not answer in time",
                        false,
                    );
                }
            };
            runtime.active.dec();
            let nothing_sent = error.nothing_sent();
            pool.record_failure(
                index,
                match error {
                    SendError::Connect(_) => "connect failed",
                    SendError::NotSent(_) => "connection closed before the request was sent",
                    SendError::Exchange(_) => "request failed",
                },
            );
            tracing::debug!(backend = %backend.address, %error, "backend attempt failed");
            let had_body = reclaim.is_some();
            outgoing.body = reclaim.and_then(|mut rx| rx.try_recv().ok());
            let body_intact = !had_body || outgoing.body.is_some();
            let safe = body_intact && (nothing_sent || is_idempotent(&outgoing.method));
            failure = Some(if nothing_sent {
                "no backend accepted the connection"
            } else {
                "backend connection failed"
            });
            if !safe {
                break;
            }
        }
        match failure {
            Some(detail) => local_response::error(StatusCode::BAD_GATEWAY, detail, false),
            None => local_response::error(
                StatusCode::SERVICE_UNAVAILABLE,
                "no backend available",
                false,
            ),
        }
    }
}

/// `429 Too Many Requests` with `Retry-After`, when `client` is over
/// `limit`, whose buckets `limiter` keeps.
pub(crate) fn over_limit(
    frontend: &Frontend,
    limit: RateLimit,
    limiter: &RateLimiter,
    client: std::net::IpAddr,
) -> Option<Response<ResponseBody>> {
    let wait = limiter.take(client, limit).err()?;
    frontend.stats.rate_limited.inc();
    let mut response = local_response::error(
        StatusCode::TOO_MANY_REQUESTS,
        "rate limit for this address",
        false,
    );
    // Whole seconds, rounded up.
    let seconds = (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    Some(response)
}

/// What a balancer error with `status` means, for a gRPC client.
fn local_detail(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_GATEWAY => "no backend took the call, or its connection broke",
        StatusCode::SERVICE_UNAVAILABLE => "no backend available",
        StatusCode::GATEWAY_TIMEOUT => "the backend did not answer within the deadline",
        _ => "the request was refused",
    }
}

/// A request being handled: when dropped unanswered, the client gave up
/// on it (an HTTP/2 reset, or a closed connection) and it is counted; a
/// connection whose client cancels [`PREMATURE_RESETS`] requests or more,
/// over half of its requests, is closed (rapid reset).
struct InFlight<'a> {
    handler: &'a RequestHandler,
    stats: &'a crate::routing::FrontendStats,
    answered: bool,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.handler.activity.request_ended();
        if self.answered {
            return;
        }
        self.stats.cancelled.inc();
        let cancelled = self.handler.cancelled.fetch_add(1, Ordering::Relaxed) + 1;
        if cancelled >= PREMATURE_RESETS
            && cancelled * 2 > self.handler.requests.load(Ordering::Relaxed)
        {
            self.handler.closing.notify_one();
        }
    }
}

pub(crate) fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// The bytes a Maglev pool hashes for this request; `None` means the
/// client's IP.
pub(crate) fn affinity_key<'a>(pool: &Pool, headers: HeaderView<'a>) -> Option<&'a [u8]> {
    match pool.hash_key.as_ref()? {
        HashKey::SourceIp => None,
        HashKey::Header(name) => headers.first(name.as_str()),
        HashKey::Cookie(name) => headers.cookie(name),
    }
}
