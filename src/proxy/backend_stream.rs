//! A connection to a backend: plain TCP, or TLS when its pool has
//! `[pool.tls]`. Opened the same way for proxied traffic (HTTP and TCP)
//! and health checks, from the node's serve address.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::net::TcpStream;

use super::maybe_tls::MaybeTls;
use super::tcp::connect_from;
use crate::tls::backend::BackendTls;

/// One open connection to a backend: plain, or TLS with the handshake
/// done.
pub type BackendStream = MaybeTls<tokio_rustls::client::TlsStream<TcpStream>>;

impl BackendStream {
    /// Connects to `backend` from `source` and, with `tls`, runs the
    /// handshake, all within `timeout`. A failed handshake is a failed
    /// connect: nothing was sent to the backend.
    pub async fn open(
        source: Option<IpAddr>,
        backend: SocketAddr,
        tls: Option<&BackendTls>,
        timeout: Duration,
    ) -> io::Result<BackendStream> {
        let open = async {
            let stream = connect_from(source, backend).await?;
            match tls {
                None => Ok(BackendStream::Plain(stream)),
                // Boxed: the handshake's state is large, and would
                // otherwise sit in the task of every connection that
                // may open a backend.
                Some(tls) => match Box::pin(tls.connect(backend, stream)).await {
                    Ok(stream) => Ok(BackendStream::Tls(Box::new(stream))),
                    Err(error) => Err(io::Error::new(
                        error.kind(),
                        format!("TLS handshake: {error}"),
                    )),
                },
            }
        };
        match tokio::time::timeout(timeout, open).await {
            Ok(result) => result,
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                match tls {
                    None => "connect timed out",
                    Some(_) => "connect and TLS handshake timed out",
                },
            )),
        }
    }
}
