//! One balancer node: wires the served configuration, the forwarding
//! engine and the admin endpoint together, and runs them until a signal.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admin::{self, AdminState};
use crate::config::{ClusterSpec, ConfigError, NodeConfig, read_toml};
use crate::metrics::Metrics;
use crate::proxy::Engine;
use crate::served::ServedConfig;
use crate::state::{Command, StateError};

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// A configuration file is unreadable or invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The seed configuration was refused.
    #[error("seed configuration refused: {0}")]
    Seed(StateError),
    /// More than one member was configured.
    #[error(
        "cluster.members lists {0} nodes, but this build runs single-node clusters only; \
         multi-node Raft clusters arrive in the next release"
    )]
    MultiNode(usize),
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
    /// The data directory could not be created.
    #[error("cannot create data dir {path}: {source}")]
    DataDir {
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// A started node; dropping it does not stop it, [`RunningNode::shutdown`] does.
pub struct RunningNode {
    /// The served configuration.
    pub served: Arc<ServedConfig>,
    seed_path: Option<PathBuf>,
    shutdown: CancellationToken,
    connections: TaskTracker,
    admin_stop: CancellationToken,
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
    if members.len() > 1 {
        return Err(NodeError::MultiNode(members.len()));
    }
    std::fs::create_dir_all(&config.data_dir).map_err(|source| NodeError::DataDir {
        path: config.data_dir.clone(),
        source,
    })?;
    let served = Arc::new(ServedConfig::new(Arc::new(Metrics::new())));
    let seed = match (seed, &config.cluster.seed) {
        (Some(spec), _) => Some(spec),
        (None, Some(path)) => Some(read_toml::<ClusterSpec>(path)?),
        (None, None) => None,
    };
    if let Some(spec) = seed {
        served
            .apply(Command::ApplyConfig {
                spec,
                if_version: None,
            })
            .map_err(NodeError::Seed)?;
    }

    let admin_listener =
        admin::bind(config.admin_addr)
            .await
            .map_err(|source| NodeError::Bind {
                what: "admin_addr",
                address: config.admin_addr,
                source,
            })?;
    let admin_state = Arc::new(AdminState {
        node_id: config.id,
        served: served.clone(),
        ready: false.into(),
        vip: config.vip.clone(),
    });
    let admin_stop = CancellationToken::new();
    tokio::spawn(admin::serve(
        admin_listener,
        admin_state.clone(),
        admin_stop.clone(),
    ));

    let shutdown = CancellationToken::new();
    let connections = TaskTracker::new();
    let engine = Engine::new(
        served.table().clone(),
        config.serve_ip,
        shutdown.clone(),
        connections.clone(),
    );
    tokio::spawn(engine.run());
    admin_state.ready.store(true, Ordering::Release);
    tracing::info!(
        id = config.id,
        admin = %config.admin_addr,
        serve_ip = %config.serve_ip,
        version = served.state().version,
        "node started"
    );
    Ok(RunningNode {
        served,
        seed_path: config.cluster.seed.clone(),
        shutdown,
        connections,
        admin_stop,
        grace: Duration::from_millis(config.shutdown_grace_ms),
    })
}

impl RunningNode {
    /// Re-reads the seed file and applies it (SIGHUP in this single-node
    /// stage); a bad file is logged and the old configuration kept.
    pub fn reload(&self) {
        let Some(path) = &self.seed_path else {
            tracing::warn!("SIGHUP: no seed file configured; nothing to reload");
            return;
        };
        let result = read_toml::<ClusterSpec>(path)
            .map_err(|e| e.to_string())
            .and_then(|spec| {
                self.served
                    .apply(Command::ApplyConfig {
                        spec,
                        if_version: None,
                    })
                    .map_err(|e| e.to_string())
            });
        match result {
            Ok(version) => {
                tracing::info!(version, path = %path.display(), "configuration reloaded")
            }
            Err(error) => {
                tracing::error!(%error, path = %path.display(), "reload refused; keeping the current configuration")
            }
        }
    }

    /// Stops accepting, lets open requests and connections finish within
    /// the grace period, and reports what had to be cut.
    pub async fn shutdown(self) {
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
        self.admin_stop.cancel();
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
                    self.reload();
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
