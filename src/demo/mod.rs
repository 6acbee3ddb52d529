//! `raftlb demo`: three `raftlb node` processes on loopback (127.0.0.11,
//! .12, .13) in one Raft cluster, a VIP on 127.0.0.100 held by the leader
//! (`bind` mode), and demo backends, for a first look in one command.
//! `--drill` then kills the VIP holder with SIGKILL under client load and
//! reports how long the VIP went unanswered (the `drill` module).

mod backends;
mod drill;
mod nodes;
mod site;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use crate::config::{
    Algorithm, BackendSpec, ClusterBootstrap, ClusterSpec, FrontendSpec, HealthSpec, NodeConfig,
    PoolSpec, Protocol, VipConfig, VipMode,
};
use crate::ctl::client_config;
use crate::tls::TlsFiles;
use crate::tls::bootstrap::{ClientSpec, NodeSpec};
use crate::tls::identity::Role;

pub use drill::DrillReport;
use nodes::NodeProcess;

/// The virtual IP the demo's leader holds.
pub const DEMO_VIP: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 100));

/// The demo's HTTPS frontend's port, on the VIP and every node.
pub const DEMO_HTTPS_PORT: u16 = 8443;

/// Options of `raftlb demo`.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Number of balancer nodes (1 to 7), on 127.0.0.11, 127.0.0.12, …
    pub nodes: u8,
    /// Number of demo backends.
    pub backends: usize,
    /// Port of the demo's HTTP frontend on every node.
    pub port: u16,
    /// Kill the VIP holder this many times (0: no drill), then stop.
    pub drill_rounds: usize,
}

/// Why the demo could not run.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// Files or processes could not be set up.
    #[error("{0}")]
    Setup(String),
    /// The cluster did not come up.
    #[error("the demo cluster did not become ready: {0}")]
    NotReady(String),
}

/// Runs the demo until Ctrl-C (or until the drill is over). Its configs,
/// data and logs stay for the user to read (and remove).
pub async fn run(options: DemoOptions) -> Result<(), DemoError> {
    let root = data_dir();
    let result = run_in(&root, &options).await;
    println!(
        "configs, data and logs of this demo are kept in {root}; remove them with: rm -r {root}",
        root = root.display()
    );
    result
}

async fn run_in(root: &std::path::Path, options: &DemoOptions) -> Result<(), DemoError> {
    let setup = |e: std::io::Error| DemoError::Setup(e.to_string());
    std::fs::create_dir_all(root).map_err(setup)?;
    let mut backend_specs = Vec::new();
    for n in 1..=options.backends {
        let address = backends::start(n).await.map_err(setup)?;
        backend_specs.push(BackendSpec {
            address: address.to_string(),
            weight: 1,
            admin_state: Default::default(),
            discovered: None,
        });
    }
    let seed = root.join("cluster.toml");
    let spec = demo_spec(options.port, backend_specs);
    let text = toml::to_string(&spec).map_err(|e| DemoError::Setup(e.to_string()))?;
    std::fs::write(&seed, text).map_err(setup)?;

    // Mutual TLS, as a real cluster should run: the demo's own CA.
    let certs = root.join("certs");
    let node_specs: Vec<NodeSpec> = (1..=options.nodes)
        .map(|id| NodeSpec {
            id: u64::from(id),
            addresses: vec![node_ip(id)],
            names: Vec::new(),
        })
        .collect();
    let admin = ClientSpec {
        name: "admin".into(),
        role: Role::Admin,
    };
    crate::tls::bootstrap::init(&certs, &node_specs, &[admin]).map_err(DemoError::Setup)?;

    let members: BTreeMap<String, String> = (1..=options.nodes)
        .map(|id| {
            (
                id.to_string(),
                SocketAddr::new(node_ip(id), 7100).to_string(),
            )
        })
        .collect();
    let mut nodes = Vec::new();
    for id in 1..=options.nodes {
        let config = node_config(id, root, &members, &seed);
        let path = root.join(format!("node{id}.toml"));
        let text = toml::to_string(&config).map_err(|e| DemoError::Setup(e.to_string()))?;
        std::fs::write(&path, text).map_err(setup)?;
        nodes.push(NodeProcess::spawn(u64::from(id), path, config.admin_addr).map_err(setup)?);
    }
    for node in &nodes {
        node.wait_ready().await.map_err(DemoError::NotReady)?;
    }
    let endpoints: Vec<String> = (1..=options.nodes)
        .map(|id| format!("{}:7200", node_ip(id)))
        .collect();
    let addresses: Vec<IpAddr> = std::iter::once(DEMO_VIP)
        .chain((1..=options.nodes).map(node_ip))
        .collect();
    site::commit(&certs, &addresses, &endpoints, &demo_client_tls(root))
        .await
        .map_err(DemoError::Setup)?;
    print_banner(options, root);

    if options.drill_rounds > 0 {
        let vip = SocketAddr::new(DEMO_VIP, options.port);
        let report = drill::kill_the_holder(&mut nodes, vip, options.drill_rounds).await;
        println!("{report}");
    } else {
        let client_file = print_tries(options, &demo_client_tls(root));
        println!("Ctrl-C stops the demo.");
        stopped().await;
        if let Some(file) = client_file {
            client_config::remove_demo_file(&file);
        }
    }
    println!("stopping the demo nodes (SIGTERM)…");
    for node in &mut nodes {
        node.terminate();
    }
    for node in &mut nodes {
        node.wait_exit().await;
    }
    Ok(())
}

/// Ctrl-C, or SIGTERM or SIGHUP (a `kill`, a closed terminal): each stops
/// the demo the same way, its client file removed.
async fn stopped() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut hangup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
        _ = hangup.recv() => {}
    }
}

fn node_ip(id: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 10 + id))
}

fn node_config(
    id: u8,
    root: &std::path::Path,
    members: &BTreeMap<String, String>,
    seed: &std::path::Path,
) -> NodeConfig {
    let ip = node_ip(id);
    NodeConfig {
        id: u64::from(id),
        raft_addr: SocketAddr::new(ip, 7100),
        api_addr: SocketAddr::new(ip, 7200),
        admin_addr: SocketAddr::new(ip, 7300),
        serve_ip: ip,
        data_dir: root.join(format!("node{id}")),
        token_file: None,
        read_token_file: None,
        tls: Some(TlsFiles {
            ca: root.join("certs/ca.pem"),
            cert: root.join(format!("certs/node{id}.pem")),
            key: root.join(format!("certs/node{id}-key.pem")),
        }),
        insecure: false,
        admin: Default::default(),
        shutdown_grace_ms: 2_000,
        worker_threads: None,
        http1: Default::default(),
        cluster: ClusterBootstrap {
            members: members.clone(),
            seed: Some(seed.to_path_buf()),
        },
        vip: VipConfig {
            mode: VipMode::Bind,
            address: Some(DEMO_VIP),
            ..VipConfig::default()
        },
        bgp: None,
        raft: Default::default(),
    }
}

fn print_banner(options: &DemoOptions, root: &std::path::Path) {
    println!();
    println!(
        "raftlb demo: {} `raftlb node` processes in one Raft cluster, balancing {} demo backends",
        options.nodes, options.backends
    );
    println!();
    for id in 1..=options.nodes {
        println!(
            "  node {id}  http://{ip}:{port}/   status page http://{ip}:7300/   api {ip}:7200",
            ip = node_ip(id),
            port = options.port
        );
    }
    println!();
    println!(
        "  VIP     http://{DEMO_VIP}:{}/   held by the leader; moves when the leader dies",
        options.port
    );
    println!(
        "  HTTPS   https://{DEMO_VIP}:{DEMO_HTTPS_PORT}/   on every node too; certificate from the demo's CA ({})",
        root.join("certs/ca.pem").display()
    );
    println!("  configs and logs in {}", root.display());
    println!();
}

/// Prints the commands to try, and makes `raftlb ctl` find the demo
/// through the client config file (unless that file is the operator's:
/// then the lines name the endpoints). The file written, if any.
/// The demo's client certificate for `raftlb ctl`.
fn demo_client_tls(root: &std::path::Path) -> TlsFiles {
    TlsFiles {
        ca: root.join("certs/ca.pem"),
        cert: root.join("certs/admin.pem"),
        key: root.join("certs/admin-key.pem"),
    }
}

fn print_tries(options: &DemoOptions, tls: &TlsFiles) -> Option<PathBuf> {
    let endpoints: Vec<String> = (1..=options.nodes)
        .map(|id| format!("{}:7200", node_ip(id)))
        .collect();
    let raftlb = std::env::current_exe()
        .map_or_else(|_| "raftlb".to_string(), |exe| exe.display().to_string());
    let (ctl, written) = match client_config::write_for_demo(&endpoints, Some(tls)) {
        Ok(file) => (format!("{raftlb} ctl"), Some(file)),
        Err(why) => {
            println!("  (not writing the ctl client config: {why})");
            (
                format!(
                    "{raftlb} ctl --endpoint {} --ca {} --cert {} --key {}",
                    endpoints.join(","),
                    tls.ca.display(),
                    tls.cert.display(),
                    tls.key.display()
                ),
                None,
            )
        }
    };
    println!("try:");
    println!(
        "  for i in 1 2 3 4; do curl -s http://{DEMO_VIP}:{}/; done",
        options.port
    );
    println!(
        "  curl -s --cacert {} https://{DEMO_VIP}:{DEMO_HTTPS_PORT}/",
        tls.ca.display()
    );
    println!("  {ctl} status");
    println!("  {ctl} get backends");
    println!("  {ctl} cluster transfer-leader");
    if let Some(file) = &written {
        println!(
            "  (`raftlb ctl` finds the demo and its client certificate through {}, removed when the demo stops)",
            file.display()
        );
    }
    println!();
    written
}

fn demo_spec(port: u16, backends: Vec<BackendSpec>) -> ClusterSpec {
    ClusterSpec {
        frontends: [
            ("web", port, Protocol::Http),
            ("web-tls", DEMO_HTTPS_PORT, Protocol::Https),
        ]
        .into_iter()
        .map(|(name, port, protocol)| FrontendSpec {
            name: name.into(),
            port,
            protocol,
            pool: "web".into(),
            routes: Vec::new(),
            max_connections: 10_000,
            connect_timeout_ms: 1_000,
            idle_timeout_ms: 60_000,
            header_timeout_ms: 10_000,
            response_timeout_ms: 30_000,
            tunnel_timeout_ms: 3_600_000,
            retries: 2,
            redirect_https: false,
            h2c: false,
            split: Vec::new(),
            rate_limit: None,
        })
        .collect(),
        pools: vec![PoolSpec {
            name: "web".into(),
            algorithm: Algorithm::RoundRobin,
            hash_key: None,
            health: HealthSpec::default(),
            backends,
            tls: None,
            protocol: Default::default(),
            sticky: None,
            discovery: None,
        }],
        certificates: Vec::new(),
    }
}

/// Where a demo keeps its configs, data and logs; kept when it stops.
pub fn data_dir() -> PathBuf {
    std::env::temp_dir().join(format!("raftlb-demo-{}", std::process::id()))
}
