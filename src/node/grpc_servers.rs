//! A node's two gRPC servers: the peer port (Raft and the control plane's
//! own calls between nodes) and the control API (with reflection), each
//! plain or over mutual TLS.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tonic::transport::server::{Router, TcpIncoming};

use super::NodeError;
use crate::api::{ApiAuth, ControlApi};
use crate::auth::Token;
use crate::control::ClusterControl;
use crate::raft::peer_service::PeerService;
use crate::tls::{ClusterTls, transport};

/// Streams a peer may reset before the peer server accepted them (h2's
/// default is 20) before the connection is dropped.
const PEER_MAX_PENDING_RESETS: usize = 200;

/// Serves `router` on `listener` until `stop`: over TLS with the settings
/// `tls` gives for each new handshake, else in plain text.
async fn serve(
    router: Router,
    listener: TcpIncoming,
    what: &'static str,
    tls: Option<impl Fn() -> Arc<rustls::ServerConfig> + Send + 'static>,
    stop: CancellationToken,
) {
    let served = match tls {
        Some(settings) => {
            let incoming = transport::incoming(listener, what, settings);
            router
                .serve_with_incoming_shutdown(incoming, stop.cancelled())
                .await
        }
        None => {
            router
                .serve_with_incoming_shutdown(listener, stop.cancelled())
                .await
        }
    };
    if let Err(error) = served {
        tracing::error!(%error, port = what, "gRPC server failed");
    }
}

/// Serves the peer service of `control` on `listener` until `stop`; calls
/// carry `token` when one is set.
pub(super) fn spawn_peer(
    control: &Arc<ClusterControl>,
    token: &Token,
    listener: TcpIncoming,
    tls: Option<Arc<ClusterTls>>,
    stop: CancellationToken,
) {
    let router = tonic::transport::Server::builder()
        // Peers' own late RPCs are no longer cancelled (see
        // raft::network), but a burst of resets from a peer under load
        // must not cost the whole connection either.
        .http2_max_pending_accept_reset_streams(Some(PEER_MAX_PENDING_RESETS))
        .add_service(PeerService::server(control.clone(), token, tls.is_some()));
    let settings = tls.map(|tls| move || tls.peer_server());
    tokio::spawn(serve(router, listener, "peer", settings, stop));
}

/// Serves the control API of `control` and gRPC reflection, every call
/// checked by `auth`, on `listener` until `stop`.
pub(super) fn spawn_api(
    control: &Arc<ClusterControl>,
    auth: &ApiAuth,
    listener: TcpIncoming,
    tls: Option<Arc<ClusterTls>>,
    stop: CancellationToken,
) -> Result<(), NodeError> {
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
    let router = tonic::transport::Server::builder()
        .add_service(ControlApi::server(control.clone(), auth))
        .add_service(auth.guard(reflection_v1))
        .add_service(auth.guard(reflection_v1alpha));
    let settings = tls.map(|tls| move || tls.api_server());
    tokio::spawn(serve(router, listener, "api", settings, stop));
    Ok(())
}
