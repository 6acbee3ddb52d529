//! The node's copy of what the cluster serves: the state, and the routing
//! table published from it after every change.

use std::sync::{Arc, Mutex};

use crate::metrics::Metrics;
use crate::routing::{PublishedTable, RoutingTable, Runtimes};
use crate::state::{ClusterState, Command, StateError};

/// Applies commands to the state and publishes each result.
pub struct ServedConfig {
    state: Mutex<ClusterState>,
    runtimes: Runtimes,
    table: Arc<PublishedTable>,
}

impl ServedConfig {
    /// An empty configuration, reporting into `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        ServedConfig {
            state: Mutex::new(ClusterState::default()),
            runtimes: Runtimes::new(metrics),
            table: Arc::new(PublishedTable::new(RoutingTable::empty())),
        }
    }

    /// Applies `command` and publishes the new routing table; on error
    /// nothing changes.
    pub fn apply(&self, command: Command) -> Result<u64, StateError> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut next = state.clone();
        let version = next.dispatch(command)?;
        let table = RoutingTable::compile(&next, &self.runtimes)?;
        *state = next;
        self.table.publish(table);
        Ok(version)
    }

    /// A copy of the current state.
    pub fn state(&self) -> ClusterState {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The published routing table.
    pub fn table(&self) -> &Arc<PublishedTable> {
        &self.table
    }

    /// The metrics of this node.
    pub fn metrics(&self) -> &Arc<Metrics> {
        self.runtimes.metrics()
    }
}
