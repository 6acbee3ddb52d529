//! `raftlb ctl`: the operator's client for the control API. Any node's API
//! endpoint works; several may be given and the next is tried when one is
//! unreachable.
//!
//! Exit status: 0 success, 1 the request was refused (the message says
//! why), 2 bad usage, 3 the cluster could not be reached.

mod args;
mod cert;
pub mod client_config;
mod errors;
mod output;
mod top;
mod traffic;
mod watch;

pub use args::{
    BackendVerb, CertFiles, CertVerb, ClusterVerb, CtlArgs, NodeVerb, TrafficVerb, Verb,
};
pub(crate) use errors::{
    code_name, connection_lost, describe, error_chain, failed_why, is_unreachable,
};

use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

use crate::api::convert;
use crate::auth::Token;
use crate::config::ClusterSpec;
use crate::proto::v1 as pb;
use crate::proto::v1::control_service_client::ControlServiceClient;
use crate::raft::network::MAX_MESSAGE_BYTES;
use crate::tls::transport::FirstError;

/// How a ctl run ended.
pub enum Outcome {
    /// Done; print this.
    Done(String),
    /// The cluster said no.
    Refused(String),
    /// Bad input on this side.
    Usage(String),
    /// No endpoint answered.
    Unreachable(String),
}

impl Outcome {
    /// The exit status of INTERFACE.md.
    pub fn exit_code(&self) -> u8 {
        match self {
            Outcome::Done(_) => 0,
            Outcome::Refused(_) => 1,
            Outcome::Usage(_) => 2,
            Outcome::Unreachable(_) => 3,
        }
    }
}

/// Per-call deadline: writes wait for a quorum at most this long.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs one ctl command.
pub async fn run(args: CtlArgs) -> Outcome {
    let given = client_config::Given {
        endpoints: args.endpoint.clone(),
        ca: args.ca.clone(),
        cert: args.cert.clone(),
        key: args.key.clone(),
        token: args.token.clone(),
    };
    let access = match client_config::resolve(given) {
        Ok(access) => access,
        Err(error) => return Outcome::Usage(format!("client config: {error}")),
    };
    if let Verb::Watch { from_version } = args.verb {
        return watch::follow(&access, from_version, args.json).await;
    }
    // One id per invocation, kept across endpoints: a write retried on the
    // next node after a lost reply is applied once.
    let ids = RequestIds::new();
    let mut last_error = String::from("no endpoint given");
    for endpoint in &access.endpoints {
        let errors = FirstError::default();
        let client = match connect(endpoint, access.tls.as_ref(), &errors).await {
            Ok(client) => Client {
                inner: client,
                token: access.token.clone(),
                ids: ids.clone(),
            },
            Err(error) => {
                last_error = format!("{endpoint}: {error}");
                continue;
            }
        };
        match call(client, &args).await {
            Err(status) if is_unreachable(&status) || connection_lost(&status) => {
                last_error = format!(
                    "{endpoint}: {}",
                    failed_why(&status, &errors, access.tls.is_some())
                );
                continue;
            }
            Err(status) => {
                return Outcome::Refused(format!(
                    "{}: {}",
                    code_name(status.code()),
                    status.message()
                ));
            }
            Ok(outcome) => return outcome,
        }
    }
    Outcome::Unreachable(format!("cluster unreachable: {last_error}"))
}

/// Request ids of one ctl invocation: `ctl-<random>` for its write, and
/// `ctl-<random>/<step>` where one invocation makes several (a drain, then
/// a removal).
#[derive(Clone)]
struct RequestIds {
    base: String,
    /// Writes numbered so far (`numbered`).
    written: std::sync::Arc<std::sync::atomic::AtomicU32>,
}

impl RequestIds {
    fn new() -> Self {
        RequestIds {
            base: format!("ctl-{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..)),
            written: Default::default(),
        }
    }

    /// A new id for each call, for verbs that make several writes of the
    /// same kind (each step of a canary walk, each attempt after a
    /// conflict): `ctl-<random>/<step>-<n>`.
    fn numbered(&self, step: &str) -> String {
        let n = self
            .written
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        format!("{}/{step}-{n}", self.base)
    }

    /// The id of the invocation's write named `step`.
    fn id(&self, step: &str) -> String {
        format!("{}/{step}", self.base)
    }
}

/// A connected client that sends the token with every call.
struct Client {
    inner: ControlServiceClient<Channel>,
    token: Token,
    ids: RequestIds,
}

impl Client {
    fn request<T>(&self, message: T, timeout: Duration) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request.set_timeout(timeout);
        self.token.attach(&mut request);
        request
    }
}

/// A client of `endpoint`, over mutual TLS with `tls`; I/O errors of its
/// connection go to `errors`.
pub(crate) async fn connect(
    endpoint: &str,
    tls: Option<&std::sync::Arc<rustls::ClientConfig>>,
    errors: &FirstError,
) -> Result<ControlServiceClient<Channel>, String> {
    let target = Endpoint::from_shared(format!("http://{endpoint}"))
        .map_err(|e| format!("bad endpoint: {e}"))?
        .connect_timeout(Duration::from_secs(2));
    let channel = match tls {
        None => target.connect().await,
        Some(tls) => {
            let tls = tls.clone();
            target
                .connect_with_connector(crate::tls::transport::connector(
                    move || tls.clone(),
                    errors.clone(),
                ))
                .await
        }
    }
    .map_err(|e| error_chain(&e))?;
    Ok(ControlServiceClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES))
}

/// Why the cluster has not settled: no leader, or the VIP not (only) on
/// the leader; `None` when it has.
fn unsettled(status: &pb::StatusReply) -> Option<String> {
    let Some(leader) = status.leader else {
        return Some("no leader".into());
    };
    if status.vip_address.is_empty() {
        return None;
    }
    // BGP mode: every node announces, once eligible.
    if status.nodes.iter().any(|n| n.bgp_announcing.is_some()) {
        let withdrawn: Vec<u64> = status
            .nodes
            .iter()
            // A node drained on purpose is settled too.
            .filter(|n| n.bgp_announcing != Some(true) && n.bgp_why_not != ["draining"])
            .map(|n| n.id)
            .collect();
        return (!withdrawn.is_empty())
            .then(|| format!("nodes {withdrawn:?} do not announce the VIP"));
    }
    let holders: Vec<u64> = status
        .nodes
        .iter()
        .filter(|n| n.vip_held == Some(true))
        .map(|n| n.id)
        .collect();
    match holders.as_slice() {
        [one] if *one == leader => None,
        [] => Some(format!(
            "the VIP is held by no node (leader: node {leader})"
        )),
        _ => Some(format!(
            "the VIP is held by {holders:?}, the leader is node {leader}"
        )),
    }
}

/// `ctl status --wait`: asks every 100 ms until the cluster has settled or
/// `limit` passed.
async fn wait_settled(
    client: &mut Client,
    limit: Duration,
    json: bool,
) -> Result<Outcome, tonic::Status> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let request = client.request(pb::StatusRequest {}, CALL_TIMEOUT);
        let status = client.inner.status(request).await?.into_inner();
        let why = unsettled(&status);
        let Some(why) = why else {
            return Ok(Outcome::Done(output::status(&status, json)));
        };
        if tokio::time::Instant::now() >= deadline {
            return Ok(Outcome::Refused(format!(
                "not settled within {} s: {why}\n{}",
                limit.as_secs(),
                output::status(&status, json)
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn remove_backend(pool: &str, address: &str, request_id: String) -> pb::RemoveBackendRequest {
    pb::RemoveBackendRequest {
        pool: pool.to_string(),
        address: address.to_string(),
        request_id,
    }
}

async fn call(mut client: Client, args: &CtlArgs) -> Result<Outcome, tonic::Status> {
    let json = args.json;
    Ok(match &args.verb {
        Verb::Top { once } => return top::run(&mut client, *once, json).await,
        Verb::Status { wait: false, .. } => {
            let request = client.request(pb::StatusRequest {}, CALL_TIMEOUT);
            let status = client.inner.status(request).await?.into_inner();
            let mut text = output::status(&status, json);
            if !json {
                text.push_str(&cert::expiring(&mut client).await);
            }
            Outcome::Done(text)
        }
        Verb::Status {
            wait: true,
            timeout,
        } => wait_settled(&mut client, Duration::from_secs(*timeout), json).await?,
        Verb::Apply {
            file,
            dry_run,
            if_version,
        } => {
            let (spec, certificates) = match ClusterSpec::read_with_certificates(file) {
                Ok(read) => read,
                Err(error) => return Ok(Outcome::Usage(error.to_string())),
            };
            // Every entry's files are read before anything is committed.
            let certificates = match certificates
                .iter()
                .map(crate::config::CertificateFile::to_stored)
                .collect::<Result<Vec<_>, _>>()
            {
                Ok(certificates) => certificates,
                Err(error) => return Ok(Outcome::Usage(error)),
            };
            let message = pb::ApplyConfigRequest {
                config: Some(convert::to_proto(&spec)),
                if_version: *if_version,
                dry_run: *dry_run,
                request_id: client.ids.id("apply"),
                note: None,
            };
            let request = client.request(message, CALL_TIMEOUT);
            let reply = client.inner.apply_config(request).await?.into_inner();
            let mut printed = output::changes(&reply, json);
            // After the configuration, so that --if-version applies to it.
            if *dry_run || certificates.is_empty() {
                return Ok(Outcome::Done(printed));
            }
            printed.push_str(&cert::apply_entries(&mut client, certificates, json).await?);
            Outcome::Done(printed)
        }
        Verb::Get { what, local } => {
            let request = client.request(pb::GetConfigRequest { local: *local }, CALL_TIMEOUT);
            let reply = client.inner.get_config(request).await?.into_inner();
            let spec = convert::from_proto(reply.config.unwrap_or_default())
                .map_err(|e| tonic::Status::internal(e.to_string()))?;
            Outcome::Done(output::config(
                reply.version,
                &spec,
                &reply.health,
                what.as_deref(),
                json,
            ))
        }
        Verb::Backend(verb) => return backend_verb(client, verb, json).await,
        Verb::Cert(verb) => return cert::run(&mut client, verb, json).await,
        Verb::Traffic(verb) => return traffic::run(&mut client, verb, json).await,
        Verb::History => {
            let request = client.request(pb::HistoryRequest {}, CALL_TIMEOUT);
            let reply = client.inner.history(request).await?.into_inner();
            Outcome::Done(output::history(&reply, json))
        }
        Verb::Rollback { version } => {
            let message = pb::RollbackRequest {
                version: *version,
                request_id: client.ids.id("rollback"),
            };
            let request = client.request(message, CALL_TIMEOUT);
            let reply = client.inner.rollback(request).await?.into_inner();
            Outcome::Done(output::changes(&reply, json))
        }
        // Runs apart, across endpoints (see `run`).
        Verb::Watch { .. } => Outcome::Usage("watch cannot run here".into()),
        Verb::Cluster(ClusterVerb::AddNode {
            id,
            raft_addr,
            api_addr,
        }) => {
            let message = pb::AddNodeRequest {
                id: *id,
                raft_addr: raft_addr.clone(),
                api_addr: api_addr.clone(),
            };
            // Waits for the new node to catch up before promoting it.
            let request = client.request(message, Duration::from_secs(60));
            let reply = client.inner.add_node(request).await?.into_inner();
            Outcome::Done(output::voters(&reply.voters, json))
        }
        Verb::Cluster(ClusterVerb::TransferLeader { id }) => {
            let request = client.request(pb::TransferLeaderRequest { target: *id }, CALL_TIMEOUT);
            let reply = client.inner.transfer_leader(request).await?.into_inner();
            Outcome::Done(output::transferred(&reply, json))
        }
        Verb::Node(node_verb @ (NodeVerb::Drain { id } | NodeVerb::Undrain { id })) => {
            let drain = matches!(node_verb, NodeVerb::Drain { .. });
            let request = client.request(pb::DrainNodeRequest { id: *id, drain }, CALL_TIMEOUT);
            let reply = client.inner.drain_node(request).await?.into_inner();
            Outcome::Done(output::drained(&reply, json))
        }
        Verb::Cluster(ClusterVerb::RemoveNode { id }) => {
            let request = client.request(pb::RemoveNodeRequest { id: *id }, CALL_TIMEOUT);
            let reply = client.inner.remove_node(request).await?.into_inner();
            Outcome::Done(output::voters(&reply.voters, json))
        }
    })
}

async fn backend_verb(
    mut client: Client,
    verb: &BackendVerb,
    json: bool,
) -> Result<Outcome, tonic::Status> {
    let ids = client.ids.clone();
    let set_state = |pool: &str, address: &str, state: &str| pb::SetAdminStateRequest {
        pool: pool.to_string(),
        address: address.to_string(),
        admin_state: state.to_string(),
        request_id: ids.id(state),
    };
    Ok(match verb {
        BackendVerb::Add {
            pool,
            address,
            weight,
        } => {
            let message = pb::AddBackendRequest {
                pool: pool.clone(),
                address: address.clone(),
                weight: Some(*weight),
                admin_state: String::new(),
                request_id: ids.id("add"),
            };
            let request = client.request(message, CALL_TIMEOUT);
            Outcome::Done(output::changes(
                &client.inner.add_backend(request).await?.into_inner(),
                json,
            ))
        }
        BackendVerb::SetWeight {
            pool,
            address,
            weight,
        } => {
            let message = pb::SetWeightRequest {
                pool: pool.clone(),
                address: address.clone(),
                weight: *weight,
                request_id: ids.id("set-weight"),
            };
            let request = client.request(message, CALL_TIMEOUT);
            Outcome::Done(output::changes(
                &client.inner.set_weight(request).await?.into_inner(),
                json,
            ))
        }
        BackendVerb::Enable { pool, address } | BackendVerb::Disable { pool, address } => {
            let state = if matches!(verb, BackendVerb::Enable { .. }) {
                "active"
            } else {
                "disabled"
            };
            let request = client.request(set_state(pool, address, state), CALL_TIMEOUT);
            Outcome::Done(output::changes(
                &client.inner.set_admin_state(request).await?.into_inner(),
                json,
            ))
        }
        BackendVerb::Drain {
            pool,
            address,
            wait,
            timeout,
        } => {
            let request = client.request(set_state(pool, address, "draining"), CALL_TIMEOUT);
            let reply = client.inner.set_admin_state(request).await?.into_inner();
            let mut text = output::changes(&reply, json);
            if *wait {
                let (drained, report) =
                    wait_drained(&mut client, pool, address, *timeout, json).await?;
                if !drained {
                    return Ok(Outcome::Refused(report));
                }
                text = format!("{text}\n{report}");
            }
            Outcome::Done(text)
        }
        BackendVerb::Remove {
            pool,
            address,
            now,
            timeout,
        } => {
            let mut lines = Vec::new();
            if !*now {
                let request = client.request(set_state(pool, address, "draining"), CALL_TIMEOUT);
                client.inner.set_admin_state(request).await?;
                match wait_drained(&mut client, pool, address, *timeout, json).await {
                    Ok((_, report)) => lines.push(report),
                    // Gone already: this invocation's removal went through
                    // on a node that did not answer; the removal below
                    // gets its first result back.
                    Err(status) if status.code() == tonic::Code::NotFound => {}
                    Err(status) => return Err(status),
                }
            }
            let request = client.request(
                remove_backend(pool, address, ids.id("remove")),
                CALL_TIMEOUT,
            );
            let reply = client.inner.remove_backend(request).await?.into_inner();
            lines.push(output::changes(&reply, json));
            Outcome::Done(lines.join("\n"))
        }
    })
}

/// Waits for a backend to have no connections on any node; whether it did,
/// and a report naming the nodes that still hold some.
async fn wait_drained(
    client: &mut Client,
    pool: &str,
    address: &str,
    timeout_s: u64,
    json: bool,
) -> Result<(bool, String), tonic::Status> {
    let message = pb::WaitDrainedRequest {
        pool: pool.to_string(),
        address: address.to_string(),
        timeout_ms: timeout_s.saturating_mul(1000),
    };
    let request = client.request(message, Duration::from_secs(timeout_s) + CALL_TIMEOUT);
    let reply = client.inner.wait_drained(request).await?.into_inner();
    Ok((reply.drained, output::drain(&reply, timeout_s, json)))
}
