//! `ctl node drain|undrain` (`[vip] mode = "bgp"`): a node withdraws its
//! announcement, or takes it up again, on the operator's word.

use std::time::Duration;

use super::{ClusterControl, ControlError, PeerAnswer, PeerQuery};
use crate::raft::NodeId;

/// How long the target node has to answer.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

impl ClusterControl {
    /// Drains node `id` (or stops draining it); whether it drains now.
    pub async fn drain_node(&self, id: NodeId, drain: bool) -> Result<bool, ControlError> {
        let not_bgp =
            || ControlError::BadRequest(format!("node {id} is not in [vip] mode = \"bgp\""));
        if id == self.id {
            return self.vip.drain_bgp(drain).ok_or_else(not_bgp);
        }
        let raft_addr = self
            .peer_address(id)
            .ok_or_else(|| ControlError::BadRequest(format!("no node {id} in the cluster")))?;
        match self
            .ask_within(&raft_addr, &PeerQuery::Drain { drain }, DRAIN_TIMEOUT)
            .await
        {
            Some(PeerAnswer::Draining(Some(draining))) => Ok(draining),
            Some(PeerAnswer::Draining(None)) => Err(not_bgp()),
            _ => Err(ControlError::Unavailable(format!(
                "node {id} ({raft_addr}) did not answer"
            ))),
        }
    }
}
