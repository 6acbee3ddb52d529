//! Who a certificate names. `raftlb certs init` writes the identity into
//! each certificate as a URI subject alternative name, and a client's role
//! as its organizational unit (as `cockroach cert` and `consul tls` name
//! nodes and clients in the certificate):
//!
//! - a node: `raftlb://node/<id>` (and its addresses as IP SANs);
//! - a client: `raftlb://client/<name>`, OU `admin` or `read`.

use std::fmt;

/// URI prefix of a node's identity.
pub const NODE_URI: &str = "raftlb://node/";
/// URI prefix of a client's identity.
pub const CLIENT_URI: &str = "raftlb://client/";

/// What a client may do on the control API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Status, get, history, watch, top.
    Read,
    /// Everything.
    Admin,
}

impl Role {
    /// `read` or `admin`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Admin => "admin",
        }
    }

    /// Parses `read` or `admin`.
    pub fn parse(text: &str) -> Option<Role> {
        match text {
            "read" => Some(Role::Read),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// The identity a verified certificate names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// A cluster node.
    Node(u64),
    /// An operator or program.
    Client {
        /// Its name (`admin`, `prometheus`, …).
        name: String,
        /// What it may do.
        role: Role,
    },
}

impl Identity {
    /// What this identity may do on the control API: nodes are admins.
    pub fn role(&self) -> Role {
        match self {
            Identity::Node(_) => Role::Admin,
            Identity::Client { role, .. } => *role,
        }
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Identity::Node(id) => write!(f, "node {id}"),
            Identity::Client { name, role } => write!(f, "{name} ({})", role.as_str()),
        }
    }
}

/// What a certificate says of itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// Its identity, if it names one.
    pub identity: Option<Identity>,
    /// End of validity, ms since the Unix epoch.
    pub not_after_ms: u64,
}

/// Reads the identity and expiry of a DER certificate (already verified
/// against the CA by rustls when it comes from a handshake).
pub fn read(der: &[u8]) -> Result<CertInfo, String> {
    let facts = super::x509::read(der)?;
    let unit = facts.units.iter().find_map(|ou| Role::parse(ou));
    let identity = facts.uris.iter().find_map(|uri| {
        if let Some(id) = uri.strip_prefix(NODE_URI) {
            return id.parse().ok().map(Identity::Node);
        }
        let name = uri.strip_prefix(CLIENT_URI)?;
        Some(Identity::Client {
            name: name.to_string(),
            // A client certificate without a role may only read.
            role: unit.unwrap_or(Role::Read),
        })
    });
    Ok(CertInfo {
        identity,
        not_after_ms: facts.not_after_ms,
    })
}
