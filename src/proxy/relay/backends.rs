//! The relay's idle keep-alive connections to backends: raw streams
//! (plain TCP, or TLS for pools with `[pool.tls]`), kept per backend
//! address and TLS client, taken most recent first. A connection goes back
//! only when its last exchange ended clean: request and response whole,
//! nothing after the response, no `Connection: close` either way.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, ReadBuf};

use crate::proxy::backend_stream::BackendStream;

/// How long an idle connection is kept.
const IDLE: Duration = Duration::from_secs(30);
/// Idle connections kept per backend.
const MAX_IDLE_PER_BACKEND: usize = 512;

/// A backend's address and its pool's TLS client (`BackendTls::id`; 0:
/// plain TCP).
pub type Upstream = (SocketAddr, u64);

/// Idle connections to one backend, with the time each went idle.
type IdleList = Vec<(BackendStream, Instant)>;

/// Idle connections by backend.
#[derive(Default)]
pub struct RelayConnections {
    idle: Mutex<HashMap<Upstream, IdleList, foldhash::fast::RandomState>>,
}

impl RelayConnections {
    /// The most recently used idle connection to `upstream` that is still
    /// open; connections past their idle time or closed by the backend
    /// are dropped on the way.
    pub fn take(&self, upstream: Upstream) -> Option<BackendStream> {
        loop {
            let (mut stream, since) = {
                let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
                idle.get_mut(&upstream)?.pop()?
            };
            if since.elapsed() < IDLE && is_quiet(&mut stream) {
                return Some(stream);
            }
        }
    }

    /// Keeps `stream` for the next request to `upstream`.
    pub fn put(&self, upstream: Upstream, stream: BackendStream) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let list = idle.entry(upstream).or_default();
        if list.len() < MAX_IDLE_PER_BACKEND {
            list.push((stream, Instant::now()));
        }
    }

    /// Closes idle connections to backends `keep` refuses, past their
    /// idle time, or closed by the backend; how many it closed.
    pub fn reap(&self, keep: &impl Fn(SocketAddr) -> bool) -> usize {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let mut closed = 0;
        idle.retain(|(address, _), list| {
            let before = list.len();
            if keep(*address) {
                list.retain_mut(|(stream, since)| since.elapsed() < IDLE && is_quiet(stream));
            } else {
                list.clear();
            }
            closed += before - list.len();
            !list.is_empty()
        });
        closed
    }
}

/// Whether an idle connection has nothing to read and is not closed: a
/// backend that closed it, or sent bytes nobody asked for, makes it
/// useless.
fn is_quiet(stream: &mut BackendStream) -> bool {
    let mut byte = [0u8; 1];
    let mut buf = ReadBuf::new(&mut byte);
    let mut cx = Context::from_waker(Waker::noop());
    matches!(Pin::new(stream).poll_read(&mut cx, &mut buf), Poll::Pending)
}
