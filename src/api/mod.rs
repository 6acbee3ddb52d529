//! The control API: `proto/raftlb/v1/control.proto` served by tonic on
//! `api_addr`. Every call is a thin shell over [`ClusterControl`]; errors
//! become gRPC statuses in one place (`ControlError` → `Status`).

pub mod convert;
pub mod guard;

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio_stream::Stream;
use tonic::{Request, Response, Status};

pub use guard::ApiAuth;

use crate::control::{ClusterControl, ControlError, LeaderReply, LeaderRequest};
use crate::events::{Event, Stamped};
use crate::proto::v1 as pb;
use crate::proto::v1::control_service_server::{ControlService, ControlServiceServer};
use crate::raft::ClusterNode;
use crate::state::certificates::{self, AcmeSettings, StoredCertificate};
use crate::state::{Applied, ClusterState, Command, StateError, parse_backend_address};

/// Largest configuration accepted, encoded; larger ones are refused with
/// INVALID_ARGUMENT rather than replicated to every node.
pub const MAX_CONFIG_BYTES: usize = 4 * 1024 * 1024;
/// Largest API message (a maximal configuration plus framing).
const MAX_API_MESSAGE_BYTES: usize = 16 * 1024 * 1024;
/// Longest drain wait one call may ask for.
const MAX_DRAIN_WAIT: Duration = Duration::from_secs(600);

/// The control service of one node.
pub struct ControlApi {
    control: Arc<ClusterControl>,
}

impl ControlApi {
    /// The tonic server for `control`, every call checked by `auth`.
    pub fn server(
        control: Arc<ClusterControl>,
        auth: &ApiAuth,
    ) -> guard::Guarded<ControlServiceServer<ControlApi>> {
        let server = ControlServiceServer::new(ControlApi { control })
            .max_decoding_message_size(MAX_API_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_API_MESSAGE_BYTES);
        auth.guard(server)
    }

    /// Proposes `command` for the caller of `request`, once per
    /// `request_id` (empty: none given).
    async fn change<T>(
        &self,
        request: &Request<T>,
        command: Command,
        request_id: &str,
    ) -> Result<Response<pb::ChangeReply>, Status> {
        let applied = self
            .control
            .write(command, caller(request), request_id_of(request_id))
            .await?;
        Ok(Response::new(change_reply(applied, false)))
    }
}

/// Who made a request, as [`guard`] identified it: the certificate's or
/// token's identity, and its address.
fn caller<T>(request: &Request<T>) -> String {
    match request.extensions().get::<guard::Caller>() {
        Some(caller) => caller.0.clone(),
        None => "api client".into(),
    }
}

/// The request id a client gave, if any.
fn request_id_of(value: &str) -> Option<String> {
    (!value.is_empty()).then(|| value.to_string())
}

fn change_reply(applied: Applied, dry_run: bool) -> pb::ChangeReply {
    pb::ChangeReply {
        unchanged: applied.unchanged,
        replayed: applied.replayed,
        version: applied.version,
        changes: applied
            .changes
            .into_iter()
            .map(|c| pb::Change {
                kind: serde_json::to_value(c.kind)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
                object: c.object,
                name: c.name,
                detail: c.detail,
            })
            .collect(),
        dry_run,
    }
}

fn admin_state(field: &str, value: &str) -> Result<crate::config::AdminState, Status> {
    serde_json::from_value(serde_json::Value::String(value.to_string())).map_err(|_| {
        ControlError::from(StateError::invalid(
            field,
            value,
            "expected active, draining or disabled",
        ))
        .into()
    })
}

fn not_found(what: String) -> Status {
    ControlError::from(StateError::NotFound { what }).into()
}

fn address(field: &str, value: &str) -> Result<SocketAddr, Status> {
    parse_backend_address(field, value).map_err(|e| ControlError::from(e).into())
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::WatchEvent, Status>> + Send>>;

#[tonic::async_trait]
impl ControlService for ControlApi {
    async fn status(
        &self,
        _request: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusReply>, Status> {
        let status = self.control.status();
        let reports = self.control.reports().await;
        Ok(Response::new(pb::StatusReply {
            vip_address: self.control.vip.status().address.unwrap_or_default(),
            id: status.id,
            role: status.role.to_string(),
            leader: status.leader,
            term: status.term,
            last_log_index: status.last_log_index,
            applied_index: status.applied_index,
            config_version: status.config_version,
            leader_confirmed: status.leader_confirmed,
            discovery: crate::state::discovery::views(&self.control.served.state())
                .into_iter()
                .map(|v| pb::DiscoveryState {
                    pool: v.pool,
                    name: v.name,
                    r#type: v.record_type.to_string(),
                    backends: v.backends as u32,
                    stale_since_ms: v.stale_since_ms,
                    stale_reason: v.stale_reason.unwrap_or_default(),
                })
                .collect(),
            nodes: status
                .nodes
                .into_iter()
                .map(|n| {
                    let report = reports.get(&n.id).cloned().flatten();
                    pb::NodeInfo {
                        id: n.id,
                        raft_addr: n.raft_addr,
                        // Members given in node.toml are known by their
                        // peer address only: the node says its own.
                        api_addr: match (&report, n.api_addr.is_empty()) {
                            (Some(report), true) => report.api_addr.clone(),
                            _ => n.api_addr,
                        },
                        membership: if n.voter { "voter" } else { "learner" }.to_string(),
                        matched_index: n.matched_index,
                        vip_held: report.as_ref().map(|r| r.vip_held),
                        cert_expires_ms: report.as_ref().and_then(|r| r.cert_expires_ms),
                        config_version: report.as_ref().map(|r| r.config_version),
                        bgp_announcing: report
                            .as_ref()
                            .and_then(|r| Some(r.bgp.as_ref()?.announcing)),
                        bgp_why_not: report
                            .as_ref()
                            .and_then(|r| Some(r.bgp.as_ref()?.why_not.clone()))
                            .unwrap_or_default(),
                        bgp_session: report
                            .as_ref()
                            .and_then(|r| Some(r.bgp.as_ref()?.session.clone()))
                            .unwrap_or_default(),
                        applied_index: report.map(|r| r.applied_index),
                    }
                })
                .collect(),
        }))
    }

    async fn apply_config(
        &self,
        request: Request<pb::ApplyConfigRequest>,
    ) -> Result<Response<pb::ChangeReply>, Status> {
        let caller = caller(&request);
        let request = request.into_inner();
        let config = request
            .config
            .ok_or_else(|| Status::invalid_argument("config: missing"))?;
        let size = prost::Message::encoded_len(&config);
        if size > MAX_CONFIG_BYTES {
            return Err(Status::invalid_argument(format!(
                "config: {size} bytes is larger than the limit of {MAX_CONFIG_BYTES} bytes"
            )));
        }

        let spec = convert::from_proto(config).map_err(ControlError::from)?;
        let command = Command::ApplyConfig {
            spec,
            if_version: request.if_version,
            note: request
                .note
                .as_ref()
                .map(|n| n.chars().filter(|c| !c.is_control()).take(200).collect()),
        };
        if request.dry_run {
            let applied = self.control.dry_run(command).await?;
            return Ok(Response::new(change_reply(applied, true)));
        }
        let applied = self
            .control
            .write(command, caller, request_id_of(&request.request_id))
            .await?;
        Ok(Response::new(change_reply(applied, false)))
    }

    async fn get_config(
        &self,
        request: Request<pb::GetConfigRequest>,
    ) -> Result<Response<pb::GetConfigReply>, Status> {
        let state = self.control.read_config(request.into_inner().local).await?;
        Ok(Response::new(pb::GetConfigReply {
            version: state.version,
            config: Some(convert::to_proto(&state.spec)),
            health: self.control.served.committed_views().into_iter().collect(),
        }))
    }

    async fn add_backend(
        &self,
        request: Request<pb::AddBackendRequest>,
    ) -> Result<Response<pb::ChangeReply>, Status> {
        let r = request.get_ref();
        let state = if r.admin_state.is_empty() {
            crate::config::AdminState::Active
        } else {
            admin_state("admin_state", &r.admin_state)?
        };
        let command = Command::AddBackend {
            pool: r.pool.clone(),
            backend: crate::config::BackendSpec {
                address: r.address.clone(),
                weight: r.weight.unwrap_or_else(crate::config::defaults::weight),
                admin_state: state,
                discovered: None,
            },
        };
        self.change(&request, command, &r.request_id).await
    }

    async fn remove_backend(
        &self,
        request: Request<pb::RemoveBackendRequest>,
    ) -> Result<Response<pb::ChangeReply>, Status> {
        let r = request.get_ref();
        let command = Command::RemoveBackend {
            pool: r.pool.clone(),
            address: r.address.clone(),
        };
        self.change(&request, command, &r.request_id).await
    }

    async fn set_weight(
        &self,
        request: Request<pb::SetWeightRequest>,
    ) -> Result<Response<pb::ChangeReply>, Status> {
        let r = request.get_ref();
        let command = Command::SetWeight {
            pool: r.pool.clone(),
            address: r.address.clone(),
            weight: r.weight,
        };
        self.change(&request, command, &r.request_id).await
    }

    async fn set_admin_state(
        &self,
        request: Request<pb::SetAdminStateRequest>,
    ) -> Result<Response<pb::ChangeReply>, Status> {
        let r = request.get_ref();
        let command = Command::SetAdminState {
            pool: r.pool.clone(),
            address: r.address.clone(),
            state: admin_state("admin_state", &r.admin_state)?,
        };
        self.change(&request, command, &r.request_id).await
    }

    async fn wait_drained(
        &self,
        request: Request<pb::WaitDrainedRequest>,
    ) -> Result<Response<pb::WaitDrainedReply>, Status> {
        let r = request.into_inner();
        let backend = address("address", &r.address)?;
        let timeout = Duration::from_millis(r.timeout_ms);
        if timeout.is_zero() || timeout > MAX_DRAIN_WAIT {
            return Err(ControlError::from(StateError::invalid(
                "timeout_ms",
                r.timeout_ms,
                format!("must be 1 to {} ms", MAX_DRAIN_WAIT.as_millis()),
            ))
            .into());
        }
        // The pool and backend must exist in the committed configuration
        // (a linearizable read): a typo must not read as "drained".
        let state = self.control.read_config(false).await?;
        let pool = state
            .spec
            .pools
            .iter()
            .find(|p| p.name == r.pool)
            .ok_or_else(|| not_found(format!("pool {:?}", r.pool)))?;
        let known = pool
            .backends
            .iter()
            .any(|b| parse_backend_address("address", &b.address).is_ok_and(|a| a == backend));
        if !known {
            return Err(not_found(format!("backend {backend} in pool {:?}", r.pool)));
        }
        let (drained, counts) = self.control.wait_drained(&r.pool, backend, timeout).await;
        Ok(Response::new(pb::WaitDrainedReply {
            drained,
            nodes: counts
                .into_iter()
                .map(|c| pb::NodeConnections {
                    node: c.node,
                    active: c.active,
                    reached: c.reached,
                })
                .collect(),
        }))
    }

    async fn history(
        &self,
        _request: Request<pb::HistoryRequest>,
    ) -> Result<Response<pb::HistoryReply>, Status> {
        let state = self.control.read_config(false).await?;
        Ok(Response::new(pb::HistoryReply {
            current_version: state.version,
            revisions: state
                .history
                .revisions()
                .map(|r| pb::Revision {
                    version: r.version,
                    time_unix_ms: r.origin.time_ms,
                    caller: r.origin.caller.clone(),
                    command: r.command.clone(),
                    summary: r.summary.clone(),
                })
                .collect(),
        }))
    }

    async fn rollback(
        &self,
        request: Request<pb::RollbackRequest>,
    ) -> Result<Response<pb::ChangeReply>, Status> {
        let r = request.get_ref();
        let command = Command::Rollback { version: r.version };
        self.change(&request, command, &r.request_id).await
    }

    type WatchStream = WatchStream;

    async fn watch(
        &self,
        request: Request<pb::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let node = self.control.id;
        // Subscribe before reading the history, so nothing falls between
        // the replay and the live events; what falls in both is sent once.
        let mut events = self.control.served.events().subscribe();
        let from = request.into_inner().from_version;
        let replay = match from {
            Some(from) => replay_after(node, &self.control.served.state(), from)?,
            None => Vec::new(),
        };
        let mut last_sent = replay
            .last()
            .map_or(from.unwrap_or(0), |(version, _)| *version);
        let control = self.control.clone();
        let stream = async_stream::stream! {
            for (_, event) in replay {
                yield Ok(event);
            }
            loop {
                match events.recv().await {
                    Ok(stamped) => {
                        if let Event::Config { version, .. } = &stamped.event {
                            if *version <= last_sent {
                                continue;
                            }
                            if last_sent > 0 && *version > last_sent + 1 {
                                // The table skipped versions (a snapshot, a
                                // burst): send them from the history, or say
                                // they are gone, rather than skip silently.
                                match replay_after(node, &control.served.state(), last_sent) {
                                    Ok(missed) => {
                                        for (version, event) in missed {
                                            last_sent = version;
                                            yield Ok(event);
                                        }
                                    }
                                    Err(status) => {
                                        yield Err(status);
                                        break;
                                    }
                                }
                                continue;
                            }
                            last_sent = *version;
                        }
                        yield Ok(watch_event(node, stamped));
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                        yield Err(Status::resource_exhausted(format!(
                            "watcher too slow: {missed} events missed; resume with from_version {last_sent}"
                        )));
                        break;
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                }
            }
        };
        Ok(Response::new(Box::pin(stream)))
    }

    async fn add_node(
        &self,
        request: Request<pb::AddNodeRequest>,
    ) -> Result<Response<pb::MembershipReply>, Status> {
        let request = request.into_inner();
        crate::config::check_peer_address(&request.raft_addr).map_err(|why| {
            Status::from(ControlError::from(StateError::invalid(
                "raft_addr",
                &request.raft_addr,
                why,
            )))
        })?;
        if !request.api_addr.is_empty() {
            address("api_addr", &request.api_addr)?;
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

    async fn traffic(
        &self,
        _request: Request<pb::TrafficRequest>,
    ) -> Result<Response<pb::TrafficReply>, Status> {
        let nodes = self
            .control
            .traffic_everywhere()
            .await
            .into_iter()
            .map(|(id, traffic)| {
                let reached = traffic.is_some();
                let traffic = traffic.unwrap_or_default();
                pb::NodeTraffic {
                    id,
                    reached,
                    frontends: traffic
                        .frontends
                        .into_iter()
                        .map(|f| pb::FrontendTraffic {
                            name: f.name,
                            requests: f.requests,
                            errors: f.errors,
                            open: f.open,
                            latency_bounds: crate::latency::BOUNDS
                                .iter()
                                .map(|b| b.min(f64::MAX))
                                .collect(),
                            latency_counts: f.latency_counts,
                        })
                        .collect(),
                    backends: traffic
                        .backends
                        .into_iter()
                        .map(|b| pb::BackendTraffic {
                            pool: b.pool,
                            address: b.address,
                            requests: b.requests,
                            failures: b.failures,
                            errors: b.errors,
                            active: b.active,
                            latency_counts: b.latency_counts,
                        })
                        .collect(),
                }
            })
            .collect();
        Ok(Response::new(pb::TrafficReply { nodes }))
    }

    async fn put_certificate(
        &self,
        request: Request<pb::PutCertificateRequest>,
    ) -> Result<Response<pb::ChangeReply>, Status> {
        let r = request.get_ref();
        let command = Command::PutCertificate {
            certificate: StoredCertificate {
                name: r.name.clone(),
                chain_pem: r.chain_pem.clone(),
                key_pem: r.key_pem.clone(),
                default: r.default,
                acme: r.acme.as_ref().map(|a| AcmeSettings {
                    directory: a.directory.clone(),
                    contact: a.contact.clone(),
                    names: a.names.iter().map(|n| n.to_ascii_lowercase()).collect(),
                    directory_ca_pem: a.directory_ca_pem.clone(),
                    account: None,
                    renew: false,
                }),
            },
            replace: r.replace,
        };
        self.change(&request, command, &r.request_id).await
    }

    async fn renew_certificate(
        &self,
        request: Request<pb::RenewCertificateRequest>,
    ) -> Result<Response<pb::ChangeReply>, Status> {
        let r = request.get_ref();
        let command = Command::RenewCertificate {
            name: r.name.clone(),
        };
        self.change(&request, command, &r.request_id).await
    }

    async fn remove_certificate(
        &self,
        request: Request<pb::RemoveCertificateRequest>,
    ) -> Result<Response<pb::ChangeReply>, Status> {
        let r = request.get_ref();
        let command = Command::RemoveCertificate {
            name: r.name.clone(),
        };
        self.change(&request, command, &r.request_id).await
    }

    async fn list_certificates(
        &self,
        request: Request<pb::ListCertificatesRequest>,
    ) -> Result<Response<pb::ListCertificatesReply>, Status> {
        let state = self.control.read_config(request.into_inner().local).await?;
        let certificates = state
            .certificates
            .values()
            .filter_map(|c| certificates::inspect(c).ok())
            .map(|info| pb::CertificateInfo {
                name: info.name,
                names: info.names,
                fingerprint: info.fingerprint,
                not_after_ms: info.not_after_ms,
                default: info.default,
                acme: info.acme,
            })
            .collect();
        Ok(Response::new(pb::ListCertificatesReply {
            version: state.version,
            certificates,
        }))
    }

    async fn transfer_leader(
        &self,
        request: Request<pb::TransferLeaderRequest>,
    ) -> Result<Response<pb::TransferLeaderReply>, Status> {
        let target = request.into_inner().target;
        match self
            .control
            .execute(LeaderRequest::TransferLeader { target })
            .await?
        {
            LeaderReply::Transferred {
                from,
                to,
                elapsed_ms,
            } => Ok(Response::new(pb::TransferLeaderReply {
                previous_leader: from,
                leader: to,
                elapsed_ms,
            })),
            other => Err(Status::internal(format!("unexpected reply {other:?}"))),
        }
    }

    async fn drain_node(
        &self,
        request: Request<pb::DrainNodeRequest>,
    ) -> Result<Response<pb::DrainNodeReply>, Status> {
        let pb::DrainNodeRequest { id, drain } = request.into_inner();
        let draining = self.control.drain_node(id, drain).await?;
        Ok(Response::new(pb::DrainNodeReply { id, draining }))
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

/// The configuration changes after version `from` that this node's history
/// holds, as watch events; OUT_OF_RANGE when the history no longer reaches
/// back to `from` (etcd's "compacted").
fn replay_after(
    node: u64,
    state: &ClusterState,
    from: u64,
) -> Result<Vec<(u64, pb::WatchEvent)>, Status> {
    if from >= state.version {
        return Ok(Vec::new());
    }
    let oldest = state.history.oldest().unwrap_or(state.version + 1);
    if from + 1 < oldest {
        return Err(Status::out_of_range(format!(
            "version {from} is compacted: the history keeps changes from version {oldest} to {} \
             (resume from {} or later, or read the whole configuration with GetConfig)",
            state.version,
            oldest - 1
        )));
    }
    Ok(state
        .history
        .after(from)
        .map(|r| {
            let event = pb::WatchEvent {
                node,
                time_unix_ms: r.origin.time_ms,
                event: Some(pb::watch_event::Event::Config(pb::ConfigChanged {
                    version: r.version,
                    summary: r.summary.clone(),
                    caller: r.origin.caller.clone(),
                    replayed: true,
                })),
            };
            (r.version, event)
        })
        .collect())
}

fn watch_event(node: u64, stamped: Stamped) -> pb::WatchEvent {
    use pb::watch_event::Event as E;
    let event = match stamped.event {
        Event::Config {
            version,
            summary,
            caller,
        } => E::Config(pb::ConfigChanged {
            version,
            summary,
            caller,
            replayed: false,
        }),
        Event::Leader { leader, term } => E::Leader(pb::LeaderChanged { leader, term }),
        Event::Health {
            pool,
            address,
            health,
            reason,
        } => E::Health(pb::BackendHealth {
            pool,
            address,
            health: health.to_string(),
            reason,
        }),
    };
    pb::WatchEvent {
        node,
        time_unix_ms: stamped.time_ms,
        event: Some(event),
    }
}

fn voters(reply: LeaderReply) -> Result<Response<pb::MembershipReply>, Status> {
    match reply {
        LeaderReply::Voters(voters) => Ok(Response::new(pb::MembershipReply { voters })),
        other => Err(Status::internal(format!("unexpected reply {other:?}"))),
    }
}
