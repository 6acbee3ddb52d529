//! Active health checks: every node probes every backend of its pools and
//! acts on its own results at once; transitions are reported to the leader,
//! which commits a backend's cluster-wide health when a majority agrees.

mod probe;

pub use probe::probe;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::{CheckKind, HealthSpec};
use crate::routing::{BackendRuntime, Health, PublishedTable};
use crate::tls::backend::BackendTls;

/// A change of this node's view of a backend, for the leader.
#[derive(Debug, Clone)]
pub struct Transition {
    /// Pool name.
    pub pool: String,
    /// Backend address.
    pub address: SocketAddr,
    /// The new view.
    pub health: Health,
}

/// What a backend's checks are run with: its pool's settings.
#[derive(Clone)]
struct CheckSettings {
    spec: HealthSpec,
    tls: Option<Arc<BackendTls>>,
    /// The pool speaks HTTP/2 to its backends.
    h2: bool,
}

impl PartialEq for CheckSettings {
    fn eq(&self, other: &Self) -> bool {
        self.spec == other.spec && same_tls(&self.tls, &other.tls) && self.h2 == other.h2
    }
}

struct Running {
    settings: CheckSettings,
    stop: CancellationToken,
}

/// Keeps one probe task per checked backend in step with the routing table.
pub struct HealthChecker {
    table: Arc<PublishedTable>,
    source: Option<IpAddr>,
    transitions: mpsc::UnboundedSender<Transition>,
    stop: CancellationToken,
}

impl HealthChecker {
    /// A checker probing from `source`, reporting transitions on `transitions`.
    pub fn new(
        table: Arc<PublishedTable>,
        source: Option<IpAddr>,
        transitions: mpsc::UnboundedSender<Transition>,
        stop: CancellationToken,
    ) -> Self {
        HealthChecker {
            table,
            source,
            transitions,
            stop,
        }
    }

    /// Runs until stopped: starts probes for new backends, stops those of
    /// removed ones, restarts those whose check settings changed.
    pub async fn run(self) {
        let mut changes = self.table.subscribe();
        let mut running: HashMap<(String, SocketAddr), Running> = HashMap::new();
        loop {
            let table = self.table.load_full();
            let mut wanted = HashMap::new();
            for pool in &table.pools {
                if pool.health.check == CheckKind::None {
                    continue;
                }
                for backend in &pool.backends {
                    wanted.insert(
                        (pool.name.clone(), backend.address),
                        (
                            CheckSettings {
                                spec: pool.health.clone(),
                                tls: pool.tls.clone(),
                                h2: pool.protocol.is_h2(),
                            },
                            backend.runtime.clone(),
                        ),
                    );
                }
            }
            running.retain(|key, task| {
                let keep = wanted
                    .get(key)
                    .is_some_and(|(settings, _)| *settings == task.settings);
                if !keep {
                    task.stop.cancel();
                }
                keep
            });
            for (key, (settings, runtime)) in wanted {
                if running.contains_key(&key) {
                    continue;
                }
                let stop = self.stop.child_token();
                tokio::spawn(check_loop(
                    key.0.clone(),
                    settings.clone(),
                    runtime,
                    self.source,
                    self.transitions.clone(),
                    stop.clone(),
                ));
                running.insert(key, Running { settings, stop });
            }
            tokio::select! {
                changed = changes.changed() => if changed.is_err() { break },
                () = self.stop.cancelled() => break,
            }
        }
        for task in running.into_values() {
            task.stop.cancel();
        }
    }
}

/// Whether two pools' TLS clients are the same one (a pool compiled again
/// gets a new one).
fn same_tls(a: &Option<Arc<BackendTls>>, b: &Option<Arc<BackendTls>>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => Arc::ptr_eq(a, b),
        _ => false,
    }
}

/// Probes one backend every interval (with ±10 % jitter, and a random
/// first delay, so nodes do not probe in lockstep) until stopped.
async fn check_loop(
    pool: String,
    settings: CheckSettings,
    runtime: Arc<BackendRuntime>,
    source: Option<IpAddr>,
    transitions: mpsc::UnboundedSender<Transition>,
    stop: CancellationToken,
) {
    let CheckSettings { spec, tls, h2 } = settings;
    let interval = spec.interval_ms;
    let mut delay = Duration::from_millis(fastrand::u64(0..=interval / 2));
    loop {
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = stop.cancelled() => return,
        }
        let result = probe(&spec, runtime.address, source, tls.as_deref(), h2).await;
        if let Some(health) = runtime.record_check(result, spec.rise, spec.fall) {
            let _ = transitions.send(Transition {
                pool: pool.clone(),
                address: runtime.address,
                health,
            });
        }
        let jitter = interval / 10;
        delay = Duration::from_millis(interval - jitter + fastrand::u64(0..=2 * jitter));
    }
}
