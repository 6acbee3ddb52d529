//! The replicated model: a versioned, validated `ClusterSpec` that changes
//! only through [`ClusterState::dispatch`].

pub mod certificates;
mod command;
mod diff;
pub mod discovery;
mod error;
mod history;
mod requests;
pub mod ticket_keys;
mod validate;
mod validate_discovery;
mod validate_route;

pub use command::Command;
pub use diff::{Change, ChangeKind, diff, summarize};
pub use error::StateError;
pub use history::{Applied, HISTORY_LEN, History, Origin, Revision, Undo};
pub use requests::{
    Answered, MAX_REQUEST_ID_LEN, REMEMBERED_REQUESTS, RecentRequests, check_request_id,
};
pub use validate::{
    HashKey, MAX_POOL_BACKENDS, MAX_WEIGHT, parse_backend_address, parse_hash_key,
    parse_status_range, validate,
};
pub use validate_discovery::resolver_address;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::config::{BackendSpec, ClusterSpec, PoolSpec};

/// What the cluster serves, with the version of the last change, the
/// history of changes and the results of recent request ids. Every part is
/// shared, so a copy of the state (published to the engine, read by the
/// API) costs a few pointers; a change copies only what it changes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterState {
    /// Bumped by one on every command that changes the configuration; 0
    /// before the first.
    pub version: u64,
    /// The served configuration, always valid.
    pub spec: Arc<ClusterSpec>,
    /// The last committed changes.
    #[serde(default)]
    pub history: Arc<History>,
    /// First results of recent request ids (exactly-once writes).
    #[serde(default)]
    pub requests: Arc<RecentRequests>,
    /// Certificates for HTTPS frontends, by entry name (`ctl cert`).
    #[serde(default)]
    pub certificates: Arc<certificates::Certificates>,
    /// Keys that seal TLS session tickets on every node, newest first.
    #[serde(default)]
    pub ticket_keys: Arc<ticket_keys::TicketKeys>,
    /// Answers to the ACME HTTP-01 challenges of orders under way, by
    /// token: every node answers them (whichever the validator reaches).
    #[serde(default)]
    pub acme_challenges: Arc<BTreeMap<String, String>>,
    /// When each draining backend began to drain (`POOL ADDRESS` to ms
    /// since the Unix epoch, as the proposing node stamped the change):
    /// the start of `[pool.sticky] drain_timeout_s`, the same on every
    /// node and across restarts.
    #[serde(default)]
    pub drains: Arc<BTreeMap<String, u64>>,
    /// Pools whose DNS lookups fail, by pool name (`[pool.discovery]`):
    /// each keeps its last good set meanwhile.
    #[serde(default)]
    pub stale_discoveries: Arc<discovery::StaleDiscoveries>,
}

/// The key of a backend in [`ClusterState::drains`].
fn drain_key(pool: &str, address: &str) -> String {
    format!("{pool} {address}")
}

impl ClusterState {
    /// Applies `command` once per `request_id`: a request id applied before
    /// gets its first result back (marked `replayed`) and changes nothing.
    pub fn apply_request(
        &mut self,
        command: Command,
        origin: Origin,
        request_id: Option<&str>,
    ) -> Result<Applied, StateError> {
        let Some(id) = request_id else {
            return self.apply_counting_no_ops(command, origin);
        };
        if let Some(first) = self.answered(id) {
            return first;
        }
        let result = self.apply(command, origin);
        Arc::make_mut(&mut self.requests).record(id, result.clone());
        result
    }

    /// An entry without a request id was written by 0.7, where a command
    /// that changed nothing still made a version: a node that applies such
    /// an entry after an upgrade counts it the same way, so its versions
    /// stay those of the nodes that applied it before. (Every write since
    /// carries an id.)
    fn apply_counting_no_ops(
        &mut self,
        command: Command,
        origin: Origin,
    ) -> Result<Applied, StateError> {
        let description = command.summary();
        let applied = self.apply(command, origin.clone())?;
        if !applied.unchanged {
            return Ok(applied);
        }
        self.version += 1;
        Arc::make_mut(&mut self.history).record(Revision {
            version: self.version,
            origin,
            command: description,
            summary: summarize(&[]),
            undo: Undo::default(),
        });
        Ok(Applied {
            version: self.version,
            changes: Vec::new(),
            unchanged: false,
            replayed: false,
        })
    }

    /// The first result of `request_id`, marked `replayed`, if it was
    /// applied and is still remembered.
    pub fn answered(&self, request_id: &str) -> Option<Result<Applied, StateError>> {
        let answered = self.requests.get(request_id)?;
        Some(answered.result.clone().map(|applied| Applied {
            replayed: true,
            ..applied
        }))
    }

    /// Applies `command` as [`ClusterState::dispatch`] does, and records
    /// the change in the history with its origin and differences. A command
    /// that changes nothing makes no version and no history entry.
    pub fn apply(&mut self, command: Command, origin: Origin) -> Result<Applied, StateError> {
        let before = self.spec.clone();
        let certificates_before = self.certificates.clone();
        let version_before = self.version;
        let description = command.summary();
        let version = self.dispatch(command)?;
        if version == version_before {
            return Ok(Applied {
                version,
                changes: Vec::new(),
                unchanged: true,
                replayed: false,
            });
        }
        self.note_drains(origin.time_ms);
        let mut changes = diff(&before, &self.spec);
        changes.extend(certificates::changes(
            &certificates_before,
            &self.certificates,
        ));

        Arc::make_mut(&mut self.history).record(Revision {
            version,
            origin,
            command: description,
            summary: summarize(&changes),
            undo: Undo::between(&before, &self.spec),
        });
        Ok(Applied {
            version,
            changes,
            unchanged: false,
            replayed: false,
        })
    }

    /// Starts the drain clock of backends that became draining at `now_ms`
    /// and forgets those no longer draining.
    fn note_drains(&mut self, now_ms: u64) {
        let draining: Vec<String> = self
            .spec
            .pools
            .iter()
            .flat_map(|pool| {
                pool.backends
                    .iter()
                    .filter(|b| b.admin_state == crate::config::AdminState::Draining)
                    .map(move |b| drain_key(&pool.name, &b.address))
            })
            .collect();
        let drains: BTreeMap<String, u64> = draining
            .into_iter()
            .map(|key| {
                let since = self.drains.get(&key).copied().unwrap_or(now_ms);
                (key, since)
            })
            .collect();
        if drains != *self.drains {
            self.drains = Arc::new(drains);
        }
    }

    /// When backend `address` of `pool` began to drain, if it is draining.
    pub fn drain_started_ms(&self, pool: &str, address: &str) -> Option<u64> {
        self.drains.get(&drain_key(pool, address)).copied()
    }

    /// Applies one command. The change is built on a copy and validated as a
    /// whole before it replaces the current spec, so a refused command
    /// leaves nothing half-applied. Returns the version after it: the same
    /// version when the command changes nothing.
    pub fn dispatch(&mut self, command: Command) -> Result<u64, StateError> {
        let command = match command {
            Command::PutCertificate {
                certificate,
                replace,
            } => return self.put_certificate(certificate, replace),
            Command::RemoveCertificate { name } => return self.remove_certificate(&name),
            Command::RenewCertificate { name } => return self.renew_certificate(&name),
            Command::PutAcmeChallenge {
                token,
                key_authorization,
            } => {
                // Not configuration: no new version, no history entry.
                Arc::make_mut(&mut self.acme_challenges).insert(token, key_authorization);
                return Ok(self.version);
            }
            Command::RemoveAcmeChallenge { token } => {
                Arc::make_mut(&mut self.acme_challenges).remove(&token);
                return Ok(self.version);
            }
            Command::RotateTicketKeys { key } => {
                // Not configuration: no new version, no history entry.
                self.ticket_keys = Arc::new(ticket_keys::rotated(&self.ticket_keys, key));
                return Ok(self.version);
            }
            Command::SetDiscoveryStale { pool, stale } => {
                // Not configuration either.
                let stales = Arc::make_mut(&mut self.stale_discoveries);
                match stale {
                    Some(stale) => stales.insert(pool, stale),
                    None => stales.remove(&pool),
                };
                return Ok(self.version);
            }
            other => other,
        };
        let next = self.next_spec(command)?;
        if next == *self.spec {
            return Ok(self.version);
        }
        validate(&next)?;
        check_client_certificates(&next, &self.certificates)?;
        if let Some(kept) = discovery::prune_stale(&next, &self.stale_discoveries) {
            self.stale_discoveries = Arc::new(kept);
        }
        self.spec = Arc::new(next);
        self.version += 1;
        debug_assert!(validate(&self.spec).is_ok(), "state must stay valid");
        Ok(self.version)
    }

    /// Adds or replaces a certificate; the same one again changes nothing.
    fn put_certificate(
        &mut self,
        certificate: certificates::StoredCertificate,
        replace: bool,
    ) -> Result<u64, StateError> {
        if replace
            && self.certificates.get(&certificate.name).is_some_and(|old| {
                *old == certificate || certificates::same_acme_order(old, &certificate)
            })
        {
            return Ok(self.version);
        }
        let mut all = certificates::Certificates::clone(&self.certificates);
        certificates::put(&mut all, certificate, replace)?;
        self.certificates = Arc::new(all);
        self.version += 1;
        Ok(self.version)
    }

    /// Marks an ACME certificate to be ordered anew (the leader's task
    /// clears the mark with the new certificate).
    fn renew_certificate(&mut self, name: &str) -> Result<u64, StateError> {
        let Some(certificate) = self.certificates.get(name) else {
            return Err(StateError::NotFound {
                what: format!("certificate {name:?}"),
            });
        };
        let Some(acme) = &certificate.acme else {
            return Err(StateError::invalid(
                "certificate",
                name,
                "not an ACME certificate: replace it with ctl cert replace",
            ));
        };
        if acme.renew {
            return Ok(self.version);
        }
        let mut renewed = certificate.clone();
        if let Some(acme) = renewed.acme.as_mut() {
            acme.renew = true;
        }
        Arc::make_mut(&mut self.certificates).insert(name.to_string(), renewed);
        self.version += 1;
        Ok(self.version)
    }

    fn remove_certificate(&mut self, name: &str) -> Result<u64, StateError> {
        if let Some(pool) =
            self.spec.pools.iter().find(|p| {
                p.tls.as_ref().and_then(|t| t.client_certificate.as_deref()) == Some(name)
            })
        {
            return Err(StateError::invalid(
                format!("pool[{}].tls.client_certificate", pool.name),
                name,
                "this pool uses the certificate: change the pool first",
            ));
        }
        let mut all = certificates::Certificates::clone(&self.certificates);
        if all.remove(name).is_none() {
            return Err(StateError::NotFound {
                what: format!("certificate {name:?}"),
            });
        }
        self.certificates = Arc::new(all);
        self.version += 1;
        Ok(self.version)
    }

    fn next_spec(&self, command: Command) -> Result<ClusterSpec, StateError> {
        // A whole configuration (applied or rolled back to) keeps the
        // backends DNS gave for the records it still follows.
        let whole = matches!(
            command,
            Command::ApplyConfig { .. } | Command::Rollback { .. }
        );
        let mut spec = if whole {
            ClusterSpec::default()
        } else {
            ClusterSpec::clone(&self.spec)
        };
        match command {
            Command::Rollback { version } => {
                spec = self.history.spec_at(&self.spec, version).ok_or_else(|| {
                    StateError::NotFound {
                        what: match self.history.oldest() {
                            Some(oldest) => format!(
                                "version {version} in history (kept: {oldest} to {})",
                                self.version
                            ),
                            None => format!("version {version} in history"),
                        },
                    }
                })?;
            }
            Command::ApplyConfig {
                spec: new,
                if_version,
                ..
            } => {
                if let Some(expected) = if_version
                    && expected != self.version
                {
                    return Err(StateError::VersionConflict {
                        expected,
                        current: self.version,
                    });
                }
                if new.frontends.is_empty() && new.pools.is_empty() {
                    return Err(StateError::invalid(
                        "config",
                        "",
                        "empty (no frontends and no pools); an empty configuration would stop all traffic",
                    ));
                }
                spec = new;
            }
            Command::AddBackend { pool, backend } => {
                let target = pool_mut(&mut spec, &pool)?;
                if target.backends.iter().any(|b| b.address == backend.address) {
                    return Err(StateError::AlreadyExists {
                        what: format!("backend {} in pool {pool:?}", backend.address),
                    });
                }
                // Written backends first, discovered ones after (as a
                // configuration applied lists them).
                let at = target
                    .backends
                    .iter()
                    .position(|b| b.discovered.is_some())
                    .unwrap_or(target.backends.len());
                target.backends.insert(at, backend);
            }
            Command::RemoveBackend { pool, address } => {
                let target = pool_mut(&mut spec, &pool)?;
                let index = backend_index(target, &address)?;
                target.backends.remove(index);
            }
            Command::SetWeight {
                pool,
                address,
                weight,
            } => backend_mut(&mut spec, &pool, &address)?.weight = weight,
            Command::SetAdminState {
                pool,
                address,
                state,
            } => backend_mut(&mut spec, &pool, &address)?.admin_state = state,
            Command::SetDiscovered {
                pool,
                discovery,
                expected,
                found,
            } => {
                let target = pool_mut(&mut spec, &pool)?;
                discovery::check_unchanged(target, &discovery, &expected)?;
                discovery::replace_discovered(target, &discovery.name, found);
            }
            Command::PutCertificate { .. }
            | Command::RemoveCertificate { .. }
            | Command::RenewCertificate { .. }
            | Command::PutAcmeChallenge { .. }
            | Command::RemoveAcmeChallenge { .. }
            | Command::RotateTicketKeys { .. }
            | Command::SetDiscoveryStale { .. } => {
                unreachable!("dispatched on their own")
            }
        }
        if whole {
            discovery::keep_discovered(&self.spec, &mut spec);
        }
        Ok(spec)
    }
}

/// Every pool's client certificate (`[pool.tls] client_certificate`) is
/// in the store and usable as one.
fn check_client_certificates(
    spec: &ClusterSpec,
    certificates: &certificates::Certificates,
) -> Result<(), StateError> {
    for pool in &spec.pools {
        if let Some(tls) = &pool.tls
            && tls.client_certificate.is_some()
        {
            crate::tls::backend::BackendTls::compile(tls, certificates, false).map_err(|why| {
                StateError::invalid(
                    format!("pool[{}].tls.client_certificate", pool.name),
                    tls.client_certificate.as_deref().unwrap_or_default(),
                    why,
                )
            })?;
        }
    }
    Ok(())
}

fn pool_mut<'a>(spec: &'a mut ClusterSpec, name: &str) -> Result<&'a mut PoolSpec, StateError> {
    spec.pools
        .iter_mut()
        .find(|p| p.name == name)
        .ok_or_else(|| StateError::NotFound {
            what: format!("pool {name:?}"),
        })
}

fn backend_index(pool: &PoolSpec, address: &str) -> Result<usize, StateError> {
    pool.backends
        .iter()
        .position(|b| b.address == address)
        .ok_or_else(|| StateError::NotFound {
            what: format!("backend {address} in pool {:?}", pool.name),
        })
}

fn backend_mut<'a>(
    spec: &'a mut ClusterSpec,
    pool: &str,
    address: &str,
) -> Result<&'a mut BackendSpec, StateError> {
    let target = pool_mut(spec, pool)?;
    let index = backend_index(target, address)?;
    Ok(&mut target.backends[index])
}

#[cfg(test)]
mod tests;
