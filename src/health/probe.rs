//! One active health check: a TCP connect, or an HTTP GET whose status must
//! fall in the expected range; over TLS (the handshake included in the
//! check) for a pool with `[pool.tls]`, as HAProxy's `check-ssl`. Probes
//! leave from the node's serve address.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper::Request;
use hyper_util::rt::TokioIo;

use crate::config::{CheckKind, HealthSpec};
use crate::proxy::backend_stream::BackendStream;
use crate::state::parse_status_range;
use crate::tls::backend::BackendTls;

/// Runs one check of `spec` against `backend`; why it failed otherwise.
pub async fn probe(
    spec: &HealthSpec,
    backend: SocketAddr,
    source: Option<IpAddr>,
    tls: Option<&BackendTls>,
) -> Result<(), String> {
    let timeout = Duration::from_millis(spec.timeout_ms);
    match tokio::time::timeout(timeout, run(spec, backend, source, tls, timeout)).await {
        Ok(result) => result,
        Err(_) => Err(format!("no answer within {} ms", spec.timeout_ms)),
    }
}

async fn run(
    spec: &HealthSpec,
    backend: SocketAddr,
    source: Option<IpAddr>,
    tls: Option<&BackendTls>,
    timeout: Duration,
) -> Result<(), String> {
    let stream = BackendStream::open(source, backend, tls, timeout)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    if spec.check != CheckKind::Http {
        return Ok(());
    }
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("http: {e}"))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let host = spec.host.clone().unwrap_or_else(|| backend.to_string());
    let request = Request::get(spec.path.as_str())
        .header(hyper::header::HOST, host)
        .header(hyper::header::USER_AGENT, "raftlb-health-check")
        .header(hyper::header::CONNECTION, "close")
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("request: {e}"))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("http: {e}"))?;
    let status = response.status().as_u16();
    let (low, high) = parse_status_range(&spec.expect_status).unwrap_or((200, 399));
    if (low..=high).contains(&status) {
        Ok(())
    } else {
        Err(format!("status {status}, expected {}", spec.expect_status))
    }
}
