//! A connection to a backend: plain TCP, or TLS when its pool has
//! `[pool.tls]`. Opened the same way for proxied traffic (HTTP and TCP)
//! and health checks, from the node's serve address.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::tcp::connect_from;
use crate::tls::backend::BackendTls;

/// One open connection to a backend.
pub enum BackendStream {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS, the handshake done.
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

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
                Some(tls) => match tls.connect(backend, stream).await {
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

impl AsyncRead for BackendStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            BackendStream::Plain(stream) => Pin::new(stream).poll_read(cx, buf),
            BackendStream::Tls(stream) => Pin::new(stream.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for BackendStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            BackendStream::Plain(stream) => Pin::new(stream).poll_write(cx, buf),
            BackendStream::Tls(stream) => Pin::new(stream.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            BackendStream::Plain(stream) => Pin::new(stream).poll_write_vectored(cx, bufs),
            BackendStream::Tls(stream) => Pin::new(stream.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            BackendStream::Plain(stream) => stream.is_write_vectored(),
            BackendStream::Tls(stream) => stream.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            BackendStream::Plain(stream) => Pin::new(stream).poll_flush(cx),
            BackendStream::Tls(stream) => Pin::new(stream.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            BackendStream::Plain(stream) => Pin::new(stream).poll_shutdown(cx),
            BackendStream::Tls(stream) => Pin::new(stream.as_mut()).poll_shutdown(cx),
        }
    }
}
