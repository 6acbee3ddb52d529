//! One attempt of a forwarded request on one backend connection: the
//! request written (whole, or its head and then its body streamed while
//! the response is read, since a backend may answer early), the response
//! head read (interim answers skipped), the client's head written, the
//! body passed on, and whether the connection is clean for the pool.

use std::sync::atomic::{AtomicBool, Ordering};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::body::{self, BodyError, CHUNK};
use super::connection::Connection;
use super::exchange::After;
use super::framing::BodyLength;
use super::head::{self, HeadError};
use super::plan::Forward;
use super::response_head;
use crate::proxy::backend_stream::BackendStream;
use crate::proxy::http::MAX_HEADERS;
use crate::routing::{BackendRuntime, Frontend, HeaderView};

/// Room for a response head, on top of [`CHUNK`], when reading one.
const HEAD_ROOM: usize = 4096;

/// The two ends of an exchange.
#[derive(Clone, Copy)]
enum Side {
    Client,
    Server,
}

/// Why an attempt gave no response.
pub(super) enum Attempt {
    /// The request's chunked body is malformed (before any response).
    BadBody,
    /// No response head within the response timeout.
    TimedOut,
    /// The backend failed before its response head (`why`); whether the
    /// request's body is still whole at hand (for a retry).
    Failed(&'static str, bool),
    /// The response had begun, or the client is gone: close.
    Cut,
}

/// The backend's response, and the connection back if it can be pooled.
pub(super) type Answered = (After, Option<BackendStream>, u16);

/// One attempt on one backend connection.
pub(super) struct Exchange<'a> {
    /// The client's side.
    pub(super) client_conn: &'a Connection<'a>,
    pub(super) request: &'a Forward<'a>,
    pub(super) runtime: &'a BackendRuntime,
    pub(super) frontend: &'a Frontend,
    /// The `Set-Cookie` pinning a sticky client to this backend.
    pub(super) pin: Option<http::HeaderValue>,
    /// The response head must have come by then.
    pub(super) deadline: tokio::time::Instant,
}

impl Exchange<'_> {
    /// The request whole in `out` (head and a body of `body` bytes): one
    /// write, then the response.
    pub(super) async fn whole<C>(
        &self,
        mut connection: BackendStream,
        client: &mut C,
        out: &mut Vec<u8>,
        backend_buf: &mut BytesMut,
        body: u64,
    ) -> Result<Answered, Attempt>
    where
        C: AsyncRead + AsyncWrite + Unpin,
    {
        let idle = self.client_conn.idle_timeout;
        match tokio::time::timeout(idle, connection.write_all(out)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err(Attempt::Failed("request not written", true)),
            Err(_) => {
                return Err(Attempt::Failed(
                    "backend took no request for the idle timeout",
                    true,
                ));
            }
        }
        self.count_request_body(body);
        let (after, reusable, status) = self
            .respond(
                &mut connection,
                backend_buf,
                client,
                out,
                &AtomicBool::new(false),
            )
            .await?;
        Ok((after, reusable.then_some(connection), status))
    }

    /// A body too large to hold, streamed while the response is read (a
    /// backend may answer before it has read the whole body).
    pub(super) async fn streaming<C>(
        &self,
        connection: BackendStream,
        client: &mut C,
        buf: &mut BytesMut,
        out: &mut Vec<u8>,
        backend_buf: &mut BytesMut,
    ) -> Result<Answered, Attempt>
    where
        C: AsyncRead + AsyncWrite + Unpin,
    {
        let idle = self.client_conn.idle_timeout;
        let length = self.request.body;
        let (mut from_backend, mut to_backend) = tokio::io::split(connection);
        match tokio::time::timeout(idle, to_backend.write_all(out)).await {
            Ok(Ok(())) => {}
            _ => return Err(Attempt::Failed("request head not written", true)),
        }
        let responding = AtomicBool::new(false);
        let (answered, uploaded) = {
            let (mut from_client, mut to_client) = tokio::io::split(&mut *client);
            let upload = body::copy(length, buf, &mut from_client, &mut to_backend, idle);
            let download = self.respond(
                &mut from_backend,
                backend_buf,
                &mut to_client,
                out,
                &responding,
            );
            tokio::pin!(upload, download);
            // `None` while the body goes; `Some(false)`: the backend
            // stopped taking it (it may be answering early, a 413 say).
            let mut uploaded = None;
            loop {
                tokio::select! {
                    sent = &mut upload, if uploaded.is_none() => match sent {
                        Ok(bytes) => {
                            self.count_request_body(bytes);
                            uploaded = Some(true);
                        }
                        Err(BodyError::Chunk(error)) if !responding.load(Ordering::Relaxed) => {
                            tracing::debug!(?error, "relay: malformed request body");
                            return Err(Attempt::BadBody);
                        }
                        Err(BodyError::Write(error)) => {
                            tracing::debug!(%error, "relay: backend stopped taking the body");
                            uploaded = Some(false);
                        }
                        Err(error) => {
                            self.cut(&error, Side::Client);
                            return Err(Attempt::Cut);
                        }
                    },
                    answered = &mut download => break (answered, uploaded),
                }
            }
        };
        let (after, reusable, status) = match answered {
            Ok(answered) => answered,
            // Part of the body went: it cannot be sent again.
            Err(Attempt::Failed(why, _)) => return Err(Attempt::Failed(why, false)),
            Err(other) => return Err(other),
        };
        if uploaded != Some(true) {
            // Answered before the body's end: where the next request
            // would begin is unknown, and the backend is mid-request.
            return Ok((After::CloseUnread, None, status));
        }
        let connection = from_backend.unsplit(to_backend);
        Ok((after, reusable.then_some(connection), status))
    }

    /// Counts and logs an exchange cut short in its body: an idle
    /// timeout on the side that went quiet (`sender` is the body's).
    fn cut(&self, error: &BodyError, sender: Side) {
        let side = match (error, sender) {
            (BodyError::SenderIdle, side) => side,
            (BodyError::ReceiverIdle, Side::Client) => Side::Server,
            (BodyError::ReceiverIdle, Side::Server) => Side::Client,
            _ => {
                tracing::debug!(?error, "relay: body not passed on");
                return;
            }
        };
        let stats = &self.frontend.stats;
        match side {
            Side::Client => stats.client_timeouts.inc(),
            Side::Server => stats.server_timeouts.inc(),
        };
        tracing::info!(
            frontend = %self.frontend.spec.name,
            client = %self.client_conn.client,
            side = match side {
                Side::Client => "client",
                Side::Server => "server",
            },
            idle_ms = self.client_conn.idle_timeout.as_millis() as u64,
            "http exchange cut: no data from one side for the idle timeout"
        );
    }

    fn count_request_body(&self, bytes: u64) {
        self.frontend.stats.bytes_in.inc_by(bytes);
        self.runtime.bytes_out.inc_by(bytes);
    }

    /// Reads the response head (1xx skipped), writes the client's head
    /// and passes the body on. Returns what the client connection does
    /// next, whether the backend connection is clean for another request,
    /// and the status.
    async fn respond<R, W>(
        &self,
        from: &mut R,
        backend_buf: &mut BytesMut,
        to: &mut W,
        out: &mut Vec<u8>,
        responding: &AtomicBool,
    ) -> Result<(After, bool, u16), Attempt>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let head = loop {
            match self.response_head(backend_buf, out) {
                Ok(Some(head)) => break head,
                Ok(None) => {}
                Err(error) => {
                    tracing::debug!(?error, "relay: malformed response head");
                    return Err(Attempt::Failed("malformed response", true));
                }
            }
            // Room for a head and a [`CHUNK`] body after it: a response
            // of that size is read at once and goes out in one write.
            backend_buf.reserve(CHUNK + HEAD_ROOM);
            match tokio::time::timeout_at(self.deadline, from.read_buf(backend_buf)).await {
                Ok(Ok(0)) => {
                    return Err(Attempt::Failed("backend closed before its response", true));
                }
                Ok(Ok(_)) => {}
                Ok(Err(_)) => return Err(Attempt::Failed("backend connection failed", true)),
                Err(_) => return Err(Attempt::TimedOut),
            }
        };
        let idle = self.client_conn.idle_timeout;
        responding.store(true, Ordering::Relaxed);
        self.frontend.stats.count_response(head.status);
        let written = async {
            to.write_all(out).await?;
            to.flush().await
        };
        if !matches!(tokio::time::timeout(idle, written).await, Ok(Ok(()))) {
            return Err(Attempt::Cut);
        }
        let sent = if head.inline {
            head.inline_bytes
        } else {
            match body::copy(head.body, backend_buf, from, to, idle).await {
                Ok(sent) => sent,
                Err(error) => {
                    self.cut(&error, Side::Server);
                    return Err(Attempt::Cut);
                }
            }
        };
        self.runtime.bytes_in.inc_by(sent);
        self.frontend.stats.bytes_out.inc_by(sent);
        let until_close = head.body == BodyLength::UntilClose;
        // Bytes after the response, or a backend that closes: not pooled.
        let reusable = !until_close && !head.backend_closes && backend_buf.is_empty();
        let after = if until_close || head.close {
            After::Close
        } else {
            After::KeepAlive
        };
        Ok((after, reusable, head.status))
    }

    /// The response head at the front of `backend_buf`, if complete:
    /// taken off the buffer, with the client's head written to `out`
    /// (and the body after it, when it is all there and small).
    fn response_head(
        &self,
        backend_buf: &mut BytesMut,
        out: &mut Vec<u8>,
    ) -> Result<Option<ResponseHead>, HeadError> {
        loop {
            let mut lines = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let Some(head) =
                head::parse_response(backend_buf, &mut lines, self.request.head_request)?
            else {
                return Ok(None);
            };
            if (100..200).contains(&head.status) {
                if head.status == 101 {
                    // No upgrade was asked for on this path.
                    return Err(HeadError::Malformed("101 without an upgrade"));
                }
                // Interim responses are not passed on (as hyper's client).
                let length = head.length;
                backend_buf.advance(length);
                continue;
            }
            let close = self.request.close || self.client_conn.engine.shutdown.is_cancelled();
            response_head::write(
                out,
                head.status,
                head.reason,
                head.headers,
                head.body,
                &response_head::Rules {
                    pin: self.pin.as_ref(),
                    edits: self.request.route.and_then(|r| r.response_edits.as_ref()),
                    close,
                    head_request: self.request.head_request,
                },
            );
            let backend_closes = head.version == 0
                || HeaderView::Lines(head.headers).has_token("connection", b"close");
            let (status, body, length) = (head.status, head.body, head.length);
            backend_buf.advance(length);
            let inline_bytes = match body {
                BodyLength::Empty => Some(0),
                BodyLength::Length(n) if n as usize <= backend_buf.len() && n as usize <= CHUNK => {
                    out.extend_from_slice(&backend_buf[..n as usize]);
                    backend_buf.advance(n as usize);
                    Some(n)
                }
                _ => None,
            };
            return Ok(Some(ResponseHead {
                close,
                status,
                body,
                backend_closes,
                inline: inline_bytes.is_some(),
                inline_bytes: inline_bytes.unwrap_or(0),
            }));
        }
    }
}

/// What the relay keeps of a response head once its buffer moved on.
struct ResponseHead {
    /// The client's head says `Connection: close`.
    close: bool,
    status: u16,
    body: BodyLength,
    /// `Connection: close`, or HTTP/1.0.
    backend_closes: bool,
    /// The body went into the client's head write.
    inline: bool,
    inline_bytes: u64,
}
