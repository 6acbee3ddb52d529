//! Request heads as the relay reads them: parsed by httparse in place
//! (names and values borrowed from the read buffer, nothing copied), then
//! held to the rules the hyper path enforces: one `Host` (HTTP/1.1), a
//! target within [`MAX_URI_BYTES`], a head within [`MAX_HEAD_BYTES`] and
//! [`MAX_HEADERS`] lines, lines ended by CRLF only, and certain framing.

use super::framing::{self, BodyLength, FramingError};
use crate::proxy::http::{MAX_HEAD_BYTES, MAX_HEADERS, MAX_URI_BYTES};

/// Why a request head is refused, with the status it is answered with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadError {
    /// 400: not a valid HTTP/1.x head.
    Malformed(&'static str),
    /// 400: its framing is refused.
    Framing(FramingError),
    /// 414: the target is longer than [`MAX_URI_BYTES`].
    UriTooLong,
    /// 431: the head is over [`MAX_HEAD_BYTES`] or [`MAX_HEADERS`] lines.
    TooLarge,
}

impl HeadError {
    /// The status the client is answered with.
    pub fn status(self) -> u16 {
        match self {
            HeadError::Malformed(_) | HeadError::Framing(_) => 400,
            HeadError::UriTooLong => 414,
            HeadError::TooLarge => 431,
        }
    }

    /// The reason the client is given.
    pub fn reason(self) -> &'static str {
        match self {
            HeadError::Malformed(why) => why,
            HeadError::Framing(framing) => framing.reason(),
            HeadError::UriTooLong => "request target too long",
            HeadError::TooLarge => "request head too large",
        }
    }
}

/// A request head, borrowed from the buffer it was read into.
#[derive(Debug)]
pub struct RequestHead<'b, 'h> {
    /// The method, as sent.
    pub method: &'b str,
    /// The request target, as sent.
    pub target: &'b str,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version: u8,
    /// The header lines, in order.
    pub headers: &'h [httparse::Header<'b>],
    /// Bytes of the head, CRLF CRLF included.
    pub length: usize,
    /// Where its body ends.
    pub body: BodyLength,
}

/// Parses the request head at the start of `buf` into `headers`:
/// `Ok(None)` until the head is complete.
pub fn parse_request<'b, 'h>(
    buf: &'b [u8],
    headers: &'h mut [httparse::Header<'b>; MAX_HEADERS],
) -> Result<Option<RequestHead<'b, 'h>>, HeadError> {
    let mut request = httparse::Request::new(headers);
    let parsed = request.parse(buf);
    let Some(length) = head_length(buf, parsed, "malformed request head")? else {
        return Ok(None);
    };
    let (Some(method), Some(target), Some(version)) =
        (request.method, request.path, request.version)
    else {
        return Err(HeadError::Malformed("malformed request line"));
    };
    if target.len() > MAX_URI_BYTES {
        return Err(HeadError::UriTooLong);
    }
    let headers: &'h [httparse::Header<'b>] = request.headers;
    let hosts = headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("host"))
        .count();
    if hosts > 1 {
        return Err(HeadError::Malformed("more than one Host header"));
    }
    if hosts == 0 && version == 1 {
        return Err(HeadError::Malformed("HTTP/1.1 request without Host header"));
    }
    let body = framing::request_body(version, headers).map_err(HeadError::Framing)?;
    Ok(Some(RequestHead {
        method,
        target,
        version,
        headers,
        length,
        body,
    }))
}

/// A response head, borrowed from the buffer it was read into.
#[derive(Debug)]
pub struct ResponseHead<'b, 'h> {
    /// The status code.
    pub status: u16,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version: u8,
    /// The reason phrase, as sent.
    pub reason: &'b str,
    /// The header lines, in order.
    pub headers: &'h [httparse::Header<'b>],
    /// Bytes of the head, CRLF CRLF included.
    pub length: usize,
    /// Where its body ends (`head_request`: the request was a HEAD).
    pub body: BodyLength,
}

/// Parses the response head at the start of `buf` into `headers`:
/// `Ok(None)` until the head is complete. The same limits and line rules
/// as requests; obs-fold is refused (httparse's default).
pub fn parse_response<'b, 'h>(
    buf: &'b [u8],
    headers: &'h mut [httparse::Header<'b>; MAX_HEADERS],
    head_request: bool,
) -> Result<Option<ResponseHead<'b, 'h>>, HeadError> {
    let mut response = httparse::Response::new(headers);
    let parsed = response.parse(buf);
    let Some(length) = head_length(buf, parsed, "malformed response head")? else {
        return Ok(None);
    };
    let (Some(status), Some(version)) = (response.code, response.version) else {
        return Err(HeadError::Malformed("malformed status line"));
    };
    let reason = response.reason.unwrap_or("");
    let headers: &'h [httparse::Header<'b>] = response.headers;
    let body = framing::response_body(head_request, version, status, headers)
        .map_err(HeadError::Framing)?;
    Ok(Some(ResponseHead {
        status,
        version,
        reason,
        headers,
        length,
        body,
    }))
}

/// The length of a head httparse has parsed from `buf` (`None`: not
/// complete yet), once it is within the limits and its lines end in CRLF.
fn head_length(
    buf: &[u8],
    parsed: httparse::Result<usize>,
    malformed: &'static str,
) -> Result<Option<usize>, HeadError> {
    let length = match parsed {
        Ok(httparse::Status::Complete(length)) => length,
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD_BYTES => {
            return Err(HeadError::TooLarge);
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        Err(_) => return Err(HeadError::Malformed(malformed)),
    };
    if length > MAX_HEAD_BYTES {
        return Err(HeadError::TooLarge);
    }
    if !strict_line_ends(&buf[..length]) {
        return Err(HeadError::Malformed("a line not ended by CRLF"));
    }
    Ok(Some(length))
}

/// Whether every LF in `bytes` follows a CR and every CR comes before an
/// LF (httparse also takes a bare LF as a line end).
pub fn strict_line_ends(bytes: &[u8]) -> bool {
    bytes.iter().enumerate().all(|(i, b)| match b {
        b'\n' => i > 0 && bytes[i - 1] == b'\r',
        b'\r' => bytes.get(i + 1) == Some(&b'\n'),
        _ => true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(input: &[u8]) -> Result<Option<(String, usize, BodyLength)>, HeadError> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        Ok(parse_request(input, &mut headers)?
            .map(|head| (head.target.to_string(), head.length, head.body)))
    }

    #[test]
    fn heads_are_complete_strict_and_framed() {
        let head = b"POST /a?b HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc";
        assert_eq!(
            parse(head),
            Ok(Some(("/a?b".into(), head.len() - 3, BodyLength::Length(3))))
        );
        assert_eq!(parse(&head[..20]), Ok(None));
        assert_eq!(
            parse(b"GET / HTTP/1.1\nHost: x\r\n\r\n"),
            Err(HeadError::Malformed("a line not ended by CRLF"))
        );
        assert_eq!(
            parse(b"GET / HTTP/1.1\r\n\r\n"),
            Err(HeadError::Malformed("HTTP/1.1 request without Host header"))
        );
        assert!(parse(b"GET / HTTP/1.0\r\n\r\n").is_ok());
        assert_eq!(
            parse(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
            Err(HeadError::Malformed("more than one Host header"))
        );
        assert_eq!(
            parse(b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n"),
            Err(HeadError::Framing(FramingError::BadEncoding))
        );
        // obs-fold, a space before the colon.
        assert!(parse(b"GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n 2\r\n\r\n").is_err());
        assert!(parse(b"GET / HTTP/1.1\r\nHost : a\r\n\r\n").is_err());
        let long = format!(
            "GET /{} HTTP/1.1\r\nHost: a\r\n\r\n",
            "a".repeat(MAX_URI_BYTES)
        );
        assert_eq!(parse(long.as_bytes()), Err(HeadError::UriTooLong));
        let big = format!(
            "GET / HTTP/1.1\r\nHost: a\r\nX: {}",
            "a".repeat(MAX_HEAD_BYTES)
        );
        assert_eq!(parse(big.as_bytes()), Err(HeadError::TooLarge));
    }
}
