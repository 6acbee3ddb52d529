//! Cluster operations, from any node: writes and linearizable reads run on
//! the leader (a follower forwards them over the peer port), membership
//! changes, and the cluster's status as this node sees it.

mod error;
mod health_votes;
mod transfer;

pub use error::ControlError;
pub use health_votes::HealthVotes;
use health_votes::{MIN_DAMPING, Verdict};

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{ChangeMembershipError, ClientWriteError, RaftError};
use openraft::{ChangeMembers, ServerState};
use serde::{Deserialize, Serialize};

use crate::auth::Token;
use crate::proto::v1::RaftPayload;
use crate::raft::election::ElectionTimer;
use crate::raft::network::{peer_channel, peer_client};
use crate::raft::{ClusterNode, NodeId, Raft, RaftRequest};
use crate::served::ServedConfig;
use crate::state::{Applied, ClusterState, Command, Origin};
use crate::vip::VipRole;

/// Milliseconds since the Unix epoch, for history records.
pub fn unix_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// How long a write or linearizable read may take before it is reported
/// `UNAVAILABLE` (never a hang).
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(5);

/// An operation that must run on the leader.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum LeaderRequest {
    /// Propose an entry.
    Write(RaftRequest),
    /// Apply a command to a copy of the linearizably read state, and report
    /// what it would do; nothing is proposed.
    DryRun(Command),
    /// Read the configuration after confirming leadership with a quorum.
    ReadConfig,
    /// Add a node as learner, then promote it to voter once caught up.
    AddNode {
        /// New node id.
        id: NodeId,
        /// Its addresses.
        node: ClusterNode,
    },
    /// Remove a node.
    RemoveNode {
        /// The node id.
        id: NodeId,
    },
    /// Hand leadership to a node (or the most caught-up follower).
    TransferLeader {
        /// The node to take over.
        target: Option<NodeId>,
    },
    /// A node's view of a backend changed.
    HealthReport {
        /// The reporting node.
        node: NodeId,
        /// Pool name.
        pool: String,
        /// Backend address.
        address: std::net::SocketAddr,
        /// Up (true) or down.
        up: bool,
    },
}

/// What a leader operation returned.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum LeaderReply {
    /// What a write (or dry run) did.
    Applied(Applied),
    /// The configuration, read linearizably.
    Config(ClusterState),
    /// The voters after a membership change.
    Voters(Vec<NodeId>),
    /// A report was taken.
    Noted,
    /// Leadership moved.
    Transferred {
        /// The old leader.
        from: NodeId,
        /// The new leader.
        to: NodeId,
        /// How long the transfer took.
        elapsed_ms: u64,
    },
}

/// A question a node answers about its own state.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum PeerQuery {
    /// Connections (tcp) or requests (http) in flight to a backend.
    ActiveConnections {
        /// Pool name.
        pool: String,
        /// Backend address.
        address: std::net::SocketAddr,
    },
    /// Start an election now: the leader is handing over.
    Campaign,
    /// Whether this node holds the VIP now.
    Vip,
    /// Would this node let a candidate with this much log campaign?
    PreVote {
        /// The candidate's last log index.
        last_log_index: Option<u64>,
    },
}

/// A voter's answer to a pre-vote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PreVoteAnswer {
    /// Campaign.
    Granted,
    /// No: this node leads, or has more of the log.
    Refused,
    /// Not yet: this node heard a leader less than the minimum election
    /// timeout ago; ask again in this many ms if nothing is heard meanwhile.
    Later {
        /// When to ask again.
        in_ms: u64,
    },
}

/// The answer to a [`PeerQuery`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum PeerAnswer {
    /// A count.
    Active(i64),
    /// The node started an election.
    Campaigning,
    /// Whether the node holds the VIP.
    VipHeld(bool),
    /// The pre-vote answer.
    PreVote(PreVoteAnswer),
}

/// One node's count of in-flight connections to a backend.
#[derive(Debug, Clone, Serialize)]
pub struct NodeConnections {
    /// Node id.
    pub node: NodeId,
    /// Connections or requests in flight (0 when not reached).
    pub active: i64,
    /// Whether the node answered.
    pub reached: bool,
}

/// How often a drain wait asks every node again.
const DRAIN_POLL: Duration = Duration::from_millis(100);

/// One node's handle on the cluster.
pub struct ClusterControl {
    /// This node's id.
    pub id: NodeId,
    /// The Raft instance.
    pub raft: Raft,
    /// What this node serves.
    pub served: Arc<ServedConfig>,
    /// The token sent to peers.
    pub token: Token,
    /// As leader: the nodes' health views.
    pub health_votes: HealthVotes,
    /// When this node campaigns; reset by every sign of a live leader.
    pub election: Arc<ElectionTimer>,
    /// The leader role (VIP) on this node.
    pub vip: Arc<VipRole>,
    /// How long voters refuse candidates after a leader's last message
    /// (the minimum election timeout).
    pub vote_lease: Duration,
}

impl ClusterControl {
    /// Runs `request` on the leader, wherever it is, within
    /// [`OPERATION_TIMEOUT`]; a leader change in between is retried.
    pub async fn execute(&self, request: LeaderRequest) -> Result<LeaderReply, ControlError> {
        let attempt = async {
            let mut metrics = self.raft.metrics();
            loop {
                let leader = metrics.borrow().current_leader;
                let result = match leader {
                    Some(leader) if leader == self.id => {
                        self.execute_as_leader(request.clone()).await
                    }
                    Some(leader) => self.forward(leader, &request).await,
                    None => Err(ControlError::NotLeader),
                };
                match result {
                    Err(ControlError::NotLeader) => {
                        // Wait for the next leader change (or a short while).
                        let _ = tokio::time::timeout(Duration::from_millis(100), metrics.changed())
                            .await;
                    }
                    other => return other,
                }
            }
        };
        match tokio::time::timeout(OPERATION_TIMEOUT, attempt).await {
            Ok(result) => result,
            Err(_) => Err(ControlError::Unavailable(format!(
                "no leader with a quorum answered within {} s",
                OPERATION_TIMEOUT.as_secs()
            ))),
        }
    }

    /// Runs `request` here, which must be the leader.
    pub async fn execute_as_leader(
        &self,
        request: LeaderRequest,
    ) -> Result<LeaderReply, ControlError> {
        match request {
            LeaderRequest::Write(entry) => {
                if let RaftRequest::Apply { command, .. } = &entry {
                    // Refuse a bad command before it reaches the log.
                    self.served.state().dispatch(command.clone())?;
                }
                let response = self.raft.client_write(entry).await.map_err(write_error)?;
                Ok(LeaderReply::Applied(response.data.result?))
            }
            LeaderRequest::DryRun(command) => {
                self.confirm_leadership().await?;
                let mut state = self.served.state();
                let current = state.version;
                let changes = state.apply(command, Origin::default())?.changes;
                // Nothing was committed: the version stays the current one.
                Ok(LeaderReply::Applied(Applied {
                    version: current,
                    changes,
                }))
            }
            LeaderRequest::ReadConfig => {
                self.confirm_leadership().await?;
                Ok(LeaderReply::Config(self.served.state()))
            }
            LeaderRequest::TransferLeader { target } => self.transfer_leadership(target).await,
            LeaderRequest::HealthReport {
                node,
                pool,
                address,
                up,
            } => {
                let term = self.raft.metrics().borrow().current_term;
                if self.raft.metrics().borrow().current_leader != Some(self.id) {
                    return Err(ControlError::NotLeader);
                }
                self.health_votes
                    .record(term, node, &(pool.clone(), address), up);
                self.judge_health(pool, address).await;
                Ok(LeaderReply::Noted)
            }
            LeaderRequest::AddNode { id, node } => self.add_node(id, node).await,
            LeaderRequest::RemoveNode { id } => self.remove_node(id).await,
        }
    }

    /// Confirms with a quorum that this node still leads and has applied
    /// everything committed before now (a linearizable read point).
    async fn confirm_leadership(&self) -> Result<(), ControlError> {
        self.raft.ensure_linearizable().await.map_err(|e| match e {
            RaftError::APIError(_) => ControlError::NotLeader,
            RaftError::Fatal(fatal) => ControlError::Internal(fatal.to_string()),
        })?;
        Ok(())
    }

    async fn add_node(&self, id: NodeId, node: ClusterNode) -> Result<LeaderReply, ControlError> {
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

    async fn remove_node(&self, id: NodeId) -> Result<LeaderReply, ControlError> {
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

    /// Sends `request` to `leader` over the peer port.
    async fn forward(
        &self,
        leader: NodeId,
        request: &LeaderRequest,
    ) -> Result<LeaderReply, ControlError> {
        let address = {
            let metrics = self.raft.metrics();
            let membership = metrics.borrow().membership_config.clone();
            membership
                .membership()
                .get_node(&leader)
                .map(|n| n.raft_addr.clone())
        };
        let Some(address) = address else {
            return Err(ControlError::NotLeader);
        };
        let channel = peer_channel(&address).map_err(|e| ControlError::Internal(e.to_string()))?;
        let json =
            serde_json::to_vec(request).map_err(|e| ControlError::Internal(e.to_string()))?;
        let mut grpc = tonic::Request::new(RaftPayload { json });
        grpc.set_timeout(OPERATION_TIMEOUT);
        self.token.attach(&mut grpc);
        match peer_client(channel).forward(grpc).await {
            Ok(reply) => serde_json::from_slice::<Result<LeaderReply, ControlError>>(
                &reply.into_inner().json,
            )
            .map_err(|e| ControlError::Internal(e.to_string()))?,
            Err(status) => {
                tracing::debug!(leader, %status, "forward to leader failed");
                Err(ControlError::NotLeader)
            }
        }
    }

    /// A linearizable read of the configuration, or this node's applied
    /// state when `local`.
    pub async fn read_config(&self, local: bool) -> Result<ClusterState, ControlError> {
        if local {
            return Ok(self.served.state());
        }
        match self.execute(LeaderRequest::ReadConfig).await? {
            LeaderReply::Config(state) => Ok(state),
            other => Err(ControlError::Internal(format!(
                "unexpected reply {other:?}"
            ))),
        }
    }

    /// Proposes `command` on behalf of `caller`; what it changed.
    pub async fn write(&self, command: Command, caller: String) -> Result<Applied, ControlError> {
        let origin = Origin {
            time_ms: unix_millis(),
            caller,
        };
        let request = LeaderRequest::Write(RaftRequest::Apply { command, origin });
        match self.execute(request).await? {
            LeaderReply::Applied(applied) => Ok(applied),
            other => Err(ControlError::Internal(format!(
                "unexpected reply {other:?}"
            ))),
        }
    }

    /// What `command` would change now, without proposing it.
    pub async fn dry_run(&self, command: Command) -> Result<Applied, ControlError> {
        match self.execute(LeaderRequest::DryRun(command)).await? {
            LeaderReply::Applied(applied) => Ok(applied),
            other => Err(ControlError::Internal(format!(
                "unexpected reply {other:?}"
            ))),
        }
    }

    /// As leader: commits a backend's health if a majority of voters agree
    /// and damping allows; a verdict delayed by damping is deferred for
    /// [`ClusterControl::judge_deferred`].
    pub async fn judge_health(&self, pool: String, address: std::net::SocketAddr) {
        let key = (pool.clone(), address);
        let voters: BTreeSet<NodeId> = self
            .raft
            .metrics()
            .borrow()
            .membership_config
            .voter_ids()
            .collect();
        let damping = self
            .served
            .table()
            .load()
            .pools
            .iter()
            .find(|p| p.name == pool)
            .map_or(MIN_DAMPING, |p| {
                Duration::from_millis(2 * p.health.interval_ms).max(MIN_DAMPING)
            });
        let committed = self.served.committed(&pool, address);
        match self.health_votes.verdict(&key, &voters, committed, damping) {
            Verdict::Nothing => {}
            Verdict::Later(_) => self.health_votes.defer(key),
            Verdict::Commit(up) => {
                self.health_votes.committed(&key);
                let entry = RaftRequest::Health {
                    pool: pool.clone(),
                    address,
                    up,
                };
                match self.raft.client_write(entry).await {
                    Ok(_) => tracing::info!(
                        "backend health committed: pool={pool} addr={address} health={}",
                        if up { "up" } else { "down" }
                    ),
                    Err(error) => tracing::debug!(%error, "health not committed"),
                }
            }
        }
    }

    /// As leader: looks again at verdicts that damping delayed.
    pub async fn judge_deferred(&self) {
        for (pool, address) in self.health_votes.take_deferred() {
            self.judge_health(pool, address).await;
        }
    }

    /// Answers a peer's question about this node.
    pub async fn answer(&self, query: PeerQuery) -> PeerAnswer {
        match query {
            PeerQuery::ActiveConnections { pool, address } => {
                PeerAnswer::Active(self.served.active_connections(&pool, address))
            }
            PeerQuery::Vip => PeerAnswer::VipHeld(self.vip.status().held),
            PeerQuery::PreVote { last_log_index } => {
                let metrics = self.raft.metrics().borrow().clone();
                let grant = self.election.pre_vote(
                    metrics.state == openraft::ServerState::Leader,
                    last_log_index,
                    metrics.last_log_index,
                );
                PeerAnswer::PreVote(grant)
            }
            PeerQuery::Campaign => {
                tracing::info!("asked to campaign by the leader handing over");
                match self.raft.trigger().elect().await {
                    Ok(()) => PeerAnswer::Campaigning,
                    Err(error) => {
                        tracing::warn!(%error, "cannot campaign");
                        PeerAnswer::Active(0)
                    }
                }
            }
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

    /// Asks `raft_addr` to campaign now (graceful hand-over).
    pub async fn ask_to_campaign(&self, raft_addr: &str) -> bool {
        matches!(
            self.ask(raft_addr, &PeerQuery::Campaign).await,
            Some(PeerAnswer::Campaigning)
        )
    }

    /// Asks every member how many connections or requests it has in flight
    /// to a backend, until all say zero or `timeout` passes.
    pub async fn wait_drained(
        &self,
        pool: &str,
        address: std::net::SocketAddr,
        timeout: Duration,
    ) -> (bool, Vec<NodeConnections>) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let counts = self.count_everywhere(pool, address).await;
            let drained = counts.iter().all(|c| c.reached && c.active == 0);
            if drained || tokio::time::Instant::now() >= deadline {
                return (drained, counts);
            }
            tokio::time::sleep(DRAIN_POLL).await;
        }
    }

    async fn count_everywhere(
        &self,
        pool: &str,
        address: std::net::SocketAddr,
    ) -> Vec<NodeConnections> {
        let nodes: Vec<(NodeId, String)> = {
            let metrics = self.raft.metrics();
            let membership = metrics.borrow().membership_config.clone();
            membership
                .membership()
                .nodes()
                .map(|(id, node)| (*id, node.raft_addr.clone()))
                .collect()
        };
        let query = PeerQuery::ActiveConnections {
            pool: pool.to_string(),
            address,
        };
        let mut counts = Vec::new();
        for (node, raft_addr) in nodes {
            let answer = if node == self.id {
                Some(self.answer(query.clone()).await)
            } else {
                self.ask(&raft_addr, &query).await
            };
            counts.push(match answer {
                Some(PeerAnswer::Active(active)) => NodeConnections {
                    node,
                    active,
                    reached: true,
                },
                Some(PeerAnswer::Campaigning | PeerAnswer::VipHeld(_) | PeerAnswer::PreVote(_))
                | None => NodeConnections {
                    node,
                    active: 0,
                    reached: false,
                },
            });
        }
        counts
    }

    async fn ask(&self, raft_addr: &str, query: &PeerQuery) -> Option<PeerAnswer> {
        self.ask_within(raft_addr, query, Duration::from_secs(1))
            .await
    }

    async fn ask_within(
        &self,
        raft_addr: &str,
        query: &PeerQuery,
        within: Duration,
    ) -> Option<PeerAnswer> {
        let channel = peer_channel(raft_addr).ok()?;
        let json = serde_json::to_vec(query).ok()?;
        let mut grpc = tonic::Request::new(RaftPayload { json });
        grpc.set_timeout(within);
        self.token.attach(&mut grpc);
        let reply = peer_client(channel).query(grpc).await.ok()?;
        serde_json::from_slice(&reply.into_inner().json).ok()
    }

    /// The pre-vote round: whether a majority of voters (this node
    /// included) would let this node campaign. Each voter is asked at once
    /// and given `within` to answer (an unreachable one must not hold the
    /// round up until a TCP connect times out); the round ends as soon as a
    /// majority has granted.
    pub async fn pre_vote(&self, within: Duration) -> PreVoteAnswer {
        use futures_util::StreamExt;
        let metrics = self.raft.metrics().borrow().clone();
        let membership = metrics.membership_config.membership().clone();
        let voters: Vec<NodeId> = membership.voter_ids().collect();
        let needed = voters.len() / 2 + 1;
        let mut granted = usize::from(voters.contains(&self.id));
        if granted >= needed {
            return PreVoteAnswer::Granted;
        }
        let query = PeerQuery::PreVote {
            last_log_index: metrics.last_log_index,
        };
        let mut answers: futures_util::stream::FuturesUnordered<_> = voters
            .iter()
            .filter(|id| **id != self.id)
            .filter_map(|id| membership.get_node(id))
            .map(|node| {
                tokio::time::timeout(within, self.ask_within(&node.raft_addr, &query, within))
            })
            .collect();
        // The soonest time a voter that heard a leader lately would grant.
        let mut later: Option<u64> = None;
        while let Some(answer) = answers.next().await {
            match answer {
                Ok(Some(PeerAnswer::PreVote(PreVoteAnswer::Granted))) => {
                    granted += 1;
                    if granted >= needed {
                        return PreVoteAnswer::Granted;
                    }
                }
                Ok(Some(PeerAnswer::PreVote(PreVoteAnswer::Later { in_ms }))) => {
                    later = Some(later.map_or(in_ms, |l| l.min(in_ms)));
                }
                _ => {}
            }
        }
        match later {
            // One more grant would make a majority only if it is not more
            // than one short; otherwise waiting does not help.
            Some(in_ms) if granted + 1 >= needed => PreVoteAnswer::Later { in_ms },
            _ => PreVoteAnswer::Refused,
        }
    }

    /// Whether each member holds the VIP, by asking each (this node
    /// answers for itself); `None` for a member that did not answer within
    /// 300 ms.
    pub async fn vip_holders(&self) -> BTreeMap<NodeId, Option<bool>> {
        let members: Vec<(NodeId, String)> = {
            let metrics = self.raft.metrics().borrow().clone();
            metrics
                .membership_config
                .membership()
                .nodes()
                .map(|(id, node)| (*id, node.raft_addr.clone()))
                .collect()
        };
        let answers = members.iter().map(|(id, raft_addr)| async move {
            if *id == self.id {
                return (*id, Some(self.vip.status().held));
            }
            let answer = self
                .ask_within(raft_addr, &PeerQuery::Vip, Duration::from_millis(300))
                .await;
            match answer {
                Some(PeerAnswer::VipHeld(held)) => (*id, Some(held)),
                _ => (*id, None),
            }
        });
        futures_util::future::join_all(answers)
            .await
            .into_iter()
            .collect()
    }

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

fn write_error(error: RaftError<NodeId, ClientWriteError<NodeId, ClusterNode>>) -> ControlError {
    match error {
        RaftError::APIError(ClientWriteError::ForwardToLeader(_)) => ControlError::NotLeader,
        RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
            ControlError::Membership(e.to_string())
        }
        RaftError::Fatal(fatal) => ControlError::Internal(fatal.to_string()),
    }
}
