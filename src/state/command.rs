//! The command vocabulary: every change to what the cluster serves is one of
//! these, whether it comes from a file, the control API or the Raft log.

use serde::{Deserialize, Serialize};

use super::certificates::StoredCertificate;
use super::discovery::{Found, Stale};
use super::ticket_keys::TicketKey;
use crate::config::{AdminState, BackendSpec, ClusterSpec, DiscoverySpec};

/// One change to the served configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Replace the whole configuration; refused if `if_version` is set and
    /// the state is at another version.
    ApplyConfig {
        /// The new configuration.
        spec: ClusterSpec,
        /// Optimistic-concurrency guard.
        if_version: Option<u64>,
        /// What the change is for, shown in the history instead of
        /// "apply configuration" (`ctl traffic` names its switch or step).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    },
    /// Add a backend to a pool.
    AddBackend {
        /// Pool name.
        pool: String,
        /// The new backend.
        backend: BackendSpec,
    },
    /// Remove a backend from a pool.
    RemoveBackend {
        /// Pool name.
        pool: String,
        /// Backend address.
        address: String,
    },
    /// Change a backend's weight.
    SetWeight {
        /// Pool name.
        pool: String,
        /// Backend address.
        address: String,
        /// New weight.
        weight: u32,
    },
    /// Make the configuration of an earlier version current again (as a new
    /// version).
    Rollback {
        /// The version to return to; it must still be in the history.
        version: u64,
    },
    /// Activate, drain or disable a backend.
    SetAdminState {
        /// Pool name.
        pool: String,
        /// Backend address.
        address: String,
        /// New admin state.
        state: AdminState,
    },
    /// Add a certificate (`replace`: replace the entry of its name).
    PutCertificate {
        /// The chain, key and name.
        certificate: StoredCertificate,
        /// Replace an existing entry instead of adding one.
        replace: bool,
    },
    /// Remove a certificate.
    RemoveCertificate {
        /// The entry's name.
        name: String,
    },
    /// Order an ACME certificate anew at the leader's next look.
    RenewCertificate {
        /// The entry's name.
        name: String,
    },
    /// Publish the answer to an ACME HTTP-01 challenge on every node (the
    /// leader, while it orders a certificate). No configuration change.
    PutAcmeChallenge {
        /// The challenge's token (the last part of its URL path).
        token: String,
        /// What `GET /.well-known/acme-challenge/TOKEN` answers.
        key_authorization: String,
    },
    /// Withdraw a challenge's answer once its order is done.
    RemoveAcmeChallenge {
        /// The challenge's token.
        token: String,
    },
    /// Add a new session-ticket key (the leader, on a schedule); the
    /// oldest beyond the kept number drops out.
    RotateTicketKeys {
        /// The new key, made by the leader (so every node applies the
        /// same one).
        key: TicketKey,
    },
    /// The backends a pool's DNS name gives now (the leader, when a
    /// lookup changed the set): they replace the pool's discovered ones.
    /// Refused unless the pool's `[pool.discovery]` is still `discovery`
    /// and its discovered set still `expected`, so a lookup made for other
    /// settings, or on a set that changed meanwhile (another leader's
    /// commit), changes nothing.
    SetDiscovered {
        /// Pool name.
        pool: String,
        /// The settings the lookup was made with.
        discovery: DiscoverySpec,
        /// The discovered set the change was computed from, sorted.
        expected: Vec<Found>,
        /// The new set, sorted.
        found: Vec<Found>,
    },
    /// A pool's lookups fail (`stale`: since when and why; its last good
    /// set is kept) or answer again (`None`). No configuration change.
    SetDiscoveryStale {
        /// Pool name.
        pool: String,
        /// The failure, or none.
        stale: Option<Stale>,
    },
}

impl Command {
    /// A one-line description for logs and history.
    pub fn summary(&self) -> String {
        match self {
            Command::ApplyConfig {
                note: Some(note), ..
            } => note.clone(),
            Command::ApplyConfig { spec, .. } => format!(
                "apply configuration ({} frontends, {} pools)",
                spec.frontends.len(),
                spec.pools.len()
            ),
            Command::AddBackend { pool, backend } => {
                format!("add backend {} to pool {pool}", backend.address)
            }
            Command::RemoveBackend { pool, address } => {
                format!("remove backend {address} from pool {pool}")
            }
            Command::SetWeight {
                pool,
                address,
                weight,
            } => format!("set weight of {address} in pool {pool} to {weight}"),
            Command::SetAdminState {
                pool,
                address,
                state,
            } => format!("set {address} in pool {pool} {}", state.as_str()),
            Command::Rollback { version } => format!("roll back to version {version}"),
            Command::PutCertificate {
                certificate,
                replace,
            } => format!(
                "{} certificate {}",
                if *replace { "replace" } else { "add" },
                certificate.name
            ),
            Command::RemoveCertificate { name } => format!("remove certificate {name}"),
            Command::RenewCertificate { name } => format!("renew certificate {name}"),
            Command::PutAcmeChallenge { token, .. } => format!("answer ACME challenge {token}"),
            Command::RemoveAcmeChallenge { token } => {
                format!("withdraw ACME challenge {token}")
            }
            Command::RotateTicketKeys { key } => {
                format!("rotate session-ticket keys (new key {})", &key.id[..8])
            }
            Command::SetDiscovered {
                pool,
                discovery,
                found,
                ..
            } => {
                let name = &discovery.name;
                const LISTED: usize = 4;
                let mut listed: Vec<&str> = found
                    .iter()
                    .take(LISTED)
                    .map(|f| f.address.as_str())
                    .collect();
                let more = format!("{} more", found.len().saturating_sub(LISTED));
                if found.len() > LISTED {
                    listed.push(&more);
                }
                format!("pool {pool} from DNS {name}: {}", listed.join(", "))
            }
            Command::SetDiscoveryStale {
                pool,
                stale: Some(stale),
            } => format!(
                "lookups of {} for pool {pool} fail ({}): last set kept",
                stale.name, stale.reason
            ),
            Command::SetDiscoveryStale { pool, stale: None } => {
                format!("lookups for pool {pool} answer again")
            }
        }
    }
}
