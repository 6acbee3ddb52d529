//! gRPC over the HTTP proxy: calls are ordinary HTTP/2 requests, balanced
//! per call, their trailers passed through. What gRPC needs beyond that:
//! its deadline (`grpc-timeout`) bounds the wait for the response, and the
//! balancer's own errors take the form a gRPC client reads (a status in
//! `grpc-status`, not an HTML page): `UNAVAILABLE` when no backend could
//! take the call or its connection broke, `DEADLINE_EXCEEDED` when the
//! backend did not answer in time.

use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Response, StatusCode};

use super::body::ResponseBody;

static GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
static GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");
static GRPC_TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");

/// gRPC's status code `UNAVAILABLE`.
pub const UNAVAILABLE: u8 = 14;
/// gRPC's status code `DEADLINE_EXCEEDED`.
pub const DEADLINE_EXCEEDED: u8 = 4;

/// Whether a request is a gRPC call (`content-type: application/grpc…`).
pub fn is_call(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// The call's deadline from `grpc-timeout` (`1-8 digits` and a unit: `H`
/// `M` `S` `m` `u` `n`); `None` if absent or malformed.
pub fn timeout(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(&GRPC_TIMEOUT)?.to_str().ok()?;
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let amount: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount * 3600),
        "M" => Duration::from_secs(amount * 60),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

/// The gRPC status for an error the balancer answers with `status`.
pub fn code_for(status: StatusCode) -> u8 {
    match status {
        StatusCode::GATEWAY_TIMEOUT | StatusCode::REQUEST_TIMEOUT => DEADLINE_EXCEEDED,
        StatusCode::BAD_REQUEST => 13,      // INTERNAL
        StatusCode::UNAUTHORIZED => 16,     // UNAUTHENTICATED
        StatusCode::FORBIDDEN => 7,         // PERMISSION_DENIED
        StatusCode::NOT_FOUND => 12,        // UNIMPLEMENTED
        StatusCode::PAYLOAD_TOO_LARGE => 8, // RESOURCE_EXHAUSTED
        _ => UNAVAILABLE,
    }
}

/// A "trailers-only" gRPC response: HTTP 200 whose head carries the
/// status and message, and no body.
pub fn error(code: u8, message: &str) -> Response<ResponseBody> {
    let mut response = Response::new(ResponseBody::Local(None));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    headers.insert(GRPC_STATUS.clone(), HeaderValue::from(u16::from(code)));
    headers.insert(GRPC_MESSAGE.clone(), encode_message(message));
    response
}

/// The trailers that end a call whose backend connection broke after its
/// response began.
pub fn broken_trailers() -> HeaderMap {
    let mut trailers = HeaderMap::new();
    trailers.insert(
        GRPC_STATUS.clone(),
        HeaderValue::from(u16::from(UNAVAILABLE)),
    );
    trailers.insert(
        GRPC_MESSAGE.clone(),
        encode_message("raftlb: the backend's connection broke during the call"),
    );
    trailers
}

/// `grpc-message` is percent-encoded outside printable ASCII.
fn encode_message(message: &str) -> HeaderValue {
    let mut encoded = String::with_capacity(message.len());
    for byte in message.bytes() {
        if (0x20..0x7f).contains(&byte) && byte != b'%' {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    HeaderValue::from_maybe_shared(Bytes::from(encoded))
        .unwrap_or_else(|_| HeaderValue::from_static("error"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_timeout(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(&GRPC_TIMEOUT, HeaderValue::from_str(value).expect("value"));
        headers
    }

    #[test]
    fn reads_grpc_timeout_in_every_unit_and_refuses_the_malformed() {
        assert_eq!(
            timeout(&with_timeout("250m")),
            Some(Duration::from_millis(250))
        );
        assert_eq!(timeout(&with_timeout("2S")), Some(Duration::from_secs(2)));
        assert_eq!(
            timeout(&with_timeout("1H")),
            Some(Duration::from_secs(3600))
        );
        assert_eq!(timeout(&with_timeout("3M")), Some(Duration::from_secs(180)));
        assert_eq!(
            timeout(&with_timeout("500u")),
            Some(Duration::from_micros(500))
        );
        assert_eq!(timeout(&with_timeout("7n")), Some(Duration::from_nanos(7)));
        for bad in ["", "m", "123456789m", "12x", "-5m", "5 m"] {
            assert_eq!(timeout(&with_timeout(bad)), None, "{bad:?}");
        }
        assert_eq!(timeout(&HeaderMap::new()), None);
    }

    #[test]
    fn an_error_is_a_trailers_only_response_with_the_status() {
        let response = error(UNAVAILABLE, "no backend: ünïcode");
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["grpc-status"], "14");
        assert_eq!(
            response.headers()["grpc-message"],
            "no backend: %C3%BCn%C3%AFcode"
        );
        assert!(http_body::Body::is_end_stream(response.body()));
        assert_eq!(code_for(StatusCode::GATEWAY_TIMEOUT), DEADLINE_EXCEEDED);
        assert_eq!(code_for(StatusCode::BAD_GATEWAY), UNAVAILABLE);
        assert_eq!(code_for(StatusCode::SERVICE_UNAVAILABLE), UNAVAILABLE);
    }
}
