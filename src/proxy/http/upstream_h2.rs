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
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http2::{self, SendRequest};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

use super::body::UpstreamBody;
use super::upstream::SendError;
use crate::proxy::backend_stream::BackendStream;
use crate::tls::backend::BackendTls;

/// Most requests in flight on one connection to a backend; one more
/// opens another connection.
pub const MAX_STREAMS_PER_CONNECTION: usize = 100;
/// A connection to a backend is pinged when quiet this long, and closed
/// when the ping is not answered within the same time.
const KEEP_ALIVE: Duration = Duration::from_secs(20);

/// Where a connection goes: the backend's address and the pool's TLS
/// client (0: none, h2c).
type Upstream = (SocketAddr, u64);

/// The open connections, by backend.
type ByUpstream = HashMap<Upstream, Vec<Arc<H2Connection>>, foldhash::fast::RandomState>;

/// The HTTP/2 connections of one listener, by backend. Cloning shares them.
#[derive(Clone, Default)]
pub struct H2Connections {
    open: Arc<Mutex<ByUpstream>>,
}

struct H2Connection {
    sender: SendRequest<UpstreamBody>,
    /// Requests whose response has not ended yet.
    streams: AtomicUsize,
}

/// A request's place on a connection, held until its response ends.
pub struct StreamSlot {
    connection: Arc<H2Connection>,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.connection.streams.fetch_sub(1, Ordering::Relaxed);
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
                let connection = Box::pin(connect(source, backend, tls, connect_timeout)).await?;
                let connection = Arc::new(connection);
                connection.streams.fetch_add(1, Ordering::Relaxed);
                let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
                open.entry(upstream).or_default().push(connection.clone());
                StreamSlot { connection }
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
    /// left the configuration) and forgets closed ones; how many went.
    pub fn reap(&self, keep: impl Fn(SocketAddr) -> bool) -> usize {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let mut closed = 0;
        open.retain(|(address, _), connections| {
            let before = connections.len();
            // Dropping the last sender lets the connection end once its
            // streams have.
            connections.retain(|c| keep(*address) && !c.sender.is_closed());
            closed += before - connections.len();
            !connections.is_empty()
        });
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
    })
}
