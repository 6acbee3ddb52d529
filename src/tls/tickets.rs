//! TLS session tickets sealed with the cluster's shared keys (see
//! `state::ticket_keys`): a ticket is the key's 16-byte id, a 12-byte
//! nonce and the AES-256-GCM sealed session state (the id as associated
//! data). Any node opens a ticket any node made with a kept key.

use std::collections::HashMap;
use std::sync::Arc;

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

use crate::routing::PublishedTable;
use crate::state::ticket_keys::{KEPT, ROTATE_EVERY_MS, TicketKeys};

const ID_LEN: usize = 16;

/// The kept keys, ready to seal and open.
#[derive(Default)]
pub struct TicketKeySet {
    /// The newest key's id and key: seals.
    newest: Option<([u8; ID_LEN], Arc<LessSafeKey>)>,
    /// Every kept key by id: opens.
    by_id: HashMap<[u8; ID_LEN], Arc<LessSafeKey>>,
    source: TicketKeys,
}

impl std::fmt::Debug for TicketKeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TicketKeySet")
            .field("keys", &self.by_id.len())
            .finish()
    }
}

fn unhex<const N: usize>(text: &str) -> Option<[u8; N]> {
    let mut out = [0u8; N];
    if text.len() != 2 * N {
        return None;
    }
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

impl TicketKeySet {
    /// The set for `keys`; `previous` is reused when made from the same
    /// keys.
    pub fn compile(keys: &TicketKeys, previous: Option<&Arc<Self>>) -> Arc<Self> {
        if let Some(previous) = previous
            && previous.source == *keys
        {
            return previous.clone();
        }
        let mut set = TicketKeySet {
            source: keys.clone(),
            ..TicketKeySet::default()
        };
        for (i, key) in keys.iter().enumerate() {
            let (Some(id), Some(secret)) = (unhex::<ID_LEN>(&key.id), unhex::<32>(&key.secret))
            else {
                tracing::error!(id = %key.id, "malformed session-ticket key skipped");
                continue;
            };
            let Ok(unbound) = UnboundKey::new(&AES_256_GCM, &secret) else {
                continue;
            };
            let sealing = Arc::new(LessSafeKey::new(unbound));
            if i == 0 {
                set.newest = Some((id, sealing.clone()));
            }
            set.by_id.insert(id, sealing);
        }
        Arc::new(set)
    }

    fn seal(&self, plain: &[u8]) -> Option<Vec<u8>> {
        let (id, key) = self.newest.as_ref()?;
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new().fill(&mut nonce).ok()?;
        let mut sealed = plain.to_vec();
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(&id[..]),
            &mut sealed,
        )
        .ok()?;
        let mut ticket = Vec::with_capacity(ID_LEN + NONCE_LEN + sealed.len());
        ticket.extend_from_slice(id);
        ticket.extend_from_slice(&nonce);
        ticket.extend_from_slice(&sealed);
        Some(ticket)
    }

    fn open(&self, ticket: &[u8]) -> Option<Vec<u8>> {
        let id: [u8; ID_LEN] = ticket.get(..ID_LEN)?.try_into().ok()?;
        let nonce: [u8; NONCE_LEN] = ticket.get(ID_LEN..ID_LEN + NONCE_LEN)?.try_into().ok()?;
        let key = self.by_id.get(&id)?;
        let mut sealed = ticket.get(ID_LEN + NONCE_LEN..)?.to_vec();
        let plain = key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&id[..]),
                &mut sealed,
            )
            .ok()?;
        Some(plain.to_vec())
    }
}

/// rustls' ticketer for `https` frontends: seals with the newest key of
/// the table served at that moment, opens with any kept one.
pub struct ClusterTicketer(pub Arc<PublishedTable>);

impl std::fmt::Debug for ClusterTicketer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterTicketer")
    }
}

impl rustls::server::ProducesTickets for ClusterTicketer {
    fn enabled(&self) -> bool {
        true
    }

    /// A ticket is good until its key drops out.
    fn lifetime(&self) -> u32 {
        (ROTATE_EVERY_MS / 1000 * KEPT as u64) as u32
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        self.0.tickets().seal(plain)
    }

    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        self.0.tickets().open(cipher)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::ticket_keys::{TicketKey, rotated};

    #[test]
    fn a_ticket_opens_with_any_kept_key_and_not_after_it_dropped_out() {
        let first = vec![TicketKey::generate(0)];
        let set = TicketKeySet::compile(&first, None);
        let ticket = set.seal(b"session state").expect("sealed");
        assert_eq!(set.open(&ticket).as_deref(), Some(&b"session state"[..]));
        // Another node, same keys: opens it.
        let elsewhere = TicketKeySet::compile(&first, None);
        assert_eq!(
            elsewhere.open(&ticket).as_deref(),
            Some(&b"session state"[..])
        );
        // Tampered: refused.
        let mut bad = ticket.clone();
        *bad.last_mut().expect("byte") ^= 1;
        assert_eq!(set.open(&bad), None);
        assert_eq!(set.open(&ticket[..20]), None);
        // Two rotations later it still opens; after the third, not.
        let mut keys = first;
        for n in 1..=2 {
            keys = rotated(&keys, TicketKey::generate(n));
            assert!(
                TicketKeySet::compile(&keys, None).open(&ticket).is_some(),
                "{n}"
            );
        }
        keys = rotated(&keys, TicketKey::generate(3));
        assert_eq!(keys.len(), KEPT);
        assert_eq!(TicketKeySet::compile(&keys, None).open(&ticket), None);
        // A set without keys seals nothing.
        assert_eq!(TicketKeySet::compile(&Vec::new(), None).seal(b"x"), None);
    }
}
