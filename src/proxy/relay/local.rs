//! The balancer's own answers on the relay (errors, `429`, a route's
//! `respond` or `redirect`): built by the same functions as on the hyper
//! path (`proxy::http::local_response`), then written out as HTTP/1.1.

use http::{Response, header};

use crate::proxy::http::ResponseBody;

/// Writes `response` (a local one: its body in memory) to `out` (cleared
/// first), with `Connection: close` when `close`; no body for a HEAD.
pub fn write(out: &mut Vec<u8>, response: &Response<ResponseBody>, close: bool, head: bool) {
    let body: &[u8] = match response.body() {
        ResponseBody::Local(Some(bytes)) => bytes,
        _ => &[],
    };
    let status = response.status();
    out.clear();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in response.headers() {
        if name == header::CONNECTION || name == header::CONTENT_LENGTH {
            continue;
        }
        super::fields::line(out, name.as_str().as_bytes(), value.as_bytes());
    }
    super::fields::number_line(out, b"content-length", body.len() as u64);
    if close {
        super::fields::line(out, b"connection", b"close");
    }
    out.extend_from_slice(b"\r\n");
    if !head {
        out.extend_from_slice(body);
    }
}

/// Whether a local `response` asks for the connection to close (the
/// hyper path's `close` argument of `local_response::error`).
pub fn asks_close(response: &Response<ResponseBody>) -> bool {
    response
        .headers()
        .get(header::CONNECTION)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::http::local_error;
    use http::StatusCode;

    #[test]
    fn a_local_error_is_written_with_its_length_and_close() {
        let response = local_error(StatusCode::BAD_GATEWAY, "backend connection failed", false);
        let mut out = Vec::new();
        write(&mut out, &response, true, false);
        let text = String::from_utf8(out).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 502 Bad Gateway\r\n"), "{head}");
        assert!(
            head.contains(&format!("\r\ncontent-length: {}", body.len())),
            "{head}"
        );
        assert!(head.ends_with("\r\nconnection: close"), "{head}");
        assert_eq!(body, "502 Bad Gateway: backend connection failed\n");
        let mut out = Vec::new();
        write(&mut out, &response, false, true);
        assert!(String::from_utf8(out).unwrap().ends_with("\r\n\r\n"));
    }
}
