//! `raftlb ctl`: the operator's client for the control API. Any node's API
//! endpoint works; several may be given and the next is tried when one is
//! unreachable.
//!
//! Exit status: 0 success, 1 the request was refused (the message says
//! why), 2 bad usage, 3 the cluster could not be reached.

mod output;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use tonic::transport::{Channel, Endpoint};

use crate::api::convert;
use crate::config::{ClusterSpec, read_toml};
use crate::proto::v1 as pb;
use crate::proto::v1::control_service_client::ControlServiceClient;
use crate::raft::network::MAX_MESSAGE_BYTES;

/// Options shared by every verb.
#[derive(Debug, Args)]
pub struct CtlArgs {
    /// Control API address(es) of any node, comma-separated; the next is
    /// tried when one is unreachable.
    #[arg(
        long,
        global = true,
        env = "RAFTLB_ENDPOINT",
        default_value = "127.0.0.1:7200",
        value_delimiter = ','
    )]
    pub endpoint: Vec<String>,
    /// Print one JSON document instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub verb: Verb,
}

/// `raftlb ctl` verbs.
#[derive(Debug, Subcommand)]
pub enum Verb {
    /// Nodes, roles, leader, term, applied index and configuration version.
    Status,
    /// Replace the whole served configuration with a cluster.toml.
    ///
    /// Example: raftlb ctl apply -f cluster.toml --if-version 7
    Apply {
        /// The cluster.toml to apply.
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
        /// Refuse unless the configuration is still at this version.
        #[arg(long)]
        if_version: Option<u64>,
    },
    /// Print the committed configuration (all of it as cluster.toml, or one
    /// part as a table).
    ///
    /// Example: raftlb ctl get backends
    Get {
        /// frontends, pools or backends; all when omitted.
        #[arg(value_parser = ["frontends", "pools", "backends"])]
        what: Option<String>,
        /// Answer from the contacted node's applied state, without asking
        /// the leader.
        #[arg(long)]
        local: bool,
    },
    /// Cluster membership.
    #[command(subcommand)]
    Cluster(ClusterVerb),
}

/// `raftlb ctl cluster` verbs.
#[derive(Debug, Subcommand)]
pub enum ClusterVerb {
    /// Add a node: it joins as a learner, catches up, then becomes a voter.
    ///
    /// Example: raftlb ctl cluster add-node 4 127.0.0.14:7100 127.0.0.14:7200
    AddNode {
        /// New node id.
        id: u64,
        /// Its peer address.
        raft_addr: String,
        /// Its control API address.
        api_addr: String,
    },
    /// Remove a node from the cluster.
    ///
    /// Example: raftlb ctl cluster remove-node 4
    RemoveNode {
        /// The node id.
        id: u64,
    },
}

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
    let mut last_error = String::from("no endpoint given");
    for endpoint in &args.endpoint {
        let client = match connect(endpoint).await {
            Ok(client) => client,
            Err(error) => {
                last_error = format!("{endpoint}: {error}");
                continue;
            }
        };
        match call(client, &args).await {
            Err(status) if is_unreachable(&status) => {
                last_error = format!("{endpoint}: {}", status.message());
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

async fn connect(endpoint: &str) -> Result<ControlServiceClient<Channel>, String> {
    let channel = Endpoint::from_shared(format!("http://{endpoint}"))
        .map_err(|e| format!("bad endpoint: {e}"))?
        .connect_timeout(Duration::from_secs(2))
        .timeout(CALL_TIMEOUT)
        .connect()
        .await
        .map_err(|e| e.to_string())?;
    Ok(ControlServiceClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES))
}

fn is_unreachable(status: &tonic::Status) -> bool {
    // UNAVAILABLE from a reachable node means "no quorum": that is the
    // cluster's answer, not a reason to try another endpoint.
    status.code() == tonic::Code::Unavailable && status.message().contains("transport")
}

fn code_name(code: tonic::Code) -> &'static str {
    match code {
        tonic::Code::InvalidArgument => "invalid argument",
        tonic::Code::NotFound => "not found",
        tonic::Code::AlreadyExists => "already exists",
        tonic::Code::FailedPrecondition => "refused",
        tonic::Code::Unavailable => "unavailable",
        _ => "error",
    }
}

async fn call(
    mut client: ControlServiceClient<Channel>,
    args: &CtlArgs,
) -> Result<Outcome, tonic::Status> {
    Ok(match &args.verb {
        Verb::Status => {
            let status = client.status(pb::StatusRequest {}).await?.into_inner();
            Outcome::Done(output::status(&status, args.json))
        }
        Verb::Apply { file, if_version } => {
            let spec: ClusterSpec = match read_toml(file) {
                Ok(spec) => spec,
                Err(error) => return Ok(Outcome::Usage(error.to_string())),
            };
            let request = pb::ApplyConfigRequest {
                config: Some(convert::to_proto(&spec)),
                if_version: *if_version,
            };
            let reply = client.apply_config(request).await?.into_inner();
            Outcome::Done(if args.json {
                serde_json::json!({ "version": reply.version }).to_string()
            } else {
                format!("applied: configuration version {}", reply.version)
            })
        }
        Verb::Get { what, local } => {
            let reply = client
                .get_config(pb::GetConfigRequest { local: *local })
                .await?
                .into_inner();
            let spec = convert::from_proto(reply.config.unwrap_or_default())
                .map_err(|e| tonic::Status::internal(e.to_string()))?;
            Outcome::Done(output::config(
                reply.version,
                &spec,
                what.as_deref(),
                args.json,
            ))
        }
        Verb::Cluster(ClusterVerb::AddNode {
            id,
            raft_addr,
            api_addr,
        }) => {
            let request = pb::AddNodeRequest {
                id: *id,
                raft_addr: raft_addr.clone(),
                api_addr: api_addr.clone(),
            };
            let reply = client.add_node(request).await?.into_inner();
            Outcome::Done(output::voters(&reply.voters, args.json))
        }
        Verb::Cluster(ClusterVerb::RemoveNode { id }) => {
            let reply = client
                .remove_node(pb::RemoveNodeRequest { id: *id })
                .await?
                .into_inner();
            Outcome::Done(output::voters(&reply.voters, args.json))
        }
    })
}
