//! One request forwarded by the relay: a backend picked (the sticky one
//! first), a pooled raw connection taken or one opened, the head written
//! and the body streamed, the response head read, rewritten and passed
//! on with its body; retried on another backend when that is safe, as on
//! the hyper path: when nothing reached the backend, or when the method is
//! idempotent and the body is still at hand (small bodies are read whole
//! before the first attempt, so they can be sent again).

use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use http::StatusCode;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};

use super::attempt::{Attempt, Exchange};
use super::body::CHUNK;
use super::chunked::ChunkedScanner;
use super::connection::Connection;
use super::framing::BodyLength;
use super::plan::Forward;
use crate::proxy::backend_stream::BackendStream;
use crate::proxy::http::request::MAX_ATTEMPTS;
use crate::proxy::http::{ResponseBody, local_response, sticky};
use crate::routing::{Frontend, StickyKeys};

/// What the connection does after an exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum After {
    /// Read the next request.
    KeepAlive,
    /// Close the client connection.
    Close,
    /// Close it while the client may still be sending (its body was not
    /// read to the end): linger, so the answer is not lost to a reset.
    CloseUnread,
}

/// An exchange's answer to the client when no backend gave one.
pub enum Failed {
    /// The balancer's own answer, and whether to close after it.
    Answer(Box<http::Response<ResponseBody>>, bool),
    /// Nothing more can be written: the response had begun, or the
    /// client is gone.
    Cut,
}

impl Failed {
    /// The balancer's answer with `status`, after which the connection
    /// closes (the request's body was not read whole).
    fn closing(status: StatusCode, why: &str) -> Failed {
        Failed::Answer(Box::new(local_response::error(status, why, true)), true)
    }
}

/// The connection's side of an exchange.
pub struct Io<'a, C> {
    pub client: &'a mut C,
    /// The client's read buffer: the request's body (some of it), then
    /// what follows.
    pub buf: &'a mut BytesMut,
    /// The backend's head (and a small body after it); then the
    /// client's.
    pub out: &'a mut Vec<u8>,
    /// The backend's read buffer.
    pub backend_buf: &'a mut BytesMut,
}

/// Forwards `request`; `Ok` once a backend's response went to the client.
pub async fn forward<C>(
    client_conn: &Connection<'_>,
    keys: &StickyKeys,
    frontend: &Frontend,
    request: &Forward<'_>,
    io: Io<'_, C>,
) -> Result<After, Failed>
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    let Io {
        client,
        buf,
        out,
        backend_buf,
    } = io;
    let pool = request.pool;
    // A small body is read whole first: it goes with the head in one
    // write, and stays at hand for a retry.
    let inline = match request.body {
        BodyLength::Empty => Some(0),
        BodyLength::Length(n) if n <= CHUNK as u64 => {
            let n = n as usize;
            let deadline = tokio::time::Instant::now() + client_conn.header_timeout;
            while buf.len() < n {
                read_body(client, buf, deadline).await?;
            }
            Some(n)
        }
        _ => {
            // As the hyper path, the body's start is checked before a
            // backend is chosen: a malformed first chunk never leaves.
            if request.body == BodyLength::Chunked {
                first_chunk(client, buf, client_conn.header_timeout).await?;
            }
            None
        }
    };
    if let Some(n) = inline {
        // `out` keeps the body for every attempt; the client's buffer
        // moves on to what follows it, whatever comes of the exchange.
        out.extend_from_slice(&buf[..n]);
        buf.advance(n);
    }
    let connect_timeout = Duration::from_millis(frontend.spec.connect_timeout_ms);
    let attempts = (frontend.spec.retries as usize + 1).min(MAX_ATTEMPTS);
    let mut tried = [usize::MAX; MAX_ATTEMPTS];
    let mut failure = None;
    for attempt in 0..attempts {
        let chosen = match request.pinned {
            Some(index) if attempt == 0 => Some(index),
            _ => pool.pick(
                request.key.as_deref(),
                client_conn.client.ip(),
                &tried[..attempt],
            ),
        };
        let Some(index) = chosen else {
            break;
        };
        tried[attempt] = index;
        let backend = &pool.backends[index];
        let runtime = &backend.runtime;
        let upstream = (backend.address, pool.tls.as_ref().map_or(0, |t| t.id()));
        runtime.requests.inc();
        runtime.active.inc();
        let started = Instant::now();
        let connection = match client_conn.upstreams.relay().take(upstream) {
            Some(connection) => connection,
            None => {
                // Boxed, as the streaming path below: rarer paths do not
                // make every connection's future larger.
                let opened = Box::pin(BackendStream::open(
                    client_conn.upstreams.source(),
                    backend.address,
                    pool.tls.as_deref(),
                    connect_timeout,
                ))
                .await;
                match opened {
                    Ok(connection) => connection,
                    Err(error) => {
                        runtime.active.dec();
                        pool.record_failure(index, "connect failed");
                        tracing::debug!(backend = %backend.address, %error, "relay connect failed");
                        failure = Some("no backend accepted the connection");
                        continue;
                    }
                }
            }
        };
        backend_buf.clear();
        let exchange = Exchange {
            client_conn,
            request,
            runtime,
            frontend,
            pin: sticky::pin(pool, request.pinned, index, keys, client_conn.https),
            deadline: tokio::time::Instant::from_std(started) + request.response_timeout,
        };
        let result = match inline {
            Some(n) => {
                exchange
                    .whole(connection, client, out, backend_buf, n as u64)
                    .await
            }
            None => Box::pin(exchange.streaming(connection, client, buf, out, backend_buf)).await,
        };
        runtime.active.dec();
        match result {
            Ok((after, connection, status)) => {
                runtime.duration.observe(started.elapsed().as_secs_f64());
                pool.record_answer(index, status);
                if let Some(connection) = connection {
                    client_conn.upstreams.relay().put(upstream, connection);
                }
                return Ok(after);
            }
            Err(Attempt::TimedOut) => {
                pool.record_failure(index, "response timed out");
                return Err(Failed::Answer(
                    Box::new(local_response::error(
                        StatusCode::GATEWAY_TIMEOUT,
                        "backend did not answer in time",
                        false,
                    )),
                    inline.is_none(),
                ));
            }
            Err(Attempt::Cut) => return Err(Failed::Cut),
            Err(Attempt::BadBody) => {
                return Err(Failed::closing(
                    StatusCode::BAD_REQUEST,
                    "malformed request body",
                ));
            }
            Err(Attempt::Failed(why, body_intact)) => {
                pool.record_failure(index, why);
                tracing::debug!(backend = %backend.address, why, "relay attempt failed");
                failure = Some("backend connection failed");
                // A streamed body is gone once it began; a small one is
                // at hand.
                if !body_intact {
                    return Err(Failed::closing(StatusCode::BAD_GATEWAY, why));
                }
                if !request.idempotent {
                    break;
                }
            }
        }
    }
    let response = match failure {
        Some(detail) => local_response::error(StatusCode::BAD_GATEWAY, detail, false),
        None => local_response::error(
            StatusCode::SERVICE_UNAVAILABLE,
            "no backend available",
            false,
        ),
    };
    // A body not sent is still unread: the connection cannot go on.
    Err(Failed::Answer(Box::new(response), inline.is_none()))
}

/// Waits until `buf` holds the first chunk-size line of a chunked body,
/// and checks it.
async fn first_chunk<C: AsyncRead + Unpin>(
    client: &mut C,
    buf: &mut BytesMut,
    wait: Duration,
) -> Result<(), Failed> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let line = buf.iter().position(|&b| b == b'\n').map(|lf| &buf[..=lf]);
        let mut scanner = ChunkedScanner::default();
        match scanner.feed(line.unwrap_or(buf), &mut |_| {}) {
            Err(_) => {
                return Err(Failed::closing(
                    StatusCode::BAD_REQUEST,
                    "malformed request body",
                ));
            }
            Ok(_) if line.is_some() => return Ok(()),
            Ok(_) => {}
        }
        read_body(client, buf, deadline).await?;
    }
}

/// Reads more of a request's body into `buf`, by `deadline`.
async fn read_body<C: AsyncRead + Unpin>(
    client: &mut C,
    buf: &mut BytesMut,
    deadline: tokio::time::Instant,
) -> Result<(), Failed> {
    buf.reserve(CHUNK);
    match tokio::time::timeout_at(deadline, client.read_buf(buf)).await {
        Ok(Ok(n)) if n > 0 => Ok(()),
        Ok(_) => Err(Failed::Cut),
        Err(_) => Err(Failed::closing(
            StatusCode::REQUEST_TIMEOUT,
            "request body not received",
        )),
    }
}
