//! One active health check: a TCP connect, an HTTP GET whose status must
//! fall in the expected range (HTTP/2 for `h2` and `h2c` pools), or gRPC's
//! health protocol; over TLS (the handshake included in the
//! check) for a pool with `[pool.tls]`, as HAProxy's `check-ssl`. Probes
//! leave from the node's serve address.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::config::{CheckKind, HealthSpec};
use crate::proxy::backend_stream::BackendStream;
use crate::state::parse_status_range;
use crate::tls::backend::BackendTls;

/// Runs one check of `spec` against `backend` (`h2`: its pool speaks
/// HTTP/2); why it failed otherwise.
pub async fn probe(
    spec: &HealthSpec,
    backend: SocketAddr,
    source: Option<IpAddr>,
    tls: Option<&BackendTls>,
    h2: bool,
) -> Result<(), String> {
    let timeout = Duration::from_millis(spec.timeout_ms);
    match tokio::time::timeout(timeout, run(spec, backend, source, tls, h2, timeout)).await {
        Ok(result) => result,
        Err(_) => Err(format!("no answer within {} ms", spec.timeout_ms)),
    }
}

async fn run(
    spec: &HealthSpec,
    backend: SocketAddr,
    source: Option<IpAddr>,
    tls: Option<&BackendTls>,
    h2: bool,
    timeout: Duration,
) -> Result<(), String> {
    let stream = BackendStream::open(source, backend, tls, timeout)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    match spec.check {
        CheckKind::Http => {}
        CheckKind::Grpc => return grpc_check(spec, backend, stream, tls.is_some()).await,
        CheckKind::Tcp | CheckKind::None => return Ok(()),
    }
    let host = spec.host.clone().unwrap_or_else(|| backend.to_string());
    let response = if h2 {
        let scheme = if tls.is_some() { "https" } else { "http" };
        let request = Request::get(format!("{scheme}://{host}{}", spec.path))
            .header(hyper::header::USER_AGENT, "raftlb-health-check")
            .body(Empty::<Bytes>::new())
            .map_err(|e| format!("request: {e}"))?;
        send_h2(stream, request).await?
    } else {
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("http: {e}"))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let request = Request::get(spec.path.as_str())
            .header(hyper::header::HOST, host)
            .header(hyper::header::USER_AGENT, "raftlb-health-check")
            .header(hyper::header::CONNECTION, "close")
            .body(Empty::<Bytes>::new())
            .map_err(|e| format!("request: {e}"))?;
        sender
            .send_request(request)
            .await
            .map_err(|e| format!("http: {e}"))?
    };
    let status = response.status().as_u16();
    let (low, high) = parse_status_range(&spec.expect_status).unwrap_or((200, 399));
    if (low..=high).contains(&status) {
        Ok(())
    } else {
        Err(format!("status {status}, expected {}", spec.expect_status))
    }
}

/// Sends one request over a new HTTP/2 connection on `stream`.
async fn send_h2<B>(
    stream: BackendStream,
    request: Request<B>,
) -> Result<Response<Incoming>, String>
where
    B: http_body::Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .map_err(|e| format!("http2: {e}"))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    sender
        .send_request(request)
        .await
        .map_err(|e| format!("http2: {e}"))
}

/// `grpc.health.v1.HealthCheckRequest`.
#[derive(Clone, PartialEq, prost::Message)]
struct HealthCheckRequest {
    #[prost(string, tag = "1")]
    service: String,
}

/// `grpc.health.v1.HealthCheckResponse`.
#[derive(Clone, PartialEq, prost::Message)]
struct HealthCheckResponse {
    /// 1: `SERVING`.
    #[prost(int32, tag = "1")]
    status: i32,
}

/// gRPC's health check: `Check` for `grpc_service`, healthy on `SERVING`.
async fn grpc_check(
    spec: &HealthSpec,
    backend: SocketAddr,
    stream: BackendStream,
    tls: bool,
) -> Result<(), String> {
    use http_body_util::BodyExt;
    use prost::Message;
    let message = HealthCheckRequest {
        service: spec.grpc_service.clone().unwrap_or_default(),
    }
    .encode_to_vec();
    // One uncompressed gRPC message: flag, length, bytes.
    let mut framed = Vec::with_capacity(5 + message.len());
    framed.push(0);
    framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
    framed.extend_from_slice(&message);
    let host = spec.host.clone().unwrap_or_else(|| backend.to_string());
    let scheme = if tls { "https" } else { "http" };
    let request = Request::post(format!("{scheme}://{host}/grpc.health.v1.Health/Check"))
        .header(hyper::header::CONTENT_TYPE, "application/grpc")
        .header(hyper::header::TE, "trailers")
        .header(hyper::header::USER_AGENT, "raftlb-health-check")
        .body(http_body_util::Full::new(Bytes::from(framed)))
        .map_err(|e| format!("request: {e}"))?;
    let response = send_h2(stream, request).await?;
    if response.status() != hyper::StatusCode::OK {
        return Err(format!("grpc: HTTP status {}", response.status()));
    }
    let head_status = response.headers().get("grpc-status").cloned();
    let collected = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("grpc: {e}"))?;
    let trailer_status = collected
        .trailers()
        .and_then(|t| t.get("grpc-status"))
        .cloned();
    let status = trailer_status.or(head_status);
    if status.as_ref().map(|s| s.as_bytes()) != Some(b"0") {
        let code = status.map_or_else(
            || "none".into(),
            |s| String::from_utf8_lossy(s.as_bytes()).into_owned(),
        );
        return Err(format!("grpc: status {code}"));
    }
    let body = collected.to_bytes();
    let message = body
        .get(5..)
        .filter(|_| body.len() >= 5 && body[0] == 0)
        .ok_or("grpc: no message in the answer")?;
    let answer = HealthCheckResponse::decode(message).map_err(|e| format!("grpc: {e}"))?;
    match answer.status {
        1 => Ok(()),
        2 => Err("grpc: NOT_SERVING".into()),
        3 => Err("grpc: SERVICE_UNKNOWN".into()),
        other => Err(format!("grpc: serving status {other}")),
    }
}
