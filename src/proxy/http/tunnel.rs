//! HTTP/1.1 `Upgrade` (WebSocket and the like): the request goes to a
//! backend on a connection of its own; if the backend answers `101
//! Switching Protocols`, the client's and the backend's connections are
//! joined byte for byte until either side closes. Nothing crosses before
//! the `101` (hyper hands over neither connection earlier: a client byte
//! sent early is not read as a request nor relayed), and a backend that
//! refuses the upgrade has its answer passed back unchanged.
//!
//! A tunnel counts as an open connection of its backend (least
//! connections sees it) and of its frontend (`raftlb_frontend_tunnels`),
//! is closed after `tunnel_timeout_ms` without data either way, and on
//! shutdown both sides are closed (a FIN the client sees) rather than cut
//! by the process exiting.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode, Version};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use super::body::{ResponseBody, UpstreamBody};
use super::headers;
use super::local_response;
use super::request::{Outgoing, RequestHandler};
use super::upstream::Lease;
use crate::proxy::backend_stream::BackendStream;
use crate::proxy::splice::Meter;
use crate::proxy::tcp::{Metered, idle};
use crate::routing::{BackendRuntime, Frontend, FrontendStats, Pool, now_ms};

/// A joined pair of connections, run by the client connection's task once
/// hyper has handed its connection over.
pub type Tunnel = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The protocol an HTTP/1.1 request asks to switch to (`Upgrade`, named
/// in `Connection`); `None` for an ordinary request. `h2c` is not relayed
/// (it is a hop's own upgrade to HTTP/2).
pub fn requested<B>(request: &Request<B>) -> Option<HeaderValue> {
    if request.version() != Version::HTTP_11 {
        return None;
    }
    let named = request
        .headers()
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("upgrade"));
    let protocol = request.headers().get(header::UPGRADE)?;
    let h2c = protocol
        .to_str()
        .is_ok_and(|p| p.split(',').any(|p| p.trim().eq_ignore_ascii_case("h2c")));
    (named && !h2c).then(|| protocol.clone())
}

impl RequestHandler {
    /// Sends an upgrade request to a backend of `pool` on a connection of
    /// its own and answers with the backend's response; on `101`, leaves
    /// the tunnel for the connection's task to run.
    pub(super) async fn upgrade(
        &self,
        frontend: &Frontend,
        pool: &Pool,
        (key, pinned): (Option<&[u8]>, Option<usize>),
        mut outgoing: Outgoing,
        (protocol, client_side): (HeaderValue, OnUpgrade),
    ) -> Response<ResponseBody> {
        if pool.protocol.is_h2() {
            return local_response::error(
                StatusCode::NOT_IMPLEMENTED,
                "upgrades go to HTTP/1.1 backends; this pool speaks HTTP/2",
                false,
            );
        }
        let connect_timeout = Duration::from_millis(frontend.spec.connect_timeout_ms);
        let attempts = frontend.spec.retries as usize + 1;
        let mut tried = Vec::with_capacity(attempts);
        outgoing.headers.insert(header::UPGRADE, protocol);
        outgoing
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        for attempt in 0..attempts {
            // A sticky client's backend first (`[pool.sticky]`).
            let chosen = match pinned {
                Some(index) if attempt == 0 => Some(index),
                _ => pool.pick(key, self.client.ip(), &tried),
            };
            let Some(index) = chosen else {
                break;
            };
            tried.push(index);
            let backend = &pool.backends[index];
            let stream = match BackendStream::open(
                self.upstreams.source(),
                backend.address,
                pool.tls.as_deref(),
                connect_timeout,
            )
            .await
            {
                Ok(stream) => stream,
                Err(error) => {
                    // Nothing reached it: the next backend may take it.
                    pool.record_failure(index, "connect failed");
                    tracing::debug!(backend = %backend.address, %error, "upgrade: connect failed");
                    continue;
                }
            };
            let runtime = backend.runtime.clone();
            runtime.requests.inc();
            runtime.active.inc();
            let response = self
                .exchange(frontend, &outgoing, backend.authority.as_str(), stream)
                .await;
            let response = match response {
                Ok(response) => response,
                Err(failure) => {
                    runtime.active.dec();
                    pool.record_failure(index, "upgrade failed");
                    return failure;
                }
            };
            pool.record_answer(index, response.status().as_u16());
            let mut response = response;
            self.pin(pool, pinned, index, response.headers_mut());
            return self.answer(frontend, response, runtime, client_side);
        }
        local_response::error(
            StatusCode::BAD_GATEWAY,
            "no backend accepted the connection",
            false,
        )
    }

    /// Sends the upgrade request on `stream` and waits for the answer's
    /// head within the response timeout.
    async fn exchange(
        &self,
        frontend: &Frontend,
        outgoing: &Outgoing,
        authority: &str,
        stream: BackendStream,
    ) -> Result<Response<hyper::body::Incoming>, Response<ResponseBody>> {
        let bad_gateway = |detail| local_response::error(StatusCode::BAD_GATEWAY, detail, false);
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake::<_, UpstreamBody>(TokioIo::new(stream))
                .await
                .map_err(|_| bad_gateway("backend connection failed"))?;
        // Driven on its own until it hands the connection over (101) or
        // the response ends.
        tokio::spawn(async move {
            let _ = connection.with_upgrades().await;
        });
        let mut request = Request::new(UpstreamBody::empty());
        *request.method_mut() = outgoing.method.clone();
        *request.version_mut() = Version::HTTP_11;
        *request.uri_mut() = http::Uri::from(outgoing.path.clone());
        *request.headers_mut() = outgoing.headers.clone();
        let host = outgoing
            .authority
            .as_ref()
            .map_or(authority, |a| a.as_str());
        if let Ok(host) = HeaderValue::from_str(host) {
            request.headers_mut().insert(header::HOST, host);
        }
        let response_timeout = Duration::from_millis(frontend.spec.response_timeout_ms);
        match tokio::time::timeout(response_timeout, sender.send_request(request)).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(_)) => Err(bad_gateway("backend connection failed")),
            Err(_) => Err(local_response::error(
                StatusCode::GATEWAY_TIMEOUT,
                "backend did not answer in time",
                false,
            )),
        }
    }

    /// The backend's answer for the client: on `101`, with the tunnel left
    /// for the connection's task; otherwise as it came.
    fn answer(
        &self,
        frontend: &Frontend,
        mut response: Response<hyper::body::Incoming>,
        runtime: Arc<BackendRuntime>,
        client_side: OnUpgrade,
    ) -> Response<ResponseBody> {
        if response.status() != StatusCode::SWITCHING_PROTOCOLS {
            headers::remove_hop_by_hop(response.headers_mut());
            let (parts, body) = response.into_parts();
            let body = ResponseBody::upstream(
                body,
                frontend.stats.clone(),
                runtime,
                Lease::Detached,
                self.activity.clone(),
                false,
            );
            return Response::from_parts(parts, body);
        }
        let backend_side = hyper::upgrade::on(&mut response);
        let protocol = response.headers().get(header::UPGRADE).cloned();
        headers::remove_hop_by_hop(response.headers_mut());
        let (mut parts, _) = response.into_parts();
        if let Some(protocol) = protocol {
            parts.headers.insert(header::UPGRADE, protocol);
        }
        parts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        let open = OpenTunnel::new(frontend.stats.clone(), runtime);
        let idle_after = Duration::from_millis(frontend.spec.tunnel_timeout_ms);
        let shutdown = self.engine.shutdown.clone();
        self.leave_tunnel(Box::pin(async move {
            let (client, backend) = match tokio::join!(client_side, backend_side) {
                (Ok(client), Ok(backend)) => (client, backend),
                _ => return,
            };
            open.relay(
                TokioIo::new(client),
                TokioIo::new(backend),
                idle_after,
                shutdown,
            )
            .await;
        }));
        Response::from_parts(parts, ResponseBody::Local(None))
    }
}

/// A tunnel's place in the counters, given back when it ends.
struct OpenTunnel {
    frontend: Arc<FrontendStats>,
    backend: Arc<BackendRuntime>,
}

impl OpenTunnel {
    fn new(frontend: Arc<FrontendStats>, backend: Arc<BackendRuntime>) -> Self {
        frontend.tunnels.inc();
        OpenTunnel { frontend, backend }
    }

    /// Copies both ways until either side closes, nothing moves for
    /// `idle_after`, or `shutdown`; then closes both.
    async fn relay<C, B>(
        &self,
        mut client: C,
        mut backend: B,
        idle_after: Duration,
        shutdown: tokio_util::sync::CancellationToken,
    ) where
        C: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
        B: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        use tokio::io::AsyncWriteExt;
        let last_activity = AtomicU64::new(now_ms());
        let outcome = {
            let mut client_side = Metered {
                inner: &mut client,
                meter: Meter {
                    read: &self.frontend.bytes_in,
                    last_activity: &last_activity,
                },
            };
            let mut backend_side = Metered {
                inner: &mut backend,
                meter: Meter {
                    read: &self.backend.bytes_in,
                    last_activity: &last_activity,
                },
            };
            tokio::select! {
                result = tokio::io::copy_bidirectional(&mut client_side, &mut backend_side) => {
                    match result {
                        Ok((to_backend, to_client)) => {
                            self.backend.bytes_out.inc_by(to_backend);
                            self.frontend.bytes_out.inc_by(to_client);
                            "closed"
                        }
                        Err(_) => "reset",
                    }
                }
                () = idle(&last_activity, idle_after) => "tunnel timeout",
                () = shutdown.cancelled() => "shutting down",
            }
        };
        // Both told: a FIN each way, not a reset.
        let _ = tokio::time::timeout(Duration::from_secs(1), client.shutdown()).await;
        let _ = tokio::time::timeout(Duration::from_secs(1), backend.shutdown()).await;
        tracing::debug!(backend = %self.backend.address, outcome, "tunnel ended");
    }
}

impl Drop for OpenTunnel {
    fn drop(&mut self) {
        self.frontend.tunnels.dec();
        self.backend.active.dec();
    }
}
