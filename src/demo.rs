//! `raftlb demo`: a node and a few demo backends on loopback, for a first
//! look in one command.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::config::{
    Algorithm, BackendSpec, ClusterBootstrap, ClusterSpec, FrontendSpec, HealthSpec, NodeConfig,
    PoolSpec, Protocol, VipConfig, VipMode,
};
use crate::node::{self, NodeError};

/// The virtual IP the demo's leader holds.
const DEMO_VIP: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 100));

/// Options of `raftlb demo`.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Number of balancer nodes (1 to 7), on 127.0.0.11, 127.0.0.12, …
    pub nodes: u8,
    /// Number of demo backends.
    pub backends: usize,
    /// Port of the demo's HTTP frontend on every node.
    pub port: u16,
}

/// Starts the demo backends and a cluster of nodes in this process, and
/// runs until Ctrl-C.
pub async fn run(options: DemoOptions) -> Result<(), NodeError> {
    let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let mut backends = Vec::new();
    for n in 1..=options.backends {
        let bind_error = |source| NodeError::Bind {
            what: "demo backend",
            address: SocketAddr::new(loopback, 0),
            source,
        };
        let listener = TcpListener::bind((loopback, 0)).await.map_err(bind_error)?;
        let address = listener.local_addr().map_err(bind_error)?;
        tokio::spawn(serve_demo_backend(listener, n));
        backends.push(BackendSpec {
            address: address.to_string(),
            weight: 1,
            admin_state: Default::default(),
        });
    }
    let spec = demo_spec(options.port, backends);
    let root = data_dir();
    let ip = |id: u8| IpAddr::V4(Ipv4Addr::new(127, 0, 0, 10 + id));
    let members: BTreeMap<String, SocketAddr> = (1..=options.nodes)
        .map(|id| (id.to_string(), SocketAddr::new(ip(id), 7100)))
        .collect();
    let mut nodes = Vec::new();
    for id in 1..=options.nodes {
        let config = NodeConfig {
            id: u64::from(id),
            raft_addr: SocketAddr::new(ip(id), 7100),
            api_addr: SocketAddr::new(ip(id), 7200),
            admin_addr: SocketAddr::new(ip(id), 7300),
            serve_ip: ip(id),
            data_dir: root.join(format!("node{id}")),
            token_file: None,
            shutdown_grace_ms: 2_000,
            cluster: ClusterBootstrap {
                members: members.clone(),
                seed: None,
            },
            vip: VipConfig {
                mode: VipMode::Bind,
                address: Some(DEMO_VIP),
                ..VipConfig::default()
            },
            raft: Default::default(),
        };
        nodes.push(node::start(&config, Some(spec.clone())).await?);
    }
    let serving = async {
        loop {
            if nodes.iter().all(|n| n.control.served.version() > 0) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    };
    if tokio::time::timeout(std::time::Duration::from_secs(15), serving)
        .await
        .is_err()
    {
        tracing::warn!("the demo cluster has not committed its configuration yet");
    }
    println!();
    println!(
        "raftlb demo: {} nodes in one Raft cluster, balancing {} demo backends (round robin)",
        options.nodes, options.backends
    );
    println!();
    for id in 1..=options.nodes {
        println!(
            "  node {id}  http://{ip}:{port}/   status page http://{ip}:7300/   api {ip}:7200",
            ip = ip(id),
            port = options.port
        );
    }
    println!();
    println!(
        "  VIP     http://{DEMO_VIP}:{}/   held by the leader; moves when the leader stops",
        options.port
    );
    println!();
    println!("try:");
    println!(
        "  for i in 1 2 3 4; do curl -s http://{DEMO_VIP}:{}/; done",
        options.port
    );
    println!(
        "  cargo run --release -- ctl --endpoint {}:7200 status",
        ip(1)
    );
    println!(
        "  cargo run --release -- ctl --endpoint {}:7200 get backends",
        ip(options.nodes)
    );
    println!();
    println!("Ctrl-C stops the demo.");
    let _ = tokio::signal::ctrl_c().await;
    tracing::info!("Ctrl-C received: stopping the demo cluster");
    for node in nodes {
        node.shutdown().await;
    }
    let _ = std::fs::remove_dir_all(&root);
    Ok(())
}

fn demo_spec(port: u16, backends: Vec<BackendSpec>) -> ClusterSpec {
    ClusterSpec {
        frontends: vec![FrontendSpec {
            name: "web".into(),
            port,
            protocol: Protocol::Http,
            pool: "web".into(),
            routes: Vec::new(),
            max_connections: 10_000,
            connect_timeout_ms: 1_000,
            idle_timeout_ms: 60_000,
            header_timeout_ms: 10_000,
            response_timeout_ms: 30_000,
            retries: 2,
        }],
        pools: vec![PoolSpec {
            name: "web".into(),
            algorithm: Algorithm::RoundRobin,
            hash_key: None,
            health: HealthSpec::default(),
            backends,
        }],
    }
}

async fn serve_demo_backend(listener: TcpListener, n: usize) {
    let Ok(address) = listener.local_addr() else {
        return;
    };
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            let service = service_fn(move |request: Request<hyper::body::Incoming>| async move {
                let text = format!(
                    "hello from demo backend {n} ({address}): {} {}\n",
                    request.method(),
                    request.uri().path()
                );
                let mut response = Response::new(Full::new(Bytes::from(text)));
                response
                    .headers_mut()
                    .insert("x-backend", hyper::header::HeaderValue::from(n));
                Ok::<_, Infallible>(response)
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Where a demo keeps its data; removed when the demo stops.
pub fn data_dir() -> PathBuf {
    std::env::temp_dir().join(format!("raftlb-demo-{}", std::process::id()))
}
