//! HTTP/2 connections to backends (`protocol = "h2"` or `"h2c"`), shared
//! by requests: many requests from many clients go over a few connections
//! per backend, each carrying at most [`MAX_STREAMS_PER_CONNECTION`] at
//! once (and no more than the backend's own `SETTINGS_MAX_CONCURRENT_
//! STREAMS`, which hyper honours by queueing). A request takes the open
//! connection to its backend with the fewest streams in flight, or opens
//! a new one when all are full.
//!
//! Unlike the HTTP/1.1 pool, each connection is driven by a task of its
//! own: its streams belong to many requests at once.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http2::{self, SendRequest};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

use super::body::UpstreamBody;
use super::upstream::SendError;
use crate::proxy::backend_stream::BackendStream;
use crate::routing::now_ms;
use crate::tls::backend::BackendTls;

/// Most requests in flight on one connection to a backend; one more
/// opens another connection.
pub const MAX_STREAMS_PER_CONNECTION: usize = 100;
/// While requests are in flight, a connection to a backend is pinged when
/// quiet this long, and closed when the ping is not answered within the
/// same time.
const KEEP_ALIVE: Duration = Duration::from_secs(20);
/// A connection with no request in flight for this long is closed (as the
/// HTTP/1.1 pool's idle connections are).
const IDLE: Duration = Duration::from_secs(30);

/// Where a connection goes: the backend's address and the pool's TLS
/// client (0: none, h2c).
type Upstream = (SocketAddr, u64);

/// The open connections, by backend.
type ByUpstream = HashMap<Upstream, Vec<Arc<H2Connection>>, foldhash::fast::RandomState>;

/// The HTTP/2 connections of one listener, by backend. Cloning shares them.
#[derive(Clone, Default)]
pub struct H2Connections {
    open: Arc<Mutex<ByUpstream>>,
    /// One connect at a time per backend: requests that find no room wait
    /// for the connection being opened rather than each opening one (a
    /// burst arriving before the first connection is up would otherwise
    /// open one per request).
    connecting: Arc<Mutex<ConnectTurns>>,
}

/// Per backend, the turn to open a connection.
type ConnectTurns = HashMap<Upstream, Arc<tokio::sync::Mutex<()>>>;

struct H2Connection {
    sender: SendRequest<UpstreamBody>,
    /// Requests whose response has not ended yet.
    streams: AtomicUsize,
    /// When its last request ended ([`now_ms`]).
    idle_since_ms: AtomicU64,
}

/// A request's place on a connection, held until its response ends.
pub struct StreamSlot {
    connection: Arc<H2Connection>,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        if self.connection.streams.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.connection
                .idle_since_ms
                .store(now_ms(), Ordering::Relaxed);
        }
    }
}

impl H2Connections {
    /// Sends `request` (with its scheme and authority in the URI) to
    /// `backend` on a shared connection, opening one within
    /// `connect_timeout` if none has room.
    pub async fn send(
        &self,
        source: Option<IpAddr>,
        backend: SocketAddr,
        tls: Option<&BackendTls>,
        connect_timeout: Duration,
        request: Request<UpstreamBody>,
    ) -> Result<(Response<Incoming>, StreamSlot), SendError> {
        let upstream = (backend, tls.map_or(0, BackendTls::id));
        let slot = match self.take_slot(upstream) {
            Some(slot) => slot,
            None => {
                let turn = self
                    .connecting
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .entry(upstream)
                    .or_default()
                    .clone();
                let _turn = turn.lock().await;
                // Another request may have opened one meanwhile.
                match self.take_slot(upstream) {
                    Some(slot) => slot,
                    None => {
                        let connection =
                            Box::pin(connect(source, backend, tls, connect_timeout)).await?;
                        let connection = Arc::new(connection);
                        connection.streams.fetch_add(1, Ordering::Relaxed);
                        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
                        open.entry(upstream).or_default().push(connection.clone());
                        StreamSlot { connection }
                    }
                }
            }
        };
        let mut sender = slot.connection.sender.clone();
        match sender.try_send_request(request).await {
            Ok(response) => Ok((response, slot)),
            Err(mut error) => Err(match error.take_message() {
                Some(_) => SendError::NotSent(error.into_error()),
                None => SendError::Exchange(error.into_error()),
            }),
        }
    }

    /// A place on the least busy open connection with room, dropping the
    /// closed ones.
    fn take_slot(&self, upstream: Upstream) -> Option<StreamSlot> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let connections = open.get_mut(&upstream)?;
        connections.retain(|c| !c.sender.is_closed());
        let connection = connections
            .iter()
            .filter(|c| c.streams.load(Ordering::Relaxed) < MAX_STREAMS_PER_CONNECTION)
            .min_by_key(|c| c.streams.load(Ordering::Relaxed))?
            .clone();
        connection.streams.fetch_add(1, Ordering::Relaxed);
        Some(StreamSlot { connection })
    }

    /// Closes the connections to backends for which `keep` says no (they
    /// left the configuration) and those idle for [`IDLE`], and forgets
    /// closed ones; how many went.
    pub fn reap(&self, keep: impl Fn(SocketAddr) -> bool) -> usize {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let mut closed = 0;
        let now = now_ms();
        let idle_ms = IDLE.as_millis() as u64;
        open.retain(|(address, _), connections| {
            let before = connections.len();
            // Dropping the last sender lets the connection end once its
            // streams have.
            connections.retain(|c| {
                let idle = c.streams.load(Ordering::Relaxed) == 0
                    && now.saturating_sub(c.idle_since_ms.load(Ordering::Relaxed)) > idle_ms;
                keep(*address) && !c.sender.is_closed() && !idle
            });
            closed += before - connections.len();
            !connections.is_empty()
        });
        let mut connecting = self.connecting.lock().unwrap_or_else(|e| e.into_inner());
        connecting
            .retain(|upstream, turn| open.contains_key(upstream) || Arc::strong_count(turn) > 1);
        closed
    }
}

async fn connect(
    source: Option<IpAddr>,
    backend: SocketAddr,
    tls: Option<&BackendTls>,
    timeout: Duration,
) -> Result<H2Connection, SendError> {
    let stream = BackendStream::open(source, backend, tls, timeout)
        .await
        .map_err(SendError::Connect)?;
    let (sender, connection) = http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .keep_alive_interval(KEEP_ALIVE)
        .keep_alive_timeout(KEEP_ALIVE)
        .handshake(TokioIo::new(stream))
        .await
        .map_err(SendError::NotSent)?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(%backend, %error, "HTTP/2 backend connection ended with an error");
        }
    });
    Ok(H2Connection {
        sender,
        streams: AtomicUsize::new(0),
        idle_since_ms: AtomicU64::new(now_ms()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::atomic::Ordering::SeqCst;
    use tokio::net::TcpListener;

    /// An h2c backend that answers every request after `delay`, counting
    /// the connections it accepted and the most requests it had at once.
    async fn backend(delay: Duration) -> (SocketAddr, Arc<AtomicUsize>, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let (accepted, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (counter, most) = (accepted.clone(), peak.clone());
        let now = Arc::new(AtomicUsize::new(0));
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                counter.fetch_add(1, SeqCst);
                let (most, now) = (most.clone(), now.clone());
                let service = hyper::service::service_fn(move |_request| {
                    let (most, now) = (most.clone(), now.clone());
                    async move {
                        most.fetch_max(now.fetch_add(1, SeqCst) + 1, SeqCst);
                        tokio::time::sleep(delay).await;
                        now.fetch_sub(1, SeqCst);
                        Ok::<_, std::convert::Infallible>(Response::new(http_body_util::Full::new(
                            bytes::Bytes::from_static(b"ok"),
                        )))
                    }
                });
                tokio::spawn(
                    hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service),
                );
            }
        });
        (address, accepted, peak)
    }

    fn get(address: SocketAddr) -> Request<UpstreamBody> {
        Request::builder()
            .uri(format!("http://{address}/"))
            .version(http::Version::HTTP_2)
            .body(UpstreamBody::empty())
            .expect("request")
    }

    #[tokio::test]
    async fn shares_connections_up_to_the_stream_limit_then_opens_another() {
        let (address, accepted, peak) = backend(Duration::from_millis(300)).await;
        let connections = H2Connections::default();
        let requests = 150;
        let answers = futures_util::future::join_all((0..requests).map(|_| {
            let connections = connections.clone();
            async move {
                let (response, slot) = connections
                    .send(None, address, None, Duration::from_secs(1), get(address))
                    .await
                    .expect("response");
                use http_body_util::BodyExt;
                let body = response.into_body().collect().await.expect("body");
                drop(slot);
                body.to_bytes()
            }
        }))
        .await;
        assert!(answers.iter().all(|a| a.as_ref() == b"ok"));
        // 150 at once: two connections, none over the limit.
        assert_eq!(accepted.load(SeqCst), 2);
        assert_eq!(peak.load(SeqCst), requests);
        // Later requests reuse them.
        let (response, _slot) = connections
            .send(None, address, None, Duration::from_secs(1), get(address))
            .await
            .expect("response");
        assert_eq!(response.status(), http::StatusCode::OK);
        assert_eq!(accepted.load(SeqCst), 2);
        // Idle ones go when reaped past their idle time; the one in use
        // stays.
        assert_eq!(connections.reap(|_| true), 0);
    }
}
