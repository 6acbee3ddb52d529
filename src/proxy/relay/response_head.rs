//! The response head the relay writes to a client, straight from the head
//! the backend sent, by the hyper path's rules: hop-by-hop headers and
//! those the `Connection` header names removed, the sticky cookie that
//! pins the client appended, the route's `response_headers` edits made,
//! and the framing header written anew. A body read until the backend
//! closes is passed on the same way: `Connection: close`, then the client
//! connection ends with it.

use http::HeaderValue;

use super::fields::{connection_named, edited_away, is_hop_by_hop, line, number_line, write_edits};
use super::framing::{BodyLength, status_allows_body};
use crate::routing::HeaderEdits;

/// What the relay changes on a response's way to the client.
pub struct Rules<'a> {
    /// A `Set-Cookie` pinning the client to the backend (a new or
    /// redispatched sticky client).
    pub pin: Option<&'a HeaderValue>,
    /// The route's `response_headers`.
    pub edits: Option<&'a HeaderEdits>,
    /// The client connection ends after this response.
    pub close: bool,
    /// The request was a HEAD.
    pub head_request: bool,
}

/// Writes the head of a response with `status` and `reason` to `out`
/// (cleared first).
pub fn write(
    out: &mut Vec<u8>,
    status: u16,
    reason: &str,
    headers: &[httparse::Header<'_>],
    body: BodyLength,
    rules: &Rules<'_>,
) {
    out.clear();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(itoa::Buffer::new().format(status).as_bytes());
    out.push(b' ');
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\r\n");
    let named = connection_named(headers);
    // A HEAD's or a 304's length describes the body it does not carry.
    let keep_length = body == BodyLength::Empty && (rules.head_request || status == 304);
    for header in headers {
        let name = header.name;
        let dropped = is_hop_by_hop(name, &named)
            || (name.eq_ignore_ascii_case("content-length") && !keep_length)
            || edited_away(name, rules.edits);
        if !dropped {
            line(out, name.as_bytes(), header.value);
        }
    }
    if let Some(pin) = rules.pin {
        line(out, b"set-cookie", pin.as_bytes());
    }
    write_edits(out, rules.edits);
    match body {
        BodyLength::Length(n) => number_line(out, b"content-length", n),
        BodyLength::Chunked => line(out, b"transfer-encoding", b"chunked"),
        // An empty body that the status allows must still be framed, or
        // the client reads until the connection closes.
        BodyLength::Empty if status_allows_body(status) && !rules.head_request => {
            line(out, b"content-length", b"0");
        }
        BodyLength::Empty | BodyLength::UntilClose => {}
    }
    if rules.close || body == BodyLength::UntilClose {
        line(out, b"connection", b"close");
    }
    out.extend_from_slice(b"\r\n");
}
