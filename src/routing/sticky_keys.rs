//! The keys that sign sticky cookies (`[pool.sticky] signed = true`), so
//! that a client cannot choose its backend by writing the cookie itself.
//!
//! They are derived from the cluster's session-ticket keys (HMAC-SHA256 of
//! a fixed label under each key's secret: a key of its own for this use),
//! which every node holds and the leader rotates every 12 hours, keeping
//! three. A cookie is signed with the newest and verified with any kept
//! one, so it stays valid for 24 to 36 hours; after that the client is
//! balanced anew and given a fresh cookie. The leader keeps ticket keys
//! while a pool signs its cookies, even without TLS frontends.

use ring::hmac;
use subtle::ConstantTimeEq;

use crate::state::ticket_keys::TicketKeys;

/// Hex digits of a key's id carried in a cookie.
const KEY_ID_HEX: usize = 8;
/// Bytes of the MAC carried in a cookie (hex: twice as many digits).
const TAG_BYTES: usize = 16;

/// The signing keys, newest first: the id prefix that names each in a
/// cookie, and the key.
#[derive(Default)]
pub struct StickyKeys {
    keys: Vec<(String, hmac::Key)>,
}

impl std::fmt::Debug for StickyKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StickyKeys")
            .field("keys", &self.keys.len())
            .finish()
    }
}

impl StickyKeys {
    /// The keys derived from the cluster's ticket keys.
    pub fn derive(tickets: &TicketKeys) -> StickyKeys {
        let keys = tickets
            .iter()
            .filter_map(|ticket| {
                let secret = hex_bytes(&ticket.secret)?;
                let parent = hmac::Key::new(hmac::HMAC_SHA256, &secret);
                let derived = hmac::sign(&parent, b"raftlb sticky cookie v1");
                let id = ticket.id.get(..KEY_ID_HEX)?.to_string();
                Some((id, hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref())))
            })
            .collect();
        StickyKeys { keys }
    }

    /// `id.KEY.MAC` for backend `id` of pool `pool`, with the newest key;
    /// `None` while the cluster has no key yet.
    pub fn sign(&self, pool: &str, id: &str) -> Option<String> {
        let (key_id, key) = self.keys.first()?;
        Some(format!("{id}.{key_id}.{}", hex(&tag(key, pool, id))))
    }

    /// The backend id a signed cookie value carries, if its MAC is right
    /// under a kept key.
    pub fn verify<'a>(&self, pool: &str, value: &'a [u8]) -> Option<&'a [u8]> {
        let text = std::str::from_utf8(value).ok()?;
        let mut parts = text.split('.');
        let (id, key_id, mac) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let (_, key) = self.keys.iter().find(|(k, _)| k == key_id)?;
        let given = hex_bytes(mac)?;
        let expected = tag(key, pool, id);
        bool::from(given.ct_eq(&expected)).then(|| &value[..id.len()])
    }
}

/// The truncated MAC of backend `id` in pool `pool`.
fn tag(key: &hmac::Key, pool: &str, id: &str) -> [u8; TAG_BYTES] {
    let mut message = Vec::with_capacity(pool.len() + 1 + id.len());
    message.extend_from_slice(pool.as_bytes());
    message.push(0);
    message.extend_from_slice(id.as_bytes());
    let full = hmac::sign(key, &message);
    let mut truncated = [0u8; TAG_BYTES];
    truncated.copy_from_slice(&full.as_ref()[..TAG_BYTES]);
    truncated
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hex_bytes(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::ticket_keys::{TicketKey, rotated};

    #[test]
    fn signs_verifies_and_refuses_forgeries_and_unknown_keys() {
        let first = TicketKey::generate(1);
        let keys = StickyKeys::derive(&vec![first.clone()]);
        let cookie = keys.sign("web", "0123456789abcdef").expect("signed");
        assert_eq!(
            keys.verify("web", cookie.as_bytes()),
            Some(&b"0123456789abcdef"[..])
        );
        // Another backend's id under the same MAC, another pool, a changed
        // MAC, an unsigned id: all refused.
        let forged = cookie.replacen("0123456789abcdef", "fedcba9876543210", 1);
        assert_eq!(keys.verify("web", forged.as_bytes()), None);
        assert_eq!(keys.verify("api", cookie.as_bytes()), None);
        let mut flipped = cookie.clone().into_bytes();
        let last = flipped.len() - 1;
        flipped[last] = if flipped[last] == b'0' { b'1' } else { b'0' };
        assert_eq!(keys.verify("web", &flipped), None);
        assert_eq!(keys.verify("web", b"0123456789abcdef"), None);
        // After a rotation the old cookie still verifies, new ones use the
        // new key; once its key is dropped, it no longer does.
        let two = rotated(&vec![first], TicketKey::generate(2));
        let rotated_keys = StickyKeys::derive(&two);
        assert!(rotated_keys.verify("web", cookie.as_bytes()).is_some());
        assert_ne!(
            rotated_keys.sign("web", "0123456789abcdef"),
            Some(cookie.clone())
        );
        let gone = StickyKeys::derive(&vec![two[0].clone()]);
        assert_eq!(gone.verify("web", cookie.as_bytes()), None);
        assert_eq!(StickyKeys::default().sign("web", "x"), None);
    }
}
