//! When a follower campaigns.
//!
//! openraft 0.9 draws each node's election timeout once, at start-up, and
//! only lets a follower campaign after its *leader lease* (the configured
//! maximum election timeout) plus that fixed timeout. Two followers that
//! drew close values split their votes again and again: in the kill drill
//! that was three split terms and 1.8 s without a leader. raftlb turns
//! openraft's own timer off (`enable_elect = false`) and runs this one:
//!
//! - a follower campaigns a fresh random time between `election_timeout_min`
//!   and `election_timeout_max` after it last heard from a leader (an
//!   AppendEntries or snapshot chunk it accepted), or after it granted a
//!   vote or campaigned itself;
//! - voters still refuse any candidate until `election_timeout_min` has
//!   passed since their own last heartbeat (openraft's lease, which
//!   [`openraft_timing`] sets to the minimum), so a follower that merely
//!   missed a few heartbeats cannot depose a live leader, and the VIP lease
//!   (shorter than the minimum) keeps its guarantee;
//! - the timer is also the node's *fence*: a promise of a leader's lease
//!   ([`crate::control`]'s `lease`), a vote and a campaign take turns
//!   through [`ElectionTimer::fence`], and no vote or campaign happens
//!   within the minimum election timeout of a promise. That counts from
//!   start-up too, since a promise does not survive a restart.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::ServerState;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::NodeId;
use crate::config::RaftTiming;
use crate::control::{ClusterControl, PreVoteAnswer};

/// openraft's (min, max) election timeouts for raftlb's `[raft]` timing.
/// openraft's own timer is off; it uses the maximum only as the time voters
/// refuse other candidates after a leader's last heartbeat, which must be
/// raftlb's minimum.
pub fn openraft_timing(timing: &RaftTiming) -> (u64, u64) {
    (
        timing.election_timeout_min_ms - 1,
        timing.election_timeout_min_ms,
    )
}

/// The follower's election timer, fed by the peer service and network.
pub struct ElectionTimer {
    last: Mutex<Instant>,
    /// The last sign of a live leader: a heartbeat, or a lease promised.
    leader_contact: Mutex<Option<Instant>>,
    /// Taken by a promise, a vote and a campaign, one at a time.
    fence: tokio::sync::Mutex<()>,
    /// When this node last campaigned.
    campaigned: Mutex<Option<Instant>>,
    hand_over: Mutex<Option<(NodeId, Instant)>>,
    /// This node is running its own pre-vote round.
    asking: AtomicBool,
    /// During that round it let another candidate campaign.
    yielded: AtomicBool,
    id: NodeId,
    min: Duration,
    max: Duration,
}

impl ElectionTimer {
    /// Node `id`'s timer, drawing each timeout between `timing`'s minimum
    /// and maximum.
    pub fn new(id: NodeId, timing: &RaftTiming) -> Self {
        let now = Instant::now();
        ElectionTimer {
            last: Mutex::new(now),
            // A promise made before a restart is forgotten: keep it anyway.
            leader_contact: Mutex::new(Some(now)),
            fence: tokio::sync::Mutex::new(()),
            campaigned: Mutex::new(None),
            asking: AtomicBool::new(false),
            yielded: AtomicBool::new(false),
            hand_over: Mutex::new(None),
            id,
            min: Duration::from_millis(timing.election_timeout_min_ms),
            max: Duration::from_millis(timing.election_timeout_max_ms),
        }
    }

    /// This node granted a vote (or campaigned): start over.
    pub fn reset(&self) {
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
    }

    /// The leader's AppendEntries or snapshot chunk was accepted.
    pub fn heard_from_leader(&self) {
        *self
            .leader_contact
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        self.reset();
    }

    /// Waits for this node's turn to promise, vote or campaign.
    pub async fn fence(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.fence.lock().await
    }

    /// Whether a leader was heard from, or its lease promised, less than
    /// the minimum election timeout ago: no vote and no campaign now.
    pub fn promised(&self) -> bool {
        !self.promise_left().is_zero()
    }

    /// How long the last promise (or sign of a leader) still binds.
    pub fn promise_left(&self) -> Duration {
        self.leader_contact
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .map_or(Duration::ZERO, |at| self.min.saturating_sub(at.elapsed()))
    }

    /// This node campaigns now (its own timer, or asked by a leader
    /// handing over): its timer starts over.
    pub fn campaigning(&self) {
        *self.campaigned.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        self.reset();
    }

    /// Whether this node campaigned less than the minimum election timeout
    /// ago. A candidate refuses pre-votes only that long: openraft's own
    /// timer is off, so a candidate that lost stays one until another
    /// node wins, and refusing for good would leave nobody to win (seen:
    /// 10 s without a leader in the rolling-restart drill).
    pub fn campaigned_recently(&self) -> bool {
        self.campaigned
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some_and(|at| at.elapsed() < self.min)
    }

    /// The minimum election timeout: how long a promise binds.
    pub fn min(&self) -> Duration {
        self.min
    }

    /// The pre-vote: whether this node would let a candidate whose log
    /// reaches `candidate_last` campaign. Refused while this node leads or
    /// when the candidate has less of the log; not yet while this node has
    /// heard from a leader within the minimum election timeout (the leader
    /// may be alive: a restarted or partitioned node must not depose it).
    pub fn pre_vote(
        &self,
        is_leader: bool,
        candidate: Option<NodeId>,
        candidate_last: Option<u64>,
        own_last: Option<u64>,
    ) -> PreVoteAnswer {
        if is_leader || candidate_last < own_last {
            return PreVoteAnswer::Refused;
        }
        if let Some(target) = self.handing_over_to()
            && candidate != Some(target)
        {
            // The leader is handing over to another node: only that one.
            return PreVoteAnswer::Refused;
        }
        let contact = *self
            .leader_contact
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        match contact.map(|at| at.elapsed()) {
            Some(age) if age < self.min => PreVoteAnswer::Later {
                in_ms: (self.min - age).as_millis() as u64 + 1,
            },
            _ if self.asking.load(Ordering::Acquire) => {
                // Two followers whose timers ran out together would both
                // campaign, and the later one's higher term deposes the
                // leader the first has just become (seen: 235 ms more
                // without a leader). Between two equal logs the higher id
                // goes; a node that lets another go stands down itself.
                if candidate_last == own_last && candidate.is_none_or(|c| c < self.id) {
                    PreVoteAnswer::Refused
                } else {
                    self.yielded.store(true, Ordering::Release);
                    PreVoteAnswer::Granted
                }
            }
            _ => PreVoteAnswer::Granted,
        }
    }

    /// Marks this node's own pre-vote round (until it is a candidate) as
    /// begun (`true`) or over; whether it let another candidate campaign
    /// meanwhile.
    fn asking(&self, asking: bool) -> bool {
        if asking {
            self.yielded.store(false, Ordering::Release);
        }
        self.asking.store(asking, Ordering::Release);
        self.yielded.load(Ordering::Acquire)
    }

    /// The leader hands leadership to `target` within `within`: until then
    /// this node campaigns only if it is the target, and lets no other
    /// candidate through its pre-vote.
    pub fn hand_over(&self, target: NodeId, within: Duration) {
        *self.hand_over.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((target, Instant::now() + within));
    }

    /// The node a hand-over in progress goes to.
    fn handing_over_to(&self) -> Option<NodeId> {
        let mut hand_over = self.hand_over.lock().unwrap_or_else(|e| e.into_inner());
        match *hand_over {
            Some((target, until)) if Instant::now() < until => Some(target),
            Some(_) => {
                *hand_over = None;
                None
            }
            None => None,
        }
    }

    /// A voter refused this node's campaign because its log is longer:
    /// the next timeout starts twice the maximum from now, so a node with
    /// the whole log campaigns first (openraft's own timer does the same).
    /// Without this, a lagging candidate and an up-to-date one keep
    /// out-bidding each other's terms.
    pub fn saw_longer_log(&self) {
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now() + 2 * self.max;
    }

    fn last(&self) -> Instant {
        *self.last.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn draw(&self) -> Duration {
        let spread = self.max.saturating_sub(self.min).as_millis() as u64;
        self.min + Duration::from_millis(fastrand::u64(0..=spread))
    }

    /// Campaigns whenever a drawn timeout passes without news, until `stop`
    /// — after a pre-vote round: only if a majority of voters (this node
    /// included) have not heard from a leader lately. Without it, a node
    /// that restarts or returns from a partition bumps the term and
    /// deposes a healthy leader, moving the VIP for nothing (Raft thesis
    /// §9.6; openraft 0.9 has no pre-vote).
    pub async fn run(&self, control: Arc<ClusterControl>, stop: CancellationToken) {
        loop {
            let since = self.last();
            tokio::select! {
                () = tokio::time::sleep_until(since + self.draw()) => {}
                () = stop.cancelled() => return,
            }
            if self.last() != since {
                continue;
            }
            let may_campaign = {
                let metrics = control.raft.metrics();
                let m = metrics.borrow();
                m.state != ServerState::Leader
                    && m.membership_config
                        .membership()
                        .voter_ids()
                        .any(|voter| voter == control.id)
            } && self
                .handing_over_to()
                .is_none_or(|target| target == self.id);
            self.reset();
            if !may_campaign {
                continue;
            }
            let asked = self.last();
            self.asking(true);
            let mut answer = control.pre_vote(self.min / 2).await;
            if let PreVoteAnswer::Later { in_ms } = answer
                && in_ms <= self.min.as_millis() as u64
            {
                // A voter heard the leader a moment after this node did:
                // ask again once its lease runs out, not a whole timeout on.
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(in_ms)) => {}
                    () = stop.cancelled() => return,
                }
                if self.last() == asked {
                    answer = control.pre_vote(self.min / 2).await;
                }
            }
            if self.yielded.load(Ordering::Acquire) {
                self.asking(false);
                tracing::debug!("election timeout, but another candidate goes first");
                continue;
            }
            if answer != PreVoteAnswer::Granted {
                self.asking(false);
                tracing::debug!(
                    ?answer,
                    "election timeout, but no majority lets this node campaign"
                );
                continue;
            }
            let fence = self.fence().await;
            if self.last() != asked || self.promised() {
                // A leader (or a candidate we voted for) spoke meanwhile.
                drop(fence);
                self.asking(false);
                continue;
            }
            tracing::debug!("election timeout: campaigning");
            // Still asking until openraft is a candidate, so that no other
            // node's pre-vote slips through in between; inside the fence,
            // so that a promise made after it sees this node's new term.
            self.campaigning();
            let elected = control.raft.trigger().elect().await;
            drop(fence);
            self.asking(false);
            if let Err(error) = elected {
                // Only a stopped (shut down or failed) Raft refuses.
                tracing::debug!(%error, "election timer stops");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A timer that heard from no leader (as if started long ago).
    fn timer_for(id: NodeId) -> ElectionTimer {
        let timing: RaftTiming = toml::from_str("").expect("default timing");
        let timer = ElectionTimer::new(id, &timing);
        *timer.leader_contact.lock().expect("contact") = None;
        timer
    }

    fn timer() -> ElectionTimer {
        timer_for(1)
    }

    #[test]
    fn a_started_or_promised_node_neither_votes_nor_lets_a_candidate_through() {
        let timing: RaftTiming = toml::from_str("").expect("default timing");
        let started = ElectionTimer::new(1, &timing);
        assert!(started.promised());
        assert!(matches!(
            started.pre_vote(false, Some(3), Some(5), Some(5)),
            PreVoteAnswer::Later { .. }
        ));
        let timer = timer();
        assert!(!timer.promised());
        timer.heard_from_leader();
        assert!(timer.promised());
        assert!(matches!(
            timer.pre_vote(false, Some(3), Some(5), Some(5)),
            PreVoteAnswer::Later { .. }
        ));
    }

    #[test]
    fn of_two_followers_asking_at_once_the_higher_id_campaigns() {
        let timer = timer_for(2);
        timer.asking(true);
        // A lower id with the same log: refused, and this node goes on.
        assert_eq!(
            timer.pre_vote(false, Some(1), Some(5), Some(5)),
            PreVoteAnswer::Refused
        );
        assert!(!timer.asking(false));
        // A higher id with the same log: granted, and this node stands down.
        timer.asking(true);
        assert_eq!(
            timer.pre_vote(false, Some(3), Some(5), Some(5)),
            PreVoteAnswer::Granted
        );
        assert!(timer.asking(false));
        // A lower id with more of the log: granted, and this node stands
        // down too.
        timer.asking(true);
        assert_eq!(
            timer.pre_vote(false, Some(1), Some(6), Some(5)),
            PreVoteAnswer::Granted
        );
        assert!(timer.asking(false));
        // Not asking: granted as before.
        assert_eq!(
            timer.pre_vote(false, Some(1), Some(5), Some(5)),
            PreVoteAnswer::Granted
        );
    }

    #[test]
    fn a_candidate_holds_back_others_only_while_its_campaign_is_fresh() {
        let timing: RaftTiming = toml::from_str(
            "heartbeat_ms = 5\nelection_timeout_min_ms = 30\nelection_timeout_max_ms = 60",
        )
        .expect("timing");
        let timer = ElectionTimer::new(1, &timing);
        assert!(!timer.campaigned_recently());
        timer.campaigning();
        assert!(timer.campaigned_recently());
        std::thread::sleep(Duration::from_millis(40));
        assert!(!timer.campaigned_recently());
    }

    #[test]
    fn during_a_hand_over_only_the_target_may_campaign() {
        let timer = timer();
        assert_eq!(
            timer.pre_vote(false, Some(3), Some(5), Some(5)),
            PreVoteAnswer::Granted
        );
        timer.hand_over(2, Duration::from_secs(60));
        assert_eq!(
            timer.pre_vote(false, Some(3), Some(5), Some(5)),
            PreVoteAnswer::Refused
        );
        assert_eq!(
            timer.pre_vote(false, Some(2), Some(5), Some(5)),
            PreVoteAnswer::Granted
        );
        assert_eq!(timer.handing_over_to(), Some(2));
        timer.hand_over(2, Duration::ZERO);
        assert_eq!(timer.handing_over_to(), None);
        assert_eq!(
            timer.pre_vote(false, Some(3), Some(5), Some(5)),
            PreVoteAnswer::Granted
        );
    }
}
