//! Leadership transfer (`raftlb ctl cluster transfer-leader [ID]`).
//!
//! openraft 0.9 has no transfer; the leader makes one: it releases the VIP
//! and stops both its heartbeats and its VIP confirmations, waits until the
//! voters' lease (the minimum election timeout) has run out since its last
//! message, and asks the chosen follower to campaign. The follower wins
//! with the other voters' votes, the old leader steps down on seeing its
//! higher term, and heartbeats are switched back on for whenever this node
//! leads again.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use super::{ClusterControl, ControlError, LeaderReply};
use crate::raft::NodeId;

/// How long the new leader may take to be elected once asked.
const ELECTION_WAIT: Duration = Duration::from_secs(2);
/// How long the target may take to catch up before the hand-over starts.
/// With [`ELECTION_WAIT`] and the vote lease, a transfer ends well within
/// the control API's operation timeout.
const CATCH_UP_WAIT: Duration = Duration::from_millis(1500);

/// Longest wait for late heartbeats to land before the vote lease starts.
const LATE_RPCS_WAIT: Duration = Duration::from_secs(1);

/// How long, after the vote lease, the other voters leave the election to
/// the target; after that any of them may campaign again (the target may
/// have failed).
const HAND_OVER_WINDOW: Duration = Duration::from_millis(700);

/// Turns heartbeats and the VIP role back on when a transfer ends, however
/// it ends: success, error, or its caller gone (a dropped future runs no
/// code after its last `.await`, but it does run this).
struct ResumeOnDrop<'a> {
    control: &'a ClusterControl,
}

impl Drop for ResumeOnDrop<'_> {
    fn drop(&mut self) {
        self.control.raft.runtime_config().heartbeat(true);
        self.control.vip.resume();
    }
}

impl ClusterControl {
    /// As leader: hands leadership (and so the VIP) to `target`, or to the
    /// most caught-up follower. With no `target`, any other node that ends
    /// up leading is success (the operator asked only that it move).
    pub async fn transfer_leadership(
        &self,
        target: Option<NodeId>,
    ) -> Result<LeaderReply, ControlError> {
        self.transfer(target, false).await
    }

    /// Hands leadership over as [`ClusterControl::transfer_leadership`]
    /// does; with `keep_vip`, the VIP is not released here first (the
    /// caller made the role hold it through the hand-over).
    pub async fn transfer(
        &self,
        target: Option<NodeId>,
        keep_vip: bool,
    ) -> Result<LeaderReply, ControlError> {
        let started = Instant::now();
        let metrics = self.raft.metrics().borrow().clone();
        if metrics.current_leader != Some(self.id) {
            return Err(ControlError::NotLeader);
        }
        let voters: BTreeSet<NodeId> = metrics.membership_config.voter_ids().collect();
        let named = target.is_some();
        let target = match target {
            Some(id) if id == self.id => {
                return Ok(LeaderReply::Transferred {
                    from: self.id,
                    to: self.id,
                    elapsed_ms: 0,
                });
            }
            Some(id) if !voters.contains(&id) => {
                return Err(ControlError::BadRequest(format!(
                    "node {id} is not a voter of the cluster (voters: {voters:?})"
                )));
            }
            Some(id) => id,
            None => {
                self.most_caught_up_follower()
                    .ok_or_else(|| {
                        ControlError::Membership("no follower to hand leadership to".into())
                    })?
                    .0
            }
        };
        let raft_addr = self
            .peer_address(target)
            .ok_or_else(|| ControlError::BadRequest(format!("node {target} is not a member")))?;
        self.wait_caught_up(target).await?;

        tracing::info!(target, "transferring leadership");
        let resume = ResumeOnDrop { control: self };
        // The others keep still while the target takes over, so the
        // leadership goes where it was asked, not to whichever follower's
        // timer fires first once the heartbeats stop.
        self.announce_hand_over(target, self.vote_lease + HAND_OVER_WINDOW)
            .await;
        if !keep_vip {
            self.vip.pause("transferring leadership").await;
        }
        self.raft.runtime_config().heartbeat(false);
        // A heartbeat still on its way would renew a voter's lease when it
        // lands: let those end first.
        self.peer_rpcs.drained(LATE_RPCS_WAIT).await;
        tokio::time::sleep(self.vote_lease + Duration::from_millis(10)).await;
        let asked = self.ask_to_campaign(&raft_addr).await;
        let deadline = Instant::now() + ELECTION_WAIT;
        let mut metrics = self.raft.metrics();
        let elected = asked
            && loop {
                let leader = metrics.borrow_and_update().current_leader;
                if leader.is_some() && leader != Some(self.id) {
                    break true;
                }
                if tokio::time::timeout_at(deadline.into(), metrics.changed())
                    .await
                    .is_err()
                {
                    break false;
                }
            };
        // Whatever happened, this node heartbeats again whenever it leads.
        drop(resume);
        let leader = self.raft.metrics().borrow().current_leader;
        if !elected {
            return Err(ControlError::Unavailable(format!(
                "node {target} did not take over (asked: {asked}); leader is {leader:?}"
            )));
        }
        let to = match leader {
            Some(leader) if leader == target => leader,
            // Nobody was named: leadership left this node, as asked (on a
            // loaded machine another follower's campaign can come first).
            Some(leader) if !named && leader != self.id => {
                tracing::info!(
                    leader,
                    chosen = target,
                    "leadership went to another follower than the one chosen"
                );
                leader
            }
            _ => {
                return Err(ControlError::Unavailable(format!(
                    "leadership went to node {} instead of node {target}",
                    leader.map_or("none".to_string(), |l| l.to_string())
                )));
            }
        };
        Ok(LeaderReply::Transferred {
            from: self.id,
            to,
            elapsed_ms: started.elapsed().as_millis() as u64,
        })
    }

    /// Waits until `target` has every entry this leader has.
    async fn wait_caught_up(&self, target: NodeId) -> Result<(), ControlError> {
        let deadline = Instant::now() + CATCH_UP_WAIT;
        loop {
            let metrics = self.raft.metrics().borrow().clone();
            let matched = metrics
                .replication
                .as_ref()
                .and_then(|r| r.get(&target).copied().flatten())
                .map(|l| l.index);
            if matched.is_some() && matched == metrics.last_log_index {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(ControlError::Unavailable(format!(
                    "node {target} has not caught up (matched {matched:?} of {:?})",
                    metrics.last_log_index
                )));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// As leader about to stop: the follower with the most of the log, to
    /// hand leadership to.
    pub fn most_caught_up_follower(&self) -> Option<(NodeId, String)> {
        let metrics = self.raft.metrics().borrow().clone();
        if metrics.current_leader != Some(self.id) {
            return None;
        }
        let membership = metrics.membership_config.clone();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let (id, _) = metrics
            .replication
            .as_ref()?
            .iter()
            .filter(|(id, _)| **id != self.id && voters.contains(id))
            .max_by_key(|(_, matched)| matched.map(|l| l.index))?;
        let node = membership.membership().get_node(id)?;
        Some((*id, node.raft_addr.clone()))
    }
}
