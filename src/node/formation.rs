//! Forming the cluster on first start, and following the node's role.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use openraft::ServerState;
use tokio_util::sync::CancellationToken;

use super::NodeError;
use crate::admin::AdminState;
use crate::config::ClusterSpec;
use crate::control::ClusterControl;
use crate::events::Event;
use crate::raft::{ClusterNode, NodeId, Raft, RaftRequest};
use crate::state::certificates::StoredCertificate;

/// Forms the cluster on first start: the member with the lowest id
/// initializes Raft with every member; the others wait to be contacted.
/// A node with Raft state on disk never initializes again.
pub(super) async fn bootstrap(
    raft: &Raft,
    id: NodeId,
    members: &BTreeMap<NodeId, String>,
) -> Result<(), NodeError> {
    let initialized = raft
        .is_initialized()
        .await
        .map_err(|e| NodeError::Raft(e.to_string()))?;
    if initialized {
        tracing::info!("raft state found on disk; resuming");
        return Ok(());
    }
    if !members.contains_key(&id) {
        tracing::info!(
            "not a first member; waiting to be added with `raftlb ctl cluster add-node`"
        );
        return Ok(());
    }
    if members.keys().next() != Some(&id) {
        tracing::info!("fresh node; waiting for the lowest-id member to form the cluster");
        return Ok(());
    }
    let nodes: BTreeMap<NodeId, ClusterNode> = members
        .iter()
        .map(|(id, addr)| {
            (
                *id,
                ClusterNode {
                    raft_addr: addr.clone(),
                    api_addr: String::new(),
                },
            )
        })
        .collect();
    tracing::info!(members = nodes.len(), "forming the cluster");
    raft.initialize(nodes)
        .await
        .map_err(|e| NodeError::Raft(format!("initialize: {e}")))
}

/// Follows the node's Raft role: logs leader changes, marks the node ready,
/// and as leader commits the seed configuration if none is committed yet,
/// then the seed's `[[certificate]]` entries.
pub(super) async fn watch_role(
    control: Arc<ClusterControl>,
    seed: Option<ClusterSpec>,
    seed_certificates: Vec<StoredCertificate>,
    admin: Arc<AdminState>,
    stop: CancellationToken,
) {
    let mut metrics = control.raft.metrics();
    let mut last_leader = None;
    loop {
        let (state, leader, term, in_cluster, fatal) = {
            let m = metrics.borrow_and_update();
            let in_cluster = m
                .membership_config
                .membership()
                .get_node(&control.id)
                .is_some();
            let fatal = m.running_state.as_ref().err().cloned();
            (m.state, m.current_leader, m.current_term, in_cluster, fatal)
        };
        if let Some(fatal) = fatal {
            match fatal {
                openraft::error::Fatal::Stopped => tracing::info!("raft stopped"),
                other => tracing::error!(fatal = %other, "raft failed"),
            }
            admin.ready.store(false, Ordering::Release);
            return;
        }
        if leader != last_leader {
            control
                .served
                .events()
                .publish(Event::Leader { leader, term });
            tracing::info!(
                ?leader,
                term,
                role = crate::control::role_name(state),
                "leader changed"
            );
            last_leader = leader;
        }
        // The applied version: the table may not be compiled yet.
        let version = control.served.state().version;
        if state == ServerState::Leader
            && version == 0
            && let Some(spec) = &seed
        {
            let seed = RaftRequest::Bootstrap {
                spec: spec.clone(),
                origin: crate::state::Origin {
                    time_ms: crate::control::unix_millis(),
                    caller: format!("bootstrap by node {}", control.id),
                },
            };
            match control.raft.client_write(seed).await {
                Ok(response) => {
                    tracing::info!(result = ?response.data.result, "seed configuration committed");
                    commit_seed_certificates(&control, &seed_certificates).await;
                }
                Err(error) => tracing::warn!(%error, "seed configuration not committed yet"),
            }
        }
        let ready =
            leader.is_some() && in_cluster && (seed.is_none() || control.served.version() > 0);
        admin.ready.store(ready, Ordering::Release);
        tokio::select! {
            changed = metrics.changed() => if changed.is_err() { return },
            // The applied version changes without a metrics change only
            // through apply, which also moves `last_applied`; poll slowly
            // anyway so readiness never sticks.
            () = tokio::time::sleep(Duration::from_millis(200)) => {}
            () = stop.cancelled() => return,
        }
    }
}

/// The seed's certificates, each added once (a request id per entry, so a
/// retry or a second seeding node adds nothing twice).
async fn commit_seed_certificates(control: &ClusterControl, certificates: &[StoredCertificate]) {
    for certificate in certificates {
        let name = certificate.name.clone();
        let command = crate::state::Command::PutCertificate {
            certificate: certificate.clone(),
            replace: false,
        };
        let caller = format!("bootstrap by node {}", control.id);
        match control
            .write(command, caller, Some(format!("seed-certificate-{name}")))
            .await
        {
            Ok(_) => tracing::info!(certificate = %name, "seed certificate committed"),
            Err(error) => {
                tracing::warn!(certificate = %name, %error, "seed certificate not committed")
            }
        }
    }
}
