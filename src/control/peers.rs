//! What nodes ask each other over the peer port (`Query`): in-flight
//! counts for drains, the VIP claim, the pre-vote, a hand-over campaign,
//! the leader's lease (see [`super::lease`]).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ClusterControl;
use crate::proto::v1::RaftPayload;
use crate::raft::NodeId;
use crate::raft::network::peer_client;

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
    /// `[vip] mode = "bgp"`: withdraw and take no new flows (`true`), or
    /// announce again when eligible (`false`).
    Drain {
        /// Drain or undrain.
        drain: bool,
    },
    /// This node's own report of itself (`ctl status`).
    Report,
    /// This node's traffic figures (`ctl top`).
    Traffic,
    /// Would this node let a candidate with this much log campaign?
    PreVote {
        /// The candidate's last log index.
        last_log_index: Option<u64>,
        /// The candidate.
        #[serde(default)]
        candidate: Option<NodeId>,
    },
    /// The leader hands leadership to `target`: until `for_ms` from now,
    /// campaign only if you are the target, and let no other candidate
    /// campaign (Raft's TimeoutNow, without a term of its own).
    HandOver {
        /// The node that is to lead.
        target: NodeId,
        /// How long the hand-over may take.
        for_ms: u64,
    },
    /// Promise `leader`'s lease of `term`: no vote for the minimum
    /// election timeout, which must be longer than the lease.
    Lease {
        /// The leader's term.
        term: u64,
        /// The leader.
        leader: NodeId,
        /// The leader's lease.
        lease_ms: u64,
    },
}

impl PeerQuery {
    /// The query's name, for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            PeerQuery::ActiveConnections { .. } => "active_connections",
            PeerQuery::Campaign => "campaign",
            PeerQuery::Vip => "vip",
            PeerQuery::Drain { .. } => "drain",
            PeerQuery::Report => "report",
            PeerQuery::Traffic => "traffic",
            PeerQuery::PreVote { .. } => "pre_vote",
            PeerQuery::HandOver { .. } => "hand_over",
            PeerQuery::Lease { .. } => "lease",
        }
    }
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
    /// The node took note.
    Noted,
    /// Whether the node promised the lease.
    Promised(bool),
    /// The node's report of itself.
    Report(NodeReport),
    /// The node's traffic figures.
    Traffic(crate::traffic::Traffic),
    /// Whether the node drains now; `None`: it is not in BGP mode.
    Draining(Option<bool>),
}

/// What a node says of itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeReport {
    /// Its Raft role.
    pub role: String,
    /// Its term.
    pub term: u64,
    /// Its control API address.
    pub api_addr: String,
    /// Its last applied log index.
    pub applied_index: u64,
    /// Whether it holds the VIP.
    pub vip_held: bool,
    /// When its TLS certificate expires, ms since the Unix epoch (no TLS:
    /// absent).
    #[serde(default)]
    pub cert_expires_ms: Option<u64>,
    /// The configuration version it serves (its routing table's; 0 from
    /// nodes before 0.11).
    #[serde(default)]
    pub config_version: u64,
    /// `[vip] mode = "bgp"`: its announcement.
    #[serde(default)]
    pub bgp: Option<crate::vip::bgp::BgpStatus>,
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

impl ClusterControl {
    /// Answers a peer's question about this node.
    pub async fn answer(&self, query: PeerQuery) -> PeerAnswer {
        match query {
            PeerQuery::ActiveConnections { pool, address } => {
                PeerAnswer::Active(self.served.active_connections(&pool, address))
            }
            PeerQuery::Vip => PeerAnswer::VipHeld(self.vip.status().held),
            PeerQuery::Drain { drain } => PeerAnswer::Draining(self.vip.drain_bgp(drain)),
            PeerQuery::Report => PeerAnswer::Report(self.report()),
            PeerQuery::Traffic => PeerAnswer::Traffic(self.traffic()),
            PeerQuery::PreVote {
                last_log_index,
                candidate,
            } => {
                let metrics = self.raft.metrics().borrow().clone();
                // A candidate that has just campaigned refuses too: it may
                // be about to win, and a second candidate's higher term
                // would depose it.
                let grant = self.election.pre_vote(
                    metrics.state == openraft::ServerState::Leader
                        || (metrics.state == openraft::ServerState::Candidate
                            && self.election.campaigned_recently()),
                    candidate,
                    last_log_index,
                    metrics.last_log_index,
                );
                PeerAnswer::PreVote(grant)
            }
            PeerQuery::HandOver { target, for_ms } => {
                self.election
                    .hand_over(target, Duration::from_millis(for_ms));
                PeerAnswer::Noted
            }
            PeerQuery::Lease {
                term,
                leader,
                lease_ms,
            } => PeerAnswer::Promised(
                self.promise(term, leader, Duration::from_millis(lease_ms))
                    .await,
            ),
            PeerQuery::Campaign => {
                tracing::info!("asked to campaign by the leader handing over");
                if self.campaign().await {
                    PeerAnswer::Campaigning
                } else {
                    PeerAnswer::Active(0)
                }
            }
        }
    }

    /// Tells every other voter that leadership goes to `target` for the
    /// next `within`: none but the target campaigns, and none lets another
    /// candidate campaign, meanwhile. Each voter gets 300 ms to take note.
    pub async fn announce_hand_over(&self, target: NodeId, within: Duration) {
        let voters: Vec<(NodeId, String)> = {
            let metrics = self.raft.metrics().borrow().clone();
            let membership = metrics.membership_config.membership().clone();
            membership
                .voter_ids()
                .filter(|id| *id != self.id)
                .filter_map(|id| membership.get_node(&id).map(|n| (id, n.raft_addr.clone())))
                .collect()
        };
        let query = PeerQuery::HandOver {
            target,
            for_ms: within.as_millis() as u64,
        };
        let asks = voters.iter().map(|(id, raft_addr)| {
            let query = &query;
            async move {
                let noted = self
                    .ask_within(raft_addr, query, Duration::from_millis(300))
                    .await;
                if !matches!(noted, Some(PeerAnswer::Noted)) {
                    tracing::warn!(node = id, "a voter did not take note of the hand-over");
                }
            }
        });
        futures_util::future::join_all(asks).await;
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
                Some(
                    PeerAnswer::Campaigning
                    | PeerAnswer::VipHeld(_)
                    | PeerAnswer::PreVote(_)
                    | PeerAnswer::Noted
                    | PeerAnswer::Promised(_)
                    | PeerAnswer::Report(_)
                    | PeerAnswer::Traffic(_)
                    | PeerAnswer::Draining(_),
                )
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

    pub async fn ask_within(
        &self,
        raft_addr: &str,
        query: &PeerQuery,
        within: Duration,
    ) -> Option<PeerAnswer> {
        let kind = query.kind();
        let failed = |error: String| {
            crate::warn_limited!(
                format!("peer query {kind} to {raft_addr}"),
                peer = raft_addr,
                query = kind,
                %error,
                "peer query failed"
            );
        };
        let channel = self
            .channels
            .get(raft_addr)
            .map_err(|e| failed(e.to_string()))
            .ok()?;
        let json = serde_json::to_vec(query)
            .map_err(|e| failed(e.to_string()))
            .ok()?;
        let mut grpc = tonic::Request::new(RaftPayload { json });
        grpc.set_timeout(within);
        self.token.attach(&mut grpc);
        let reply = peer_client(channel)
            .query(grpc)
            .await
            .map_err(|status| {
                self.channels.renew(raft_addr);
                failed(format!("{}: {}", status.code(), status.message()))
            })
            .ok()?;
        serde_json::from_slice(&reply.into_inner().json)
            .map_err(|e| failed(e.to_string()))
            .ok()
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
            candidate: Some(self.id),
        };
        let mut answers: futures_util::stream::FuturesUnordered<_> = voters
            .iter()
            .filter(|id| **id != self.id)
            .filter_map(|id| membership.get_node(id))
            .map(|node| {
                // A little past the call's own deadline, so that a voter
                // that does not answer in time is seen failing (and its
                // channel renewed) rather than dropped unseen.
                let limit = within + Duration::from_millis(20);
                tokio::time::timeout(limit, self.ask_within(&node.raft_addr, &query, within))
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

    /// Whether the peer at `raft_addr` says it holds the VIP; `None` if it
    /// does not answer within 300 ms.
    pub async fn vip_held_by(&self, raft_addr: &str) -> Option<bool> {
        match self
            .ask_within(raft_addr, &PeerQuery::Vip, Duration::from_millis(300))
            .await
        {
            Some(PeerAnswer::VipHeld(held)) => Some(held),
            _ => None,
        }
    }

    /// This node's report of itself.
    pub fn report(&self) -> NodeReport {
        let metrics = self.raft.metrics().borrow().clone();
        NodeReport {
            role: super::role_name(metrics.state).to_string(),
            term: metrics.current_term,
            api_addr: self.api_addr.clone(),
            applied_index: metrics.last_applied.map_or(0, |l| l.index),
            vip_held: self.vip.status().held,
            bgp: self.vip.status().bgp,
            cert_expires_ms: self.tls.as_ref().map(|tls| tls.expires_ms()),
            config_version: self.served.version(),
        }
    }

    /// This node's traffic figures now.
    pub fn traffic(&self) -> crate::traffic::Traffic {
        crate::traffic::from_table(&self.served.table().load())
    }

    /// Every member's report of itself (this node answers for itself);
    /// `None` for a member that did not answer within 300 ms.
    pub async fn reports(&self) -> BTreeMap<NodeId, Option<NodeReport>> {
        self.ask_every_member(PeerQuery::Report, Duration::from_millis(300), |control| {
            PeerAnswer::Report(control.report())
        })
        .await
        .into_iter()
        .map(|(id, answer)| match answer {
            Some(PeerAnswer::Report(report)) => (id, Some(report)),
            _ => (id, None),
        })
        .collect()
    }

    /// Every member's traffic figures (`None` for a member that did not
    /// answer within 800 ms: a busy node's figures are still worth the
    /// wait of an interactive `ctl top`).
    pub async fn traffic_everywhere(&self) -> BTreeMap<NodeId, Option<crate::traffic::Traffic>> {
        self.ask_every_member(PeerQuery::Traffic, Duration::from_millis(800), |control| {
            PeerAnswer::Traffic(control.traffic())
        })
        .await
        .into_iter()
        .map(|(id, answer)| match answer {
            Some(PeerAnswer::Traffic(traffic)) => (id, Some(traffic)),
            _ => (id, None),
        })
        .collect()
    }

    /// Asks every member `query` at once, giving each `within`; this node
    /// answers through `own`.
    async fn ask_every_member(
        &self,
        query: PeerQuery,
        within: Duration,
        own: impl Fn(&Self) -> PeerAnswer,
    ) -> Vec<(NodeId, Option<PeerAnswer>)> {
        let members: Vec<(NodeId, String)> = {
            let metrics = self.raft.metrics().borrow().clone();
            metrics
                .membership_config
                .membership()
                .nodes()
                .map(|(id, node)| (*id, node.raft_addr.clone()))
                .collect()
        };
        let own = &own;
        let query = &query;
        let answers = members.iter().map(|(id, raft_addr)| async move {
            if *id == self.id {
                return (*id, Some(own(self)));
            }
            let answer = self.ask_within(raft_addr, query, within).await;
            (*id, answer)
        });
        futures_util::future::join_all(answers).await
    }
}
