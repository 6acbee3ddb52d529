//! Cluster operations, from any node: writes and linearizable reads run on
//! the leader (a follower forwards them over the peer port), membership
//! changes, and the cluster's status as this node sees it.

mod drain;
mod error;
mod health_votes;
mod lease;
mod membership;
mod peers;
mod status;
mod transfer;

pub use error::ControlError;
pub use health_votes::HealthVotes;
use health_votes::{MIN_DAMPING, Verdict};
pub use peers::{NodeConnections, NodeReport, PeerAnswer, PeerQuery, PreVoteAnswer};
pub use status::{ClusterStatus, NodeStatus, role_name};

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{ClientWriteError, RaftError};

use serde::{Deserialize, Serialize};

use crate::auth::Token;
use crate::proto::v1::RaftPayload;
use crate::raft::election::ElectionTimer;
use crate::raft::network::peer_client;
use crate::raft::peer_channel::PeerChannels;
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

/// One node's handle on the cluster.
pub struct ClusterControl {
    /// This node's id.
    pub id: NodeId,
    /// This node's control API address, as it reports it to peers.
    pub api_addr: String,
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
    /// Channels to the peers for forwarded calls and queries.
    pub channels: PeerChannels,
    /// Raft RPCs to peers still running after openraft stopped waiting.
    pub peer_rpcs: Arc<crate::raft::network::InFlightRpcs>,
    /// Mutual TLS settings, when the node has them.
    pub tls: Option<Arc<crate::tls::ClusterTls>>,
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
                if let RaftRequest::Apply {
                    command,
                    request_id,
                    ..
                } = &entry
                    && let Some(answer) = self.precheck(command, request_id.as_deref()).await?
                {
                    return Ok(LeaderReply::Applied(answer?));
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
                    unchanged: changes.is_empty(),
                    changes,
                    replayed: false,
                }))
            }
            LeaderRequest::ReadConfig => {
                self.confirm_leadership().await?;
                // Readers want the configuration and its history, not the
                // request-id table (up to 10,000 results on the wire).
                let state = ClusterState {
                    requests: Default::default(),
                    ..self.served.state()
                };
                Ok(LeaderReply::Config(state))
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

    /// As leader, before proposing: the first result of `request_id` if it
    /// was applied already, and a refusal for a command that cannot apply
    /// (so a bad command never reaches the log). A refusal is checked again
    /// after a linearizable read point: it may only mean that this node has
    /// not applied everything yet, or that the command's own first attempt
    /// has just been applied (an `ALREADY_EXISTS` for a retried
    /// `AddBackend`).
    async fn precheck(
        &self,
        command: &Command,
        request_id: Option<&str>,
    ) -> Result<Option<Result<Applied, crate::state::StateError>>, ControlError> {
        let state = self.served.state();
        if let Some(id) = request_id
            && let Some(first) = state.answered(id)
        {
            return Ok(Some(first));
        }
        let mut copy = state;
        let Err(refusal) = copy.dispatch(command.clone()) else {
            return Ok(None);
        };
        // A new leader may not have applied everything committed yet: look
        // again from a linearizable read point before refusing.
        self.confirm_leadership().await?;
        let mut state = self.served.state();
        if let Some(id) = request_id
            && let Some(first) = state.answered(id)
        {
            return Ok(Some(first));
        }
        match state.dispatch(command.clone()) {
            Ok(_) => Ok(None),
            Err(_) => Err(refusal.into()),
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

    /// Sends `request` to `leader` over the peer port.
    /// The peer address of member `id`, if it is one.
    pub fn peer_address(&self, id: NodeId) -> Option<String> {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        let node = m.membership_config.membership().get_node(&id)?;
        Some(node.raft_addr.clone())
    }

    async fn forward(
        &self,
        leader: NodeId,
        request: &LeaderRequest,
    ) -> Result<LeaderReply, ControlError> {
        let Some(address) = self.peer_address(leader) else {
            return Err(ControlError::NotLeader);
        };
        let channel = self
            .channels
            .get(&address)
            .map_err(|e| ControlError::Internal(e.to_string()))?;
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
                self.channels.renew(&address);
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

    /// Proposes `command` on behalf of `caller`; what it changed. With a
    /// `request_id`, the command is applied at most once however often it
    /// is retried (here after a lost forward, or by the client): a repeat
    /// gets the first result back.
    pub async fn write(
        &self,
        command: Command,
        caller: String,
        request_id: Option<String>,
    ) -> Result<Applied, ControlError> {
        if let Some(id) = &request_id {
            crate::state::check_request_id(id)?;
        }
        // A write without an id still gets one here, so this node's own
        // retries (a forward whose leader died before answering) are safe.
        let request_id = request_id.or_else(|| {
            Some(format!(
                "node{}-{}-{:016x}",
                self.id,
                unix_millis(),
                fastrand::u64(..)
            ))
        });
        let origin = Origin {
            time_ms: unix_millis(),
            caller,
        };
        let request = LeaderRequest::Write(RaftRequest::Apply {
            command,
            origin,
            request_id,
        });
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
                match tokio::time::timeout(OPERATION_TIMEOUT, self.raft.client_write(entry)).await {
                    Ok(Ok(_)) => tracing::info!(
                        "backend health committed: pool={pool} addr={address} health={}",
                        if up { "up" } else { "down" }
                    ),
                    Ok(Err(error)) => tracing::debug!(%error, "health not committed"),
                    Err(_) => tracing::warn!(
                        pool, %address,
                        "health not committed within {} s (no quorum?); the next report retries",
                        OPERATION_TIMEOUT.as_secs()
                    ),
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
}

pub(super) fn write_error(
    error: RaftError<NodeId, ClientWriteError<NodeId, ClusterNode>>,
) -> ControlError {
    match error {
        RaftError::APIError(ClientWriteError::ForwardToLeader(_)) => ControlError::NotLeader,
        RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
            ControlError::Membership(e.to_string())
        }
        RaftError::Fatal(fatal) => ControlError::Internal(fatal.to_string()),
    }
}
