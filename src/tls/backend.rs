//! TLS from the nodes to a pool's backends (`[pool.tls]`): the client side
//! of a handshake, for proxied traffic and health checks alike.
//!
//! The roots are the pool's committed CA certificates, or the system's
//! (read once per process), or none (`verify = "none"`); the name verified
//! and sent as SNI is the pool's `sni`, or else the backend's IP address (which its
//! certificate must then name). A client certificate, when a backend asks
//! for one, is a certificate of the cluster's store. TLS 1.3 and 1.2 with
//! the provider's suites, as on the frontends.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::config::PoolTlsSpec;
use crate::state::certificates::Certificates;

/// How one pool's backends are spoken to over TLS.
pub struct BackendTls {
    /// Unique in the process: pooled connections are kept apart by it, so
    /// a connection made under other TLS settings is never reused.
    id: u64,
    connector: TlsConnector,
    /// SNI and the name verified; `None`: each backend's IP address.
    server_name: Option<ServerName<'static>>,
}

impl std::fmt::Debug for BackendTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendTls")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl BackendTls {
    /// The TLS client for a pool's `spec`; `certificates` holds its client
    /// certificate, if it names one; `h2`: it offers only HTTP/2 by ALPN
    /// (`protocol = "h2"`). Errors say what is wrong, for validation (a
    /// valid state compiles).
    pub fn compile(
        spec: &PoolTlsSpec,
        certificates: &Certificates,
        h2: bool,
    ) -> Result<Self, String> {
        let server_name = spec.sni.as_deref().map(parse_server_name).transpose()?;
        let provider = super::provider();
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .expect("the provider supports TLS 1.2 and 1.3");
        let builder = match (spec.verify.as_str(), &spec.ca_pem) {
            ("none", _) => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider))),
            ("system", _) => builder.with_root_certificates(system_roots()),
            (_, Some(pem)) => builder.with_root_certificates(Arc::new(roots_from_pem(pem)?)),
            (file, None) => return Err(format!("the CA file {file:?} was not read (no ca_pem)")),
        };
        let config = match &spec.client_certificate {
            None => builder.with_no_client_auth(),
            Some(name) => {
                let stored = certificates
                    .get(name)
                    .ok_or_else(|| format!("no certificate {name:?} in the cluster's store"))?;
                let chain = CertificateDer::pem_slice_iter(stored.chain_pem.as_bytes())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| format!("certificate {name:?}: unreadable chain: {e}"))?;
                let key = PrivateKeyDer::from_pem_slice(stored.key_pem.as_bytes())
                    .map_err(|_| format!("certificate {name:?}: unreadable private key"))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| format!("certificate {name:?}: {e}"))?
            }
        };
        let mut config = config;
        if h2 {
            config.alpn_protocols = vec![b"h2".to_vec()];
        }
        static IDS: AtomicU64 = AtomicU64::new(1);
        Ok(BackendTls {
            id: IDS.fetch_add(1, Ordering::Relaxed),
            connector: TlsConnector::from(Arc::new(config)),
            server_name,
        })
    }

    /// This TLS client's number (never 0, which stands for plain TCP).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Runs the handshake with `backend` over `stream` (the caller bounds
    /// its time).
    pub async fn connect(
        &self,
        backend: SocketAddr,
        stream: TcpStream,
    ) -> std::io::Result<TlsStream<TcpStream>> {
        let name = self
            .server_name
            .clone()
            .unwrap_or_else(|| ServerName::IpAddress(backend.ip().into()));
        self.connector.connect(name, stream).await
    }
}

/// Checks `[pool.tls]` fields that need no other part of the state.
pub fn check(spec: &PoolTlsSpec) -> Result<(), (&'static str, String)> {
    if let Some(name) = &spec.sni {
        parse_server_name(name).map_err(|e| ("tls.sni", e))?;
    }
    match (spec.verifies_with_a_ca_file(), &spec.ca_pem) {
        (false, Some(_)) => {
            return Err((
                "tls.ca_pem",
                format!(
                    "only with verify naming a CA file (verify = {:?})",
                    spec.verify
                ),
            ));
        }
        (true, None) if spec.verify.is_empty() => {
            return Err((
                "tls.verify",
                "expected \"system\", \"none\" or a CA file".into(),
            ));
        }
        (true, None) => {
            return Err((
                "tls.ca_pem",
                format!(
                    "the CA file {:?} must be sent as ca_pem (ctl apply reads it)",
                    spec.verify
                ),
            ));
        }
        (true, Some(pem)) => {
            roots_from_pem(pem).map_err(|e| ("tls.ca_pem", e))?;
        }
        (false, None) => {}
    }
    Ok(())
}

fn parse_server_name(name: &str) -> Result<ServerName<'static>, String> {
    ServerName::try_from(name.to_string())
        .map_err(|_| format!("{name:?} is not a DNS name or an IP address"))
}

fn roots_from_pem(pem: &str) -> Result<RootCertStore, String> {
    let certificates = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("unreadable PEM: {e}"))?;
    if certificates.is_empty() {
        return Err("no certificate in it".into());
    }
    let mut roots = RootCertStore::empty();
    for certificate in certificates {
        roots
            .add(certificate)
            .map_err(|e| format!("not a usable CA certificate: {e}"))?;
    }
    Ok(roots)
}

/// The system's trusted roots, read once. None found (no CA bundle on the
/// machine) leaves the store empty: every handshake then fails, each
/// failure saying the certificate is not trusted, and this is logged once.
fn system_roots() -> Arc<RootCertStore> {
    static ROOTS: OnceLock<Arc<RootCertStore>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let found = rustls_native_certs::load_native_certs();
            for error in &found.errors {
                tracing::warn!(%error, "reading the system's CA certificates");
            }
            let mut roots = RootCertStore::empty();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                tracing::warn!(
                    "no system CA certificates found: pools with [pool.tls] verify = \"system\" trust no backend"
                );
            }
            Arc::new(roots)
        })
        .clone()
}

/// `verify = "none"`: any certificate is accepted (the signatures of the
/// handshake are still checked, so the session is with the key holder).
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(sni: Option<&str>, ca_pem: Option<&str>) -> PoolTlsSpec {
        PoolTlsSpec {
            verify: if ca_pem.is_some() { "ca.pem" } else { "system" }.into(),
            ca_pem: ca_pem.map(str::to_string),
            sni: sni.map(str::to_string),
            client_certificate: None,
        }
    }

    #[test]
    fn refuses_a_bad_server_name_or_ca_and_takes_good_ones() {
        let ca = rcgen::generate_simple_self_signed(vec!["ca.test".to_string()])
            .expect("certificate")
            .cert
            .pem();
        assert!(check(&spec(Some("backend.test"), Some(&ca))).is_ok());
        assert!(check(&spec(Some("10.0.0.1"), None)).is_ok());
        let (field, why) = check(&spec(Some("not a name"), None)).expect_err("bad name");
        assert_eq!(field, "tls.sni");
        assert!(why.contains("not a DNS name"), "{why}");
        let (field, why) = check(&spec(None, Some("hello"))).expect_err("no PEM");
        assert_eq!(field, "tls.ca_pem");
        assert!(why.contains("no certificate"), "{why}");
        // A client certificate the store lacks.
        let mut named = spec(None, Some(&ca));
        named.client_certificate = Some("absent".into());
        let why = BackendTls::compile(&named, &Certificates::new(), false).expect_err("absent");
        assert!(why.contains("no certificate \"absent\""), "{why}");
    }
}
