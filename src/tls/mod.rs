//! Mutual TLS on the peer port and the control API (rustls, aws-lc-rs provider).
//!
//! Every node and client holds a certificate from the cluster's CA that
//! names its identity ([`identity`]); `raftlb certs init` makes them
//! ([`bootstrap`]). A node re-reads its files on SIGHUP and when they
//! change: new handshakes use the new certificate and CA bundle, open
//! connections keep theirs ([`ClusterTls::reload`]). [`transport`] has the
//! accepting and connecting halves for tonic.

pub mod backend;
pub mod bootstrap;
pub mod frontend;
pub mod identity;
pub mod tickets;
pub mod transport;
pub mod x509;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

pub use identity::{CertInfo, Identity, Role};

/// `[tls]` in node.toml, and the ctl's `--ca`, `--cert`, `--key`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// The CA bundle (PEM; old and new CA during a CA change).
    pub ca: PathBuf,
    /// This node's (or client's) certificate chain (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM; readable by the owner only).
    pub key: PathBuf,
}

impl TlsFiles {
    /// The same files, relative paths taken from `base`.
    pub fn relative_to(&self, base: &Path) -> TlsFiles {
        TlsFiles {
            ca: base.join(&self.ca),
            cert: base.join(&self.cert),
            key: base.join(&self.key),
        }
    }
}

/// What is read from the files, ready for handshakes.
struct Material {
    peer_server: Arc<ServerConfig>,
    api_server: Arc<ServerConfig>,
    admin_server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
    info: CertInfo,
}

/// A node's TLS settings, swapped whole on reload.
pub struct ClusterTls {
    files: TlsFiles,
    /// The API also takes clients without a certificate (they must then
    /// send the token).
    api_without_cert: bool,
    current: ArcSwap<Material>,
    stamp: Mutex<Vec<Option<SystemTime>>>,
}

/// A day, in ms.
pub const DAY_MS: u64 = 24 * 3600 * 1000;

/// Certificates this close to their end are warned about: by `ctl status`,
/// `ctl cert list` and the status page.
pub const EXPIRY_WARNING_MS: u64 = 30 * DAY_MS;

/// Whole days left until `not_after_ms`; `None` once it has passed.
pub fn days_left(not_after_ms: u64, now_ms: u64) -> Option<u64> {
    match not_after_ms.checked_sub(now_ms) {
        None | Some(0) => None,
        Some(left) => Some(left / DAY_MS),
    }
}

/// Whether a certificate ending at `not_after_ms` is to be warned about
/// (0: none issued yet, an ACME entry not ordered yet: no).
pub fn expires_soon(not_after_ms: u64, now_ms: u64) -> bool {
    not_after_ms != 0 && not_after_ms < now_ms + EXPIRY_WARNING_MS
}

/// The crypto provider every TLS config is built with: aws-lc-rs,
/// rustls' default (post-quantum hybrid key exchange, X25519MLKEM768,
/// first; faster handshakes than ring, see the README's HTTPS benchmark).
/// It builds from source with the C compiler every Rust toolchain needs
/// (no cmake, no clang).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// TLS 1.3, and 1.2 for older clients; nothing before.
const VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// gRPC is HTTP/2: grpcio and grpc-go insist that the server selects it.
fn alpn() -> Vec<Vec<u8>> {
    vec![b"h2".to_vec()]
}

/// The admin port speaks HTTP/1.1.
fn admin_alpn() -> Vec<Vec<u8>> {
    vec![b"http/1.1".to_vec()]
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate in it", path.display()));
    }
    Ok(certs)
}

/// Reads a private key, refusing one that others may read.
fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    crate::auth::owner_only(path)?;
    PrivateKeyDer::from_pem_file(path).map_err(|e| format!("{}: {e}", path.display()))
}

fn roots(path: &Path) -> Result<Arc<RootCertStore>, String> {
    let mut store = RootCertStore::empty();
    for cert in read_certs(path)? {
        store
            .add(cert)
            .map_err(|e| format!("{}: not a CA certificate: {e}", path.display()))?;
    }
    Ok(Arc::new(store))
}

/// A client's TLS settings: trust `files.ca`, present `files.cert`.
pub fn client_config(files: &TlsFiles) -> Result<Arc<ClientConfig>, String> {
    let roots = roots(&files.ca)?;
    let chain = read_certs(&files.cert)?;
    let key = read_key(&files.key)?;
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| format!("{}: {e}", files.cert.display()))?;
    config.alpn_protocols = alpn();
    Ok(Arc::new(config))
}

fn server_config(
    roots: Arc<RootCertStore>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    require_cert: bool,
    alpn: Vec<Vec<u8>>,
) -> Result<Arc<ServerConfig>, String> {
    let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider());
    let verifier = if require_cert {
        verifier
    } else {
        verifier.allow_unauthenticated()
    };
    let verifier = verifier.build().map_err(|e| e.to_string())?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)
        .map_err(|e| e.to_string())?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| e.to_string())?;
    config.alpn_protocols = alpn;
    Ok(Arc::new(config))
}

fn load(files: &TlsFiles, api_without_cert: bool) -> Result<Material, String> {
    let roots = roots(&files.ca)?;
    let chain = read_certs(&files.cert)?;
    let key = read_key(&files.key)?;
    let info = identity::read(&chain[0]).map_err(|e| format!("{}: {e}", files.cert.display()))?;
    let peer_server = server_config(roots.clone(), chain.clone(), key.clone_key(), true, alpn())?;
    let api_server = server_config(
        roots.clone(),
        chain.clone(),
        key.clone_key(),
        !api_without_cert,
        alpn(),
    )?;
    // Browsers and Prometheus: a client certificate is optional there.
    let admin_server = server_config(roots, chain, key, false, admin_alpn())?;
    Ok(Material {
        peer_server,
        api_server,
        admin_server,
        client: client_config(files)?,
        info,
    })
}

fn stamp(files: &TlsFiles) -> Vec<Option<SystemTime>> {
    [&files.ca, &files.cert, &files.key]
        .iter()
        .map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        .collect()
}

impl ClusterTls {
    /// Reads `files`; refuses a node certificate that names another node.
    pub fn load(
        files: TlsFiles,
        node_id: u64,
        api_without_cert: bool,
    ) -> Result<Arc<Self>, String> {
        let material = load(&files, api_without_cert)?;
        check_names_node(&material.info, node_id, &files.cert)?;
        Ok(Arc::new(ClusterTls {
            stamp: Mutex::new(stamp(&files)),
            files,
            api_without_cert,
            current: ArcSwap::from_pointee(material),
        }))
    }

    /// Reads the files again; new handshakes use what they hold now, open
    /// connections keep theirs. On an error the old settings stay.
    pub fn reload(&self, node_id: u64) -> Result<(), String> {
        *self.stamp.lock().unwrap_or_else(|e| e.into_inner()) = stamp(&self.files);
        let material = load(&self.files, self.api_without_cert)?;
        check_names_node(&material.info, node_id, &self.files.cert)?;
        let expires = material.info.not_after_ms;
        self.current.store(Arc::new(material));
        tracing::info!(cert = %self.files.cert.display(), expires_ms = expires, "TLS files reloaded");
        Ok(())
    }

    /// Reloads whenever a file's modification time changes (checked every
    /// `every`), until `stop`.
    pub async fn watch(self: Arc<Self>, node_id: u64, every: Duration, stop: CancellationToken) {
        loop {
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                () = stop.cancelled() => return,
            }
            let changed =
                *self.stamp.lock().unwrap_or_else(|e| e.into_inner()) != stamp(&self.files);
            if changed && let Err(error) = self.reload(node_id) {
                tracing::error!(%error, "TLS files changed but cannot be used; keeping the previous ones");
            }
        }
    }

    /// Settings for the next handshake on the peer port (client
    /// certificate required).
    pub fn peer_server(&self) -> Arc<ServerConfig> {
        self.current.load().peer_server.clone()
    }

    /// Settings for the next handshake on the control API.
    pub fn api_server(&self) -> Arc<ServerConfig> {
        self.current.load().api_server.clone()
    }

    /// Settings for the next handshake on the admin port (`[admin] tls`).
    pub fn admin_server(&self) -> Arc<ServerConfig> {
        self.current.load().admin_server.clone()
    }

    /// Settings for the next connection to a peer.
    pub fn client(&self) -> Arc<ClientConfig> {
        self.current.load().client.clone()
    }

    /// When this node's certificate expires, ms since the Unix epoch.
    pub fn expires_ms(&self) -> u64 {
        self.current.load().info.not_after_ms
    }
}

fn check_names_node(info: &CertInfo, node_id: u64, path: &Path) -> Result<(), String> {
    match &info.identity {
        Some(Identity::Node(id)) if *id == node_id => Ok(()),
        other => Err(format!(
            "{}: names {}, not node {node_id} (make one with: raftlb certs init --out DIR --node {node_id}=ADDRESS)",
            path.display(),
            other
                .as_ref()
                .map_or("no raftlb identity".to_string(), ToString::to_string)
        )),
    }
}
