//! The demo's HTTPS frontend: a certificate for the VIP and the nodes'
//! addresses, signed by the demo's own CA and committed to the cluster as
//! `raftlb ctl cert add` does.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

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

/// Writes `site.pem` and `site-key.pem` into `certs`; their contents.
fn make(certs: &Path, addresses: &[IpAddr]) -> Result<(String, String), String> {
    use std::os::unix::fs::PermissionsExt;
    let read = |name: &str| {
        let path: PathBuf = certs.join(name);
        std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))
    };
    let ca_key = rcgen::KeyPair::from_pem(&read("ca-key.pem")?).map_err(|e| e.to_string())?;
    let issuer =
        rcgen::Issuer::from_ca_cert_pem(&read("ca.pem")?, ca_key).map_err(|e| e.to_string())?;
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
    let key_path = certs.join("site-key.pem");
    std::fs::write(certs.join("site.pem"), &chain).map_err(|e| e.to_string())?;
    std::fs::write(&key_path, &key).map_err(|e| e.to_string())?;
    std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| e.to_string())?;
    Ok((chain, key))
}
