//! Sticky sessions (`[pool.sticky]`): the cookie that pins a client to a
//! backend. Its value is the backend's opaque id (`Backend::sticky_id`);
//! it is set on the answer of the request that chose the backend (a new
//! client, or one whose backend is gone: a redispatch), and taken off the
//! request before it reaches the backend (HAProxy's `insert indirect`).

use http::header::{self, HeaderMap, HeaderValue};

use crate::config::StickySpec;

/// Removes cookie `name` from the request's `Cookie` headers, keeping the
/// others (a header left empty goes).
pub fn strip(headers: &mut HeaderMap, name: &str) {
    if !headers
        .get_all(header::COOKIE)
        .iter()
        .any(|v| v.to_str().is_ok_and(|v| names(v, name)))
    {
        return;
    }
    let kept: Vec<String> = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(|v| without(v, name))
        .filter(|v| !v.is_empty())
        .collect();
    headers.remove(header::COOKIE);
    for value in kept {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.append(header::COOKIE, value);
        }
    }
}

/// A `Cookie` header value without cookie `name` (empty if it held only
/// that).
pub fn without(value: &str, name: &str) -> String {
    value
        .split(';')
        .map(str::trim)
        .filter(|pair| !pair.is_empty() && pair.split('=').next() != Some(name))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Whether a `Cookie` header value holds cookie `name`.
pub fn names(value: &str, name: &str) -> bool {
    value
        .split(';')
        .any(|pair| pair.trim().split('=').next() == Some(name))
}

/// The `Set-Cookie` that pins the client to the backend with `id`;
/// `https`: the client came over TLS (then `Secure` always).
pub fn set_cookie(spec: &StickySpec, value: &str, https: bool) -> Option<HeaderValue> {
    let mut value = format!("{}={value}; Path=/", spec.cookie);
    if let Some(age) = spec.max_age_s {
        value.push_str(&format!("; Max-Age={age}"));
    }
    if spec.http_only {
        value.push_str("; HttpOnly");
    }
    if spec.secure || https {
        value.push_str("; Secure");
    }
    if let Some(same_site) = &spec.same_site {
        value.push_str(&format!("; SameSite={same_site}"));
    }
    HeaderValue::from_str(&value).ok()
}

/// The `Set-Cookie` that pins a client to backend `index` of a sticky
/// `pool`, unless its cookie already names it (`pinned`): a new client,
/// or its backend gone (a redispatch). `None` for other pools.
pub fn pin(
    pool: &crate::routing::Pool,
    pinned: Option<usize>,
    index: usize,
    keys: &crate::routing::StickyKeys,
    https: bool,
) -> Option<HeaderValue> {
    let spec = pool.sticky.as_ref()?;
    if pinned == Some(index) {
        return None;
    }
    let value = value(spec, &pool.name, keys, &pool.backends[index].sticky_id)?;
    set_cookie(spec, &value, https)
}

/// The backend a request's sticky cookie pins it to in `pool`, while
/// that backend can take it.
pub fn pinned(
    pool: &crate::routing::Pool,
    headers: crate::routing::HeaderView<'_>,
    keys: &crate::routing::StickyKeys,
) -> Option<usize> {
    let spec = pool.sticky.as_ref()?;
    let value = headers.cookie(&spec.cookie)?;
    pool.pinned(backend_id(spec, &pool.name, keys, value)?)
}

/// The backend id in a request's sticky cookie value: as it is, or,
/// for a signed pool, once its signature checks out.
pub fn backend_id<'a>(
    spec: &StickySpec,
    pool: &str,
    keys: &crate::routing::StickyKeys,
    value: &'a [u8],
) -> Option<&'a [u8]> {
    if spec.signed {
        keys.verify(pool, value)
    } else {
        Some(value)
    }
}

/// The cookie value that names backend `id` of pool `pool`: signed for a
/// signed pool (`None` until the cluster has its first key).
pub fn value(
    spec: &StickySpec,
    pool: &str,
    keys: &crate::routing::StickyKeys,
    id: &str,
) -> Option<String> {
    if spec.signed {
        keys.sign(pool, id)
    } else {
        Some(id.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_only_the_sticky_cookie() {
        let mut headers = HeaderMap::new();
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; SRV=abc; b=2"),
        );
        headers.append(header::COOKIE, HeaderValue::from_static("SRV=def"));
        headers.append(header::COOKIE, HeaderValue::from_static("SRVX=kept"));
        strip(&mut headers, "SRV");
        let left: Vec<_> = headers.get_all(header::COOKIE).iter().collect();
        assert_eq!(left, ["a=1; b=2", "SRVX=kept"]);
        let mut none = HeaderMap::new();
        none.append(header::COOKIE, HeaderValue::from_static("x=1"));
        strip(&mut none, "SRV");
        assert_eq!(none[header::COOKIE], "x=1");
    }

    #[test]
    fn the_cookie_carries_its_options() {
        let mut spec = StickySpec {
            cookie: "SRV".into(),
            signed: false,
            http_only: true,
            secure: false,
            same_site: None,
            max_age_s: None,
            drain_timeout_s: 600,
        };
        assert_eq!(
            set_cookie(&spec, "0123", false).expect("value"),
            "SRV=0123; Path=/; HttpOnly"
        );
        assert_eq!(
            set_cookie(&spec, "0123", true).expect("value"),
            "SRV=0123; Path=/; HttpOnly; Secure"
        );
        spec.same_site = Some("Lax".into());
        spec.max_age_s = Some(60);
        spec.http_only = false;
        assert_eq!(
            set_cookie(&spec, "0123", false).expect("value"),
            "SRV=0123; Path=/; Max-Age=60; SameSite=Lax"
        );
    }
}
