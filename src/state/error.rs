//! Why a command was refused.

/// A command the state refuses; nothing of it has been applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum StateError {
    /// A field has a value that is not acceptable.
    #[error("{field} = {value:?}: {reason}")]
    Invalid {
        /// Path of the field, e.g. `pool[web].backend[127.0.0.1:9001].weight`.
        field: String,
        /// The offending value as written.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A name that must be unique is used twice.
    #[error("{what} already exists")]
    AlreadyExists {
        /// What is duplicated, e.g. `pool "web"`.
        what: String,
    },
    /// A name refers to nothing.
    #[error("{what} not found")]
    NotFound {
        /// What is missing, e.g. `backend 127.0.0.1:9001 in pool "web"`.
        what: String,
    },
    /// The configuration changed since the version the caller read.
    #[error("configuration is at version {current}, not {expected}")]
    VersionConflict {
        /// The version the caller expected.
        expected: u64,
        /// The version the state is at.
        current: u64,
    },
}

impl StateError {
    /// An `Invalid` error for `field` holding `value`.
    pub fn invalid(
        field: impl Into<String>,
        value: impl ToString,
        reason: impl Into<String>,
    ) -> Self {
        StateError::Invalid {
            field: field.into(),
            value: value.to_string(),
            reason: reason.into(),
        }
    }
}
