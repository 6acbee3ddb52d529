//! How the applied state lies in sled: one key per part (the Raft
//! metadata, the frontends, each pool, each history revision, each
//! remembered request id, each committed health view), so an apply batch
//! writes only the parts it changed, in one atomic sled batch. A weight
//! change in a 10,000-backend configuration rewrites one pool, not the
//! whole configuration and its history.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use openraft::{ErrorSubject, ErrorVerb, LogId, StoredMembership};
use serde::{Deserialize, Serialize};

use super::{ClusterNode, NodeId, StorageError, storage_error};
use crate::config::{ClusterSpec, FrontendSpec, PoolSpec};
use crate::state::{Answered, ClusterState, History, RecentRequests, Revision};

/// Everything the state machine holds; also the content of a snapshot.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AppliedState {
    /// The last entry applied.
    pub last_applied: Option<LogId<NodeId>>,
    /// The last membership applied.
    pub membership: StoredMembership<NodeId, ClusterNode>,
    /// The served configuration, its history and recent request ids.
    pub state: ClusterState,
    /// Committed backend health, `pool/address` → up.
    #[serde(default)]
    pub health: BTreeMap<String, bool>,
}

const META: &[u8] = b"meta";
const FRONTENDS: &[u8] = b"frontends";
const POOL_ORDER: &[u8] = b"pool_order";
const POOL: &[u8] = b"pool/";
const REVISION: &[u8] = b"revision/";
const REQUEST: &[u8] = b"request/";
const HEALTH: &[u8] = b"health/";
const CERTIFICATES: &[u8] = b"certificates";
const TICKET_KEYS: &[u8] = b"ticket_keys";
const ACME_CHALLENGES: &[u8] = b"acme_challenges";
const DRAINS: &[u8] = b"drains";
const STALE_DISCOVERIES: &[u8] = b"stale_discoveries";
/// The whole state as one document, as written before 0.8; read once and
/// converted.
const LEGACY: &[u8] = b"applied";

/// The small part rewritten by every batch.
#[derive(Serialize, Deserialize)]
struct Meta {
    last_applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, ClusterNode>,
    version: u64,
}

/// The pre-0.8 document: the same parts, but a history holding the whole
/// configuration of every kept version.
#[derive(Deserialize)]
struct Legacy {
    last_applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, ClusterNode>,
    state: LegacyState,
    #[serde(default)]
    health: BTreeMap<String, bool>,
}

#[derive(Deserialize)]
struct LegacyState {
    version: u64,
    spec: ClusterSpec,
    #[serde(default)]
    history: LegacyHistory,
}

#[derive(Default, Deserialize)]
struct LegacyHistory {
    #[serde(default)]
    revisions: Vec<LegacyRevision>,
}

#[derive(Deserialize)]
struct LegacyRevision {
    version: u64,
    origin: crate::state::Origin,
    command: String,
    summary: String,
    spec: ClusterSpec,
}

impl Legacy {
    /// The same state in the new shape: each kept version's undo is what
    /// separates its configuration from the one before, so every version
    /// the old history kept can still be rolled back to, on every node
    /// alike.
    fn convert(self) -> AppliedState {
        let mut history = History::default();
        let mut before: Option<ClusterSpec> = None;
        for revision in self.state.history.revisions {
            history.record(Revision {
                version: revision.version,
                origin: revision.origin,
                command: revision.command,
                summary: revision.summary,
                // The oldest kept version's undo is never used (nothing
                // older can be rolled back to).
                undo: before
                    .as_ref()
                    .map(|b| crate::state::Undo::between(b, &revision.spec))
                    .unwrap_or_default(),
            });
            before = Some(revision.spec);
        }
        AppliedState {
            last_applied: self.last_applied,
            membership: self.membership,
            state: ClusterState {
                version: self.state.version,
                spec: Arc::new(self.state.spec),
                history: Arc::new(history),
                requests: Arc::default(),
                certificates: Arc::default(),
                ticket_keys: Arc::default(),
                acme_challenges: Arc::default(),
                drains: Arc::default(),
                stale_discoveries: Arc::default(),
            },
            health: self.health,
        }
    }
}

/// Reads a snapshot's data, in either shape.
pub fn read_snapshot_data(data: &[u8]) -> Result<AppliedState, serde_json::Error> {
    serde_json::from_slice::<AppliedState>(data)
        .or_else(|_| serde_json::from_slice::<Legacy>(data).map(Legacy::convert))
}

/// The applied state's tree, and what of it is on disk now.
pub struct StateStore {
    tree: sled::Tree,
    on_disk: ClusterState,
}

fn read_error(e: impl std::error::Error + 'static) -> StorageError {
    storage_error(ErrorSubject::StateMachine, ErrorVerb::Read, e)
}

fn write_error(e: impl std::error::Error + 'static) -> StorageError {
    storage_error(ErrorSubject::StateMachine, ErrorVerb::Write, e)
}

fn key(prefix: &[u8], rest: &[u8]) -> Vec<u8> {
    [prefix, rest].concat()
}

/// Collects the writes of one batch and counts their bytes.
#[derive(Default)]
struct Writes {
    batch: sled::Batch,
    bytes: u64,
}

impl Writes {
    fn put<T: Serialize>(&mut self, key: impl AsRef<[u8]>, value: &T) -> Result<(), StorageError> {
        let bytes = serde_json::to_vec(value).map_err(write_error)?;
        self.bytes += (key.as_ref().len() + bytes.len()) as u64;
        self.batch.insert(key.as_ref(), bytes);
        Ok(())
    }

    fn remove(&mut self, key: impl AsRef<[u8]>) {
        self.batch.remove(key.as_ref());
    }
}

impl StateStore {
    /// Opens the tree and reads the state it holds (converting a pre-0.8
    /// document once).
    pub fn open(db: &sled::Db) -> Result<(StateStore, AppliedState), StorageError> {
        let tree = db.open_tree("state_machine").map_err(read_error)?;
        let mut store = StateStore {
            tree,
            on_disk: ClusterState::default(),
        };
        if let Some(bytes) = store.tree.get(LEGACY).map_err(read_error)? {
            let legacy: Legacy = serde_json::from_slice(&bytes).map_err(read_error)?;
            let applied = legacy.convert();
            store.replace(&applied)?;
            tracing::info!(
                version = applied.state.version,
                "converted the applied state of 0.7 to the per-part layout"
            );
            return Ok((store, applied));
        }
        let applied = store.read()?;
        store.on_disk = applied.state.clone();
        Ok((store, applied))
    }

    fn read(&self) -> Result<AppliedState, StorageError> {
        let get = |k: &[u8]| self.tree.get(k).map_err(read_error);
        // A part written as one document, or its default when absent.
        fn part<T: serde::de::DeserializeOwned + Default>(
            bytes: Option<sled::IVec>,
        ) -> Result<T, StorageError> {
            bytes.map_or_else(
                || Ok(T::default()),
                |bytes| serde_json::from_slice(&bytes).map_err(read_error),
            )
        }
        let Some(meta) = get(META)? else {
            return Ok(AppliedState::default());
        };
        let meta: Meta = serde_json::from_slice(&meta).map_err(read_error)?;
        let frontends: Vec<FrontendSpec> = part(get(FRONTENDS)?)?;
        let order: Vec<String> = part(get(POOL_ORDER)?)?;
        let mut pools = Vec::with_capacity(order.len());
        for name in &order {
            let bytes = get(&key(POOL, name.as_bytes()))?
                .ok_or_else(|| read_error(std::io::Error::other(format!("pool {name} missing"))))?;
            pools.push(serde_json::from_slice::<PoolSpec>(&bytes).map_err(read_error)?);
        }
        let revisions: History = self
            .scan::<Revision>(REVISION)?
            .into_iter()
            .map(|(_, r)| r)
            .collect();
        let requests: Vec<Arc<Answered>> = self
            .scan::<Answered>(REQUEST)?
            .into_iter()
            .map(|(_, a)| Arc::new(a))
            .collect();
        let certificates = part(get(CERTIFICATES)?)?;
        let ticket_keys = part(get(TICKET_KEYS)?)?;
        let acme_challenges = part(get(ACME_CHALLENGES)?)?;
        let drains = part(get(DRAINS)?)?;
        let stale_discoveries = part(get(STALE_DISCOVERIES)?)?;
        let health = self
            .scan::<bool>(HEALTH)?
            .into_iter()
            .filter_map(|(k, up)| Some((String::from_utf8(k[HEALTH.len()..].to_vec()).ok()?, up)))
            .collect();
        Ok(AppliedState {
            last_applied: meta.last_applied,
            membership: meta.membership,
            state: ClusterState {
                version: meta.version,
                spec: Arc::new(ClusterSpec {
                    frontends,
                    pools,
                    certificates: Vec::new(),
                }),
                history: Arc::new(revisions),
                requests: Arc::new(RecentRequests::from(requests)),
                certificates: Arc::new(certificates),
                ticket_keys: Arc::new(ticket_keys),
                acme_challenges: Arc::new(acme_challenges),
                drains: Arc::new(drains),
                stale_discoveries: Arc::new(stale_discoveries),
            },
            health,
        })
    }

    fn scan<T: serde::de::DeserializeOwned>(
        &self,
        prefix: &[u8],
    ) -> Result<Vec<(sled::IVec, T)>, StorageError> {
        self.tree
            .scan_prefix(prefix)
            .map(|item| {
                let (k, v) = item.map_err(read_error)?;
                let value = serde_json::from_slice(&v).map_err(read_error)?;
                Ok((k, value))
            })
            .collect()
    }

    /// Writes what changed since the last save: the metadata always, and of
    /// the configuration, history and request ids only what differs from
    /// what is on disk; `health` names the views that changed. Returns the
    /// bytes written.
    pub async fn save(
        &mut self,
        applied: &AppliedState,
        health: &[String],
    ) -> Result<u64, StorageError> {
        let mut writes = Writes::default();
        writes.put(META, &meta(applied))?;
        let (now, before) = (&applied.state, &self.on_disk);
        if !Arc::ptr_eq(&now.spec, &before.spec) {
            write_spec(&mut writes, &now.spec, Some(&before.spec))?;
        }
        if !Arc::ptr_eq(&now.certificates, &before.certificates) {
            writes.put(CERTIFICATES, &*now.certificates)?;
        }
        if !Arc::ptr_eq(&now.ticket_keys, &before.ticket_keys) {
            writes.put(TICKET_KEYS, &*now.ticket_keys)?;
        }
        if !Arc::ptr_eq(&now.drains, &before.drains) {
            writes.put(DRAINS, &*now.drains)?;
        }
        if !Arc::ptr_eq(&now.acme_challenges, &before.acme_challenges) {
            writes.put(ACME_CHALLENGES, &*now.acme_challenges)?;
        }
        if !Arc::ptr_eq(&now.stale_discoveries, &before.stale_discoveries) {
            writes.put(STALE_DISCOVERIES, &*now.stale_discoveries)?;
        }
        if !Arc::ptr_eq(&now.history, &before.history) {
            let newest_on_disk = before.history.revisions().next_back().map(|r| r.version);
            for revision in now.history.after(newest_on_disk.unwrap_or(0)) {
                writes.put(key(REVISION, &revision.version.to_be_bytes()), revision)?;
            }
            let oldest = now.history.oldest().unwrap_or(u64::MAX);
            for revision in before.history.revisions() {
                if revision.version < oldest {
                    writes.remove(key(REVISION, &revision.version.to_be_bytes()));
                }
            }
        }
        if !Arc::ptr_eq(&now.requests, &before.requests) {
            let newest_on_disk = before.requests.iter().next_back().map_or(0, |a| a.seq);
            let added = now.requests.iter().rev();
            for answered in added.take_while(|a| a.seq > newest_on_disk) {
                writes.put(key(REQUEST, &answered.seq.to_be_bytes()), answered)?;
            }
            let oldest = now.requests.iter().next().map_or(u64::MAX, |a| a.seq);
            for answered in before.requests.iter().take_while(|a| a.seq < oldest) {
                writes.remove(key(REQUEST, &answered.seq.to_be_bytes()));
            }
        }
        for view in health {
            let k = key(HEALTH, view.as_bytes());
            match applied.health.get(view) {
                Some(up) => writes.put(k, up)?,
                None => writes.remove(k),
            }
        }
        self.apply(writes.batch).await?;
        self.on_disk = applied.state.clone();
        Ok(writes.bytes)
    }

    /// Replaces everything on disk with `applied` (a snapshot installed).
    pub fn replace(&mut self, applied: &AppliedState) -> Result<u64, StorageError> {
        let mut writes = Writes::default();
        for item in self.tree.iter().keys() {
            let k = item.map_err(read_error)?;
            if k.as_ref() != super::state_machine::SNAPSHOT_KEY {
                writes.remove(k);
            }
        }
        writes.put(META, &meta(applied))?;
        write_spec(&mut writes, &applied.state.spec, None)?;
        writes.put(CERTIFICATES, &*applied.state.certificates)?;
        writes.put(TICKET_KEYS, &*applied.state.ticket_keys)?;
        writes.put(ACME_CHALLENGES, &*applied.state.acme_challenges)?;
        writes.put(DRAINS, &*applied.state.drains)?;
        writes.put(STALE_DISCOVERIES, &*applied.state.stale_discoveries)?;
        for revision in applied.state.history.revisions() {
            writes.put(key(REVISION, &revision.version.to_be_bytes()), revision)?;
        }
        for answered in applied.state.requests.iter() {
            writes.put(key(REQUEST, &answered.seq.to_be_bytes()), answered)?;
        }
        for (view, up) in &applied.health {
            writes.put(key(HEALTH, view.as_bytes()), up)?;
        }
        self.tree.apply_batch(writes.batch).map_err(write_error)?;
        self.on_disk = applied.state.clone();
        Ok(writes.bytes)
    }

    /// Applies a batch off the runtime's threads: sled may block on I/O.
    async fn apply(&self, batch: sled::Batch) -> Result<(), StorageError> {
        let tree = self.tree.clone();
        tokio::task::spawn_blocking(move || tree.apply_batch(batch))
            .await
            .map_err(|e| write_error(std::io::Error::other(e.to_string())))?
            .map_err(write_error)
    }
}

fn meta(applied: &AppliedState) -> Meta {
    Meta {
        last_applied: applied.last_applied,
        membership: applied.membership.clone(),
        version: applied.state.version,
    }
}

/// Writes the parts of `spec` that differ from `before` (all of it when
/// there is no `before`).
fn write_spec(
    writes: &mut Writes,
    spec: &ClusterSpec,
    before: Option<&ClusterSpec>,
) -> Result<(), StorageError> {
    if before.is_none_or(|b| b.frontends != spec.frontends) {
        writes.put(FRONTENDS, &spec.frontends)?;
    }
    let names: Vec<&str> = spec.pools.iter().map(|p| p.name.as_str()).collect();
    let old: HashMap<&str, &PoolSpec> = before
        .map(|b| b.pools.iter().map(|p| (p.name.as_str(), p)).collect())
        .unwrap_or_default();
    if before.is_none_or(|b| {
        !b.pools
            .iter()
            .map(|p| p.name.as_str())
            .eq(names.iter().copied())
    }) {
        writes.put(POOL_ORDER, &names)?;
    }
    for pool in &spec.pools {
        if old.get(pool.name.as_str()) != Some(&pool) {
            writes.put(key(POOL, pool.name.as_bytes()), pool)?;
        }
    }
    for name in old.keys().filter(|name| !names.contains(name)) {
        writes.remove(key(POOL, name.as_bytes()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_0_7_document_converts_with_every_kept_version() {
        let a: ClusterSpec = toml::from_str("[[pool]]\nname = \"a\"\n").expect("a");
        let b: ClusterSpec = toml::from_str("[[pool]]\nname = \"b\"\n").expect("b");
        let revision = |version: u64, spec: &ClusterSpec| {
            serde_json::json!({"version": version, "origin": {"time_ms": 1, "caller": "x"},
                "command": "apply", "summary": "s", "spec": spec})
        };
        let legacy = serde_json::json!({
            "last_applied": null,
            "membership": StoredMembership::<NodeId, ClusterNode>::default(),
            "state": {"version": 2, "spec": &b,
                      "history": {"revisions": [revision(1, &a), revision(2, &b)]}},
            "health": {"a/127.0.0.1:1": true},
        });
        let applied = read_snapshot_data(&serde_json::to_vec(&legacy).expect("json"))
            .expect("a 0.7 snapshot reads");
        assert_eq!(applied.state.version, 2);
        assert_eq!(*applied.state.spec, b);
        assert_eq!(applied.state.history.spec_at(&b, 1), Some(a));
        assert_eq!(applied.health.get("a/127.0.0.1:1"), Some(&true));
    }
}
