//! Where an HTTP/1.1 message's body ends (RFC 9112 section 6), decided
//! strictly from its head as httparse parsed it. The relay forwards a
//! message only when this answer is certain, and writes the framing
//! headers itself (`Content-Length: N` or `Transfer-Encoding: chunked`),
//! so a backend never reads the original ones, however they were spelled.
//!
//! Stricter than RFC 9112 where proxies were smuggled through: a message
//! with both `Content-Length` and `Transfer-Encoding` is refused (nginx
//! and the hyper path do the same for requests), and the only transfer
//! coding taken is `chunked`, alone (in any case, with optional
//! whitespace around it: `chunked\t` is `chunked`).

/// How a message's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyLength {
    /// No body.
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked (`Transfer-Encoding` ending in `chunked`).
    Chunked,
    /// A response without framing: everything until the backend closes.
    UntilClose,
}

/// Why a head's framing is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FramingError {
    /// Both `Content-Length` and `Transfer-Encoding`.
    LengthAndEncoding,
    /// A `Content-Length` that is not 1*DIGIT, or too large.
    BadLength,
    /// `Content-Length` values that differ.
    DifferingLengths,
    /// A `Transfer-Encoding` other than `chunked` alone.
    BadEncoding,
    /// A `Transfer-Encoding` on an HTTP/1.0 message (RFC 9112 6.1: its
    /// framing is faulty).
    EncodingOnHttp10,
}

impl FramingError {
    /// The reason given to the client (400) or logged (502).
    pub fn reason(self) -> &'static str {
        match self {
            FramingError::LengthAndEncoding => "both Content-Length and Transfer-Encoding",
            FramingError::BadLength => "malformed Content-Length",
            FramingError::DifferingLengths => "differing Content-Length values",
            FramingError::BadEncoding => "Transfer-Encoding other than chunked",
            FramingError::EncodingOnHttp10 => "Transfer-Encoding on an HTTP/1.0 message",
        }
    }
}

/// The framing headers of one head.
#[derive(Default)]
struct Framing {
    length: Option<u64>,
    chunked: bool,
}

/// Reads `Content-Length` and `Transfer-Encoding` from the `headers` of
/// an HTTP/1.`version` message.
fn framing(version: u8, headers: &[httparse::Header<'_>]) -> Result<Framing, FramingError> {
    let mut found = Framing::default();
    for header in headers {
        if header.name.eq_ignore_ascii_case("content-length") {
            // One value per line (a list, even of equal values, is refused,
            // as hyper does); equal lines are one value (RFC 9110 8.6).
            let length = parse_length(header.value.trim_ascii()).ok_or(FramingError::BadLength)?;
            match found.length {
                Some(earlier) if earlier != length => {
                    return Err(FramingError::DifferingLengths);
                }
                _ => found.length = Some(length),
            }
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            // `chunked` alone, on one line: another coding before it
            // (`gzip, chunked`) would reach the backend undeclared once the
            // relay writes its own `Transfer-Encoding: chunked`, and no
            // client sends one; hyper refuses `chunked,` too.
            if version == 0 {
                return Err(FramingError::EncodingOnHttp10);
            }
            if found.chunked || !header.value.trim_ascii().eq_ignore_ascii_case(b"chunked") {
                return Err(FramingError::BadEncoding);
            }
            found.chunked = true;
        }
    }
    Ok(found)
}

/// A request's body (no `Content-Length` and no `Transfer-Encoding`: none);
/// `version`: 0 for HTTP/1.0, 1 for HTTP/1.1.
pub fn request_body(
    version: u8,
    headers: &[httparse::Header<'_>],
) -> Result<BodyLength, FramingError> {
    let found = framing(version, headers)?;
    match (found.length, found.chunked) {
        (Some(_), true) => Err(FramingError::LengthAndEncoding),
        (Some(0), false) | (None, false) => Ok(BodyLength::Empty),
        (Some(length), false) => Ok(BodyLength::Length(length)),
        (None, true) => Ok(BodyLength::Chunked),
    }
}

/// Whether a response with `status` can carry a body (not 1xx, 204, 304).
pub fn status_allows_body(status: u16) -> bool {
    !((100..200).contains(&status) || status == 204 || status == 304)
}

/// A response's body, for a request that was a HEAD or not: none for
/// HEAD, 1xx, 204 and 304 whatever the head says; else as its framing
/// headers say, or until the backend closes.
pub fn response_body(
    head_request: bool,
    version: u8,
    status: u16,
    headers: &[httparse::Header<'_>],
) -> Result<BodyLength, FramingError> {
    if head_request || !status_allows_body(status) {
        return Ok(BodyLength::Empty);
    }
    let found = framing(version, headers)?;
    match (found.length, found.chunked) {
        // RFC 9112 6.3 lets the coding win; a backend that sends both is
        // confused or hostile, and the relay does not guess.
        (Some(_), true) => Err(FramingError::LengthAndEncoding),
        (Some(0), false) => Ok(BodyLength::Empty),
        (Some(length), false) => Ok(BodyLength::Length(length)),
        (None, true) => Ok(BodyLength::Chunked),
        (None, false) => Ok(BodyLength::UntilClose),
    }
}

/// 1*DIGIT, at most 18 digits (below `u64::MAX`): no sign, no spaces
/// inside, no hex.
fn parse_length(value: &[u8]) -> Option<u64> {
    if value.is_empty() || value.len() > 18 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    value.iter().try_fold(0u64, |n, d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static [u8])]) -> Vec<httparse::Header<'static>> {
        pairs
            .iter()
            .map(|(name, value)| httparse::Header { name, value })
            .collect()
    }

    fn request(pairs: &[(&'static str, &'static [u8])]) -> Result<BodyLength, FramingError> {
        request_body(1, &headers(pairs))
    }

    #[test]
    fn lengths_are_digits_and_agree() {
        assert_eq!(request(&[]), Ok(BodyLength::Empty));
        assert_eq!(request(&[("Content-Length", b"0")]), Ok(BodyLength::Empty));
        assert_eq!(
            request(&[("content-length", b"12")]),
            Ok(BodyLength::Length(12))
        );
        assert_eq!(
            request(&[("Content-Length", b"5, 5")]),
            Err(FramingError::BadLength)
        );
        assert_eq!(
            request(&[("Content-Length", b"5"), ("Content-Length", b"5")]),
            Ok(BodyLength::Length(5))
        );
        for bad in [
            &b"+5"[..],
            b"-1",
            b"5 5",
            b"0x5",
            b"",
            b"5a",
            b"99999999999999999999",
        ] {
            let pairs = [("Content-Length", bad)];
            let found = request_body(1, &headers(&pairs));
            assert_eq!(
                found,
                Err(FramingError::BadLength),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(
            request(&[("Content-Length", b"5"), ("Content-Length", b"6")]),
            Err(FramingError::DifferingLengths)
        );
        assert_eq!(
            request(&[("Content-Length", b"5, 6")]),
            Err(FramingError::BadLength)
        );
    }

    #[test]
    fn obfuscated_transfer_encodings_are_refused() {
        for good in [
            &b"chunked"[..],
            b"Chunked",
            b"CHUNKED",
            b" chunked ",
            b"chunked\t",
        ] {
            let pairs = [("Transfer-Encoding", good)];
            assert_eq!(
                request_body(1, &headers(&pairs)),
                Ok(BodyLength::Chunked),
                "{:?}",
                String::from_utf8_lossy(good)
            );
        }
        for bad in [
            &b"xchunked"[..],
            b"chunked, identity",
            b"gzip, chunked",
            b"chunked,",
            b"chunked, chunked",
            b"identity",
            b"chunked;q=1",
            b"\"chunked\"",
            b"chun ked",
            b"",
        ] {
            let pairs = [("Transfer-Encoding", bad)];
            assert_eq!(
                request_body(1, &headers(&pairs)),
                Err(FramingError::BadEncoding),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        // Split over two headers: the list is their concatenation.
        assert_eq!(
            request(&[
                ("Transfer-Encoding", b"chunked"),
                ("Transfer-Encoding", b"identity")
            ]),
            Err(FramingError::BadEncoding)
        );
        assert_eq!(
            request(&[
                ("Transfer-Encoding", b"gzip"),
                ("Transfer-Encoding", b"chunked")
            ]),
            Err(FramingError::BadEncoding)
        );
        assert_eq!(
            request(&[("Transfer-Encoding", b"chunked"), ("Content-Length", b"3")]),
            Err(FramingError::LengthAndEncoding)
        );
        let chunked = headers(&[("Transfer-Encoding", b"chunked")]);
        assert_eq!(
            request_body(0, &chunked),
            Err(FramingError::EncodingOnHttp10)
        );
        assert_eq!(
            response_body(false, 0, 200, &chunked),
            Err(FramingError::EncodingOnHttp10)
        );
    }

    #[test]
    fn responses_without_a_body_by_rule_or_without_framing() {
        let framed = headers(&[("Content-Length", b"10")]);
        assert_eq!(response_body(true, 1, 200, &framed), Ok(BodyLength::Empty));
        for status in [100, 101, 199, 204, 304] {
            assert_eq!(
                response_body(false, 1, status, &framed),
                Ok(BodyLength::Empty)
            );
        }
        assert_eq!(
            response_body(false, 1, 200, &framed),
            Ok(BodyLength::Length(10))
        );
        assert_eq!(
            response_body(false, 1, 200, &[]),
            Ok(BodyLength::UntilClose)
        );
        let chunked = headers(&[("Transfer-Encoding", b"chunked")]);
        assert_eq!(
            response_body(false, 1, 500, &chunked),
            Ok(BodyLength::Chunked)
        );
    }
}
