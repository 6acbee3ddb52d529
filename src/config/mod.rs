//! Files an operator writes: `node.toml` (one node) and `cluster.toml` (what
//! the whole cluster serves).

mod bgp_config;
mod discovery;
mod node_config;
mod route_rules;
mod spec;

pub use bgp_config::BgpConfig;
pub use discovery::{DiscoverySpec, RecordType, TTL_FLOOR_MS, defaults as discovery_defaults};
pub use node_config::{
    ClusterBootstrap, Http1Engine, NodeConfig, RaftTiming, VipConfig, VipMode, check_peer_address,
    is_host_name,
};
pub use route_rules::{FixedResponse, HeaderRewrite, MAX_FIXED_BODY, Redirect};
pub use spec::{
    AcmeFile, AdminState, Algorithm, BackendSpec, CertificateFile, CheckKind, ClusterSpec,
    FrontendSpec, HeaderMatch, HealthSpec, PoolProtocol, PoolSpec, PoolTlsSpec, Protocol,
    RateLimit, RouteSpec, SplitArm, StickySpec, defaults,
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

impl ClusterSpec {
    /// Reads a `cluster.toml`, with the files it names (a pool's
    /// `tls.verify` CA file, relative to the `cluster.toml`) read into the
    /// model. A pool that already carries its `ca_pem` (a file written by
    /// `ctl get`) keeps it. Its `[[certificate]]` entries are left out:
    /// see [`ClusterSpec::read_with_certificates`].
    pub fn read(path: &std::path::Path) -> Result<ClusterSpec, ConfigError> {
        Ok(Self::read_with_certificates(path)?.0)
    }

    /// [`ClusterSpec::read`], and the file's `[[certificate]]` entries
    /// apart, their files' paths made absolute (they are read when
    /// committed). The spec returned holds none: certificates are not
    /// part of the replicated configuration.
    pub fn read_with_certificates(
        path: &std::path::Path,
    ) -> Result<(ClusterSpec, Vec<CertificateFile>), ConfigError> {
        let mut spec: ClusterSpec = read_toml(path)?;
        let folder = path.parent().unwrap_or(std::path::Path::new("."));
        let resolve = |file: &mut String| *file = folder.join(&*file).display().to_string();
        let mut certificates = std::mem::take(&mut spec.certificates);
        for certificate in &mut certificates {
            certificate.cert.as_mut().map(resolve);
            certificate.key.as_mut().map(resolve);
            if let Some(acme) = certificate.acme.as_mut() {
                acme.directory_ca.as_mut().map(resolve);
            }
        }
        for pool in &mut spec.pools {
            let Some(tls) = pool.tls.as_mut() else {
                continue;
            };
            if tls.verifies_with_a_ca_file() && tls.ca_pem.is_none() {
                let file = folder.join(&tls.verify);
                let pem = std::fs::read_to_string(&file).map_err(|source| ConfigError::Read {
                    path: format!("{} (pool {} tls.verify)", file.display(), pool.name),
                    source,
                })?;
                tls.ca_pem = Some(pem);
            }
        }
        Ok((spec, certificates))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pools_ca_file_is_read_relative_to_the_cluster_toml() {
        let dir = std::env::temp_dir().join(format!("raftlb-ca-file-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("certs")).expect("dir");
        std::fs::write(dir.join("certs/ca.pem"), "PEM TEXT").expect("write");
        let toml = "[[pool]]\nname = \"p\"\n  [pool.tls]\n  verify = \"certs/ca.pem\"\n";
        std::fs::write(dir.join("cluster.toml"), toml).expect("write");
        let spec = ClusterSpec::read(&dir.join("cluster.toml")).expect("read");
        let tls = spec.pools[0].tls.as_ref().expect("tls");
        assert_eq!(tls.ca_pem.as_deref(), Some("PEM TEXT"));
        assert_eq!(tls.verify, "certs/ca.pem");
        let plain: ClusterSpec =
            toml::from_str("[[pool]]\nname = \"p\"\n  [pool.tls]\n").expect("parse");
        assert_eq!(plain.pools[0].tls.as_ref().expect("tls").verify, "system");
        std::fs::write(
            dir.join("cluster.toml"),
            toml.replace("certs/ca.pem", "missing.pem"),
        )
        .expect("write");
        let error = ClusterSpec::read(&dir.join("cluster.toml")).expect_err("missing file");
        assert!(error.to_string().contains("pool p tls.verify"), "{error}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
