//! The leader lease behind the VIP's fence: confirmed by the voters'
//! promises, not by openraft's leadership check.
//!
//! A leader holds the VIP until `lease` after it *started* its latest
//! confirmation that a quorum of voters (itself included) answered. Each
//! answer is a promise: for the minimum election timeout after it, the
//! voter casts no vote (for another node or for itself) and lets no
//! candidate through its pre-vote. Every election needs a quorum of votes,
//! every such quorum shares a voter with the confirming one, and that voter
//! refuses until the lease (shorter than the minimum by a heartbeat) has
//! run out: no other node is elected while the old leader may still hold
//! the VIP.
//!
//! On each node, a promise and a vote take turns (the election timer's
//! fence): a promise checks in openraft's core, in one step with
//! recording it, that the node still follows this leader's term (so a vote
//! already cast shows), and a vote waits for a promise being made and is
//! refused within one.
//!
//! A voter whose minimum election timeout is not longer than the lease it
//! is asked to promise refuses (nodes with different `[raft]` timing).
//!
//! What it does not cover: a graceful hand-over in `netlink` mode keeps
//! the VIP on the old leader, unconfirmed, until the successor holds it
//! (make before break, both alive; see `VipRole::hold_through_hand_over`);
//! and a lease is measured on the monotonic clock: a machine suspended,
//! or a virtual machine paused without its clock seeing it, resumes with
//! what was left of its lease, as in every lease-based fence.
//!
//! Why not openraft's `get_read_log_id`: it gives each follower one
//! heartbeat interval (30 ms by default) to answer. On a loaded 2-core
//! machine with one follower cut off, the other one's answer missed that
//! three times in a row, the 120 ms lease lapsed under a live leader, and
//! the VIP was released and taken again 60 ms later, failing requests. A
//! promise may take as long as the lease itself.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use openraft::ServerState;
use openraft::error::RaftError;
use openraft::raft::{VoteRequest, VoteResponse};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{ClusterControl, PeerAnswer, PeerQuery};
use crate::raft::NodeId;

/// How long past its gRPC deadline a detached promise request may run
/// (the peer ends the call; this only bounds a peer that never answers).
const DETACHED_MARGIN: Duration = Duration::from_millis(500);

impl ClusterControl {
    /// As leader: whether a quorum of voters, this node included, promised
    /// its lease within `within`. The requests run detached: one that is
    /// still out when the quorum is reached ends on its own, rather than
    /// being cancelled (every cancelled call resets an HTTP/2 stream, and
    /// a peer drops a connection that resets too many).
    pub async fn confirm_lease(self: &Arc<Self>, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        // Counted from here: a hand-over waiting for late messages to land
        // also waits for a confirmation about to send its promises.
        let _running = self.peer_rpcs.start();
        let (term, membership) = {
            let metrics = self.raft.metrics();
            let m = metrics.borrow();
            (
                m.vote.leader_id().term,
                m.membership_config.membership().clone(),
            )
        };
        // Bounded like the rest: a slow core must not make confirmations
        // queue up behind each other and send promises past their use.
        let started = Instant::now();
        let own = tokio::time::timeout_at(deadline, self.promise(term, self.id, within)).await;
        if !matches!(own, Ok(true)) {
            if own.is_err() {
                crate::warn_each_second!(
                    "lease own promise late",
                    lease_ms = within.as_millis() as u64,
                    "leader lease not confirmed: this node's own promise took the whole lease (its Raft core or the machine is that busy)"
                );
            }
            return false;
        }
        let own_ms = started.elapsed().as_millis() as u64;
        let mut promised = BTreeSet::from([self.id]);
        let (answered, mut answers) = mpsc::unbounded_channel();
        for id in membership.voter_ids().filter(|id| *id != self.id) {
            let Some(node) = membership.get_node(&id) else {
                continue;
            };
            let (control, raft_addr, answered) =
                (self.clone(), node.raft_addr.clone(), answered.clone());
            let running = self.peer_rpcs.start();
            tokio::spawn(async move {
                let _running = running;
                let query = PeerQuery::Lease {
                    term,
                    leader: control.id,
                    lease_ms: within.as_millis() as u64,
                };
                let left = deadline.saturating_duration_since(Instant::now());
                let answer = tokio::time::timeout(
                    left + DETACHED_MARGIN,
                    control.ask_within(&raft_addr, &query, left),
                )
                .await;
                let _ = answered.send((id, matches!(answer, Ok(Some(PeerAnswer::Promised(true))))));
            });
        }
        drop(answered);
        loop {
            if has_quorum(membership.get_joint_config(), &promised) {
                return true;
            }
            match tokio::time::timeout_at(deadline, answers.recv()).await {
                Ok(Some((id, true))) => {
                    promised.insert(id);
                }
                Ok(Some((_, false))) => {}
                Ok(None) | Err(_) => {
                    crate::warn_each_second!(
                        "lease quorum late",
                        lease_ms = within.as_millis() as u64,
                        own_promise_ms = own_ms,
                        promised = ?promised,
                        "leader lease not confirmed: too few voters promised within the lease"
                    );
                    return false;
                }
            }
        }
    }

    /// Promises `leader`'s `lease` of `term` (see the module notes): true,
    /// and no vote for the minimum election timeout from now, if this node
    /// follows that leader in that term (or is it, and still leads), and
    /// its minimum election timeout is longer than the lease (nodes with
    /// different `[raft]` timing: a promise shorter than the lease would
    /// not fence it).
    pub async fn promise(&self, term: u64, leader: NodeId, lease: Duration) -> bool {
        if lease >= self.election.min() {
            crate::warn_limited!(
                "lease longer than promise",
                lease_ms = lease.as_millis() as u64,
                election_timeout_min_ms = self.election.min().as_millis() as u64,
                "a leader's lease is not shorter than this node's minimum election timeout: not promised; give the nodes the same [raft] timing"
            );
            return false;
        }
        // A leader of an older term (one healed from a partition, whose
        // queued requests all land at once) is refused without waiting
        // for the fence: openraft's metrics never run ahead of its core,
        // so a newer term there is newer in the core too. Seen: such a
        // burst held a live leader's promises behind it past its lease.
        if self.raft.metrics().borrow().current_term > term {
            return false;
        }
        let asked = Instant::now();
        let _fence = self.election.fence().await;
        let fenced = Instant::now();
        let own = self.id;
        let view = self
            .raft
            .with_raft_state(move |state| {
                let vote = state.vote_ref();
                let follows = vote.is_committed()
                    && vote.leader_id().term == term
                    && vote.leader_id().voted_for() == Some(leader)
                    && (leader != own || state.server_state == ServerState::Leader);
                (follows, format!("{vote} {:?}", state.server_state))
            })
            .await;
        let follows = matches!(view, Ok((true, _)));
        if leader == own && !follows {
            // A leader that refuses itself lets its lease lapse with no
            // other warning (the netns drill's remaining failure).
            crate::warn_each_second!(
                "lease own promise refused",
                term,
                core = match &view {
                    Ok((_, state)) => state.as_str(),
                    Err(_) => "no answer from the Raft core",
                },
                "leader lease not confirmed: this node's own Raft core no longer says it leads in this term"
            );
        }
        if asked.elapsed() > lease / 2 {
            crate::warn_each_second!(
                "promise slow",
                fence_wait_ms = (fenced - asked).as_millis() as u64,
                raft_core_ms = fenced.elapsed().as_millis() as u64,
                lease_ms = lease.as_millis() as u64,
                leader,
                "a lease promise took more than half the lease"
            );
        }
        if follows {
            self.election.heard_from_leader();
        }
        follows
    }

    /// Campaigns now (the leader hands over to this node), once any
    /// promise this node made has run out (within the minimum election
    /// timeout); not again if it is already a candidate or the leader.
    /// Whether it campaigns.
    pub async fn campaign(&self) -> bool {
        let limit = Instant::now() + self.election.min() + Duration::from_millis(20);
        loop {
            let fence = self.election.fence().await;
            // Its own timer may have gone first (it is the one node allowed
            // to); as leader it promises itself its lease.
            let state = self.raft.metrics().borrow().state;
            if matches!(state, ServerState::Candidate | ServerState::Leader) {
                return true;
            }
            let left = self.election.promise_left();
            if left.is_zero() {
                // This node's own timer must not campaign again on top.
                self.election.campaigning();
                let elected = self.raft.trigger().elect().await;
                drop(fence);
                if let Err(error) = &elected {
                    tracing::warn!(%error, "cannot campaign");
                }
                return elected.is_ok();
            }
            drop(fence);
            if Instant::now() + left > limit {
                tracing::warn!("cannot campaign: a leader's lease was promised lately");
                return false;
            }
            // A late heartbeat or promise landed after the hand-over began.
            tokio::time::sleep(left).await;
        }
    }

    /// Hands a candidate's vote request to openraft, unless this node
    /// promised a leader's lease less than the minimum election timeout
    /// ago: then it is refused here, with this node's vote, and its
    /// committed log id for its log (openraft keeps the last one to
    /// itself; a candidate that lacks even that cannot win, and learns so).
    pub async fn vote(
        &self,
        request: VoteRequest<NodeId>,
    ) -> Result<VoteResponse<NodeId>, RaftError<NodeId>> {
        let _fence = self.election.fence().await;
        if self.election.promised() {
            let (vote, last_log_id) = self
                .raft
                .with_raft_state(|state| (*state.vote_ref(), state.committed))
                .await
                .map_err(RaftError::Fatal)?;
            tracing::debug!(
                candidate = request.vote.leader_id().voted_for(),
                "vote refused: a leader's lease was promised lately"
            );
            return Ok(VoteResponse {
                vote,
                vote_granted: false,
                last_log_id,
            });
        }
        let answer = self.raft.vote(request).await;
        if matches!(&answer, Ok(answer) if answer.vote_granted) {
            self.election.reset();
        }
        answer
    }
}

/// Whether `promised` holds a majority of every configuration (one, or
/// two during a membership change).
fn has_quorum(configs: &[BTreeSet<NodeId>], promised: &BTreeSet<NodeId>) -> bool {
    configs
        .iter()
        .all(|voters| 2 * voters.intersection(promised).count() > voters.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quorum_is_a_majority_of_every_configuration() {
        let set = |ids: &[NodeId]| ids.iter().copied().collect::<BTreeSet<_>>();
        let three = vec![set(&[1, 2, 3])];
        assert!(!has_quorum(&three, &set(&[1])));
        assert!(has_quorum(&three, &set(&[1, 3])));
        assert!(!has_quorum(&[set(&[1, 2, 3, 4])], &set(&[1, 2])));
        // Joint: 1,2 is a majority of the old set but not of the new one.
        let joint = vec![set(&[1, 2, 3]), set(&[1, 4, 5])];
        assert!(!has_quorum(&joint, &set(&[1, 2])));
        assert!(has_quorum(&joint, &set(&[1, 2, 4])));
    }
}
