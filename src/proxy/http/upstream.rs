//! Keep-alive connections to backends, pooled per backend address.
//!
//! Each connection is one hyper HTTP/1.1 client connection, driven by the
//! task of the request that holds it: the request's task polls the
//! connection's I/O while it waits for the response and while it streams
//! the response body, so a request costs no hand-off to another task. A
//! request takes the most recently used idle connection to its backend
//! (warm, and lets the oldest ones time out), or opens a new one; the
//! connection comes back when the response body has been read to its end.
//! A connection whose response was cut short is closed instead, as HAProxy
//! and nginx do.
//!
//! This replaces hyper-util's general-purpose pooled client, which keys its
//! pool by URI authority, drives every connection from a task of its own
//! and spawns a task per response to wait for the connection to be ready
//! again.

use std::collections::{HashMap, VecDeque};
use std::future::{Future, poll_fn};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use super::body::UpstreamBody;
use super::upstream_h2::{H2Connections, StreamSlot};
use crate::proxy::backend_stream::BackendStream;
use crate::tls::backend::BackendTls;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::TrySendError;
use hyper::client::conn::http1::{self, Connection, SendRequest};
use hyper_util::rt::TokioIo;

/// How long an idle pooled backend connection is kept.
const POOL_IDLE: Duration = Duration::from_secs(30);
/// Idle connections kept per backend.
const POOL_MAX_IDLE_PER_BACKEND: usize = 512;

/// Idle connections of one listener, by backend address and TLS client
/// (see [`Upstream`]). Cloning shares the pool.
#[derive(Clone)]
pub struct UpstreamPool {
    inner: Arc<Inner>,
}

struct Inner {
    /// Where connections leave from (the node's serving address).
    source: Option<IpAddr>,
    idle: Mutex<HashMap<Upstream, VecDeque<Idle>, foldhash::fast::RandomState>>,
    /// Connections to the backends of `h2` and `h2c` pools.
    h2: H2Connections,
    /// The HTTP/1.1 relay's raw connections.
    relay: crate::proxy::relay::backends::RelayConnections,
}

/// Where a connection goes: a backend's address, and the TLS client of
/// its pool (`BackendTls::id`; 0: plain TCP).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Upstream {
    address: SocketAddr,
    tls: u64,
}

struct Idle {
    connection: Box<BackendConnection>,
    since: Instant,
}

/// One HTTP/1.1 connection to a backend: the handle requests are sent on
/// and the I/O that its holder drives.
struct BackendConnection {
    sender: SendRequest<UpstreamBody>,
    /// `None` once the I/O has finished. Dropping it then matters: a
    /// request still queued for the connection comes back to its sender
    /// unsent, and the sender sees the connection closed.
    io: Option<Connection<TokioIo<BackendStream>, UpstreamBody>>,
}

impl BackendConnection {
    /// Moves the connection's I/O along as far as it can go now.
    fn poll_io(&mut self, cx: &mut Context<'_>) {
        if let Some(io) = self.io.as_mut()
            && let Poll::Ready(result) = Pin::new(io).poll(cx)
        {
            self.io = None;
            if let Err(error) = result {
                tracing::debug!(%error, "backend connection ended with an error");
            }
        }
    }

    /// Whether the connection has closed.
    fn is_closed(&self) -> bool {
        self.io.is_none() || self.sender.is_closed()
    }

    /// Whether the connection can take a request; false once it closed.
    async fn ready(&mut self) -> bool {
        poll_fn(|cx| {
            self.poll_io(cx);
            if self.io.is_none() {
                return Poll::Ready(false);
            }
            self.sender.poll_ready(cx).map(|ready| ready.is_ok())
        })
        .await
    }

    /// Sends `request` and waits for the response head, driving the I/O.
    async fn exchange(
        &mut self,
        request: Request<UpstreamBody>,
    ) -> Result<Response<Incoming>, TrySendError<Request<UpstreamBody>>> {
        let mut response = pin!(self.sender.try_send_request(request));
        poll_fn(|cx| {
            self.poll_io(cx);
            response.as_mut().poll(cx)
        })
        .await
    }
}

/// What a request holds of its backend connection until its response has
/// been read: an HTTP/1.1 connection of its own, or a stream on a shared
/// HTTP/2 one.
pub enum Lease {
    /// A pooled HTTP/1.1 connection, driven by its holder.
    Http1(Http1Lease),
    /// A place on an HTTP/2 connection, driven by a task of its own.
    Http2(StreamSlot),
    /// A connection of the request's own, driven by a task of its own
    /// (an upgrade the backend refused).
    Detached,
}

impl Lease {
    /// Moves the connection's I/O along (HTTP/1.1: reading the response
    /// body into the body's channel, writing the rest of the request body).
    pub fn poll_io(&mut self, cx: &mut Context<'_>) {
        if let Lease::Http1(lease) = self {
            lease.connection.poll_io(cx);
        }
    }

    /// The response was read whole: an HTTP/1.1 connection goes back to
    /// the pool; an HTTP/2 stream's place is freed.
    pub fn release(self) {
        if let Lease::Http1(lease) = self {
            lease.release();
        }
    }
}

/// An HTTP/1.1 connection lent to one request. Its holder keeps its I/O
/// moving with [`Lease::poll_io`] until the response has been read, then
/// gives it back with [`Lease::release`]; dropped instead, the connection
/// closes.
pub struct Http1Lease {
    connection: Box<BackendConnection>,
    backend: Upstream,
    pool: Arc<Inner>,
}

impl Http1Lease {
    /// Returns the connection to the idle pool, once its response has been
    /// read whole. It goes back only if it can take the next request now:
    /// a connection still writing this request's body (the backend
    /// answered before the upload ended) is closed instead, so that no
    /// other request waits behind someone else's upload.
    pub fn release(mut self) {
        // One poll lets the connection settle into its idle state; nothing
        // needs waking (the next holder polls it again).
        self.connection
            .poll_io(&mut Context::from_waker(Waker::noop()));
        if self.connection.sender.is_ready() {
            self.pool.put_back(self.backend, self.connection);
        }
    }
}

/// Why a request got no response.
#[derive(Debug)]
pub enum SendError {
    /// No connection could be opened; nothing reached the backend.
    Connect(io::Error),
    /// The connection closed before the request was written; nothing
    /// reached the backend.
    NotSent(hyper::Error),
    /// The exchange failed after the request may have reached the backend.
    Exchange(hyper::Error),
}

impl SendError {
    /// Whether the backend cannot have seen the request, so any request
    /// may be retried.
    pub fn nothing_sent(&self) -> bool {
        !matches!(self, SendError::Exchange(_))
    }
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Connect(error) => write!(f, "connect failed: {error}"),
            SendError::NotSent(error) => write!(f, "connection closed before sending: {error}"),
            SendError::Exchange(error) => write!(f, "exchange failed: {error}"),
        }
    }
}

impl UpstreamPool {
    /// Where connections leave from (the node's serving address).
    pub fn source(&self) -> Option<IpAddr> {
        self.inner.source
    }

    /// The HTTP/1.1 relay's idle connections.
    pub fn relay(&self) -> &crate::proxy::relay::backends::RelayConnections {
        &self.inner.relay
    }

    /// A pool whose connections leave from `source`, if given.
    pub fn new(source: Option<IpAddr>) -> Self {
        UpstreamPool {
            inner: Arc::new(Inner {
                source,
                idle: Mutex::default(),
                h2: H2Connections::default(),
                relay: Default::default(),
            }),
        }
    }

    /// Sends `request` (origin-form, with a `Host` header) to `backend`
    /// (over TLS with `tls`) on an idle connection, or on a new one opened
    /// within `connect_timeout`. A pooled connection found closed is
    /// skipped without counting as a failure: the request goes on the
    /// next one.
    ///
    /// `h2`: over HTTP/2 (the URI carries the scheme and authority), on a
    /// connection shared with other requests.
    pub async fn send(
        &self,
        backend: SocketAddr,
        tls: Option<&BackendTls>,
        h2: bool,
        connect_timeout: Duration,
        request: Request<UpstreamBody>,
    ) -> Result<(Response<Incoming>, Lease), SendError> {
        if !h2 {
            return self
                .send_http1(backend, tls, connect_timeout, request)
                .await;
        }
        let (response, slot) = self
            .inner
            .h2
            .send(self.inner.source, backend, tls, connect_timeout, request)
            .await?;
        Ok((response, Lease::Http2(slot)))
    }

    async fn send_http1(
        &self,
        backend: SocketAddr,
        tls: Option<&BackendTls>,
        connect_timeout: Duration,
        mut request: Request<UpstreamBody>,
    ) -> Result<(Response<Incoming>, Lease), SendError> {
        let upstream = Upstream {
            address: backend,
            tls: tls.map_or(0, BackendTls::id),
        };
        while let Some(mut connection) = self.inner.take_idle(upstream) {
            // Its last response may have ended a moment ago, before its
            // I/O was polled to take the next one; or the backend closed it.
            if !connection.ready().await {
                continue;
            }
            match connection.exchange(request).await {
                Ok(response) => return Ok((response, self.lease(connection, upstream))),
                Err(mut error) => match error.take_message() {
                    Some(unsent) => request = unsent,
                    None => return Err(SendError::Exchange(error.into_error())),
                },
            }
        }
        // Boxed: connecting is the rare path, and its future would
        // otherwise make every request's future (moved on each await
        // set-up) several times larger.
        let mut connection = Box::pin(self.connect(backend, tls, connect_timeout)).await?;
        match connection.exchange(request).await {
            Ok(response) => Ok((response, self.lease(connection, upstream))),
            Err(mut error) => Err(match error.take_message() {
                Some(_) => SendError::NotSent(error.into_error()),
                None => SendError::Exchange(error.into_error()),
            }),
        }
    }

    fn lease(&self, connection: Box<BackendConnection>, backend: Upstream) -> Lease {
        Lease::Http1(Http1Lease {
            connection,
            backend,
            pool: self.inner.clone(),
        })
    }

    /// Opens a connection to `backend`.
    async fn connect(
        &self,
        backend: SocketAddr,
        tls: Option<&BackendTls>,
        timeout: Duration,
    ) -> Result<Box<BackendConnection>, SendError> {
        let stream = BackendStream::open(self.inner.source, backend, tls, timeout)
            .await
            .map_err(SendError::Connect)?;
        let (sender, io) = http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await
            .map_err(SendError::NotSent)?;
        Ok(Box::new(BackendConnection {
            sender,
            io: Some(io),
        }))
    }

    /// Closes idle connections that are of no use: to backends for which
    /// `keep` says no (they left the configuration), past their idle time,
    /// or closed by the backend (left alone they would sit in CLOSE_WAIT
    /// until a request skipped them). Returns how many it closed.
    pub fn reap(&self, keep: impl Fn(SocketAddr) -> bool) -> usize {
        let mut closed = self.inner.h2.reap(&keep) + self.inner.relay.reap(&keep);
        let mut idle = self.inner.idle.lock().unwrap_or_else(|e| e.into_inner());
        idle.retain(|backend, stack| {
            if !keep(backend.address) {
                closed += stack.len();
                return false;
            }
            let before = stack.len();
            stack.retain_mut(|entry| {
                // One poll notices a close the backend sent meanwhile;
                // the next holder polls with a real waker again.
                entry
                    .connection
                    .poll_io(&mut Context::from_waker(Waker::noop()));
                entry.since.elapsed() <= POOL_IDLE && !entry.connection.is_closed()
            });
            closed += before - stack.len();
            !stack.is_empty()
        });
        closed
    }

    /// Idle connections held now, over all backends.
    #[cfg(test)]
    fn idle_count(&self) -> usize {
        let idle = self.inner.idle.lock().unwrap_or_else(|e| e.into_inner());
        idle.values().map(VecDeque::len).sum()
    }
}

impl Inner {
    /// The most recently used idle connection to `backend` that is not
    /// known to be closed nor past its idle time.
    fn take_idle(&self, backend: Upstream) -> Option<Box<BackendConnection>> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let stack = idle.get_mut(&backend)?;
        while let Some(entry) = stack.pop_back() {
            if entry.since.elapsed() > POOL_IDLE {
                // Everything below it is older still.
                stack.clear();
                return None;
            }
            if !entry.connection.is_closed() {
                return Some(entry.connection);
            }
        }
        None
    }

    fn put_back(&self, backend: Upstream, connection: Box<BackendConnection>) {
        if connection.is_closed() {
            return;
        }
        let now = Instant::now();
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let stack = idle.entry(backend).or_default();
        // Let go of the oldest ones: over the limit or idle too long.
        while let Some(oldest) = stack.front()
            && (stack.len() >= POOL_MAX_IDLE_PER_BACKEND
                || now.duration_since(oldest.since) > POOL_IDLE)
        {
            stack.pop_front();
        }
        stack.push_back(Idle {
            connection,
            since: now,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::atomic::Ordering::SeqCst;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A backend that answers every request on a connection with a fixed
    /// response, counting the connections it accepted.
    async fn backend(answer: &'static [u8]) -> (SocketAddr, Arc<AtomicUsize>) {
        let (address, accepted, _) = backend_closing(answer, false).await;
        (address, accepted)
    }

    /// As [`backend`]; with `close_after`, it closes each connection after
    /// its first answer without saying so in the response.
    async fn backend_closing(
        answer: &'static [u8],
        close_after: bool,
    ) -> (SocketAddr, Arc<AtomicUsize>, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        let closed = Arc::new(AtomicUsize::new(0));
        let closes = closed.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                counter.fetch_add(1, SeqCst);
                let closes = closes.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let mut seen = Vec::new();
                    loop {
                        let Ok(n) = stream.read(&mut buf).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        seen.extend_from_slice(&buf[..n]);
                        while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                            seen.drain(..end + 4);
                            if stream.write_all(answer).await.is_err() {
                                return;
                            }
                            if close_after {
                                drop(stream);
                                closes.fetch_add(1, SeqCst);
                                return;
                            }
                        }
                    }
                });
            }
        });
        (address, accepted, closed)
    }

    fn get() -> Request<UpstreamBody> {
        Request::builder()
            .uri("/")
            .header("host", "backend")
            .body(UpstreamBody::empty())
            .expect("request")
    }

    /// Reads the whole body, driving the connection as the proxy does.
    async fn read_whole(response: Response<Incoming>, lease: &mut Lease) -> Vec<u8> {
        use http_body::Body;
        let mut body = response.into_body();
        let mut bytes = Vec::new();
        while let Some(frame) = poll_fn(|cx| {
            lease.poll_io(cx);
            Pin::new(&mut body).poll_frame(cx)
        })
        .await
        {
            if let Ok(data) = frame.expect("frame").into_data() {
                bytes.extend_from_slice(&data);
            }
        }
        bytes
    }

    /// One GET on the pool, read to the end, its connection released; the
    /// body.
    async fn get_and_release(pool: &UpstreamPool, address: SocketAddr) -> Vec<u8> {
        let (response, mut lease) = pool
            .send(address, None, false, Duration::from_secs(1), get())
            .await
            .expect("response");
        let body = read_whole(response, &mut lease).await;
        lease.release();
        body
    }

    #[tokio::test]
    async fn reuses_a_released_connection() {
        let (address, accepted) = backend(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await;
        let pool = UpstreamPool::new(None);
        for _ in 0..5 {
            assert_eq!(get_and_release(&pool, address).await, b"ok");
        }
        assert_eq!(accepted.load(SeqCst), 1);
        assert_eq!(pool.idle_count(), 1);
    }

    #[tokio::test]
    async fn a_connection_not_released_is_not_reused() {
        let (address, accepted) = backend(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await;
        let pool = UpstreamPool::new(None);
        for _ in 0..3 {
            let (response, lease) = pool
                .send(address, None, false, Duration::from_secs(1), get())
                .await
                .expect("response");
            drop((response, lease));
        }
        assert_eq!(accepted.load(SeqCst), 3);
        assert_eq!(pool.idle_count(), 0);
    }

    #[tokio::test]
    async fn skips_a_pooled_connection_the_backend_closed() {
        // The backend closes after each response: the released connection
        // is dead by the next request, which must still get its answer.
        let (address, accepted) =
            backend(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok").await;
        let pool = UpstreamPool::new(None);
        for _ in 0..3 {
            assert_eq!(get_and_release(&pool, address).await, b"ok");
        }
        assert_eq!(accepted.load(SeqCst), 3);
    }

    #[tokio::test]
    async fn a_pooled_connection_closed_while_idle_is_not_used() {
        // The backend closes without a word after answering, as a server
        // does when its keep-alive timeout ends: the next request must go
        // on a new connection, not hang on or fail with the dead one.
        let (address, accepted, closed) =
            backend_closing(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok", true).await;
        let pool = UpstreamPool::new(None);
        for round in 0..3 {
            let body =
                tokio::time::timeout(Duration::from_secs(5), get_and_release(&pool, address))
                    .await
                    .expect("no hang");
            assert_eq!(body, b"ok");
            // The backend has closed (its FIN is queued on our socket)
            // before the next request.
            while closed.load(SeqCst) <= round {
                tokio::task::yield_now().await;
            }
        }
        assert_eq!(accepted.load(SeqCst), 3);
    }

    #[tokio::test]
    async fn a_refused_connect_is_a_connect_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("address");
        drop(listener);
        let pool = UpstreamPool::new(None);
        let error = pool
            .send(address, None, false, Duration::from_secs(1), get())
            .await
            .err()
            .expect("refused");
        assert!(matches!(error, SendError::Connect(_)), "{error}");
        assert!(error.nothing_sent());
    }

    #[tokio::test]
    async fn reaping_closes_what_the_backend_closed_and_backends_that_left() {
        // A backend that answers, then closes 100 ms later: by then its
        // connection idles in the pool.
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let closing = listener.local_addr().expect("address");
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let mut seen = Vec::new();
                    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(n) if n > 0 => seen.extend_from_slice(&buf[..n]),
                            _ => return,
                        }
                    }
                    let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                    if stream.write_all(answer).await.is_ok() {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                });
            }
        });
        let (staying, _) = backend(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await;
        let (leaving, _) = backend(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await;
        let pool = UpstreamPool::new(None);
        for address in [closing, staying, leaving] {
            assert_eq!(get_and_release(&pool, address).await, b"ok");
        }
        assert_eq!(pool.idle_count(), 3);
        assert_eq!(pool.reap(|_| true), 0, "nothing to reap yet");
        // `leaving` is gone from the configuration at once; the closed one
        // once the backend's FIN has arrived.
        let mut reaped = pool.reap(|backend| backend != leaving);
        assert_eq!(reaped, 1);
        for _ in 0..100 {
            if pool.idle_count() == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            reaped += pool.reap(|backend| backend != leaving);
        }
        assert_eq!(reaped, 2);
        assert_eq!(pool.idle_count(), 1);
        assert_eq!(get_and_release(&pool, staying).await, b"ok");
    }
}
