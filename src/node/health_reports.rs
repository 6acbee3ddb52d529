//! This node's health views, carried to the leader.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::CheckKind;
use crate::control::{ClusterControl, LeaderRequest};
use crate::health::Transition;
use crate::routing::Health;

/// How often the leader looks again at health verdicts delayed by damping.
const HEALTH_REJUDGE: Duration = Duration::from_millis(200);
/// Longest one health report may take to reach the leader; a report that
/// does not arrive in time is sent again with the next change or leader.
const HEALTH_REPORT_TIMEOUT: Duration = Duration::from_secs(2);

/// Sends this node's health transitions to the leader, and its whole view
/// again whenever the leader changes (a new leader tallies afresh). As
/// leader, also commits verdicts that damping delayed.
///
/// Reports go one at a time over the node's cached peer channel. What
/// arrives meanwhile is coalesced per backend (only the latest view is
/// sent), so a flapping backend or a flood of transitions costs at most one
/// pending report per backend, never a queue that grows.
pub(super) async fn report_health(
    control: Arc<ClusterControl>,
    mut transitions: tokio::sync::mpsc::UnboundedReceiver<Transition>,
    stop: CancellationToken,
) {
    type Delivery = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;
    let mut metrics = control.raft.metrics();
    let mut leader = None;
    let mut rejudge = tokio::time::interval(HEALTH_REJUDGE);
    let mut pending: BTreeMap<(String, std::net::SocketAddr), bool> = BTreeMap::new();
    let mut delivery: Option<Delivery> = None;
    loop {
        if delivery.is_none()
            && let Some(((pool, address), up)) = pending.pop_first()
        {
            delivery = Some(Box::pin(send_report(control.clone(), pool, address, up)));
        }
        let delivered = async {
            match delivery.as_mut() {
                Some(delivery) => delivery.await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = delivered => delivery = None,
            transition = transitions.recv() => {
                let Some(t) = transition else { return };
                if t.health != Health::Unknown {
                    pending.insert((t.pool, t.address), t.health == Health::Up);
                }
            }
            changed = metrics.changed() => {
                if changed.is_err() {
                    return;
                }
                let now = metrics.borrow_and_update().current_leader;
                if now.is_some() && now != leader {
                    let table = control.served.table().load_full();
                    for pool in table.pools.iter().filter(|p| p.health.check != CheckKind::None) {
                        for backend in &pool.backends {
                            let health = backend.runtime.health();
                            if health != Health::Unknown {
                                pending.insert((pool.name.clone(), backend.address), health == Health::Up);
                            }
                        }
                    }
                }
                leader = now;
            }
            _ = rejudge.tick() => {
                if leader == Some(control.id) {
                    control.judge_deferred().await;
                }
            }
            () = stop.cancelled() => return,
        }
    }
}

async fn send_report(
    control: Arc<ClusterControl>,
    pool: String,
    address: std::net::SocketAddr,
    up: bool,
) {
    let report = LeaderRequest::HealthReport {
        node: control.id,
        pool,
        address,
        up,
    };
    match tokio::time::timeout(HEALTH_REPORT_TIMEOUT, control.execute(report)).await {
        Ok(Ok(_)) => {}
        Ok(Err(error)) => tracing::debug!(%error, "health report not delivered"),
        Err(_) => tracing::debug!("health report not delivered in time"),
    }
}
