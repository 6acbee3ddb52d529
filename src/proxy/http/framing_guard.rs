//! Finds requests that carry both `Content-Length` and `Transfer-Encoding`.
//!
//! hyper handles such a request the way RFC 9112 allows (it drops the
//! length, decodes the chunks and closes the connection afterwards), but it
//! removes the evidence before our service sees the request. Requests like
//! this are the classic smuggling probe, and operators expect a proxy to
//! refuse them outright, as nginx does. This wrapper watches the bytes
//! hyper reads, frames them with `httparse` (heads and chunk sizes; no
//! parsing of our own), and marks the request number of the first such
//! request so the service can answer 400 and close. If it ever loses track
//! of the framing it stops watching; hyper's own checks still apply.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::MAX_HEADERS;

/// Shared between the wrapper and the connection's request handler.
#[derive(Debug, Default)]
pub struct AmbiguousRequests {
    /// 1-based number of the first ambiguous request on the connection, or 0.
    first: AtomicU64,
}

impl AmbiguousRequests {
    /// Whether request number `n` (1-based) of the connection was ambiguous.
    pub fn is_ambiguous(&self, n: u64) -> bool {
        self.first.load(Ordering::Acquire) == n
    }
}

/// Where in the byte stream the watcher is.
#[derive(Debug, PartialEq)]
enum Framing {
    Head,
    Fixed(u64),
    ChunkSize,
    ChunkData(u64),
    ChunkEnd(u8),
    Trailers,
    Off,
}

/// The client stream, watched on its way into hyper.
pub struct FramingGuard<S> {
    inner: S,
    framing: Framing,
    line: Vec<u8>,
    requests: u64,
    found: Arc<AmbiguousRequests>,
    activity: Option<Arc<super::idle::Activity>>,
}

impl<S> FramingGuard<S> {
    /// Watches `inner`, reporting into `found`.
    pub fn new(inner: S, found: Arc<AmbiguousRequests>) -> Self {
        FramingGuard {
            inner,
            framing: Framing::Head,
            line: Vec::new(),
            requests: 0,
            found,
            activity: None,
        }
    }

    /// Also stamps every read or write that moves bytes on `activity`
    /// (the idle timeout's view of the client side).
    pub fn stamping(mut self, activity: Arc<super::idle::Activity>) -> Self {
        self.activity = Some(activity);
        self
    }

    fn moved(&self, bytes: usize) {
        if bytes > 0
            && let Some(activity) = &self.activity
        {
            activity.progress();
        }
    }

    fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            match self.framing {
                Framing::Off => return,
                Framing::Head => {
                    // Usual case: the whole head is in this read; parse it
                    // in place instead of copying it byte by byte.
                    if self.line.is_empty()
                        && let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n")
                    {
                        let (head, rest) = data.split_at(end + 4);
                        self.framing = self.on_head(head);
                        data = rest;
                        continue;
                    }
                    if self.take_until(&mut data, b"\r\n\r\n").is_none() {
                        if self.line.len() > super::MAX_HEAD_BYTES + 4 {
                            self.framing = Framing::Off;
                        }
                        return;
                    }
                    let line = std::mem::take(&mut self.line);
                    self.framing = self.on_head(&line);
                    self.line = line;
                    self.line.clear();
                }
                Framing::Fixed(left) => {
                    let step = left.min(data.len() as u64);
                    data = &data[step as usize..];
                    self.framing = if step == left {
                        Framing::Head
                    } else {
                        Framing::Fixed(left - step)
                    };
                }
                Framing::ChunkSize => {
                    if self.take_until(&mut data, b"\n").is_none() {
                        if self.line.len() > 4096 {
                            self.framing = Framing::Off;
                        }
                        return;
                    }
                    self.framing = match httparse::parse_chunk_size(&self.line) {
                        Ok(httparse::Status::Complete((_, 0))) => Framing::Trailers,
                        Ok(httparse::Status::Complete((_, size))) => Framing::ChunkData(size),
                        _ => Framing::Off,
                    };
                    self.line.clear();
                }
                Framing::ChunkData(left) => {
                    let step = left.min(data.len() as u64);
                    data = &data[step as usize..];
                    self.framing = if step == left {
                        Framing::ChunkEnd(2)
                    } else {
                        Framing::ChunkData(left - step)
                    };
                }
                Framing::ChunkEnd(left) => {
                    let step = left.min(data.len().min(2) as u8);
                    data = &data[usize::from(step)..];
                    self.framing = if step == left {
                        Framing::ChunkSize
                    } else {
                        Framing::ChunkEnd(left - step)
                    };
                }
                Framing::Trailers => {
                    if self.take_until(&mut data, b"\n").is_none() {
                        if self.line.len() > super::MAX_HEAD_BYTES {
                            self.framing = Framing::Off;
                        }
                        return;
                    }
                    if self.line == b"\r\n" || self.line == b"\n" {
                        self.framing = Framing::Head;
                    }
                    self.line.clear();
                }
            }
        }
    }

    /// Moves bytes from `data` into `line` up to and including the first
    /// `end` (which may straddle reads); `Some` once it is found.
    fn take_until(&mut self, data: &mut &[u8], end: &[u8]) -> Option<()> {
        for (i, &byte) in data.iter().enumerate() {
            self.line.push(byte);
            if self.line.ends_with(end) {
                *data = &data[i + 1..];
                return Some(());
            }
        }
        *data = &[];
        None
    }

    /// A complete request head: note it and decide how its body is framed.
    fn on_head(&mut self, head: &[u8]) -> Framing {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut request = httparse::Request::new(&mut headers);
        match request.parse(head) {
            Ok(httparse::Status::Complete(_)) => {}
            // hyper refuses it and closes the connection.
            _ => return Framing::Off,
        }
        self.requests += 1;
        if request.method == Some("CONNECT") {
            return Framing::Off;
        }
        let mut chunked = None;
        let mut length: Option<u64> = None;
        let mut has_length = false;
        for header in request.headers.iter() {
            if header.name.eq_ignore_ascii_case("transfer-encoding") {
                let last = header
                    .value
                    .rsplit(|&b| b == b',')
                    .next()
                    .unwrap_or_default();
                chunked = Some(last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
            } else if header.name.eq_ignore_ascii_case("content-length") {
                has_length = true;
                length = std::str::from_utf8(header.value)
                    .ok()
                    .and_then(|v| v.trim().parse().ok());
            }
        }
        if chunked.is_some() && has_length {
            let _ = self.found.first.compare_exchange(
                0,
                self.requests,
                Ordering::AcqRel,
                Ordering::Acquire,
            );
        }
        match (chunked, has_length, length) {
            (Some(true), _, _) => Framing::ChunkSize,
            (None, false, _) | (None, true, Some(0)) => Framing::Head,
            (None, true, Some(n)) => Framing::Fixed(n),
            // Not chunked, or an unreadable length: hyper refuses it.
            (Some(false), _, _) | (None, true, None) => Framing::Off,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for FramingGuard<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        self.moved(buf.filled().len() - before);
        if self.framing != Framing::Off {
            let this = &mut *self;
            this.feed(&buf.filled()[before..]);
            if this.framing == Framing::Off {
                // hyper refuses what made it lose track, and its own checks
                // go on; say that this connection is no longer watched.
                crate::warn_limited!(
                    "framing guard off",
                    request = this.requests,
                    "request framing guard stopped watching a connection (a request it could not \
                     frame: hyper's own checks still apply)"
                );
            }
        }
        poll
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for FramingGuard<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &poll {
            self.moved(*n);
        }
        poll
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = &poll {
            self.moved(*n);
        }
        poll
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watch(stream: &[u8], split: usize) -> (u64, u64, bool) {
        let found = Arc::new(AmbiguousRequests::default());
        let mut guard = FramingGuard::new((), found.clone());
        for piece in stream.chunks(split) {
            guard.feed(piece);
        }
        (
            guard.requests,
            found.first.load(Ordering::Acquire),
            guard.framing == Framing::Off,
        )
    }

    const PIPELINE: &[u8] = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n\
POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 28\r\n\r\nTransfer-Encoding: chunked\r\n\
POST /b HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n3\r\n\r\n\r\r\n0\r\nX-T: 1\r\n\r\n\
\r\nGET /c HTTP/1.1\r\nHost: a\r\n\r\n";

    #[test]
    fn follows_pipelined_requests_in_any_split() {
        for split in [1, 2, 3, 7, 64, PIPELINE.len()] {
            assert_eq!(watch(PIPELINE, split), (4, 0, false), "split {split}");
        }
    }

    #[test]
    fn marks_the_request_with_both_framings() {
        let mut stream = PIPELINE.to_vec();
        stream.extend_from_slice(
            b"POST /d HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n",
        );
        for split in [1, 5, stream.len()] {
            assert_eq!(watch(&stream, split), (5, 5, false), "split {split}");
        }
    }

    #[test]
    fn stops_watching_what_it_cannot_frame() {
        let (_, found, off) = watch(
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            4,
        );
        assert_eq!((found, off), (0, true));
    }
}
