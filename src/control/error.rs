//! Why a control operation failed, and how that reads as a gRPC status.

use serde::{Deserialize, Serialize};

use crate::state::StateError;

/// A control operation that did not happen; nothing of it was applied.
#[derive(Debug, Clone, thiserror::Error, Serialize, Deserialize)]
pub enum ControlError {
    /// The state refused the change.
    #[error(transparent)]
    Refused(#[from] StateError),
    /// No leader is known, or the leader could not reach a quorum, within
    /// the time limit.
    #[error("no quorum: {0}")]
    Unavailable(String),
    /// The node asked to act as leader is not (or no longer) the leader.
    #[error("not the leader")]
    NotLeader,
    /// A membership change was refused.
    #[error("membership change refused: {0}")]
    Membership(String),
    /// A request that makes no sense (e.g. an unknown node id).
    #[error("{0}")]
    BadRequest(String),
    /// Something that should not happen (storage failure, a stopped Raft).
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<ControlError> for tonic::Status {
    fn from(error: ControlError) -> tonic::Status {
        let message = error.to_string();
        match error {
            ControlError::Refused(StateError::Invalid { .. }) | ControlError::BadRequest(_) => {
                tonic::Status::invalid_argument(message)
            }
            ControlError::Refused(StateError::NotFound { .. }) => tonic::Status::not_found(message),
            ControlError::Refused(StateError::AlreadyExists { .. }) => {
                tonic::Status::already_exists(message)
            }
            ControlError::Refused(StateError::VersionConflict { .. })
            | ControlError::Membership(_) => tonic::Status::failed_precondition(message),
            ControlError::Unavailable(_) | ControlError::NotLeader => {
                tonic::Status::unavailable(message)
            }
            ControlError::Internal(_) => tonic::Status::internal(message),
        }
    }
}
