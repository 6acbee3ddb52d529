//! HTTP/2 from clients: over TLS when ALPN chose `h2`, or in clear text on
//! an `http` frontend with `h2c = true` when the client opens with the
//! HTTP/2 preface. Each stream is a request, routed and balanced on its
//! own, by the same handler as HTTP/1.1.
//!
//! The limits against the known HTTP/2 attacks, each ending in a GOAWAY
//! the client sees and a count in `raftlb_frontend_http2_errors`:
//! - rapid reset (CVE-2023-44487): streams the client resets before they
//!   were taken up are capped by h2 ([`MAX_PENDING_RESETS`]); and a
//!   connection whose client cancels most of its requests before their
//!   response began ([`PREMATURE_RESETS`] or more, and over half of them,
//!   Envoy's rule) is closed, since each of those made the node route and
//!   maybe connect for nothing;
//! - CONTINUATION floods and oversized header lists: a header block is
//!   bounded by [`super::MAX_HEAD_BYTES`] however many frames carry it;
//! - SETTINGS and PING floods: h2 answers them in step with its reading
//!   and bounds what it has yet to send, and a client that does not read
//!   its answers is cut by the send buffer's bound;
//! - streams: at most [`MAX_CONCURRENT_STREAMS`] at once per connection.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::http2;
use hyper::service::Service;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Notify;

use super::MAX_HEAD_BYTES;
use super::body::ResponseBody;
use super::idle::Activity;
use crate::proxy::Engine;
use crate::routing::FrontendStats;

/// Streams one client may have open at once (HAProxy's and Envoy's
/// usual 100).
pub const MAX_CONCURRENT_STREAMS: u32 = 100;
/// Streams the client reset before the node took them up, at once, before
/// h2 closes the connection (ENHANCE_YOUR_CALM).
const MAX_PENDING_RESETS: usize = 50;
/// Requests a client may cancel before their response began, and be over
/// half of its requests, before its connection is closed.
pub const PREMATURE_RESETS: u64 = 100;
/// A quiet client is pinged this often, and cut if it does not answer
/// within the same time.
const KEEP_ALIVE: Duration = Duration::from_secs(20);
/// How long a connection closed for rapid reset has to end its streams.
const RAPID_RESET_GRACE: Duration = Duration::from_secs(1);
/// Bytes queued to send on one connection, before h2 stops reading from
/// the client (bounds what a client that does not read can cost).
const MAX_SEND_BUFFER: usize = 400 * 1024;

/// Serves an HTTP/2 client connection until it ends, has been quiet for
/// `idle`, misbehaves (`closing` is notified by the request handler), or
/// shutdown lets its streams finish.
pub(super) async fn serve<S, Svc>(
    engine: &Arc<Engine>,
    stats: &FrontendStats,
    stream: S,
    service: Svc,
    activity: &Activity,
    idle: Duration,
    closing: &Notify,
) -> hyper::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    Svc: Service<Request<Incoming>, Response = Response<ResponseBody>, Error = Infallible>
        + Send
        + 'static,
    Svc::Future: Send + 'static,
{
    let mut builder = http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        .max_header_list_size(MAX_HEAD_BYTES as u32)
        .max_pending_accept_reset_streams(MAX_PENDING_RESETS)
        .max_send_buf_size(MAX_SEND_BUFFER)
        .keep_alive_interval(KEEP_ALIVE)
        .keep_alive_timeout(KEEP_ALIVE);
    activity.progress();
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = activity.quiet(idle) => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
        () = closing.notified() => {
            // A GOAWAY, and a second for the streams open to end; a
            // client that does not answer the GOAWAY's PING (an attacker
            // would not) is cut then.
            stats.count_http2_error("rapid_reset");
            connection.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(RAPID_RESET_GRACE, connection.as_mut()).await;
            Ok(())
        }
        () = engine.shutdown.cancelled() => {
            // GOAWAY: the streams open finish, no new ones start.
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = &result
        && let Some(reason) = h2_reason(error)
    {
        stats.count_http2_error(reason);
    }
    result
}

/// The HTTP/2 error code that ended a connection, as a metric label.
fn h2_reason(error: &hyper::Error) -> Option<&'static str> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = source {
        if let Some(h2) = current.downcast_ref::<h2::Error>() {
            if h2.is_io() {
                return None;
            }
            return Some(match h2.reason()? {
                h2::Reason::NO_ERROR | h2::Reason::CANCEL => return None,
                h2::Reason::ENHANCE_YOUR_CALM => "enhance_your_calm",
                h2::Reason::PROTOCOL_ERROR => "protocol_error",
                h2::Reason::FLOW_CONTROL_ERROR => "flow_control_error",
                h2::Reason::FRAME_SIZE_ERROR => "frame_size_error",
                h2::Reason::COMPRESSION_ERROR => "compression_error",
                h2::Reason::SETTINGS_TIMEOUT => "settings_timeout",
                _ => "other",
            });
        }
        source = current.source();
    }
    None
}
