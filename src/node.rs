//! One balancer node: opens its sled data, starts Raft, the peer and control
//! gRPC servers, the forwarding engine and the admin endpoint, bootstraps
//! the cluster when its data is fresh, and runs until a signal.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use openraft::{ServerState, SnapshotPolicy};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::transport::server::TcpIncoming;

use crate::admin::{self, AdminState};
use crate::api::ControlApi;
use crate::auth::Token;
use crate::config::CheckKind;
use crate::config::{ClusterSpec, ConfigError, NodeConfig, VipMode, read_toml};
use crate::control::{ClusterControl, LeaderRequest};
use crate::events::{Event, Events};
use crate::health::{HealthChecker, Transition};
use crate::metrics::Metrics;
use crate::proxy::Engine;
use crate::raft::election::{self, ElectionTimer};
use crate::raft::log_store::LogStore;
use crate::raft::network::PeerNetwork;
use crate::raft::peer_service::PeerService;
use crate::raft::state_machine::StateMachine;
use crate::raft::{ClusterNode, NodeId, Raft, RaftRequest};
use crate::routing::Health;
use crate::served::ServedConfig;
use crate::state::Command;
use crate::vip::VipRole;
use crate::vip::{Holder, NetlinkHolder, ScriptHooks};

/// sled's page cache; the default (1 GiB) is far more than a
/// configuration store needs.
const SLED_CACHE_BYTES: u64 = 32 * 1024 * 1024;

/// Streams a peer may reset before the peer server accepted them (h2's
/// default is 20) before the connection is dropped.
const PEER_MAX_PENDING_RESETS: usize = 200;

/// Longest a graceful hand-over keeps the VIP here waiting for the
/// successor to hold it.
const HAND_OVER_LIMIT: Duration = Duration::from_secs(3);
/// How long the old holder still serves once the successor holds the VIP:
/// requests already sent here finish, and neighbours move to the
/// successor, whose gratuitous ARPs span a second; Linux ignores an ARP
/// update within `locktime` (1 s by default) of the last one, so a
/// neighbour that refreshed the old entry a moment ago moves only with a
/// later announcement.
const HAND_OVER_LINGER: Duration = Duration::from_millis(1_200);

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
    vip_stop: CancellationToken,
    /// How long followers refuse votes after a leader's last heartbeat
    /// (the minimum election timeout; see raft::election).
    vote_lease: Duration,
    seed_path: Option<PathBuf>,
    shutdown: CancellationToken,
    connections: TaskTracker,
    servers: CancellationToken,
    grace: Duration,
}

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
    let seed = match (seed, &config.cluster.seed) {
        (Some(spec), _) => Some(spec),
        (None, Some(path)) => Some(read_toml::<ClusterSpec>(path)?),
        (None, None) => None,
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

    let token = match &config.token_file {
        Some(path) => Token::load(path).map_err(|message| ConfigError::Invalid {
            path: "node.toml".into(),
            message,
        })?,
        None => Token::none(),
    };
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
    let engine = Engine::new(
        served.table().clone(),
        config.serve_ip,
        vip.watch(),
        shutdown.clone(),
        connections.clone(),
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
        raft: raft.clone(),
        served: served.clone(),
        token: token.clone(),
        health_votes: Default::default(),
        election: election.clone(),
        vip: vip.clone(),
        vote_lease: Duration::from_millis(config.raft.election_timeout_min_ms),
        channels: Default::default(),
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
    let stop = servers.clone();
    let peer = PeerService::server(control.clone(), &token);
    tokio::spawn(async move {
        let served = tonic::transport::Server::builder()
            // Peers' own late RPCs are no longer cancelled (see
            // raft::network), but a burst of resets from a peer under load
            // must not cost the whole connection either.
            .http2_max_pending_accept_reset_streams(Some(PEER_MAX_PENDING_RESETS))
            .add_service(peer)
            .serve_with_incoming_shutdown(peer_incoming, stop.cancelled())
            .await;
        if let Err(error) = served {
            tracing::error!(%error, "peer server failed");
        }
    });
    let stop = servers.clone();
    let api = ControlApi::server(control.clone(), &token);
    // Reflection in both versions (grpcurl and Python's grpcio reflection
    // client still speak v1alpha), advertising only what this port serves:
    // the peer-only Raft service is in the same descriptors but not here.
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(crate::proto::v1::FILE_DESCRIPTOR_SET)
            .with_service_name("raftlb.v1.ControlService")
    };
    let reflection_v1 = reflection()
        .build_v1()
        .map_err(|e| NodeError::Raft(format!("grpc reflection: {e}")))?;
    let reflection_v1alpha = reflection()
        .build_v1alpha()
        .map_err(|e| NodeError::Raft(format!("grpc reflection: {e}")))?;
    let reflection_v1 =
        tonic::service::interceptor::InterceptedService::new(reflection_v1, token.interceptor());
    let reflection_v1alpha = tonic::service::interceptor::InterceptedService::new(
        reflection_v1alpha,
        token.interceptor(),
    );
    tokio::spawn(async move {
        let served = tonic::transport::Server::builder()
            .add_service(api)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .serve_with_incoming_shutdown(api_incoming, stop.cancelled())
            .await;
        if let Err(error) = served {
            tracing::error!(%error, "control API server failed");
        }
    });
    let vip_stop = servers.child_token();
    let admin_state = Arc::new(AdminState {
        control: control.clone(),
        ready: false.into(),
        vip: vip.clone(),
    });
    {
        let (vip, control, stop) = (vip.clone(), control.clone(), vip_stop.clone());
        tokio::spawn(async move { vip.run(control, stop).await });
    }
    {
        let (vip, stop) = (vip.clone(), servers.clone());
        tokio::spawn(async move { vip.answer_arp(stop).await });
    }
    {
        let vip = vip.clone();
        tokio::spawn(async move { vip.run_hooks().await });
    }
    tokio::spawn(admin::serve(
        admin_listener,
        admin_state.clone(),
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
        vip_stop,
        vote_lease: Duration::from_millis(config.raft.election_timeout_min_ms),
        seed_path: config.cluster.seed.clone(),
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
        VipMode::None => return Ok((None, Holder::Bind)),
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

/// How often the leader looks again at health verdicts delayed by damping.
const HEALTH_REJUDGE: Duration = Duration::from_millis(200);
/// Longest one health report may take to reach the leader; a report that
/// does not arrive in time is sent again with the next change or leader.
const HEALTH_REPORT_TIMEOUT: Duration = Duration::from_secs(2);

/// Sends this node's health transitions to the leader, and its whole view
/// again whenever the leader changes (a new leader tallies afresh). As
/// leader, also commits verdicts that damping delayed.
///
/// Reports go one at a time over the node's cached peer channel. What
/// arrives meanwhile is coalesced per backend (only the latest view is
/// sent), so a flapping backend or a flood of transitions costs at most one
/// pending report per backend, never a queue that grows.
async fn report_health(
    control: Arc<ClusterControl>,
    mut transitions: tokio::sync::mpsc::UnboundedReceiver<Transition>,
    stop: CancellationToken,
) {
    type Delivery = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;
    let mut metrics = control.raft.metrics();
    let mut leader = None;
    let mut rejudge = tokio::time::interval(HEALTH_REJUDGE);
    let mut pending: BTreeMap<(String, std::net::SocketAddr), bool> = BTreeMap::new();
    let mut delivery: Option<Delivery> = None;
    loop {
        if delivery.is_none()
            && let Some(((pool, address), up)) = pending.pop_first()
        {
            delivery = Some(Box::pin(send_report(control.clone(), pool, address, up)));
        }
        let delivered = async {
            match delivery.as_mut() {
                Some(delivery) => delivery.await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = delivered => delivery = None,
            transition = transitions.recv() => {
                let Some(t) = transition else { return };
                if t.health != Health::Unknown {
                    pending.insert((t.pool, t.address), t.health == Health::Up);
                }
            }
            changed = metrics.changed() => {
                if changed.is_err() {
                    return;
                }
                let now = metrics.borrow_and_update().current_leader;
                if now.is_some() && now != leader {
                    let table = control.served.table().load_full();
                    for pool in table.pools.iter().filter(|p| p.health.check != CheckKind::None) {
                        for backend in &pool.backends {
                            let health = backend.runtime.health();
                            if health != Health::Unknown {
                                pending.insert((pool.name.clone(), backend.address), health == Health::Up);
                            }
                        }
                    }
                }
                leader = now;
            }
            _ = rejudge.tick() => {
                if leader == Some(control.id) {
                    control.judge_deferred().await;
                }
            }
            () = stop.cancelled() => return,
        }
    }
}

async fn send_report(
    control: Arc<ClusterControl>,
    pool: String,
    address: std::net::SocketAddr,
    up: bool,
) {
    let report = LeaderRequest::HealthReport {
        node: control.id,
        pool,
        address,
        up,
    };
    match tokio::time::timeout(HEALTH_REPORT_TIMEOUT, control.execute(report)).await {
        Ok(Ok(_)) => {}
        Ok(Err(error)) => tracing::debug!(%error, "health report not delivered"),
        Err(_) => tracing::debug!("health report not delivered in time"),
    }
}

/// Forms the cluster on first start: the member with the lowest id
/// initializes Raft with every member; the others wait to be contacted.
/// A node with Raft state on disk never initializes again.
async fn bootstrap(
    raft: &Raft,
    id: NodeId,
    members: &BTreeMap<NodeId, std::net::SocketAddr>,
) -> Result<(), NodeError> {
    let initialized = raft
        .is_initialized()
        .await
        .map_err(|e| NodeError::Raft(e.to_string()))?;
    if initialized {
        tracing::info!("raft state found on disk; resuming");
        return Ok(());
    }
    if !members.contains_key(&id) {
        tracing::info!(
            "not a first member; waiting to be added with `raftlb ctl cluster add-node`"
        );
        return Ok(());
    }
    if members.keys().next() != Some(&id) {
        tracing::info!("fresh node; waiting for the lowest-id member to form the cluster");
        return Ok(());
    }
    let nodes: BTreeMap<NodeId, ClusterNode> = members
        .iter()
        .map(|(id, addr)| {
            (
                *id,
                ClusterNode {
                    raft_addr: addr.to_string(),
                    api_addr: String::new(),
                },
            )
        })
        .collect();
    tracing::info!(members = nodes.len(), "forming the cluster");
    raft.initialize(nodes)
        .await
        .map_err(|e| NodeError::Raft(format!("initialize: {e}")))
}

/// Follows the node's Raft role: logs leader changes, marks the node ready,
/// and as leader commits the seed configuration if none is committed yet.
async fn watch_role(
    control: Arc<ClusterControl>,
    seed: Option<ClusterSpec>,
    admin: Arc<AdminState>,
    stop: CancellationToken,
) {
    let mut metrics = control.raft.metrics();
    let mut last_leader = None;
    loop {
        let (state, leader, term, in_cluster, fatal) = {
            let m = metrics.borrow_and_update();
            let in_cluster = m
                .membership_config
                .membership()
                .get_node(&control.id)
                .is_some();
            let fatal = m.running_state.as_ref().err().cloned();
            (m.state, m.current_leader, m.current_term, in_cluster, fatal)
        };
        if let Some(fatal) = fatal {
            match fatal {
                openraft::error::Fatal::Stopped => tracing::info!("raft stopped"),
                other => tracing::error!(fatal = %other, "raft failed"),
            }
            admin.ready.store(false, Ordering::Release);
            return;
        }
        if leader != last_leader {
            control
                .served
                .events()
                .publish(Event::Leader { leader, term });
            tracing::info!(
                ?leader,
                term,
                role = crate::control::role_name(state),
                "leader changed"
            );
            last_leader = leader;
        }
        // The applied version: the table may not be compiled yet.
        let version = control.served.state().version;
        if state == ServerState::Leader
            && version == 0
            && let Some(spec) = &seed
        {
            let seed = RaftRequest::Bootstrap {
                spec: spec.clone(),
                origin: crate::state::Origin {
                    time_ms: crate::control::unix_millis(),
                    caller: format!("bootstrap by node {}", control.id),
                },
            };
            match control.raft.client_write(seed).await {
                Ok(response) => {
                    tracing::info!(result = ?response.data.result, "seed configuration committed")
                }
                Err(error) => tracing::warn!(%error, "seed configuration not committed yet"),
            }
        }
        let ready =
            leader.is_some() && in_cluster && (seed.is_none() || control.served.version() > 0);
        admin.ready.store(ready, Ordering::Release);
        tokio::select! {
            changed = metrics.changed() => if changed.is_err() { return },
            // The applied version changes without a metrics change only
            // through apply, which also moves `last_applied`; poll slowly
            // anyway so readiness never sticks.
            () = tokio::time::sleep(Duration::from_millis(200)) => {}
            () = stop.cancelled() => return,
        }
    }
}

impl RunningNode {
    /// Re-reads the seed file and proposes it as the whole configuration
    /// (SIGHUP); a file that does not validate is logged and nothing changes.
    pub async fn reload(&self) {
        let Some(path) = &self.seed_path else {
            tracing::warn!("SIGHUP: no seed file configured; nothing to reload");
            return;
        };
        let spec = match read_toml::<ClusterSpec>(path) {
            Ok(spec) => spec,
            Err(error) => {
                tracing::error!(%error, "reload refused; keeping the current configuration");
                return;
            }
        };
        let command = Command::ApplyConfig {
            spec,
            if_version: None,
        };
        let caller = format!("SIGHUP on node {}", self.control.id);
        match self.control.write(command, caller, None).await {
            Ok(applied) => {
                tracing::info!(
                    version = applied.version,
                    changes = %crate::state::summarize(&applied.changes),
                    path = %path.display(),
                    "configuration reloaded"
                )
            }
            Err(error) => {
                tracing::error!(%error, path = %path.display(), "reload refused; keeping the current configuration")
            }
        }
    }

    /// Stops accepting, lets open requests and connections finish within
    /// the grace period, reports what had to be cut, then stops Raft.
    pub async fn shutdown(self) {
        // Hand over first, so another node takes over while this one
        // finishes its open connections: release the VIP, stop Raft (no more
        // heartbeats), and once the followers' vote lease has run out, ask
        // the most caught-up follower to campaign at once instead of waiting
        // for its election timer.
        let mut successor = self.control.most_caught_up_follower();
        if let Some((id, _)) = &successor
            && self.vip.hold_through_hand_over()
        {
            // netlink mode, make before break: the successor is elected and
            // takes the VIP while this node still serves it; only then does
            // this node let go.
            if self.hand_over_keeping_vip(*id).await {
                successor = None;
            }
        }
        self.vip_stop.cancel();
        self.vip.step_down("shutting down").await;
        self.vip.restore_host();
        if let Err(error) = self.control.raft.shutdown().await {
            tracing::warn!(%error, "raft did not stop cleanly");
        }
        if let Some((id, raft_addr)) = successor {
            self.control.peer_rpcs.drained(Duration::from_secs(1)).await;
            tokio::time::sleep(self.vote_lease + Duration::from_millis(10)).await;
            let asked = self.control.ask_to_campaign(&raft_addr).await;
            tracing::info!(successor = id, asked, "handed leadership over");
        }
        self.shutdown.cancel();
        self.connections.close();
        let open = self.connections.len();
        tracing::info!(
            open,
            grace_ms = self.grace.as_millis() as u64,
            "draining connections"
        );
        if tokio::time::timeout(self.grace, self.connections.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                cut = self.connections.len(),
                "grace period over; cutting connections still open"
            );
        } else {
            tracing::info!("all connections finished");
        }
        self.servers.cancel();
    }

    /// Hands leadership to `successor` while this node keeps serving the
    /// VIP, and returns once the successor holds it (plus a moment for
    /// requests already on their way here), or [`HAND_OVER_LIMIT`] passed;
    /// whether leadership moved.
    async fn hand_over_keeping_vip(&self, successor: NodeId) -> bool {
        let started = std::time::Instant::now();
        if let Err(error) = self.control.transfer(Some(successor), true).await {
            tracing::warn!(%error, "hand-over failed; releasing the VIP first");
            return false;
        }
        let taken = tokio::time::timeout(HAND_OVER_LIMIT, async {
            loop {
                let holders = self.control.vip_holders().await;
                if holders.get(&successor) == Some(&Some(true)) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .is_ok();
        if taken {
            // Neighbours now learn the successor: this node stops answering
            // ARP, and still serves what was sent here meanwhile.
            self.vip.stop_answering_arp();
            tokio::time::sleep(HAND_OVER_LINGER).await;
        }
        tracing::info!(
            successor,
            taken,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "handed leadership over, keeping the VIP until the successor held it"
        );
        true
    }

    /// Runs until SIGTERM or SIGINT, reloading on SIGHUP, then shuts down.
    pub async fn run_until_signal(self) -> std::io::Result<()> {
        let mut hangup = signal(SignalKind::hangup())?;
        let mut terminate = signal(SignalKind::terminate())?;
        let mut interrupt = signal(SignalKind::interrupt())?;
        loop {
            tokio::select! {
                _ = hangup.recv() => {
                    tracing::info!("SIGHUP received: reloading the seed configuration");
                    self.reload().await;
                }
                _ = terminate.recv() => {
                    tracing::info!("SIGTERM received: shutting down");
                    break;
                }
                _ = interrupt.recv() => {
                    tracing::info!("SIGINT received: shutting down");
                    break;
                }
            }
        }
        self.shutdown().await;
        Ok(())
    }
}
