//! One balancer node: opens its sled data, starts Raft, the peer and control
//! gRPC servers, the forwarding engine and the admin endpoint, bootstraps
//! the cluster when its data is fresh, and runs until a signal.
//!
//! `formation` forms the cluster and follows the node's role,
//! `health_reports` carries this node's health views to the leader, and
//! `running` is the started node: reload, hand-over and shutdown.

mod acme;
mod formation;
mod grpc_servers;
mod health_reports;
mod running;
mod stall_watch;
mod ticket_rotation;

use formation::{bootstrap, watch_role};
use health_reports::report_health;

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use openraft::SnapshotPolicy;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::transport::server::TcpIncoming;

use crate::admin::{self, AdminAccess, AdminState};
use crate::api::ApiAuth;
use crate::auth::Token;
use crate::config::{ClusterSpec, ConfigError, NodeConfig, VipMode};
use crate::control::ClusterControl;
use crate::events::Events;
use crate::health::HealthChecker;
use crate::metrics::Metrics;
use crate::proxy::Engine;
use crate::raft::Raft;
use crate::raft::election::{self, ElectionTimer};
use crate::raft::log_store::LogStore;
use crate::raft::network::PeerNetwork;
use crate::raft::peer_channel::{PeerChannels, PeerTransport};
use crate::raft::state_machine::StateMachine;
use crate::served::ServedConfig;
use crate::tls::ClusterTls;
use crate::vip::VipRole;
use crate::vip::bgp::BgpSpeaker;
use crate::vip::{Holder, NetlinkHolder, ScriptHooks};

/// sled's page cache; the default (1 GiB) is far more than a
/// configuration store needs.
const SLED_CACHE_BYTES: u64 = 32 * 1024 * 1024;

/// Snapshot chunk size: small enough that a chunk never delays heartbeats
/// on the same peer connection for long.
const SNAPSHOT_CHUNK_BYTES: u64 = 256 * 1024;

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// A configuration file is unreadable or invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// An address could not be bound.
    #[error("cannot listen on {what} {address}: {source}")]
    Bind {
        /// Which endpoint.
        what: &'static str,
        /// The address.
        address: std::net::SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The data directory could not be opened.
    #[error("cannot open data dir {path}: {message}")]
    DataDir {
        /// The path.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// Raft could not start.
    #[error("cannot start raft: {0}")]
    Raft(String),
}

/// A started node.
pub struct RunningNode {
    /// The node's handle on the cluster.
    pub control: Arc<ClusterControl>,
    vip: Arc<VipRole>,
    /// `[vip] mode = "bgp"`: this node's announcement.
    bgp: Option<Arc<BgpSpeaker>>,
    vip_stop: CancellationToken,
    /// How long followers refuse votes after a leader's last heartbeat
    /// (the minimum election timeout; see raft::election).
    vote_lease: Duration,
    seed_path: Option<PathBuf>,
    /// Mutual TLS settings, re-read on SIGHUP.
    tls: Option<Arc<ClusterTls>>,
    shutdown: CancellationToken,
    connections: TaskTracker,
    servers: CancellationToken,
    grace: Duration,
}

/// How often a node looks whether its TLS files changed.
const TLS_FILE_CHECK: Duration = Duration::from_secs(5);

/// Starts a node from `config`. `seed` overrides the seed file (the demo
/// passes its configuration directly).
pub async fn start(
    config: &NodeConfig,
    seed: Option<ClusterSpec>,
) -> Result<RunningNode, NodeError> {
    let members = config.members().map_err(|message| ConfigError::Invalid {
        path: "node.toml".into(),
        message,
    })?;
    let (seed, seed_certificates) = match (seed, &config.cluster.seed) {
        (Some(spec), _) => (Some(spec), Vec::new()),
        (None, Some(path)) => {
            let (spec, files) = ClusterSpec::read_with_certificates(path)?;
            // Read now: a missing file is a start-up error.
            let certificates = files
                .iter()
                .map(crate::config::CertificateFile::to_stored)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|message| ConfigError::Invalid {
                    path: path.display().to_string(),
                    message,
                })?;
            (Some(spec), certificates)
        }
        (None, None) => (None, Vec::new()),
    };
    if let Some(spec) = &seed {
        // A seed that can never be committed is a start-up error, not a
        // surprise after the cluster forms.
        crate::state::validate(spec).map_err(|e| ConfigError::Invalid {
            path: config
                .cluster
                .seed
                .as_ref()
                .map_or("seed".into(), |p| p.display().to_string()),
            message: e.to_string(),
        })?;
    }
    let data_error = |message: String| NodeError::DataDir {
        path: config.data_dir.clone(),
        message,
    };
    std::fs::create_dir_all(&config.data_dir).map_err(|e| data_error(e.to_string()))?;
    let db = sled::Config::new()
        .path(config.data_dir.join("raftlb.sled"))
        .cache_capacity(SLED_CACHE_BYTES)
        .open()
        .map_err(|e| data_error(e.to_string()))?;

    let invalid = |message: String| ConfigError::Invalid {
        path: "node.toml".into(),
        message,
    };
    let load_token = |path: &Option<std::path::PathBuf>| match path {
        Some(path) => Token::load(path),
        None => Ok(Token::none()),
    };
    let token = load_token(&config.token_file).map_err(invalid)?;
    let read_token = load_token(&config.read_token_file).map_err(invalid)?;
    let tls = match &config.tls {
        Some(files) => Some(
            ClusterTls::load(files.clone(), config.id, token.is_set())
                .map_err(|e| invalid(format!("tls: {e}")))?,
        ),
        None => None,
    };
    let exposed = config.exposed();
    if !exposed.is_empty() {
        tracing::warn!(
            open = ?exposed,
            "insecure = true: reachable beyond loopback without authentication; \
             anyone who reaches these ports can change the cluster"
        );
    }
    let admin_access = Arc::new(AdminAccess {
        token: load_token(&config.admin.token_file).map_err(|e| invalid(format!("admin.{e}")))?,
        tls: if config.admin.tls { tls.clone() } else { None },
        max_connections: config.admin.max_connections,
    });
    let transport = PeerTransport::new(tls.clone());
    let served = Arc::new(ServedConfig::new(
        Arc::new(Metrics::new()),
        Events::default(),
    ));
    let servers = CancellationToken::new();
    tokio::spawn(served.clone().run_compiler(servers.clone()));
    let log_store = LogStore::open(&db).map_err(|e| data_error(e.to_string()))?;
    let state_machine =
        StateMachine::open(&db, served.clone()).map_err(|e| data_error(e.to_string()))?;

    // Forward at once by whatever configuration this node last applied.
    let shutdown = CancellationToken::new();
    let connections = TaskTracker::new();
    // Lease shorter than the shortest election timeout by a heartbeat:
    // voters refuse every candidate for the minimum election timeout after
    // their last heartbeat, so an old leader drops the VIP before any other
    // node can be elected.
    let lease =
        Duration::from_millis(config.raft.election_timeout_min_ms - config.raft.heartbeat_ms);
    let (vip_address, holder) = vip_holder(config).await?;
    let peer_back = Arc::new(Notify::new());
    let vip = Arc::new(VipRole::new(
        vip_address,
        holder,
        peer_back.clone(),
        lease,
        Duration::from_millis(config.raft.heartbeat_ms),
        served.metrics(),
    ));
    let bgp = match (&config.vip.mode, &config.bgp, config.vip.address) {
        (VipMode::Bgp, Some(bgp), Some(address)) => Some(Arc::new(
            BgpSpeaker::open(
                address,
                bgp.clone(),
                lease,
                Duration::from_millis(config.raft.heartbeat_ms),
                served.metrics(),
            )
            .await
            .map_err(invalid)?,
        )),
        _ => None,
    };
    // In BGP mode every node listens on the VIP for good.
    let listen_on = match &bgp {
        Some(speaker) => {
            vip.set_bgp(speaker.clone());
            speaker.listen_on()
        }
        None => vip.watch(),
    };
    let engine = Engine::new(
        served.table().clone(),
        config.serve_ip,
        listen_on,
        vip.listening_reporter(),
        shutdown.clone(),
        connections.clone(),
        config.http1,
    );
    tokio::spawn(engine.run());

    let (openraft_min, openraft_max) = election::openraft_timing(&config.raft);
    let election = Arc::new(ElectionTimer::new(config.id, &config.raft));
    let peer_rpcs = Arc::new(crate::raft::network::InFlightRpcs::default());
    let raft_config = openraft::Config {
        cluster_name: "raftlb".into(),
        heartbeat_interval: config.raft.heartbeat_ms,
        election_timeout_min: openraft_min,
        election_timeout_max: openraft_max,
        // raftlb's own election timer campaigns (see raft::election).
        enable_elect: false,
        install_snapshot_timeout: 2_000,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(config.raft.snapshot_logs),
        max_in_snapshot_log_to_keep: config.raft.keep_logs_after_snapshot,
        snapshot_max_chunk_size: SNAPSHOT_CHUNK_BYTES,
        ..Default::default()
    }
    .validate()
    .map_err(|e| NodeError::Raft(e.to_string()))?;
    let raft = Raft::new(
        config.id,
        Arc::new(raft_config),
        PeerNetwork::new(
            transport.clone(),
            token.clone(),
            election.clone(),
            peer_back,
            peer_rpcs.clone(),
        ),
        log_store,
        state_machine,
    )
    .await
    .map_err(|e| NodeError::Raft(e.to_string()))?;
    let control = Arc::new(ClusterControl {
        id: config.id,
        api_addr: config.api_addr.to_string(),
        raft: raft.clone(),
        served: served.clone(),
        token: token.clone(),
        health_votes: Default::default(),
        election: election.clone(),
        vip: vip.clone(),
        vote_lease: Duration::from_millis(config.raft.election_timeout_min_ms),
        channels: PeerChannels::new(transport),
        tls: tls.clone(),
        peer_rpcs,
    });
    {
        let (control, stop) = (control.clone(), shutdown.clone());
        tokio::spawn(async move { control.election.run(control.clone(), stop).await });
    }

    let peer_incoming = TcpIncoming::bind(config.raft_addr)
        .map_err(|source| NodeError::Bind {
            what: "raft_addr",
            address: config.raft_addr,
            source,
        })?
        .with_nodelay(Some(true));
    let api_incoming = TcpIncoming::bind(config.api_addr)
        .map_err(|source| NodeError::Bind {
            what: "api_addr",
            address: config.api_addr,
            source,
        })?
        .with_nodelay(Some(true));
    let admin_listener =
        admin::bind(config.admin_addr)
            .await
            .map_err(|source| NodeError::Bind {
                what: "admin_addr",
                address: config.admin_addr,
                source,
            })?;
    grpc_servers::spawn_peer(
        &control,
        &token,
        peer_incoming,
        tls.clone(),
        servers.clone(),
    );
    let auth = ApiAuth {
        tls: tls.is_some(),
        admin_token: token.clone(),
        read_token,
    };
    grpc_servers::spawn_api(&control, &auth, api_incoming, tls.clone(), servers.clone())?;
    // Half the lease: a stall that long leaves a leader's confirmation
    // little time, and shows before the lease lapses.
    tokio::spawn(stall_watch::run(lease / 2, shutdown.clone()));
    tokio::spawn(ticket_rotation::run(control.clone(), shutdown.clone()));
    tokio::spawn(acme::run(control.clone(), shutdown.clone()));
    tokio::spawn(crate::discovery::run(control.clone(), shutdown.clone()));
    if let Some(tls) = &tls {
        // New certificate files are picked up within seconds without a
        // SIGHUP too (a renewal agent that writes them in place).
        tokio::spawn(
            tls.clone()
                .watch(config.id, TLS_FILE_CHECK, shutdown.clone()),
        );
    }
    let vip_stop = servers.child_token();
    let traffic = Arc::new(crate::traffic::TrafficHistory::default());
    {
        let (control, stop) = (control.clone(), shutdown.clone());
        tokio::spawn(traffic.clone().run(move || control.traffic(), stop));
    }
    let admin_state = Arc::new(AdminState {
        control: control.clone(),
        ready: false.into(),
        vip: vip.clone(),
        traffic,
    });
    {
        let (vip, control, stop) = (vip.clone(), control.clone(), vip_stop.clone());
        tokio::spawn(async move { vip.run(control, stop).await });
    }
    if let Some(speaker) = &bgp {
        tokio::spawn(speaker.clone().run(control.clone(), vip_stop.clone()));
    }
    {
        let (vip, stop) = (vip.clone(), servers.clone());
        tokio::spawn(async move { vip.answer_neighbours(stop).await });
    }
    {
        let vip = vip.clone();
        tokio::spawn(async move { vip.run_hooks().await });
    }
    tokio::spawn(admin::serve(
        admin_listener,
        admin_state.clone(),
        admin_access,
        servers.clone(),
    ));

    let (transitions, reports) = tokio::sync::mpsc::unbounded_channel();
    let source = (!config.serve_ip.is_unspecified()).then_some(config.serve_ip);
    let checker = HealthChecker::new(served.table().clone(), source, transitions, servers.clone());
    tokio::spawn(checker.run());
    tokio::spawn(report_health(control.clone(), reports, servers.clone()));

    bootstrap(&raft, config.id, &members).await?;
    tokio::spawn(watch_role(
        control.clone(),
        seed,
        seed_certificates,
        admin_state,
        servers.clone(),
    ));
    tracing::info!(
        id = config.id,
        raft = %config.raft_addr,
        api = %config.api_addr,
        admin = %config.admin_addr,
        serve_ip = %config.serve_ip,
        version = served.version(),
        "node started"
    );
    Ok(RunningNode {
        control,
        vip,
        bgp,
        vip_stop,
        vote_lease: Duration::from_millis(config.raft.election_timeout_min_ms),
        seed_path: config.cluster.seed.clone(),
        tls,
        shutdown,
        connections,
        servers,
        grace: Duration::from_millis(config.shutdown_grace_ms),
    })
}

/// The VIP address and how it is held, from `[vip]`; a netlink holder
/// checks its privileges and interface here, so a node that could never
/// hold the VIP refuses to start.
async fn vip_holder(config: &NodeConfig) -> Result<(Option<IpAddr>, Holder), NodeError> {
    let vip = &config.vip;
    let invalid = |message: String| {
        NodeError::Config(ConfigError::Invalid {
            path: "node.toml".into(),
            message,
        })
    };
    let Some(address) = vip.address else {
        return Ok((None, Holder::Bind));
    };
    let holder = match vip.mode {
        // Every node announces (see `vip::bgp`); the leader's role keeps
        // only its lease.
        VipMode::None | VipMode::Bgp => return Ok((None, Holder::Bind)),
        VipMode::Bind => Holder::Bind,
        VipMode::Netlink => {
            let interface = vip.interface.as_deref().unwrap_or_default();
            let holder = NetlinkHolder::open(interface, address, vip.prefix_len, vip.garp_repeats)
                .await
                .map_err(invalid)?;
            Holder::Netlink(Arc::new(holder))
        }
        VipMode::Script => Holder::Script(ScriptHooks {
            on_acquire: vip.on_acquire.clone().unwrap_or_default(),
            on_release: vip.on_release.clone().unwrap_or_default(),
            timeout: Duration::from_millis(vip.script_timeout_ms),
            node_id: config.id,
        }),
    };
    Ok((Some(address), holder))
}
