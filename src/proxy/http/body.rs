//! Bodies that stream through the proxy: the request body on its way to a
//! backend (recoverable if the attempt never touched it) and the response
//! body on its way to the client (counted, and holding the backend's
//! in-flight slot until it ends).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::sync::oneshot;

use super::idle::{Activity, Side};
use super::upstream::Lease;
use crate::routing::{BackendRuntime, FrontendStats};

/// A client's request body, with its first frame already read (to refuse
/// malformed chunked framing before anything reaches a backend).
pub struct ClientBody {
    first: Option<Frame<Bytes>>,
    rest: Incoming,
}

impl ClientBody {
    /// Reads the first frame of `body`; `Ok(None)` if the body is empty.
    pub async fn start(mut body: Incoming) -> Result<Option<ClientBody>, hyper::Error> {
        use http_body_util::BodyExt;
        match body.frame().await {
            None => Ok(None),
            Some(Ok(frame)) => Ok(Some(ClientBody {
                first: Some(frame),
                rest: body,
            })),
            Some(Err(error)) => Err(error),
        }
    }
}

/// The request body sent to one backend attempt. If the attempt fails
/// before reading any of it, the body comes back through `reclaim`, so the
/// request can go to another backend with nothing lost.
pub struct UpstreamBody {
    body: Option<ClientBody>,
    touched: bool,
    reclaim: Option<oneshot::Sender<ClientBody>>,
    counters: Option<(Arc<FrontendStats>, Arc<BackendRuntime>)>,
    activity: Option<Arc<Activity>>,
    /// Counted on `activity` as a body in flight: from its first frame to
    /// its end (the wait for the response head after it is the response
    /// timeout's, not the idle timeout's).
    flowing: bool,
}

impl UpstreamBody {
    /// A body-less request.
    pub fn empty() -> Self {
        UpstreamBody {
            body: None,
            touched: false,
            reclaim: None,
            counters: None,
            activity: None,
            flowing: false,
        }
    }

    /// `body` for one attempt; the receiver gets it back if the attempt
    /// drops it untouched. Its progress is stamped on `activity` once it
    /// starts to flow.
    pub fn attempt(
        body: ClientBody,
        frontend: Arc<FrontendStats>,
        backend: Arc<BackendRuntime>,
        activity: Arc<Activity>,
    ) -> (Self, oneshot::Receiver<ClientBody>) {
        let (tx, rx) = oneshot::channel();
        let upstream = UpstreamBody {
            body: Some(body),
            touched: false,
            reclaim: Some(tx),
            counters: Some((frontend, backend)),
            activity: Some(activity),
            flowing: false,
        };
        (upstream, rx)
    }
}

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        if self.flowing
            && let Some(activity) = &self.activity
        {
            activity.end();
        }
        if !self.touched
            && let (Some(body), Some(reclaim)) = (self.body.take(), self.reclaim.take())
        {
            let _ = reclaim.send(body);
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        if !this.touched
            && let Some(activity) = &this.activity
        {
            activity.begin();
            this.flowing = true;
        }
        this.touched = true;
        let Some(body) = this.body.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = match body.first.take() {
            Some(frame) => Poll::Ready(Some(Ok(frame))),
            None => Pin::new(&mut body.rest).poll_frame(cx),
        };
        if let Some(activity) = &this.activity
            && this.flowing
        {
            match &polled {
                Poll::Ready(None) | Poll::Ready(Some(Err(_))) => {
                    activity.end();
                    this.flowing = false;
                }
                // The client sent more; now the backend must take it.
                Poll::Ready(Some(Ok(_))) => activity.moved(Side::Server),
                Poll::Pending => activity.waits_on(Side::Client),
            }
        }
        if let (Poll::Ready(Some(Ok(frame))), Some((frontend, backend))) = (&polled, &this.counters)
            && let Some(data) = frame.data_ref()
        {
            frontend.bytes_in.inc_by(data.len() as u64);
            backend.bytes_out.inc_by(data.len() as u64);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        match &self.body {
            None => true,
            Some(body) => body.first.is_none() && body.rest.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.body {
            None => SizeHint::with_exact(0),
            Some(body) => {
                let first = body
                    .first
                    .as_ref()
                    .and_then(|f| f.data_ref())
                    .map_or(0, |d| d.len() as u64);
                let rest = body.rest.size_hint();
                let mut hint = SizeHint::new();
                hint.set_lower(rest.lower() + first);
                if let Some(upper) = rest.upper() {
                    hint.set_upper(upper + first);
                }
                hint
            }
        }
    }
}

/// A response body for the client: either a backend's, streamed, or one
/// the balancer wrote.
pub enum ResponseBody {
    /// Streamed from a backend.
    Upstream(UpstreamResponse),
    /// Written by the balancer.
    Local(Option<Bytes>),
}

/// A backend's response body in flight; the backend's in-flight count is
/// released when it ends or the client goes away, and the connection goes
/// back to the pool if the body was read to its end.
pub struct UpstreamResponse {
    body: Incoming,
    frontend: Arc<FrontendStats>,
    backend: Arc<BackendRuntime>,
    lease: Option<Lease>,
    ended: bool,
    activity: Arc<Activity>,
    /// The last poll gave hyper a frame that the client has yet to take.
    handed_over: bool,
    /// A gRPC response: if the backend's connection breaks, the call ends
    /// with `UNAVAILABLE` in trailers rather than a reset stream.
    grpc: bool,
    /// The backend's body broke and the call was ended with trailers:
    /// nothing more follows.
    broken: bool,
}

impl ResponseBody {
    /// A body of fixed text.
    pub fn local(bytes: Bytes) -> Self {
        ResponseBody::Local(Some(bytes))
    }

    /// Streams `body` from `backend`, whose in-flight count the caller
    /// raised; it is lowered when this body is dropped. Its progress is
    /// stamped on `activity` until then.
    pub fn upstream(
        body: Incoming,
        frontend: Arc<FrontendStats>,
        backend: Arc<BackendRuntime>,
        lease: Lease,
        activity: Arc<Activity>,
        grpc: bool,
    ) -> Self {
        activity.begin();
        ResponseBody::Upstream(UpstreamResponse {
            body,
            frontend,
            backend,
            lease: Some(lease),
            ended: false,
            activity,
            handed_over: false,
            grpc,
            broken: false,
        })
    }
}

impl Drop for UpstreamResponse {
    fn drop(&mut self) {
        self.backend.active.dec();
        self.activity.end();
        // hyper stops polling a body of known length once it is complete,
        // so "ended" is also read off the body itself.
        if (self.ended || self.body.is_end_stream())
            && let Some(lease) = self.lease.take()
        {
            lease.release();
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            ResponseBody::Local(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            ResponseBody::Upstream(up) => {
                if up.broken {
                    return Poll::Ready(None);
                }
                if let Some(lease) = up.lease.as_mut() {
                    lease.poll_io(cx);
                }
                if up.handed_over {
                    // hyper is back for more: the client took the last frame.
                    up.activity.moved(Side::Server);
                    up.handed_over = false;
                }
                let polled = Pin::new(&mut up.body).poll_frame(cx);
                if polled.is_ready() {
                    // The backend gave something; now the client must take it.
                    up.activity.moved(Side::Client);
                    up.handed_over = true;
                } else {
                    up.activity.waits_on(Side::Server);
                }
                match &polled {
                    Poll::Ready(Some(Ok(frame))) => {
                        if let Some(data) = frame.data_ref() {
                            up.backend.bytes_in.inc_by(data.len() as u64);
                            up.frontend.bytes_out.inc_by(data.len() as u64);
                        }
                    }
                    Poll::Ready(None) => up.ended = true,
                    Poll::Ready(Some(Err(error))) if up.grpc => {
                        // The trailers end the body; the connection is not
                        // reused (`ended` stays false).
                        tracing::debug!(%error, "backend connection broke during a gRPC call");
                        up.broken = true;
                        return Poll::Ready(Some(Ok(Frame::trailers(
                            super::grpc::broken_trailers(),
                        ))));
                    }
                    _ => {}
                }
                polled
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ResponseBody::Local(bytes) => bytes.is_none(),
            ResponseBody::Upstream(up) => up.broken || up.body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ResponseBody::Local(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
            ResponseBody::Upstream(up) => up.body.size_hint(),
        }
    }
}
