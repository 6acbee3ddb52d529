//! The demo's HTTPS frontend: a certificate for the VIP and the nodes'
//! addresses, signed by the demo's own CA and committed to the cluster as
//! `raftlb ctl cert add` does.

use std::net::IpAddr;
use std::path::Path;

use crate::proto::v1 as pb;
use crate::tls::TlsFiles;

/// Makes the site certificate in `certs` (next to the CA that
/// `certs init` wrote there) for `addresses`, and commits it through the
/// first of `endpoints` that answers, as the client `client`.
pub async fn commit(
    certs: &Path,
    addresses: &[IpAddr],
    endpoints: &[String],
    client: &TlsFiles,
) -> Result<(), String> {
    let (chain_pem, key_pem) = make(certs, addresses)?;
    let settings = crate::tls::client_config(client)?;
    let mut last = String::from("no endpoint");
    for endpoint in endpoints {
        let errors = crate::tls::transport::FirstError::default();
        let mut api = match crate::ctl::connect(endpoint, Some(&settings), &errors).await {
            Ok(api) => api,
            Err(error) => {
                last = format!("{endpoint}: {error}");
                continue;
            }
        };
        let request = pb::PutCertificateRequest {
            name: "demo-site".into(),
            chain_pem: chain_pem.clone(),
            key_pem: key_pem.clone(),
            default: true,
            replace: false,
            request_id: "demo-site-certificate".into(),
            acme: None,
        };
        match api.put_certificate(request).await {
            Ok(_) => return Ok(()),
            Err(status) => last = format!("{endpoint}: {}", status.message()),
        }
    }
    Err(format!(
        "the demo's site certificate was not committed: {last}"
    ))
}

/// Writes `site.pem` and `site-key.pem` (mode 600) into `certs`, signed by
/// the CA there; their contents.
fn make(certs: &Path, addresses: &[IpAddr]) -> Result<(String, String), String> {
    let issuer = crate::tls::bootstrap::ca_issuer(certs)?;
    let mut params =
        rcgen::CertificateParams::new(vec!["localhost".to_string()]).map_err(|e| e.to_string())?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "raftlb demo site");
    params
        .subject_alt_names
        .extend(addresses.iter().map(|ip| rcgen::SanType::IpAddress(*ip)));
    let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let cert = params.signed_by(&key, &issuer).map_err(|e| e.to_string())?;
    let (chain, key) = (cert.pem(), key.serialize_pem());
    crate::tls::bootstrap::write_file(&certs.join("site.pem"), &chain, 0o644)?;
    crate::tls::bootstrap::write_file(&certs.join("site-key.pem"), &key, 0o600)?;
    Ok((chain, key))
}
