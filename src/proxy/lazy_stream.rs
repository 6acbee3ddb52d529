//! A client's TCP connection that joins the runtime's poller only when it
//! first has to wait.
//!
//! Registering a socket with tokio costs an `epoll_ctl` on accept and one
//! on close, besides the driver's bookkeeping. A client that sends its
//! request with its connection (as most do) and takes its answer in one
//! write never needs the poller: its socket is read and written straight
//! (non-blocking), as HAProxy reads first and subscribes only on
//! `EAGAIN`. The first read or write that would block registers it, and
//! from then on it is an ordinary [`tokio::net::TcpStream`].

use std::io::{self, IoSlice, Write};
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// A non-blocking TCP connection, registered with tokio on first wait.
pub enum LazyTcpStream {
    /// Not known to the poller yet.
    Unregistered(std::net::TcpStream),
    /// Registered: waits like any tokio stream.
    Registered(TcpStream),
    /// Registration failed; the socket is gone.
    Lost,
}

impl LazyTcpStream {
    /// Takes an accepted connection, which must be non-blocking.
    pub fn new(stream: std::net::TcpStream) -> Self {
        LazyTcpStream::Unregistered(stream)
    }

    /// The tokio stream, registering the socket first if it is not yet.
    pub fn registered(&mut self) -> io::Result<&mut TcpStream> {
        if matches!(self, LazyTcpStream::Unregistered(_)) {
            let LazyTcpStream::Unregistered(stream) = std::mem::replace(self, LazyTcpStream::Lost)
            else {
                unreachable!("matched just above");
            };
            *self = LazyTcpStream::Registered(TcpStream::from_std(stream)?);
        }
        match self {
            LazyTcpStream::Registered(stream) => Ok(stream),
            _ => Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "connection lost when registering it",
            )),
        }
    }

    /// Runs `direct` on the unregistered socket; on `WouldBlock` (or when
    /// registered already) the registered stream is polled with `polled`.
    fn poll_io<T>(
        &mut self,
        cx: &mut Context<'_>,
        direct: impl FnOnce(&std::net::TcpStream) -> io::Result<T>,
        polled: impl FnOnce(Pin<&mut TcpStream>, &mut Context<'_>) -> Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if let LazyTcpStream::Unregistered(stream) = self {
            match direct(stream) {
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                done => return Poll::Ready(done),
            }
        }
        match self.registered() {
            Ok(stream) => polled(Pin::new(stream), cx),
            Err(error) => Poll::Ready(Err(error)),
        }
    }
}

impl AsyncRead for LazyTcpStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let LazyTcpStream::Unregistered(stream) = this {
            // Straight into the buffer's unfilled part, not zeroed first.
            // SAFETY: `recv` only writes to the slice; `unfilled_mut` is
            // never de-initialized by it.
            let unfilled: &mut [MaybeUninit<u8>] = unsafe { buf.unfilled_mut() };
            match socket2::SockRef::from(&*stream).recv(unfilled) {
                Ok(n) => {
                    // SAFETY: the kernel wrote `n` bytes at the start of
                    // the unfilled part.
                    unsafe { buf.assume_init(n) };
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                Err(error) => return Poll::Ready(Err(error)),
            }
        }
        match this.registered() {
            Ok(stream) => Pin::new(stream).poll_read(cx, buf),
            Err(error) => Poll::Ready(Err(error)),
        }
    }
}

impl AsyncWrite for LazyTcpStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().poll_io(
            cx,
            |mut stream| stream.write(buf),
            |stream, cx| stream.poll_write(cx, buf),
        )
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().poll_io(
            cx,
            |mut stream| stream.write_vectored(bufs),
            |stream, cx| stream.poll_write_vectored(cx, bufs),
        )
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // TCP buffers nothing in user space.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_io(
            cx,
            |stream| stream.shutdown(std::net::Shutdown::Write),
            |stream, cx| stream.poll_shutdown(cx),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A connection's accepted end, and its client.
    async fn pair() -> (TcpStream, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let near = TcpStream::connect(listener.local_addr().expect("address"))
            .await
            .expect("connect");
        let (far, _) = listener.accept().await.expect("accept");
        (far, near)
    }

    #[tokio::test]
    async fn served_without_waiting_it_stays_unregistered() {
        let (far, mut near) = pair().await;
        near.write_all(b"request").await.expect("write");
        // The request is there before the connection is taken, as with a
        // client that sends it with its connection.
        far.readable().await.expect("readable");
        let mut lazy = LazyTcpStream::new(far.into_std().expect("std"));
        let mut got = [0u8; 16];
        let n = lazy.read(&mut got).await.expect("read");
        assert_eq!(&got[..n], b"request");
        lazy.write_all(b"answer").await.expect("write");
        assert!(matches!(lazy, LazyTcpStream::Unregistered(_)));
        drop(lazy);
        let mut answer = Vec::new();
        near.read_to_end(&mut answer).await.expect("read");
        assert_eq!(answer, b"answer");
    }

    #[tokio::test]
    async fn a_read_that_would_block_registers_and_waits() {
        let (far, mut near) = pair().await;
        let mut lazy = LazyTcpStream::new(far.into_std().expect("std"));
        let mut first = [0u8; 5];
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut unread = ReadBuf::new(&mut first);
        assert!(
            Pin::new(&mut lazy)
                .poll_read(&mut cx, &mut unread)
                .is_pending()
        );
        assert!(matches!(lazy, LazyTcpStream::Registered(_)));
        near.write_all(b"later").await.expect("write");
        let mut got = [0u8; 5];
        lazy.read_exact(&mut got).await.expect("read");
        assert_eq!(&got, b"later");
    }
}
