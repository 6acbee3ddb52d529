//! The cluster as one node sees it (`ctl status`, `/status`).

use std::collections::{BTreeMap, BTreeSet};

use openraft::ServerState;
use serde::Serialize;

use super::ClusterControl;
use crate::raft::NodeId;

impl ClusterControl {
    /// The cluster as this node sees it.
    pub fn status(&self) -> ClusterStatus {
        let metrics = self.raft.metrics().borrow().clone();
        let membership = metrics.membership_config.membership().clone();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let matched: BTreeMap<NodeId, Option<u64>> = metrics
            .replication
            .as_ref()
            .map(|r| {
                r.iter()
                    .map(|(id, log)| (*id, log.map(|l| l.index)))
                    .collect()
            })
            .unwrap_or_default();
        let nodes = membership
            .nodes()
            .map(|(id, node)| NodeStatus {
                id: *id,
                raft_addr: node.raft_addr.clone(),
                api_addr: node.api_addr.clone(),
                voter: voters.contains(id),
                matched_index: matched.get(id).copied().flatten(),
            })
            .collect();
        ClusterStatus {
            id: self.id,
            role: role_name(metrics.state),
            leader: metrics.current_leader,
            term: metrics.current_term,
            last_log_index: metrics.last_log_index.unwrap_or(0),
            applied_index: metrics.last_applied.map_or(0, |l| l.index),
            config_version: self.served.version(),
            leader_confirmed: metrics.state == ServerState::Leader && self.vip.leader_confirmed(),
            nodes,
        }
    }
}

/// The cluster as one node sees it.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterStatus {
    /// The node that answers.
    pub id: NodeId,
    /// Its Raft role.
    pub role: &'static str,
    /// The leader it knows.
    pub leader: Option<NodeId>,
    /// Its term.
    pub term: u64,
    /// Its last log index.
    pub last_log_index: u64,
    /// Its last applied index.
    pub applied_index: u64,
    /// The configuration version it serves.
    pub config_version: u64,
    /// It leads within a lease a quorum confirmed (a node frozen or cut
    /// off whose Raft role still says leader does not).
    pub leader_confirmed: bool,
    /// Every member.
    pub nodes: Vec<NodeStatus>,
}

/// One member.
#[derive(Debug, Clone, Serialize)]
pub struct NodeStatus {
    /// Node id.
    pub id: NodeId,
    /// Peer address.
    pub raft_addr: String,
    /// API address, if known.
    pub api_addr: String,
    /// Voter (else learner).
    pub voter: bool,
    /// Replicated index as the leader sees it.
    pub matched_index: Option<u64>,
}

/// The name of a Raft role as `/status` and the API spell it.
pub fn role_name(state: ServerState) -> &'static str {
    match state {
        ServerState::Leader => "leader",
        ServerState::Follower => "follower",
        ServerState::Learner => "learner",
        ServerState::Candidate => "candidate",
        ServerState::Shutdown => "shutdown",
    }
}
