//! Responses the balancer writes itself: short plain-text errors.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};

use super::body::ResponseBody;

/// A short plain-text response. `close` asks hyper to close the connection
/// after it, for requests that leave the connection in doubt.
pub fn error(status: StatusCode, detail: &str, close: bool) -> Response<ResponseBody> {
    let reason = status.canonical_reason().unwrap_or("Error");
    let text = format!("{} {reason}: {detail}\n", status.as_u16());
    let mut response = Response::new(ResponseBody::local(Bytes::from(text)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if close {
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}
