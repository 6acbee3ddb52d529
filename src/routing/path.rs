//! The path routes match on, and the path sent to the backend: the same
//! path, in one spelling. Without it, `/%61dmin/`, `//admin/` or
//! `/x/../admin/` would pass a route that guards `/admin/` and reach a
//! backend that reads them all as `/admin/` (Envoy's `normalize_path`
//! and `merge_slashes`, on by default here). Percent-encoded unreserved
//! characters are decoded, runs of `/` become one, and `.` and `..`
//! segments are resolved (RFC 3986 6.2.2 and 5.2.4). Other escapes stay
//! as they are (`%2F` is not a `/`); case is kept (paths are case
//! sensitive).

use std::borrow::Cow;

/// `path` (without query) in its normal spelling; borrowed when it
/// already is.
pub fn normalize(path: &str) -> Cow<'_, str> {
    let bytes = path.as_bytes();
    let needs = bytes.windows(2).any(|w| w == b"//")
        || bytes.contains(&b'%')
        || path.split('/').any(|s| s == "." || s == "..");
    if !needs {
        return Cow::Borrowed(path);
    }
    let decoded = decode_unreserved(path);
    let mut segments: Vec<&str> = Vec::new();
    for segment in decoded.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            other => segments.push(other),
        }
    }
    let mut out = String::with_capacity(decoded.len());
    for segment in &segments {
        out.push('/');
        out.push_str(segment);
    }
    // A path ending in `/`, `/.` or `/..` names a directory.
    let trailing = decoded.ends_with('/') || decoded.ends_with("/.") || decoded.ends_with("/..");
    if out.is_empty() || trailing {
        out.push('/');
    }
    Cow::Owned(out)
}

/// `%XX` escapes of unreserved characters (ALPHA, DIGIT, `-._~`) decoded;
/// every other escape kept, its hex digits in upper case.
fn decode_unreserved(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let (Some(high), Some(low)) = (
                bytes.get(i + 1).and_then(|b| (*b as char).to_digit(16)),
                bytes.get(i + 2).and_then(|b| (*b as char).to_digit(16)),
            )
        {
            let byte = (high * 16 + low) as u8;
            if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
                out.push(byte as char);
            } else {
                out.push_str(&format!("%{byte:02X}"));
            }
            i += 3;
            continue;
        }
        out.push(bytes[i] as char);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_spelling_per_path() {
        for (sent, normal) in [
            ("/admin/x", "/admin/x"),
            ("/%61dmin/x", "/admin/x"),
            ("//admin//x", "/admin/x"),
            ("/./admin/./x", "/admin/x"),
            ("/x/../admin/x", "/admin/x"),
            ("/../../admin/", "/admin/"),
            ("/admin/x/..", "/admin/"),
            ("/a%2fb", "/a%2Fb"),
            ("/a%2Fb/%7euser", "/a%2Fb/~user"),
            ("/%zz", "/%zz"),
            ("/", "/"),
            ("/..", "/"),
        ] {
            assert_eq!(normalize(sent), normal, "{sent}");
        }
        assert!(matches!(normalize("/admin/x"), Cow::Borrowed(_)));
    }
}
