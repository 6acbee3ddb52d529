//! The server side of the peer network, served on `raft_addr` only: hands
//! openraft's RPCs to the local Raft instance, and runs operations that a
//! follower forwarded to this node as leader.

use std::sync::Arc;

use openraft::raft::AppendEntriesResponse;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::service::interceptor::InterceptedService;
use tonic::{Request, Response, Status};

use crate::auth::Token;

use crate::control::{ClusterControl, LeaderRequest, PeerQuery};
use crate::proto::v1::RaftPayload;
use crate::proto::v1::raft_service_server::{RaftService, RaftServiceServer};
use crate::tls::Identity;

use super::network::MAX_MESSAGE_BYTES;
use super::{NodeId, TypeConfig};

/// The peer gRPC service of one node.
pub struct PeerService {
    control: Arc<ClusterControl>,
    /// Peers present node certificates (mutual TLS): each call is checked
    /// against the node it comes from.
    tls: bool,
}

impl PeerService {
    /// The tonic server for `control`'s Raft instance; with a token set,
    /// every peer RPC must carry it; with `tls`, every caller must be a
    /// node, and a Raft message must come from the node it names as its
    /// sender.
    pub fn server(
        control: Arc<ClusterControl>,
        token: &Token,
        tls: bool,
    ) -> InterceptedService<
        RaftServiceServer<PeerService>,
        impl tonic::service::Interceptor + Clone + use<>,
    > {
        let server = RaftServiceServer::new(PeerService { control, tls })
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        InterceptedService::new(server, token.interceptor())
    }
}

impl PeerService {
    /// The node a call comes from, by its certificate (`None` without
    /// TLS); refuses a caller that is no node.
    fn sender<T>(&self, request: &Request<T>) -> Result<Option<NodeId>, Status> {
        if !self.tls {
            return Ok(None);
        }
        match crate::tls::transport::caller(request) {
            Some(Identity::Node(id)) => Ok(Some(id)),
            Some(other) => Err(Status::permission_denied(format!(
                "the peer port takes nodes only, not {other}"
            ))),
            None => Err(Status::unauthenticated(
                "the peer port takes nodes only: no node certificate",
            )),
        }
    }
}

/// Refuses a message whose named sender (`claimed`, from its vote) is not
/// the node whose certificate sent it: a node cannot speak for another.
fn check_sender(sender: Option<NodeId>, claimed: Option<NodeId>, what: &str) -> Result<(), Status> {
    match sender {
        Some(sender) if claimed != Some(sender) => Err(Status::permission_denied(format!(
            "{what} names node {} as its sender, but comes from node {sender}",
            claimed.map_or("none".to_string(), |id| id.to_string())
        ))),
        _ => Ok(()),
    }
}

fn decode<T: DeserializeOwned>(request: Request<RaftPayload>) -> Result<T, Status> {
    serde_json::from_slice(&request.into_inner().json)
        .map_err(|e| Status::invalid_argument(format!("undecodable peer message: {e}")))
}

fn encode<T: Serialize>(value: &T) -> Result<Response<RaftPayload>, Status> {
    serde_json::to_vec(value)
        .map(|json| Response::new(RaftPayload { json }))
        .map_err(|e| Status::internal(format!("cannot encode reply: {e}")))
}

#[tonic::async_trait]
impl RaftService for PeerService {
    async fn append_entries(
        &self,
        request: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let sender = self.sender(&request)?;
        let message: openraft::raft::AppendEntriesRequest<TypeConfig> = decode(request)?;
        check_sender(
            sender,
            message.vote.leader_id().voted_for(),
            "append-entries",
        )?;
        // A leader of an older term (one healed from a partition, whose
        // heartbeats queued on the wire all land at once) is answered from
        // the metrics, without queueing in the core: openraft's metrics never
        // run ahead of its core, so a newer term there is newer in the core,
        // which would answer the same. Queued in the core, such a burst held
        // up the promises the new leader's lease waits for (netns drill:
        // the lease lapsed half a second after a heal).
        let current = self.control.raft.metrics().borrow().vote;
        if message.vote.leader_id().term < current.leader_id().term {
            let answer: Result<AppendEntriesResponse<NodeId>, openraft::error::RaftError<NodeId>> =
                Ok(AppendEntriesResponse::HigherVote(current));
            return encode(&answer);
        }
        let result = self.control.raft.append_entries(message).await;
        if matches!(&result, Ok(answer) if !matches!(answer, AppendEntriesResponse::HigherVote(_)))
        {
            self.control.election.heard_from_leader();
        }
        encode(&result)
    }

    async fn vote(&self, request: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        let sender = self.sender(&request)?;
        let message: openraft::raft::VoteRequest<NodeId> = decode(request)?;
        check_sender(sender, message.vote.leader_id().voted_for(), "vote request")?;
        // Refused within a promised lease; see control::lease.
        encode(&self.control.vote(message).await)
    }

    async fn install_snapshot(
        &self,
        request: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let sender = self.sender(&request)?;
        let message: openraft::raft::InstallSnapshotRequest<TypeConfig> = decode(request)?;
        check_sender(sender, message.vote.leader_id().voted_for(), "snapshot")?;
        let result = self.control.raft.install_snapshot(message).await;
        if result.is_ok() {
            self.control.election.heard_from_leader();
        }
        encode(&result)
    }

    async fn forward(
        &self,
        request: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        self.sender(&request)?;
        let request: LeaderRequest = decode(request)?;
        let result = self.control.execute_as_leader(request).await;
        encode(&result)
    }

    async fn query(&self, request: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        let sender = self.sender(&request)?;
        let query: PeerQuery = decode(request)?;
        if let PeerQuery::Lease { leader, .. } = &query {
            check_sender(sender, Some(*leader), "lease request")?;
        }
        encode(&self.control.answer(query).await)
    }
}
