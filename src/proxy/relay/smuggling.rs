//! The request-smuggling and response-splitting shapes that broke other
//! proxies, one named test each, at the level the relay has so far: how a
//! head is read and where its body ends. (Shapes that need the relay's
//! connection loop, such as bytes before a `101` or a body left unread
//! after a local answer, come with it.)

use super::chunked::{ChunkError, ChunkedScanner};
use super::framing::{BodyLength, FramingError};
use super::head::{self, HeadError};
use crate::proxy::http::MAX_HEADERS;

/// How the relay reads the request at the start of `input`: its body's
/// framing, or why it is refused.
fn request(input: &[u8]) -> Result<BodyLength, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    Ok(head::parse_request(input, &mut headers)?
        .expect("a complete head")
        .body)
}

/// How the relay reads the response at the start of `input`.
fn response(input: &[u8], head_request: bool) -> Result<(u16, BodyLength), HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let head = head::parse_response(input, &mut headers, head_request)?.expect("a complete head");
    Ok((head.status, head.body))
}

/// Where a chunked body at the start of `input` ends.
fn chunked_end(input: &[u8]) -> Result<usize, ChunkError> {
    let mut scanner = ChunkedScanner::default();
    let used = scanner.feed(input, &mut |_| {})?;
    assert!(scanner.is_done(), "the body did not end");
    Ok(used)
}

const REFUSED_ENCODING: Result<BodyLength, HeadError> =
    Err(HeadError::Framing(FramingError::BadEncoding));

#[test]
fn cl_te_both_present_is_refused_not_resolved() {
    // The classic CL.TE / TE.CL probe: one side reads 4 bytes, the other
    // reads chunks; the relay reads neither.
    let probe =
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert_eq!(
        request(probe),
        Err(HeadError::Framing(FramingError::LengthAndEncoding))
    );
}

#[test]
fn sozu_726_chunked_followed_by_a_tab_is_chunked() {
    // Sozu took `chunked\t` for an unknown coding while backends read
    // chunks. Whitespace around a value is not part of it (RFC 9110 5.5):
    // the relay reads chunks, and writes its own `Transfer-Encoding`.
    let input = b"POST / HTTP/1.1\r\nHost: a\r\ntransfer-encoding: chunked\t\r\n\r\n";
    assert_eq!(request(input), Ok(BodyLength::Chunked));
}

#[test]
fn obfuscated_xchunked_is_refused() {
    let input = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n";
    assert_eq!(request(input), REFUSED_ENCODING);
}

#[test]
fn obfuscated_chunked_then_identity_is_refused() {
    let input = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n";
    assert_eq!(request(input), REFUSED_ENCODING);
}

#[test]
fn obfuscated_chunked_split_over_two_lines_is_refused() {
    let input = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n";
    assert_eq!(request(input), REFUSED_ENCODING);
}

#[test]
fn obfuscated_case_and_spaces_are_still_chunked() {
    let input = b"POST / HTTP/1.1\r\nHost: a\r\nTRANSFER-ENCODING:   ChUnKeD  \r\n\r\n";
    assert_eq!(request(input), Ok(BodyLength::Chunked));
}

#[test]
fn obfuscated_space_before_the_colon_is_refused() {
    let input = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n";
    assert!(matches!(request(input), Err(HeadError::Malformed(_))));
}

#[test]
fn obs_fold_is_refused() {
    let input = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n chunked\r\n\r\n";
    assert!(matches!(request(input), Err(HeadError::Malformed(_))));
}

#[test]
fn bare_lf_line_ends_are_refused() {
    let input = b"POST / HTTP/1.1\r\nHost: a\nTransfer-Encoding: chunked\r\n\r\n";
    assert_eq!(
        request(input),
        Err(HeadError::Malformed("a line not ended by CRLF"))
    );
}

#[test]
fn differing_content_lengths_are_refused() {
    let input = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\n";
    assert_eq!(
        request(input),
        Err(HeadError::Framing(FramingError::DifferingLengths))
    );
}

#[test]
fn chunk_extension_with_a_bare_lf_is_refused() {
    // TERM.EXT: a bare LF inside an extension, read as a line end by one
    // side and as extension bytes by the other.
    assert_eq!(
        chunked_end(b"2;\nxx\r\n0\r\n\r\n"),
        Err(ChunkError::BadSize)
    );
}

#[test]
fn chunk_data_longer_than_its_size_is_refused() {
    // EXT.TERM's other half: bytes between the data and its CRLF.
    assert_eq!(
        chunked_end(b"2\r\nxxyy\r\n0\r\n\r\n"),
        Err(ChunkError::BadDataEnd)
    );
}

#[test]
fn pipelined_requests_end_where_their_framing_says() {
    let second = b"GET /second HTTP/1.1\r\nHost: a\r\n\r\n";
    let mut input =
        b"POST /first HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
            .to_vec();
    input.extend_from_slice(second);
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let first = head::parse_request(&input, &mut headers)
        .expect("valid")
        .expect("complete");
    let end = first.length + chunked_end(&input[first.length..]).expect("valid");
    assert_eq!(&input[end..], second);
}

#[test]
fn responses_without_a_body_by_rule_ignore_their_framing() {
    // A body after these would be read as the next response.
    let framed = b"HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n";
    assert_eq!(response(framed, false), Ok((204, BodyLength::Empty)));
    let not_modified = b"HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert_eq!(response(not_modified, false), Ok((304, BodyLength::Empty)));
    let to_head = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n";
    assert_eq!(response(to_head, true), Ok((200, BodyLength::Empty)));
    let interim = b"HTTP/1.1 100 Continue\r\nContent-Length: 10\r\n\r\n";
    assert_eq!(response(interim, false), Ok((100, BodyLength::Empty)));
}

#[test]
fn a_response_without_framing_is_read_until_close() {
    let input = b"HTTP/1.1 200 OK\r\nServer: old\r\n\r\nwhatever comes";
    assert_eq!(response(input, false), Ok((200, BodyLength::UntilClose)));
}

#[test]
fn a_response_with_both_framings_is_refused() {
    let input = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert_eq!(
        response(input, false),
        Err(HeadError::Framing(FramingError::LengthAndEncoding))
    );
}
