//! Membership changes, run on the leader: add a node (learner, caught up,
//! then voter), remove one.

use std::collections::BTreeSet;
use std::time::Duration;

use openraft::ChangeMembers;
use openraft::error::{ChangeMembershipError, ClientWriteError, RaftError};

use super::{ClusterControl, ControlError, LeaderReply, write_error};
use crate::raft::{ClusterNode, NodeId};

impl ClusterControl {
    pub(super) async fn add_node(
        &self,
        id: NodeId,
        node: ClusterNode,
    ) -> Result<LeaderReply, ControlError> {
        let membership = self.raft.metrics().borrow().membership_config.clone();
        if membership.voter_ids().any(|v| v == id) {
            return Err(ControlError::BadRequest(format!(
                "node {id} is already a voter"
            )));
        }
        // Blocks until the learner has caught up with the log.
        self.retry_membership(|| self.raft.add_learner(id, node.clone(), true))
            .await?;
        let change = ChangeMembers::AddVoterIds(BTreeSet::from([id]));
        self.retry_membership(|| self.raft.change_membership(change.clone(), false))
            .await?;
        Ok(LeaderReply::Voters(self.voters()))
    }

    pub(super) async fn remove_node(&self, id: NodeId) -> Result<LeaderReply, ControlError> {
        let membership = self.raft.metrics().borrow().membership_config.clone();
        let is_voter = membership.voter_ids().any(|v| v == id);
        let is_learner = membership.membership().learner_ids().any(|l| l == id);
        let change = if is_voter {
            if membership.voter_ids().count() == 1 {
                return Err(ControlError::BadRequest(format!(
                    "node {id} is the last voter"
                )));
            }
            ChangeMembers::RemoveVoters(BTreeSet::from([id]))
        } else if is_learner {
            ChangeMembers::RemoveNodes(BTreeSet::from([id]))
        } else {
            return Err(ControlError::BadRequest(format!(
                "node {id} is not a member"
            )));
        };
        self.retry_membership(|| self.raft.change_membership(change.clone(), false))
            .await?;
        Ok(LeaderReply::Voters(self.voters()))
    }

    /// Retries a membership call while an earlier change is still in
    /// progress (openraft allows one at a time).
    async fn retry_membership<F, Fut>(&self, mut call: F) -> Result<(), ControlError>
    where
        F: FnMut() -> Fut,
        Fut: Future<
            Output = Result<
                openraft::raft::ClientWriteResponse<crate::raft::TypeConfig>,
                RaftError<NodeId, ClientWriteError<NodeId, ClusterNode>>,
            >,
        >,
    {
        loop {
            match call().await {
                Ok(_) => return Ok(()),
                Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(
                    ChangeMembershipError::InProgress(_),
                ))) => tokio::time::sleep(Duration::from_millis(50)).await,
                Err(error) => return Err(write_error(error)),
            }
        }
    }

    fn voters(&self) -> Vec<NodeId> {
        self.raft
            .metrics()
            .borrow()
            .membership_config
            .voter_ids()
            .collect()
    }
}
