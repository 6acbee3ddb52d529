//! Header lines as the relay writes them, and the rules both of its heads
//! share: which lines belong to one hop only, and which a route's edits
//! replace.

use crate::proxy::http::headers::HOP_BY_HOP;
use crate::routing::HeaderEdits;

/// The header names a head's `Connection` lines name (its other hop-by-hop
/// headers), without the usual `keep-alive` and `close`.
pub fn connection_named<'b>(headers: &[httparse::Header<'b>]) -> Vec<&'b [u8]> {
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("connection"))
        .flat_map(|h| h.value.split(|b| *b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|t| {
            !t.is_empty()
                && !t.eq_ignore_ascii_case(b"keep-alive")
                && !t.eq_ignore_ascii_case(b"close")
        })
        .collect()
}

/// Whether a line named `name` belongs to one hop: the hop-by-hop headers
/// of RFC 9110 7.6.1 (and the legacy ones), or one `Connection` names.
pub fn is_hop_by_hop(name: &str, named: &[&[u8]]) -> bool {
    HOP_BY_HOP
        .iter()
        .any(|h| name.eq_ignore_ascii_case(h.as_str()))
        || named
            .iter()
            .any(|n| name.as_bytes().eq_ignore_ascii_case(n))
}

/// Whether `edits` remove or replace lines named `name`.
pub fn edited_away(name: &str, edits: Option<&HeaderEdits>) -> bool {
    edits.is_some_and(|e| {
        e.removes()
            .iter()
            .any(|n| name.eq_ignore_ascii_case(n.as_str()))
            || e.sets()
                .iter()
                .any(|(n, _)| name.eq_ignore_ascii_case(n.as_str()))
    })
}

/// Writes the lines `edits` set and add.
pub fn write_edits(out: &mut Vec<u8>, edits: Option<&HeaderEdits>) {
    if let Some(edits) = edits {
        for (name, value) in edits.sets().iter().chain(edits.adds()) {
            line(out, name.as_str().as_bytes(), value.as_bytes());
        }
    }
}

/// Writes `name: value` and CRLF.
pub fn line(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Writes `name: n` and CRLF (no allocation, unlike `to_string`).
pub fn number_line(out: &mut Vec<u8>, name: &[u8], n: u64) {
    line(out, name, itoa::Buffer::new().format(n).as_bytes());
}
