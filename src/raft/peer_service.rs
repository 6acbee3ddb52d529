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

use super::network::MAX_MESSAGE_BYTES;

/// The peer gRPC service of one node.
pub struct PeerService {
    control: Arc<ClusterControl>,
}

impl PeerService {
    /// The tonic server for `control`'s Raft instance; with a token set,
    /// every peer RPC must carry it.
    pub fn server(
        control: Arc<ClusterControl>,
        token: &Token,
    ) -> InterceptedService<
        RaftServiceServer<PeerService>,
        impl tonic::service::Interceptor + Clone + use<>,
    > {
        let server = RaftServiceServer::new(PeerService { control })
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        InterceptedService::new(server, token.interceptor())
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
        let result = self.control.raft.append_entries(decode(request)?).await;
        if matches!(&result, Ok(answer) if !matches!(answer, AppendEntriesResponse::HigherVote(_)))
        {
            self.control.election.heard_from_leader();
        }
        encode(&result)
    }

    async fn vote(&self, request: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        // Refused within a promised lease; see control::lease.
        encode(&self.control.vote(decode(request)?).await)
    }

    async fn install_snapshot(
        &self,
        request: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let result = self.control.raft.install_snapshot(decode(request)?).await;
        if result.is_ok() {
            self.control.election.heard_from_leader();
        }
        encode(&result)
    }

    async fn forward(
        &self,
        request: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let request: LeaderRequest = decode(request)?;
        let result = self.control.execute_as_leader(request).await;
        encode(&result)
    }

    async fn query(&self, request: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        let query: PeerQuery = decode(request)?;
        encode(&self.control.answer(query).await)
    }
}
