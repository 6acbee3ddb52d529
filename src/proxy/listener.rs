//! One frontend's accept loop.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tokio::io::unix::AsyncFd;
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::lazy_stream::LazyTcpStream;
use super::{Engine, http, tcp};
use crate::config::Protocol;

/// Pending connections the kernel queues for a listener.
const BACKLOG: u32 = 1024;
/// TLS handshakes in flight per `https` listener; a connection beyond it
/// is closed at once, so a flood of ClientHellos costs no more than this
/// many handshakes' CPU, and established connections keep theirs.
const HANDSHAKES_IN_FLIGHT: usize = 256;

/// What an `https` listener needs for its handshakes.
#[derive(Clone)]
struct Termination {
    acceptor: tokio_rustls::TlsAcceptor,
    handshakes: Arc<tokio::sync::Semaphore>,
}

/// A listening socket, accepted from without tokio's `TcpListener`: that
/// registers every connection with the poller, which a
/// [`LazyTcpStream`] does only when it must.
pub type ListeningSocket = AsyncFd<std::net::TcpListener>;

/// A bound frontend socket and what to do with its connections.
pub struct Listener {
    frontend: String,
    protocol: Protocol,
    socket: ListeningSocket,
    stop: CancellationToken,
    open: Arc<OpenConnections>,
}

/// Client connections open on one listener, to enforce `max_connections`.
#[derive(Default)]
pub struct OpenConnections {
    count: AtomicU32,
    closed: Notify,
}

/// Held by a connection task; frees its slot when dropped.
pub struct ConnectionSlot(Arc<OpenConnections>);

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.count.fetch_sub(1, Ordering::AcqRel);
        self.0.closed.notify_one();
    }
}

impl Listener {
    /// Binds `address` with address reuse, so a restarted node can listen
    /// again at once while old connections linger in TIME_WAIT.
    pub fn bind(address: SocketAddr) -> std::io::Result<ListeningSocket> {
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(address),
            socket2::Type::STREAM.nonblocking().cloexec(),
            Some(socket2::Protocol::TCP),
        )?;
        socket.set_reuse_address(true)?;
        socket.set_tcp_nodelay(true)?;
        socket.bind(&address.into())?;
        socket.listen(BACKLOG as i32)?;
        let listener: std::net::TcpListener = socket.into();
        // SAFETY: a `TcpListener` owns its descriptor, open until dropped.
        let registered =
            unsafe { AsyncFd::register_with_interest(listener, tokio::io::Interest::READABLE) };
        Ok(registered?)
    }

    /// A listener for `frontend` that runs until `stop`.
    pub fn new(
        frontend: String,
        protocol: Protocol,
        socket: ListeningSocket,
        stop: CancellationToken,
    ) -> Self {
        Listener {
            frontend,
            protocol,
            socket,
            stop,
            open: Arc::default(),
        }
    }

    /// Accepts until stopped. At `max_connections`, accepting pauses and
    /// new clients wait in the kernel's queue, as with HAProxy's maxconn.
    pub async fn run(self, engine: Arc<Engine>) {
        let upstreams = http::UpstreamPool::new(engine.source_ip());
        let terminates = matches!(self.protocol, Protocol::Https | Protocol::Tls);
        let termination = terminates.then(|| Termination {
            acceptor: tokio_rustls::TlsAcceptor::from(crate::tls::frontend::server_config(
                engine.table.clone(),
                self.protocol == Protocol::Https,
            )),
            handshakes: Arc::new(tokio::sync::Semaphore::new(HANDSHAKES_IN_FLIGHT)),
        });
        if self.protocol.is_http() {
            tokio::spawn(reap_idle(
                upstreams.clone(),
                engine.table.clone(),
                self.stop.clone(),
            ));
        }
        loop {
            let Some(limit) = engine
                .table
                .load()
                .frontend(&self.frontend)
                .map(|f| f.spec.max_connections)
            else {
                break;
            };
            if self.open.count.load(Ordering::Acquire) >= limit {
                tokio::select! {
                    () = self.open.closed.notified() => continue,
                    () = self.stop.cancelled() => break,
                }
            }
            let (stream, client) = tokio::select! {
                accepted = accept(&self.socket) => match accepted {
                    Ok(pair) => pair,
                    Err(error) => {
                        // Usually out of file descriptors: back off briefly.
                        tracing::warn!(frontend = %self.frontend, %error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = self.stop.cancelled() => {
                    self.accept_queued(&engine, &upstreams, &termination);
                    break;
                }
            };
            self.spawn_connection(&engine, stream, client, &upstreams, &termination);
        }
        tracing::debug!(frontend = %self.frontend, "listener stopped");
    }

    /// Takes the connections the kernel has already queued, before the
    /// socket closes: closing it would reset them, though their clients
    /// connected while this node listened there (a VIP released and taken
    /// back at once, say). Not on shutdown, which takes no new connection.
    fn accept_queued(
        &self,
        engine: &Arc<Engine>,
        upstreams: &http::UpstreamPool,
        termination: &Option<Termination>,
    ) {
        if engine.shutdown.is_cancelled() {
            return;
        }
        let queued = take_queued(&self.socket, BACKLOG);
        let taken = queued.len();
        for (stream, client) in queued {
            self.spawn_connection(engine, stream, client, upstreams, termination);
        }
        if taken > 0 {
            tracing::info!(frontend = %self.frontend, taken, "listener closing: took the connections already queued");
        }
    }

    fn spawn_connection(
        &self,
        engine: &Arc<Engine>,
        stream: std::net::TcpStream,
        client: SocketAddr,
        upstreams: &http::UpstreamPool,
        termination: &Option<Termination>,
    ) {
        // The connection holds a slot of `max_connections` until it ends.
        self.open.count.fetch_add(1, Ordering::AcqRel);
        let slot = ConnectionSlot(self.open.clone());
        let _ = stream.set_nodelay(true);
        // Clear-text HTTP joins the poller when it must wait; the others
        // join at once (for a handshake, or to wait both ways for L4).
        if self.protocol != Protocol::Http {
            match TcpStream::from_std(stream) {
                Ok(stream) => {
                    self.spawn_registered(engine, stream, client, upstreams, termination, slot)
                }
                Err(error) => {
                    tracing::warn!(frontend = %self.frontend, %error, "connection not registered")
                }
            }
            return;
        }
        let upstreams = upstreams.clone();
        let engine = engine.clone();
        let frontend = self.frontend.clone();
        engine.connections.clone().spawn(async move {
            let mut stream = LazyTcpStream::new(stream);
            let h2 = match h2c_wait(&engine, &frontend) {
                Some(wait) => match stream.registered() {
                    Ok(registered) => opens_with_h2_preface(registered, wait).await,
                    Err(_) => return,
                },
                None => false,
            };
            http::serve(&engine, &frontend, stream, client, upstreams, false, h2).await;
            drop(slot);
        });
    }

    /// Spawns the task of a connection that waits from the start.
    fn spawn_registered(
        &self,
        engine: &Arc<Engine>,
        stream: TcpStream,
        client: SocketAddr,
        upstreams: &http::UpstreamPool,
        termination: &Option<Termination>,
        slot: ConnectionSlot,
    ) {
        let tracker = engine.connections.clone();
        let engine = engine.clone();
        let frontend = self.frontend.clone();
        match self.protocol {
            Protocol::Tcp => {
                tracker.spawn(async move {
                    let stream = tcp::ClientStream::Plain(stream);
                    tcp::serve(&engine, &frontend, stream, client).await;
                    drop(slot);
                });
            }
            Protocol::Tls => {
                let termination = termination.clone();
                tracker.spawn(async move {
                    let Some(termination) = termination else {
                        return;
                    };
                    if let Some(tls) =
                        handshake(&engine, &frontend, stream, client, &termination).await
                    {
                        let stream = tcp::ClientStream::Tls(Box::new(tls));
                        tcp::serve(&engine, &frontend, stream, client).await;
                    }
                    drop(slot);
                });
            }
            Protocol::Https => {
                let (upstreams, termination) = (upstreams.clone(), termination.clone());
                tracker.spawn(async move {
                    let Some(termination) = termination else {
                        return;
                    };
                    if let Some(tls) =
                        handshake(&engine, &frontend, stream, client, &termination).await
                    {
                        let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
                        http::serve(&engine, &frontend, tls, client, upstreams, true, h2).await;
                    }
                    drop(slot);
                });
            }
            Protocol::Http => unreachable!("clear-text HTTP is spawned unregistered"),
        }
    }
}

/// Waits for the next connection on `listener`.
async fn accept(listener: &ListeningSocket) -> std::io::Result<(std::net::TcpStream, SocketAddr)> {
    loop {
        let mut ready = listener.readable().await?;
        if let Ok(accepted) = ready.try_io(|listener| accept_now(listener.get_ref())) {
            return accepted;
        }
    }
}

/// A connection queued on `listener`, non-blocking; `WouldBlock` if none.
fn accept_now(
    listener: &std::net::TcpListener,
) -> std::io::Result<(std::net::TcpStream, SocketAddr)> {
    let (connection, address) =
        socket2::SockRef::from(listener).accept4(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC)?;
    let client = address
        .as_socket()
        .ok_or_else(|| std::io::Error::other("a TCP client without an IP address"))?;
    Ok((connection.into(), client))
}

/// The connections queued on `listener` now, at most `most`: straight
/// from the socket, as the poller may not have seen them yet.
fn take_queued(listener: &ListeningSocket, most: u32) -> Vec<(std::net::TcpStream, SocketAddr)> {
    (0..most)
        .map_while(|_| accept_now(listener.get_ref()).ok())
        .collect()
}

/// For an `http` frontend with `h2c`: how long to wait for a client's
/// first bytes (its `header_timeout_ms`); `None` without `h2c`.
fn h2c_wait(engine: &Engine, frontend: &str) -> Option<Duration> {
    let table = engine.table.load();
    let front = table.frontend(frontend)?;
    front
        .spec
        .h2c
        .then(|| Duration::from_millis(front.spec.header_timeout_ms))
}

/// Whether a clear-text client opens with the HTTP/2 connection preface
/// (h2c by prior knowledge), read without taking it off the socket; an
/// HTTP/1.1 request differs from it by its second byte at the latest.
async fn opens_with_h2_preface(stream: &TcpStream, wait: Duration) -> bool {
    const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let deadline = tokio::time::Instant::now() + wait;
    let mut first = [0u8; 24];
    loop {
        let n = match tokio::time::timeout_at(deadline, stream.peek(&mut first)).await {
            Ok(Ok(n)) if n > 0 => n,
            _ => return false,
        };
        if first[..n] != PREFACE[..n] {
            return false;
        }
        if n == PREFACE.len() {
            return true;
        }
        // Part of the preface so far (it usually comes in one segment):
        // the socket stays readable, so wait a little before looking again.
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// The TLS handshake of an `https` client, bounded by the frontend's
/// `header_timeout_ms` and by [`HANDSHAKES_IN_FLIGHT`]; `None` when it
/// failed (logged once per cause per interval).
async fn handshake(
    engine: &Engine,
    frontend: &str,
    stream: TcpStream,
    client: SocketAddr,
    termination: &Termination,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    let Ok(_handshaking) = termination.handshakes.try_acquire() else {
        crate::warn_limited!(
            format!("handshakes full {frontend}"),
            frontend,
            limit = HANDSHAKES_IN_FLIGHT,
            "TLS handshakes in flight at their limit: connection closed"
        );
        return None;
    };
    let timeout = engine
        .table
        .load()
        .frontend(frontend)
        .map(|f| Duration::from_millis(f.spec.header_timeout_ms))?;
    match tokio::time::timeout(timeout, termination.acceptor.accept(stream)).await {
        Ok(Ok(tls)) => Some(tls),
        Ok(Err(error)) => {
            crate::warn_limited!(
                format!("handshake {frontend} {error}"),
                frontend,
                %client,
                %error,
                "TLS handshake failed"
            );
            None
        }
        Err(_) => {
            crate::warn_limited!(
                format!("handshake timeout {frontend}"),
                frontend,
                %client,
                "TLS handshake timed out"
            );
            None
        }
    }
}

/// How often idle backend connections are looked over.
const REAP_EVERY: Duration = Duration::from_secs(1);

/// Keeps a listener's backend pool clean until `stop`: at once when the
/// routing table changes (connections to backends that left are closed),
/// and every [`REAP_EVERY`] (connections the backend closed or that idled
/// too long).
async fn reap_idle(
    upstreams: http::UpstreamPool,
    table: Arc<crate::routing::PublishedTable>,
    stop: CancellationToken,
) {
    let mut changes = table.subscribe();
    let configured = |table: &crate::routing::RoutingTable| {
        table
            .pools
            .iter()
            .flat_map(|p| p.backends.iter().map(|b| b.address))
            .collect::<std::collections::HashSet<SocketAddr>>()
    };
    let mut backends = configured(&table.load());
    let mut tick = tokio::time::interval(REAP_EVERY);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            changed = changes.changed() => {
                if changed.is_err() {
                    return;
                }
                backends = configured(&table.load());
            }
            () = stop.cancelled() => return,
        }
        let closed = upstreams.reap(|backend| backends.contains(&backend));
        if closed > 0 {
            tracing::debug!(closed, "idle backend connections closed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn connections_queued_at_close_are_taken_not_reset() {
        let listener = Listener::bind("127.0.0.1:0".parse().expect("address")).expect("bind");
        let address = listener.get_ref().local_addr().expect("address");
        let mut clients = Vec::new();
        for _ in 0..3 {
            clients.push(TcpStream::connect(address).await.expect("connect"));
        }
        let queued = take_queued(&listener, BACKLOG);
        assert_eq!(queued.len(), 3);
        drop(listener);
        for ((stream, client), mut near) in queued.into_iter().zip(clients) {
            assert_eq!(client, near.local_addr().expect("local"));
            let mut stream = TcpStream::from_std(stream).expect("register");
            stream.write_all(b"served").await.expect("write");
            let mut got = [0u8; 6];
            near.read_exact(&mut got).await.expect("read");
            assert_eq!(&got, b"served");
        }
    }
}
