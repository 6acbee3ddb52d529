//! L4: relay a client's TCP connection to one backend, both ways.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::Engine;
use super::backend_stream::BackendStream;
use super::maybe_tls::MaybeTls;
use super::splice::Meter;
use crate::routing::now_ms;

/// The client's side of a relayed connection: plain TCP (`tcp`
/// frontends: spliced in the kernel), or TLS terminated here (`tls`
/// frontends: the plain bytes are copied).
pub type ClientStream = MaybeTls<tokio_rustls::server::TlsStream<TcpStream>>;

/// Serves one client connection on TCP frontend `frontend`: picks a
/// backend, connects (trying the next one when a connect fails, up to
/// `retries` more), then relays until both sides are done or the
/// connection has been idle for `idle_timeout_ms`. A frontend with SNI
/// routes first reads the client's TLS ClientHello to choose the pool, and
/// sends it on to the backend unchanged (passthrough: nothing decrypted).
pub async fn serve(
    engine: &Engine,
    frontend: &str,
    mut client_stream: ClientStream,
    client: SocketAddr,
) {
    let table = engine.table.load_full();
    let Some(front) = table.frontend(frontend) else {
        return;
    };
    let stats = front.stats.clone();
    stats.connections.inc();
    stats.active.inc();
    let started = Instant::now();
    let (pool_index, hello) = match &mut client_stream {
        ClientStream::Plain(stream) if !front.routes.is_empty() => {
            let timeout = Duration::from_millis(front.spec.header_timeout_ms);
            match read_client_hello(stream, timeout).await {
                Ok((sni, hello)) => (front.pool_for_sni(sni.as_deref()), hello),
                Err(error) => {
                    tracing::debug!(frontend, %client, %error, "no ClientHello; closing");
                    stats.active.dec();
                    return;
                }
            }
        }
        _ => (front.default_pool, Vec::new()),
    };
    let pool = table.pool(pool_index);
    let connect_timeout = Duration::from_millis(front.spec.connect_timeout_ms);
    let idle_timeout = Duration::from_millis(front.spec.idle_timeout_ms);
    let mut tried = Vec::new();
    let connected = loop {
        if tried.len() > front.spec.retries as usize {
            break None;
        }
        let Some(index) = pool.pick(None, client.ip(), &tried) else {
            break None;
        };
        tried.push(index);
        let backend = &pool.backends[index];
        match BackendStream::open(
            engine.source_ip(),
            backend.address,
            pool.tls.as_deref(),
            connect_timeout,
        )
        .await
        {
            Ok(stream) => break Some((backend, stream)),
            Err(error) if error.kind() == io::ErrorKind::TimedOut => {
                pool.record_failure(index, &error.to_string())
            }
            Err(error) => pool.record_failure(index, &format!("connect failed: {error}")),
        }
    };
    let Some((backend, mut backend_stream)) = connected else {
        tracing::warn!(frontend, %client, pool = %pool.name, "no backend reachable; closing client connection");
        stats.active.dec();
        return;
    };
    if !hello.is_empty() {
        use tokio::io::AsyncWriteExt;
        if let Err(error) = backend_stream.write_all(&hello).await {
            if let Some(&index) = tried.last() {
                pool.record_failure(index, &format!("send failed: {error}"));
            }
            stats.active.dec();
            return;
        }
        stats.bytes_in.inc_by(hello.len() as u64);
    }
    let runtime = backend.runtime.clone();
    drop(table);
    runtime.requests.inc();
    runtime.active.inc();
    runtime.record_success();
    let last_activity = AtomicU64::new(now_ms());
    let client_meter = Meter {
        read: &stats.bytes_in,
        last_activity: &last_activity,
    };
    let backend_meter = Meter {
        read: &runtime.bytes_in,
        last_activity: &last_activity,
    };
    // Plain on both sides: spliced in the kernel. TLS on either side (a
    // `tls` frontend, a pool with `[pool.tls]`): the plain bytes copied.
    let relay = async {
        match (client_stream, backend_stream) {
            (ClientStream::Plain(client), BackendStream::Plain(backend)) => {
                super::splice::relay(&client, &backend, client_meter, backend_meter).await
            }
            (client, mut backend) => {
                let mut client = client;
                let mut client_side = Metered {
                    inner: &mut client,
                    meter: client_meter,
                };
                let mut backend_side = Metered {
                    inner: &mut backend,
                    meter: backend_meter,
                };
                tokio::io::copy_bidirectional(&mut client_side, &mut backend_side).await
            }
        }
    };
    let outcome = tokio::select! {
        result = relay => match result {
            Ok((to_backend, to_client)) => {
                runtime.bytes_out.inc_by(to_backend);
                stats.bytes_out.inc_by(to_client);
                "closed"
            }
            Err(_) => "reset",
        },
        () = idle(&last_activity, idle_timeout) => "idle timeout",
    };
    tracing::debug!(frontend, %client, backend = %runtime.address, outcome, "tcp connection ended");
    runtime.active.dec();
    stats.active.dec();
    stats.duration.observe(started.elapsed().as_secs_f64());
}

/// A stream whose reads are counted and stamp the last activity, for the
/// copied relay (`tls` frontends, HTTP upgrade tunnels).
pub(crate) struct Metered<'a, S> {
    pub(crate) inner: S,
    pub(crate) meter: Meter<'a>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Metered<'_, S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        let read = buf.filled().len() - before;
        if read > 0 {
            self.meter.read.inc_by(read as u64);
            self.meter.last_activity.store(now_ms(), Ordering::Relaxed);
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Metered<'_, S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Largest ClientHello read for SNI routing.
const MAX_CLIENT_HELLO: usize = 16 * 1024;

/// Reads the client's TLS ClientHello within `timeout`: the server name it
/// asks for (`None`: none, or not TLS at all, which goes to the default
/// pool) and every byte read, to be sent on. rustls parses it.
async fn read_client_hello(
    stream: &mut TcpStream,
    timeout: Duration,
) -> io::Result<(Option<String>, Vec<u8>)> {
    use tokio::io::AsyncReadExt;
    let deadline = tokio::time::Instant::now() + timeout;
    let mut bytes = Vec::with_capacity(2048);
    loop {
        if !bytes.is_empty() {
            let mut acceptor = rustls::server::Acceptor::default();
            let mut unread = &bytes[..];
            while !unread.is_empty() {
                if acceptor.read_tls(&mut unread).is_err() {
                    return Ok((None, bytes));
                }
            }
            match acceptor.accept() {
                Ok(Some(accepted)) => {
                    let sni = accepted.client_hello().server_name().map(str::to_string);
                    return Ok((sni, bytes));
                }
                Ok(None) if bytes.len() < MAX_CLIENT_HELLO => {}
                Ok(None) | Err(_) => return Ok((None, bytes)),
            }
        }
        // Straight into the heap: a buffer here would sit in every tcp
        // connection's task, routed by SNI or not (3.4 KiB per idle
        // connection, benches/compare.sh).
        bytes.reserve(4096);
        let read = tokio::time::timeout_at(deadline, stream.read_buf(&mut bytes))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "ClientHello timed out"))??;
        if read == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
    }
}

/// Connects to `to`, leaving from `source` when the node serves on a
/// specific address (as HAProxy's `source`), so backends and firewalls can
/// tell the nodes apart.
pub async fn connect_from(
    source: Option<std::net::IpAddr>,
    to: SocketAddr,
) -> io::Result<TcpStream> {
    let socket = if to.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    if let Some(ip) = source
        && ip.is_ipv4() == to.is_ipv4()
    {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    socket.set_nodelay(true)?;
    socket.connect(to).await
}

/// Resolves once nothing has moved for `timeout`.
pub(crate) async fn idle(last_activity: &AtomicU64, timeout: Duration) {
    let limit = timeout.as_millis() as u64;
    loop {
        let quiet = now_ms().saturating_sub(last_activity.load(Ordering::Relaxed));
        if quiet >= limit {
            return;
        }
        tokio::time::sleep(Duration::from_millis(limit - quiet)).await;
    }
}
