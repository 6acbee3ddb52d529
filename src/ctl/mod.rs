//! `raftlb ctl`: the operator's client for the control API. Any node's API
//! endpoint works; several may be given and the next is tried when one is
//! unreachable.
//!
//! Exit status: 0 success, 1 the request was refused (the message says
//! why), 2 bad usage, 3 the cluster could not be reached.

mod cert;
pub mod client_config;
mod output;
mod top;
mod watch;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use tonic::transport::{Channel, Endpoint};

use crate::api::convert;
use crate::auth::Token;
use crate::config::{ClusterSpec, read_toml};
use crate::proto::v1 as pb;
use crate::proto::v1::control_service_client::ControlServiceClient;
use crate::raft::network::MAX_MESSAGE_BYTES;
use crate::tls::transport::FirstError;

/// Options shared by every verb.
#[derive(Debug, Args)]
pub struct CtlArgs {
    /// Control API address(es) of any node, comma-separated; the next is
    /// tried when one is unreachable. Without it: RAFTLB_ENDPOINT, else
    /// `endpoints` in $XDG_CONFIG_HOME/raftlb/ctl.toml (or
    /// ~/.config/raftlb/ctl.toml, which `raftlb demo` writes), else
    /// 127.0.0.1:7200.
    #[arg(long, global = true, env = "RAFTLB_ENDPOINT", value_delimiter = ',')]
    pub endpoint: Option<Vec<String>>,
    /// The cluster token, when the cluster takes tokens (else `token_file`
    /// in ctl.toml).
    #[arg(long, global = true, env = "RAFTLB_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// The cluster's CA bundle, for mutual TLS (else `ca` in ctl.toml).
    /// Before the verb: `raftlb ctl --ca F --cert F --key F status`.
    #[arg(long, env = "RAFTLB_CA")]
    pub ca: Option<PathBuf>,
    /// This client's certificate from `raftlb certs init` (else `cert` in
    /// ctl.toml).
    #[arg(long, env = "RAFTLB_CERT")]
    pub cert: Option<PathBuf>,
    /// Its private key (else `key` in ctl.toml).
    #[arg(long, env = "RAFTLB_KEY")]
    pub key: Option<PathBuf>,
    /// Print one JSON document instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub verb: Verb,
}

/// `raftlb ctl cert` verbs.
#[derive(Debug, Subcommand)]
pub enum CertVerb {
    /// Add a certificate from local PEM files: the chain (leaf first) and
    /// its key. Every node serves it to clients whose SNI it names.
    ///
    /// Example: raftlb ctl cert add site --cert site.pem --key site-key.pem --default
    Add(CertFiles),
    /// Replace a certificate: new handshakes on every node get the new
    /// one, open connections keep theirs.
    ///
    /// Example: raftlb ctl cert replace site --cert renewed.pem --key renewed-key.pem
    Replace(CertFiles),
    /// Remove a certificate.
    ///
    /// Example: raftlb ctl cert remove site
    Remove {
        /// The entry's name.
        name: String,
    },
    /// Every certificate: its DNS names, expiry and fingerprint.
    ///
    /// Example: raftlb ctl cert list
    List {
        /// Answer from the contacted node's applied state.
        #[arg(long)]
        local: bool,
    },
}

/// A certificate's files, for `cert add` and `cert replace`.
#[derive(Debug, Args)]
pub struct CertFiles {
    /// The entry's name (not a DNS name): `site`.
    pub name: String,
    /// The chain, leaf first (PEM).
    #[arg(long)]
    pub cert: PathBuf,
    /// The leaf's private key (PEM).
    #[arg(long)]
    pub key: PathBuf,
    /// Serve it to clients whose SNI no certificate names (or that send
    /// none).
    #[arg(long)]
    pub default: bool,
}

/// `raftlb ctl` verbs.
#[derive(Debug, Subcommand)]
pub enum Verb {
    /// Nodes, roles, leader, term, applied index and configuration version.
    ///
    /// Examples: raftlb ctl --endpoint 127.0.0.11:7200,127.0.0.12:7200 status
    ///           raftlb ctl status --wait     # after a restart or a failover
    Status {
        /// Return only when the cluster has settled: a leader, and the VIP,
        /// if one is configured, held by that leader alone (exit 1 if not
        /// within --timeout).
        #[arg(long)]
        wait: bool,
        /// Longest wait, in seconds.
        #[arg(long, default_value_t = 10, requires = "wait")]
        timeout: u64,
    },
    /// Every node's traffic, live: requests and 5xx per second, latency
    /// percentiles and open connections per frontend, and per backend;
    /// refreshed every second, `q` quits.
    ///
    /// Examples: raftlb ctl top
    ///           raftlb ctl top --once --json
    Top {
        /// Measure one second, print it, and exit.
        #[arg(long)]
        once: bool,
    },
    /// Replace the whole served configuration with a cluster.toml, in one
    /// atomic change; prints what changed.
    ///
    /// Examples: raftlb ctl apply -f cluster.toml --dry-run
    ///           raftlb ctl apply -f cluster.toml --if-version 7
    Apply {
        /// The cluster.toml to apply.
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
        /// Print what would change, and change nothing.
        #[arg(long)]
        dry_run: bool,
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
    /// Change one backend.
    #[command(subcommand)]
    Backend(BackendVerb),
    /// Certificates that `https` frontends serve, kept in the cluster
    /// state (keys are never shown again).
    #[command(subcommand)]
    Cert(CertVerb),
    /// Committed changes: version, time, caller and what changed (the last 50).
    ///
    /// Example: raftlb ctl history
    History,
    /// Make an earlier version's configuration current again (as a new
    /// version); prints what changed.
    ///
    /// Example: raftlb ctl rollback 12
    Rollback {
        /// The version to return to.
        version: u64,
    },
    /// Stream configuration, leader and backend health changes as the
    /// contacted node sees them, until Ctrl-C. When that node goes away,
    /// the watch moves to the next endpoint and resumes from the last
    /// configuration version it printed: no change is missed or repeated.
    ///
    /// Example: raftlb ctl --endpoint 127.0.0.11:7200,127.0.0.12:7200 watch --from-version 40
    Watch {
        /// First print every change after this version that the history
        /// still holds.
        #[arg(long)]
        from_version: Option<u64>,
    },
    /// Cluster membership.
    #[command(subcommand)]
    Cluster(ClusterVerb),
}

/// `raftlb ctl backend` verbs.
#[derive(Debug, Subcommand)]
pub enum BackendVerb {
    /// Add a backend to a pool.
    ///
    /// Example: raftlb ctl backend add web 10.0.0.5:8080 --weight 2
    Add {
        /// Pool name.
        pool: String,
        /// Backend address, IP:PORT.
        address: String,
        /// Relative weight, 1 to 256.
        #[arg(long, default_value_t = 1)]
        weight: u32,
    },
    /// Remove a backend; it is drained first (no new traffic, open
    /// connections finish, up to --timeout) unless --now.
    ///
    /// Example: raftlb ctl backend remove web 10.0.0.5:8080
    Remove {
        /// Pool name.
        pool: String,
        /// Backend address.
        address: String,
        /// Remove at once, cutting nothing but sending nothing new.
        #[arg(long)]
        now: bool,
        /// Longest drain before the removal, in seconds.
        #[arg(long, default_value_t = 30)]
        timeout: u64,
    },
    /// Change a backend's weight.
    ///
    /// Example: raftlb ctl backend set-weight web 10.0.0.5:8080 5
    SetWeight {
        /// Pool name.
        pool: String,
        /// Backend address.
        address: String,
        /// New weight, 1 to 256.
        weight: u32,
    },
    /// Stop new connections and requests to a backend on every node; open
    /// ones finish.
    ///
    /// Example: raftlb ctl backend drain web 10.0.0.5:8080 --wait --timeout 60
    Drain {
        /// Pool name.
        pool: String,
        /// Backend address.
        address: String,
        /// Return only when no node has connections to it (or --timeout passes).
        #[arg(long)]
        wait: bool,
        /// Longest wait, in seconds.
        #[arg(long, default_value_t = 30)]
        timeout: u64,
    },
    /// Let a drained or disabled backend take traffic again.
    ///
    /// Example: raftlb ctl backend enable web 10.0.0.5:8080
    Enable {
        /// Pool name.
        pool: String,
        /// Backend address.
        address: String,
    },
    /// Take a backend out of service at once.
    ///
    /// Example: raftlb ctl backend disable web 10.0.0.5:8080
    Disable {
        /// Pool name.
        pool: String,
        /// Backend address.
        address: String,
    },
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
    /// Hand leadership, and with it the VIP, to a node (default: the most
    /// caught-up follower). The VIP is unanswered for about the minimum
    /// election timeout plus an election.
    ///
    /// Example: raftlb ctl cluster transfer-leader 2
    TransferLeader {
        /// The node to take over.
        id: Option<u64>,
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
}

impl RequestIds {
    fn new() -> Self {
        RequestIds {
            base: format!("ctl-{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..)),
        }
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

pub(crate) fn is_unreachable(status: &tonic::Status) -> bool {
    // UNAVAILABLE from a reachable node means "no quorum": that is the
    // cluster's answer, not a reason to try another endpoint. A connection
    // that breaks mid-call (a node killed just after it accepted) is UNKNOWN
    // "transport error"; a write retried elsewhere keeps its request id and
    // is applied once.
    matches!(
        status.code(),
        tonic::Code::Unavailable | tonic::Code::Unknown
    ) && status.message().contains("transport")
}

/// Whether a call failed because its connection went away under it (h2
/// reports a connection closed mid-handshake as a protocol error, tonic
/// the call as cancelled).
pub(crate) fn connection_lost(status: &tonic::Status) -> bool {
    let text = describe(status);
    match status.code() {
        tonic::Code::Cancelled => true,
        // h2's PROTOCOL_ERROR maps to INTERNAL.
        tonic::Code::Unknown | tonic::Code::Internal => {
            text.contains("h2 protocol error") || text.contains("connection")
        }
        _ => false,
    }
}

/// Why a call on a connection failed, as well as this side knows: a node
/// that refuses a client certificate, or gets plain text on a TLS port,
/// closes the connection, and the call reports only that.
pub(crate) fn failed_why(status: &tonic::Status, errors: &FirstError, tls: bool) -> String {
    let text = describe(status);
    let closed = ["broken pipe", "reset", "h2 protocol", "connection error"]
        .iter()
        .any(|sign| text.contains(sign));
    match errors.get() {
        Some(error) => format!(
            "the node closed the connection ({error}): it did not take this client \
             certificate (another CA, expired, or no raftlb identity); its log says which"
        ),
        None if !tls && (closed || connection_lost(status)) => format!(
            "the node closed the connection ({text}): it may take mutual TLS only; give \
             --ca, --cert and --key (or RAFTLB_CA, RAFTLB_CERT, RAFTLB_KEY, or ca, cert and \
             key in ctl.toml)"
        ),
        None => text,
    }
}

/// An error with its causes: "transport error: …: invalid peer
/// certificate: UnknownIssuer".
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let line = cause.to_string();
        if !text.contains(&line) {
            text = format!("{text}: {line}");
        }
        source = cause.source();
    }
    text
}

/// A status's message and the causes behind it.
pub(crate) fn describe(status: &tonic::Status) -> String {
    match std::error::Error::source(status) {
        Some(source) => {
            let causes = error_chain(source);
            if causes.contains(status.message()) {
                causes
            } else {
                format!("{}: {causes}", status.message())
            }
        }
        None => status.message().to_string(),
    }
}

pub(crate) fn code_name(code: tonic::Code) -> &'static str {
    match code {
        tonic::Code::InvalidArgument => "invalid argument",
        tonic::Code::NotFound => "not found",
        tonic::Code::AlreadyExists => "already exists",
        tonic::Code::FailedPrecondition => "refused",
        tonic::Code::Unavailable => "unavailable",
        tonic::Code::Unauthenticated => "unauthenticated",
        tonic::Code::PermissionDenied => "permission denied",
        tonic::Code::DeadlineExceeded => "timed out",
        _ => "error",
    }
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
            let spec: ClusterSpec = match read_toml(file) {
                Ok(spec) => spec,
                Err(error) => return Ok(Outcome::Usage(error.to_string())),
            };
            let message = pb::ApplyConfigRequest {
                config: Some(convert::to_proto(&spec)),
                if_version: *if_version,
                dry_run: *dry_run,
                request_id: client.ids.id("apply"),
            };
            let request = client.request(message, CALL_TIMEOUT);
            let reply = client.inner.apply_config(request).await?.into_inner();
            Outcome::Done(output::changes(&reply, json))
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
