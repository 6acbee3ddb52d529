//! TLS termination on `https` frontends: the cluster's certificates
//! (from the state, `ctl cert`), chosen by the SNI of each ClientHello.

use std::collections::HashMap;
use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::routing::PublishedTable;
use crate::state::certificates::{self, Certificates};

/// The cluster's certificates, ready for handshakes.
#[derive(Debug, Default)]
pub struct CertificateSet {
    /// By exact DNS name.
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// By the parent domain of a wildcard (`example.com` for
    /// `*.example.com`).
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    /// For no SNI, or a name no certificate serves: the entry marked
    /// default, else the only one.
    default: Option<Arc<CertifiedKey>>,
    /// What may be shown of each served certificate.
    pub infos: Vec<certificates::CertificateInfo>,
    /// What this was compiled from.
    source: Arc<Certificates>,
}

impl CertificateSet {
    /// The set for `source`; `previous` is reused when compiled from the
    /// same certificates.
    pub fn compile(source: &Arc<Certificates>, previous: Option<&Arc<Self>>) -> Arc<Self> {
        if let Some(previous) = previous
            && Arc::ptr_eq(&previous.source, source)
        {
            return previous.clone();
        }
        let mut set = CertificateSet {
            source: source.clone(),
            ..CertificateSet::default()
        };
        for certificate in source.values() {
            if certificate.is_pending() {
                continue;
            }
            // Checked when committed; a failure here is logged, not served.
            let loaded = certificates::load(certificate);
            let (info, key) = match loaded {
                Ok(loaded) => loaded,
                Err(error) => {
                    tracing::error!(certificate = %certificate.name, %error, "certificate not served");
                    continue;
                }
            };
            for name in &info.names {
                match name.strip_prefix("*.") {
                    Some(parent) => set.wildcard.insert(parent.to_string(), key.clone()),
                    None => set.exact.insert(name.clone(), key.clone()),
                };
            }
            if info.default || source.len() == 1 {
                set.default = Some(key);
            }
            set.infos.push(info);
        }
        Arc::new(set)
    }

    /// The certificate for a ClientHello naming `sni`.
    pub fn select(&self, sni: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let found = sni.and_then(|sni| {
            let sni = sni.trim_end_matches('.').to_ascii_lowercase();
            self.exact.get(&sni).cloned().or_else(|| {
                let (_, parent) = sni.split_once('.')?;
                self.wildcard.get(parent).cloned()
            })
        });
        found.or_else(|| self.default.clone())
    }

    /// Whether no certificate is served.
    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.wildcard.is_empty() && self.default.is_none()
    }
}

/// Chooses from the certificates of the table served at the moment of each
/// handshake: a replaced certificate serves the next handshake, open
/// connections keep theirs.
pub struct LiveCertificates(pub Arc<PublishedTable>);

impl std::fmt::Debug for LiveCertificates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LiveCertificates")
    }
}

impl ResolvesServerCert for LiveCertificates {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.load().certificates.select(hello.server_name())
    }
}

/// Server settings for an `https` frontend (`http`: ALPN `h2`, then
/// `http/1.1`) or a
/// `tls` one: TLS 1.3 and 1.2, the provider's suites (AEAD only),
/// session tickets sealed with the cluster's shared keys.
pub fn server_config(table: Arc<PublishedTable>, http: bool) -> Arc<rustls::ServerConfig> {
    let mut config = rustls::ServerConfig::builder_with_provider(super::provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .expect("the provider supports TLS 1.2 and 1.3")
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(LiveCertificates(table.clone())));
    // A `tls` frontend relays whatever the client speaks: it selects no
    // protocol, so a client offering others is not refused.
    if http {
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    }
    // Tickets sealed with the cluster's keys: a client resumes on any node.
    config.ticketer = Arc::new(super::tickets::ClusterTicketer(table));
    Arc::new(config)
}
