//! The admin HTTP endpoint: `/readyz`, `/status`, `/metrics` and a status
//! page for people.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::control::ClusterControl;
use crate::vip::{VipRole, VipStatus};

/// What the admin endpoint reports about its node.
pub struct AdminState {
    /// The node's handle on the cluster.
    pub control: Arc<ClusterControl>,
    /// Set once the node serves the committed configuration.
    pub ready: AtomicBool,
    /// The leader role.
    pub vip: Arc<VipRole>,
}

/// `/status` as JSON.
#[derive(Serialize)]
pub struct Status {
    id: u64,
    role: &'static str,
    /// Leads within a lease a quorum confirmed.
    leader_confirmed: bool,
    leader: Option<u64>,
    term: u64,
    applied_index: u64,
    config_version: u64,
    vip: VipStatus,
    frontends: Vec<FrontendStatus>,
    backends: Vec<BackendStatus>,
}

#[derive(Serialize)]
struct FrontendStatus {
    name: String,
    port: u16,
    protocol: &'static str,
    active_connections: i64,
}

#[derive(Serialize)]
struct BackendStatus {
    pool: String,
    address: String,
    health: &'static str,
    ejected: bool,
    committed: &'static str,
    admin_state: &'static str,
    weight: u32,
    active_connections: i64,
}

impl AdminState {
    /// The node's status now.
    pub fn status(&self) -> Status {
        let cluster = self.control.status();
        let table = self.control.served.table().load_full();
        let frontends = table
            .frontends
            .iter()
            .map(|f| FrontendStatus {
                name: f.spec.name.clone(),
                port: f.spec.port,
                protocol: f.spec.protocol.as_str(),
                active_connections: f.stats.active.get(),
            })
            .collect();
        let backends = table
            .pools
            .iter()
            .flat_map(|pool| {
                pool.backends.iter().map(|b| BackendStatus {
                    pool: pool.name.clone(),
                    address: b.address.to_string(),
                    health: b.runtime.health().as_str(),
                    ejected: b.runtime.is_ejected(crate::routing::now_ms()),
                    committed: b.runtime.committed().as_str(),
                    admin_state: b.admin_state.as_str(),
                    weight: b.weight,
                    active_connections: b.runtime.active.get(),
                })
            })
            .collect();
        Status {
            id: cluster.id,
            role: cluster.role,
            leader_confirmed: cluster.leader_confirmed,
            leader: cluster.leader,
            term: cluster.term,
            applied_index: cluster.applied_index,
            config_version: table.version,
            vip: self.vip.status(),
            frontends,
            backends,
        }
    }
}

/// Serves the admin endpoint on `listener` until `stop`.
pub async fn serve(listener: TcpListener, admin: Arc<AdminState>, stop: CancellationToken) {
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    // Usually out of file descriptors: back off, and say so
                    // once, not thousands of times a second.
                    crate::warn_limited!("admin accept", %error, "admin accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = stop.cancelled() => return,
        };
        let admin = admin.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let admin = admin.clone();
                async move { Ok::<_, Infallible>(route(&admin, &req)) }
            });
            let _ = http1::Builder::new()
                .timer(TokioTimer::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Binds the admin address.
pub async fn bind(address: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(address).await
}

fn route(admin: &AdminState, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n".into());
    }
    match request.uri().path() {
        "/readyz" => {
            if admin.ready.load(Ordering::Acquire) {
                text(StatusCode::OK, "ready\n".into())
            } else {
                text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n".into())
            }
        }
        // Cheap to poll whatever the configuration's size (/status lists
        // every backend): what is served, and what is applied.
        "/version" => with_type(
            StatusCode::OK,
            format!(
                "{{\"config_version\":{},\"applied_version\":{}}}\n",
                admin.control.served.version(),
                admin.control.served.state().version
            ),
            "application/json",
        ),
        "/status" => match serde_json::to_string_pretty(&admin.status()) {
            Ok(json) => with_type(StatusCode::OK, json, "application/json"),
            Err(error) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("{error}\n")),
        },
        "/metrics" => with_type(
            StatusCode::OK,
            admin.control.served.metrics().encode(),
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        ),
        "/" => with_type(
            StatusCode::OK,
            status_page(&admin.status()),
            "text/html; charset=utf-8",
        ),
        _ => text(
            StatusCode::NOT_FOUND,
            "not found; try /status, /version, /metrics, /readyz or /\n".into(),
        ),
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    with_type(status, body, "text/plain; charset=utf-8")
}

fn with_type(
    status: StatusCode,
    body: String,
    content_type: &'static str,
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    response
}

fn status_page(status: &Status) -> String {
    let escape = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    };
    let mut rows = String::new();
    for b in &status.backends {
        rows.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td class=\"{}\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            escape(&b.pool),
            escape(&b.address),
            b.health,
            b.health,
            b.committed,
            b.admin_state,
            b.weight,
            b.active_connections
        ));
    }
    let mut fronts = String::new();
    for f in &status.frontends {
        fronts.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            escape(&f.name),
            f.port,
            f.protocol,
            f.active_connections
        ));
    }
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>raftlb node {id}</title>\
<meta http-equiv=\"refresh\" content=\"2\"><style>body{{font-family:sans-serif;margin:2em}}\
table{{border-collapse:collapse;margin-bottom:1.5em}}td,th{{border:1px solid #ccc;padding:.3em .8em}}\
.up{{color:#080}}.ejected,.down{{color:#b00}}.unknown{{color:#888}}</style></head><body>\
<h1>raftlb node {id}</h1><p>role <b>{role}</b>, leader {leader}, term {term}, \
config version {version}</p>\
<h2>Frontends</h2><table><tr><th>name</th><th>port</th><th>protocol</th><th>connections</th></tr>\n{fronts}</table>\
<h2>Backends</h2><table><tr><th>pool</th><th>address</th><th>health (this node)</th><th>committed</th><th>admin</th><th>weight</th>\
<th>active</th></tr>\n{rows}</table><p><a href=\"/status\">/status</a> · <a href=\"/metrics\">/metrics</a></p>\
</body></html>\n",
        id = status.id,
        role = status.role,
        leader = status.leader.map_or("none".to_string(), |l| l.to_string()),
        term = status.term,
        version = status.config_version,
    )
}
