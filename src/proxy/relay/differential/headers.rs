//! Request headers: generated heads through the relay's writer and through
//! the hyper path's header rules (`proxy::http::headers`, the sticky
//! cookie, the route's edits, the forwarding headers), compared header by
//! header, each name's values in order. Framing headers are left out:
//! each path writes its own.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use proptest::prelude::*;

use crate::config::HeaderRewrite;
use crate::proxy::http::{MAX_HEADERS, headers, sticky};
use crate::proxy::relay::framing::BodyLength;
use crate::proxy::relay::request_head::{self, Rules};
use crate::routing::HeaderEdits;

const POOL: &[(&str, &str)] = &[
    ("Connection", "close"),
    ("Connection", "keep-alive"),
    ("Connection", "x-drop"),
    ("Connection", "x-drop, close"),
    ("Connection", "Upgrade"),
    ("X-Drop", "1"),
    ("Keep-Alive", "timeout=5"),
    ("TE", "trailers"),
    ("Upgrade", "websocket"),
    ("Proxy-Connection", "keep-alive"),
    ("Cookie", "SRV=abc"),
    ("Cookie", "a=1; SRV=abc; b=2"),
    ("Cookie", "a=1"),
    ("Cookie", "SRV=abc; SRVX=2"),
    ("X-Forwarded-For", "10.0.0.1"),
    ("X-Forwarded-For", "10.0.0.2, 10.0.0.3"),
    ("X-Forwarded-Proto", "https"),
    ("X-Forwarded-Host", "elsewhere"),
    ("Expect", "100-continue"),
    ("X-Env", "blue"),
    ("X-Debug", "1"),
    ("Via", "1.1 a"),
    ("Accept", "*/*"),
    ("Content-Length", "0"),
];

/// The hyper path's headers for the same request.
/// A head: `first` lines, then the header lines of `pool` that `picks`
/// names, in order.
fn head_of(first: &str, pool: &[(&str, &str)], picks: &[usize]) -> String {
    let mut head = format!("{first}\r\n");
    for &i in picks {
        let (name, value) = pool[i];
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    head
}

/// A route's header edits, from their TOML.
fn edits_of(text: &str) -> HeaderEdits {
    let rewrite: HeaderRewrite = toml::from_str(text).expect("rewrite");
    HeaderEdits::compile_for_tests(&rewrite)
}

fn hyper_path(
    parsed: &[httparse::Header<'_>],
    client: &HeaderValue,
    https: bool,
    sticky_cookie: Option<&str>,
    edits: Option<&HeaderEdits>,
) -> HeaderMap {
    let mut map = map_of(parsed);
    let host = map.get(header::HOST).cloned();
    headers::remove_hop_by_hop(&mut map);
    map.remove(header::EXPECT);
    if let Some(cookie) = sticky_cookie {
        sticky::strip(&mut map, cookie);
    }
    if let Some(edits) = edits {
        edits.apply(&mut map);
    }
    headers::add_forwarding(&mut map, client, host.as_ref(), https);
    map
}

/// The relay's headers, as a backend would parse them.
fn relay_path(
    parsed: &[httparse::Header<'_>],
    client: &HeaderValue,
    https: bool,
    sticky_cookie: Option<&str>,
    edits: Option<&HeaderEdits>,
) -> HeaderMap {
    let mut out = Vec::new();
    let rules = Rules {
        client,
        https,
        sticky_cookie,
        edits,
    };
    request_head::write(&mut out, "GET", "/", parsed, BodyLength::Empty, &rules);
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut fields);
    assert!(matches!(request.parse(&out), Ok(httparse::Status::Complete(n)) if n == out.len()));
    map_of(request.headers)
}

/// Each name's values, in order, framing headers left out.
fn by_name(map: &HeaderMap) -> Vec<(String, Vec<Vec<u8>>)> {
    let mut names: Vec<&HeaderName> = map
        .keys()
        .filter(|n| **n != header::CONTENT_LENGTH && **n != header::TRANSFER_ENCODING)
        .collect();
    names.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    names
        .into_iter()
        .map(|n| {
            let values = map
                .get_all(n)
                .iter()
                .map(|v| v.as_bytes().to_vec())
                .collect();
            (n.as_str().to_string(), values)
        })
        .collect()
}

proptest! {
    #![proptest_config(crate::proxy::relay::cases(1000))]

    #[test]
    fn the_relay_writes_request_headers_as_the_hyper_path_does(
        picks in proptest::collection::vec(0..POOL.len(), 0..10),
        https in proptest::bool::ANY,
        sticky_on in proptest::bool::ANY,
        edits_on in proptest::bool::ANY,
    ) {
        let head = head_of("GET / HTTP/1.1\r\nHost: app.example:8080", POOL, &picks);
        let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut request = httparse::Request::new(&mut fields);
        prop_assert!(request.parse(head.as_bytes()).is_ok());
        let parsed = request.headers;
        let edits = edits_of(
            "remove = [\"x-debug\"]\nset = { x-env = \"green\" }\nadd = { via = \"raftlb\" }\n",
        );
        let edits = edits_on.then_some(&edits);
        let sticky_cookie = sticky_on.then_some("SRV");
        let client = HeaderValue::from_static("192.0.2.9");
        let expected = by_name(&hyper_path(parsed, &client, https, sticky_cookie, edits));
        let written = by_name(&relay_path(parsed, &client, https, sticky_cookie, edits));
        prop_assert_eq!(written, expected, "{}", head);
    }
}

const RESPONSE_POOL: &[(&str, &str)] = &[
    ("Connection", "close"),
    ("Connection", "keep-alive"),
    ("Connection", "x-drop"),
    ("X-Drop", "1"),
    ("Keep-Alive", "timeout=5"),
    ("Trailer", "x-sum"),
    ("Upgrade", "h2c"),
    ("Proxy-Authenticate", "Basic"),
    ("Set-Cookie", "a=1; Path=/"),
    ("Set-Cookie", "b=2"),
    ("Cache-Control", "max-age=60"),
    ("X-Backend", "a"),
    ("Content-Type", "text/plain"),
    ("Content-Length", "3"),
];

/// The headers of a parsed head as a map, in order.
fn map_of(parsed: &[httparse::Header<'_>]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for h in parsed {
        map.append(
            HeaderName::from_bytes(h.name.as_bytes()).expect("name"),
            HeaderValue::from_bytes(h.value).expect("value"),
        );
    }
    map
}

proptest! {
    #![proptest_config(crate::proxy::relay::cases(1000))]

    #[test]
    fn the_relay_writes_response_headers_as_the_hyper_path_does(
        picks in proptest::collection::vec(0..RESPONSE_POOL.len(), 0..10),
        pin_on in proptest::bool::ANY,
        edits_on in proptest::bool::ANY,
    ) {
        let head = head_of("HTTP/1.1 200 OK", RESPONSE_POOL, &picks);
        let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut fields);
        prop_assert!(response.parse(head.as_bytes()).is_ok());
        let parsed = response.headers;
        let edits = edits_of(
            "remove = [\"x-backend\"]\nset = { cache-control = \"no-store\" }\nadd = { x-served-by = \"raftlb\" }\n",
        );
        let edits = edits_on.then_some(&edits);
        let pin = HeaderValue::from_static("SRV=abc; Path=/; HttpOnly");
        let pin = pin_on.then_some(&pin);

        // The hyper path: hop-by-hop out, the pin appended, the edits.
        let mut expected = map_of(parsed);
        headers::remove_hop_by_hop(&mut expected);
        if let Some(pin) = pin {
            expected.append(header::SET_COOKIE, pin.clone());
        }
        if let Some(edits) = edits {
            edits.apply(&mut expected);
        }

        let mut out = Vec::new();
        let rules = crate::proxy::relay::response_head::Rules {
            pin,
            edits,
            close: false,
            head_request: false,
        };
        crate::proxy::relay::response_head::write(&mut out, 200, "OK", parsed, BodyLength::Length(3), &rules);
        let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut written = httparse::Response::new(&mut fields);
        prop_assert!(matches!(written.parse(&out), Ok(httparse::Status::Complete(n)) if n == out.len()));
        let mut written = map_of(written.headers);
        written.remove(header::CONNECTION);
        prop_assert_eq!(by_name(&written), by_name(&expected), "{}", head);
    }
}
