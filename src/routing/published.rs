//! Atomic publication of the routing table.

use std::collections::BTreeMap;
use std::sync::Arc;

use arc_swap::{ArcSwap, Guard};
use tokio::sync::watch;

use super::RoutingTable;
use crate::state::ticket_keys::TicketKeys;
use crate::tls::tickets::TicketKeySet;

/// The current routing table. Readers load it without locks; each publish
/// swaps in a whole new table, so a reader sees either the old or the new
/// one, never a mix. Listeners that must open or close subscribe to changes.
/// The session-ticket keys are published beside it: rotating them is no
/// configuration change (no new version).
pub struct PublishedTable {
    current: ArcSwap<RoutingTable>,
    changes: watch::Sender<u64>,
    tickets: ArcSwap<TicketKeySet>,
    /// The keys that sign sticky cookies, derived from the ticket keys.
    sticky_keys: ArcSwap<super::StickyKeys>,
    /// Answers to ACME HTTP-01 challenges, by token.
    challenges: ArcSwap<BTreeMap<String, String>>,
}

impl PublishedTable {
    /// Publishes `table` as the first one.
    pub fn new(table: RoutingTable) -> Self {
        let (changes, _) = watch::channel(table.version);
        PublishedTable {
            current: ArcSwap::from_pointee(table),
            changes,
            tickets: ArcSwap::default(),
            sticky_keys: ArcSwap::default(),
            challenges: ArcSwap::default(),
        }
    }

    /// The current table, a lock-free read.
    pub fn load(&self) -> Guard<Arc<RoutingTable>> {
        self.current.load()
    }

    /// The current table as an owned handle, for long-lived readers.
    pub fn load_full(&self) -> Arc<RoutingTable> {
        self.current.load_full()
    }

    /// Replaces the table and wakes the subscribers.
    pub fn publish(&self, table: RoutingTable) {
        let version = table.version;
        self.current.store(Arc::new(table));
        self.changes.send_replace(version);
    }

    /// The session-ticket keys now, a lock-free read.
    pub fn tickets(&self) -> Guard<Arc<TicketKeySet>> {
        self.tickets.load()
    }

    /// Publishes `keys` if they changed.
    pub fn publish_tickets(&self, keys: &TicketKeys) {
        let current = self.tickets.load_full();
        let compiled = TicketKeySet::compile(keys, Some(&current));
        if !Arc::ptr_eq(&compiled, &current) {
            self.tickets.store(compiled);
            self.sticky_keys
                .store(Arc::new(super::StickyKeys::derive(keys)));
        }
    }

    /// The keys that sign sticky cookies now, a lock-free read.
    pub fn sticky_keys(&self) -> Guard<Arc<super::StickyKeys>> {
        self.sticky_keys.load()
    }

    /// Publishes the ACME challenges' answers if they changed.
    pub fn publish_challenges(&self, challenges: &Arc<BTreeMap<String, String>>) {
        if !Arc::ptr_eq(&self.challenges.load(), challenges) {
            self.challenges.store(challenges.clone());
        }
    }

    /// The answer to the ACME HTTP-01 challenge `token`, if one is open.
    pub fn acme_challenge(&self, token: &str) -> Option<String> {
        self.challenges.load().get(token).cloned()
    }

    /// A receiver that changes on every publish.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }
}
