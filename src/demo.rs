//! `raftlb demo`: a node and a few demo backends on loopback, for a first
//! look in one command.

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
    PoolSpec, Protocol, VipConfig,
};
use crate::node::{self, NodeError};

/// Options of `raftlb demo`.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Number of demo backends.
    pub backends: usize,
    /// Port of the demo's HTTP frontend on 127.0.0.1.
    pub port: u16,
    /// Port of the admin endpoint on 127.0.0.1.
    pub admin_port: u16,
}

/// Starts the demo backends, then a node balancing over them, and runs
/// until Ctrl-C.
pub async fn run(options: DemoOptions) -> Result<(), NodeError> {
    let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let mut backends = Vec::new();
    for n in 1..=options.backends {
        let listener =
            TcpListener::bind((loopback, 0))
                .await
                .map_err(|source| NodeError::Bind {
                    what: "demo backend",
                    address: SocketAddr::new(loopback, 0),
                    source,
                })?;
        let address = listener.local_addr().map_err(|source| NodeError::Bind {
            what: "demo backend",
            address: SocketAddr::new(loopback, 0),
            source,
        })?;
        tokio::spawn(serve_demo_backend(listener, n));
        backends.push(BackendSpec {
            address: address.to_string(),
            weight: 1,
            admin_state: Default::default(),
        });
    }
    let data_dir = data_dir();
    let config = NodeConfig {
        id: 1,
        raft_addr: SocketAddr::new(loopback, 7100),
        api_addr: SocketAddr::new(loopback, 7200),
        admin_addr: SocketAddr::new(loopback, options.admin_port),
        serve_ip: loopback,
        data_dir: data_dir.clone(),
        token_file: None,
        shutdown_grace_ms: 2_000,
        cluster: ClusterBootstrap {
            members: [("1".to_string(), SocketAddr::new(loopback, 7100))].into(),
            seed: None,
        },
        vip: VipConfig::default(),
        raft: Default::default(),
    };
    let spec = demo_spec(options.port, backends);
    let node = node::start(&config, Some(spec)).await?;
    println!();
    println!(
        "raftlb demo: one node balancing {} demo backends (round robin)",
        options.backends
    );
    println!();
    println!("  frontend  http://127.0.0.1:{}/", options.port);
    println!("  status    http://127.0.0.1:{}/", options.admin_port);
    println!();
    println!(
        "try:  for i in 1 2 3 4; do curl -s http://127.0.0.1:{}/; done",
        options.port
    );
    println!();
    println!("Ctrl-C stops the demo.");
    let result = node.run_until_signal().await;
    let _ = std::fs::remove_dir_all(&data_dir);
    result.map_err(|source| NodeError::Bind {
        what: "signal handler",
        address: config.admin_addr,
        source,
    })
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
