//! Files an operator writes: `node.toml` (one node) and `cluster.toml` (what
//! the whole cluster serves).

mod node_config;
mod spec;

pub use node_config::{ClusterBootstrap, NodeConfig, RaftTiming, VipConfig, VipMode};
pub use spec::{
    AdminState, Algorithm, BackendSpec, CheckKind, ClusterSpec, FrontendSpec, HealthSpec, PoolSpec,
    Protocol, RouteSpec, defaults,
};

/// An error reading or parsing one of the operator's files.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file's path.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML for its schema; toml's message names the line.
    #[error("{path}: {message}")]
    Parse {
        /// The file's path.
        path: String,
        /// toml's message, with the line and the offending text.
        message: String,
    },
    /// The file parsed but a value is not acceptable.
    #[error("{path}: {message}")]
    Invalid {
        /// The file's path.
        path: String,
        /// What is wrong, naming the field.
        message: String,
    },
}

/// Reads a TOML file into `T`, with errors that name the file and line.
pub fn read_toml<T: serde::de::DeserializeOwned>(path: &std::path::Path) -> Result<T, ConfigError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: shown.clone(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: shown,
        message: e.to_string(),
    })
}
