//! L7: HTTP/1.1 on hyper. Each client connection is served by hyper's
//! server; each request is routed, balanced and sent on a pooled
//! keep-alive connection to a backend.

mod body;
mod framing_guard;
mod grpc;
mod h2_server;
pub(crate) mod headers;
mod idle;
pub(crate) mod local_response;
pub(crate) mod request;
pub(crate) mod split_arm;
pub(crate) mod sticky;
mod tunnel;
mod upstream;
mod upstream_h2;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};

use super::Engine;
use crate::proxy::relay::{Ended, Prefixed};
pub use body::ResponseBody;
#[cfg(test)]
pub(crate) use local_response::error as local_error;
pub use upstream::UpstreamPool;

/// Largest request head (request line and headers together); larger heads
/// are answered 431 by hyper.
pub const MAX_HEAD_BYTES: usize = 32 * 1024;
/// Most header lines in a request; more are answered 431. This is hyper's
/// own default: setting it explicitly makes hyper allocate the header
/// index on the heap for every request.
pub const MAX_HEADERS: usize = 100;
/// Longest request target; longer ones are answered 414.
pub const MAX_URI_BYTES: usize = 8 * 1024;

/// Serves one client connection on HTTP frontend `frontend` until the
/// client leaves, an error closes it, or shutdown lets it finish its
/// current request; `https`: `stream` is the TLS session; `h2`: the
/// client speaks HTTP/2 (ALPN chose it, or it sent the h2c preface).
pub async fn serve<S>(
    engine: &Arc<Engine>,
    frontend: &str,
    stream: S,
    client: SocketAddr,
    upstreams: UpstreamPool,
    https: bool,
    h2: bool,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (stats, header_timeout, idle_timeout) = {
        let table = engine.table.load();
        let Some(front) = table.frontend(frontend) else {
            return;
        };
        (
            front.stats.clone(),
            Duration::from_millis(front.spec.header_timeout_ms),
            Duration::from_millis(front.spec.idle_timeout_ms),
        )
    };
    stats.connections.inc();
    stats.active.inc();
    // HTTP/1.1 goes to the relay, which hands the connection back at the
    // first request it does not take.
    let stream = if engine.relay && !h2 {
        let relay = crate::proxy::relay::Connection {
            engine,
            frontend,
            client,
            client_value: headers::client_value(client.ip()),
            upstreams: &upstreams,
            https,
            header_timeout,
            idle_timeout,
        };
        match relay.serve(stream).await {
            Ended::Closed => {
                stats.active.dec();
                return;
            }
            Ended::HandOff(stream) => stream,
        }
    } else {
        Prefixed::new(bytes::Bytes::new(), stream)
    };
    // Boxed: a connection the relay serves to its end never carries
    // hyper's (much larger) state.
    let settings = HyperSettings {
        header_timeout,
        idle_timeout,
        https,
        h2,
    };
    Box::pin(serve_on_hyper(
        engine, frontend, stream, client, upstreams, &stats, settings,
    ))
    .await;
    stats.active.dec();
}

/// What hyper's side of a connection is set up with.
struct HyperSettings {
    header_timeout: Duration,
    idle_timeout: Duration,
    https: bool,
    h2: bool,
}

/// Serves a client connection on hyper.
async fn serve_on_hyper<S>(
    engine: &Arc<Engine>,
    frontend: &str,
    stream: S,
    client: SocketAddr,
    upstreams: UpstreamPool,
    stats: &Arc<crate::routing::FrontendStats>,
    settings: HyperSettings,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let HyperSettings {
        header_timeout,
        idle_timeout,
        https,
        h2,
    } = settings;
    let activity = Arc::new(idle::Activity::default());
    let ambiguous = Arc::new(framing_guard::AmbiguousRequests::default());
    let closing = Arc::new(tokio::sync::Notify::new());
    let handler = Arc::new(request::RequestHandler {
        engine: engine.clone(),
        frontend: frontend.into(),
        client,
        client_value: headers::client_value(client.ip()),
        upstreams,
        header_timeout,
        ambiguous: ambiguous.clone(),
        requests: AtomicU64::new(0),
        cancelled: AtomicU64::new(0),
        closing: closing.clone(),
        activity: activity.clone(),
        https,
        tunnel: std::sync::Mutex::new(None),
    });
    let tunnels = handler.clone();
    let service = service_fn(move |req| handler.clone().handle(req));
    let result = if h2 {
        h2_server::serve(
            engine,
            stats,
            stream,
            service,
            &activity,
            idle_timeout,
            &closing,
        )
        .await
    } else {
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            // Also bounds how long an idle keep-alive client may wait before
            // starting its next request.
            .header_read_timeout(header_timeout)
            .max_header_size(MAX_HEAD_BYTES)
            .keep_alive(true);
        let connection = builder
            .serve_connection(
                TokioIo::new(
                    framing_guard::FramingGuard::new(stream, ambiguous).stamping(activity.clone()),
                ),
                service,
            )
            .with_upgrades();
        tokio::pin!(connection);
        tokio::select! {
            result = connection.as_mut() => result,
            side = activity.stalled(idle_timeout) => {
                // Dropping the connection closes the client's socket, and the
                // body in flight with it: its backend connection is closed,
                // not pooled, as it was not read to the end.
                match side {
                    idle::Side::Client => stats.client_timeouts.inc(),
                    idle::Side::Server => stats.server_timeouts.inc(),
                };
                tracing::info!(
                    frontend,
                    %client,
                    side = side.as_str(),
                    idle_ms = idle_timeout.as_millis() as u64,
                    "http exchange cut: no data from one side for the idle timeout"
                );
                Ok(())
            }
            () = engine.shutdown.cancelled() => {
                // Finish the request in flight, then close.
                connection.as_mut().graceful_shutdown();
                connection.await
            }
        }
    };
    if let Err(error) = result {
        tracing::debug!(frontend, %client, %error, "http connection ended with an error");
    }
    // An upgrade answered 101: hyper has handed the connection over.
    if let Some(tunnel) = tunnels.take_tunnel() {
        tunnel.await;
    }
}
