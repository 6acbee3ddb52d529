//! The request head the relay writes to a backend, straight from the head
//! it read (names and values copied once, into a buffer reused per
//! connection), by the hyper path's rules: hop-by-hop headers and those
//! the `Connection` header names removed, `Expect` removed, the pool's
//! sticky cookie taken out, the route's `request_headers` edits made,
//! `X-Forwarded-For`, `-Proto` and `-Host` written, and the framing header
//! written anew from the framing the relay decided.

use http::HeaderValue;

use super::fields::{connection_named, edited_away, is_hop_by_hop, line, number_line, write_edits};
use super::framing::BodyLength;
use crate::proxy::http::sticky;
use crate::routing::HeaderEdits;

/// What the relay changes on a request's way to a backend.
pub struct Rules<'a> {
    /// The client's address, as an `X-Forwarded-For` entry.
    pub client: &'a HeaderValue,
    /// The client came over TLS.
    pub https: bool,
    /// The pool's sticky cookie, taken out of `Cookie`.
    pub sticky_cookie: Option<&'a str>,
    /// The route's `request_headers`.
    pub edits: Option<&'a HeaderEdits>,
}

/// Writes the head of a request for `target` to `out` (cleared first).
pub fn write(
    out: &mut Vec<u8>,
    method: &str,
    target: &str,
    headers: &[httparse::Header<'_>],
    body: BodyLength,
    rules: &Rules<'_>,
) {
    out.clear();
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    // Headers the `Connection` header names are this hop's too.
    let named = connection_named(headers);
    let mut forwarded_for: Vec<&[u8]> = Vec::new();
    let mut host = None;
    for header in headers {
        let name = header.name;
        let dropped = is_hop_by_hop(name, &named)
            || name.eq_ignore_ascii_case("content-length")
            || name.eq_ignore_ascii_case("expect")
            || name.eq_ignore_ascii_case("x-forwarded-proto")
            || name.eq_ignore_ascii_case("x-forwarded-host")
            || edited_away(name, rules.edits);
        if name.eq_ignore_ascii_case("host") {
            host = Some(header.value);
        }
        if name.eq_ignore_ascii_case("x-forwarded-for") {
            // Written once below, with the client appended.
            forwarded_for.push(header.value);
            continue;
        }
        if dropped {
            continue;
        }
        if let Some(cookie) = rules.sticky_cookie
            && name.eq_ignore_ascii_case("cookie")
            && let Ok(value) = std::str::from_utf8(header.value)
            && sticky::names(value, cookie)
        {
            let kept = sticky::without(value, cookie);
            if !kept.is_empty() {
                line(out, name.as_bytes(), kept.as_bytes());
            }
            continue;
        }
        line(out, name.as_bytes(), header.value);
    }
    write_edits(out, rules.edits);
    // As the hyper path: the earlier proxies' entries (the first line's,
    // as `HeaderMap::get` reads it), then the client.
    out.extend_from_slice(b"x-forwarded-for: ");
    if let Some(earlier) = forwarded_for.first().map(|v| v.trim_ascii())
        && !earlier.is_empty()
    {
        out.extend_from_slice(earlier);
        out.extend_from_slice(b", ");
    }
    out.extend_from_slice(rules.client.as_bytes());
    out.extend_from_slice(b"\r\n");
    line(
        out,
        b"x-forwarded-proto",
        if rules.https { b"https" } else { b"http" },
    );
    if let Some(host) = host {
        line(out, b"x-forwarded-host", host);
    }
    match body {
        BodyLength::Length(n) => {
            number_line(out, b"content-length", n);
        }
        BodyLength::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        // `Content-Length: 0` stays: some servers want a length on POST.
        BodyLength::Empty
            if headers
                .iter()
                .any(|h| h.name.eq_ignore_ascii_case("content-length")) =>
        {
            out.extend_from_slice(b"content-length: 0\r\n");
        }
        BodyLength::Empty | BodyLength::UntilClose => {}
    }
    out.extend_from_slice(b"\r\n");
}
