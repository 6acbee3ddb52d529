//! Responses the balancer writes itself: short plain-text errors,
//! redirects to HTTPS, ACME challenge answers and routes' own answers.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};

use super::body::ResponseBody;
use crate::routing::LocalAnswer;

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

/// A plain-text `body` as it is (an ACME challenge's answer).
pub fn text(status: StatusCode, body: String) -> Response<ResponseBody> {
    let mut response = Response::new(ResponseBody::local(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    response
}

/// The redirect of an `http` frontend with `redirect_https`: the same host
/// (without its port) and path on `https://`; 301 for GET and HEAD, 308
/// for other methods, which keeps the method and body.
pub fn to_https<B>(request: &http::Request<B>) -> Response<ResponseBody> {
    let location = super::headers::request_host(request).and_then(|host| {
        let target = request
            .uri()
            .path_and_query()
            .map_or("/", http::uri::PathAndQuery::as_str);
        HeaderValue::from_str(&format!("https://{host}{target}")).ok()
    });
    let Some(location) = location else {
        return error(StatusCode::BAD_REQUEST, "no Host to redirect to", true);
    };
    let status = if matches!(*request.method(), http::Method::GET | http::Method::HEAD) {
        StatusCode::MOVED_PERMANENTLY
    } else {
        StatusCode::PERMANENT_REDIRECT
    };
    let mut response = error(status, "moved to https", false);
    response.headers_mut().insert(header::LOCATION, location);
    response
}

/// A route's own answer (`respond` or `redirect`) to a request for
/// `target` (its path and query).
pub fn route_answer(answer: &LocalAnswer, target: &str) -> Response<ResponseBody> {
    match answer {
        LocalAnswer::Fixed {
            status,
            body,
            content_type,
        } => {
            let mut response = Response::new(ResponseBody::local(body.clone()));
            *response.status_mut() = *status;
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, content_type.clone());
            response
        }
        LocalAnswer::Redirect {
            status,
            location,
            keep_path,
        } => {
            let location = if *keep_path {
                // `target` is the request's normal path (one leading `/`,
                // routing::path), so `//host` cannot come of it.
                let base = location.strip_suffix('/').unwrap_or(location);
                format!("{base}{target}")
            } else {
                location.clone()
            };
            let Ok(location) = HeaderValue::from_str(&location) else {
                return error(StatusCode::BAD_REQUEST, "no valid redirect target", true);
            };
            let mut response = error(*status, "moved", false);
            response.headers_mut().insert(header::LOCATION, location);
            response
        }
    }
}
