//! Pooled keep-alive HTTP clients to backends.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::body::UpstreamBody;

/// How long an idle pooled backend connection is kept.
const POOL_IDLE: Duration = Duration::from_secs(30);
/// Idle connections kept per backend.
const POOL_MAX_IDLE_PER_BACKEND: usize = 512;

/// The HTTP client type used to reach backends.
pub type UpstreamClient = Client<HttpConnector, UpstreamBody>;

/// One listener's client, rebuilt only when its connect timeout changes.
/// Connections are pooled per backend address and reused across requests
/// and client connections.
#[derive(Clone)]
pub struct UpstreamClients {
    current: Arc<ArcSwapOption<(u64, UpstreamClient)>>,
    source: Option<std::net::IpAddr>,
}

impl UpstreamClients {
    /// Clients whose connections leave from `source`, if given.
    pub fn new(source: Option<std::net::IpAddr>) -> Self {
        UpstreamClients {
            current: Arc::default(),
            source,
        }
    }
    /// The client whose connects give up after `connect_timeout_ms`.
    pub fn get(&self, connect_timeout_ms: u64) -> UpstreamClient {
        if let Some(current) = self.current.load().as_ref()
            && current.0 == connect_timeout_ms
        {
            return current.1.clone();
        }
        let client = build(connect_timeout_ms, self.source);
        self.current
            .store(Some(Arc::new((connect_timeout_ms, client.clone()))));
        client
    }
}

fn build(connect_timeout_ms: u64, source: Option<std::net::IpAddr>) -> UpstreamClient {
    let mut connector = HttpConnector::new();
    connector.set_local_address(source);
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(Duration::from_millis(connect_timeout_ms)));
    Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(POOL_IDLE)
        .pool_max_idle_per_host(POOL_MAX_IDLE_PER_BACKEND)
        // The client's Host header is forwarded as it came.
        .set_host(false)
        .build(connector)
}
