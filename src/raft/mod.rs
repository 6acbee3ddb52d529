//! Raft: the replicated log that keeps every node's `ClusterState` the same.
//! openraft drives consensus; this module gives it storage in sled
//! ([`log_store`], [`state_machine`]), a gRPC peer network ([`network`],
//! [`peer_channel`], [`peer_service`]), its own election timer ([`election`]) and the
//! entries it replicates.

// openraft's `StorageError` is large, and its traits fix it as the error
// type of every storage function.
#![allow(clippy::result_large_err)]

pub mod election;
pub mod log_store;
pub mod network;
pub mod peer_channel;
pub mod peer_service;
pub mod state_machine;
pub mod state_store;

use std::fmt;
use std::io::Cursor;

use serde::{Deserialize, Serialize};

use crate::config::ClusterSpec;
use crate::state::{Applied, Command, Origin, StateError};

/// A node of the cluster as Raft knows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterNode {
    /// Peer (Raft) gRPC address.
    pub raft_addr: String,
    /// Control API address; empty when not known.
    pub api_addr: String,
}

impl fmt::Display for ClusterNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.raft_addr)
    }
}

/// An entry of the replicated log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RaftRequest {
    /// The seed configuration, applied only while the state is still at
    /// version 0, so that a seed proposed by two successive leaders is
    /// committed once.
    Bootstrap {
        /// The seed.
        spec: ClusterSpec,
        /// When it was proposed.
        origin: Origin,
    },
    /// The cluster-wide health of a backend, committed by the leader when
    /// a majority of nodes agree. Not a configuration change: the version
    /// and history stay as they are.
    Health {
        /// Pool name.
        pool: String,
        /// Backend address.
        address: std::net::SocketAddr,
        /// Up (true) or down.
        up: bool,
    },
    /// An operator's change.
    Apply {
        /// The change.
        command: Command,
        /// Who asked, and when.
        origin: Origin,
        /// The client's request id: an id applied before is answered with
        /// its first result and not applied again.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request_id: Option<String>,
    },
}

/// What applying one entry gave: the new version, or why it was refused
/// (deterministically, on every node alike).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RaftResponse {
    /// The outcome.
    pub result: Result<Applied, StateError>,
}

openraft::declare_raft_types!(
    /// openraft's type configuration for raftlb.
    pub TypeConfig:
        D = RaftRequest,
        R = RaftResponse,
        NodeId = u64,
        Node = ClusterNode,
        SnapshotData = Cursor<Vec<u8>>,
);

/// A Raft node id.
pub type NodeId = u64;
/// The running Raft instance.
pub type Raft = openraft::Raft<TypeConfig>;
/// Storage errors as openraft wants them.
pub type StorageError = openraft::StorageError<NodeId>;
/// A log entry.
pub type Entry = openraft::Entry<TypeConfig>;

/// Wraps any error as an openraft storage error on `subject`.
pub(crate) fn storage_error(
    subject: openraft::ErrorSubject<NodeId>,
    verb: openraft::ErrorVerb,
    error: impl std::error::Error + 'static,
) -> StorageError {
    openraft::StorageIOError::new(subject, verb, openraft::AnyError::new(&error)).into()
}
