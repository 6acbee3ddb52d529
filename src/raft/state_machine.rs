//! The replicated state machine: applies committed entries to the
//! `ClusterState` through its one `dispatch`, keeps the result in sled, and
//! publishes a new routing table after every batch, so every node forwards
//! by what is committed as soon as it is applied.

use std::io::Cursor;
use std::sync::Arc;

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    EntryPayload, ErrorSubject, ErrorVerb, LogId, RaftSnapshotBuilder, SnapshotMeta,
    StoredMembership,
};
use serde::{Deserialize, Serialize};

pub use super::state_store::AppliedState;
use super::state_store::StateStore;
use super::{
    ClusterNode, Entry, NodeId, RaftRequest, RaftResponse, StorageError, TypeConfig, storage_error,
};
use crate::served::ServedConfig;
use crate::state::{Applied, ClusterState, Command};

/// The key of the last snapshot in the state machine's tree.
pub(super) const SNAPSHOT_KEY: &[u8] = b"snapshot";

#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, ClusterNode>,
    data: Vec<u8>,
}

/// The state machine store.
pub struct StateMachine {
    applied: AppliedState,
    db: sled::Db,
    tree: sled::Tree,
    store: Arc<tokio::sync::Mutex<StateStore>>,
    served: Arc<ServedConfig>,
}

impl StateMachine {
    /// Opens the state kept in `db` and publishes it at once, so a
    /// restarted node forwards by its last applied configuration from its
    /// first connection, before it has heard from any peer.
    pub fn open(db: &sled::Db, served: Arc<ServedConfig>) -> Result<StateMachine, StorageError> {
        let tree = db
            .open_tree("state_machine")
            .map_err(|e| storage_error(ErrorSubject::StateMachine, ErrorVerb::Read, e))?;
        let (store, applied) = StateStore::open(db)?;
        served.load_committed(&applied.health);
        served.publish_now(&applied.state);
        Ok(StateMachine {
            applied,
            db: db.clone(),
            tree,
            store: Arc::new(tokio::sync::Mutex::new(store)),
            served,
        })
    }

    async fn flush(&self) -> Result<(), StorageError> {
        self.db
            .flush_async()
            .await
            .map_err(|e| storage_error(ErrorSubject::StateMachine, ErrorVerb::Write, e))?;
        Ok(())
    }

    fn apply_one(state: &mut ClusterState, request: RaftRequest) -> RaftResponse {
        let result = match request {
            RaftRequest::Bootstrap { spec, origin } if state.version == 0 => state.apply(
                Command::ApplyConfig {
                    spec,
                    if_version: Some(0),
                    note: None,
                },
                origin,
            ),
            // A seed proposed again by a later leader: already served.
            RaftRequest::Bootstrap { .. } => Ok(Self::unchanged_result(state)),
            RaftRequest::Apply {
                command,
                origin,
                request_id,
            } => state.apply_request(command, origin, request_id.as_deref()),
            RaftRequest::Health { .. } => Ok(Self::unchanged_result(state)),
        };
        RaftResponse { result }
    }

    fn unchanged_result(state: &ClusterState) -> Applied {
        Applied {
            version: state.version,
            changes: Vec::new(),
            unchanged: true,
            replayed: false,
        }
    }

    fn unchanged(state: &ClusterState) -> RaftResponse {
        RaftResponse {
            result: Ok(Self::unchanged_result(state)),
        }
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let data = serde_json::to_vec(&self.applied)
            .map_err(|e| storage_error(ErrorSubject::StateMachine, ErrorVerb::Read, e))?;
        let snapshot_id = match self.applied.last_applied {
            Some(log_id) => format!(
                "{}-{}-{}",
                log_id.leader_id, log_id.index, self.applied.state.version
            ),
            None => "empty".to_string(),
        };
        let meta = SnapshotMeta {
            last_log_id: self.applied.last_applied,
            last_membership: self.applied.membership.clone(),
            snapshot_id,
        };
        let stored = serde_json::to_vec(&StoredSnapshot {
            meta: meta.clone(),
            data: data.clone(),
        })
        .map_err(|e| {
            storage_error(
                ErrorSubject::Snapshot(Some(meta.signature())),
                ErrorVerb::Write,
                e,
            )
        })?;
        self.tree.insert(SNAPSHOT_KEY, stored).map_err(|e| {
            storage_error(
                ErrorSubject::Snapshot(Some(meta.signature())),
                ErrorVerb::Write,
                e,
            )
        })?;
        self.flush().await?;
        self.served.metrics().snapshot_bytes.set(data.len() as i64);
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = StateMachine;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, ClusterNode>), StorageError> {
        Ok((self.applied.last_applied, self.applied.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<RaftResponse>, StorageError>
    where
        I: IntoIterator<Item = Entry> + openraft::OptionalSend,
    {
        let mut responses = Vec::new();
        let version_before = self.applied.state.version;
        let requests_before = self.applied.state.requests.clone();
        let mut health_changed = Vec::new();
        for entry in entries {
            self.applied.last_applied = Some(entry.log_id);
            let response = match entry.payload {
                EntryPayload::Blank => Self::unchanged(&self.applied.state),
                EntryPayload::Normal(RaftRequest::Health { pool, address, up }) => {
                    let view = format!("{pool}/{address}");
                    self.applied.health.insert(view.clone(), up);
                    self.served.set_committed(&pool, address, up);
                    health_changed.push(view);
                    Self::unchanged(&self.applied.state)
                }
                EntryPayload::Normal(request) => Self::apply_one(&mut self.applied.state, request),
                EntryPayload::Membership(membership) => {
                    self.applied.membership = StoredMembership::new(Some(entry.log_id), membership);
                    Self::unchanged(&self.applied.state)
                }
            };
            responses.push(response);
        }
        let written = self
            .store
            .lock()
            .await
            .save(&self.applied, &health_changed)
            .await?;
        let metrics = self.served.metrics();
        metrics.state_written_bytes.inc_by(written);
        metrics.state_writes.inc();
        let version_changed = self.applied.state.version != version_before;
        if version_changed || !health_changed.is_empty() {
            // Durable before it is served: a node killed and restarted
            // never serves an older version than it served before.
            self.flush().await?;
        }
        if version_changed || !Arc::ptr_eq(&requests_before, &self.applied.state.requests) {
            // Readers (the leader's request-id check, linearizable reads)
            // see it now; the routing table follows off this path.
            self.served.publish(&self.applied.state);
        }
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        StateMachine {
            applied: self.applied.clone(),
            db: self.db.clone(),
            tree: self.tree.clone(),
            store: self.store.clone(),
            served: self.served.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, ClusterNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let subject = || ErrorSubject::Snapshot(Some(meta.signature()));
        let data = snapshot.into_inner();
        // A snapshot taken by 0.7 (the last one a node kept before its
        // upgrade) reads too.
        let applied = super::state_store::read_snapshot_data(&data)
            .map_err(|e| storage_error(subject(), ErrorVerb::Read, e))?;
        tracing::info!(
            snapshot = %meta.snapshot_id,
            version = applied.state.version,
            bytes = data.len(),
            "installing snapshot"
        );
        let data_len = data.len();
        let stored = serde_json::to_vec(&StoredSnapshot {
            meta: meta.clone(),
            data,
        })
        .map_err(|e| storage_error(subject(), ErrorVerb::Write, e))?;
        self.tree
            .insert(SNAPSHOT_KEY, stored)
            .map_err(|e| storage_error(subject(), ErrorVerb::Write, e))?;
        self.applied = applied;
        self.store.lock().await.replace(&self.applied)?;
        self.flush().await?;
        self.served.metrics().snapshot_bytes.set(data_len as i64);
        self.served.load_committed(&self.applied.health);
        self.served.publish(&self.applied.state);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let Some(bytes) = self
            .tree
            .get(SNAPSHOT_KEY)
            .map_err(|e| storage_error(ErrorSubject::Snapshot(None), ErrorVerb::Read, e))?
        else {
            return Ok(None);
        };
        let stored: StoredSnapshot = serde_json::from_slice(&bytes)
            .map_err(|e| storage_error(ErrorSubject::Snapshot(None), ErrorVerb::Read, e))?;
        Ok(Some(Snapshot {
            meta: stored.meta,
            snapshot: Box::new(Cursor::new(stored.data)),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::super::log_store::LogStore;
    use super::*;
    use crate::metrics::Metrics;
    use openraft::testing::{StoreBuilder, Suite};

    struct SledBuilder;

    /// Removes the test database when the suite drops it.
    struct TempDb(std::path::PathBuf);

    impl Drop for TempDb {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    impl StoreBuilder<TypeConfig, LogStore, StateMachine, TempDb> for SledBuilder {
        async fn build(&self) -> Result<(TempDb, LogStore, StateMachine), StorageError> {
            use std::sync::atomic::{AtomicU64, Ordering};
            static N: AtomicU64 = AtomicU64::new(0);
            let path = std::env::temp_dir().join(format!(
                "raftlb-store-test-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            let db = sled::Config::new()
                .path(&path)
                .temporary(true)
                .open()
                .map_err(|e| storage_error(ErrorSubject::Store, ErrorVerb::Read, e))?;
            let log = LogStore::open(&db)
                .map_err(|e| storage_error(ErrorSubject::Store, ErrorVerb::Read, e))?;
            let served = Arc::new(ServedConfig::new(
                Arc::new(Metrics::new()),
                Default::default(),
            ));
            let sm = StateMachine::open(&db, served)?;
            Ok((TempDb(path), log, sm))
        }
    }

    #[test]
    fn passes_openraft_storage_suite() -> Result<(), StorageError> {
        Suite::test_all(SledBuilder)
    }

    #[test]
    fn a_seed_is_applied_once() {
        let mut state = ClusterState::default();
        let spec: crate::config::ClusterSpec =
            toml::from_str("[[pool]]\nname = \"a\"\n").expect("spec");
        let seed = |spec| RaftRequest::Bootstrap {
            spec,
            origin: Default::default(),
        };
        let first = StateMachine::apply_one(&mut state, seed(spec.clone()));
        assert_eq!(first.result.map(|a| a.version), Ok(1));
        let mut other = spec;
        other.pools[0].name = "b".into();
        let second = StateMachine::apply_one(&mut state, seed(other));
        assert_eq!(second.result.map(|a| a.version), Ok(1));
        assert_eq!(state.spec.pools[0].name, "a");
    }
}
