//! TLS under tonic: the accepting side (handshakes off the accept loop,
//! each with the settings current when it starts) and the connecting side
//! (a connector for `Endpoint::connect_with_connector_lazy`).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::StreamExt;
use http::Uri;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::server::TlsStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::{TcpConnectInfo, TcpIncoming, TlsConnectInfo};

use super::identity::{self, Identity};

/// Longest a handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in flight per port; further connections wait to be accepted.
const HANDSHAKES_IN_FLIGHT: usize = 64;

/// Accepted connections after their handshake, for
/// `serve_with_incoming_shutdown`; `settings` gives the server settings
/// for each new handshake. Failed handshakes are logged, once per cause
/// per [`crate::log_limit::INTERVAL`].
pub fn incoming(
    listener: TcpIncoming,
    what: &'static str,
    settings: impl Fn() -> Arc<rustls::ServerConfig> + Send + 'static,
) -> ReceiverStream<io::Result<TlsStream<TcpStream>>> {
    let (send, receive) = mpsc::channel(HANDSHAKES_IN_FLIGHT);
    let slots = Arc::new(Semaphore::new(HANDSHAKES_IN_FLIGHT));
    tokio::spawn(async move {
        let mut listener = listener;
        loop {
            let Ok(slot) = slots.clone().acquire_owned().await else {
                return;
            };
            let accepted = tokio::select! {
                accepted = listener.next() => accepted,
                () = send.closed() => return,
            };
            let tcp = match accepted {
                Some(Ok(tcp)) => tcp,
                Some(Err(error)) => {
                    // Out of file descriptors, usually: back off.
                    tracing::warn!(%error, port = what, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
                None => return,
            };
            let (acceptor, send) = (TlsAcceptor::from(settings()), send.clone());
            tokio::spawn(async move {
                let _slot = slot;
                let peer = tcp.peer_addr().ok();
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => {
                        let _ = send.send(Ok(tls)).await;
                    }
                    Ok(Err(error)) => refused(what, peer, &error.to_string()),
                    Err(_) => refused(what, peer, "handshake timed out"),
                }
            });
        }
    });
    ReceiverStream::new(receive)
}

fn refused(what: &str, peer: Option<SocketAddr>, why: &str) {
    crate::warn_limited!(
        format!("tls {what} {why}"),
        port = what,
        peer = ?peer,
        error = why,
        "TLS handshake refused"
    );
}

/// The first I/O error on the connections a connector made. A server that
/// refuses the client's certificate says why in an alert that arrives
/// after the TLS 1.3 handshake, on the first read; the gRPC call itself
/// only reports that it was cancelled.
#[derive(Clone, Default)]
pub struct FirstError(Arc<Mutex<Option<String>>>);

impl FirstError {
    /// The error seen, if any.
    pub fn get(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn record(&self, error: &io::Error) {
        let mut first = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if first.is_none() {
            *first = Some(error.to_string());
        }
    }
}

/// A stream whose I/O errors are recorded.
pub struct Recorded<S> {
    inner: S,
    errors: FirstError,
}

impl<S> Recorded<S> {
    fn seen<T>(&self, result: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if let Poll::Ready(Err(error)) = &result {
            self.errors.record(error);
        }
        result
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Recorded<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        self.seen(result)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Recorded<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.seen(result)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let result = Pin::new(&mut self.inner).poll_flush(cx);
        self.seen(result)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let result = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.seen(result)
    }
}

/// A connection a connector made.
pub type ClientStream = TokioIo<Recorded<tokio_rustls::client::TlsStream<TcpStream>>>;

/// The future a connector returns.
type Connecting = Pin<Box<dyn Future<Output = io::Result<ClientStream>> + Send>>;

/// Connects over TCP and TLS with the settings `settings` gives at each
/// connection, checking that the server's certificate covers the address
/// dialled (its IP SAN); I/O errors go to `errors` too.
pub fn connector(
    settings: impl Fn() -> Arc<rustls::ClientConfig> + Clone + Send + 'static,
    errors: FirstError,
) -> impl tower::Service<Uri, Response = ClientStream, Error = io::Error, Future = Connecting>
+ Clone
+ Send
+ 'static {
    tower::service_fn(move |uri: Uri| -> Connecting {
        let (settings, errors) = (settings.clone(), errors.clone());
        Box::pin(async move {
            let bad =
                |why: &str| io::Error::new(io::ErrorKind::InvalidInput, format!("{uri}: {why}"));
            let host = uri.host().ok_or_else(|| bad("no host"))?;
            let port = uri.port_u16().ok_or_else(|| bad("no port"))?;
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let name = ServerName::try_from(host.to_string()).map_err(|e| bad(&e.to_string()))?;
            let tcp = TcpStream::connect((host, port)).await?;
            tcp.set_nodelay(true)?;
            let tls = match TlsConnector::from(settings()).connect(name, tcp).await {
                Ok(tls) => tls,
                Err(error) => {
                    errors.record(&error);
                    return Err(error);
                }
            };
            Ok(TokioIo::new(Recorded { inner: tls, errors }))
        })
    })
}

/// The identity in the client certificate of a request that came over
/// TLS (`None` without TLS or without a certificate).
pub fn caller<T>(request: &tonic::Request<T>) -> Option<Identity> {
    let certs = request
        .extensions()
        .get::<TlsConnectInfo<TcpConnectInfo>>()?
        .peer_certs()?;
    identity::read(certs.first()?).ok()?.identity
}
