//! The node's copy of what the cluster serves: the last applied state, and
//! the routing table published from it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use crate::events::{Event, Events};
use crate::metrics::Metrics;
use crate::routing::{Health, PublishedTable, RoutingTable, Runtimes};
use crate::state::ClusterState;

/// Compiles applied states into routing tables and publishes them.
pub struct ServedConfig {
    state: Mutex<ClusterState>,
    committed: Mutex<HashMap<(String, SocketAddr), bool>>,
    runtimes: Runtimes,
    table: Arc<PublishedTable>,
    events: Events,
}

impl ServedConfig {
    /// An empty configuration, reporting into `metrics`.
    pub fn new(metrics: Arc<Metrics>, events: Events) -> Self {
        ServedConfig {
            state: Mutex::new(ClusterState::default()),
            committed: Mutex::default(),
            runtimes: Runtimes::new(metrics, events.clone()),
            table: Arc::new(PublishedTable::new(RoutingTable::empty())),
            events,
        }
    }

    /// The node's event bus.
    pub fn events(&self) -> &Events {
        &self.events
    }

    /// Connections or requests in flight from this node to a backend.
    pub fn active_connections(&self, pool: &str, address: std::net::SocketAddr) -> i64 {
        self.runtimes.active(pool, address)
    }

    /// Compiles `state` and publishes it. A state that does not compile
    /// (which validation rules out) is logged and the current table kept.
    pub fn publish(&self, state: &ClusterState) {
        match RoutingTable::compile(state, &self.runtimes) {
            Ok(table) => {
                {
                    let committed = self.committed.lock().unwrap_or_else(|e| e.into_inner());
                    for pool in &table.pools {
                        for backend in &pool.backends {
                            if let Some(&up) = committed.get(&(pool.name.clone(), backend.address))
                            {
                                backend.runtime.set_committed(if up {
                                    Health::Up
                                } else {
                                    Health::Down
                                });
                            }
                        }
                    }
                }
                let previous = std::mem::replace(
                    &mut *self.state.lock().unwrap_or_else(|e| e.into_inner()),
                    state.clone(),
                );
                self.table.publish(table);
                if previous.version != state.version
                    && let Some(revision) = state.history.get(state.version)
                {
                    self.events.publish(Event::Config {
                        version: state.version,
                        summary: revision.summary.clone(),
                        caller: revision.origin.caller.clone(),
                    });
                }
                tracing::info!(version = state.version, "serving configuration");
            }
            Err(error) => {
                tracing::error!(version = state.version, %error, "cannot compile configuration")
            }
        }
    }

    /// Loads the committed health views (`pool/address` → up) kept with the
    /// state, before the state is first published.
    pub fn load_committed(&self, views: &std::collections::BTreeMap<String, bool>) {
        let mut committed = self.committed.lock().unwrap_or_else(|e| e.into_inner());
        committed.clear();
        for (key, up) in views {
            if let Some((pool, address)) = key.rsplit_once('/')
                && let Ok(address) = address.parse()
            {
                committed.insert((pool.to_string(), address), *up);
            }
        }
    }

    /// Records a newly committed health view and applies it to the backend.
    pub fn set_committed(&self, pool: &str, address: SocketAddr, up: bool) {
        self.committed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((pool.to_string(), address), up);
        if let Some(runtime) = self.runtimes.existing_backend(pool, address) {
            runtime.set_committed(if up { Health::Up } else { Health::Down });
        }
    }

    /// Every committed view, `pool/address` → `up` or `down`.
    pub fn committed_views(&self) -> std::collections::BTreeMap<String, String> {
        self.committed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|((pool, address), up)| {
                (
                    format!("{pool}/{address}"),
                    if *up { "up" } else { "down" }.to_string(),
                )
            })
            .collect()
    }

    /// The committed view of a backend, if any.
    pub fn committed(&self, pool: &str, address: SocketAddr) -> Option<bool> {
        self.committed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(pool.to_string(), address))
            .copied()
    }

    /// A copy of the state last published.
    pub fn state(&self) -> ClusterState {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The version last published.
    pub fn version(&self) -> u64 {
        self.table.load().version
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
