//! One client connection on the relay: heads read into a buffer reused
//! for the connection's life, each request planned ([`super::plan`]) and
//! answered or forwarded ([`super::exchange`]), pipelined requests taken
//! from the buffer in turn. At the first request the relay does not take,
//! the connection goes to hyper with what was read and not served.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use http::{HeaderValue, StatusCode};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::body::CHUNK;
use super::exchange::{self, After, Failed};
use super::local;
use super::plan::{self, Plan};
use super::prefixed::Prefixed;
use crate::proxy::Engine;
use crate::proxy::http::{ResponseBody, UpstreamPool, local_response};

/// How long a closing connection reads what the client still sends, so
/// the last answer is not lost to a reset.
const LINGER: Duration = Duration::from_secs(1);
/// Most bytes read while lingering.
const LINGER_BYTES: usize = 256 * 1024;

/// How a connection left the relay.
pub enum Ended<S> {
    /// Served to its end.
    Closed,
    /// For hyper to serve on, from the request the relay did not take.
    HandOff(Prefixed<S>),
}

/// The connection's fixed facts.
pub struct Connection<'a> {
    pub engine: &'a Arc<Engine>,
    pub frontend: &'a str,
    pub client: SocketAddr,
    /// The client's address as an `X-Forwarded-For` entry.
    pub client_value: HeaderValue,
    pub upstreams: &'a UpstreamPool,
    pub https: bool,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
}

/// Why no head was read.
enum NoHead {
    /// The client left, went quiet, or the node is shutting down between
    /// requests: close without a word.
    Quiet,
    /// A head refused outright: answer, then close.
    Refused(Box<http::Response<ResponseBody>>),
}

impl Connection<'_> {
    /// Serves `stream` until it closes or is handed to hyper.
    pub async fn serve<S>(&self, mut stream: S) -> Ended<S>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let mut buf = BytesMut::with_capacity(CHUNK);
        let mut out = Vec::with_capacity(1024);
        let mut backend_buf = BytesMut::new();
        loop {
            let deadline = tokio::time::Instant::now() + self.header_timeout;
            // The next request's first bytes before the table is read: a
            // keep-alive client's request is routed by the table of the
            // moment it came, not of the moment the last one ended.
            if buf.is_empty()
                && self
                    .read_more(&mut stream, &mut buf, deadline)
                    .await
                    .is_err()
            {
                return Ended::Closed;
            }
            let table = self.engine.table.load_full();
            let Some(frontend) = table.frontend(self.frontend) else {
                return Ended::Closed;
            };
            let keys = self.engine.table.sticky_keys();
            let planned = loop {
                if !buf.is_empty() {
                    match plan::plan(&buf, &table, frontend, &keys, self, &mut out) {
                        Ok(Some(planned)) => break Ok(planned),
                        Ok(None) => {}
                        Err(error) => {
                            break Err(NoHead::Refused(Box::new(local_response::error(
                                StatusCode::from_u16(error.status())
                                    .unwrap_or(StatusCode::BAD_REQUEST),
                                error.reason(),
                                true,
                            ))));
                        }
                    }
                }
                if let Err(quiet) = self.read_more(&mut stream, &mut buf, deadline).await {
                    break Err(quiet);
                }
            };
            let started = Instant::now();
            let (length, plan) = match planned {
                Ok(planned) => planned,
                Err(NoHead::Quiet) => return Ended::Closed,
                Err(NoHead::Refused(response)) => {
                    frontend.stats.requests.inc();
                    frontend.stats.count_response(response.status().as_u16());
                    local::write(&mut out, &response, true, false);
                    let _ = self.write(&mut stream, &out).await;
                    self.close(stream, true).await;
                    return Ended::Closed;
                }
            };
            if matches!(plan, Plan::HandOff) {
                return Ended::HandOff(Prefixed::new(buf.freeze(), stream));
            }
            frontend.stats.requests.inc();
            buf.advance(length);
            // `linger`: when closing, the client may still be sending
            // (a body left unread, pipelined requests).
            let (after, linger) = match plan {
                Plan::HandOff => unreachable!("handed off above"),
                Plan::Answer {
                    response,
                    close,
                    head,
                } => {
                    frontend.stats.count_response(response.status().as_u16());
                    let close = close || self.engine.shutdown.is_cancelled();
                    let after = self
                        .answer(&mut stream, &mut out, &response, close, head)
                        .await;
                    (after, close)
                }
                Plan::Forward(request) => {
                    let io = exchange::Io {
                        client: &mut stream,
                        buf: &mut buf,
                        out: &mut out,
                        backend_buf: &mut backend_buf,
                    };
                    match exchange::forward(self, &keys, frontend, &request, io).await {
                        Ok(After::CloseUnread) => (After::Close, true),
                        Ok(after) => (after, !buf.is_empty()),
                        // The client is gone, or its response broke off.
                        Err(Failed::Cut) => (After::Close, false),
                        Err(Failed::Answer(response, unread)) => {
                            frontend.stats.count_response(response.status().as_u16());
                            let close =
                                unread || request.close || self.engine.shutdown.is_cancelled();
                            let after = self
                                .answer(
                                    &mut stream,
                                    &mut out,
                                    &response,
                                    close,
                                    request.head_request,
                                )
                                .await;
                            (after, unread || !buf.is_empty())
                        }
                    }
                }
            };
            frontend
                .stats
                .duration
                .observe(started.elapsed().as_secs_f64());
            if after != After::KeepAlive {
                self.close(stream, linger).await;
                return Ended::Closed;
            }
        }
    }

    /// Reads more of a head into `buf` by `deadline`; between requests
    /// (nothing read yet), a shutdown ends the wait.
    async fn read_more<S>(
        &self,
        stream: &mut S,
        buf: &mut BytesMut,
        deadline: tokio::time::Instant,
    ) -> Result<(), NoHead>
    where
        S: AsyncRead + Unpin,
    {
        buf.reserve(CHUNK);
        let between = buf.is_empty();
        let read = tokio::select! {
            read = tokio::time::timeout_at(deadline, stream.read_buf(buf)) => read,
            () = self.engine.shutdown.cancelled(), if between => return Err(NoHead::Quiet),
        };
        match read {
            Ok(Ok(n)) if n > 0 => Ok(()),
            Ok(_) => Err(NoHead::Quiet),
            Err(_) if between => Err(NoHead::Quiet),
            Err(_) => Err(NoHead::Refused(Box::new(local_response::error(
                StatusCode::REQUEST_TIMEOUT,
                "request head not received in time",
                true,
            )))),
        }
    }

    /// Writes a local answer; what the connection does next.
    async fn answer<S>(
        &self,
        stream: &mut S,
        out: &mut Vec<u8>,
        response: &http::Response<ResponseBody>,
        close: bool,
        head: bool,
    ) -> After
    where
        S: AsyncWrite + Unpin,
    {
        local::write(out, response, close, head);
        match self.write(stream, out).await {
            Ok(()) if !close => After::KeepAlive,
            _ => After::Close,
        }
    }

    async fn write<S: AsyncWrite + Unpin>(&self, stream: &mut S, bytes: &[u8]) -> Result<(), ()> {
        let written = async {
            stream.write_all(bytes).await?;
            stream.flush().await
        };
        match tokio::time::timeout(self.idle_timeout, written).await {
            Ok(Ok(())) => Ok(()),
            _ => Err(()),
        }
    }

    /// Ends the connection: our side shut; with `linger`, what the client
    /// still sends is then read and dropped for a while, so that closing
    /// with unread bytes does not reset the connection under the last
    /// answer (as HAProxy and nginx linger).
    async fn close<S: AsyncRead + AsyncWrite + Unpin>(&self, mut stream: S, linger: bool) {
        if !linger && !self.https {
            // Closing the socket sends its FIN: no `shutdown` call needed.
            return;
        }
        // TLS: `close_notify` first.
        let _ = tokio::time::timeout(self.idle_timeout, stream.shutdown()).await;
        if !linger {
            return;
        }
        let linger = async {
            // On the heap: a buffer here would make every connection's
            // future this much larger.
            let mut sink = vec![0u8; 4096];
            let mut read = 0;
            while read < LINGER_BYTES {
                match stream.read(&mut sink).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => read += n,
                }
            }
        };
        let _ = tokio::time::timeout(LINGER, linger).await;
    }
}
