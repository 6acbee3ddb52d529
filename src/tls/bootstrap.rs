//! `raftlb certs init`: a cluster CA, a certificate per node and client
//! certificates for operators, as `consul tls`, `nomad tls` and
//! `cockroach cert` make them. Run again on the same folder it keeps the CA
//! and every file that exists, and adds what is missing (a new node's
//! certificate, another client).

use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

use super::identity::{CLIENT_URI, NODE_URI, Role};

/// Validity of the CA.
const CA_DAYS: i64 = 3650;
/// Validity of node and client certificates; rotate them with SIGHUP.
const LEAF_DAYS: i64 = 365;

/// A node to certify: its id and the addresses and names it is reached
/// at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSpec {
    /// Node id.
    pub id: u64,
    /// Addresses written as IP SANs.
    pub addresses: Vec<IpAddr>,
    /// Host names written as DNS SANs.
    pub names: Vec<String>,
}

impl std::str::FromStr for NodeSpec {
    type Err = String;

    /// `1=127.0.0.11` or `1=10.0.0.5,node1.example.com`.
    fn from_str(text: &str) -> Result<Self, String> {
        let (id, hosts) = text
            .split_once('=')
            .ok_or_else(|| format!("{text:?}: expected ID=ADDRESS[,ADDRESS|NAME…]"))?;
        let id = id
            .parse()
            .map_err(|_| format!("{text:?}: {id:?} is not a node id"))?;
        let (mut addresses, mut names) = (Vec::new(), Vec::new());
        for host in hosts.split(',') {
            if let Ok(ip) = host.parse() {
                addresses.push(ip);
            } else if crate::config::is_host_name(host) {
                names.push(host.to_ascii_lowercase());
            } else {
                return Err(format!(
                    "{text:?}: {host:?} is neither an IP address nor a host name"
                ));
            }
        }
        Ok(NodeSpec {
            id,
            addresses,
            names,
        })
    }
}

/// A client to certify: `admin` (role admin) or `NAME:read`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientSpec {
    /// Its name, also the file name.
    pub name: String,
    /// What it may do.
    pub role: Role,
}

impl std::str::FromStr for ClientSpec {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (name, role) = match text.split_once(':') {
            Some((name, role)) => (
                name,
                Role::parse(role)
                    .ok_or_else(|| format!("{text:?}: role {role:?} is not read or admin"))?,
            ),
            None => (text, Role::Admin),
        };
        let valid = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !valid || name == "ca" {
            return Err(format!(
                "{text:?}: a client name is letters, digits, - and _ (and not \"ca\")"
            ));
        }
        Ok(ClientSpec {
            name: name.to_string(),
            role,
        })
    }
}

/// Writes what is missing in `out`; the files written, in order.
pub fn init(
    out: &Path,
    nodes: &[NodeSpec],
    clients: &[ClientSpec],
) -> Result<Vec<PathBuf>, String> {
    let fail = |what: &Path, e: &dyn std::fmt::Display| format!("{}: {e}", what.display());
    std::fs::create_dir_all(out).map_err(|e| fail(out, &e))?;
    let mut written = Vec::new();
    let (ca_pem, ca_key_pem) = (out.join("ca.pem"), out.join("ca-key.pem"));
    let issuer = if ca_pem.exists() && ca_key_pem.exists() {
        ca_issuer(out)?
    } else {
        let key = KeyPair::generate().map_err(|e| e.to_string())?;
        let mut params = CertificateParams::default();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "raftlb cluster CA");
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        valid_for(&mut params, CA_DAYS);
        let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
        write_file(&ca_pem, &cert.pem(), 0o644)?;
        write_file(&ca_key_pem, &key.serialize_pem(), 0o600)?;
        written.extend([ca_pem, ca_key_pem]);
        Issuer::new(params, key)
    };
    for node in nodes {
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, format!("raftlb node {}", node.id));
        params.subject_alt_names = node
            .addresses
            .iter()
            .map(|ip| SanType::IpAddress(*ip))
            .collect();
        for name in &node.names {
            let dns = name
                .clone()
                .try_into()
                .map_err(|e| format!("{name}: {e}"))?;
            params.subject_alt_names.push(SanType::DnsName(dns));
        }
        params
            .subject_alt_names
            .push(uri(&format!("{NODE_URI}{}", node.id))?);
        // A node is a server to its peers and clients, and a client of its
        // peers.
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        written.extend(leaf(out, &format!("node{}", node.id), params, &issuer)?);
    }
    for client in clients {
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, client.name.clone());
        params
            .distinguished_name
            .push(DnType::OrganizationalUnitName, client.role.as_str());
        params.subject_alt_names = vec![uri(&format!("{CLIENT_URI}{}", client.name))?];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        written.extend(leaf(out, &client.name, params, &issuer)?);
    }
    Ok(written)
}

/// The CA that `init` wrote into `out`, to sign more certificates with.
pub fn ca_issuer(out: &Path) -> Result<Issuer<'static, KeyPair>, String> {
    let read = |name: &str| {
        let path = out.join(name);
        std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))
    };
    let key = KeyPair::from_pem(&read("ca-key.pem")?).map_err(|e| format!("ca-key.pem: {e}"))?;
    Issuer::from_ca_cert_pem(&read("ca.pem")?, key).map_err(|e| format!("ca.pem: {e}"))
}

fn uri(text: &str) -> Result<SanType, String> {
    Ok(SanType::URI(
        text.to_string()
            .try_into()
            .map_err(|e| format!("{text}: {e}"))?,
    ))
}

fn valid_for(params: &mut CertificateParams, days: i64) {
    let now = time::OffsetDateTime::now_utc();
    // An hour back: clocks of the cluster's machines differ a little.
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(days);
}

/// Writes `NAME.pem` and `NAME-key.pem` unless both exist; those written.
fn leaf(
    out: &Path,
    name: &str,
    mut params: CertificateParams,
    issuer: &Issuer<'_, KeyPair>,
) -> Result<Vec<PathBuf>, String> {
    let (pem, key_pem) = (
        out.join(format!("{name}.pem")),
        out.join(format!("{name}-key.pem")),
    );
    if pem.exists() && key_pem.exists() {
        return Ok(Vec::new());
    }
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    valid_for(&mut params, LEAF_DAYS);
    let key = KeyPair::generate().map_err(|e| e.to_string())?;
    let cert = params.signed_by(&key, issuer).map_err(|e| e.to_string())?;
    write_file(&pem, &cert.pem(), 0o644)?;
    write_file(&key_pem, &key.serialize_pem(), 0o600)?;
    Ok(vec![pem, key_pem])
}

/// Writes `text` to a new file created with `mode` (a key is never
/// readable by others, not even for a moment).
pub fn write_file(path: &Path, text: &str, mode: u32) -> Result<(), String> {
    let fail = |e: std::io::Error| format!("{}: {e}", path.display());
    let _ = std::fs::remove_file(path);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(fail)?;
    file.write_all(text.as_bytes()).map_err(fail)?;
    // The umask may have taken bits away from the mode; never added any.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::identity::{self, Identity};

    #[test]
    fn node_and_client_specs_parse_with_clear_errors() {
        let node: NodeSpec = "2=127.0.0.12,10.0.0.2".parse().expect("node");
        assert_eq!(node.id, 2);
        assert_eq!(node.addresses.len(), 2);
        assert!("x=127.0.0.1".parse::<NodeSpec>().is_err());
        let named: NodeSpec = "1=10.0.0.5,Node1.example.com".parse().expect("name");
        assert_eq!(named.names, vec!["node1.example.com".to_string()]);
        assert!("1=bad_name".parse::<NodeSpec>().is_err());
        assert!("1=10.0.0".parse::<NodeSpec>().is_err());
        let read: ClientSpec = "grafana:read".parse().expect("client");
        assert_eq!(read.role, Role::Read);
        assert_eq!("ops".parse::<ClientSpec>().map(|c| c.role), Ok(Role::Admin));
        assert!("../etc:read".parse::<ClientSpec>().is_err());
        assert!("x:root".parse::<ClientSpec>().is_err());
    }

    #[test]
    fn init_writes_identities_and_private_keys_and_keeps_the_ca_on_rerun() {
        let out = std::env::temp_dir().join(format!("raftlb-certs-unit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&out);
        let nodes = ["1=127.0.0.11".parse().expect("node")];
        let clients = [
            "admin".parse().expect("admin"),
            "grafana:read".parse().expect("read"),
        ];
        let written = init(&out, &nodes, &clients).expect("init");
        assert_eq!(written.len(), 8, "{written:?}");
        for key in [
            "ca-key.pem",
            "node1-key.pem",
            "admin-key.pem",
            "grafana-key.pem",
        ] {
            let mode = std::fs::metadata(out.join(key))
                .expect("key")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{key}");
        }
        let der = |name: &str| {
            let pem = std::fs::read(out.join(name)).expect("pem");
            rustls::pki_types::CertificateDer::from_pem_slice(&pem).expect("der")
        };
        use rustls::pki_types::pem::PemObject;
        let node = identity::read(&der("node1.pem")).expect("node cert");
        assert_eq!(node.identity, Some(Identity::Node(1)));
        let grafana = identity::read(&der("grafana.pem")).expect("client cert");
        assert_eq!(
            grafana.identity,
            Some(Identity::Client {
                name: "grafana".into(),
                role: Role::Read
            })
        );
        let year = 365 * 24 * 3600 * 1000;
        let now = crate::control::unix_millis();
        assert!(node.not_after_ms > now + year - 2 * 24 * 3600 * 1000);
        // Again, with a new node: the CA and existing files stay.
        let ca = std::fs::read(out.join("ca.pem")).expect("ca");
        let more = [
            "1=127.0.0.11".parse().expect("node"),
            "4=127.0.0.14".parse().expect("node"),
        ];
        let written = init(&out, &more, &[]).expect("again");
        assert_eq!(
            written,
            vec![out.join("node4.pem"), out.join("node4-key.pem")]
        );
        assert_eq!(std::fs::read(out.join("ca.pem")).expect("ca"), ca);
        let _ = std::fs::remove_dir_all(&out);
    }
}
