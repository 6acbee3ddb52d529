//! The admin HTTP endpoint: `/readyz`, `/status`, `/metrics`, and a status
//! page for people (`/`, embedded in the binary: `page.html`) that
//! polls `/status/live` every second.

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
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::control::ClusterControl;
use crate::vip::VipRole;

mod access;
mod status;

pub use access::AdminAccess;
pub use status::Status;

/// What the admin endpoint reports about its node.
pub struct AdminState {
    /// The node's handle on the cluster.
    pub control: Arc<ClusterControl>,
    /// Set once the node serves the committed configuration.
    pub ready: AtomicBool,
    /// The leader role.
    pub vip: Arc<VipRole>,
    /// The last minutes of this node's traffic, for the status page.
    pub traffic: Arc<crate::traffic::TrafficHistory>,
}

/// Longest a TLS handshake on the admin port may take.
const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Serves the admin endpoint on `listener` until `stop`, as `access` says.
pub async fn serve(
    listener: TcpListener,
    admin: Arc<AdminState>,
    access: Arc<AdminAccess>,
    stop: CancellationToken,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(access.max_connections));
    loop {
        let (stream, peer) = tokio::select! {
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
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            crate::warn_limited!(
                "admin full",
                %peer,
                limit = access.max_connections,
                "admin connection closed: max_connections reached"
            );
            continue;
        };
        let (admin, access) = (admin.clone(), access.clone());
        tokio::spawn(async move {
            let _slot = slot;
            let Some(tls) = &access.tls else {
                serve_connection(TokioIo::new(stream), admin, access.clone(), false).await;
                return;
            };
            let acceptor = tokio_rustls::TlsAcceptor::from(tls.admin_server());
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => {
                    // rustls verified a certificate, when one was presented.
                    let certified = stream.get_ref().1.peer_certificates().is_some();
                    serve_connection(TokioIo::new(stream), admin, access.clone(), certified).await;
                }
                Ok(Err(error)) => {
                    crate::warn_limited!("admin tls", %peer, %error, "admin TLS handshake refused")
                }
                Err(_) => crate::warn_limited!("admin tls", %peer, "admin TLS handshake timed out"),
            }
        });
    }
}

/// Serves one connection's requests.
async fn serve_connection<I>(
    io: I,
    admin: Arc<AdminState>,
    access: Arc<AdminAccess>,
    certified: bool,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service = service_fn(move |req: Request<Incoming>| {
        let (admin, access) = (admin.clone(), access.clone());
        async move {
            if !access.allows(req.uri().path(), req.headers(), certified) {
                return Ok::<_, Infallible>(unauthorized());
            }
            Ok(route(&admin, &req).await)
        }
    });
    let _ = http1::Builder::new()
        .timer(TokioTimer::new())
        .serve_connection(io, service)
        .await;
}

/// 401, asking a browser for the token (as the password; any user).
fn unauthorized() -> Response<Full<Bytes>> {
    let mut response = text(
        StatusCode::UNAUTHORIZED,
        "the admin token is needed: Authorization: Bearer <token>, or Basic with the token as password\n".into(),
    );
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Basic realm=\"raftlb admin\""),
    );
    response
}

/// Binds the admin address.
pub async fn bind(address: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(address).await
}

async fn route(admin: &AdminState, request: &Request<Incoming>) -> Response<Full<Bytes>> {
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
        "/status/live" => match serde_json::to_string(&admin.live().await) {
            Ok(json) => with_type(StatusCode::OK, json, "application/json"),
            Err(error) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("{error}\n")),
        },
        "/metrics" => with_type(
            StatusCode::OK,
            metrics_text(admin),
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        ),
        "/" => with_type(
            StatusCode::OK,
            STATUS_PAGE.to_string(),
            "text/html; charset=utf-8",
        ),
        _ => text(
            StatusCode::NOT_FOUND,
            "not found; try /status, /status/live, /version, /metrics, /readyz or /\n".into(),
        ),
    }
}

/// `/metrics`: the families, after setting the gauges read from the
/// node's state at scrape time (certificate ends, discovered pools).
fn metrics_text(admin: &AdminState) -> String {
    let metrics = admin.control.served.metrics();
    if let Some(tls) = &admin.control.tls {
        metrics
            .tls_cert_expiry
            .set((tls.expires_ms() / 1000) as i64);
    }
    metrics.certificate_expiry.clear();
    for info in &admin.control.served.table().load().certificates.infos {
        // (Pending ACME entries are not served, so not here.)
        let labels = crate::metrics::CertificateLabels {
            certificate: info.name.clone(),
        };
        metrics
            .certificate_expiry
            .get_or_create(&labels)
            .set((info.not_after_ms / 1000) as i64);
    }
    metrics.discovery_stale.clear();
    metrics.discovery_backends.clear();
    for view in crate::state::discovery::views(&admin.control.served.state()) {
        let labels = crate::metrics::PoolLabels { pool: view.pool };
        metrics
            .discovery_stale
            .get_or_create(&labels)
            .set(i64::from(view.stale_since_ms.is_some()));
        metrics
            .discovery_backends
            .get_or_create(&labels)
            .set(view.backends as i64);
    }
    metrics.encode()
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

/// The status page: one self-contained file (no external assets), which
/// polls `/status/live` every second and draws the charts itself.
const STATUS_PAGE: &str = include_str!("page.html");
