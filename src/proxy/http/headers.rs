//! Header rules of a proxy: hop-by-hop removal, forwarding headers, and the
//! checks that refuse ambiguous requests.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Version};

/// Headers that describe one connection, never forwarded (RFC 9110 7.6.1),
/// plus the legacy ones proxies still see, and `Upgrade` (upgrades are not
/// relayed).
pub const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Removes hop-by-hop headers, including every header the `Connection`
/// header names. Runs on every request and response, so the usual case
/// (no such header, or only `Connection: keep-alive`) costs one pass over
/// the names and no allocation.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    let mut present = 0u16;
    for name in headers.keys() {
        if let Some(index) = HOP_BY_HOP.iter().position(|hop| hop == name) {
            present |= 1 << index;
        }
    }
    if present == 0 {
        return;
    }
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        // The usual tokens name no header of their own (or one removed
        // below anyway).
        .filter(|token| {
            !token.eq_ignore_ascii_case("keep-alive") && !token.eq_ignore_ascii_case("close")
        })
        .filter_map(|token| HeaderName::from_bytes(token.as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for (index, name) in HOP_BY_HOP.iter().enumerate() {
        if present & (1 << index) != 0 {
            headers.remove(name);
        }
    }
}

/// Adds the client to `X-Forwarded-For` (appending to what earlier proxies
/// wrote, as nginx's `$proxy_add_x_forwarded_for` does) and sets
/// `X-Forwarded-Proto` and `X-Forwarded-Host`. `client` is the client's
/// address as text, made once per connection; `https`: the client came
/// over TLS.
pub fn add_forwarding(
    headers: &mut HeaderMap,
    client: &HeaderValue,
    host: Option<&HeaderValue>,
    https: bool,
) {
    // One growth of the map instead of one per header added.
    headers.reserve(3);
    let appended = match headers.get(&X_FORWARDED_FOR).map(HeaderValue::as_bytes) {
        Some(earlier) if !earlier.trim_ascii().is_empty() => {
            let mut value = Vec::with_capacity(earlier.len() + 2 + client.len());
            value.extend_from_slice(earlier);
            value.extend_from_slice(b", ");
            value.extend_from_slice(client.as_bytes());
            HeaderValue::from_bytes(&value).ok()
        }
        _ => None,
    };
    headers.insert(
        X_FORWARDED_FOR.clone(),
        appended.unwrap_or_else(|| client.clone()),
    );
    headers.insert(
        X_FORWARDED_PROTO.clone(),
        HeaderValue::from_static(if https { "https" } else { "http" }),
    );
    match host {
        Some(host) => {
            headers.insert(X_FORWARDED_HOST.clone(), host.clone());
        }
        None => {
            headers.remove(&X_FORWARDED_HOST);
        }
    }
}

/// A client address as a header value, for [`add_forwarding`].
pub fn client_value(client: IpAddr) -> HeaderValue {
    HeaderValue::from_str(&client.to_string()).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Why a request is refused before it is routed.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// 400: the request is ambiguous or malformed.
    BadRequest(&'static str),
    /// 414: the request target is too long.
    UriTooLong,
}

/// Refuses requests that HTTP/1.1 calls ambiguous and hyper lets through:
/// a missing or doubled `Host`, and `Content-Length` beside
/// `Transfer-Encoding`. (hyper itself answers 400 to differing lengths,
/// malformed chunk sizes and NUL or bare CR in headers, and 431 to heads
/// over the size and count limits.)
pub fn check_request<B>(request: &Request<B>, max_uri: usize) -> Result<(), Refusal> {
    let headers = request.headers();
    let hosts = headers.get_all(header::HOST).iter().count();
    if hosts > 1 {
        return Err(Refusal::BadRequest("more than one Host header"));
    }
    if hosts == 0 && request.version() == Version::HTTP_11 {
        return Err(Refusal::BadRequest("HTTP/1.1 request without Host header"));
    }
    if headers.contains_key(header::TRANSFER_ENCODING)
        && headers.contains_key(header::CONTENT_LENGTH)
    {
        return Err(Refusal::BadRequest(
            "both Content-Length and Transfer-Encoding",
        ));
    }
    let target = request
        .uri()
        .path_and_query()
        .map_or(0, |pq| pq.as_str().len());
    if target > max_uri {
        return Err(Refusal::UriTooLong);
    }
    Ok(())
}

/// The host a request is for, without port, from `Host` or an absolute URI.
pub fn request_host<B>(request: &Request<B>) -> Option<&str> {
    let host = match request.headers().get(header::HOST) {
        Some(value) => value.to_str().ok()?,
        None => request.uri().host()?,
    };
    Some(strip_port(host))
}

/// `host` without its port (`[v6]:port` as `v6`).
pub fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        // [v6]:port
        return host.split_once(']').map_or(host, |(v6, _)| &v6[1..]);
    }
    host.rsplit_once(':').map_or(host, |(name, _)| name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_hop_by_hop_and_connection_named_headers() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, X-Secret"),
        );
        headers.insert("x-secret", HeaderValue::from_static("1"));
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        headers.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        headers.insert("x-kept", HeaderValue::from_static("1"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        remove_hop_by_hop(&mut headers);
        let left: Vec<_> = headers.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, vec!["x-kept"]);
    }

    #[test]
    fn leaves_end_to_end_headers_alone() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("a"));
        headers.insert("x-secret", HeaderValue::from_static("1"));
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("3"));
        let before = headers.clone();
        remove_hop_by_hop(&mut headers);
        assert_eq!(headers, before);
        // Only the headers Connection names go, not every header.
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        remove_hop_by_hop(&mut headers);
        assert_eq!(headers, before);
    }

    #[test]
    fn starts_x_forwarded_for_without_earlier_proxies() {
        let mut headers = HeaderMap::new();
        let client = client_value(IpAddr::from([10, 0, 0, 1]));
        add_forwarding(&mut headers, &client, None, true);
        assert_eq!(headers["x-forwarded-for"], "10.0.0.1");
        assert_eq!(headers["x-forwarded-proto"], "https");
        assert!(!headers.contains_key("x-forwarded-host"));
    }

    #[test]
    fn appends_to_x_forwarded_for() {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", HeaderValue::from_static("10.1.1.1"));
        let host = HeaderValue::from_static("example.com");
        let client = client_value(IpAddr::from([127, 0, 0, 9]));
        add_forwarding(&mut headers, &client, Some(&host), false);
        assert_eq!(headers["x-forwarded-for"], "10.1.1.1, 127.0.0.9");
        assert_eq!(headers["x-forwarded-proto"], "http");
        assert_eq!(headers["x-forwarded-host"], "example.com");
    }

    #[test]
    fn refuses_ambiguous_requests() {
        let two_hosts = Request::builder()
            .header("host", "a")
            .header("host", "b")
            .body(())
            .expect("request");
        assert!(matches!(
            check_request(&two_hosts, 100),
            Err(Refusal::BadRequest(_))
        ));
        let no_host = Request::builder().body(()).expect("request");
        assert!(matches!(
            check_request(&no_host, 100),
            Err(Refusal::BadRequest(_))
        ));
        let old = Request::builder()
            .version(Version::HTTP_10)
            .body(())
            .expect("request");
        assert_eq!(check_request(&old, 100), Ok(()));
        let long = Request::builder()
            .uri(format!("/{}", "a".repeat(200)))
            .header("host", "a")
            .body(())
            .expect("request");
        assert_eq!(check_request(&long, 100), Err(Refusal::UriTooLong));
    }

    #[test]
    fn finds_host_and_cookie() {
        let request = Request::builder()
            .header("host", "Example.com:8080")
            .header("cookie", "a=1; session=xyz")
            .body(())
            .expect("request");
        assert_eq!(request_host(&request), Some("Example.com"));
        assert_eq!(
            crate::routing::HeaderView::Map(request.headers()).cookie("session"),
            Some(&b"xyz"[..])
        );
        assert_eq!(strip_port("[::1]:80"), "::1");
    }
}
