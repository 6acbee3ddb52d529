//! The node's copy of what the cluster serves: the last applied state, and
//! the routing table published from it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::events::{Event, Events};
use crate::metrics::Metrics;
use crate::routing::{Health, PublishedTable, RoutingTable, Runtimes};
use crate::state::ClusterState;

/// Holds the applied state and compiles it into routing tables.
///
/// The state machine hands over each applied state with [`publish`], which
/// only stores it: compiling runs on its own task ([`run_compiler`]), so
/// Raft's apply never waits for it, and a burst of changes is compiled
/// once, at its latest version.
///
/// [`publish`]: ServedConfig::publish
/// [`run_compiler`]: ServedConfig::run_compiler
pub struct ServedConfig {
    /// The last applied state: what readers see, and what the compiler
    /// task compiles next.
    to_compile: watch::Sender<ClusterState>,
    committed: Mutex<HashMap<(String, SocketAddr), bool>>,
    runtimes: Runtimes,
    table: Arc<PublishedTable>,
    events: Events,
    compiling: Mutex<()>,
}

impl ServedConfig {
    /// An empty configuration, reporting into `metrics`.
    pub fn new(metrics: Arc<Metrics>, events: Events) -> Self {
        ServedConfig {
            to_compile: watch::Sender::new(ClusterState::default()),
            committed: Mutex::default(),
            runtimes: Runtimes::new(metrics, events.clone()),
            table: Arc::new(PublishedTable::new(RoutingTable::empty())),
            events,
            compiling: Mutex::new(()),
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

    /// Takes a newly applied state: readers see it at once, and the
    /// compiler task turns it into the routing table.
    pub fn publish(&self, state: &ClusterState) {
        self.table.publish_tickets(&state.ticket_keys);
        self.table.publish_challenges(&state.acme_challenges);
        self.to_compile.send_replace(state.clone());
    }

    /// Takes a state and compiles it before returning (at start-up, so a
    /// restarted node forwards from its first connection).
    pub fn publish_now(&self, state: &ClusterState) {
        self.publish(state);
        self.compile(state);
    }

    /// Compiles every state handed over by [`ServedConfig::publish`], the
    /// latest first, until `stop`. It listens from the moment it is called,
    /// not from when the returned future first runs.
    pub fn run_compiler(
        self: Arc<Self>,
        stop: CancellationToken,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let states = self.to_compile.subscribe();
        self.compile_each(states, stop)
    }

    async fn compile_each(
        self: Arc<Self>,
        mut states: watch::Receiver<ClusterState>,
        stop: CancellationToken,
    ) {
        loop {
            tokio::select! {
                changed = states.changed() => if changed.is_err() { return },
                () = stop.cancelled() => return,
            }
            let state = states.borrow_and_update().clone();
            let served = self.clone();
            // Compiling a large configuration is CPU work: keep it off the
            // runtime's threads that serve traffic and Raft.
            let compiled = tokio::task::spawn_blocking(move || served.compile(&state)).await;
            if let Err(error) = compiled {
                tracing::error!(%error, "routing table compiler failed");
            }
        }
    }

    /// Compiles `state` against the current table and publishes it; a state
    /// that does not compile (which validation rules out) is logged and the
    /// current table kept. Announces every version the new table adds.
    fn compile(&self, state: &ClusterState) {
        // One compile at a time (start-up's and the task's), so tables and
        // events go out in version order.
        let _one = self.compiling.lock().unwrap_or_else(|e| e.into_inner());
        let previous = self.table.load_full();
        if state.version <= previous.version && previous.version != 0 {
            return;
        }
        let started = Instant::now();
        match RoutingTable::compile(state, &self.runtimes, Some(&previous)) {
            Ok(table) => {
                {
                    let committed = self.committed.lock().unwrap_or_else(|e| e.into_inner());
                    // Pools taken over from the previous table already
                    // carry their committed views.
                    let kept: std::collections::HashSet<*const crate::routing::Pool> =
                        previous.pools.iter().map(Arc::as_ptr).collect();
                    let reused =
                        |pool: &Arc<crate::routing::Pool>| kept.contains(&Arc::as_ptr(pool));
                    for pool in table.pools.iter().filter(|p| !reused(p)) {
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
                self.table.publish(table);
                let metrics = self.metrics();
                metrics.table_compiles.inc();
                metrics
                    .table_compile_us
                    .set(started.elapsed().as_micros() as i64);
                for revision in state.history.after(previous.version) {
                    if revision.version > state.version {
                        break;
                    }
                    self.events.publish(Event::Config {
                        version: revision.version,
                        summary: revision.summary.clone(),
                        caller: revision.origin.caller.clone(),
                    });
                }
                tracing::info!(
                    version = state.version,
                    compile_us = started.elapsed().as_micros() as u64,
                    "serving configuration"
                );
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

    /// The state last applied (it may not be served yet; see
    /// [`ServedConfig::version`]). A copy costs a few pointers.
    pub fn state(&self) -> ClusterState {
        self.to_compile.borrow().clone()
    }

    /// The version the routing table serves now.
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
