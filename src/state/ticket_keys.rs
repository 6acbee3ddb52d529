//! Session-ticket keys shared by the cluster, like HAProxy's
//! `tls-ticket-keys` but kept in the Raft state: every node encrypts TLS
//! session tickets with the newest key and decrypts with any kept one, so
//! a client that resumes against another node (the new VIP holder after a
//! failover) resumes without a full handshake. The leader adds a new key
//! every [`ROTATE_EVERY_MS`] and the oldest drops out after
//! [`KEPT`] keys, so a stolen key opens at most a day and a half of
//! tickets (forward secrecy).

use std::fmt;

use serde::{Deserialize, Serialize};

/// How often the leader adds a new key.
pub const ROTATE_EVERY_MS: u64 = 12 * 3600 * 1000;
/// Keys kept: the newest encrypts, all decrypt.
pub const KEPT: usize = 3;

/// One key: 16 bytes that name it in every ticket, and 32 secret bytes
/// (AES-256-GCM), both hex.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketKey {
    /// Names the key in the tickets it encrypted (not secret).
    pub id: String,
    /// The AEAD key. Never printed or logged.
    pub secret: String,
    /// When the leader made it, ms since the Unix epoch.
    pub created_ms: u64,
}

impl fmt::Debug for TicketKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TicketKey")
            .field("id", &self.id)
            .field("created_ms", &self.created_ms)
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl TicketKey {
    /// A new random key made now.
    pub fn generate(now_ms: u64) -> TicketKey {
        use ring::rand::SecureRandom;
        let random = ring::rand::SystemRandom::new();
        let mut bytes = [0u8; 48];
        // The system's random source failing is not something to go on
        // after.
        random.fill(&mut bytes).expect("system randomness");
        let hex = |b: &[u8]| b.iter().map(|b| format!("{b:02x}")).collect::<String>();
        TicketKey {
            id: hex(&bytes[..16]),
            secret: hex(&bytes[16..]),
            created_ms: now_ms,
        }
    }
}

/// The kept keys, newest first.
pub type TicketKeys = Vec<TicketKey>;

/// `keys` with `key` added as the newest, the oldest beyond [`KEPT`]
/// dropped.
pub fn rotated(keys: &TicketKeys, key: TicketKey) -> TicketKeys {
    std::iter::once(key)
        .chain(keys.iter().cloned())
        .take(KEPT)
        .collect()
}

/// Whether the leader should add a key now.
pub fn due(keys: &TicketKeys, now_ms: u64) -> bool {
    keys.first()
        .is_none_or(|newest| now_ms.saturating_sub(newest.created_ms) >= ROTATE_EVERY_MS)
}
