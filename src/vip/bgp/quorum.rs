//! Whether this node reaches a quorum of voters: the BGP mode's sign that
//! it is on the majority's side of any partition.
//!
//! Every node asks every other voter for a sign of life every heartbeat,
//! each peer on a task of its own (a dead one holds up nobody else's), and
//! counts a voter as reached for a lease after it asked and was answered.
//! It does not depend on a leader: while a leader dies or hands over and
//! the others elect the next, they still reach each other and keep
//! announcing; a node cut off from the others stops within a lease.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use crate::control::{ClusterControl, PeerQuery};
use crate::raft::NodeId;

/// How often the set of voters is looked at again.
const MEMBERSHIP_CHECK: Duration = Duration::from_secs(1);

/// When each voter last answered (from when it was asked).
#[derive(Default)]
pub struct QuorumWatch {
    answered: Mutex<HashMap<NodeId, Instant>>,
}

impl QuorumWatch {
    /// Whether this node and the voters that answered within `within` are
    /// a majority of every configuration (one, or two while membership
    /// changes).
    pub fn reaches_quorum(&self, control: &ClusterControl, within: Duration) -> bool {
        let membership = membership(control);
        let answered = self.answered.lock().unwrap_or_else(|e| e.into_inner());
        let mut reached: BTreeSet<NodeId> = answered
            .iter()
            .filter(|(_, at)| at.elapsed() < within)
            .map(|(id, _)| *id)
            .collect();
        reached.insert(control.id);
        // A node not (or no longer) in the cluster is in no quorum; nor is
        // one that knows no configuration yet.
        let configs = membership.get_joint_config();
        membership.get_node(&control.id).is_some()
            && !configs.is_empty()
            && configs.iter().all(|voters| {
                !voters.is_empty() && 2 * voters.intersection(&reached).count() > voters.len()
            })
    }

    /// Asks every other voter every `every` until `stop`, each answer
    /// waited for at most `within`.
    pub async fn run(
        self: Arc<Self>,
        control: Arc<ClusterControl>,
        every: Duration,
        within: Duration,
        stop: CancellationToken,
    ) {
        let mut probes: HashMap<(NodeId, String), AbortOnDropHandle<()>> = HashMap::new();
        let mut check = tokio::time::interval(MEMBERSHIP_CHECK);
        loop {
            tokio::select! {
                _ = check.tick() => {}
                () = stop.cancelled() => return,
            }
            let membership = membership(&control);
            let voters: HashSet<(NodeId, String)> = membership
                .voter_ids()
                .filter(|id| *id != control.id)
                .filter_map(|id| Some((id, membership.get_node(&id)?.raft_addr.clone())))
                .collect();
            probes.retain(|peer, _| voters.contains(peer));
            for peer in voters {
                if probes.contains_key(&peer) {
                    continue;
                }
                let probe = self
                    .clone()
                    .probe(control.clone(), peer.clone(), every, within);
                probes.insert(peer, AbortOnDropHandle::new(tokio::spawn(probe)));
            }
        }
    }

    /// Asks one voter every `every`. Any answer is a sign of life; the
    /// question is the cheapest there is (does it hold the VIP).
    async fn probe(
        self: Arc<Self>,
        control: Arc<ClusterControl>,
        (id, raft_addr): (NodeId, String),
        every: Duration,
        within: Duration,
    ) {
        loop {
            let asked = Instant::now();
            if control
                .ask_within(&raft_addr, &PeerQuery::Vip, within)
                .await
                .is_some()
            {
                self.answered
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(id, asked);
            }
            tokio::time::sleep_until(asked + every).await;
        }
    }
}

/// The cluster's membership now.
fn membership(control: &ClusterControl) -> openraft::Membership<NodeId, crate::raft::ClusterNode> {
    control
        .raft
        .metrics()
        .borrow()
        .membership_config
        .membership()
        .clone()
}
