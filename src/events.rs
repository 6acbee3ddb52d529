//! Events a node publishes for `Watch`: configuration changes, leader
//! changes, backend health changes.

use tokio::sync::broadcast;

/// Events buffered for slow watchers before they start missing some.
const BUFFER: usize = 1024;

/// Something that happened on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A new configuration version is served.
    Config {
        /// The version.
        version: u64,
        /// What changed, in one line.
        summary: String,
        /// Who changed it.
        caller: String,
    },
    /// The Raft leader changed.
    Leader {
        /// The new leader, if any.
        leader: Option<u64>,
        /// The term.
        term: u64,
    },
    /// A backend's health changed as this node sees it.
    Health {
        /// Pool name.
        pool: String,
        /// Backend address.
        address: String,
        /// `up`, `ejected` or `down`.
        health: &'static str,
        /// Why.
        reason: String,
    },
}

/// A stamped event.
#[derive(Debug, Clone)]
pub struct Stamped {
    /// Milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// The event.
    pub event: Event,
}

/// The node's event bus; cheap to clone.
#[derive(Debug, Clone)]
pub struct Events {
    sender: broadcast::Sender<Stamped>,
}

impl Default for Events {
    fn default() -> Self {
        Events {
            sender: broadcast::channel(BUFFER).0,
        }
    }
}

impl Events {
    /// Publishes `event` to every current watcher (none is fine).
    pub fn publish(&self, event: Event) {
        let _ = self.sender.send(Stamped {
            time_ms: crate::control::unix_millis(),
            event,
        });
    }

    /// A new watcher, seeing events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Stamped> {
        self.sender.subscribe()
    }
}
