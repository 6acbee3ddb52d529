//! The control API: `proto/raftlb/v1/control.proto` served by tonic on
//! `api_addr`. Every call is a thin shell over [`ClusterControl`]; errors
//! become gRPC statuses in one place (`ControlError` → `Status`).

pub mod convert;

use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::control::{ClusterControl, LeaderReply, LeaderRequest};
use crate::proto::v1 as pb;
use crate::proto::v1::control_service_server::{ControlService, ControlServiceServer};
use crate::raft::network::MAX_MESSAGE_BYTES;
use crate::raft::{ClusterNode, RaftRequest};
use crate::state::Command;

/// The control service of one node.
pub struct ControlApi {
    control: Arc<ClusterControl>,
}

impl ControlApi {
    /// The tonic server for `control`.
    pub fn server(control: Arc<ClusterControl>) -> ControlServiceServer<ControlApi> {
        ControlServiceServer::new(ControlApi { control })
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }
}

#[tonic::async_trait]
impl ControlService for ControlApi {
    async fn status(
        &self,
        _request: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusReply>, Status> {
        let status = self.control.status();
        Ok(Response::new(pb::StatusReply {
            id: status.id,
            role: status.role.to_string(),
            leader: status.leader,
            term: status.term,
            last_log_index: status.last_log_index,
            applied_index: status.applied_index,
            config_version: status.config_version,
            nodes: status
                .nodes
                .into_iter()
                .map(|n| pb::NodeInfo {
                    id: n.id,
                    raft_addr: n.raft_addr,
                    api_addr: n.api_addr,
                    membership: if n.voter { "voter" } else { "learner" }.to_string(),
                    matched_index: n.matched_index,
                })
                .collect(),
        }))
    }

    async fn apply_config(
        &self,
        request: Request<pb::ApplyConfigRequest>,
    ) -> Result<Response<pb::ApplyConfigReply>, Status> {
        let request = request.into_inner();
        let config = request
            .config
            .ok_or_else(|| Status::invalid_argument("config: missing"))?;
        let spec = convert::from_proto(config).map_err(crate::control::ControlError::from)?;
        let command = Command::ApplyConfig {
            spec,
            if_version: request.if_version,
        };
        let version = self.control.write(RaftRequest::Apply(command)).await?;
        Ok(Response::new(pb::ApplyConfigReply { version }))
    }

    async fn get_config(
        &self,
        request: Request<pb::GetConfigRequest>,
    ) -> Result<Response<pb::GetConfigReply>, Status> {
        let state = self.control.read_config(request.into_inner().local).await?;
        Ok(Response::new(pb::GetConfigReply {
            version: state.version,
            config: Some(convert::to_proto(&state.spec)),
        }))
    }

    async fn add_node(
        &self,
        request: Request<pb::AddNodeRequest>,
    ) -> Result<Response<pb::MembershipReply>, Status> {
        let request = request.into_inner();
        if request.raft_addr.parse::<std::net::SocketAddr>().is_err() {
            return Err(Status::invalid_argument(format!(
                "raft_addr = {:?}: expected IP:PORT",
                request.raft_addr
            )));
        }
        let node = ClusterNode {
            raft_addr: request.raft_addr,
            api_addr: request.api_addr,
        };
        let reply = self
            .control
            .execute(LeaderRequest::AddNode {
                id: request.id,
                node,
            })
            .await?;
        voters(reply)
    }

    async fn remove_node(
        &self,
        request: Request<pb::RemoveNodeRequest>,
    ) -> Result<Response<pb::MembershipReply>, Status> {
        let id = request.into_inner().id;
        let reply = self
            .control
            .execute(LeaderRequest::RemoveNode { id })
            .await?;
        voters(reply)
    }
}

fn voters(reply: LeaderReply) -> Result<Response<pb::MembershipReply>, Status> {
    match reply {
        LeaderReply::Voters(voters) => Ok(Response::new(pb::MembershipReply { voters })),
        other => Err(Status::internal(format!("unexpected reply {other:?}"))),
    }
}
