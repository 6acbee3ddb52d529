//! A request's headers as routing reads them: a hyper `HeaderMap` (the
//! hyper path) or the header lines httparse parsed in place (the relay),
//! so both paths route, split and pin by the same code without the relay
//! copying its headers into a map.

use http::HeaderMap;

/// Read-only access to a request's header values by name.
#[derive(Debug, Clone, Copy)]
pub enum HeaderView<'a> {
    /// Headers in a hyper map.
    Map(&'a HeaderMap),
    /// Header lines as parsed, in order.
    Lines(&'a [httparse::Header<'a>]),
}

impl<'a> HeaderView<'a> {
    /// The first `f(value)` that is `Some`, over the values of header
    /// `name` (any case) in order.
    pub fn find_map<T>(self, name: &str, mut f: impl FnMut(&'a [u8]) -> Option<T>) -> Option<T> {
        match self {
            HeaderView::Map(map) => map.get_all(name).iter().find_map(|v| f(v.as_bytes())),
            HeaderView::Lines(lines) => lines
                .iter()
                .filter(|h| h.name.eq_ignore_ascii_case(name))
                .find_map(|h| f(h.value)),
        }
    }

    /// The first value of header `name`.
    pub fn first(self, name: &str) -> Option<&'a [u8]> {
        self.find_map(name, Some)
    }

    /// Whether any value of header `name` passes `test`.
    pub fn any(self, name: &str, mut test: impl FnMut(&[u8]) -> bool) -> bool {
        self.find_map(name, |v| test(v).then_some(())).is_some()
    }

    /// Whether a comma-separated header `name` lists `token` (any case),
    /// as `Connection: keep-alive, close` lists `close`.
    pub fn has_token(self, name: &str, token: &[u8]) -> bool {
        self.any(name, |value| {
            value
                .split(|&b| b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
        })
    }

    /// The value of cookie `name` in the `Cookie` headers.
    pub fn cookie(self, name: &str) -> Option<&'a [u8]> {
        self.find_map("cookie", |value| {
            std::str::from_utf8(value)
                .ok()?
                .split(';')
                .filter_map(|pair| pair.trim().split_once('='))
                .find(|(key, _)| *key == name)
                .map(|(_, value)| value.as_bytes())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn a_map_and_parsed_lines_read_alike() {
        let mut map = HeaderMap::new();
        map.append("x-env", HeaderValue::from_static("a"));
        map.append("x-env", HeaderValue::from_static("b"));
        map.append("cookie", HeaderValue::from_static("theme=dark"));
        map.append("cookie", HeaderValue::from_static("SRV=abc; lang=en"));
        let lines = [
            httparse::Header {
                name: "X-Env",
                value: b"a",
            },
            httparse::Header {
                name: "Cookie",
                value: b"theme=dark",
            },
            httparse::Header {
                name: "x-env",
                value: b"b",
            },
            httparse::Header {
                name: "cookie",
                value: b"SRV=abc; lang=en",
            },
        ];
        for view in [HeaderView::Map(&map), HeaderView::Lines(&lines)] {
            assert_eq!(view.first("X-ENV"), Some(&b"a"[..]));
            assert!(view.any("x-env", |v| v == b"b"));
            assert!(!view.any("x-env", |v| v == b"c"));
            assert_eq!(view.cookie("SRV"), Some(&b"abc"[..]));
            assert_eq!(view.cookie("lang"), Some(&b"en"[..]));
            assert_eq!(view.cookie("srv"), None);
            assert_eq!(view.first("host"), None);
            assert!(view.has_token("x-env", b"B"));
            assert!(!view.has_token("cookie", b"lang"));
        }
    }
}
